"""Post-processing of mixture fits: log densities per draw, responsibilities, relabelling.

Pure NumPy/SciPy functions over arrays with the draws flattened on the first axis;
the model classes call them on the arrays of their ``idata``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp

from bayesmix.em import compute_precision_cholesky, estimate_log_gaussian_prob

__all__ = [
    "draw_log_prob",
    "log_responsibilities",
    "mixture_log_density",
    "n_parameters",
    "pointwise_log_likelihood",
    "relabel_permutations",
]


def draw_log_prob(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> np.ndarray:
    """Return ``log pi_k + log N(x_n | mu_k, Sigma_k)`` for every draw.

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
    out = np.empty((weights.shape[0], X.shape[0], weights.shape[1]))
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    for s in range(weights.shape[0]):
        prec_chol = compute_precision_cholesky(covariances[s], "full")
        out[s] = log_w[s] + estimate_log_gaussian_prob(X, means[s], prec_chol, "full")
    return out


def mixture_log_density(weighted_log_prob: np.ndarray) -> np.ndarray:
    """Return the posterior predictive log density of every sample.

    ``log (1/S) sum_s sum_k pi_k^s N(x_n | theta_k^s)`` from the output of
    :func:`draw_log_prob`, shape ``(n_samples,)``. With one draw this is the plug-in
    log density of a point estimate.
    """
    per_draw = logsumexp(weighted_log_prob, axis=2)  # (S, N)
    return logsumexp(per_draw, axis=0) - np.log(per_draw.shape[0])


def pointwise_log_likelihood(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    *,
    chunk_size: int = 256,
) -> np.ndarray:
    """Return ``log p(x_n | theta^s)`` for every draw and sample, shape ``(n_draws, n_samples)``.

    The marginal (label-summed) log-density of each observation under each draw: the
    ``log_likelihood`` group that LOO and WAIC use. Draws are processed in chunks so the
    ``(draws, samples, components)`` intermediate stays small. Arguments as in
    :func:`draw_log_prob`.
    """
    out = np.empty((weights.shape[0], X.shape[0]))
    for start in range(0, weights.shape[0], chunk_size):
        block = slice(start, start + chunk_size)
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
