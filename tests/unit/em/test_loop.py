"""The one EM loop (bayesmix.em.loop), with toy steps: convergence, restarts, warnings.

Every family's fit goes through converge() and _fit_restarts(); their families' own tests
check the maths, these the bookkeeping that is written once.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayesmix.em.loop import EMResult, _fit_restarts, _Restart, converge
from bayesmix.exceptions import ConvergenceWarning, FitError


def _geometric_step(rate):
    """An objective that approaches 0 geometrically: -rate**n."""

    def step(n_iter, weights, params):
        return -(rate ** (n_iter - 1)), weights, {"n": n_iter}, False

    return step


def test_converge_stops_at_tol_and_records_the_trace():
    run = converge(
        _geometric_step(0.5),
        np.ones(2) / 2,
        {},
        max_iter=100,
        tol=1e-3,
        name="toy",
        objective=lambda w, p: 0.0,
    )
    # changes 0.5, 0.25, ... : the first below 1e-3 is 2**-10, at iteration 11
    assert run.converged
    assert run.n_iter == 11
    np.testing.assert_allclose(run.lower_bounds, [-(0.5**k) for k in range(11)])
    assert run.params == {"n": 11}


def test_converge_skips_the_test_after_a_reinitialisation():
    def step(n_iter, weights, params):
        return 0.0, weights, params, n_iter == 2  # flat objective, a re-init at step 2

    run = converge(step, np.ones(1), {}, max_iter=10, tol=1e-3, name="toy", objective=None)
    # the change at iterations 2 (re-init) and 3 (after it) is not tested
    assert run.converged
    assert run.n_iter == 4


def test_converge_with_max_iter_zero_evaluates_the_start():
    run = converge(
        _geometric_step(0.5),
        np.ones(1),
        {},
        max_iter=0,
        tol=0.0,
        name="t",
        objective=lambda w, p: -7.0,
    )
    assert run.n_iter == 0
    assert run.lower_bound == -7.0
    assert not run.converged


def _restart(value, converged=True, weights=(0.5, 0.5)):
    return _Restart(
        weights=np.asarray(weights),
        params={"rates": np.array([[1.0], [2.0]])},
        lower_bound=value,
        lower_bounds=[value - 1.0, value],
        n_iter=2,
        converged=converged,
        last_change=1.0,
        log_likelihood=value,
        n_samples=100.0,
    )


def test_restarts_keep_the_best_first_on_ties_and_warn_about_failures():
    outcomes = [FitError("singular"), _restart(-3.0), _restart(-1.0), _restart(-1.0)]

    def run(init):
        if isinstance(outcomes[init], Exception):
            raise outcomes[init]
        return outcomes[init]

    with pytest.warns(ConvergenceWarning, match=r"restart\(s\) \[1\] of 4 failed"):
        result = _fit_restarts(
            run, n_init=4, max_iter=10, tol=1e-3, family="toy", objective="ml", stacklevel=2
        )
    assert result.best_init == 2
    np.testing.assert_array_equal(result.init_log_likelihoods, [-np.inf, -3.0, -1.0, -1.0])
    assert result.family == "toy"
    assert result.rates.shape == (2, 1)


def test_all_restarts_failing_raises_with_the_first_failure():
    def run(init):
        raise FitError(f"bad start {init}")

    with pytest.raises(FitError, match=r"All 3 toy EM restarts failed; restart 1/3: bad start 0"):
        _fit_restarts(
            run, n_init=3, max_iter=5, tol=0.0, family="toy", objective="ml", stacklevel=2
        )


def test_not_converged_and_empty_components_warn_with_advice():
    with pytest.warns(ConvergenceWarning) as record:
        _fit_restarts(
            lambda init: _restart(-1.0, converged=False, weights=(1.0, 0.0)),
            n_init=1,
            max_iter=2,
            tol=1e-9,
            family="toy",
            objective="ml",
            stacklevel=2,
        )
    messages = [str(w.message) for w in record]
    assert any("did not converge" in m and "max_iter" in m for m in messages)
    assert any("Component(s) [1]" in m and "n_components=1" in m for m in messages)
    assert all(w.filename == __file__ for w in record)  # they point at the caller


def test_result_round_trips_and_reads_the_legacy_gaussian_layout():
    result = EMResult(
        weights=np.array([0.25, 0.75]),
        params={"means": np.array([[0.0], [1.0]]), "covariances": np.array([[[1.0]], [[2.0]]])},
        family="gaussian",
        log_likelihood=-1.5,
        lower_bounds=np.array([-2.0, -1.5]),
        n_iter=2,
        converged=True,
        best_init=0,
        init_log_likelihoods=np.array([-1.5]),
        covariance_type="full",
    )
    again = EMResult.from_dict(json.loads(json.dumps(result.to_dict())))
    np.testing.assert_array_equal(again.means, result.means)
    assert again.family == "gaussian"
    assert again.covariance_type == "full"
    legacy = {  # what bayesmix 0.1 saved for a Gaussian fit
        "weights": [0.25, 0.75],
        "means": [[0.0], [1.0]],
        "covariances": [[[1.0]], [[2.0]]],
        "precisions_cholesky": [[[1.0]], [[0.5**0.5]]],
        "covariance_type": "full",
        "log_likelihood": -1.5,
        "lower_bounds": [-1.5],
        "n_iter": 1,
        "converged": True,
        "best_init": 0,
        "init_log_likelihoods": [-1.5],
        "objective": "ml",
    }
    old = EMResult.from_dict(legacy)
    assert old.family == "gaussian"
    np.testing.assert_array_equal(old.covariances, result.covariances)
    reordered = old.reordered(np.array([1, 0]))
    np.testing.assert_array_equal(reordered.weights, [0.75, 0.25])
    np.testing.assert_array_equal(reordered.means, [[1.0], [0.0]])
