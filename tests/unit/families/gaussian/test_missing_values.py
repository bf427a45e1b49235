"""Missing values (NaN) in the Gaussian EM: marginal densities and conditional statistics.

Issue 20, part 2 (work in progress): the E-step of rows with missing coordinates, used by
the chunked EM, which so far is reached through ``chunked_steps`` and ``fit_chunked``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from bayesmix.em.chunked import fit_chunked, in_memory_pass
from bayesmix.families.gaussian import em

WEIGHTS = np.array([0.3, 0.7])
MEANS = np.array([[0.0, 1.0], [3.0, -1.0]])
COVARIANCES = np.array([[[1.0, 0.6], [0.6, 2.0]], [[0.5, -0.2], [-0.2, 0.8]]])


def _density(x):
    return sum(
        WEIGHTS[k] * stats.multivariate_normal(MEANS[k], COVARIANCES[k]).pdf(x) for k in range(2)
    )


def test_marginal_density_equals_integrating_out_the_missing_coordinate():
    X = np.array([[0.5, np.nan], [np.nan, -0.3], [1.0, 2.0]])
    sums = em._missing_chunk_sums(X, None, WEIGHTS, MEANS, COVARIANCES, "full", MEANS)
    marginal = [
        integrate.quad(lambda t: _density([0.5, t]), -np.inf, np.inf, epsrel=1e-12)[0],
        integrate.quad(lambda t: _density([t, -0.3]), -np.inf, np.inf, epsrel=1e-12)[0],
        _density([1.0, 2.0]),
    ]
    assert sums["log_likelihood"] == pytest.approx(np.log(marginal).sum(), abs=1e-6)


def test_conditional_statistics_equal_the_expectations_by_integration():
    # s1 of component k for the row (0.5, NaN): r_k (0.5 - c, E[x1 | x0, k] - c), and the
    # missing coordinate's second moment adds its conditional variance.
    X = np.array([[0.5, np.nan]])
    centres = np.zeros((2, 2))
    sums = em._missing_chunk_sums(X, None, WEIGHTS, MEANS, COVARIANCES, "full", centres)
    joint = [
        lambda t, k=k: (
            WEIGHTS[k] * stats.multivariate_normal(MEANS[k], COVARIANCES[k]).pdf([0.5, t])
        )
        for k in range(2)
    ]
    total = sum(integrate.quad(f, -np.inf, np.inf)[0] for f in joint)
    for k in range(2):
        mass = integrate.quad(joint[k], -np.inf, np.inf)[0] / total
        first = integrate.quad(lambda t, k=k: t * joint[k](t), -np.inf, np.inf)[0] / total
        second = integrate.quad(lambda t, k=k: t * t * joint[k](t), -np.inf, np.inf)[0] / total
        assert sums["nk"][k] == pytest.approx(mass, abs=1e-9)
        np.testing.assert_allclose(sums["s1"][k], [0.5 * mass, first], atol=1e-8)
        np.testing.assert_allclose(sums["s2"][k][1, 1], second, atol=1e-8)
        np.testing.assert_allclose(sums["s2"][k][0, 1], 0.5 * first, atol=1e-8)


def test_without_missing_values_the_sums_are_the_complete_data_sums():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    precisions = em.compute_precision_cholesky(COVARIANCES, "full")
    complete = em._chunk_sums(X, None, WEIGHTS, MEANS, precisions, "full", MEANS)
    missing = em._missing_chunk_sums(X, None, WEIGHTS, MEANS, COVARIANCES, "full", MEANS)
    for key, value in complete.items():
        np.testing.assert_allclose(missing[key], value, rtol=1e-12, atol=1e-12)


def _simulate(rng, n=900):
    labels = rng.integers(0, 3, n)
    means = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, 2.0], [0.0, 5.0, -3.0]])
    cov = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    return means[labels] + rng.normal(size=(n, 3)) @ np.linalg.cholesky(cov).T


def _fit(X, covariance_type="full"):
    data_pass = in_memory_pass(X)
    steps = em.chunked_steps(
        3, 3, covariance_type=covariance_type, reg_covar=1e-6, objective="ml", data_pass=data_pass
    )
    return fit_chunked(
        steps,
        data_pass,
        lambda idx: (X if idx is None else X[idx], None),
        X.shape[0],
        n_init=3,
        max_iter=300,
        tol=1e-8,
        rng=np.random.default_rng(0),
    )


def _sorted(result):
    order = np.lexsort(result.params["means"].T[::-1])
    return result.params["means"][order], result.params["covariances"][order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_with_missing_values_beats_listwise_deletion(seed):
    rng = np.random.default_rng(seed)
    X = _simulate(rng)
    mask = rng.random(X.shape) < 0.25  # MCAR
    mask[mask.all(axis=1), 0] = False
    masked = np.where(mask, np.nan, X)
    full_means, full_cov = _sorted(_fit(X))
    model_means, model_cov = _sorted(_fit(masked))
    complete_rows = masked[~np.isnan(masked).any(axis=1)]
    listwise_means, listwise_cov = _sorted(_fit(complete_rows))
    model_error = np.abs(model_means - full_means).max() + np.abs(model_cov - full_cov).max()
    listwise_error = np.abs(listwise_means - full_means).max()
    listwise_error += np.abs(listwise_cov - full_cov).max()
    assert model_error < listwise_error


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "VEV"])
def test_em_with_missing_values_never_decreases_the_likelihood(covariance_type):
    rng = np.random.default_rng(3)
    X = _simulate(rng, n=400)
    mask = rng.random(X.shape) < 0.3
    mask[mask.all(axis=1), 1] = False
    result = _fit(np.where(mask, np.nan, X), covariance_type)
    assert np.all(np.diff(result.lower_bounds) >= -1e-10)
