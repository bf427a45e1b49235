"""Post-processing maths against scipy: per-draw log densities, responsibilities, relabelling."""

import itertools
import sys

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesmix.families.gaussian import densities
from bayesmix.families.gaussian.densities import n_parameters
from bayesmix.stats import (
    draw_log_prob,
    pointwise_log_likelihood,
    posterior_log_density,
    posterior_responsibilities,
    relabel_permutations,
)

# The Gaussian family's densities, as its model passes them to the family-agnostic stats.
GAUSS = {"component_log_prob": densities.gaussian_log_prob}
GAUSS_FAST = {**GAUSS, "fast_pointwise": densities.fast_pointwise}


def _draws(rng, n_draws, k, d):
    weights = rng.dirichlet(np.ones(k), size=n_draws)
    means = rng.normal(0, 2, size=(n_draws, k, d))
    a = rng.normal(size=(n_draws, k, d, d))
    covariances = a @ np.swapaxes(a, -1, -2) + 0.3 * np.eye(d)
    return weights, means, covariances


def _reference(X, weights, means, covariances):
    s, k = weights.shape
    return np.stack(
        [
            np.stack(
                [
                    np.log(weights[i, j])
                    + multivariate_normal(means[i, j], covariances[i, j]).logpdf(X).reshape(-1)
                    for j in range(k)
                ],
                axis=-1,
            )
            for i in range(s)
        ]
    )


@pytest.mark.parametrize("d", [1, 2, 4])
def test_draw_log_prob_matches_scipy(d, rng):
    X = rng.normal(size=(30, d))
    draws = _draws(rng, 5, 3, d)
    np.testing.assert_allclose(draw_log_prob(X, *draws, **GAUSS), _reference(X, *draws), rtol=1e-10)


def test_blocked_summaries_match_the_direct_computation(rng, monkeypatch):
    import bayesmix.stats as stats

    monkeypatch.setattr(stats, "_BLOCK_ELEMENTS", 200)  # force many blocks of draws
    X = rng.normal(size=(25, 2))
    draws = _draws(rng, 13, 3, 2)
    full = _reference(X, *draws)  # (S, N, K)
    per_draw = logsumexp(full, axis=2)
    np.testing.assert_allclose(
        pointwise_log_likelihood(X, *draws, **GAUSS_FAST), per_draw, rtol=1e-10
    )
    np.testing.assert_allclose(
        posterior_log_density(X, *draws, **GAUSS_FAST),
        np.log(np.exp(per_draw).mean(axis=0)),
        rtol=1e-10,
    )
    resp = np.exp(full - per_draw[..., None]).mean(axis=0)
    np.testing.assert_allclose(posterior_responsibilities(X, *draws, **GAUSS), resp, rtol=1e-10)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)


