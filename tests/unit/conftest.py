"""Fitted mixtures shared by the comparison and plot tests.

Compiling a NUTS model costs 10-40 s on the 2-core test machine, sampling under a
second: each (data set, method) pair is fitted at most once per test session and
reused by every test that asks for it.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.datasets import make_mixture
from bayesmix.exceptions import SamplerWarning

NUTS_SETTINGS = {"chains": 2, "draws": 200, "tune": 300, "progressbar": False}

# n_features -> simulation truth, sample size, covariance type of the model, column names
MIXTURES = {
    1: {
        "weights": [0.4, 0.6],
        "means": np.array([[0.0], [4.0]]),
        "covariances": np.array([[[1.0]], [[0.5]]]),
        "n_samples": 300,
        "covariance_type": "full",
        "columns": None,
    },
    2: {
        "weights": [0.4, 0.6],
        "means": np.array([[0.0, 0.0], [5.0, 3.0]]),
        "covariances": np.array([np.eye(2), [[1.0, 0.4], [0.4, 0.8]]]),
        "n_samples": 1000,
        "covariance_type": "full",
        "columns": ["length", "width"],
    },
    4: {
        "weights": [0.4, 0.6],
        "means": np.array([[0.0, 0.0, 0.0, 0.0], [4.0, 3.0, 4.0, 3.0]]),
        "covariances": np.array([np.eye(4), np.diag([0.5, 1.0, 0.7, 0.4])]),
        "n_samples": 300,
        "covariance_type": "diag",
        "columns": None,
    },
}


def mixture_data(n_features):
    """Return the simulated data set with ``n_features`` (a DataFrame when named)."""
    spec = MIXTURES[n_features]
    X, _ = make_mixture(
        spec["n_samples"], spec["weights"], spec["means"], spec["covariances"], random_state=0
    )
    return X if spec["columns"] is None else pd.DataFrame(X, columns=spec["columns"])


@pytest.fixture(scope="session")
def fitted_mixture():
    """Return ``get(n_features, method)``: a 2-component fit of :func:`mixture_data`."""
    cache = {}

    def get(n_features, method):
        if (n_features, method) not in cache:
            spec = MIXTURES[n_features]
            gm = bm.GaussianMixture(
                n_components=2, covariance_type=spec["covariance_type"], random_state=1
            )
            settings = NUTS_SETTINGS if method == "nuts" else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SamplerWarning)  # short chains: low ESS
                gm.fit(mixture_data(n_features), method=method, **settings)
            cache[n_features, method] = gm
        return cache[n_features, method]

    return get


@pytest.fixture(scope="session")
def mixture():
    """Return ``get(n_features)``: the data set and its simulation truth (a dict)."""

    def get(n_features):
        return mixture_data(n_features), MIXTURES[n_features]

    return get


@pytest.fixture(scope="module")
def cluster_client():
    """A two-process Dask ``LocalCluster`` and its client (the default scheduler meanwhile)."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
