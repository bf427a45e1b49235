"""Issue 21, item 10: one live display in a terminal, one line per step otherwise."""

from __future__ import annotations

import io
import types

import numpy as np
import pytest
from rich.console import Console

import bayesmix as bm
from bayesmix import _progress


def _chains(done, *, divergences=0, tuning=False):
    return [
        types.SimpleNamespace(
            finished_draws=d, divergences=divergences, tuning=tuning, started=True
        )
        for d in done
    ]


def test_lines_show_start_progress_and_end_with_times():
    stream = io.StringIO()
    shown = _progress.LineDisplay(stream, every=0.0)
    handle = shown.add("NUTS: 2 chains x 10 draws (+10 tune)", 40)
    shown.update(handle, 20, 40, "1 divergences")
    shown.finish(handle, "1 divergences")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "NUTS: 2 chains x 10 draws (+10 tune) ..."
    assert lines[1].startswith("NUTS: 2 chains x 10 draws (+10 tune): 20/40, 1 divergences (")
    assert lines[2].startswith("NUTS: 2 chains x 10 draws (+10 tune): done in ")
    assert lines[2].endswith(" s, 1 divergences")


def test_lines_are_throttled_but_starts_and_ends_are_not():
    stream = io.StringIO()
    shown = _progress.LineDisplay(stream, every=3600.0)
    handle = shown.add("task", 10)
    for done in range(10):
        shown.update(handle, done, 10)
    shown.finish(handle)
    assert len(stream.getvalue().splitlines()) == 2


def test_nuts_progress_in_a_log_reports_lines_instead_of_the_own_bar(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "_stderr_is_terminal", lambda: False)
    own_bar, callback, finish = _progress.nuts_progress(2, 100, 100, enabled=True)
    assert own_bar is False
    callback(_chains([150, 120], divergences=1, tuning=False))
    finish()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "NUTS: 2 chains x 100 draws (+100 tune) ..."
    assert err[-1].startswith("NUTS: 2 chains x 100 draws (+100 tune): done in ")
    assert err[-1].endswith("2 divergences")  # one per chain, summed


def test_nuts_progress_keeps_the_samplers_bar_in_a_terminal(monkeypatch):
    monkeypatch.setattr(_progress, "_stderr_is_terminal", lambda: True)
    assert _progress.nuts_progress(2, 10, 10, enabled=True)[:2] == (True, None)
    assert _progress.nuts_progress(2, 10, 10, enabled=False)[:2] == (False, None)


def test_nested_tasks_share_one_live_display(monkeypatch):
    """select_k's K and the NUTS run inside it are rows of one rich display."""
    monkeypatch.setattr(_progress, "_stderr_is_terminal", lambda: True)
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with _progress.display(console) as shown:
        assert isinstance(shown, _progress.RichDisplay)
        with _progress.task("select_k: K=2 (1 of 1)"):
            own_bar, callback, finish = _progress.nuts_progress(2, 10, 10, enabled=True)
            assert own_bar is False  # the display shows the draws, not nutpie's bar
            callback(_chains([15, 5], tuning=True))
            rows = {t.description: t for t in shown.progress.tasks}
            assert set(rows) == {"select_k: K=2 (1 of 1)", "NUTS: 2 chains x 10 draws (+10 tune)"}
            nuts = rows["NUTS: 2 chains x 10 draws (+10 tune)"]
            assert (nuts.completed, nuts.total) == (20, 40)
            assert "tuning" in nuts.fields["detail"]
            finish()
        assert shown.progress.tasks == []
    assert _progress.current() is None
    printed = console.file.getvalue()
    assert "select_k: K=2 (1 of 1): done in" in printed


class _Stop(Exception):
    pass


def test_a_piped_fit_is_never_silent(monkeypatch, capsys):
    """With stderr not a terminal, a NUTS run writes its start and end with times."""
    import nutpie

    seen = {}

    def fake_sample(compiled, **kwargs):
        seen.update(kwargs)
        kwargs["progress_callback"](_chains([40, 40]))
        raise _Stop

    monkeypatch.setattr(_progress, "_stderr_is_terminal", lambda: False)
    monkeypatch.setattr(nutpie, "sample", fake_sample)
    X = np.random.default_rng(0).normal(size=(60, 2))
    with pytest.raises(_Stop):
        bm.GaussianMixture(n_components=1, random_state=0).fit(X, draws=20, tune=20, chains=2)
    assert seen["progress_bar"] is False
    err = capsys.readouterr().err
    assert "NUTS: 2 chains x 20 draws (+20 tune) ..." in err
    assert "NUTS: 2 chains x 20 draws (+20 tune): done in " in err
