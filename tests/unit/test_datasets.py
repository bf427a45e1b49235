"""The shipped data sets: shape, columns, dtypes and known summary statistics.

The reference figures are those of the same data sets in R (``MASS::galaxies``,
``datasets::iris``, ``datasets::faithful``, ``datasets::discoveries``,
``poLCA::carcinoma``), so a corrupted or re-ordered file fails.
"""

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm

LOADERS = [
    "load_carcinoma",
    "load_co2_gnp",
    "load_discoveries",
    "load_faithful",
    "load_galaxies",
    "load_iris",
    "load_patents",
    "load_warpbreaks",
]

# loaders whose index is a named key of the rows, not 0..n-1
KEYED = {"load_discoveries": "year", "load_co2_gnp": "country", "load_patents": "company"}


def test_every_loader_is_exported():
    assert set(LOADERS) <= set(bm.datasets.__all__)


@pytest.mark.parametrize("name", LOADERS)
def test_loaders_return_fresh_frames_without_missing_values(name):
    loader = getattr(bm.datasets, name)
    first = loader()
    assert isinstance(first, pd.DataFrame)
    assert not first.isna().any().any()
    if name in KEYED:
        assert first.index.name == KEYED[name]
        assert first.index.is_unique
    else:
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


@pytest.mark.parametrize("name", LOADERS)
def test_loaders_return_only_what_a_model_should_fit(name):
    """Issue 21, item 5: no identifier, label or group column among the features."""
    from bayesmix._validation import suspicious_columns

    X = getattr(bm.datasets, name)()
    assert all(pd.api.types.is_numeric_dtype(X[c]) for c in X.columns)
    features = list(X.columns)
    assert suspicious_columns(X.to_numpy(dtype=float), features, range(1, 7)) == []


@pytest.mark.parametrize(
    ("name", "labels"),
    [("load_iris", ["species"]), ("load_warpbreaks", ["wool", "tension"])],
)
def test_labels_only_on_request(name, labels):
    loader = getattr(bm.datasets, name)
    X, y = loader(return_labels=True)
    pd.testing.assert_frame_equal(X, loader())
    assert y.index.equals(X.index)
    known = y.to_frame() if isinstance(y, pd.Series) else y
    assert list(known.columns) == labels
    assert not set(labels) & set(X.columns)


def test_a_count_model_fits_the_counts_of_discoveries_not_the_years():
    fit = bm.PoissonMixture(n_components=2, random_state=0).fit(
        bm.datasets.load_discoveries(), method="em"
    )
    assert fit.feature_names_in_ == ["discoveries"]
    assert fit.rates_.shape == (2, 1)


def test_iris():
    X, species = bm.datasets.load_iris(return_labels=True)
    assert X.shape == (150, 4)
    measurements = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert list(X.columns) == measurements
    assert species.name == "species"
    X = X.assign(species=species)
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
    X = bm.datasets.load_iris()
    gm = bm.GaussianMixture(n_components=3, random_state=0).fit(X, method="em")
    assert gm.feature_names_in_ == list(X.columns)


def test_discoveries():
    X = bm.datasets.load_discoveries()
    assert X.shape == (100, 1)
    assert list(X.columns) == ["discoveries"]
    assert (X.dtypes == np.int64).all()
    assert X.index.name == "year"
    assert X.index.dtype == np.int64
    np.testing.assert_array_equal(X.index, np.arange(1860, 1960))
    y = X["discoveries"].to_numpy()
    assert y.min() >= 0
    # R: sum(discoveries) 310, mean 3.1, var 5.080808, range 0 12 (12 in 1885)
    assert y.sum() == 310
    np.testing.assert_allclose(y.mean(), 3.1, atol=1e-12)
    np.testing.assert_allclose(y.var(ddof=1), 5.080808, atol=1e-6)
    assert y.max() == 12
    assert X["discoveries"].idxmax() == 1885
    # R: table(discoveries)
    counts = X["discoveries"].value_counts().sort_index()
    assert counts.to_dict() == {
        0: 9,
        1: 12,
        2: 26,
        3: 20,
        4: 12,
        5: 7,
        6: 6,
        7: 4,
        8: 1,
        9: 1,
        10: 1,
        12: 1,
    }
    # R: head(discoveries) and tail(discoveries), so a reordered file fails too
    assert y[:6].tolist() == [5, 3, 0, 2, 0, 3]
    assert y[-6:].tolist() == [1, 1, 0, 0, 2, 0]