@pytest.mark.parametrize("kernel", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize(
    ("k", "d", "n"),
    # 600 samples: the kernel works in blocks of 256 (two full blocks and a partial one).
    [(1, 1, 40), (3, 1, 40), (2, 3, 40), (4, 5, 40), (3, 2, 600)],
)
def test_pointwise_log_likelihood_matches_scipy(k, d, n, kernel, rng, monkeypatch):
    monkeypatch.setattr(densities, "_GAUSSIAN_KERNEL", kernel)
    monkeypatch.setattr(densities, "_GAUSSIAN_KERNEL_MIN_VALUES", 0)
    X = rng.normal(size=(n, d))
    weights, means, covariances = _draws(rng, 6, k, d)
    if k > 1:
        weights[0] = np.r_[0.0, weights[0, 1:] / weights[0, 1:].sum()]  # an empty component
    X[0] = 40.0  # far in the tails of every component (densities below 1e-300)
    with np.errstate(divide="ignore"):
        expected = logsumexp(_reference(X, weights, means, covariances), axis=2)
    got = pointwise_log_likelihood(X, weights, means, covariances, **GAUSS_FAST)
    np.testing.assert_allclose(got, expected, rtol=1e-11)
    # Non-contiguous and integer-valued inputs are accepted and not modified.
    X_int = np.round(X * 3).astype(int)[:, ::-1]
    before = X_int.copy()
    with np.errstate(divide="ignore"):
        expected = logsumexp(_reference(X_int.astype(float), weights, means, covariances), axis=2)
    np.testing.assert_allclose(
        pointwise_log_likelihood(X_int, weights, means, covariances, **GAUSS_FAST),
        expected,
        rtol=1e-11,
    )
    np.testing.assert_array_equal(X_int, before)


def test_gaussian_kernel_is_used_from_the_thresholds(rng, monkeypatch):
    from bayesmix.families.gaussian import _em_kernels

    calls = []
    original = _em_kernels.mixture_log_density
    monkeypatch.setattr(
        _em_kernels,
        "mixture_log_density",
        lambda *a, **kw: calls.append(1) or original(*a, **kw),
    )
    monkeypatch.setattr(densities, "_GAUSSIAN_KERNEL_MIN_VALUES", 1000)
    monkeypatch.setattr(densities, "_GAUSSIAN_KERNEL_LOADED_MIN_VALUES", 100)
    X = rng.normal(size=(200, 2))
    draws = _draws(rng, 5, 3, 2)  # 1000 values
    pointwise_log_likelihood(X, *draws, **GAUSS_FAST)
    pointwise_log_likelihood(X, *(a[:1] for a in draws), **GAUSS_FAST)  # 200 values, numba imported
    assert len(calls) == 2
    # When it applies, the kernel fills the result itself (the NumPy blocks do not run).
    out = np.full((draws[0].shape[0], X.shape[0]), np.nan)
    assert densities.fast_pointwise(X, *draws, out=out) is True
    assert len(calls) == 3
    import bayesmix.stats as stats

    def no_numpy(*args, **kwargs):
        raise AssertionError("the NumPy blocks ran although the kernel applied")

    with monkeypatch.context() as patch:
        patch.setattr(stats, "_blocks", no_numpy)
        got = pointwise_log_likelihood(X, *draws, **GAUSS_FAST)
    calls.pop()
    np.testing.assert_allclose(got, out, rtol=1e-12)
    np.testing.assert_allclose(out, logsumexp(_reference(X, *draws), axis=2), rtol=1e-11)
    monkeypatch.delitem(sys.modules, "numba")  # as in a process that has not loaded numba
    pointwise_log_likelihood(X, *(a[:1] for a in draws), **GAUSS_FAST)
    pointwise_log_likelihood(X[:50], *(a[:1] for a in draws), **GAUSS_FAST)
    assert len(calls) == 3
    monkeypatch.setattr(densities, "_GAUSSIAN_KERNEL", False)
    pointwise_log_likelihood(X, *draws, **GAUSS_FAST)
    assert len(calls) == 3


def test_relabel_permutations_undo_a_known_permutation(rng):
    reference = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    perms = np.array(list(itertools.permutations(range(3))))
    means = np.stack([reference[p] for p in perms]) + rng.normal(0, 0.1, size=(6, 3, 2))
    found = relabel_permutations(means, reference, np.ones(2))
    restored = np.take_along_axis(means, found[..., None], axis=1)
    np.testing.assert_allclose(restored, np.broadcast_to(reference, restored.shape), atol=0.5)


@pytest.mark.parametrize(
    ("covariance_type", "expected"), [("full", 17), ("tied", 11), ("diag", 14), ("spherical", 11)]
)
def test_n_parameters_counts_like_scikit_learn(covariance_type, expected):
    from sklearn.mixture import GaussianMixture

    X = np.random.default_rng(0).normal(size=(40, 2))
    sk = GaussianMixture(n_components=3, covariance_type=covariance_type).fit(X)
    assert n_parameters(3, 2, covariance_type) == sk._n_parameters() == expected


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_matches_scipy(axis, keepdims, rng):
    from bayesmix._numeric import logsumexp as ours

    a = rng.normal(size=(6, 5, 4)) * 300.0  # exp overflows without the shift
    a[1, 2] = -np.inf  # an all -inf slice along axis 2 (and partial ones along 0 and 1)
    a[3, 1, 2] = np.nan
    before = a.copy()
    np.testing.assert_allclose(
        ours(a, axis=axis, keepdims=keepdims),
        logsumexp(a, axis=axis, keepdims=keepdims),
        rtol=1e-14,
        equal_nan=True,
    )
    np.testing.assert_array_equal(a, before)


def test_pointwise_kernel_in_threads_equals_one_thread(rng, monkeypatch):
    """The draws split over threads give the one-thread result, and a share the kernel
    declines (a draw with an empty component) sends the whole to NumPy."""
    from bayesmix import stats

    monkeypatch.setattr(densities, "_GAUSSIAN_KERNEL_MIN_VALUES", 0)
    X = rng.normal(size=(300, 2))
    weights, means, covariances = _draws(rng, 9, 3, 2)
    monkeypatch.setattr(stats, "_THREADED_VALUES", 10**9)
    one = pointwise_log_likelihood(X, weights, means, covariances, **GAUSS_FAST)
    monkeypatch.setattr(stats, "_THREADED_VALUES", 1)
    monkeypatch.setattr(stats, "cpu_count", lambda: 4)
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[1].shape[0])
        return densities.fast_pointwise(*args, **kwargs)

    threaded = pointwise_log_likelihood(
        X, weights, means, covariances, **{**GAUSS_FAST, "fast_pointwise": counted}
    )
    assert sorted(calls) == [2, 2, 2, 3]  # 9 draws over 4 threads
    np.testing.assert_array_equal(threaded, one)
    weights[8] = np.r_[0.0, 0.5, 0.5]  # the kernel declines the last share
    with np.errstate(divide="ignore"):
        expected = logsumexp(_reference(X, weights, means, covariances), axis=2)
    got = pointwise_log_likelihood(X, weights, means, covariances, **GAUSS_FAST)
    np.testing.assert_allclose(got, expected, rtol=1e-11)
