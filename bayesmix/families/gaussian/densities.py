"""The Gaussian family's NumPy densities, parameter count and flattening (no PyMC, no numba).

:func:`gaussian_log_prob` is the component log density every post-processing step uses
(predict, score, the pointwise log-likelihood); :func:`fast_pointwise` is the same
mixture log density through the numba kernel of :mod:`._em_kernels` for many draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesmix._numeric import kernel_pays_off, missing_patterns
from bayesmix.exceptions import InvalidParameterError
from bayesmix.families.gaussian.covariance_models import n_variance_parameters

__all__ = [
    "fast_pointwise",
    "free_covariance_entries",
    "gaussian_far_log_prob",
    "gaussian_log_prob",
    "n_parameters",
    "row_exponents",
    "scalar_parameters",
    "scaled_squared_mahalanobis",
    "squared_mahalanobis",
]


_LOG_2PI = float(np.log(2.0 * np.pi))


# fast_pointwise uses the numba kernel of
# bayesmix.families.gaussian._em_kernels (a private switch, so that tests can compare it with
# NumPy).
_GAUSSIAN_KERNEL = True


# ... from this many values (draws x samples) on: below, NumPy is faster than loading the
# kernel from numba's cache in a fresh process (about 0.3 s) ...
_GAUSSIAN_KERNEL_MIN_VALUES = 2**18


# ... or from this many once numba is imported (by EM's kernels or nutpie's model): then
# loading the kernel costs about 10 ms and it is ~7x faster than NumPy (7 ms against
# 48 ms for 10^5 values at D=2, K=3).
_GAUSSIAN_KERNEL_LOADED_MIN_VALUES = 2**15


# Rows whose largest absolute value is at least this are scaled by a power of two (exact)
# before their Mahalanobis distances, so that no intermediate overflows; smaller rows are
# computed as they are (bit for bit as before).
_SCALE_FROM = 2.0**256
# A row is far out when it is this many times further from the centre of the component
# means than the furthest mean: its responsibilities are then computed from the exact
# terms of :func:`gaussian_far_log_prob`.
_FAR_RATIO = 2.0**20


def row_exponents(X: np.ndarray, start: float = _SCALE_FROM) -> np.ndarray:
    """Return ``e_n`` with ``max_d |x_nd| / 2^e_n`` in [0.5, 1) for rows at least ``start``, else 0.

    Dividing a row by ``2^e_n`` is exact, so computing at the scaled row and multiplying
    back by powers of two changes no digit, only the range.
    """
    top = np.max(np.abs(X), axis=1) if X.shape[1] else np.zeros(X.shape[0])
    exponent = np.frexp(top)[1].astype(np.int64)
    return np.where(top >= start, exponent, 0)


def _forward_substitution(diff: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """Solve ``L z = diff`` for every (draw, sample, component): diff (S, N, K, D)."""
    z = np.empty_like(diff)
    for i in range(diff.shape[-1]):
        residual = diff[..., i] - np.einsum("skj,snkj->snk", chol[:, :, i, :i], z[..., :i])
        z[..., i] = residual / chol[:, None, :, i, i]
    return z


def scaled_squared_mahalanobis(
    X: np.ndarray, means: np.ndarray, chol: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Squared Mahalanobis distances ``m / 4^e_n`` (S, N, K) and the row exponents ``e`` (N,).

    ``chol`` holds the lower Cholesky factors (S, K, D, D). Rows of magnitude below
    ``2^256`` have ``e_n = 0`` (the distances themselves); a larger row is divided by
    ``2^e_n`` (:func:`row_exponents`) with the means, so the distance of a row ``1e300``
    out is computed without overflow and ``m = scaled * 4^e`` may be beyond the floats.
    """
    exponent = row_exponents(X)
    diff = X[None, :, None, :] - means[:, None, :, :]  # (S, N, K, D)
    if exponent.any():
        shift = -exponent[None, :, None, None]
        diff = np.ldexp(X, -exponent[:, None])[None, :, None, :] - np.ldexp(
            means[:, None, :, :], shift
        )
    z = _forward_substitution(diff, chol)
    return np.einsum("snkd,snkd->snk", z, z), exponent


