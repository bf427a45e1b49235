"""NUTS with nutpie, reusing compiled models across fits of the same structure.

Two ways to get the log density and its gradient:

* a family's fused log density and gradient (its ``_nuts_target``; the Gaussian family
  has one for its default prior families): a hand-written numba function compiled
  once (15-20 s, the first time ever) and then loaded from numba's on-disk cache, with
  the observations and the prior parameters as data, so that a fresh process is ready to
  sample well under a second after importing bayesmix. NUTS moves in Laplace coordinates
  around the start
  (:mod:`bayesmix.nuts.laplace`), each chain from a random corner ``u = +-1``;
* otherwise the PyMC model compiled by nutpie (PyTensor -> numba), which costs seconds to
  tens of seconds. The observations enter the model as ``pm.Data``, so a compiled model
  is reused for new data of the same structure (class, number of components and
  features, covariance type, feature names and resolved priors): only the data and the
  starting point change, through ``CompiledModel.with_data`` and the initial-point
  function. NUTS moves in Laplace coordinates too: numba callbacks wrap the compiled
  ones (:mod:`bayesmix.nuts._nutpie_internals`).

Without Laplace coordinates (more than ``_laplace.MAX_DIM`` parameters, or a curvature
that is not finite) NUTS moves in the model's unconstrained coordinates from the start
nudged by 1e-3 (:func:`nudged`).

Both give the same unconstrained parametrisation, the same posterior variables and the
same ``DataTree`` layout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from pymc.initial_point import make_initial_point_fn

from bayesmix import _progress
from bayesmix._threads import cpu_count
from bayesmix.nuts import laplace as _laplace
from bayesmix.nuts._target import kernel_data

__all__ = ["clear_cache", "fused_free_variables", "laplace_map", "nudged", "sample_nutpie"]

_log = logging.getLogger("bayesmix")
_CACHE: OrderedDict[Hashable, Any] = OrderedDict()
_CACHE_SIZE = 16
# Fits in threads share the cache: _CACHE_LOCK guards the dict (a lookup's move_to_end
# and another fit's eviction would race), and one lock per key being compiled makes the
# threads that need the same structure wait for one compilation instead of each
# compiling it (seconds to tens of seconds).
_CACHE_LOCK = threading.Lock()
_COMPILING: dict[Hashable, threading.Lock] = {}


def clear_cache() -> None:
    """Forget every compiled model."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cached(key: Hashable) -> Any:
    """Return the compiled model of ``key`` (most recently used now), or None."""
    with _CACHE_LOCK:
        compiled = _CACHE.get(key)
        if compiled is not None:
            _CACHE.move_to_end(key)
        return compiled


