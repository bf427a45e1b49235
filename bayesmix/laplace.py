r"""``method="laplace"``: the Laplace approximation at the posterior mode, corrected by PSIS.

The engine behind ``fit(X, method="laplace")`` of every family. It sees a log density
only, through ``logp_dlogp(x) -> (log p(x), gradient)`` on the model's unconstrained
scale (Jacobians of the transforms included), so it knows nothing about mixtures:

1. **Mode.** L-BFGS from the start (the EM estimate, unconstrained) to the mode ``m`` of
   the log posterior under the model's priors (:func:`find_mode`).
2. **Curvature.** The negative Hessian ``H`` at ``m`` by central differences of the
   gradient (:func:`bayesmix.nuts.laplace.negative_hessian`, ``2 P`` gradients for ``P``
   parameters). A mode whose ``H`` is not positive definite is not a maximum, and
   there is no Gaussian approximation: :class:`~bayesmix.exceptions.FitError`.
3. **Draws.** ``x_s = m + F u_s`` with ``u_s ~ N(0, I)``, ``F F^T = H^{-1}``
   (``F = V diag(lambda)^{-1/2}`` from ``H = V diag(lambda) V^T``): draws from the
   approximation ``q = N(m, H^{-1})``.
4. **Correction.** The exact log posterior of every draw, and the importance ratios
   ``log p(x_s) - log q(x_s) = log p(x_s) + |u_s|^2 / 2 + const`` smoothed by Pareto
   smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry, "Pareto smoothed
   importance sampling", JMLR 25(72), 2024; :func:`arviz_stats.base.array_stats.psislw`).
   Its shape estimate ``k-hat`` says whether the approximation can be trusted: below
   0.5 the corrected posterior is reliable, 0.5-0.7 usable with care, above 0.7 the
   importance weights have too heavy a tail (the posterior is not close to Gaussian:
   small N, overlapping components, a mode on a boundary) and NUTS is needed.
5. **Resampling.** ``draws`` draws are resampled from the ``draws`` proposals with the
   smoothed weights (systematic resampling: each proposal appears ``floor(S w_s)`` or
   ``ceil(S w_s)`` times), so that every tool that reads unweighted posterior draws
   (summaries, plots, predictions, LOO) reads the corrected posterior.

The importance-sampling effective sample size ``1 / sum_s w_s^2`` of the smoothed,
normalised weights (out of ``draws``) is reported with k-hat.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from bayesmix.exceptions import FitError
from bayesmix.nuts.laplace import negative_hessian

__all__ = [
    "KHAT_GOOD",
    "KHAT_MAX",
    "LaplaceResult",
    "Target",
    "approximate",
    "correct",
    "difference_derivatives",
    "difference_points",
    "find_mode",
    "fused_target",
    "newton_mode",
    "pymc_target",
    "smoothed_log_weights",
    "systematic_resample",
]

_log = logging.getLogger("bayesmix")

# Pareto k-hat thresholds (Vehtari et al. 2024): below KHAT_GOOD the importance-sampling
# estimate is reliable; above KHAT_MAX it is not (too few effective draws, whatever S).
KHAT_GOOD = 0.5
KHAT_MAX = 0.7

LogDensity = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class LaplaceResult:
    """The Laplace approximation and its importance-sampling correction.

    Attributes
    ----------
    mode : ndarray of shape (P,)
        The mode of the log posterior on the unconstrained scale.
    log_density_at_mode : float
    factor : ndarray of shape (P, P)
        ``F`` with ``F F^T`` the inverse negative Hessian at the mode.
    proposals : ndarray of shape (S, P)
        The draws ``mode + F u_s`` from the approximation.
    log_density : ndarray of shape (S,)
        The exact log posterior of every proposal.
    log_ratios : ndarray of shape (S,)
        ``log p(x_s) - log q(x_s)`` up to a constant.
    log_weights : ndarray of shape (S,)
        Pareto-smoothed, normalised log importance weights (their logsumexp is 0).
    khat : float
        Pareto shape estimate of the ratios' upper tail.
    ess : float
        Importance-sampling effective sample size ``1 / sum w_s^2``.
    resampled : ndarray of shape (S,)
        Indices into ``proposals`` of the resampled draws (sorted).
    optimizer : dict
        ``n_iter``, ``n_eval``, ``grad_norm`` (the largest absolute gradient entry at the
        mode), ``converged``, ``message`` and ``seconds`` of each phase.
    """

    mode: np.ndarray
    log_density_at_mode: float
    factor: np.ndarray
    proposals: np.ndarray
    log_density: np.ndarray
    log_ratios: np.ndarray
    log_weights: np.ndarray
    khat: float
    ess: float
    resampled: np.ndarray
    optimizer: dict = field(default_factory=dict)


def find_mode(
    logp_dlogp: LogDensity, start: np.ndarray, *, max_iter: int = 2000
) -> tuple[np.ndarray, float, dict]:
    """Return ``(mode, log density there, optimiser report)`` by L-BFGS from ``start``.

    The gradient tolerance is relative to the gradient's size at the start (the log
    posterior of N rows has gradients of order N), but at most 1e-6 per coordinate: the
    Laplace draws are centred on the result, and PSIS corrects a small offset anyway.
    """
    start = np.asarray(start, dtype=np.float64)
    value, grad = logp_dlogp(start)
    if not (np.isfinite(value) and np.all(np.isfinite(grad))):
        raise FitError(
            f"the log posterior is not finite at the EM start (log density {value}); "
            "the Laplace approximation needs a finite start. Try method='nuts', or "
            "objective='map' for the EM start."
        )

    def negative(x: np.ndarray) -> tuple[float, np.ndarray]:
        lp, g = logp_dlogp(x)
        if not np.isfinite(lp):  # outside the support: L-BFGS backtracks
            return np.inf, np.zeros_like(x)
        return -float(lp), -np.asarray(g, dtype=np.float64)

    gtol = min(1e-6, 1e-10 * max(1.0, float(np.abs(grad).max())))
    result = optimize.minimize(
        negative,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": gtol, "ftol": 1e-15, "maxcor": 30},
    )
    mode = np.asarray(result.x, dtype=np.float64)
    value, grad = logp_dlogp(mode)
    report = {
        "n_iter": int(result.nit),
        "n_eval": int(result.nfev),
        "grad_norm": float(np.abs(grad).max()),
        "converged": bool(result.success),
        "message": str(result.message),
    }
    return mode, float(value), report


def smoothed_log_weights(log_ratios: np.ndarray) -> tuple[np.ndarray, float]:
    """Return PSIS's normalised log weights of independent draws, and k-hat.

    :func:`arviz_stats.base.array_stats.psislw` with ``r_eff=1`` (the proposals are
    independent). It smooths the weights ``exp(-a)`` of its argument ``a`` (made for
    LOO, where ``a`` is the log-likelihood): the log ratios go in negated, as in
    arviz-stats' own ``loo_kfold``/LFO code.
    """
    from arviz_stats.base import array_stats

    negated = -np.asarray(log_ratios, dtype=np.float64)
    log_weights, khat = array_stats.psislw(negated, r_eff=1.0)
    return np.asarray(log_weights, dtype=np.float64), float(khat)


def systematic_resample(log_weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` sorted indices drawn by systematic resampling from normalised weights.

    Index ``s`` appears ``floor(n w_s)`` or ``ceil(n w_s)`` times: the least variable
    unbiased resampling (Douc, Cappé & Moulines 2005).
    """
    weights = np.exp(log_weights - log_weights.max())
    cumulative = np.cumsum(weights / weights.sum())
    cumulative[-1] = 1.0
    positions = (rng.random() + np.arange(n)) / n
    return np.searchsorted(cumulative, positions, side="right").astype(np.int64)