def squared_mahalanobis(
    X: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Squared Mahalanobis distances (S, N, K) and log-determinants (S, K) of ``L L^T``.

    One batched Cholesky factorisation of the matrices, then forward substitution
    ``L z = x - mu`` unrolled over the features, no inverse. Rows far out are scaled
    by powers of two (:func:`scaled_squared_mahalanobis`), so the distances are exact
    up to rounding wherever they are floats and ``inf`` only beyond (above ``1.8e308``),
    never NaN.
    """
    chol = np.linalg.cholesky(covariances)  # (S, K, D, D)
    scaled, exponent = scaled_squared_mahalanobis(X, means, chol)
    with np.errstate(over="ignore"):
        mahalanobis = np.ldexp(scaled, 2 * exponent[None, :, None])
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)  # (S, K)
    return mahalanobis, log_det


def gaussian_log_prob(X: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """Return ``log N(x_n | mu_k, Sigma_k)`` for every draw, sample and component.

    Vectorised over draws, samples and components (the same computation as the
    model's PyTensor likelihood: Cholesky factor, forward substitution, no inverse).
    Finite for every finite row whose log density is a float; ``-inf`` only where it is
    below ``-1.8e308`` (a row ~1e154 standard deviations out), never NaN.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    means : ndarray of shape (n_draws, n_components, n_features)
    covariances : ndarray of shape (n_draws, n_components, n_features, n_features)

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)

    Rows with missing values (NaN) get the marginal density of their observed
    coordinates: the same computation on those coordinates' means and covariance
    blocks, per pattern of missingness (a row with no observed value gets 0, the log
    density of nothing).
    """
    if np.isnan(X).any():
        out = np.zeros((means.shape[0], X.shape[0], means.shape[1]))
        for observed, rows in missing_patterns(X):
            if observed.any():
                out[:, rows, :] = gaussian_log_prob(
                    X[np.ix_(rows, observed)],
                    means[..., observed],
                    covariances[..., observed, :][..., observed],
                )
        return out
    chol = np.linalg.cholesky(covariances)
    scaled, exponent = scaled_squared_mahalanobis(X, means, chol)
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)  # (S, K)
    constant = X.shape[1] * _LOG_2PI + log_det[:, None, :]
    if not exponent.any():
        return -0.5 * (constant + scaled)
    with np.errstate(over="ignore"):
        mahalanobis = np.ldexp(scaled, 2 * exponent[None, :, None])
        out = -0.5 * (constant + mahalanobis)
        far = ~np.isfinite(out)  # -0.5 m may still be a float when m is not
        half = np.ldexp(0.5 * scaled, 2 * exponent[None, :, None])
    out[far] = (-0.5 * constant - half)[far]
    return out


def gaussian_far_log_prob(X: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> Any:
    r"""Return the exact far-out terms of the Gaussian log densities (a ``FarTerms``), or None.

    For a row far from the centre ``o`` of each draw's means (further than ``2^20`` times
    the furthest mean, or ``2^256`` in magnitude), with ``s = 2^e`` at least its magnitude,
    ``u = (x - o) / s``, ``v_k = mu_k - o`` and ``L_k z = w`` the forward substitution,

    .. math::

        \log N(x \mid \mu_k, \Sigma_k) = -\tfrac12 s^2 \lVert L_k^{-1} u \rVert^2
        + s\, (L_k^{-1} v_k)^\top (L_k^{-1} u)
        - \tfrac12 \lVert L_k^{-1} v_k \rVert^2 - \tfrac12 (D \log 2\pi + \log|\Sigma_k|).

    The quadratic terms of components with one covariance are equal to the last digit,
    so their responsibilities come from the linear term: the linear discriminant. A
    NumPy function of the same arguments as :func:`gaussian_log_prob`.
    """
    from bayesmix.stats import FarTerms

    centre = means.mean(axis=1)  # (S, D)
    far = row_exponents(X) > 0  # rows of magnitude 2^256 or more
    if means.shape[1] > 1:  # one component: its responsibility is 1 wherever it is finite
        spread = np.max(np.abs(means - centre[:, None, :]), axis=(1, 2))  # (S,)
        with np.errstate(over="ignore", invalid="ignore"):
            distance = np.max(np.abs(X[None, :, :] - centre[:, None, :]), axis=2)  # (S, N)
            far |= (distance > _FAR_RATIO * spread[:, None]).any(axis=0)
    rows = np.flatnonzero(far)
    if rows.size == 0:
        return None
    x = X[rows]
    size = np.maximum(np.max(np.abs(x), axis=1), np.max(np.abs(centre)))
    # s = 2^e > max(|x|, |o|), so |u| < 2 (< 4 for rows beyond 2^1023: e stops at 1023).
    exponent = np.clip(np.frexp(size)[1].astype(np.int64), 0, 1023)
    u = np.ldexp(x, -exponent[:, None])[None, :, :] - np.ldexp(
        centre[:, None, :], -exponent[None, :, None]
    )  # (S, n, D), |u| < 4
    chol = np.linalg.cholesky(covariances)
    n_draws, n_components = means.shape[:2]
    shape = (n_draws, rows.size, n_components, X.shape[1])
    zu = _forward_substitution(np.broadcast_to(u[:, :, None, :], shape), chol)  # (S, n, K, D)
    zv = _forward_substitution((means - centre[:, None, :])[:, None], chol)  # (S, 1, K, D)
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)  # (S, K)
    constant = -0.5 * (X.shape[1] * _LOG_2PI + log_det)[:, None, :] - 0.5 * np.einsum(
        "snkd,snkd->snk", zv, zv
    )
    return FarTerms(
        rows=rows,
        exponent=exponent,
        quadratic=-0.5 * np.einsum("snkd,snkd->snk", zu, zu),
        linear=np.einsum("snkd,snkd->snk", zv, zu),
        constant=np.broadcast_to(constant, shape[:3]),
    )


def _use_gaussian_kernel(n_values: int) -> bool:
    """Whether the numba kernel is the faster way to ``n_values`` Gaussian log-densities."""
    if not _GAUSSIAN_KERNEL:
        return False
    return kernel_pays_off(
        n_values, _GAUSSIAN_KERNEL_MIN_VALUES, _GAUSSIAN_KERNEL_LOADED_MIN_VALUES
    )


def fast_pointwise(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    out: np.ndarray,
    *,
    responsibilities: bool = False,
) -> bool:
    """Write ``log p(x_n | theta^s)`` into ``out`` with the numba kernel, when that is faster.

    With ``responsibilities``, add each row's responsibilities summed over the draws to
    ``out`` (N, K) instead (NaN for a row the kernel leaves to NumPy). Returns False
    (``out`` untouched) when NumPy is the faster way
    (:func:`bayesmix.stats.pointwise_log_likelihood` then uses :func:`gaussian_log_prob`),
    and for the responsibilities of draws with a weight of 0 (NumPy gives them exactly 0),
    and for rows with missing values (NaN: :func:`gaussian_log_prob` takes their marginals).

    About 20x faster than the NumPy blocks (one pass, no (draws, N, K, D) temporaries);
    the Cholesky factors are computed here, so a covariance that is not positive definite
    raises ``numpy.linalg.LinAlgError`` as in :func:`gaussian_log_prob`.
    """
    if not _use_gaussian_kernel(weights.shape[0] * X.shape[0]) or np.isnan(X).any():
        return False
    if responsibilities and not (weights > 0.0).all():
        return False
    from bayesmix.families.gaussian import _em_kernels

    chol = np.ascontiguousarray(np.linalg.cholesky(covariances), dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_w = np.ascontiguousarray(np.log(weights), dtype=np.float64)
    _em_kernels.mixture_log_density(
        np.ascontiguousarray(X, dtype=np.float64),
        log_w,
        np.ascontiguousarray(means, dtype=np.float64),
        chol,
        out,
        responsibilities,
    )
    return True


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Return the number of free parameters of a Gaussian mixture.

    Weights, means and the covariances' parameters as mclust counts them
    (:func:`~bayesmix.families.gaussian.covariance_models.n_variance_parameters`), which
    for scikit-learn's four names are scikit-learn's counts.
    """
    k, d = n_components, n_features
    return n_variance_parameters(covariance_type, d, k) + k * d + k - 1


