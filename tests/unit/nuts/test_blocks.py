"""The numba building blocks of the fused kernels (bayesmix.nuts._blocks) against NumPy."""

from __future__ import annotations

import numba
import numpy as np
from scipy import special

from bayesmix.nuts._blocks import digamma, log_block, simplex_gradient, simplex_weights


@numba.njit
def _logs(a):
    out = a.copy()
    log_block(out, np.empty_like(a), a.shape[0])
    return out


def test_log_block_is_numpys_log_to_one_ulp():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            1.0 + rng.exponential(1e-9, 500),  # log1p's range: absolute error is what counts
            1.0 + rng.exponential(1.0, 500),
            np.geomspace(1e-300, 1e300, 3000),
            [1.0, 2.0, np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 0.0), np.finfo(float).max],
        ]
    )
    got, expected = _logs(x), np.log(x)
    assert np.all(np.abs(got - expected) <= np.spacing(np.abs(expected)))
    np.testing.assert_array_equal(_logs(np.array([np.inf, np.nan]))[0], np.inf)
    assert np.isnan(_logs(np.array([np.inf, np.nan]))[1])


def test_digamma_equals_scipy():
    x = np.concatenate([np.geomspace(1e-3, 1e5, 400), np.linspace(0.5, 12.0, 200)])
    ours = np.array([digamma(value) for value in x])
    np.testing.assert_allclose(ours, special.digamma(x), rtol=1e-12, atol=1e-11)


@numba.njit
def _simplex(x, k, g_logw):
    log_weights, weights = simplex_weights(x, k)
    grad = np.zeros(k - 1)
    simplex_gradient(g_logw, weights, grad)
    return log_weights, weights, grad


def test_simplex_weights_and_gradient_are_pymcs_transform_and_its_chain_rule():
    # y = (v, -sum v), log pi = y - logsumexp(y); the gradient of c . log pi in v.
    rng = np.random.default_rng(1)
    v, c = rng.normal(size=3), rng.normal(size=4)
    log_weights, weights, grad = _simplex(v, 4, c)
    y = np.append(v, -v.sum())
    np.testing.assert_allclose(log_weights, y - special.logsumexp(y), rtol=1e-14)
    np.testing.assert_allclose(weights, special.softmax(y), rtol=1e-14)

    def objective(v):
        y = np.append(v, -v.sum())
        return c @ (y - special.logsumexp(y))

    step = 1e-6
    numeric = [(objective(v + step * e) - objective(v - step * e)) / (2 * step) for e in np.eye(3)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)
