"""Simulated mixtures shared by the test modules (two latent classes each).

Importable from any test module as ``mixture_data`` (``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def counts_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Two Poisson classes (40% / 60%) in columns ``a``, ``b``: rates (1, 6) and (8, 2)."""
    z = rng.random(n) < 0.4
    return pd.DataFrame(
        {"a": rng.poisson(np.where(z, 1.0, 8.0)), "b": rng.poisson(np.where(z, 6.0, 2.0))}
    )


def binary_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Two equal latent classes of four binary items ``a``-``d``, answering in opposite ways."""
    z = rng.random(n) < 0.5
    p = np.where(z[:, None], [0.9, 0.8, 0.2, 0.1], [0.1, 0.3, 0.8, 0.9])
    return pd.DataFrame((rng.random(p.shape) < p).astype(int), columns=list("abcd"))


def counts_array(
    rng: np.random.Generator, n: int = 1000, rates=((1.0, 5.0), (8.0, 2.0))
) -> np.ndarray:
    """Two equally likely Poisson classes as a float array; ``rates`` one row per class."""
    z = rng.integers(0, 2, size=n)
    return rng.poisson(np.where(z[:, None] == 0, rates[0], rates[1])).astype(float)


def binary_array(rng: np.random.Generator, n: int = 1000) -> np.ndarray:
    """Two equally likely latent classes of four binary items, as a float array."""
    z = rng.integers(0, 2, size=n)
    p = np.where(z[:, None] == 0, [0.9, 0.8, 0.1, 0.2], [0.1, 0.3, 0.8, 0.9])
    return (rng.uniform(size=p.shape) < p).astype(float)


def assert_same_em(chunked, memory, rtol: float) -> None:
    """Assert that two fitted models ran the same EM: weights, parameters, iterations, trace.

    The check of the data-beyond-memory paths (Dask chunks against the same data in
    memory, from the same start).
    """
    np.testing.assert_allclose(chunked.weights_, memory.weights_, rtol=rtol, atol=rtol)
    for name, value in memory.em_.params.items():
        np.testing.assert_allclose(chunked.em_.params[name], value, rtol=rtol, atol=rtol)
    assert chunked.em_.n_iter == memory.em_.n_iter
    np.testing.assert_allclose(chunked.em_.log_likelihood, memory.em_.log_likelihood, rtol=rtol)
    np.testing.assert_allclose(chunked.em_.lower_bounds, memory.em_.lower_bounds, rtol=rtol)
