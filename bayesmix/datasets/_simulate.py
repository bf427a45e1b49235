"""The generative story of a finite mixture: draw a label, then an observation."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from bayesmix.exceptions import DataError

__all__ = ["make_mixture"]


def make_mixture(
    n_samples: int,
    weights: ArrayLike,
    means: ArrayLike,
    covariances: ArrayLike,
    random_state: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Simulate data from a Gaussian mixture by its generative story.

    For each observation, draw a component label :math:`z_n \sim
    \mathrm{Categorical}(\pi)` and then :math:`x_n \sim \mathcal{N}(\mu_{z_n},
    \Sigma_{z_n})`.

    Parameters
    ----------
    n_samples : int
        Number of observations to draw.
    weights : array-like of shape (n_components,)
        Mixing proportions; non-negative and summing to one.
    means : array-like of shape (n_components, n_features)
        Component means.
    covariances : array-like of shape (n_components, n_features, n_features)
        Symmetric positive-definite component covariance matrices.
    random_state : int, numpy.random.Generator or None, default=None
        Seed or generator for reproducible draws.

    Returns
    -------
    X : numpy.ndarray of shape (n_samples, n_features)
        The observations.
    z : numpy.ndarray of shape (n_samples,)
        The component label of every observation.

    Raises
    ------
    bayesmix.exceptions.DataError
        If the shapes disagree, the weights are not a probability vector or a
        covariance is not positive definite.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmix.datasets import make_mixture
    >>> X, z = make_mixture(500, [0.3, 0.7], [[0.0, 0.0], [5.0, 5.0]],
    ...                     [np.eye(2), np.eye(2)], random_state=0)
    >>> X.shape, z.shape
    ((500, 2), (500,))
    """
    if not (isinstance(n_samples, int | np.integer) and n_samples >= 1):
        raise DataError(f"n_samples must be a positive integer; got {n_samples!r}.")
    w = np.asarray(weights, dtype=np.float64)
    mu = np.atleast_2d(np.asarray(means, dtype=np.float64))
    cov = np.asarray(covariances, dtype=np.float64)
    k = w.shape[0]
    if w.ndim != 1 or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
        raise DataError(
            f"weights must be a 1-D probability vector; got {w!r}. "
            "Pass non-negative numbers that sum to one."
        )
    if mu.shape[0] != k:
        raise DataError(
            f"means must have one row per component: expected {k} rows, got shape {mu.shape}."
        )
    d = mu.shape[1]
    if cov.shape != (k, d, d):
        raise DataError(
            f"covariances must have shape (n_components, n_features, n_features) = {(k, d, d)}; "
            f"got {cov.shape}."
        )
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise DataError(
            "every covariance must be symmetric positive definite; at least one is not."
        ) from None
    rng = np.random.default_rng(random_state)
    z = rng.choice(k, size=n_samples, p=w / w.sum())
    eps = rng.standard_normal((n_samples, d))
    X = mu[z] + np.einsum("nij,nj->ni", chol[z], eps)
    return X, z
