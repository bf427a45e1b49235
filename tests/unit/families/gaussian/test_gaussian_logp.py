"""The marginal likelihood of the PyMC model: equal to pm.Mixture and to the enumerated labels."""

import itertools

import numpy as np
import pymc as pm
import pytest
import scipy.stats as st
from scipy.special import logsumexp

import bayesmix as bm
from bayesmix.datasets import make_mixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
# PyTensor's Python linker: the same graph without C compilation (seconds, not minutes).
FAST = "FAST_COMPILE"


def _data(n_features, rng, n=40):
    k = 3
    means = rng.normal(0, 4, size=(k, n_features))
    a = rng.normal(size=(k, n_features, n_features))
    cov = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(n_features)
    X, _ = make_mixture(n, [0.2, 0.3, 0.5], means, cov, random_state=rng)
    return X


def _random_point(model, rng):
    """A random point of the model's free variables (value space), away from the start."""
    ip = model.initial_point()
    return {
        name: value + rng.uniform(-0.5, 0.5, size=np.shape(value)) for name, value in ip.items()
    }


def _constrained(model, point):
    names = [rv.name for rv in model.free_RVs] + ["covariances"]
    outputs = model.replace_rvs_by_values([model[name] for name in names])
    fn = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore", mode=FAST)
    return dict(zip(names, fn(point), strict=True))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_features", [1, 2, 3])
def test_marginal_logp_equals_pm_mixture_and_enumeration(covariance_type, n_features, rng):
    X = _data(n_features, rng)
    gm = bm.GaussianMixture(n_components=3, covariance_type=covariance_type)
    model = gm.build_model(X)
    point = _random_point(model, rng)
    values = _constrained(model, point)
    w, mu, cov = values["weights"], values["means"], values["covariances"]

    # Pointwise log-likelihood of the observed variable from PyMC's machinery.
    pointwise = model.compile_fn(
        model.logp(vars=[model["x"]], sum=False)[0],
        inputs=model.value_vars,
        on_unused_input="ignore",
        mode=FAST,
    )(point)
    assert pointwise.shape == (X.shape[0],)

    # 1. The same likelihood written with pm.Mixture of pm.MvNormal components.
    with pm.Model():
        comp = pm.MvNormal.dist(mu=mu, cov=cov, shape=(3, n_features))
        ref = pm.Mixture("x", w=w, comp_dists=comp, observed=X)
        ref_logp = pm.logp(ref, X).eval(mode=FAST)
    np.testing.assert_allclose(pointwise, ref_logp, rtol=0, atol=1e-8)

    # 2. Enumerating the latent labels: p(x_n) = sum_z p(z) p(x_n | z), with scipy densities.
    comp_logpdf = np.stack(
        [st.multivariate_normal(mu[k], cov[k]).logpdf(X).reshape(-1) for k in range(3)], axis=1
    )
    enumerated = logsumexp(np.log(w) + comp_logpdf, axis=1)
    np.testing.assert_allclose(pointwise, enumerated, rtol=0, atol=1e-8)

    # 3. The joint over all label vectors of a few observations, summed: the marginal total.
    few = X[:4]
    joint = [
        sum(np.log(w[z]) + comp_logpdf[n, z] for n, z in enumerate(labels))
        for labels in itertools.product(range(3), repeat=len(few))
    ]
    np.testing.assert_allclose(logsumexp(joint), pointwise[:4].sum(), rtol=0, atol=1e-8)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_features", [1, 2])
def test_gradient_is_finite_at_initial_point(covariance_type, n_features, rng):
    X = _data(n_features, rng)
    model = bm.GaussianMixture(n_components=3, covariance_type=covariance_type).build_model(X)
    ip = model.initial_point()
    logp = model.compile_logp(mode=FAST)(ip)
    grad = model.compile_dlogp(mode=FAST)(ip)
    assert np.isfinite(logp)
    assert np.all(np.isfinite(grad))
    assert np.any(grad != 0)


def test_one_feature_means_are_ordered(rng):
    X = _data(1, rng)
    model = bm.GaussianMixture(n_components=3).build_model(X)
    value = {"means_ordered_components__": np.array([[0.3], [-1.0], [2.0]])}
    point = {**model.initial_point(), **value}
    means = _constrained(model, point)["means"][:, 0]
    assert np.all(np.diff(means) > 0)
    np.testing.assert_allclose(means, np.cumsum([0.3, np.exp(-1.0), np.exp(2.0)]))
