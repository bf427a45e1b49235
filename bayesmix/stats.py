"""Post-processing of mixture fits: log densities per draw, responsibilities, relabelling.

Pure NumPy/SciPy functions over arrays with the draws flattened on the first axis;
the model classes call them on the arrays of their ``idata``. The functions that sum
over components take the component parameters positionally and a
``component_log_prob(X, *params) -> (n_draws, n_samples, n_components)`` that evaluates
one family's component densities; it defaults to the Gaussian one
(:func:`gaussian_log_prob`, parameters ``means`` and ``covariances``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import gammaln

from bayesmix._numeric import logsumexp

__all__ = [
    "bernoulli_log_prob",
    "draw_log_prob",
    "gaussian_log_prob",
    "log_responsibilities",
    "n_parameters",
    "pointwise_log_likelihood",
    "poisson_log_prob",
    "posterior_log_density",
    "posterior_responsibilities",
    "relabel_permutations",
    "student_t_log_prob",
    "t_log_density",
]


_LOG_2PI = float(np.log(2.0 * np.pi))
# Stands in for log(0) in products with the data, so that 0 * log(0) = 0; the entries
# that it makes impossible are then set to -inf exactly.
_LOG_FLOOR = -1e250
# Largest (draws x samples x components x features) block evaluated at once (32 MiB).
_BLOCK_ELEMENTS = 2**22
# pointwise_log_likelihood of Gaussian components uses the numba kernel of
# bayesmix._em_kernels (a private switch, so that tests can compare it with NumPy).
_GAUSSIAN_KERNEL = True
# ... from this many values (draws x samples) on: below, NumPy is faster than loading the
# kernel from numba's cache in a fresh process (about 0.3 s) ...
_GAUSSIAN_KERNEL_MIN_VALUES = 2**18
# ... or from this many once numba is imported (by EM's kernels or nutpie's model): then
# loading the kernel costs about 10 ms and it is ~7x faster than NumPy (7 ms against
# 48 ms for 10^5 values at D=2, K=3).
_GAUSSIAN_KERNEL_LOADED_MIN_VALUES = 2**15


ComponentLogProb = Callable[..., np.ndarray]


def _mahalanobis(
    X: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Squared Mahalanobis distances (S, N, K) and log-determinants (S, K) of ``L L^T``.

    One batched Cholesky factorisation of the matrices, then forward substitution
    ``L z = x - mu`` unrolled over the features, no inverse.
    """
    chol = np.linalg.cholesky(covariances)  # (S, K, D, D)
    n_features = X.shape[1]
    diff = X[None, :, None, :] - means[:, None, :, :]  # (S, N, K, D)
    z = np.empty_like(diff)
    for i in range(n_features):
        residual = diff[..., i] - np.einsum("skj,snkj->snk", chol[:, :, i, :i], z[..., :i])
        z[..., i] = residual / chol[:, None, :, i, i]
    mahalanobis = np.einsum("snkd,snkd->snk", z, z)
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)  # (S, K)
    return mahalanobis, log_det


