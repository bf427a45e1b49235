"""The marginal likelihood of the Student-t, Poisson and Bernoulli models.

Each model's pointwise log-likelihood (PyMC's machinery on the bayesmix graph) is
checked against ``pm.Mixture`` of PyMC's own component distributions, against the
latent labels enumerated with scipy densities, and the NumPy per-draw densities used
after sampling (``bayesmix.stats``) against the same references.
"""

import itertools

import numpy as np
import pymc as pm
import pytest
import scipy.stats as st
from scipy.special import logsumexp

import bayesmix as bm
from bayesmix.families.bernoulli import bernoulli_log_prob
from bayesmix.families.poisson import poisson_log_prob
from bayesmix.families.student_t import student_t_log_prob
from bayesmix.stats import draw_log_prob

K = 3


def _random_point(model, rng):
    ip = model.initial_point()
    return {
        name: value + rng.uniform(-0.5, 0.5, size=np.shape(value)) for name, value in ip.items()
    }


def _values(model, point, names):
    outputs = model.replace_rvs_by_values([model[name] for name in names])
    fn = model.compile_fn(
        outputs, inputs=model.value_vars, on_unused_input="ignore", mode="FAST_COMPILE"
    )
    return dict(zip(names, fn(point), strict=True))


def _pointwise(model, point):
    # PyTensor's Python linker (FAST_COMPILE): no C compilation per model.
    return model.compile_fn(
        model.logp(vars=[model["x"]], sum=False)[0],
        inputs=model.value_vars,
        on_unused_input="ignore",
        mode="FAST_COMPILE",
    )(point)


def _check_enumeration(pointwise, w, comp_logpdf):
    """Marginal = enumerated labels per observation, and over all label vectors of 4."""
    np.testing.assert_allclose(
        pointwise, logsumexp(np.log(w) + comp_logpdf, axis=1), rtol=0, atol=1e-8
    )
    joint = [
        sum(np.log(w[z]) + comp_logpdf[n, z] for n, z in enumerate(labels))
        for labels in itertools.product(range(K), repeat=4)
    ]
    np.testing.assert_allclose(logsumexp(joint), pointwise[:4].sum(), rtol=0, atol=1e-8)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("n_features", [1, 2])
def test_student_t_logp(covariance_type, n_features, rng):
    X = rng.standard_t(3, size=(30, n_features)) * 2 + rng.choice([-5, 0, 5], size=(30, 1))
    model = bm.StudentTMixture(n_components=K, covariance_type=covariance_type).build_model(X)
    point = _random_point(model, rng)
    v = _values(model, point, ["weights", "means", "scales", "dof"])
    pointwise = _pointwise(model, point)

    with pm.Model():
        comps = [
            pm.MvStudentT.dist(nu=v["dof"][k], mu=v["means"][k], scale=v["scales"][k])
            for k in range(K)
        ]
        ref = pm.logp(pm.Mixture.dist(w=v["weights"], comp_dists=comps), X).eval(
            mode="FAST_COMPILE"
        )
    np.testing.assert_allclose(pointwise, ref, rtol=0, atol=1e-8)

    comp = np.stack(
        [
            st.multivariate_t(v["means"][k], v["scales"][k], df=v["dof"][k]).logpdf(X).reshape(-1)
            for k in range(K)
        ],
        axis=1,
    )
    _check_enumeration(pointwise, v["weights"], comp)
    numpy_side = student_t_log_prob(X, v["means"][None], v["scales"][None], v["dof"][None])[0]
    np.testing.assert_allclose(numpy_side, comp, rtol=1e-10)


@pytest.mark.parametrize("n_features", [1, 3])
def test_poisson_logp(n_features, rng):
    X = rng.poisson(rng.choice([1.0, 4.0, 12.0], size=(40, 1)), size=(40, n_features))
    model = bm.PoissonMixture(n_components=K).build_model(X)
    point = _random_point(model, rng)
    v = _values(model, point, ["weights", "rates"])
    pointwise = _pointwise(model, point)

    if n_features == 1:
        with pm.Model():
            comp = pm.Poisson.dist(mu=v["rates"][:, 0])
            ref = pm.logp(pm.Mixture.dist(w=v["weights"], comp_dists=comp), X[:, 0]).eval(
                mode="FAST_COMPILE"
            )
        np.testing.assert_allclose(pointwise, ref, rtol=0, atol=1e-8)
    comp = np.stack([st.poisson(v["rates"][k]).logpmf(X).sum(axis=1) for k in range(K)], axis=1)
    _check_enumeration(pointwise, v["weights"], comp)
    np.testing.assert_allclose(poisson_log_prob(X, v["rates"][None])[0], comp, rtol=1e-10)


@pytest.mark.parametrize("n_features", [1, 4])
def test_bernoulli_logp(n_features, rng):
    X = (rng.random((40, n_features)) < rng.choice([0.1, 0.5, 0.9], size=(40, 1))).astype(float)
    X[0] = 0.0
    X[1] = 1.0  # no constant column
    model = bm.BernoulliMixture(n_components=K).build_model(X)
    point = _random_point(model, rng)
    v = _values(model, point, ["weights", "probs"])
    pointwise = _pointwise(model, point)

    if n_features == 1:
        with pm.Model():
            comp = pm.Bernoulli.dist(p=v["probs"][:, 0])
            ref = pm.logp(pm.Mixture.dist(w=v["weights"], comp_dists=comp), X[:, 0]).eval(
                mode="FAST_COMPILE"
            )
        np.testing.assert_allclose(pointwise, ref, rtol=0, atol=1e-8)
    comp = np.stack([st.bernoulli(v["probs"][k]).logpmf(X).sum(axis=1) for k in range(K)], axis=1)
    _check_enumeration(pointwise, v["weights"], comp)
    np.testing.assert_allclose(bernoulli_log_prob(X, v["probs"][None])[0], comp, rtol=1e-10)


def test_boundary_probabilities_exclude_only_the_samples_they_rule_out():
    X = np.array([[0.0, 1.0], [1.0, 1.0]])
    probs = np.array([[[0.0, 1.0], [0.5, 0.5]]])  # component 0 cannot produce x_0 = 1
    out = bernoulli_log_prob(X, probs)[0]
    assert out[0, 0] == 0.0  # log 1
    assert out[1, 0] < -1e200  # effectively -inf, but finite in sums
    np.testing.assert_allclose(out[:, 1], 2 * np.log(0.5))
    total = logsumexp(
        draw_log_prob(X, np.array([[0.5, 0.5]]), probs, component_log_prob=bernoulli_log_prob),
        axis=2,
    )
    np.testing.assert_allclose(total[0], np.log([0.5 * 1 + 0.5 * 0.25, 0.5 * 0 + 0.5 * 0.25]))
