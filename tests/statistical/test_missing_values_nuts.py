"""NUTS on the marginal likelihood of data with missing values agrees with EM (issue 20).

The posterior of a Gaussian mixture fitted to data with 20% of the values missing
completely at random (``missing="model"``: each row's likelihood is the density of its
observed coordinates) is centred on the EM estimate of the same likelihood: every
weight, mean and covariance entry's posterior mean within 3 posterior sd of EM.
"""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pytest

import bayesmix as bm

pytestmark = pytest.mark.slow


def _simulate(rng, n=600):
    labels = rng.choice(3, size=n, p=[0.3, 0.3, 0.4])
    means = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, 2.0], [0.0, 5.0, -3.0]])
    cov = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    X = means[labels] + rng.normal(size=(n, 3)) @ np.linalg.cholesky(cov).T
    mask = rng.random(X.shape) < 0.2
    mask[mask.all(axis=1), 0] = False
    return np.where(mask, np.nan, X)


@pytest.mark.parametrize("covariance_type", ["full", "VEI"])
def test_nuts_with_missing_values_agrees_with_em(covariance_type):
    X = _simulate(np.random.default_rng(20))
    em = bm.GaussianMixture(
        n_components=3, covariance_type=covariance_type, missing="model", random_state=0
    ).fit(X, method="em")
    fit = bm.GaussianMixture(
        n_components=3, covariance_type=covariance_type, missing="model", random_state=0
    ).fit(X, chains=4, progressbar=False)
    assert fit.idata.attrs["divergences"] == 0
    post = fit.idata["posterior"]
    rhat = azs.rhat(post.to_dataset()[["weights", "means", "covariances"]])
    assert max(float(rhat[v].max()) for v in rhat.data_vars) <= 1.01
    for name, estimate in [
        ("weights", em.weights_),
        ("means", em.means_),
        ("covariances", em.covariances_),
    ]:
        draws = post[name].to_numpy().reshape(-1, *post[name].shape[2:])
        if name == "covariances" and estimate.ndim == 2:  # VEI: held as diagonals
            draws = np.diagonal(draws, axis1=-2, axis2=-1)
        z = (draws.mean(axis=0) - estimate) / draws.std(axis=0)
        assert np.abs(z).max() <= 3.0, (name, z)
