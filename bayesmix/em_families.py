r"""Exact EM for the non-Gaussian mixture families: Poisson, Bernoulli and Student-t.

This module computes point estimates of three finite mixtures

.. math::

    p(x) = \sum_{k=1}^{K} \pi_k \, f(x \mid \theta_k)

with the EM algorithm of Dempster, Laird & Rubin (1977) -- exact E- and M-steps, no
sampling -- for the component families

* **Poisson** (:func:`fit_poisson_em`): counts, conditionally independent features,
  :math:`f(x \mid \lambda_k) = \prod_d \operatorname{Poisson}(x_d \mid \lambda_{kd})`;
  a mixture of Poissons (McLachlan & Peel 2000, ch. 1; Karlis & Xekalaki 2005).
* **Bernoulli** (:func:`fit_bernoulli_em`): binary data, latent class analysis
  (Lazarsfeld & Henry 1968; Goodman 1974),
  :math:`f(x \mid p_k) = \prod_d p_{kd}^{x_d} (1 - p_{kd})^{1 - x_d}`.
* **Student-t** (:func:`fit_student_t_em`): the robust mixture of multivariate t
  distributions of Peel & McLachlan (2000),
  :math:`f(x \mid \mu_k, \Sigma_k, \nu_k) = t_{\nu_k}(x \mid \mu_k, \Sigma_k)` with a
  per-component number of degrees of freedom :math:`\nu_k` and scale matrix
  :math:`\Sigma_k` (the covariance is :math:`\nu_k \Sigma_k / (\nu_k - 2)` for
  :math:`\nu_k > 2`).

**E-step** (all families). The responsibilities
:math:`r_{nk} = \pi_k f(x_n \mid \theta_k) / p(x_n)` are computed in log space
(``scipy.special.logsumexp``) from the per-component log densities
(:func:`bayesmix.stats.poisson_log_prob`, :func:`~bayesmix.stats.bernoulli_log_prob`,
:func:`~bayesmix.stats.student_t_log_prob`, the functions the fitted models use),
together with the mean log-likelihood :math:`N^{-1} \sum_n \log p(x_n)`. Zero rates and
probabilities of exactly 0 or 1 are evaluated with ``0 log 0 = 0``
(exactly ``-inf`` where impossible): they exclude only the samples they cannot have
produced. For the Student-t family the E-step also returns the weights

.. math::

    u_{nk} = \frac{\nu_k + D}{\nu_k + \delta_{nk}}, \qquad
    \delta_{nk} = (x_n - \mu_k)^T \Sigma_k^{-1} (x_n - \mu_k),

the conditional expectations of the latent precision scalings of the normal / gamma
representation of the t distribution (Liu & Rubin 1995).

**M-step** (Poisson, Bernoulli). With :math:`n_k = \sum_n r_{nk}` and
:math:`s_{kd} = \sum_n r_{nk} x_{nd}`, maximum likelihood (``objective="ml"``) gives
:math:`\pi_k = n_k / N`, :math:`\lambda_{kd} = s_{kd} / n_k` and
:math:`p_{kd} = s_{kd} / n_k`. With ``objective="map"`` the estimates are the posterior
mode under conjugate priors -- a symmetric :math:`\operatorname{Dirichlet}(a)` on the
weights, :math:`\operatorname{Gamma}(\alpha, \beta)` (shape, rate) on every rate,
:math:`\operatorname{Beta}(a, b)` on every probability:

.. math::

    \lambda_{kd} = \frac{s_{kd} + \alpha - 1}{n_k + \beta}, \qquad
    p_{kd} = \frac{s_{kd} + a - 1}{n_k + a + b - 2}, \qquad
    \pi_k = \frac{\max(n_k + a - 1, 0)}{\sum_j \max(n_j + a - 1, 0)}.

The shapes must satisfy :math:`\alpha \ge 1` and :math:`a, b \ge 1` (for smaller values the
posterior density is unbounded at a zero rate or at a probability of 0 or 1, so there is
no mode). The Dirichlet concentration only needs :math:`a > 0`: for :math:`a < 1` a
component whose expected count :math:`n_k` falls below :math:`1 - a` gets weight exactly 0
and is switched off for good (the component annihilation of Figueiredo & Jain 2002). Its
rates or probabilities then stay at the prior mode, and from that iteration on the
Dirichlet term of the objective is the :math:`\operatorname{Dirichlet}(a)` density of the
remaining weights, so the objective can jump at an annihilation; between annihilations it
never decreases. For :math:`a \ge 1` no component is switched off.

**ECM** (Student-t; Meng & Rubin 1993; Peel & McLachlan 2000; McLachlan & Peel 2000,
ch. 7). The first conditional maximisation updates, with the :math:`u_{nk}` of the E-step,

.. math::

    \pi_k = \frac{n_k}{N}, \qquad
    \mu_k = \frac{\sum_n r_{nk} u_{nk} x_n}{\sum_n r_{nk} u_{nk}}, \qquad
    \Sigma_k = \frac{\sum_n r_{nk} u_{nk} (x_n - \mu_k)(x_n - \mu_k)^T}{n_k}
    + \text{reg\_covar}\, I,

where ``"diag"`` keeps the diagonal of :math:`\Sigma_k`, ``"spherical"`` the mean of that
diagonal and ``"tied"`` pools the scatter of all components and divides by :math:`N`, as
the Gaussian M-step :func:`bayesmix.em.m_step` does (which is reused for the scatter). The
second conditional maximisation solves, for every component, the equation in
:math:`\nu_k`

.. math::

    -\psi\!\left(\tfrac{\nu_k}{2}\right) + \log\tfrac{\nu_k}{2} + 1
    + \frac{1}{n_k} \sum_n r_{nk} (\log u_{nk} - u_{nk})
    + \psi\!\left(\tfrac{\nu_k^{\text{old}} + D}{2}\right)
    - \log\tfrac{\nu_k^{\text{old}} + D}{2} = 0

with ``scipy.optimize.brentq`` inside ``dof_bounds``. Its left-hand side is strictly
decreasing in :math:`\nu_k` (the expected complete-data log-likelihood is concave in
:math:`\nu_k`), so when it has no sign change on the interval the constrained maximiser
is the bound where it is closest to 0. Because the expected complete-data log-likelihood
separates into a :math:`(\pi, \mu, \Sigma)` part and a :math:`\nu` part, these steps
maximise it exactly and the observed-data log-likelihood never decreases (up to the ridge
``reg_covar``; exactly with ``reg_covar=0``). Fixing ``dof_bounds=(nu, nu)`` fits a
mixture of t with known degrees of freedom; a very large ``nu`` gives the Gaussian EM of
:func:`bayesmix.em.fit_em`. Densities are evaluated through the Cholesky factors of the
precisions (:func:`bayesmix.em.compute_precision_cholesky`, triangular solves, no
explicit inverse).

**Objective, restarts, degenerate cases.** The monitored objective (``lower_bounds``) is
the mean log-likelihood for ``"ml"`` and the mean log posterior
``(log-likelihood + log prior) / N`` (normalised prior densities) for ``"map"``; the loop
stops when it changes by less than ``tol``. Each of the ``n_init`` restarts starts from
k-means++ seeds on ``X`` (:func:`bayesmix.em.kmeans_plusplus`; Arthur & Vassilvitskii
2007): every sample is hard-assigned to its nearest seed and the first parameters are the
M-step of that assignment. For counts and binary data the hard responsibilities are
softened to ``0.9 * one-hot + 0.1 / K``, so that no rate or probability starts on the
absorbing boundary 0 or 1 (a zero maximum-likelihood rate stays zero for ever) and no
component starts empty; the Student-t starts from the Gaussian moments of the hard
assignment and ``nu = 10`` (clipped into ``dof_bounds``), softened the same way only if a
seed received no sample. The restart with the highest final objective is returned. A
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
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
from scipy.optimize import brentq
from scipy.special import betaln, digamma, gammaln, xlog1py, xlogy

from bayesmix._numeric import column_sums, logsumexp
from bayesmix._threads import single_blas_thread
from bayesmix.em import (
    COVARIANCE_TYPES,
    _nearest_centres,
    compute_precision_cholesky,
    full_covariances,
    kmeans_plusplus,
    m_step,
)
from bayesmix.exceptions import ConvergenceWarning, DataError, FitError, InvalidParameterError
from bayesmix.stats import bernoulli_log_prob, poisson_log_prob, t_log_density

__all__ = [
    "MixtureEMResult",
    "fit_bernoulli_em",
    "fit_poisson_em",
    "fit_student_t_em",
]

logger = logging.getLogger("bayesmix")

OBJECTIVES: tuple[str, ...] = ("ml", "map")

_EPS = np.finfo(np.float64).eps
# A component whose total responsibility is below this many samples is empty.
_EMPTY_MASS = 1e-8
# Softening of the hard k-means++ assignment of the starting responsibilities.
_INIT_SMOOTHING = 0.1
# Starting degrees of freedom of the Student-t components (clipped into dof_bounds).
_INIT_DOF = 10.0


@dataclass(frozen=True)
class MixtureEMResult:
    """Outcome of a family EM fit: the best restart's parameters and its diagnostics.

    The same fields as :class:`bayesmix.em.EMResult` where they have the same meaning,
    with the component parameters in one mapping because they differ by family.

    Attributes
    ----------
    weights : numpy.ndarray of shape (n_components,)
        Mixing proportions; they sum to one.
    params : dict of str to numpy.ndarray
        Component parameters, component axis first: ``{"rates": (K, D)}`` (Poisson),
        ``{"probs": (K, D)}`` (Bernoulli), ``{"means": (K, D), "covariances": ...,
        "dof": (K,)}`` (Student-t; ``covariances`` are the scale matrices in
        scikit-learn's shape for the covariance type).
    family : str
        ``"poisson"``, ``"bernoulli"`` or ``"student_t"``.
    log_likelihood : float
        Mean log-likelihood per sample at the returned parameters (without any log prior).
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
        Student-t only: one of ``bayesmix.em.COVARIANCE_TYPES``.
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

    def reordered(self, order: np.ndarray) -> MixtureEMResult:
        """Return this result with its components in ``order``.

        Every component parameter is permuted on its first axis, except a tied scale
        matrix (``covariance_type="tied"``), which all components share.
        """
        params = {
            name: value
            if (name == "covariances" and self.covariance_type == "tied")
            else np.asarray(value)[order]
            for name, value in self.params.items()
        }
        return replace(self, weights=self.weights[order], params=params)

    @classmethod
    def from_dict(cls, data: dict) -> MixtureEMResult:
        """Rebuild a result written by :meth:`to_dict`."""
        data = dict(data)
        data["params"] = {
            key: np.asarray(value, dtype=np.float64) for key, value in data["params"].items()
        }
        for key in ("weights", "lower_bounds", "init_log_likelihoods"):
            data[key] = np.asarray(data[key], dtype=np.float64)
        return cls(**data)


# ---------------------------------------------------------------------------------------
# Argument checks


def _check_arguments(
    X: np.ndarray, n_components: int, n_init: int, max_iter: int, tol: float, objective: str
) -> None:
    """Raise :class:`InvalidParameterError` for arguments the fit functions cannot use."""
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


def _check_counts(X: np.ndarray) -> None:
    """Raise :class:`DataError` unless ``X`` holds finite non-negative integers."""
    if not (np.all(np.isfinite(X)) and np.all(X >= 0.0) and np.all(np.floor(X) == X)):
        raise DataError(
            "A Poisson mixture needs counts: X must hold finite non-negative integers, but "
            "it has negative, fractional or non-finite entries. Use another family for "
            "continuous data."
        )


def _check_binary(X: np.ndarray) -> None:
    """Raise :class:`DataError` unless every entry of ``X`` is 0 or 1."""
    if not np.all((X == 0.0) | (X == 1.0)):
        raise DataError(
            "A Bernoulli mixture (latent class analysis) needs binary data: every entry of X "
            "must be 0 or 1. Recode the answers as 0/1 indicators (one column per category)."
        )


def _prior_value(
    prior: Mapping, key: str, shape: tuple[int, ...], minimum: float, strict: bool, family: str
) -> np.ndarray:
    """Return ``prior[key]`` broadcast to ``shape`` after checking its range."""
    try:
        value = np.broadcast_to(np.asarray(prior[key], dtype=np.float64), shape).copy()
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(
            f"prior[{key!r}] of the {family} MAP objective must be a number or an array "
            f"broadcastable to {shape}; got {prior[key]!r}."
        ) from err
    ok = np.isfinite(value) & ((value > minimum) if strict else (value >= minimum))
    if not np.all(ok):
        relation = ">" if strict else ">="
        raise InvalidParameterError(
            f"prior[{key!r}] of the {family} MAP objective must be finite and {relation} "
            f"{minimum:g}; got {prior[key]!r}."
            + (
                ""
                if strict
                else " (A shape below 1 makes the posterior density unbounded on the "
                "boundary, so there is no posterior mode.)"
            )
        )
    return value


def _resolve_prior(
    prior: Mapping | None,
    family: str,
    shape_keys: tuple[str, str],
    n_components: int,
    n_features: int,
) -> dict[str, np.ndarray | float]:
    """Check a MAP prior dictionary and return it broadcast, with the default ``weights``.

    ``shape_keys`` are the two keys of the conjugate prior of the component parameters:
    ``("alpha", "beta")`` (Gamma shape and rate, Poisson) or ``("a", "b")`` (Beta,
    Bernoulli). ``"weights"`` (Dirichlet concentration, default 1) is optional.
    """
    if prior is None:
        keys = ", ".join(repr(k) for k in shape_keys)
        raise InvalidParameterError(
            f'objective="map" needs a prior: pass prior={{{keys}: ..., "weights": ...}} '
            f"(the conjugate prior of the {family} rates or probabilities and the Dirichlet "
            'concentration of the weights), or use objective="ml".'
        )
    if not isinstance(prior, Mapping):
        raise InvalidParameterError(
            f"prior must be a dict with keys {[*shape_keys, 'weights']}, got "
            f"{type(prior).__name__}."
        )
    allowed = {*shape_keys, "weights"}
    unknown = sorted(set(prior) - allowed)
    missing = [key for key in shape_keys if key not in prior]
    if unknown or missing:
        raise InvalidParameterError(
            f"The {family} MAP prior takes the keys {sorted(allowed)} ('weights' is "
            f"optional); unknown keys: {unknown}, missing keys: {missing}."
        )
    shape = (n_components, n_features)
    first, second = shape_keys
    resolved: dict[str, np.ndarray | float] = {
        first: _prior_value(prior, first, shape, 1.0, strict=False, family=family),
        # Gamma rate: > 0; Beta second shape: >= 1.
        second: _prior_value(
            prior,
            second,
            shape,
            0.0 if second == "beta" else 1.0,
            strict=second == "beta",
            family=family,
        ),
    }
    concentration = prior.get("weights", 1.0)
    if np.ndim(concentration) != 0 or not (
        math.isfinite(float(concentration)) and float(concentration) > 0.0
    ):
        raise InvalidParameterError(
            "prior['weights'] is the concentration of a symmetric Dirichlet prior on the "
            f"weights and must be a finite scalar > 0; got {concentration!r}."
        )
    resolved["weights"] = float(concentration)
    return resolved


# ---------------------------------------------------------------------------------------
# Component log densities


def _t_log_prob(
    X: np.ndarray, means: np.ndarray, precisions_cholesky: np.ndarray, dof: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the t log densities and the squared Mahalanobis distances, both (N, K).

    ``precisions_cholesky`` holds one full upper-triangular ``U_k`` per component
    (``Sigma_k^-1 = U_k U_k^T``, shape (K, D, D)), so ``delta = ||U_k^T (x - mu_k)||^2``
    and ``log |Sigma_k| = -2 sum log diag U_k``.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    delta = np.empty((n_samples, n_components), dtype=np.float64)
    for k in range(n_components):
        y = (X - means[k]) @ precisions_cholesky[k]
        delta[:, k] = np.einsum("ij,ij->i", y, y)
    log_det = -2.0 * np.sum(np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)), axis=1)
    return t_log_density(delta, log_det, dof, n_features), delta


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


