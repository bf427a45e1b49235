"""nutpie's compiled PyMC model, sampled in Laplace coordinates.

The fused Gaussian kernel reads its affine map ``x = shift + factor @ u`` from its own
user-data record (:mod:`bayesmix.families.gaussian._nuts_kernel`). A model that nutpie compiled
from PyMC (other families, other priors) gets the same map from two numba C callbacks that wrap
the compiled ones: they compute ``x`` from the sampler's ``u``, call nutpie's logp (or
expand) callback at ``x`` through its address, and pull the gradient back
(``factor^T grad``). The callbacks take every address from a small record, so they are
compiled once and cached by numba like the fused kernel.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

from bayesmix._numba_cache import cfunc
from bayesmix.families.gaussian._nuts_kernel import (
    _C_EXPAND,
    _C_LOGP,
    _frozen_affine,
    affine_point,
    affine_pull_back,
    call_expand,
    call_logp,
)
from bayesmix.nuts.laplace import Affine

__all__ = ["compiled_logp_dlogp", "in_laplace_coordinates"]

# The record: addresses of the wrapped callbacks, of their user data and of the map.
_R_LOGP, _R_EXPAND, _R_USER_DATA, _R_SHIFT, _R_FACTOR = range(5)
_R_SIZE = 5


def _data_pointer(context: Any, builder: Any, array_type: Any, array: Any) -> Any:
    return context.make_array(array_type)(context, builder, array).data


@intrinsic
def _call_logp(typingctx, address, dim, x, grad, logp, user_data):  # pragma: no cover
    """Call the logp callback at ``address``: ``int64 f(dim, x, grad, logp, user_data)``."""

    def codegen(context, builder, signature, args):
        address_, dim_, x_, grad_, logp_, user_data_ = args
        double_p = ir.DoubleType().as_pointer()
        function_type = ir.FunctionType(
            ir.IntType(64), [ir.IntType(64), double_p, double_p, double_p, cgutils.voidptr_t]
        )
        function = builder.inttoptr(address_, function_type.as_pointer())
        return builder.call(
            function,
            [
                dim_,
                _data_pointer(context, builder, signature.args[2], x_),
                _data_pointer(context, builder, signature.args[3], grad_),
                logp_,
                builder.inttoptr(user_data_, cgutils.voidptr_t),
            ],
        )

    return numba.types.int64(address, dim, x, grad, logp, user_data), codegen


@intrinsic
def _call_expand(typingctx, address, dim, expanded, x, out, user_data):  # pragma: no cover
    """Call the expand callback at ``address``: ``int64 f(dim, expanded, x, out, user_data)``."""

    def codegen(context, builder, signature, args):
        address_, dim_, expanded_, x_, out_, user_data_ = args
        double_p = ir.DoubleType().as_pointer()
        function_type = ir.FunctionType(
            ir.IntType(64),
            [ir.IntType(64), ir.IntType(64), double_p, double_p, cgutils.voidptr_t],
        )
        function = builder.inttoptr(address_, function_type.as_pointer())
        return builder.call(
            function,
            [
                dim_,
                expanded_,
                _data_pointer(context, builder, signature.args[3], x_),
                out_,
                builder.inttoptr(user_data_, cgutils.voidptr_t),
            ],
        )

    return numba.types.int64(address, dim, expanded, x, out, user_data), codegen


def _logp_c(dim, u_, out_, logp_, user_data):  # pragma: no cover - compiled
    """Compute the ``logp`` callback in ``u``: the wrapped callback's code (0 on success)."""
    try:
        meta = numba.carray(user_data, (_R_SIZE,), np.int64)
        x = affine_point(numba.carray(u_, (dim,)), meta[_R_SHIFT], meta[_R_FACTOR])
        grad = np.empty(dim)
        code = _call_logp(meta[_R_LOGP], dim, x, grad, logp_, meta[_R_USER_DATA])
        if code != 0:
            return code
        affine_pull_back(grad, numba.carray(out_, (dim,)), meta[_R_FACTOR])
    except Exception:
        return 1
    return 0


def _expand_c(dim, expanded, u_, out_, user_data):  # pragma: no cover - compiled
    """Write the ``expand`` callback in ``u``: the wrapped callback's code (0 on success)."""
    try:
        meta = numba.carray(user_data, (_R_SIZE,), np.int64)
        x = affine_point(numba.carray(u_, (dim,)), meta[_R_SHIFT], meta[_R_FACTOR])
        return _call_expand(meta[_R_EXPAND], dim, expanded, x, out_, meta[_R_USER_DATA])
    except Exception:
        return -2


@functools.cache
def _callbacks() -> tuple[Any, Any]:
    """Return the wrapping callbacks ``(logp, expand)`` as numba ``CFunc`` objects (loaded once)."""
    return (
        cfunc(_C_LOGP, nogil=True)(_logp_c),
        cfunc(_C_EXPAND, nogil=True)(_expand_c),
    )


def compiled_logp_dlogp(compiled: Any, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Return ``(logp, grad)`` of a nutpie compiled model at ``x``, as nutpie calls it."""
    return call_logp(compiled.compiled_logp_func, compiled.user_data, x)


def compiled_expand(compiled: Any, x: np.ndarray) -> np.ndarray:
    """Return the values nutpie stores for the draw ``x`` (all variables, concatenated)."""
    return call_expand(compiled.compiled_expand_func, compiled.user_data, x, compiled.n_expanded)


def in_laplace_coordinates(compiled: Any, affine: Affine, initial_point_func: Any) -> Any:
    """Return ``compiled`` (a nutpie ``CompiledPyMCModel``) sampled in ``u``, ``x = affine(u)``.

    Call it after ``with_data``: the result holds the record of addresses, and the
    compiled model, the map and the record stay alive as long as it does (nutpie keeps
    the model object alive while it samples).
    """
    logp_c, expand_c = _callbacks()
    shift, factor = _frozen_affine(affine, compiled.n_dim)
    record = np.empty(_R_SIZE, dtype=np.int64)
    record[_R_LOGP] = compiled.compiled_logp_func.address
    record[_R_EXPAND] = compiled.compiled_expand_func.address
    record[_R_USER_DATA] = compiled.user_data.ctypes.data
    record[_R_SHIFT] = shift.ctypes.data
    record[_R_FACTOR] = factor.ctypes.data
    return _laplace_model_class()(
        **{
            field.name: getattr(compiled, field.name)
            for field in dataclasses.fields(compiled)
            if field.init
        }
        | {
            "compiled_logp_func": logp_c,
            "compiled_expand_func": expand_c,
            "user_data": record,
            "initial_point_func": initial_point_func,
        },
        wrapped=compiled,
        affine_arrays=(shift, factor),
    )


@functools.cache
def _laplace_model_class() -> type:
    from nutpie.compile_pymc import CompiledPyMCModel

    @dataclasses.dataclass(frozen=True)
    class LaplaceCompiledPyMCModel(CompiledPyMCModel):
        """A compiled PyMC model whose callbacks move in Laplace coordinates."""

        wrapped: Any = None
        affine_arrays: tuple[np.ndarray, ...] = ()

        def with_data(self, **updates: Any) -> Any:
            raise TypeError(
                "set the data on the wrapped model, then call in_laplace_coordinates again"
            )

    return LaplaceCompiledPyMCModel
