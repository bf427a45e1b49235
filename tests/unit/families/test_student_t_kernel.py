"""The fused location-scale kernel with Student-t components, against the Student-t model.

References: ``StudentTMixture(...).build_model``'s ``compile_logp(jacobian=True)`` and
``compile_dlogp`` (on PyTensor's Python linker, so that compiling stays short), its
deterministic ``scales``, and scipy's digamma.
"""

from __future__ import annotations

import logging

import numpy as np
import pytensor
import pytest

import bayesmix as bm
from bayesmix.priors import Prior

_PY_FAST = pytensor.compile.mode.Mode(linker="py", optimizer="fast_run").excluding("fusion")

DOF_PRIORS = {
    "Gamma": {"alpha": 2.0, "beta": 0.1},  # the default's family
    "Exponential": {"lam": [0.1, 0.2, 0.05]},
    "LogNormal": {"mu": 2.0, "sigma": 1.0},
    "InverseGamma": {"alpha": 3.0, "beta": 20.0},
}
# (covariance type, D, prior of the degrees of freedom or None for the default)
CASES = [
    ("full", 2, None),
    ("full", 1, "Exponential"),
    ("diag", 3, "LogNormal"),
    ("spherical", 2, "InverseGamma"),
    ("tied", 3, "Gamma"),
    ("tied", 1, None),
]


def _heavy(rng, n, d):
    centres = np.array([[-4.0, 0.0, 1.0], [4.0, 1.0, -1.0], [0.0, 6.0, 3.0]])[:, :d]
    return centres[rng.integers(3, size=n)] + rng.standard_t(4, size=(n, d))


def _setup(covariance_type, d, dof_prior, rng, n=120):
    priors = {} if dof_prior is None else {"dof": Prior(dof_prior, **DOF_PRIORS[dof_prior])}
    estimator = bm.StudentTMixture(n_components=3, covariance_type=covariance_type, priors=priors)
    X = _heavy(rng, n, d)
    data, resolved = estimator._prepare(X)
    return estimator, X, data, resolved, estimator._nuts_target(data, resolved)


def _point(model, x):
    values = model.value_vars
    shapes = [model.initial_point()[v.name].shape for v in values]
    parts = np.split(x, np.cumsum([int(np.prod(s)) for s in shapes])[:-1])
    return {v.name: p.reshape(s) for v, p, s in zip(values, parts, shapes, strict=True)}


@pytest.mark.parametrize(("covariance_type", "d", "dof_prior"), CASES)
def test_log_density_gradient_and_stored_values_equal_the_student_t_model(
    covariance_type, d, dof_prior
):
    rng = np.random.default_rng(7 * d + len(covariance_type))
    estimator, _, data, resolved, fast = _setup(covariance_type, d, dof_prior, rng)
    assert fast is not None
    assert fast.dof
    assert fast.matrix_name == "scales"
    model = estimator._build(data, resolved)
    assert [value for _, value, _ in fast.free] == [v.name for v in model.value_vars]
    logp = model.compile_logp(jacobian=True, mode=_PY_FAST)
    dlogp = model.compile_dlogp(jacobian=True, mode=_PY_FAST)
    constrained = {v.name: v for v in model.unobserved_value_vars}
    stored = pytensor.function(
        model.value_vars,
        [constrained[name] for name, _ in fast.stored],
        mode=_PY_FAST,
        on_unused_input="ignore",
    )
    shared = fast.shared_data(data.values)
    compiled = fast.nutpie_model(shared)
    for _ in range(3):
        x = rng.normal(scale=0.5, size=fast.n_dim)
        x[-3:] = rng.uniform(0.0, 4.0, 3)  # log dof: from 1 to 55
        point = _point(model, x)
        value, grad = fast.logp_dlogp(x, **shared)
        np.testing.assert_allclose(value, logp(point), rtol=1e-9)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-9, atol=1e-9)
        expanded = fast.expand(x)
        references = stored(*[point[v.name] for v in model.value_vars])
        for (name, _), reference in zip(fast.stored, references, strict=True):
            np.testing.assert_allclose(expanded[name], reference, rtol=1e-12, atol=1e-14)
        c_value, c_grad = compiled.logp_dlogp(x)  # the C callback nutpie calls
        assert c_value == value
        np.testing.assert_array_equal(c_grad, grad)
        flat = np.concatenate([expanded[name].ravel() for name, _ in fast.stored])
        np.testing.assert_array_equal(compiled.expand(x), flat)


