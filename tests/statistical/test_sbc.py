"""Slow: simulation-based calibration (Talts et al. 2018) of the NUTS fit.

For each of ``N_SIMS`` simulations: draw parameters from the (fixed) prior, data from
the model, fit with the default NUTS path (EM start, relabelling), and record the rank
of the true value of each test quantity among ``N_KEEP`` thinned posterior draws. If the
posterior is calibrated, ranks are uniform; a chi-square test on ``N_BINS`` bins checks
that for every quantity at family-wise level 0.01 (Bonferroni over the quantities).

The 2-D model has no ordering constraint, so its quantities are label invariant: the
weight, mean and covariance entries of the component with the larger weight. The 1-D
model orders the means, so the prior draws are sorted the same way.
"""

import time

import numpy as np
import pytest
from scipy import stats

import bayesmix as bm

pytestmark = pytest.mark.slow

N_SIMS = 100
N_OBS = 150
N_KEEP = 99  # thinned posterior draws per fit: ranks 0..99
N_BINS = 10
FAMILY_ALPHA = 0.01


def _ranks_are_uniform(ranks: dict[str, list[int]]) -> dict[str, float]:
    pvalues = {}
    for name, values in ranks.items():
        counts = np.bincount(np.asarray(values) * N_BINS // (N_KEEP + 1), minlength=N_BINS)
        pvalues[name] = float(stats.chisquare(counts).pvalue)
    return pvalues


def _thinned(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1, *values.shape[2:])
    return flat[np.linspace(0, flat.shape[0] - 1, N_KEEP).round().astype(int)]


def _run_sbc(gm_factory, X_shape, quantities, reorder=None):
    """Return the ranks of every quantity over N_SIMS simulations, and the seconds spent."""
    template = np.random.default_rng(0).normal(size=X_shape)
    prior = gm_factory().sample_prior_predictive(template, draws=N_SIMS, random_seed=2026)
    theta = {
        name: prior["prior"][name].isel(chain=0).to_numpy()
        for name in ("weights", "means", "covariances")
    }
    data = prior["prior_predictive"]["x"].isel(chain=0).to_numpy()
    ranks = {name: [] for name in quantities(theta, 0)}
    start = time.perf_counter()
    for s in range(N_SIMS):
        truth = {name: value[s] for name, value in theta.items()}
        if reorder is not None:
            truth = reorder(truth)
        gm = gm_factory(random_state=s).fit(
            data[s], draws=500, tune=500, chains=2, random_seed=s, progressbar=False
        )
        post = {
            name: _thinned(gm.idata["posterior"][name].to_numpy())
            for name in ("weights", "means", "covariances")
        }
        true_q = quantities({k: v[None] for k, v in truth.items()}, 0)
        draw_q = quantities(post, slice(None))
        for name in ranks:
            ranks[name].append(int((draw_q[name] < true_q[name]).sum()))
    return ranks, time.perf_counter() - start


def _sort_by_mean(truth):
    order = np.argsort(truth["means"][:, 0])
    return {name: value[order] for name, value in truth.items()}


def _one_d_quantities(theta, index):
    return {
        "weights[0]": theta["weights"][index, 0],
        "means[0]": theta["means"][index, 0, 0],
        "means[1]": theta["means"][index, 1, 0],
        "variance[0]": theta["covariances"][index, 0, 0, 0],
        "variance[1]": theta["covariances"][index, 1, 0, 0],
    }


def _larger_component_quantities(theta, index):
    weights = np.atleast_2d(theta["weights"][index])
    big = weights.argmax(axis=-1)
    rows = np.arange(weights.shape[0])
    cov = theta["covariances"][index].reshape(-1, *theta["covariances"].shape[-3:])
    means = theta["means"][index].reshape(-1, *theta["means"].shape[-2:])
    return {
        "max weight": weights.max(axis=-1),
        "mean[big, 0]": means[rows, big, 0],
        "mean[big, 1]": means[rows, big, 1],
        "cov[big, 0, 0]": cov[rows, big, 0, 0],
        "cov[big, 1, 0]": cov[rows, big, 1, 0],
        "cov[big, 1, 1]": cov[rows, big, 1, 1],
    }


def _gm_1d(random_state=None):
    priors = {
        "weights": bm.Prior("Dirichlet", a=5.0),
        "means": bm.Prior("Normal", mu=0.0, sigma=3.0),
        "sigma": bm.Prior("HalfNormal", sigma=1.0),
    }
    return bm.GaussianMixture(n_components=2, priors=priors, random_state=random_state)


def _gm_2d(random_state=None):
    priors = {
        "weights": bm.Prior("Dirichlet", a=5.0),
        "means": bm.Prior("Normal", mu=0.0, sigma=3.0),
        "sigma": bm.Prior("HalfNormal", sigma=1.0),
        "corr_chol": bm.Prior("LKJCorr", eta=2.0),
    }
    return bm.GaussianMixture(n_components=2, priors=priors, random_state=random_state)


@pytest.mark.parametrize(
    ("factory", "shape", "quantities", "reorder"),
    [
        (_gm_1d, (N_OBS, 1), _one_d_quantities, _sort_by_mean),
        (_gm_2d, (N_OBS, 2), _larger_component_quantities, None),
    ],
    ids=["1d-k2", "2d-k2-full"],
)
def test_sbc_ranks_are_uniform(factory, shape, quantities, reorder):
    ranks, seconds = _run_sbc(factory, shape, quantities, reorder)
    pvalues = _ranks_are_uniform(ranks)
    level = FAMILY_ALPHA / len(pvalues)
    print(f"SBC {shape}: {N_SIMS} simulations in {seconds:.0f} s; p-values {pvalues}")
    assert all(p > level for p in pvalues.values()), pvalues
