"""NUTS on JAX: numpyro's and blackjax's samplers, the way to use a GPU (issue 23, item 3).

``fit(X, nuts_sampler="numpyro")`` (or ``"blackjax"``) translates the family's PyMC model
to JAX (PyTensor's JAX linker, through :func:`pymc.sampling.jax.get_jaxified_graph`) and
samples it with numpyro's or blackjax's NUTS (their public APIs). The log density is
:func:`log_density`: the prior and Jacobians plus the observations' log-likelihood summed
chunk by chunk by a rematerialised ``lax.scan``, so that value and gradient never hold
the whole data's (rows x components x features) temporaries: what fits on a GPU is the
data, not the data times the intermediate arrays. Every chain starts at its own
scale-aware jittered copy of the EM estimate (the estimator's ``_jitter_start``, as for
``nuts_sampler="pymc"``), and the result goes through the same relabelling,
log-likelihood and diagnostics as nutpie's, so the ``DataTree`` has the same groups,
variables, dims and coordinates. The sampler's statistics carry nutpie's names
(``diverging``, ``step_size``, ``n_steps``, ``depth``, ``logp``, ``energy``, plus
``acceptance_rate``); ``logp`` is the log density on the unconstrained scale for both
backends (numpyro reports its negative, the potential energy).

JAX runs on whatever device it finds: with ``jax[cuda12]`` installed on a machine with a
GPU, the log density and gradient run there. With as many devices as chains, chains run
in parallel (``pmap``); otherwise they are vectorised on the one device (``vmap``), as on
a CPU. (Importing ``pymc.sampling.jax`` before JAX starts makes a CPU look like 100
devices; bayesmix does not rely on it: on this 2-core machine 4 chains of the 2-D
Gaussian at N = 1e4 took 53-55 s vectorised, 63 s over PyMC's 100 host devices and 40 s
over exactly 4, set with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` before
JAX starts, which is the setting to use for long CPU runs.) Needs the optional extra
``jax`` (``pip install "bayesmix[jax]"``).

Differences from nutpie, stated so that nobody is surprised: no Laplace coordinates
(numpyro and blackjax adapt a diagonal mass matrix from the jittered start), no compiled
model cache across fits (each fit pays JAX's compilation, seconds), and blackjax shows no
progress bar (its warmup and draws run as compiled scans).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from bayesmix.nuts.sampler import unconstrained_point

__all__ = [
    "CHUNK_ROWS",
    "JAX_SAMPLERS",
    "chain_method",
    "log_density",
    "require",
    "sample_jax",
]

JAX_SAMPLERS = ("numpyro", "blackjax")
#: Rows of one chunk of the log-likelihood's scan (:func:`log_density`): 2^14 rows keep
#: a chunk's (rows x components) temporaries at a few MiB.
CHUNK_ROWS = 2**14
_EXTRA = 'pip install "bayesmix[jax]"'
_log = logging.getLogger("bayesmix")


def require(sampler: str) -> None:
    """Raise an ImportError naming the extra if ``sampler``'s packages are not installed."""
    if sampler not in JAX_SAMPLERS:
        raise ValueError(f"nuts_sampler={sampler!r} is not a JAX sampler {JAX_SAMPLERS}")
    missing = []
    for name in ("jax", sampler):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"nuts_sampler={sampler!r} needs {' and '.join(missing)}, which are not "
            f"installed: {_EXTRA}, or use nuts_sampler='nutpie' (the default)."
        )


def chain_method(chains: int) -> str:
    """``"parallel"`` (one chain per device) if there are devices enough, else ``"vectorized"``."""
    import jax

    return "parallel" if chains > 1 and jax.local_device_count() >= chains else "vectorized"


