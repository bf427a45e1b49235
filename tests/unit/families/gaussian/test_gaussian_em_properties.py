"""Property tests of bayesmix.families.gaussian.em on random well-conditioned mixtures (hypothesis).

For all four covariance types and both objectives: the EM objective never decreases, the
E-step returns proper responsibilities, and the fit is equivariant to permuting the rows of
X and to affine maps ``X -> X A^T + b`` of the data (the class of maps that preserves the
covariance type), when started from correspondingly transformed parameters.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits

from bayesmix.exceptions import ConvergenceWarning
from bayesmix.families.gaussian.em import (
    COVARIANCE_TYPES,
    compute_precision_cholesky,
    e_step,
    fit_em,
)

# derandomize: the same examples on every run (no flaky CI); database=None: no .hypothesis/.
SETTINGS = {"deadline": None, "derandomize": True, "database": None}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Tiny LAPACK calls are much slower when two BLAS thread pools compete for the cores.
    with threadpool_limits(1):
        yield


# ---------------------------------------------------------------------------------------
# Random well-conditioned mixtures


def _random_covariances(covariance_type, n_components, n_features, rng):
    """Covariances in scikit-learn shape with eigenvalues in [0.3, 1.5]."""

    def spd():
        q, _ = np.linalg.qr(rng.normal(size=(n_features, n_features)))
        return (q * rng.uniform(0.3, 1.5, size=n_features)) @ q.T

    if covariance_type == "full":
        return np.stack([spd() for _ in range(n_components)])
    if covariance_type == "tied":
        return spd()
    if covariance_type == "diag":
        return rng.uniform(0.3, 1.5, size=(n_components, n_features))
    return rng.uniform(0.3, 1.5, size=n_components)


def _as_full(covariances, covariance_type, n_components, n_features):
    if covariance_type == "full":
        return covariances
    if covariance_type == "tied":
        return np.broadcast_to(covariances, (n_components, n_features, n_features))
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in covariances])
    return np.stack([v * np.eye(n_features) for v in covariances])


@st.composite
def mixtures(draw):
    """(X, covariance_type, true parameters, perturbed starting parameters, rng seed)."""
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    n_components = draw(st.integers(min_value=1, max_value=3))
    n_features = draw(st.integers(min_value=1, max_value=3))
    covariance_type = draw(st.sampled_from(COVARIANCE_TYPES))
    rng = np.random.default_rng(seed)

    # Means at least 8 apart (the largest standard deviation is below 1.25).
    means = np.empty((n_components, n_features))
    for k in range(n_components):
        while True:
            candidate = rng.uniform(-6.0 * n_components, 6.0 * n_components, size=n_features)
            if all(np.linalg.norm(candidate - means[j]) >= 8.0 for j in range(k)):
                means[k] = candidate
                break
    covariances = _random_covariances(covariance_type, n_components, n_features, rng)
    counts = rng.integers(30, 70, size=n_components)
    full = _as_full(covariances, covariance_type, n_components, n_features)
    X = np.vstack(
        [rng.multivariate_normal(means[k], full[k], size=counts[k]) for k in range(n_components)]
    )
    rng.shuffle(X)
    weights = counts / counts.sum()
    start = {
        "weights": 0.5 * weights + 0.5 / n_components,
        "means": means + rng.normal(scale=0.5, size=means.shape),
        "covariances": 1.5 * covariances,
    }
    return X, covariance_type, (weights, means, covariances), start, seed


def _fit_quietly(X, n_components, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_em(X, n_components, **kwargs)


def _match(means_a, means_b):
    """The permutation of the components of b that best matches those of a."""
    cost = np.linalg.norm(means_a[:, None, :] - means_b[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def _assert_same_fit(a, b, covariance_type, rtol=1e-6):
    order = _match(a.means, b.means)
    scale = max(1.0, float(np.abs(a.means).max()))
    np.testing.assert_allclose(b.weights[order], a.weights, rtol=rtol, atol=1e-10)
    np.testing.assert_allclose(b.means[order], a.means, rtol=rtol, atol=1e-9 * scale)
    cov_b = b.covariances if covariance_type == "tied" else b.covariances[order]
    np.testing.assert_allclose(cov_b, a.covariances, rtol=rtol, atol=1e-10)


# ---------------------------------------------------------------------------------------
# 1. The objective never decreases


@settings(max_examples=40, **SETTINGS)
@given(
    mixtures(),
    st.sampled_from([("ml", 0.0), ("ml", 1e-6), ("map", 0.0), ("map", 1e-6)]),
)
def test_objective_never_decreases(mixture, objective_and_ridge):
    X, covariance_type, (weights, _, _), _, seed = mixture
    objective, reg_covar = objective_and_ridge
    result = _fit_quietly(
        X,
        len(weights),
        covariance_type=covariance_type,
        objective=objective,
        reg_covar=reg_covar,
        tol=0.0,
        max_iter=25,
        random_state=seed,
    )
    bounds = result.lower_bounds
    assert bounds.shape == (25,)
    assert np.all(np.isfinite(bounds))
    slack = 1e-10 * np.maximum(np.abs(bounds[1:]), 1.0)
    assert np.all(np.diff(bounds) >= -slack), np.diff(bounds).min()


# ---------------------------------------------------------------------------------------
# 2. Responsibilities


@settings(max_examples=60, **SETTINGS)
@given(mixtures(), st.floats(min_value=1.0, max_value=1e3))
def test_e_step_responsibilities_are_probabilities(mixture, spread):
    X, covariance_type, _, start, seed = mixture
    rng = np.random.default_rng(seed)
    # Also samples far in the tails of every component, where the densities underflow.
    X = np.vstack([X, spread * rng.normal(size=(10, X.shape[1]))])
    precisions_cholesky = compute_precision_cholesky(start["covariances"], covariance_type)
    log_prob_norm, log_resp = e_step(
        X, start["weights"], start["means"], precisions_cholesky, covariance_type
    )
    resp = np.exp(log_resp)
    assert np.isfinite(log_prob_norm)
    assert np.all(np.isfinite(log_resp))
    assert np.all(resp >= 0.0)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------
# 3. Equivariance to permuting the rows


@settings(max_examples=30, **SETTINGS)
@given(mixtures(), st.sampled_from(["ml", "map"]))
def test_fit_is_equivariant_to_row_permutations(mixture, objective):
    X, covariance_type, (weights, _, _), start, seed = mixture
    permutation = np.random.default_rng(seed + 1).permutation(X.shape[0])
    kwargs = {
        "covariance_type": covariance_type,
        "objective": objective,
        "reg_covar": 0.0,
        "tol": 0.0,
        "max_iter": 20,
        "init_params": start,
    }
    a = _fit_quietly(X, len(weights), **kwargs)
    b = _fit_quietly(X[permutation], len(weights), **kwargs)
    assert b.log_likelihood == pytest.approx(a.log_likelihood, rel=1e-8, abs=1e-8)
    _assert_same_fit(a, b, covariance_type)


# ---------------------------------------------------------------------------------------
# 4. Equivariance to affine maps of the data


def _random_map(covariance_type, n_features, rng):
    """A linear map A of the class preserving covariance_type (as a matrix)."""
    magnitudes = rng.uniform(0.3, 3.0, size=n_features)
    if covariance_type == "spherical":
        return magnitudes[0] * np.eye(n_features)
    if covariance_type == "diag":
        signs = rng.choice([-1.0, 1.0], size=n_features)
        return np.diag(signs * magnitudes)
    q1, _ = np.linalg.qr(rng.normal(size=(n_features, n_features)))
    q2, _ = np.linalg.qr(rng.normal(size=(n_features, n_features)))
    return (q1 * magnitudes) @ q2


def _map_covariances(covariances, covariance_type, A):
    """The covariances of A x + b in the scikit-learn shape."""
    if covariance_type == "full":
        return np.einsum("ij,kjl,ml->kim", A, covariances, A)
    if covariance_type == "tied":
        return A @ covariances @ A.T
    if covariance_type == "diag":
        return covariances * np.diag(A) ** 2
    return covariances * A[0, 0] ** 2


@settings(max_examples=30, **SETTINGS)
@given(mixtures(), st.sampled_from(["ml", "map"]))
def test_fit_is_equivariant_to_affine_maps(mixture, objective):
    X, covariance_type, (weights, _, _), start, seed = mixture
    rng = np.random.default_rng(seed + 2)
    n_features = X.shape[1]
    A = _random_map(covariance_type, n_features, rng)
    b = rng.normal(scale=5.0, size=n_features)
    mapped_start = {
        "weights": start["weights"],
        "means": start["means"] @ A.T + b,
        "covariances": _map_covariances(start["covariances"], covariance_type, A),
    }
    kwargs = {
        "covariance_type": covariance_type,
        "objective": objective,
        "reg_covar": 0.0,
        "tol": 0.0,
        "max_iter": 20,
    }
    fit = _fit_quietly(X, len(weights), init_params=start, **kwargs)
    mapped = _fit_quietly(X @ A.T + b, len(weights), init_params=mapped_start, **kwargs)

    _, log_abs_det = np.linalg.slogdet(A)
    assert mapped.log_likelihood == pytest.approx(
        fit.log_likelihood - log_abs_det, rel=1e-8, abs=1e-8
    )
    np.testing.assert_allclose(mapped.weights, fit.weights, rtol=1e-6, atol=1e-10)
    scale = max(1.0, float(np.abs(mapped.means).max()))
    np.testing.assert_allclose(mapped.means, fit.means @ A.T + b, rtol=1e-6, atol=1e-9 * scale)
    expected = _map_covariances(fit.covariances, covariance_type, A)
    np.testing.assert_allclose(
        mapped.covariances, expected, rtol=1e-6, atol=1e-10 * np.abs(expected).max()
    )
