"""EM on degenerate data, and the MAP objective (conjugate prior of Fraley & Raftery 2007).

Oracles: scipy.stats densities for the log prior and the expected complete-data log
posterior, explicit formulas for the posterior-mode M-step, scikit-learn-free ML fits on
large samples for the MAP/ML agreement.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from scipy import stats
from threadpoolctl import threadpool_limits

from bayesmix.exceptions import ConvergenceWarning, FitError
from bayesmix.families.gaussian.em import (
    COVARIANCE_TYPES,
    ConjugatePrior,
    EMResult,
    compute_precision_cholesky,
    default_prior,
    e_step,
    fit_em,
    full_covariances,
    log_prior,
    m_step,
)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Tiny LAPACK calls are much slower when two BLAS thread pools compete for the cores.
    with threadpool_limits(1):
        yield


ADVICE = ('objective="map"', "reg_covar", "fewer components", 'covariance_type="diag"')


# ---------------------------------------------------------------------------------------
# Helpers


def _assert_valid(result: EMResult, n_features: int) -> None:
    """Finite parameters, weights summing to one, positive-definite covariances."""
    n_components = result.weights.shape[0]
    for name in ("weights", "means", "covariances", "precisions_cholesky", "lower_bounds"):
        assert np.all(np.isfinite(getattr(result, name))), name
    assert np.isfinite(result.log_likelihood)
    assert np.all(result.weights >= 0.0)
    np.testing.assert_allclose(result.weights.sum(), 1.0, rtol=0, atol=1e-12)
    full = full_covariances(result.covariances, result.covariance_type, n_components, n_features)
    for cov in full:
        np.testing.assert_allclose(cov, cov.T, rtol=0, atol=1e-12 * np.abs(cov).max())
        assert np.linalg.eigvalsh(cov).min() > 0.0
        np.linalg.cholesky(cov)


def _fit_recording(X, n_components, **kwargs):
    """Fit and return the result with the list of warnings raised."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = fit_em(X, n_components, **kwargs)
    return result, [w for w in record]


def _assert_monotone(lower_bounds: np.ndarray) -> None:
    diffs = np.diff(lower_bounds)
    slack = 1e-10 * np.maximum(np.abs(lower_bounds[1:]), 1.0)
    assert np.all(diffs >= -slack), diffs.min()


def _duplicated_data(rng):
    """50 copies of one point and 20 scattered points (2-D)."""
    return np.vstack([np.tile([[1.0, 2.0]], (50, 1)), 3.0 * rng.normal(size=(20, 2))])


def _line_and_blob(rng, axis_aligned=False):
    """30 points exactly on a line (y = 2x + 1, or y = 0) and a 30-point blob far away."""
    t = rng.uniform(-3.0, 3.0, size=30)
    line = np.column_stack([t, np.zeros(30) if axis_aligned else 2.0 * t + 1.0])
    return np.vstack([line, rng.normal(loc=12.0, size=(30, 2))])


def _two_point_init(X_line, covariance_type):
    """A start with one component on the line points and one on the blob."""
    means = np.array([X_line[:30].mean(axis=0), X_line[30:].mean(axis=0)])
    covariances = {
        "full": np.stack([np.eye(2), np.eye(2)]),
        "tied": np.eye(2),
        "diag": np.ones((2, 2)),
        "spherical": np.ones(2),
    }[covariance_type]
    return {"weights": np.array([0.5, 0.5]), "means": means, "covariances": covariances}


# ---------------------------------------------------------------------------------------
# 1. Duplicated points


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_duplicated_points_ml_gives_valid_result(covariance_type, seed):
    X = _duplicated_data(np.random.default_rng(10))
    result, record = _fit_recording(
        X, 3, covariance_type=covariance_type, random_state=seed, n_init=2
    )
    _assert_valid(result, 2)
    # Every warning is a ConvergenceWarning that says what to change.
    for w in record:
        assert issubclass(w.category, ConvergenceWarning)
        assert 'objective="map"' in str(w.message) or "n_components" in str(w.message)


