"""The warp breaks data set (R's ``datasets::warpbreaks``): layout and known figures.

Reference figures are R's: ``sum(warpbreaks$breaks)`` 1520, ``mean`` 28.14815,
``var`` 174.204, ``range`` 10 70; nine looms per wool and tension; the group means of
``tapply(breaks, list(wool, tension), mean)``.
"""

import numpy as np
import pandas as pd

import bayesmix as bm


def test_warpbreaks_is_exported_and_fresh():
    assert "load_warpbreaks" in bm.datasets.__all__
    first = bm.datasets.load_warpbreaks()
    first.loc[0, "breaks"] = -1
    assert bm.datasets.load_warpbreaks().loc[0, "breaks"] == 26


def test_warpbreaks_layout():
    X, groups = bm.datasets.load_warpbreaks(return_labels=True)
    assert X.shape == (54, 1)
    assert list(X.columns) == ["breaks"]
    assert list(groups.columns) == ["wool", "tension"]
    X = X.join(groups)
    assert X.index.equals(pd.RangeIndex(54))
    assert X["breaks"].dtype == np.int64
    assert list(X["wool"].cat.categories) == ["A", "B"]
    assert list(X["tension"].cat.categories) == ["L", "M", "H"]
    assert not X.isna().any().any()
    counts = X.groupby(["wool", "tension"], observed=True).size()
    assert (counts == 9).all()
    assert len(counts) == 6
    assert X["wool"].tolist() == ["A"] * 27 + ["B"] * 27


def test_warpbreaks_known_figures():
    X, groups = bm.datasets.load_warpbreaks(return_labels=True)
    X = X.join(groups)
    breaks = X["breaks"].to_numpy()
    assert breaks.sum() == 1520
    assert (breaks.min(), breaks.max()) == (10, 70)
    np.testing.assert_allclose(breaks.mean(), 28.148148148, atol=1e-8)
    np.testing.assert_allclose(breaks.var(ddof=1), 174.2040531, atol=1e-6)
    assert breaks[:9].tolist() == [26, 30, 54, 25, 70, 52, 51, 26, 67]  # wool A, tension L
    assert breaks[-9:].tolist() == [20, 21, 24, 17, 13, 15, 15, 16, 28]  # wool B, tension H
    means = X.groupby(["wool", "tension"], observed=True)["breaks"].mean().round(4)
    expected = {
        ("A", "L"): 44.5556,
        ("A", "M"): 24.0,
        ("A", "H"): 24.5556,
        ("B", "L"): 28.2222,
        ("B", "M"): 28.7778,
        ("B", "H"): 18.7778,
    }
    assert means.to_dict() == expected
