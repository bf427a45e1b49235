"""Cost of the Gaussian mixture log density + gradient: fused kernel vs nutpie's PyMC path.

Usage::

    python bench/kernel.py                 # everything, results in bench/results/kernel.json
    python bench/kernel.py --out FILE      # results elsewhere
    python bench/kernel.py --quick         # no PyMC compile in a fresh process (saves ~30 s)

Measured, for ``GaussianMixture(n_components=3, covariance_type="full")`` on two features
(default priors) and one thread:

- ``ns/point``: nanoseconds per observation of one log density + gradient evaluation at
  N = 10^3, 10^4, 10^5 and 10^6, for (a) the fused numba kernel of
  ``bayesmix.families.gaussian._nuts_kernel`` called through the C callback nutpie's sampler calls
  and (b) nutpie's compiled PyMC model (``nutpie.compile_pymc_model(model, backend="numba")``),
  called through the same C entry point nutpie's sampler calls (``compiled_logp_func``). Best of
  several rounds.
- ``compile``: seconds to get (b) in this process (PyTensor -> numba).
- ``fresh process``: seconds from interpreter start to the first gradient, in a new
  process, for the fused kernel (twice: the first run may populate numba's on-disk cache,
  the second is the warm case) and for the PyMC path (unless ``--quick``). Split into
  importing bayesmix (PyMC included) and the rest.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = (1_000, 10_000, 100_000, 1_000_000)
N_COMPONENTS = 3
N_FEATURES = 2

# Run in a fresh interpreter: time to the first gradient. {path} is "fast" or "pymc".
FRESH = r"""
import time
t0 = time.perf_counter()
import numpy as np
import bayesmix as bm
bm.GaussianMixture  # bayesmix imports its classes (and PyMC) on first use
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
X = rng.normal(size=(10_000, 2))
gm = bm.GaussianMixture(n_components=3, covariance_type="full")
data, priors = gm._prepare(X)
if "{path}" == "fast":
    from bayesmix.families.gaussian import _nuts_kernel as _fast_gaussian
    fast = _fast_gaussian.build(dict(covariance_type="full", n_components=3, n_features=2,
                                     priors=priors, features=data.features))
    shared = fast.shared_data(data.values)
    model = fast.nutpie_model(shared)
    x = np.zeros(fast.n_dim)
    logp, grad = model.logp_dlogp(x)  # nutpie's C callback
else:
    import nutpie
    compiled = nutpie.compile_pymc_model(gm._build(data, priors), backend="numba")
    x = np.zeros(compiled.n_dim)
    logp, grad = compiled.logp_func(x)
total = time.perf_counter() - t0
import json
print("RESULT " + json.dumps(dict(import_bayesmix=t_import, first_gradient=total,
                                  after_import=total - t_import, logp=float(logp))))
"""


def _data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 4.0]])
    return centres[rng.integers(N_COMPONENTS, size=n)] + rng.normal(size=(n, N_FEATURES))


def _time_per_point(fn, n: int, rounds: int = 7, budget: float = 0.3) -> float:
    """Best-of-``rounds`` nanoseconds per observation of ``fn()``."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    reps = max(1, int(budget / once))
    best = np.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - start) / reps)
    return best / n * 1e9


def _fast_setup(X: np.ndarray):
    import bayesmix as bm
    from bayesmix.families.gaussian import _nuts_kernel as _fast_gaussian

    gm = bm.GaussianMixture(n_components=N_COMPONENTS, covariance_type="full")
    data, priors = gm._prepare(X)
    fast = _fast_gaussian.build(
        {
            "covariance_type": "full",
            "n_components": N_COMPONENTS,
            "n_features": N_FEATURES,
            "priors": priors,
            "features": data.features,
        }
    )
    return gm, data, priors, fast


def _c_call(cfunc, n_dim: int, x: np.ndarray, user_data: np.ndarray):
    """Return a no-argument call of a nutpie C logp callback at ``x`` (as the sampler calls it)."""
    x = np.ascontiguousarray(x)
    grad = np.empty(n_dim)
    logp = np.empty(1)
    args = (
        ctypes.c_uint64(n_dim),
        x.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        grad.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        logp.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        ctypes.c_void_p(user_data.ctypes.data),
    )

    def call(args=args, keep=(x, grad, logp, user_data)):
        if cfunc(*args) != 0:
            raise RuntimeError("the compiled logp failed")

    return call, logp, grad


