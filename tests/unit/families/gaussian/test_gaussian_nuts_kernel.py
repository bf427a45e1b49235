"""The fused Gaussian-mixture kernel (bayesmix.families.gaussian._nuts_kernel) against the PyMC
model.

Reference values come from the graph of ``GaussianMixture(...).build_model(X)``: the joint
log density with the Jacobians of the default transforms (``model.logp(jacobian=True)``,
what ``model.compile_logp()`` compiles) and its gradient with respect to the value
variables (what ``model.compile_dlogp()`` compiles), evaluated with PyTensor's Python
implementations (and, for one-off evaluations, without graph rewrites), which keeps
compilation short.
"""

import logging

import arviz_stats as azs
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import bayesmix as bm
from bayesmix.families.gaussian import _nuts_kernel as fg
from bayesmix.nuts import laplace as _laplace
from bayesmix.nuts import sampler as _nutpie
from bayesmix.nuts.laplace import Affine, corner_start, negative_hessian
from bayesmix.priors import Prior

# The Python implementations of the ops; without rewrites (quick to compile), or with the
# usual rewrites except elementwise fusion: the Python implementation of fused
# elementwise ops loses precision (gradients off by up to 1e-7, relative) and is slow.
_PY_MODE = pytensor.compile.mode.Mode(linker="py", optimizer=None)
_PY_FAST = pytensor.compile.mode.Mode(linker="py", optimizer="fast_run").excluding("fusion")
_RTOL = 1e-9


@pytest.fixture(autouse=True, scope="module")
def _python_pytensor():
    """No C compilation in this module, whatever imported PyTensor first.

    ``tests/conftest.py`` sets ``cxx=""`` for the whole suite; this keeps the module's
    reference computations on the Python linker even when it runs on its own.
    """
    with pytensor.config.change_flags(cxx=""):
        yield


# -- helpers --------------------------------------------------------------------------------


def _data(rng, n, d, k=2):
    centres = rng.normal(scale=4.0, size=(k, d)) + 10.0
    labels = rng.integers(k, size=n)
    return centres[labels] + rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d)


def _custom_priors(covariance_type, k, d, rng):
    sigma_shape = {"full": (d,), "diag": (k, d), "tied": (d,), "spherical": ()}[covariance_type]
    priors = {
        "weights": Prior("Dirichlet", a=[0.3, 2.0, 5.0][:k] if k > 1 else 0.3),
        "means": Prior(
            "Normal",
            mu=rng.normal(10.0, 2.0, size=(k, d)).tolist(),
            sigma=rng.uniform(1.0, 4.0, size=d).tolist(),
        ),
        "sigma": Prior("HalfNormal", sigma=np.asarray(rng.uniform(0.5, 3.0, size=sigma_shape))),
    }
    if d > 1 and covariance_type in ("full", "tied"):
        priors["corr_chol"] = Prior("LKJCorr", eta=0.7)
    return priors


def _prepare(covariance_type, k, X, priors=None):
    gm = bm.GaussianMixture(n_components=k, covariance_type=covariance_type, priors=priors)
    data, resolved = gm._prepare(X)
    spec = {
        "covariance_type": covariance_type,
        "n_components": k,
        "n_features": data.n_features,
        "priors": resolved,
        "features": data.features,
        "obs": data.obs,
    }
    return gm, data, resolved, spec


def _value_vars(model):
    return [model.rvs_to_values[rv] for rv in model.free_RVs]


def _reference_logp_dlogp(model, shapes, mode=_PY_MODE):
    """PyMC's joint log density and gradient of the flat unconstrained vector."""
    values = _value_vars(model)
    logp = model.logp(jacobian=True)
    fn = pytensor.function(values, [logp, *pt.grad(logp, values)], mode=mode)
    sizes = [int(np.prod(shape)) for shape in shapes]

    def logp_dlogp(x):
        parts = np.split(x, np.cumsum(sizes)[:-1])
        out = fn(*[p.reshape(s) for p, s in zip(parts, shapes, strict=True)])
        return float(out[0]), np.concatenate([np.ravel(g) for g in out[1:]])

    return logp_dlogp


def _value_shapes(model):
    point = model.initial_point()
    return [point[v.name].shape for v in _value_vars(model)]


# -- log density and gradient ------------------------------------------------------------------

# Every (K, D) in {1, 2, 3}^2 for full and diag, default and custom priors alternating.
_CASES = (
    [("full", k, d, (k + d) % 2 == 1) for k in (1, 2, 3) for d in (1, 2, 3)]
    + [("diag", k, d, (k + d) % 2 == 0) for k in (1, 2, 3) for d in (1, 2, 3)]
    + [("spherical", 2, 2, False), ("spherical", 3, 1, True)]
    + [("tied", 3, 2, False), ("tied", 2, 3, True), ("tied", 2, 1, True)]
)


