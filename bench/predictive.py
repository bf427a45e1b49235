"""Predictive quantities of many posterior draws: the families' kernels against NumPy.

Usage::

    python bench/predictive.py            # results in bench/results/predictive.{json,md}
    python bench/predictive.py --quick    # 200 draws x 2000 rows (checks the harness)

For each family (D = 2 features, K = 3 components; Bernoulli: 6 items) and 1000 posterior
draws (random parameters of the family) x 10,000 rows: the seconds of

- the pointwise log-likelihood (:func:`bayesmix.stats.pointwise_log_likelihood`, the
  ``log_likelihood`` group behind LOO and WAIC, and ``score_samples``), and
- the posterior responsibilities (:func:`bayesmix.stats.posterior_responsibilities`,
  ``predict_proba`` of a NUTS fit, which averages up to 1000 draws),

with the family's compiled kernel (its ``_fast_pointwise``, what bayesmix uses at this
size) and with the NumPy blocks of its ``component_log_prob`` (the reference), best of
three in one warm process (kernels loaded), and the largest absolute difference of the
two results.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _table import markdown_table, run_meta, write_results
from scipy.stats import wishart

import bayesmix as bm
from bayesmix.stats import pointwise_log_likelihood, posterior_responsibilities

K = 3


def _gaussian(rng, n, s):
    X = rng.normal(scale=3.0, size=(n, 2))
    cov = wishart(df=5, scale=np.eye(2) / 5).rvs(size=s * K, random_state=rng)
    params = (rng.normal(scale=3.0, size=(s, K, 2)), cov.reshape(s, K, 2, 2))
    return bm.GaussianMixture(n_components=K), X, params


def _student_t(rng, n, s):
    X = rng.standard_t(3.0, size=(n, 2)) * 2.0
    scales = wishart(df=5, scale=np.eye(2) / 5).rvs(size=s * K, random_state=rng)
    dof = rng.gamma(2.0, 5.0, size=(s, K)) + 0.5
    params = (rng.normal(scale=3.0, size=(s, K, 2)), scales.reshape(s, K, 2, 2), dof)
    return bm.StudentTMixture(n_components=K), X, params


def _poisson(rng, n, s):
    X = rng.poisson(6.0, size=(n, 2)).astype(float)
    return bm.PoissonMixture(n_components=K), X, (rng.gamma(3.0, 2.0, (s, K, 2)),)


def _negative_binomial(rng, n, s):
    X = rng.negative_binomial(3, 0.3, size=(n, 2)).astype(float)
    params = (rng.gamma(3.0, 2.0, (s, K, 2)), rng.gamma(2.0, 2.0, (s, K, 2)) + 0.2)
    return bm.NegativeBinomialMixture(n_components=K), X, params


def _bernoulli(rng, n, s):
    X = rng.integers(0, 2, size=(n, 6)).astype(float)
    return bm.BernoulliMixture(n_components=K), X, (rng.uniform(0.02, 0.98, (s, K, 6)),)


WORKLOADS = {
    "Gaussian, full": _gaussian,
    "Student-t, full": _student_t,
    "Poisson": _poisson,
    "Negative binomial": _negative_binomial,
    "Bernoulli": _bernoulli,
}


def _best(fn, rounds=3):
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def measure(name, make, n, s):
    rng = np.random.default_rng(0)
    estimator, X, params = make(rng, n, s)
    weights = rng.dirichlet(np.ones(K), s)
    numpy = {"component_log_prob": estimator.component_log_prob}
    fast = {**numpy, "fast_pointwise": estimator._fast_pointwise}
    far = {"far_log_prob": estimator._far_log_prob}
    row = {"workload": name, "draws": s, "rows": n}
    for quantity, fn, extra in [
        ("pointwise", pointwise_log_likelihood, {}),
        ("responsibilities", posterior_responsibilities, far),
    ]:
        fn(X[:10], weights, *params, **fast, **extra)  # load the kernel
        kernel_s, ours = _best(lambda fn=fn, e=extra: fn(X, weights, *params, **fast, **e))
        numpy_s, ref = _best(lambda fn=fn, e=extra: fn(X, weights, *params, **numpy, **e))
        row[f"{quantity}_kernel_s"] = kernel_s
        row[f"{quantity}_numpy_s"] = numpy_s
        row[f"{quantity}_max_abs_diff"] = float(np.max(np.abs(ours - ref)))
    return row


def report(rows, meta):
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        "# Predictive quantities of many draws: kernels against NumPy",
        "",
        f"{meta['date']}, {meta['machine']}, Python {meta['python']}; {versions}",
        "",
        f"{rows[0]['draws']} draws x {rows[0]['rows']:,} rows, D = 2 (Bernoulli: 6 items), "
        "K = 3, best of 3 in a warm process; `python bench/predictive.py`.",
        "",
    ]
    header = [
        "workload",
        "log-lik kernel s",
        "log-lik NumPy s",
        "speed-up",
        "max abs diff",
        "resp. kernel s",
        "resp. NumPy s",
        "speed-up",
        "max abs diff",
    ]
    body = []
    for r in rows:
        cells = [r["workload"]]
        for q in ("pointwise", "responsibilities"):
            k, n = r[f"{q}_kernel_s"], r[f"{q}_numpy_s"]
            cells += [f"{k:.3f}", f"{n:.3f}", f"{n / k:.1f}x", f"{r[f'{q}_max_abs_diff']:.1e}"]
        body.append(cells)
    return "\n".join(lines + markdown_table(header, body)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 draws x 2000 rows")
    parser.add_argument("--folder", type=Path, default=None, help="where to write the results")
    args = parser.parse_args()
    n, s = (2_000, 200) if args.quick else (10_000, 1000)
    meta = run_meta(["bayesmix", "numba", "numpy"])
    rows = []
    for name, make in WORKLOADS.items():
        print(name, flush=True)
        rows.append(measure(name, make, n, s))
    kwargs = {} if args.folder is None else {"folder": args.folder}
    print(write_results("predictive", meta, rows, report, **kwargs))


if __name__ == "__main__":
    main()
