r"""Exact expectation-maximisation (EM) for Gaussian mixture models.

This module computes maximum-likelihood (``objective="ml"``) or maximum a posteriori
(``objective="map"``) point estimates of a finite Gaussian mixture

.. math::

    p(x) = \sum_{k=1}^{K} \pi_k \, \mathcal{N}(x \mid \mu_k, \Sigma_k)

with the EM algorithm of Dempster, Laird & Rubin (1977), in the form given by
Bishop (2006), chapter 9.2. Each iteration alternates two exact steps:

* **E-step** -- the responsibilities
  :math:`r_{nk} = \pi_k \mathcal{N}(x_n \mid \mu_k, \Sigma_k) / p(x_n)` are computed in
  log space (a max-shifted log-sum-exp), together with the mean log-likelihood
  :math:`N^{-1} \sum_n \log p(x_n)` of the current parameters.
* **M-step** -- for ``"ml"`` the weights, means and covariances are the
  responsibility-weighted counts, averages and scatter matrices. A small ridge
  ``reg_covar`` is added to the diagonal of every covariance so that it stays positive
  definite, and the counts are floored at ``10 * eps`` so that an empty component does not
  divide by zero. For ``"map"`` the means and covariances are the posterior mode under the
  conjugate prior of Fraley & Raftery (2007), see :func:`default_prior` and :func:`m_step`.

The objective -- the mean log-likelihood for ``"ml"``, the mean log posterior
``(log-likelihood + log prior) / N`` for ``"map"`` -- never decreases from one iteration to
the next (exactly for ``"map"`` with ``reg_covar=0``; up to the tiny effect of ``reg_covar``
otherwise), and the loop stops when it changes by less than ``tol``. EM only finds a local
maximum, so the fit is restarted ``n_init`` times from k-means++ seeds (Arthur &
Vassilvitskii, 2007; ``init="k-means++"``, the default here) or random partitions, or
from the best of many short runs (``init="emem"``, the estimator's default; see
:func:`bayesmix.em.loop._restart_plan`), and the restart with the highest objective is
kept (with maximum likelihood, the highest that is not degenerate when there is one).

Degenerate data are handled as follows:

* a component whose total responsibility drops below ``1e-8`` samples (it is *empty*) is
  re-initialised at the sample with the lowest likelihood, with weight ``1 / N`` and the
  covariance ``cov(X) / K^(2/D)`` (the prior scale of the ``"map"`` objective), and the
  event is logged on the ``"bayesmix"`` logger. After ``n_components`` re-initialisations
  in one restart an empty component keeps its previous parameters and a vanishing weight,
  and :func:`fit_em` warns (:class:`~bayesmix.exceptions.ConvergenceWarning`);
* a maximum-likelihood component that collapses onto duplicated points or a
  lower-dimensional subspace either stays positive definite thanks to ``reg_covar``, and
  :func:`fit_em` then warns that the estimate is degenerate, or (``reg_covar=0``) raises a
  :class:`~bayesmix.exceptions.FitError` naming what to change; the ``"map"`` objective
  keeps every covariance positive definite without ``reg_covar``;
* a maximum-likelihood component with fewer effective points than its covariance needs
  (``D + 1`` for ``"full"``, 2 for ``"diag"`` and ``"spherical"``) or with a variance below
  1e-6 of the data's in some direction is degenerate (:func:`_degenerate_components`): a
  sound restart is preferred to it, and if none is found :func:`fit_em` warns, naming the
  component and what was found and recommending ``objective="map"``;
* a restart that fails is skipped with a warning when another restart succeeded.

Parameters are stored exactly as in scikit-learn's ``GaussianMixture``: the four
covariance types ``"full"`` (``(K, D, D)``), ``"tied"`` (``(D, D)``), ``"diag"``
(``(K, D)``) and ``"spherical"`` (``(K,)``), and densities are evaluated through the
Cholesky factor ``U`` of each precision matrix (``Sigma^-1 = U U^T``, ``U`` upper
triangular), which is obtained from the Cholesky factor of the covariance by a triangular
solve, never by an explicit inverse. Started from the same parameters, :func:`fit_em` with
``objective="ml"`` follows scikit-learn's iteration exactly (as long as no component
empties).

Inside :func:`fit_em` each iteration is, by default, one pass of a fused numba kernel
(:mod:`bayesmix.families.gaussian._em_kernels`, compiled on first use and cached on disk): per
observation it evaluates the component log densities, their log-sum-exp and the responsibilities and
accumulates the log-likelihood and the M-step sums (total responsibility, first and second
moments about the current means), without forming an (N, K) array; the M-step and the new
precision Cholesky factors are computed from these sums. It computes the same quantities as
:func:`e_step` and :func:`m_step`, up to rounding (about 1e-12 relatively on
well-conditioned data). An iteration with an empty or nearly empty component, a
non-finite objective, or a covariance that is degenerate at the scale of rounding is done by
:func:`e_step` and :func:`m_step` instead, so that the handling of these cases is unchanged.

References
----------
.. [1] A. P. Dempster, N. M. Laird and D. B. Rubin, "Maximum likelihood from incomplete
   data via the EM algorithm", *Journal of the Royal Statistical Society B*, 39(1),
   1-38, 1977.
.. [2] C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer, 2006,
   chapter 9.
.. [3] D. Arthur and S. Vassilvitskii, "k-means++: the advantages of careful seeding",
   *Proceedings of the 18th ACM-SIAM Symposium on Discrete Algorithms*, 1027-1035, 2007.
.. [4] C. Fraley and A. E. Raftery, "Bayesian regularization for normal mixture estimation
   and model-based clustering", *Journal of Classification*, 24, 155-181, 2007.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.linalg import lapack
from scipy.special import gammaln, multigammaln

from bayesmix._numeric import (
    column_means,
    column_sums,
    logsumexp,
    mean_filled,
    missing_patterns,
)
from bayesmix.em.chunked import EMSteps, sample_indices
from bayesmix.em.init import initial_labels, kmeans_plusplus
from bayesmix.em.loop import (
    EMResult,
    _check_arguments,
    _fit_restarts,
    _Restart,
    _restart_plan,
    converge,
)
from bayesmix.em.loop import _warn_degenerate as _warn_degenerate_fit
from bayesmix.exceptions import ConvergenceWarning, FitError, InvalidParameterError
from bayesmix.families.gaussian import covariance_models
from bayesmix.families.gaussian.densities import conditional_gaussians

__all__ = [
    "COVARIANCE_TYPES",
    "OBJECTIVES",
    "ConjugatePrior",
    "EMResult",
    "compute_precision_cholesky",
    "default_prior",
    "e_step",
    "estimate_log_gaussian_prob",
    "fit_em",
    "full_covariances",
    "kmeans_plusplus",
    "log_prior",
    "m_step",
]

logger = logging.getLogger("bayesmix")

COVARIANCE_TYPES: tuple[str, ...] = ("full", "tied", "diag", "spherical")
OBJECTIVES: tuple[str, ...] = ("ml", "map")

_EPS = np.finfo(np.float64).eps

# A component whose total responsibility is below this many samples is empty.
_EMPTY_MASS = 1e-8
# A maximum-likelihood covariance whose data part (covariance minus reg_covar), relative to
# the data covariance, has an eigenvalue below this has collapsed (std ratio 1e-6).
_COLLAPSE_RTOL = 1e-12
# ... and one below this is degenerate (std ratio 1e-3; see _degenerate_components and
# bench/results/em_init.md).
_DEGENERATE_VARIANCE = 1e-6

# The advice of the degenerate-fit warning (maximum likelihood).
_DEGENERATE_ADVICE = (
    'Use objective="map" (the conjugate prior of Fraley & Raftery 2007 keeps every '
    "covariance away from zero), fewer components or a larger n_init."
)

_FIT_ADVICE = (
    'Try objective="map" (a conjugate prior that keeps every covariance positive definite), '
    "increasing reg_covar, using fewer components, standardising the data or using "
    'covariance_type="diag".'
)


# ---------------------------------------------------------------------------------------
# Argument checks


def _check_covariance_type(covariance_type: str) -> None:
    """Raise ``InvalidParameterError`` unless ``covariance_type`` is a known type."""
    if covariance_type not in COVARIANCE_TYPES:
        raise InvalidParameterError(
            f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}."
        )


def _covariance_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Return the scikit-learn shape of the covariance parameter for ``covariance_type``."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


def _expected_ndim(covariance_type: str) -> int:
    """Return the number of dimensions of the covariance parameter for ``covariance_type``."""
    return {"full": 3, "tied": 2, "diag": 2, "spherical": 1}[covariance_type]


def _check_covariance_ndim(covariances: np.ndarray, covariance_type: str) -> None:
    """Raise ``InvalidParameterError`` if ``covariances`` has the wrong number of dimensions."""
    ndim = _expected_ndim(covariance_type)
    if covariances.ndim != ndim:
        raise InvalidParameterError(
            f"covariances for covariance_type={covariance_type!r} must be {ndim}-D, got an "
            f"array of shape {covariances.shape}."
        )
    if covariance_type in ("full", "tied") and covariances.shape[-1] != covariances.shape[-2]:
        raise InvalidParameterError(
            f"covariances for covariance_type={covariance_type!r} must be square matrices, "
            f"got an array of shape {covariances.shape}."
        )


# ---------------------------------------------------------------------------------------
# Precision Cholesky factors and densities


# A squared Cholesky pivot below this times D times its variance is rounding error: the
# matrix is numerically singular.
_SINGULAR_PIVOT = 16 * np.finfo(np.float64).eps


def _precision_cholesky_matrix(covariance: np.ndarray, name: str, covariance_type: str):
    """Return the upper-triangular ``U`` with ``U U^T = covariance^-1`` for one matrix.

    Parameters
    ----------
    covariance : numpy.ndarray of shape (n_features, n_features)
        A symmetric positive-definite covariance matrix.
    name : str
        How to name the matrix in an error message (e.g. ``"component 2"``).
    covariance_type : str
        Covariance type, for the error message.

    Returns
    -------
    numpy.ndarray of shape (n_features, n_features)
        ``L^-T`` where ``covariance = L L^T``.

    Raises
    ------
    FitError
        If the matrix is not finite or not numerically positive definite.
    """
    n_features = covariance.shape[0]
    if not np.all(np.isfinite(covariance)):
        raise FitError(
            f"The covariance of {name} (covariance_type={covariance_type!r}) contains NaN "
            f"or infinite values, so it has no Cholesky factor. {_FIT_ADVICE}"
        )
    singular = FitError(
        f"The covariance of {name} (covariance_type={covariance_type!r}) is not positive "
        "definite: it is singular or nearly so, typically because the component "
        f"collapsed onto too few or duplicated points. {_FIT_ADVICE}"
    )
    # LAPACK's potrf and trtrs directly: scipy.linalg's cholesky and solve_triangular
    # call the same routines with about 20 microseconds of checks per matrix, which
    # dominated EM iterations on small data (the Student-t's ECM runs ~1,200 of them).
    cov_chol, info = lapack.dpotrf(covariance, lower=1, clean=1)
    if info != 0:
        raise singular
    # A pivot within rounding error of zero is a singular matrix that this Cholesky
    # happened to factorise: another LAPACK (NumPy's, in the densities) may not (found
    # by fuzzing: a tied covariance of 5 rows, 2 components and 4 features, rank 3).
    # Each pivot relative to its variance (1 - R^2 of the feature on the ones before it):
    # the same at any scale of the features.
    relative = np.diagonal(cov_chol) ** 2 / np.diagonal(covariance)
    if not relative.min() > _SINGULAR_PIVOT * n_features:
        raise singular
    eye = np.eye(n_features, dtype=np.float64)
    factor, info = lapack.dtrtrs(cov_chol, eye, lower=1)
    if info != 0:
        raise singular
    return factor.T


def compute_precision_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Compute the Cholesky factors of the precision matrices from the covariances.

    For ``"full"`` and ``"tied"`` each covariance ``Sigma = L L^T`` is factorised and the
    returned factor is ``U = L^-T`` (upper triangular), so that ``Sigma^-1 = U U^T``; it is
    obtained with a triangular solve, not an explicit inverse. For ``"diag"`` and
    ``"spherical"`` the factor is ``1 / sqrt(variance)``.

    Parameters
    ----------
    covariances : array_like
        Covariances in the scikit-learn shape for ``covariance_type``: ``"full"`` (K, D, D),
        ``"tied"`` (D, D), ``"diag"`` (K, D) or ``"spherical"`` (K,).
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance parameterisation.

    Returns
    -------
    numpy.ndarray
        Precision Cholesky factors, in the same shape as ``covariances``.

    Raises
    ------
    FitError
        If a covariance is not positive definite (Cholesky failure, or a variance that is
        not strictly positive); the message names the component.
    InvalidParameterError
        If ``covariance_type`` is unknown or ``covariances`` has the wrong dimensions.
    """
    _check_covariance_type(covariance_type)
    covariances = np.asarray(covariances, dtype=np.float64)
    _check_covariance_ndim(covariances, covariance_type)

    if covariance_type == "full":
        precisions_cholesky = np.empty_like(covariances)
        for k, cov in enumerate(covariances):
            precisions_cholesky[k] = _precision_cholesky_matrix(
                cov, f"component {k}", covariance_type
            )
        return precisions_cholesky
    if covariance_type == "tied":
        return _precision_cholesky_matrix(covariances, "the tied covariance", covariance_type)

    bad = ~(np.isfinite(covariances) & (covariances > 0.0))
    if np.any(bad):
        bad_components = np.flatnonzero(bad if bad.ndim == 1 else bad.any(axis=1))
        raise FitError(
            f"The variances of component(s) {bad_components.tolist()} "
            f"(covariance_type={covariance_type!r}) are not strictly positive and finite, so "
            f"the component has collapsed. {_FIT_ADVICE}"
        )
    return 1.0 / np.sqrt(covariances)


