"""Every use of nutpie's private API, in one place, with one fallback (tested with nutpie 0.16).

bayesmix hands nutpie log densities as numba C callbacks, so that nutpie's Rust sampler
calls them from its own threads without the GIL; nutpie's public API has no entry point
for that. What is used, and what it mirrors (nutpie 0.16, ``pyproject.toml`` pins
``nutpie>=0.16,<0.17``):

* the C signature of nutpie's logp and expand callbacks (``_C_LOGP``, ``_C_EXPAND``) and
  the meaning of their return codes, as ``nutpie.compile_pymc`` generates them;
* ``nutpie.sample.CompiledModel`` subclassed with nutpie's ``_make_sampler`` /
  ``_make_model`` hooks, ``nutpie._lib.PySampler.from_pymc``, ``LogpFunc``,
  ``ExpandFunc``, ``PyVariable.new_variables``, ``PyMcModel`` and
  ``nutpie.transform_adapter.make_transform_adapter`` (:func:`callback_model`: a family's
  fused kernel, e.g. the Gaussian one);
* ``nutpie.compile_pymc.CompiledPyMCModel``'s fields ``compiled_logp_func``,
  ``compiled_expand_func``, ``user_data``, ``n_expanded``, ``initial_point_func``
  (:func:`in_laplace_coordinates`: a compiled PyMC model in Laplace coordinates).

**The fallback** is nutpie's public ``nutpie.compiled_pyfunc.from_pyfunc`` (a Python call
per gradient): :func:`callback_model` uses it when the C path cannot be built, and
:func:`in_laplace_coordinates` raises :class:`NutpieInternalsError`, on which the sampler
samples the compiled model in its own coordinates. ``tests/unit/nuts/test_nutpie_contract.py``
checks every name above against the installed nutpie and samples through the fallback.

The Laplace callbacks around a compiled PyMC model compute ``x`` from the sampler's ``u``,
call nutpie's logp (or expand) callback at ``x`` through its address, and pull the gradient
back (``factor^T grad``). They take every address from a small record, so they are
compiled once and cached by numba like the fused kernel.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

from bayesmix._numba_cache import cfunc, njit
from bayesmix.nuts.laplace import Affine

__all__ = [
    "NutpieInternalsError",
    "call_expand",
    "call_logp",
    "callback_model",
    "callback_model_class",
    "compiled_logp_dlogp",
    "in_laplace_coordinates",
    "pyfunc_model",
]

_log = logging.getLogger("bayesmix")


class NutpieInternalsError(RuntimeError):
    """Raised when nutpie's internals differ from the ones bayesmix was tested with."""


# -- the C ABI of nutpie's callbacks ------------------------------------------------------

_C_LOGP = numba.types.int64(
    numba.types.uint64,
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.voidptr,
)


_C_EXPAND = numba.types.int64(
    numba.types.uint64,
    numba.types.uint64,
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.voidptr,
)


@intrinsic
def _as_pointer(typingctx, address):  # pragma: no cover - compiled
    """Return a ``void *`` from an integer address."""
    from numba.core import cgutils

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return numba.types.voidptr(address), codegen


@njit(nogil=True)
def affine_point(u, shift_address, factor_address):  # pragma: no cover - compiled
    """Return ``shift + factor @ u``, the map given by the addresses of its arrays."""
    dim = u.shape[0]
    shift = numba.carray(_as_pointer(shift_address), (dim,), np.float64)
    factor = numba.carray(_as_pointer(factor_address), (dim, dim), np.float64)
    x = shift.copy()
    for i in range(dim):
        total = 0.0
        for j in range(dim):
            total += factor[i, j] * u[j]
        x[i] += total
    return x


@njit(nogil=True)
def affine_pull_back(grad, out, factor_address):  # pragma: no cover - compiled
    """Write ``factor^T @ grad`` (the gradient in ``u``) into ``out``."""
    dim = out.shape[0]
    factor = numba.carray(_as_pointer(factor_address), (dim, dim), np.float64)
    out[:] = 0.0
    for i in range(dim):
        for j in range(dim):
            out[j] += factor[i, j] * grad[i]