def test_component_on_duplicates_warns_that_ml_is_degenerate():
    X = _duplicated_data(np.random.default_rng(11))
    init = {
        "weights": np.array([0.7, 0.3]),
        "means": np.array([[1.0, 2.0], [0.0, 0.0]]),
        "covariances": np.stack([0.1 * np.eye(2), 9.0 * np.eye(2)]),
    }
    with pytest.warns(ConvergenceWarning, match="collapsed") as record:
        result = fit_em(X, 2, init_params=init)
    message = str(next(w for w in record if "collapsed" in str(w.message)).message)
    for advice in ADVICE:
        assert advice in message
    assert "component(s) [0]" in message
    _assert_valid(result, 2)
    np.testing.assert_allclose(result.covariances[0], 1e-6 * np.eye(2), atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_duplicated_points_ml_without_ridge_raises_clear_fit_error(covariance_type):
    X = _duplicated_data(np.random.default_rng(12))
    init = {
        "weights": np.array([0.7, 0.3]),
        "means": np.array([[1.0, 2.0], [0.0, 0.0]]),
        "covariances": {
            "full": np.stack([0.1 * np.eye(2), 9.0 * np.eye(2)]),
            "tied": np.eye(2),
            "diag": np.array([[0.1, 0.1], [9.0, 9.0]]),
            "spherical": np.array([0.1, 9.0]),
        }[covariance_type],
    }
    if covariance_type == "tied":
        # The pooled covariance stays regular: only the untied types can collapse.
        _assert_valid(fit_em(X, 2, covariance_type="tied", reg_covar=0.0, init_params=init), 2)
        return
    with pytest.raises(FitError) as excinfo:
        fit_em(X, 2, covariance_type=covariance_type, reg_covar=0.0, init_params=init)
    message = str(excinfo.value)
    for advice in ADVICE:
        assert advice in message
    assert covariance_type in message


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_duplicated_points_map_without_ridge_stays_positive_definite(covariance_type, seed):
    X = _duplicated_data(np.random.default_rng(13))
    result, record = _fit_recording(
        X,
        3,
        covariance_type=covariance_type,
        objective="map",
        reg_covar=0.0,
        random_state=seed,
        tol=0.0,
        max_iter=50,
    )
    _assert_valid(result, 2)
    _assert_monotone(result.lower_bounds)
    assert [w for w in record if "collapsed" in str(w.message)] == []
    # Every covariance, also that of the component on the duplicates, is bounded below by
    # the prior scale divided by the largest M-step denominator, not by reg_covar.
    prior = default_prior(X, 3, covariance_type)
    scale = prior.scale if prior.scale.ndim == 2 else prior.scale * np.eye(2)
    bound = np.linalg.eigvalsh(scale).min() / (prior.dof + (X.shape[0] + 1) * 2 + 2 + 3)
    full = full_covariances(result.covariances, covariance_type, 3, 2)
    assert np.linalg.eigvalsh(full).min() >= bound * (1 - 1e-9)


# ---------------------------------------------------------------------------------------
# 2. A component that empties


def _two_clusters(rng):
    return np.vstack([rng.normal(size=(100, 2)), rng.normal(loc=8.0, scale=0.7, size=(20, 2))])


@pytest.mark.parametrize("objective", ["ml", "map"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_empty_component_is_reinitialised_at_lowest_likelihood_point(
    objective, covariance_type, caplog
):
    X = _two_clusters(np.random.default_rng(20))
    # Component 1 starts far from every sample: it receives no responsibility at all.
    init = {
        "weights": np.array([0.5, 0.5]),
        "means": np.array([[0.0, 0.0], [1e3, 1e3]]),
        "covariances": {
            "full": np.stack([np.eye(2), np.eye(2)]),
            "tied": np.eye(2),
            "diag": np.ones((2, 2)),
            "spherical": np.ones(2),
        }[covariance_type],
    }
    with caplog.at_level(logging.WARNING, logger="bayesmix"):
        result = fit_em(
            X,
            2,
            covariance_type=covariance_type,
            objective=objective,
            reg_covar=0.0,
            init_params=init,
            tol=1e-8,
            max_iter=300,
        )
    messages = [r.getMessage() for r in caplog.records if r.name == "bayesmix"]
    assert any("component 1 is empty" in m and "re-initialised at sample" in m for m in messages)
    _assert_valid(result, 2)
    assert result.converged
    # The re-initialised component found the small cluster (the lowest-likelihood samples).
    np.testing.assert_allclose(result.means[1], X[100:].mean(axis=0), atol=0.05)
    np.testing.assert_allclose(result.weights, [100 / 120, 20 / 120], atol=0.01)


def test_empty_component_at_initialisation_does_not_sit_at_origin():
    # Before re-initialisation, an empty component got mean 0 and covariance reg_covar.
    X = _two_clusters(np.random.default_rng(21)) + 50.0
    init = {
        "weights": np.array([1.0, 0.0]),
        "means": np.array([[50.0, 50.0], [50.0, 50.0]]),
        "covariances": np.stack([np.eye(2), np.eye(2)]),
    }
    result = fit_em(X, 2, init_params=init, tol=1e-8, max_iter=300)
    _assert_valid(result, 2)
    assert np.all(result.means > 40.0)
    assert result.weights.min() > 0.1


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_more_components_than_distinct_points_warns_and_names_fewer_components(
    covariance_type, caplog
):
    X = np.vstack([np.zeros((5, 2)), np.full((5, 2), 5.0)])
    with caplog.at_level(logging.WARNING, logger="bayesmix"):
        result, record = _fit_recording(
            X, 3, covariance_type=covariance_type, random_state=0, objective="map"
        )
    _assert_valid(result, 2)
    messages = [str(w.message) for w in record]
    assert any("empty" in m and "n_components=2" in m for m in messages)
    assert all(issubclass(w.category, ConvergenceWarning) for w in record)
    logged = [r.getMessage() for r in caplog.records if r.name == "bayesmix"]
    assert any("no sample" in m for m in logged)  # k-means++ had a duplicated centre
    assert any("not re-initialised" in m for m in logged)  # the budget is bounded


# ---------------------------------------------------------------------------------------
# 2b. Degenerate maxima that are not (yet) singular


def _blob_and_near_duplicates(rng):
    """100 points of N(0, I) and 4 points within 1e-4 of (8, 8) (2-D)."""
    return np.vstack([rng.normal(size=(100, 2)), 8.0 + 1e-4 * rng.normal(size=(4, 2))])


def _near_duplicates_init():
    return {
        "weights": np.array([0.9, 0.1]),
        "means": np.array([[0.0, 0.0], [8.0, 8.0]]),
        "covariances": np.stack([np.eye(2), 0.5 * np.eye(2)]),
    }


def test_a_component_on_near_duplicates_warns_that_ml_is_degenerate():
    # The component on the 4 points has a variance ~1e-8 (times reg_covar ~1e-2) of the
    # data's: far above the 1e-12 at which it counts as collapsed, but the likelihood
    # there grows without bound as the points coincide.
    X = _blob_and_near_duplicates(np.random.default_rng(1))
    result, record = _fit_recording(X, 2, init_params=_near_duplicates_init())
    messages = [str(w.message) for w in record if issubclass(w.category, ConvergenceWarning)]
    assert len(messages) == 1
    assert "Component(s) [1]" in messages[0]
    assert "degenerate" in messages[0]
    assert "times the data's (below 1e-06)" in messages[0]
    assert 'objective="map"' in messages[0]
    assert "collapsed" not in messages[0]
    assert record[0].filename == __file__
    np.testing.assert_allclose(result.weights[1] * X.shape[0], 4.0, rtol=1e-6)
    # The MAP objective keeps the covariance away from zero: nothing to warn about.
    _, record = _fit_recording(X, 2, init_params=_near_duplicates_init(), objective="map")
    assert not [w for w in record if issubclass(w.category, ConvergenceWarning)]


def test_a_component_with_fewer_than_d_plus_one_effective_points_warns():
    # 1-D: a component shared by two points at 3.2 and 3.6 and the tail of the blob
    # holds 1.97 effective points; its variance (0.04) is not small.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=60), [3.2, 3.6]])[:, None]
    init = {
        "weights": np.array([0.95, 0.05]),
        "means": np.array([[0.0], [3.4]]),
        "covariances": np.array([[[1.0]], [[0.1]]]),
    }
    with pytest.warns(ConvergenceWarning, match="degenerate") as record:
        result = fit_em(X, 2, init_params=init, max_iter=500, tol=1e-8)
    message = str(record[0].message)
    assert "component 1 has 1.97 effective points, fewer than the 2" in message
    assert 'objective="map"' in message
    assert 1.9 < result.weights[1] * X.shape[0] < 2.0


def test_the_best_sound_restart_wins_over_higher_degenerate_ones():
    # 4 near-duplicates at the edge of the blob: some restarts give them a component of
    # their own (a higher, spurious likelihood), others split the blob. The best of the
    # sound restarts is returned, without a warning.
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(100, 2)), 2.0 + 1e-4 * rng.normal(size=(4, 2))])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = fit_em(X, 2, init="k-means++", n_init=10, random_state=0, tol=1e-8)
    assert result.log_likelihood < result.init_log_likelihoods.max() - 0.03
    assert result.weights.min() * X.shape[0] > 5.0
    sound = []
    for seed in range(10):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            one = fit_em(X, 2, init="k-means++", random_state=seed, tol=1e-8)
        if not any("degenerate" in str(w.message) for w in record):
            sound.append(one.log_likelihood)
    assert result.log_likelihood == pytest.approx(max(sound), abs=1e-9)


