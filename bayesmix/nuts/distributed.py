"""NUTS on chunked data: every log density and gradient is one Dask reduction (issue 23).

``fit(X_dask, method="nuts")`` samples the exact posterior of data that stay in Dask's
memory (persisted chunks on the workers, or in this process with the threaded
scheduler). The log density on the unconstrained scale splits into

    log p(x) = log prior(x) + log |J(x)| + sum_c l_c(x),   l_c(x) = sum_{n in c} w_n log p(x_n | x),

so each evaluation of the log density and its gradient is one task per chunk (the chunk's
log-likelihood and its gradient, a length-``P`` vector) and one tree sum: the client
receives ``P + 1`` numbers, whatever N. The prior and the Jacobians are evaluated in this
process. A chunk's function is :func:`FusedChunkLikelihood` for a family with a
fused kernel (the Gaussian family's numba kernel for its default priors: the chunk's
joint density minus the prior-only density, the kernel at zero rows) or
:func:`PyMCChunkLikelihood` otherwise (PyTensor's compiled value and gradient of
the observed variable's log density with the rows as an input, compiled once per
process that runs chunks).

Sampling is nutpie's public ``from_pyfunc`` in the Laplace coordinates of the start
(:mod:`bayesmix.nuts.laplace`; the curvature by central differences of the distributed
gradient, ``2 P`` passes), each chain from its own corner ``u = +-1``, as in memory. Each
gradient waits for Dask's scheduler, a fixed cost per evaluation that :func:`sample`
measures (``sample_stats`` attrs ``seconds_per_gradient``, ``gradients``) and that
dominates below ~1e5 rows per chunk: this is the path for data that do not fit one
machine, not a faster one (``bench/nuts_dask.py`` measures it against the in-memory
kernel).
"""

from __future__ import annotations

import functools
import logging
import pickle
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from bayesmix.nuts import laplace as _laplace

__all__ = [
    "DistributedLogDensity",
    "FusedChunkLikelihood",
    "PyMCChunkLikelihood",
    "pymc_log_prior",
    "sample",
]

_log = logging.getLogger("bayesmix")

ChunkFunction = Callable[[np.ndarray, np.ndarray, np.ndarray | None], dict]


class DistributedLogDensity:
    """``x -> (log p(x), gradient)``: the prior here plus one Dask pass for the likelihood.

    Parameters
    ----------
    log_prior : callable
        ``x -> (log prior + log Jacobian, gradient)`` (no data).
    chunk : callable
        ``chunk(x, X_c, w_c) -> {"value": float, "grad": (P,) array}``: the chunk's
        weighted log-likelihood and its gradient (picklable: it runs in Dask's tasks).
    data_pass : callable
        ``data_pass(fn) -> sum over chunks of fn(X_c, w_c)`` (one reduction).

    Counts the evaluations and their seconds (``gradients``, ``seconds``).
    """

    def __init__(
        self,
        log_prior: Callable[[np.ndarray], tuple[float, np.ndarray]],
        chunk: Callable[..., dict],
        data_pass: Callable[[Callable], dict],
    ) -> None:
        self.log_prior = log_prior
        self.chunk = chunk
        self.data_pass = data_pass
        self.gradients = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Return ``(log p(x), gradient)`` (``-inf`` and zeros outside the support)."""
        clock = time.perf_counter()
        x = np.ascontiguousarray(x, dtype=np.float64)
        prior, prior_grad = self.log_prior(x)
        total = self.data_pass(functools.partial(_evaluate_chunk, self.chunk, x))
        value = float(prior) + float(total["value"])
        grad = np.asarray(prior_grad, dtype=np.float64) + total["grad"]
        with self._lock:
            self.gradients += 1
            self.seconds += time.perf_counter() - clock
        if not np.isfinite(value):  # outside the support: nutpie rejects the step
            return -np.inf, np.zeros_like(grad)
        return value, grad


def _evaluate_chunk(chunk: Callable[..., dict], x: np.ndarray, X: np.ndarray, w: Any) -> dict:
    return chunk(x, X, w)


# -- the families' chunk functions ---------------------------------------------------------


class FusedChunkLikelihood:
    """A chunk's log-likelihood and gradient from a family's fused kernel ``target``.

    The kernel returns the joint density of a chunk (prior, Jacobians and the chunk's
    rows); the same kernel at zero rows is the prior alone, and the difference is the
    chunk's log-likelihood. ``target`` is the family's ``_nuts_target`` (picklable).
    """

    def __init__(self, target: Any) -> None:
        self.target = target

    def log_prior(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(log prior + log Jacobian, gradient)`` at ``x``: the kernel at zero rows."""
        empty = np.empty((0, self.target.n_features))
        return self.target.logp_dlogp(x, **self.target.shared_data(empty))

    def __call__(self, x: np.ndarray, X: np.ndarray, w: np.ndarray | None) -> dict:
        """Return the chunk's ``{"value": log-likelihood, "grad": its gradient}`` at ``x``."""
        value, grad = self.target.logp_dlogp(x, **self.target.shared_data(X, sample_weight=w))
        prior, prior_grad = self.log_prior(x)
        return {"value": value - prior, "grad": grad - prior_grad}


