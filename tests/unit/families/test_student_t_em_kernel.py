"""The Student-t ECM's compiled E-step and Newton dof update against NumPy and scipy.

``bayesmix.families._t_em_kernel.t_e_step`` replaces the NumPy E-step (and the first part of
the CM-steps) from ``student_t._KERNEL_MIN_SAMPLES`` rows on; ``student_t._dof_root`` replaces
Brent's method when the current dof is known. Both must give what they replace.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import brentq
from scipy.special import digamma

from bayesmix.exceptions import FitError
from bayesmix.families import student_t
from bayesmix.families.gaussian.em import compute_precision_cholesky, full_covariances
from bayesmix.families.student_t import COVARIANCE_TYPES, fit_student_t_em


def _data(n, d, seed):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.4
    centres = np.where(z[:, None], -3.0, 3.0) * np.linspace(1.0, 0.5, d)
    X = (
        centres
        + rng.standard_t(4, (n, d)) @ np.triu(np.full((d, d), 0.3), 1)
        + rng.standard_t(4, (n, d))
    )
    outliers = rng.random(n) < 0.02
    X[outliers] = rng.uniform(-30, 30, (outliers.sum(), d))
    return X


def _fit(monkeypatch, engine, *args, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(student_t, "_ENGINE", engine)
        return fit_student_t_em(*args, **kwargs)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("d", [1, 3])
def test_compiled_fit_equals_the_numpy_fit(d, covariance_type, weighted, monkeypatch):
    X = _data(1200, d, seed=d)
    assert X.shape[0] >= student_t._KERNEL_MIN_SAMPLES
    rng = np.random.default_rng(7)
    weight = rng.integers(0, 4, X.shape[0]).astype(float) if weighted else None
    kwargs = {"covariance_type": covariance_type, "sample_weight": weight, "random_state": 0}
    compiled = _fit(monkeypatch, "compiled", X, 2, **kwargs)
    reference = _fit(monkeypatch, "numpy", X, 2, **kwargs)
    assert compiled.n_iter == reference.n_iter
    np.testing.assert_allclose(compiled.lower_bounds, reference.lower_bounds, rtol=1e-12)
    np.testing.assert_allclose(compiled.weights, reference.weights, rtol=1e-9)
    for name in ("means", "covariances", "dof"):
        np.testing.assert_allclose(
            compiled.params[name], reference.params[name], rtol=1e-8, atol=1e-10
        )


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("d", [1, 2, 4])
def test_one_e_step_equals_scipys_t_densities(d, weighted):
    """Responsibilities, r u and sum r (log u - u) of one pass, against scipy's t."""
    rng = np.random.default_rng(d)
    n, k = 700, 3  # three blocks of rows, the last one partial
    X = rng.normal(size=(n, d)) * 3.0
    means = rng.normal(size=(k, d))
    A = rng.normal(size=(k, d, d))
    covariances = A @ A.transpose(0, 2, 1) + np.eye(d)
    dof = np.array([1.3, 4.0, 25.0])
    weights = np.array([0.2, 0.5, 0.3])
    row_weight = rng.integers(0, 3, n).astype(float) if weighted else np.zeros(0)
    w = row_weight if weighted else np.ones(n)

    log_dens = np.column_stack(
        [
            stats.multivariate_t(means[j], covariances[j], df=dof[j]).logpdf(X).reshape(n)
            for j in range(k)
        ]
    )
    joint = np.log(weights) + log_dens
    log_p = np.logaddexp.reduce(joint, axis=1)
    resp = np.exp(joint - log_p[:, None]) * w[:, None]
    delta = np.array(
        [
            np.einsum("ni,ij,nj->n", X - means[j], np.linalg.inv(covariances[j]), X - means[j])
            for j in range(k)
        ]
    ).T
    u = (dof + d) / (dof + delta)

    full = full_covariances(compute_precision_cholesky(covariances, "full"), "full", k, d)
    log_det = -2.0 * np.log(np.diagonal(full, axis1=1, axis2=2)).sum(axis=1)
    log_const = np.log(weights) + student_t.t_log_density(0.0, log_det, dof, d)
    out_resp, out_weighted, out_expected = np.empty((n, k)), np.empty((n, k)), np.empty(k)
    kernel = student_t._kernel()
    total = kernel.t_e_step(
        np.ascontiguousarray(X), means, full, log_const, dof, row_weight, out_resp,
        out_weighted, out_expected,
    )  # fmt: skip
    np.testing.assert_allclose(total, w @ log_p, rtol=1e-12)
    np.testing.assert_allclose(out_resp, resp, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(out_weighted, resp * u, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(out_expected, (resp * (np.log(u) - u)).sum(axis=0), rtol=1e-10)


def test_a_row_beyond_the_floats_falls_back_to_numpy(monkeypatch):
    """A row whose squared distance overflows: the pass reports it (NaN), NumPy's step runs.

    Such a row also overflows the scatter of the M-step, so both engines end in the same
    FitError, naming the covariance.
    """
    X = _data(1100, 2, seed=3)
    X[17] = [1e200, -1e200]
    kernel = student_t._kernel()
    precision = compute_precision_cholesky(np.stack([np.eye(2)] * 2), "full")
    nan = kernel.t_e_step(
        np.ascontiguousarray(X), np.zeros((2, 2)), precision, np.zeros(2), np.array([3.0, 5.0]),
        np.zeros(0), np.empty((1100, 2)), np.empty((1100, 2)), np.empty(2),
    )  # fmt: skip
    assert math.isnan(nan)
    messages = []
    for engine in ("compiled", "numpy"):
        with pytest.raises(FitError, match="NaN or infinite") as caught:
            _fit(monkeypatch, engine, X, 2, random_state=0)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


def test_newton_dof_root_equals_brents():
    """The warm-started Newton root of the dof equation is Brent's, from any start."""
    rng = np.random.default_rng(0)
    for _ in range(2000):
        low, high = sorted(rng.uniform(0.05, 300.0, 2))
        target = rng.uniform(low, high)
        # the constant that makes ``target`` the root
        constant = float(digamma(0.5 * target)) - math.log(0.5 * target)
        start = rng.uniform(0.01, 400.0)
        root = student_t._dof_root(constant, low, high, start)
        assert root is not None

        def equation(nu, constant=constant):
            return math.log(0.5 * nu) - float(digamma(0.5 * nu)) + constant

        reference = brentq(equation, low, high, xtol=1e-12, rtol=4 * np.finfo(float).eps)
        assert abs(root - reference) <= 1e-11 * max(1.0, reference)
        assert abs(root - target) <= 1e-9 * max(1.0, target)