def gaussian_log_prob(X: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """Return ``log N(x_n | mu_k, Sigma_k)`` for every draw, sample and component.

    Vectorised over draws, samples and components (the same computation as the
    model's PyTensor likelihood: Cholesky factor, forward substitution, no inverse).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    means : ndarray of shape (n_draws, n_components, n_features)
    covariances : ndarray of shape (n_draws, n_components, n_features, n_features)

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)
    """
    mahalanobis, log_det = _mahalanobis(X, means, covariances)
    return -0.5 * (X.shape[1] * _LOG_2PI + log_det[:, None, :] + mahalanobis)


def student_t_log_prob(
    X: np.ndarray, means: np.ndarray, scales: np.ndarray, dof: np.ndarray
) -> np.ndarray:
    """Return ``log t_nu_k(x_n | mu_k, Sigma_k)`` for every draw, sample and component.

    The multivariate Student-t density with location ``mu``, scale matrix ``Sigma``
    and ``nu`` degrees of freedom::

        log Gamma((nu + D) / 2) - log Gamma(nu / 2) - D / 2 log(nu pi) - 1/2 log|Sigma|
            - (nu + D) / 2 log(1 + delta / nu),   delta = (x - mu)^T Sigma^-1 (x - mu)

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    means : ndarray of shape (n_draws, n_components, n_features)
    scales : ndarray of shape (n_draws, n_components, n_features, n_features)
    dof : ndarray of shape (n_draws, n_components)

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)
    """
    mahalanobis, log_det = _mahalanobis(X, means, scales)
    return t_log_density(mahalanobis, log_det[:, None, :], dof[:, None, :], X.shape[1])


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


def poisson_log_prob(X: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Return ``sum_d log Poisson(x_nd | lambda_kd)`` for every draw, sample and component.

    ``x log(lambda) - lambda - log(x!)`` with ``0 log 0 = 0``: a zero rate (an EM
    estimate) gives ``-inf`` only to samples with a positive count in that feature.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Non-negative integer counts (as floats).
    rates : ndarray of shape (n_draws, n_components, n_features)

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)
    """
    with np.errstate(divide="ignore"):
        log_rates = np.maximum(np.log(rates), _LOG_FLOOR)  # finite, so 0 * log 0 = 0
    out = (
        np.einsum("nd,skd->snk", X, log_rates)
        - rates.sum(axis=-1)[:, None, :]
        - gammaln(X + 1.0).sum(axis=1)[None, :, None]
    )
    zero = rates == 0
    if zero.any():
        out[np.einsum("nd,skd->snk", (X > 0).astype(float), zero.astype(float)) > 0] = -np.inf
    return out


def bernoulli_log_prob(X: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Return ``sum_d log Bernoulli(x_nd | p_kd)`` for every draw, sample and component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Zeros and ones (as floats).
    probs : ndarray of shape (n_draws, n_components, n_features)
        Success probabilities; exactly 0 or 1 is allowed (an EM estimate on the
        boundary) and gives ``-inf`` only to the samples it excludes (``0 log 0 = 0``).

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)
    """
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(probs), _LOG_FLOOR)  # finite, so 0 * log 0 = 0
        log_q = np.maximum(np.log1p(-probs), _LOG_FLOOR)
    out = np.einsum("nd,skd->snk", X, log_p) + np.einsum("nd,skd->snk", 1.0 - X, log_q)
    edge = (probs == 0) | (probs == 1)
    if edge.any():
        excluded = np.einsum("nd,skd->snk", X, (probs == 0).astype(float)) + np.einsum(
            "nd,skd->snk", 1.0 - X, (probs == 1).astype(float)
        )
        out[excluded > 0] = -np.inf
    return out


def draw_log_prob(
    X: np.ndarray,
    weights: np.ndarray,
    *params: np.ndarray,
    component_log_prob: ComponentLogProb = gaussian_log_prob,
) -> np.ndarray:
    """Return ``log pi_k + log p(x_n | theta_k)`` for every draw, sample and component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    weights : ndarray of shape (n_draws, n_components)
    *params : ndarray
        The component parameters, draws first (Gaussian: ``means`` (S, K, D) and
        ``covariances`` (S, K, D, D)).
    component_log_prob : callable, default=gaussian_log_prob
        ``component_log_prob(X, *params)`` of shape (n_draws, n_samples, n_components).

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)
    """
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    return log_w[:, None, :] + component_log_prob(X, *params)