@njit(nogil=True)
def model_point(x, shift_address, factor_address):  # pragma: no cover - compiled
    """Return the kernel's point for the sampler's ``x`` (no map if ``shift_address`` is 0).

    ``x`` itself without a map, else ``shift + factor @ x``.
    """
    if shift_address == 0:
        return x
    return affine_point(x, shift_address, factor_address)


@njit(nogil=True)
def pull_back(grad, out, factor_address):  # pragma: no cover - compiled
    """Write the gradient in the sampler's coordinates into ``out``.

    ``grad`` itself if ``factor_address`` is 0 (no affine map), else ``factor^T @ grad``.
    """
    if factor_address == 0:
        out[:] = grad
    else:
        affine_pull_back(grad, out, factor_address)


def call_c(cfunc: Any, *args: Any) -> int:
    """Call a numba ``CFunc`` through ctypes (arrays by their data pointer); its return code."""
    values = [
        arg.ctypes.data_as(argtype) if isinstance(arg, np.ndarray) else arg
        for arg, argtype in zip(args, cfunc.ctypes.argtypes, strict=True)
    ]
    return int(cfunc.ctypes(*values))


def call_logp(cfunc: Any, user_data: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Call a nutpie logp callback at ``x`` as the sampler does: ``(logp, grad)``.

    Codes 3 and 4 (a non-finite gradient or value) return the non-finite values; any
    other code but 0 raises ``RuntimeError``.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    grad = np.empty(x.size)
    logp = np.empty(1)
    code = call_c(cfunc, x.size, x, grad, logp, int(user_data.ctypes.data))
    if code not in (0, 3, 4):
        raise RuntimeError(f"the logp callback failed with code {code}")
    return float(logp[0]), grad


def call_expand(cfunc: Any, user_data: np.ndarray, x: np.ndarray, n_expanded: int) -> np.ndarray:
    """Call a nutpie expand callback at ``x``: the stored values, concatenated."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty(n_expanded)
    code = call_c(cfunc, x.size, out.size, x, out, int(user_data.ctypes.data))
    if code != 0:
        raise RuntimeError(f"the expand callback failed with code {code}")
    return out


def _frozen_affine(affine: Affine | None, n_dim: int) -> Affine | None:
    """Return a read-only C-contiguous float64 copy of ``affine`` (the C code reads it)."""
    if affine is None:
        return None
    shift = np.array(affine.shift, dtype=np.float64, order="C", copy=True)
    factor = np.array(affine.factor, dtype=np.float64, order="C", copy=True)
    if shift.shape != (n_dim,) or factor.shape != (n_dim, n_dim):
        raise ValueError(
            f"the affine map needs a shift of shape ({n_dim},) and a factor of shape "
            f"({n_dim}, {n_dim}); got {shift.shape} and {factor.shape}"
        )
    shift.flags.writeable = False
    factor.flags.writeable = False
    return Affine(shift, factor)


# -- a family's fused kernel as a nutpie model ------------------------------------------


@functools.cache
def callback_model_class() -> type:
    """``CallbackCompiledModel``: a ``nutpie`` compiled model on a target's C callbacks.

    Built on first use so that importing this module does not import nutpie. It mirrors
    nutpie's ``CompiledPyMCModel`` (nutpie 0.16): the Rust sampler calls the numba C
    functions directly, from its own threads, without the GIL. The target (e.g.
    :class:`bayesmix.families.gaussian._nuts_kernel.FastGaussian`) provides ``n_dim``,
    ``stored``, ``dims``, ``coords``, ``self.target.c_callbacks()``, ``record(shared, affine)`` and
    ``updated_data(shared, updates)``.
    """
    from nutpie.sample import CompiledModel

    @dataclass(frozen=True)
    class CallbackCompiledModel(CompiledModel):
        target: Any
        shared: dict[str, np.ndarray]
        initial_point_func: Callable[[Any], np.ndarray]
        affine: Affine | None = None
        user_data: np.ndarray = field(init=False, repr=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "user_data", self.target.record(self.shared, self.affine))

        @property
        def n_dim(self) -> int:
            return self.target.n_dim

        @property
        def shapes(self) -> dict[str, tuple[int, ...]]:
            return dict(self.target.stored)

        @property
        def coords(self) -> dict[str, Any]:
            return self.target.coords

        def with_data(self, **updates: Any) -> Any:
            shared = self.target.updated_data(self.shared, updates)
            return dataclasses.replace(self, shared=shared)

        def logp_dlogp(self, x: np.ndarray) -> tuple[float, np.ndarray]:
            """Call the C logp callback at ``x`` (as nutpie does): ``(logp, grad)``.

            ``x`` and the gradient are in the sampler's coordinates (see ``affine``).
            """
            return call_logp(self.target.c_callbacks()[0], self.user_data, x)

        def expand(self, x: np.ndarray) -> np.ndarray:
            """Call the C expand callback at ``x``: the stored values, concatenated."""
            return call_expand(self.target.c_callbacks()[1], self.user_data, x, self._n_expanded)

        @property
        def _n_expanded(self) -> int:
            return int(sum(np.prod(shape, dtype=int) for _, shape in self.target.stored))

        def _make_sampler(
            self,
            settings: Any,
            init_mean: Any,
            cores: int,
            progress_type: Any,
            extra_callback: Any,
            extra_callback_rate: Any,
            store: Any,
        ) -> Any:
            from nutpie import _lib

            return _lib.PySampler.from_pymc(
                settings,
                cores,
                self._make_model(init_mean),
                progress_type,
                extra_callback,
                extra_callback_rate,
                store,
            )

        def _make_model(self, init_mean: Any) -> Any:
            from nutpie import _lib

            logp_c, expand_c = self.target.c_callbacks()
            address = self.user_data.ctypes.data
            # The last argument keeps this object (and so the data) alive in Rust.
            expand_fn = _lib.ExpandFunc(
                self.n_dim, self._n_expanded, expand_c.address, address, self
            )
            logp_fn = _lib.LogpFunc(logp_c.address, address, self)
            stored = self.target.stored
            coords = dict(self.coords)
            dim_sizes = {name: len(values) for name, values in coords.items()}
            variables = _lib.PyVariable.new_variables(
                [name for name, _ in stored],
                ["float64"] * len(stored),
                [list(shape) for _, shape in stored],
                dim_sizes,
                dict(self.dims),
            )
            adapt = self._transform_adapt_args or {}

            def make_adapter(*args: Any, **kwargs: Any) -> Any:
                from nutpie.transform_adapter import make_transform_adapter

                return make_transform_adapter(**adapt)(*args, **kwargs, logp_fn=None)

            return _lib.PyMcModel(
                logp_fn,
                expand_fn,
                variables,
                self.n_dim,
                dim_sizes,
                coords,
                self.initial_point_func,
                make_adapter,
            )

        _transform_adapt_args = None

    return CallbackCompiledModel


def callback_model(
    target: Any,
    shared: Mapping[str, np.ndarray],
    *,
    initial_point: Callable[[Any], np.ndarray],
    affine: Affine | None = None,
) -> Any:
    """Return a nutpie model on ``target``'s C callbacks, or the public fallback.

    ``shared`` is the target's data; the C path reads a frozen copy (``target.freeze``)
    that the model holds, so it outlives every call. With ``affine`` the sampler moves in ``u``,
    ``x = affine.shift + affine.factor @ u`` (the target's record carries the map), and
    ``initial_point`` returns ``u``. If this nutpie lacks the internals of the C path,
    the model is built with ``nutpie.compiled_pyfunc.from_pyfunc`` instead (a Python call
    per gradient; same layout, same draws up to floating point).
    """
    affine = _frozen_affine(affine, target.n_dim)
    try:  # nutpie's internal constructors, as this nutpie defines them
        compiled = callback_model_class()(
            dims={name: target.dims[name] for name, _ in target.stored},
            target=target,
            shared=target.freeze(shared),
            initial_point_func=initial_point,
            affine=affine,
        )
        from nutpie._lib import PySampler

        PySampler.from_pymc  # noqa: B018 - used by _make_sampler
        compiled._make_model(None)
    except (ImportError, AttributeError, TypeError, ValueError) as err:
        _log.info("nutpie's C interface differs (%s); using nutpie's from_pyfunc", err)
        return pyfunc_model(target, shared, initial_point=initial_point, affine=affine)
    return compiled


def pyfunc_model(
    target: Any,
    shared: Mapping[str, np.ndarray],
    *,
    initial_point: Callable[[Any], np.ndarray] | None,
    affine: Affine | None = None,
) -> Any:
    """Return ``target`` as a model of nutpie's public ``from_pyfunc`` (the fallback).

    ``target`` provides ``make_logp_fn()`` (``logp(x, **shared) -> (logp, grad)``) and
    ``expand(x) -> dict`` besides the layout (``n_dim``, ``stored``, ``dims``, ``coords``).
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    def make_logp_fn() -> Callable[..., tuple[float, np.ndarray]]:
        logp = target.make_logp_fn()
        return logp if affine is None else affine.wrap(logp)

    def make_expand_fn(*_: Any) -> Callable[..., dict]:
        expand = target.expand
        if affine is None:
            return lambda x, **_: expand(x)
        return lambda u, **_: expand(affine.forward(u))

    stored = target.stored
    return from_pyfunc(
        target.n_dim,
        make_logp_fn,
        make_expand_fn,
        [np.dtype(np.float64)] * len(stored),
        [shape for _, shape in stored],
        [name for name, _ in stored],
        coords=target.coords,
        dims={name: target.dims[name] for name, _ in stored},
        shared_data=dict(shared),
        make_initial_point_fn=initial_point,
    )


# -- a compiled PyMC model in Laplace coordinates -----------------------------------------

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
    """Return ``(logp, grad)`` of a nutpie compiled PyMC model at ``x``, as nutpie calls it."""
    try:
        logp_func, data = compiled.compiled_logp_func, compiled.user_data
    except AttributeError as err:
        raise NutpieInternalsError(f"nutpie's compiled model differs: {err}") from err
    return call_logp(logp_func, data, x)


def compiled_expand(compiled: Any, x: np.ndarray) -> np.ndarray:
    """Return the values nutpie stores for the draw ``x`` (all variables, concatenated)."""
    return call_expand(compiled.compiled_expand_func, compiled.user_data, x, compiled.n_expanded)


def with_initial_point(compiled: Any, initial_point_func: Any) -> Any:
    """Return the compiled PyMC model with nutpie's per-chain start ``initial_point_func``."""
    try:
        return dataclasses.replace(compiled, initial_point_func=initial_point_func)
    except (TypeError, ValueError) as err:
        raise NutpieInternalsError(f"nutpie's compiled model differs: {err}") from err


def in_laplace_coordinates(compiled: Any, affine: Affine, initial_point_func: Any) -> Any:
    """Return ``compiled`` (a nutpie ``CompiledPyMCModel``) sampled in ``u``, ``x = affine(u)``.

    Call it after ``with_data``: the result holds the record of addresses, and the
    compiled model, the map and the record stay alive as long as it does (nutpie keeps
    the model object alive while it samples). Raises :class:`NutpieInternalsError` if
    this nutpie's compiled model differs from nutpie 0.16's.
    """
    try:
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
    except (ImportError, AttributeError, TypeError) as err:
        raise NutpieInternalsError(f"nutpie's compiled PyMC model differs: {err}") from err


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
