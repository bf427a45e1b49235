"""The fused negative binomial kernel (bayesmix.nuts.negbin).

References: the family's PyMC model (``model.compile_logp(jacobian=True)`` and
``compile_dlogp``, on PyTensor's Python linker so that compiling stays short) for every
prior family the mixture accepts, scipy's ``nbinom`` and densities for the prior alone,
and ``np.unique`` for the distinct counts.
"""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytensor
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix._validation import MixtureData
from bayesmix.nuts import negbin
from bayesmix.nuts.laplace import Affine

_PY_FAST = pytensor.compile.mode.Mode(linker="py", optimizer="fast_run").excluding("fusion")

K = 3

# Every prior family the mixture accepts for its rates and dispersions (its
# ``_allowed_priors``), with parameters of the shapes users pass.
PRIORS = {
    "default": None,
    "gamma-lognormal": {
        "rates": bm.Prior("Gamma", alpha=2.0, beta=[0.2, 0.5]),
        "dispersion": bm.Prior("LogNormal", mu=1.0, sigma=1.5),
    },
    "exponential-halfnormal": {
        "rates": bm.Prior("Exponential", lam=0.1),
        "dispersion": bm.Prior("HalfNormal", sigma=20.0),
    },
    "halfnormal-exponential": {
        "rates": bm.Prior("HalfNormal", sigma=15.0),
        "dispersion": bm.Prior("Exponential", lam=0.05),
    },
}


def _counts(rng, n=300, spread=False):
    """Two over-dispersed classes of two features; ``spread`` adds counts far apart."""
    z = rng.integers(0, 2, n)
    mu = np.where(z[:, None] == 0, [2.0, 9.0], [12.0, 1.5])
    X = rng.negative_binomial(3.0, 3.0 / (3.0 + mu)).astype(float)
    if spread:  # gaps wider than the running sums bridge, and a large count
        X[: n // 10, 0] += rng.integers(30, 400, n // 10)
        X[0, 1] = 5000.0
    return X


def _setup(priors, X, w=None, weights_prior=True):
    priors = dict(priors or {})
    if weights_prior:  # a non-symmetric Dirichlet as well
        priors["weights"] = bm.Prior("Dirichlet", a=[0.7, 2.0, 4.0])
    estimator = bm.NegativeBinomialMixture(n_components=K, priors=priors)
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


def _point(rng, target):
    """A random point: rates around the data's, dispersions from 0.1 to ~100."""
    k, d = target.n_components, target.n_features
    return np.concatenate(
        [
            rng.normal(size=k - 1),
            rng.normal(1.5, 0.8, size=k * d),
            rng.uniform(-2.0, 4.5, size=k * d),
        ]
    )


def test_levels_index_the_distinct_counts_of_every_feature():
    X = np.array([[3.0, 0.0], [1.0, 7.0], [3.0, 7.0], [0.0, 2.0]])
    values, starts, index = negbin.levels(X)
    np.testing.assert_array_equal(starts, [0, 3, 6])
    np.testing.assert_array_equal(values, [0.0, 1.0, 3.0, 0.0, 2.0, 7.0])
    np.testing.assert_array_equal(values[index], X)


@pytest.mark.parametrize("spread", [False, True])
@pytest.mark.parametrize("name", list(PRIORS))
def test_log_density_and_gradient_equal_the_pymc_model(name, spread):
    rng = np.random.default_rng(sum(map(ord, name)) + spread)
    X = _counts(rng, spread=spread)
    w = rng.uniform(0.0, 2.0, len(X))  # some rows nearly out, none negative
    estimator, data, resolved, target = _setup(PRIORS[name], X, w)
    assert target is not None
    model = estimator._model(data, resolved)
    assert [v.name for v in model.value_vars] == [value for _, value, _ in target.free]
    logp = model.compile_logp(jacobian=True, mode=_PY_FAST)
    dlogp = model.compile_dlogp(jacobian=True, mode=_PY_FAST)
    shared = target.shared_data(X, sample_weight=w)
    for _ in range(3):
        x = _point(rng, target)
        value, grad = target.logp_dlogp(x, **shared)
        point = _split(model, x)
        np.testing.assert_allclose(value, logp(point), rtol=1e-9)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-8, atol=1e-8)