@pytest.mark.parametrize(("covariance_type", "k", "d", "custom"), _CASES)
def test_logp_gradient_and_expand_equal_pymc(covariance_type, k, d, custom):
    rng = np.random.default_rng(1000 * k + 10 * d + custom)
    X = _data(rng, 40, d)
    priors = _custom_priors(covariance_type, k, d, rng) if custom else None
    gm, data, resolved, spec = _prepare(covariance_type, k, X, priors)
    model = gm._build(data, resolved)
    fast = fg.build(spec)
    assert fast is not None

    # The unconstrained layout is nutpie's: free variables in order, C-order flattened.
    shapes = _value_shapes(model)
    assert [(value, shape) for _, value, shape in fast.free] == [
        (v.name, shape) for v, shape in zip(_value_vars(model), shapes, strict=True)
    ]
    # One function: log density, gradient, and every variable nutpie's PyMC path stores.
    values = _value_vars(model)
    logp = model.logp(jacobian=True)
    stored = [name for name, _ in fast.stored]
    constrained = {v.name: v for v in model.unobserved_value_vars}
    fn = pytensor.function(
        values,
        [logp, *pt.grad(logp, values), *[constrained[name] for name in stored]],
        mode=_PY_MODE,
    )
    sizes = [int(np.prod(shape)) for shape in shapes]
    shared = fast.shared_data(data.values)
    for _ in range(5):
        x = rng.normal(scale=0.8, size=fast.n_dim)
        if d > 1:  # means near the data, where the likelihood is not flat
            o = k - 1
            x[o : o + k * d] = (X[rng.integers(len(X), size=k)] + rng.normal(size=(k, d))).ravel()
        else:
            x[k - 1] = X.min() + rng.normal()
        parts = np.split(x, np.cumsum(sizes)[:-1])
        out = fn(*[p.reshape(s) for p, s in zip(parts, shapes, strict=True)])
        ref_grad = np.concatenate([np.ravel(g) for g in out[1 : 1 + len(values)]])
        value, grad = fast.logp_dlogp(x, **shared)
        np.testing.assert_allclose(value, out[0], rtol=_RTOL)
        np.testing.assert_allclose(grad, ref_grad, rtol=_RTOL, atol=1e-10 * np.abs(ref_grad).max())
        ours = fast.expand(x)
        assert list(ours) == stored
        for name, ref in zip(stored, out[1 + len(values) :], strict=True):
            np.testing.assert_allclose(ours[name], ref, rtol=1e-12, atol=1e-14)


# Every prior family the Gaussian family accepts for the means and the scales, in PyMC's
# canonical parameters, each scale family once with Normal and once with StudentT means.
_SCALE_PRIORS = {
    "HalfNormal": {"sigma": [1.5, 3.0]},
    "HalfStudentT": {"nu": 3.0, "sigma": 2.0},
    "HalfCauchy": {"beta": 1.5},
    "Exponential": {"lam": [0.5, 2.0]},
    "Gamma": {"alpha": 2.0, "beta": 1.0},
    "InverseGamma": {"alpha": 3.0, "beta": 2.0},
    "LogNormal": {"mu": 0.3, "sigma": 1.0},
}
_MEANS_PRIORS = {
    "Normal": {"mu": [0.5, -1.0], "sigma": 5.0},
    "StudentT": {"nu": 3.0, "mu": 1.0, "sigma": [4.0, 2.0]},
}


@pytest.mark.parametrize("means", list(_MEANS_PRIORS))
@pytest.mark.parametrize("scales", list(_SCALE_PRIORS))
def test_every_prior_family_equals_compile_logp_and_compile_dlogp(means, scales):
    rng = np.random.default_rng(len(means) * 100 + len(scales))
    covariance_type = ["full", "diag", "tied", "spherical"][len(scales) % 4]
    if covariance_type == "spherical":
        sigma = {key: np.asarray(value).ravel()[0] for key, value in _SCALE_PRIORS[scales].items()}
    else:
        sigma = _SCALE_PRIORS[scales]
    priors = {"means": Prior(means, **_MEANS_PRIORS[means]), "sigma": Prior(scales, **sigma)}
    X = _data(rng, 50, 2, k=3)
    gm, data, resolved, spec = _prepare(covariance_type, 3, X, priors)
    model = gm._build(data, resolved)
    fast = fg.build(spec)
    assert fast is not None
    logp = model.compile_logp(jacobian=True, mode=_PY_FAST)
    dlogp = model.compile_dlogp(jacobian=True, mode=_PY_FAST)
    shapes = _value_shapes(model)
    sizes = [int(np.prod(shape)) for shape in shapes]
    shared = fast.shared_data(data.values)
    compiled = fast.nutpie_model(shared)
    for _ in range(3):
        x = rng.normal(scale=0.7, size=fast.n_dim)
        parts = np.split(x, np.cumsum(sizes)[:-1])
        point = {
            v.name: p.reshape(s) for v, p, s in zip(_value_vars(model), parts, shapes, strict=True)
        }
        value, grad = fast.logp_dlogp(x, **shared)
        np.testing.assert_allclose(value, logp(point), rtol=_RTOL)
        np.testing.assert_allclose(grad, dlogp(point), rtol=_RTOL, atol=1e-10)
        c_value, c_grad = compiled.logp_dlogp(x)  # the C callback nutpie calls
        assert c_value == value
        np.testing.assert_array_equal(c_grad, grad)