def sample_jax(
    model: pm.Model,
    *,
    sampler: str,
    initvals: list[dict[str, Any]],
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    target_accept: float,
    random_seed: int,
    progressbar: bool,
    chunk_rows: int = CHUNK_ROWS,
) -> xr.DataTree:
    """Sample ``model`` with numpyro or blackjax from one start per chain (module docstring).

    ``initvals`` holds one start per chain (constrained values of the free variables).
    ``cores`` is not used: JAX places the chains on its devices (:func:`chain_method`).
    Returns ``posterior`` (the free variables and deterministics, dims and coordinates
    of the model) and ``sample_stats`` (nutpie's names, module docstring).
    """
    require(sampler)
    import jax

    method = chain_method(chains)
    _log.info("NUTS on JAX (%s): %d chains, %s, devices %s", sampler, chains, method, _devices())
    logp = log_density(model, chunk_rows=chunk_rows)
    starts = [unconstrained_point(model, start) for start in initvals]
    positions = [jax.numpy.stack([start[var.name] for start in starts]) for var in model.value_vars]
    run = _run_numpyro if sampler == "numpyro" else _run_blackjax
    key = jax.random.PRNGKey(random_seed)
    samples, stats = run(
        logp, positions, key, draws, tune, chains, method, target_accept, progressbar
    )
    return xr.DataTree.from_dict(
        {
            "posterior": _posterior(model, samples),
            "sample_stats": xr.Dataset(
                {name: (("chain", "draw"), np.asarray(v)) for name, v in stats.items()}
            ),
        }
    )


def log_density(model: pm.Model, *, chunk_rows: int = CHUNK_ROWS) -> Callable[[list], Any]:
    """Return the JAX log density of ``model`` on the unconstrained scale, summed in chunks.

    ``logp(values)`` (a list of arrays, one per value variable in ``model.value_vars``
    order) is the log prior with the transforms' Jacobians plus ``sum_n w_n log p(x_n)``
    (``w_n`` the model's ``w_data`` weights, or 1): the model's ``logp()``. The
    observations are split into chunks of ``chunk_rows`` rows (the last one padded with
    copies of a row of weight 0) and summed by ``lax.scan`` over a rematerialised
    (``jax.checkpoint``) chunk log-likelihood, so the gradient keeps only one chunk's
    temporaries alive, not the (rows, components, features) ones of the whole data.
    """
    import jax
    import jax.numpy as jnp
    from pymc.sampling.jax import get_jaxified_graph
    from pytensor.graph.replace import graph_replace

    x_data = model["x_data"]
    values = x_data.get_value(borrow=True)
    weights = (
        model["w_data"].get_value(borrow=True)
        if "w_data" in model.named_vars
        else np.ones(values.shape[0])
    )
    x_chunk = x_data.type()
    (pointwise,) = model.logp(vars=model.observed_RVs, sum=False)
    pointwise = graph_replace(pointwise, {x_data: x_chunk}, strict=True)
    chunk_fn = get_jaxified_graph(inputs=[*model.value_vars, x_chunk], outputs=[pointwise])
    prior_fn = get_jaxified_graph(
        inputs=model.value_vars, outputs=[model.logp(vars=model.free_RVs, jacobian=True)]
    )
    rows = max(1, min(int(chunk_rows), values.shape[0]))
    n_chunks = -(-values.shape[0] // rows)
    pad = n_chunks * rows - values.shape[0]
    X = jnp.asarray(np.concatenate([values, np.repeat(values[:1], pad, axis=0)]))
    W = jnp.asarray(np.concatenate([weights, np.zeros(pad)]))
    X = X.reshape(n_chunks, rows, *values.shape[1:])
    W = W.reshape(n_chunks, rows)

    @jax.checkpoint
    def chunk_sum(params: list, x: Any, w: Any) -> Any:
        return jnp.sum(w * chunk_fn(*params, x)[0])

    def logp(params: list) -> Any:
        def step(total: Any, chunk: tuple) -> tuple:
            return total + chunk_sum(params, *chunk), None

        total, _ = jax.lax.scan(step, jnp.zeros(()), (X, W))
        return prior_fn(*params)[0] + total

    return logp


def _run_numpyro(logp, positions, key, draws, tune, chains, method, target_accept, progressbar):
    import jax
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(potential_fn=lambda params: -logp(params), target_accept_prob=target_accept),
        num_warmup=tune,
        num_samples=draws,
        num_chains=chains,
        chain_method="parallel" if method == "parallel" else "vectorized",
        progress_bar=progressbar,
    )
    if chains > 1:
        key = jax.random.split(key, chains)
    else:
        positions = [position[0] for position in positions]
    fields = ("num_steps", "potential_energy", "energy", "adapt_state.step_size", "diverging")
    mcmc.run(key, init_params=positions, extra_fields=(*fields, "accept_prob"))
    samples = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    n_steps = np.asarray(extra["num_steps"])
    stats = {
        "diverging": extra["diverging"],
        "energy": extra["energy"],
        "step_size": extra["adapt_state.step_size"],
        "n_steps": n_steps,
        "depth": np.floor(np.log2(np.maximum(n_steps, 1))).astype(int) + 1,
        "acceptance_rate": extra["accept_prob"],
        "logp": -np.asarray(extra["potential_energy"]),  # numpyro's potential is -logp
    }
    return samples, stats


