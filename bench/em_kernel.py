"""Speed of exact EM: bayesmix's fused numba kernel, its NumPy path and scikit-learn.

Usage::

    python bench/em_kernel.py                  # every workload, best of 3
    python bench/em_kernel.py --out em.json    # also write the results as JSON
    python bench/em_kernel.py --quick          # N = 1e4 only, best of 1 (checks the harness)

Workloads: separated Gaussian components (fixed seed), D=2 K=3 at N = 1e4, 1e5, 1e6 and
D=5 K=4 at N = 1e5, each with ``covariance_type="full"`` and ``"diag"``. Every method
starts from the same parameters (a perturbation of the truth; scikit-learn gets them as
``weights_init``, ``means_init`` and ``precisions_init``), runs to the same ``tol`` and
``max_iter`` with ``n_init=1`` and one BLAS thread, so the iteration counts agree. Reported:
seconds to converge (best of ``--repeats``), iterations, final mean log-likelihood,
nanoseconds per point and iteration, and the speed-up of bayesmix (fused) over
scikit-learn and over the NumPy path.

The numba compile time is measured separately, in fresh processes: the first ``fit_em``
call with an empty numba cache (compilation), then again with the cache it wrote (load),
each minus the time of a second identical call in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

WORKLOADS = [
    {"n_features": 2, "n_components": 3, "n_samples": 10_000},
    {"n_features": 2, "n_components": 3, "n_samples": 100_000},
    {"n_features": 2, "n_components": 3, "n_samples": 1_000_000},
    {"n_features": 5, "n_components": 4, "n_samples": 100_000},
]
COVARIANCE_TYPES = ("full", "diag")
# Distance between the true means (the component standard deviations are about 0.7-1.2)
# and the noise added to them for the start: EM needs tens of iterations.
SEPARATION = 3.0
PERTURBATION = 1.0
METHODS = ("fused", "numpy", "sklearn")

# The first call of fit_em in a fresh process; NUMBA_CACHE_DIR selects the cache.
_COMPILE_PROBE = """
import json, sys, time
import numpy as np
from bayesmix.families.gaussian.em import fit_em
rng = np.random.default_rng(0)
X = np.vstack([rng.normal(size=(500, 2)), rng.normal(loc=6.0, size=(500, 2))])
times = {}
for covariance_type in ("full", "diag"):
    calls = []
    for _ in range(2):
        start = time.perf_counter()
        fit_em(X, 2, covariance_type=covariance_type, random_state=0)
        calls.append(time.perf_counter() - start)
    times[covariance_type] = calls
