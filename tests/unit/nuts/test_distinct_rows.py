"""Repeated rows merged before a fused kernel sees them (bayesmix.nuts._target.distinct_rows).

A fused target's log-likelihood is ``sum_n w_n log p(x_n)``, so merging a row that occurs
``m`` times into one row of weight ``m`` must leave the log density and the gradient as
they are. References: the same target on the rows as given, and a plain Python count.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from mixture_data import binary_array, counts_array

import bayesmix as bm
from bayesmix.model import _model_data
from bayesmix.nuts._target import distinct_rows, kernel_data


def _rounded_blobs(rng, n=400):
    """Two Gaussian blobs measured to one unit: continuous families on repeated rows."""
    centres = np.array([[0.0, 0.0], [6.0, 3.0]])
    return np.round(centres[rng.integers(2, size=n)] + 1.5 * rng.standard_normal((n, 2)))


CASES = {
    "poisson": (lambda: bm.PoissonMixture(n_components=3), counts_array),
    "bernoulli": (lambda: bm.BernoulliMixture(n_components=3), binary_array),
    "negative-binomial": (lambda: bm.NegativeBinomialMixture(n_components=2), counts_array),
    "gaussian-full": (lambda: bm.GaussianMixture(n_components=2), _rounded_blobs),
    "gaussian-diag": (
        lambda: bm.GaussianMixture(n_components=2, covariance_type="diag"),
        _rounded_blobs,
    ),
    "student-t": (lambda: bm.StudentTMixture(n_components=2), _rounded_blobs),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", list(CASES))
def test_merged_rows_leave_the_log_density_and_gradient_unchanged(case, weighted):
    rng = np.random.default_rng(len(case) + 3 * weighted)
    make, rows = CASES[case]
    X = rows(rng, n=400)
    w = rng.uniform(0.2, 3.0, size=len(X)) if weighted else None
    estimator = make()
    data, priors = estimator._prepare(X, w)
    target = estimator._nuts_target(data, priors)
    assert target is not None
    given = _model_data(data)
    merged = kernel_data(target, given)
    as_given = target.shared_data(given["x_data"])
    as_given.update((name, value) for name, value in given.items() if name != "x_data")
    assert merged["x_data"].shape[0] < len(X) / 2  # the rows repeat: fewer to evaluate
    for _ in range(3):
        x = rng.normal(scale=0.4, size=target.n_dim)
        logp, grad = target.logp_dlogp(x, **merged)
        ref_logp, ref_grad = target.logp_dlogp(x, **as_given)
        assert np.isfinite(ref_logp)
        np.testing.assert_allclose(logp, ref_logp, rtol=1e-11)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9 * np.abs(ref_grad).max())


def test_weights_are_the_counts_or_the_summed_weights_of_each_distinct_row(rng):
    X = rng.integers(0, 3, size=(200, 2)).astype(float)
    w = rng.uniform(size=200)
    before = (X.copy(), w.copy())
    counts, summed = Counter(), Counter()
    for row, weight in zip(map(tuple, X), w, strict=True):
        counts[row] += 1
        summed[row] += weight
    plain = distinct_rows({"x_data": X})
    other = np.ones(2)
    weighted = distinct_rows({"x_data": X, "w_data": w, "other": other})
    for out, expected in ((plain, counts), (weighted, summed)):
        assert out["x_data"].flags.c_contiguous
        assert len(out["x_data"]) == len(expected) == len(set(map(tuple, out["x_data"])))
        got = dict(zip(map(tuple, out["x_data"]), out["w_data"], strict=True))
        assert got.keys() == expected.keys()
        np.testing.assert_allclose([got[r] for r in expected], list(expected.values()), rtol=1e-12)
    assert weighted["other"] is other  # the other model data pass through
    np.testing.assert_array_equal(X, before[0])  # nothing the caller passed is changed
    np.testing.assert_array_equal(w, before[1])


def test_one_feature_as_a_vector_stays_a_vector(rng):
    x = rng.poisson(3.0, size=500).astype(float)
    out = distinct_rows({"x_data": x})
    assert out["x_data"].ndim == 1
    np.testing.assert_array_equal(out["x_data"], np.unique(x))
    np.testing.assert_array_equal(out["w_data"], np.unique(x, return_counts=True)[1])


@pytest.mark.parametrize(
    "X",
    [
        pytest.param(np.random.default_rng(1).normal(size=(300, 2)), id="continuous"),
        pytest.param(np.array([[1.0, np.nan], [1.0, np.nan], [2.0, 0.0]]), id="missing"),
        pytest.param(np.array([[1.0, 2.0]]), id="one-row"),
        pytest.param(np.array([[1.0, 2.0], [1.0, 3.0], [2.0, 2.0]]), id="tied-first-column"),
    ],
)
def test_rows_without_repeats_or_with_missing_values_are_passed_as_given(X):
    data = {"x_data": X, "w_data": np.zeros(0)}
    out = distinct_rows(data)
    assert out is not data
    assert out["x_data"] is X
    assert out["w_data"] is data["w_data"]