def test_weights_repeat_rows_and_the_start_is_pymcs_transform():
    rng = np.random.default_rng(3)
    _, X, _, _, fast = _setup("full", 2, None, rng, n=90)
    x = rng.normal(scale=0.5, size=fast.n_dim)
    counts = rng.integers(0, 3, len(X))
    weighted = fast.logp_dlogp(x, **fast.shared_data(X, sample_weight=counts))
    repeated = fast.logp_dlogp(x, **fast.shared_data(np.repeat(X, counts, axis=0)))
    np.testing.assert_allclose(weighted[0], repeated[0], rtol=1e-12)
    np.testing.assert_allclose(weighted[1], repeated[1], rtol=1e-10, atol=1e-10)
    # unconstrain inverts expand (the EM start goes through it).
    point = fast.expand(x)
    np.testing.assert_allclose(fast.unconstrain(point), x, rtol=1e-10, atol=1e-10)


def test_a_parameterisation_outside_the_table_compiles_the_pymc_model(caplog):
    rng = np.random.default_rng(4)
    estimator = bm.StudentTMixture(
        n_components=2, priors={"dof": Prior("Gamma", mu=10.0, sigma=5.0)}
    )
    data, resolved = estimator._prepare(_heavy(rng, 60, 2))
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        assert estimator._nuts_target(data, resolved) is None
    assert "compiling the PyMC model instead" in caplog.text


@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.SamplerWarning")
def test_nuts_fit_samples_the_fused_kernel_near_the_em_estimate(caplog):
    X = _heavy(np.random.default_rng(5), 400, 1)[:, :1]
    estimator = bm.StudentTMixture(n_components=3, random_state=0)
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        estimator.fit(X, method="nuts", draws=300, tune=300, chains=2, progressbar=False)
    assert "NUTS on the fused kernel" in caplog.text
    posterior = estimator.idata.posterior
    assert posterior["dof"].dims == ("chain", "draw", "component")
    assert posterior["scales"].dims == ("chain", "draw", "component", "feature", "feature_bis")
    mean = posterior["means"].mean(("chain", "draw")).to_numpy()
    sd = posterior["means"].std(("chain", "draw")).to_numpy()
    np.testing.assert_array_less(np.abs(mean - estimator.em_.params["means"]), 4.0 * sd + 0.05)


def test_pointwise_log_likelihood_of_many_draws_equals_numpys():
    from scipy.stats import wishart

    from bayesmix.stats import pointwise_log_likelihood

    rng = np.random.default_rng(11)
    X = _heavy(rng, 500, 3)
    X[0] = 1e200  # beyond the floats' range in the kernel: recomputed by NumPy
    draws, k = 600, 2  # 3e5 values: the kernel's side of kernel_pays_off
    weights = rng.dirichlet(np.ones(k), draws)
    means = rng.normal(scale=3.0, size=(draws, k, 3))
    scales = wishart(df=6, scale=np.eye(3) / 6).rvs(size=draws * k, random_state=rng)
    scales = scales.reshape(draws, k, 3, 3)
    dof = rng.gamma(2.0, 5.0, size=(draws, k)) + 0.3
    estimator = bm.StudentTMixture(n_components=k)
    kwargs = {"component_log_prob": estimator.component_log_prob}
    ours = pointwise_log_likelihood(
        X, weights, means, scales, dof, fast_pointwise=estimator._fast_pointwise, **kwargs
    )
    expected = pointwise_log_likelihood(X, weights, means, scales, dof, **kwargs)
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    out = np.empty((draws, len(X)))
    assert estimator._fast_pointwise(X[1:], weights, means, scales, dof, out=out[:, 1:])
    few = (X[:2], weights[:1], means[:1], scales[:1], dof[:1])
    assert not estimator._fast_pointwise(*few, out=out[:1, :2])  # NumPy's: few values
