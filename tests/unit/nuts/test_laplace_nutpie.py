"""Laplace coordinates around nutpie's compiled callbacks (bayesmix.nuts._nutpie_internals).

A correlated Gaussian written as nutpie's C callbacks stands in for a compiled PyMC
model (compiling one takes tens of seconds; the slow suite samples real ones).
"""

import dataclasses

import numba
import numpy as np
import pytest
from nutpie.compile_pymc import CompiledPyMCModel

from bayesmix.nuts._nutpie_internals import (
    _C_EXPAND,
    _C_LOGP,
    _as_pointer,
    call_c,
    compiled_expand,
    compiled_logp_dlogp,
    in_laplace_coordinates,
)
from bayesmix.nuts.laplace import corner_start, laplace_affine, negative_hessian

DIM = 3
MEAN = np.array([1.0, -2.0, 0.5])
# Scales 1 to 0.2 and correlations up to 0.42: eigenvalues 0.037 to 2.28.
COV = np.array([[1.0, 0.6, 0.05], [0.6, 2.0, -0.1], [0.05, -0.1, 0.05]])
BAD_REGION = 40.0  # the stand-in reports a non-finite gradient (code 3) beyond x[0] > this


def _gaussian_logp(dim, x_, out_, logp_, user_data):  # pragma: no cover - compiled
    meta = numba.carray(user_data, (2,), np.int64)
    mean = numba.carray(_as_pointer(meta[0]), (dim,), np.float64)
    precision = numba.carray(_as_pointer(meta[1]), (dim, dim), np.float64)
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, (1,))
    if x[0] > BAD_REGION:
        return 3
    r = x - mean
    g = -(precision @ r)
    out[:] = g
    logp[0] = 0.5 * (r @ g)
    return 0


def _gaussian_expand(dim, expanded, x_, out_, user_data):  # pragma: no cover - compiled
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (expanded,))
    out[:dim] = x
    out[dim:] = 2.0 * x
    return 0


@pytest.fixture(scope="module")
def gaussian_model():
    """The stand-in as a nutpie ``CompiledPyMCModel`` storing ``x`` and ``twice``."""
    mean = MEAN.copy()
    precision = np.linalg.inv(COV)  # test-only reference value
    user_data = np.array([mean.ctypes.data, precision.ctypes.data], dtype=np.int64)
    model = CompiledPyMCModel(
        compiled_logp_func=numba.cfunc(_C_LOGP)(_gaussian_logp),
        compiled_expand_func=numba.cfunc(_C_EXPAND)(_gaussian_expand),
        initial_point_func=lambda seed: np.zeros(DIM),
        shared_data={"mean": mean, "precision": precision},  # keeps them alive
        shared_var_keys={},
        user_data=user_data,
        n_expanded=2 * DIM,
        shape_info=(["x", "twice"], [slice(0, DIM), slice(DIM, 2 * DIM)], [(DIM,), (DIM,)]),
        logp_func=None,
        expand_func=None,
        _n_dim=DIM,
        _shapes={"x": (DIM,), "twice": (DIM,)},
        _coords={},
        dims={},
    )
    return model


def _affine(model, start):
    grad = lambda x: compiled_logp_dlogp(model, x)[1]  # noqa: E731
    return laplace_affine(negative_hessian(grad, start), start)


