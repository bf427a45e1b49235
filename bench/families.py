"""Time to a posterior for every family: bayesmix against the plain PyMC formulation.

Usage::

    python bench/families.py               # results in bench/results/families.{json,md}
    python bench/families.py --seeds 8     # fewer sampler seeds (default 20)
    python bench/families.py --quick       # short chains, two workloads, two seeds (harness)
    python bench/families.py --draws 4000 --only Student-t Bernoulli --peers bayesmix plain-em \
        --stem families_4000               # longer chains: are the clean runs R-hat's noise?

One workload per family (issue 25), 2 chains x (1000 tune + 1000 draws), the same data
and the same priors (bayesmix's defaults) for every peer. One run says little where the
posterior has a slowly mixing region (the Student-t's, the Bernoulli's): the min ESS of
one peer on the same data ranges over 10x from sampler seed to sampler seed. So every
peer runs the sampler seeds 0-19 (bayesmix's ``random_state``, nutpie's ``seed``) in
four fresh processes (``--processes``): a process's first fit is timed whole, from
nothing loaded or compiled, and its other seeds sample again in the same process. The
seconds are the medians of the fresh fits, the ESS and the clean runs (max R-hat <=
1.01, no divergences) are taken over all seeds, and ESS per second is the median ESS over
the median seconds:

- ``bayesmix``: ``Family(n_components=K).fit(X, method="nuts")`` timed whole (EM, the
  fused kernel or the PyMC model's compile, the Laplace map, sampling, relabelling and
  the pointwise log-likelihood);
- ``plain``: the formulation a user writes: ``pm.Mixture`` of the component distribution
  with the first location ordered (a ``logsumexp`` potential for the multivariate
  Bernoulli items, which ``pm.Mixture`` does not take), nutpie, PyMC's default start;
  build, compile and sampling timed;
- ``plain-em``: the same model and sampler, both chains started without jitter at
  bayesmix's EM estimate (its time included): the hand-written model at its best.

Metrics per run: seconds (fresh: ``total_s``, later seeds: ``warm_s``), min bulk ESS over
the component parameters and weights, max R-hat, divergences; for bayesmix also the seconds
of a second fit of the same structure on new data in the same process (the first fit's extra
time is the one-time load of the kernel or the compile of the PyMC model, with numba's
and xarray's first-use costs). Every peer imports PyMC and nutpie before its clock. The
ratios compare these ESS per second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _table import markdown_table, run_meta, write_results  # noqa: E402  (a sibling module)
from run import _diagnostics, _sampler_stats, make_data  # noqa: E402

SEEDS = 20
PROCESSES = 4
SETTINGS = {"draws": 1000, "tune": 1000, "chains": 2}
QUICK_SETTINGS = {"draws": 200, "tune": 200, "chains": 2}
PEERS = ("bayesmix", "plain", "plain-em")


def _student_t_data(rng):
    z = rng.random(2000) < 0.4
    x = np.where(z, -3.0, 3.0) + rng.standard_t(4, 2000)
    outliers = rng.random(2000) < 0.02
    return np.where(outliers, rng.uniform(-30.0, 30.0, 2000), x)[:, None]


def _poisson_data(rng):
    rates = np.array([1.0, 6.0, 15.0])[rng.choice(3, 2000, p=[0.3, 0.4, 0.3])]
    return rng.poisson(rates).astype(float)[:, None]


def _negative_binomial_data(rng):
    means = np.array([2.0, 12.0])[rng.choice(2, 2000, p=[0.5, 0.5])]
    return rng.negative_binomial(4.0, 4.0 / (4.0 + means)).astype(float)[:, None]


def _bernoulli_data(rng):
    probs = np.array(
        [
            [0.9, 0.8, 0.85, 0.1, 0.2, 0.15],
            [0.1, 0.2, 0.15, 0.9, 0.8, 0.85],
            [0.8, 0.1, 0.9, 0.2, 0.85, 0.1],
        ]
    )
    z = rng.choice(3, 1000, p=[0.4, 0.35, 0.25])
    return (rng.random((1000, 6)) < probs[z]).astype(float)


# name: (family, K, data, constructor arguments, the variables the ESS is taken over)
WORKLOADS = {
    "Student-t, 1-D, K=2, N=2000, 2% outliers": (
        "student_t",
        2,
        _student_t_data,
        {},
        ("weights", "means", "sigma", "dof"),
    ),
    "Poisson, 1-D, K=3, N=2000": ("poisson", 3, _poisson_data, {}, ("weights", "rates")),
    "Negative binomial, 1-D, K=2, N=2000": (
        "negative_binomial",
        2,
        _negative_binomial_data,
        {},
        ("weights", "rates", "dispersion"),
    ),
    "Bernoulli, D=6, K=3, N=1000": ("bernoulli", 3, _bernoulli_data, {}, ("weights", "probs")),
    "Gaussian, 2-D, K=3, N=2000, StudentT prior on the means": (
        "gaussian",
        3,
        lambda rng: make_data(2, 3, 2000, seed=3),
        {"means_prior": {"nu": 3.0, "mu": 0.0, "sigma": 5.0}},
        ("weights", "means", "covariances"),
    ),
}
QUICK = ["Poisson, 1-D, K=3, N=2000", "Bernoulli, D=6, K=3, N=1000"]


def _estimator(family: str, k: int, options: dict, seed: int = 0):
    import bayesmix as bm

    if family == "gaussian":
        prior = bm.Prior("StudentT", **options["means_prior"])
        return bm.GaussianMixture(n_components=k, random_state=seed, priors={"means": prior})
    cls = {
        "student_t": bm.StudentTMixture,
        "poisson": bm.PoissonMixture,
        "negative_binomial": bm.NegativeBinomialMixture,
        "bernoulli": bm.BernoulliMixture,
    }[family]
    return cls(n_components=k, random_state=seed)


def _ess_rhat(posterior, names) -> dict:
    """Min bulk ESS and max R-hat over ``names`` (``run._diagnostics`` for the Gaussian)."""
    import arviz_stats as azs

    posterior = posterior.to_dataset() if hasattr(posterior, "to_dataset") else posterior
    names = [name for name in names if name in posterior]
    ess = azs.ess(posterior[names], method="bulk")
    rhat = azs.rhat(posterior[names])
    return {
        "min_ess_bulk": float(min(float(ess[name].min()) for name in names)),
        "max_rhat": float(max(float(rhat[name].max()) for name in names)),
    }


def run_bayesmix(X, family, k, options, names, settings, X_new=None, seeds=(0,)) -> list[dict]:
    """Fit in this (fresh) process with ``seeds[0]``, then again with the other seeds.

    The first fit's time is the time to a posterior (``total_s``). With ``X_new``, a
    second fit of the same structure on new data follows it (``second_total_s``): what a
    user's next fit costs, with nothing left to compile or load. The other seeds' fits
    (on ``X``) add draws of the sampler's randomness: their ESS, R-hat and divergences,
    and their ``warm_s``.
    """
    import nutpie  # noqa: F401  (imported before the clock, as the plain peers do)

    runs = []
    for index, seed in enumerate(seeds):
        estimator = _estimator(family, k, options, seed)  # imports PyMC: before the clock
        start = time.perf_counter()
        estimator.fit(X, method="nuts", progressbar=False, **settings)
        elapsed = time.perf_counter() - start
        result = {"seed": seed, "total_s" if index == 0 else "warm_s": elapsed}
        if index == 0:
            timings = json.loads(estimator.idata.attrs.get("timings", "{}"))
            result |= {f"{key}_s": value for key, value in timings.items()}
            result["path"] = "fused kernel" if "NUTS on the fused" in _LOG.text else "compiled PyMC"
        result |= _ess_rhat(estimator.idata["posterior"], names)
        result |= _sampler_stats(estimator.idata["sample_stats"])
        if index == 0 and X_new is not None:
            again = _estimator(family, k, options, seed)
            start = time.perf_counter()
            again.fit(X_new, method="nuts", progressbar=False, **settings)
            result["second_total_s"] = time.perf_counter() - start
            timings = json.loads(again.idata.attrs.get("timings", "{}"))
            result["second_nuts_s"] = timings.get("nuts")
        runs.append(result)
    return runs


def plain_model(X, family, k, options):
    """Return the formulation users write by hand, with bayesmix's default priors."""
    import pymc as pm
    import pytensor.tensor as pt
    from pymc.distributions.transforms import Ordered

    if family == "gaussian":
        from run import plain_pymc_model

        return plain_pymc_model(X, k, means_prior=options["means_prior"])
    x = X[:, 0]
    with pm.Model() as model:
        weights = pm.Dirichlet("weights", a=np.ones(k))
        if family == "student_t":
            loc, scale = x.mean(), x.std()
            means = pm.Normal(
                "means",
                mu=loc,
                sigma=3 * scale,
                shape=k,
                transform=Ordered(),
                initval=loc + scale * np.linspace(-1, 1, k),
            )
            sigma = pm.HalfNormal("sigma", sigma=2 * scale, shape=k)
            dof = pm.Gamma("dof", alpha=2.0, beta=0.1, shape=k)
            components = pm.StudentT.dist(nu=dof, mu=means, sigma=sigma)
            pm.Mixture("x", w=weights, comp_dists=components, observed=x)
        elif family in ("poisson", "negative_binomial"):
            mean = max(x.mean(), 1e-3)
            rates = pm.Gamma(
                "rates",
                alpha=1.0,
                beta=1.0 / mean,
                shape=k,
                transform=Ordered(positive=True),
                initval=mean * np.linspace(0.5, 1.5, k),
            )
            if family == "poisson":
                components = pm.Poisson.dist(mu=rates)
            else:
                dispersion = pm.Gamma("dispersion", alpha=2.0, beta=0.1, shape=k)
                components = pm.NegativeBinomial.dist(mu=rates, alpha=dispersion)
            pm.Mixture("x", w=weights, comp_dists=components, observed=x)
        else:  # Bernoulli items: independent within a class, no pm.Mixture for them
            probs = pm.Beta("probs", alpha=1.0, beta=1.0, shape=(k, X.shape[1]))
            items = X[:, None, :]
            log_p = (items * pt.log(probs) + (1 - items) * pt.log1p(-probs)).sum(-1)
            pm.Potential("x", pm.math.logsumexp(pt.log(weights) + log_p, axis=1).sum())
    return model