def test_literal_compile_logp_and_compile_dlogp(rng):
    X = _data(rng, 60, 2, k=3)
    gm, data, resolved, spec = _prepare("full", 3, X)
    model = gm._build(data, resolved)
    fast = fg.build(spec)
    logp = model.compile_logp(jacobian=True, mode=_PY_FAST)
    dlogp = model.compile_dlogp(jacobian=True, mode=_PY_FAST)
    shapes = _value_shapes(model)
    sizes = [int(np.prod(shape)) for shape in shapes]
    shared = fast.shared_data(data.values)
    for _ in range(5):
        x = rng.normal(scale=0.5, size=fast.n_dim)
        x[2:8] = X[rng.integers(len(X), size=3)].ravel()
        point = {
            v.name: p.reshape(s)
            for v, p, s in zip(
                _value_vars(model), np.split(x, np.cumsum(sizes)[:-1]), shapes, strict=True
            )
        }
        value, grad = fast.logp_dlogp(x, **shared)
        np.testing.assert_allclose(value, logp(point), rtol=_RTOL)
        np.testing.assert_allclose(grad, dlogp(point), rtol=_RTOL, atol=1e-10)


def test_start_equals_pymc_initial_point(rng):
    for covariance_type, d in (("full", 3), ("full", 1), ("tied", 2), ("spherical", 2)):
        X = _data(rng, 80, d, k=3)
        gm, data, resolved, spec = _prepare(covariance_type, 3, X)
        model = gm._build(data, resolved)
        em = gm._run_em(data, np.random.default_rng(0), resolved)
        start = gm._start_from_em(em, d)
        free = {rv.name for rv in model.free_RVs}
        start = {key: value for key, value in start.items() if key in free}
        np.testing.assert_allclose(
            fg.build(spec).unconstrain(start), _nutpie._flat_start(model, start), rtol=1e-12
        )


def test_new_data_and_priors_need_no_recompilation(rng):
    X = _data(rng, 50, 2)
    _, data, _, spec = _prepare("full", 2, X)
    fast = fg.build(spec)
    compiled = fast.nutpie_model(fast.shared_data(data.values))
    x = rng.normal(scale=0.5, size=fast.n_dim)
    x[1:5] = X[:2].ravel()
    compiled.logp_dlogp(x)
    kernels = len(fg.logp_dlogp.signatures)
    callbacks = fg.c_callbacks()

    # New observations (another N) and new prior parameters, through nutpie's with_data.
    X2 = _data(rng, 73, 2)
    priors2 = _custom_priors("full", 2, 2, rng)
    gm2, data2, resolved2, _ = _prepare("full", 2, X2, priors2)
    model2 = gm2._build(data2, resolved2)
    updated = compiled.with_data(**fast.shared_data(X2, resolved2))
    value, grad = updated.logp_dlogp(x)
    ref_value, ref_grad = _reference_logp_dlogp(model2, _value_shapes(model2))(x)
    np.testing.assert_allclose(value, ref_value, rtol=_RTOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=_RTOL, atol=1e-10 * np.abs(ref_grad).max())

    # Other shapes and covariance types reuse the same machine code too.
    for covariance_type, k, d in (("diag", 3, 1), ("tied", 1, 3), ("full", 4, 4)):
        X3 = _data(rng, 20, d)
        other = fg.build(_prepare(covariance_type, k, X3)[3])
        other.logp_dlogp(np.zeros(other.n_dim), **other.shared_data(X3))
    assert len(fg.logp_dlogp.signatures) == kernels == 1
    assert fg.c_callbacks() is callbacks
    # The original model still reads its own data.
    original = fast.logp_dlogp(x, **fast.shared_data(X))[0]
    np.testing.assert_allclose(compiled.logp_dlogp(x)[0], original)


