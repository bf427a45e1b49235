"""BLAS thread control: mixture computations are many tiny matrix operations."""

from __future__ import annotations

import functools
from collections.abc import Callable

from threadpoolctl import threadpool_limits

__all__ = ["single_blas_thread"]


def single_blas_thread[**P, R](func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with one BLAS thread.

    Predictions over posterior draws make many tiny per-draw triangular solves; BLAS
    threads only contend on them (measured: 1 s becomes 10 s on two busy cores).
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper
