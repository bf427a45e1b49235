r"""The one EM loop of every family: iterate, converge, restart, warn, one result type.

A family hands the loop its steps (:func:`_iterate` takes ``e_step(weights, params) ->
(objective, mean log-likelihood, responsibilities, cache)`` and ``m_step(resp, cache,
weights, params) -> (weights, params)``); :func:`_fit_restarts` runs ``n_init`` restarts
of a family's ``run_restart(init)``, keeps the best, warns and packages a
:class:`EMResult`. The families' E- and M-steps live in their own modules
(:mod:`bayesmix.families`), the seeding in :mod:`bayesmix.em.init`.

**E-step** (all families). The responsibilities
:math:`r_{nk} = \pi_k f(x_n \mid \theta_k) / p(x_n)` are computed in log space
(:func:`_log_responsibilities`) from the family's per-component log densities (the same
functions the fitted models use), together with the (weighted) mean log-likelihood
:math:`\sum_n w_n \log p(x_n) / \sum_n w_n`. A family's E-step may return more (the
Student-t one returns the latent precision weights its ECM needs) through the ``cache``
that the loop hands to its M-step unchanged.

**Objective, restarts, degenerate cases.** The monitored objective (``lower_bounds``) is
the mean log-likelihood for ``"ml"`` and the mean log posterior
``(log-likelihood + log prior) / N`` (normalised prior densities) for ``"map"``; the loop
stops when it changes by less than ``tol``. Each restart starts from a partition of ``X``
(:mod:`bayesmix.em.init`): every sample is hard-assigned to its nearest k-means++ seed
(Arthur & Vassilvitskii 2007) or its nearest of ``K`` random rows, and the first
parameters are the M-step of that assignment. Which partitions, and how many
(:func:`_restart_plan`): ``init="k-means++"`` (scikit-learn's start; the fit functions'
default) or ``"random"`` start every one of the ``n_init`` restarts afresh;
``init="emem"`` (the estimators' default; Biernacki, Celeux & Govaert 2003 [10]_) screens
``8 * n_init`` short runs (to a change below 1e-3) and continues the best ``n_init``,
which reaches the best known optimum more often (``bench/results/em_init.md``). For
counts and binary data the hard responsibilities are
softened to ``0.9 * one-hot + 0.1 / K``, so that no rate or probability starts on the
absorbing boundary 0 or 1 (a zero maximum-likelihood rate stays zero for ever) and no
component starts empty; the Student-t starts from the Gaussian moments of the hard
assignment and ``nu = 10`` (clipped into ``dof_bounds``), softened the same way only if a
seed received no sample. The restart with the highest final objective is returned, among
the sound ones: a family whose likelihood is unbounded (Gaussian and Student-t, maximum
likelihood) calls a restart *degenerate* when a component has fewer effective points than
its covariance needs (``D + 1``, full) or a variance below 1e-6 of the data's, and keeps
one only when every restart is (then a :class:`~bayesmix.exceptions.ConvergenceWarning`
names the components, says what was found and recommends ``objective="map"``). A
component whose total responsibility drops below ``1e-8`` samples keeps its previous
parameters (maximum likelihood) or the prior mode (MAP) with a vanishing weight, and a
:class:`~bayesmix.exceptions.ConvergenceWarning` says so; the same warning is issued when
the best restart did not reach ``tol`` within ``max_iter`` iterations. Components are not
sorted. The fit functions run with a single BLAS thread (``bayesmix._threads``): their
matrix operations are tiny, and BLAS threads only contend on them.

References
----------
.. [1] A. P. Dempster, N. M. Laird and D. B. Rubin, "Maximum likelihood from incomplete
   data via the EM algorithm", *Journal of the Royal Statistical Society B*, 39(1),
   1-38, 1977.
.. [2] G. J. McLachlan and D. Peel, *Finite Mixture Models*, Wiley, 2000 (chapter 7:
   mixtures of t distributions).
.. [3] D. Peel and G. J. McLachlan, "Robust mixture modelling using the t distribution",
   *Statistics and Computing*, 10, 339-348, 2000.
.. [4] C. Liu and D. B. Rubin, "ML estimation of the t distribution using EM and its
   extensions, ECM and ECME", *Statistica Sinica*, 5, 19-39, 1995.
.. [5] X.-L. Meng and D. B. Rubin, "Maximum likelihood estimation via the ECM algorithm: a
   general framework", *Biometrika*, 80(2), 267-278, 1993.
.. [6] P. F. Lazarsfeld and N. W. Henry, *Latent Structure Analysis*, Houghton Mifflin,
   1968; L. A. Goodman, "Exploratory latent structure analysis using both identifiable
   and unidentifiable models", *Biometrika*, 61(2), 215-231, 1974.
.. [7] D. Karlis and E. Xekalaki, "Mixed Poisson distributions", *International
   Statistical Review*, 73(1), 35-58, 2005.
.. [8] M. A. T. Figueiredo and A. K. Jain, "Unsupervised learning of finite mixture
   models", *IEEE Transactions on Pattern Analysis and Machine Intelligence*, 24(3),
   381-396, 2002.
.. [9] D. Arthur and S. Vassilvitskii, "k-means++: the advantages of careful seeding",
   *Proceedings of the 18th ACM-SIAM Symposium on Discrete Algorithms*, 1027-1035, 2007.
.. [10] C. Biernacki, G. Celeux and G. Govaert, "Choosing starting values for the EM
   algorithm for getting the highest likelihood in multivariate Gaussian mixture
   models", *Computational Statistics & Data Analysis*, 41(3-4), 561-575, 2003.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
from scipy.special import gammaln, xlogy

from bayesmix._numeric import logsumexp
from bayesmix.exceptions import ConvergenceWarning, FitError, InvalidParameterError

__all__ = ["INITS", "OBJECTIVES", "EMResult", "MixtureEMResult"]

logger = logging.getLogger("bayesmix")

OBJECTIVES: tuple[str, ...] = ("ml", "map")

# How the restarts start (see _restart_plan): emEM, or every restart from one kind of
# partition of bayesmix.em.init.
INITS: tuple[str, ...] = ("emem", "k-means++", "random")
# emEM: per restart run to convergence, this many short runs are screened ...
_EMEM_CANDIDATES = 8
# ... of at most this many iterations each, stopped earlier when the objective changes by
# less than this (scikit-learn's default tol; or the fit's tol, if larger), ...
_EMEM_SHORT_ITER = 50
_EMEM_SHORT_TOL = 1e-3
# ... started from these partitions in turn.
_EMEM_PARTITIONS: tuple[str, ...] = ("k-means++", "random")

_EPS = np.finfo(np.float64).eps
# A component whose total responsibility is below this many samples is empty.
_EMPTY_MASS = 1e-8


# The component parameters of a Gaussian result before the one result type (bayesmix
# <= 0.1 saved them at the top level of the dictionary).
_LEGACY_GAUSSIAN_PARAMS = ("means", "covariances", "precisions_cholesky")


@dataclass(frozen=True, eq=False)
class EMResult:
    """Outcome of an EM fit of any family: the best restart's parameters and diagnostics.

    Component parameters are also attributes: ``result.means`` is
    ``result.params["means"]``.

    Attributes
    ----------
    weights : numpy.ndarray of shape (n_components,)
        Mixing proportions; they sum to one.
    params : dict of str to numpy.ndarray
        Component parameters, component axis first: ``{"means": (K, D), "covariances":
        scikit-learn's shape for the covariance type, "precisions_cholesky": same shape}``
        (Gaussian), ``{"rates": (K, D)}`` (Poisson), ``{"probs": (K, D)}`` (Bernoulli),
        ``{"means", "covariances" (scale matrices), "dof": (K,)}`` (Student-t), ...
    family : str
        The family's name, e.g. ``"gaussian"``, ``"poisson"``, ``"student_t"``.
    log_likelihood : float
        Mean log-likelihood per sample (weighted by ``sample_weight`` when given) at the
        returned parameters, without any log prior.
    lower_bounds : numpy.ndarray of shape (n_iter,)
        The objective of every iteration of the best restart (mean log-likelihood for
        ``"ml"``, mean log posterior for ``"map"``).
    n_iter : int
    converged : bool
    best_init : int
    init_log_likelihoods : numpy.ndarray of shape (n_init,)
        Final objective of every restart; ``-inf`` for a restart that failed.
    objective : str, default="ml"
    covariance_type : str or None, default=None
        Gaussian and Student-t: the covariance parameterisation.
    """

    weights: np.ndarray
    params: dict
    family: str
    log_likelihood: float
    lower_bounds: np.ndarray
    n_iter: int
    converged: bool
    best_init: int
    init_log_likelihoods: np.ndarray
    objective: str = "ml"
    covariance_type: str | None = None

    def __getattr__(self, name: str) -> np.ndarray:
        # Only called when normal lookup fails: the component parameters by name.
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict:
        """Return the result as plain Python lists and scalars (JSON-serialisable, exact)."""
        out = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "params":
                value = {key: np.asarray(v).tolist() for key, v in value.items()}
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, np.generic):
                value = value.item()
            out[field.name] = value
        return out

    def reordered(self, order: np.ndarray) -> EMResult:
        """Return this result with its components in ``order``.

        Every component parameter is permuted on its first axis, except the matrices that
        all components share (``covariance_type="tied"``).
        """
        shared = self.covariance_type == "tied"
        params = {
            name: value
            if (shared and name in ("covariances", "precisions_cholesky"))
            else np.asarray(value)[order]
            for name, value in self.params.items()
        }
        return replace(self, weights=self.weights[order], params=params)

    @classmethod
    def from_dict(cls, data: dict) -> EMResult:
        """Rebuild a result written by :meth:`to_dict` (also bayesmix 0.1's Gaussian layout)."""
        data = dict(data)
        if "params" not in data:  # a Gaussian result saved by bayesmix 0.1
            data["params"] = {key: data.pop(key) for key in _LEGACY_GAUSSIAN_PARAMS}
            data["family"] = "gaussian"
        data["params"] = {
            key: np.asarray(value, dtype=np.float64) for key, value in data["params"].items()
        }
        for key in ("weights", "lower_bounds", "init_log_likelihoods"):
            data[key] = np.asarray(data[key], dtype=np.float64)
        return cls(**data)


# The name of the result type of the non-Gaussian families before there was one.
MixtureEMResult = EMResult


# ---------------------------------------------------------------------------------------
# Argument checks


def _check_arguments(
    X: np.ndarray,
    n_components: int,
    n_init: int,
    max_iter: int,
    tol: float,
    objective: str,
    init: str = "k-means++",
) -> None:
    """Raise :class:`InvalidParameterError` for arguments the fit functions cannot use."""
    if init not in INITS:
        raise InvalidParameterError(f"init must be one of {INITS}, got {init!r}.")
    if X.ndim != 2:
        raise InvalidParameterError(
            f"X must be a 2-D array (n_samples, n_features), got shape {X.shape}."
        )
    if objective not in OBJECTIVES:
        raise InvalidParameterError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
    n_samples = X.shape[0]
    if not 1 <= n_components <= n_samples:
        raise InvalidParameterError(
            f"n_components must be between 1 and the number of samples ({n_samples}), got "
            f"{n_components}."
        )
    if n_init < 1:
        raise InvalidParameterError(f"n_init must be at least 1, got {n_init}.")
    if max_iter < 0:
        raise InvalidParameterError(f"max_iter must be non-negative, got {max_iter}.")
    if not tol >= 0.0:
        raise InvalidParameterError(f"tol must be non-negative, got {tol}.")


# ---------------------------------------------------------------------------------------
# Component log densities


# ---------------------------------------------------------------------------------------
# Shared EM machinery


@dataclass
class _Restart:
    """Parameters and trace of one restart (internal)."""

    weights: np.ndarray
    params: dict[str, np.ndarray]
    lower_bound: float
    lower_bounds: list[float]
    n_iter: int
    converged: bool
    last_change: float
    log_likelihood: float
    n_samples: int


# e_step(weights, params) -> (objective, mean log-likelihood, responsibilities, cache)
_EStep = Callable[[np.ndarray, dict], tuple[float, float, np.ndarray, object]]
# m_step(responsibilities, cache, weights, params) -> (weights, params)
_MStep = Callable[[np.ndarray, object, np.ndarray, dict], tuple[np.ndarray, dict]]


def _log_responsibilities(
    log_prob: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``log p(x_n)`` (N,) and the log responsibilities (N, K), in log space."""
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    weighted = log_prob + log_weights
    log_norm = logsumexp(weighted, axis=1)
    with np.errstate(under="ignore", invalid="ignore"):
        log_resp = weighted - log_norm[:, np.newaxis]
    return log_norm, log_resp


# step(n_iter, weights, params) -> (objective at (weights, params), new weights, new
# params, whether to skip the convergence test after this step, e.g. a re-initialisation)
_Step = Callable[[int, np.ndarray, dict], tuple[float, np.ndarray, dict, bool]]


@dataclass
class _Converged:
    """What :func:`converge` returns: the last parameters and the objective trace."""

    weights: np.ndarray
    params: dict
    lower_bound: float
    lower_bounds: list[float]
    n_iter: int
    converged: bool
    last_change: float

    def restart(self, log_likelihood: float, n_samples: float) -> _Restart:
        """Return this run as a :class:`_Restart`, with its log-likelihood and weight."""
        return _Restart(
            weights=self.weights,
            params=self.params,
            lower_bound=self.lower_bound,
            lower_bounds=self.lower_bounds,
            n_iter=self.n_iter,
            converged=self.converged,
            last_change=self.last_change,
            log_likelihood=log_likelihood,
            n_samples=n_samples,
        )


def converge(
    step: _Step,
    weights: np.ndarray,
    params: dict,
    *,
    max_iter: int,
    tol: float,
    name: str,
    objective: Callable[[np.ndarray, dict], float],
) -> _Converged:
    """Run ``step`` until the objective changes by less than ``tol``: the one EM iteration loop.

    Every family's iteration goes through here. ``step`` computes the objective at the
    current parameters (its E-step) and returns it with the next parameters (its M-step);
    a step may ask to skip the convergence test (the Gaussian family does at an
    empty-component re-initialisation and the step after it, where the change of the
    objective is not an EM step). ``objective`` is only called for ``max_iter=0``.
    """
    lower_bound = -np.inf
    lower_bounds: list[float] = []
    change = np.inf
    converged = False
    n_iter = 0
    skipped_before = False
    if max_iter == 0:
        lower_bound = objective(weights, params)
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
        lower_bound, weights, params, skip = step(n_iter, weights, params)
        lower_bounds.append(lower_bound)
        change = lower_bound - previous
        logger.debug("%s, iteration %d: objective %.10g", name, n_iter, lower_bound)
        if not (skip or skipped_before) and abs(change) < tol:
            converged = True
            break
        skipped_before = skip
    return _Converged(
        weights=weights,
        params=params,
        lower_bound=float(lower_bound),
        lower_bounds=lower_bounds,
        n_iter=n_iter,
        converged=converged,
        last_change=float(change),
    )


def _iterate(
    e_step: _EStep,
    m_step_fn: _MStep,
    weights: np.ndarray,
    params: dict,
    *,
    max_iter: int,
    tol: float,
    name: str,
) -> _Restart:
    """Alternate a family's E- and M-steps (:func:`converge`) and evaluate the result."""

    def step(n_iter: int, weights: np.ndarray, params: dict):
        try:
            lower_bound, _, resp, cache = e_step(weights, params)
        except FitError as err:
            raise FitError(f"{name}, iteration {n_iter}: {err}") from err
        if not np.isfinite(lower_bound):
            raise FitError(
                f"{name}, iteration {n_iter}: the objective is not finite ({lower_bound}): "
                "some sample has zero probability under every component, or the data are "
                "too large in magnitude. Try objective='map' (a prior keeps rates and "
                "probabilities off the boundary), fewer components or another n_init."
            )
        weights, params = m_step_fn(resp, cache, weights, params)
        return lower_bound, weights, params, False

    run = converge(
        step,
        weights,
        params,
        max_iter=max_iter,
        tol=tol,
        name=name,
        objective=lambda w, p: e_step(w, p)[0],
    )
    try:
        _, log_likelihood, resp, _ = e_step(run.weights, run.params)
    except FitError as err:
        raise FitError(f"{name}, after iteration {run.n_iter}: {err}") from err
    # resp.sum() is the (weighted) number of samples.
    return run.restart(float(log_likelihood), float(resp.sum()))


# start(partition) -> (weights, params): a family's starting point from a partition of
# bayesmix.em.init.
_Start = Callable[[str], tuple[np.ndarray, dict]]
# run(weights, params, max_iter, tol, name) -> _Restart: a family's EM iterations from a
# start.
_Run = Callable[[np.ndarray, dict, int, float, str], _Restart]
# degenerate(restart) -> {component: what was found}: a family's check for spurious maxima
# of an unbounded likelihood (empty for a sound fit).
_Degenerate = Callable[[_Restart], dict[int, str]]


def _ranking(degenerate: _Degenerate | None) -> Callable[[_Restart], tuple[bool, float]]:
    """Sort key of runs, best first: sound before degenerate, then by objective."""
    if degenerate is None:
        return lambda run: (False, -run.lower_bound)
    return lambda run: (bool(degenerate(run)), -run.lower_bound)


def _restart_plan(
    start: _Start,
    run: _Run,
    *,
    init: str,
    n_init: int,
    max_iter: int,
    tol: float,
    label: str,
    degenerate: _Degenerate | None = None,
) -> Callable[[int], _Restart]:
    """Return ``run_restart(i)`` for :func:`_fit_restarts`: how restart ``i`` starts.

    The one place where every family's restarts are seeded. A family hands over
    ``start(partition)`` (its parameters from a partition of :func:`bayesmix.em.init.
    initial_labels`: its M-step of the hard assignment), ``run(weights, params, max_iter,
    tol, name)`` (its iterations from there) and, if its likelihood is unbounded,
    ``degenerate(run)`` (the components of a spurious maximum).

    * ``init="k-means++"`` or ``"random"``: every restart starts from a new partition of
      that kind and runs to convergence.
    * ``init="emem"`` (Biernacki, Celeux & Govaert 2003): at the first restart,
      ``_EMEM_CANDIDATES * n_init`` (40) short runs start from k-means++ and random
      partitions in turn, each until the objective changes by less than
      ``_EMEM_SHORT_TOL`` (1e-3 per observation, scikit-learn's default tol) or for
      ``_EMEM_SHORT_ITER`` (50) iterations; each restart continues the best short run not
      yet continued to ``tol`` (within ``max_iter`` iterations in all), its trace and
      iteration count including the short run's. Best: the highest objective among the
      short runs that ``degenerate`` finds sound, then among the others (likelihood climbs
      fastest towards a spurious maximum, so ranking by objective alone would continue
      those first). A continued run that ends degenerate is replaced by the next short
      run, up to ``n_init`` times per fit; the restart returns the first sound run (else
      the higher one). A short run that fails is skipped; a restart without a short run
      left fails. (40 short runs of 5 or 10 iterations, Biernacki et al.'s form, and other
      settings reached the best known maxima less often: ``bench/em_init.py``.)
    """
    if init != "emem":

        def run_restart(i: int) -> _Restart:
            weights, params = start(init)
            return run(weights, params, max_iter, tol, f"{label} restart {i + 1}/{n_init}")

        return run_restart

    n_short = _EMEM_CANDIDATES * n_init
    short_iter = min(_EMEM_SHORT_ITER, max_iter)
    short_tol = max(_EMEM_SHORT_TOL, tol)
    ranked: list[_Restart] = []
    failures: list[str] = []
    spare = [n_init]  # continuations left to replace runs that ended degenerate

    def screen() -> None:
        candidates: list[_Restart] = []
        for j in range(n_short):
            partition = _EMEM_PARTITIONS[j % len(_EMEM_PARTITIONS)]
            name = f"{label} emEM short run {j + 1}/{n_short} ({partition})"
            try:
                weights, params = start(partition)
                candidates.append(run(weights, params, short_iter, short_tol, name))
            except FitError as err:
                failures.append(f"{name}: {err}")
                logger.info("%s failed: %s", name, err)
        # Stable: the earlier short run wins ties.
        ranked.extend(sorted(candidates, key=_ranking(degenerate))[: 2 * n_init])
        logger.info(
            "%s emEM: %d short run(s) of at most %d iteration(s), %d failed; the best "
            "objectives %s",
            label,
            n_short,
            short_iter,
            len(failures),
            [round(r.lower_bound, 8) for r in ranked[:n_init]],
        )

    def proceed(short: _Restart, name: str) -> _Restart:
        if (short.converged and short_tol <= tol) or short.n_iter >= max_iter:
            return short
        rest = run(short.weights, short.params, max_iter - short.n_iter, tol, name)
        return replace(
            rest,
            lower_bounds=[*short.lower_bounds, *rest.lower_bounds],
            n_iter=short.n_iter + rest.n_iter,
        )

    def run_restart(i: int) -> _Restart:
        if i == 0:
            screen()
        if not ranked:
            raise FitError(
                f"no emEM short run is left to continue ({len(failures)} of {n_short} "
                f"failed); the first failure: {failures[0] if failures else 'none'}"
            )
        name = f"{label} restart {i + 1}/{n_init} (emEM)"
        result = proceed(ranked.pop(0), name)
        while degenerate is not None and degenerate(result) and spare[0] > 0 and ranked:
            spare[0] -= 1
            logger.info("%s ended degenerate; continuing the next short run instead", name)
            other = proceed(ranked.pop(0), name)
            if not degenerate(other) or other.lower_bound > result.lower_bound:
                result = other
        return result

    return run_restart


def _fit_restarts(
    run_restart: Callable[[int], _Restart],
    *,
    n_init: int,
    max_iter: int,
    tol: float,
    family: str,
    objective: str,
    covariance_type: str | None = None,
    stacklevel: int,
    label: str | None = None,
    advice: str = "or using fewer components",
    check_result: Callable[[_Restart, int], None] | None = None,
    log_likelihood: Callable[[_Restart], float] | None = None,
    degenerate: _Degenerate | None = None,
    degenerate_advice: str = 'Use objective="map", fewer components or a larger n_init.',
) -> EMResult:
    """Run ``n_init`` restarts, keep the best one, warn, and package the result.

    The one restart loop of every family (as scikit-learn's ``BaseMixture.fit_predict``;
    how each restart starts is :func:`_restart_plan`'s). The best restart has the highest
    final objective among those that ``degenerate(restart)`` finds sound (all restarts when
    none is, or without ``degenerate``); the first within 1e-12 (relatively) of it wins, so
    that restarts reaching one maximum by different paths tie whatever the rounding.
    ``label`` names the fit in messages (default ``"<family> EM"``); ``advice`` ends the
    did-not-converge warning;
    ``check_result(best, stacklevel)`` warns about a degenerate result (default: empty
    components, and the components ``degenerate`` reports, with ``degenerate_advice``);
    ``log_likelihood(best)`` evaluates the returned fit (default: the restart's own).
    ``stacklevel`` makes the warnings point at the caller of the public fit function.
    """
    label = f"{family} EM" if label is None else label
    restarts: dict[int, _Restart] = {}
    failures: dict[int, FitError] = {}
    init_objectives = np.full(n_init, -np.inf, dtype=np.float64)
    for init in range(n_init):
        try:
            restart = run_restart(init)
        except FitError as err:
            failures[init] = err
            logger.warning("%s restart %d/%d failed: %s", label, init + 1, n_init, err)
            continue
        init_objectives[init] = restart.lower_bound
        logger.info(
            "%s restart %d/%d: final objective %.10g after %d iteration(s), %s",
            label,
            init + 1,
            n_init,
            restart.lower_bound,
            restart.n_iter,
            "converged" if restart.converged else "not converged",
        )
        restarts[init] = restart

    if not restarts:
        first, err = next(iter(failures.items()))
        prefix = (
            f"{label} restart 1/1, "
            if n_init == 1
            else f"All {n_init} {label} restarts failed; restart {first + 1}/{n_init}: "
        )
        raise FitError(f"{prefix}{err}") from err
    key = _ranking(degenerate)
    top_key = min(key(restart) for restart in restarts.values())
    # The first restart within rounding (1e-12 relatively) of the best wins: restarts that
    # reach the same maximum by different paths tie, whatever the engine's rounding.
    slack = 1e-12 * max(1.0, abs(top_key[1]))
    best_init = next(
        (
            init
            for init, restart in restarts.items()
            if key(restart)[0] == top_key[0] and -restart.lower_bound <= top_key[1] + slack
        ),
        next(iter(restarts)),  # (a NaN objective)
    )
    best = restarts[best_init]
    top = max(restarts, key=lambda init: restarts[init].lower_bound)
    if restarts[top].lower_bound > best.lower_bound:
        logger.info(
            "%s: restart %d/%d reached a higher objective (%.10g) at a degenerate solution; "
            "returning the best sound restart %d/%d (%.10g)",
            label,
            top + 1,
            n_init,
            restarts[top].lower_bound,
            best_init + 1,
            n_init,
            best.lower_bound,
        )

    if failures:
        warnings.warn(
            f"{label} restart(s) {[i + 1 for i in failures]} of {n_init} failed and were "
            f"skipped; the first failure: {next(iter(failures.values()))}",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    if not best.converged and max_iter > 0:
        warnings.warn(
            f"{label} did not converge: the best restart (restart {best_init + 1} of "
            f"{n_init}) ran max_iter={max_iter} iterations and the last change of the "
            f"objective was {best.last_change:.3g}, not below tol={tol:.3g}. Try increasing "
            f"max_iter, loosening tol, raising n_init, {advice}.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    if check_result is not None:
        check_result(best, stacklevel + 1)
    else:
        _warn_empty(best, family, stacklevel + 1)
        if degenerate is not None:
            _warn_degenerate(
                degenerate(best), label, n_init, degenerate_advice, stacklevel=stacklevel + 1
            )
    value = best.log_likelihood if log_likelihood is None else log_likelihood(best)
    logger.info(
        "%s best restart %d/%d: mean log-likelihood %.10g, %d iteration(s)",
        label,
        best_init + 1,
        n_init,
        value,
        best.n_iter,
    )
    return EMResult(
        weights=best.weights,
        params=best.params,
        family=family,
        log_likelihood=float(value),
        lower_bounds=np.asarray(best.lower_bounds, dtype=np.float64),
        n_iter=best.n_iter,
        converged=best.converged,
        best_init=best_init,
        init_log_likelihoods=init_objectives,
        objective=objective,
        covariance_type=covariance_type,
    )


def _warn_empty(best: _Restart, family: str, stacklevel: int) -> None:
    """Warn about components of the returned fit with (almost) no responsibility."""
    empty = np.flatnonzero(best.weights * best.n_samples < _EMPTY_MASS).tolist()
    if empty:
        warnings.warn(
            f"Component(s) {empty} of the returned {family} fit are empty (total "
            f"responsibility below {_EMPTY_MASS:g} samples): the data support fewer than "
            f"n_components={best.weights.shape[0]} components. Try "
            f"n_components={max(best.weights.shape[0] - len(empty), 1)}.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )


def _warn_degenerate(
    found: dict[int, str], label: str, n_init: int, advice: str, *, stacklevel: int
) -> None:
    """Warn that the returned fit is degenerate: which components, and what was found."""
    if not found:
        return
    details = "; ".join(f"component {k} has {what}" for k, what in found.items())
    warnings.warn(
        f"Component(s) {list(found)} of the returned {label} fit are degenerate: {details}. "
        "The likelihood is unbounded where a component shrinks onto a few points, so this "
        f"maximum is spurious, and none of the n_init={n_init} restarts found a "
        f"non-degenerate one. {advice}",
        ConvergenceWarning,
        stacklevel=stacklevel,
    )


# ---------------------------------------------------------------------------------------
# Weights of the M-step, shared by the families (maximum likelihood, Dirichlet MAP)


def _ml_weights(nk: np.ndarray) -> np.ndarray:
    """Maximum-likelihood weights ``n_k / N`` with the counts floored at ``10 eps``."""
    floored = nk + 10.0 * _EPS
    return floored / floored.sum()


def _map_weights(nk: np.ndarray, concentration: float, old_weights: np.ndarray) -> np.ndarray:
    """Posterior-mode weights under a symmetric Dirichlet(``concentration``) prior.

    ``max(n_k + a - 1, 0) / sum_j max(n_j + a - 1, 0)``. For ``a < 1`` a component whose
    ``n_k`` is below ``1 - a`` (or whose weight is already 0) gets weight 0 and stays
    switched off (Figueiredo & Jain, 2002). If every component would be switched off
    (fewer than about ``K (1 - a)`` samples) the maximum-likelihood weights are used.
    """
    raw = np.maximum(nk + concentration - 1.0, 0.0)
    if concentration < 1.0:
        raw[old_weights <= 0.0] = 0.0
    total = raw.sum()
    if not total > 0.0:
        return _ml_weights(nk)
    return raw / total


def _log_dirichlet(weights: np.ndarray, concentration: float) -> float:
    """Log density of a symmetric Dirichlet at ``weights``.

    For ``concentration < 1`` the components with weight 0 (switched off by
    :func:`_map_weights`) are left out: the density is that of the remaining weights.
    """
    if concentration < 1.0:
        weights = weights[weights > 0.0]
    n = weights.shape[0]
    return float(
        gammaln(n * concentration)
        - n * gammaln(concentration)
        + np.sum(xlogy(concentration - 1.0, weights))
    )