@pytest.mark.parametrize(("covariance_type", "k", "d", "custom"), _CASES[::2])
def test_c_callbacks_equal_the_kernel(covariance_type, k, d, custom):
    """nutpie calls the C functions: same log density, gradient and stored values."""
    rng = np.random.default_rng(7 + 100 * k + d)
    X = _data(rng, 300, d)
    priors = _custom_priors(covariance_type, k, d, rng) if custom else None
    _, data, resolved, spec = _prepare(covariance_type, k, X, priors)
    fast = fg.build(spec)
    shared = fast.shared_data(data.values, resolved)
    compiled = fast.nutpie_model(shared)
    assert type(compiled).__name__ == "CallbackCompiledModel"
    assert compiled.n_dim == fast.n_dim
    assert compiled.shapes == dict(fast.stored)
    for _ in range(3):
        x = rng.normal(scale=0.5, size=fast.n_dim)
        value, grad = compiled.logp_dlogp(x)
        ref_value, ref_grad = fast.logp_dlogp(x, **shared)
        assert value == ref_value
        np.testing.assert_array_equal(grad, ref_grad)
        expanded = fast.expand(x)
        np.testing.assert_array_equal(
            compiled.expand(x), np.concatenate([expanded[name].ravel() for name, _ in fast.stored])
        )
    # A point without a finite density: -inf, reported to nutpie as a recoverable error.
    x[fast.n_dim - 1] = np.nan
    assert compiled.logp_dlogp(x)[0] == -np.inf


def test_c_model_rejects_bad_data(rng):
    X = _data(rng, 30, 2)
    _, data, _, spec = _prepare("full", 2, X)
    fast = fg.build(spec)
    compiled = fast.nutpie_model(fast.shared_data(data.values))
    with pytest.raises(KeyError, match="unknown data"):
        compiled.with_data(y_data=X)
    with pytest.raises(ValueError, match="shape"):
        compiled.with_data(x_data=np.ones((5, 3)))
    with pytest.raises(ValueError, match="weights_a"):
        compiled.with_data(weights_a=np.ones(3))
    # The arrays the C code reads are private read-only copies.
    shared = fast.shared_data(data.values)
    compiled = fast.nutpie_model(shared)
    shared["x_data"][:] = 0.0
    assert not compiled.shared["x_data"].flags.writeable
    assert np.all(compiled.shared["x_data"] == data.values)


def test_nutpie_without_the_c_interface_uses_pyfunc(rng, monkeypatch):
    import nutpie._lib

    X = _data(rng, 40, 2)
    _, data, _, spec = _prepare("diag", 2, X)
    fast = fg.build(spec)
    shared = fast.shared_data(data.values)
    monkeypatch.delattr(nutpie._lib, "LogpFunc")
    compiled = fast.nutpie_model(shared)
    assert type(compiled).__name__ != "CallbackCompiledModel"
    x = rng.normal(scale=0.5, size=fast.n_dim)
    value, grad = compiled._make_logp_func()(x, **compiled._shared_data)
    ref_value, ref_grad = fast.logp_dlogp(x, **shared)
    assert value == ref_value
    np.testing.assert_array_equal(grad, ref_grad)


def _random_affine(rng, n_dim):
    return Affine(rng.normal(scale=0.5, size=n_dim), rng.normal(scale=0.3, size=(n_dim, n_dim)))


@pytest.mark.parametrize(("covariance_type", "k", "d"), [("full", 3, 2), ("diag", 2, 1)])
def test_c_callbacks_in_affine_coordinates(rng, covariance_type, k, d):
    """With a map x = shift + F u: the density at x, the gradient F^T grad_x, values at x."""
    X = _data(rng, 300, d)
    _, data, _, spec = _prepare(covariance_type, k, X)
    fast = fg.build(spec)
    shared = fast.shared_data(data.values)
    affine = _random_affine(rng, fast.n_dim)
    compiled = fast.nutpie_model(shared, affine=affine)
    assert type(compiled).__name__ == "CallbackCompiledModel"
    for _ in range(3):
        u = rng.normal(scale=0.5, size=fast.n_dim)
        x = affine.shift + affine.factor @ u
        value, grad = compiled.logp_dlogp(u)
        ref_value, ref_grad = fast.logp_dlogp(x, **shared)
        np.testing.assert_allclose(value, ref_value, rtol=1e-13)
        np.testing.assert_allclose(grad, affine.factor.T @ ref_grad, rtol=1e-11, atol=1e-11)
        expanded = fast.expand(x)
        np.testing.assert_allclose(
            compiled.expand(u),
            np.concatenate([expanded[name].ravel() for name, _ in fast.stored]),
            rtol=1e-12,
        )
    # New data keep the map; the map's arrays are private read-only copies.
    updated = compiled.with_data(x_data=X[:100])
    np.testing.assert_array_equal(updated.affine.factor, affine.factor)
    affine.factor[:] = 0.0
    assert not compiled.affine.factor.flags.writeable
    assert np.any(compiled.affine.factor != 0.0)
    with pytest.raises(ValueError, match="factor of shape"):
        fast.nutpie_model(shared, affine=Affine(np.zeros(fast.n_dim), np.eye(fast.n_dim + 1)))


