r"""EM from sufficient statistics: the loop for data that come in chunks (Dask, files).

A family describes its EM as statistics (:class:`EMSteps`): ``statistics(X, w, weights,
params)`` returns a dictionary of arrays that *add up over chunks* -- at least
``"log_likelihood"`` (:math:`\sum_n w_n \log p(x_n)`), ``"weight"`` (:math:`\sum_n w_n`)
and ``"nk"`` (the weighted total responsibilities) -- and ``m_step(stats, weights, params,
data_pass)`` turns their sums into the next parameters. Each iteration is one data pass:
``data_pass(fn)`` applies ``fn(X_chunk, w_chunk)`` to every chunk and returns the sum of
the results (:mod:`bayesmix.dask` sums them with a tree reduction; in memory it is
``fn(X, w)``). An M-step may ask for a second pass
(the Gaussian family does when its one-pass scatter might have cancelled). The iterations,
restarts, warnings and the result are those of every other EM fit
(:func:`bayesmix.em.loop.converge` and :func:`bayesmix.em.loop._fit_restarts`), so a chunked
fit from the same start follows the in-memory one to rounding.

The starting point is computed from rows drawn by ``rows(indices)`` (``indices=None``: all
of them); families draw at most :data:`INIT_SAMPLE` rows, as mclust initialises large data
sets on a random subset.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bayesmix.em.loop import EMResult, _fit_restarts, _Restart, _restart_plan, converge
from bayesmix.exceptions import FitError

__all__ = [
    "INIT_SAMPLE",
    "EMSteps",
    "OnlineEM",
    "fit_chunked",
    "in_memory_pass",
    "sample_indices",
]

logger = logging.getLogger("bayesmix")

# Largest number of rows the starting point of a chunked fit is computed from (the
# in-memory Gaussian EM seeds on a subsample of the same size).
INIT_SAMPLE = 2**16

# statistics(X_chunk, w_chunk or None, weights, params) -> additive dict
Statistics = Callable[[np.ndarray, np.ndarray | None], dict]
# data_pass(fn) -> the sum over chunks of fn(X_chunk, w_chunk)
DataPass = Callable[[Statistics], dict]
# rows(sorted indices or None) -> (X rows, w rows or None), in memory
Rows = Callable[[np.ndarray | None], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class EMSteps:
    """A family's EM as sufficient statistics (internal contract of the chunked EM).

    Attributes
    ----------
    family : str
        Registry name, e.g. ``"gaussian"``.
    statistics : callable
        ``statistics(X, w, weights, params) -> dict``: the E-step statistics of one chunk
        (``w`` None for unit weights); values add up over chunks and hold
        ``"log_likelihood"``, ``"weight"`` and ``"nk"``.
    m_step : callable
        ``m_step(stats, weights, params, data_pass) -> (weights, params)``.
    initialise : callable
        ``initialise(rows, n_samples, rng, partition) -> (weights, params)``: the start
        from a partition of :func:`bayesmix.em.init.initial_labels` (``"k-means++"`` or
        ``"random"``) of the rows drawn by ``rows``.
    log_prior : callable or None
        ``log_prior(weights, params)`` for ``objective="map"``, None for maximum likelihood.
    centre, recentre : callable or None
        For statistics taken about the current parameters (the Gaussian sums about the
        means): ``centre(stats, params)`` returns ``params`` with the means moved to the
        statistics' own weighted means, ``recentre(stats, old, new)`` the statistics
        about ``new`` instead of ``old``. None when the statistics do not depend on the
        parameters. Used by :class:`OnlineEM`.
    online : bool
        Whether the statistics of later batches can be blended in (False when they are
        defined on what the first data pass saw, as the negative binomial's histograms
        over the distinct counts).
    objective : str
    covariance_type : str or None
    degenerate : callable or None
        ``degenerate(weights, params, total_weight) -> {component: what was found}``: the
        family's check for spurious maxima of an unbounded likelihood (see
        :func:`bayesmix.em.loop._fit_restarts`); None when the likelihood is bounded.
    degenerate_advice : str
        What the degenerate-fit warning advises.
    """

    family: str
    statistics: Callable[[np.ndarray, np.ndarray | None, np.ndarray, dict], dict]
    m_step: Callable[[dict, np.ndarray, dict, DataPass], tuple[np.ndarray, dict]]
    initialise: Callable[[Rows, int, np.random.Generator, str], tuple[np.ndarray, dict]]
    log_prior: Callable[[np.ndarray, dict], float] | None = None
    centre: Callable[[dict, dict], dict] | None = None
    recentre: Callable[[dict, dict, dict], dict] | None = None
    online: bool = True
    objective: str = "ml"
    covariance_type: str | None = None
    degenerate: Callable[[np.ndarray, dict, float], dict[int, str]] | None = None
    degenerate_advice: str = 'Use objective="map", fewer components or a larger n_init.'


def in_memory_pass(X: np.ndarray, sample_weight: np.ndarray | None = None) -> DataPass:
    """Return the data pass of one in-memory chunk (``fn(X, sample_weight)``)."""
    return lambda fn: fn(X, sample_weight)


def sample_indices(
    n_samples: int, rng: np.random.Generator, size: int = INIT_SAMPLE
) -> np.ndarray | None:
    """Sorted indices of ``size`` rows drawn without replacement, or None for all rows.

    The draw is the in-memory Gaussian EM's (``rng.choice(n_samples, size,
    replace=False)``), so that both start from the same rows.
    """
    if n_samples <= size:
        return None
    return np.sort(rng.choice(n_samples, size=size, replace=False))


def _objective(steps: EMSteps, stats: dict, weights: np.ndarray, params: dict) -> float:
    """Mean log-likelihood (ML) or mean log posterior (MAP) from summed statistics."""
    total_weight = float(stats["weight"])
    value = float(stats["log_likelihood"]) / total_weight
    if steps.log_prior is not None:
        value += steps.log_prior(weights, params) / total_weight
    return value


def fit_chunked(
    steps: EMSteps,
    data_pass: DataPass,
    rows: Rows,
    n_samples: int,
    *,
    n_init: int,
    max_iter: int,
    tol: float,
    rng: np.random.Generator,
    label: str | None = None,
    init: str = "k-means++",
) -> EMResult:
    """Run ``n_init`` restarts of EM over a chunked data set; return the best.

    Parameters
    ----------
    steps : EMSteps
        The family's statistics and M-step.
    data_pass : callable
        ``data_pass(fn)``: the sum of ``fn(X_chunk, w_chunk)`` over the chunks.
    rows : callable
        ``rows(indices)``: the rows at the sorted ``indices`` (all rows for None), in memory.
    n_samples : int
        Number of rows.
    n_init, max_iter, tol : int, int, float
        As for every EM fit; restarts are compared on the full data.
    rng : numpy.random.Generator
        Seeds the initialisations.
    label : str, optional
        Name of the fit in messages (default ``"<family> EM"``).
    init : {"k-means++", "random", "emem"}, default="k-means++"
        How the restarts start (:func:`bayesmix.em.loop._restart_plan`); the short runs of
        ``"emem"`` are data passes too.

    Returns
    -------
    EMResult
    """
    label = f"{steps.family} EM" if label is None else label
    total_weight: list[float] = []

    def statistics_at(weights: np.ndarray, params: dict) -> dict:
        fn = functools.partial(_call_statistics, steps.statistics, weights, params)
        return data_pass(fn)

    def start(partition: str) -> tuple[np.ndarray, dict]:
        try:
            return steps.initialise(rows, n_samples, rng, partition)
        except FitError as err:
            raise FitError(f"initialisation: {err}") from err

    def run(
        weights: np.ndarray, params: dict, iterations: int, tolerance: float, name: str
    ) -> _Restart:
        def step(n_iter: int, weights: np.ndarray, params: dict):
            stats = statistics_at(weights, params)
            if not total_weight:
                total_weight.append(float(stats["weight"]))
            value = _objective(steps, stats, weights, params)
            if not np.isfinite(value):
                raise FitError(
                    f"{name}, iteration {n_iter}: the objective is not finite ({value}): "
                    "some sample has zero probability under every component, or the data "
                    "are too large in magnitude. Try objective='map', fewer components or "
                    "another n_init."
                )
            weights, params = steps.m_step(stats, weights, params, data_pass)
            return value, weights, params, False

        def objective(weights: np.ndarray, params: dict) -> float:
            return _objective(steps, statistics_at(weights, params), weights, params)

        run = converge(
            step,
            weights,
            params,
            max_iter=iterations,
            tol=tolerance,
            name=name,
            objective=objective,
        )
        # The log-likelihood is evaluated for the best restart only.
        return run.restart(np.nan, total_weight[0] if total_weight else float(n_samples))

    degenerate = None
    if steps.degenerate is not None:

        def degenerate(run: _Restart) -> dict[int, str]:
            return steps.degenerate(run.weights, run.params, run.n_samples)

    run_restart = _restart_plan(
        start,
        run,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        label=label,
        degenerate=degenerate,
    )

    def log_likelihood(best: _Restart) -> float:
        stats = statistics_at(best.weights, best.params)
        return float(stats["log_likelihood"]) / float(stats["weight"])

    return _fit_restarts(
        run_restart,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        family=steps.family,
        objective=steps.objective,
        covariance_type=steps.covariance_type,
        stacklevel=4,  # _fit_restarts, fit_chunked, the model's fit, the caller
        label=label,
        log_likelihood=log_likelihood,
        degenerate=degenerate,
        degenerate_advice=steps.degenerate_advice,
    )


def _call_statistics(statistics, weights, params, X, w):
    """``statistics(X, w, weights, params)`` (a module-level function: it pickles)."""
    return statistics(X, w, weights, params)


# ---------------------------------------------------------------------------------------
# Stepwise online EM (partial_fit)


def _combine(stats: dict, batch: dict, step: float) -> dict:
    """``(1 - step) stats + step batch``, key by key."""
    return {key: (1.0 - step) * stats[key] + step * batch[key] for key in stats}


def _scaled(stats: dict, factor: float) -> dict:
    return {key: value * factor for key, value in stats.items()}


class OnlineEM:
    r"""Stepwise online EM over batches (Cappé & Moulines 2009).

    The state is a running average :math:`\bar s_t` of the E-step statistics per unit
    weight: for batch :math:`t` with statistics :math:`S_t` (at the current parameters)
    and total weight :math:`W_t`, :math:`\bar s_t = (1 - \gamma_t) \bar s_{t-1} +
    \gamma_t S_t / W_t` with step size :math:`\gamma_t = (t + 2)^{-\kappa}`
    (:math:`\bar s_0 = S_0 / W_0`), and the parameters are the M-step of
    :math:`\bar s_t` scaled to the weight seen so far (which matters only for MAP: the
    prior then weighs as much as against a batch fit of that many rows). With
    :math:`\kappa \in (0.5, 1]` the parameters converge to a stationary point of the
    expected log-likelihood of the data stream; :math:`\kappa = 1` averages all batches
    equally. Statistics that depend on the parameters (the Gaussian sums about the
    current means) are moved to the new parameters after every step (``steps.recentre``).

    References
    ----------
    .. [1] O. Cappé and E. Moulines, "On-line expectation-maximization algorithm for
       latent data models", *Journal of the Royal Statistical Society B*, 71(3),
       593-613, 2009.
    """

    def __init__(
        self,
        steps: EMSteps,
        weights: np.ndarray,
        params: dict,
        *,
        kappa: float,
    ) -> None:
        self.steps = steps
        self.weights = weights
        self.params = params
        self.kappa = kappa
        self.n_updates = 0
        self.seen = 0.0
        self.stats: dict | None = None
        self.trace: list[float] = []

    def prime(self, X: np.ndarray, w: np.ndarray | None, log_likelihood: float) -> None:
        """Start the running average at the statistics of ``X`` (no M-step).

        For a first batch that EM has already been fitted to: the parameters stay the
        batch estimate, and later batches are blended into its statistics.
        """
        stats = self.steps.statistics(X, w, self.weights, self.params)
        self.seen = float(stats["weight"])
        self.stats = _scaled(stats, 1.0 / self.seen)
        self.n_updates = 1
        self.trace.append(float(log_likelihood))

    def update(self, X: np.ndarray, w: np.ndarray | None) -> None:
        """One step on the batch ``X`` (weights ``w``): E-step statistics, blend, M-step."""
        batch = self.steps.statistics(X, w, self.weights, self.params)
        weight = float(batch["weight"])
        batch = _scaled(batch, 1.0 / weight)
        step = 1.0 if self.stats is None else (self.n_updates + 2.0) ** -self.kappa
        stats = batch if self.stats is None else _combine(self.stats, batch, step)
        params = self.params
        if self.steps.centre is not None:  # sums about their own means: no cancellation
            params = self.steps.centre(stats, params)
            stats = self.steps.recentre(stats, self.params, params)
        seen = self.seen + weight
        value = float(stats["log_likelihood"])
        if not np.isfinite(value):
            raise FitError(
                f"online EM, batch {self.n_updates + 1}: the running mean log-likelihood is "
                f"not finite ({value}): a sample has zero probability under every component. "
                "Try objective='map' or fewer components."
            )
        weights, new_params = self.steps.m_step(
            _scaled(stats, seen), self.weights, params, in_memory_pass(X, w)
        )
        if self.steps.recentre is not None:
            stats = self.steps.recentre(stats, params, new_params)
        self.weights, self.params, self.stats, self.seen = weights, new_params, stats, seen
        self.n_updates += 1
        self.trace.append(value)

    def result(self) -> EMResult:
        """Return the current estimate as an :class:`EMResult` (``n_iter``: batches seen)."""
        trace = np.asarray(self.trace, dtype=np.float64)
        return EMResult(
            weights=self.weights,
            params=self.params,
            family=self.steps.family,
            log_likelihood=float(trace[-1]),
            lower_bounds=trace,
            n_iter=self.n_updates,
            converged=False,
            best_init=0,
            init_log_likelihoods=trace[-1:],
            objective=self.steps.objective,
            covariance_type=self.steps.covariance_type,
        )