# ---------------------------------------------------------------------------------------
# 3. Singular covariances: a component on a line


def test_component_on_a_line_ml_warns_and_stays_positive_definite():
    X = _line_and_blob(np.random.default_rng(30))
    with pytest.warns(ConvergenceWarning, match="collapsed") as record:
        result = fit_em(X, 2, init_params=_two_point_init(X, "full"))
    _assert_valid(result, 2)
    assert any("lower-dimensional subspace" in str(w.message) for w in record)


def test_component_on_a_line_ml_without_ridge_raises():
    X = _line_and_blob(np.random.default_rng(31))
    with pytest.raises(FitError, match="reg_covar") as excinfo:
        fit_em(X, 2, reg_covar=0.0, init_params=_two_point_init(X, "full"))
    assert 'covariance_type="diag"' in str(excinfo.value)


def test_component_on_an_oblique_line_diag_ml_is_fine():
    # The advice works: the diagonal of a covariance on an oblique line is regular.
    X = _line_and_blob(np.random.default_rng(32))
    result, record = _fit_recording(
        X, 2, covariance_type="diag", reg_covar=0.0, init_params=_two_point_init(X, "diag")
    )
    _assert_valid(result, 2)
    assert record == []


def test_component_on_an_axis_aligned_line_diag_ml_raises_and_map_does_not():
    X = _line_and_blob(np.random.default_rng(33), axis_aligned=True)
    init = _two_point_init(X, "diag")
    with pytest.raises(FitError, match="diag"):
        fit_em(X, 2, covariance_type="diag", reg_covar=0.0, init_params=init)
    result = fit_em(X, 2, covariance_type="diag", reg_covar=0.0, init_params=init, objective="map")
    _assert_valid(result, 2)


