"""NUTS on chunked data: every log density and gradient one Dask pass (issue 23, item 2).

The distributed log density is checked against PyMC's own ``logp``/``dlogp`` of the model
built on all the rows in memory (the independent reference), for every family, with and
without weights, on the threaded scheduler and on a ``LocalCluster``; a fit's layout here,
the agreement with the in-memory posterior is in ``tests/statistical/test_nuts_dask_posterior.py``.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from mixture_data import binary_array, counts_array

import bayesmix as bm
from bayesmix import dask as _dask
from bayesmix._validation import MixtureData
from bayesmix.exceptions import InvalidParameterError, SamplerWarning

da = pytest.importorskip("dask.array")  # the test extra installs dask: never skipped in CI

pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.exceptions.ConvergenceWarning")

CHUNKS = (37, 63, 150, 1, 149, 240, 160, 200)  # 8 unequal chunks, 1000 rows


def _gaussian(rng, n=1000):
    z = rng.random(n) < 0.4
    return np.where(z[:, None], [-3.0, 0.0], [3.0, 1.0]) + rng.normal(size=(n, 2))


def _heavy(rng, n=1000):
    z = rng.random(n) < 0.4
    return np.where(z[:, None], [-4.0, 0.0], [4.0, 1.0]) + rng.standard_t(4, size=(n, 2))


CASES = {
    # The fused numba kernel per chunk (the Gaussian family's default priors).
    "gaussian-fused": (bm.GaussianMixture, {"covariance_type": "full"}, _gaussian),
    # The PyMC model's compiled log-likelihood per chunk (a prior parameterisation the
    # kernel lacks).
    "gaussian-pymc": (
        bm.GaussianMixture,
        {
            "covariance_type": "diag",
            "priors": {"means": bm.Prior("StudentT", nu=3.0, mu=0.0, lam=0.04)},
        },
        _gaussian,
    ),
    "student-t": (bm.StudentTMixture, {"covariance_type": "diag"}, _heavy),
    # The fused exponential-family kernel per chunk (bayesmix.nuts.expfam).
    "poisson": (bm.PoissonMixture, {}, counts_array),
    # The PyMC route for a parameterisation of the prior the kernel lacks.
    "poisson-pymc": (
        bm.PoissonMixture,
        {"priors": {"rates": bm.Prior("Gamma", mu=4.0, sigma=4.0)}},
        counts_array,
    ),
    "negative-binomial": (bm.NegativeBinomialMixture, {}, counts_array),
    "bernoulli": (bm.BernoulliMixture, {}, binary_array),
}


def _distributed(cls, params, X, w):
    """The estimator's distributed log density on chunked ``X`` (as ``fit`` builds it)."""
    # A cheap EM start (one k-means++ restart): the points checked are around it anyway.
    settings = {"n_init": 1, "init": "k-means++", "max_iter": 10}
    estimator = cls(n_components=2, random_state=0, **settings, **params)
    chunked = da.from_array(X, chunks=(CHUNKS, X.shape[1]))
    weights = None if w is None else da.from_array(w, chunks=(CHUNKS,))
    data = _dask.as_chunked(chunked, weights)
    priors, em, sample = estimator._chunked_em(data)
    logp_dlogp, flat, expand = estimator._distributed_log_density(data, priors, em, sample)
    return estimator, priors, logp_dlogp, flat, expand, sample


def _reference(estimator, priors, X, w, features):
    """PyMC's model on all the rows in memory, with the same priors."""
    full = MixtureData(
        values=np.asarray(X, dtype=np.float64),
        obs=np.arange(X.shape[0]),
        features=features,
        sample_weight=w,
    )
    return estimator._model(full, priors)


def _check_against_reference(name, seed):
    """Weighted rows: the distributed log density and gradient against PyMC's on all rows."""
    cls, params, make = CASES[name]
    rng = np.random.default_rng(seed)
    X = make(rng)
    w = rng.uniform(0.5, 2.0, X.shape[0])
    estimator, priors, logp_dlogp, flat, expand, sample = _distributed(cls, params, X, w)
    model = _reference(estimator, priors, X, w, sample.features)
    # One compiled function for value and gradient, flat in continuous_value_vars order.
    reference = model.logp_dlogp_function(ravel_inputs=True)
    reference.set_extra_values({})
    noise = np.random.default_rng(seed + 1)
    for _ in range(3):
        x = flat + noise.normal(scale=0.05, size=flat.size)
        value, grad = logp_dlogp(x)
        expected_value, expected_grad = reference(x)
        np.testing.assert_allclose(value, expected_value, rtol=1e-9)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-8, atol=1e-8)
    assert logp_dlogp.gradients == 3
    # No weights is weights of one, in the chunk function itself.
    X_chunk = np.asarray(X[:100], dtype=np.float64)
    unweighted = logp_dlogp.chunk(flat, X_chunk, None)
    ones = logp_dlogp.chunk(flat, X_chunk, np.ones(100))
    np.testing.assert_allclose(unweighted["value"], ones["value"], rtol=1e-12)
    np.testing.assert_allclose(unweighted["grad"], ones["grad"], rtol=1e-12, atol=1e-12)
    stored = expand(flat)
    np.testing.assert_allclose(stored["weights"].sum(), 1.0, rtol=1e-12)