def _draw_blocks(X: np.ndarray, weights: np.ndarray) -> tuple[range, int]:
    """Start indices of blocks of draws small enough to evaluate at once."""
    n_draws, n_components = weights.shape
    size = max(1, _BLOCK_ELEMENTS // (X.shape[0] * n_components * max(X.shape[1], 1)))
    return range(0, n_draws, size), size


def _blocks(
    X: np.ndarray, weights: np.ndarray, params: tuple[np.ndarray, ...], fn: ComponentLogProb
):
    """Yield ``(slice, weighted log prob)`` over blocks of draws."""
    starts, size = _draw_blocks(X, weights)
    for start in starts:
        block = slice(start, start + size)
        sub = tuple(p[block] for p in params)
        yield block, draw_log_prob(X, weights[block], *sub, component_log_prob=fn)


def posterior_responsibilities(
    X: np.ndarray,
    weights: np.ndarray,
    *params: np.ndarray,
    component_log_prob: ComponentLogProb = gaussian_log_prob,
) -> np.ndarray:
    """Return ``p(z_n = k | x_n)`` averaged over draws, shape ``(n_samples, n_components)``.

    Draws are processed in blocks, so memory does not grow with the number of draws.
    Arguments as in :func:`draw_log_prob`.
    """
    total = np.zeros((X.shape[0], weights.shape[1]))
    for _, weighted in _blocks(X, weights, params, component_log_prob):
        total += np.exp(log_responsibilities(weighted)).sum(axis=0)
    return total / weights.shape[0]


def posterior_log_density(
    X: np.ndarray,
    weights: np.ndarray,
    *params: np.ndarray,
    component_log_prob: ComponentLogProb = gaussian_log_prob,
) -> np.ndarray:
    """Return ``log (1/S) sum_s p(x_n | theta^s)``, shape ``(n_samples,)``, in blocks of draws.

    With one draw this is the plug-in log density of a point estimate. Arguments as in
    :func:`draw_log_prob`.
    """
    per_draw = pointwise_log_likelihood(
        X, weights, *params, component_log_prob=component_log_prob
    )  # (S, N)
    return logsumexp(per_draw, axis=0) - np.log(per_draw.shape[0])


def pointwise_log_likelihood(
    X: np.ndarray,
    weights: np.ndarray,
    *params: np.ndarray,
    component_log_prob: ComponentLogProb = gaussian_log_prob,
) -> np.ndarray:
    """Return ``log p(x_n | theta^s)`` for every draw and sample, shape ``(n_draws, n_samples)``.

    The marginal (label-summed) log-density of each observation under each draw: the
    ``log_likelihood`` group that LOO and WAIC use. Draws are processed in blocks so the
    ``(draws, samples, components, features)`` intermediates stay small. Arguments as in
    :func:`draw_log_prob`.
    """
    out = np.empty((weights.shape[0], X.shape[0]))
    if component_log_prob is gaussian_log_prob and _use_gaussian_kernel(
        weights.shape[0] * X.shape[0]
    ):
        _gaussian_pointwise(X, weights, *params, out=out)
        return out
    for block, weighted in _blocks(X, weights, params, component_log_prob):
        out[block] = logsumexp(weighted, axis=2)
    return out


def _use_gaussian_kernel(n_values: int) -> bool:
    """Whether the numba kernel is the faster way to ``n_values`` Gaussian log-densities."""
    if not _GAUSSIAN_KERNEL:
        return False
    if n_values >= _GAUSSIAN_KERNEL_MIN_VALUES:
        return True
    return n_values >= _GAUSSIAN_KERNEL_LOADED_MIN_VALUES and "numba" in sys.modules


def _gaussian_pointwise(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, out: np.ndarray
) -> None:
    """:func:`pointwise_log_likelihood` of Gaussian components with the numba kernel.

    About 20x faster than the NumPy blocks (one pass, no (draws, N, K, D) temporaries);
    the Cholesky factors are computed here, so a covariance that is not positive definite
    raises ``numpy.linalg.LinAlgError`` as in :func:`gaussian_log_prob`.
    """
    from bayesmix import _em_kernels

    chol = np.ascontiguousarray(np.linalg.cholesky(covariances), dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_w = np.ascontiguousarray(np.log(weights), dtype=np.float64)
    _em_kernels.mixture_log_density(
        np.ascontiguousarray(X, dtype=np.float64),
        log_w,
        np.ascontiguousarray(means, dtype=np.float64),
        chol,
        out,
    )


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