def approximate(
    logp_dlogp: LogDensity,
    start: np.ndarray,
    *,
    draws: int,
    rng: np.random.Generator,
    batch_log_density: Callable[[np.ndarray], np.ndarray] | None = None,
) -> LaplaceResult:
    """Run the five steps of the module docstring from ``start`` (data in memory).

    Parameters
    ----------
    logp_dlogp : callable
        ``x -> (log posterior, gradient)`` on the unconstrained scale.
    start : ndarray of shape (P,)
        Where the mode search starts (the EM estimate).
    draws : int
        Number of proposals, and of resampled draws.
    rng : numpy.random.Generator
    batch_log_density : callable, optional
        ``(S, P) -> (S,)``: the log posterior of many points in one pass over the data.
        By default ``logp_dlogp`` is called once per point.
    """
    clock = time.perf_counter()
    mode, at_mode, report = find_mode(logp_dlogp, start)
    report["seconds"] = {"mode": time.perf_counter() - clock}
    clock = time.perf_counter()
    hessian = negative_hessian(lambda x: logp_dlogp(x)[1], mode)
    report["seconds"]["hessian"] = time.perf_counter() - clock
    if batch_log_density is None:

        def batch_log_density(points: np.ndarray) -> np.ndarray:
            return np.array([logp_dlogp(x)[0] for x in points], dtype=np.float64)

    return correct(mode, at_mode, hessian, batch_log_density, draws=draws, rng=rng, report=report)


