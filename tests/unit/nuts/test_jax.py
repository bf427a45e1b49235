"""NUTS on JAX (bayesmix.nuts.jax): the plumbing, with PyMC's sampler mocked.

The real samplers run in tests/statistical/test_jax_samplers.py (slow suite).
"""

import sys

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.model import MixtureModel
from bayesmix.nuts import jax as _jax

# The mocked sampler returns prior draws: the convergence checks rightly complain.
pytestmark = pytest.mark.filterwarnings(
    "ignore::bayesmix.exceptions.SamplerWarning", "ignore::bayesmix.exceptions.ConvergenceWarning"
)


@pytest.mark.parametrize("sampler", ["numpyro", "blackjax"])
def test_drivers_report_logp_as_the_log_density_and_nutpie_names(sampler):
    """numpyro's potential energy is -logp: the driver must store logp itself."""
    import jax
    import jax.numpy as jnp

    def logp(params):
        return -0.5 * jnp.sum((params[0] - 1.0) ** 2) / 4.0  # N(1, 2^2), unnormalised

    run = _jax._run_numpyro if sampler == "numpyro" else _jax._run_blackjax
    positions = [jnp.zeros((2, 3))]
    samples, stats = run(
        logp, positions, jax.random.PRNGKey(0), 20, 30, 2, "vectorized", 0.8, False
    )
    x = np.asarray(samples[0])
    assert x.shape == (2, 20, 3)
    np.testing.assert_allclose(
        np.asarray(stats["logp"]), -0.5 * ((x - 1.0) ** 2).sum(axis=-1) / 4.0, rtol=1e-6
    )
    assert {"diverging", "energy", "step_size", "n_steps", "depth", "logp"} <= set(stats)
    assert np.all(np.asarray(stats["depth"]) >= 1)


@pytest.mark.parametrize("sampler", ["numpyro", "blackjax"])
def test_require_names_the_extra_when_the_sampler_is_missing(monkeypatch, sampler):
    monkeypatch.setitem(sys.modules, sampler, None)  # import raises ImportError
    with pytest.raises(ImportError, match=r'pip install "bayesmix\[jax\]"') as info:
        _jax.require(sampler)
    assert sampler in str(info.value)
    assert "nutpie" in str(info.value)


def test_fit_fails_before_any_work_without_the_extra(monkeypatch, rng):
    monkeypatch.setitem(sys.modules, "numpyro", None)

    def no_em(*args, **kwargs):
        raise AssertionError("EM ran before the missing extra was reported")

    monkeypatch.setattr(MixtureModel, "_run_em", no_em)
    X = rng.normal(size=(50, 2))
    with pytest.raises(ImportError, match="numpyro"):
        bm.GaussianMixture(n_components=2).fit(X, nuts_sampler="numpyro")
    with pytest.raises(ImportError, match="numpyro"):
        bm.select_k(X, ks=[1, 2], nuts_sampler="numpyro", progressbar=False)


@pytest.mark.parametrize(
    ("devices", "chains", "expected"),
    [(1, 4, "vectorized"), (4, 4, "parallel"), (2, 4, "vectorized"), (8, 1, "vectorized")],
)
def test_chains_run_in_parallel_only_with_a_device_per_chain(
    monkeypatch, devices, chains, expected
):
    import jax

    monkeypatch.setattr(jax, "local_device_count", lambda: devices)
    assert _jax.chain_method(chains) == expected


@pytest.fixture
def fake_jax_run(monkeypatch):
    """The numpyro and blackjax runs replaced by their starts repeated; records the calls."""
    calls = []

    def fake(sampler):
        def run(logp, positions, key, draws, tune, chains, method, target_accept, progress):
            calls.append(
                {
                    "sampler": sampler,
                    "positions": positions,
                    "chains": chains,
                    "draws": draws,
                    "tune": tune,
                    "method": method,
                    "logp": logp,
                }
            )
            samples = [np.repeat(np.asarray(p)[:, None], draws, axis=1) for p in positions]
            shape = (chains, draws)
            stats = {
                "diverging": np.zeros(shape, dtype=bool),
                "logp": np.full(shape, -7.0),
                "depth": np.full(shape, 3),
                "step_size": np.full(shape, 0.1),
                "n_steps": np.full(shape, 7),
            }
            return samples, stats

        return run

    monkeypatch.setattr(_jax, "_run_numpyro", fake("numpyro"))
    monkeypatch.setattr(_jax, "_run_blackjax", fake("blackjax"))
    return calls