def unconstrained_point(model: pm.Model, start: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Return ``start`` (constrained values of the free variables) on the unconstrained scale.

    Keys are the names of the model's value variables (``mu``, ``sigma_log__``, ...), the
    values float64 arrays of their shapes. No jitter: PyMC's initial-point function with
    ``start`` as overrides.
    """
    point = make_initial_point_fn(
        model=model, overrides=dict(start), jitter_rvs=set(), return_transformed=True
    )(0)
    return {name: np.asarray(value, dtype=np.float64) for name, value in point.items()}


def _flat_start(model: pm.Model, start: dict[str, np.ndarray]) -> np.ndarray:
    """Return ``start`` on the unconstrained scale, flattened in nutpie's variable order."""
    point = unconstrained_point(model, start)
    names = [model.rvs_to_values[rv].name for rv in model.free_RVs]
    return np.concatenate([point[name].ravel() for name in names])


def nudged(flat: np.ndarray, scale: float = 1e-3) -> Any:
    """Return nutpie's per-chain initial-point function: ``flat`` moved by ~``scale``.

    Used where the sampler moves in the model's own coordinates (no Laplace coordinates,
    see :func:`laplace_map`).

    Parameters
    ----------
    flat : ndarray
        The start on the unconstrained scale, flattened.
    scale : float, default=1e-3
        Standard deviation of the move, per coordinate.

    Returns
    -------
    callable
        ``seed -> flat + scale * z``, ``z`` standard normal draws seeded by ``seed``.

    Notes
    -----
    nutpie sets the initial mass matrix from the gradient at the start, so a gradient
    entry that is exactly zero fails ("bad initial gradient"); an EM estimate with
    exactly balanced weights (two perfectly separated clusters of equal size) has one.
    A tiny seeded move on the unconstrained scale avoids it and separates the chains.
    """

    def initial_point(seed: Any) -> np.ndarray:
        return flat + scale * np.random.default_rng(seed).standard_normal(flat.shape)

    return initial_point


def _compiled(model: pm.Model, key: Hashable) -> Any:
    """Return the compiled model of structure ``key``: from the cache, or compiled once."""
    import nutpie

    compiled = _cached(key)
    if compiled is None:
        with _CACHE_LOCK:
            compiling = _COMPILING.setdefault(key, threading.Lock())
        with compiling:  # another thread may be compiling this structure: wait for it
            compiled = _cached(key)
            if compiled is None:
                start = time.perf_counter()
                try:
                    compiled = nutpie.compile_pymc_model(model, backend="numba", jitter_rvs=set())
                except BaseException:
                    with _CACHE_LOCK:
                        _COMPILING.pop(key, None)
                    raise
                _log.info(
                    "NUTS on the PyMC model: compiled with nutpie/numba in %.1f s",
                    time.perf_counter() - start,
                )
                with _CACHE_LOCK:  # in the cache before the key's lock is dropped
                    _CACHE[key] = compiled
                    while len(_CACHE) > _CACHE_SIZE:
                        _CACHE.popitem(last=False)
                    _COMPILING.pop(key, None)
                return compiled
    _log.info("NUTS on the PyMC model: reusing the compiled model")
    return compiled


def fused_free_variables(target: Any) -> set[str]:
    """Names of the free variables a family's fused target samples (see :func:`sample_nutpie`)."""
    return {name for name, _, _ in target.free}


def _fused_compiled(target: Any, data: dict[str, np.ndarray], start: dict[str, np.ndarray]) -> Any:
    """Return nutpie's model on a family's fused log density + gradient ``target``."""
    clock = time.perf_counter()
    flat = target.unconstrain(start)
    shared = kernel_data(target, data)
    # The first call loads the kernel from numba's cache (or compiles it, the first time
    # ever) before the sampler's threads need it.
    logp, _ = target.logp_dlogp(flat, **shared)
    affine = laplace_map(lambda x: target.logp_dlogp(x, **shared)[1], flat)
    initial_point = nudged(flat) if affine is None else _laplace.corner_start(flat.size)
    compiled = target.nutpie_model(shared, initial_point=initial_point, affine=affine)
    _log.info(
        "NUTS on the fused kernel %r: ready in %.2f s, log density %.4g at the start",
        target,
        time.perf_counter() - clock,
        logp,
    )
    return compiled


def laplace_map(
    grad: Callable[[np.ndarray], np.ndarray], flat: np.ndarray
) -> _laplace.Affine | None:
    """Return the Laplace coordinates around the start ``flat`` (:mod:`bayesmix.nuts.laplace`).

    Parameters
    ----------
    grad : callable
        ``x -> gradient`` of the log density on the unconstrained scale.
    flat : ndarray
        The start on the unconstrained scale, flattened.

    Returns
    -------
    bayesmix.nuts.laplace.Affine or None
        None (sample in the model's own coordinates, from :func:`nudged`) above
        ``_laplace.MAX_DIM`` parameters, when the curvature is not finite, or when
        ``grad`` raises ``RuntimeError`` (a compiled callback that fails near the start:
        the sampler reports it if it matters).
    """
    if flat.size > _laplace.MAX_DIM:
        _log.info(
            "%d unconstrained parameters (more than %d): no Laplace coordinates",
            flat.size,
            _laplace.MAX_DIM,
        )
        return None
    clock = time.perf_counter()
    try:
        hessian = _laplace.negative_hessian(grad, flat)
    except RuntimeError as err:
        _log.info("no Laplace coordinates: the gradient failed near the start (%s)", err)
        return None
    affine = _laplace.laplace_affine(hessian, flat)
    _log.info(
        "Laplace coordinates from the curvature at the start (%d gradients, %.2f s)%s",
        2 * flat.size,
        time.perf_counter() - clock,
        "" if affine is not None else ": not finite, not used",
    )
    return affine


def sample_nutpie(
    model: pm.Model | None,
    *,
    key: Hashable,
    data: dict[str, np.ndarray],
    start: dict[str, np.ndarray],
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    target_accept: float,
    random_seed: int,
    progressbar: bool,
    target: Any = None,
) -> xr.DataTree:
    """Sample ``model`` with nutpie, every chain starting near ``start`` (module docstring).

    Parameters
    ----------
    model : pymc.Model or None
        Its ``pm.Data`` variables are set to ``data`` in the compiled model. May be None
        only if ``fast_spec`` is given and covered by the fused kernel.
    key : hashable
        Identifies the model structure; equal keys share one compiled model.
    data : dict of str to ndarray
        Values of the model's ``pm.Data`` variables (``x_data``: the observations).
    start : dict of str to ndarray
        Values of the free random variables (constrained scale).
    target : object, optional
        A family's fused log density and gradient (its ``_nuts_target``, e.g.
        :class:`bayesmix.families.gaussian._nuts_kernel.FastGaussian`): nutpie samples it
        instead of compiling ``model``; the result has the same layout. When None,
        ``model`` is compiled.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (free variables and deterministics) and ``sample_stats``.
    """
    compiled = None if target is None else _fused_compiled(target, data, start)
    if compiled is None:
        if model is None:
            raise ValueError("no fused target and no PyMC model: pass one of them")
        from bayesmix.nuts import _nutpie_internals as internals

        compiled = _compiled(model, key).with_data(**data)
        flat = _flat_start(model, start)
        affine = laplace_map(lambda x: internals.compiled_logp_dlogp(compiled, x)[1], flat)
        try:
            if affine is None:
                compiled = internals.with_initial_point(compiled, nudged(flat))
            else:
                compiled = internals.in_laplace_coordinates(
                    compiled, affine, _laplace.corner_start(flat.size)
                )
        except internals.NutpieInternalsError as err:
            _log.warning(
                "nutpie's compiled model differs from the tested nutpie 0.16 (%s): sampling "
                "from nutpie's own start, not the EM estimate; install nutpie>=0.16,<0.17",
                err,
            )
    return run_nutpie(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores if cores is not None else min(chains, cpu_count()),
        target_accept=target_accept,
        random_seed=random_seed,
        progressbar=progressbar,
    )


def run_nutpie(
    compiled: Any,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    target_accept: float,
    random_seed: int,
    progressbar: bool,
) -> xr.DataTree:
    """Sample nutpie's ``compiled`` model (no warmup draws kept), with bayesmix's progress."""
    import nutpie

    own_bar, callback, finish = _progress.nuts_progress(chains, draws, tune, enabled=progressbar)
    try:
        return nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=random_seed,
            save_warmup=False,
            progress_bar=own_bar,
            progress_callback=callback,
            progress_rate=500,
            target_accept=target_accept,
        )
    finally:
        finish()
