"""Tests of bayesmix.families.gaussian.em, with scipy and scikit-learn as independent oracles."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

import bayesmix.em.init as em_init
import bayesmix.families.gaussian.em as em
from bayesmix.exceptions import ConvergenceWarning, FitError, InvalidParameterError
from bayesmix.families.gaussian.em import (
    COVARIANCE_TYPES,
    EMResult,
    compute_precision_cholesky,
    e_step,
    estimate_log_gaussian_prob,
    fit_em,
    full_covariances,
    kmeans_plusplus,
    m_step,
)

K, D, N = 3, 2, 300


# ---------------------------------------------------------------------------------------
# Helpers


def _true_params(covariance_type: str, rng: np.random.Generator, separation: float = 8.0):
    """Weights, means and covariances (sklearn shape) of a well-separated K=3, D=2 mixture."""
    weights = np.array([0.5, 0.3, 0.2])
    means = separation * np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]) + rng.normal(size=(K, D))
    if covariance_type == "full":
        a = rng.normal(scale=0.5, size=(K, D, D))
        covariances = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(D)
    elif covariance_type == "tied":
        a = rng.normal(scale=0.5, size=(D, D))
        covariances = a @ a.T + 0.5 * np.eye(D)
    elif covariance_type == "diag":
        covariances = rng.uniform(0.4, 1.5, size=(K, D))
    else:
        covariances = rng.uniform(0.4, 1.5, size=K)
    return weights, means, covariances


def _sample(weights, means, covariances, covariance_type, n, rng):
    """Draw n samples and their labels from a mixture given in sklearn parameter shapes."""
    full = full_covariances(covariances, covariance_type, len(weights), means.shape[1])
    labels = rng.choice(len(weights), size=n, p=weights)
    chol = np.linalg.cholesky(full)
    z = rng.standard_normal(size=(n, means.shape[1]))
    X = means[labels] + np.einsum("nij,nj->ni", chol[labels], z)
    return X, labels


def _make_mixture(covariance_type: str, rng: np.random.Generator, n: int = N, **kwargs):
    """Return X, labels and the true (weights, means, covariances) of a synthetic mixture."""
    weights, means, covariances = _true_params(covariance_type, rng, **kwargs)
    X, labels = _sample(weights, means, covariances, covariance_type, n, rng)
    return X, labels, (weights, means, covariances)


def _perturb(params, rng):
    """Move parameters away from the truth so that EM needs several iterations."""
    weights, means, covariances = params
    weights = 0.5 * weights + 0.5 / len(weights)
    means = means + rng.normal(scale=0.8, size=means.shape)
    covariances = 1.8 * covariances
    return weights, means, covariances


def _precisions(covariances, covariance_type):
    """Inverse covariances in sklearn's ``precisions_init`` shape (no bayesmix code)."""
    if covariance_type == "full":
        eye = np.eye(covariances.shape[-1])
        return np.stack([np.linalg.solve(c, eye) for c in covariances])
    if covariance_type == "tied":
        return np.linalg.solve(covariances, np.eye(covariances.shape[0]))
    return 1.0 / covariances


def _full_from_type(array, covariance_type, n_components, n_features):
    """Expand an sklearn-shaped array to (K, D, D) without bayesmix code."""
    if covariance_type == "full":
        return np.asarray(array)
    if covariance_type == "tied":
        return np.broadcast_to(array, (n_components, n_features, n_features))
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in array])
    return np.stack([v * np.eye(n_features) for v in array])


def _scipy_log_prob(X, means, covariances, covariance_type):
    """Reference (N, K) log densities from scipy.stats.multivariate_normal."""
    n_components, n_features = means.shape
    full = _full_from_type(covariances, covariance_type, n_components, n_features)
    return np.column_stack(
        [
            stats.multivariate_normal(mean=means[k], cov=full[k]).logpdf(X)
            for k in range(n_components)
        ]
    )