# The PyMC route is one piece of code for every family (the observed variable's logp with
# the rows as an input): the fused kernels and one PyMC model in the fast suite, the
# others in the slow one (cold PyTensor compilations of their models cost 15-35 s each).
@pytest.mark.parametrize(
    "name",
    [
        "gaussian-fused",
        "gaussian-pymc",
        "poisson",
        pytest.param("student-t", marks=pytest.mark.slow),
        pytest.param("negative-binomial", marks=pytest.mark.slow),
        pytest.param("bernoulli", marks=pytest.mark.slow),
    ],
)
def test_distributed_log_density_equals_pymc_on_all_rows(name):
    _check_against_reference(name, seed=3)


@pytest.mark.parametrize(
    "name", [pytest.param("gaussian-fused", marks=pytest.mark.slow), "poisson", "poisson-pymc"]
)
def test_distributed_log_density_on_a_local_cluster(cluster_client, name):
    # Chunk functions are pickled to two worker processes (a fused target as it is, the
    # PyMC one as a graph, compiled there); the sum equals PyMC's full-data logp all the same.
    _check_against_reference(name, seed=5)


def test_jax_samplers_on_chunked_data_are_refused_before_any_work(monkeypatch):
    X = da.from_array(_gaussian(np.random.default_rng(14)), chunks=(CHUNKS, 2))

    def no_em(*args, **kwargs):
        raise AssertionError("EM ran before the refusal")

    monkeypatch.setattr(bm.GaussianMixture, "_chunked_em", no_em)
    with pytest.raises(InvalidParameterError, match="nuts_sampler='nutpie'"):
        bm.GaussianMixture(n_components=2).fit(X, nuts_sampler="blackjax")


def test_nuts_on_chunked_data_has_the_nuts_layout():
    X = _gaussian(np.random.default_rng(7))
    settings = {"draws": 20, "tune": 20, "chains": 2, "progressbar": False, "random_seed": 1}
    em = {"n_components": 2, "random_state": 0, "n_init": 1, "init": "k-means++"}
    chunked = da.from_array(X, chunks=(500, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplerWarning)  # 20 draws: diagnostics complain
        fit = bm.GaussianMixture(**em).fit(chunked, **settings)
        memory = bm.GaussianMixture(**em).fit(X, **settings)
    posterior, reference = fit.idata["posterior"], memory.idata["posterior"]
    assert set(posterior.data_vars) == set(reference.data_vars)
    for name in reference.data_vars:
        assert posterior[name].dims == reference[name].dims
        assert posterior[name].shape == reference[name].shape
    assert fit.idata.attrs["inference_method"] == "nuts"
    assert "observed_data" not in fit.idata.children
    assert json.loads(fit.idata.attrs["data_source"])["kind"] == "dask.array"
    stats = fit.idata["sample_stats"]
    assert stats.attrs["gradients"] >= 2 * 40  # at least one per draw and chain
    assert stats.attrs["seconds_per_gradient"] > 0
    assert {"diverging", "step_size", "depth"} <= set(stats.data_vars)
    # Relabelled to the EM order, as in memory: means near EM's.
    np.testing.assert_allclose(fit.means_, memory.em_.params["means"], atol=0.3)


def test_the_pymc_chunk_function_is_safe_to_call_from_threads():
    # Dask's threaded scheduler runs chunks in parallel threads of one process; a compiled
    # PyTensor function keeps intermediate values in its own storage (and frees them as it
    # goes), so sharing one between threads lost them (a CI failure of the negative
    # binomial's check). Every thread has its own copy. The race is rare: this test can
    # miss it, but it checks that concurrent calls give the sequential results.
    from concurrent.futures import ThreadPoolExecutor

    cls, params, make = CASES["negative-binomial"]
    rng = np.random.default_rng(21)
    X = make(rng)
    _, _, logp_dlogp, flat, _, _ = _distributed(cls, params, X, None)
    chunks = [np.asarray(X[i : i + 250], dtype=np.float64) for i in range(0, 1000, 250)]
    expected = [logp_dlogp.chunk(flat, chunk, None) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(20):
            got = list(pool.map(lambda chunk: logp_dlogp.chunk(flat, chunk, None), chunks))
            for result, want in zip(got, expected, strict=True):
                assert result["value"] == want["value"]
                np.testing.assert_array_equal(result["grad"], want["grad"])
