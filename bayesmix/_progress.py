"""Progress of long work: one live display in a terminal, one line per step otherwise.

Two kinds of display show the same tasks (``select_k``'s K, a NUTS run's draws):

* :class:`LineDisplay` writes plain lines with the elapsed time to a stream (stderr by
  default): a task's start and end, and while it runs at most one line every
  ``every`` seconds. This is what a log file or a CI job shows.
* :class:`RichDisplay` drives one ``rich.progress.Progress``: every task is a row of
  the same live display, so nested work (a K of ``select_k``, the NUTS run inside it)
  never draws over itself.

A display is installed for a block of code with :func:`display` (the CLI installs one
for the whole command). Without one, :func:`nuts_progress` keeps the sampler's own
bar where it can draw (a terminal or a notebook) and otherwise reports through a
:class:`LineDisplay` on stderr, so a NUTS run piped to a log is never silent.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["LineDisplay", "RichDisplay", "current", "display", "nuts_progress", "task"]

_DISPLAY: contextvars.ContextVar[LineDisplay | RichDisplay | None] = contextvars.ContextVar(
    "bayesmix_progress_display", default=None
)


class LineDisplay:
    """Progress as plain lines with elapsed times (for logs and pipes).

    Parameters
    ----------
    stream : file-like, optional
        Where the lines go; stderr when None (looked up at every line).
    every : float, default=10.0
        At most one progress line per task in this many seconds (starts and ends are
        always written).
    """

    def __init__(self, stream: TextIO | None = None, *, every: float = 10.0) -> None:
        self.stream = stream
        self.every = every
        self._lock = threading.Lock()
        self._tasks: dict[int, dict[str, Any]] = {}
        self._next = 0

    def _write(self, text: str) -> None:
        with self._lock:
            stream = self.stream if self.stream is not None else sys.stderr
            print(text, file=stream, flush=True)

    def add(self, description: str, total: float | None = None) -> int:
        with self._lock:
            handle, self._next = self._next, self._next + 1
            now = time.perf_counter()
            self._tasks[handle] = {"description": description, "started": now, "shown": now}
        self._write(f"{description} ...")
        return handle

    def update(self, handle: int, completed: float, total: float, detail: str = "") -> None:
        state = self._tasks.get(handle)
        now = time.perf_counter()
        if state is None or now - state["shown"] < self.every:
            return
        state["shown"] = now
        suffix = f", {detail}" if detail else ""
        self._write(
            f"{state['description']}: {completed:.0f}/{total:.0f}{suffix} "
            f"({now - state['started']:.1f} s)"
        )

    def finish(self, handle: int, detail: str = "") -> None:
        state = self._tasks.pop(handle, None)
        if state is None:
            return
        suffix = f", {detail}" if detail else ""
        elapsed = time.perf_counter() - state["started"]
        self._write(f"{state['description']}: done in {elapsed:.1f} s{suffix}")


class RichDisplay:
    """Progress as rows of one live ``rich`` display (for terminals).

    Parameters
    ----------
    console : rich.console.Console
        The console the display draws on (the CLI's).
    """

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )

    def add(self, description: str, total: float | None = None) -> int:
        return self.progress.add_task(description, total=total, detail="")

    def update(self, handle: int, completed: float, total: float, detail: str = "") -> None:
        self.progress.update(handle, completed=completed, total=total, detail=detail)

    def finish(self, handle: int, detail: str = "") -> None:
        task = next((t for t in self.progress.tasks if t.id == handle), None)
        if task is not None:
            elapsed = task.elapsed or 0.0
            self.progress.console.print(
                f"{task.description}: done in {elapsed:.1f} s{', ' + detail if detail else ''}",
                markup=False,
                highlight=False,
            )
            self.progress.remove_task(handle)


def current() -> LineDisplay | RichDisplay | None:
    """Return the display installed by :func:`display`, or None."""
    return _DISPLAY.get()


@contextlib.contextmanager
def display(console: Any = None) -> Iterator[LineDisplay | RichDisplay]:
    """Install one display for the block: rich in a terminal, lines otherwise.

    Parameters
    ----------
    console : rich.console.Console, optional
        With a console that is a terminal, a :class:`RichDisplay` on it; otherwise a
        :class:`LineDisplay` on stderr.
    """
    shown: LineDisplay | RichDisplay
    if console is not None and console.is_terminal:
        shown = RichDisplay(console)
        token = _DISPLAY.set(shown)
        try:
            with shown.progress:
                yield shown
        finally:
            _DISPLAY.reset(token)
        return
    shown = LineDisplay()
    token = _DISPLAY.set(shown)
    try:
        yield shown
    finally:
        _DISPLAY.reset(token)


@contextlib.contextmanager
def task(description: str, total: float | None = None) -> Iterator[Callable[..., None]]:
    """Show one task on the current display (lines on stderr when there is none).

    Yields ``update(completed, detail="")``; the task's end is shown with its time.
    """
    shown = current() or LineDisplay()
    handle = shown.add(description, total)
    done = {"detail": ""}

    def update(completed: float, detail: str = "") -> None:
        done["detail"] = detail
        shown.update(handle, completed, total or 0, detail)

    try:
        yield update
    finally:
        shown.finish(handle, done["detail"])


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = getattr(shell, "get_ipython", lambda: None)()
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


def nuts_progress(
    chains: int, draws: int, tune: int, *, enabled: bool
) -> tuple[bool, Callable[[list[Any]], None] | None, Callable[[], None]]:
    """How a NUTS run shows its progress.

    Parameters
    ----------
    chains, draws, tune : int
        The run's size (draws per chain after ``tune`` tuning steps).
    enabled : bool
        The caller's ``progressbar``.

    Returns
    -------
    own_bar : bool
        Whether nutpie draws its own bar (a terminal or a notebook, no display installed).
    callback : callable or None
        nutpie's ``progress_callback`` (a list of ``ChainProgress``), feeding the current
        display or a :class:`LineDisplay` on stderr.
    finish : callable
        Call after sampling: ends the task.
    """
    if not enabled:
        return False, None, lambda: None
    shown = current()
    if shown is None and (_stderr_is_terminal() or _in_notebook()):
        return True, None, lambda: None
    shown = shown or LineDisplay()
    total = chains * (draws + tune)
    handle = shown.add(f"NUTS: {chains} chains x {draws} draws (+{tune} tune)", total)
    detail = {"text": ""}

    def callback(progress: list[Any]) -> None:
        done = sum(int(chain.finished_draws) for chain in progress)
        divergences = sum(int(chain.divergences) for chain in progress)
        tuning = any(chain.tuning for chain in progress if chain.started)
        detail["text"] = f"{divergences} divergences" + (", tuning" if tuning else "")
        shown.update(handle, done, total, detail["text"])

    def finish() -> None:
        shown.finish(handle, detail["text"].replace(", tuning", ""))

    return False, callback, finish