def correct(
    mode: np.ndarray,
    at_mode: float,
    hessian: np.ndarray,
    batch_log_density: Callable[[np.ndarray], np.ndarray],
    *,
    draws: int,
    rng: np.random.Generator,
    report: dict,
) -> LaplaceResult:
    """Run steps 3-5 of the module docstring: draws, their exact density, PSIS, resampling.

    ``hessian`` is the negative Hessian at ``mode``; ``batch_log_density`` evaluates the
    log posterior of all the draws (one pass over the data); ``report`` describes how the
    mode was found (see :class:`LaplaceResult`).
    """
    factor = _inverse_root(hessian, report)
    u = rng.standard_normal((draws, mode.size))
    proposals = mode + u @ factor.T
    clock = time.perf_counter()
    log_density = np.asarray(batch_log_density(proposals), dtype=np.float64)
    seconds = report.setdefault("seconds", {})
    seconds["log_density"] = time.perf_counter() - clock
    # Points outside the support (log density -inf) get weight 0; NaN is a bug upstream.
    if np.isnan(log_density).any():
        raise FitError(
            f"the log posterior is NaN at {int(np.isnan(log_density).sum())} of {draws} "
            "Laplace draws; this is a bug in the model's log density. Use method='nuts'."
        )
    log_ratios = log_density + 0.5 * np.einsum("sp,sp->s", u, u)
    log_weights, khat = smoothed_log_weights(log_ratios)
    if not np.isfinite(khat):  # every ratio equal (an exactly Gaussian posterior)
        khat = float(-np.inf)
    resampled = systematic_resample(log_weights, draws, rng)
    weights = np.exp(log_weights)
    ess = 1.0 / float(np.sum(weights**2))
    report["seconds"] = {key: round(value, 4) for key, value in seconds.items()}
    _log.info(
        "Laplace + PSIS: mode after %d iterations (largest gradient %.2g), k-hat %.3f, "
        "importance ESS %.0f of %d draws",
        report["n_iter"],
        report["grad_norm"],
        khat,
        ess,
        draws,
    )
    return LaplaceResult(
        mode=mode,
        log_density_at_mode=at_mode,
        factor=factor,
        proposals=proposals,
        log_density=log_density,
        log_ratios=log_ratios,
        log_weights=log_weights,
        khat=khat,
        ess=ess,
        resampled=resampled,
        optimizer=report,
    )


