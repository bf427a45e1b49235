"""BLAS thread control: mixture computations are many tiny matrix operations."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

from threadpoolctl import ThreadpoolController

__all__ = ["one_blas_thread", "single_blas_thread"]


@functools.cache
def _controller() -> ThreadpoolController:
    # Finding the loaded thread pools scans the process's shared libraries (about 3 ms);
    # do it once, on first use, when NumPy's and SciPy's BLAS are loaded (bayesmix
    # imports both).
    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread inside the ``with`` block (restored on exit)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield


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
