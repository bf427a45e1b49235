"""Slow: the negative binomial mixture recovers known parameters with NUTS.

Data are simulated from a two-component, two-feature negative binomial mixture (fixed
seed, N = 1500), the model is fitted with 4 chains x 1000 draws started at EM, and

- the chains converge: max R-hat <= 1.01 over weights, rates and dispersions, bulk
  ESS >= 400, no divergences;
- the truth lies inside the 94% HDI for at least 9 of the 10 scalars (at 94% coverage
  each, two or more misses out of ten has probability 0.12; the seed is fixed);
- EM agrees with the posterior: |posterior mean - EM| <= 3 posterior sd.
"""

import arviz_stats as azs
import numpy as np
import pytest

import bayesmix as bm

pytestmark = pytest.mark.slow

SETTINGS = {"chains": 4, "draws": 1000, "tune": 1000, "progressbar": False}
TRUTH = {
    "weights": np.array([0.4, 0.6]),
    "rates": np.array([[3.0, 15.0], [20.0, 4.0]]),
    "dispersion": np.array([[2.0, 8.0], [6.0, 3.0]]),
}


@pytest.fixture(scope="module")
def fits():
    rng = np.random.default_rng(21)
    z = rng.choice(2, size=1500, p=TRUTH["weights"])
    mu, alpha = TRUTH["rates"][z], TRUTH["dispersion"][z]
    X = rng.negative_binomial(alpha, alpha / (alpha + mu)).astype(float)
    em = bm.NegativeBinomialMixture(n_components=2, random_state=0).fit(X, method="em")
    nuts = bm.NegativeBinomialMixture(n_components=2, random_state=0).fit(X, **SETTINGS)
    # The fitted labels are by increasing rate of the first feature, as TRUTH is.
    assert np.all(np.diff(em.rates_[:, 0]) > 0)
    return em, nuts


def test_chains_converge_without_divergences(fits):
    _, nuts = fits
    diag = nuts.summary(kind="diagnostics")
    assert diag["r_hat"].max() <= 1.01, diag.sort_values("r_hat").tail()
    assert diag["ess_bulk"].min() >= 400, diag.sort_values("ess_bulk").head()
    assert nuts.idata.attrs["divergences"] == 0


def test_truth_inside_94_hdi(fits):
    _, nuts = fits
    post = nuts.idata["posterior"]
    misses = []
    for name, value in TRUTH.items():
        hdi = azs.hdi(post[name], prob=0.94, dim=("chain", "draw"))
        low = hdi.sel(ci_bound="lower").to_numpy()
        high = hdi.sel(ci_bound="upper").to_numpy()
        for index in zip(*np.nonzero((value < low) | (value > high)), strict=True):
            misses.append((name, index, value[index], low[index], high[index]))
    assert len(misses) <= 1, misses


def test_posterior_mean_within_3_sd_of_em(fits):
    em, nuts = fits
    post = nuts.idata["posterior"]
    for var in ("weights", "rates", "dispersion"):
        mean = post[var].mean(("chain", "draw")).to_numpy()
        sd = post[var].std(("chain", "draw")).to_numpy()
        em_value = em.idata["posterior"][var].isel(chain=0, draw=0).to_numpy()
        z = np.abs(mean - em_value) / sd
        assert z.max() < 3, f"{var}: max |posterior mean - EM| / sd = {z.max():.2f}"
