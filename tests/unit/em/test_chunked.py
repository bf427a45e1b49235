"""The EM loop over sufficient statistics (bayesmix.em.chunked), in memory.

The Dask path is tested against in-memory EM in tests/unit/test_dask.py; here the pieces
that a well-behaved fit rarely reaches: the second pass of the Gaussian M-step, empty
components, and the starting sample.
"""

from __future__ import annotations

import numpy as np
import pytest

from bayesmix.em.chunked import INIT_SAMPLE, fit_chunked, in_memory_pass, sample_indices
from bayesmix.families.gaussian import em as gaussian_em


def _one_component(X, means):
    covariances = np.array([np.cov(X.T, bias=True)])
    params = {
        "means": means,
        "covariances": covariances,
        "precisions_cholesky": gaussian_em.compute_precision_cholesky(covariances, "full"),
    }
    return np.ones(1), params


def test_second_pass_when_the_one_pass_scatter_cancels():
    # The current mean is 1e7 standard deviations off: the scatter about it is ~1e14 per
    # row, and s2 - s1 d' - d s1' + n d d' loses every digit of the unit covariance. The
    # fused M-step must decline it and the second pass (about the new mean) be exact.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2)) @ np.array([[1.0, 0.3], [0.0, 0.5]])
    weights, params = _one_component(X, X.mean(axis=0, keepdims=True) + 1e7)
    data_pass = in_memory_pass(X)
    steps = gaussian_em.chunked_steps(
        1, 2, covariance_type="full", reg_covar=0.0, objective="ml", data_pass=data_pass
    )
    stats = data_pass(lambda x, w: steps.statistics(x, w, weights, params))
    naive = gaussian_em._fused_m_step(
        stats["nk"], stats["s1"], stats["s2"], params["means"], "full", 0.0, None, 0.0, 0.0
    )
    truth = np.cov(X.T, bias=True)
    assert naive is None or not np.allclose(naive[0][2][0], truth, rtol=1e-3)  # cancelled
    _, new = steps.m_step(stats, weights, params, data_pass)
    np.testing.assert_allclose(new["means"][0], X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(new["covariances"][0], truth, rtol=1e-10)


def test_an_empty_component_keeps_its_parameters_with_a_vanishing_weight():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2))
    covariances = np.array([np.eye(2), np.eye(2)])
    params = {
        "means": np.array([[0.0, 0.0], [1e3, 1e3]]),  # nothing near the second component
        "covariances": covariances,
        "precisions_cholesky": gaussian_em.compute_precision_cholesky(covariances, "full"),
    }
    weights = np.array([0.5, 0.5])
    data_pass = in_memory_pass(X)
    steps = gaussian_em.chunked_steps(
        2, 2, covariance_type="full", reg_covar=1e-6, objective="ml", data_pass=data_pass
    )
    stats = data_pass(lambda x, w: steps.statistics(x, w, weights, params))
    new_weights, new = steps.m_step(stats, weights, params, data_pass)
    np.testing.assert_array_equal(new["means"][1], params["means"][1])
    np.testing.assert_array_equal(new["covariances"][1], covariances[1])
    assert new_weights[1] < 1e-12
    np.testing.assert_allclose(new["means"][0], X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        new["covariances"][0], np.cov(X.T, bias=True) + 1e-6 * np.eye(2), rtol=1e-10
    )


def test_sample_indices_are_the_in_memory_subsample():
    assert sample_indices(INIT_SAMPLE, np.random.default_rng(0)) is None
    n = INIT_SAMPLE + 1000
    keep = sample_indices(n, np.random.default_rng(3))
    expected = np.sort(np.random.default_rng(3).choice(n, size=INIT_SAMPLE, replace=False))
    np.testing.assert_array_equal(keep, expected)
    assert np.all(np.diff(keep) > 0)


@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.ConvergenceWarning")
def test_in_memory_pass_equals_fit_em_from_the_same_seed():
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(4, 1, (300, 2))])
    steps = gaussian_em.chunked_steps(
        2, 2, covariance_type="diag", reg_covar=1e-6, objective="map", data_pass=in_memory_pass(X)
    )
    result = fit_chunked(
        steps,
        in_memory_pass(X),
        lambda idx: (X if idx is None else X[idx], None),
        X.shape[0],
        n_init=2,
        max_iter=50,
        tol=1e-8,
        rng=np.random.default_rng(5),
    )
    reference = gaussian_em.fit_em(
        X,
        2,
        covariance_type="diag",
        objective="map",
        n_init=2,
        max_iter=50,
        tol=1e-8,
        random_state=np.random.default_rng(5),
    )
    np.testing.assert_allclose(result.means, reference.means, rtol=1e-10)
    np.testing.assert_allclose(result.covariances, reference.covariances, rtol=1e-10)
    np.testing.assert_allclose(result.init_log_likelihoods, reference.init_log_likelihoods)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_recentred_sums_equal_the_sums_about_the_new_means(covariance_type):
    # OnlineEM moves its running sums to new means; the oracle is summing about them.
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 3))
    shape = gaussian_em._covariance_shape(covariance_type, 2, 3)
    covariances = {
        "full": np.array([np.eye(3), 2 * np.eye(3)]),
        "tied": np.eye(3),
        "diag": np.ones((2, 3)),
        "spherical": np.ones(2),
    }[covariance_type]
    assert covariances.shape == shape
    old = {
        "means": rng.normal(size=(2, 3)),
        "covariances": covariances,
        "precisions_cholesky": gaussian_em.compute_precision_cholesky(covariances, covariance_type),
    }
    new = {**old, "means": rng.normal(size=(2, 3))}
    weights = np.array([0.3, 0.7])
    about_old = gaussian_em._chunk_sums(
        X, None, weights, old["means"], old["precisions_cholesky"], covariance_type, old["means"]
    )
    about_new = gaussian_em._chunk_sums(
        X, None, weights, old["means"], old["precisions_cholesky"], covariance_type, new["means"]
    )
    moved = gaussian_em._recentre(about_old, old, new, covariance_type=covariance_type)
    np.testing.assert_allclose(moved["s1"], about_new["s1"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(moved["s2"], about_new["s2"], rtol=1e-10, atol=1e-10)