@pytest.mark.parametrize("axis_aligned", [False, True])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_component_on_a_line_map_without_ridge(covariance_type, axis_aligned):
    X = _line_and_blob(np.random.default_rng(34), axis_aligned=axis_aligned)
    result, record = _fit_recording(
        X,
        2,
        covariance_type=covariance_type,
        reg_covar=0.0,
        objective="map",
        init_params=_two_point_init(X, covariance_type),
        tol=0.0,
        max_iter=40,
    )
    _assert_valid(result, 2)
    _assert_monotone(result.lower_bounds)
    assert [w for w in record if not str(w.message).startswith("EM did not converge")] == []


def test_degenerate_data_for_the_map_prior_raises_clear_error():
    X = np.column_stack([np.arange(10.0), 2.0 * np.arange(10.0)])  # collinear features
    with pytest.raises(FitError, match="collinear") as excinfo:
        fit_em(X, 2, objective="map")
    assert 'objective="ml"' in str(excinfo.value)
    # spherical only needs a positive mean variance
    _assert_valid(fit_em(X, 2, objective="map", covariance_type="spherical", random_state=0), 2)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fit_em(np.ones((1, 2)), 1, objective="map")


# ---------------------------------------------------------------------------------------
# 4. Failed restarts


def test_failed_restarts_are_skipped_with_a_warning(caplog):
    X = _duplicated_data(np.random.default_rng(0))
    failed = r"restart\(s\) \[1, 3\] of 3 failed"
    with (
        caplog.at_level(logging.WARNING, logger="bayesmix"),
        pytest.warns(ConvergenceWarning, match=failed),
    ):
        result = fit_em(X, 3, n_init=3, random_state=1, reg_covar=0.0)
    _assert_valid(result, 2)
    assert result.best_init == 1
    assert np.isneginf(result.init_log_likelihoods[[0, 2]]).all()
    assert any("restart 1/3 failed" in r.getMessage() for r in caplog.records)