def test_pyfunc_fallback_in_affine_coordinates(rng, monkeypatch):
    import nutpie._lib

    X = _data(rng, 40, 2)
    _, data, _, spec = _prepare("full", 2, X)
    fast = fg.build(spec)
    shared = fast.shared_data(data.values)
    affine = _random_affine(rng, fast.n_dim)
    monkeypatch.delattr(nutpie._lib, "LogpFunc")
    compiled = fast.nutpie_model(shared, affine=affine)
    assert type(compiled).__name__ != "CallbackCompiledModel"
    u = rng.normal(scale=0.5, size=fast.n_dim)
    x = affine.shift + affine.factor @ u
    value, grad = compiled._make_logp_func()(u, **compiled._shared_data)
    ref_value, ref_grad = fast.logp_dlogp(x, **shared)
    assert value == ref_value
    np.testing.assert_allclose(grad, affine.factor.T @ ref_grad, rtol=1e-12, atol=1e-12)
    expanded = compiled._make_expand_func(0, 0, 0)(u, **compiled._shared_data)
    np.testing.assert_allclose(expanded["covariances"], fast.expand(x)["covariances"])


def test_laplace_coordinates_give_nutpie_a_first_metric_in_the_right_units():
    """nutpie's first metric is 1 / |grad| at the start; the posterior variances are ~1/N.

    In the model's coordinates, at the EM estimate moved by 1e-3 (the start before the
    Laplace coordinates), that guess is orders of magnitude off for N = 20000; in Laplace
    coordinates, from a corner start, it is within 25% of one, the posterior variance
    there.
    """
    X = bm.datasets.make_mixture(
        20_000,
        [0.3, 0.3, 0.4],
        [[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]],
        [np.eye(2), [[1.0, 0.5], [0.5, 1.0]], 0.5 * np.eye(2)],
        random_state=0,
    )[0]
    gm, data, resolved, spec = _prepare("full", 3, X)
    em = gm._run_em(data, np.random.default_rng(0), resolved)
    fast = fg.build(spec)
    flat = fast.unconstrain(gm._start_from_em(em, 2))
    shared = fast.shared_data(data.values)
    hessian = negative_hessian(lambda x: fast.logp_dlogp(x, **shared)[1], flat)
    variance = np.diag(np.linalg.inv(hessian))  # test-only reference: Laplace variances

    _, grad = fast.logp_dlogp(_nutpie.nudged(flat)(0), **shared)
    old_ratio = (1.0 / np.abs(grad)) / variance
    assert np.min(old_ratio) > 100.0  # measured: 418 to 12805

    affine = _nutpie.laplace_map(lambda x: fast.logp_dlogp(x, **shared)[1], flat)
    compiled = fast.nutpie_model(shared, affine=affine)
    ratios = [
        1.0 / np.abs(compiled.logp_dlogp(corner_start(fast.n_dim)(seed))[1]) for seed in range(4)
    ]
    assert np.min(ratios) > 0.8  # measured: 0.94 to 1.08
    assert np.max(ratios) < 1.25


def test_no_laplace_coordinates_above_the_size_limit(rng, monkeypatch, caplog):
    X = _data(rng, 60, 2)
    gm, data, resolved, spec = _prepare("full", 2, X)
    em = gm._run_em(data, np.random.default_rng(0), resolved)
    start = gm._start_from_em(em, 2)
    monkeypatch.setattr(_laplace, "MAX_DIM", 5)
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        compiled = _nutpie._fused_compiled(fg.build(spec), {"x_data": data.values}, start)
    assert compiled.affine is None
    assert "no Laplace coordinates" in caplog.text
    flat = fg.build(spec).unconstrain(start)
    np.testing.assert_array_equal(compiled.initial_point_func(1), _nutpie.nudged(flat)(1))


def test_kernel_handles_blocks_and_non_finite_points(rng):
    # More observations than one block (256), with a remainder.
    X = _data(rng, 1000, 2)
    gm, data, resolved, spec = _prepare("full", 2, X)
    fast = fg.build(spec)
    shared = fast.shared_data(X)
    x = rng.normal(scale=0.3, size=fast.n_dim)
    x[1:5] = X[:2].ravel()
    value, grad = fast.logp_dlogp(x, **shared)
    model = gm._build(data, resolved)
    ref_value, ref_grad = _reference_logp_dlogp(model, _value_shapes(model))(x)
    np.testing.assert_allclose(value, ref_value, rtol=_RTOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=_RTOL, atol=1e-10 * np.abs(ref_grad).max())
    # A point whose density is not finite is reported as -inf (a divergence for nutpie).
    x[5] = 1e4  # log sigma: sigma overflows
    assert fast.logp_dlogp(x, **shared)[0] == -np.inf
    x[5] = np.nan
    assert fast.logp_dlogp(x, **shared)[0] == -np.inf


