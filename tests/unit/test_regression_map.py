"""MixtureRegression(objective="map"): EM for the posterior mode under the model's priors.

The reference is PyMC's own log density of ``build_model`` (without the Jacobians of the
transforms, i.e. the density of the constrained parameters): at the MAP estimate its
gradient vanishes, at the maximum-likelihood estimate it does not.
"""

import numpy as np
import pytest
from scipy import optimize

import bayesmix as bm
from bayesmix._glm import Penalty, map_residual_scale, weighted_fit, weighted_multinomial_fit
from bayesmix.exceptions import InvalidParameterError
from bayesmix.families.gaussian.model import RESPONSE as GAUSSIAN
from bayesmix.nuts.sampler import unconstrained_point


def _simulate(family: str, rng: np.random.Generator, n: int = 300):
    x = rng.uniform(0.0, 2.0, n)
    age = rng.normal(0.0, 1.0, n)
    first = rng.random(n) < 1.0 / (1.0 + np.exp(-1.5 * age))
    eta = np.where(first, 0.3 + 1.0 * x, 2.0 - 0.8 * x)
    match family:
        case "gaussian":
            y = eta + rng.normal(0.0, np.where(first, 0.2, 0.4))
        case "poisson":
            y = rng.poisson(np.exp(eta)).astype(float)
        case "negative-binomial":
            y = rng.negative_binomial(5.0, 5.0 / (5.0 + np.exp(eta))).astype(float)
        case "bernoulli":
            y = (rng.random(n) < 1.0 / (1.0 + np.exp(-2.0 * (eta - 1.2)))).astype(float)
    return x[:, None], y, age[:, None]


def _posterior_gradient(fit, X, y, Z):
    """PyMC's gradient of the log density (no Jacobians) at the fit's EM estimate."""
    model = fit.build_model(X, y, Z)
    free = {rv.name for rv in model.free_RVs}
    point = fit._point_from_em(fit.em_, fit.n_features_in_)
    point = unconstrained_point(model, {k: v for k, v in point.items() if k in free})
    return model.compile_dlogp(jacobian=False)(point)


CASES = [
    ("gaussian", False),
    ("gaussian", True),
    ("poisson", False),
    ("poisson", True),
    ("negative-binomial", False),
    ("bernoulli", True),
]


@pytest.mark.parametrize(("family", "concomitant"), CASES)
def test_map_is_a_stationary_point_of_the_models_log_posterior(family, concomitant):
    X, y, Z = _simulate(family, np.random.default_rng(3))
    Z = Z if concomitant else None
    spec = {
        "n_components": 2,
        "family": family,
        "concomitant": concomitant,
        "random_state": 0,
        "tol": 1e-13,
        "max_iter": 20000,
    }
    map_fit = bm.MixtureRegression(**spec, objective="map").fit(X, y, Z, method="em")
    ml_fit = bm.MixtureRegression(**spec).fit(X, y, Z, method="em")
    at_map = np.abs(_posterior_gradient(map_fit, X, y, Z)).max()
    at_ml = np.abs(_posterior_gradient(ml_fit, X, y, Z)).max()
    assert at_map < 1e-3, at_map
    assert at_ml > 1e-2, at_ml  # the priors matter at these sizes: the check can fail
    # The EM objective (log posterior per observation) never decreases.
    assert np.all(np.diff(map_fit.em_.lower_bounds) >= -1e-12)
    assert map_fit.em_.objective == "map"


def test_map_with_flat_priors_is_maximum_likelihood():
    X, y, _ = _simulate("gaussian", np.random.default_rng(4))
    flat = {
        "coefficients": bm.Prior("Normal", mu=0.0, sigma=1e6),
        "scales": bm.Prior("HalfNormal", sigma=1e6),
        "weights": bm.Prior("Dirichlet", a=1.0),
    }
    spec = {"n_components": 2, "random_state": 0, "tol": 1e-12, "max_iter": 5000}
    ml = bm.MixtureRegression(**spec).fit(X, y, method="em")
    map_ = bm.MixtureRegression(**spec, priors=flat, objective="map").fit(X, y, method="em")
    np.testing.assert_allclose(map_.coefficients_, ml.coefficients_, atol=1e-6)
    np.testing.assert_allclose(map_.scales_, ml.scales_, atol=1e-6)
    np.testing.assert_allclose(map_.weights_, ml.weights_, atol=1e-6)