def bench_fast(x_point: dict[int, np.ndarray]) -> dict[str, float]:
    """Time the fused kernel through the C callback nutpie's sampler calls."""
    from bayesmix.families.gaussian import _nuts_kernel as _fast_gaussian

    cfunc = _fast_gaussian.c_callbacks()[0].ctypes
    out = {}
    for n in SIZES:
        X = _data(n)
        _, _, _, fast = _fast_setup(X)
        compiled = fast.nutpie_model(fast.shared_data(X))
        call, _, _ = _c_call(cfunc, fast.n_dim, x_point[n], compiled.user_data)
        out[str(n)] = _time_per_point(call, n)
    return out


def bench_pymc(x_point: dict[int, np.ndarray]) -> tuple[dict[str, float], float, dict]:
    """Time nutpie's compiled PyMC model through its C entry point, as the sampler calls it."""
    import nutpie

    gm, data, priors, fast = _fast_setup(_data(SIZES[0]))
    model = gm._build(data, priors)
    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model, backend="numba")
    compile_seconds = time.perf_counter() - start
    cfunc = compiled.compiled_logp_func.ctypes
    out, check = {}, {}
    for n in SIZES:
        X = _data(n)
        model_n = compiled.with_data(x_data=X)
        x = np.ascontiguousarray(x_point[n])
        call, logp, grad = _c_call(cfunc, compiled.n_dim, x, model_n.user_data)
        out[str(n)] = _time_per_point(call, n, rounds=5)
        # Same function: the fused kernel agrees with it.
        value, fast_grad = fast.logp_dlogp(x, **fast.shared_data(X))
        check[str(n)] = {
            "logp_rel_diff": float(abs(value - logp[0]) / abs(logp[0])),
            "grad_max_rel_diff": float(np.max(np.abs(fast_grad - grad) / np.abs(grad))),
        }
    return out, compile_seconds, check


def fresh_process(path: str) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", FRESH.replace("{path}", path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "kernel.json")
    parser.add_argument(
        "--quick", action="store_true", help="skip the PyMC compile in a fresh process"
    )
    args = parser.parse_args()

    rng = np.random.default_rng(1)
    # One point per size, away from the mode (as during warm-up): means near the data.
    x_point = {}
    for n in SIZES:
        _, _, _, fast = _fast_setup(_data(min(n, 1000)))
        x = rng.normal(scale=0.3, size=fast.n_dim)
        x[N_COMPONENTS - 1 : N_COMPONENTS - 1 + N_COMPONENTS * N_FEATURES] = _data(3, 7).ravel()
        x_point[n] = x

    results: dict = {
        "model": f"GaussianMixture(n_components={N_COMPONENTS}, covariance_type='full'), "
        f"{N_FEATURES} features, default priors",
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "numba": version("numba"),
            "nutpie": version("nutpie"),
            "pymc": version("pymc"),
        },
    }
    print("fresh process, fused kernel (first run may compile and cache) ...", flush=True)
    first = fresh_process("fast")
    warm = fresh_process("fast")
    results["fresh_process_fast"] = {"first": first, "warm": warm}
    print("fused kernel: ns/point ...", flush=True)
    results["ns_per_point_fast"] = bench_fast(x_point)
    print("PyMC model compiled by nutpie: compile + ns/point ...", flush=True)
    pymc_ns, compile_seconds, check = bench_pymc(x_point)
    results["ns_per_point_pymc_numba"] = pymc_ns
    results["compile_seconds_pymc_numba"] = compile_seconds
    results["agreement"] = check
    if not args.quick:
        print("fresh process, PyMC path ...", flush=True)
        results["fresh_process_pymc"] = fresh_process("pymc")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    print()
    print(f"log density + gradient, {results['model']}, one thread (ns per observation)")
    print(f"{'N':>10} {'fused':>10} {'PyMC/numba':>12} {'speed-up':>9}")
    for n in SIZES:
        a, b = results["ns_per_point_fast"][str(n)], pymc_ns[str(n)]
        print(f"{n:>10,} {a:>10.1f} {b:>12.1f} {b / a:>8.1f}x")
    print()
    print("seconds from a fresh interpreter to the first gradient (import bayesmix + rest):")
    for label, r in (("fused, first run", first), ("fused, warm cache", warm)):
        print(
            f"  {label:<22} {r['first_gradient']:6.2f} "
            f"({r['import_bayesmix']:.2f} + {r['after_import']:.2f})"
        )
    if "fresh_process_pymc" in results:
        r = results["fresh_process_pymc"]
        print(
            f"  {'PyMC path':<22} {r['first_gradient']:6.2f} "
            f"({r['import_bayesmix']:.2f} + {r['after_import']:.2f})"
        )
    print(f"  (PyMC path compile in this process: {compile_seconds:.1f} s)")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