# Compiled PyTensor functions of this process, by the token of their graph; the most
# recently used few (a long-lived worker serves many fits, each with its own token).
_COMPILED: OrderedDict[tuple[str, int | None], Any] = OrderedDict()
_COMPILED_MAX = 32
_COMPILED_LOCK = threading.Lock()


class PyMCChunkLikelihood:
    """A chunk's log-likelihood and gradient from the PyMC ``model``, compiled per process.

    The observed variable's pointwise log density with the observations (``x_data``) as
    an input, weighted by an input vector, summed; its gradient with respect to the
    flat unconstrained point (``value_vars`` raveled and joined in that order). Pickled
    as the graph, compiled on first use in every process that runs a chunk, and kept
    (:data:`_COMPILED`).
    """

    def __init__(self, model: Any, value_vars: Sequence[Any]) -> None:
        import pytensor.tensor as pt
        from pymc.pytensorf import join_nonshared_inputs
        from pytensor.graph.replace import graph_replace

        x_data = model["x_data"]
        x_chunk = x_data.type("x_chunk")
        w_chunk = pt.dvector("w_chunk")
        (pointwise,) = model.logp(vars=model.observed_RVs, sum=False)
        # The rows, and the length of the "obs" dimension where a distribution's size is
        # taken from it (``pm.CustomDist`` broadcasts its parameters to that size).
        replace = {x_data: x_chunk}
        if "obs" in model.dim_lengths:
            replace[model.dim_lengths["obs"]] = x_chunk.shape[0]
        pointwise = graph_replace(pointwise, replace, strict=False)
        value = pt.sum(w_chunk * pointwise)
        point = model.initial_point()
        [value], flat = join_nonshared_inputs(
            point, [value], list(value_vars), make_inputs_shared=False
        )
        self.token = uuid.uuid4().hex
        # The gradient is taken where the graph is compiled: PyTensor's cached gradient
        # of an OpFromGraph (PyMC's mixture logp) does not pickle.
        self._graph = pickle.dumps(([flat, x_chunk, w_chunk], value))

    def _function(self) -> Any:
        """Return this thread's compiled function (compiled once per process, then copied).

        A compiled PyTensor function keeps its intermediate values in its own storage,
        so two threads must not call one function at the same time (Dask's threaded
        scheduler, a worker's threads): every thread calls its own copy.
        """
        key = (self.token, threading.get_ident())
        with _COMPILED_LOCK:
            function = _COMPILED.get(key)
            if function is None:
                master = _COMPILED.get((self.token, None))
                if master is None:
                    import pytensor
                    import pytensor.tensor as pt

                    inputs, value = pickle.loads(self._graph)
                    grad = pt.grad(value, inputs[0])
                    master = pytensor.function(inputs, [value, grad], on_unused_input="ignore")
                    _COMPILED[(self.token, None)] = master
                function = master.copy(share_memory=False)
                _COMPILED[key] = function
            _COMPILED.move_to_end(key)
            if (self.token, None) in _COMPILED:
                _COMPILED.move_to_end((self.token, None))
            while len(_COMPILED) > _COMPILED_MAX:
                _COMPILED.popitem(last=False)
            return function

    def __call__(self, x: np.ndarray, X: np.ndarray, w: np.ndarray | None) -> dict:
        """Return the chunk's ``{"value": log-likelihood, "grad": its gradient}`` at ``x``."""
        # Arrays that Dask's workers deserialise may be unaligned, which PyTensor's C
        # code refuses: aligned, C-ordered float64 copies where needed.
        X = np.require(X, dtype=np.float64, requirements=["C", "A"])
        weights = np.ones(X.shape[0]) if w is None else np.require(w, np.float64, ["C", "A"])
        x = np.require(x, dtype=np.float64, requirements=["C", "A"])
        value, grad = self._function()(x, X, weights)
        return {"value": float(value), "grad": np.asarray(grad, dtype=np.float64)}


