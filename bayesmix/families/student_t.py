r"""Student-t mixture: heavy-tailed components for clustering with outliers.

Model (``covariance_type="full"``)::

    pi      ~ Dirichlet(a * 1_K)
    mu_k    ~ Normal(m, s)
    sigma_k ~ HalfNormal(tau)                    scales, shape (K, D)
    L_k     ~ LKJCorr(eta)                       Cholesky factor of the correlation
    nu_k    ~ Gamma(2, 0.1)                      degrees of freedom (Juarez & Steel 2010)
    Sigma_k = diag(sigma_k) L_k L_k^T diag(sigma_k)        the scale matrix
    log p(x_n) = logsumexp_k [log pi_k + log t_nu_k(x_n | mu_k, Sigma_k)]

A multivariate t is a Gaussian whose covariance is ``Sigma / u`` with
``u ~ Gamma(nu / 2, nu / 2)``: outlying observations get a small ``u`` and little
weight, so one outlier does not pull a mean or inflate a covariance the way it does
in a Gaussian mixture. EM is the ECM algorithm of McLachlan & Peel (2000).

**ECM** (Student-t; Meng & Rubin 1993; Peel & McLachlan 2000; McLachlan & Peel 2000,
ch. 7). The first conditional maximisation updates, with the :math:`u_{nk}` of the E-step,

.. math::

    \pi_k = \frac{n_k}{N}, \qquad
    \mu_k = \frac{\sum_n r_{nk} u_{nk} x_n}{\sum_n r_{nk} u_{nk}}, \qquad
    \Sigma_k = \frac{\sum_n r_{nk} u_{nk} (x_n - \mu_k)(x_n - \mu_k)^T}{n_k}
    + \text{reg\_covar}\, I,

where ``"diag"`` keeps the diagonal of :math:`\Sigma_k`, ``"spherical"`` the mean of that
diagonal and ``"tied"`` pools the scatter of all components and divides by :math:`N`, as
the Gaussian M-step :func:`bayesmix.families.gaussian.em.m_step` does (which is reused for the
scatter). The second conditional maximisation solves, for every component, the equation in
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
:func:`bayesmix.families.gaussian.em.fit_em`. Densities are evaluated through the Cholesky factors
of the precisions (:func:`bayesmix.families.gaussian.em.compute_precision_cholesky`, triangular
solves, no explicit inverse).

**Missing values** (``missing="model"``; values missing at random; Liu & Rubin 1995, the
ECM of the t with missing data, applied to each component as in McLachlan & Peel 2000,
ch. 7). A row with observed coordinates :math:`o` (:math:`p_o`
of them) and missing ones :math:`m` has, under component :math:`k`, the t density of its
observed part: the same :math:`\nu_k`, location :math:`\mu_{k,o}`, scale
:math:`\Sigma_{k,oo}`, dimension :math:`p_o` (:func:`student_t_log_prob`). Given
:math:`z_k = 1`, :math:`x_o` and the latent precision :math:`\tau`, the missing part is
Gaussian, :math:`x_m \mid \tau \sim \mathcal{N}(\hat{x}_m, C / \tau)` with

.. math::

    \hat{x}_m = \mu_m + \Sigma_{mo} \Sigma_{oo}^{-1} (x_o - \mu_o), \qquad
    C = \Sigma_{mm} - \Sigma_{mo} \Sigma_{oo}^{-1} \Sigma_{om},

and :math:`\tau \mid x_o \sim \text{Gamma}((\nu + p_o) / 2, (\nu + \delta_o) / 2)`, where
:math:`\delta_o = (x_o - \mu_o)^T \Sigma_{oo}^{-1} (x_o - \mu_o)`. So the E-step's
expectations of the complete-data sufficient statistics are

.. math::

    E[\tau] = u = \frac{\nu + p_o}{\nu + \delta_o}, \quad
    E[\tau x] = u \tilde{x}, \quad
    E[\tau x x^T] = u \tilde{x} \tilde{x}^T + C_{mm}, \quad
    E[\log \tau] = \psi\!\left(\tfrac{\nu + p_o}{2}\right) - \log\tfrac{\nu + \delta_o}{2},

with :math:`\tilde{x}` the row with :math:`\hat{x}_m` in place of its missing values and
:math:`C_{mm}` the conditional covariance in the :math:`(m, m)` block (zero elsewhere): it
enters *unscaled* by :math:`u`, because :math:`E[\tau \cdot C / \tau] = C`. The first
CM-step is then the one above with :math:`\sum_n r_{nk} u_{nk} \tilde{x}_n` and the scatter
:math:`\sum_n r_{nk} [u_{nk} (\tilde{x}_n - \mu_k)(\tilde{x}_n - \mu_k)^T + C_{nk}]`; the
second solves the same equation in :math:`\nu_k` with
:math:`\frac{1}{n_k} \sum_n r_{nk} (E[\log \tau_{nk}] - u_{nk})`, so each row's
:math:`p_o` takes the place of :math:`D`. The responsibilities :math:`r_{nk}` and the
log-likelihood are those of the observed coordinates. This is the chunked ECM
(:func:`chunked_t_steps`, :func:`_t_chunk_sums`), rows grouped by pattern of missingness
(one Cholesky factor of :math:`\Sigma_{k,oo}` per pattern and component,
:func:`bayesmix.families.gaussian.densities.conditional_terms`); it is an ECM of the
observed-data likelihood, which therefore never decreases either.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.optimize import brentq
from scipy.special import digamma, gammaln, zeta

from bayesmix._numeric import column_sums, kernel_pays_off, mean_filled, missing_patterns
from bayesmix._params import Hint, Options, Satisfies
from bayesmix._threads import single_blas_thread
from bayesmix._validation import MixtureData
from bayesmix.em.chunked import EMSteps, sample_indices
from bayesmix.em.init import initial_responsibilities
from bayesmix.em.loop import (
    _EMPTY_MASS,
    _EPS,
    EMResult,
    _check_arguments,
    _fit_restarts,
    _iterate,
    _log_responsibilities,
    _Restart,
    _restart_plan,
)
from bayesmix.exceptions import FitError, InvalidParameterError
from bayesmix.families._location_scale import (
    _LocationScaleMixture,
    mahalanobis_terms,
    marginal_logp,
)
from bayesmix.families.gaussian.densities import (
    conditional_terms,
    n_parameters,
    scaled_squared_mahalanobis,
)
from bayesmix.families.gaussian.em import (
    COVARIANCE_TYPES,
    _centre,
    _chunked_degenerate,
    _degenerate_findings,
    _recentre,
    compute_precision_cholesky,
    full_covariances,
    m_step,
)
from bayesmix.priors import Prior

_log = logging.getLogger("bayesmix")

__all__ = [
    "StudentTMixture",
    "fit_student_t_em",
    "student_t_log_prob",
    "student_t_mixture_logp",
    "student_t_mixture_random",
    "t_log_density",
]


def student_t_log_prob(
    X: np.ndarray, means: np.ndarray, scales: np.ndarray, dof: np.ndarray
) -> np.ndarray:
    """Return ``log t_nu_k(x_n | mu_k, Sigma_k)`` for every draw, sample and component.

    The multivariate Student-t density with location ``mu``, scale matrix ``Sigma``
    and ``nu`` degrees of freedom::

        log Gamma((nu + D) / 2) - log Gamma(nu / 2) - D / 2 log(nu pi) - 1/2 log|Sigma|
            - (nu + D) / 2 log(1 + delta / nu),   delta = (x - mu)^T Sigma^-1 (x - mu)

    Finite for every finite row: far out, where ``delta`` is beyond the floats,
    ``log(1 + delta / nu)`` is computed from ``log delta`` (the distances of rows of
    magnitude ``2^256`` or more are computed at a power-of-two scale), and the density
    decays only polynomially.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    means : ndarray of shape (n_draws, n_components, n_features)
    scales : ndarray of shape (n_draws, n_components, n_features, n_features)
    dof : ndarray of shape (n_draws, n_components)

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)

    Rows with missing values (NaN) get the marginal density of their observed
    coordinates ``o``: the t with the same ``nu``, location ``mu_o``, scale
    ``Sigma_oo`` and dimension ``p_o`` (the same computation on those coordinates),
    per pattern of missingness (a row with no observed value gets 0, the log density of
    nothing).
    """
    if np.isnan(X).any():
        out = np.zeros((means.shape[0], X.shape[0], means.shape[1]))
        for observed, rows in missing_patterns(X):
            if observed.any():
                out[:, rows, :] = student_t_log_prob(
                    X[np.ix_(rows, observed)],
                    means[..., observed],
                    scales[..., observed, :][..., observed],
                    dof,
                )
        return out
    chol = np.linalg.cholesky(scales)
    scaled, exponent = scaled_squared_mahalanobis(X, means, chol)
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)[:, None, :]
    dof = dof[:, None, :]
    if not exponent.any():
        return t_log_density(scaled, log_det, dof, X.shape[1])
    # Rows far out (2^256 or more): log1p(m / nu) = logaddexp(0, log m - log nu) with
    # log m = log(scaled) + 2 e log 2, finite however far the row is.
    with np.errstate(divide="ignore"):
        log_m = np.log(scaled) + (2.0 * math.log(2.0)) * exponent[None, :, None]
    n_features = X.shape[1]
    return (
        gammaln(0.5 * (dof + n_features))
        - gammaln(0.5 * dof)
        - 0.5 * n_features * np.log(np.pi * dof)
        - 0.5 * log_det
        - 0.5 * (dof + n_features) * np.logaddexp(0.0, log_m - np.log(dof))
    )


def _fast_pointwise(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    scales: np.ndarray,
    dof: np.ndarray,
    out: np.ndarray,
    *,
    responsibilities: bool = False,
) -> bool:
    """Fill the pointwise log-likelihood (or responsibilities) of many draws on the kernel.

    Rows with missing values (NaN) are left to NumPy (:func:`student_t_log_prob`'s
    marginal densities): the kernel computes the complete rows and those get NaN in
    ``out``, which :mod:`bayesmix.stats` recomputes.
    """
    if not kernel_pays_off(weights.shape[0] * X.shape[0]):
        return False
    from bayesmix.families.gaussian._nuts_kernel import pointwise_t

    incomplete = np.isnan(X).any(axis=1)
    if not incomplete.any():
        return pointwise_t(X, weights, means, scales, dof, out, responsibilities=responsibilities)
    complete = np.flatnonzero(~incomplete)
    if complete.size == 0:
        return False
    part = np.zeros(
        (complete.size, out.shape[1]) if responsibilities else (out.shape[0], complete.size)
    )
    if not pointwise_t(
        X[complete], weights, means, scales, dof, part, responsibilities=responsibilities
    ):
        return False
    if responsibilities:  # (N, K), accumulated over calls
        out[complete] += part
        out[incomplete] = np.nan
    else:  # (S, N)
        out[:, complete] = part
        out[:, incomplete] = np.nan
    return True


def t_log_density(
    mahalanobis: np.ndarray, log_det: np.ndarray, dof: np.ndarray, n_features: int
) -> np.ndarray:
    """Return the multivariate t log density from its squared Mahalanobis distances.

    ``log Gamma((nu + D) / 2) - log Gamma(nu / 2) - D / 2 log(nu pi) - 1/2 log|Sigma|
    - (nu + D) / 2 log(1 + delta / nu)``; arguments broadcast against each other.
    """
    return (
        gammaln(0.5 * (dof + n_features))
        - gammaln(0.5 * dof)
        - 0.5 * n_features * np.log(np.pi * dof)
        - 0.5 * log_det
        - 0.5 * (dof + n_features) * np.log1p(mahalanobis / dof)
    )


# Starting degrees of freedom of the Student-t components (clipped into dof_bounds).
_INIT_DOF = 10.0


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
    return t_log_density(delta, _log_det_covariance(precisions_cholesky), dof, n_features), delta


def _log_det_covariance(precisions_cholesky: np.ndarray) -> np.ndarray:
    """``log |Sigma_k| = -2 sum log diag U_k`` of full precision factors (K, D, D): (K,)."""
    return -2.0 * np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)).sum(axis=1)


def _log_tau_correction(dof_old: float | np.ndarray, n_features: int | np.ndarray) -> Any:
    """``psi(h) - log h`` with ``h = (nu_old + D) / 2``: ``E[log tau] - log E[tau]``.

    The E-step's gamma posterior of the latent precision ``tau`` has ``E[tau] = u`` and
    ``E[log tau] = log u + psi(h) - log h``. A float for a scalar ``n_features``, else
    one value per row (missing values: ``D`` is each row's number of observed values).
    """
    half = 0.5 * (dof_old + n_features)
    if np.ndim(half) == 0:
        return float(digamma(half)) - math.log(half)
    return digamma(half) - np.log(half)


def _expected_log_tau_minus_tau(
    resp_k: np.ndarray,
    log_u_k: np.ndarray,
    u_k: np.ndarray,
    dof_old: float,
    n_features: int | np.ndarray,
) -> float:
    """``sum_n r_nk E[log tau_nk - tau_nk]``: the sufficient statistic of the dof CM-step.

    With ``h = (nu_old + D) / 2``, ``E[tau] = u`` and ``E[log tau] = log u + psi(h) -
    log h`` (the E-step's gamma posterior of the latent precision ``tau``). With missing
    values, ``n_features`` is every row's number of observed values ``p_n`` (n,), and
    ``h_n = (nu_old + p_n) / 2``.
    """
    correction = _log_tau_correction(dof_old, n_features)
    if not isinstance(n_features, int):
        return float(np.dot(resp_k, log_u_k - u_k + correction))
    return float(np.dot(resp_k, log_u_k - u_k)) + float(resp_k.sum()) * correction


def _update_dof(
    expected: float, nk: float, bounds: tuple[float, float], start: float | None = None
) -> float:
    """Second CM-step: the degrees of freedom of one component (see the module docstring).

    ``expected`` is ``sum_n r_nk E[log tau_nk - tau_nk]``
    (:func:`_expected_log_tau_minus_tau`), ``nk`` is ``sum_n r_nk`` (both weighted).
    ``start`` (the current value) starts a safeguarded Newton iteration
    (:func:`_dof_root`); without it, or if that does not converge, Brent's method.
    """
    low, high = bounds
    if low == high:
        return low
    constant = 1.0 + expected / nk
    if not math.isfinite(constant):  # e.g. a component on rows ~1e139 apart: tau overflows
        raise FitError(
            f"the degrees-of-freedom update of a component is not a number (its expected "
            f"log precision is {expected!r} over weight {nk!r}): the component's rows are "
            "too far apart for the Student-t's latent precisions. Rescale the data."
        )

    def equation(nu: float) -> float:
        return -float(digamma(0.5 * nu)) + math.log(0.5 * nu) + constant

    # The equation is strictly decreasing in nu: without a sign change on the interval the
    # constrained maximiser is the bound where it is closest to zero.
    if equation(low) <= 0.0:
        return low
    if equation(high) >= 0.0:
        return high
    if start is not None:
        root = _dof_root(constant, low, high, start)
        if root is not None:
            return root
    return float(brentq(equation, low, high, xtol=1e-12, rtol=4.0 * _EPS, maxiter=200))


def _dof_root(constant: float, low: float, high: float, start: float) -> float | None:
    """Root of ``log(nu / 2) - psi(nu / 2) + constant`` in ``(low, high)``, by Newton's method.

    The left-hand side is decreasing and convex in ``nu``, so from any point Newton's step
    lands at or left of the root and the iterates then rise to it; a step that leaves the
    bracket is replaced by bisection. Stops at Brent's tolerance (``1e-12 + 4 eps nu``);
    None after 50 steps. Each step costs two scalar special functions, against about
    ten evaluations for Brent's method: the dof update ran in every ECM iteration.
    """
    nu = min(max(start, low), high)
    for _ in range(50):
        half = 0.5 * nu
        value = math.log(half) - float(digamma(half)) + constant
        if value > 0.0:
            low = nu
        else:
            high = nu
        slope = 1.0 / nu - 0.5 * float(zeta(2.0, half))  # zeta(2, x) is the trigamma
        new = nu - value / slope if slope < 0.0 else 0.5 * (low + high)
        if not low < new < high:
            new = 0.5 * (low + high)
        if abs(new - nu) <= 1e-12 + 4.0 * _EPS * abs(new):
            return new
        nu = new
    return None


def _t_precision_statistics(
    resp: np.ndarray, delta: np.ndarray, dof: np.ndarray, n_features: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``r u`` (N, K) and ``sum_n r_nk (log u_nk - u_nk)`` (K,), in NumPy.

    ``u_nk = E[tau_nk | x_n, z_nk = 1] = (nu_k + D) / (nu_k + delta_nk)``; what
    :func:`bayesmix.families._t_em_kernel.t_e_step` computes in its pass.
    """
    denominator = dof + delta
    u = (dof + n_features) / denominator
    with np.errstate(divide="ignore"):
        log_u = np.log(dof + n_features) - np.log(denominator)
    return resp * u, column_sums(resp * (log_u - u))


def _t_cm_steps(
    X: np.ndarray,
    resp: np.ndarray,
    statistics: tuple[np.ndarray, np.ndarray],
    params: dict,
    *,
    covariance_type: str,
    reg_covar: float,
    dof_bounds: tuple[float, float],
) -> tuple[np.ndarray, dict]:
    """Both conditional maximisations of the Student-t ECM (see the module docstring).

    ``statistics`` is ``(r u, sum_n r (log u - u))`` (:func:`_t_precision_statistics`).
    """
    n_features = X.shape[1]
    dof = params["dof"]
    weighted, log_u_minus_u = statistics
    nk = column_sums(resp)
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
    new_dof = dof.copy()
    for k in np.flatnonzero(~empty):
        # sum_n r E[log tau - tau], with E[log tau] = log u + psi(h) - log h
        correction = _log_tau_correction(float(dof[k]), n_features)
        expected = float(log_u_minus_u[k]) + float(nk[k]) * correction
        new_dof[k] = _update_dof(expected, float(nk[k]), dof_bounds, float(dof[k]))
    return weights, {"means": means, "covariances": covariances, "dof": new_dof}


# Inner loop of fit_student_t_em: "compiled" (the E-step of
# bayesmix.families._t_em_kernel, one pass without (N, K) temporaries) or "numpy". A
# private switch, so that tests can compare the two.
_ENGINE = "compiled"
# From this many rows fit_student_t_em uses the compiled E-step. Loading it from numba's
# cache costs about 0.3-0.4 s in a process that has not loaded numba yet (a NUTS fit loads
# it anyway); the NumPy step costs about 0.3 ms per ECM iteration at N = 2000, K = 2
# against about 0.03 ms, and the emEM start runs about a thousand iterations.
_KERNEL_MIN_SAMPLES = 1000


@functools.cache
def _kernel() -> Any:
    """Return the module of the compiled E-step, or None without numba."""
    try:
        from bayesmix.families import _t_em_kernel
    except ImportError as err:  # pragma: no cover - numba is a dependency of PyTensor
        _log.warning("numba is not available (%s); the Student-t EM uses NumPy.", err)
        return None
    return _t_em_kernel


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
    sample_weight: np.ndarray | None = None,
    init: str = "k-means++",
) -> EMResult:
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
        Seed of the initialisation (the same seeding as
        :func:`bayesmix.families.gaussian.em.fit_em`); a ``Generator`` is used as is.
    dof_bounds : tuple of two floats, default=(1.0, 200.0)
        Interval ``0 < low <= high < inf`` for the degrees of freedom; ``low == high``
        fixes them (a very large value gives a Gaussian mixture).
    sample_weight : numpy.ndarray of shape (n_samples,), optional
        Non-negative frequency weights (validated by the caller); integer weights give the
        fit of the data with every row repeated ``w_n`` times.
    init : {"k-means++", "random", "emem"}, default="k-means++"
        How the restarts start (:func:`bayesmix.em.loop._restart_plan`): each from the
        nearest-seed partition of new k-means++ seeds or of ``K`` random rows; or
        ``"emem"``: ``8 * n_init`` short runs (to a change below 1e-3, at most 50
        iterations) from both kinds, the best ``n_init`` run to convergence (the
        estimators' default).

    Returns
    -------
    EMResult
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
    _check_arguments(X, n_components, n_init, max_iter, tol, "ml", init)
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

    kernel = _kernel() if X.shape[0] >= _KERNEL_MIN_SAMPLES and _ENGINE == "compiled" else None
    if kernel is not None:
        X_c = np.ascontiguousarray(X)
        if sample_weight is None:
            row_weight, total_weight = np.zeros(0), float(X.shape[0])  # (0,): no weights
        else:
            row_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
            total_weight = float(row_weight.sum())

    def e_step(weights: np.ndarray, params: dict):
        precisions_cholesky = compute_precision_cholesky(params["covariances"], covariance_type)
        full = full_covariances(precisions_cholesky, covariance_type, n_components, n_features)
        dof = params["dof"]
        if kernel is not None:
            resp = np.empty((X.shape[0], n_components))
            weighted, log_u_minus_u = np.empty_like(resp), np.empty(n_components)
            with np.errstate(divide="ignore"):  # an empty component's weight is 0
                log_const = np.log(weights) + t_log_density(
                    0.0, _log_det_covariance(full), dof, n_features
                )
            total = kernel.t_e_step(
                X_c,
                np.ascontiguousarray(params["means"]),
                np.ascontiguousarray(full),
                log_const,
                np.ascontiguousarray(dof, dtype=np.float64),
                row_weight,
                resp,
                weighted,
                log_u_minus_u,
            )
            if math.isfinite(total):  # else NumPy's step, which handles every case
                log_likelihood = total / total_weight
                return log_likelihood, log_likelihood, resp, (weighted, log_u_minus_u)
        log_prob, delta = _t_log_prob(X, params["means"], full, dof)
        log_norm, log_resp = _log_responsibilities(log_prob, weights)
        resp = np.exp(log_resp)
        if sample_weight is None:
            log_likelihood = float(np.mean(log_norm))
        else:
            log_likelihood = float(sample_weight @ log_norm / sample_weight.sum())
            resp *= sample_weight[:, np.newaxis]
        statistics = _t_precision_statistics(resp, delta, dof, n_features)
        return log_likelihood, log_likelihood, resp, statistics

    def update(resp: np.ndarray, statistics: tuple, _weights: np.ndarray, params: dict):
        return _t_cm_steps(
            X,
            resp,
            statistics,
            params,
            covariance_type=covariance_type,
            reg_covar=reg_covar,
            dof_bounds=bounds,
        )

    def start(partition: str) -> tuple[np.ndarray, dict]:
        resp = initial_responsibilities(X, n_components, rng, 0.0, sample_weight, partition)
        if sample_weight is not None:
            resp *= sample_weight[:, np.newaxis]
        weights, means, covariances = m_step(X, resp, covariance_type, reg_covar)
        params = {
            "means": means,
            "covariances": covariances,
            "dof": np.full(n_components, min(max(_INIT_DOF, low), high)),
        }
        return weights, params

    def run(
        weights: np.ndarray, params: dict, iterations: int, tolerance: float, name: str
    ) -> _Restart:
        return _iterate(
            e_step, update, weights, params, max_iter=iterations, tol=tolerance, name=name
        )

    degenerate = functools.partial(
        _degenerate_findings,
        X,
        covariance_type=covariance_type,
        reg_covar=reg_covar,
        sample_weight=sample_weight,
    )
    return _fit_restarts(
        _restart_plan(
            start,
            run,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            label="student_t EM",
            degenerate=degenerate,
        ),
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        family="student_t",
        objective="ml",
        covariance_type=covariance_type,
        stacklevel=4,  # _fit_restarts, fit_student_t_em, BLAS-thread wrapper, caller
        degenerate=degenerate,
        degenerate_advice=_DEGENERATE_ADVICE,
    )


def _t_chunk_sums(
    X: np.ndarray,
    w: np.ndarray | None,
    weights: np.ndarray,
    params: dict,
    *,
    covariance_type: str,
    centres: np.ndarray | None = None,
) -> dict:
    """Return the ECM statistics of one chunk, the sums about ``centres`` (default: means).

    ``nk = sum r``, ``su = sum r u``, ``s1 = sum r u (x - c)``, ``s2`` its outer products
    (K, D, D) or squares (K, D), ``a = sum r E[log tau - tau]``, with ``r`` the (weighted)
    responsibilities and ``u = E[tau]`` the E-step precision weights. A chunk with
    missing values (NaN) takes their conditional expectations
    (:func:`_missing_t_e_step`, see the module docstring).
    """
    n_components, n_features = params["means"].shape
    # Also the check of the scales: FitError for one that is not positive definite.
    precisions_cholesky = compute_precision_cholesky(params["covariances"], covariance_type)
    if np.isnan(X).any():
        log_prob, delta, n_observed, filled, conditional = _missing_t_e_step(
            X, params, covariance_type
        )
    else:
        full = full_covariances(precisions_cholesky, covariance_type, n_components, n_features)
        log_prob, delta = _t_log_prob(X, params["means"], full, params["dof"])
        n_observed, conditional = n_features, []
        filled = np.broadcast_to(X, (n_components, *X.shape))
    log_norm, log_resp = _log_responsibilities(log_prob, weights)
    resp = np.exp(log_resp)
    if w is None:
        total, weight = float(np.sum(log_norm)), float(X.shape[0])
    else:
        resp *= w[:, np.newaxis]
        total, weight = float(w @ log_norm), float(w.sum())
    dof = params["dof"]
    u = (dof + n_observed) / (dof + delta)
    with np.errstate(divide="ignore"):
        log_u = np.log(dof + n_observed) - np.log(dof + delta)
    weighted = resp * u
    centres = params["means"] if centres is None else centres
    matrices = covariance_type in ("full", "tied")
    s1 = np.empty((n_components, n_features))
    s2 = np.empty((n_components, n_features, n_features) if matrices else s1.shape)
    for k in range(n_components):
        diff = filled[k] - centres[k]
        moved = weighted[:, k, np.newaxis] * diff
        s1[k] = moved.sum(axis=0)
        s2[k] = moved.T @ diff if matrices else np.sum(moved * diff, axis=0)
        for rows, missing, cond_cov in conditional:  # + sum r C, not scaled by u
            block = resp[rows, k].sum() * cond_cov[k]
            if matrices:
                s2[k][np.ix_(missing, missing)] += block
            else:
                s2[k][missing] += np.diagonal(block)
    per_row = n_observed if isinstance(n_observed, int) else n_observed[:, 0]
    return {
        "log_likelihood": total,
        "weight": weight,
        "nk": column_sums(resp),
        "su": column_sums(weighted),
        "s1": s1,
        "s2": s2,
        "a": np.array(
            [
                _expected_log_tau_minus_tau(
                    resp[:, k], log_u[:, k], u[:, k], float(dof[k]), per_row
                )
                for k in range(n_components)
            ]
        ),
    }


def _missing_t_e_step(
    X: np.ndarray, params: dict, covariance_type: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    """Return the E-step terms of rows with missing values (NaN), by pattern of missingness.

    Returns the log densities of the observed coordinates (N, K) and their squared
    Mahalanobis distances ``delta_o`` (N, K), every row's number of observed values
    ``p_o`` (N, 1), the rows with their missing values at the conditional means
    ``xhat_m`` of each component (K, N, D), and ``(rows, missing mask, (K, m, m)
    conditional covariances)`` per pattern with missing values
    (:func:`bayesmix.families.gaussian.densities.conditional_terms`). A row with no
    observed value must not occur (the data checks refuse it).
    """
    means, dof = params["means"], params["dof"]
    n_components, n_features = means.shape
    n_samples = X.shape[0]
    scales = full_covariances(params["covariances"], covariance_type, n_components, n_features)
    log_prob = np.empty((n_samples, n_components))
    delta = np.empty((n_samples, n_components))
    n_observed = np.empty((n_samples, 1))
    filled = np.broadcast_to(X, (n_components, *X.shape)).copy()
    conditional = []
    for observed, rows in missing_patterns(X):
        distances, log_det, cond_mean, cond_cov = conditional_terms(
            X[np.ix_(rows, observed)], means[None], scales[None], observed
        )
        p_o = int(observed.sum())
        delta[rows] = distances[0].T
        log_prob[rows] = t_log_density(delta[rows], log_det[0], dof, p_o)
        n_observed[rows] = p_o
        missing = ~observed
        if missing.any():
            filled[np.ix_(np.arange(n_components), rows, missing)] = cond_mean[0]
            conditional.append((rows, missing, cond_cov[0]))
    return log_prob, delta, n_observed, filled, conditional


# The scatter about the new means is s2 - s1 s1' / su (one pass) unless the sums about the
# old means are this many times larger than it, where rounding would cost more than ~1e-9
# relatively: then a second pass sums about the new means.
_T_CANCELLATION = 1e7

# The advice of the degenerate-fit warning (the Student-t EM has no MAP objective).
_DEGENERATE_ADVICE = (
    "Use fewer components, a larger reg_covar or a larger n_init (StudentTMixture has no "
    'objective="map"; GaussianMixture(objective="map") keeps every covariance away from '
    "zero)."
)


def _t_scatter(su: np.ndarray, s1: np.ndarray, s2: np.ndarray, matrices: bool) -> np.ndarray:
    """Return the scatter about ``c + s1 / su`` from the sums about ``c``."""
    shift = s1 / (su + 10.0 * _EPS)[:, np.newaxis]
    if matrices:
        outer = s1[:, :, np.newaxis] * shift[:, np.newaxis, :]
        scatter = s2 - outer - outer.transpose(0, 2, 1)
        return scatter + su[:, None, None] * (shift[:, :, None] * shift[:, None, :])
    return s2 - 2.0 * s1 * shift + su[:, np.newaxis] * shift**2


def chunked_t_steps(
    n_components: int,
    n_features: int,
    *,
    covariance_type: str,
    reg_covar: float,
    dof_bounds: tuple[float, float],
    data_pass: Callable[[Callable], dict] | None = None,
) -> EMSteps:
    """Return the Student-t ECM as sufficient statistics (:class:`EMSteps`, chunked data).

    With ``data_pass``, restarts are checked for degenerate components (two passes
    for the data covariance, at the first check).

    One pass per iteration (:func:`_t_chunk_sums` about the current means); both CM-steps
    of :func:`_t_cm_steps` from the totals, with a second pass about the new means when
    the one-pass scatter may have cancelled (:data:`_T_CANCELLATION`).
    """
    matrices = covariance_type in ("full", "tied")
    statistics = functools.partial(_t_chunk_sums, covariance_type=covariance_type)

    def cm_steps(stats: dict, weights: np.ndarray, params: dict, data_pass) -> tuple:
        nk, su = np.asarray(stats["nk"]), np.asarray(stats["su"])
        centres = params["means"]
        means = centres + stats["s1"] / (su + 10.0 * _EPS)[:, np.newaxis]
        scatter = _t_scatter(su, stats["s1"], stats["s2"], matrices)
        size = np.trace(stats["s2"], axis1=1, axis2=2) if matrices else stats["s2"].sum(axis=1)
        left = np.trace(scatter, axis1=1, axis2=2) if matrices else scatter.sum(axis=1)
        if np.any(size > _T_CANCELLATION * np.maximum(left, 0.0)):
            second = data_pass(
                functools.partial(
                    _t_chunk_sums,
                    weights=weights,
                    params=params,
                    covariance_type=covariance_type,
                    centres=means,
                )
            )
            means = means + second["s1"] / (su + 10.0 * _EPS)[:, np.newaxis]
            scatter = _t_scatter(su, second["s1"], second["s2"], matrices)
        floored = nk + 10.0 * _EPS
        if covariance_type == "full":
            covariances = scatter / floored[:, np.newaxis, np.newaxis]
            covariances += reg_covar * np.eye(n_features)
        elif covariance_type == "tied":
            covariances = scatter.sum(axis=0) / floored.sum() + reg_covar * np.eye(n_features)
        elif covariance_type == "diag":
            covariances = scatter / floored[:, np.newaxis] + reg_covar
        else:
            covariances = scatter.mean(axis=1) / floored + reg_covar
        empty = nk < _EMPTY_MASS
        if np.any(empty):  # keep the previous parameters of an empty component
            means[empty] = centres[empty]
            if covariance_type != "tied":
                covariances[empty] = params["covariances"][empty]
        dof = params["dof"].copy()
        for k in np.flatnonzero(~empty):
            dof[k] = _update_dof(float(stats["a"][k]), float(nk[k]), dof_bounds, float(dof[k]))
        return floored / floored.sum(), {"means": means, "covariances": covariances, "dof": dof}

    def initialise(
        rows, n_samples: int, rng: np.random.Generator, partition: str = "k-means++"
    ) -> tuple:
        X, w = rows(sample_indices(n_samples, rng))
        X = mean_filled(X, w)  # the start only: missing values at their column's mean
        resp = initial_responsibilities(X, n_components, rng, 0.0, w, partition)
        if w is not None:
            resp *= w[:, np.newaxis]
        weights, means, covariances = m_step(X, resp, covariance_type, reg_covar)
        low, high = dof_bounds
        dof = np.full(n_components, min(max(_INIT_DOF, low), high))
        return weights, {"means": means, "covariances": covariances, "dof": dof}

    return EMSteps(
        family="student_t",
        statistics=statistics,
        m_step=cm_steps,
        initialise=initialise,
        centre=functools.partial(_centre, mass="su"),
        recentre=functools.partial(_recentre, covariance_type=covariance_type, mass="su"),
        covariance_type=covariance_type,
        degenerate=None
        if data_pass is None
        else _chunked_degenerate(data_pass, n_features, covariance_type, reg_covar),
        degenerate_advice=_DEGENERATE_ADVICE,
    )


def student_t_mixture_logp(value: Any, weights: Any, means: Any, chol: Any, dof: Any) -> Any:
    """Return the marginal log-density of every observation under a t mixture (PyTensor).

    Shapes as in :func:`bayesmix.families.gaussian.model.mixture_logp`, plus ``dof`` of shape
    ``(..., n_components)``.
    """
    n_features, mahalanobis, log_det = mahalanobis_terms(value, means, chol)
    component = (
        pt.gammaln(0.5 * (dof + n_features))
        - pt.gammaln(0.5 * dof)
        - 0.5 * n_features * pt.log(np.pi * dof)
        - log_det
        - 0.5 * (dof + n_features) * pt.log1p(mahalanobis / dof)
    )
    return pt.logsumexp(pt.log(weights) + component, axis=-1)


def student_t_mixture_random(
    weights: np.ndarray,
    means: np.ndarray,
    chol: np.ndarray,
    dof: np.ndarray,
    rng: np.random.Generator | None = None,
    size: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Draw observations: a label, a Gamma(nu/2, nu/2) precision scale, then a Gaussian."""
    rng = np.random.default_rng(rng)
    n_components, n_features = means.shape[-2:]
    param_batch = np.broadcast_shapes(
        weights.shape[:-1], means.shape[:-2], chol.shape[:-3], dof.shape[:-1]
    )
    batch = tuple(size) if size is not None else param_batch
    weights = np.broadcast_to(weights, (*batch, n_components))
    means = np.broadcast_to(means, (*batch, n_components, n_features))
    chol = np.broadcast_to(chol, (*batch, n_components, n_features, n_features))
    dof = np.broadcast_to(dof, (*batch, n_components))
    cdf = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
    z = np.minimum((rng.random(batch)[..., None] > cdf).sum(axis=-1), n_components - 1)
    mu = np.take_along_axis(means, z[..., None, None], axis=-2)[..., 0, :]
    factor = np.take_along_axis(chol, z[..., None, None, None], axis=-3)[..., 0, :, :]
    nu = np.take_along_axis(dof, z[..., None], axis=-1)[..., 0]
    u = rng.gamma(0.5 * nu, 2.0 / nu)
    eps = rng.standard_normal((*batch, n_features)) / np.sqrt(u)[..., None]
    return mu + np.einsum("...ij,...j->...i", factor, eps)


def _valid_bounds(bounds: Any) -> bool:
    """Whether ``bounds`` are two numbers ``0 < low < high < inf`` (dof_bounds)."""
    if isinstance(bounds, str):
        return False
    low, high = (float(b) for b in bounds)
    return bool(0 < low < high < np.inf)


class StudentTMixture(_LocationScaleMixture):
    r"""Bayesian finite mixture of multivariate Student-t distributions (robust clustering).

    Like :class:`GaussianMixture`, with heavy-tailed components: every component has
    a location ``means``, a scale matrix ``scales`` (parameterised like the Gaussian
    covariances: ``sigma`` and ``corr_chol``) and its own degrees of freedom ``dof``.
    Outliers are absorbed by the tails instead of distorting the components or
    demanding components of their own. The EM estimate is maximum likelihood by ECM.

    Parameters
    ----------
    n_components : int, default=2
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Structure of the scale matrices, as for :class:`GaussianMixture`.
    priors : dict of str to Prior, optional
        Priors for ``weights``, ``means``, ``sigma``, ``corr_chol`` (as for
        :class:`GaussianMixture`) and ``dof`` (Gamma, Exponential, ...).
    n_init : int, default=5
        Number of ECM restarts run to convergence; the best is kept.
    init : {"emem", "k-means++", "random"}, default="emem"
        How the EM restarts start. ``"emem"`` (Biernacki, Celeux & Govaert 2003): ``8 *
        n_init`` short runs (until the mean log-likelihood changes by less than 1e-3, at
        most 50 iterations) from k-means++ and random partitions in turn, of which the
        best ``n_init`` run to convergence; it reaches the best known optimum more often
        than k-means++ restarts (``bench/results/em_init.md``). ``"k-means++"``:
        every restart from new k-means++ seeds (scikit-learn's start, bayesmix's earlier
        default); ``"random"``: from ``K`` random rows. With maximum likelihood, a
        restart that ends degenerate (a component on fewer points than its parameters
        need, or with a variance below 1e-6 of the data's) is kept only if every restart
        does.
    max_iter : int, default=500
    tol : float, default=1e-6
    reg_covar : float, default=1e-6
    random_state : int or None, default=None
    dof_bounds : tuple of float, default=(1.0, 200.0)
        Range of the degrees of freedom in ECM.
    missing : {"raise", "model"}, default="raise"
        Missing values (NaN) in ``X``: ``"raise"`` refuses them (a ``DataError``);
        ``"model"`` treats them as missing at random and integrates them out: each row's
        likelihood is the t density of its observed coordinates (the same degrees of
        freedom, their location and scale blocks), and the ECM's E-step takes the
        conditional expectations of the missing ones and of the latent precisions
        (Liu & Rubin 1995; see the module docstring), rows grouped by their
        pattern of missing values. ``predict``, ``predict_proba`` and ``score_samples``
        then accept rows with missing values too. NUTS and Laplace sample the same
        marginal likelihood (the PyMC model, per pattern of missing values; not the fused
        kernel); a row or column with every value missing is a ``DataError``. On chunked
        data (Dask, Zarr, Parquet) EM and Laplace take them too, chunk by chunk; NUTS
        there needs complete rows.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
        Posterior mean (or ECM estimate) of the component locations.
    scales_ : ndarray
        Scale matrices in scikit-learn's covariance shape for ``covariance_type``; the
        covariance of component ``k`` is ``dof_[k] / (dof_[k] - 2) * Sigma_k`` for
        ``dof_[k] > 2``.
    dof_ : ndarray of shape (n_components,)
        Degrees of freedom.
    idata : xarray.DataTree
        ``posterior`` (``weights``, ``means``, ``scales``, ``dof``, ``sigma``,
        ``corr_chol``) and the other groups as for :class:`GaussianMixture`.
    em_ : bayesmix.em.loop.EMResult
    priors_ : dict of str to Prior
    n_features_in_ : int
    feature_names_in_ : list of str

    Notes
    -----
    Default priors as for :class:`GaussianMixture`, and ``dof ~ Gamma(2, 0.1)``
    (mean 20, Juárez & Steel 2010). Components are labelled by increasing location
    of the first feature.

    References
    ----------
    G. J. McLachlan and D. Peel, *Finite Mixture Models*, Wiley, 2000, chapter 7.
    M. A. Juárez and M. F. J. Steel, "Model-based clustering of non-Gaussian panel
    data based on skew-t distributions", *JBES* 28, 52-66, 2010.
    C. Liu and D. B. Rubin, "ML estimation of the t distribution using EM and its
    extensions, ECM and ECME", *Statistica Sinica* 5, 19-39, 1995.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_faithful()
    >>> tm = bm.StudentTMixture(n_components=2, random_state=0).fit(X, method="em")
    >>> tm.weights_.round(2)
    array([0.36, 0.64])
    >>> bool(np.all(tm.dof_ > 1))
    True
    """

    _family = "student_t"
    _component_vars = ("means", "scales", "dof")
    component_log_prob = staticmethod(student_t_log_prob)
    _fast_pointwise = staticmethod(_fast_pointwise)
    _matrix_var = "scales"
    _has_dof = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **_LocationScaleMixture._parameter_constraints,
        "dof_bounds": [
            Satisfies(_valid_bounds, "two numbers 0 < low < high (finite)"),
            Hint("Try the default (1.0, 200.0)."),
        ],
        "missing": [Options("raise", "model")],
    }

    def __init__(
        self,
        *,
        n_components: int = 2,
        covariance_type: str = "full",
        priors: dict[str, Prior] | None = None,
        n_init: int = 5,
        init: Literal["emem", "k-means++", "random"] = "emem",
        max_iter: int = 500,
        tol: float = 1e-6,
        reg_covar: float = 1e-6,
        random_state: int | None = None,
        dof_bounds: tuple[float, float] = (1.0, 200.0),
        missing: Literal["raise", "model"] = "raise",
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.priors = priors
        self.n_init = n_init
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.dof_bounds = dof_bounds
        self.missing = missing

    def _conditional(
        self, observed_values: np.ndarray, params: tuple[np.ndarray, ...], observed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Callable]:
        """Return the t components' terms of :meth:`impute` for one pattern.

        Given the observed coordinates, component ``k``'s missing ones are a t with
        ``nu_k + p_o`` degrees of freedom, location the conditional mean and scale matrix
        ``(nu_k + delta_o) / (nu_k + p_o)`` times the conditional covariance (Liu & Rubin
        1995): a draw is the conditional Gaussian with covariance divided by a latent
        precision ``tau ~ Gamma((nu_k + p_o) / 2, (nu_k + delta_o) / 2)``.
        """
        means, scales, dof = params
        p_o = int(observed.sum())
        delta, log_det, cond_mean, cond_cov = conditional_terms(
            observed_values, means, scales, observed
        )  # (S, K, n), (S, K), (S, K, n, m), (S, K, m, m)
        log_density = t_log_density(delta, log_det[..., None], dof[..., None], p_o)

        def noise_scale(rng: np.random.Generator, s: int, labels: np.ndarray) -> np.ndarray:
            nu = dof[s, labels]
            at = np.arange(labels.size)
            tau = rng.gamma(0.5 * (nu + p_o), 2.0 / (nu + delta[s, labels, at]))
            return 1.0 / np.sqrt(tau)

        return log_density, cond_mean, cond_cov, noise_scale

    def _rv_shapes(self, n_features: int) -> dict[str, tuple[str, ...]]:
        dims = super()._rv_shapes(n_features)
        dims["dof"] = ("component",)
        return dims

    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        priors = super()._default_priors(data)
        priors["dof"] = Prior("Gamma", alpha=2.0, beta=0.1)
        return priors

    def _allowed_priors(self) -> dict[str, frozenset[str]]:
        allowed = dict(super()._allowed_priors())
        allowed["dof"] = frozenset({"Gamma", "Exponential", "LogNormal", "InverseGamma"})
        return allowed

    def _posterior_supports(self) -> dict[str, str]:
        return super()._posterior_supports() | {"dof": "positive"}

    def _n_parameters(self, n_features: int) -> int:
        return n_parameters(self.n_components, n_features, self.covariance_type) + (
            self.n_components
        )

    def _likelihood(
        self, rvs: dict[str, Any], chol: Any, observed: Any, patterns: list | None = None
    ) -> Any:
        """Add the observed variable ``x``: the t mixture with the labels summed out.

        With missing values (``patterns``), each row's marginal density of its observed
        coordinates (:func:`bayesmix.families._location_scale.marginal_logp`).
        """
        logp = student_t_mixture_logp
        return pm.CustomDist(
            "x",
            rvs["weights"],
            rvs["means"],
            chol,
            rvs["dof"],
            logp=logp if patterns is None else marginal_logp(logp, patterns),
            random=student_t_mixture_random,
            signature="(k),(k,d),(k,d,d),(k)->(d)",
            observed=observed,
            dims=("obs", "feature"),
        )

    def _fitted_attributes(self, point: dict[str, np.ndarray]) -> None:
        self.means_ = point["means"]
        self.scales_ = self._sklearn_covariances(point["scales"])
        self.dof_ = point["dof"]

    def _run_em(
        self, data: MixtureData, rng: np.random.Generator, priors: dict[str, Prior]
    ) -> EMResult:
        if np.isnan(data.values).any():  # the chunked ECM, whose E-step integrates them out
            return self._fit_missing_em(data, rng, priors)
        result = fit_student_t_em(
            data.values,
            self.n_components,
            covariance_type=self.covariance_type,
            n_init=self.n_init,
            init=self.init,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            random_state=rng,
            sample_weight=data.sample_weight,
            dof_bounds=tuple(float(b) for b in self.dof_bounds),
        )
        return self._order_em(result)

    def _order_em(self, em: EMResult) -> EMResult:
        return em.reordered(np.lexsort(em.params["means"].T[::-1]))

    def _em_steps(
        self, priors: dict[str, Prior], n_features: int, data_pass: Callable[[Callable], dict]
    ) -> EMSteps:
        return chunked_t_steps(
            self.n_components,
            n_features,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            dof_bounds=tuple(float(b) for b in self.dof_bounds),
            data_pass=data_pass,
        )

    def _point_from_em(self, em: EMResult, n_features: int) -> dict[str, np.ndarray]:
        """Every posterior variable at the ECM estimate (constrained space)."""
        scales = full_covariances(
            em.params["covariances"], self.covariance_type, self.n_components, n_features
        )
        point = self._matrix_point(em.weights, em.params["means"], scales, n_features)
        point["dof"] = np.asarray(em.params["dof"], dtype=np.float64)
        return point
