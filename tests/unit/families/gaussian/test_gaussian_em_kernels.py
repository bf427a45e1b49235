"""Tests of the fused numba EM kernels (bayesmix.families.gaussian._em_kernels and their wrappers
in em.py).

Oracles: numpy's exp, scipy.stats densities with scipy's logsumexp for the E-step sums, and
bayesmix.families.gaussian.em.m_step / compute_precision_cholesky (the NumPy path) for the M-step.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import bayesmix.families.gaussian.em as em
from bayesmix.families.gaussian import _em_kernels

TINY = np.finfo(np.float64).tiny
EPS = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------------------
# Helpers


def _random_parameters(covariance_type, n_components, n_features, rng):
    """Weights, means and covariances (scikit-learn shapes) of a random mixture."""
    weights = rng.dirichlet(np.full(n_components, 2.0))
    means = rng.normal(scale=3.0, size=(n_components, n_features))
    if covariance_type == "full":
        a = rng.normal(scale=0.6, size=(n_components, n_features, n_features))
        covariances = a @ np.swapaxes(a, 1, 2) + 0.3 * np.eye(n_features)
    elif covariance_type == "tied":
        a = rng.normal(scale=0.6, size=(n_features, n_features))
        covariances = a @ a.T + 0.3 * np.eye(n_features)
    elif covariance_type == "diag":
        covariances = rng.uniform(0.3, 2.0, size=(n_components, n_features))
    else:
        covariances = rng.uniform(0.3, 2.0, size=n_components)
    return weights, means, covariances


def _reference_sums(X, weights, means, covariances, covariance_type):
    """The kernel's outputs from scipy densities: total, nk, s1, s2 (about ``means``)."""
    n_components, n_features = means.shape
    full = em.full_covariances(covariances, covariance_type, n_components, n_features)
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    weighted = np.column_stack(
        [
            log_weights[k] + stats.multivariate_normal(means[k], full[k]).logpdf(X)
            for k in range(n_components)
        ]
    ).reshape(X.shape[0], n_components)
    log_norm = logsumexp(weighted, axis=1)
    resp = np.exp(weighted - log_norm[:, None])
    diffs = X[:, None, :] - means[None, :, :]  # (N, K, D)
    nk = resp.sum(axis=0)
    s1 = np.einsum("nk,nkd->kd", resp, diffs)
    if covariance_type in ("full", "tied"):
        s2 = np.einsum("nk,nki,nkj->kij", resp, diffs, diffs)
    else:
        s2 = np.einsum("nk,nkd->kd", resp, diffs**2)
    return log_norm.sum(), nk, s1, s2


def _fused_sums(X, weights, means, covariances, covariance_type):
    precisions_cholesky = em.compute_precision_cholesky(covariances, covariance_type)
    return em._fused_statistics(
        np.ascontiguousarray(X), weights, means, precisions_cholesky, covariance_type
    )


# ---------------------------------------------------------------------------------------
# 1. The vectorised exponential


def test_exp_matches_numpy_to_two_ulp():
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            -rng.exponential(2.0, size=20_000),
            -rng.uniform(0.0, 708.0, size=20_000),
            -np.logspace(-300, 2.8, 2_000),
            [0.0, -0.0, -5e-324, -1e-17, -0.5 * np.log(2.0), -np.log(2.0), -708.0],
        ]
    )
    result = _em_kernels.exp_nonpositive(x)
    expected = np.exp(x)
    assert np.all(expected >= TINY)  # all normal results here
    np.testing.assert_allclose(result, expected, rtol=2 * EPS, atol=0)
    assert result[np.flatnonzero(x == 0.0)].tolist() == [1.0, 1.0]


def test_exp_subnormal_results_underflow_and_special_values():
    x = np.concatenate([np.linspace(-745.2, -708.5, 5_000), [-745.14, -746.0, -1e4]])
    result = _em_kernels.exp_nonpositive(x)
    expected = np.exp(x)
    assert np.any((expected > 0.0) & (expected < TINY))  # the subnormal range is covered
    smallest = np.nextafter(0.0, 1.0)
    np.testing.assert_allclose(result, expected, rtol=2 * EPS, atol=smallest)
    assert result[-2] == 0.0
    assert result[-1] == 0.0
    special = _em_kernels.exp_nonpositive(np.array([-np.inf, np.nan, -np.inf]))
    assert special[0] == 0.0
    assert special[2] == 0.0
    assert np.isnan(special[1])