def em_initial_points(X, family, k, options) -> dict:
    """Return bayesmix's EM estimate as initial values of :func:`plain_model`'s variables."""
    if family == "gaussian":
        from run import em_initial_points as gaussian_points

        return gaussian_points(X, k)
    em = _estimator(family, k, options).fit(X, method="em").em_
    params = {name: np.asarray(value) for name, value in em.params.items()}
    if family == "bernoulli":
        return {"weights": em.weights, "probs": np.clip(params["probs"], 1e-3, 1 - 1e-3)}
    location = "means" if family == "student_t" else "rates"
    order = np.argsort(params[location][:, 0])
    points = {"weights": np.asarray(em.weights)[order]}
    if family == "student_t":
        points["means"] = params["means"][order, 0]
        points["sigma"] = np.sqrt(params["covariances"].reshape(k, -1)[order, 0])
        points["dof"] = params["dof"][order]
    else:
        for name in ("rates", "dispersion"):
            if name in params:
                points[name] = np.maximum(params[name][order, 0], 1e-3)
    return points


def run_plain(X, family, k, options, names, settings, em_start: bool, seeds=(0,)) -> list[dict]:
    """Build, compile and sample with ``seeds[0]`` (timed), then sample with the others."""
    import nutpie
    from threadpoolctl import threadpool_limits

    runs = []
    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        model = plain_model(X, family, k, options)
        build = time.perf_counter() - start
        start = time.perf_counter()
        kwargs = {}
        if em_start:
            kwargs = {"initial_points": em_initial_points(X, family, k, options)}
            kwargs["jitter_rvs"] = set()
        em_s = time.perf_counter() - start
        start = time.perf_counter()
        compiled = nutpie.compile_pymc_model(model, backend="numba", **kwargs)
        compile_s = time.perf_counter() - start
        for index, seed in enumerate(seeds):
            start = time.perf_counter()
            idata = nutpie.sample(compiled, seed=seed, progress_bar=False, **settings)
            sample_s = time.perf_counter() - start
            if index == 0:
                result = {"build_s": build, "em_s": em_s, "compile_s": compile_s}
                result |= {"sample_s": sample_s, "total_s": build + em_s + compile_s + sample_s}
            else:
                result = {"warm_s": sample_s}
            result["seed"] = seed
            posterior = idata["posterior"]
            if family == "gaussian":
                result |= _diagnostics(posterior)
            else:
                result |= _ess_rhat(posterior, names)
            result |= _sampler_stats(idata["sample_stats"])
            runs.append(result)
    return runs


