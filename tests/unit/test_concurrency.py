"""Thread and process safety (issue 24, item 6).

Fits of different models in parallel threads (joblib's threading backend) and processes
(loky) give what sequential fits give; the BLAS thread limit is what it was after fits in
threads; the compiled-model cache of the NUTS engine and numba's on-disk kernel cache
(:mod:`bayesmix._numba_cache`) are safe when threads or processes use them at once.
The tests that compile the real kernels or sample are in the slow suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from joblib import Parallel, delayed
from threadpoolctl import ThreadpoolController

import bayesmix as bm
from bayesmix.nuts import sampler

pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")


def _data():
    rng = np.random.default_rng(7)
    X, _ = bm.datasets.make_mixture(
        400, [0.3, 0.7], [[0.0, 0.0], [4.0, 1.0]], [np.eye(2), 2 * np.eye(2)], random_state=rng
    )
    counts = rng.poisson(np.where(rng.uniform(size=(300, 1)) < 0.4, 2.0, 9.0), size=(300, 3))
    binary = rng.uniform(size=(300, 4)) < np.where(rng.uniform(size=(300, 1)) < 0.5, 0.2, 0.8)
    return X, counts, binary.astype(float)


def _jobs():
    """Different models of every family, each with its data (small: EM in a second)."""
    X, counts, binary = _data()
    return [
        (bm.GaussianMixture(n_components=2, random_state=1), X),
        (bm.GaussianMixture(n_components=3, covariance_type="diag", random_state=2), X),
        (
            bm.GaussianMixture(
                n_components=2, covariance_type="tied", objective="map", random_state=7
            ),
            X,
        ),
        (bm.StudentTMixture(n_components=2, n_init=2, random_state=3), X),
        (bm.PoissonMixture(n_components=2, random_state=4), counts),
        (bm.BernoulliMixture(n_components=2, random_state=5), binary),
        (bm.NegativeBinomialMixture(n_components=2, n_init=2, random_state=6), counts),
    ]


def _fit(model, X):
    """Fit by EM and return what a fit is: its parameters, log-likelihood, predictions."""
    model.fit(X, method="em")
    return {
        **model.posterior_arrays(),
        "log_likelihood": np.array(model.em_.log_likelihood),
        "proba": model.predict_proba(X),
        "density": model.score_samples(X),
    }


def _assert_same(results, expected):
    assert len(results) == len(expected)
    for got, want in zip(results, expected, strict=True):
        assert got.keys() == want.keys()
        for name in want:
            # Bit for bit, or as close as BLAS's own reduction order allows.
            np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-300)


@pytest.fixture(scope="module")
def sequential():
    return [_fit(model, X) for model, X in _jobs()]


def test_fits_in_threads_equal_sequential_fits(sequential):
    results = Parallel(n_jobs=4, backend="threading")(delayed(_fit)(m, X) for m, X in _jobs())
    _assert_same(results, sequential)


def test_fits_in_processes_equal_sequential_fits(sequential):
    results = Parallel(n_jobs=2, backend="loky")(delayed(_fit)(m, X) for m, X in _jobs())
    _assert_same(results, sequential)


def test_one_model_fitted_in_many_threads_at_once():
    """Fitting the same data with copies of one specification from many threads at once."""
    X = _data()[0]
    spec = bm.GaussianMixture(n_components=2, random_state=0)
    expected = _fit(type(spec)(**spec.get_params()), X)
    barrier = threading.Barrier(6)

    def fit_after_barrier():
        model = type(spec)(**spec.get_params())
        barrier.wait()
        return _fit(model, X)

    results = Parallel(n_jobs=6, backend="threading")(
        delayed(fit_after_barrier)() for _ in range(6)
    )
    _assert_same(results, [expected] * 6)


def _blas_threads():
    controller = ThreadpoolController()  # after bayesmix has loaded NumPy's and SciPy's
    return [c.num_threads for c in controller.lib_controllers if c.user_api == "blas"]


def test_blas_thread_count_is_restored_after_fits_in_threads():
    """Every fit limits BLAS to one thread, a process-wide setting, and restores it.

    Each thread limiting and restoring on its own left the process with one BLAS thread
    after fits in threads (a thread that entered while another held the limit restored
    the limited count); the limit is now shared by the fits running at the time.
    """
    _fit(*_jobs()[0])
    before = _blas_threads()
    if not before or max(before) < 2:
        pytest.skip("BLAS runs one thread: there is no limit to see")
    for _ in range(3):
        Parallel(n_jobs=4, backend="threading")(delayed(_fit)(m, X) for m, X in _jobs())
        assert _blas_threads() == before


# -- the compiled-model cache of the NUTS engine ------------------------------------------------


def test_compiled_model_cache_is_safe_under_concurrent_use(monkeypatch):
    """Threads asking for a few structures at once: one compilation each, no race.

    nutpie's compilation is replaced by a slow fake, so that threads overlap in it; the
    cache is small, so that lookups and evictions race too.
    """
    import nutpie

    compiled: list[object] = []
    lock = threading.Lock()

    def fake_compile(model, **kwargs):
        time.sleep(0.02)
        result = ("compiled", model)
        with lock:
            compiled.append(model)
        return result

    monkeypatch.setattr(nutpie, "compile_pymc_model", fake_compile)
    monkeypatch.setattr(sampler, "_CACHE_SIZE", 3)
    sampler.clear_cache()
    try:
        keys = [f"structure-{i % 5}" for i in range(200)]
        barrier = threading.Barrier(8)

        def ask(key):
            return key, sampler._compiled(key, key)

        def first_round(key):
            barrier.wait()
            return ask(key)

        # Eight threads ask for one structure at the same moment: it is compiled once.
        first = Parallel(n_jobs=8, backend="threading")(
            delayed(first_round)("together") for _ in range(8)
        )
        assert compiled == ["together"]
        assert {result for _, result in first} == {("compiled", "together")}
        # Many lookups, compilations and evictions at once: no error, the right model.
        results = Parallel(n_jobs=8, backend="threading")(delayed(ask)(k) for k in keys)
        assert all(result == ("compiled", key) for key, result in results)
        assert len(sampler._CACHE) <= 3
        assert not sampler._COMPILING
    finally:
        sampler.clear_cache()


def test_failed_compilation_is_not_cached(monkeypatch):
    import nutpie

    calls = []

    def failing(model, **kwargs):
        calls.append(model)
        raise RuntimeError("compilation failed")

    monkeypatch.setattr(nutpie, "compile_pymc_model", failing)
    sampler.clear_cache()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="compilation failed"):
            sampler._compiled("model", "key")
    assert calls == ["model", "model"]  # tried again, not a cached failure
    assert not sampler._CACHE
    assert not sampler._COMPILING


# -- numba's on-disk kernel cache ------------------------------------------------------------------

_TOY_RUN = textwrap.dedent(
    """
    import json, sys, time
    start = float(sys.argv[1])
    time.sleep(max(0.0, start - time.time()))  # every process compiles at the same moment
    from toykern import kernel
    value = kernel.k(1.5)
    hits = sum(kernel.k.stats.cache_hits.values())
    print(json.dumps({"value": value, "hits": hits}))
    """
)


def _write_toy_kernel(src: Path) -> None:
    package = src / "toykern"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "kernel.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from bayesmix._numba_cache import njit


            @njit(nogil=True)
            def k(x):
                total = 0.0
                for i in range(1000):
                    total += np.sin(x * i) ** 2 + np.cos(x * i) ** 2
                return total
            """
        )
    )