def test_jax_fit_starts_every_chain_near_em_and_has_nutpies_stat_names(fake_jax_run, rng):
    X = np.concatenate([rng.normal(-4, 1, (80, 2)), rng.normal(4, 1, (80, 2))])
    X_before = X.copy()
    model = bm.GaussianMixture(n_components=2, random_state=0)
    model.fit(X, nuts_sampler="numpyro", draws=10, tune=5, chains=3, progressbar=False)
    np.testing.assert_array_equal(X, X_before)
    (call,) = fake_jax_run
    assert (call["sampler"], call["draws"], call["tune"], call["chains"]) == ("numpyro", 10, 5, 3)
    em = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em")
    means = model.idata["posterior"]["means"].isel(draw=0).to_numpy()  # each chain's start
    assert means.shape == (3, 2, 2)
    for start in means:  # a jittered copy of the EM means (relabelled), each chain its own
        np.testing.assert_allclose(start, em.means_, atol=0.5)
    assert not np.array_equal(means[0], means[1])
    # The starts are on the unconstrained scale, where the log density is finite.
    first = [np.asarray(p[0]) for p in call["positions"]]
    assert np.isfinite(float(call["logp"](first)))
    stats = model.idata["sample_stats"]
    np.testing.assert_array_equal(stats["logp"], -7.0)  # the driver's statistics, kept
    np.testing.assert_array_equal(stats["depth"], 3)
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= set(
        model.idata.children
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_chunked_log_density_equals_the_models_logp(rng, weighted):
    X = np.concatenate([rng.normal(-2, 1, (23, 2)), rng.normal(2, 1, (27, 2))])
    weights = rng.integers(0, 4, size=len(X)).astype(float) if weighted else None
    model = bm.GaussianMixture(n_components=2).build_model(X, sample_weight=weights)
    reference = model.compile_logp(jacobian=True)
    points = []
    for seed in range(3):
        noise = np.random.default_rng(seed)
        points.append(
            {
                name: value + noise.normal(scale=0.3, size=np.shape(value))
                for name, value in model.initial_point().items()
            }
        )
    for rows in (7, 50, 1000):  # padded chunks, one chunk, more rows than data
        logp = _jax.log_density(model, chunk_rows=rows)
        for point in points:
            got = float(logp([point[var.name] for var in model.value_vars]))
            np.testing.assert_allclose(got, float(reference(point)), rtol=1e-11)


def test_chunked_gradient_keeps_one_chunks_temporaries():
    import jax
    import pymc.sampling.jax  # noqa: F401  (turns on JAX's float64, as every fit does)

    n, k, d = 100_000, 3, 4
    X = np.random.default_rng(0).normal(size=(n, d))
    model = bm.GaussianMixture(n_components=k).build_model(X)
    noise = np.random.default_rng(1)
    values = [
        jax.numpy.asarray(value + noise.normal(scale=0.3, size=np.shape(value)))
        for value in (model.initial_point()[var.name] for var in model.value_vars)
    ]

    def temporaries(rows):
        grad = jax.jit(jax.value_and_grad(_jax.log_density(model, chunk_rows=rows)))
        return grad.lower(values).compile().memory_analysis().temp_size_in_bytes

    whole, chunked = temporaries(n), temporaries(2**12)
    # One (N, K, D) float64 array is 9.6 MB; the whole-data gradient holds several.
    assert whole > n * k * d * 8
    assert chunked < n * k * d * 8 / 4
    chunked_grad = jax.grad(_jax.log_density(model, chunk_rows=2**12))(values)
    whole_grad = jax.grad(_jax.log_density(model, chunk_rows=n))(values)
    for a, b in zip(chunked_grad, whole_grad, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * float(np.max(np.abs(b))))