@pytest.mark.parametrize(
    ("family", "priors", "named"),
    [
        ("gaussian", {"coefficients": bm.Prior("StudentT", nu=3, mu=0, sigma=1)}, "coefficients"),
        ("gaussian", {"scales": bm.Prior("HalfCauchy", beta=1.0)}, "scales"),
        ("negative-binomial", {"dispersion": bm.Prior("Exponential", lam=0.1)}, "dispersion"),
        ("negative-binomial", {"dispersion": bm.Prior("Gamma", mu=20, sigma=14)}, "alpha, beta"),
        ("gaussian", {"scales": bm.Prior("HalfNormal", tau=1.0)}, r"HalfNormal\(sigma\)"),
    ],
)
def test_map_without_its_m_steps_priors_fails_before_em(family, priors, named, monkeypatch):
    import bayesmix.regression as regression

    def no_em(*args, **kwargs):
        raise AssertionError("EM ran")

    monkeypatch.setattr(regression, "_iterate", no_em)
    X, y, _ = _simulate(family, np.random.default_rng(5), n=60)
    model = bm.MixtureRegression(family=family, priors=priors, objective="map")
    with pytest.raises(InvalidParameterError, match=named):
        model.fit(X, y, method="em")


def test_map_residual_scale_is_the_mode_of_normal_times_halfnormal():
    for rss, mass, tau in [(12.0, 30.0, 0.5), (0.3, 4.0, 10.0), (50.0, 2.0, 0.1)]:

        def negative(s, rss=rss, mass=mass, tau=tau):
            return mass * np.log(s) + rss / (2 * s**2) + s**2 / (2 * tau**2)

        best = optimize.minimize_scalar(negative, bounds=(1e-6, 100.0), method="bounded")
        best = optimize.minimize_scalar(
            negative, bounds=(0.5 * best.x, 2 * best.x), method="bounded", options={"xatol": 1e-12}
        )
        assert map_residual_scale(rss, mass, tau) == pytest.approx(best.x, rel=1e-7)
    # no prior information: the maximum-likelihood sqrt(rss / mass)
    assert map_residual_scale(12.0, 30.0, 1e12) == pytest.approx(np.sqrt(12.0 / 30.0), rel=1e-12)


def test_penalised_least_squares_is_the_ridge_solution():
    rng = np.random.default_rng(6)
    X = np.column_stack([np.ones(40), rng.normal(size=(40, 2))])
    y = X @ [1.0, 2.0, -1.0] + rng.normal(size=40)
    w = rng.uniform(0.1, 1.0, 40)
    penalty = Penalty(mean=np.array([0.5, 0.0, 0.0]), precision=np.array([0.1, 2.0, 4.0]))
    scale = 0.7
    beta, converged = weighted_fit(X, y, w, GAUSSIAN, penalty=penalty, scale=scale)
    # (X'WX / s^2 + P) beta = X'Wy / s^2 + P m, solved directly
    lhs = (X.T * w) @ X / scale**2 + np.diag(penalty.precision)
    rhs = (X.T * w) @ y / scale**2 + penalty.precision * penalty.mean
    np.testing.assert_allclose(beta, np.linalg.solve(lhs, rhs), rtol=1e-12)
    assert converged


def test_penalised_multinomial_fit_maximises_the_zero_sum_normal_posterior():
    rng = np.random.default_rng(7)
    Z = np.column_stack([np.ones(80), rng.normal(size=80)])
    targets = rng.dirichlet(np.ones(3), 80)
    sd = np.array([1.0, 0.5])
    gamma, converged = weighted_multinomial_fit(Z, targets, prior_sd=sd)
    assert converged
    np.testing.assert_allclose(gamma.sum(axis=0), 0.0, atol=1e-12)

    def negative(flat):  # the same objective over the zero-sum gamma (3 x 2, last row implied)
        free = flat.reshape(2, 2)
        g = np.vstack([free, -free.sum(axis=0)])
        eta = Z @ g.T
        log_p = eta - np.log(np.exp(eta).sum(axis=1, keepdims=True))
        return -(np.sum(targets * log_p) - 0.5 * np.sum((g / sd) ** 2))

    best = optimize.minimize(negative, np.zeros(4), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(gamma[:2], best.x.reshape(2, 2), atol=1e-6)
