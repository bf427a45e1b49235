"""The fused exponential-family kernel (bayesmix.nuts.expfam) of the Poisson and Bernoulli mixtures.

References: the family's PyMC model (``model.compile_logp(jacobian=True)`` and
``compile_dlogp``, on PyTensor's Python linker so that compiling stays short) for every
prior family these mixtures accept, and scipy's densities for the prior alone.
"""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytensor
import pytest
from mixture_data import binary_array, counts_array
from scipy import stats

import bayesmix as bm
from bayesmix._validation import MixtureData
from bayesmix.nuts import expfam
from bayesmix.nuts.laplace import Affine

_PY_FAST = pytensor.compile.mode.Mode(linker="py", optimizer="fast_run").excluding("fusion")

K = 3

# Every prior family each mixture accepts for its component parameter (its
# ``_allowed_priors``), with parameters of the shapes users pass (scalars, per feature).
PRIORS = {
    "poisson-gamma-default": (bm.PoissonMixture, None),
    "poisson-gamma": (bm.PoissonMixture, {"rates": bm.Prior("Gamma", alpha=2.5, beta=0.4)}),
    "poisson-exponential": (bm.PoissonMixture, {"rates": bm.Prior("Exponential", lam=0.3)}),
    "poisson-lognormal": (
        bm.PoissonMixture,
        {"rates": bm.Prior("LogNormal", mu=[1.0, 0.5], sigma=2.0)},
    ),
    "poisson-halfnormal": (bm.PoissonMixture, {"rates": bm.Prior("HalfNormal", sigma=6.0)}),
    "bernoulli-beta-default": (bm.BernoulliMixture, None),
    "bernoulli-beta": (
        bm.BernoulliMixture,
        {"probs": bm.Prior("Beta", alpha=[2.0, 1.0, 0.5, 3.0], beta=1.5)},
    ),
}


def _rows(cls, rng, n=300):
    return counts_array(rng, n=n) if cls is bm.PoissonMixture else binary_array(rng, n=n)


def _setup(cls, priors, X, w=None, weights_prior=True):
    priors = dict(priors or {})
    if weights_prior:  # a non-symmetric Dirichlet as well
        priors["weights"] = bm.Prior("Dirichlet", a=[0.7, 2.0, 4.0])
    estimator = cls(n_components=K, priors=priors)
    data = MixtureData(
        values=X, obs=np.arange(len(X)), features=np.arange(X.shape[1]), sample_weight=w
    )
    resolved = estimator._resolve_priors(data)
    return estimator, data, resolved, estimator._nuts_target(data, resolved)


def _split(model, x):
    values = model.value_vars
    shapes = [tuple(model.initial_point()[v.name].shape) for v in values]
    sizes = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    parts = np.split(x, sizes)
    return {v.name: p.reshape(s) for v, p, s in zip(values, parts, shapes, strict=True)}


@pytest.mark.parametrize("name", list(PRIORS))
def test_log_density_and_gradient_equal_the_pymc_model(name):
    cls, priors = PRIORS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    X = _rows(cls, rng)
    w = rng.uniform(0.0, 2.0, len(X))  # some rows nearly out, none negative
    estimator, data, resolved, target = _setup(cls, priors, X, w)
    assert target is not None
    model = estimator._model(data, resolved)
    assert [v.name for v in model.value_vars] == [value for _, value, _ in target.free]
    logp = model.compile_logp(jacobian=True, mode=_PY_FAST)
    dlogp = model.compile_dlogp(jacobian=True, mode=_PY_FAST)
    shared = target.shared_data(X, sample_weight=w)
    for _ in range(3):
        x = rng.normal(scale=1.5, size=target.n_dim)
        value, grad = target.logp_dlogp(x, **shared)
        point = _split(model, x)
        np.testing.assert_allclose(value, logp(point), rtol=1e-9)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls", [bm.PoissonMixture, bm.BernoulliMixture])