def _run_blackjax(logp, positions, key, draws, tune, chains, method, target_accept, progressbar):
    import blackjax
    import jax

    def one_chain(key: Any, position: list) -> tuple:
        warm_key, sample_key = jax.random.split(key)
        adapt = blackjax.window_adaptation(
            blackjax.nuts, logp, target_acceptance_rate=target_accept
        )
        (state, params), _ = adapt.run(warm_key, position, num_steps=tune)
        step = blackjax.nuts(logp, **params).step

        def one_draw(state: Any, key: Any) -> tuple:
            state, info = step(key, state)
            stats = {
                "diverging": info.is_divergent,
                "energy": info.energy,
                "depth": info.num_trajectory_expansions,
                "n_steps": info.num_integration_steps,
                "acceptance_rate": info.acceptance_rate,
                "logp": state.logdensity,
                "step_size": params["step_size"],
            }
            return state, (state.position, stats)

        _, (samples, stats) = jax.lax.scan(one_draw, state, jax.random.split(sample_key, draws))
        return samples, stats

    mapped = jax.pmap(one_chain) if method == "parallel" else jax.jit(jax.vmap(one_chain))
    # No progress bar (``progressbar`` is ignored): warmup and draws run as compiled scans.
    return mapped(jax.random.split(key, chains), positions)


def _posterior(model: pm.Model, samples: list) -> xr.Dataset:
    """Return the free variables and deterministics of every draw, with the model's dims."""
    import jax
    from pymc.sampling.jax import get_jaxified_graph
    from pymc.util import get_default_varnames

    outputs = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    fn = get_jaxified_graph(inputs=model.value_vars, outputs=outputs)
    values = jax.jit(jax.vmap(jax.vmap(lambda *x: fn(*x))))(*samples)
    data_vars, coords = {}, {}
    for var, value in zip(outputs, values, strict=True):
        dims = ("chain", "draw", *model.named_vars_to_dims.get(var.name, ()))
        value = np.asarray(value)
        if len(dims) != value.ndim:  # no dims declared: numbered ones, as PyMC names them
            dims = ("chain", "draw", *(f"{var.name}_dim_{i}" for i in range(value.ndim - 2)))
        data_vars[var.name] = (dims, value)
        for dim in dims[2:]:
            if dim in model.coords and model.coords[dim] is not None:
                coords[dim] = list(model.coords[dim])
    chains, draws = np.asarray(values[0]).shape[:2]
    coords |= {"chain": np.arange(chains), "draw": np.arange(draws)}
    return xr.Dataset(data_vars, coords=coords)


def _devices() -> str:
    import jax

    return ", ".join(str(device) for device in jax.devices())
