"""BLAS thread control: mixture computations are many tiny matrix operations."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

from threadpoolctl import ThreadpoolController

__all__ = ["cpu_count", "one_blas_thread", "single_blas_thread"]


@functools.cache
def _controller() -> ThreadpoolController:
    # Finding the loaded thread pools scans the process's shared libraries (about 3 ms);
    # do it once, on first use, when NumPy's and SciPy's BLAS are loaded (bayesmix
    # imports both).
    return ThreadpoolController()


# BLAS's thread count is process-wide, and bayesmix may run in several threads at once
# (fits in joblib's threading backend). Each thread limiting and restoring on its own
# raced: a thread entering while another held the limit saved "1" as the count to
# restore, and the process was left with one BLAS thread after the fits (found by
# issue 24's concurrency tests). So the limit is counted: the first bayesmix call to
# enter, in any thread, sets one thread; the last to leave restores the count found by
# the first.
_LOCK = threading.Lock()
_active = 0
_saved: list[int] = []


def _blas_libraries() -> list[Any]:
    return [lib for lib in _controller().lib_controllers if lib.user_api == "blas"]


def _set_threads(libraries: list[Any], counts: list[int]) -> None:
    """Set each library's thread count, from whichever thread this runs in.

    threadpoolctl lets only one Python thread set OpenBLAS's count (the first to do so,
    until it lets go); this one lets go after every change, so that the thread that
    restores the count may be another than the one that limited it. An OpenBLAS that
    another thread controls (a user's ``threadpool_limits`` block) is left as it is.
    """
    for library, count in zip(libraries, counts, strict=True):
        library.set_num_threads(count)
        release = getattr(type(library), "clear_controlling_thread", None)
        if release is not None:
            release()  # only if this thread holds it


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread inside the ``with`` block (restored on exit).

    Nested and concurrent blocks (in other threads) share one limit: the count is
    restored when the last of them ends.
    """
    global _active, _saved
    with _LOCK:
        if _active == 0:
            libraries = _blas_libraries()
            _saved = [library.num_threads for library in libraries]
            _set_threads(libraries, [1] * len(libraries))
        _active += 1
    try:
        yield
    finally:
        with _LOCK:
            _active -= 1
            if _active == 0:
                _set_threads(_blas_libraries(), _saved)


def single_blas_thread[**P, R](func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with one BLAS thread.

    Predictions over posterior draws make many tiny per-draw triangular solves; BLAS
    threads only contend on them (measured: 1 s becomes 10 s on two busy cores).
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with one_blas_thread():
            return func(*args, **kwargs)

    return wrapper


def cpu_count() -> int:
    """Return how many CPUs this process may run on (its affinity mask where the OS has one)."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