def _env(src: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["BAYESMIX_CACHE_DIR"] = str(cache)
    return env


def _run_together(script: str, env: dict[str, str], n: int, delay: float) -> list[dict]:
    """Start ``n`` processes that begin their work at the same moment; return their output."""
    start = str(time.time() + delay)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, start],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


def test_processes_compiling_into_an_empty_kernel_cache(tmp_path):
    """Three processes compile one kernel into an empty cache at once; all succeed, and
    a fourth loads it from there."""
    src, cache = tmp_path / "src", tmp_path / "cache"
    _write_toy_kernel(src)
    env = _env(src, cache)
    together = _run_together(_TOY_RUN, env, n=3, delay=1.5)
    assert len({r["value"] for r in together}) == 1
    assert together[0]["value"] == pytest.approx(1000.0)
    files = sorted(p.name for p in cache.rglob("*") if p.suffix in {".nbi", ".nbc"})
    assert any(name.endswith(".nbi") for name in files)
    assert not [p for p in cache.rglob("*") if p.suffix == ".tmp" or p.name.startswith("tmp")]
    after = _run_together(_TOY_RUN, env, n=1, delay=0.0)[0]
    assert after["hits"] == 1  # loaded, not compiled
    assert after["value"] == together[0]["value"]


# -- the slow suite: the real kernels and the sampler ------------------------------------------

