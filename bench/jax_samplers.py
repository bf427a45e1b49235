"""NUTS on JAX (numpyro, blackjax) against nutpie on this machine's CPU (issue 23, item 3).

Usage::

    python bench/jax_samplers.py              # results in bench/results/jax_samplers.json and .md
    python bench/jax_samplers.py --quick      # N = 1e3, 200 draws (checks the harness)

Each (workload, sampler) runs in a fresh process: ``fit(X, nuts_sampler=...)`` with the
estimator's defaults (EM start, 4 chains x 1000 draws + 1000 tuning steps,
``random_state=0``). Workloads: the 2-D Gaussian with K=3 (nutpie samples its fused numba
kernel) and the 2-D Poisson with K=2 (nutpie samples the compiled PyMC model), at
N = 1e4. Reported: wall seconds of the whole fit (EM, compilation, warmup, draws,
relabelling, log-likelihood), minimum bulk ESS, ESS per second, max R-hat, divergences,
and the largest difference of posterior means from nutpie's in nutpie's posterior sds.
On a CPU this measures the overhead and the agreement; the point of the JAX samplers
is a GPU, which this machine does not have.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _table import markdown_table, run_meta, write_results  # noqa: E402  (a sibling module)

SAMPLERS = ("nutpie", "numpyro", "blackjax")


def workload(name: str, n: int) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if name == "gaussian":
        centres = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
        z = rng.integers(0, 3, n)
        return "GaussianMixture", centres[z] + rng.normal(size=(n, 2))
    z = rng.random(n) < 0.4
    rates = np.where(z[:, None], [1.0, 6.0], [8.0, 2.0])
    return "PoissonMixture", rng.poisson(rates)


def run_peer(name: str, sampler: str, n: int, draws: int) -> dict:
    import warnings

    import arviz_stats as azs

    import bayesmix as bm

    warnings.simplefilter("ignore")
    cls, X = workload(name, n)
    clock = time.perf_counter()
    fit = getattr(bm, cls)(n_components=3 if name == "gaussian" else 2, random_state=0).fit(
        X, nuts_sampler=sampler, draws=draws, tune=draws, progressbar=False
    )
    seconds = time.perf_counter() - clock
    post = fit.idata["posterior"]
    ess = azs.ess(fit.idata, group="posterior", method="bulk")
    min_ess = min(float(ess[var].min()) for var in ess.data_vars)
    means = {var: post[var].mean(("chain", "draw")).to_numpy().tolist() for var in post.data_vars}
    sds = {var: post[var].std(("chain", "draw")).to_numpy().tolist() for var in post.data_vars}
    return {
        "workload": name,
        "sampler": sampler,
        "n": n,
        "seconds": seconds,
        "min_bulk_ess": min_ess,
        "ess_per_s": min_ess / seconds,
        "max_rhat": float(fit.idata.attrs["max_rhat"]),
        "divergences": int(fit.idata["sample_stats"]["diverging"].sum()),
        "means": means,
        "sds": sds,
    }


def _gap(row: dict, reference: dict) -> float:
    worst = 0.0
    for var, mean in row["means"].items():
        a, b = np.asarray(mean), np.asarray(reference["means"][var])
        sd = np.maximum(np.asarray(reference["sds"][var]), 1e-300)
        worst = max(worst, float(np.max(np.abs(a - b) / sd)))
    return worst


def report(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# NUTS on JAX against nutpie ({meta['date']}, {meta['machine']})",
        "",
        "Produced by `bench/jax_samplers.py` (its docstring has the method); CPU only. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + ".",
        "",
    ]
    cells = []
    for row in rows:
        head = [row["workload"], f"{row['n']:.0e}", row["sampler"]]
        if "error" in row:
            cells.append([*head, f"error: {row['error']}"])
            continue
        reference = next(
            r
            for r in rows
            if r["workload"] == row["workload"] and r["n"] == row["n"] and r["sampler"] == "nutpie"
        )
        cells.append(
            [
                *head,
                f"{row['seconds']:.1f}",
                f"{row['min_bulk_ess']:.0f}",
                f"{row['ess_per_s']:.0f}",
                f"{row['max_rhat']:.3f}",
                row["divergences"],
                f"{_gap(row, reference):.2f}",
            ]
        )
    header = ["workload", "N", "sampler", "s", "min bulk ESS", "ESS/s", "max R-hat"]
    lines += markdown_table([*header, "divergences", "max mean gap (nutpie sds)"], cells)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peer", nargs=4, help=argparse.SUPPRESS)  # internal: one peer
    args = parser.parse_args()
    if args.peer:
        name, sampler, n, draws = args.peer
        print(json.dumps(run_peer(name, sampler, int(n), int(draws))))
        return
    n, draws = (1000, 200) if args.quick else (10_000, 1000)
    rows = []
    for name in ("gaussian", "poisson"):
        for sampler in SAMPLERS:
            out = subprocess.run(
                [sys.executable, __file__, "--peer", name, sampler, str(n), str(draws)],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                row = {
                    "workload": name,
                    "sampler": sampler,
                    "n": n,
                    "error": out.stderr.strip().splitlines()[-1],
                }
            else:
                row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print({k: v for k, v in row.items() if k not in ("means", "sds")}, flush=True)
    meta = run_meta(("bayesmix", "nutpie", "jax", "numpyro", "blackjax"))
    suffix = "_quick" if args.quick else ""
    print(write_results(f"jax_samplers{suffix}", meta, rows, report))


if __name__ == "__main__":
    main()