def test_the_kernel_at_zero_rows_is_the_prior_of_scipy(cls):
    # Default priors: Dirichlet(1) and Gamma(1, 1 / mean) per feature, or Beta(1, 1); on
    # the unconstrained scale with the transforms' log-Jacobians.
    rng = np.random.default_rng(2)
    X = _rows(cls, rng)
    _, _, resolved, target = _setup(cls, None, X, weights_prior=False)
    x = rng.normal(size=target.n_dim)
    value, _ = target.logp_dlogp(x, **target.shared_data(np.empty((0, X.shape[1]))))
    point = target.expand(x)
    weights, param = point["weights"], point[target.param]
    log_jacobian_simplex = np.log(K) + np.log(weights).sum()
    expected = stats.dirichlet(np.ones(K)).logpdf(weights) + log_jacobian_simplex
    if cls is bm.PoissonMixture:
        beta = np.asarray(resolved["rates"].params["beta"])
        expected += stats.gamma(1.0, scale=1.0 / beta).logpdf(param).sum() + np.log(param).sum()
    else:
        expected += np.log(param * (1.0 - param)).sum()  # Beta(1, 1) and the logit's Jacobian
    np.testing.assert_allclose(value, expected, rtol=1e-12)


@pytest.mark.parametrize("cls", [bm.PoissonMixture, bm.BernoulliMixture])
def test_weights_of_one_are_no_weights_and_integer_weights_repeat_rows(cls):
    rng = np.random.default_rng(3)
    X = _rows(cls, rng, n=200)
    _, _, _, target = _setup(cls, None, X)
    x = rng.normal(size=target.n_dim)
    plain = target.logp_dlogp(x, **target.shared_data(X))
    ones = target.logp_dlogp(x, **target.shared_data(X, sample_weight=np.ones(len(X))))
    np.testing.assert_allclose(plain[0], ones[0], rtol=1e-13)
    np.testing.assert_allclose(plain[1], ones[1], rtol=1e-12, atol=1e-12)
    counts = rng.integers(0, 3, len(X))
    weighted = target.logp_dlogp(x, **target.shared_data(X, sample_weight=counts))
    repeated = target.logp_dlogp(x, **target.shared_data(np.repeat(X, counts, axis=0)))
    np.testing.assert_allclose(weighted[0], repeated[0], rtol=1e-12)
    np.testing.assert_allclose(weighted[1], repeated[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls", [bm.PoissonMixture, bm.BernoulliMixture])
def test_c_callbacks_equal_the_kernel_with_and_without_laplace_coordinates(cls):
    rng = np.random.default_rng(4)
    X = _rows(cls, rng)
    w = rng.uniform(0.5, 2.0, len(X))
    _, _, _, target = _setup(cls, None, X, w)
    shared = target.shared_data(X, sample_weight=w)
    x = rng.normal(size=target.n_dim)
    compiled = target.nutpie_model(shared)
    assert type(compiled).__name__ == "CallbackCompiledModel"  # the C path, not from_pyfunc
    value, grad = target.logp_dlogp(x, **shared)
    c_value, c_grad = compiled.logp_dlogp(x)
    np.testing.assert_allclose(c_value, value, rtol=1e-14)
    np.testing.assert_allclose(c_grad, grad, rtol=1e-14)
    affine = Affine(rng.normal(size=target.n_dim), rng.normal(size=(target.n_dim,) * 2))
    in_u = target.nutpie_model(shared, affine=affine)
    u = rng.normal(size=target.n_dim)
    value, grad = target.logp_dlogp(affine.shift + affine.factor @ u, **shared)
    u_value, u_grad = in_u.logp_dlogp(u)
    np.testing.assert_allclose(u_value, value, rtol=1e-12)
    np.testing.assert_allclose(u_grad, affine.factor.T @ grad, rtol=1e-10, atol=1e-10)
    stored = target.expand(affine.shift + affine.factor @ u)
    assert [name for name, _ in target.stored] == list(stored)
    np.testing.assert_allclose(
        in_u.expand(u), np.concatenate([v.ravel() for v in stored.values()]), rtol=1e-14
    )
    # New rows through nutpie's with_data: their own constants (log x!), no weights.
    new = _rows(cls, np.random.default_rng(5), n=77)
    c_new = compiled.with_data(x_data=new).logp_dlogp(x)
    expected = target.logp_dlogp(x, **target.shared_data(new))
    np.testing.assert_allclose(c_new[0], expected[0], rtol=1e-13)
    np.testing.assert_allclose(c_new[1], expected[1], rtol=1e-12)


def test_the_target_pickles_for_dask_workers():
    X = counts_array(np.random.default_rng(6), n=100)
    _, _, _, target = _setup(bm.PoissonMixture, None, X)
    shared = target.shared_data(X)
    x = np.random.default_rng(7).normal(size=target.n_dim)
    again = pickle.loads(pickle.dumps(target))
    assert again.logp_dlogp(x, **again.shared_data(X))[0] == target.logp_dlogp(x, **shared)[0]


@pytest.mark.parametrize(
    ("cls", "priors"),
    [
        (bm.PoissonMixture, {"rates": bm.Prior("Gamma", mu=3.0, sigma=2.0)}),
        (bm.BernoulliMixture, {"probs": bm.Prior("Beta", mu=0.5, sigma=0.2)}),
    ],
)
def test_parameterisations_the_kernel_lacks_compile_the_pymc_model(cls, priors, caplog):
    X = _rows(cls, np.random.default_rng(8))
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        _, _, _, target = _setup(cls, priors, X)
    assert target is None
    assert "compiling the PyMC model" in caplog.text
    assert (
        expfam.build(param="rates", cumulant="exp", n_components=2, n_features=1, priors={}) is None
    )


# Short chains (what is checked is where NUTS samples): R-hat may exceed 1.01.
@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.SamplerWarning")
@pytest.mark.parametrize("cls", [bm.PoissonMixture, bm.BernoulliMixture])
def test_nuts_fit_samples_the_fused_kernel_near_the_em_estimate(cls, caplog):
    X = _rows(cls, np.random.default_rng(9), n=400)
    estimator = cls(n_components=2, random_state=0)
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        estimator.fit(X, method="nuts", draws=300, tune=300, chains=2, progressbar=False)
    assert "NUTS on the fused kernel" in caplog.text
    posterior = estimator.idata.posterior
    name = estimator._param
    assert posterior[name].dims == ("chain", "draw", "component", "feature")
    assert int(estimator.idata.sample_stats["diverging"].sum()) == 0
    # Well-separated classes and 400 rows: the posterior mean within 4 posterior sds of EM.
    mean = posterior[name].mean(("chain", "draw")).to_numpy()
    sd = posterior[name].std(("chain", "draw")).to_numpy()
    em = estimator.em_.params[name]
    assert np.all(np.abs(mean - em) <= 4.0 * sd + 1e-3)


@pytest.mark.parametrize("cls", [bm.PoissonMixture, bm.BernoulliMixture])
def test_pointwise_log_likelihood_of_many_draws_equals_numpys(cls):
    from bayesmix.stats import pointwise_log_likelihood

    rng = np.random.default_rng(10)
    X = _rows(cls, rng, n=600)
    estimator = cls(n_components=K)
    draws, d = 400, X.shape[1]
    weights = rng.dirichlet(np.ones(K), draws)
    if cls is bm.PoissonMixture:
        param = rng.gamma(3.0, 2.0, (draws, K, d))
    else:
        param = rng.uniform(0.01, 0.99, (draws, K, d))
    out = np.full((draws, len(X)), np.nan)
    assert estimator._fast_pointwise(X, weights, param, out=out)
    expected = pointwise_log_likelihood(
        X, weights, param, component_log_prob=estimator.component_log_prob
    )
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    # Parameters on the boundary (EM estimates) and few values are NumPy's.
    param[0, 0, 0] = 0.0
    assert not estimator._fast_pointwise(X, weights, param, out=out)
    assert not estimator._fast_pointwise(X[:3], weights[:2], param[:2], out=out[:2, :3])
