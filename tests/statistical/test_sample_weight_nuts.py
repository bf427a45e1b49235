"""NUTS with frequency weights samples the posterior of the data with rows repeated.

Old Faithful with integer weights 0-3 against the same data with every row repeated w_n
times: the posterior means of every parameter agree within 4 combined Monte Carlo
standard errors (both fits on the fused Gaussian kernel, which takes the weights).
"""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pytest

import bayesmix as bm

pytestmark = pytest.mark.slow


def test_weighted_nuts_posterior_equals_the_repeated_rows_posterior():
    X = bm.datasets.load_faithful()
    w = np.random.default_rng(5).integers(0, 4, size=len(X)).astype(float)
    repeated = X.loc[X.index.repeat(w.astype(int))].reset_index(drop=True)
    settings = {"draws": 1000, "tune": 1000, "chains": 2, "random_seed": 3, "progressbar": False}
    weighted = bm.GaussianMixture(n_components=2, random_state=0).fit(
        X, sample_weight=w, **settings
    )
    plain = bm.GaussianMixture(n_components=2, random_state=0).fit(repeated, **settings)
    for fit in (weighted, plain):
        assert int(fit.idata["sample_stats"]["diverging"].sum()) == 0
        assert float(fit.idata.attrs["max_rhat"]) < 1.01
    a = azs.summary(weighted.idata, var_names=["weights", "means", "covariances"])
    b = azs.summary(plain.idata, var_names=["weights", "means", "covariances"])
    tolerance = 4.0 * np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert np.all(np.abs(a["mean"] - b["mean"]) <= tolerance), (a["mean"] - b["mean"]) / tolerance
