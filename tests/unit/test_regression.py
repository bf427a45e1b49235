"""MixtureRegression (issue 19): densities, M-steps, EM, the PyMC model, errors.

References are independent of the code under test: scipy's densities summed over the
enumerated labels, PyMC's ``pm.Mixture`` of the component regressions, statsmodels'
weighted fits, scipy's optimisers of the weighted likelihood written with scipy.stats.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import statsmodels.api as sm
from scipy import optimize, stats

import bayesmix as bm
from bayesmix import regression
from bayesmix._glm import weighted_fit
from bayesmix.exceptions import DataError, InvalidParameterError
from bayesmix.families import FAMILIES
from bayesmix.families.negative_binomial import (
    DISPERSION_BOUNDS,
    fit_negative_binomial_regression,
)

WEIGHTS = np.array([0.4, 0.6])
COEFFICIENTS = np.array([[1.0, 2.0, -0.5], [8.0, -0.5, 0.3]])
SCALES = np.array([0.5, 1.2])


def _simulate(rng, n=300, coefficients=COEFFICIENTS, scales=SCALES, weights=WEIGHTS):
    X = np.column_stack([rng.uniform(0, 10, n), rng.normal(0, 2, n)])
    labels = rng.choice(len(weights), size=n, p=weights)
    design = np.column_stack([np.ones(n), X])
    eta = np.einsum("np,np->n", design, coefficients[labels])
    return X, eta + rng.normal(0, scales[labels]), labels


def _enumerated(X, y, weights, coefficients, scales):
    """log p(y_n | x_n) = log sum_k pi_k N(y_n | x_n' beta_k, sigma_k), by scipy."""
    design = np.column_stack([np.ones(len(y)), X])
    terms = [
        np.log(weights[k]) + stats.norm(design @ coefficients[k], scales[k]).logpdf(y)
        for k in range(len(weights))
    ]
    return np.logaddexp.reduce(terms, axis=0)


def _model_values(model, point):
    outs = model.unobserved_value_vars
    fn = model.compile_fn(outs, inputs=model.value_vars, mode="FAST_COMPILE")
    return dict(zip([out.name for out in outs], fn(point), strict=True))


def test_numpy_density_equals_the_enumerated_label_model():
    rng = np.random.default_rng(0)
    X, y, _ = _simulate(rng, n=50)
    fit = bm.MixtureRegression(n_components=2, random_state=0).fit(X, y, method="em")
    point = {"coefficients": COEFFICIENTS[None], "scales": SCALES[None]}
    values = np.column_stack([y, np.ones(len(y)), X])
    component = fit.component_log_prob(values, point["coefficients"], point["scales"])[0]
    total = np.logaddexp.reduce(np.log(WEIGHTS) + component, axis=1)
    np.testing.assert_allclose(total, _enumerated(X, y, WEIGHTS, COEFFICIENTS, SCALES), atol=1e-10)


def test_pymc_model_equals_the_enumerated_model_and_pm_mixture():
    rng = np.random.default_rng(1)
    X, y, _ = _simulate(rng, n=40)
    model = bm.MixtureRegression(n_components=2).build_model(X, y)
    point = {
        key: value + 0.3 * rng.standard_normal(np.shape(value))
        for key, value in model.initial_point().items()
    }
    values = _model_values(model, point)
    weights, coefficients, scales = values["weights"], values["coefficients"], values["scales"]
    pointwise = model.compile_logp(vars=[model["y"]], sum=False, mode="FAST_COMPILE")(point)[0]
    expected = _enumerated(X, y, weights, coefficients, scales)
    np.testing.assert_allclose(pointwise, expected, rtol=0, atol=1e-8)
    # PyMC's own mixture of the component regressions.
    design = np.column_stack([np.ones(len(y)), X])
    mixture = pm.Mixture.dist(
        w=weights,
        comp_dists=[pm.Normal.dist(mu=design @ coefficients[k], sigma=scales[k]) for k in range(2)],
    )
    np.testing.assert_allclose(pointwise, pm.logp(mixture, y).eval(), rtol=0, atol=1e-8)


def test_the_gaussian_m_step_is_statsmodels_weighted_least_squares():
    rng = np.random.default_rng(2)
    X, y, _ = _simulate(rng, n=80)
    design = sm.add_constant(X)
    weights = rng.uniform(0.05, 1.0, len(y))
    response = FAMILIES["gaussian"]._response
    beta, converged = weighted_fit(design, y, weights, response)
    reference = sm.WLS(y, design, weights=weights).fit().params
    assert converged
    np.testing.assert_allclose(beta, reference, rtol=1e-8, atol=1e-10)


def test_em_recovers_the_lines_and_never_decreases_the_likelihood():
    rng = np.random.default_rng(3)
    X, y, labels = _simulate(rng, n=600)
    fit = bm.MixtureRegression(n_components=2, random_state=0).fit(X, y, method="em")
    # Components ordered by intercept, as the truth is.
    np.testing.assert_allclose(fit.coefficients_, COEFFICIENTS, atol=0.25)
    np.testing.assert_allclose(fit.scales_, SCALES, atol=0.15)
    np.testing.assert_allclose(fit.weights_, np.bincount(labels) / len(labels), atol=0.03)
    trace = fit.idata["em_stats"]["lower_bound"].to_numpy()
    assert np.all(np.diff(trace) >= -1e-10)
    # The stored log-likelihood is the enumerated model's at the estimate.
    expected = _enumerated(X, y, fit.weights_, fit.coefficients_, fit.scales_)
    np.testing.assert_allclose(fit.idata["log_likelihood"]["y"].to_numpy()[0, 0], expected)
    np.testing.assert_allclose(fit.score_samples(X, y), expected)
    n_parameters = 2 * 3 + 2 + 1
    np.testing.assert_allclose(fit.bic(X, y), -2 * expected.sum() + n_parameters * np.log(600))


def test_em_at_the_maximum_the_m_step_is_a_fixed_point():
    # At convergence, weighted least squares with the responsibilities gives back the
    # coefficients (statsmodels, independently of the EM code).
    rng = np.random.default_rng(4)
    X, y, _ = _simulate(rng, n=400)
    fit = bm.MixtureRegression(n_components=2, random_state=0, tol=1e-12).fit(X, y, method="em")
    resp = fit.predict_proba(X, y)
    design = sm.add_constant(X)
    for k in range(2):
        reference = sm.WLS(y, design, weights=resp[:, k]).fit().params
        np.testing.assert_allclose(fit.coefficients_[k], reference, atol=1e-6)


@pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")  # prior draws
def test_dataframes_name_the_coefficients_and_predictions(mocked_sample):
    rng = np.random.default_rng(5)
    X, y, _ = _simulate(rng, n=120)
    frame = pd.DataFrame(X, columns=["dose", "age"])
    response = pd.Series(y, name="growth")
    fit = bm.MixtureRegression(n_components=2, random_state=0)
    with pytest.warns(bm.SamplerWarning):  # prior draws as a "posterior"
        fit.fit(frame, response, draws=30, chains=2, progressbar=False)
    post = fit.idata["posterior"]
    assert list(post["predictor"].to_numpy()) == ["Intercept", "dose", "age"]
    assert post["coefficients"].dims == ("chain", "draw", "component", "predictor")
    assert post["scales"].dims == ("chain", "draw", "component")
    assert fit.idata["log_likelihood"]["y"].dims == ("chain", "draw", "obs")
    np.testing.assert_array_equal(fit.idata["observed_data"]["y"].to_numpy(), y)
    assert fit.feature_names_in_ == ["dose", "age"]
    assert fit.n_features_in_ == 2
    assert fit.response_name_ == "growth"
    # predict: the posterior mean of sum_k pi_k x' beta_k, from the draws.
    draws = fit.posterior_arrays()
    design = np.column_stack([np.ones(len(y)), X])
    expected = np.einsum("sk,np,skp->n", draws["weights"], design, draws["coefficients"])
    np.testing.assert_allclose(fit.predict(frame), expected / draws["weights"].shape[0])
    components = fit.predict_components(frame, prob=0.9)
    assert components["component_mean"].shape == (len(y), 2)
    assert np.all(components["component_lower"] <= components["component_upper"])
    with pytest.raises(DataError, match="dose"):
        fit.predict(frame[["age", "dose"]])


def test_bad_input_fails_before_any_work():
    rng = np.random.default_rng(6)
    X, y, _ = _simulate(rng, n=60)
    model = bm.MixtureRegression(n_components=2)
    bad_y = y.copy()
    bad_y[3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        model.fit(X, bad_y, method="em")
    with pytest.raises(DataError, match="60 rows but y has 59"):
        model.fit(X, y[:-1], method="em")
    constant = np.column_stack([X, np.full(60, 3.0)])
    with pytest.raises(DataError, match="constant"):
        model.fit(constant, y, method="em")
    collinear = np.column_stack([X, 2.0 * X[:, 0] - X[:, 1]])
    with pytest.raises(DataError, match="collinear"):
        model.fit(collinear, y, method="em")
    with pytest.raises(InvalidParameterError, match="student-t"):
        bm.MixtureRegression(family="student-t").fit(X, y, method="em")
    same = pd.DataFrame(X, columns=["y", "x"])
    with pytest.raises(DataError, match="both named"):
        model.fit(same, pd.Series(y, name="y"), method="em")
    with pytest.raises(DataError, match="needs the response: got y=None"):
        model.fit(X, method="em")  # a mixture-of-columns habit: fit(X)


@pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning")  # prior draws
@pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")
def test_plot_regression_draws_lines_bands_and_em(mocked_sample):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rng = np.random.default_rng(7)
    X, y, _ = _simulate(rng, n=100)
    one = X[:, :1]
    em = bm.MixtureRegression(n_components=2, random_state=0).fit(one, y, method="em")
    fig = bm.plot_regression(em)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    means = [line for line in ax.lines if line.get_gid() == "bayesmix-mean"]
    assert len(means) == 2
    # The lines are the estimate's: intercept + slope x at the grid's ends.
    for k, line in enumerate(means):
        x_grid, y_grid = line.get_data()
        np.testing.assert_allclose(y_grid, em.coefficients_[k, 0] + em.coefficients_[k, 1] * x_grid)
    assert not [line for line in ax.lines if line.get_gid() == "bayesmix-em"]  # EM is the fit
    nuts = bm.MixtureRegression(n_components=2, random_state=0)
    nuts.fit(one, y, draws=20, chains=2, progressbar=False)
    ax = bm.plot_regression(nuts).axes[0]
    assert len([line for line in ax.lines if line.get_gid() == "bayesmix-em"]) == 2
    assert len([c for c in ax.collections if c.get_gid() == "bayesmix-band"]) == 2
    two = bm.MixtureRegression(n_components=2, random_state=0).fit(X, y, method="em")
    forest = bm.plot_regression(two, X, y).axes[0]
    assert [t.get_text() for t in forest.get_yticklabels()] == ["Intercept", "x0", "x1"]
    with pytest.raises(InvalidParameterError, match="MixtureRegression"):
        bm.plot_regression(bm.GaussianMixture().fit(X, method="em"))


# -- GLM components (log and logit links) --------------------------------------------------

GLM_COEFFICIENTS = {
    "poisson": np.array([[0.2, 0.25, -0.1], [2.0, -0.15, 0.2]]),
    "bernoulli": np.array([[-2.0, 0.6, 0.5], [2.5, -0.5, -0.4]]),
    "negative-binomial": np.array([[0.2, 0.25, -0.1], [2.0, -0.15, 0.2]]),
}
# The negative binomial's dispersions (NB2: variance mu + mu^2 / dispersion).
DISPERSIONS = np.array([5.0, 2.0])
GLM_FAMILIES = ["poisson", "bernoulli", "negative-binomial"]


def _simulate_glm(family, rng, n=400):
    X = np.column_stack([rng.uniform(0, 10, n), rng.normal(0, 2, n)])
    labels = rng.choice(2, size=n, p=WEIGHTS)
    eta = np.einsum("np,np->n", np.column_stack([np.ones(n), X]), GLM_COEFFICIENTS[family][labels])
    if family == "poisson":
        return X, rng.poisson(np.exp(eta)).astype(float), labels
    if family == "negative-binomial":
        alpha = DISPERSIONS[labels]
        return X, rng.negative_binomial(alpha, alpha / (alpha + np.exp(eta))).astype(float), labels
    return X, (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float), labels


def _glm_logpmf(family, y, eta, dispersion=None):
    if family == "poisson":
        return stats.poisson.logpmf(y, np.exp(eta))
    if family == "negative-binomial":  # scipy's nbinom(n, p): n = alpha, p = alpha / (alpha + mu)
        return stats.nbinom.logpmf(y, dispersion, dispersion / (dispersion + np.exp(eta)))
    return stats.bernoulli.logpmf(y, 1.0 / (1.0 + np.exp(-eta)))


def _pm_component(family, eta, dispersion=None):
    if family == "poisson":
        return pm.Poisson.dist(np.exp(eta))
    if family == "negative-binomial":
        return pm.NegativeBinomial.dist(mu=np.exp(eta), alpha=dispersion)
    return pm.Bernoulli.dist(1.0 / (1.0 + np.exp(-eta)))


@pytest.mark.parametrize("family", GLM_FAMILIES)
def test_glm_pymc_model_equals_the_enumerated_model_and_pm_mixture(family):
    rng = np.random.default_rng(8)
    X, y, _ = _simulate_glm(family, rng, n=40)
    model = bm.MixtureRegression(n_components=2, family=family).build_model(X, y)
    point = {
        key: value + 0.2 * rng.standard_normal(np.shape(value))
        for key, value in model.initial_point().items()
    }
    values = _model_values(model, point)
    weights, coefficients = values["weights"], values["coefficients"]
    dispersion = values.get("dispersion", [None, None])
    design = np.column_stack([np.ones(len(y)), X])
    terms = [
        np.log(weights[k]) + _glm_logpmf(family, y, design @ coefficients[k], dispersion[k])
        for k in range(2)
    ]
    expected = np.logaddexp.reduce(terms, axis=0)
    pointwise = model.compile_logp(vars=[model["y"]], sum=False, mode="FAST_COMPILE")(point)[0]
    np.testing.assert_allclose(pointwise, expected, rtol=0, atol=1e-8)
    mixture = pm.Mixture.dist(
        w=weights,
        comp_dists=[
            _pm_component(family, design @ coefficients[k], dispersion[k]) for k in range(2)
        ],
    )
    np.testing.assert_allclose(pointwise, pm.logp(mixture, y).eval(), rtol=0, atol=1e-8)
    # The NumPy density of the fitted model's class, at the same point.
    fit = bm.MixtureRegression(n_components=2, family=family, random_state=0)
    params = [coefficients[None]]
    if family == "negative-binomial":
        params.append(dispersion[None])
    component = fit.component_log_prob(np.column_stack([y, design]), *params)[0]
    np.testing.assert_allclose(
        np.logaddexp.reduce(np.log(weights) + component, axis=1), expected, atol=1e-10
    )


@pytest.mark.parametrize("family", ["poisson", "bernoulli"])
def test_glm_m_step_is_statsmodels_weighted_glm(family):
    rng = np.random.default_rng(9)
    X, y, _ = _simulate_glm(family, rng, n=150)
    design = sm.add_constant(X)
    weights = rng.uniform(0.05, 1.0, len(y))
    beta, converged = weighted_fit(design, y, weights, FAMILIES[family]._response)
    glm_family = sm.families.Poisson() if family == "poisson" else sm.families.Binomial()
    reference = sm.GLM(y, design, family=glm_family, freq_weights=weights).fit(tol=1e-14).params
    assert converged
    np.testing.assert_allclose(beta, reference, rtol=1e-8, atol=1e-10)


@pytest.fixture(scope="module")
def nb_em():
    """An EM fit of a mixture of two negative binomial regressions (N = 1500)."""
    rng = np.random.default_rng(10)
    X, y, labels = _simulate_glm("negative-binomial", rng, n=1500)
    model = bm.MixtureRegression(n_components=2, family="negative-binomial", random_state=0)
    return X, y, labels, model.fit(X, y, method="em")


@pytest.mark.parametrize("family", GLM_FAMILIES)
def test_glm_em_recovers_the_coefficients_and_never_decreases_the_likelihood(family, request):
    if family == "negative-binomial":  # its recovery: test_negative_binomial_em_recovers_...
        X, y, _, fit = request.getfixturevalue("nb_em")
    else:
        rng = np.random.default_rng(10)
        X, y, _ = _simulate_glm(family, rng, n=1500)
        model = bm.MixtureRegression(n_components=2, family=family, random_state=0)
        fit = model.fit(X, y, method="em")
    assert not hasattr(fit, "scales_")
    design = np.column_stack([np.ones(len(y)), X])
    if family == "poisson":
        np.testing.assert_allclose(fit.coefficients_, GLM_COEFFICIENTS[family], atol=0.15)
    elif family == "bernoulli":
        # One binary response per observation identifies only the mixture's probability
        # curve sum_k pi_k expit(x' beta_k), not its components (Follmann & Lambert 1991).
        truth = WEIGHTS @ (1.0 / (1.0 + np.exp(-(GLM_COEFFICIENTS[family] @ design.T))))
        assert np.mean(np.abs(fit.predict(X) - truth)) < 0.05
    trace = fit.idata["em_stats"]["lower_bound"].to_numpy()
    assert np.all(np.diff(trace) >= -1e-10)
    predicted = fit.predict(X)
    assert np.all(predicted > 0)
    if family == "bernoulli":
        assert np.all(predicted < 1)


def test_glm_responses_outside_the_support_fail_before_any_work(monkeypatch):
    rng = np.random.default_rng(11)
    X, y, _ = _simulate_glm("poisson", rng, n=50)

    def no_work(*args, **kwargs):
        raise AssertionError("EM ran on responses outside the support")

    monkeypatch.setattr(regression, "_fit_regression_em", no_work)
    with pytest.raises(DataError, match="counts"):
        bm.MixtureRegression(family="poisson").fit(X, y + 0.5, method="em")
    with pytest.raises(DataError, match="0/1"):
        bm.MixtureRegression(family="bernoulli").fit(X, y, method="em")
    for bad in (y + 0.5, -y - 1.0):  # fractional, negative
        with pytest.raises(DataError, match="negative binomial regression needs counts"):
            bm.MixtureRegression(family="negative-binomial").fit(X, bad, method="em")
        with pytest.raises(DataError, match="counts"):  # nor a model for NUTS
            bm.MixtureRegression(family="negative-binomial").build_model(X, bad)


# -- negative binomial components (NB2, log link, a dispersion per component) ----------------


def _weighted_nb_objective(design, y, weights, theta):
    """Minus sum_n w_n log NB(y_n | exp(x_n' beta), alpha) at theta = (beta, log alpha) (scipy)."""
    alpha = np.exp(theta[-1])
    mu = np.exp(design @ theta[:-1])
    return -weights @ stats.nbinom.logpmf(y, alpha, alpha / (alpha + mu))


@pytest.mark.parametrize("seed", [9, 3])
def test_negative_binomial_m_step_is_the_weighted_maximum(seed):
    # The M-step maximises the weighted likelihood jointly in the coefficients and the
    # dispersion: L-BFGS-B on the same objective written with scipy.stats.nbinom.
    rng = np.random.default_rng(seed)
    X, y, _ = _simulate_glm("negative-binomial", rng, n=150)
    design = sm.add_constant(X)
    weights = rng.uniform(0.05, 1.0, len(y))
    beta, dispersion, converged = fit_negative_binomial_regression(design, y, weights)
    assert converged
    ours = np.append(beta, np.log(dispersion))
    reference = optimize.minimize(
        lambda theta: _weighted_nb_objective(design, y, weights, theta),
        np.zeros(4),
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000},
    )
    assert reference.success
    np.testing.assert_allclose(ours, reference.x, rtol=0, atol=1e-6)
    objective = _weighted_nb_objective(design, y, weights, ours)
    assert abs(objective - reference.fun) <= 1e-8
    # Unweighted: statsmodels' NB2 regression (its alpha is 1 / dispersion).
    beta, dispersion, _ = fit_negative_binomial_regression(design, y, np.ones(len(y)))
    nb2 = sm.NegativeBinomial(y, design).fit(disp=0, method="newton", tol=1e-14, maxiter=100)
    np.testing.assert_allclose(beta, nb2.params[:-1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(1.0 / dispersion, nb2.params[-1], rtol=0, atol=1e-5)
    # From the previous M-step's estimate (EM's warm start): the same maximum.
    again, dispersion_again, _ = fit_negative_binomial_regression(
        design, y, np.ones(len(y)), beta + 0.1, 2.0 * dispersion
    )
    np.testing.assert_allclose(again, beta, rtol=0, atol=1e-8)
    np.testing.assert_allclose(dispersion_again, dispersion, rtol=1e-8)
    # Integer weights are repeated rows.
    counts = rng.integers(0, 4, len(y))
    weighted = fit_negative_binomial_regression(design, y, counts.astype(float))
    repeated = fit_negative_binomial_regression(
        np.repeat(design, counts, axis=0), np.repeat(y, counts), np.ones(counts.sum())
    )
    np.testing.assert_allclose(weighted[0], repeated[0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(weighted[1], repeated[1], rtol=1e-8)


def test_negative_binomial_m_step_stops_at_the_poisson_limit():
    # Counts less dispersed than a Poisson's: the likelihood rises towards the Poisson
    # limit, and the dispersion ends exactly on its upper bound (as the mixture's EM).
    rng = np.random.default_rng(12)
    design = sm.add_constant(rng.uniform(0, 2, 200))
    y = np.round(np.exp(design @ np.array([0.5, 0.8])))  # variance < mean
    weights = rng.uniform(0.5, 1.0, len(y))
    beta, dispersion, converged = fit_negative_binomial_regression(design, y, weights)
    assert converged
    assert dispersion == DISPERSION_BOUNDS[1]
    at = np.append(beta, np.log(dispersion))
    below = np.append(beta, np.log(dispersion / 10.0))
    objective = functools.partial(_weighted_nb_objective, design, y, weights)
    assert objective(at) < objective(below)
    # The coefficients are the weighted Poisson fit's (the limit) to O(mu / dispersion).
    poisson = sm.GLM(y, design, family=sm.families.Poisson(), freq_weights=weights)
    np.testing.assert_allclose(beta, poisson.fit(tol=1e-14).params, atol=1e-4)


def test_negative_binomial_pymc_model_with_concomitant_variables_equals_the_enumerated_model():
    rng = np.random.default_rng(13)
    X, y, _ = _simulate_glm("negative-binomial", rng, n=40)
    Z = rng.normal(0, 1, (40, 1))
    model = bm.MixtureRegression(
        n_components=2, family="negative-binomial", concomitant=True
    ).build_model(X, y, Z)
    point = {
        key: value + 0.3 * rng.standard_normal(np.shape(value))
        for key, value in model.initial_point().items()
    }
    values = _model_values(model, point)
    gamma, coefficients = values["concomitant"].T, values["coefficients"]
    dispersion = values["dispersion"]
    design = np.column_stack([np.ones(len(y)), X])
    eta = np.column_stack([np.ones(len(y)), Z]) @ gamma.T
    log_pi = eta - np.logaddexp.reduce(eta, axis=1, keepdims=True)
    terms = [
        log_pi[:, k] + _glm_logpmf("negative-binomial", y, design @ coefficients[k], dispersion[k])
        for k in range(2)
    ]
    expected = np.logaddexp.reduce(terms, axis=0)
    pointwise = model.compile_logp(vars=[model["y"]], sum=False, mode="FAST_COMPILE")(point)[0]
    np.testing.assert_allclose(pointwise, expected, rtol=0, atol=1e-8)
    fit = bm.MixtureRegression(n_components=2, family="negative-binomial", concomitant=True)
    matrix = np.column_stack([y, design, np.ones(len(y)), Z])
    component = fit.component_log_prob(matrix, coefficients[None], dispersion[None], gamma[None])[0]
    np.testing.assert_allclose(np.logaddexp.reduce(component, axis=1), expected, atol=1e-10)


def _enumerated_nb(design, y, theta):
    """The mixture log-likelihood at theta = (log(pi_1 / pi_0), beta (2 x P), log alpha)."""
    p = design.shape[1]
    logit, beta, log_alpha = theta[0], theta[1 : 1 + 2 * p].reshape(2, p), theta[1 + 2 * p :]
    log_pi = -np.logaddexp(0.0, np.array([logit, -logit]))
    terms = [
        log_pi[k] + _glm_logpmf("negative-binomial", y, design @ beta[k], np.exp(log_alpha[k]))
        for k in range(2)
    ]
    return np.logaddexp.reduce(terms, axis=0).sum()


def test_negative_binomial_em_recovers_the_coefficients_and_dispersions(nb_em):
    # Tolerance from N: every parameter within 4 standard errors of the truth, the
    # standard errors from the observed information of the enumerated-label likelihood
    # (scipy, central differences) at the EM estimate (N = 1500: 0.08-0.25 for the
    # intercepts, the log-odds of the weights and the log dispersions, 0.015-0.02 for the
    # slopes; the errors are within 1.1 se).
    X, y, _, fit = nb_em
    design = np.column_stack([np.ones(len(y)), X])
    estimate = np.concatenate(
        [
            [np.log(fit.weights_[1] / fit.weights_[0])],
            fit.coefficients_.reshape(-1),
            np.log(fit.dispersion_),
        ]
    )
    truth = np.concatenate(
        [
            [np.log(WEIGHTS[1] / WEIGHTS[0])],
            GLM_COEFFICIENTS["negative-binomial"].reshape(-1),
            np.log(DISPERSIONS),
        ]
    )
    h, size = 1e-4, estimate.size
    steps = h * np.eye(size)
    hessian = np.empty((size, size))
    for i in range(size):
        for j in range(i, size):
            hessian[i, j] = hessian[j, i] = (
                _enumerated_nb(design, y, estimate + steps[i] + steps[j])
                - _enumerated_nb(design, y, estimate + steps[i] - steps[j])
                - _enumerated_nb(design, y, estimate - steps[i] + steps[j])
                + _enumerated_nb(design, y, estimate - steps[i] - steps[j])
            ) / (4 * h * h)
    se = np.sqrt(np.diag(np.linalg.inv(-hessian)))
    assert np.all(se < 0.3)  # N = 1500 pins them down
    assert np.all(np.abs(estimate - truth) <= 4 * se), (estimate - truth) / se
    # The estimate is the maximum of the enumerated likelihood, up to EM's tolerance (1e-6
    # in the mean log-likelihood): Newton's step from it is a small fraction of an se
    # (at most 0.04 here).
    gradient = optimize.approx_fprime(estimate, lambda t: _enumerated_nb(design, y, t), 1e-6)
    assert np.all(np.abs(np.linalg.solve(-hessian, gradient)) < 0.1 * se)
    # Stored log-likelihood, score_samples and BIC (+2 dispersions) are the enumerated model's.
    terms = [
        np.log(fit.weights_[k])
        + _glm_logpmf("negative-binomial", y, design @ fit.coefficients_[k], fit.dispersion_[k])
        for k in range(2)
    ]
    expected = np.logaddexp.reduce(terms, axis=0)
    np.testing.assert_allclose(fit.idata["log_likelihood"]["y"].to_numpy()[0, 0], expected)
    np.testing.assert_allclose(fit.score_samples(X, y), expected, rtol=1e-12)
    n_parameters = 2 * 3 + 2 + 1
    np.testing.assert_allclose(fit.bic(X, y), -2 * expected.sum() + n_parameters * np.log(1500))
    np.testing.assert_allclose(fit.aic(X, y), -2 * expected.sum() + 2 * n_parameters)
    # predict_proba: the responsibilities of the enumerated model.
    np.testing.assert_allclose(
        fit.predict_proba(X, y), np.exp(np.array(terms).T - expected[:, None])
    )
    # predict: the mixture mean sum_k pi_k exp(x' beta_k).
    means = np.exp(design @ fit.coefficients_.T)
    np.testing.assert_allclose(fit.predict(X), means @ fit.weights_)
    assert fit.idata["posterior"]["dispersion"].dims == ("chain", "draw", "component")


def test_negative_binomial_posterior_predictive_has_the_mixture_moments(nb_em):
    # One replicate of N = 1500 responses at the EM estimate: its mean and variance are
    # the mixture's, sum_k pi_k mu_k and sum_k pi_k (mu_k + mu_k^2 / alpha_k + mu_k^2) - m^2.
    X, _, _, fit = nb_em
    result = fit.sample_posterior_predictive(random_seed=0, extend_idata=False)
    replicate = result["posterior_predictive"]["y"].to_numpy().reshape(-1)
    assert replicate.shape == (1500,)
    assert np.all(replicate >= 0)
    assert np.all(replicate == np.round(replicate))
    mu = np.exp(np.column_stack([np.ones(len(X)), X]) @ fit.coefficients_.T)  # (N, K)
    mean = mu @ fit.weights_
    variance = (mu + mu**2 / fit.dispersion_ + mu**2) @ fit.weights_ - mean**2
    z = (replicate - mean).sum() / np.sqrt(variance.sum())
    assert abs(z) < 4
    np.testing.assert_allclose(np.sum((replicate - mean) ** 2), variance.sum(), rtol=0.2)


@pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")  # prior draws
def test_negative_binomial_posterior_plumbing(mocked_sample):
    rng = np.random.default_rng(14)
    X, y, _ = _simulate_glm("negative-binomial", rng, n=120)
    # The family's own name is accepted for its registry name.
    fit = bm.MixtureRegression(n_components=2, family="negative_binomial", random_state=0)
    assert fit._response is FAMILIES["negative-binomial"]._response
    with pytest.warns(bm.SamplerWarning):  # prior draws as a "posterior"
        fit.fit(X, y, draws=30, chains=2, progressbar=False)
    post = fit.idata["posterior"]
    assert post["dispersion"].dims == ("chain", "draw", "component")
    assert np.all(post["dispersion"].to_numpy() > 0)
    assert fit.dispersion_.shape == (2,)
    assert fit.priors_["dispersion"] == bm.Prior("Gamma", alpha=2.0, beta=0.1)
    # The NUTS start: an EM dispersion at the Poisson limit is moved into the prior's bulk.
    limit = {**fit.em_.params, "dispersion": np.array([4.0, DISPERSION_BOUNDS[1]])}
    start = fit._start_from_em(dataclasses.replace(fit.em_, params=limit), 2)
    np.testing.assert_array_equal(start["dispersion"], [4.0, 1e3])
    np.testing.assert_array_equal(start["coefficients"], fit.em_.params["coefficients"])
    draws = fit.posterior_arrays()
    design = np.column_stack([np.ones(len(y)), X])
    means = np.exp(np.einsum("np,skp->snk", design, draws["coefficients"]))
    expected = np.einsum("sk,snk->n", draws["weights"], means) / draws["weights"].shape[0]
    np.testing.assert_allclose(fit.predict(X), expected)
    components = fit.predict_components(X, prob=0.9)
    np.testing.assert_allclose(components["component_mean"], means.mean(axis=0))
    proba = fit.predict_proba(X, y)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert "dispersion[1]" in fit.summary().index
    with pytest.raises(bm.exceptions.PriorError, match="dispersion"):
        bm.MixtureRegression(
            family="negative-binomial", priors={"dispersion": bm.Prior("HalfCauchy", beta=1.0)}
        ).fit(X, y, method="em")


# -- concomitant variables (covariates of the mixing proportions) ----------------------------

GAMMA = np.array([[0.0, 0.0], [0.4, 1.2]])  # (component, [intercept, w]) before centring


def _simulate_concomitant(rng, n=600):
    X = rng.uniform(0, 10, (n, 1))
    Z = rng.normal(0, 1, (n, 1))
    eta = np.column_stack([np.ones(n), Z]) @ GAMMA.T
    proportions = np.exp(eta - np.logaddexp.reduce(eta, axis=1, keepdims=True))
    labels = (rng.random(n)[:, None] > np.cumsum(proportions, axis=1)).sum(axis=1)
    design = np.column_stack([np.ones(n), X])
    lines = COEFFICIENTS[:, :2]
    y = np.einsum("np,np->n", design, lines[labels]) + rng.normal(0, SCALES[labels])
    return X, y, Z, proportions


def _enumerated_concomitant(X, y, Z, gamma, coefficients, scales):
    design = np.column_stack([np.ones(len(y)), X])
    eta = np.column_stack([np.ones(len(y)), Z]) @ gamma.T
    log_pi = eta - np.logaddexp.reduce(eta, axis=1, keepdims=True)
    terms = [
        log_pi[:, k] + stats.norm(design @ coefficients[k], scales[k]).logpdf(y) for k in range(2)
    ]
    return np.logaddexp.reduce(terms, axis=0)


def test_concomitant_pymc_model_and_numpy_density_equal_the_enumerated_model():
    rng = np.random.default_rng(12)
    X, y, Z, _ = _simulate_concomitant(rng, n=40)
    model = bm.MixtureRegression(n_components=2, concomitant=True).build_model(X, y, Z)
    assert "weights" not in [rv.name for rv in model.free_RVs]
    point = {
        key: value + 0.3 * rng.standard_normal(np.shape(value))
        for key, value in model.initial_point().items()
    }
    values = _model_values(model, point)
    gamma = values["concomitant"].T  # the posterior's dims are (covariate, component)
    np.testing.assert_allclose(gamma.sum(axis=0), 0.0, atol=1e-12)  # zero-sum
    coefficients, scales = values["coefficients"], values["scales"]
    expected = _enumerated_concomitant(X, y, Z, gamma, coefficients, scales)
    pointwise = model.compile_logp(vars=[model["y"]], sum=False, mode="FAST_COMPILE")(point)[0]
    np.testing.assert_allclose(pointwise, expected, rtol=0, atol=1e-8)
    eta = np.column_stack([np.ones(len(y)), Z]) @ gamma.T
    average = np.exp(eta - np.logaddexp.reduce(eta, axis=1, keepdims=True)).mean(axis=0)
    np.testing.assert_allclose(values["weights"], average, atol=1e-12)
    fit = bm.MixtureRegression(n_components=2, concomitant=True)
    matrix = np.column_stack([y, np.ones(len(y)), X, np.ones(len(y)), Z])
    component = fit.component_log_prob(matrix, coefficients[None], scales[None], gamma[None])[0]
    np.testing.assert_allclose(np.logaddexp.reduce(component, axis=1), expected, atol=1e-10)


def test_concomitant_m_step_is_the_multinomial_logit():
    from bayesmix._glm import weighted_multinomial_fit

    rng = np.random.default_rng(13)
    n = 300
    Z = sm.add_constant(rng.normal(size=(n, 2)))
    gamma = np.array([[0.0, 0.0, 0.0], [0.5, 1.0, -0.5], [-0.3, -0.8, 0.7]])
    eta = Z @ gamma.T
    proportions = np.exp(eta - np.logaddexp.reduce(eta, axis=1, keepdims=True))
    labels = (rng.random(n)[:, None] > np.cumsum(proportions, axis=1)).sum(axis=1)
    # Hard labels: statsmodels' multinomial logit (component 0 the reference).
    fitted, converged = weighted_multinomial_fit(Z, np.eye(3)[labels])
    reference = sm.MNLogit(labels, Z).fit(disp=0, method="newton", tol=1e-14).params.T
    assert converged
    np.testing.assert_allclose(fitted[1:] - fitted[0], reference, atol=1e-8)
    np.testing.assert_allclose(fitted.sum(axis=0), 0.0, atol=1e-12)  # centred
    # Soft labels (responsibilities times weights): the gradient of the objective,
    # written here independently and differentiated numerically, vanishes there.
    soft = rng.dirichlet(np.ones(3), size=n) * rng.uniform(0.5, 2.0, (n, 1))
    fitted, _ = weighted_multinomial_fit(Z, soft)

    def objective(flat):
        eta = Z @ flat.reshape(3, 3).T
        return np.sum(soft * (eta - np.logaddexp.reduce(eta, axis=1, keepdims=True)))

    gradient = optimize.approx_fprime(fitted.reshape(-1), objective, 1e-6)
    assert np.abs(gradient).max() < 1e-4


def test_concomitant_em_recovers_the_proportions_model():
    rng = np.random.default_rng(14)
    X, y, Z, _ = _simulate_concomitant(rng, n=1500)
    fit = bm.MixtureRegression(n_components=2, concomitant=True, random_state=0)
    fit.fit(X, y, Z, method="em")
    np.testing.assert_allclose(fit.coefficients_, COEFFICIENTS[:, :2], atol=0.2)
    truth = GAMMA - GAMMA.mean(axis=0)  # the centred representative
    np.testing.assert_allclose(fit.concomitant_, truth, atol=0.2)
    post = fit.idata["posterior"]
    # Zero-sum over the components (the identified parameterisation).
    assert post["concomitant"].dims == ("chain", "draw", "covariate", "component")
    assert list(post["covariate"].to_numpy()) == ["Intercept", "x0"]
    assert fit.covariate_names_ == ["Intercept", "x0"]
    # The stored log-likelihood is the enumerated model's at the estimate.
    expected = _enumerated_concomitant(X, y, Z, fit.concomitant_, fit.coefficients_, fit.scales_)
    np.testing.assert_allclose(fit.score_samples(X, y, Z), expected, atol=1e-10)
    np.testing.assert_allclose(post["weights"].to_numpy()[0, 0], fit.weights_)
    trace = fit.idata["em_stats"]["lower_bound"].to_numpy()
    assert np.all(np.diff(trace) >= -1e-10)
    n_parameters = 2 * 2 + 2 + 1 * 2
    np.testing.assert_allclose(fit.bic(X, y, Z), -2 * expected.sum() + n_parameters * np.log(1500))
    # Predictions weight the lines by each row's proportions.
    eta = np.column_stack([np.ones(len(y)), Z]) @ fit.concomitant_.T
    proportions = np.exp(eta - np.logaddexp.reduce(eta, axis=1, keepdims=True))
    lines = np.column_stack([np.ones(len(y)), X]) @ fit.coefficients_.T
    np.testing.assert_allclose(fit.predict(X, Z), np.sum(proportions * lines, axis=1))
    assert "concomitant[x0, 1]" in fit.summary().index


def test_concomitant_inputs_fail_before_any_work():
    rng = np.random.default_rng(15)
    X, y, Z, _ = _simulate_concomitant(rng, n=60)
    with pytest.raises(DataError, match="concomitant=False"):
        bm.MixtureRegression().fit(X, y, Z, method="em")
    with pytest.raises(DataError, match="concomitant=True models"):
        bm.MixtureRegression(concomitant=True).fit(X, y, method="em")
    with pytest.raises(DataError, match="Z has 59"):
        bm.MixtureRegression(concomitant=True).fit(X, y, Z[:-1], method="em")
    with pytest.raises(DataError, match="constant"):
        bm.MixtureRegression(concomitant=True).fit(X, y, np.ones((60, 1)), method="em")


@pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning")  # prior draws
@pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")
def test_concomitant_summary_labels_follow_the_posterior(mocked_sample):
    # arviz-stats 1.x mislabels a (covariate, component) variable summarised next to
    # (component, ...) ones; the summary takes one variable at a time.
    rng = np.random.default_rng(16)
    X, y, Z, _ = _simulate_concomitant(rng, n=80)
    fit = bm.MixtureRegression(n_components=2, concomitant=True, random_state=0)
    fit.fit(X, y, Z, draws=30, chains=2, progressbar=False)
    post = fit.idata["posterior"]["concomitant"]
    table = fit.summary()
    for covariate in ("Intercept", "x0"):
        for k in (0, 1):
            expected = float(post.sel(covariate=covariate, component=k).mean())
            np.testing.assert_allclose(
                table.loc[f"concomitant[{covariate}, {k}]", "mean"], expected
            )


@pytest.mark.parametrize(
    "settings",
    [{}, {"concomitant": True}, {"family": "poisson"}, {"family": "negative-binomial"}],
    ids=["gaussian", "Z", "pois", "nb"],
)
def test_a_fit_saves_and_loads(settings, tmp_path):
    rng = np.random.default_rng(17)
    X, y, Z, _ = _simulate_concomitant(rng, n=150)
    if settings.get("family") in ("poisson", "negative-binomial"):
        y = np.round(np.abs(y))
    args = (X, y, Z) if settings.get("concomitant") else (X, y)
    fit = bm.MixtureRegression(n_components=2, random_state=0, **settings).fit(*args, method="em")
    fit.save(tmp_path / "fit.nc")
    loaded = bm.load(tmp_path / "fit.nc")
    assert type(loaded) is bm.MixtureRegression
    assert loaded.get_params() == fit.get_params()
    np.testing.assert_array_equal(loaded.coefficients_, fit.coefficients_)
    np.testing.assert_array_equal(loaded.predict_proba(*args), fit.predict_proba(*args))
    assert loaded.predictor_names_ == fit.predictor_names_
    np.testing.assert_array_equal(
        loaded.idata["log_likelihood"]["y"], fit.idata["log_likelihood"]["y"]
    )


def test_a_damaged_saved_fit_names_the_field(tmp_path):
    rng = np.random.default_rng(18)
    X, y, _ = _simulate(rng, n=80)
    fit = bm.MixtureRegression(n_components=2, random_state=0).fit(X, y, method="em")
    fit.idata["posterior"]["scales"] = -fit.idata["posterior"]["scales"]
    fit.save(tmp_path / "bad.nc")
    with pytest.raises(bm.exceptions.LoadError, match="scales"):
        bm.load(tmp_path / "bad.nc")


def test_select_k_compares_mixtures_of_regressions():
    rng = np.random.default_rng(19)
    X, y, Z, _ = _simulate_concomitant(rng, n=400)
    table = bm.select_k(
        X,
        [1, 2, 3],
        model=bm.MixtureRegression,
        y=y,
        method="em",
        random_state=0,
        progressbar=False,
    )
    assert table.attrs["best"]["bic"] == 2
    # Each row's BIC is the fit's own.
    for k, bic in zip(table["n_components"], table["bic"], strict=True):
        fit = bm.MixtureRegression(n_components=k, random_state=0).fit(X, y, method="em")
        np.testing.assert_allclose(bic, fit.bic(X, y))
    with_z = bm.select_k(
        X,
        [1, 2],
        model=bm.MixtureRegression,
        y=y,
        Z=Z,
        concomitant=True,
        method="em",
        random_state=0,
        progressbar=False,
    )
    assert with_z.attrs["best"]["bic"] == 2
    with pytest.raises(InvalidParameterError, match="response"):
        bm.select_k(X, [1, 2], model=bm.MixtureRegression, method="em", progressbar=False)
    with pytest.raises(InvalidParameterError, match="y and Z"):
        bm.select_k(X, [1, 2], y=y, method="em", progressbar=False)


def test_select_k_compares_negative_binomial_regressions():
    rng = np.random.default_rng(21)
    X, y, _ = _simulate_glm("negative-binomial", rng, n=600)
    table = bm.select_k(
        X,
        [1, 2],
        model=bm.MixtureRegression,
        y=y,
        family="negative-binomial",
        method="em",
        random_state=0,
        progressbar=False,
    )
    assert table.attrs["best"]["bic"] == 2
    model = bm.MixtureRegression(n_components=2, family="negative-binomial", random_state=0)
    fit = model.fit(X, y, method="em")
    np.testing.assert_allclose(table["bic"].to_numpy()[1], fit.bic(X, y))


def test_plot_concomitant_draws_the_proportions():
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(20)
    X, y, Z, _ = _simulate_concomitant(rng, n=300)
    fit = bm.MixtureRegression(n_components=2, concomitant=True, random_state=0)
    fit.fit(X, y, Z, method="em")
    ax = bm.plot_concomitant(fit).axes[0]
    lines = [line for line in ax.lines if line.get_gid() == "bayesmix-mean"]
    assert len(lines) == 2
    grid, first = lines[0].get_data()
    eta = np.column_stack([np.ones_like(grid), grid]) @ fit.concomitant_.T
    expected = np.exp(eta - np.logaddexp.reduce(eta, axis=1, keepdims=True))
    np.testing.assert_allclose(first, expected[:, 0], atol=1e-12)
    np.testing.assert_allclose(lines[1].get_data()[1], expected[:, 1], atol=1e-12)
    with pytest.raises(InvalidParameterError, match="not one of"):
        bm.plot_concomitant(fit, "age")
    plain = bm.MixtureRegression(n_components=2, random_state=0).fit(X, y, method="em")
    with pytest.raises(InvalidParameterError, match="concomitant=True"):
        bm.plot_concomitant(plain)
