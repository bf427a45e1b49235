"""Slow: NUTS and EM agree on a Poisson mixture with missing values (issue 20).

Poisson data (N=800, 3 features, K=2) with 20% of the values missing completely at
random, fitted with ``missing="model"`` by EM and by NUTS (nutpie on the PyMC model,
whose log density leaves the missing values out; 2 chains x 500 draws started at EM):
every weight and rate has ``|posterior mean - EM| <= 3 posterior sd``, the chains
converge (R-hat <= 1.01) and the pointwise log-likelihood is finite.
"""

import arviz_stats as azs
import numpy as np
import pytest

import bayesmix as bm

pytestmark = pytest.mark.slow


def test_nuts_and_em_agree_with_missing_values():
    rng = np.random.default_rng(20)
    weights = np.array([0.4, 0.6])
    rates = np.array([[1.0, 6.0, 3.0], [7.0, 1.5, 9.0]])
    z = rng.choice(2, size=800, p=weights)
    X = rng.poisson(rates[z]).astype(float)
    mask = rng.random(X.shape) < 0.2
    mask[mask.all(axis=1), 0] = False
    X[mask] = np.nan
    settings = {"n_components": 2, "random_state": 0, "missing": "model"}
    em = bm.PoissonMixture(**settings).fit(X, method="em")
    nuts = bm.PoissonMixture(**settings).fit(
        X, method="nuts", chains=2, draws=500, tune=500, progressbar=False
    )
    posterior = nuts.idata["posterior"]
    for name, estimate in [("weights", em.weights_), ("rates", em.rates_)]:
        draws = posterior[name].values.reshape(-1, *estimate.shape)
        gap = np.abs(draws.mean(axis=0) - estimate)
        assert np.all(gap <= 3.0 * draws.std(axis=0)), (name, gap, draws.std(axis=0))
        assert float(azs.rhat(posterior[name]).max()) <= 1.01
    assert np.all(np.isfinite(nuts.idata["log_likelihood"]["x"].values))