# ---------------------------------------------------------------------------------------
# 1. Agreement with scikit-learn from the same starting parameters


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_em_matches_sklearn_from_same_start(covariance_type):
    rng = np.random.default_rng(101)
    X, _, params = _make_mixture(covariance_type, rng, separation=5.0)
    weights0, means0, covariances0 = _perturb(params, rng)
    tol, reg_covar, max_iter = 1e-7, 1e-6, 500

    result = fit_em(
        X,
        K,
        covariance_type=covariance_type,
        tol=tol,
        reg_covar=reg_covar,
        max_iter=max_iter,
        init_params={"weights": weights0, "means": means0, "covariances": covariances0},
    )
    gm = GaussianMixture(
        n_components=K,
        covariance_type=covariance_type,
        weights_init=weights0,
        means_init=means0,
        precisions_init=_precisions(covariances0, covariance_type),
        tol=tol,
        reg_covar=reg_covar,
        max_iter=max_iter,
    ).fit(X)

    assert result.n_iter >= 4  # the comparison covers several iterations
    assert result.n_iter == gm.n_iter_
    assert result.converged is True
    assert gm.converged_
    np.testing.assert_allclose(result.weights, gm.weights_, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(result.means, gm.means_, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(result.covariances, gm.covariances_, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(
        result.precisions_cholesky, gm.precisions_cholesky_, rtol=1e-6, atol=1e-10
    )
    np.testing.assert_allclose(result.lower_bounds, gm.lower_bounds_, rtol=1e-8)
    np.testing.assert_allclose(result.log_likelihood, gm.score(X), rtol=1e-8)
    assert result.covariances.shape == gm.covariances_.shape
    assert result.covariance_type == covariance_type


# ---------------------------------------------------------------------------------------
# 2. Monotone lower bound


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_lower_bound_never_decreases(covariance_type):
    rng = np.random.default_rng(202)
    # Overlapping clusters and K=4 > 3 true clusters: a slow, long EM path.
    X, _, _ = _make_mixture(covariance_type, rng, separation=3.0)
    with pytest.warns(ConvergenceWarning):
        result = fit_em(X, 4, covariance_type=covariance_type, tol=0.0, max_iter=60, random_state=3)
    assert result.lower_bounds.shape == (60,)
    assert result.n_iter == 60
    assert not result.converged
    assert np.all(np.diff(result.lower_bounds) >= -1e-10)
    assert result.lower_bounds[-1] - result.lower_bounds[0] > 1e-3  # EM did make progress
    assert result.log_likelihood >= result.lower_bounds[-1] - 1e-10


# ---------------------------------------------------------------------------------------
# 3. Log densities against scipy


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_gaussian_prob_matches_scipy(covariance_type):
    rng = np.random.default_rng(303)
    X, _, (_, means, covariances) = _make_mixture(covariance_type, rng, n=50)
    precisions_cholesky = compute_precision_cholesky(covariances, covariance_type)
    log_prob = estimate_log_gaussian_prob(X, means, precisions_cholesky, covariance_type)

    full = full_covariances(covariances, covariance_type, K, D)
    expected = np.column_stack(
        [stats.multivariate_normal(mean=means[k], cov=full[k]).logpdf(X) for k in range(K)]
    )
    assert log_prob.shape == (50, K)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_full_covariances_expands_every_type(covariance_type):
    rng = np.random.default_rng(304)
    _, _, covariances = _true_params(covariance_type, rng)
    full = full_covariances(covariances, covariance_type, K, D)
    assert full.shape == (K, D, D)
    np.testing.assert_array_equal(full, _full_from_type(covariances, covariance_type, K, D))
    assert not np.shares_memory(full, covariances)
    with pytest.raises(ValueError, match="must have shape"):
        full_covariances(covariances, covariance_type, K + 1, D + 1)


# ---------------------------------------------------------------------------------------
# 4. Precision Cholesky factors


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_compute_precision_cholesky_inverts_covariance(covariance_type):
    rng = np.random.default_rng(404)
    _, _, covariances = _true_params(covariance_type, rng)
    prec_chol = compute_precision_cholesky(covariances, covariance_type)
    assert prec_chol.shape == covariances.shape

    full_cov = _full_from_type(covariances, covariance_type, K, D)
    full_chol = _full_from_type(prec_chol, covariance_type, K, D)
    for k in range(K):
        precision = full_chol[k] @ full_chol[k].T
        expected = np.linalg.solve(full_cov[k], np.eye(D))
        np.testing.assert_allclose(precision, expected, rtol=1e-10, atol=1e-12)
        # sklearn's convention: the factor is upper triangular with a positive diagonal.
        np.testing.assert_array_equal(np.tril(full_chol[k], -1), 0.0)
        assert np.all(np.diag(full_chol[k]) > 0)


# ---------------------------------------------------------------------------------------
# 5. E-step


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_e_step_normalised_and_matches_scipy(covariance_type):
    rng = np.random.default_rng(505)
    X, _, (weights, means, covariances) = _make_mixture(covariance_type, rng, separation=3.0)
    precisions_cholesky = compute_precision_cholesky(covariances, covariance_type)
    log_prob_norm, log_resp = e_step(X, weights, means, precisions_cholesky, covariance_type)

    assert isinstance(log_prob_norm, float)
    assert log_resp.shape == (N, K)
    np.testing.assert_allclose(np.exp(log_resp).sum(axis=1), 1.0, rtol=0, atol=1e-12)
    reference = np.log(weights) + _scipy_log_prob(X, means, covariances, covariance_type)
    np.testing.assert_allclose(log_prob_norm, np.mean(logsumexp(reference, axis=1)), rtol=1e-10)
    np.testing.assert_allclose(
        log_resp, reference - logsumexp(reference, axis=1, keepdims=True), rtol=1e-8, atol=1e-8
    )


# ---------------------------------------------------------------------------------------
# 6. M-step


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_with_hard_assignments(covariance_type):
    rng = np.random.default_rng(606)
    X, labels, _ = _make_mixture("full", rng)
    reg_covar = 1e-3
    resp = np.zeros((N, K))
    resp[np.arange(N), labels] = 1.0

    weights, means, covariances = m_step(X, resp, covariance_type, reg_covar)

    counts = np.bincount(labels, minlength=K)
    cluster_means = np.stack([X[labels == k].mean(axis=0) for k in range(K)])
    cluster_covs = np.stack([np.cov(X[labels == k].T, bias=True) for k in range(K)])
    np.testing.assert_allclose(weights, counts / N, rtol=1e-12)
    np.testing.assert_allclose(means, cluster_means, rtol=1e-10, atol=1e-12)
    if covariance_type == "full":
        expected = cluster_covs + reg_covar * np.eye(D)
    elif covariance_type == "tied":
        expected = np.einsum("k,kij->ij", counts / N, cluster_covs) + reg_covar * np.eye(D)
    elif covariance_type == "diag":
        expected = np.diagonal(cluster_covs, axis1=1, axis2=2) + reg_covar
    else:
        expected = np.diagonal(cluster_covs, axis1=1, axis2=2).mean(axis=1) + reg_covar
    np.testing.assert_allclose(covariances, expected, rtol=1e-10, atol=1e-12)


def test_m_step_empty_component_is_floored():
    rng = np.random.default_rng(607)
    X = rng.normal(size=(20, D))
    resp = np.zeros((20, 2))
    resp[:, 0] = 1.0
    weights, means, covariances = m_step(X, resp, "full", 1e-6)
    assert np.all(np.isfinite(means))
    np.testing.assert_allclose(means[1], 0.0)
    np.testing.assert_allclose(covariances[1], 1e-6 * np.eye(D))
    assert weights[1] > 0
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-15)


# ---------------------------------------------------------------------------------------
# 7. Convergence warning


def test_convergence_warning_with_max_iter_one():
    rng = np.random.default_rng(707)
    X, _, _ = _make_mixture("full", rng)
    with pytest.warns(ConvergenceWarning, match="max_iter") as record:
        result = fit_em(X, K, max_iter=1, random_state=0)
    assert len(record) == 1
    message = str(record[0].message)
    assert "tol" in message
    assert "n_init" in message
    assert record[0].filename == __file__  # stacklevel points at the caller
    assert result.n_iter == 1
    assert not result.converged
    assert result.lower_bounds.shape == (1,)


def test_no_warning_when_converged(recwarn):
    rng = np.random.default_rng(708)
    X, _, _ = _make_mixture("diag", rng)
    result = fit_em(X, K, covariance_type="diag", random_state=0)
    assert result.converged
    assert not [w for w in recwarn if issubclass(w.category, ConvergenceWarning)]


# ---------------------------------------------------------------------------------------
# 8. Restarts, reproducibility, no mutation


def test_n_init_returns_best_restart_reproducibly():
    rng = np.random.default_rng(808)
    X, _, _ = _make_mixture("full", rng, separation=4.0)
    X.flags.writeable = False  # any in-place write would raise
    X_before = X.copy()

    result = fit_em(X, 5, n_init=4, random_state=11)
    again = fit_em(X, 5, n_init=4, random_state=11)
    from_generator = fit_em(X, 5, n_init=4, random_state=np.random.default_rng(11))

    assert isinstance(result, EMResult)
    np.testing.assert_array_equal(X, X_before)
    assert result.init_log_likelihoods.shape == (4,)
    # the restarts really differ, otherwise this test checks nothing
    assert np.ptp(result.init_log_likelihoods) > 1e-6
    assert result.best_init == int(np.argmax(result.init_log_likelihoods))
    assert result.log_likelihood >= np.max(result.init_log_likelihoods) - 1e-12
    assert result.lower_bounds[-1] == result.init_log_likelihoods[result.best_init]
    for other in (again, from_generator):
        for name in ("weights", "means", "covariances", "precisions_cholesky", "lower_bounds"):
            np.testing.assert_array_equal(getattr(result, name), getattr(other, name))
        assert other.log_likelihood == result.log_likelihood
        assert other.best_init == result.best_init
    np.testing.assert_allclose(
        result.precisions_cholesky, compute_precision_cholesky(result.covariances, "full")
    )


def test_init_params_are_not_mutated_and_max_iter_zero_returns_them():
    rng = np.random.default_rng(809)
    X, _, params = _make_mixture("tied", rng)
    init = dict(zip(("weights", "means", "covariances"), _perturb(params, rng), strict=True))
    init_before = {key: value.copy() for key, value in init.items()}

    result = fit_em(X, K, covariance_type="tied", max_iter=0, n_init=2, init_params=init)
    for key in init:
        np.testing.assert_array_equal(init[key], init_before[key])
        np.testing.assert_array_equal(getattr(result, key), init[key])
        assert not np.shares_memory(getattr(result, key), init[key])
    assert result.n_iter == 0
    assert result.lower_bounds.shape == (0,)
    assert result.best_init == 0
    reference = np.log(init["weights"]) + _scipy_log_prob(
        X, init["means"], init["covariances"], "tied"
    )
    np.testing.assert_allclose(
        result.log_likelihood, np.mean(logsumexp(reference, axis=1)), rtol=1e-10
    )


def test_info_logging(caplog):
    rng = np.random.default_rng(810)
    X, _, _ = _make_mixture("spherical", rng, n=60)
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        fit_em(X, K, covariance_type="spherical", n_init=2, random_state=0)
    messages = [r.getMessage() for r in caplog.records if r.name == "bayesmix"]
    assert any("restart 1/2" in m for m in messages)
    assert any("restart 2/2" in m for m in messages)


def test_invalid_init_params_raise():
    rng = np.random.default_rng(811)
    X, _, (weights, means, covariances) = _make_mixture("full", rng, n=30)
    with pytest.raises(ValueError, match="shape"):
        fit_em(
            X,
            K,
            init_params={"weights": weights, "means": means[:2], "covariances": covariances},
        )
    with pytest.raises(ValueError, match="sum to 1"):
        fit_em(
            X, K, init_params={"weights": 2 * weights, "means": means, "covariances": covariances}
        )
    with pytest.raises(ValueError, match="covariance_type"):
        fit_em(X, K, covariance_type="banana")
    with pytest.raises(ValueError, match="n_components"):
        fit_em(X, 31)


# ---------------------------------------------------------------------------------------
# 9. Recovery from the default k-means++ initialisation


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_recovers_separated_clusters(covariance_type):
    rng = np.random.default_rng(909)
    X, labels, _ = _make_mixture(covariance_type, rng)
    result = fit_em(X, K, covariance_type=covariance_type, n_init=3, random_state=rng)
    _, log_resp = e_step(
        X, result.weights, result.means, result.precisions_cholesky, covariance_type
    )
    assert adjusted_rand_score(labels, log_resp.argmax(axis=1)) > 0.95
    assert result.converged


def test_kmeans_plusplus_picks_distinct_data_points():
    rng = np.random.default_rng(910)
    X, labels, _ = _make_mixture("full", rng)
    centres = kmeans_plusplus(X, K, np.random.default_rng(0))
    assert centres.shape == (K, D)
    rows = [np.flatnonzero(np.linalg.norm(X - c, axis=1) == 0.0) for c in centres]
    assert all(len(r) == 1 for r in rows)
    # on well-separated data, greedy k-means++ puts one seed in each cluster
    assert sorted(labels[r[0]] for r in rows) == [0, 1, 2]
    np.testing.assert_array_equal(centres, kmeans_plusplus(X, K, np.random.default_rng(0)))


def test_nearest_centres_match_scipy_distances(rng):
    from scipy.spatial.distance import cdist

    X = rng.normal(size=(500, 3)) * [1.0, 10.0, 100.0] + 1e4  # far from the origin
    centres = np.vstack([X[[3, 17]], X[17], rng.normal(size=(1, 3)) + 1e4])  # a tie
    expected = cdist(X, centres, "sqeuclidean")
    np.testing.assert_allclose(
        em_init._squared_distances(np.ascontiguousarray(X.T), centres), expected.T, rtol=1e-12
    )
    labels, sq = em_init.nearest_centres(X, centres)
    np.testing.assert_array_equal(labels, expected.argmin(axis=1))  # ties: lower index
    assert labels[17] == 1
    np.testing.assert_allclose(sq, expected.min(axis=1), rtol=1e-12)
    assert sq[3] == 0.0
    assert sq[17] == 0.0


def test_large_data_start_from_a_subsample(monkeypatch):
    rng = np.random.default_rng(911)
    X, _, _ = _make_mixture("full", rng)
    seen = []
    original = em.initial_labels

    def spy(data, n_components, generator, partition, sample_weight=None):
        seen.append(data.shape[0])
        return original(data, n_components, generator, partition, sample_weight)

    monkeypatch.setattr(em, "initial_labels", spy)
    full = fit_em(X, K, random_state=0, n_init=2, tol=1e-10)
    assert seen == [X.shape[0]] * 2
    seen.clear()
    monkeypatch.setattr(em, "_INIT_SUBSAMPLE", 60)
    sub = fit_em(X, K, random_state=0, n_init=2, tol=1e-10)
    assert seen == [60] * 2  # the seeding saw 60 samples, the iterations all of them
    # On separated clusters both starts lead to the same maximum (up to label order).
    np.testing.assert_allclose(sub.log_likelihood, full.log_likelihood, rtol=1e-8)
    order_full, order_sub = np.argsort(full.means[:, 0]), np.argsort(sub.means[:, 0])
    np.testing.assert_allclose(sub.means[order_sub], full.means[order_full], atol=1e-5)


# ---------------------------------------------------------------------------------------
# 10. Singular covariances


def test_collapsed_component_raises_fit_error_during_em():
    rng = np.random.default_rng(1010)
    # 10 copies of the origin and a cluster far away: after the first E-step component 0
    # owns exactly the duplicated points, so with reg_covar=0 its covariance is exactly 0.
    X = np.vstack([np.zeros((10, D)), rng.normal(loc=50.0, size=(30, D))])
    init = {
        "weights": np.array([0.25, 0.75]),
        "means": np.array([[0.0, 0.0], [50.0, 50.0]]),
        "covariances": np.stack([np.eye(D), np.eye(D)]),
    }
    with pytest.raises(FitError, match="reg_covar") as excinfo:
        fit_em(X, 2, covariance_type="full", reg_covar=0.0, init_params=init)
    message = str(excinfo.value)
    assert "component 0" in message
    assert "'full'" in message
    assert "iteration 1" in message


def test_duplicated_data_raises_fit_error_at_initialisation():
    X = np.zeros((20, D))
    with pytest.raises(FitError, match="reg_covar"):
        fit_em(X, 1, covariance_type="full", reg_covar=0.0, random_state=0)
    # the default ridge rescues the same data
    result = fit_em(X, 1, covariance_type="full", random_state=0)
    np.testing.assert_allclose(result.covariances[0], 1e-6 * np.eye(D))


@pytest.mark.parametrize(
    ("covariance_type", "covariances", "component"),
    [
        ("full", np.array([np.eye(2), [[1.0, 1.0], [1.0, 1.0]]]), "component 1"),
        ("tied", np.array([[1.0, 1.0], [1.0, 1.0]]), "tied"),
        ("diag", np.array([[1.0, 1.0], [1.0, 0.0]]), "[1]"),
        ("spherical", np.array([0.0, 1.0]), "[0]"),
    ],
)
def test_compute_precision_cholesky_singular_raises(covariance_type, covariances, component):
    with pytest.raises(FitError, match="reg_covar") as excinfo:
        compute_precision_cholesky(covariances, covariance_type)
    assert component in str(excinfo.value)
    assert covariance_type in str(excinfo.value)
    assert isinstance(excinfo.value, RuntimeError)


# ---------------------------------------------------------------------------------------
# 11. The fused numba iteration (default) against the NumPy iteration

ENGINE_CASES = [(1, 1), (1, 3), (2, 2), (2, 3), (3, 4), (4, 2), (5, 5)]


def _general_mixture(n_features, n_components, covariance_type, rng, n=600):
    """X and a perturbed start for K separated components in D dimensions."""
    direction = rng.normal(size=n_features)
    direction /= np.linalg.norm(direction)
    means = 6.0 * np.arange(n_components)[:, None] * direction
    means = means + rng.normal(scale=0.5, size=means.shape)
    if covariance_type == "full":
        a = rng.normal(scale=0.5, size=(n_components, n_features, n_features))
        covariances = a @ np.swapaxes(a, 1, 2) + 0.4 * np.eye(n_features)
    elif covariance_type == "tied":
        a = rng.normal(scale=0.5, size=(n_features, n_features))
        covariances = a @ a.T + 0.4 * np.eye(n_features)
    elif covariance_type == "diag":
        covariances = rng.uniform(0.4, 1.5, size=(n_components, n_features))
    else:
        covariances = rng.uniform(0.4, 1.5, size=n_components)
    weights = rng.dirichlet(np.full(n_components, 4.0))
    X, _ = _sample(weights, means, covariances, covariance_type, n, rng)
    start = {
        "weights": 0.5 * weights + 0.5 / n_components,
        "means": means + rng.normal(scale=0.5, size=means.shape),
        "covariances": 1.5 * covariances,
    }
    return X, start


@pytest.fixture(autouse=True)
def fused_at_every_size(monkeypatch):
    """The tests here use small data: let the default engine be the fused one at any N."""
    monkeypatch.setattr(em, "_FUSED_MIN_SAMPLES", 0)


def test_small_data_uses_the_numpy_steps(monkeypatch, numpy_steps):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(-3, 1, (200, 2)), rng.normal(3, 1, (200, 2))])
    monkeypatch.setattr(em, "_FUSED_MIN_SAMPLES", 401)
    small = fit_em(X, 2, random_state=0, n_init=1)
    assert len(numpy_steps) == small.n_iter  # every iteration took the NumPy steps
    numpy_steps.clear()
    monkeypatch.setattr(em, "_FUSED_MIN_SAMPLES", 400)
    large = fit_em(X, 2, random_state=0, n_init=1)
    assert not numpy_steps  # every iteration was fused
    assert large.n_iter == small.n_iter
    np.testing.assert_allclose(large.log_likelihood, small.log_likelihood, rtol=1e-12)