json.dump(times, sys.stdout)
"""


def make_problem(
    n_features: int,
    n_components: int,
    n_samples: int,
    covariance_type: str,
    separation: float = SEPARATION,
):
    """Return data from separated components and starting parameters (a perturbed truth)."""
    rng = np.random.default_rng(20240611 + 10 * n_features + n_components)
    means = rng.normal(0.0, 3.0, size=(n_components, n_features))
    for k in range(1, n_components):  # at least `separation` apart
        while np.min(np.linalg.norm(means[:k] - means[k], axis=1)) < separation:
            means[k] = rng.normal(0.0, 3.0, size=n_features)
    if covariance_type == "full":
        factors = rng.normal(scale=0.4, size=(n_components, n_features, n_features))
        covariances = factors @ np.swapaxes(factors, 1, 2) + 0.5 * np.eye(n_features)
        chol = np.linalg.cholesky(covariances)
    else:
        covariances = rng.uniform(0.4, 1.5, size=(n_components, n_features))
        chol = np.sqrt(covariances)[:, :, None] * np.eye(n_features)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    labels = rng.choice(n_components, size=n_samples, p=weights)
    z = rng.standard_normal((n_samples, n_features))
    X = means[labels] + np.einsum("nij,nj->ni", chol[labels], z)
    start = {
        "weights": 0.5 * weights + 0.5 / n_components,
        "means": means + rng.normal(scale=PERTURBATION, size=means.shape),
        "covariances": 1.6 * covariances,
    }
    return X, start


def _precisions(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type == "full":
        return np.linalg.inv(covariances)
    return 1.0 / covariances


def run_method(method: str, X, start, covariance_type, tol, max_iter):
    """Fit once; return (seconds, n_iter, mean log-likelihood)."""
    from sklearn.mixture import GaussianMixture

    import bayesmix.families.gaussian.em as em

    n_components = start["weights"].shape[0]
    if method == "sklearn":
        gm = GaussianMixture(
            n_components=n_components,
            covariance_type=covariance_type,
            tol=tol,
            max_iter=max_iter,
            n_init=1,
            weights_init=start["weights"],
            means_init=start["means"],
            precisions_init=_precisions(start["covariances"], covariance_type),
        )
        begin = time.perf_counter()
        gm.fit(X)
        seconds = time.perf_counter() - begin
        return seconds, int(gm.n_iter_), float(gm.score(X))
    previous = em._ENGINE
    em._ENGINE = method
    try:
        begin = time.perf_counter()
        result = em.fit_em(
            X,
            n_components,
            covariance_type=covariance_type,
            tol=tol,
            max_iter=max_iter,
            init_params=start,
        )
        seconds = time.perf_counter() - begin
    finally:
        em._ENGINE = previous
    return seconds, int(result.n_iter), float(result.log_likelihood)


def measure_compile() -> dict:
    """First-call overhead of fit_em in fresh processes, without and with a numba cache."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, OMP_NUM_THREADS="1")
        for label in ("cold_cache", "warm_cache"):
            proc = subprocess.run(
                [sys.executable, "-c", _COMPILE_PROBE],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            times = json.loads(proc.stdout)
            out[label] = {
                covariance_type: {
                    "first_call_s": calls[0],
                    "second_call_s": calls[1],
                    "overhead_s": calls[0] - calls[1],
                }
                for covariance_type, calls in times.items()
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many fits")
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="N = 1e4 only, one repeat")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile probe")
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from bayesmix.exceptions import ConvergenceWarning

    workloads = WORKLOADS[:1] if args.quick else WORKLOADS
    repeats = 1 if args.quick else args.repeats
    compile_times = None if args.no_compile else measure_compile()

    rows = []
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for workload in workloads:
            for covariance_type in COVARIANCE_TYPES:
                X, start = make_problem(**workload, covariance_type=covariance_type)
                # Warm up: compile (or load) the kernels outside the timings.
                run_method("fused", X[:1000], start, covariance_type, args.tol, 2)
                row = {**workload, "covariance_type": covariance_type}
                for method in METHODS:
                    runs = [
                        run_method(method, X, start, covariance_type, args.tol, args.max_iter)
                        for _ in range(repeats)
                    ]
                    seconds = min(run[0] for run in runs)
                    _, n_iter, log_likelihood = runs[0]
                    row[method] = {
                        "seconds": seconds,
                        "n_iter": n_iter,
                        "log_likelihood": log_likelihood,
                        "ns_per_point_iter": 1e9 * seconds / (X.shape[0] * max(n_iter, 1)),
                    }
                row["speedup_vs_sklearn"] = row["sklearn"]["seconds"] / row["fused"]["seconds"]
                row["speedup_vs_numpy"] = row["numpy"]["seconds"] / row["fused"]["seconds"]
                row["same_n_iter"] = len({row[m]["n_iter"] for m in METHODS}) == 1
                row["max_abs_log_likelihood_diff"] = max(
                    abs(row[m]["log_likelihood"] - row["sklearn"]["log_likelihood"])
                    for m in METHODS
                )
                rows.append(row)
                print_row(row, header=len(rows) == 1)

    if compile_times is not None:
        print("\nnumba overhead of the first fit_em call in a fresh process (s):")
        for label, by_type in compile_times.items():
            text = ", ".join(f"{t} {v['overhead_s']:.2f}" for t, v in by_type.items())
            print(f"  {label:<11} {text}")

    if args.out is not None:
        payload = {
            "environment": {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpu_count": os.cpu_count(),
                "load_average": os.getloadavg(),
                "numpy": version("numpy"),
                "numba": version("numba"),
                "scikit-learn": version("scikit-learn"),
                "blas_threads": 1,
                "tol": args.tol,
                "max_iter": args.max_iter,
                "repeats": repeats,
            },
            "rows": rows,
            "compile": compile_times,
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.out}")


def print_row(row: dict, header: bool) -> None:
    if header:
        print(
            f"{'D':>2} {'K':>2} {'N':>8} {'cov':<5} {'iter':>4} "
            f"{'fused s':>9} {'numpy s':>9} {'sklearn s':>9} "
            f"{'fused':>7} {'numpy':>7} {'sklearn':>7}  ns/pt/it "
            f"{'x sklearn':>9} {'x numpy':>8} {'loglik':>12}"
        )
    iters = "/".join(sorted({str(row[m]["n_iter"]) for m in METHODS}))
    print(
        f"{row['n_features']:>2} {row['n_components']:>2} {row['n_samples']:>8} "
        f"{row['covariance_type']:<5} {iters:>4} "
        f"{row['fused']['seconds']:>9.4f} {row['numpy']['seconds']:>9.4f} "
        f"{row['sklearn']['seconds']:>9.4f} "
        f"{row['fused']['ns_per_point_iter']:>7.1f} {row['numpy']['ns_per_point_iter']:>7.1f} "
        f"{row['sklearn']['ns_per_point_iter']:>7.1f}           "
        f"{row['speedup_vs_sklearn']:>9.1f} {row['speedup_vs_numpy']:>8.1f} "
        f"{row['fused']['log_likelihood']:>12.8f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