def test_all_restarts_failing_raises():
    X = _duplicated_data(np.random.default_rng(0))
    with pytest.raises(FitError, match="All 3 EM restarts failed") as excinfo:
        fit_em(X, 3, n_init=3, random_state=0, reg_covar=0.0)
    assert "reg_covar" in str(excinfo.value)


# ---------------------------------------------------------------------------------------
# 5. The conjugate prior and the posterior-mode M-step


def _random_parameters(covariance_type, rng, n_components=3, n_features=3):
    means = rng.normal(size=(n_components, n_features))
    if covariance_type == "full":
        a = rng.normal(size=(n_components, n_features, n_features))
        covariances = a @ np.swapaxes(a, 1, 2) + np.eye(n_features)
    elif covariance_type == "tied":
        a = rng.normal(size=(n_features, n_features))
        covariances = a @ a.T + np.eye(n_features)
    elif covariance_type == "diag":
        covariances = rng.uniform(0.3, 2.0, size=(n_components, n_features))
    else:
        covariances = rng.uniform(0.3, 2.0, size=n_components)
    return means, covariances


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_default_prior_hyperparameters(covariance_type):
    rng = np.random.default_rng(50)
    X = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 3)) + 5.0
    prior = default_prior(X, 4, covariance_type)
    assert isinstance(prior, ConjugatePrior)
    assert prior.shrinkage == 0.01
    assert prior.dof == 3 + 2
    np.testing.assert_allclose(prior.mean, X.mean(axis=0))
    scale = np.cov(X, rowvar=False) / 4 ** (2 / 3)
    expected = {
        "full": scale,
        "tied": scale,
        "diag": np.diag(scale),
        "spherical": np.trace(scale) / 3,
    }[covariance_type]
    np.testing.assert_allclose(prior.scale, expected, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_prior_matches_scipy(covariance_type):
    rng = np.random.default_rng(51)
    X = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 3))
    prior = default_prior(X, 3, covariance_type)
    means, covariances = _random_parameters(covariance_type, rng)
    full = full_covariances(covariances, covariance_type, 3, 3)
    expected = sum(
        stats.multivariate_normal(prior.mean, full[k] / prior.shrinkage).logpdf(means[k])
        for k in range(3)
    )
    if covariance_type == "full":
        wishart = stats.invwishart(df=prior.dof, scale=prior.scale)
        expected += sum(wishart.logpdf(cov) for cov in covariances)
    elif covariance_type == "tied":
        expected += stats.invwishart(df=prior.dof, scale=prior.scale).logpdf(covariances)
    else:
        scale = prior.scale if covariance_type == "diag" else float(prior.scale)
        expected += stats.invgamma(prior.dof / 2, scale=scale / 2).logpdf(covariances).sum()
    precisions_cholesky = compute_precision_cholesky(covariances, covariance_type)
    assert log_prior(prior, means, precisions_cholesky) == pytest.approx(expected, rel=1e-12)