@pytest.fixture
def numpy_steps(monkeypatch):
    """Count the NumPy E-steps of the EM loop (em._objective calls)."""
    calls = []
    original = em._objective

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(em, "_objective", counting)
    return calls


def _fit_with_engine(monkeypatch, engine, *args, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(em, "_ENGINE", engine)
        return fit_em(*args, **kwargs)


def _assert_same_fit(fused, reference, rtol, shift=0.0):
    """Parameters agree to rtol; means (possibly shifted) relative to the component sd."""
    assert fused.n_iter == reference.n_iter
    assert fused.converged == reference.converged
    sd = np.sqrt(np.abs(reference.covariances).max())
    np.testing.assert_allclose(fused.weights, reference.weights, rtol=rtol, atol=0)
    np.testing.assert_allclose(fused.means - shift, reference.means, rtol=0, atol=rtol * sd)
    np.testing.assert_allclose(fused.covariances, reference.covariances, rtol=rtol, atol=0)
    np.testing.assert_allclose(
        fused.precisions_cholesky, reference.precisions_cholesky, rtol=rtol, atol=rtol / sd
    )
    np.testing.assert_allclose(fused.lower_bounds, reference.lower_bounds, rtol=rtol)
    np.testing.assert_allclose(fused.log_likelihood, reference.log_likelihood, rtol=rtol)


@pytest.mark.parametrize("objective", ["ml", "map"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize(("n_features", "n_components"), ENGINE_CASES)
def test_fused_iteration_matches_numpy_iteration(
    n_features, n_components, covariance_type, objective, monkeypatch, numpy_steps
):
    rng = np.random.default_rng(1000 * n_features + 10 * n_components)
    X, start = _general_mixture(n_features, n_components, covariance_type, rng)
    kwargs = {
        "covariance_type": covariance_type,
        "objective": objective,
        "init_params": start,
        "tol": 1e-6,
        "max_iter": 300,
    }
    reference = _fit_with_engine(monkeypatch, "numpy", X, n_components, **kwargs)
    assert len(numpy_steps) == reference.n_iter  # the counter sees the NumPy steps
    numpy_steps.clear()
    fused = fit_em(X, n_components, **kwargs)  # the default engine
    assert not numpy_steps  # every iteration was fused
    assert reference.n_iter >= 3
    _assert_same_fit(fused, reference, rtol=1e-9)


@pytest.mark.parametrize("objective", ["ml", "map"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize(("n_features", "n_components"), [(1, 3), (2, 3), (3, 4), (5, 5)])
def test_fused_iteration_is_accurate_far_from_the_origin(
    n_features, n_components, covariance_type, objective, monkeypatch, numpy_steps
):
    # Data offset by 1e6: x - mu must not cancel. X_off - offset is exact, so the fit of the
    # centred data is the exact answer for the offset data, up to the rounding of the means
    # (ulp(1e6) = 1.2e-10), which EM carries from one iteration to the next.
    rng = np.random.default_rng(2000 * n_features + 10 * n_components)
    X, start = _general_mixture(n_features, n_components, covariance_type, rng)
    offset = 1e6
    X_off = X + offset
    kwargs = {"covariance_type": covariance_type, "objective": objective, "tol": 1e-6}
    exact = _fit_with_engine(
        monkeypatch, "numpy", X_off - offset, n_components, init_params=start, **kwargs
    )
    start_off = dict(start, means=start["means"] + offset)
    numpy_off = _fit_with_engine(
        monkeypatch, "numpy", X_off, n_components, init_params=start_off, **kwargs
    )
    numpy_steps.clear()
    fused_off = fit_em(X_off, n_components, init_params=start_off, **kwargs)
    assert not numpy_steps
    # Fused: close to the exact answer; the NumPy path itself is only good to ~1e-8 here.
    _assert_same_fit(fused_off, exact, rtol=2e-9, shift=offset)
    _assert_same_fit(fused_off, numpy_off, rtol=2e-8)


def test_fused_iteration_on_a_large_sample_and_non_contiguous_data(monkeypatch, numpy_steps):
    rng = np.random.default_rng(1111)
    X, start = _general_mixture(3, 4, "full", rng, n=30_000)
    reference = _fit_with_engine(monkeypatch, "numpy", X, 4, init_params=start, tol=1e-8)
    numpy_steps.clear()
    fused = fit_em(X, 4, init_params=start, tol=1e-8)
    assert not numpy_steps
    _assert_same_fit(fused, reference, rtol=1e-9)
    # Fortran-ordered and read-only data give exactly the same fit.
    X_fortran = np.asfortranarray(X)
    X_fortran.flags.writeable = False
    other = fit_em(X_fortran, 4, init_params=start, tol=1e-8)
    for name in ("weights", "means", "covariances", "precisions_cholesky", "lower_bounds"):
        np.testing.assert_array_equal(getattr(other, name), getattr(fused, name))
    assert not X_fortran.flags.writeable


@pytest.mark.parametrize("objective", ["ml", "map"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fused_iteration_hands_empty_components_to_the_numpy_step(
    covariance_type, objective, monkeypatch, numpy_steps, caplog
):
    rng = np.random.default_rng(1212)
    X = np.vstack([rng.normal(size=(100, 2)), rng.normal(loc=8.0, scale=0.7, size=(20, 2))])
    init = {
        "weights": np.array([0.5, 0.5]),
        "means": np.array([[0.0, 0.0], [1e3, 1e3]]),  # component 1 gets nothing
        "covariances": {
            "full": np.stack([np.eye(2), np.eye(2)]),
            "tied": np.eye(2),
            "diag": np.ones((2, 2)),
            "spherical": np.ones(2),
        }[covariance_type],
    }
    kwargs = {
        "covariance_type": covariance_type,
        "objective": objective,
        "init_params": init,
        "tol": 1e-8,
        "max_iter": 300,
    }
    with caplog.at_level(logging.WARNING, logger="bayesmix"):
        reference = _fit_with_engine(monkeypatch, "numpy", X, 2, **kwargs)
        numpy_messages = [r.getMessage() for r in caplog.records]
        caplog.clear()
        numpy_steps.clear()
        fused = fit_em(X, 2, **kwargs)
        fused_messages = [r.getMessage() for r in caplog.records]
    assert any("component 1 is empty" in m for m in numpy_messages)
    assert fused_messages == numpy_messages
    # The empty iteration went to the NumPy step, the later ones were fused.
    assert 1 <= len(numpy_steps) < fused.n_iter
    _assert_same_fit(fused, reference, rtol=1e-9)


def test_fused_iteration_keeps_the_degenerate_case_errors(monkeypatch):
    # A component on 50 duplicated points collapses with reg_covar=0: the same FitError.
    rng = np.random.default_rng(1313)
    X = np.vstack([np.tile([[1.0, 2.0]], (50, 1)), 3.0 * rng.normal(size=(20, 2))])
    init = {
        "weights": np.array([0.7, 0.3]),
        "means": np.array([[1.0, 2.0], [0.0, 0.0]]),
        "covariances": np.array([[0.1, 0.1], [9.0, 9.0]]),
    }
    messages = []
    for engine in ("numpy", "fused"):
        with pytest.raises(FitError) as excinfo:
            _fit_with_engine(
                monkeypatch, engine, X, 2, covariance_type="diag", reg_covar=0.0, init_params=init
            )
        messages.append(str(excinfo.value))
    assert messages[0] == messages[1]


def test_without_numba_fit_em_uses_the_numpy_iteration(monkeypatch, numpy_steps):
    rng = np.random.default_rng(1414)
    X, start = _general_mixture(2, 3, "full", rng)
    reference = _fit_with_engine(monkeypatch, "numpy", X, 3, init_params=start)
    numpy_steps.clear()
    monkeypatch.setattr(em, "_kernels", lambda: None)
    result = fit_em(X, 3, init_params=start)
    assert len(numpy_steps) == result.n_iter
    for name in ("weights", "means", "covariances", "precisions_cholesky", "lower_bounds"):
        np.testing.assert_array_equal(getattr(result, name), getattr(reference, name))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_fused_iteration_with_features_on_very_different_scales(
    covariance_type, monkeypatch, numpy_steps
):
    # Unstandardised data (scales 1e4 and 1e-4, correlated unless diagonal): the fused step
    # still applies, its cancellation check is per feature.
    rng = np.random.default_rng(1515)
    X, start = _general_mixture(3, 3, covariance_type, rng)
    mix = np.diag([1e4, 1.0, 1e-4])
    if covariance_type != "diag":
        mix = mix @ np.linalg.qr(rng.normal(size=(3, 3)))[0]
    full = full_covariances(start["covariances"], covariance_type, 3, 3)
    mapped = np.einsum("ij,kjl,ml->kim", mix, full, mix)
    start = {
        "weights": start["weights"],
        "means": start["means"] @ mix.T,
        "covariances": {
            "full": mapped,
            "tied": mapped[0],
            "diag": np.diagonal(mapped, axis1=1, axis2=2).copy(),
        }[covariance_type],
    }
    X = X @ mix.T
    kwargs = {"covariance_type": covariance_type, "init_params": start, "tol": 1e-6}
    reference = _fit_with_engine(monkeypatch, "numpy", X, 3, **kwargs)
    numpy_steps.clear()
    fused = fit_em(X, 3, **kwargs)
    assert not numpy_steps
    assert reference.n_iter >= 3
    smallest = 1e-9 * np.diag(mix @ mix.T).min()
    np.testing.assert_allclose(fused.weights, reference.weights, rtol=1e-9)
    np.testing.assert_allclose(fused.means, reference.means, rtol=1e-9, atol=smallest)
    np.testing.assert_allclose(fused.covariances, reference.covariances, rtol=1e-9, atol=smallest)
    np.testing.assert_allclose(fused.lower_bounds, reference.lower_bounds, rtol=1e-9)


# ---------------------------------------------------------------------------------------
# 11. The estimators' default start: emEM


def test_emem_reaches_the_best_optimum_of_many_restarts_on_iris_where_kmeans_does_not():
    """Iris, K=4: the estimators' default start (emEM) against 5 k-means++ restarts.

    The reference is the best sound maximum of 100 restarts run to tol=1e-8 (50 from
    k-means++, 50 from random partitions). From these seeds emEM reaches it, and five
    k-means++ restarts stop more than 0.02 nats per observation below it (the trap at
    -1.0518 that most k-means++ starts fall into; bench/results/em_init.md).
    """
    import bayesmix as bm

    X = bm.datasets.load_iris().to_numpy(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = max(
            fit_em(
                X, 4, init=init, n_init=50, tol=1e-8, max_iter=2000, random_state=0
            ).log_likelihood
            for init in ("k-means++", "random")
        )
    for seed in (1000, 1014, 1019):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)  # sound and converged
            new = bm.GaussianMixture(n_components=4, random_state=seed).fit(X, method="em")
        old = bm.GaussianMixture(n_components=4, init="k-means++", random_state=seed)
        old = old.fit(X, method="em")
        assert new.em_.log_likelihood >= reference - 1e-6
        assert old.em_.log_likelihood < reference - 0.02


def test_the_start_is_chosen_by_init_and_checked():
    import bayesmix as bm

    X = bm.datasets.load_faithful().to_numpy(float)
    assert bm.GaussianMixture().init == "emem"  # the estimators' default
    default = fit_em(X, 3, random_state=3, max_iter=0)  # fit_em's: scikit-learn's start
    kmeans = fit_em(X, 3, init="k-means++", random_state=3, max_iter=0)
    random = fit_em(X, 3, init="random", random_state=3, max_iter=0)
    np.testing.assert_array_equal(default.means, kmeans.means)
    assert not np.allclose(np.sort(random.means, axis=0), np.sort(kmeans.means, axis=0))
    with pytest.raises(InvalidParameterError, match="init must be one of"):
        fit_em(X, 2, init="kmeans")
    with pytest.raises(InvalidParameterError, match="init must be one of"):
        bm.GaussianMixture(init="ward").fit(X, method="em")
