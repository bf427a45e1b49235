"""Tests of bayesmix.em.loop (Poisson, Bernoulli and Student-t mixture EM).

scipy.stats is the independent oracle for every density and objective;
bayesmix.families.gaussian.em.fit_em for the Gaussian limit of the Student-t mixture.
"""

from __future__ import annotations

import itertools
import json
import logging
import warnings

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import logsumexp

from bayesmix.em.loop import MixtureEMResult, _log_dirichlet, _map_weights
from bayesmix.exceptions import ConvergenceWarning, DataError, FitError, InvalidParameterError
from bayesmix.families import bernoulli, poisson, student_t
from bayesmix.families.bernoulli import fit_bernoulli_em
from bayesmix.families.gaussian.em import COVARIANCE_TYPES, fit_em
from bayesmix.families.poisson import fit_poisson_em
from bayesmix.families.student_t import fit_student_t_em


# The per-component densities of one parameter point, (N, K): bayesmix.stats evaluates
# them for a batch of draws, and EM calls it with one draw.
def poisson_log_prob(X, rates):
    return poisson.poisson_log_prob(X, np.asarray(rates)[None])[0]


def bernoulli_log_prob(X, probs):
    return bernoulli.bernoulli_log_prob(X, np.asarray(probs)[None])[0]


def student_t_log_prob(X, means, scales, dof):
    return student_t.student_t_log_prob(X, means[None], scales[None], np.asarray(dof)[None])[0]


# ---------------------------------------------------------------------------------------
# Simulated data (module-level truth; every sampler takes its own seed)

POISSON_WEIGHTS = np.array([0.35, 0.65])
POISSON_RATES = np.array([[1.0, 5.0, 10.0], [8.0, 2.0, 3.0]])
BERNOULLI_WEIGHTS = np.array([0.4, 0.6])
BERNOULLI_PROBS = np.array([[0.9, 0.8, 0.2, 0.1, 0.7, 0.3], [0.2, 0.3, 0.8, 0.9, 0.1, 0.6]])
T_WEIGHTS = np.array([0.4, 0.6])
T_MEANS = np.array([[0.0, 0.0], [6.0, 3.0]])
T_SCALES = np.array([np.eye(2), [[1.0, 0.5], [0.5, 2.0]]])
T_DOF = np.array([4.0, 4.0])


def _poisson_data(n, seed, weights=POISSON_WEIGHTS, rates=POISSON_RATES):
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(weights), size=n, p=weights)
    return rng.poisson(rates[labels]).astype(np.float64)


def _bernoulli_data(n, seed, weights=BERNOULLI_WEIGHTS, probs=BERNOULLI_PROBS):
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(weights), size=n, p=weights)
    return (rng.random((n, probs.shape[1])) < probs[labels]).astype(np.float64)