# ---------------------------------------------------------------------------------------
# 2. The fused E-step sums


@pytest.mark.parametrize("covariance_type", em.COVARIANCE_TYPES)
@pytest.mark.parametrize(
    ("n_samples", "n_components", "n_features"),
    [(1, 1, 1), (255, 3, 2), (256, 2, 1), (257, 4, 3), (1000, 5, 5), (777, 1, 4)],
)
def test_fused_sums_match_scipy_reference(covariance_type, n_samples, n_components, n_features):
    rng = np.random.default_rng(n_samples + 10 * n_components + n_features)
    weights, means, covariances = _random_parameters(covariance_type, n_components, n_features, rng)
    # Samples near the components and far out in the tails (underflowing densities).
    X = rng.normal(scale=4.0, size=(n_samples, n_features))
    X[::7] *= 12.0
    total, nk, s1, s2 = _fused_sums(X, weights, means, covariances, covariance_type)
    ref_total, ref_nk, ref_s1, ref_s2 = _reference_sums(
        X, weights, means, covariances, covariance_type
    )
    np.testing.assert_allclose(total, ref_total, rtol=1e-12)
    np.testing.assert_allclose(nk, ref_nk, rtol=1e-11, atol=1e-13 * n_samples)
    scale = np.sqrt(np.abs(ref_s2).max() * n_samples)
    np.testing.assert_allclose(s1, ref_s1, rtol=1e-11, atol=1e-13 * scale)
    np.testing.assert_allclose(s2, ref_s2, rtol=1e-11, atol=1e-13 * np.abs(ref_s2).max())
    assert np.all(nk >= 0.0)
    assert np.sum(nk) == pytest.approx(n_samples, rel=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_fused_sums_with_a_zero_weight_and_underflow(covariance_type):
    rng = np.random.default_rng(7)
    weights, means, covariances = _random_parameters(covariance_type, 3, 2, rng)
    weights = np.array([0.6, 0.0, 0.4])
    X = np.vstack([rng.normal(size=(300, 2)), [[1e3, -1e3], [40.0, 40.0]]])
    total, nk, s1, s2 = _fused_sums(X, weights, means, covariances, covariance_type)
    ref_total, ref_nk, ref_s1, ref_s2 = _reference_sums(
        X, weights, means, covariances, covariance_type
    )
    assert nk[1] == 0.0
    assert np.all(s1[1] == 0.0)
    assert np.all(s2[1] == 0.0)
    np.testing.assert_allclose(total, ref_total, rtol=1e-12)
    np.testing.assert_allclose(nk, ref_nk, rtol=1e-11)
    np.testing.assert_allclose(s1, ref_s1, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(s2, ref_s2, rtol=1e-11)


def test_fused_sums_are_not_finite_without_a_density():
    X = np.random.default_rng(8).normal(size=(10, 2))
    means = np.zeros((2, 2))
    factors = np.stack([np.eye(2), np.eye(2)])
    total = _em_kernels.full_pass(X, means, factors, np.full(2, -np.inf))[0]
    assert not np.isfinite(total)
    total = _em_kernels.full_pass(X, means, factors, np.array([0.0, np.nan]))[0]
    assert np.isnan(total)
    total = _em_kernels.diag_pass(X, means, np.ones((2, 2)), np.array([np.nan, 0.0]))[0]
    assert np.isnan(total)


def test_sums_about_the_current_means_stay_accurate_far_from_zero():
    # Scatter accumulated about the origin would lose ~12 digits at an offset of 1e6.
    rng = np.random.default_rng(9)
    weights, means, covariances = _random_parameters("full", 2, 2, rng)
    X = means[rng.integers(2, size=2000)] + rng.normal(size=(2000, 2))
    offset = 1e6
    shifted = _fused_sums(X + offset, weights, means + offset, covariances, "full")
    # X + offset - offset is exact, so this is the same problem without the offset.
    exact_X = (X + offset) - offset
    reference = _fused_sums(exact_X, weights, means + offset - offset, covariances, "full")
    np.testing.assert_allclose(shifted[1], reference[1], rtol=1e-9)
    np.testing.assert_allclose(shifted[3], reference[3], rtol=1e-8)


# ---------------------------------------------------------------------------------------
# 3. The M-step from the sums


@pytest.mark.parametrize("objective", ["ml", "map"])
@pytest.mark.parametrize("covariance_type", em.COVARIANCE_TYPES)
@pytest.mark.parametrize(("n_components", "n_features"), [(1, 1), (3, 2), (4, 5)])
def test_fused_m_step_matches_numpy_m_step(objective, covariance_type, n_components, n_features):
    rng = np.random.default_rng(100 * n_components + n_features)
    weights, means, covariances = _random_parameters(covariance_type, n_components, n_features, rng)
    X = means[rng.integers(n_components, size=500)] + rng.normal(size=(500, n_features))
    prior = em.default_prior(X, n_components, covariance_type) if objective == "map" else None
    reg_covar = 1e-6
    precisions_cholesky = em.compute_precision_cholesky(covariances, covariance_type)

    _, log_resp = em.e_step(X, weights, means, precisions_cholesky, covariance_type)
    expected = em.m_step(X, np.exp(log_resp), covariance_type, reg_covar, prior=prior)
    expected_chol = em.compute_precision_cholesky(expected[2], covariance_type)

    _, nk, s1, s2 = em._fused_statistics(X, weights, means, precisions_cholesky, covariance_type)
    update = em._fused_m_step(nk, s1, s2, means, covariance_type, reg_covar, prior)
    assert update is not None
    (new_weights, new_means, new_covariances), new_chol = update
    assert new_covariances.shape == expected[2].shape
    assert new_chol.shape == expected_chol.shape
    np.testing.assert_allclose(new_weights, expected[0], rtol=1e-11)
    np.testing.assert_allclose(new_means, expected[1], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(new_covariances, expected[2], rtol=1e-10)
    np.testing.assert_allclose(new_chol, expected_chol, rtol=1e-10, atol=1e-12)
    if covariance_type in ("full", "tied"):
        matrices = new_covariances.reshape(-1, n_features, n_features)
        np.testing.assert_array_equal(matrices, np.swapaxes(matrices, 1, 2))


@pytest.mark.parametrize("covariance_type", em.COVARIANCE_TYPES)
def test_fused_m_step_declines_a_component_on_duplicated_points(covariance_type):
    # Component 0 owns 30 copies of one point: its scatter is zero, i.e. all cancellation.
    rng = np.random.default_rng(11)
    X = np.vstack([np.tile([[1.0, 2.0]], (30, 1)), rng.normal(loc=20.0, size=(30, 2))])
    weights = np.array([0.5, 0.5])
    means = np.array([[1.0, 2.0], [20.0, 20.0]])
    covariances = {
        "full": np.stack([np.eye(2), np.eye(2)]),
        "tied": np.eye(2),
        "diag": np.ones((2, 2)),
        "spherical": np.ones(2),
    }[covariance_type]
    precisions_cholesky = em.compute_precision_cholesky(covariances, covariance_type)
    _, nk, s1, s2 = em._fused_statistics(X, weights, means, precisions_cholesky, covariance_type)
    update = em._fused_m_step(nk, s1, s2, means, covariance_type, 0.0, None)
    if covariance_type == "tied":
        # The pooled covariance is regular: the fused step applies.
        assert update is not None
    else:
        assert update is None
        # With the ridge the covariance is regular and the fused step applies again.
        assert em._fused_m_step(nk, s1, s2, means, covariance_type, 1e-6, None) is not None


def test_fused_iteration_declines_an_empty_component_and_a_non_finite_objective():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(200, 2))
    means = np.array([[0.0, 0.0], [1e3, 1e3]])
    chol = em.compute_precision_cholesky(np.stack([np.eye(2), np.eye(2)]), "full")
    kwargs = {"covariance_type": "full", "reg_covar": 1e-6, "prior": None}
    assert em._fused_iteration(X, np.array([0.5, 0.5]), means, chol, **kwargs) is None
    both_far = np.array([[1e3, 1e3], [-1e3, 1e3]])
    assert em._fused_iteration(X, np.array([0.5, 0.5]), both_far, chol, **kwargs) is None
    near = np.array([[0.0, 0.0], [1.0, 0.0]])
    step = em._fused_iteration(X, np.array([0.5, 0.5]), near, chol, **kwargs)
    assert step is not None
    objective, nk, _, _ = step
    expected, _ = em.e_step(X, np.array([0.5, 0.5]), near, chol, "full")
    assert objective == pytest.approx(expected, rel=1e-13)
    assert nk.sum() == pytest.approx(200.0, rel=1e-13)