def test_the_likelihood_is_scipys_negative_binomial_mixture():
    rng = np.random.default_rng(1)
    X = _counts(rng, n=120, spread=True)
    _, _, _, target = _setup(None, X)
    x = _point(rng, target)
    at_zero, _ = target.logp_dlogp(x, **target.shared_data(np.empty((0, 2))))
    value, _ = target.logp_dlogp(x, **target.shared_data(X))
    point = target.expand(x)
    mu, alpha = point["rates"], point["dispersion"]
    component = np.stack(
        [
            stats.nbinom(alpha[k], alpha[k] / (alpha[k] + mu[k])).logpmf(X).sum(axis=1)
            for k in range(K)
        ],
        axis=1,
    )
    from scipy.special import logsumexp

    expected = logsumexp(np.log(point["weights"]) + component, axis=1).sum()
    np.testing.assert_allclose(value - at_zero, expected, rtol=1e-11)


def test_the_kernel_at_zero_rows_is_the_prior_of_scipy():
    # Default priors: Dirichlet(1), Gamma(1, 1 / mean) rates, Gamma(2, 0.1) dispersions;
    # on the unconstrained scale with the transforms' log-Jacobians.
    rng = np.random.default_rng(2)
    X = _counts(rng)
    _, _, resolved, target = _setup(None, X, weights_prior=False)
    x = _point(rng, target)
    value, _ = target.logp_dlogp(x, **target.shared_data(np.empty((0, 2))))
    point = target.expand(x)
    weights, mu, alpha = point["weights"], point["rates"], point["dispersion"]
    beta = np.asarray(resolved["rates"].params["beta"])
    expected = stats.dirichlet(np.ones(K)).logpdf(weights) + np.log(K) + np.log(weights).sum()
    expected += stats.gamma(1.0, scale=1.0 / beta).logpdf(mu).sum() + np.log(mu).sum()
    expected += stats.gamma(2.0, scale=10.0).logpdf(alpha).sum() + np.log(alpha).sum()
    np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_weights_of_one_are_no_weights_and_integer_weights_repeat_rows():
    rng = np.random.default_rng(3)
    X = _counts(rng, n=200, spread=True)
    _, _, _, target = _setup(None, X)
    x = _point(rng, target)
    plain = target.logp_dlogp(x, **target.shared_data(X))
    ones = target.logp_dlogp(x, **target.shared_data(X, sample_weight=np.ones(len(X))))
    np.testing.assert_allclose(plain[0], ones[0], rtol=1e-13)
    np.testing.assert_allclose(plain[1], ones[1], rtol=1e-12, atol=1e-12)
    counts = rng.integers(0, 3, len(X))
    weighted = target.logp_dlogp(x, **target.shared_data(X, sample_weight=counts))
    repeated = target.logp_dlogp(x, **target.shared_data(np.repeat(X, counts, axis=0)))
    np.testing.assert_allclose(weighted[0], repeated[0], rtol=1e-12)
    np.testing.assert_allclose(weighted[1], repeated[1], rtol=1e-10, atol=1e-10)
    # unconstrain inverts expand (the EM start goes through it).
    np.testing.assert_allclose(target.unconstrain(target.expand(x)), x, rtol=1e-10, atol=1e-10)