def test_callbacks_in_u_are_the_model_at_shift_plus_factor_u(gaussian_model, rng):
    start = MEAN + 0.3 * rng.standard_normal(DIM)
    affine = _affine(gaussian_model, start)
    wrapped = in_laplace_coordinates(gaussian_model, affine, corner_start(DIM))
    for _ in range(5):
        u = rng.standard_normal(DIM)
        x = affine.shift + affine.factor @ u
        value_u, grad_u = compiled_logp_dlogp(wrapped, u)
        value_x, grad_x = compiled_logp_dlogp(gaussian_model, x)
        assert value_u == pytest.approx(value_x, rel=1e-13, abs=1e-13)
        np.testing.assert_allclose(grad_u, affine.factor.T @ grad_x, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            compiled_expand(wrapped, u), np.concatenate([x, 2.0 * x]), rtol=1e-13
        )
    # The Laplace map whitens a Gaussian: grad(u) - grad(0) = -u.
    corner = np.array([1.0, -1.0, 1.0])
    change = compiled_logp_dlogp(wrapped, corner)[1] - compiled_logp_dlogp(wrapped, 0 * corner)[1]
    np.testing.assert_allclose(change, -corner, atol=1e-6)


def _failing_logp(dim, x_, out_, logp_, user_data):  # pragma: no cover - compiled
    return 5


def test_the_wrapped_callbacks_code_is_passed_on(gaussian_model):
    affine = _affine(gaussian_model, MEAN)
    wrapped = in_laplace_coordinates(gaussian_model, affine, corner_start(DIM))
    # A u whose x lies in the stand-in's bad region: its code 3 reaches nutpie.
    u = np.linalg.solve(affine.factor, np.array([2 * BAD_REGION, 0.0, 0.0]) - affine.shift)
    grad, logp = np.empty(DIM), np.empty(1)
    code = call_c(
        wrapped.compiled_logp_func, DIM, u, grad, logp, int(wrapped.user_data.ctypes.data)
    )
    assert code == 3
    failing = dataclasses.replace(
        gaussian_model, compiled_logp_func=numba.cfunc(_C_LOGP)(_failing_logp)
    )
    wrapped = in_laplace_coordinates(failing, affine, corner_start(DIM))
    with pytest.raises(RuntimeError, match="code 5"):
        compiled_logp_dlogp(wrapped, np.zeros(DIM))


def test_data_cannot_change_after_wrapping(gaussian_model):
    wrapped = in_laplace_coordinates(gaussian_model, _affine(gaussian_model, MEAN), None)
    with pytest.raises(TypeError, match="wrapped model"):
        wrapped.with_data(x_data=np.zeros(3))


def test_nutpie_samples_the_model_in_laplace_coordinates(gaussian_model):
    import nutpie

    start = MEAN + np.array([0.5, -0.5, 0.1])  # the map is built away from the mode
    affine = _affine(gaussian_model, start)
    wrapped = in_laplace_coordinates(gaussian_model, affine, corner_start(DIM))
    idata = nutpie.sample(wrapped, draws=1000, tune=500, chains=2, seed=3, progress_bar=False)
    x = idata["posterior"]["x"].values.reshape(-1, DIM)
    twice = idata["posterior"]["twice"].values.reshape(-1, DIM)
    np.testing.assert_allclose(twice, 2.0 * x)  # stored on the model's scale, not in u
    # 2000 draws of a Gaussian (ESS >= ~1000): mean within 5 standard errors, covariance
    # within 15% (plus 0.05 absolute for the small entries).
    se = np.sqrt(np.diag(COV) / 1000)
    assert np.all(np.abs(x.mean(axis=0) - MEAN) < 5 * se)
    np.testing.assert_allclose(np.cov(x.T), COV, rtol=0.15, atol=0.05)
    assert int(idata["sample_stats"]["diverging"].sum()) == 0


def test_no_laplace_map_when_the_gradient_fails_near_the_start(caplog):
    import logging

    from bayesmix.nuts import sampler as _nutpie

    def failing(x):
        raise RuntimeError("the logp callback failed with code 1")

    with caplog.at_level(logging.INFO, logger="bayesmix"):
        assert _nutpie.laplace_map(failing, np.zeros(DIM)) is None
    assert "gradient failed near the start" in caplog.text
    # Non-finite curvature (codes 3 and 4 give non-finite values) also means no map.
    assert _nutpie.laplace_map(lambda x: np.full(DIM, np.nan), np.zeros(DIM)) is None