def _expected_complete_log_posterior(X, resp, prior, means, covariances, covariance_type):
    """sum_nk r_nk log N(x_n | mu_k, Sigma_k) + log prior, with scipy densities."""
    n_components, n_features = means.shape
    full = full_covariances(covariances, covariance_type, n_components, n_features)
    value = sum(
        resp[:, k] @ stats.multivariate_normal(means[k], full[k]).logpdf(X)
        for k in range(n_components)
    )
    precisions_cholesky = compute_precision_cholesky(covariances, covariance_type)
    return value + log_prior(prior, means, precisions_cholesky)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_map_m_step_maximises_expected_complete_log_posterior(covariance_type):
    rng = np.random.default_rng(52)
    X = np.vstack([rng.normal(loc=c, size=(20, 2)) for c in ([0, 0], [5, 0], [0, 5])])
    resp = rng.dirichlet(np.ones(3), size=60)
    prior = default_prior(X, 3, covariance_type)
    _, means, covariances = m_step(X, resp, covariance_type, 0.0, prior=prior)
    best = _expected_complete_log_posterior(X, resp, prior, means, covariances, covariance_type)
    for _ in range(40):
        d_means = rng.normal(scale=1e-3, size=means.shape)
        noise = rng.normal(scale=1e-3, size=covariances.shape)
        if covariance_type in ("full", "tied"):
            noise = noise + np.swapaxes(noise, -1, -2)
        other = _expected_complete_log_posterior(
            X, resp, prior, means + d_means, covariances + noise, covariance_type
        )
        assert other < best


def test_map_m_step_full_matches_fraley_raftery_formula():
    rng = np.random.default_rng(53)
    X = rng.normal(size=(50, 2)) @ np.array([[2.0, 0.3], [0.0, 0.5]])
    resp = rng.dirichlet(np.ones(2), size=50)
    prior = default_prior(X, 2, "full")
    weights, means, covariances = m_step(X, resp, "full", 0.0, prior=prior)
    kappa, nu, mu_p, scale = prior.shrinkage, prior.dof, prior.mean, prior.scale
    for k in range(2):
        n_k = resp[:, k].sum()
        xbar = resp[:, k] @ X / n_k
        within = (resp[:, k, None] * (X - xbar)).T @ (X - xbar)
        d = xbar - mu_p
        np.testing.assert_allclose(means[k], (n_k * xbar + kappa * mu_p) / (kappa + n_k))
        expected = (scale + kappa * n_k / (kappa + n_k) * np.outer(d, d) + within) / (
            nu + n_k + 2 + 2
        )
        np.testing.assert_allclose(covariances[k], expected, rtol=1e-12)
    np.testing.assert_allclose(weights, resp.sum(axis=0) / 50, rtol=1e-12)


def test_map_m_step_of_an_empty_component_is_the_prior_mode():
    rng = np.random.default_rng(54)
    X = rng.normal(size=(30, 2))
    resp = np.zeros((30, 2))
    resp[:, 0] = 1.0
    prior = default_prior(X, 2, "full")
    _, means, covariances = m_step(X, resp, "full", 0.0, prior=prior)
    np.testing.assert_allclose(means[1], prior.mean)
    np.testing.assert_allclose(covariances[1], prior.scale / (prior.dof + 2 + 2))


def test_m_step_rejects_a_prior_of_another_type():
    X = np.random.default_rng(55).normal(size=(10, 2))
    with pytest.raises(ValueError, match="covariance_type"):
        m_step(X, np.ones((10, 1)), "diag", 0.0, prior=default_prior(X, 1, "full"))


# ---------------------------------------------------------------------------------------
# 6. MAP fits


