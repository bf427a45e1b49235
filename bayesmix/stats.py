"""Post-processing of mixture fits: log densities per draw, responsibilities, relabelling.

Pure NumPy/SciPy functions over arrays with the draws flattened on the first axis;
the model classes call them on the arrays of their ``idata``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp

__all__ = [
    "draw_log_prob",
    "log_responsibilities",
    "n_parameters",
    "pointwise_log_likelihood",
    "posterior_log_density",
    "posterior_responsibilities",
    "relabel_permutations",
]


_LOG_2PI = float(np.log(2.0 * np.pi))
# Largest (draws x samples x components x features) block evaluated at once (32 MiB).
_BLOCK_ELEMENTS = 2**22


def draw_log_prob(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> np.ndarray:
    """Return ``log pi_k + log N(x_n | mu_k, Sigma_k)`` for every draw.

    Vectorised over draws, samples and components: one batched Cholesky factorisation
    of the covariances, then forward substitution ``L z = x - mu`` unrolled over the
    features (the same computation as the model's PyTensor likelihood), no inverse.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    weights : ndarray of shape (n_draws, n_components)
    means : ndarray of shape (n_draws, n_components, n_features)
    covariances : ndarray of shape (n_draws, n_components, n_features, n_features)

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)
    """
    chol = np.linalg.cholesky(covariances)  # (S, K, D, D)
    n_features = X.shape[1]
    diff = X[None, :, None, :] - means[:, None, :, :]  # (S, N, K, D)
    z = np.empty_like(diff)
    for i in range(n_features):
        residual = diff[..., i] - np.einsum("skj,snkj->snk", chol[:, :, i, :i], z[..., :i])
        z[..., i] = residual / chol[:, None, :, i, i]
    mahalanobis = np.einsum("snkd,snkd->snk", z, z)
    log_det = np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)  # (S, K)
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    component = -0.5 * n_features * _LOG_2PI - log_det[:, None, :] - 0.5 * mahalanobis
    return log_w[:, None, :] + component


def _draw_blocks(X: np.ndarray, means: np.ndarray) -> tuple[range, int]:
    """Start indices of blocks of draws small enough to evaluate at once."""
    n_draws, n_components, n_features = means.shape
    size = max(1, _BLOCK_ELEMENTS // (X.shape[0] * n_components * n_features))
    return range(0, n_draws, size), size


def posterior_responsibilities(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> np.ndarray:
    """Return ``p(z_n = k | x_n)`` averaged over draws, shape ``(n_samples, n_components)``.

    Draws are processed in blocks, so memory does not grow with the number of draws.
    Arguments as in :func:`draw_log_prob`.
    """
    starts, size = _draw_blocks(X, means)
    total = np.zeros((X.shape[0], weights.shape[1]))
    for start in starts:
        block = slice(start, start + size)
        weighted = draw_log_prob(X, weights[block], means[block], covariances[block])
        total += np.exp(log_responsibilities(weighted)).sum(axis=0)
    return total / weights.shape[0]


def posterior_log_density(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> np.ndarray:
    """Return ``log (1/S) sum_s p(x_n | theta^s)``, shape ``(n_samples,)``, in blocks of draws.

    With one draw this is the plug-in log density of a point estimate. Arguments as in
    :func:`draw_log_prob`.
    """
    per_draw = pointwise_log_likelihood(X, weights, means, covariances)  # (S, N)
    return logsumexp(per_draw, axis=0) - np.log(per_draw.shape[0])


def pointwise_log_likelihood(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
) -> np.ndarray:
    """Return ``log p(x_n | theta^s)`` for every draw and sample, shape ``(n_draws, n_samples)``.

    The marginal (label-summed) log-density of each observation under each draw: the
    ``log_likelihood`` group that LOO and WAIC use. Draws are processed in blocks so the
    ``(draws, samples, components, features)`` intermediates stay small. Arguments as in
    :func:`draw_log_prob`.
    """
    out = np.empty((weights.shape[0], X.shape[0]))
    starts, size = _draw_blocks(X, means)
    for start in starts:
        block = slice(start, start + size)
        weighted = draw_log_prob(X, weights[block], means[block], covariances[block])
        out[block] = logsumexp(weighted, axis=2)
    return out


def log_responsibilities(weighted_log_prob: np.ndarray) -> np.ndarray:
    """Return ``log p(z_n = k | x_n, theta^s)`` per draw, normalised over components."""
    return weighted_log_prob - logsumexp(weighted_log_prob, axis=2, keepdims=True)


def relabel_permutations(
    means: np.ndarray, reference_means: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """Find, for every draw, the permutation of components that best matches a reference.

    The cost of giving draw component ``j`` the reference label ``k`` is the squared
    distance between their means in units of ``scale`` (the data standard deviation
    per feature). The optimal assignment is found exactly (Hungarian algorithm,
    Kuhn 1955, via :func:`scipy.optimize.linear_sum_assignment`).

    Parameters
    ----------
    means : ndarray of shape (n_draws, n_components, n_features)
    reference_means : ndarray of shape (n_components, n_features)
    scale : ndarray of shape (n_features,)

    Returns
    -------
    ndarray of int of shape (n_draws, n_components)
        ``perm[s, k]`` is the draw component that takes reference label ``k``, so
        ``means[s, perm[s]]`` is draw ``s`` in the reference labelling.
    """
    scaled = means / scale
    ref = reference_means / scale
    cost = ((scaled[:, :, None, :] - ref[None, None, :, :]) ** 2).sum(axis=-1)  # (S, j, k)
    perms = np.empty(means.shape[:2], dtype=np.int64)
    for s in range(means.shape[0]):
        rows, cols = linear_sum_assignment(cost[s])
        perms[s, cols] = rows
    return perms


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Return the number of free parameters of a Gaussian mixture (as scikit-learn counts)."""
    k, d = n_components, n_features
    cov = {
        "full": k * d * (d + 1) // 2,
        "tied": d * (d + 1) // 2,
        "diag": k * d,
        "spherical": k,
    }[covariance_type]
    return cov + k * d + k - 1
