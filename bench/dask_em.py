"""EM beyond memory: seconds per pass and peak memory of bayesmix's Dask EM, side by side.

Usage::

    python bench/dask_em.py                 # N = 1e6, 1e7, 1e8 (D=2, K=3); results in
                                            # bench/results/dask_em.json and dask_em.md
    python bench/dask_em.py --quick         # N = 1e5 only (checks the harness)
    python bench/dask_em.py --sizes 1e6 1e7 --features 2 10 --components 3 10

For every (N, D, K) the data are simulated chunk by chunk (never whole in memory) into a
Zarr array on disk (chunks of 1e6 rows, zstd), then each peer runs in a fresh process:

- ``dask-threads``: ``GaussianMixture().fit("x.zarr", method="em")`` on Dask's threaded
  scheduler (2 threads);
- ``dask-cluster``: the same on a ``distributed.LocalCluster`` of 2 worker processes with
  one thread each;
- ``bayesmix-memory``: the in-memory fit of the same data (loaded first; not timed), when
  it fits in memory (N <= 1e7);
- ``sklearn``: scikit-learn's ``GaussianMixture`` on the loaded data (N <= 1e7).

Every fit runs ``--iterations`` EM iterations (``tol=0``; one restart; the same seed), so
the seconds per pass compare like with like: the chunked fits' time divided by their data
passes (prior sample, starting sample, one per iteration, the final log-likelihood; the
two sample draws read only the rows they need), the in-memory fits' time by their
iterations. Peak memory is the largest resident set of the process tree (client and
workers), sampled every 50 ms. Every peer starts on an empty page cache (as root; else the
file may be cached). Floors: reading the Zarr files cold from disk (bytes / bandwidth) and
the in-memory fused EM kernel's cost per row times N (one thread).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _table import markdown_table, run_meta, write_results  # noqa: E402  (a sibling module)

CHUNK = 1_000_000
IN_MEMORY_MAX = 10_000_000


def _simulate_block(block_id_row: int, n: int, d: int, k: int, seed: int):
    import numpy as np

    rng = np.random.default_rng([seed, block_id_row])
    centres = np.random.default_rng(seed).normal(0.0, 4.0, (k, d))
    z = rng.integers(0, k, size=n)
    return centres[z] + rng.normal(size=(n, d))


def write_zarr(path: Path, n: int, d: int, k: int, seed: int = 0) -> float:
    """Write the simulated data chunk by chunk; return the seconds taken."""
    import dask.array as da
    import numpy as np

    chunks = [CHUNK] * (n // CHUNK) + ([n % CHUNK] if n % CHUNK else [])
    blocks = [
        da.from_delayed(
            __import__("dask").delayed(_simulate_block)(i, size, d, k, seed),
            shape=(size, d),
            dtype=np.float64,
        )
        for i, size in enumerate(chunks)
    ]
    started = time.perf_counter()
    da.concatenate(blocks).rechunk((CHUNK, d)).to_zarr(str(path), overwrite=True)
    return time.perf_counter() - started


def _peak_rss(stop: threading.Event, out: list[int]) -> None:
    import psutil

    me = psutil.Process()
    peak = 0
    while not stop.is_set():
        total = 0
        for process in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        peak = max(peak, total)
        time.sleep(0.05)
    out.append(peak)


def run_peer(peer: str, path: str, n: int, d: int, k: int, iterations: int) -> dict:
    """One peer in this (fresh) process."""
    import warnings

    warnings.simplefilter("ignore")
    result: dict = {"peer": peer}
    stop, peak = threading.Event(), []
    sampler = threading.Thread(target=_peak_rss, args=(stop, peak), daemon=True)
    settings = {
        "n_components": k,
        "random_state": 0,
        "max_iter": iterations,
        "tol": 0.0,
        "n_init": 1,
    }
    client = cluster = None
    if peer == "dask-cluster":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    if peer in ("bayesmix-memory", "sklearn"):
        import dask.array as da

        X = da.from_zarr(path).compute()
    sampler.start()

    def fit_once(max_iter: int) -> tuple[float, int, float]:
        """(seconds, data passes, mean log-likelihood) of one fit."""
        started = time.perf_counter()
        if peer == "sklearn":
            from sklearn.mixture import GaussianMixture

            gm = GaussianMixture(
                k, max_iter=max_iter, tol=0.0, random_state=0, init_params="k-means++"
            ).fit(X)
            return time.perf_counter() - started, gm.n_iter_ + 1, float(gm.score(X))
        import bayesmix as bm

        model = bm.GaussianMixture(**(settings | {"max_iter": max_iter}))
        if peer == "bayesmix-memory":
            fit = model.fit(X, method="em")
            passes = fit.em_.n_iter + 1
        else:
            import dask

            scheduler = "threads" if peer == "dask-threads" else None
            with dask.config.set(scheduler=scheduler):
                fit = model.fit(path, method="em")
            passes = fit.em_.n_iter + 3  # prior sample, starting sample, final pass
        return time.perf_counter() - started, passes, float(fit.em_.log_likelihood)

    # A one-iteration fit first: imports, compiled kernels loaded, workers warm.
    result["warmup_seconds"] = fit_once(1)[0]
    seconds, passes, result["log_likelihood"] = fit_once(iterations)
    stop.set()
    sampler.join()
    if client is not None:
        client.close()
        cluster.close()
    result |= {
        "seconds": seconds,
        "passes": passes,
        "seconds_per_pass": seconds / passes,
        "peak_rss_gib": peak[0] / 2**30,
    }
    return result


def drop_page_cache() -> bool:
    """Empty the page cache (needs root); return whether it was done."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def disk_floor(path: Path) -> tuple[float, float] | None:
    """(bytes on disk, seconds to read them cold), or None without root (no cache drop)."""
    if not drop_page_cache():
        return None
    files = [f for f in path.rglob("*") if f.is_file()]
    started = time.perf_counter()
    size = 0
    for file in files:
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 24):
                size += len(chunk)
    return float(size), time.perf_counter() - started


