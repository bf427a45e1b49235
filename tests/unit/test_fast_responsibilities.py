"""Posterior responsibilities of many draws on the families' compiled kernels (issue 25).

The reference is the NumPy path of :func:`bayesmix.stats.posterior_responsibilities`
(the family's ``component_log_prob`` over blocks of draws, and its exact far-out terms),
which the kernels must reproduce, far rows included.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wishart

import bayesmix as bm
from bayesmix.stats import posterior_responsibilities

DRAWS, N, K = 300, 1200, 3  # 3.6e5 values: the kernels' side of kernel_pays_off


def _gaussian(rng):
    X = rng.normal(scale=3.0, size=(N, 2))
    X[7] = [4e9, -3e9]  # far out: its log densities (~ -1e18) are left to NumPy's far terms
    means = rng.normal(scale=3.0, size=(DRAWS, K, 2))
    cov = wishart(df=5, scale=np.eye(2) / 5).rvs(size=DRAWS * K, random_state=rng)
    return bm.GaussianMixture(n_components=K), X, (means, cov.reshape(DRAWS, K, 2, 2))


def _student_t(rng):
    X = rng.standard_t(3.0, size=(N, 2)) * 2.0
    X[7] = [1e200, 1e200]  # beyond the floats' range in the kernel
    means = rng.normal(scale=3.0, size=(DRAWS, K, 2))
    scales = wishart(df=5, scale=np.eye(2) / 5).rvs(size=DRAWS * K, random_state=rng)
    dof = rng.gamma(2.0, 5.0, size=(DRAWS, K)) + 0.5
    return bm.StudentTMixture(n_components=K), X, (means, scales.reshape(DRAWS, K, 2, 2), dof)


def _poisson(rng):
    X = rng.poisson(6.0, size=(N, 2)).astype(float)
    X[7, 0] = 2.0**41  # a count whose terms leave the kernel's range: NumPy's far terms
    return bm.PoissonMixture(n_components=K), X, (rng.gamma(3.0, 2.0, (DRAWS, K, 2)),)


def _bernoulli(rng):
    X = rng.integers(0, 2, size=(N, 5)).astype(float)
    return bm.BernoulliMixture(n_components=K), X, (rng.uniform(0.02, 0.98, (DRAWS, K, 5)),)


def _negative_binomial(rng):
    X = rng.negative_binomial(3, 0.3, size=(N, 2)).astype(float)
    X[7, 1] = 3e7  # a count whose terms leave the kernel's range
    rates = rng.gamma(3.0, 2.0, (DRAWS, K, 2))
    dispersion = rng.gamma(2.0, 2.0, (DRAWS, K, 2)) + 0.2
    return bm.NegativeBinomialMixture(n_components=K), X, (rates, dispersion)


CASES = {
    "gaussian": _gaussian,
    "student_t": _student_t,
    "poisson": _poisson,
    "bernoulli": _bernoulli,
    "negative_binomial": _negative_binomial,
}


@pytest.mark.parametrize("family", list(CASES))
def test_kernel_responsibilities_equal_numpys(family):
    rng = np.random.default_rng(21)
    estimator, X, params = CASES[family](rng)
    weights = rng.dirichlet(np.ones(K), DRAWS)
    before = X.copy()
    kwargs = {
        "component_log_prob": estimator.component_log_prob,
        "far_log_prob": estimator._far_log_prob,
    }
    expected = posterior_responsibilities(X, weights, *params, **kwargs)
    ours = posterior_responsibilities(
        X, weights, *params, fast_pointwise=estimator._fast_pointwise, **kwargs
    )
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, rtol=1e-13)
    np.testing.assert_array_equal(X, before)
    # The kernel did the work: every ordinary row is its own, summed over the draws.
    total = np.zeros((N, K))
    assert estimator._fast_pointwise(X, weights, *params, out=total, responsibilities=True)
    ordinary = np.ones(N, dtype=bool)
    if family != "bernoulli":
        ordinary[7] = False
        assert np.isnan(total[7]).any()  # left to NumPy, which used the far terms
    np.testing.assert_allclose(total[ordinary] / DRAWS, expected[ordinary], atol=1e-12)


def test_far_row_goes_to_the_component_that_dominates_its_tail():
    # Two draws of one Gaussian mixture; the row at 4e9 lies where the wider component
    # dominates: the kernel leaves it to the exact far terms, which put it there.
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(size=(2000, 1)), [[4e9]]])
    weights = np.tile([0.5, 0.5], (200, 1))
    means = np.tile([[[-1.0]], [[1.0]]], (200, 1, 1, 1)).reshape(200, 2, 1)
    covariances = np.tile(np.array([[[1.0]], [[4.0]]]), (200, 1, 1, 1))
    estimator = bm.GaussianMixture(n_components=2)
    resp = posterior_responsibilities(
        X,
        weights,
        means,
        covariances,
        component_log_prob=estimator.component_log_prob,
        far_log_prob=estimator._far_log_prob,
        fast_pointwise=estimator._fast_pointwise,
    )
    np.testing.assert_array_equal(resp[-1], [0.0, 1.0])
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-13)


def test_undefined_rows_are_named_by_their_position_in_the_data():
    # A kernel leaves rows 5 and 8 to NumPy; row 8 is a positive count where every rate
    # of its feature is 0: no responsibilities, named by its position in X, not among
    # the rows recomputed.
    X = np.zeros((10, 1))
    X[8] = 2.0
    rates = np.zeros((4, 2, 1))

    def kernel(X, weights, rates, out, responsibilities):
        out[:] = weights.shape[0] / out.shape[1]
        out[[5, 8]] = np.nan
        return True

    estimator = bm.PoissonMixture(n_components=2)
    with pytest.raises(bm.exceptions.DataError, match=r"1 row\(s\) of X, at positions \[8\]"):
        posterior_responsibilities(
            X,
            np.full((4, 2), 0.5),
            rates,
            component_log_prob=estimator.component_log_prob,
            fast_pointwise=kernel,
        )


def test_predict_proba_hands_the_kernel_to_the_responsibilities(monkeypatch):
    import bayesmix.model as model

    seen = {}

    def spy(X, *draws, **kwargs):
        seen.update(kwargs)
        return np.full((len(X), 2), 0.5)

    monkeypatch.setattr(model, "posterior_responsibilities", spy)
    rng = np.random.default_rng(5)
    X = rng.poisson(4.0, size=(50, 1)).astype(float)
    estimator = bm.PoissonMixture(n_components=2, random_state=0).fit(X, method="em")
    estimator.predict_proba(X)
    assert seen["fast_pointwise"] == estimator._fast_pointwise