def free_covariance_entries(
    covariance_type: str, n_components: int, n_features: int
) -> list[tuple[int, int, int]]:
    """Return the ``(component, row, column)`` indices of the free covariance entries.

    ``full``: every entry on and below the diagonal of every component; ``tied``: those
    of the one shared matrix (component 0); ``diag``: the diagonals; ``spherical``: one
    variance per component (the first diagonal entry).

    Examples
    --------
    >>> from bayesmix.families.gaussian.densities import free_covariance_entries
    >>> free_covariance_entries("tied", 2, 2)
    [(0, 0, 0), (0, 1, 0), (0, 1, 1)]
    >>> free_covariance_entries("spherical", 2, 3)
    [(0, 0, 0), (1, 0, 0)]
    """
    components = range(1 if covariance_type == "tied" else n_components)
    match covariance_type:
        case "full" | "tied":
            return [(k, i, j) for k in components for i in range(n_features) for j in range(i + 1)]
        case "diag":
            return [(k, i, i) for k in components for i in range(n_features)]
        case "spherical":
            return [(k, 0, 0) for k in components]
    raise InvalidParameterError(
        f"covariance_type must be one of 'full', 'tied', 'diag', 'spherical'; got "
        f"{covariance_type!r}."
    )


def scalar_parameters(
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    *,
    covariance_type: str,
    components: list[Any],
    features: list[Any],
    matrix_name: str = "covariances",
) -> tuple[list[str], list[str], np.ndarray]:
    """Flatten mixture parameters to the distinct scalar parameters of the model.

    Parameters
    ----------
    weights : ndarray of shape (n_draws, n_components)
    means : ndarray of shape (n_draws, n_components, n_features)
    covariances : ndarray of shape (n_draws, n_components, n_features, n_features)
        Full matrices; only the free entries for ``covariance_type`` are kept
        (see :func:`free_covariance_entries`).
    covariance_type : {"full", "tied", "diag", "spherical"}
    components, features : list
        Coordinate labels of the components and features, used in the labels.
    matrix_name : str, default="covariances"
        Name of the matrix variable in the labels (``"scales"`` for Student-t).

    Returns
    -------
    variables : list of str
        The variable of each scalar (``"weights"``, ``"means"`` or ``"covariances"``).
    labels : list of str
        ArviZ-style labels: ``"weights[0]"``, ``"means[0, x]"``, ``"covariances[0, y, x]"``.
    values : ndarray of shape (n_draws, n_scalars)
    """
    k, d = means.shape[-2:]
    variables, labels, columns = [], [], []
    for c in range(k):
        variables.append("weights")
        labels.append(f"weights[{components[c]}]")
        columns.append(weights[:, c])
    for c in range(k):
        for f in range(d):
            variables.append("means")
            labels.append(f"means[{components[c]}, {features[f]}]")
            columns.append(means[:, c, f])
    for c, i, j in free_covariance_entries(covariance_type, k, d):
        variables.append(matrix_name)
        labels.append(f"{matrix_name}[{components[c]}, {features[i]}, {features[j]}]")
        columns.append(covariances[:, c, i, j])
    return variables, labels, np.stack(columns, axis=-1)