class _Log:
    """Collects bayesmix's log records (which path the fit sampled)."""

    text = ""


_LOG = _Log()


def worker(spec: dict) -> dict:
    import logging

    class Handler(logging.Handler):
        def emit(self, record):
            _LOG.text += record.getMessage() + "\n"

    logger = logging.getLogger("bayesmix")
    logger.setLevel(logging.INFO)
    logger.addHandler(Handler())
    family, k, data, options, names = WORKLOADS[spec["workload"]]
    X = data(np.random.default_rng(0))
    settings = spec["settings"]
    seeds = spec.get("seeds", [0])
    if spec["peer"] == "bayesmix":
        X_new = data(np.random.default_rng(1))
        return run_bayesmix(X, family, k, options, names, settings, X_new, seeds)
    em_start = spec["peer"] == "plain-em"
    return run_plain(X, family, k, options, names, settings, em_start, seeds)


def summarise(runs: list[dict]) -> dict:
    """Medians over the fresh processes (seconds) and over every seed (ESS, clean runs).

    ESS per second is the median ESS over the seeds divided by the median seconds of the
    fresh-process fits: how long a posterior takes is a property of the process, how
    large its ESS is a draw of the sampler's randomness.
    """
    fresh = [run for run in runs if "total_s" in run]
    clean = [run["max_rhat"] <= 1.01 and run["divergences"] == 0 for run in runs]
    ess = [run["min_ess_bulk"] for run in runs]
    summary = {
        "total_s": float(np.median([run["total_s"] for run in fresh])),
        "min_ess_bulk": float(np.median(ess)),
        "ess_range": [min(ess), max(ess)],
        "max_rhat": float(np.median([run["max_rhat"] for run in runs])),
        "worst_rhat": max(run["max_rhat"] for run in runs),
        "divergences": sum(run["divergences"] for run in runs),
        "clean": int(sum(clean)),
        "runs": len(runs),
        "processes": len(fresh),
        "converged": bool(np.mean(clean) >= 0.5),
    }
    summary["ess_per_s"] = summary["min_ess_bulk"] / summary["total_s"]
    if "second_total_s" in fresh[0]:
        summary["second_total_s"] = float(np.median([run["second_total_s"] for run in fresh]))
    return summary


