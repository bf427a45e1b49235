"""The small NumPy helpers of bayesmix._numeric against NumPy's own reductions."""

import numpy as np
import pytest
from scipy import special
from threadpoolctl import threadpool_info

from bayesmix._numeric import (
    column_means,
    column_moments,
    column_ranges,
    column_sums,
    logsumexp,
    mean_filled,
)
from bayesmix._threads import one_blas_thread, single_blas_thread


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (10_001, 2), (50, 40)])
def test_column_helpers_match_numpy(shape, rng):
    X = rng.normal(3.0, 2.0, size=shape) * np.arange(1, shape[1] + 1)
    before = X.copy()
    np.testing.assert_allclose(column_sums(X), X.sum(axis=0), rtol=1e-12, atol=1e-10)
    mean, std = column_moments(X)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(column_means(X), mean)
    np.testing.assert_allclose(std, X.std(axis=0), rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(column_ranges(X), np.ptp(X, axis=0))
    # A strided view gives the same as its copy, and nothing is modified.
    view = X[::2, ::-1]
    np.testing.assert_allclose(column_moments(view)[1], view.std(axis=0), rtol=1e-10)
    np.testing.assert_array_equal(column_ranges(view), np.ptp(view, axis=0))
    np.testing.assert_array_equal(X, before)


def test_column_moments_has_no_cancellation_far_from_zero(rng):
    # sd 1 about a mean of 1e8: the one-pass E[x^2] - E[x]^2 would lose every digit.
    X = 1e8 + rng.normal(size=(1000, 2))
    np.testing.assert_allclose(column_moments(X)[1], (X - 1e8).std(axis=0), rtol=1e-6)


@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1.0, 1e160, 1e300])
def test_column_moments_at_every_float_scale(scale, rng):
    """Found by fuzzing: at 1e-300 the squared deviations underflowed to an sd of 0 (a
    default prior of scale 0, which a saved fit could not be loaded with); at 1e300
    they overflowed to inf."""
    Z = rng.normal(size=(50, 2))
    weights = rng.uniform(0.5, 2.0, size=50)
    for w in (None, weights):
        mean, std = column_moments(Z * scale, w)
        expected_mean, expected_std = column_moments(Z, w)
        np.testing.assert_allclose(mean, expected_mean * scale, rtol=1e-12)
        np.testing.assert_allclose(std, expected_std * scale, rtol=1e-12)


def test_column_ranges_propagate_nan():
    X = np.array([[1.0, 2.0], [np.nan, 5.0], [3.0, 4.0]])
    got = column_ranges(X)
    assert np.isnan(got[0])
    assert got[1] == 3.0


def _blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_mean_filled_with_integer_weights_fills_as_the_repeated_rows():
    # EM's start (every family, in memory and on Dask): frequency weights start as the
    # rows repeated would.
    X = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 10.0], [5.0, 6.0]])
    w = np.array([2, 1, 3, 1])
    repeated = mean_filled(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(np.repeat(mean_filled(X, w.astype(float)), w, axis=0), repeated)
    complete = X[[1, 3]]
    assert mean_filled(complete) is complete  # no copy without missing values


def test_one_blas_thread_limits_and_restores():
    outside = _blas_threads()
    assert outside  # NumPy's BLAS is loaded
    with one_blas_thread():
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == outside

    @single_blas_thread
    def inside(a: int) -> list[int]:
        return [*_blas_threads(), a]

    assert set(inside(1)) == {1}
    assert _blas_threads() == outside


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape", [(0, 3), (5, 1), (2000, 2), (40, 32), (40, 33), (3, 4, 5)])
def test_logsumexp_equals_scipys_on_every_path(shape, order, rng):
    """The row-wise path (2-D, up to 32 columns) and the general one agree with scipy,
    with -inf rows, +inf, NaN and huge values, and keepdims."""
    a = np.asarray(rng.normal(scale=300.0, size=shape), order=order)
    if a.ndim == 2 and a.shape[0] >= 5:
        a[0] = -np.inf  # every entry -inf: -inf
        a[1, 0] = np.inf
        a[2, -1] = np.nan
        a[3] = 1e308  # the sum of the exponentials in the shifted form stays finite
    before = a.copy()
    for axis in range(-1, a.ndim):
        if a.shape[axis] == 0:  # no maximum to shift by (as before the row-wise path)
            continue
        for keepdims in (False, True):
            with np.errstate(all="ignore"):
                expected = special.logsumexp(a, axis=axis, keepdims=keepdims)
                got = logsumexp(a, axis=axis, keepdims=keepdims)
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=1e-14, equal_nan=True)
    np.testing.assert_array_equal(a, before)