def pymc_log_prior(model: Any, value_vars: Sequence[Any]) -> Callable:
    """``x -> (log prior + log Jacobian, gradient)`` of ``model`` (no data) at a flat ``x``."""
    import pytensor
    import pytensor.tensor as pt
    from pymc.pytensorf import join_nonshared_inputs

    value = model.logp(vars=model.free_RVs, jacobian=True)
    grads = pt.grad(value, list(value_vars))
    [value, *grads], flat = join_nonshared_inputs(
        model.initial_point(), [value, *grads], list(value_vars), make_inputs_shared=False
    )
    function = pytensor.function(
        [flat], [value, pt.concatenate([g.ravel() for g in grads])], on_unused_input="ignore"
    )

    def log_prior(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = function(x)
        return float(value), np.asarray(grad, dtype=np.float64)

    return log_prior


# -- sampling -------------------------------------------------------------------------------


class _Target:
    """What nutpie's ``from_pyfunc`` needs (see ``_nutpie_internals.pyfunc_model``)."""

    def __init__(
        self,
        logp_dlogp: DistributedLogDensity,
        expand: Callable[[np.ndarray], dict[str, np.ndarray]],
        start: np.ndarray,
        dims: Mapping[str, Sequence[str]],
        coords: Mapping[str, Any],
    ) -> None:
        self.logp_dlogp = logp_dlogp
        self.expand = expand
        self.n_dim = int(start.size)
        stored = expand(start)
        self.stored = [(name, tuple(np.shape(value))) for name, value in stored.items()]
        self.dims = {name: tuple(dims.get(name, ())) for name in stored}
        self.coords = dict(coords)

    def make_logp_fn(self) -> Callable[..., tuple[float, np.ndarray]]:
        logp_dlogp = self.logp_dlogp
        return lambda x, **_: logp_dlogp(x)


def sample(
    logp_dlogp: DistributedLogDensity,
    expand: Callable[[np.ndarray], dict[str, np.ndarray]],
    start: np.ndarray,
    *,
    dims: Mapping[str, Sequence[str]],
    coords: Mapping[str, Any],
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    target_accept: float,
    random_seed: int,
    progressbar: bool,
) -> xr.DataTree:
    """Sample with nutpie from ``start`` (flat, unconstrained) in Laplace coordinates.

    ``expand(x)`` returns the constrained posterior variables at a flat point, ``dims``
    their dims (without chain and draw), ``coords`` the coordinates. The chains run in
    nutpie's threads, each gradient a Dask pass; ``cores`` defaults to ``chains`` (the
    threads mostly wait for Dask). Returns ``posterior`` and ``sample_stats``, whose
    attrs hold ``gradients`` and ``seconds_per_gradient`` (the mean wall time of one
    evaluation, scheduler included).
    """
    from bayesmix.nuts import _nutpie_internals as internals
    from bayesmix.nuts.sampler import laplace_map, nudged, run_nutpie

    clock = time.perf_counter()
    affine = laplace_map(lambda x: logp_dlogp(x)[1], start)
    initial_point = nudged(start) if affine is None else _laplace.corner_start(start.size)
    target = _Target(logp_dlogp, expand, start, dims, coords)
    compiled = internals.pyfunc_model(target, {}, initial_point=initial_point, affine=affine)
    _log.info(
        "NUTS on chunked data: Laplace coordinates in %.2f s (%d passes)",
        time.perf_counter() - clock,
        logp_dlogp.gradients,
    )
    before = (logp_dlogp.gradients, logp_dlogp.seconds)
    idata = run_nutpie(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores if cores is not None else chains,
        target_accept=target_accept,
        random_seed=random_seed,
        progressbar=progressbar,
    )
    gradients = logp_dlogp.gradients - before[0]
    seconds = logp_dlogp.seconds - before[1]
    idata["sample_stats"].attrs.update(
        {
            "gradients": int(gradients),
            "seconds_per_gradient": seconds / max(gradients, 1),
        }
    )
    _log.info(
        "NUTS on chunked data: %d gradients, %.2f ms each (Dask pass included)",
        gradients,
        1e3 * seconds / max(gradients, 1),
    )
    return idata