def report(rows: list[dict], meta: dict) -> str:
    header = [
        "workload",
        "bayesmix path",
        "bayesmix s",
        "second fit s",
        "ESS (range)",
        "clean runs",
        "plain s, ESS (clean)",
        "plain from EM s, ESS (clean)",
        "ESS/s vs plain from EM",
        "ESS/s vs plain",
    ]

    def ratio(ours: dict, peer: dict | None) -> str:
        """Ratio of median ESS per second; flagged if most of the peer's runs were not clean."""
        if peer is None:
            return "-"
        value = ours["ess_per_s"] / peer["ess_per_s"]
        return f"**{value:.1f}x**" if peer["converged"] else f"{value:.1f}x (mostly not clean)"

    def peer_cell(peer: dict | None) -> str:
        if peer is None:
            return "-"
        return f"{peer['total_s']:.1f}, {peer['min_ess_bulk']:.0f} ({peer['clean']}/{peer['runs']})"

    table = []
    for row in rows:
        ours, plain, em = (summarise(row[peer]) if peer in row else None for peer in PEERS)
        low, high = ours["ess_range"]
        table.append(
            [
                row["workload"],
                row["bayesmix"][0]["path"],
                f"{ours['total_s']:.1f}",
                f"{ours['second_total_s']:.1f}" if "second_total_s" in ours else "-",
                f"{ours['min_ess_bulk']:.0f} ({low:.0f}-{high:.0f})",
                f"{ours['clean']}/{ours['runs']} (R-hat <= {ours['worst_rhat']:.3f})",
                peer_cell(plain),
                peer_cell(em),
                ratio(ours, em),
                ratio(ours, plain),
            ]
        )
    settings = meta["settings"]
    seeds, processes = meta.get("seeds", 1), meta.get("processes", 1)
    lines = [
        "# Time to a posterior, every family",
        "",
        f"{meta['date']}, {meta['machine']}, Python {meta['python']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        f"{settings['chains']} chains x ({settings['tune']} tune + {settings['draws']} draws) "
        f"on the same data, each peer with the sampler seeds 0-{seeds - 1} in {processes} "
        "fresh processes: a process's first fit is timed whole (bayesmix: EM, kernel load, "
        "Laplace map, sampling, post-processing; plain: build, compile, sampling), its "
        "other seeds sample again in the same process. Seconds are the medians of the "
        "fresh fits; ESS (the minimum bulk ESS over the weights and the component "
        "parameters) and clean runs (max R-hat <= 1.01, no divergences) are over all "
        "seeds; ESS/s is the median ESS over the median seconds; second fit: the same "
        "structure on new data of the same size in the same process (nothing left to "
        "compile or load); `python bench/families.py`.",
        "",
        *markdown_table(header, table),
        "",
        "Divergences over all seeds (bayesmix / plain / plain from EM): "
        + "; ".join(
            f"{row['workload'].split(',')[0]} "
            + " / ".join(
                str(sum(r["divergences"] for r in row[peer])) if peer in row else "-"
                for peer in PEERS
            )
            for row in rows
        ),
        "",
        "Min bulk ESS per seed (bayesmix; plain; plain from EM):",
        "",
        *(
            f"- {row['workload'].split(',')[0]}: "
            + "; ".join(
                " ".join(
                    f"{r['min_ess_bulk']:.0f}" for r in sorted(row[peer], key=lambda r: r["seed"])
                )
                if peer in row
                else "-"
                for peer in PEERS
            )
            for row in rows
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short chains, two workloads")
    parser.add_argument(
        "--seeds", type=int, default=None, help=f"sampler seeds per peer (default {SEEDS})"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help=f"fresh processes per peer, each timed (default {PROCESSES})",
    )
    parser.add_argument("--draws", type=int, default=None, help="draws per chain (default 1000)")
    parser.add_argument(
        "--only", nargs="+", default=None, help="workloads whose names contain one of these"
    )
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--stem", default="families", help="results file name (default families)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help="where to write the results")
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))))
        return
    settings = dict(QUICK_SETTINGS if args.quick else SETTINGS)
    if args.draws:
        settings["draws"] = args.draws
    names = QUICK if args.quick else list(WORKLOADS)
    if args.only:
        names = [name for name in names if any(part in name for part in args.only)]
    meta = run_meta(["bayesmix", "pymc", "pytensor", "nutpie", "numba"]) | {"settings": settings}
    # --quick checks the harness: two seeds in two processes unless told otherwise.
    seed_count = args.seeds or (2 if args.quick else SEEDS)
    processes = max(1, min(args.processes or (2 if args.quick else PROCESSES), seed_count))
    meta["seeds"], meta["processes"] = seed_count, processes
    rows = []
    env = dict(os.environ, PYTHONPATH=str(HERE))
    for name in names:
        row = {"workload": name}
        for peer in (peer for peer in PEERS if peer in args.peers):
            row[peer] = []
            for process in range(processes):
                seeds = list(range(process, seed_count, processes))
                spec = {"workload": name, "peer": peer, "settings": settings, "seeds": seeds}
                print(f"{name}: {peer}, seeds {seeds} ...", flush=True)
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    env=env,
                )
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"{name} / {peer} failed:\n{proc.stderr[-3000:]}")
                results = json.loads(lines[-1][len("RESULT ") :])
                row[peer].extend(results)
                print(
                    f"  {results[0]['total_s']:.1f} s; ESS "
                    + ", ".join(f"{r['min_ess_bulk']:.0f}" for r in results)
                    + "; R-hat "
                    + ", ".join(f"{r['max_rhat']:.3f}" for r in results)
                    + f"; {sum(r['divergences'] for r in results)} divergences",
                    flush=True,
                )
        rows.append(row)
    kwargs = {} if args.folder is None else {"folder": args.folder}
    print(write_results(args.stem, meta, rows, report, **kwargs))


if __name__ == "__main__":
    main()
