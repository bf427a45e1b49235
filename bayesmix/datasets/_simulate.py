"""The generative story of a finite mixture: draw a label, then an observation."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bayesmix._params import POSITIVE_INT, SEED, Interval, validated
from bayesmix.exceptions import DataError

__all__ = ["make_mixture", "make_mixture_chunked"]


@validated(
    {
        "n_samples": POSITIVE_INT,
        "random_state": [*SEED[:2], np.random.Generator],
    }
)
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
    bayesmix.exceptions.InvalidParameterError
        If ``n_samples`` is not a positive int or ``random_state`` not a seed.
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


@validated(
    {
        "n_samples": POSITIVE_INT,
        "chunk_rows": POSITIVE_INT,
        "random_state": [Interval(Integral, 0, None)],
    }
)
def make_mixture_chunked(
    n_samples: int,
    weights: ArrayLike,
    means: ArrayLike,
    covariances: ArrayLike,
    *,
    chunk_rows: int = 1_000_000,
    random_state: int = 0,
) -> tuple[Any, Any]:
    """Simulate a Gaussian mixture as lazy Dask arrays, one chunk at a time.

    The chunks are drawn independently (chunk ``i`` by :func:`make_mixture` seeded with
    ``[random_state, i]``) when computed, so data far larger than memory can be written
    to Zarr (``dask.array.to_zarr``) in one pass. Needs the ``dask`` extra.

    Parameters
    ----------
    n_samples : int
    weights, means, covariances : array-like
        As for :func:`make_mixture`.
    chunk_rows : int, default=1_000_000
        Rows per chunk.
    random_state : int, default=0

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features), float64
    z : dask.array.Array of shape (n_samples,), int16
        The component of every row; compute ``X`` and ``z`` together (``dask.compute`` or
        one ``dask.array.store``) to draw every chunk once.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmix.datasets import make_mixture_chunked
    >>> X, z = make_mixture_chunked(10, [0.5, 0.5], [[0.0], [5.0]], np.ones((2, 1, 1)),
    ...                             chunk_rows=4)
    >>> X.chunks, z.dtype.name
    (((4, 4, 2), (1,)), 'int16')
    """
    from bayesmix.dask import _import_dask

    dask, da = _import_dask()
    make_mixture(1, weights, means, covariances, random_state=0)  # check the arguments
    n_features = np.atleast_2d(np.asarray(means)).shape[1]
    sizes = [chunk_rows] * (n_samples // chunk_rows)
    if n_samples % chunk_rows:
        sizes.append(n_samples % chunk_rows)
    blocks = [
        dask.delayed(_chunk, pure=True, nout=2)(
            size, weights, means, covariances, random_state, index
        )
        for index, size in enumerate(sizes)
    ]
    X = da.concatenate(
        [
            da.from_delayed(block[0], shape=(size, n_features), dtype=np.float64)
            for block, size in zip(blocks, sizes, strict=True)
        ]
    )
    z = da.concatenate(
        [
            da.from_delayed(block[1], shape=(size,), dtype=np.int16)
            for block, size in zip(blocks, sizes, strict=True)
        ]
    )
    return X, z


def _chunk(size, weights, means, covariances, seed, index):
    """One chunk of :func:`make_mixture_chunked`."""
    X, z = make_mixture(
        int(size), weights, means, covariances, random_state=np.random.default_rng([seed, index])
    )
    return X, z.astype(np.int16)