_EM_RUN = textwrap.dedent(
    """
    import json, sys, time, warnings
    import numpy as np
    start = float(sys.argv[1])
    import bayesmix as bm
    from bayesmix.families.gaussian import em
    warnings.simplefilter("ignore")
    X, _ = bm.datasets.make_mixture(
        em._FUSED_MIN_SAMPLES + 10_000, [0.4, 0.6], [[0, 0], [4, 1]],
        [np.eye(2), 2 * np.eye(2)], random_state=0,
    )
    time.sleep(max(0.0, start - time.time()))
    out = {}
    for covariance_type in ("full", "diag"):
        gm = bm.GaussianMixture(n_components=2, covariance_type=covariance_type, n_init=1,
                                random_state=0).fit(X, method="em")
        out[covariance_type] = [gm.weights_.tolist(), gm.means_.tolist(),
                                gm.covariances_.tolist(), gm.em_.log_likelihood]
    out["proba"] = gm.predict_proba(X[:1000]).tolist()
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_processes_compiling_the_em_kernels_into_an_empty_cache(tmp_path):
    """Two processes compile the fused EM kernels into an empty cache at the same time:
    both succeed with identical fits, and a third, loading the kernels, fits the same."""
    env = _env(tmp_path / "no-src", tmp_path / "cache")
    together = _run_together(_EM_RUN, env, n=2, delay=8.0)
    assert together[0] == together[1]
    assert list((tmp_path / "cache").rglob("*.nbi"))
    assert _run_together(_EM_RUN, env, n=1, delay=0.0)[0] == together[0]


def _nuts(seed):
    X = _data()[1]
    # A prior parameterisation outside the fused kernel's table: nutpie compiles the PyMC
    # model, through the compiled-model cache this test is about.
    rates = bm.Prior("Gamma", mu=3.0, sigma=3.0)
    fit = bm.PoissonMixture(n_components=2, random_state=0, priors={"rates": rates}).fit(
        X, draws=100, tune=100, chains=2, random_seed=seed, progressbar=False
    )
    return fit.posterior_arrays()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning")
def test_nuts_fits_in_threads_equal_sequential_fits(monkeypatch):
    """Two NUTS fits of one structure in threads: one compilation (the cache's lock), and
    the draws of sequential fits with the same seeds."""
    import nutpie

    compile_model = nutpie.compile_pymc_model
    compilations = []

    def counted(*args, **kwargs):
        compilations.append(1)
        return compile_model(*args, **kwargs)

    monkeypatch.setattr(nutpie, "compile_pymc_model", counted)
    sampler.clear_cache()
    parallel = Parallel(n_jobs=2, backend="threading")(delayed(_nuts)(s) for s in (1, 2))
    assert len(compilations) == 1
    sequential = [_nuts(s) for s in (1, 2)]
    assert len(compilations) == 1  # reused
    for got, want in zip(parallel, sequential, strict=True):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
