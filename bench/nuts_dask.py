"""NUTS on Dask: seconds per gradient against the in-memory kernel (issue 23, item 4c).

Usage::

    python bench/nuts_dask.py             # N = 1e6 (D=2, K=3); results in
                                          # bench/results/nuts_dask.json and .md
    python bench/nuts_dask.py --quick     # N = 1e5 (checks the harness)
    python bench/nuts_dask.py --fit       # also a short NUTS fit on the threaded scheduler

Gaussian, D=2, K=3, full covariances (the fused kernel's case), data simulated as in
``bench/dask_em.py``. One evaluation of the log density and its gradient at the EM
estimate, timed over repetitions (median of 5 batches), by:

- ``memory``: the fused numba kernel on the whole array in this process (one thread) —
  what ``fit(X, method="nuts")`` in memory pays per gradient;
- ``dask-threads (C chunks)``: ``DistributedLogDensity`` over the persisted Dask array
  in C chunks on the threaded scheduler (2 threads) — ``fit(X_dask, method="nuts")``;
- ``dask-cluster (C chunks)``: the same on a ``distributed.LocalCluster`` of 2 worker
  processes with one thread each.

The scheduler's cost per gradient is the same evaluation on 1000 rows in the same
number of chunks (the kernel's share is then negligible). ``--fit`` adds one
``fit(X_dask, method="nuts")`` (2 chains x 500 + 500) on the threaded scheduler and on
the cluster: wall time (EM included), gradients, seconds per gradient inside the sampler
(two chains ask at once), min bulk ESS, max R-hat.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _table import markdown_table, run_meta, write_results  # noqa: E402  (a sibling module)


def simulate(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 4.0, size=(3, 2))
    return centres[rng.integers(0, 3, size=n)] + rng.standard_normal((n, 2))


def _per_call(fn, x: np.ndarray, budget: float = 2.0) -> float:
    """Median seconds of one call over 5 batches, each about ``budget / 5`` seconds."""
    clock = time.perf_counter()
    fn(x)
    once = max(time.perf_counter() - clock, 1e-6)
    reps = max(1, int(budget / 5 / once))
    batches = []
    for _ in range(5):
        clock = time.perf_counter()
        for _ in range(reps):
            fn(x)
        batches.append((time.perf_counter() - clock) / reps)
    return statistics.median(batches)


def _setup(X: np.ndarray, chunks: int):
    import dask.array as da

    import bayesmix as bm
    from bayesmix import dask as _dask

    estimator = bm.GaussianMixture(n_components=3, random_state=0, n_init=1, max_iter=50)
    rows = -(-X.shape[0] // chunks)
    data = _dask.as_chunked(da.from_array(X, chunks=(rows, 2)))
    priors, em, sample = estimator._chunked_em(data)
    logp_dlogp, flat, _ = estimator._distributed_log_density(data, priors, em, sample)
    fused = estimator._nuts_target(sample, priors)
    return logp_dlogp, flat, fused


def measure(n: int, chunks: int, cluster) -> list[dict]:
    import dask

    X = simulate(n)
    tiny = simulate(1000, seed=1)
    logp_dlogp, flat, fused = _setup(X, chunks)
    shared = fused.shared_data(X)
    rows = [
        {
            "n": n,
            "peer": "memory",
            "chunks": 1,
            "s_per_gradient": _per_call(lambda x: fused.logp_dlogp(x, **shared), flat),
        }
    ]
    tiny_logp, tiny_flat, _ = _setup(tiny, chunks)
    with dask.config.set(scheduler="threads"):
        rows.append(
            {
                "n": n,
                "peer": "dask-threads",
                "chunks": chunks,
                "s_per_gradient": _per_call(logp_dlogp, flat),
                "overhead_s": _per_call(tiny_logp, tiny_flat),
            }
        )
    if cluster:
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as local,
            Client(local),
        ):
            logp_dlogp, flat, _ = _setup(X, chunks)  # persisted on the workers
            tiny_logp, tiny_flat, _ = _setup(tiny, chunks)
            rows.append(
                {
                    "n": n,
                    "peer": "dask-cluster",
                    "chunks": chunks,
                    "s_per_gradient": _per_call(logp_dlogp, flat),
                    "overhead_s": _per_call(tiny_logp, tiny_flat),
                }
            )
    return rows


def short_fit(n: int, chunks: int, cluster: bool) -> dict:
    import contextlib

    import arviz_stats as azs
    import dask
    import dask.array as da

    import bayesmix as bm

    X = simulate(n)
    with contextlib.ExitStack() as stack:
        if cluster:
            from distributed import Client, LocalCluster

            local = stack.enter_context(
                LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
                )
            )
            stack.enter_context(Client(local))
        else:
            stack.enter_context(dask.config.set(scheduler="threads"))
        chunked = da.from_array(X, chunks=(-(-n // chunks), 2))
        clock = time.perf_counter()
        fit = bm.GaussianMixture(n_components=3, random_state=0).fit(
            chunked, draws=500, tune=500, chains=2, progressbar=False
        )
        seconds = time.perf_counter() - clock
    stats = fit.idata["sample_stats"]
    ess = azs.ess(fit.idata, group="posterior", var_names=["weights", "means"], method="bulk")
    return {
        "n": n,
        "peer": f"fit (dask-{'cluster' if cluster else 'threads'})",
        "chunks": chunks,
        "seconds": seconds,
        "gradients": int(stats.attrs["gradients"]),
        "s_per_gradient": float(stats.attrs["seconds_per_gradient"]),
        "min_bulk_ess": float(min(float(v.min()) for v in ess.data_vars.values())),
        "max_rhat": float(fit.idata.attrs["max_rhat"]),
        "timings": json.loads(fit.idata.attrs["timings"]),
    }


def report(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# NUTS on Dask: seconds per gradient ({meta['date']}, {meta['machine']})",
        "",
        "Produced by `bench/nuts_dask.py` (its docstring has the method). Gaussian, D=2, "
        "K=3, full covariances; one log density + gradient at the EM estimate. Overhead: "
        "the same evaluation on 1000 rows in as many chunks (the scheduler's share).",
        "",
    ]
    cells = []
    for r in rows:
        if "seconds" in r:  # a fit: its own table below
            continue
        memory = next(m for m in rows if m["n"] == r["n"] and m["peer"] == "memory")
        overhead = r.get("overhead_s")
        cells.append(
            [
                f"{r['n']:.0e}",
                r["peer"],
                r["chunks"],
                f"{1e3 * r['s_per_gradient']:.2f}",
                "-" if overhead is None else f"{1e3 * overhead:.2f}",
                f"{r['s_per_gradient'] / memory['s_per_gradient']:.2f}",
                f"{1e9 * r['s_per_gradient'] / r['n']:.1f}",
            ]
        )
    header = ["N", "peer", "chunks", "ms per gradient", "scheduler ms (1000 rows)"]
    lines += markdown_table([*header, "x memory", "ns per row"], cells)
    fits = [r for r in rows if "seconds" in r]
    if fits:
        lines += ["", "A fit (2 chains x 500 + 500 draws, EM included):", ""]
        header = ["N", "peer", "chunks", "s", "EM s", "gradients", "ms per gradient"]
        lines += markdown_table(
            [*header, "min bulk ESS", "max R-hat"],
            [
                [
                    f"{r['n']:.0e}",
                    r["peer"],
                    r["chunks"],
                    f"{r['seconds']:.0f}",
                    f"{r['timings']['em']:.0f}",
                    r["gradients"],
                    f"{1e3 * r['s_per_gradient']:.2f}",
                    f"{r['min_bulk_ess']:.0f}",
                    f"{r.get('max_rhat', float('nan')):.3f}",
                ]
                for r in fits
            ],
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e5, no cluster")
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6])
    parser.add_argument("--chunks", nargs="+", type=int, default=[2, 8])
    parser.add_argument("--no-cluster", action="store_true")
    parser.add_argument("--fit", action="store_true", help="add a short NUTS fit")
    args = parser.parse_args()
    sizes = [1e5] if args.quick else args.sizes
    rows = []
    for n in (int(s) for s in sizes):
        for chunks in args.chunks:
            for row in measure(n, chunks, cluster=not (args.quick or args.no_cluster)):
                if row["peer"] == "memory" and any(r["peer"] == "memory" for r in rows):
                    continue
                rows.append(row)
                print(json.dumps(row), flush=True)
        if args.fit:
            clusters = [False] if args.quick or args.no_cluster else [False, True]
            for cluster in clusters:
                rows.append(short_fit(n, args.chunks[0], cluster))
                print(json.dumps(rows[-1]), flush=True)
    meta = run_meta(("bayesmix", "dask", "distributed", "nutpie", "numba"))
    suffix = "_quick" if args.quick else ""
    print(write_results(f"nuts_dask{suffix}", meta, rows, report))


if __name__ == "__main__":
    main()
