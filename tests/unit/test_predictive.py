"""Prior and posterior predictive sampling: shapes, scale, and the mixture's moments."""

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.datasets import make_mixture

MEANS = np.array([[0.0, 0.0], [4.0, 1.0]])
COVS = np.stack([np.eye(2), [[1.0, 0.4], [0.4, 0.6]]])


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_prior_predictive_is_on_the_scale_of_the_data(covariance_type):
    X, _ = make_mixture(100, [0.5, 0.5], MEANS, COVS, random_state=0)
    X = X * np.array([10.0, 0.1]) + np.array([1000.0, -5.0])  # far from unit scale
    scale = X.std(axis=0) if covariance_type != "spherical" else X.std(axis=0).mean()
    gm = bm.GaussianMixture(covariance_type=covariance_type)
    pp = gm.sample_prior_predictive(X, draws=300, random_seed=1)
    x = pp["prior_predictive"]["x"]
    assert x.dims == ("chain", "draw", "obs", "feature")
    assert x.shape == (1, 300, 100, 2)
    assert set(pp["prior"].data_vars) >= {"weights", "means", "covariances"}
    # Per simulated data set: its centre and spread, in units of the data's.
    centre = (x.mean("obs").median(("chain", "draw")).to_numpy() - X.mean(0)) / X.std(0)
    spread = x.std("obs").median(("chain", "draw")).to_numpy() / scale
    assert np.all(np.abs(centre) < 1.0), centre
    # Weakly informative: wider than the data, but not by orders of magnitude.
    if covariance_type == "spherical":  # one variance for features of unequal scales
        assert np.all(spread.mean() > 0.5)
        assert np.all(spread.mean() < 5.0)
    else:
        assert np.all((spread > 1.0) & (spread < 5.0)), spread


def test_posterior_predictive_of_em_matches_the_mixture_moments():
    X, _ = make_mixture(4000, [0.3, 0.7], MEANS, COVS, random_state=2)
    gm = bm.GaussianMixture(random_state=0).fit(X, method="em")
    result = gm.sample_posterior_predictive(random_seed=3)
    x = result["posterior_predictive"]["x"].to_numpy().reshape(-1, 2)
    assert x.shape == (4000, 2)
    assert "posterior_predictive" in gm.idata.children
    # Closed form of a mixture's moments at the EM estimate.
    w, mu, cov = gm.weights_, gm.means_, gm.covariances_
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, cov + mu[:, :, None] * mu[:, None, :])
    covariance = second - np.outer(mean, mean)
    se = np.sqrt(np.diag(covariance) / x.shape[0])
    assert np.all(np.abs(x.mean(0) - mean) < 4 * se)
    np.testing.assert_allclose(np.cov(x.T), covariance, rtol=0.1, atol=0.05)


def test_posterior_predictive_has_one_data_set_per_draw(mocked_sample):
    X, _ = make_mixture(50, [0.5, 0.5], MEANS, COVS, random_state=2)
    gm = bm.GaussianMixture(random_state=0)
    with pytest.warns(bm.SamplerWarning):
        gm.fit(X, draws=12, chains=2, progressbar=False)
    result = gm.sample_posterior_predictive(random_seed=0, extend_idata=False)
    assert result["posterior_predictive"]["x"].shape == (2, 12, 50, 2)
    assert "posterior_predictive" not in gm.idata.children
