"""The one EM loop (bayesmix.em.loop), with toy steps: convergence, restarts, warnings.

Every family's fit goes through converge() and _fit_restarts(); their families' own tests
check the maths, these the bookkeeping that is written once.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayesmix.em import loop as em_loop
from bayesmix.em.loop import EMResult, _fit_restarts, _Restart, _restart_plan, converge
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


# ---------------------------------------------------------------------------------------
# How the restarts start (_restart_plan): one kind of partition, or emEM


def _toy_family(finals, degenerate=(), late=()):
    """start/run of a toy family: start number j ends at objective finals[j].

    A run from a start climbs to its final objective in 10 iterations (-1 per step
    below it); the params carry the start's number, the iterations so far and the
    partition it started from. Starts in ``degenerate`` are degenerate throughout, those
    in ``late`` once they have run all 10 iterations.
    """
    calls = {"start": [], "run": []}

    def start(partition):
        j = len(calls["start"])
        calls["start"].append(partition)
        return np.ones(1), {"j": j, "done": 0, "partition": partition}

    def run(weights, params, max_iter, tol, name):
        calls["run"].append((params["j"], max_iter, name))
        calls.setdefault("tol", []).append(tol)
        done = min(params["done"] + max_iter, 10)
        steps = range(params["done"] + 1, done + 1)
        # (a run continued from the top takes one iteration there)
        bounds = [finals[params["j"]] - (10 - s) for s in steps] or [finals[params["j"]]]
        return _Restart(
            weights=weights,
            params={**params, "done": done},
            lower_bound=bounds[-1],
            lower_bounds=bounds,
            n_iter=len(bounds),
            converged=done == 10,
            last_change=1.0,
            log_likelihood=bounds[-1],
            n_samples=10.0,
        )

    def is_degenerate(restart):
        j, done = restart.params["j"], restart.params["done"]
        return {0: "few points"} if j in degenerate or (j in late and done == 10) else {}

    return start, run, is_degenerate, calls


@pytest.fixture(autouse=True)
def _short_runs(monkeypatch):
    """emEM's short runs in these tests: at most 4 iterations, no tolerance of their own."""
    monkeypatch.setattr(em_loop, "_EMEM_SHORT_ITER", 4)
    monkeypatch.setattr(em_loop, "_EMEM_SHORT_TOL", 0.0)


def test_one_kind_of_partition_starts_every_restart_afresh():
    start, run, _, calls = _toy_family([-5.0, -3.0, -4.0])
    plan = _restart_plan(start, run, init="random", n_init=3, max_iter=100, tol=0.0, label="toy EM")
    result = _fit_restarts(
        plan, n_init=3, max_iter=100, tol=0.0, family="toy", objective="ml", stacklevel=2
    )
    assert calls["start"] == ["random"] * 3
    assert [r[1] for r in calls["run"]] == [100] * 3
    assert calls["run"][0][2] == "toy EM restart 1/3"
    assert result.best_init == 1
    assert result.log_likelihood == -3.0


def test_emem_screens_short_runs_and_continues_the_best(monkeypatch):
    monkeypatch.setattr(em_loop, "_EMEM_CANDIDATES", 3)
    finals = [-9.0, -2.0, -7.0, -1.0, -8.0, -3.0]  # 3 * n_init short runs
    start, run, _, calls = _toy_family(finals)
    plan = _restart_plan(start, run, init="emem", n_init=2, max_iter=100, tol=0.0, label="toy EM")
    result = _fit_restarts(
        plan, n_init=2, max_iter=100, tol=0.0, family="toy", objective="ml", stacklevel=2
    )
    # The short runs start from k-means++ and random partitions in turn.
    assert calls["start"] == ["k-means++", "random"] * 3
    assert [r[1] for r in calls["run"][:6]] == [4] * 6
    # The best two short runs (starts 3 and 1) continue for max_iter - 4 iterations.
    assert [(j, n) for j, n, _ in calls["run"][6:]] == [(3, 96), (1, 96)]
    assert result.best_init == 0
    assert result.log_likelihood == -1.0
    np.testing.assert_array_equal(result.init_log_likelihoods, [-1.0, -2.0])
    # The trace and the iteration count include the short run.
    assert result.n_iter == 10
    np.testing.assert_array_equal(result.lower_bounds, [-1.0 - (10 - s) for s in range(1, 11)])


def test_emem_short_runs_stop_at_their_own_tolerance_and_continue_at_the_fits(monkeypatch):
    monkeypatch.setattr(em_loop, "_EMEM_CANDIDATES", 1)
    monkeypatch.setattr(em_loop, "_EMEM_SHORT_ITER", 50)
    monkeypatch.setattr(em_loop, "_EMEM_SHORT_TOL", 1e-3)
    start, run, _, calls = _toy_family([-1.0, -2.0])
    plan = _restart_plan(start, run, init="emem", n_init=2, max_iter=60, tol=1e-6, label="t")
    _fit_restarts(plan, n_init=2, max_iter=60, tol=1e-6, family="toy", objective="ml", stacklevel=2)
    # The toy's short runs converge (10 iterations) at the loose tolerance, so each is
    # continued at the fit's tolerance for the iterations left.
    assert calls["tol"] == [1e-3, 1e-3, 1e-6, 1e-6]
    assert [n for _, n, _ in calls["run"]] == [50, 50, 50, 50]  # 60 less 10 done