def conditional_gaussians(
    x_obs: np.ndarray, means: np.ndarray, covariances: np.ndarray, observed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log densities of observed coordinates, and the missing ones' conditional Gaussians.

    ``x_obs`` (n, o) are rows' observed coordinates (mask ``observed`` of the features);
    the parameters are draws (S, K, ...). Returns ``log N(x_o | mu_k,o, Sigma_k,oo)``
    (S, K, n), the conditional means of the missing coordinates (S, K, n, m) and their
    conditional covariances (S, K, m, m) (:func:`conditional_terms`).
    """
    mahalanobis, log_det, cond_mean, cond_cov = conditional_terms(
        x_obs, means, covariances, observed
    )
    log_density = -0.5 * (mahalanobis + (log_det + observed.sum() * _LOG_2PI)[..., None])
    return log_density, cond_mean, cond_cov


def conditional_terms(
    x_obs: np.ndarray, means: np.ndarray, covariances: np.ndarray, observed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the observed block's distances and the missing coordinates' conditional moments.

    ``x_obs`` (n, o) are rows' observed coordinates (mask ``observed`` of the features);
    the parameters are draws (S, K, ...). Returns the squared Mahalanobis distances
    ``(x_o - mu_k,o)' Sigma_k,oo^-1 (x_o - mu_k,o)`` (S, K, n), ``log |Sigma_k,oo|``
    (S, K), the conditional means ``mu_k,m + Sigma_k,mo Sigma_k,oo^-1 (x_o - mu_k,o)``
    of the missing coordinates (S, K, n, m) and their conditional covariances
    ``Sigma_k,mm - Sigma_k,mo Sigma_k,oo^-1 Sigma_k,om`` (S, K, m, m): what a Gaussian
    and a Student-t component need alike. Solves with the observed block's Cholesky
    factor, no inverse.
    """
    missing = ~observed
    cov_oo = covariances[..., observed, :][..., observed]
    cov_mo = covariances[..., missing, :][..., observed]
    chol = np.linalg.cholesky(cov_oo)  # (S, K, o, o)
    diff = x_obs[None, None] - means[..., None, observed]  # (S, K, n, o)
    z = np.linalg.solve(chol, np.swapaxes(diff, -1, -2))  # L^-1 (x - mu)': (S, K, o, n)
    cross = np.linalg.solve(chol, np.swapaxes(cov_mo, -1, -2))  # L^-1 S_om: (S, K, o, m)
    cond_mean = means[..., missing][..., None, :] + np.swapaxes(
        np.swapaxes(cross, -1, -2) @ z, -1, -2
    )
    cond_cov = covariances[..., missing, :][..., missing] - np.swapaxes(cross, -1, -2) @ cross
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)  # (S, K)
    return np.sum(z * z, axis=-2), log_det, cond_mean, cond_cov