def _initial_responsibilities(
    X: np.ndarray, n_components: int, rng: np.random.Generator, smoothing: float
) -> np.ndarray:
    """Hard-assign every sample to its nearest k-means++ seed, softened by ``smoothing``.

    The responsibilities are ``(1 - s) * one-hot + s / K``. With ``smoothing=0`` they stay
    hard unless a seed receives no sample (``X`` has fewer distinct rows than
    ``n_components``), in which case :data:`_INIT_SMOOTHING` is used so that no component
    starts empty.
    """
    centres = kmeans_plusplus(X, n_components, rng)
    labels = _nearest_centres(X, centres)[0]
    resp = np.zeros((X.shape[0], n_components), dtype=np.float64)
    resp[np.arange(X.shape[0]), labels] = 1.0
    empty = np.flatnonzero(np.bincount(labels, minlength=n_components) == 0).tolist()
    if empty and smoothing == 0.0:
        smoothing = _INIT_SMOOTHING
        logger.warning(
            "k-means++ initialisation: component(s) %s received no sample (X has fewer "
            "distinct rows than n_components=%d?); starting from softened responsibilities.",
            empty,
            n_components,
        )
    if smoothing > 0.0:
        resp = (1.0 - smoothing) * resp + smoothing / n_components
    return resp


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
    """Alternate E- and M-steps until the objective changes by less than ``tol``."""
    lower_bound = -np.inf
    lower_bounds: list[float] = []
    change = np.inf
    converged = False
    n_iter = 0
    if max_iter == 0:
        lower_bound = e_step(weights, params)[0]
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
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
        lower_bounds.append(lower_bound)
        change = lower_bound - previous
        logger.debug("%s, iteration %d: objective %.10g", name, n_iter, lower_bound)
        if abs(change) < tol:
            converged = True
            break
    try:
        _, log_likelihood, resp, _ = e_step(weights, params)
    except FitError as err:
        raise FitError(f"{name}, after iteration {n_iter}: {err}") from err
    return _Restart(
        weights=weights,
        params=params,
        lower_bound=float(lower_bound),
        lower_bounds=lower_bounds,
        n_iter=n_iter,
        converged=converged,
        last_change=float(change),
        log_likelihood=float(log_likelihood),
        n_samples=resp.shape[0],
    )


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
) -> MixtureEMResult:
    """Run ``n_init`` restarts, keep the best one, warn, and package the result.

    ``stacklevel`` makes the warnings point at the caller of the public fit function.
    """
    restarts: dict[int, _Restart] = {}
    failures: dict[int, FitError] = {}
    init_objectives = np.full(n_init, -np.inf, dtype=np.float64)
    for init in range(n_init):
        try:
            restart = run_restart(init)
        except FitError as err:
            failures[init] = err
            logger.warning("%s EM restart %d/%d failed: %s", family, init + 1, n_init, err)
            continue
        init_objectives[init] = restart.lower_bound
        logger.info(
            "%s EM restart %d/%d: final objective %.10g after %d iteration(s), %s",
            family,
            init + 1,
            n_init,
            restart.lower_bound,
            restart.n_iter,
            "converged" if restart.converged else "not converged",
        )
        restarts[init] = restart

    if not restarts:
        first, err = next(iter(failures.items()))
        raise FitError(
            f"All {n_init} {family} EM restart(s) failed; restart {first + 1}: {err}"
        ) from err
    best_init = next(iter(restarts))
    for init, restart in restarts.items():  # strict: the first restart wins ties
        if restart.lower_bound > restarts[best_init].lower_bound:
            best_init = init
    best = restarts[best_init]

    if failures:
        warnings.warn(
            f"{family} EM restart(s) {[i + 1 for i in failures]} of {n_init} failed and were "
            f"skipped; the first failure: {next(iter(failures.values()))}",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    if not best.converged and max_iter > 0:
        warnings.warn(
            f"{family} EM did not converge: the best restart (restart {best_init + 1} of "
            f"{n_init}) ran max_iter={max_iter} iterations and the last change of the "
            f"objective was {best.last_change:.3g}, not below tol={tol:.3g}. Try increasing "
            "max_iter, loosening tol, raising n_init or using fewer components.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
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

    logger.info(
        "%s EM best restart %d/%d: mean log-likelihood %.10g, %d iteration(s)",
        family,
        best_init + 1,
        n_init,
        best.log_likelihood,
        best.n_iter,
    )
    return MixtureEMResult(
        weights=best.weights,
        params=best.params,
        family=family,
        log_likelihood=best.log_likelihood,
        lower_bounds=np.asarray(best.lower_bounds, dtype=np.float64),
        n_iter=best.n_iter,
        converged=best.converged,
        best_init=best_init,
        init_log_likelihoods=init_objectives,
        objective=objective,
        covariance_type=covariance_type,
    )


# ---------------------------------------------------------------------------------------
# Poisson and Bernoulli mixtures


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


def _fit_discrete(
    X: np.ndarray,
    n_components: int,
    *,
    family: str,
    name: str,
    log_prob: Callable[[np.ndarray], np.ndarray],
    component_m_step: Callable[[np.ndarray, np.ndarray], np.ndarray],
    log_prior: Callable[[np.ndarray], float] | None,
    concentration: float | None,
    n_init: int,
    max_iter: int,
    tol: float,
    random_state: int | np.random.Generator | None,
    objective: str,
) -> MixtureEMResult:
    """EM for a mixture with conditionally independent features (Poisson, Bernoulli).

    ``component_m_step(nk, sums)`` returns the component parameters (K, D) from the
    expected counts ``n_k`` and the weighted sums ``s_kd``; ``log_prior(values)`` is the log
    prior of the component parameters (None for maximum likelihood), ``concentration`` the
    Dirichlet concentration of the weights.
    """
    n_samples = X.shape[0]
    rng = np.random.default_rng(random_state)

    def e_step(weights: np.ndarray, params: dict) -> tuple[float, float, np.ndarray, None]:
        log_norm, log_resp = _log_responsibilities(log_prob(params[name]), weights)
        log_likelihood = float(np.mean(log_norm))
        value = log_likelihood
        if log_prior is not None:
            total_prior = log_prior(params[name]) + _log_dirichlet(weights, concentration)
            value += total_prior / n_samples
        return value, log_likelihood, np.exp(log_resp), None

    def update(resp: np.ndarray, _cache, weights: np.ndarray, params: dict):
        nk = column_sums(resp)
        values = component_m_step(nk, resp.T @ X)
        if log_prior is None:
            new_weights = _ml_weights(nk)
            empty = nk < _EMPTY_MASS
            if params is not None and np.any(empty):
                values[empty] = params[name][empty]
        else:
            new_weights = _map_weights(nk, concentration, weights)
            switched_off = np.flatnonzero((new_weights <= 0.0) & (weights > 0.0)).tolist()
            if switched_off:
                logger.info(
                    "%s MAP EM: component(s) %s switched off (expected count below 1 - a "
                    "with the Dirichlet concentration a=%g).",
                    family,
                    switched_off,
                    concentration,
                )
        return new_weights, {name: values}

    def run_restart(init: int) -> _Restart:
        resp = _initial_responsibilities(X, n_components, rng, _INIT_SMOOTHING)
        weights, params = update(resp, None, np.full(n_components, 1.0 / n_components), None)
        return _iterate(
            e_step,
            update,
            weights,
            params,
            max_iter=max_iter,
            tol=tol,
            name=f"{family} EM restart {init + 1}/{n_init}",
        )

    return _fit_restarts(
        run_restart,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        family=family,
        objective=objective,
        stacklevel=5,  # _fit_restarts, _fit_discrete, fit_*, BLAS-thread wrapper, caller
    )


@single_blas_thread
def fit_poisson_em(
    X: np.ndarray,
    n_components: int,
    *,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    random_state: int | np.random.Generator | None = None,
    objective: str = "ml",
    prior: Mapping | None = None,
) -> MixtureEMResult:
    r"""Fit a mixture of independent Poissons by maximum likelihood or posterior mode (EM).

    Model: :math:`p(x_n) = \sum_k \pi_k \prod_d \operatorname{Poisson}(x_{nd} \mid
    \lambda_{kd})`. The M-step is in closed form (see the module docstring).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Counts, already validated (2-D float64); non-negative integers. Not modified.
    n_components : int
        Number of components ``K``.
    n_init : int, default=1
        Number of restarts from k-means++ seeds; the one with the highest final objective
        is returned (the first on ties).
    max_iter : int, default=100
        Maximum number of EM iterations per restart (0 returns the starting parameters).
    tol : float, default=1e-3
        Convergence threshold on the change of the objective (per sample).
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the k-means++ initialisation; a ``Generator`` is used as is.
    objective : {"ml", "map"}, default="ml"
        ``"ml"`` maximises the likelihood; ``"map"`` the posterior density under
        ``prior``, and ``lower_bounds`` are then ``(log-likelihood + log prior) / N``.
    prior : dict or None, default=None
        Required for ``objective="map"`` (ignored for ``"ml"``): ``"alpha"`` and ``"beta"``,
        the shape (>= 1) and rate (> 0) of a Gamma prior on every rate (scalars or arrays
        broadcastable to (K, D)), and optionally ``"weights"``, the concentration
        ``a > 0`` of a symmetric Dirichlet prior on the weights (default 1, no prior). The
        posterior mode is ``(sum_n r_nk x_nd + alpha - 1) / (n_k + beta)`` and the weights
        ``max(n_k + a - 1, 0) / sum_j max(n_j + a - 1, 0)``; with ``a < 1`` a component
        whose expected count drops below ``1 - a`` gets weight 0 for good.

    Returns
    -------
    MixtureEMResult
        ``params={"rates": (K, D)}``, ``family="poisson"``. Components are not sorted.

    Raises
    ------
    InvalidParameterError
        If an argument or the prior is invalid, or ``objective="map"`` without a prior.
    DataError
        If ``X`` does not hold non-negative integers.
    FitError
        If every restart failed (a non-finite objective).

    Warns
    -----
    ConvergenceWarning
        If the best restart did not reach ``tol`` within ``max_iter`` iterations, if a
        restart failed while another succeeded, or if a component of the result is empty.
    """
    X = np.asarray(X, dtype=np.float64)
    _check_arguments(X, n_components, n_init, max_iter, tol, objective)
    _check_counts(X)
    n_features = X.shape[1]

    if objective == "map":
        resolved = _resolve_prior(prior, "Poisson", ("alpha", "beta"), n_components, n_features)
        alpha, beta = resolved["alpha"], resolved["beta"]
        log_norm_gamma = float(np.sum(alpha * np.log(beta) - gammaln(alpha)))

        def component_m_step(nk: np.ndarray, sums: np.ndarray) -> np.ndarray:
            return (sums + alpha - 1.0) / (nk[:, np.newaxis] + beta)

        def log_prior(rates: np.ndarray) -> float:
            return log_norm_gamma + float(np.sum(xlogy(alpha - 1.0, rates) - beta * rates))

        concentration = resolved["weights"]
    else:

        def component_m_step(nk: np.ndarray, sums: np.ndarray) -> np.ndarray:
            return sums / (nk + 10.0 * _EPS)[:, np.newaxis]

        log_prior, concentration = None, None

    return _fit_discrete(
        X,
        n_components,
        family="poisson",
        name="rates",
        log_prob=lambda rates: poisson_log_prob(X, rates[None])[0],
        component_m_step=component_m_step,
        log_prior=log_prior,
        concentration=concentration,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=random_state,
        objective=objective,
    )


@single_blas_thread
def fit_bernoulli_em(
    X: np.ndarray,
    n_components: int,
    *,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    random_state: int | np.random.Generator | None = None,
    objective: str = "ml",
    prior: Mapping | None = None,
) -> MixtureEMResult:
    r"""Fit a latent class model (mixture of independent Bernoullis) with EM.

    Model: :math:`p(x_n) = \sum_k \pi_k \prod_d p_{kd}^{x_{nd}} (1 - p_{kd})^{1 -
    x_{nd}}`. The maximum-likelihood M-step is ``p_kd = sum_n r_nk x_nd / n_k``; estimates
    of exactly 0 or 1 are allowed and handled with ``0 log 0 = 0``.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Binary data (0/1 as float64), already validated. Not modified.
    n_components : int
        Number of latent classes ``K``.
    n_init : int, default=1
        Number of restarts from k-means++ seeds; the one with the highest final objective
        is returned (the first on ties).
    max_iter : int, default=100
        Maximum number of EM iterations per restart (0 returns the starting parameters).
    tol : float, default=1e-3
        Convergence threshold on the change of the objective (per sample).
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the k-means++ initialisation; a ``Generator`` is used as is.
    objective : {"ml", "map"}, default="ml"
        ``"ml"`` maximises the likelihood; ``"map"`` the posterior density under
        ``prior``, and ``lower_bounds`` are then ``(log-likelihood + log prior) / N``.
    prior : dict or None, default=None
        Required for ``objective="map"`` (ignored for ``"ml"``): ``"a"`` and ``"b"``, the
        shapes (>= 1) of a Beta prior on every probability (scalars or arrays broadcastable
        to (K, D)), and optionally ``"weights"``, the concentration ``> 0`` of a symmetric
        Dirichlet prior on the weights (default 1). The posterior mode is
        ``(sum_n r_nk x_nd + a - 1) / (n_k + a + b - 2)``; the weights are as in
        :func:`fit_poisson_em`.

    Returns
    -------
    MixtureEMResult
        ``params={"probs": (K, D)}``, ``family="bernoulli"``. Components are not sorted.

    Raises
    ------
    InvalidParameterError
        If an argument or the prior is invalid, or ``objective="map"`` without a prior.
    DataError
        If an entry of ``X`` is not 0 or 1.
    FitError
        If every restart failed (a non-finite objective).

    Warns
    -----
    ConvergenceWarning
        If the best restart did not reach ``tol`` within ``max_iter`` iterations, if a
        restart failed while another succeeded, or if a component of the result is empty.
    """
    X = np.asarray(X, dtype=np.float64)
    _check_arguments(X, n_components, n_init, max_iter, tol, objective)
    _check_binary(X)
    n_features = X.shape[1]

    if objective == "map":
        resolved = _resolve_prior(prior, "Bernoulli", ("a", "b"), n_components, n_features)
        a, b = resolved["a"], resolved["b"]
        log_norm_beta = -float(np.sum(betaln(a, b)))

        def component_m_step(nk: np.ndarray, sums: np.ndarray) -> np.ndarray:
            denominator = np.maximum(nk[:, np.newaxis] + a + b - 2.0, 10.0 * _EPS)
            return np.clip((sums + a - 1.0) / denominator, 0.0, 1.0)

        def log_prior(probs: np.ndarray) -> float:
            return log_norm_beta + float(np.sum(xlogy(a - 1.0, probs) + xlog1py(b - 1.0, -probs)))

        concentration = resolved["weights"]
    else:

        def component_m_step(nk: np.ndarray, sums: np.ndarray) -> np.ndarray:
            return np.clip(sums / (nk + 10.0 * _EPS)[:, np.newaxis], 0.0, 1.0)

        log_prior, concentration = None, None

    return _fit_discrete(
        X,
        n_components,
        family="bernoulli",
        name="probs",
        log_prob=lambda probs: bernoulli_log_prob(X, probs[None])[0],
        component_m_step=component_m_step,
        log_prior=log_prior,
        concentration=concentration,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=random_state,
        objective=objective,
    )


# ---------------------------------------------------------------------------------------
# Student-t mixtures


def _update_dof(
    dof_old: float,
    resp_k: np.ndarray,
    u_k: np.ndarray,
    log_u_k: np.ndarray,
    nk: float,
    n_features: int,
    bounds: tuple[float, float],
) -> float:
    """Second CM-step: the degrees of freedom of one component (see the module docstring)."""
    low, high = bounds
    if low == high:
        return low
    half = 0.5 * (dof_old + n_features)
    constant = (
        1.0 + float(np.dot(resp_k, log_u_k - u_k)) / nk + float(digamma(half)) - math.log(half)
    )

    def equation(nu: float) -> float:
        return -float(digamma(0.5 * nu)) + math.log(0.5 * nu) + constant

    # The equation is strictly decreasing in nu: without a sign change on the interval the
    # constrained maximiser is the bound where it is closest to zero.
    if equation(low) <= 0.0:
        return low
    if equation(high) >= 0.0:
        return high
    return float(brentq(equation, low, high, xtol=1e-12, rtol=4.0 * _EPS, maxiter=200))


def _t_cm_steps(
    X: np.ndarray,
    resp: np.ndarray,
    delta: np.ndarray,
    params: dict,
    *,
    covariance_type: str,
    reg_covar: float,
    dof_bounds: tuple[float, float],
) -> tuple[np.ndarray, dict]:
    """Both conditional maximisations of the Student-t ECM (see the module docstring)."""
    n_features = X.shape[1]
    dof = params["dof"]
    u = (dof + n_features) / (dof + delta)  # E[tau_nk | x_n, z_nk = 1]
    nk = column_sums(resp)
    weighted = resp * u
    # Gaussian M-step with weights r u: means sum r u x / sum r u, scatter / sum r u.
    _, means, covariances = m_step(X, weighted, covariance_type, 0.0)
    floored_nk = nk + 10.0 * _EPS
    ratio = (column_sums(weighted) + 10.0 * _EPS) / floored_nk  # rescale to scatter / n_k
    if covariance_type == "full":
        covariances *= ratio[:, np.newaxis, np.newaxis]
        for k in range(covariances.shape[0]):
            covariances[k].flat[:: n_features + 1] += reg_covar
    elif covariance_type == "tied":
        covariances *= (weighted.sum() + 10.0 * _EPS * nk.shape[0]) / floored_nk.sum()
        covariances.flat[:: n_features + 1] += reg_covar
    elif covariance_type == "diag":
        covariances = covariances * ratio[:, np.newaxis] + reg_covar
    else:
        covariances = covariances * ratio + reg_covar
    weights = floored_nk / floored_nk.sum()

    empty = nk < _EMPTY_MASS
    if np.any(empty):  # keep the previous parameters of an empty component
        means[empty] = params["means"][empty]
        if covariance_type != "tied":
            covariances[empty] = params["covariances"][empty]
    with np.errstate(divide="ignore"):
        log_u = np.log(dof + n_features) - np.log(dof + delta)
    new_dof = dof.copy()
    for k in np.flatnonzero(~empty):
        new_dof[k] = _update_dof(
            float(dof[k]), resp[:, k], u[:, k], log_u[:, k], float(nk[k]), n_features, dof_bounds
        )
    return weights, {"means": means, "covariances": covariances, "dof": new_dof}


@single_blas_thread
def fit_student_t_em(
    X: np.ndarray,
    n_components: int,
    *,
    covariance_type: str = "full",
    n_init: int = 1,
    max_iter: int = 200,
    tol: float = 1e-4,
    reg_covar: float = 1e-6,
    random_state: int | np.random.Generator | None = None,
    dof_bounds: tuple[float, float] = (1.0, 200.0),
) -> MixtureEMResult:
    r"""Fit a mixture of multivariate t distributions by maximum likelihood (ECM).

    Model: :math:`p(x) = \sum_k \pi_k \, t_{\nu_k}(x \mid \mu_k, \Sigma_k)` with
    per-component degrees of freedom, fitted with the ECM algorithm of Peel & McLachlan
    (2000) (see the module docstring). Heavy-tailed components down-weight outlying samples
    (weights ``u_nk = (nu_k + D) / (nu_k + delta_nk)``), which makes the means and scales
    robust to a few gross outliers.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data, already validated (2-D, finite, float64). Not modified.
    n_components : int
        Number of components ``K``.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Parameterisation of the scale matrices, as in scikit-learn.
    n_init : int, default=1
        Number of restarts; the one with the highest final log-likelihood is returned (the
        first on ties).
    max_iter : int, default=200
        Maximum number of ECM iterations per restart (0 returns the starting parameters).
    tol : float, default=1e-4
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative ridge added to the diagonal of every scale matrix.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the k-means++ initialisation (the same seeding as
        :func:`bayesmix.em.fit_em`); a ``Generator`` is used as is.
    dof_bounds : tuple of two floats, default=(1.0, 200.0)
        Interval ``0 < low <= high < inf`` for the degrees of freedom; ``low == high``
        fixes them (a very large value gives a Gaussian mixture).

    Returns
    -------
    MixtureEMResult
        ``params={"means": (K, D), "covariances": scale matrices in the scikit-learn shape
        for covariance_type, "dof": (K,)}``, ``family="student_t"``,
        ``covariance_type`` set. Components are not sorted.

    Raises
    ------
    InvalidParameterError
        If an argument is invalid.
    FitError
        If every restart failed, e.g. a scale matrix became singular (``reg_covar=0``).

    Warns
    -----
    ConvergenceWarning
        If the best restart did not reach ``tol`` within ``max_iter`` iterations, if a
        restart failed while another succeeded, or if a component of the result is empty.
    """
    X = np.asarray(X, dtype=np.float64)
    _check_arguments(X, n_components, n_init, max_iter, tol, "ml")
    if covariance_type not in COVARIANCE_TYPES:
        raise InvalidParameterError(
            f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}."
        )
    if not reg_covar >= 0.0:
        raise InvalidParameterError(f"reg_covar must be non-negative, got {reg_covar}.")
    try:
        low, high = (float(bound) for bound in dof_bounds)
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(
            f"dof_bounds must be a pair of numbers (low, high), got {dof_bounds!r}."
        ) from err
    if not (0.0 < low <= high < math.inf):
        raise InvalidParameterError(
            f"dof_bounds must satisfy 0 < low <= high < inf, got {dof_bounds!r}."
        )
    bounds = (low, high)
    n_features = X.shape[1]
    rng = np.random.default_rng(random_state)

    def e_step(weights: np.ndarray, params: dict):
        precisions_cholesky = compute_precision_cholesky(params["covariances"], covariance_type)
        full = full_covariances(precisions_cholesky, covariance_type, n_components, n_features)
        log_prob, delta = _t_log_prob(X, params["means"], full, params["dof"])
        log_norm, log_resp = _log_responsibilities(log_prob, weights)
        log_likelihood = float(np.mean(log_norm))
        return log_likelihood, log_likelihood, np.exp(log_resp), delta

    def update(resp: np.ndarray, delta: np.ndarray, _weights: np.ndarray, params: dict):
        return _t_cm_steps(
            X,
            resp,
            delta,
            params,
            covariance_type=covariance_type,
            reg_covar=reg_covar,
            dof_bounds=bounds,
        )

    def run_restart(init: int) -> _Restart:
        resp = _initial_responsibilities(X, n_components, rng, 0.0)
        weights, means, covariances = m_step(X, resp, covariance_type, reg_covar)
        params = {
            "means": means,
            "covariances": covariances,
            "dof": np.full(n_components, min(max(_INIT_DOF, low), high)),
        }
        return _iterate(
            e_step,
            update,
            weights,
            params,
            max_iter=max_iter,
            tol=tol,
            name=f"student_t EM restart {init + 1}/{n_init}",
        )

    return _fit_restarts(
        run_restart,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        family="student_t",
        objective="ml",
        covariance_type=covariance_type,
        stacklevel=4,  # _fit_restarts, fit_student_t_em, BLAS-thread wrapper, caller
    )