# Response patterns of the 118 slides (raters A..G, 1 = carcinoma) with their
# frequencies: poLCA::carcinoma, i.e. Agresti (2002), Table 13.1 (20 observed patterns,
# as poLCA's documentation says). The same table comes out of the five-point ratings of
# Landis & Koch (1977) cut at 3 (carcinoma in situ or worse), checked on a separate copy.
CARCINOMA_PATTERNS = {
    "0000000": 34,
    "0000100": 2,
    "0100000": 6,
    "0100001": 1,
    "0100100": 4,
    "0100101": 5,
    "1000000": 2,
    "1010101": 1,
    "1100000": 2,
    "1100001": 1,
    "1100100": 2,
    "1100101": 7,
    "1100111": 1,
    "1101001": 1,
    "1101101": 2,
    "1101111": 3,
    "1110101": 13,
    "1110111": 5,
    "1111101": 10,
    "1111111": 16,
}


def test_carcinoma():
    X = bm.datasets.load_carcinoma()
    assert X.shape == (118, 7)
    assert list(X.columns) == ["A", "B", "C", "D", "E", "F", "G"]
    assert (X.dtypes == np.int64).all()
    assert set(np.unique(X.to_numpy())) == {0, 1}
    # R: colSums(carcinoma == 2)
    assert X.sum().tolist() == [66, 79, 45, 32, 71, 25, 66]
    patterns = X.astype(str).agg("".join, axis=1)
    assert patterns.value_counts().to_dict() == CARCINOMA_PATTERNS
    assert sum(CARCINOMA_PATTERNS.values()) == 118
    # poLCA's row order: all-negative slides first, all-positive slides last
    assert (patterns.iloc[:34] == "0000000").all()
    assert (patterns.iloc[-16:] == "1111111").all()


def _latent_class_log_likelihood(X, n_classes, n_init=10, max_iter=5000, tol=1e-10):
    """Best maximum log-likelihood of a latent class model over seeded EM restarts."""
    best = -np.inf
    for seed in range(n_init):
        rng = np.random.default_rng(seed)
        weights = np.full(n_classes, 1.0 / n_classes)
        probs = rng.uniform(0.2, 0.8, size=(n_classes, X.shape[1]))
        previous = -np.inf
        for _ in range(max_iter):
            log_joint = np.log(weights) + X @ np.log(probs).T + (1 - X) @ np.log1p(-probs).T
            top = log_joint.max(axis=1, keepdims=True)
            resp = np.exp(log_joint - top)
            log_lik = float((top[:, 0] + np.log(resp.sum(axis=1))).sum())
            if log_lik - previous < tol:
                break
            previous = log_lik
            resp /= resp.sum(axis=1, keepdims=True)
            weights = resp.mean(axis=0)
            probs = np.clip(resp.T @ X / resp.sum(axis=0)[:, None], 1e-10, 1 - 1e-10)
        best = max(best, log_lik)
    return best


def test_carcinoma_reproduces_polca_log_likelihoods():
    X = bm.datasets.load_carcinoma().to_numpy(dtype=float)
    # poLCA's ?carcinoma: log-likelihood -317.2568 (2 classes) and -293.705 (3 classes)
    assert _latent_class_log_likelihood(X, 2) == pytest.approx(-317.2568, abs=1e-3)
    assert _latent_class_log_likelihood(X, 3) == pytest.approx(-293.705, abs=1e-3)


def test_co2_gnp():
    """mixtools::CO2data (28 countries); rows checked against the .RData file's reading."""
    X = bm.datasets.load_co2_gnp()
    assert X.shape == (28, 2)
    assert list(X.columns) == ["gnp", "co2"]
    assert (X.dtypes == np.float64).all()
    assert X.index[:3].tolist() == ["CAN", "MEX", "USA"]
    assert X.index[-1] == "RUS"
    assert X.loc["USA"].tolist() == [28.2, 20.8]
    assert X.loc["CH"].tolist() == [44.35, 5.5]


def test_patents():
    """flexmix::patent (70 companies); rows checked against the .RData file's reading."""
    X = bm.datasets.load_patents()
    assert X.shape == (70, 3)
    assert list(X.columns) == ["patents", "rds", "lgrd"]
    assert X["patents"].dtype == np.int64
    assert X.index[0] == "ABBOTT LABORATORIES"
    assert X.iloc[0].tolist() == [42, 0.0549, 4.0869]
    assert X.iloc[1].tolist() == [1, 0.0032, -2.0794]
    assert (X["patents"] >= 0).all()
    # lgRD is the log of R&D spending: positive spending, any sign of its log
    assert X["lgrd"].min() < 0 < X["lgrd"].max()