def test_c_callbacks_equal_the_kernel_with_and_without_laplace_coordinates():
    rng = np.random.default_rng(4)
    X = _counts(rng)
    w = rng.uniform(0.5, 2.0, len(X))
    _, _, _, target = _setup(None, X, w)
    shared = target.shared_data(X, sample_weight=w)
    x = _point(rng, target)
    compiled = target.nutpie_model(shared)
    assert type(compiled).__name__ == "CallbackCompiledModel"  # the C path, not from_pyfunc
    value, grad = target.logp_dlogp(x, **shared)
    c_value, c_grad = compiled.logp_dlogp(x)
    np.testing.assert_allclose(c_value, value, rtol=1e-14)
    np.testing.assert_allclose(c_grad, grad, rtol=1e-14)
    affine = Affine(x, 0.3 * rng.normal(size=(target.n_dim,) * 2))
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
    # New rows through nutpie's with_data: their own distinct counts and constants.
    new = _counts(np.random.default_rng(5), n=77, spread=True)
    c_new = compiled.with_data(x_data=new).logp_dlogp(x)
    expected = target.logp_dlogp(x, **target.shared_data(new))
    np.testing.assert_allclose(c_new[0], expected[0], rtol=1e-13)
    np.testing.assert_allclose(c_new[1], expected[1], rtol=1e-12)


def test_the_target_pickles_for_dask_workers():
    X = _counts(np.random.default_rng(6), n=100)
    _, _, _, target = _setup(None, X)
    x = _point(np.random.default_rng(7), target)
    again = pickle.loads(pickle.dumps(target))
    expected = target.logp_dlogp(x, **target.shared_data(X))[0]
    assert again.logp_dlogp(x, **again.shared_data(X))[0] == expected


def test_parameterisations_the_kernel_lacks_compile_the_pymc_model(caplog):
    X = _counts(np.random.default_rng(8))
    priors = {"dispersion": bm.Prior("Gamma", mu=10.0, sigma=5.0)}
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        _, _, _, target = _setup(priors, X)
    assert target is None
    assert "compiling the PyMC model" in caplog.text
    assert negbin.build(n_components=2, n_features=1, priors={}) is None


# Short chains (what is checked is where NUTS samples): R-hat may exceed 1.01.
@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.SamplerWarning")
def test_nuts_fit_samples_the_fused_kernel_near_the_em_estimate(caplog):
    X = _counts(np.random.default_rng(9), n=400)
    estimator = bm.NegativeBinomialMixture(n_components=2, random_state=0)
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        estimator.fit(X, method="nuts", draws=300, tune=300, chains=2, progressbar=False)
    assert "NUTS on the fused kernel" in caplog.text
    posterior = estimator.idata.posterior
    assert posterior["dispersion"].dims == ("chain", "draw", "component", "feature")
    assert int(estimator.idata.sample_stats["diverging"].sum()) == 0
    # Well-separated classes and 400 rows: posterior mean rates within 4 sds of EM.
    mean = posterior["rates"].mean(("chain", "draw")).to_numpy()
    sd = posterior["rates"].std(("chain", "draw")).to_numpy()
    assert np.all(np.abs(mean - estimator.em_.params["rates"]) <= 4.0 * sd + 1e-3)


def test_pointwise_log_likelihood_of_many_draws_equals_numpys():
    from bayesmix.stats import pointwise_log_likelihood

    rng = np.random.default_rng(10)
    X = _counts(rng, n=600, spread=True)
    estimator = bm.NegativeBinomialMixture(n_components=K)
    draws = 300
    weights = rng.dirichlet(np.ones(K), draws)
    rates = rng.gamma(3.0, 2.0, (draws, K, 2))
    dispersion = np.exp(rng.uniform(-2.0, 6.5, (draws, K, 2)))
    out = np.full((draws, len(X)), np.nan)
    assert estimator._fast_pointwise(X, weights, rates, dispersion, out=out)
    expected = pointwise_log_likelihood(
        X, weights, rates, dispersion, component_log_prob=estimator.component_log_prob
    )
    np.testing.assert_allclose(out, expected, rtol=1e-11)
    # Near the Poisson limit the NumPy density's Stirling series is the exact one.
    dispersion[0, 0, 0] = 1e5
    assert not estimator._fast_pointwise(X, weights, rates, dispersion, out=out)