def kernel_seconds_per_row(d: int, k: int) -> float:
    """Seconds per row of one in-memory fused EM pass (one thread, 1e6 rows, warm)."""
    import numpy as np

    from bayesmix.families.gaussian import em as gaussian_em

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1_000_000, d))
    means = rng.normal(size=(k, d))
    prec = np.broadcast_to(np.eye(d), (k, d, d)).copy()
    weights = np.full(k, 1.0 / k)
    gaussian_em._fused_statistics(X, weights, means, prec, "full")  # compile / load
    times = []
    for _ in range(3):
        started = time.perf_counter()
        gaussian_em._fused_statistics(X, weights, means, prec, "full")
        times.append(time.perf_counter() - started)
    return min(times) / X.shape[0]


def read_floor(path: str) -> float:
    """Seconds to read the Zarr array once (threaded scheduler), best of three."""
    import dask.array as da

    times = []
    for _ in range(3):
        started = time.perf_counter()
        da.from_zarr(path).sum().compute(scheduler="threads")
        times.append(time.perf_counter() - started)
    return min(times)


def report(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# Dask EM benchmark ({meta['date']}, {meta['machine']})",
        "",
        f"{meta['iterations']} EM iterations per fit (tol=0), Gaussian full covariance, every "
        "peer in a fresh process started on an empty page cache. Floors: the disk (reading "
        "the Zarr files cold), the kernel (the in-memory fused EM pass, one thread, per row "
        "x N); the larger of the two is the floor a pass is compared with. Cached read: "
        "the Zarr array read and decompressed from the page cache by Dask.",
        "",
    ]
    cells = []
    for r in rows:
        head = [f"{r['n_samples']:.0e}", r["n_features"], r["n_components"]]
        head += [f"{r['data_gb']:.2f}", r["peer"]]
        if "error" in r:
            cells.append([*head, f"error: {r['error'][:60]}"])
            continue
        disk = r["disk_read_seconds"]
        floor = max(disk or 0.0, r["kernel_floor_seconds"])
        cells.append(
            [
                *head,
                f"{r['seconds_per_pass']:.3f}",
                "n/a" if disk is None else f"{disk:.3f}",
                f"{r['kernel_floor_seconds']:.3f}",
                f"{r['read_floor_seconds']:.3f}",
                f"{r['seconds_per_pass'] / floor:.2f}",
                f"{r['peak_rss_gib']:.2f}",
            ]
        )
    header = ["N", "D", "K", "data GB", "peer", "s/pass", "disk s", "kernel s"]
    header += ["cached read s", "s/pass / floor", "peak RSS GiB"]
    lines += markdown_table(header, cells)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8])
    parser.add_argument("--features", nargs="+", type=int, default=[2])
    parser.add_argument("--components", nargs="+", type=int, default=[3])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument(
        "--max-gb", type=float, default=2.0, help="skip data sets larger than this (GB)"
    )
    parser.add_argument("--workdir", default="/tmp/bayesmix-bench-dask")
    parser.add_argument("--peer", nargs=6, help=argparse.SUPPRESS)  # internal: one peer
    args = parser.parse_args()
    if args.peer:
        peer, path, n, d, k, iterations = args.peer
        print(json.dumps(run_peer(peer, path, int(n), int(d), int(k), int(iterations))))
        return
    sizes = [1e5] if args.quick else args.sizes
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(s) for s in sizes):
        for d in args.features:
            for k in args.components:
                if n * d * 8 / 1e9 > args.max_gb:
                    continue
                path = workdir / f"x-{n}-{d}-{k}.zarr"
                write_seconds = write_zarr(path, n, d, k)
                size_gb = n * d * 8 / 1e9
                floor = read_floor(str(path))
                peers = ["dask-threads", "dask-cluster"]
                if n <= IN_MEMORY_MAX:
                    peers += ["bayesmix-memory", "sklearn"]
                cold = disk_floor(path)
                per_row = kernel_seconds_per_row(d, k)
                for peer in peers:
                    drop_page_cache()  # every peer starts from a cold disk
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--peer",
                            peer,
                            str(path),
                            str(n),
                            str(d),
                            str(k),
                            str(args.iterations),
                        ],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if out.returncode != 0:
                        row = {"peer": peer, "error": out.stderr.strip().splitlines()[-1]}
                    else:
                        row = json.loads(out.stdout.strip().splitlines()[-1])
                    row |= {
                        "n_samples": n,
                        "n_features": d,
                        "n_components": k,
                        "data_gb": size_gb,
                        "write_seconds": write_seconds,
                        "read_floor_seconds": floor,
                        "disk_bytes": None if cold is None else cold[0],
                        "disk_read_seconds": None if cold is None else cold[1],
                        "kernel_floor_seconds": per_row * n,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                subprocess.run(["rm", "-rf", str(path)], check=False)
    meta = run_meta(("bayesmix", "dask", "distributed", "zarr", "numba"))
    meta["iterations"] = args.iterations
    print(write_results("dask_em", meta, rows, report), end="")


if __name__ == "__main__":
    main()