# -- what falls back to the PyMC path ----------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"covariance_type": "banded"},
        {"priors": {"means": Prior("StudentT", nu=3, mu=0, lam=1.0)}},  # not sigma
        {"priors": {"sigma": Prior("Gamma", mu=1.0, sigma=1.0)}},  # not alpha, beta
        {"priors": {"sigma": Prior("HalfCauchy", beta=[1.0, 2.0, 3.0])}},  # does not broadcast
        {"priors": {"sigma": Prior("HalfNormal", tau=1.0)}},
        {"priors": {"weights": Prior("Dirichlet", a=[1.0, 2.0, 3.0])}},  # does not broadcast
        {"priors": {"corr_chol": Prior("LKJCorr", eta=[1.0, 2.0])}},
        {"priors": {"corr_chol": None}},
    ],
)
def test_unsupported_models_fall_back(rng, change, caplog):
    X = _data(rng, 30, 2)
    _, _, resolved, spec = _prepare("full", 2, X)
    spec = dict(spec)
    for key, value in change.items():
        if key == "priors":
            priors = dict(resolved)
            for name, prior in value.items():
                if prior is None:
                    priors.pop(name)
                else:
                    priors[name] = prior
            spec["priors"] = priors
        else:
            spec[key] = value
    assert fg.build(spec) is None


def test_the_family_hands_nuts_no_target_for_priors_outside_the_kernel(rng, caplog):
    X = _data(rng, 30, 2)
    model = bm.GaussianMixture(n_components=2, priors={"sigma": Prior("Gamma", mu=1.0, sigma=1.0)})
    data, priors = model._prepare(X)
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        assert model._nuts_target(data, priors) is None
    assert "compiling the PyMC model instead" in caplog.text
    default = bm.GaussianMixture(n_components=2)
    data, priors = default._prepare(X)
    assert isinstance(default._nuts_target(data, priors), fg.FastGaussian)


def test_sample_nutpie_falls_back_to_the_pymc_model(rng, monkeypatch):
    X = _data(rng, 30, 2)
    _, data, resolved, spec = _prepare("full", 2, X)
    spec["priors"] = {**resolved, "sigma": Prior("Gamma", mu=1.0, sigma=1.0)}

    class Compiled(Exception):
        pass

    def fake_compiled(model, key):
        raise Compiled

    monkeypatch.setattr(_nutpie, "_compiled", fake_compiled)
    with pytest.raises(Compiled):
        _nutpie.sample_nutpie(
            object(),
            key="k",
            data={"x_data": data.values},
            start={},
            draws=10,
            tune=10,
            chains=1,
            cores=1,
            target_accept=0.8,
            random_seed=0,
            progressbar=False,
            target=fg.build(spec),
        )
    with pytest.raises(ValueError, match="pass one of them"):
        _nutpie.sample_nutpie(
            None,
            key="k",
            data={"x_data": data.values},
            start={},
            draws=10,
            tune=10,
            chains=1,
            cores=1,
            target_accept=0.8,
            random_seed=0,
            progressbar=False,
            target=fg.build(spec),
        )


# -- sampling ------------------------------------------------------------------------------------


def _faithful_setup():
    X = bm.datasets.load_faithful()
    gm, data, resolved, spec = _prepare("full", 2, X)
    model = gm._build(data, resolved)
    em = gm._run_em(data, np.random.default_rng(0), resolved)
    start = gm._start_from_em(em, data.n_features)
    free = {rv.name for rv in model.free_RVs}
    start = {key: value for key, value in start.items() if key in free}
    return data, model, start, spec, em


_SETTINGS = {
    "draws": 200,
    "tune": 200,
    "chains": 2,
    "cores": 1,
    "target_accept": 0.8,
    "progressbar": False,
}