def difference_points(x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Return the ``1 + 2 P^2`` points of central differences around ``x``.

    Row 0 is ``x``; then ``x + s_i e_i`` and ``x - s_i e_i`` for every ``i``; then the four
    points ``x +- s_i e_i +- s_j e_j`` for every pair ``i < j``. With their log densities,
    :func:`difference_derivatives` gives the gradient and the negative Hessian, so one
    batched pass over the data gives both.
    """
    p = x.size
    rows = [x]
    for i in range(p):
        for sign in (1.0, -1.0):
            point = x.copy()
            point[i] += sign * steps[i]
            rows.append(point)
    for i in range(p):
        for j in range(i + 1, p):
            for si, sj in ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)):
                point = x.copy()
                point[i] += si * steps[i]
                point[j] += sj * steps[j]
                rows.append(point)
    return np.array(rows)


def difference_derivatives(values: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(gradient, negative Hessian)`` from the values at :func:`difference_points`."""
    p = steps.size
    center = values[0]
    plus, minus = values[1 : 1 + 2 * p : 2], values[2 : 2 + 2 * p : 2]
    grad = (plus - minus) / (2.0 * steps)
    hessian = np.empty((p, p))
    hessian[np.diag_indices(p)] = -(plus - 2.0 * center + minus) / steps**2
    position = 1 + 2 * p
    for i in range(p):
        for j in range(i + 1, p):
            pp, pm, mp, mm = values[position : position + 4]
            position += 4
            hessian[i, j] = hessian[j, i] = -(pp - pm - mp + mm) / (4.0 * steps[i] * steps[j])
    return grad, hessian


def newton_mode(
    batch_log_density: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    *,
    max_passes: int = 8,
    tol: float = 1e-2,
) -> tuple[np.ndarray, float, np.ndarray, dict]:
    """Return ``(mode, log density, negative Hessian, report)`` from log densities only.

    For data read in passes (Dask): each Newton step costs one batched pass, which
    evaluates the ``1 + 2 P^2`` points of :func:`difference_points`. The first pass uses
    steps of ``1e-3 * max(1, |x_i|)``; later passes one conditional posterior sd,
    ``1 / sqrt(H_ii)``, where a log posterior that is close to quadratic (large N, the
    regime of the method) is measured without round-off trouble. A step that lowers the
    log density is halved (at most 10 times). Stops when the Newton step is shorter than
    ``tol`` posterior sds (``sqrt(d' H d)``); the curvature returned is that of the last
    pass, at the mode (PSIS corrects what the approximation misses).
    """
    x = np.asarray(start, dtype=np.float64).copy()
    steps = 1e-3 * np.maximum(1.0, np.abs(x))
    report = {"n_iter": 0, "n_eval": 0, "converged": False}
    previous = None  # (x, log density, direction, halvings) of the last accepted pass
    for n_pass in range(1, max_passes + 1):
        values = np.asarray(batch_log_density(difference_points(x, steps)), dtype=np.float64)
        report.update(n_iter=n_pass, n_eval=report["n_eval"] + values.size)
        if previous is not None and not values[0] >= previous[1]:  # overshot: halve
            x_old, value_old, direction, halvings = previous
            if halvings >= 10:
                x, at_x = x_old, value_old
                break
            previous = (x_old, value_old, direction, halvings + 1)
            x = x_old + 0.5 ** (halvings + 1) * direction
            continue
        if not np.all(np.isfinite(values)):
            raise FitError(
                "the log posterior is not finite around the EM start; the Laplace "
                "approximation needs a finite neighbourhood. Try method='em', or fit a "
                "sample in memory with method='nuts'."
            )
        grad, hessian = difference_derivatives(values, steps)
        at_x = float(values[0])
        report["grad_norm"] = float(np.abs(grad).max())
        diagonal = np.diag(hessian)
        if np.all(diagonal > 0):
            steps = 1.0 / np.sqrt(diagonal)
        try:
            direction = np.linalg.solve(hessian, grad)
        except np.linalg.LinAlgError:
            break
        length = float(np.sqrt(abs(direction @ hessian @ direction)))
        if length < tol:
            report["converged"] = True
            break
        previous = (x, float(values[0]), direction, 0)
        x = x + direction
    report["message"] = "converged" if report["converged"] else "stopped"
    return x, at_x, hessian, report


def _inverse_root(hessian: np.ndarray, report: dict) -> np.ndarray:
    """Return ``F`` with ``F F^T = hessian^{-1}``, or raise if there is no maximum."""
    if not np.all(np.isfinite(hessian)):
        raise FitError(
            "the curvature of the log posterior at its mode is not finite; there is no "
            "Laplace approximation. Use method='nuts'."
        )
    eigenvalues, vectors = np.linalg.eigh(hessian)
    top = float(eigenvalues.max(initial=0.0))
    if not eigenvalues.min() > 1e-12 * top:
        raise FitError(
            f"the log posterior has no strict maximum where L-BFGS stopped (smallest "
            f"curvature {eigenvalues.min():.3g}, largest {top:.3g}; optimiser: "
            f"{report['message']}, largest gradient {report['grad_norm']:.3g}): a flat "
            "or saddle direction, e.g. an empty component. The Laplace approximation "
            "does not apply; use method='nuts' (or fewer components)."
        )
    return np.ascontiguousarray(vectors / np.sqrt(eigenvalues))


# -- the log densities the engine reads ----------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A model's log posterior on the unconstrained scale, for :func:`approximate`.

    Attributes
    ----------
    start : ndarray of shape (P,)
        The EM estimate, unconstrained and flattened.
    logp_dlogp : callable
        ``x -> (log posterior, gradient)``.
    expand : callable
        ``x -> {name: constrained value}`` of every posterior variable.
    batch_log_density : callable or None
        ``(S, P) -> (S,)``: the log posterior of many points at once (one pass over the
        data for all of them), or None to call ``logp_dlogp`` per point.
    """

    start: np.ndarray
    logp_dlogp: LogDensity
    expand: Callable[[np.ndarray], dict[str, np.ndarray]]
    batch_log_density: Callable[[np.ndarray], np.ndarray] | None = None


def pymc_target(
    model: Any,
    start: Mapping[str, np.ndarray],
    names: Sequence[str],
    log_likelihood: Callable[[list[dict[str, np.ndarray]]], np.ndarray] | None = None,
) -> Target:
    """Return the :class:`Target` of a PyMC model (PyTensor's compiled functions).

    ``start`` holds constrained values of the free variables; ``names`` are the posterior
    variables that ``expand`` returns (free random variables and deterministics).

    ``log_likelihood``, if given, returns the (weighted) log-likelihood of many expanded
    points at once (a family's vectorised densities, a pass over the data for all of
    them): the target's ``batch_log_density`` is then that plus the log prior and the
    log Jacobians of the transforms (the model's free variables only, no data), which
    equals the model's log density when the likelihood is the model's only other term.
    """
    from bayesmix.nuts.sampler import unconstrained_point

    point = unconstrained_point(model, start)
    values = list(model.continuous_value_vars)
    shapes = [np.shape(point[v.name]) for v in values]
    sizes = [int(np.prod(shape)) for shape in shapes]
    flat = np.concatenate([point[v.name].ravel() for v in values])
    outputs = model.replace_rvs_by_values([model[name] for name in names])
    constrain = model.compile_fn(outputs, inputs=values, on_unused_input="ignore", point_fn=False)
    splits = np.cumsum(sizes)[:-1]

    @functools.cache
    def compiled() -> Any:  # on first use: data read in passes never need it
        function = model.logp_dlogp_function(ravel_inputs=True)
        function.set_extra_values({})
        return function

    def logp_dlogp(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = compiled()(np.asarray(x, dtype=np.float64))
        return float(value), np.asarray(grad, dtype=np.float64)

    def unpack(x: np.ndarray) -> list[np.ndarray]:
        return [p.reshape(s) for p, s in zip(np.split(x, splits), shapes, strict=True)]

    def expand(x: np.ndarray) -> dict[str, np.ndarray]:
        return {
            name: np.asarray(value)
            for name, value in zip(names, constrain(*unpack(x)), strict=True)
        }

    if log_likelihood is None:
        return Target(flat, logp_dlogp, expand)
    log_prior = model.compile_fn(
        model.logp(vars=model.free_RVs, jacobian=True),
        inputs=values,
        on_unused_input="ignore",
        point_fn=False,
    )

    def batch_log_density(points: np.ndarray) -> np.ndarray:
        prior = np.array([float(log_prior(*unpack(x))) for x in points])
        return prior + np.asarray(log_likelihood([expand(x) for x in points]), dtype=np.float64)

    return Target(flat, logp_dlogp, expand, batch_log_density)


def fused_target(
    target: Any, data: Mapping[str, np.ndarray], start: Mapping[str, np.ndarray]
) -> Target:
    """Return the :class:`Target` of a family's fused log density (its ``_nuts_target``)."""
    from bayesmix.nuts._target import kernel_data  # numba: only with a fused target

    shared = kernel_data(target, data)

    def logp_dlogp(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = target.logp_dlogp(x, **shared)
        return float(value), np.asarray(grad, dtype=np.float64)

    return Target(target.unconstrain(start), logp_dlogp, target.expand)
