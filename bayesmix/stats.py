"""Post-processing of mixture fits: log densities per draw, responsibilities, relabelling.

Pure NumPy/SciPy functions over arrays with the draws flattened on the first axis;
the model classes call them on the arrays of their ``idata``. The functions that sum
over components take the component parameters positionally and a
``component_log_prob(X, *params) -> (n_draws, n_samples, n_components)`` that evaluates
one family's component densities (the family's ``component_log_prob``; a family may also
supply a faster ``fast_pointwise`` for :func:`pointwise_log_likelihood`). Nothing here
knows a family.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from bayesmix._numeric import logsumexp

__all__ = [
    "draw_log_prob",
    "log_responsibilities",
    "pointwise_log_likelihood",
    "posterior_log_density",
    "posterior_responsibilities",
    "relabel_permutations",
]


# Largest (draws x samples x components x features) block evaluated at once (32 MiB).
_BLOCK_ELEMENTS = 2**22


ComponentLogProb = Callable[..., np.ndarray]
FastPointwise = Callable[..., bool]


def draw_log_prob(
    X: np.ndarray,
    weights: np.ndarray,
    *params: np.ndarray,
    component_log_prob: ComponentLogProb,
) -> np.ndarray:
    """Return ``log pi_k + log p(x_n | theta_k)`` for every draw, sample and component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    weights : ndarray of shape (n_draws, n_components)
    *params : ndarray
        The component parameters, draws first (Gaussian: ``means`` (S, K, D) and
        ``covariances`` (S, K, D, D)).
    component_log_prob : callable
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
    component_log_prob: ComponentLogProb,
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
    component_log_prob: ComponentLogProb,
    fast_pointwise: FastPointwise | None = None,
) -> np.ndarray:
    """Return ``log (1/S) sum_s p(x_n | theta^s)``, shape ``(n_samples,)``, in blocks of draws.

    With one draw this is the plug-in log density of a point estimate. Arguments as in
    :func:`draw_log_prob`.
    """
    per_draw = pointwise_log_likelihood(
        X,
        weights,
        *params,
        component_log_prob=component_log_prob,
        fast_pointwise=fast_pointwise,
    )  # (S, N)
    return logsumexp(per_draw, axis=0) - np.log(per_draw.shape[0])


def pointwise_log_likelihood(
    X: np.ndarray,
    weights: np.ndarray,
    *params: np.ndarray,
    component_log_prob: ComponentLogProb,
    fast_pointwise: FastPointwise | None = None,
) -> np.ndarray:
    """Return ``log p(x_n | theta^s)`` for every draw and sample, shape ``(n_draws, n_samples)``.

    The marginal (label-summed) log-density of each observation under each draw: the
    ``log_likelihood`` group that LOO and WAIC use. Draws are processed in blocks so the
    ``(draws, samples, components, features)`` intermediates stay small. Arguments as in
    :func:`draw_log_prob`; ``fast_pointwise(X, weights, *params, out=out)``, if given,
    may fill ``out`` itself (a family's compiled kernel) and returns whether it did.
    """
    out = np.empty((weights.shape[0], X.shape[0]))
    if fast_pointwise is not None and fast_pointwise(X, weights, *params, out=out):
        return out
    for block, weighted in _blocks(X, weights, params, component_log_prob):
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