def _pymc_layout_run(model, fast, data, start, seed):
    """nutpie with the PyMC model's stored variables, laid out as nutpie lays out PyMC models.

    Names, dims and coords come from nutpie's PyMC path (``_compute_shapes``,
    ``_prepare_dims_and_coords``, the transformed value variables dropped from the
    posterior) and every draw is expanded by PyMC's own graph; the log density is the fused
    kernel (equal to PyMC's, see above), so that no numba compilation of the PyMC graph is
    needed. The sampler moves in the same Laplace coordinates from the same starts, so that
    with the same seed the chains are the fused path's.
    """
    import nutpie
    from nutpie.compile_pymc import _compute_shapes, _prepare_dims_and_coords
    from nutpie.compiled_pyfunc import from_pyfunc

    values = _value_vars(model)
    joined = [v.name for v in values]
    remaining = [v for v in model.unobserved_value_vars if v.name not in joined]
    shapes_by_name = _compute_shapes(model)
    shapes = [tuple(shapes_by_name[name]) for name in joined]
    all_names = joined + [v.name for v in remaining]
    all_shapes = shapes + [tuple(shapes_by_name[v.name]) for v in remaining]
    reparameterized = [
        model.rvs_to_values[rv].name for rv in model.free_RVs if model.rvs_to_transforms.get(rv)
    ]
    dims, coords = _prepare_dims_and_coords(
        model, (all_names, [None] * len(all_names), all_shapes), reparameterized
    )
    expand_fn = model.compile_fn(
        remaining, inputs=values, point_fn=False, mode=_PY_MODE, on_unused_input="ignore"
    )
    sizes = [int(np.prod(shape)) for shape in shapes]

    def make_expand(*_):
        def expand(u, **_):
            x = affine.forward(u)
            split = np.split(x, np.cumsum(sizes)[:-1])
            parts = [p.reshape(s) for p, s in zip(split, shapes, strict=True)]
            out = dict(zip(joined, parts, strict=True))
            out.update(zip([v.name for v in remaining], expand_fn(*parts), strict=True))
            return {name: np.asarray(out[name], dtype=np.float64) for name in all_names}

        return expand

    flat = _nutpie._flat_start(model, start)
    shared = fast.shared_data(data.values)
    affine = _nutpie.laplace_map(lambda x: fast.logp_dlogp(x, **shared)[1], flat)

    def make_logp():
        return affine.wrap(fast.make_logp_fn())

    compiled = from_pyfunc(
        len(flat),
        make_logp,
        make_expand,
        [np.dtype(np.float64)] * len(all_names),
        all_shapes,
        all_names,
        coords=coords,
        dims=dims,
        shared_data=shared,
        make_initial_point_fn=corner_start(len(flat)),
        reparameterized_names=reparameterized,
    )
    settings = {k: v for k, v in _SETTINGS.items() if k != "progressbar"}
    return nutpie.sample(compiled, seed=seed, save_warmup=False, progress_bar=False, **settings)


def _layout(idata):
    out = {}
    for group in idata.children:
        ds = idata[group].to_dataset()
        out[group] = {
            "vars": [(name, da.dims, str(da.dtype)) for name, da in ds.data_vars.items()],
            "coords": {name: ds[name].values.tolist() for name in ds.coords},
        }
    return out


def _assert_same_posterior(idata, ref):
    """Posterior means within four Monte Carlo standard errors."""
    for name in ("weights", "means", "sigma", "corr_chol", "covariances"):
        mean = idata.posterior[name].mean(("chain", "draw"))
        ref_mean = ref.posterior[name].mean(("chain", "draw"))
        error = np.hypot(
            azs.mcse(idata, var_names=[name])[name], azs.mcse(ref, var_names=[name])[name]
        )
        # The unit diagonal of corr_chol has no Monte Carlo error at all.
        assert np.all(np.abs(mean - ref_mean) <= 4.0 * error + 1e-9), name


def test_fast_sampling_has_the_layout_and_values_of_the_pymc_path(caplog):
    data, model, start, spec, em = _faithful_setup()
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        idata = _nutpie.sample_nutpie(
            model,
            key=("faithful", "fast"),
            data={"x_data": data.values},
            start=start,
            random_seed=1,
            target=fg.build(spec),
            **_SETTINGS,
        )
    assert "NUTS on the fused kernel" in caplog.text
    assert int(idata.sample_stats["diverging"].sum()) == 0
    ref = _pymc_layout_run(model, fg.build(spec), data, start, seed=1)
    assert _layout(idata) == _layout(ref)
    expected = ["means", "weights", "sigma", "corr_chol", "covariances"]
    assert list(idata.posterior.data_vars) == expected
    # Same seed, same log density: the same chains, expanded by PyMC's graph. The map's
    # products are summed in another order by the C callback than by NumPy's BLAS, and
    # leapfrog trajectories amplify rounding differences (1e-8 after 400 draws); another
    # chain would differ by O(1).
    for name in expected:
        np.testing.assert_allclose(
            idata.posterior[name].values, ref.posterior[name].values, rtol=1e-5, atol=1e-6
        )
    # The posterior is where EM puts the maximum likelihood (N = 272 dominates the prior):
    # within four Monte Carlo standard errors plus half a posterior sd (the posterior mean
    # of a variance is above its maximum-likelihood estimate by O(1 / n_k)).
    point = bm.GaussianMixture(n_components=2)._point_from_em(em, 2)
    for name in ("weights", "means", "covariances"):
        draws = idata.posterior[name]
        mean = draws.mean(("chain", "draw")).values
        bound = 4.0 * azs.mcse(idata, var_names=[name])[name].values
        bound += 0.5 * draws.std(("chain", "draw")).values
        assert np.all(np.abs(mean - point[name]) <= bound), name


