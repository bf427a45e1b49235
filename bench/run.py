"""Side-by-side benchmark of bayesmix against its peers, each fit in a fresh process.

Usage::

    python bench/run.py            # every workload, results in bench/results/latest.*
    python bench/run.py --quick    # two small workloads, short chains (checks the harness)

Peers on the same data (standardised, separated components, fixed seed) and the same
priors (Dirichlet(1) weights, Normal(mean, 3 sd) means, HalfNormal(2 sd) scales, LKJ(2)):

- ``bayesmix``: ``GaussianMixture().fit(X)`` (nutpie, EM start, relabelling), timed whole;
- ``pymc-plain``: the formulation users write by hand, ``pm.Mixture`` of ``pm.MvNormal``
  with ``LKJCholeskyCov`` and the first mean coordinate ordered, PyMC's default start,
  nutpie with one BLAS thread; build, compile and sampling timed separately;
- ``pymc-plain-em``: the same model and sampler, both chains started (without jitter) at
  scikit-learn's EM estimate, its components sorted by the first mean coordinate: the
  hand-written model at its best, timed with the EM fit;
- ``bayesmix-em`` and ``sklearn-em``: EM to the same tolerance, seconds and final
  log-likelihood.

Metrics: seconds, min bulk ESS over weights, means and covariances, ESS per total second,
max R-hat, divergences, whether chains agree (R-hat <= 1.01 and per-chain mean weights
within 0.05). Results: ``bench/results/latest.json`` and ``latest.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
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

WORKLOADS = {
    "1d-k2-n1e3": {"n_features": 1, "n_components": 2, "n_samples": 1_000},
    "2d-k3-n1e3": {"n_features": 2, "n_components": 3, "n_samples": 1_000},
    "2d-k3-n1e4": {"n_features": 2, "n_components": 3, "n_samples": 10_000},
    "2d-k3-n1e5": {"n_features": 2, "n_components": 3, "n_samples": 100_000},
    "5d-k4-n5e3": {"n_features": 5, "n_components": 4, "n_samples": 5_000},
    "2d-k3-n1e6": {"n_features": 2, "n_components": 3, "n_samples": 1_000_000},
}
QUICK = ["1d-k2-n1e3", "2d-k3-n1e3"]
PEERS = ["bayesmix", "pymc-plain", "pymc-plain-em", "pymc-numpyro", "bayesmix-em", "sklearn-em"]
EM_PEERS = ("bayesmix-em", "sklearn-em")  # point estimates; the other peers sample
# Every EM fit here (the EM peers and pymc-plain-em's start): one start, tol 1e-6.
EM_SETTINGS = {"n_init": 1, "tol": 1e-6, "max_iter": 2000, "random_state": 0}
# (workload, peer) pairs not run, and why (stated in the results).
NOT_RUN = {
    ("2d-k3-n1e6", "pymc-plain"): "hours at N = 10^6 (370 s at N = 10^5)",
    ("2d-k3-n1e6", "pymc-plain-em"): "hours at N = 10^6 (as pymc-plain)",
    ("2d-k3-n1e6", "pymc-numpyro"): "hours at N = 10^6",
    ("2d-k3-n1e5", "pymc-numpyro"): "about 75 min expected (441 s at N = 10^4 on this machine)",
    ("5d-k4-n5e3", "pymc-numpyro"): "stopped after 26 min with 11 GB resident (2026-11-26)",
}


def make_data(n_features: int, n_components: int, n_samples: int, seed: int = 0) -> np.ndarray:
    """Standardised data from separated components, the same for every peer.

    Covariances ``F F^T + I / 2`` (F with N(0, 0.4^2) entries); means drawn from N(0, 4^2)
    per coordinate until every pair of components is at least four times the sum of their
    largest standard deviations apart (so no workload is a weakly identified overlap).
    """
    from bayesmix.datasets import make_mixture

    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_components, n_features, n_features)) * 0.4
    covariances = factors @ np.swapaxes(factors, 1, 2) + 0.5 * np.eye(n_features)
    sd = np.sqrt(np.linalg.eigvalsh(covariances)[:, -1])
    pairs = np.triu_indices(n_components, 1)
    needed = 4.0 * (sd[:, None] + sd[None])[pairs]
    for _ in range(10_000):
        means = rng.normal(0.0, 4.0, size=(n_components, n_features))
        gaps = np.linalg.norm(means[:, None] - means[None], axis=-1)[pairs]
        if np.all(gaps >= needed):
            break
    else:  # pragma: no cover - the means are far apart in a few draws
        raise RuntimeError("no separated means found")
    weights = np.full(n_components, 1.0 / n_components)
    X, _ = make_mixture(n_samples, weights, means, covariances, random_state=rng)
    return (X - X.mean(0)) / X.std(0)


def _diagnostics(posterior, weights_name: str = "weights") -> dict:
    import arviz_stats as azs

    posterior = posterior.to_dataset() if hasattr(posterior, "to_dataset") else posterior
    names = [name for name in ("weights", "means", "covariances") if name in posterior]
    ess = azs.ess(posterior[names], method="bulk")
    rhat = azs.rhat(posterior[names])
    min_ess = float(min(float(ess[name].min()) for name in names))
    max_rhat = float(max(float(rhat[name].max()) for name in names))
    per_chain = posterior[weights_name].mean("draw").to_numpy()
    spread = float(np.ptp(per_chain, axis=0).max())
    return {
        "min_ess_bulk": min_ess,
        "max_rhat": max_rhat,
        "weights_chain_spread": spread,
        "chains_agree": bool(max_rhat <= 1.01 and spread < 0.05),
    }


def _sampler_stats(sample_stats) -> dict:
    """Divergences and mean leapfrog steps per draw (the gradients a draw costs)."""
    result = {"divergences": int(sample_stats["diverging"].sum())}
    if "n_steps" in sample_stats:
        result["steps_per_draw"] = float(sample_stats["n_steps"].mean())
    return result


def run_bayesmix(X: np.ndarray, k: int, settings: dict) -> dict:
    from bayesmix import GaussianMixture  # imports PyMC etc.: before the clock starts

    start = time.perf_counter()
    gm = GaussianMixture(n_components=k, random_state=0)
    gm.fit(X, progressbar=False, **settings)
    total = time.perf_counter() - start
    result = {"total_s": total}
    timings = json.loads(gm.idata.attrs.get("timings", "{}"))
    result |= {f"{phase}_s": seconds for phase, seconds in timings.items()}
    result |= _diagnostics(gm.idata["posterior"])
    result |= _sampler_stats(gm.idata["sample_stats"])
    return result


def plain_pymc_model(X: np.ndarray, k: int, means_prior: dict | None = None):
    """Build the formulation users write by hand, with bayesmix's default priors.

    ``means_prior``: ``StudentT`` parameters (``nu``, ``mu``, ``sigma``) of the means
    instead of the default ``Normal(mean, 3 sd)`` (``bench/families.py``).
    """
    import pymc as pm
    import pytensor.tensor as pt
    from pymc.distributions.transforms import ordered

    d = X.shape[1]
    loc, scale = X.mean(0), X.std(0)
    with pm.Model() as model:
        weights = pm.Dirichlet("weights", a=np.ones(k))
        if means_prior is None:
            means_dist = {"first": (pm.Normal, {"mu": loc[0], "sigma": 3 * scale[0]})}
            means_dist["rest"] = (pm.Normal, {"mu": loc[1:], "sigma": 3 * scale[1:]})
        else:
            means_dist = dict.fromkeys(("first", "rest"), (pm.StudentT, means_prior))
        dist, params = means_dist["first"]
        first = dist(
            "means_first",
            **params,
            shape=k,
            transform=ordered,
            initval=np.linspace(-1, 1, k) * scale[0] + loc[0],
        )
        columns = [first[:, None]]
        if d > 1:
            dist, params = means_dist["rest"]
            columns.append(dist("means_rest", **params, shape=(k, d - 1)))
        means = pm.Deterministic("means", pt.concatenate(columns, axis=1))
        chols, covs = [], []
        for j in range(k):
            if d > 1:
                chol, _, _ = pm.LKJCholeskyCov(
                    f"chol_cov_{j}",
                    n=d,
                    eta=2.0,
                    sd_dist=pm.HalfNormal.dist(sigma=2 * scale, shape=d),
                    compute_corr=True,
                )
            else:
                chol = pm.HalfNormal(f"sigma_{j}", sigma=2 * scale[0])[None, None]
            chols.append(chol)
            covs.append(chol @ chol.T)
        pm.Deterministic("covariances", pt.stack(covs))
        components = [pm.MvNormal.dist(mu=means[j], chol=chols[j]) for j in range(k)]
        pm.Mixture("x", w=weights, comp_dists=components, observed=X)
    return model


def em_initial_points(X: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """scikit-learn's EM estimate as initial values of :func:`plain_pymc_model`'s variables.

    Components are sorted by their first mean coordinate (the model orders it); each
    ``LKJCholeskyCov`` starts at the packed lower Cholesky factor of its covariance.
    """
    from sklearn.mixture import GaussianMixture

    em = GaussianMixture(n_components=k, **EM_SETTINGS).fit(X)
    order = np.argsort(em.means_[:, 0])
    means, covariances = em.means_[order], em.covariances_[order]
    points = {"weights": em.weights_[order], "means_first": means[:, 0]}
    d = X.shape[1]
    if d > 1:
        points["means_rest"] = means[:, 1:]
        rows, cols = np.tril_indices(d)
        for j, covariance in enumerate(covariances):
            points[f"chol_cov_{j}"] = np.linalg.cholesky(covariance)[rows, cols]
    else:
        for j, covariance in enumerate(covariances):
            points[f"sigma_{j}"] = np.sqrt(covariance[0, 0])
    return points


def run_plain(X: np.ndarray, k: int, settings: dict, em_start: bool = False) -> dict:
    """Sample :func:`plain_pymc_model` with nutpie, from PyMC's start or from EM's."""
    import nutpie
    import sklearn.mixture  # noqa: F401  (imports are not timed)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        model = plain_pymc_model(X, k)
        build = time.perf_counter() - start
        start = time.perf_counter()
        start_kwargs = {}
        if em_start:
            start_kwargs = {"initial_points": em_initial_points(X, k), "jitter_rvs": set()}
        em_s = time.perf_counter() - start
        start = time.perf_counter()
        compiled = nutpie.compile_pymc_model(model, backend="numba", **start_kwargs)
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        idata = nutpie.sample(
            compiled,
            draws=settings["draws"],
            tune=settings["tune"],
            chains=settings["chains"],
            seed=0,
            progress_bar=False,
        )
        sample = time.perf_counter() - start
    result = {"build_s": build, "compile_s": compile_s, "sample_s": sample}
    if em_start:
        result["em_s"] = em_s
    result["total_s"] = build + em_s + compile_s + sample
    result |= _diagnostics(idata["posterior"])
    result |= _sampler_stats(idata["sample_stats"])
    return result


def run_numpyro(X: np.ndarray, k: int, settings: dict) -> dict:
    """Sample the plain formulation with NumPyro through ``pm.sample(nuts_sampler="numpyro")``.

    JAX compiles while sampling starts, so compile and sampling time are one figure.
    """
    import pymc as pm
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        model = plain_pymc_model(X, k)
        build = time.perf_counter() - start
        start = time.perf_counter()
        idata = pm.sample(
            model=model,
            nuts_sampler="numpyro",
            draws=settings["draws"],
            tune=settings["tune"],
            chains=settings["chains"],
            random_seed=0,
            progressbar=False,
            compute_convergence_checks=False,
        )
        sample = time.perf_counter() - start
    result = {"build_s": build, "sample_s": sample, "total_s": build + sample}
    result |= _diagnostics(idata["posterior"])
    result |= _sampler_stats(idata["sample_stats"])
    return result


def run_em(X: np.ndarray, k: int, which: str) -> dict:
    from sklearn.mixture import GaussianMixture

    from bayesmix import GaussianMixture as BayesmixGaussianMixture  # imported untimed

    spec = {"n_components": k, **EM_SETTINGS}

    def fit() -> tuple[float, int]:
        if which == "bayesmix-em":
            gm = BayesmixGaussianMixture(**spec).fit(X, method="em")
            return gm.em_.log_likelihood * len(X), gm.em_.n_iter
        sk = GaussianMixture(**spec).fit(X)
        return sk.score(X) * len(X), sk.n_iter_

    start = time.perf_counter()
    loglik, n_iter = fit()
    seconds = time.perf_counter() - start
    # The same fit again in this process: without one-time costs (imports, loading numba
    # kernels from the on-disk cache), as in select_k or any second fit.
    start = time.perf_counter()
    fit()
    warm = time.perf_counter() - start
    return {
        "total_s": seconds,
        "warm_s": warm,
        "log_likelihood": float(loglik),
        "n_iter": int(n_iter),
        "ns_per_point_iter": 1e9 * warm / (len(X) * max(int(n_iter), 1)),
    }


def worker(spec: dict) -> dict:
    """Run one (workload, peer) fit in this process and return its metrics."""
    import resource

    # NumPyro runs chains in parallel only on as many (host) devices; set before JAX loads.
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

    X = make_data(**WORKLOADS[spec["workload"]])
    k = WORKLOADS[spec["workload"]]["n_components"]
    settings = spec["settings"]
    if spec["peer"] == "bayesmix":
        metrics = run_bayesmix(X, k, settings)
    elif spec["peer"] in ("pymc-plain", "pymc-plain-em"):
        metrics = run_plain(X, k, settings, em_start=spec["peer"] == "pymc-plain-em")
    elif spec["peer"] == "pymc-numpyro":
        metrics = run_numpyro(X, k, settings)
    else:  # EM_PEERS
        metrics = run_em(X, k, spec["peer"])
    # Peak resident memory of this process (Linux reports KiB), data included.
    metrics["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return metrics


def machine() -> dict:
    packages = ["bayesmix", "pymc", "pytensor", "nutpie", "numpy", "arviz-stats", "scikit-learn"]
    packages += [name for name in ("numpyro", "jax") if importlib.util.find_spec(name)]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": {name: version(name) for name in packages},
    }


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _plain_ratio(rate: float | None, reference: dict, name: str) -> str:
    """ESS/s relative to a plain PyMC row; none when its chains disagree (its ESS is no rate)."""
    ess, total = reference.get("min_ess_bulk"), reference.get("total_s")
    if not rate or not ess or not total:
        return ""
    if not reference.get("chains_agree", False):
        return f"{name} failed"
    return format(rate / (ess / total), ".1f")


def _nuts_row(row: dict, plain: dict, plain_em: dict) -> list[str]:
    m = row["metrics"]
    ess = m.get("min_ess_bulk")
    rate = ess / m["total_s"] if ess is not None else None
    return [
        row["workload"],
        row["peer"],
        _fmt(m["total_s"], ".2f"),
        _fmt(m.get("compile_s"), ".1f"),
        _fmt(m.get("sample_s", m.get("nuts_s")), ".1f"),
        _fmt(ess, ".0f"),
        _fmt(rate, ".1f"),
        _plain_ratio(rate, plain, "plain"),
        _plain_ratio(rate, plain_em, "plain-EM"),
        _fmt(plain["total_s"] / m["total_s"] if "total_s" in plain else None, ".1f"),
        _fmt(m.get("max_rhat"), ".3f"),
        str(m.get("divergences", "")),
        _fmt(m.get("steps_per_draw"), ".1f"),
        str(m.get("chains_agree", "")),
        _fmt(m.get("peak_rss_mib"), ".0f"),
    ]


def _em_row(row: dict, sklearn: dict) -> list[str]:
    m = row["metrics"]
    ours = row["peer"] == "bayesmix-em"
    return [
        row["workload"],
        row["peer"],
        _fmt(m["total_s"], ".3f"),
        _fmt(m.get("warm_s"), ".3f"),
        _fmt(m.get("log_likelihood"), ".2f"),
        str(m.get("n_iter", "")),
        _fmt(sklearn["total_s"] / m["total_s"] if ours and "total_s" in sklearn else None, ".1f"),
        _fmt(sklearn["warm_s"] / m["warm_s"] if ours and "warm_s" in sklearn else None, ".1f"),
        _fmt(m.get("peak_rss_mib"), ".0f"),
    ]


def markdown(results: dict) -> str:
    """Two tables (NUTS peers, EM peers) from ``results``."""
    machine_ = results["machine"]
    lines = [
        f"# bayesmix benchmark ({results['mode']})",
        "",
        f"Machine: {machine_['platform']}, {machine_['cpus']} CPUs, Python {machine_['python']}; "
        + ", ".join(f"{k} {v}" for k, v in machine_["packages"].items())
        + ".",
        f"NUTS settings: {results['settings']}. Commands: "
        + ", then ".join(f"`{c}`" for c in results["commands"])
        + "."
        + (f" Not run: {'; '.join(results['skipped'])}." if results.get("skipped") else ""),
        "",
        "Time to a posterior (every fit in a fresh process, imports excluded): total = "
        "build + compile + sampling (bayesmix: EM + NUTS + relabelling + log-likelihood). "
        "ESS/s = min bulk ESS over weights, means and covariances per total second. "
        "Plain-EM = pymc-plain-em, the plain model started at scikit-learn's EM estimate "
        "(its total includes that EM fit). Time vs plain = plain total seconds / this peer's. "
        "Where a reference's chains disagree (R-hat > 1.01 or chains in different modes) it "
        "has no posterior to compare rates with. "
        "Steps/draw = mean leapfrog steps (gradient evaluations) per draw after tuning "
        "(blank: not recorded in that run).",
        "",
        "| workload | peer | total s | compile s | sample s | min bulk ESS | ESS/s | "
        "ESS/s vs plain | ESS/s vs plain-EM | time vs plain | max R-hat | divergences | "
        "steps/draw | chains agree | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(row["workload"], row["peer"]): row["metrics"] for row in results["rows"]}
    em_lines = [
        "",
        "EM (one start, tol 1e-6): cold = first fit in a fresh process (imports excluded, "
        "numba kernels loaded), warm = the same fit again in that process.",
        "",
        "| workload | peer | cold s | warm s | log-likelihood | iterations | speed-up cold | "
        "speed-up warm | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        if "error" in row["metrics"]:
            line = f"| {row['workload']} | {row['peer']} | failed: {row['metrics']['error']} |"
            (em_lines if row["peer"] in EM_PEERS else lines).append(line)
        elif row["peer"] in EM_PEERS:
            sklearn = by_key.get((row["workload"], "sklearn-em"), {})
            em_lines.append("| " + " | ".join(_em_row(row, sklearn)) + " |")
        else:
            plain = by_key.get((row["workload"], "pymc-plain"), {})
            plain_em = by_key.get((row["workload"], "pymc-plain-em"), {})
            lines.append("| " + " | ".join(_nuts_row(row, plain, plain_em)) + " |")
    return "\n".join(lines + em_lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small workloads, short chains")
    parser.add_argument("--out", default=str(HERE / "results"), help="results folder")
    parser.add_argument("--workloads", help="comma-separated subset of " + ",".join(WORKLOADS))
    parser.add_argument("--peers", help="comma-separated subset of " + ",".join(PEERS))
    parser.add_argument(
        "--update",
        action="store_true",
        help="replace only the rows run now in the existing latest.json (same mode)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    names = QUICK if args.quick else list(WORKLOADS)
    if args.workloads:
        names = args.workloads.split(",")
    peers = args.peers.split(",") if args.peers else PEERS
    unknown = (set(names) - set(WORKLOADS)) | (set(peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown workloads or peers: {sorted(unknown)}")
    settings = (
        {"draws": 200, "tune": 200, "chains": 2}
        if args.quick
        else {"draws": 1000, "tune": 1000, "chains": 2}
    )
    command = "python bench/run.py" + "".join(
        f" {flag}"
        for flag, used in (
            ("--quick", args.quick),
            (f"--workloads {args.workloads}", args.workloads),
            (f"--peers {args.peers}", args.peers),
            ("--update", args.update),
        )
        if used
    )
    rows = []
    skipped = []
    if importlib.util.find_spec("numpyro") is None:
        skipped.append("pymc-numpyro (NumPyro/JAX not installed: pip install numpyro)")
    skipped += [
        f"{peer} on {name} ({reason})" for (name, peer), reason in NOT_RUN.items() if name in names
    ]
    for name in names:
        for peer in peers:
            if (name, peer) in NOT_RUN or any(note.startswith(peer + " (") for note in skipped):
                continue
            spec = {
                "workload": name,
                "peer": peer,
                "settings": settings,
            }
            done = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps(spec)],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            if done.returncode == 0:
                metrics = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                metrics = {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:200]}
            rows.append({"workload": name, "peer": peer, "metrics": metrics})
            print(name, peer, metrics, flush=True)
    out = Path(args.out)
    results = {
        "mode": "quick" if args.quick else "full",
        "commands": [command],
        "settings": settings,
        "machine": machine(),
        "workloads": {name: WORKLOADS[name] for name in names},
        "rows": rows,
        "skipped": skipped,
    }
    if args.update and (out / "latest.json").exists():
        results = _merged(json.loads((out / "latest.json").read_text()), results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    (out / "latest.md").write_text(markdown(results))
    failed = [row for row in rows if "error" in row["metrics"]]
    return 1 if failed else 0


def _merged(old: dict, new: dict) -> dict:
    """``old`` with the rows of ``new`` replacing (or added after) the same (workload, peer)."""
    if old.get("mode") != new["mode"] or old.get("settings") != new["settings"]:
        raise SystemExit("--update: the existing results used other settings; run everything")
    fresh = {(row["workload"], row["peer"]): row for row in new["rows"]}
    rows = [
        fresh.pop((row["workload"], row["peer"]), row)
        for row in old["rows"]
        if (row["workload"], row["peer"]) not in NOT_RUN
    ]
    rows += list(fresh.values())
    order = list(WORKLOADS)
    rows.sort(key=lambda row: (order.index(row["workload"]), PEERS.index(row["peer"])))
    return {key: value for key, value in old.items() if key != "command"} | {
        "commands": old.get("commands", [old.get("command", "")]) + new["commands"],
        "workloads": old["workloads"] | new["workloads"],
        "rows": rows,
        "machine": new["machine"],
        "skipped": sorted(set(old.get("skipped", [])) | set(new["skipped"])),
    }


if __name__ == "__main__":
    sys.exit(main())