def _t_data(n, seed, weights=T_WEIGHTS, means=T_MEANS, scales=T_SCALES, dof=T_DOF):
    """Multivariate t draws via the normal / chi-square representation."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(weights), size=n, p=weights)
    z = rng.standard_normal((n, means.shape[1]))
    chol = np.linalg.cholesky(scales)
    g = rng.chisquare(dof[labels]) / dof[labels]
    return means[labels] + np.einsum("nij,nj->ni", chol[labels], z) / np.sqrt(g)[:, None]


def _best_permutation(estimate, truth):
    """Permutation of the estimated components closest (max abs) to the truth."""
    perms = list(itertools.permutations(range(truth.shape[0])))
    errors = [np.max(np.abs(estimate[list(p)] - truth)) for p in perms]
    return list(perms[int(np.argmin(errors))])


# ---------------------------------------------------------------------------------------
# Independent oracles (scipy.stats) for the objectives


def _oracle_poisson_loglik(X, weights, rates):
    comp = np.stack([stats.poisson.logpmf(X, r).sum(axis=1) for r in rates], axis=1)
    return float(np.mean(logsumexp(comp + np.log(weights), axis=1)))


def _oracle_bernoulli_loglik(X, weights, probs):
    comp = np.stack([stats.bernoulli.logpmf(X, p).sum(axis=1) for p in probs], axis=1)
    return float(np.mean(logsumexp(comp + np.log(weights), axis=1)))


def _oracle_t1d_loglik(x, weights, means, variances, dof):
    comp = np.stack(
        [
            stats.t.logpdf(x, df, loc=m, scale=np.sqrt(v))
            for m, v, df in zip(means, variances, dof, strict=True)
        ],
        axis=1,
    )
    return float(np.mean(logsumexp(comp + np.log(weights), axis=1)))


def _softmax(logits):
    full = np.r_[0.0, logits]
    return np.exp(full - logsumexp(full))


def _check_stationary(objective, theta_hat, grad_tol=1e-5, improve_tol=1e-6):
    """The gradient vanishes at theta_hat and BFGS from there does not improve."""
    grad = optimize.approx_fprime(theta_hat, objective, 1e-6)
    # central differences are more accurate than approx_fprime's forward ones
    h = 1e-5
    central = np.array(
        [
            (objective(theta_hat + h * e) - objective(theta_hat - h * e)) / (2 * h)
            for e in np.eye(theta_hat.size)
        ]
    )
    assert np.max(np.abs(central)) < grad_tol, (central, grad)
    start = objective(theta_hat)
    res = optimize.minimize(objective, theta_hat, method="BFGS", options={"gtol": 1e-9})
    assert start - res.fun < improve_tol


def _monotone(lower_bounds, rtol=1e-10):
    lb = np.asarray(lower_bounds)
    return np.all(np.diff(lb) >= -rtol * np.abs(lb[1:]))


# ---------------------------------------------------------------------------------------
# Component log densities vs scipy.stats


@pytest.mark.parametrize(("n_features", "n_components"), [(1, 1), (3, 2), (5, 4)])
def test_poisson_log_prob_matches_scipy(n_features, n_components):
    rng = np.random.default_rng(n_features * 10 + n_components)
    rates = rng.uniform(0.1, 20.0, size=(n_components, n_features))
    X = rng.poisson(8.0, size=(40, n_features)).astype(float)
    expected = np.stack([stats.poisson.logpmf(X, r).sum(axis=1) for r in rates], axis=1)
    np.testing.assert_allclose(poisson_log_prob(X, rates), expected, rtol=1e-10, atol=1e-10)


def test_poisson_log_prob_zero_rate_is_0_log_0():
    X = np.array([[0.0, 3.0], [2.0, 0.0]])
    rates = np.array([[0.0, 1.5]])
    out = poisson_log_prob(X, rates)
    expected = stats.poisson.logpmf(X, rates[0]).sum(axis=1)
    assert out[1, 0] == -np.inf
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-12)


@pytest.mark.parametrize(("n_features", "n_components"), [(1, 1), (4, 2), (7, 3)])
def test_bernoulli_log_prob_matches_scipy(n_features, n_components):
    rng = np.random.default_rng(n_features * 10 + n_components)
    probs = rng.uniform(0.01, 0.99, size=(n_components, n_features))
    X = (rng.random((50, n_features)) < 0.5).astype(float)
    expected = np.stack([stats.bernoulli.logpmf(X, p).sum(axis=1) for p in probs], axis=1)
    np.testing.assert_allclose(bernoulli_log_prob(X, probs), expected, rtol=1e-10, atol=1e-10)


def test_bernoulli_log_prob_boundary_probabilities():
    X = np.array([[0.0, 1.0], [1.0, 1.0]])
    probs = np.array([[0.0, 1.0]])
    out = bernoulli_log_prob(X, probs)
    assert out[0, 0] == 0.0  # 0 log 0 = 0: the first sample is certain
    assert out[1, 0] == -np.inf
    np.testing.assert_array_equal(out[:, 0], stats.bernoulli.logpmf(X, probs[0]).sum(axis=1))


@pytest.mark.parametrize(("n_features", "n_components"), [(1, 1), (2, 3), (4, 2)])
def test_student_t_log_prob_matches_scipy(n_features, n_components):
    rng = np.random.default_rng(n_features * 10 + n_components)
    means = rng.normal(scale=3.0, size=(n_components, n_features))
    a = rng.normal(size=(n_components, n_features, n_features))
    scales = a @ np.swapaxes(a, 1, 2) + 0.3 * np.eye(n_features)
    dof = rng.uniform(0.7, 60.0, size=n_components)
    X = rng.normal(scale=4.0, size=(30, n_features))
    expected = np.stack(
        [
            stats.multivariate_t(loc=m, shape=s, df=df).logpdf(X).reshape(-1)
            for m, s, df in zip(means, scales, dof, strict=True)
        ],
        axis=1,
    )
    out = student_t_log_prob(X, means, scales, dof)
    assert out.shape == (30, n_components)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------
# Stationarity: the EM estimate is a stationary point of the oracle objective


def test_poisson_ml_estimate_is_stationary():
    X = _poisson_data(400, seed=1)
    r = fit_poisson_em(X, 2, tol=1e-13, max_iter=5000, random_state=0)
    assert r.converged
    assert r.log_likelihood == pytest.approx(
        _oracle_poisson_loglik(X, r.weights, r.params["rates"]), abs=1e-10
    )

    def negative(theta):
        weights = _softmax(theta[:1])
        rates = np.exp(theta[1:]).reshape(2, 3)
        return -_oracle_poisson_loglik(X, weights, rates)

    theta = np.r_[np.log(r.weights[1] / r.weights[0]), np.log(r.params["rates"]).ravel()]
    _check_stationary(negative, theta)


def test_poisson_map_estimate_is_stationary():
    X = _poisson_data(200, seed=2)
    prior = {"alpha": np.array([[2.0, 3.0, 1.5]]), "beta": 0.5, "weights": 3.0}
    r = fit_poisson_em(X, 2, tol=1e-13, max_iter=5000, random_state=0, objective="map", prior=prior)

    def negative(theta):
        weights = _softmax(theta[:1])
        rates = np.exp(theta[1:]).reshape(2, 3)
        log_prior = stats.dirichlet.logpdf(weights, [3.0, 3.0]) + np.sum(
            stats.gamma.logpdf(rates, a=prior["alpha"], scale=1.0 / prior["beta"])
        )
        return -(_oracle_poisson_loglik(X, weights, rates) + log_prior / X.shape[0])

    theta = np.r_[np.log(r.weights[1] / r.weights[0]), np.log(r.params["rates"]).ravel()]
    # the monitored objective is the oracle log posterior (normalised densities)
    assert -negative(theta) == pytest.approx(r.lower_bounds[-1], abs=1e-9)
    _check_stationary(negative, theta)


def test_bernoulli_ml_estimate_is_stationary():
    X = _bernoulli_data(500, seed=3, probs=BERNOULLI_PROBS[:, :4])
    r = fit_bernoulli_em(X, 2, tol=1e-13, max_iter=5000, random_state=0)
    probs = r.params["probs"]
    assert np.all((probs > 0) & (probs < 1))
    assert r.log_likelihood == pytest.approx(
        _oracle_bernoulli_loglik(X, r.weights, probs), abs=1e-10
    )

    def negative(theta):
        weights = _softmax(theta[:1])
        p = 1.0 / (1.0 + np.exp(-theta[1:].reshape(2, 4)))
        return -_oracle_bernoulli_loglik(X, weights, p)

    theta = np.r_[np.log(r.weights[1] / r.weights[0]), np.log(probs / (1 - probs)).ravel()]
    _check_stationary(negative, theta)


def test_bernoulli_map_estimate_is_stationary():
    X = _bernoulli_data(300, seed=4, probs=BERNOULLI_PROBS[:, :4])
    prior = {"a": 2.0, "b": 3.0, "weights": 2.0}
    r = fit_bernoulli_em(
        X, 2, tol=1e-13, max_iter=5000, random_state=0, objective="map", prior=prior
    )

    def negative(theta):
        weights = _softmax(theta[:1])
        p = 1.0 / (1.0 + np.exp(-theta[1:].reshape(2, 4)))
        log_prior = stats.dirichlet.logpdf(weights, [2.0, 2.0]) + np.sum(
            stats.beta.logpdf(p, 2.0, 3.0)
        )
        return -(_oracle_bernoulli_loglik(X, weights, p) + log_prior / X.shape[0])

    probs = r.params["probs"]
    theta = np.r_[np.log(r.weights[1] / r.weights[0]), np.log(probs / (1 - probs)).ravel()]
    assert -negative(theta) == pytest.approx(r.lower_bounds[-1], abs=1e-9)
    _check_stationary(negative, theta)


def test_student_t_1d_estimate_is_stationary_including_dof():
    x = _t_data(
        600,
        seed=5,
        weights=np.array([0.45, 0.55]),
        means=np.array([[-3.0], [3.0]]),
        scales=np.array([[[1.0]], [[2.0]]]),
        dof=np.array([3.0, 6.0]),
    )
    r = fit_student_t_em(x, 2, tol=1e-13, max_iter=5000, reg_covar=0.0, random_state=0)
    assert r.converged
    means = r.params["means"][:, 0]
    variances = r.params["covariances"][:, 0, 0]
    dof = r.params["dof"]
    assert np.all((dof > 1.5) & (dof < 100.0))  # interior of dof_bounds
    assert r.log_likelihood == pytest.approx(
        _oracle_t1d_loglik(x[:, 0], r.weights, means, variances, dof), abs=1e-10
    )

    def negative(theta):
        return -_oracle_t1d_loglik(
            x[:, 0], _softmax(theta[:1]), theta[1:3], np.exp(theta[3:5]), np.exp(theta[5:7])
        )

    theta = np.r_[np.log(r.weights[1] / r.weights[0]), means, np.log(variances), np.log(dof)]
    _check_stationary(negative, theta)


# ---------------------------------------------------------------------------------------
# The objective never decreases


@pytest.mark.parametrize(
    ("objective", "prior"), [("ml", None), ("map", {"alpha": 2.0, "beta": 0.5, "weights": 3.0})]
)
def test_poisson_objective_is_monotone(objective, prior):
    # overlapping components: many iterations
    X = _poisson_data(300, seed=6, rates=np.array([[2.0, 3.0], [3.0, 2.5]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = fit_poisson_em(
            X, 3, tol=0.0, max_iter=150, random_state=1, objective=objective, prior=prior
        )
    assert r.n_iter == 150
    assert _monotone(r.lower_bounds)


def test_dirichlet_below_one_switches_a_component_off(caplog):
    """With a < 1 a superfluous component is switched off; the objective is monotone
    except at the switch-off, where the Dirichlet term loses that component."""
    X = _poisson_data(300, seed=6, rates=np.array([[2.0, 3.0], [3.0, 2.5]]))
    prior = {"alpha": 1.0, "beta": 2.0, "weights": 0.5}
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="bayesmix"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = fit_poisson_em(
            X, 3, tol=1e-13, max_iter=3000, random_state=1, objective="map", prior=prior
        )
    assert r.converged
    off = np.flatnonzero(r.weights == 0.0)
    assert off.size >= 1
    assert caplog.text.count("switched off") == off.size
    np.testing.assert_array_equal(r.params["rates"][off], 0.0)  # the prior mode
    lb = r.lower_bounds
    drops = np.flatnonzero(np.diff(lb) < -1e-10 * np.abs(lb[1:]))
    assert drops.size <= off.size
    for segment in np.split(lb, drops + 1):
        assert _monotone(segment)
    # the final objective is the oracle log posterior with the Dirichlet of the survivors
    on = np.flatnonzero(r.weights > 0)
    log_dirichlet = stats.dirichlet.logpdf(r.weights[on], [0.5] * on.size) if on.size > 1 else 0.0
    log_prior = log_dirichlet + np.sum(stats.gamma.logpdf(r.params["rates"], a=1.0, scale=0.5))
    oracle = (
        _oracle_poisson_loglik(X, r.weights[on], r.params["rates"][on]) + log_prior / X.shape[0]
    )
    assert lb[-1] == pytest.approx(oracle, abs=1e-10)


@pytest.mark.parametrize(
    ("objective", "prior"), [("ml", None), ("map", {"a": 1.5, "b": 2.0, "weights": 2.0})]
)
def test_bernoulli_objective_is_monotone(objective, prior):
    X = _bernoulli_data(300, seed=7, probs=np.array([[0.6, 0.4, 0.5, 0.7], [0.4, 0.5, 0.6, 0.3]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = fit_bernoulli_em(
            X, 3, tol=0.0, max_iter=150, random_state=1, objective=objective, prior=prior
        )
    assert r.n_iter == 150
    assert _monotone(r.lower_bounds)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_student_t_log_likelihood_is_monotone(covariance_type):
    X = _t_data(300, seed=8, means=np.array([[0.0, 0.0], [2.0, 1.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = fit_student_t_em(
            X,
            2,
            covariance_type=covariance_type,
            tol=0.0,
            max_iter=100,
            reg_covar=0.0,
            random_state=2,
        )
    assert r.n_iter == 100
    assert _monotone(r.lower_bounds)
    assert r.log_likelihood >= r.lower_bounds[-1] - 1e-10 * abs(r.lower_bounds[-1])


# ---------------------------------------------------------------------------------------
# Recovery of a known truth (N = 5000)
#
# Tolerance: 4 standard errors, where the standard error is the complete-data one (labels
# known) inflated by 1.4. In a 40-replicate Monte Carlo study of exactly these settings the
# EM estimates' spread was at most 1.1x (Poisson) and 1.36x (Bernoulli) the complete-data
# standard error, the largest |error| / complete-data SE being 2.8 and 3.2.

SE_INFLATION = 1.4


def test_poisson_recovers_truth():
    n = 5000
    X = _poisson_data(n, seed=11)
    r = fit_poisson_em(X, 2, n_init=2, tol=1e-8, random_state=0)
    perm = _best_permutation(r.params["rates"], POISSON_RATES)
    w, rates = r.weights[perm], r.params["rates"][perm]
    se_w = SE_INFLATION * np.sqrt(POISSON_WEIGHTS * (1 - POISSON_WEIGHTS) / n)
    se_rates = SE_INFLATION * np.sqrt(POISSON_RATES / (n * POISSON_WEIGHTS[:, None]))
    assert np.all(np.abs(w - POISSON_WEIGHTS) < 4 * se_w)
    assert np.all(np.abs(rates - POISSON_RATES) < 4 * se_rates)


def test_bernoulli_recovers_truth():
    n = 5000
    X = _bernoulli_data(n, seed=12)
    r = fit_bernoulli_em(X, 2, n_init=2, tol=1e-8, random_state=0)
    perm = _best_permutation(r.params["probs"], BERNOULLI_PROBS)
    w, probs = r.weights[perm], r.params["probs"][perm]
    se_w = SE_INFLATION * np.sqrt(BERNOULLI_WEIGHTS * (1 - BERNOULLI_WEIGHTS) / n)
    se_p = SE_INFLATION * np.sqrt(
        BERNOULLI_PROBS * (1 - BERNOULLI_PROBS) / (n * BERNOULLI_WEIGHTS[:, None])
    )
    assert np.all(np.abs(w - BERNOULLI_WEIGHTS) < 4 * se_w)
    assert np.all(np.abs(probs - BERNOULLI_PROBS) < 4 * se_p)


def test_student_t_recovers_truth():
    n = 5000
    X = _t_data(n, seed=13)
    r = fit_student_t_em(X, 2, tol=1e-7, random_state=0)
    perm = _best_permutation(r.params["means"], T_MEANS)
    means, scales, dof = (r.params[key][perm] for key in ("means", "covariances", "dof"))
    weights = r.weights[perm]
    # Efficient SE of a t location: var = (nu + D + 2) / (nu + D) * Sigma_jj / (N pi_k),
    # inflated by 1.2 for the unobserved labels (the components barely overlap).
    d = 2
    variance_factor = (T_DOF + d + 2) / (T_DOF + d)
    diag = np.diagonal(T_SCALES, axis1=1, axis2=2)
    se_means = 1.2 * np.sqrt(variance_factor[:, None] * diag / (n * T_WEIGHTS[:, None]))
    assert np.all(np.abs(means - T_MEANS) < 4 * se_means)
    se_weights = 1.2 * np.sqrt(T_WEIGHTS * (1.0 - T_WEIGHTS) / n)
    assert np.all(np.abs(weights - T_WEIGHTS) < 4 * se_weights)
    # Scale entries: SE about 0.05 for the largest entry (Sigma_22 = 2, N pi = 3000); in five
    # seeds the largest error was 0.10, so 0.2 is about 4 SE.
    np.testing.assert_allclose(scales, T_SCALES, atol=0.2)
    assert np.all((dof > 2.5) & (dof < 7.0))


def test_student_t_means_are_robust_to_gross_outliers():
    rng = np.random.default_rng(14)
    n = 2000
    labels = rng.choice(2, size=n, p=[0.4, 0.6])
    clean = T_MEANS[labels] + rng.standard_normal((n, 2))
    outliers = rng.uniform(-30.0, 30.0, size=(int(0.05 * n / 0.95), 2))  # 5% of the total
    X = np.vstack([clean, outliers])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        rt = fit_student_t_em(X, 2, random_state=0)
        rg = fit_em(X, 2, random_state=0)
    err_t = np.max(
        np.abs(rt.params["means"][_best_permutation(rt.params["means"], T_MEANS)] - T_MEANS)
    )
    err_g = np.max(np.abs(rg.means[_best_permutation(rg.means, T_MEANS)] - T_MEANS))
    assert err_t < 0.15  # SE of a mean here is about 0.03
    assert err_g > 3 * err_t


def test_student_t_with_huge_fixed_dof_matches_gaussian_em():
    rng = np.random.default_rng(15)
    n = 800
    labels = rng.choice(2, size=n, p=[0.4, 0.6])
    chol = np.linalg.cholesky(T_SCALES)
    X = T_MEANS[labels] + np.einsum("nij,nj->ni", chol[labels], rng.standard_normal((n, 2)))
    for covariance_type in ("full", "diag"):
        rt = fit_student_t_em(
            X,
            2,
            covariance_type=covariance_type,
            tol=1e-11,
            max_iter=1000,
            random_state=3,
            dof_bounds=(1e7, 1e7),
        )
        rg = fit_em(X, 2, covariance_type=covariance_type, tol=1e-11, max_iter=1000, random_state=3)
        np.testing.assert_array_equal(rt.params["dof"], [1e7, 1e7])
        perm = _best_permutation(rt.params["means"], rg.means)
        np.testing.assert_allclose(rt.weights[perm], rg.weights, atol=1e-5)
        np.testing.assert_allclose(rt.params["means"][perm], rg.means, atol=1e-5)
        np.testing.assert_allclose(rt.params["covariances"][perm], rg.covariances, atol=1e-5)
        assert rt.log_likelihood == pytest.approx(rg.log_likelihood, abs=1e-5)


# ---------------------------------------------------------------------------------------
# MAP


def test_poisson_map_single_component_closed_form():
    X = _poisson_data(100, seed=16)
    alpha, beta = np.array([3.0, 1.0, 7.5]), 4.0
    r = fit_poisson_em(X, 1, objective="map", prior={"alpha": alpha, "beta": beta})
    expected = (X.sum(axis=0) + alpha - 1.0) / (X.shape[0] + beta)
    np.testing.assert_allclose(r.params["rates"][0], expected, rtol=1e-13)
    np.testing.assert_array_equal(r.weights, [1.0])
    ml = fit_poisson_em(X, 1)
    np.testing.assert_allclose(ml.params["rates"][0], X.mean(axis=0), rtol=1e-13)


def test_bernoulli_map_single_component_closed_form():
    X = _bernoulli_data(80, seed=17)
    a, b = 3.0, 2.0
    r = fit_bernoulli_em(X, 1, objective="map", prior={"a": a, "b": b, "weights": 5.0})
    expected = (X.sum(axis=0) + a - 1.0) / (X.shape[0] + a + b - 2.0)
    np.testing.assert_allclose(r.params["probs"][0], expected, rtol=1e-13)


def test_strong_prior_pulls_towards_prior_mode():
    X = _poisson_data(300, seed=18)
    mode, strength = 5.0, 2000.0
    prior = {"alpha": 1.0 + strength * mode, "beta": strength}
    ml = fit_poisson_em(X, 2, random_state=0, tol=1e-6, max_iter=2000)
    mp = fit_poisson_em(X, 2, random_state=0, tol=1e-6, objective="map", prior=prior)
    assert np.all(np.abs(mp.params["rates"] - mode) < np.abs(ml.params["rates"] - mode))
    assert np.all(np.abs(mp.params["rates"] - mode) < 0.5)

    Xb = _bernoulli_data(300, seed=18)
    mlb = fit_bernoulli_em(Xb, 2, random_state=0, tol=1e-6, max_iter=2000)
    mpb = fit_bernoulli_em(
        Xb,
        2,
        random_state=0,
        tol=1e-6,
        max_iter=2000,
        objective="map",
        prior={"a": 500.0, "b": 500.0},
    )
    assert np.all(np.abs(mpb.params["probs"] - 0.5) < np.abs(mlb.params["probs"] - 0.5))


def test_dirichlet_weights_below_one_switch_components_off():
    nk = np.array([10.0, 0.3, 5.0])
    w = _map_weights(nk, 0.5, np.full(3, 1 / 3))
    np.testing.assert_allclose(w, [9.5 / 14.0, 0.0, 4.5 / 14.0])
    # a switched-off component stays off even if it regains mass
    w2 = _map_weights(np.array([10.0, 2.0, 5.0]), 0.5, w)
    assert w2[1] == 0.0
    assert w2.sum() == pytest.approx(1.0)
    # a >= 1 never switches off; a = 1 gives the ML weights
    np.testing.assert_allclose(_map_weights(nk, 1.0, w), nk / nk.sum())
    np.testing.assert_allclose(_map_weights(nk, 3.0, w), (nk + 2) / (nk.sum() + 6))
    # the Dirichlet log density of the remaining weights
    assert _log_dirichlet(w, 0.5) == pytest.approx(stats.dirichlet.logpdf(w[[0, 2]], [0.5, 0.5]))
    assert _log_dirichlet(w2 * 0 + 1 / 3, 2.0) == pytest.approx(
        stats.dirichlet.logpdf(np.full(3, 1 / 3), [2.0] * 3)
    )


def test_map_requires_a_valid_prior():
    X = _poisson_data(50, seed=19)
    with pytest.raises(InvalidParameterError, match="needs a prior"):
        fit_poisson_em(X, 2, objective="map")
    with pytest.raises(InvalidParameterError, match="needs a prior"):
        fit_bernoulli_em(_bernoulli_data(50, seed=19), 2, objective="map")
    with pytest.raises(InvalidParameterError, match="unknown keys"):
        fit_poisson_em(X, 2, objective="map", prior={"alpha": 2, "beta": 1, "rate": 1})
    with pytest.raises(InvalidParameterError, match="missing keys"):
        fit_poisson_em(X, 2, objective="map", prior={"alpha": 2})
    with pytest.raises(InvalidParameterError, match="alpha"):
        fit_poisson_em(X, 2, objective="map", prior={"alpha": 0.5, "beta": 1})
    with pytest.raises(InvalidParameterError, match="beta"):
        fit_poisson_em(X, 2, objective="map", prior={"alpha": 2, "beta": 0.0})
    with pytest.raises(InvalidParameterError, match="weights"):
        fit_poisson_em(X, 2, objective="map", prior={"alpha": 2, "beta": 1, "weights": 0})
    with pytest.raises(InvalidParameterError, match="objective"):
        fit_poisson_em(X, 2, objective="mle")


# ---------------------------------------------------------------------------------------
# Restarts, warnings, errors, determinism, serialisation


def _fitters():
    return {
        "poisson": (fit_poisson_em, _poisson_data(300, seed=20)),
        "bernoulli": (fit_bernoulli_em, _bernoulli_data(300, seed=20)),
        "student_t": (fit_student_t_em, _t_data(300, seed=20)),
    }


@pytest.mark.parametrize("family", ["poisson", "bernoulli", "student_t"])
def test_restarts_keep_the_best(family):
    fit, X = _fitters()[family]
    r = fit(X, 3, n_init=4, random_state=0)
    assert r.family == family
    assert r.init_log_likelihoods.shape == (4,)
    assert r.best_init == int(np.argmax(r.init_log_likelihoods))
    assert r.lower_bounds[-1] == r.init_log_likelihoods[r.best_init]
    assert r.n_iter == r.lower_bounds.shape[0]
    assert r.weights.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("family", ["poisson", "bernoulli", "student_t"])
def test_determinism_input_untouched_and_round_trip(family):
    fit, X = _fitters()[family]
    X_copy = X.copy()
    X.setflags(write=False)
    r1 = fit(X, 2, n_init=2, random_state=7)
    r2 = fit(X, 2, n_init=2, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(X, X_copy)
    back = MixtureEMResult.from_dict(json.loads(json.dumps(r1.to_dict())))
    for other in (r2, back):
        assert other.params.keys() == r1.params.keys()
        for key in r1.params:
            np.testing.assert_array_equal(other.params[key], r1.params[key])
        for name in ("weights", "lower_bounds", "init_log_likelihoods"):
            np.testing.assert_array_equal(getattr(other, name), getattr(r1, name))
        for name in (
            "family",
            "log_likelihood",
            "n_iter",
            "converged",
            "best_init",
            "objective",
            "covariance_type",
        ):
            assert getattr(other, name) == getattr(r1, name)


def test_student_t_result_layout():
    X = _t_data(200, seed=21)
    shapes = {"full": (2, 2, 2), "tied": (2, 2), "diag": (2, 2), "spherical": (2,)}
    for covariance_type, shape in shapes.items():
        r = fit_student_t_em(X, 2, covariance_type=covariance_type, random_state=0)
        assert r.covariance_type == covariance_type
        assert r.params["covariances"].shape == shape
        assert r.params["means"].shape == (2, 2)
        assert r.params["dof"].shape == (2,)
        assert np.all((r.params["dof"] >= 1.0) & (r.params["dof"] <= 200.0))


@pytest.mark.parametrize("family", ["poisson", "bernoulli", "student_t"])
def test_convergence_warning_and_max_iter_zero(family, caplog):
    fit, X = _fitters()[family]
    with (
        caplog.at_level(logging.INFO, logger="bayesmix"),
        pytest.warns(ConvergenceWarning, match="did not converge") as record,
    ):
        r = fit(X, 2, max_iter=1, tol=0.0, random_state=0)
    assert not r.converged
    assert record[0].filename == __file__  # the warning points at the caller
    assert "restart 1/1" in caplog.text
    r0 = fit(X, 2, max_iter=0, random_state=0)
    assert r0.n_iter == 0
    assert r0.lower_bounds.shape == (0,)
    assert r0.init_log_likelihoods[0] == pytest.approx(r0.log_likelihood)


def test_invalid_data_and_arguments():
    with pytest.raises(DataError, match="counts"):
        fit_poisson_em(np.array([[1.0], [-1.0]]), 1)
    with pytest.raises(DataError, match="counts"):
        fit_poisson_em(np.array([[1.5], [1.0]]), 1)
    with pytest.raises(DataError, match="binary"):
        fit_bernoulli_em(np.array([[1.0, 2.0], [0.0, 1.0]]), 1)
    X = _t_data(50, seed=22)
    with pytest.raises(InvalidParameterError, match="dof_bounds"):
        fit_student_t_em(X, 2, dof_bounds=(5.0, 2.0))
    with pytest.raises(InvalidParameterError, match="dof_bounds"):
        fit_student_t_em(X, 2, dof_bounds=(0.0, 2.0))
    with pytest.raises(InvalidParameterError, match="covariance_type"):
        fit_student_t_em(X, 2, covariance_type="banana")
    with pytest.raises(InvalidParameterError, match="n_components"):
        fit_student_t_em(X, 51)


def test_student_t_singular_scale_raises_fit_error():
    rng = np.random.default_rng(23)
    X = np.vstack([np.zeros((20, 1)), 10.0 + rng.standard_normal((40, 1))])
    with pytest.raises(FitError, match="restart"):
        fit_student_t_em(X, 2, reg_covar=0.0, random_state=0)
    r = fit_student_t_em(X, 2, reg_covar=1e-6, random_state=0)  # the ridge rescues it
    assert np.isfinite(r.log_likelihood)


def test_fewer_distinct_rows_than_components():
    # binary data with 2 distinct rows and K=3: no component starts empty, the fit is exact
    Xb = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]] * 20)
    r = fit_bernoulli_em(Xb, 3, random_state=0)
    assert r.log_likelihood == pytest.approx(np.log(0.5), abs=1e-3)
    # Student-t: the seed without samples is logged, the empty component is reported
    Xt = np.array([[0.0, 0.0], [1.0, 1.0]] * 30)
    with pytest.warns(ConvergenceWarning, match="empty") as record:
        r = fit_student_t_em(Xt, 3, random_state=0)
    assert record[0].filename == __file__
    assert np.sort(r.weights)[:1] == pytest.approx(0.0, abs=1e-6)