def test_fast_sampling_one_feature_layout(rng):
    X = np.concatenate([rng.normal(0, 1, 60), rng.normal(5, 1, 40)])
    gm, data, resolved, spec = _prepare("diag", 2, X)
    model = gm._build(data, resolved)
    em = gm._run_em(data, np.random.default_rng(0), resolved)
    start = {
        key: value
        for key, value in gm._start_from_em(em, 1).items()
        if key in {rv.name for rv in model.free_RVs}
    }
    settings = {**_SETTINGS, "draws": 50, "tune": 50}
    idata = _nutpie.sample_nutpie(
        None,
        key="one",
        data={"x_data": data.values},
        start=start,
        random_seed=3,
        target=fg.build(spec),
        **settings,
    )
    assert list(idata.posterior.data_vars) == ["weights", "means", "sigma", "covariances"]
    assert idata.posterior["means"].dims == ("chain", "draw", "component", "feature")
    assert idata.posterior["sigma"].dims == ("chain", "draw", "component", "feature")
    means = idata.posterior["means"].values[..., 0]
    assert np.all(np.diff(means, axis=-1) > 0)  # the ordered transform


@pytest.mark.slow
def test_fast_sampling_matches_the_compiled_pymc_path():
    """The real PyMC path (nutpie compiles the model with numba: tens of seconds)."""
    data, model, start, spec, _ = _faithful_setup()
    _nutpie.clear_cache()
    ref = _nutpie.sample_nutpie(
        model,
        key=("faithful", "pymc"),
        data={"x_data": data.values},
        start=start,
        random_seed=2,
        **_SETTINGS,
    )
    idata = _nutpie.sample_nutpie(
        model,
        key=("faithful", "fast"),
        data={"x_data": data.values},
        start=start,
        random_seed=1,
        target=fg.build(spec),
        **_SETTINGS,
    )
    assert _layout(idata) == _layout(ref)
    _assert_same_posterior(idata, ref)


# -- frequency weights ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("covariance_type", "k", "d"),
    [("full", 3, 2), ("diag", 2, 3), ("tied", 2, 1), ("spherical", 3, 2)],
)
def test_weighted_kernel_equals_repeated_rows_and_the_weighted_pymc_model(
    rng, covariance_type, k, d
):
    """Frequency weights in the fused kernel (Python and C paths): the log density and
    gradient of the data with every row repeated w_n times, and of PyMC's weighted model."""
    X = _data(rng, 300, d, k)  # more than one block of the kernel (256)
    w = rng.integers(0, 4, size=X.shape[0]).astype(float)
    w[0] = 0.0
    gm = bm.GaussianMixture(n_components=k, covariance_type=covariance_type)
    data, resolved = gm._prepare(X, w)
    fast = gm._nuts_target(data, resolved)
    assert fast is not None  # the fused kernel covers weighted data
    shared = fast.shared_data(data.values, sample_weight=w)
    repeated = fast.shared_data(np.repeat(X, w.astype(int), axis=0))
    model = gm._model(data, resolved)
    reference = _reference_logp_dlogp(model, _value_shapes(model))
    compiled = fast.nutpie_model(shared)
    for _ in range(3):
        x = rng.normal(scale=0.3, size=fast.n_dim)
        value, grad = fast.logp_dlogp(x, **shared)
        rep_value, rep_grad = fast.logp_dlogp(x, **repeated)
        np.testing.assert_allclose(value, rep_value, rtol=1e-12)
        np.testing.assert_allclose(grad, rep_grad, rtol=1e-10, atol=1e-10 * np.abs(rep_grad).max())
        ref_value, ref_grad = reference(x)
        np.testing.assert_allclose(value, ref_value, rtol=_RTOL)
        np.testing.assert_allclose(grad, ref_grad, rtol=_RTOL, atol=1e-10 * np.abs(ref_grad).max())
        c_value, c_grad = compiled.logp_dlogp(x)
        assert c_value == value
        np.testing.assert_array_equal(c_grad, grad)
    # New observations without weights drop the old weights (with_data).
    unweighted = compiled.with_data(x_data=X)
    np.testing.assert_allclose(
        unweighted.logp_dlogp(x)[0], fast.logp_dlogp(x, **fast.shared_data(X))[0], rtol=1e-12
    )