def test_emem_continues_sound_short_runs_before_degenerate_ones(monkeypatch):
    monkeypatch.setattr(em_loop, "_EMEM_CANDIDATES", 2)
    start, run, is_degenerate, calls = _toy_family([-1.0, -5.0, -4.0, -2.0], degenerate={0})
    plan = _restart_plan(
        start,
        run,
        init="emem",
        n_init=2,
        max_iter=20,
        tol=0.0,
        label="toy EM",
        degenerate=is_degenerate,
    )
    result = _fit_restarts(
        plan,
        n_init=2,
        max_iter=20,
        tol=0.0,
        family="toy",
        objective="ml",
        stacklevel=2,
        degenerate=is_degenerate,
    )
    # Start 0 climbs highest but is degenerate: starts 3 and 2 are continued.
    assert [j for j, _, _ in calls["run"][4:]] == [3, 2]
    assert result.log_likelihood == -2.0


def test_emem_replaces_a_run_that_ends_degenerate_by_the_next_short_run(monkeypatch):
    monkeypatch.setattr(em_loop, "_EMEM_CANDIDATES", 3)
    finals = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]
    start, run, is_degenerate, calls = _toy_family(finals, late={0, 1, 2})
    plan = _restart_plan(
        start,
        run,
        init="emem",
        n_init=2,
        max_iter=20,
        tol=0.0,
        label="toy EM",
        degenerate=is_degenerate,
    )
    result = _fit_restarts(
        plan,
        n_init=2,
        max_iter=20,
        tol=0.0,
        family="toy",
        objective="ml",
        stacklevel=2,
        degenerate=is_degenerate,
    )
    # Restart 1 continues 0 (degenerate), then 1 (degenerate), ... the budget is n_init = 2
    # replacements: restart 1 tries 0, 1, 2; restart 2 gets 3 with none left.
    assert [j for j, _, _ in calls["run"][6:]] == [0, 1, 2, 3]
    np.testing.assert_array_equal(result.init_log_likelihoods, [-1.0, -4.0])
    assert result.best_init == 1  # the sound one
    assert result.log_likelihood == -4.0


def test_emem_with_failing_short_runs_and_max_iter_below_the_short_runs(monkeypatch):
    monkeypatch.setattr(em_loop, "_EMEM_CANDIDATES", 2)
    start, run, _, calls = _toy_family([-4.0, -3.0, -2.0, -1.0])

    def failing_start(partition):
        weights, params = start(partition)
        if params["j"] in (1, 3):
            raise FitError("singular")
        return weights, params

    plan = _restart_plan(
        failing_start, run, init="emem", n_init=2, max_iter=3, tol=0.0, label="toy EM"
    )
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        result = _fit_restarts(
            plan, n_init=2, max_iter=3, tol=0.0, family="toy", objective="ml", stacklevel=2
        )
    # Two short runs of max_iter=3 iterations succeed; nothing is left to continue.
    assert len(calls["run"]) == 2
    assert result.n_iter == 3
    assert result.log_likelihood == -2.0 - 7


def test_a_restart_without_a_short_run_left_fails(monkeypatch):
    monkeypatch.setattr(em_loop, "_EMEM_CANDIDATES", 1)
    start, run, _, _ = _toy_family([-4.0, -3.0])

    def failing_start(partition):
        weights, params = start(partition)
        if params["j"] == 1:
            raise FitError("singular")
        return weights, params

    plan = _restart_plan(
        failing_start, run, init="emem", n_init=2, max_iter=50, tol=0.0, label="toy EM"
    )
    with pytest.warns(ConvergenceWarning, match=r"restart\(s\) \[2\] of 2 failed"):
        result = _fit_restarts(
            plan, n_init=2, max_iter=50, tol=0.0, family="toy", objective="ml", stacklevel=2
        )
    assert result.best_init == 0


def test_the_best_sound_restart_is_returned_and_a_degenerate_fit_warns():
    outcomes = [_restart(-1.0), _restart(-3.0), _restart(-2.0)]
    bad = {0: "1.2 effective points (a full covariance in 2-D needs at least 3)"}

    def degenerate(restart):
        return bad if restart.lower_bound == -1.0 else {}

    result = _fit_restarts(
        lambda i: outcomes[i],
        n_init=3,
        max_iter=10,
        tol=1e-3,
        family="toy",
        objective="ml",
        stacklevel=2,
        degenerate=degenerate,
    )
    assert result.best_init == 2  # restart 0 is higher but degenerate
    with pytest.warns(ConvergenceWarning) as record:
        _fit_restarts(
            lambda i: outcomes[0],
            n_init=1,
            max_iter=10,
            tol=1e-3,
            family="toy",
            objective="ml",
            stacklevel=2,
            degenerate=degenerate,
            degenerate_advice='Use objective="map".',
        )
    message = str(record[0].message)
    assert "Component(s) [0]" in message
    assert "1.2 effective points" in message
    assert 'objective="map"' in message
    assert record[0].filename == __file__
