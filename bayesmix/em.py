r"""Exact expectation-maximisation (EM) for Gaussian mixture models.

This module computes maximum-likelihood point estimates of a finite Gaussian mixture

.. math::

    p(x) = \sum_{k=1}^{K} \pi_k \, \mathcal{N}(x \mid \mu_k, \Sigma_k)

with the EM algorithm of Dempster, Laird & Rubin (1977), in the form given by
Bishop (2006), chapter 9.2. Each iteration alternates two exact steps:

* **E-step** -- the responsibilities
  :math:`r_{nk} = \pi_k \mathcal{N}(x_n \mid \mu_k, \Sigma_k) / p(x_n)` are computed in
  log space (``scipy.special.logsumexp``), together with the mean log-likelihood
  :math:`N^{-1} \sum_n \log p(x_n)` of the current parameters.
* **M-step** -- the weights, means and covariances are the responsibility-weighted
  counts, averages and scatter matrices. A small ridge ``reg_covar`` is added to the
  diagonal of every covariance so that it stays positive definite, and the counts are
  floored at ``10 * eps`` so that an empty component does not divide by zero.

The mean log-likelihood never decreases from one iteration to the next (up to the tiny
effect of ``reg_covar``), and the loop stops when it changes by less than ``tol``. EM only
finds a local maximum, so the fit is restarted ``n_init`` times from k-means++ seeds
(Arthur & Vassilvitskii, 2007) and the restart with the highest log-likelihood is kept.

Parameters are stored exactly as in scikit-learn's ``GaussianMixture``: the four
covariance types ``"full"`` (``(K, D, D)``), ``"tied"`` (``(D, D)``), ``"diag"``
(``(K, D)``) and ``"spherical"`` (``(K,)``), and densities are evaluated through the
Cholesky factor ``U`` of each precision matrix (``Sigma^-1 = U U^T``, ``U`` upper
triangular), which is obtained from the Cholesky factor of the covariance by a triangular
solve, never by an explicit inverse. Started from the same parameters, :func:`fit_em`
follows scikit-learn's iteration exactly.

References
----------
.. [1] A. P. Dempster, N. M. Laird and D. B. Rubin, "Maximum likelihood from incomplete
   data via the EM algorithm", *Journal of the Royal Statistical Society B*, 39(1),
   1-38, 1977.
.. [2] C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer, 2006,
   chapter 9.
.. [3] D. Arthur and S. Vassilvitskii, "k-means++: the advantages of careful seeding",
   *Proceedings of the 18th ACM-SIAM Symposium on Discrete Algorithms*, 1027-1035, 2007.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
from scipy import linalg
from scipy.special import logsumexp

from bayesmix.exceptions import ConvergenceWarning, FitError

__all__ = [
    "COVARIANCE_TYPES",
    "EMResult",
    "compute_precision_cholesky",
    "e_step",
    "estimate_log_gaussian_prob",
    "fit_em",
    "full_covariances",
    "kmeans_plusplus",
    "m_step",
]

logger = logging.getLogger("bayesmix")

COVARIANCE_TYPES: tuple[str, ...] = ("full", "tied", "diag", "spherical")

_EPS = np.finfo(np.float64).eps

_FIT_ADVICE = (
    "Try increasing reg_covar, using fewer components, standardising the data or using "
    'covariance_type="diag".'
)


@dataclass(frozen=True, eq=False)
class EMResult:
    """Outcome of :func:`fit_em`: the best restart's parameters and its diagnostics.

    Attributes
    ----------
    weights : numpy.ndarray of shape (n_components,)
        Mixing proportions; they sum to one.
    means : numpy.ndarray of shape (n_components, n_features)
        Component means.
    covariances : numpy.ndarray
        Component covariances, shaped as in scikit-learn for ``covariance_type``:
        ``"full"`` (K, D, D), ``"tied"`` (D, D), ``"diag"`` (K, D), ``"spherical"`` (K,).
    precisions_cholesky : numpy.ndarray
        Cholesky factors ``U`` of the precision matrices (``Sigma^-1 = U U^T``), in the same
        shape as ``covariances``; for ``"diag"`` and ``"spherical"`` this is
        ``1 / sqrt(covariances)``.
    covariance_type : str
        One of :data:`COVARIANCE_TYPES`.
    log_likelihood : float
        Mean log-likelihood per sample, ``mean_n log p(x_n)``, at the returned parameters.
    lower_bounds : numpy.ndarray of shape (n_iter,)
        Mean log-likelihood computed in the E-step of every iteration of the best restart
        (scikit-learn's ``lower_bounds_``).
    n_iter : int
        Number of EM iterations run by the best restart.
    converged : bool
        Whether the best restart reached ``tol`` before ``max_iter`` iterations.
    best_init : int
        Index of the winning restart.
    init_log_likelihoods : numpy.ndarray of shape (n_init,)
        Final mean log-likelihood (last lower bound) of every restart.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str
    log_likelihood: float
    lower_bounds: np.ndarray
    n_iter: int
    converged: bool
    best_init: int
    init_log_likelihoods: np.ndarray

    def to_dict(self) -> dict:
        """Return the result as plain Python lists and scalars (JSON-serialisable, exact)."""
        return {
            field.name: (
                value.tolist()
                if isinstance(value := getattr(self, field.name), np.ndarray)
                else value.item()
                if isinstance(value, np.generic)
                else value
            )
            for field in fields(self)
        }

    @classmethod
    def from_dict(cls, data: dict) -> EMResult:
        """Rebuild a result written by :meth:`to_dict`."""
        arrays = {
            "weights",
            "means",
            "covariances",
            "precisions_cholesky",
            "lower_bounds",
            "init_log_likelihoods",
        }
        return cls(
            **{
                key: np.asarray(value, dtype=np.float64) if key in arrays else value
                for key, value in data.items()
            }
        )


# ---------------------------------------------------------------------------------------
# Argument checks


def _check_covariance_type(covariance_type: str) -> None:
    """Raise ``ValueError`` unless ``covariance_type`` is one of :data:`COVARIANCE_TYPES`."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
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
    """Raise ``ValueError`` if ``covariances`` has the wrong number of dimensions."""
    ndim = _expected_ndim(covariance_type)
    if covariances.ndim != ndim:
        raise ValueError(
            f"covariances for covariance_type={covariance_type!r} must be {ndim}-D, got an "
            f"array of shape {covariances.shape}."
        )
    if covariance_type in ("full", "tied") and covariances.shape[-1] != covariances.shape[-2]:
        raise ValueError(
            f"covariances for covariance_type={covariance_type!r} must be square matrices, "
            f"got an array of shape {covariances.shape}."
        )


# ---------------------------------------------------------------------------------------
# Precision Cholesky factors and densities


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
    try:
        cov_chol = linalg.cholesky(covariance, lower=True, check_finite=False)
    except linalg.LinAlgError as err:
        raise FitError(
            f"The covariance of {name} (covariance_type={covariance_type!r}) is not positive "
            "definite: it is singular or nearly so, typically because the component "
            f"collapsed onto too few or duplicated points. {_FIT_ADVICE}"
        ) from err
    eye = np.eye(n_features, dtype=np.float64)
    return linalg.solve_triangular(cov_chol, eye, lower=True, check_finite=False).T


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
    ValueError
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
    ValueError
        If ``covariances`` does not have the shape implied by the other arguments.
    """
    _check_covariance_type(covariance_type)
    covariances = np.asarray(covariances, dtype=np.float64)
    expected = _covariance_shape(covariance_type, n_components, n_features)
    if covariances.shape != expected:
        raise ValueError(
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
# E- and M-steps


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
    log_prob = estimate_log_gaussian_prob(X, means, precisions_cholesky, covariance_type)
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(weights, dtype=np.float64))
    weighted_log_prob = log_prob + log_weights
    log_prob_norm = logsumexp(weighted_log_prob, axis=1)
    with np.errstate(under="ignore"):
        log_resp = weighted_log_prob - log_prob_norm[:, np.newaxis]
    return float(np.mean(log_prob_norm)), log_resp


def _scatter(X: np.ndarray, resp_k: np.ndarray, mean_k: np.ndarray) -> np.ndarray:
    """Return the weighted scatter matrix ``sum_n r_n (x_n - mu)(x_n - mu)^T``."""
    diff = X - mean_k
    return (resp_k[:, np.newaxis] * diff).T @ diff


def m_step(
    X: np.ndarray, resp: np.ndarray, covariance_type: str, reg_covar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate the mixture parameters from the responsibilities (M-step).

    With ``N_k = sum_n r_nk + 10 eps``, the weights are ``N_k / sum_j N_j``, the means
    ``sum_n r_nk x_n / N_k`` and the covariances the weighted scatter divided by ``N_k``
    plus ``reg_covar`` on the diagonal. ``"tied"`` pools the scatter of all components and
    divides by ``sum_k N_k``, ``"diag"`` keeps the diagonal of each component's covariance
    and ``"spherical"`` its average over features.

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

    nk = resp.sum(axis=0) + 10.0 * _EPS
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
    return weights, means, covariances


# ---------------------------------------------------------------------------------------
# Initialisation


def _squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Return the squared Euclidean distances ``||x_n - c_j||^2``, shape (N, n_centres)."""
    out = np.empty((X.shape[0], centres.shape[0]), dtype=np.float64)
    for j, centre in enumerate(centres):
        diff = X - centre
        out[:, j] = np.einsum("ij,ij->i", diff, diff)
    return out


def kmeans_plusplus(X: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    """Choose initial centres with greedy k-means++ seeding.

    The first centre is a uniformly drawn sample. Each further centre is chosen among
    ``2 + floor(log K)`` candidates drawn with probability proportional to the squared
    distance to the nearest centre already chosen, keeping the candidate that most
    reduces the total squared distance (Arthur & Vassilvitskii, 2007; the greedy variant
    used by scikit-learn).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data.
    n_components : int
        Number of centres ``K`` (at least 1, at most ``n_samples``).
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    numpy.ndarray of shape (n_components, n_features)
        The chosen centres, which are rows of ``X``.
    """
    X = np.asarray(X, dtype=np.float64)
    n_samples = X.shape[0]
    if not 1 <= n_components <= n_samples:
        raise ValueError(
            f"n_components must be between 1 and the number of samples ({n_samples}), got "
            f"{n_components}."
        )
    n_local_trials = 2 + int(np.log(n_components))
    indices = np.empty(n_components, dtype=np.intp)

    indices[0] = rng.integers(n_samples)
    closest_dist_sq = _squared_distances(X, X[indices[:1]])[:, 0]
    current_pot = closest_dist_sq.sum()

    for c in range(1, n_components):
        rand_vals = rng.uniform(size=n_local_trials) * current_pot
        candidate_ids = np.searchsorted(np.cumsum(closest_dist_sq), rand_vals)
        np.clip(candidate_ids, None, n_samples - 1, out=candidate_ids)
        # (n_samples, n_local_trials): distance of every sample to its nearest centre
        # if the candidate were added.
        distances = np.minimum(
            closest_dist_sq[:, np.newaxis], _squared_distances(X, X[candidate_ids])
        )
        candidates_pot = distances.sum(axis=0)
        best = int(np.argmin(candidates_pot))
        current_pot = candidates_pot[best]
        closest_dist_sq = distances[:, best]
        indices[c] = candidate_ids[best]

    return X[indices].copy()


def _kmeans_plusplus_parameters(
    X: np.ndarray, n_components: int, covariance_type: str, reg_covar: float, rng
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start from k-means++ centres: hard-assign samples to them, then run the M-step."""
    centres = kmeans_plusplus(X, n_components, rng)
    labels = np.argmin(_squared_distances(X, centres), axis=1)
    resp = np.zeros((X.shape[0], n_components), dtype=np.float64)
    resp[np.arange(X.shape[0]), labels] = 1.0
    return m_step(X, resp, covariance_type, reg_covar)


def _check_init_params(
    init_params: Mapping[str, np.ndarray],
    n_components: int,
    n_features: int,
    covariance_type: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate user-supplied starting parameters and return float64 copies."""
    missing = {"weights", "means", "covariances"} - set(init_params)
    if missing:
        raise ValueError(
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
            raise ValueError(
                f"init_params[{name!r}] must have shape {expected[name]} for "
                f"n_components={n_components}, n_features={n_features} and "
                f"covariance_type={covariance_type!r}; got {array.shape}."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"init_params[{name!r}] contains NaN or infinite values.")
    if np.any(weights < 0.0) or not math.isclose(weights.sum(), 1.0, abs_tol=1e-8):
        raise ValueError(
            "init_params['weights'] must be non-negative and sum to 1; got sum "
            f"{weights.sum():.10g} and minimum {weights.min():.3g}. Normalise the weights."
        )
    return weights, means, covariances


# ---------------------------------------------------------------------------------------
# Main loop


@dataclass
class _RestartResult:
    """Parameters and trace of one EM restart (internal)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    lower_bound: float
    lower_bounds: list[float]
    n_iter: int
    converged: bool
    last_change: float


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
) -> _RestartResult:
    """Iterate E- and M-steps from the given parameters exactly as scikit-learn does."""
    lower_bound = -np.inf
    lower_bounds: list[float] = []
    change = np.inf
    converged = False
    n_iter = 0
    if max_iter == 0:
        lower_bound, _ = e_step(X, weights, means, precisions_cholesky, covariance_type)
    for n_iter in range(1, max_iter + 1):
        prev_lower_bound = lower_bound
        log_prob_norm, log_resp = e_step(X, weights, means, precisions_cholesky, covariance_type)
        weights, means, covariances = m_step(X, np.exp(log_resp), covariance_type, reg_covar)
        try:
            precisions_cholesky = compute_precision_cholesky(covariances, covariance_type)
        except FitError as err:
            raise FitError(f"EM iteration {n_iter}: {err}") from err
        lower_bound = log_prob_norm
        lower_bounds.append(lower_bound)
        change = lower_bound - prev_lower_bound
        logger.debug("EM iteration %d: mean log-likelihood %.10g", n_iter, lower_bound)
        if abs(change) < tol:
            converged = True
            break
    return _RestartResult(
        weights=weights,
        means=means,
        covariances=covariances,
        precisions_cholesky=precisions_cholesky,
        lower_bound=lower_bound,
        lower_bounds=lower_bounds,
        n_iter=n_iter,
        converged=converged,
        last_change=float(change),
    )


def _check_fit_arguments(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    n_init: int,
    max_iter: int,
    tol: float,
    reg_covar: float,
) -> None:
    """Raise ``ValueError`` for arguments :func:`fit_em` cannot use."""
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {X.shape}.")
    _check_covariance_type(covariance_type)
    n_samples = X.shape[0]
    if not 1 <= n_components <= n_samples:
        raise ValueError(
            f"n_components must be between 1 and the number of samples ({n_samples}), got "
            f"{n_components}."
        )
    if n_init < 1:
        raise ValueError(f"n_init must be at least 1, got {n_init}.")
    if max_iter < 0:
        raise ValueError(f"max_iter must be non-negative, got {max_iter}.")
    if not tol >= 0.0:
        raise ValueError(f"tol must be non-negative, got {tol}.")
    if not reg_covar >= 0.0:
        raise ValueError(f"reg_covar must be non-negative, got {reg_covar}.")


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
) -> EMResult:
    """Fit a Gaussian mixture by maximum likelihood with the EM algorithm.

    Each of the ``n_init`` restarts iterates E- and M-steps until the mean log-likelihood
    changes by less than ``tol`` or ``max_iter`` iterations have run, exactly as
    scikit-learn's ``GaussianMixture``; the restart with the highest final mean
    log-likelihood is returned (the first one on ties).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data, already validated (2-D, finite, float64). It is not modified.
    n_components : int
        Number of mixture components ``K``.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Covariance parameterisation, as in scikit-learn.
    n_init : int, default=1
        Number of restarts.
    max_iter : int, default=100
        Maximum number of EM iterations per restart. With ``max_iter=0`` the starting
        parameters are returned.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative ridge added to the diagonal of every covariance in the M-step.
    random_state : int, numpy.random.Generator or None, default=None
        Seed for the k-means++ initialisation; a ``Generator`` is used as is.
    init_params : mapping or None, default=None
        Starting parameters with keys ``"weights"`` (K,), ``"means"`` (K, D) and
        ``"covariances"`` (scikit-learn shape for ``covariance_type``). Every restart then
        starts from them. If None, each restart hard-assigns every sample to its nearest
        k-means++ centre and starts from the M-step of that assignment.

    Returns
    -------
    EMResult
        Parameters of the best restart, its log-likelihood and diagnostics.

    Raises
    ------
    FitError
        If a covariance becomes singular during the fit.
    ValueError
        If an argument or ``init_params`` is invalid.

    Warns
    -----
    ConvergenceWarning
        If the best restart stopped at ``max_iter`` before reaching ``tol``.
    """
    X = np.asarray(X, dtype=np.float64)
    _check_fit_arguments(X, n_components, covariance_type, n_init, max_iter, tol, reg_covar)
    n_features = X.shape[1]
    rng = np.random.default_rng(random_state)

    if init_params is not None:
        start = _check_init_params(init_params, n_components, n_features, covariance_type)
        try:
            start_precisions_cholesky = compute_precision_cholesky(start[2], covariance_type)
        except FitError as err:
            raise ValueError(
                f"init_params['covariances'] is not a valid set of covariances: {err}"
            ) from err

    restarts: list[_RestartResult] = []
    best_init = 0
    init_log_likelihoods = np.empty(n_init, dtype=np.float64)
    for init in range(n_init):
        if init_params is None:
            weights, means, covariances = _kmeans_plusplus_parameters(
                X, n_components, covariance_type, reg_covar, rng
            )
            try:
                precisions_cholesky = compute_precision_cholesky(covariances, covariance_type)
            except FitError as err:
                raise FitError(f"k-means++ initialisation: {err}") from err
        else:
            weights, means, covariances = (a.copy() for a in start)
            precisions_cholesky = start_precisions_cholesky.copy()

        try:
            restart = _run_em(
                X,
                weights,
                means,
                covariances,
                precisions_cholesky,
                covariance_type=covariance_type,
                max_iter=max_iter,
                tol=tol,
                reg_covar=reg_covar,
            )
        except FitError as err:
            raise FitError(f"EM restart {init + 1}/{n_init}, {err}") from err

        init_log_likelihoods[init] = restart.lower_bound
        logger.info(
            "EM restart %d/%d: final mean log-likelihood %.10g after %d iteration(s), %s",
            init + 1,
            n_init,
            restart.lower_bound,
            restart.n_iter,
            "converged" if restart.converged else "not converged",
        )
        restarts.append(restart)
        # Strict comparison as in scikit-learn: the first restart wins ties.
        if restart.lower_bound > restarts[best_init].lower_bound:
            best_init = init

    best = restarts[best_init]
    if not best.converged and max_iter > 0:
        warnings.warn(
            f"EM did not converge: the best restart (restart {best_init + 1} of {n_init}) ran "
            f"max_iter={max_iter} iterations and the last change of the mean log-likelihood "
            f"was {best.last_change:.3g}, not below tol={tol:.3g}. Try increasing max_iter, "
            "loosening tol, raising n_init, standardising the data or using fewer components.",
            ConvergenceWarning,
            stacklevel=2,
        )

    log_likelihood, _ = e_step(
        X, best.weights, best.means, best.precisions_cholesky, covariance_type
    )
    logger.info(
        "EM best restart %d/%d: mean log-likelihood %.10g, %d iteration(s)",
        best_init + 1,
        n_init,
        log_likelihood,
        best.n_iter,
    )
    return EMResult(
        weights=best.weights,
        means=best.means,
        covariances=best.covariances,
        precisions_cholesky=best.precisions_cholesky,
        covariance_type=covariance_type,
        log_likelihood=log_likelihood,
        lower_bounds=np.asarray(best.lower_bounds, dtype=np.float64),
        n_iter=best.n_iter,
        converged=best.converged,
        best_init=best_init,
        init_log_likelihoods=init_log_likelihoods,
    )