def _three_clusters(rng, n):
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    return np.vstack([rng.normal(loc=c, size=(n // 3, 2)) for c in centres])


def _start(covariance_type):
    covariances = {
        "full": np.stack([np.eye(2)] * 3),
        "tied": np.eye(2),
        "diag": np.ones((3, 2)),
        "spherical": np.ones(3),
    }[covariance_type]
    return {
        "weights": np.full(3, 1 / 3),
        "means": np.array([[0.5, 0.0], [4.0, 0.5], [0.0, 4.0]]),
        "covariances": covariances,
    }


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_map_and_ml_agree_with_lots_of_data(covariance_type):
    X = _three_clusters(np.random.default_rng(60), 15000)
    kwargs = {
        "covariance_type": covariance_type,
        "init_params": _start(covariance_type),
        "reg_covar": 0.0,
        "tol": 1e-9,
        "max_iter": 200,
    }
    ml = fit_em(X, 3, **kwargs)
    mp = fit_em(X, 3, objective="map", **kwargs)
    assert ml.objective == "ml"
    assert mp.objective == "map"
    np.testing.assert_allclose(mp.weights, ml.weights, atol=1e-4)
    np.testing.assert_allclose(mp.means, ml.means, atol=1e-3)
    np.testing.assert_allclose(mp.covariances, ml.covariances, rtol=5e-3, atol=1e-3)
    assert mp.log_likelihood == pytest.approx(ml.log_likelihood, abs=1e-5)
    assert mp.log_likelihood <= ml.log_likelihood + 1e-12  # ML maximises the likelihood


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_map_objective_never_decreases_and_is_the_log_posterior(covariance_type):
    rng = np.random.default_rng(61)
    X = _three_clusters(rng, 150) + rng.normal(scale=0.8, size=(150, 2))
    kwargs = {
        "covariance_type": covariance_type,
        "objective": "map",
        "reg_covar": 0.0,
        "tol": 0.0,
        "random_state": 4,
    }
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        result = fit_em(X, 4, max_iter=40, **kwargs)
    _assert_monotone(result.lower_bounds)
    assert result.lower_bounds[-1] - result.lower_bounds[0] > 1e-3
    # lower_bounds[t] is the objective at the parameters after t M-steps.
    with pytest.warns(ConvergenceWarning):
        shorter = fit_em(X, 4, max_iter=39, **kwargs)
    log_likelihood, _ = e_step(
        X, shorter.weights, shorter.means, shorter.precisions_cholesky, covariance_type
    )
    prior = default_prior(X, 4, covariance_type)
    objective = log_likelihood + log_prior(prior, shorter.means, shorter.precisions_cholesky) / 150
    assert result.lower_bounds[-1] == pytest.approx(objective, rel=1e-12)
    assert shorter.log_likelihood == pytest.approx(log_likelihood, rel=1e-12)


def test_map_with_default_ridge_is_monotone_on_regular_data():
    X = _three_clusters(np.random.default_rng(62), 300)
    with pytest.warns(ConvergenceWarning):
        result = fit_em(X, 4, objective="map", tol=0.0, max_iter=40, random_state=0)
    _assert_monotone(result.lower_bounds)


def test_objective_is_validated_and_serialised():
    X = _three_clusters(np.random.default_rng(63), 60)
    with pytest.raises(ValueError, match="objective"):
        fit_em(X, 2, objective="mle")
    result = fit_em(X, 3, objective="map", random_state=0)
    data = result.to_dict()
    assert data["objective"] == "map"
    again = EMResult.from_dict(data)
    assert again.objective == "map"
    np.testing.assert_array_equal(again.covariances, result.covariances)
    old = {key: value for key, value in data.items() if key != "objective"}
    assert EMResult.from_dict(old).objective == "ml"


def test_max_iter_zero_map_returns_the_start_and_its_log_posterior():
    X = _three_clusters(np.random.default_rng(64), 90)
    start = _start("full")
    result = fit_em(X, 3, objective="map", max_iter=0, init_params=start)
    np.testing.assert_array_equal(result.means, start["means"])
    prior = default_prior(X, 3, "full")
    expected = (
        result.log_likelihood + log_prior(prior, result.means, result.precisions_cholesky) / 90
    )
    assert result.init_log_likelihoods[0] == pytest.approx(expected, rel=1e-12)