def full_covariances(
    covariances: np.ndarray, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Expand covariances of any type to one full matrix per component.

    Parameters
    ----------
    covariances : array_like
        Covariances in the scikit-learn shape for ``covariance_type``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance parameterisation.
    n_components : int
        Number of components ``K``.
    n_features : int
        Number of features ``D``.

    Returns
    -------
    numpy.ndarray of shape (n_components, n_features, n_features)
        A new array holding the full covariance matrix of every component.

    Raises
    ------
    InvalidParameterError
        If ``covariances`` does not have the shape implied by the other arguments.
    """
    _check_covariance_type(covariance_type)
    covariances = np.asarray(covariances, dtype=np.float64)
    expected = _covariance_shape(covariance_type, n_components, n_features)
    if covariances.shape != expected:
        raise InvalidParameterError(
            f"covariances for covariance_type={covariance_type!r} with "
            f"n_components={n_components} and n_features={n_features} must have shape "
            f"{expected}, got {covariances.shape}."
        )
    if covariance_type == "full":
        return covariances.copy()
    if covariance_type == "tied":
        return np.repeat(covariances[np.newaxis], n_components, axis=0)
    eye = np.eye(n_features, dtype=np.float64)
    if covariance_type == "diag":
        return covariances[:, :, np.newaxis] * eye
    return covariances[:, np.newaxis, np.newaxis] * eye


def _log_det_precision_cholesky(
    precisions_cholesky: np.ndarray, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Return ``log det U_k`` (half the log-determinant of each precision), shape (K,)."""
    if covariance_type == "full":
        diagonals = np.diagonal(precisions_cholesky, axis1=1, axis2=2)
        return np.sum(np.log(diagonals), axis=1)
    if covariance_type == "tied":
        return np.full(n_components, np.sum(np.log(np.diag(precisions_cholesky))))
    if covariance_type == "diag":
        return np.sum(np.log(precisions_cholesky), axis=1)
    return n_features * np.log(precisions_cholesky)


def estimate_log_gaussian_prob(
    X: np.ndarray, means: np.ndarray, precisions_cholesky: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Evaluate the log density of every sample under every Gaussian component.

    Uses ``log N(x | mu, Sigma) = -D/2 log(2 pi) + log det U - ||U^T (x - mu)||^2 / 2``
    where ``U`` is the precision Cholesky factor; the Mahalanobis distances are computed
    from the centred data, one component at a time, to avoid cancellation.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data.
    means : numpy.ndarray of shape (n_components, n_features)
        Component means.
    precisions_cholesky : numpy.ndarray
        Precision Cholesky factors in the shape for ``covariance_type`` (see
        :func:`compute_precision_cholesky`).
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance parameterisation.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_components)
        ``log N(x_n | mu_k, Sigma_k)``.
    """
    _check_covariance_type(covariance_type)
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    precisions_cholesky = np.asarray(precisions_cholesky, dtype=np.float64)
    n_samples, n_features = X.shape
    n_components = means.shape[0]

    mahalanobis = np.empty((n_samples, n_components), dtype=np.float64)
    for k in range(n_components):
        diff = X - means[k]
        if covariance_type == "full":
            y = diff @ precisions_cholesky[k]
        elif covariance_type == "tied":
            y = diff @ precisions_cholesky
        else:
            y = diff * precisions_cholesky[k]
        mahalanobis[:, k] = np.einsum("ij,ij->i", y, y)

    log_det = _log_det_precision_cholesky(
        precisions_cholesky, covariance_type, n_components, n_features
    )
    return -0.5 * (n_features * math.log(2.0 * math.pi) + mahalanobis) + log_det


# ---------------------------------------------------------------------------------------
# Conjugate prior of the MAP objective


@dataclass(frozen=True, eq=False)
class ConjugatePrior:
    r"""Conjugate prior on the component means and covariances (``objective="map"``).

    For ``"full"`` and ``"tied"`` covariances this is the normal-inverse-Wishart prior

    .. math::

        \mu_k \mid \Sigma_k \sim \mathcal{N}(\mu_P, \Sigma_k / \kappa_P), \qquad
        \Sigma_k \sim \mathcal{W}^{-1}(\nu_P, \Lambda_P),

    with density :math:`\propto |\Sigma|^{-(\nu_P + D + 1)/2}
    \exp(-\operatorname{tr}(\Lambda_P \Sigma^{-1}) / 2)`; ``"tied"`` has one
    :math:`\Sigma` with this prior and a normal prior for every mean. For ``"diag"`` every
    variance :math:`\sigma^2_{kj}` has an inverse-gamma prior
    :math:`\mathcal{IG}(\nu_P / 2, \lambda_j / 2)` and
    :math:`\mu_{kj} \mid \sigma^2_{kj} \sim \mathcal{N}(\mu_{P,j}, \sigma^2_{kj} / \kappa_P)`;
    for ``"spherical"`` the single variance :math:`\sigma^2_k` of a component has the prior
    :math:`\mathcal{IG}(\nu_P / 2, \lambda / 2)` and
    :math:`\mu_k \mid \sigma^2_k \sim \mathcal{N}(\mu_P, \sigma^2_k I / \kappa_P)`. The
    mixing weights have no prior. This is the prior of Fraley & Raftery (2007) and of R
    mclust's ``priorControl()``; build the default with :func:`default_prior`.

    Attributes
    ----------
    mean : numpy.ndarray of shape (n_features,)
        Prior mean :math:`\mu_P` of the component means.
    shrinkage : float
        :math:`\kappa_P > 0`, the number of observations the mean prior is worth.
    dof : float
        Degrees of freedom :math:`\nu_P > D - 1` (``"full"``/``"tied"``) or twice the
        inverse-gamma shape :math:`\nu_P > 0` (``"diag"``/``"spherical"``).
    scale : numpy.ndarray
        :math:`\Lambda_P`: a positive-definite (D, D) matrix for ``"full"`` and ``"tied"``,
        positive per-feature scales (D,) for ``"diag"``, a positive 0-d array for
        ``"spherical"``.
    covariance_type : str
        The covariance type the prior is for; one of :data:`COVARIANCE_TYPES`.
    """

    mean: np.ndarray
    shrinkage: float
    dof: float
    scale: np.ndarray
    covariance_type: str


def _data_scatter(X: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Return the scatter matrix ``sum_n w_n (x_n - xbar)(x_n - xbar)^T`` of the data.

    A missing value (NaN) is left out of its column's mean and adds nothing to the
    scatter (:func:`_moment_sums`).
    """
    if np.isnan(X).any():
        sums = _moment_sums(X, sample_weight)
        return _moment_sums(X, sample_weight, sums["sum"] / sums["count"])["scatter"]
    diff = X - column_means(X, sample_weight)
    return diff.T @ diff if sample_weight is None else (diff.T * sample_weight) @ diff


def _total_weight(X: np.ndarray, sample_weight: np.ndarray | None) -> float:
    """Return the number of samples, or the total frequency weight."""
    return float(X.shape[0] if sample_weight is None else sample_weight.sum())


def _prior_scale(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    scatter: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``cov(X) / K^(2/D)`` in the shape of a :class:`ConjugatePrior` scale.

    ``scatter`` is :func:`_data_scatter` of ``X`` if already computed.
    """
    if scatter is None:
        scatter = _data_scatter(X, sample_weight)
    return _scale_from_scatter(
        scatter, _total_weight(X, sample_weight), n_components, covariance_type
    )


def _scale_from_scatter(
    scatter: np.ndarray, total_weight: float, n_components: int, covariance_type: str
) -> np.ndarray:
    """``cov(X) / K^(2/D)`` from the data scatter and the (weighted) number of samples."""
    n_features = scatter.shape[0]
    cov = scatter / max(total_weight - 1, 1)
    cov /= float(n_components) ** (2.0 / n_features)
    if covariance_type in ("full", "tied"):
        return cov
    if covariance_type == "diag":
        return np.diag(cov).copy()
    return np.asarray(np.trace(cov) / n_features)


def _scale_is_positive_definite(scale: np.ndarray, covariance_type: str) -> bool:
    """Whether a prior scale (in :class:`ConjugatePrior` shape) is finite and positive definite."""
    if not np.all(np.isfinite(scale)):
        return False
    if covariance_type in ("full", "tied"):
        try:
            linalg.cholesky(scale, lower=True, check_finite=False)
        except linalg.LinAlgError:
            return False
        return True
    return bool(np.all(scale > 0.0))


def default_prior(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    *,
    shrinkage: float = 0.01,
    dof: float | None = None,
    sample_weight: np.ndarray | None = None,
) -> ConjugatePrior:
    r"""Build the default conjugate prior of Fraley & Raftery (2007) for the data ``X``.

    As R mclust's ``priorControl()``: the mean prior is centred at the data mean
    :math:`\bar{x}` with shrinkage :math:`\kappa_P = 0.01`, the degrees of freedom are
    :math:`\nu_P = D + 2` and the scale is :math:`\Lambda_P = S / K^{2/D}` with :math:`S`
    the sample covariance of ``X`` (denominator ``N - 1``) for ``"full"`` and ``"tied"``, its
    diagonal for ``"diag"`` and its mean variance :math:`\operatorname{tr}(S) / D` for
    ``"spherical"`` (mclust uses the mean variance for every diagonal model; the per-feature
    diagonal keeps the ``"diag"`` estimate equivariant to rescaling each feature).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data (at least 2 samples).
    n_components : int
        Number of mixture components ``K``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance parameterisation.
    shrinkage : float, default=0.01
        :math:`\kappa_P`.
    dof : float or None, default=None
        :math:`\nu_P`; ``None`` means ``n_features + 2``.

    Returns
    -------
    ConjugatePrior
        The prior.

    Raises
    ------
    FitError
        If the scale is not positive definite: ``X`` has a constant feature, collinear
        features or (``"spherical"``) identical rows.
    InvalidParameterError
        If ``X`` has fewer than 2 rows, or an argument is invalid.
    """
    _check_covariance_type(covariance_type)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise InvalidParameterError(
            "The MAP prior is centred and scaled by the sample mean and covariance of X, "
            f"which need a 2-D X with at least 2 rows; got shape {X.shape}. Use "
            'objective="ml" for a single sample.'
        )
    if n_components < 1:
        raise InvalidParameterError(f"n_components must be at least 1, got {n_components}.")
    n_features = X.shape[1]
    dof = n_features + 2.0 if dof is None else float(dof)
    min_dof = n_features - 1.0 if covariance_type in ("full", "tied") else 0.0
    if not shrinkage > 0.0 or not dof > min_dof:
        raise InvalidParameterError(
            f"The prior needs shrinkage > 0 and dof > {min_dof:g} for "
            f"covariance_type={covariance_type!r}; got shrinkage={shrinkage} and dof={dof}."
        )
    scale = _prior_scale(X, n_components, covariance_type, sample_weight=sample_weight)
    return _conjugate_prior(column_means(X, sample_weight), scale, shrinkage, dof, covariance_type)


def _conjugate_prior(
    mean: np.ndarray, scale: np.ndarray, shrinkage: float, dof: float, covariance_type: str
) -> ConjugatePrior:
    """Return the :class:`ConjugatePrior`, or raise FitError if ``scale`` is singular."""
    if not _scale_is_positive_definite(scale, covariance_type):
        raise FitError(
            f"The MAP prior scale cov(X) / K^(2/D) for covariance_type={covariance_type!r} is "
            "not positive definite: X has a constant feature, collinear features or identical "
            "rows, so its sample covariance is singular. Remove or combine the redundant "
            'features, use covariance_type="diag" or "spherical" if only some features are '
            'collinear, or use objective="ml" with reg_covar > 0.'
        )
    return ConjugatePrior(
        mean=np.asarray(mean, dtype=np.float64),
        shrinkage=float(shrinkage),
        dof=dof,
        scale=scale,
        covariance_type=covariance_type,
    )


def _check_prior(prior: ConjugatePrior, covariance_type: str, n_features: int) -> None:
    """Raise ``InvalidParameterError`` if ``prior`` does not fit the covariance type and D."""
    if prior.covariance_type != covariance_type:
        raise InvalidParameterError(
            f"The prior was built for covariance_type={prior.covariance_type!r} but the "
            f"parameters have covariance_type={covariance_type!r}; build it with "
            f"default_prior(X, n_components, {covariance_type!r})."
        )
    expected = {
        "full": (n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_features,),
        "spherical": (),
    }[covariance_type]
    if np.shape(prior.mean) != (n_features,) or np.shape(prior.scale) != expected:
        raise InvalidParameterError(
            f"The prior has a mean of shape {np.shape(prior.mean)} and a scale of shape "
            f"{np.shape(prior.scale)}; for {n_features} features and covariance_type="
            f"{covariance_type!r} they must have shapes {(n_features,)} and {expected}."
        )


def log_prior(prior: ConjugatePrior, means: np.ndarray, precisions_cholesky: np.ndarray) -> float:
    """Evaluate the normalised log density of the conjugate prior at the given parameters.

    The sum over components of ``log N(mu_k | mu_P, Sigma_k / kappa_P)`` and of the
    inverse-Wishart (``"full"``; once for ``"tied"``) or inverse-gamma (``"diag"``,
    ``"spherical"``) log density of the covariances (see :class:`ConjugatePrior`). It is
    computed from the precision Cholesky factors: ``log |Sigma| = -2 log det U``,
    ``tr(Lambda Sigma^-1) = tr(U^T Lambda U)``, without inverting a matrix.

    Parameters
    ----------
    prior : ConjugatePrior
        The prior; its ``covariance_type`` gives the parameterisation.
    means : numpy.ndarray of shape (n_components, n_features)
        Component means.
    precisions_cholesky : numpy.ndarray
        Precision Cholesky factors in the shape for ``prior.covariance_type`` (see
        :func:`compute_precision_cholesky`).

    Returns
    -------
    float
        The log prior density (not divided by the number of samples).
    """
    covariance_type = prior.covariance_type
    means = np.asarray(means, dtype=np.float64)
    precisions_cholesky = np.asarray(precisions_cholesky, dtype=np.float64)
    n_components, n_features = means.shape
    _check_prior(prior, covariance_type, n_features)
    kappa, nu = prior.shrinkage, prior.dof
    scale = np.asarray(prior.scale, dtype=np.float64)
    centred = means - prior.mean
    log_2pi = math.log(2.0 * math.pi)

    if covariance_type in ("full", "tied"):
        scale_chol = linalg.cholesky(scale, lower=True, check_finite=False)
        log_det_scale = 2.0 * float(np.sum(np.log(np.diag(scale_chol))))
        log_iw_norm = (
            0.5 * nu * log_det_scale
            - 0.5 * nu * n_features * math.log(2.0)
            - float(multigammaln(0.5 * nu, n_features))
        )
        factors = (
            precisions_cholesky
            if covariance_type == "full"
            else np.broadcast_to(precisions_cholesky, (n_components, n_features, n_features))
        )
        log_det_u = np.sum(np.log(np.diagonal(factors, axis1=1, axis2=2)), axis=1)  # (K,)
        y = np.einsum("kd,kde->ke", centred, factors)  # U_k^T (mu_k - mu_P)
        log_mean_prior = (
            -0.5 * n_features * (log_2pi - math.log(kappa))
            + log_det_u
            - 0.5 * kappa * np.sum(y * y, axis=1)
        )
        n_wisharts = n_components if covariance_type == "full" else 1
        u = factors[:n_wisharts]
        trace = np.einsum("kde,df,kfe->k", u, scale, u)  # tr(U^T Lambda U)
        log_cov_prior = log_iw_norm + (nu + n_features + 1.0) * log_det_u[:n_wisharts]
        log_cov_prior -= 0.5 * trace
        return float(np.sum(log_mean_prior) + np.sum(log_cov_prior))

    # Independent normal-inverse-gamma priors on every (mean, variance) pair; p = 1 / sigma.
    half_scale = 0.5 * scale
    a = 0.5 * nu
    p = precisions_cholesky if covariance_type == "diag" else precisions_cholesky[:, None]
    log_p = np.log(p)
    sq = (centred * p) ** 2  # (K, D): (mu - mu_P)^2 / sigma^2
    log_mean_prior = -0.5 * (log_2pi - math.log(kappa)) + log_p - 0.5 * kappa * sq
    if covariance_type == "diag":
        # log IG(sigma^2 | a, b) = a log b - lgamma(a) + 2 (a + 1) log p - b p^2
        log_cov_prior = (
            a * np.log(half_scale) - float(gammaln(a)) + 2.0 * (a + 1.0) * log_p - half_scale * p**2
        )
    else:
        q = precisions_cholesky
        log_cov_prior = (
            a * math.log(float(half_scale))
            - float(gammaln(a))
            + 2.0 * (a + 1.0) * np.log(q)
            - float(half_scale) * q**2
        )
    return float(np.sum(log_mean_prior) + np.sum(log_cov_prior))


# ---------------------------------------------------------------------------------------
# E- and M-steps


def _e_step_samples(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    covariance_type: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the per-sample log-likelihoods ``log p(x_n)`` (N,) and the log responsibilities."""
    log_prob = estimate_log_gaussian_prob(X, means, precisions_cholesky, covariance_type)
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(weights, dtype=np.float64))
    weighted_log_prob = log_prob + log_weights
    log_prob_norm = logsumexp(weighted_log_prob, axis=1)
    with np.errstate(under="ignore"):
        log_resp = weighted_log_prob - log_prob_norm[:, np.newaxis]
    return log_prob_norm, log_resp


def e_step(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    covariance_type: str,
) -> tuple[float, np.ndarray]:
    """Compute the mean log-likelihood and the log responsibilities (E-step).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data.
    weights : numpy.ndarray of shape (n_components,)
        Mixing proportions.
    means : numpy.ndarray of shape (n_components, n_features)
        Component means.
    precisions_cholesky : numpy.ndarray
        Precision Cholesky factors in the shape for ``covariance_type``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance parameterisation.

    Returns
    -------
    log_prob_norm : float
        Mean log-likelihood per sample, ``mean_n log p(x_n)``.
    log_resp : numpy.ndarray of shape (n_samples, n_components)
        Log responsibilities ``log r_nk``; each row of ``exp(log_resp)`` sums to one.
    """
    log_prob_norm, log_resp = _e_step_samples(
        X, weights, means, precisions_cholesky, covariance_type
    )
    return float(np.mean(log_prob_norm)), log_resp


def _scatter(X: np.ndarray, resp_k: np.ndarray, mean_k: np.ndarray) -> np.ndarray:
    """Return the weighted scatter matrix ``sum_n r_n (x_n - mu)(x_n - mu)^T``."""
    diff = X - mean_k
    return (resp_k[:, np.newaxis] * diff).T @ diff


def _m_step_map(
    X: np.ndarray,
    resp: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    prior: ConjugatePrior,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior-mode M-step under the conjugate prior (see :func:`m_step`)."""
    n_features = X.shape[1]
    n_components = resp.shape[1]
    kappa, nu = prior.shrinkage, prior.dof
    scale = np.asarray(prior.scale, dtype=np.float64)
    nk = column_sums(resp)
    means = (resp.T @ X + kappa * prior.mean) / (nk + kappa)[:, np.newaxis]
    shift = means - prior.mean

    # The scatter about the new mean plus kappa (mu_k - mu_P)(mu_k - mu_P)^T equals
    # W_k + kappa n_k / (kappa + n_k) (xbar_k - mu_P)(xbar_k - mu_P)^T, without dividing
    # by n_k (an empty component gets the prior mode).
    if covariance_type == "full":
        covariances = np.empty((n_components, n_features, n_features), dtype=np.float64)
        for k in range(n_components):
            numerator = scale + _scatter(X, resp[:, k], means[k])
            numerator += kappa * np.outer(shift[k], shift[k])
            covariances[k] = numerator / (nu + nk[k] + n_features + 2.0)
            covariances[k].flat[:: n_features + 1] += reg_covar
    elif covariance_type == "tied":
        numerator = scale.copy()
        for k in range(n_components):
            numerator += _scatter(X, resp[:, k], means[k])
            numerator += kappa * np.outer(shift[k], shift[k])
        covariances = numerator / (nu + nk.sum() + n_components + n_features + 1.0)
        covariances.flat[:: n_features + 1] += reg_covar
    else:
        sums = np.empty((n_components, n_features), dtype=np.float64)
        for k in range(n_components):
            diff = X - means[k]
            sums[k] = resp[:, k] @ (diff * diff) + kappa * shift[k] ** 2
        if covariance_type == "diag":
            covariances = (scale + sums) / (nu + nk + 3.0)[:, np.newaxis] + reg_covar
        else:
            covariances = (float(scale) + sums.sum(axis=1)) / (
                nu + (nk + 1.0) * n_features + 2.0
            ) + reg_covar

    floored = nk + 10.0 * _EPS
    return floored / floored.sum(), means, covariances


def m_step(
    X: np.ndarray,
    resp: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    *,
    prior: ConjugatePrior | None = None,
    model: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Estimate the mixture parameters from the responsibilities (M-step).

    **Maximum likelihood** (``prior=None``). With ``N_k = sum_n r_nk + 10 eps``, the
    weights are ``N_k / sum_j N_j``, the means ``sum_n r_nk x_n / N_k`` and the covariances
    the weighted scatter divided by ``N_k`` plus ``reg_covar`` on the diagonal. ``"tied"``
    pools the scatter of all components and divides by ``sum_k N_k``, ``"diag"`` keeps the
    diagonal of each component's covariance and ``"spherical"`` its average over features.

    **Posterior mode** (``prior`` given, see :class:`ConjugatePrior`). With
    :math:`n_k = \sum_n r_{nk}`, :math:`\bar{x}_k` the weighted mean,
    :math:`W_k = \sum_n r_{nk} (x_n - \bar{x}_k)(x_n - \bar{x}_k)^T` and
    :math:`B_k = W_k + \frac{\kappa_P n_k}{\kappa_P + n_k}
    (\bar{x}_k - \mu_P)(\bar{x}_k - \mu_P)^T`, the weights are as above and

    * :math:`\mu_k = (n_k \bar{x}_k + \kappa_P \mu_P) / (\kappa_P + n_k)`;
    * ``"full"``: :math:`\Sigma_k = (\Lambda_P + B_k) / (\nu_P + n_k + D + 2)`
      (Fraley & Raftery 2007, model VVV);
    * ``"tied"``: :math:`\Sigma = (\Lambda_P + \sum_k B_k) / (\nu_P + N + K + D + 1)`
      (model EEE; ``K`` mean priors and one inverse-Wishart prior);
    * ``"diag"``: :math:`\sigma^2_{kj} = (\lambda_j + [B_k]_{jj}) / (\nu_P + n_k + 3)`
      (model VVI with an inverse-gamma prior on every variance);
    * ``"spherical"``: :math:`\sigma^2_k = (\lambda + \operatorname{tr} B_k) /
      (\nu_P + (n_k + 1) D + 2)` (model VII).

    These are the joint maximisers of the expected complete-data log posterior, so EM on
    the log posterior is monotone. ``reg_covar`` is still added to the diagonal (use 0 to
    get the exact posterior mode).

    **mclust's covariance models** (``model``, see :func:`_project`): the covariances of
    ``covariance_type`` (the model's storage type) are replaced by the model's M-step
    (:func:`bayesmix.families.gaussian.covariance_models.m_step_covariances`) of the same
    counts and scatter matrices, which maximises the same expected complete-data
    objective over the model's covariances.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data.
    resp : numpy.ndarray of shape (n_samples, n_components)
        Responsibilities (rows sum to one).
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance parameterisation.
    reg_covar : float
        Non-negative ridge added to the diagonal of every covariance.
    prior : ConjugatePrior or None, default=None
        Conjugate prior for the posterior-mode M-step; ``None`` for maximum likelihood.
    model : str or None, default=None
        An mclust covariance model stored as ``covariance_type``
        (:func:`bayesmix.families.gaussian.covariance_models.storage`), or None for
        ``covariance_type`` itself.

    Returns
    -------
    weights : numpy.ndarray of shape (n_components,)
        Mixing proportions.
    means : numpy.ndarray of shape (n_components, n_features)
        Component means.
    covariances : numpy.ndarray
        Covariances in the scikit-learn shape for ``covariance_type``.
    """
    _check_covariance_type(covariance_type)
    X = np.asarray(X, dtype=np.float64)
    resp = np.asarray(resp, dtype=np.float64)
    n_features = X.shape[1]
    n_components = resp.shape[1]
    if prior is not None:
        _check_prior(prior, covariance_type, n_features)
        weights, means, covariances = _m_step_map(X, resp, covariance_type, reg_covar, prior)
        nk = column_sums(resp)
        return (
            weights,
            means,
            _project(covariances, nk, covariance_type, model, reg_covar, prior, n_features),
        )

    nk = column_sums(resp) + 10.0 * _EPS
    means = (resp.T @ X) / nk[:, np.newaxis]

    if covariance_type == "full":
        covariances = np.empty((n_components, n_features, n_features), dtype=np.float64)
        for k in range(n_components):
            covariances[k] = _scatter(X, resp[:, k], means[k]) / nk[k]
            covariances[k].flat[:: n_features + 1] += reg_covar
    elif covariance_type == "tied":
        covariances = np.zeros((n_features, n_features), dtype=np.float64)
        for k in range(n_components):
            covariances += _scatter(X, resp[:, k], means[k])
        covariances /= nk.sum()
        covariances.flat[:: n_features + 1] += reg_covar
    else:
        variances = np.empty((n_components, n_features), dtype=np.float64)
        for k in range(n_components):
            diff = X - means[k]
            variances[k] = (resp[:, k] @ (diff * diff)) / nk[k]
        variances += reg_covar
        covariances = variances if covariance_type == "diag" else variances.mean(axis=1)

    weights = nk / nk.sum()
    return (
        weights,
        means,
        _project(covariances, nk, covariance_type, model, reg_covar, prior, n_features),
    )


def _model_counts(
    nk: np.ndarray, covariance_type: str, prior: ConjugatePrior | None, n_features: int
) -> np.ndarray:
    """Return the counts ``n'_k`` with which the storage type's M-step is ``W'_k / n'_k``.

    Maximum likelihood: ``n_k``. Posterior mode (:func:`m_step`): the exponent of
    ``|Sigma_k|`` in the expected complete-data log posterior, ``nu + n_k + D + 2``
    (``full``), ``nu + n_k + 3`` (``diag``) or ``(nu + (n_k + 1) D + 2) / D``
    (``spherical``); ``W'_k`` is then the prior scale plus ``B_k``.
    """
    if prior is None:
        return nk
    nu = float(prior.dof)
    return {
        "full": nu + nk + n_features + 2.0,
        "diag": nu + nk + 3.0,
        "spherical": (nu + (nk + 1.0) * n_features + 2.0) / n_features,
    }[covariance_type]


def _project(
    covariances: np.ndarray,
    nk: np.ndarray,
    covariance_type: str,
    model: str | None,
    reg_covar: float,
    prior: ConjugatePrior | None,
    n_features: int,
) -> np.ndarray:
    r"""Return the M-step covariances of mclust's ``model``, stored as ``covariance_type``.

    The storage type's M-step (``covariances``, with ``reg_covar`` on the diagonal) is
    :math:`W'_k / n'_k` (:func:`_model_counts`); for every model stored in that shape the
    expected complete-data objective of the covariances is :math:`-\frac12 \sum_k n'_k
    \log|\Sigma_k| + \operatorname{tr}(\Sigma_k^{-1} W'_k)` (only the diagonal of
    :math:`W'_k` matters for diagonal models, only its trace for spherical ones), whose
    maximiser over the model is
    :func:`~bayesmix.families.gaussian.covariance_models.m_step_covariances` of
    :math:`(n', W')`. Components with (almost) no responsibility keep the storage
    type's value: they carry no information about shared parameters, and the EM loop
    re-initialises them.
    """
    if model is None:
        return covariances
    counts = _model_counts(np.asarray(nk, dtype=np.float64), covariance_type, prior, n_features)
    live = nk >= _EMPTY_MASS
    if not live.any():
        return covariances
    eye = np.eye(n_features)
    if covariance_type == "full":
        matrices = covariances - reg_covar * eye
    elif covariance_type == "diag":
        matrices = (covariances - reg_covar)[:, :, np.newaxis] * eye
    else:  # spherical: the same trace as the scatter (all a spherical model depends on)
        matrices = (covariances - reg_covar)[:, np.newaxis, np.newaxis] * eye
    scatter = counts[:, np.newaxis, np.newaxis] * matrices
    with np.errstate(divide="ignore", invalid="ignore"):
        # A singular scatter (a component on too few points) gives non-finite values,
        # which compute_precision_cholesky reports as a collapsed component.
        fitted = covariance_models.m_step_covariances(model, counts[live], scatter[live])
    fitted.reshape(fitted.shape[0], -1)[:, :: n_features + 1] += reg_covar
    out = np.array(covariances, dtype=np.float64, copy=True)
    if covariance_type == "full":
        out[live] = fitted
    elif covariance_type == "diag":
        out[live] = np.diagonal(fitted, axis1=1, axis2=2)
    else:
        out[live] = fitted[:, 0, 0]
    return out


# ---------------------------------------------------------------------------------------
# Fused E- and M-step (numba)

# Inner loop of fit_em: "fused" (one pass over the data per iteration with the numba kernels
# of bayesmix.families.gaussian._em_kernels, no (N, K) arrays) or "numpy" (e_step / m_step with the
# explicit responsibilities). A private switch, so that tests can compare the two.
_ENGINE = "fused"
# Below this many observations fit_em uses the NumPy steps: loading the kernels from numba's
# cache costs about 0.3 s per process, more than the fused steps save on small data
# (measured: 2-D, K=3, whole fit_em in a fresh process, 0.30 vs 0.59 s at N=1e3, 0.47 vs
# 0.78 s at N=3e4; at 1e5 and above the fused steps win by 4-15x).
_FUSED_MIN_SAMPLES = 50_000

# The fused M-step forms each scatter matrix from sums about the previous means,
# ``s2 - s1 delta^T - delta s1^T + n delta delta^T``, which cancels when a component
# degenerates. Its result is used only when, after scaling every feature by the size of
# the terms of its scatter, the smallest eigenvalue of every covariance (a lower bound of it)
# exceeds this fraction, so that rounding costs it at most about 1e-8 relatively (see
# bayesmix.families.gaussian._em_kernels.full_m_step); otherwise the iteration is redone with the
# NumPy E- and M-step, which also handles empty components and non-finite objectives.
_FUSED_RCOND = 1e-7
# ... and only when every variance exceeds the square of this many rounding units of the
# mean (the scale below which the NumPy and fused results are both dominated by rounding).
_FUSED_RESOLUTION = 1e4


@functools.cache
def _kernels():
    """Return the module of the fused kernels (:mod:`._em_kernels`), or None without numba."""
    try:
        from bayesmix.families.gaussian import _em_kernels
    except ImportError as err:  # pragma: no cover - numba is a dependency of PyTensor
        logger.warning("numba is not available (%s); EM uses the NumPy implementation.", err)
        return None
    return _em_kernels


def _kernel_data(X: np.ndarray) -> np.ndarray:
    """Return ``X`` as the kernels take it: C-contiguous and writeable (a copy if needed)."""
    if X.flags.c_contiguous and X.flags.writeable:
        return X
    return np.array(X, dtype=np.float64, order="C")


def _fused_statistics(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    covariance_type: str,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """One pass of the fused kernel: ``sum_n log p(x_n)`` and the sums about ``means``.

    Returns ``(total, nk, s1, s2)`` as described in :mod:`bayesmix.families.gaussian._em_kernels`;
    ``s2`` is (K, D, D) for ``"full"`` and ``"tied"``, (K, D) for ``"diag"`` and ``"spherical"``.
    ``X`` must be C-contiguous and writeable (see :func:`_kernel_data`).
    """
    kernels = _kernels()
    n_components, n_features = means.shape
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(weights, dtype=np.float64))
    log_det = _log_det_precision_cholesky(
        precisions_cholesky, covariance_type, n_components, n_features
    )
    log_norm = log_weights + log_det - 0.5 * n_features * math.log(2.0 * math.pi)
    log_norm = np.array(log_norm, dtype=np.float64, order="C")
    centres = np.ascontiguousarray(means, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        shape = (n_components, n_features, n_features)
        factors = np.array(np.broadcast_to(precisions_cholesky, shape), order="C")
        return kernels.full_pass(X, centres, factors, log_norm)
    if covariance_type == "spherical":
        precisions_cholesky = precisions_cholesky[:, np.newaxis]
    factors = np.array(np.broadcast_to(precisions_cholesky, (n_components, n_features)), order="C")
    return kernels.diag_pass(X, centres, factors, log_norm)


def _fused_m_step(
    nk: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    centres: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    prior: ConjugatePrior | None,
    rcond: float = _FUSED_RCOND,
    resolution: float = _FUSED_RESOLUTION,
    model: str | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None:
    """Compute the M-step of :func:`m_step` from the sums of :func:`_fused_statistics`.

    Returns ``((weights, means, covariances), precisions_cholesky)``, or None when
    cancellation may spoil a covariance or it has no Cholesky factor (see
    :data:`_FUSED_RCOND`, :data:`_FUSED_RESOLUTION` and
    :func:`bayesmix.families.gaussian._em_kernels.full_m_step`). Sums taken about the
    new means (``s1`` zero up to rounding) cannot cancel: pass ``rcond=0`` and
    ``resolution=0``, and None then means that a covariance has no Cholesky factor.
    ``model`` projects the covariances on an mclust model as :func:`m_step` does.
    """
    kernels = _kernels()
    n_features = centres.shape[1]
    if prior is None:
        use_prior, kappa, nu = False, 0.0, 0.0
        prior_mean = np.zeros(n_features)
        prior_scale = np.zeros(
            (n_features, n_features) if covariance_type in ("full", "tied") else 1
        )
    else:
        use_prior, kappa, nu = True, float(prior.shrinkage), float(prior.dof)
        prior_mean = np.array(prior.mean, dtype=np.float64)
        prior_scale = np.array(prior.scale, dtype=np.float64, order="C", ndmin=1)
    if covariance_type in ("full", "tied"):
        m_step_kernel, flag = kernels.full_m_step, covariance_type == "tied"
    else:
        m_step_kernel, flag = kernels.diag_m_step, covariance_type == "spherical"
    weights, means, covariances, precisions_cholesky, status = m_step_kernel(
        nk,
        s1,
        s2,
        centres,
        flag,
        float(reg_covar),
        use_prior,
        kappa,
        nu,
        prior_mean,
        prior_scale,
        rcond,
        resolution,
    )
    if status != kernels.OK:
        return None
    if flag:  # tied: (1, D, D) -> (D, D); spherical: (K, 1) -> (K,)
        covariances = covariances[0] if covariance_type == "tied" else covariances[:, 0]
        precisions_cholesky = (
            precisions_cholesky[0] if covariance_type == "tied" else precisions_cholesky[:, 0]
        )
    if model is not None:
        covariances = _project(
            covariances, nk, covariance_type, model, reg_covar, prior, n_features
        )
        try:
            precisions_cholesky = compute_precision_cholesky(covariances, covariance_type)
        except FitError:
            return None
    return (weights, means, covariances), precisions_cholesky


def _fused_iteration(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    *,
    covariance_type: str,
    reg_covar: float,
    prior: ConjugatePrior | None,
    model: str | None = None,
) -> tuple[float, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None:
    """One EM iteration in one pass over the data.

    Returns the objective at the given parameters, the total responsibilities ``nk``, the
    M-step ``(weights, means, covariances)`` and the new precision Cholesky factors; or None
    when the iteration must be done by the NumPy E- and M-step instead: the objective is
    not finite, a component is (nearly) empty, cancellation may spoil a covariance (see
    :data:`_FUSED_RCOND`) or a covariance has no Cholesky factor.
    """
    centres = np.array(means, dtype=np.float64, order="C")
    total, nk, s1, s2 = _fused_statistics(X, weights, centres, precisions_cholesky, covariance_type)
    n_samples = X.shape[0]
    objective = total / n_samples
    if prior is not None:
        objective += log_prior(prior, means, precisions_cholesky) / n_samples
    # Twice the threshold: the NumPy path decides about components near it.
    if not np.isfinite(objective) or np.any(nk < 2.0 * _EMPTY_MASS):
        return None
    update = _fused_m_step(nk, s1, s2, centres, covariance_type, reg_covar, prior, model=model)
    if update is None:
        return None
    return float(objective), nk, *update


def _mean_log_likelihood(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    covariance_type: str,
    engine: str,
    sample_weight: np.ndarray | None = None,
) -> float:
    """``mean_n log p(x_n)`` (weighted), with the fused kernel when ``engine="fused"``."""
    if sample_weight is not None:
        log_prob, _ = _e_step_samples(X, weights, means, precisions_cholesky, covariance_type)
        return float(sample_weight @ log_prob / sample_weight.sum())
    if engine == "fused" and _kernels() is not None:
        total = _fused_statistics(X, weights, means, precisions_cholesky, covariance_type)[0]
        if np.isfinite(total):
            return float(total / X.shape[0])
    log_likelihood, _ = e_step(X, weights, means, precisions_cholesky, covariance_type)
    return log_likelihood


# ---------------------------------------------------------------------------------------
# Initialisation


@dataclass(frozen=True)
class _Reinit:
    """What an empty component is re-initialised with (internal).

    ``covariance`` is one component's covariance in the scikit-learn shape for the
    covariance type (unused for ``"tied"``), or None when ``cov(X) / K^(2/D)`` plus
    ``reg_covar`` is not positive definite, in which case empty components are not moved.
    """

    covariance: np.ndarray | None
    budget: int


def _make_reinit(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    prior: ConjugatePrior | None,
    scatter: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> _Reinit:
    """Return the re-initialisation settings of a fit: covariance ``cov(X) / K^(2/D)``.

    ``scatter`` is :func:`_data_scatter` of ``X`` if already computed.
    """
    scale = (
        np.array(prior.scale, dtype=np.float64)
        if prior is not None
        else _prior_scale(X, n_components, covariance_type, scatter, sample_weight)
    )
    if covariance_type in ("full", "tied"):
        scale.flat[:: scale.shape[0] + 1] += reg_covar
    else:
        scale = scale + reg_covar
    usable = covariance_type == "tied" or _scale_is_positive_definite(scale, covariance_type)
    return _Reinit(covariance=scale if usable else None, budget=n_components)


def _pick_locations(X: np.ndarray, scores: np.ndarray, count: int) -> list[int]:
    """Return up to ``count`` indices of distinct rows of ``X`` with the lowest ``scores``."""
    chosen: list[int] = []
    for index in np.argsort(scores, kind="stable"):
        if len(chosen) == count:
            break
        if not any(np.array_equal(X[index], X[other]) for other in chosen):
            chosen.append(int(index))
    return chosen


def _move_components(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    components: list[int],
    locations: list[int],
    covariance: np.ndarray | None,
    covariance_type: str,
) -> np.ndarray:
    """Place ``components`` at the rows ``locations`` with weight ``1 / N`` each (in place).

    Returns the renormalised weights: the other components share ``1 - m / N``
    proportionally to their previous weights.
    """
    n_samples = X.shape[0]
    for k, index in zip(components, locations, strict=True):
        means[k] = X[index]
        if covariance_type != "tied":
            covariances[k] = covariance
    share = 1.0 / n_samples
    others = np.ones(weights.shape[0], dtype=bool)
    others[components] = False
    new_weights = weights.copy()
    new_weights[others] *= (1.0 - share * len(components)) / weights[others].sum()
    new_weights[components] = share
    return new_weights


# Largest number of samples the k-means++ start is computed from (see below).
_INIT_SUBSAMPLE = 2**16


def _initial_parameters(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    rng: np.random.Generator,
    prior: ConjugatePrior | None,
    reinit: _Reinit,
    sample_weight: np.ndarray | None = None,
    partition: str = "k-means++",
    model: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start from a partition (:func:`~bayesmix.em.init.initial_labels`): its M-step.

    Every sample is hard-assigned to its nearest k-means++ seed (``partition="k-means++"``)
    or its nearest of ``K`` random rows (``"random"``), then the M-step of that assignment
    gives the parameters. A centre that receives no sample (possible only when ``X`` has
    fewer distinct rows than components) is moved to the sample farthest from every centre,
    as an empty component is during the iterations.

    With more than ``_INIT_SUBSAMPLE`` samples, the seeding and the hard-assignment M-step
    use that many samples drawn without replacement (as mclust initialises large data sets
    on a random subset): a starting point for EM needs no more, and on 10^6 samples it is
    ~10x cheaper than seeding on all of them. The iterations use every sample.
    """
    if X.shape[0] > _INIT_SUBSAMPLE:
        keep = np.sort(rng.choice(X.shape[0], size=_INIT_SUBSAMPLE, replace=False))
        X = X[keep]
        sample_weight = None if sample_weight is None else sample_weight[keep]
    labels, sq_distances = initial_labels(X, n_components, rng, partition, sample_weight)
    resp = np.zeros((X.shape[0], n_components), dtype=np.float64)
    resp[np.arange(X.shape[0]), labels] = 1.0 if sample_weight is None else sample_weight
    weights, means, covariances = m_step(
        X, resp, covariance_type, reg_covar, prior=prior, model=model
    )
    empty = np.flatnonzero(np.bincount(labels, minlength=n_components) == 0).tolist()
    if empty and (covariance_type == "tied" or reinit.covariance is not None):
        locations = _pick_locations(X, -sq_distances, len(empty))
        empty = empty[: len(locations)]
        weights = _move_components(
            X, weights, means, covariances, empty, locations, reinit.covariance, covariance_type
        )
        logger.warning(
            "%s initialisation: component(s) %s received no sample (X has fewer "
            "distinct rows than n_components=%d?); placed at sample(s) %s with weight 1/N.",
            partition,
            empty,
            n_components,
            locations,
        )
    return weights, means, covariances


def _check_init_params(
    init_params: Mapping[str, np.ndarray],
    n_components: int,
    n_features: int,
    covariance_type: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate user-supplied starting parameters and return float64 copies."""
    missing = {"weights", "means", "covariances"} - set(init_params)
    if missing:
        raise InvalidParameterError(
            'init_params must have the keys "weights", "means" and "covariances"; missing '
            f"{sorted(missing)}."
        )
    weights = np.array(init_params["weights"], dtype=np.float64)
    means = np.array(init_params["means"], dtype=np.float64)
    covariances = np.array(init_params["covariances"], dtype=np.float64)

    expected = {
        "weights": (n_components,),
        "means": (n_components, n_features),
        "covariances": _covariance_shape(covariance_type, n_components, n_features),
    }
    for name, array in (("weights", weights), ("means", means), ("covariances", covariances)):
        if array.shape != expected[name]:
            raise InvalidParameterError(
                f"init_params[{name!r}] must have shape {expected[name]} for "
                f"n_components={n_components}, n_features={n_features} and "
                f"covariance_type={covariance_type!r}; got {array.shape}."
            )
        if not np.all(np.isfinite(array)):
            raise InvalidParameterError(f"init_params[{name!r}] contains NaN or infinite values.")
    if np.any(weights < 0.0) or not math.isclose(weights.sum(), 1.0, abs_tol=1e-8):
        raise InvalidParameterError(
            "init_params['weights'] must be non-negative and sum to 1; got sum "
            f"{weights.sum():.10g} and minimum {weights.min():.3g}. Normalise the weights."
        )
    return weights, means, covariances


# ---------------------------------------------------------------------------------------
# Main loop


def _objective(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    covariance_type: str,
    prior: ConjugatePrior | None,
    sample_weight: np.ndarray | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Return the objective, the per-sample log-likelihoods and the log responsibilities.

    With ``sample_weight`` the objective is the weighted mean log-likelihood (plus the log
    prior over the total weight): that of the data with every row repeated ``w_n`` times.
    """
    log_prob_samples, log_resp = _e_step_samples(
        X, weights, means, precisions_cholesky, covariance_type
    )
    if sample_weight is None:
        objective = float(np.mean(log_prob_samples))
    else:
        objective = float(sample_weight @ log_prob_samples / sample_weight.sum())
    if prior is not None:
        objective += log_prior(prior, means, precisions_cholesky) / _total_weight(X, sample_weight)
    return objective, log_prob_samples, log_resp


def _handle_empty_components(
    X: np.ndarray,
    empty: list[int],
    nk: np.ndarray,
    log_prob_samples: np.ndarray,
    previous: tuple[np.ndarray, np.ndarray, np.ndarray],
    new: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    covariance_type: str,
    prior: ConjugatePrior | None,
    reinit: _Reinit,
    n_reinit: int,
    dropped: set[int],
    where: str,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], int]:
    """Re-initialise or drop the empty components after an M-step.

    Returns the parameters to use and the updated number of re-initialisations. A dropped
    component keeps its previous mean and covariance (maximum likelihood; the posterior
    mode is already the prior mode) and its vanishing weight.
    """
    weights, means, covariances = (array.copy() for array in new)
    can_move = covariance_type == "tied" or reinit.covariance is not None
    n_move = min(len(empty), reinit.budget - n_reinit) if can_move else 0
    locations = _pick_locations(X, log_prob_samples, n_move) if n_move > 0 else []
    moved = empty[: len(locations)]
    if moved:
        weights = _move_components(
            X, weights, means, covariances, moved, locations, reinit.covariance, covariance_type
        )
        for k, index in zip(moved, locations, strict=True):
            logger.warning(
                "%s: component %d is empty (total responsibility %.3g); re-initialised at "
                "sample %d, the one with the lowest likelihood (log p = %.6g), with weight "
                "1/N and covariance cov(X) / K^(2/D).",
                where,
                k,
                nk[k],
                index,
                log_prob_samples[index],
            )
            dropped.discard(k)
    for k in empty[len(locations) :]:
        if prior is None:
            means[k] = previous[1][k]
            if covariance_type != "tied":
                covariances[k] = previous[2][k]
        if k not in dropped:
            dropped.add(k)
            logger.warning(
                "%s: component %d is empty (total responsibility %.3g) and is not "
                "re-initialised (%s); it keeps a vanishing weight.",
                where,
                k,
                nk[k],
                "the re-initialisation budget of n_components re-initialisations per "
                "restart is spent"
                if can_move
                else "cov(X) / K^(2/D) + reg_covar is not positive definite",
            )
    return (weights, means, covariances), n_reinit + len(moved)


def _run_em(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    precisions_cholesky: np.ndarray,
    *,
    covariance_type: str,
    max_iter: int,
    tol: float,
    reg_covar: float,
    prior: ConjugatePrior | None = None,
    reinit: _Reinit | None = None,
    restart_name: str = "EM",
    engine: str = "numpy",
    sample_weight: np.ndarray | None = None,
    model: str | None = None,
) -> _Restart:
    """Iterate E- and M-steps from the given parameters (through :func:`em.loop.converge`).

    Without empty components and with ``prior=None`` this is exactly scikit-learn's loop.
    The convergence test is skipped at the iteration of a re-initialisation and at the next
    one, since the change of the objective there is not an EM step.

    With ``engine="fused"`` (``X`` C-contiguous and writeable) each iteration is one pass
    of the numba kernel (:func:`_fused_iteration`); an iteration it does not apply to is
    done by the NumPy E- and M-step from the same parameters. ``sample_weight`` (frequency
    weights) multiplies the responsibilities in the M-step (NumPy engine only).
    """
    if reinit is None:
        reinit = _make_reinit(
            X, weights.shape[0], covariance_type, reg_covar, prior, sample_weight=sample_weight
        )
    fused = engine == "fused" and _kernels() is not None and sample_weight is None
    state = {"n_reinit": 0, "dropped": set()}

    def step(n_iter: int, weights: np.ndarray, params: dict):
        means, precisions_cholesky = params["means"], params["precisions_cholesky"]
        result = (
            _fused_iteration(
                X,
                weights,
                means,
                precisions_cholesky,
                covariance_type=covariance_type,
                reg_covar=reg_covar,
                prior=prior,
                model=model,
            )
            if fused
            else None
        )
        if result is not None:
            lower_bound, _, (weights, means, covariances), precisions_cholesky = result
            return lower_bound, weights, _params(means, covariances, precisions_cholesky), False
        if fused:
            logger.debug(
                "%s, iteration %d: the fused step does not apply (empty or degenerate "
                "component, or non-finite objective); using the NumPy E- and M-step.",
                restart_name,
                n_iter,
            )
        lower_bound, log_prob_samples, log_resp = _objective(
            X, weights, means, precisions_cholesky, covariance_type, prior, sample_weight
        )
        if not np.isfinite(lower_bound):
            raise FitError(
                f"EM iteration {n_iter}: the objective is not finite ({lower_bound}) for "
                f"covariance_type={covariance_type!r}; a covariance is numerically "
                f"singular or the data are too large in magnitude. {_FIT_ADVICE}"
            )
        resp = np.exp(log_resp)
        if sample_weight is not None:
            resp *= sample_weight[:, np.newaxis]
        nk = column_sums(resp)
        new = m_step(X, resp, covariance_type, reg_covar, prior=prior, model=model)
        empty = np.flatnonzero(nk < _EMPTY_MASS).tolist()
        n_reinit_before = state["n_reinit"]
        if empty:
            new, state["n_reinit"] = _handle_empty_components(
                X,
                empty,
                nk,
                log_prob_samples,
                (weights, means, params["covariances"]),
                new,
                covariance_type=covariance_type,
                prior=prior,
                reinit=reinit,
                n_reinit=state["n_reinit"],
                dropped=state["dropped"],
                where=f"{restart_name}, iteration {n_iter}",
            )
        weights, means, covariances = new
        try:
            precisions_cholesky = compute_precision_cholesky(covariances, covariance_type)
        except FitError as err:
            raise FitError(f"EM iteration {n_iter}: {err}") from err
        reinitialised = state["n_reinit"] > n_reinit_before
        return lower_bound, weights, _params(means, covariances, precisions_cholesky), reinitialised

    def objective(weights: np.ndarray, params: dict) -> float:
        return _objective(
            X,
            weights,
            params["means"],
            params["precisions_cholesky"],
            covariance_type,
            prior,
            sample_weight,
        )[0]

    run = converge(
        step,
        weights,
        _params(means, covariances, precisions_cholesky),
        max_iter=max_iter,
        tol=tol,
        name=restart_name,
        objective=objective,
    )
    # The log-likelihood is computed for the best restart only (fit_em).
    return run.restart(np.nan, _total_weight(X, sample_weight))


def _params(means: np.ndarray, covariances: np.ndarray, precisions_cholesky: np.ndarray) -> dict:
    """Return the Gaussian component parameters as the EM loop carries them."""
    return {"means": means, "covariances": covariances, "precisions_cholesky": precisions_cholesky}


def _variance_ratios(
    X: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    scatter: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`_ratios_to` the covariance of ``X`` (``scatter``: its scatter, if computed)."""
    if scatter is None:
        scatter = _data_scatter(X, sample_weight)
    data_cov = scatter / _total_weight(X, sample_weight)
    return _ratios_to(data_cov, covariances, covariance_type, reg_covar)


def _ratios_to(
    data_cov: np.ndarray, covariances: np.ndarray, covariance_type: str, reg_covar: float
) -> np.ndarray:
    """Return each covariance's smallest variance, less ``reg_covar``, relative to the data's.

    For ``"full"`` and ``"tied"`` the smallest eigenvalue of ``L^-1 (Sigma - reg_covar I)
    L^-T`` (``C = L L^T`` the covariance of the data): the smallest variance of the
    component in any direction, as a fraction of the data's variance in that direction
    (affine invariant); for ``"diag"`` the smallest ratio of a variance to the data
    variance of its feature, for ``"spherical"`` the ratio to the mean data variance.
    Shape (1,) for ``"tied"``, (K,) otherwise; all 0 when the data covariance itself is
    singular.
    """
    n_features = data_cov.shape[0]
    if covariance_type in ("full", "tied"):
        matrices = covariances[np.newaxis] if covariance_type == "tied" else covariances
        try:
            data_chol = linalg.cholesky(data_cov, lower=True, check_finite=False)
        except linalg.LinAlgError:
            # The data span a lower-dimensional subspace: every covariance is degenerate.
            return np.zeros(matrices.shape[0])
        if not np.all(np.isfinite(data_chol)):
            # The data's covariance overflows (values beyond ~1e154): there is no scale to
            # compare with, so no covariance is called degenerate by its variance.
            return np.full(matrices.shape[0], np.inf)
        ratios = np.empty(matrices.shape[0])
        for k, matrix in enumerate(matrices):
            if not np.all(np.isfinite(matrix)):
                ratios[k] = np.inf  # an overflowing covariance is not a collapsed one
                continue
            data_part = matrix - reg_covar * np.eye(n_features)
            half = linalg.solve_triangular(data_chol, data_part, lower=True)
            whitened = linalg.solve_triangular(data_chol, half.T, lower=True)
            ratios[k] = linalg.eigvalsh(0.5 * (whitened + whitened.T))[0]
        return ratios
    if covariance_type == "diag":
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (covariances - reg_covar) / np.diag(data_cov)
        return np.nan_to_num(ratio, nan=0.0, posinf=np.inf).min(axis=1)
    mean_variance = np.trace(data_cov) / n_features
    if not mean_variance > 0.0:
        return np.zeros(covariances.shape[0])
    return (covariances - reg_covar) / mean_variance


def _collapsed_components(
    X: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    scatter: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> list[int]:
    """Return the components whose covariance minus ``reg_covar`` is (nearly) singular.

    "Nearly" is relative to the covariance of the data (:func:`_variance_ratios`, compared
    with :data:`_COLLAPSE_RTOL`). For ``"tied"`` the list is ``[0]`` when the shared
    covariance collapsed.
    """
    ratios = _variance_ratios(X, covariances, covariance_type, reg_covar, scatter, sample_weight)
    return np.flatnonzero(ratios <= _COLLAPSE_RTOL).tolist()


def _min_points(n_features: int, covariance_type: str, model: str | None = None) -> int:
    """Effective points a component needs for its covariance to be regular without a ridge.

    ``D + 1`` for a full covariance (``D + 1`` points in general position span ``D``
    dimensions about their mean), 2 for a diagonal or spherical one (two distinct values
    per feature), 0 for ``"tied"`` (the pooled covariance uses every point). An mclust
    ``model`` stored as ``"full"`` whose shape or orientation is shared (all but EVV)
    takes those from every component, so that two points fix the rest.
    """
    if model is not None and covariance_type == "full" and model != "EVV":
        return 2
    return {"full": n_features + 1, "diag": 2, "spherical": 2}.get(covariance_type, 0)


def _degenerate_components(
    effective_points: np.ndarray,
    ratios: np.ndarray,
    n_features: int,
    covariance_type: str,
    *,
    min_ratio: float | None = None,
    model: str | None = None,
) -> dict[int, str]:
    """Return ``{component: what was found}`` for the degenerate components of a fit.

    A component is degenerate (a spurious maximum of an unbounded likelihood) when it
    has fewer effective points (its total responsibility; components below
    :data:`_EMPTY_MASS`, empty, are left out) than :func:`_min_points` (by more than
    0.1%, so that a component on exactly ``D + 1`` points is not), or a variance
    below ``min_ratio`` (default :data:`_DEGENERATE_VARIANCE`) of the data's in some
    direction (:func:`_variance_ratios`; for ``"tied"`` the shared covariance, reported
    as component 0).
    """
    min_ratio = _DEGENERATE_VARIANCE if min_ratio is None else min_ratio
    needed = _min_points(n_features, covariance_type, model)
    found: dict[int, list[str]] = {}
    for k, points in enumerate(effective_points):
        # Up to 0.1%: a component on exactly D + 1 points, less rounding, is regular.
        if _EMPTY_MASS <= points < needed * (1.0 - 1e-3):
            found.setdefault(k, []).append(
                f"{points:.3g} effective points, fewer than the {needed} that a "
                f"{model or covariance_type} covariance in {n_features}-D needs"
            )
    for k, ratio in enumerate(ratios):
        if covariance_type != "tied" and effective_points[k] < _EMPTY_MASS:
            continue
        if ratio < min_ratio:
            found.setdefault(k, []).append(
                f"a variance {max(ratio, 0.0):.2g} times the data's (below {min_ratio:g})"
            )
    return {k: " and ".join(what) for k, what in sorted(found.items())}


def _check_fit_arguments(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    n_init: int,
    max_iter: int,
    tol: float,
    reg_covar: float,
    objective: str,
    init: str = "k-means++",
) -> None:
    """Raise :class:`InvalidParameterError` (a ``ValueError``) for arguments of :func:`fit_em`.

    The checks every family's EM shares (:func:`bayesmix.em.loop._check_arguments`), the
    covariance type (a scikit-learn name or an mclust model for ``X``'s features) and the
    ridge.
    """
    _check_arguments(X, n_components, n_init, max_iter, tol, objective, init)
    covariance_models.storage(covariance_type, X.shape[1])
    if not reg_covar >= 0.0:
        raise InvalidParameterError(f"reg_covar must be non-negative, got {reg_covar}.")


def _warn_degenerate(
    X: np.ndarray,
    best: _Restart,
    covariance_type: str,
    reg_covar: float,
    objective: str,
    scatter: np.ndarray | None = None,
    stacklevel: int = 3,
    sample_weight: np.ndarray | None = None,
    n_init: int = 1,
    model: str | None = None,
) -> None:
    """Warn about empty components and (maximum likelihood) collapsed or degenerate ones.

    A collapsed covariance (:func:`_collapsed_components`) has its own warning; the other
    degenerate components (:func:`_degenerate_components`) share one.
    """
    n_samples, n_components = _total_weight(X, sample_weight), best.weights.shape[0]
    empty = np.flatnonzero(best.weights * n_samples < _EMPTY_MASS).tolist()
    if empty:
        warnings.warn(
            f"Component(s) {empty} of the returned fit are empty: their total responsibility "
            f"is below {_EMPTY_MASS:g} samples even after re-initialisation, so the data "
            f"support fewer than n_components={n_components} components. Try "
            f"n_components={max(n_components - len(empty), 1)}.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    if objective != "ml":
        return
    collapsed = _collapsed_components(
        X, best.params["covariances"], covariance_type, reg_covar, scatter, sample_weight
    )
    if collapsed:
        what = (
            "The tied covariance"
            if covariance_type == "tied"
            else f"The covariance of component(s) {collapsed}"
        )
        warnings.warn(
            f"{what} (covariance_type={model or covariance_type!r}) collapsed onto duplicated "
            "points or "
            f"a lower-dimensional subspace and is positive definite only through "
            f"reg_covar={reg_covar:g}: the likelihood is unbounded there and this "
            'maximum-likelihood estimate is degenerate. Use objective="map", fewer '
            'components, covariance_type="diag" (for points on a line that is not parallel '
            "to an axis) or a larger reg_covar.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    found = _degenerate_findings(
        X, best, covariance_type, reg_covar, scatter, sample_weight, exclude=collapsed, model=model
    )
    _warn_degenerate_fit(found, "EM", n_init, _DEGENERATE_ADVICE, stacklevel=stacklevel + 1)


def _degenerate_findings(
    X: np.ndarray,
    run: _Restart,
    covariance_type: str,
    reg_covar: float,
    scatter: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    *,
    exclude: list[int] = (),
    model: str | None = None,
) -> dict[int, str]:
    """:func:`_degenerate_components` of a maximum-likelihood run on ``X``, less ``exclude``.

    ``params["covariances"]`` are the covariances (Gaussian) or scale matrices (Student-t).
    """
    ratios = _variance_ratios(
        X, run.params["covariances"], covariance_type, reg_covar, scatter, sample_weight
    )
    points = run.weights * _total_weight(X, sample_weight)
    found = _degenerate_components(points, ratios, X.shape[1], covariance_type, model=model)
    return {k: what for k, what in found.items() if k not in exclude}


def fit_em(
    X: np.ndarray,
    n_components: int,
    *,
    covariance_type: str = "full",
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    random_state: int | np.random.Generator | None = None,
    init_params: Mapping[str, np.ndarray] | None = None,
    objective: str = "ml",
    sample_weight: np.ndarray | None = None,
    init: str = "k-means++",
) -> EMResult:
    """Fit a Gaussian mixture by maximum likelihood or maximum a posteriori with EM.

    Each of the ``n_init`` restarts iterates E- and M-steps until the objective changes by
    less than ``tol`` or ``max_iter`` iterations have run; with ``objective="ml"`` and the
    default ``init="k-means++"`` this is exactly scikit-learn's ``GaussianMixture``. The
    restart with the highest final objective is returned (the first one on ties). A restart
    that fails with a :class:`~bayesmix.exceptions.FitError` is skipped, with a warning, if
    another one succeeds.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data, already validated (2-D, finite, float64). It is not modified.
    n_components : int
        Number of mixture components ``K``.
    covariance_type : str, default="full"
        Covariance parameterisation: scikit-learn's ``"full"``, ``"tied"``, ``"diag"``,
        ``"spherical"``, or one of mclust's models (``"EII"`` ... ``"VVV"``; ``"E"``,
        ``"V"`` for one feature; :mod:`bayesmix.families.gaussian.covariance_models`).
        An mclust model's covariances are returned in the shape of its storage type
        (:func:`~bayesmix.families.gaussian.covariance_models.storage`: e.g. ``"EEI"``
        as ``"diag"``, ``"VEV"`` as ``"full"``), as are ``init_params``' and the result's
        ``covariance_type``.
    n_init : int, default=1
        Number of restarts.
    max_iter : int, default=100
        Maximum number of EM iterations per restart. With ``max_iter=0`` the starting
        parameters are returned.
    tol : float, default=1e-3
        Convergence threshold on the change of the objective (per sample).
    reg_covar : float, default=1e-6
        Non-negative ridge added to the diagonal of every covariance in the M-step. With
        ``objective="map"`` it is not needed (``reg_covar=0`` gives the exact posterior mode
        and an exactly monotone objective).
    random_state : int, numpy.random.Generator or None, default=None
        Seed for the initialisation; a ``Generator`` is used as is.
    init_params : mapping or None, default=None
        Starting parameters with keys ``"weights"`` (K,), ``"means"`` (K, D) and
        ``"covariances"`` (scikit-learn shape for ``covariance_type``). Every restart then
        starts from them (``init`` is not used). If None, each restart hard-assigns every
        sample to a group of a starting partition (see ``init``) and starts from the
        M-step of that assignment.
    objective : {"ml", "map"}, default="ml"
        ``"ml"`` maximises the likelihood. ``"map"`` maximises the posterior density under
        the conjugate prior :func:`default_prior` of Fraley & Raftery (2007) -- mean prior
        centred at the data mean with shrinkage 0.01, ``D + 2`` degrees of freedom and
        scale ``cov(X) / K^(2/D)`` -- whose M-step (see :func:`m_step`) keeps every
        covariance positive definite on degenerate data; the monitored objective
        (``lower_bounds``) is then ``(log-likelihood + log prior) / N``.
    sample_weight : numpy.ndarray of shape (n_samples,), optional
        Non-negative frequency (or importance) weights, validated by the caller: every
        sum over samples (seeding, sufficient statistics, objective, the MAP prior's data
        mean and scale) is weighted, so integer weights give the fit of the data with
        each row repeated ``w_n`` times (from the same start). Uses the NumPy engine.
    init : {"k-means++", "random", "emem"}, default="k-means++"
        How the restarts start (:func:`bayesmix.em.loop._restart_plan`): every restart from
        the nearest-seed partition of new k-means++ seeds (scikit-learn's start), or of
        ``K`` random rows; or ``"emem"``: ``8 * n_init`` short runs (to a change below
        1e-3, at most 50 iterations) from both kinds of partition, of which the best
        ``n_init`` are run to convergence
        (Biernacki, Celeux & Govaert 2003; the default of the estimators, which reaches
        the best known optimum more often, see ``bench/results/em_init.md``).

    Returns
    -------
    EMResult
        Parameters of the best restart, its log-likelihood and diagnostics.

    Raises
    ------
    FitError
        If every restart failed, e.g. because a covariance became singular (maximum
        likelihood with ``reg_covar=0``), or if ``objective="map"`` and the data covariance
        is singular; the message says what to change.
    InvalidParameterError
        If an argument or ``init_params`` is invalid.

    Warns
    -----
    ConvergenceWarning
        If the best restart stopped at ``max_iter`` before reaching ``tol``; if a restart
        failed but another succeeded; if a component of the result is empty; or if a
        maximum-likelihood covariance collapsed onto duplicated points or a subspace and is
        positive definite only through ``reg_covar``.
    """
    X = np.asarray(X, dtype=np.float64)
    _check_fit_arguments(
        X, n_components, covariance_type, n_init, max_iter, tol, reg_covar, objective, init
    )
    n_features = X.shape[1]
    covariance_type, model = covariance_models.storage(covariance_type, n_features)
    engine = _ENGINE
    if engine == "fused" and (
        X.shape[0] < _FUSED_MIN_SAMPLES or _kernels() is None or sample_weight is not None
    ):
        engine = "numpy"
    w = sample_weight
    if engine == "fused":
        X = _kernel_data(X)
    rng = np.random.default_rng(random_state)
    prior = (
        default_prior(X, n_components, covariance_type, sample_weight=w)
        if objective == "map"
        else None
    )
    # The data scatter, computed once for the re-initialisation covariance and the collapse
    # check of maximum likelihood.
    scatter = _data_scatter(X, w) if prior is None else None
    reinit = _make_reinit(X, n_components, covariance_type, reg_covar, prior, scatter, w)

    if init_params is not None:
        start = _check_init_params(init_params, n_components, n_features, covariance_type)
        try:
            start_precisions_cholesky = compute_precision_cholesky(start[2], covariance_type)
        except FitError as err:
            raise InvalidParameterError(
                f"init_params['covariances'] is not a valid set of covariances: {err}"
            ) from err

    def start_from(partition: str) -> tuple[np.ndarray, dict]:
        if init_params is not None:
            weights, means, covariances = (a.copy() for a in start)
            return weights, _params(means, covariances, start_precisions_cholesky.copy())
        weights, means, covariances = _initial_parameters(
            X, n_components, covariance_type, reg_covar, rng, prior, reinit, w, partition, model
        )
        try:
            precisions_cholesky = compute_precision_cholesky(covariances, covariance_type)
        except FitError as err:
            raise FitError(f"{partition} initialisation: {err}") from err
        return weights, _params(means, covariances, precisions_cholesky)

    def run(
        weights: np.ndarray, params: dict, iterations: int, tolerance: float, name: str
    ) -> _Restart:
        return _run_em(
            X,
            weights,
            params["means"],
            params["covariances"],
            params["precisions_cholesky"],
            covariance_type=covariance_type,
            max_iter=iterations,
            tol=tolerance,
            reg_covar=reg_covar,
            prior=prior,
            reinit=reinit,
            restart_name=name,
            engine=engine,
            sample_weight=w,
            model=model,
        )

    def check_result(best: _Restart, stacklevel: int) -> None:
        _warn_degenerate(
            X,
            best,
            covariance_type,
            reg_covar,
            objective,
            scatter,
            stacklevel=stacklevel + 1,
            sample_weight=w,
            n_init=n_init,
            model=model,
        )

    degenerate = (
        None
        if objective != "ml"
        else functools.partial(
            _degenerate_findings,
            X,
            covariance_type=covariance_type,
            reg_covar=reg_covar,
            scatter=scatter,
            sample_weight=w,
            model=model,
        )
    )

    def log_likelihood(best: _Restart) -> float:
        params = best.params
        return _mean_log_likelihood(
            X,
            best.weights,
            params["means"],
            params["precisions_cholesky"],
            covariance_type,
            engine,
            w,
        )

    run_restart = _restart_plan(
        start_from,
        run,
        init="k-means++" if init_params is not None else init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        label="EM",
        degenerate=degenerate,
    )
    return _fit_restarts(
        run_restart,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        family="gaussian",
        objective=objective,
        covariance_type=covariance_type,
        stacklevel=3,  # _fit_restarts, fit_em, the caller
        label="EM",
        advice="standardising the data or using fewer components",
        check_result=check_result,
        log_likelihood=log_likelihood,
        degenerate=degenerate,
    )


# ---------------------------------------------------------------------------------------
# EM as sufficient statistics (chunked data: bayesmix.em.chunked, bayesmix.dask)


def _chunk_sums(
    X: np.ndarray,
    w: np.ndarray | None,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    covariance_type: str,
    centres: np.ndarray,
) -> dict:
    """Return the sums of :func:`_fused_statistics` in NumPy, weighted, about any ``centres``.

    ``log_likelihood = sum_n w_n log p(x_n)``, ``nk = sum_n w_n r_nk``, ``s1[k] = sum_n w_n
    r_nk (x_n - c_k)`` and ``s2[k]`` the same of the outer products (K, D, D) for
    ``"full"`` and ``"tied"``, of the squares (K, D) otherwise; ``weight = sum_n w_n``.
    """
    log_prob, log_resp = _e_step_samples(X, weights, means, precisions_cholesky, covariance_type)
    resp = np.exp(log_resp)
    if w is None:
        total, weight = float(np.sum(log_prob)), float(X.shape[0])
    else:
        resp *= w[:, np.newaxis]
        total, weight = float(w @ log_prob), float(w.sum())
    n_components, n_features = centres.shape
    matrices = covariance_type in ("full", "tied")
    s1 = np.empty((n_components, n_features))
    s2 = np.empty(
        (n_components, n_features, n_features) if matrices else (n_components, n_features)
    )
    for k in range(n_components):
        diff = X - centres[k]
        weighted = resp[:, k, np.newaxis] * diff
        s1[k] = weighted.sum(axis=0)
        s2[k] = weighted.T @ diff if matrices else np.sum(weighted * diff, axis=0)
    return {"log_likelihood": total, "weight": weight, "nk": column_sums(resp), "s1": s1, "s2": s2}


def _missing_chunk_sums(
    X: np.ndarray,
    w: np.ndarray | None,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str,
    centres: np.ndarray,
) -> dict:
    r"""Return the sums of :func:`_chunk_sums` for rows with missing values (NaN).

    Every row contributes the marginal density of its observed coordinates ``o``,
    :math:`\mathcal{N}(x_o; \mu_{k,o}, \Sigma_{k,oo})`, and to the sufficient statistics
    their expectations given ``x_o`` and the component (Ghahramani & Jordan 1994): the
    missing coordinates ``m`` replaced by :math:`\hat{x}_m = \mu_{k,m} + \Sigma_{k,mo}
    \Sigma_{k,oo}^{-1} (x_o - \mu_{k,o})`, and ``s2`` increased by the conditional
    covariance :math:`\Sigma_{k,mm} - \Sigma_{k,mo} \Sigma_{k,oo}^{-1} \Sigma_{k,om}`
    times the row's responsibility. Rows are processed by pattern
    (:func:`bayesmix._numeric.missing_patterns`): one Cholesky factor per pattern and
    component. A row with no observed value must not occur (the data checks refuse it).
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    cov = full_covariances(covariances, covariance_type, n_components, n_features)
    log_prob = np.empty((n_samples, n_components))
    filled = np.broadcast_to(X, (n_components, n_samples, n_features)).copy()
    conditional = []  # (rows, missing mask, (K, m, m) conditional covariances)
    for observed, rows in missing_patterns(X):
        missing = ~observed
        log_density, cond_mean, cond_cov = conditional_gaussians(
            X[np.ix_(rows, observed)], means[None], cov[None], observed
        )
        log_prob[rows] = log_density[0].T
        if missing.any():
            filled[np.ix_(np.arange(n_components), rows, missing)] = cond_mean[0]
            conditional.append((rows, missing, cond_cov[0]))
    with np.errstate(divide="ignore"):
        weighted = log_prob + np.log(weights)
    log_norm = logsumexp(weighted, axis=1)
    resp = np.exp(weighted - log_norm[:, np.newaxis])
    if w is None:
        total, weight = float(np.sum(log_norm)), float(n_samples)
    else:
        resp *= w[:, np.newaxis]
        total, weight = float(w @ log_norm), float(w.sum())
    matrices = covariance_type in ("full", "tied")
    s1 = np.empty((n_components, n_features))
    s2 = np.empty(
        (n_components, n_features, n_features) if matrices else (n_components, n_features)
    )
    for k in range(n_components):
        diff = filled[k] - centres[k]
        r = resp[:, k, np.newaxis] * diff
        s1[k] = r.sum(axis=0)
        extra = np.zeros((n_features, n_features))
        for rows, missing, blocks in conditional:
            extra[np.ix_(missing, missing)] += resp[rows, k].sum() * blocks[k]
        s2[k] = r.T @ diff + extra if matrices else np.sum(r * diff, axis=0) + np.diagonal(extra)
    return {"log_likelihood": total, "weight": weight, "nk": column_sums(resp), "s1": s1, "s2": s2}


def _sums_about(
    X: np.ndarray,
    w: np.ndarray | None,
    weights: np.ndarray,
    params: dict,
    *,
    covariance_type: str,
    centres: np.ndarray,
) -> dict:
    """Return the sums of :func:`_chunk_sums` of one chunk at ``params``, about ``centres``.

    A chunk with missing values (NaN) takes :func:`_missing_chunk_sums`.
    """
    means = np.ascontiguousarray(params["means"], dtype=np.float64)
    if np.isnan(X).any():
        return _missing_chunk_sums(
            X, w, weights, means, params["covariances"], covariance_type, centres
        )
    return _chunk_sums(
        X, w, weights, means, params["precisions_cholesky"], covariance_type, centres
    )


def _chunk_statistics(
    X: np.ndarray,
    w: np.ndarray | None,
    weights: np.ndarray,
    params: dict,
    *,
    covariance_type: str,
) -> dict:
    """E-step statistics of one chunk about the current means (the fused kernel if it can).

    A chunk with missing values (NaN) or weights takes :func:`_sums_about`.
    """
    means = np.ascontiguousarray(params["means"], dtype=np.float64)
    if w is None and not np.isnan(X).any() and _kernels() is not None:
        total, nk, s1, s2 = _fused_statistics(
            _kernel_data(np.asarray(X, dtype=np.float64)),
            weights,
            means,
            params["precisions_cholesky"],
            covariance_type,
        )
        return {
            "log_likelihood": float(total),
            "weight": float(X.shape[0]),
            "nk": nk,
            "s1": s1,
            "s2": s2,
        }
    return _sums_about(X, w, weights, params, covariance_type=covariance_type, centres=means)


def _moment_sums(X: np.ndarray, w: np.ndarray | None, centre: np.ndarray | None = None) -> dict:
    """``sum w``, ``sum w x`` and, about ``centre``, the scatter ``sum w (x - c)(x - c)^T``.

    With missing values (NaN), ``sum`` is that of the observed values over ``count`` (their
    weights, per feature), and a missing value adds nothing to the scatter (it is taken
    at the centre): the data scale of the MAP prior and of the degeneracy check.
    """
    if np.isnan(X).any():
        observed = ~np.isnan(X)
        weight = np.ones(X.shape[0]) if w is None else w
        if centre is None:
            return {
                "weight": float(weight.sum()),
                "sum": weight @ np.where(observed, X, 0.0),
                "count": weight @ observed,
            }
        diff = np.where(observed, X - centre, 0.0)
        return {"scatter": (diff.T * weight) @ diff}
    if centre is None:
        weight = float(X.shape[0] if w is None else w.sum())
        total = X.sum(axis=0) if w is None else w @ X
        return {"weight": weight, "sum": total, "count": np.full(X.shape[1], weight)}
    diff = X - centre
    return {"scatter": diff.T @ diff if w is None else (diff.T * w) @ diff}


def _empty_placeholders(
    nk: np.ndarray, s1: np.ndarray, s2: np.ndarray, empty: np.ndarray, covariance_type: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the statistics with the empty components replaced by harmless ones.

    Unit count and unit scatter; zero scatter for ``"tied"``, whose pooled matrix they
    would otherwise change.
    """
    nk, s1, s2 = nk.copy(), s1.copy(), s2.copy()
    nk[empty] = 1.0
    s1[empty] = 0.0
    if covariance_type == "tied":
        s2[empty] = 0.0
    elif covariance_type == "full":
        s2[empty] = np.eye(s1.shape[1])
    else:
        s2[empty] = 1.0
    return nk, s1, s2


def chunked_steps(
    n_components: int,
    n_features: int,
    *,
    covariance_type: str,
    reg_covar: float,
    objective: str,
    data_pass: Callable[[Callable], dict],
) -> EMSteps:
    """Return the Gaussian EM as sufficient statistics (:class:`bayesmix.em.chunked.EMSteps`).

    One data pass per iteration: every chunk returns the sums of the fused kernel
    (:func:`_fused_statistics`, or :func:`_chunk_sums` with weights) about the current
    means, and the M-step is :func:`_fused_m_step` on their totals -- the in-memory EM's
    fused iteration. When that M-step declines (a component is empty, or the scatter about
    the old means may have cancelled), a second pass computes the sums about the new means,
    which cannot cancel. An empty component keeps its previous mean and covariance with a
    vanishing weight (the in-memory EM moves it to a poorly fitted sample instead, which
    needs the whole data in memory). ``objective="map"`` builds mclust's conjugate prior
    (:func:`default_prior`) from the exact data mean and scatter (two passes).
    ``covariance_type`` may be an mclust model (as in :func:`fit_em`); the steps then work
    in its storage type, which is also the returned ``EMSteps.covariance_type``.
    """
    covariance_type, model = covariance_models.storage(covariance_type, n_features)
    prior = None
    if objective == "map":
        moments = data_pass(_moment_sums)
        mean = moments["sum"] / moments["count"]
        scatter = data_pass(functools.partial(_moment_sums, centre=mean))["scatter"]
        scale = _scale_from_scatter(scatter, moments["weight"], n_components, covariance_type)
        prior = _conjugate_prior(mean, scale, 0.01, n_features + 2.0, covariance_type)

    statistics = functools.partial(_chunk_statistics, covariance_type=covariance_type)

    def m_step(stats: dict, weights: np.ndarray, params: dict, data_pass) -> tuple:
        nk = np.asarray(stats["nk"], dtype=np.float64)
        centres = np.ascontiguousarray(params["means"], dtype=np.float64)
        empty = nk < 2.0 * _EMPTY_MASS
        if not empty.any():
            update = _fused_m_step(
                nk,
                stats["s1"],
                stats["s2"],
                centres,
                covariance_type,
                reg_covar,
                prior,
                model=model,
            )
            if update is not None:
                (new_weights, means, covariances), precisions_cholesky = update
                return new_weights, _params(means, covariances, precisions_cholesky)
        # Second pass: the sums about the weighted means cannot cancel.
        safe = np.where(empty, 1.0, nk)
        new_centres = np.where(empty[:, None], centres, centres + stats["s1"] / safe[:, None])
        second = data_pass(
            functools.partial(
                _sums_about,
                weights=weights,
                params=params,
                covariance_type=covariance_type,
                centres=new_centres,
            )
        )
        nk2, s1, s2 = _empty_placeholders(
            second["nk"], second["s1"], second["s2"], empty, covariance_type
        )
        update = _fused_m_step(
            nk2, s1, s2, new_centres, covariance_type, reg_covar, prior, 0.0, 0.0, model
        )
        if update is None:
            raise FitError(
                f"a covariance (covariance_type={covariance_type!r}) is not positive "
                f"definite after the M-step. {_FIT_ADVICE}"
            )
        (_, means, covariances), precisions_cholesky = update
        floored = nk + 10.0 * _EPS
        if empty.any():
            logger.warning(
                "chunked Gaussian EM: component(s) %s are empty (total responsibility "
                "below %g); they keep their previous mean and covariance with a vanishing "
                "weight.",
                np.flatnonzero(empty).tolist(),
                2.0 * _EMPTY_MASS,
            )
            if covariance_type != "tied":
                means[empty] = centres[empty]
                covariances[empty] = params["covariances"][empty]
                precisions_cholesky[empty] = params["precisions_cholesky"][empty]
        return floored / floored.sum(), _params(means, covariances, precisions_cholesky)

    def initialise(
        rows, n_samples: int, rng: np.random.Generator, partition: str = "k-means++"
    ) -> tuple:
        X, w = rows(sample_indices(n_samples, rng))
        X = mean_filled(X, w)  # the start only: missing values at their column's mean
        reinit = _make_reinit(X, n_components, covariance_type, reg_covar, prior, None, w)
        weights, means, covariances = _initial_parameters(
            X, n_components, covariance_type, reg_covar, rng, prior, reinit, w, partition, model
        )
        precisions_cholesky = compute_precision_cholesky(covariances, covariance_type)
        return weights, _params(means, covariances, precisions_cholesky)

    return EMSteps(
        family="gaussian",
        statistics=statistics,
        m_step=m_step,
        initialise=initialise,
        log_prior=None if prior is None else functools.partial(_log_prior_of_params, prior),
        centre=_centre,
        recentre=functools.partial(_recentre, covariance_type=covariance_type),
        objective=objective,
        covariance_type=covariance_type,
        degenerate=(
            _chunked_degenerate(data_pass, n_features, covariance_type, reg_covar, model)
            if objective == "ml"
            else None
        ),
        degenerate_advice=_DEGENERATE_ADVICE,
    )


def _chunked_degenerate(
    data_pass: Callable[[Callable], dict],
    n_features: int,
    covariance_type: str,
    reg_covar: float,
    model: str | None = None,
) -> Callable[[np.ndarray, dict, float], dict[int, str]]:
    """Return the degenerate-fit check of chunked EM (``EMSteps.degenerate``).

    :func:`_degenerate_components` of ``params["covariances"]`` (Gaussian covariances or
    Student-t scale matrices); the data covariance takes two data passes, at the first call.
    """
    data_cov: list[np.ndarray] = []

    def degenerate(weights: np.ndarray, params: dict, total_weight: float) -> dict[int, str]:
        if not data_cov:
            moments = data_pass(_moment_sums)
            mean = moments["sum"] / moments["count"]
            scatter = data_pass(functools.partial(_moment_sums, centre=mean))["scatter"]
            data_cov.append(scatter / moments["weight"])
        ratios = _ratios_to(data_cov[0], params["covariances"], covariance_type, reg_covar)
        return _degenerate_components(
            weights * total_weight, ratios, n_features, covariance_type, model=model
        )

    return degenerate


def _centre(stats: dict, params: dict, *, mass: str = "nk") -> dict:
    """Return ``params`` with the means at the statistics' weighted means.

    ``mass`` names the total weight of the sums (``"nk"``; the Student-t's ``"su"``).
    """
    nk = np.asarray(stats[mass], dtype=np.float64)
    safe = np.where(nk > 0.0, nk, 1.0)[:, np.newaxis]
    means = params["means"] + np.where(nk[:, np.newaxis] > 0.0, stats["s1"] / safe, 0.0)
    return {**params, "means": means}


def _recentre(stats: dict, old: dict, new: dict, *, covariance_type: str, mass: str = "nk") -> dict:
    """Return the sums about ``new["means"]`` from the sums about ``old["means"]``.

    With ``d = m_new - m_old``: ``s1 - n d`` and ``s2 - s1 d' - d s1' + n d d'`` (the
    squares ``s2 - 2 s1 d + n d^2`` for the diagonal types); ``n`` is ``stats[mass]``.
    """
    nk, s1, s2 = stats[mass], stats["s1"], stats["s2"]
    delta = np.asarray(new["means"]) - np.asarray(old["means"])
    moved = s1 - nk[:, np.newaxis] * delta
    if covariance_type in ("full", "tied"):
        outer = s1[:, :, np.newaxis] * delta[:, np.newaxis, :]
        scatter = s2 - outer - outer.transpose(0, 2, 1)
        scatter = scatter + nk[:, np.newaxis, np.newaxis] * (
            delta[:, :, np.newaxis] * delta[:, np.newaxis, :]
        )
    else:
        scatter = s2 - 2.0 * s1 * delta + nk[:, np.newaxis] * delta**2
    return {**stats, "s1": moved, "s2": scatter}


def _log_prior_of_params(prior: ConjugatePrior, weights: np.ndarray, params: dict) -> float:
    """:func:`log_prior` of the parameters as the EM loop carries them."""
    return log_prior(prior, params["means"], params["precisions_cholesky"])
