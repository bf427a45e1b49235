"""Laplace + PSIS against NUTS on the same data: accuracy and time (issue 23, item 4a).

Usage::

    python bench/laplace.py            # N = 1e3, 1e4, 1e5; results in bench/results/laplace.md
    python bench/laplace.py --quick    # N = 1e3 only (checks the harness)
    python bench/laplace.py --runs "Gaussian 5-D K=4:1e6"   # single long runs, one
                                       # row each, accumulated in bench/results/laplace_runs.md

For each workload and N, one data set (fixed seed) is fitted twice in this process, each
model freshly constructed with ``random_state=0``: ``fit(method="laplace")`` (4000
draws) and ``fit(method="nuts")`` (4 chains x 1000 draws after 1000 tuning steps,
nutpie). Reported: PSIS's k-hat and importance ESS, the largest difference of posterior
means in NUTS posterior sds over every scalar of ``summary()`` (weights and component
parameters), the range of the ratio of posterior sds (Laplace / NUTS), NUTS's max R-hat,
and the wall seconds of each fit (EM included in both; compile times included, so the
first fit of a structure in the process pays them: the order is Laplace first). The
Monte Carlo error of a posterior mean is about 0.02 sd for both (ESS of a few thousand).

Workloads: a 2-D Gaussian mixture, K=3, full covariances (the fused kernel); 2-D Poisson,
K=2; Bernoulli latent classes, 5 items, K=2; 1-D Student-t, K=2 (its degrees of freedom
have a skewed posterior); a 5-D Gaussian mixture, K=4, full covariances (``--runs`` only).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

import bayesmix as bm
from bayesmix.datasets import make_mixture

RESULTS = Path(__file__).parent / "results"


def gaussian(n: int):
    means = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])
    covariances = np.array([[[1.0, 0.3], [0.3, 0.8]], np.eye(2), [[1.5, -0.5], [-0.5, 1.0]]])
    X, _ = make_mixture(n, [0.3, 0.3, 0.4], means, covariances, random_state=3)
    return lambda: bm.GaussianMixture(n_components=3, covariance_type="full", random_state=0), X


def poisson(n: int):
    rng = np.random.default_rng(4)
    rates = np.array([[2.0, 9.0], [8.0, 3.0]])
    z = rng.choice(2, size=n, p=[0.4, 0.6])
    return lambda: bm.PoissonMixture(n_components=2, random_state=0), rng.poisson(rates[z]).astype(
        float
    )


def bernoulli(n: int):
    rng = np.random.default_rng(5)
    probs = np.array([[0.9, 0.8, 0.2, 0.1, 0.7], [0.2, 0.1, 0.8, 0.9, 0.4]])
    z = rng.choice(2, size=n, p=[0.55, 0.45])
    X = (rng.random((n, 5)) < probs[z]).astype(float)
    return lambda: bm.BernoulliMixture(n_components=2, random_state=0), X


def student_t(n: int):
    rng = np.random.default_rng(6)
    z = rng.choice(2, size=n, p=[0.5, 0.5])
    X = np.where(z == 0, -3.0, 3.0) + rng.standard_t(5, size=n)
    return lambda: bm.StudentTMixture(n_components=2, random_state=0), X[:, None]


def gaussian_5d(n: int):
    rng = np.random.default_rng(7)
    means = rng.normal(scale=4.0, size=(4, 5))
    a = rng.normal(size=(4, 5, 5))
    covariances = a @ a.transpose(0, 2, 1) / 5 + 0.5 * np.eye(5)
    X, _ = make_mixture(n, [0.2, 0.3, 0.25, 0.25], means, covariances, random_state=7)
    return lambda: bm.GaussianMixture(n_components=4, covariance_type="full", random_state=0), X


WORKLOADS = {
    "Gaussian 2-D K=3": gaussian,
    "Gaussian 5-D K=4": gaussian_5d,
    "Poisson 2-D K=2": poisson,
    "Bernoulli 5 items K=2": bernoulli,
    "Student-t 1-D K=2": student_t,
}


def run_one(name: str, n: int) -> dict:
    make, X = WORKLOADS[name](n)
    clock = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        approx = make().fit(X, method="laplace", draws=4000)
    laplace_s = time.perf_counter() - clock
    clock = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nuts = make().fit(X, progressbar=False, random_seed=1)
    nuts_s = time.perf_counter() - clock
    a = approx.summary()
    b = nuts.summary().loc[a.index]
    z = ((a["mean"] - b["mean"]).abs() / b["sd"]).to_numpy()
    ratio = (a["sd"] / b["sd"]).to_numpy()
    return {
        "workload": name,
        "n": n,
        "khat": float(approx.idata.attrs["laplace_khat"]),
        "ess": float(approx.idata.attrs["laplace_ess"]),
        "warned": any("k-hat" in str(w.message) for w in caught),
        "max_z": float(z.max()),
        "sd_ratio_min": float(ratio.min()),
        "sd_ratio_max": float(ratio.max()),
        "nuts_max_rhat": float(nuts.idata.attrs["max_rhat"]),
        "laplace_s": laplace_s,
        "nuts_s": nuts_s,
        "laplace_timings": json.loads(approx.idata.attrs["timings"]),
    }


def report(rows: list[dict]) -> str:
    lines = [
        f"# Laplace + PSIS against NUTS ({datetime.now():%Y-%m-%d %H:%M}, "
        f"{platform.machine()}, bayesmix {bm.__version__})",
        "",
        "Produced by `bench/laplace.py` (its docstring has the method). |Δ mean|: the largest "
        "difference of posterior means over every scalar parameter, in NUTS posterior sds. "
        "sd ratio: Laplace / NUTS, range over the scalars. Seconds: wall time of each fit "
        "(EM, compilation and post-processing included).",
        "",
        "| workload | N | k-hat | importance ESS (of 4000) | max abs diff of means (sd) "
        "| sd ratio | NUTS max R-hat | Laplace s | NUTS s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        flag = " (warned)" if r["warned"] else ""
        lines.append(
            f"| {r['workload']} | {r['n']:,} | {r['khat']:.2f}{flag} | {r['ess']:.0f} | "
            f"{r['max_z']:.3f} | {r['sd_ratio_min']:.3f}-{r['sd_ratio_max']:.3f} | "
            f"{r['nuts_max_rhat']:.3f} | {r['laplace_s']:.1f} | {r['nuts_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--runs",
        nargs="+",
        default=None,
        help="workload:N pairs, e.g. 'Gaussian 5-D K=4:100000' (results in laplace_runs.*)",
    )
    args = parser.parse_args(argv)
    sizes = [1_000] if args.quick else [1_000, 10_000, 100_000]
    if args.runs:
        plan = [(run.rsplit(":", 1)[0], int(float(run.rsplit(":", 1)[1]))) for run in args.runs]
    else:
        plan = [(name, n) for name in WORKLOADS if name != "Gaussian 5-D K=4" for n in sizes]
    RESULTS.mkdir(exist_ok=True)
    suffix = "_runs" if args.runs else "_quick" if args.quick else ""
    rows = []
    if args.runs and (RESULTS / "laplace_runs.json").exists():
        # single runs accumulate: a new run replaces the row of the same workload and N
        done = {(name, n) for name, n in plan}
        previous = json.loads((RESULTS / "laplace_runs.json").read_text())
        rows = [row for row in previous if (row["workload"], row["n"]) not in done]
    for name, n in plan:
        rows.append(run_one(name, n))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if args.runs:  # long runs: keep what is done
            (RESULTS / "laplace_runs.json").write_text(json.dumps(rows, indent=1))
            (RESULTS / "laplace_runs.md").write_text(report(rows))
    (RESULTS / f"laplace{suffix}.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / f"laplace{suffix}.md").write_text(report(rows))
    print(report(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
