"""The shipped data sets: shape, columns, dtypes and known summary statistics.

The reference figures are those of the same data sets in R (``MASS::galaxies``,
``datasets::iris``, ``datasets::faithful``), so a corrupted or re-ordered file fails.
"""

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm


def test_every_loader_is_exported():
    assert {"load_faithful", "load_galaxies", "load_iris"} <= set(bm.datasets.__all__)


@pytest.mark.parametrize("name", ["load_faithful", "load_galaxies", "load_iris"])
def test_loaders_return_fresh_frames_without_missing_values(name):
    loader = getattr(bm.datasets, name)
    first = loader()
    assert isinstance(first, pd.DataFrame)
    assert not first.isna().any().any()
    assert first.index.equals(pd.RangeIndex(len(first)))
    first.iloc[0, 0] = -1.0  # a caller may modify its copy ...
    assert loader().iloc[0, 0] != -1.0  # ... without touching the next one


def test_galaxies():
    X = bm.datasets.load_galaxies()
    assert X.shape == (82, 1)
    assert list(X.columns) == ["velocity"]
    assert X["velocity"].dtype == np.float64
    v = X["velocity"].to_numpy()
    # R: mean(galaxies) 20828.17, sd(galaxies) 4563.758, range 9172 34279, sum 1707910
    assert v.sum() == 1707910.0
    np.testing.assert_allclose(v.mean(), 20828.170732, atol=1e-6)
    np.testing.assert_allclose(v.std(ddof=1), 4563.757994, atol=1e-6)
    assert (v.min(), v.max()) == (9172.0, 34279.0)
    assert np.all(np.diff(v) > 0)  # MASS order: ascending, no ties
    assert v[77] == 26690.0  # MASS's documented typo (26960 in Postman et al. 1986)


def test_iris():
    X = bm.datasets.load_iris()
    assert X.shape == (150, 5)
    measurements = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert list(X.columns) == [*measurements, "species"]
    assert (X[measurements].dtypes == np.float64).all()
    assert isinstance(X["species"].dtype, pd.CategoricalDtype)
    assert list(X["species"].cat.categories) == ["setosa", "versicolor", "virginica"]
    assert X["species"].value_counts().tolist() == [50, 50, 50]
    assert X["species"].iloc[[0, 50, 100]].tolist() == ["setosa", "versicolor", "virginica"]
    # R: colMeans(iris[1:4])
    np.testing.assert_allclose(
        X[measurements].mean().to_numpy(), [5.843333, 3.057333, 3.758, 1.199333], atol=1e-6
    )
    # R: aggregate(. ~ Species, iris, mean)
    by_species = X.groupby("species", observed=True)[measurements].mean().to_numpy()
    np.testing.assert_allclose(
        by_species,
        [
            [5.006, 3.428, 1.462, 0.246],
            [5.936, 2.770, 4.260, 1.326],
            [6.588, 2.974, 5.552, 2.026],
        ],
        atol=1e-9,
    )
    # Fisher's values (as R), not UCI's: rows 35 and 38 (1-based)
    np.testing.assert_array_equal(X.loc[34, measurements], [4.9, 3.1, 1.5, 0.2])
    np.testing.assert_array_equal(X.loc[37, measurements], [4.9, 3.6, 1.4, 0.1])


def test_faithful_summary():
    X = bm.datasets.load_faithful()
    # R: colMeans(faithful)
    np.testing.assert_allclose(X.mean().to_numpy(), [3.487783, 70.897059], atol=1e-6)


def test_iris_measurements_fit_a_mixture_directly():
    X = bm.datasets.load_iris().drop(columns="species")
    gm = bm.GaussianMixture(n_components=3, random_state=0).fit(X, method="em")
    assert gm.feature_names_in_ == list(X.columns)
