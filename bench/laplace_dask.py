"""Laplace + PSIS on data read in chunks: time and peak memory against EM (issue 23, item 4b).

Usage::

    python bench/laplace_dask.py                # N = 1e6, 1e7 (D=2, K=3); results in
                                                # bench/results/laplace_dask.json and .md
    python bench/laplace_dask.py --quick        # N = 1e5 only (checks the harness)
    python bench/laplace_dask.py --sizes 1e6 --peers laplace laplace-cluster
    python bench/laplace_dask.py --sizes 1e7 --merge   # add rows, keep the saved others

The data are simulated chunk by chunk into a Zarr array (chunks of 1e6 rows; the
simulation of ``bench/dask_em.py``: three unit-variance clusters with centres drawn from
N(0, 4^2)). Each peer runs in a fresh process with the estimator's defaults
(``GaussianMixture(n_components=3, random_state=0)``: full covariances, emEM starts,
``n_init=5``):

- ``em``: ``fit("x.zarr", method="em")`` on Dask's threaded scheduler (2 threads);
- ``laplace``: ``fit("x.zarr", method="laplace")`` (4000 draws) on the threaded scheduler:
  EM, then Newton steps to the posterior mode (one pass each, evaluating the 1 + 2 P^2
  points of central differences, P = 17), then one pass for the exact log posterior of
  the 4000 draws;
- ``laplace-cluster``: the same on a ``distributed.LocalCluster`` of 2 worker processes.

Reported: wall seconds (after a warm-up fit on 1e5 rows that loads the compiled kernels),
peak resident memory of the process tree (client and workers, sampled every 50 ms), the
phases of the Laplace fit (EM; Newton passes; the draws' pass), k-hat and importance ESS,
and the cost of the draws' pass per draw and row on this machine's cores. The pass is
embarrassingly parallel over chunks, so the extrapolation to a cluster is that cost times
draws x rows / cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _table import RESULTS, markdown_table, run_meta, write_results  # noqa: E402  (sibling modules)
from dask_em import CHUNK, _peak_rss, write_zarr  # noqa: E402


def run_peer(peer: str, path: str, n: int) -> dict:
    """One peer in this (fresh) process."""
    import warnings

    import dask
    import dask.array as da

    import bayesmix as bm

    warnings.simplefilter("ignore")
    client = cluster = None
    if peer == "laplace-cluster":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    method = "em" if peer == "em" else "laplace"
    scheduler = None if client is not None else "threads"
    with dask.config.set(scheduler=scheduler):  # warm-up: compiled kernels, workers
        small = da.from_zarr(path)[:100_000]
        bm.GaussianMixture(n_components=3, random_state=0).fit(small, method=method, draws=200)
    stop, peak = threading.Event(), []
    sampler = threading.Thread(target=_peak_rss, args=(stop, peak), daemon=True)
    sampler.start()
    started = time.perf_counter()
    with dask.config.set(scheduler=scheduler):
        fit = bm.GaussianMixture(n_components=3, random_state=0).fit(path, method=method)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if client is not None:
        client.close()
        cluster.close()
    attrs = fit.idata.attrs
    timings = json.loads(attrs["timings"])
    result = {
        "peer": peer,
        "n": n,
        "seconds": seconds,
        "peak_rss_gib": peak[0] / 2**30,
        "em_seconds": timings["em"],
        "em_iterations": int(fit.em_.n_iter),
    }
    if method == "laplace":
        optimizer = json.loads(attrs["laplace_optimizer"])
        draws_seconds = optimizer["seconds"]["log_density"]
        draws = fit.idata["posterior"].sizes["draw"]
        result |= {
            "laplace_seconds": timings["laplace"],
            "newton_passes": optimizer["n_iter"],
            "newton_points": optimizer["n_eval"],
            "newton_seconds": timings["laplace"] - draws_seconds,
            "draws_pass_seconds": draws_seconds,
            "draws": draws,
            "khat": attrs["laplace_khat"],
            "ess": attrs["laplace_ess"],
            # The pass runs one task per chunk: at most min(cores, chunks) cores busy.
            "cores_busy": min(os.cpu_count() or 1, -(-n // CHUNK)),
            "ns_per_draw_row_core": draws_seconds
            * min(os.cpu_count() or 1, -(-n // CHUNK))
            / (draws * n)
            * 1e9,
        }
    return result


def report(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# Laplace + PSIS on Dask ({meta['date']}, {meta['machine']})",
        "",
        "Produced by `bench/laplace_dask.py` (its docstring has the method). Gaussian, D=2, "
        "K=3, from a Zarr array in chunks of 1e6 rows; defaults of the estimator, 4000 "
        "Laplace draws. Seconds are wall time after a warm-up; peak RSS of the process tree. "
        "The cost per draw, row and core counts the cores busy in the draws' pass: one task "
        "per chunk, so at most min(cores, chunks).",
        "",
    ]
    cells = []
    for r in rows:
        head = [f"{r['n']:.0e}", r["peer"]]
        if "error" in r:
            cells.append([*head, f"error: {r['error']}"])
            continue
        em = [f"{r['seconds']:.1f}", f"{r['peak_rss_gib']:.2f}"]
        em.append(f"{r['em_seconds']:.1f} ({r['em_iterations']})")
        laplace = (
            [
                f"{r['newton_seconds']:.1f} ({r['newton_passes']})",
                f"{r['draws_pass_seconds']:.1f}",
                f"{r['khat']:.2f}",
                f"{r['ess']:.0f}",
                f"{r['ns_per_draw_row_core']:.1f}",
            ]
            if "khat" in r
            else ["-"] * 5
        )
        cells.append([*head, *em, *laplace])
    header = ["N", "peer", "s", "peak RSS GiB", "EM s (iterations)", "Newton s (passes)"]
    header += ["draws' pass s", "k-hat", "importance ESS", "ns per draw x row x core"]
    lines += markdown_table(header, cells)
    costs = [r["ns_per_draw_row_core"] for r in rows if "ns_per_draw_row_core" in r]
    if costs:
        cost = max(costs)
        lines += [
            "",
            f"The draws' pass costs at most {cost:.1f} ns per draw, row and core here. It is "
            "embarrassingly parallel over chunks, so 4000 draws take about "
            + ", ".join(
                f"{cost * 4000 * n / cores / 1e9 / 60:.0f} min for N = {n:.0e} on {cores} cores"
                for n, cores in ((1e8, 32), (1e9, 128), (1e9, 512))
            )
            + " (plus the Newton passes, each evaluating 1 + 2 P^2 = 579 points: about "
            "a seventh of the draws' pass).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7])
    parser.add_argument("--peers", nargs="+", default=["em", "laplace", "laplace-cluster"])
    parser.add_argument("--workdir", default="/tmp/bayesmix-bench-laplace")
    parser.add_argument("--peer", nargs=3, help=argparse.SUPPRESS)  # internal: one peer
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the saved rows of other (N, peer) pairs in the .json and .md",
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((RESULTS / "laplace_dask.json").read_text())
        (RESULTS / "laplace_dask.md").write_text(report(saved["rows"], saved["meta"]))
        return
    if args.peer:
        peer, path, n = args.peer
        print(json.dumps(run_peer(peer, path, int(n))))
        return
    sizes = [1e5] if args.quick else args.sizes
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(s) for s in sizes):
        path = workdir / f"x-{n}.zarr"
        write_zarr(path, n, 2, 3)
        for peer in args.peers:
            out = subprocess.run(
                [sys.executable, __file__, "--peer", peer, str(path), str(n)],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                row = {"peer": peer, "n": n, "error": out.stderr.strip().splitlines()[-1]}
            else:
                row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
        subprocess.run(["rm", "-rf", str(path)], check=False)
    meta = run_meta(("bayesmix", "dask", "distributed", "zarr"))
    suffix = "_quick" if args.quick else ""
    saved_path = RESULTS / f"laplace_dask{suffix}.json"
    if args.merge and saved_path.exists():
        new = {(row["n"], row["peer"]) for row in rows}
        kept = [
            row
            for row in json.loads(saved_path.read_text())["rows"]
            if (row["n"], row["peer"]) not in new
        ]
        rows = sorted(kept + rows, key=lambda row: row["n"])
    print(write_results(f"laplace_dask{suffix}", meta, rows, report))


if __name__ == "__main__":
    main()
