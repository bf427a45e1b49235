"""Log density + gradient per observation for every family: bayesmix's NUTS path vs PyMC's.

Usage::

    python bench/family_kernels.py            # results in bench/results/family_kernels.{json,md}
    python bench/family_kernels.py --quick    # N = 1e4 only (checks the harness)

For each family (D = 2 features, K = 3 components, default priors unless stated) and
N = 1e4, 1e5, 1e6 rows: nanoseconds per observation of one log density + gradient on
one thread, called through the C entry point nutpie's sampler calls, for

- **bayesmix**: what ``fit(method="nuts")`` samples: the family's fused numba kernel
  (``_nuts_target``: the Gaussian kernel, :mod:`bayesmix.nuts.expfam` for the Poisson
  and Bernoulli families) or, where the family has none, the PyMC model compiled by
  nutpie (then the two columns measure the same code);
- **PyMC/nutpie**: the family's PyMC model (``build_model``) compiled by
  ``nutpie.compile_pymc_model(model, backend="numba")`` for each N (compile seconds
  reported at N = 1e4).

Both are evaluated at the same unconstrained point; their log densities are compared
(relative difference reported). Best of several rounds.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import markdown_table, run_meta, write_results
from kernel import _time_per_point

N_COMPONENTS = 3
N_FEATURES = 2
SIZES = (10_000, 100_000, 1_000_000)


def _gaussian(rng, n):
    centres = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 4.0]])
    return centres[rng.integers(3, size=n)] + rng.normal(size=(n, 2))


def _heavy(rng, n):
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [1.0, 6.0]])
    return centres[rng.integers(3, size=n)] + rng.standard_t(4, size=(n, 2))


def _counts(rng, n):
    rates = np.array([[1.0, 6.0], [8.0, 2.0], [4.0, 4.0]])
    return rng.poisson(rates[rng.integers(3, size=n)]).astype(float)


def _overdispersed(rng, n):
    means = np.array([[1.0, 6.0], [8.0, 2.0], [4.0, 4.0]])[rng.integers(3, size=n)]
    return rng.negative_binomial(5.0, 5.0 / (5.0 + means)).astype(float)


def _binary(rng, n):
    probs = np.array([[0.9, 0.2], [0.1, 0.8], [0.5, 0.5]])
    return (rng.uniform(size=(n, 2)) < probs[rng.integers(3, size=n)]).astype(float)


def workloads():
    import bayesmix as bm

    return {
        "Gaussian, full": (lambda: bm.GaussianMixture(n_components=3), _gaussian),
        "Gaussian, diag": (
            lambda: bm.GaussianMixture(n_components=3, covariance_type="diag"),
            _gaussian,
        ),
        "Gaussian, diag, StudentT prior on means": (
            lambda: bm.GaussianMixture(
                n_components=3,
                covariance_type="diag",
                priors={"means": bm.Prior("StudentT", nu=3.0, mu=0.0, sigma=5.0)},
            ),
            _gaussian,
        ),
        "Student-t, diag": (
            lambda: bm.StudentTMixture(n_components=3, covariance_type="diag"),
            _heavy,
        ),
        "Poisson": (lambda: bm.PoissonMixture(n_components=3), _counts),
        "Negative binomial": (lambda: bm.NegativeBinomialMixture(n_components=3), _overdispersed),
        "Bernoulli": (lambda: bm.BernoulliMixture(n_components=3), _binary),
    }


def _c_call(address: int, n_dim: int, x: np.ndarray, user_data: int):
    """Return a no-argument call of a nutpie C logp callback at ``x``, and its logp array."""
    function = ctypes.CFUNCTYPE(
        ctypes.c_int64,
        ctypes.c_uint64,
        ctypes.POINTER(ctypes.c_double),
        ctypes.POINTER(ctypes.c_double),
        ctypes.POINTER(ctypes.c_double),
        ctypes.c_void_p,
    )(address)
    x = np.ascontiguousarray(x, dtype=np.float64)
    grad = np.empty(n_dim)
    logp = np.empty(1)
    args = (
        ctypes.c_uint64(n_dim),
        x.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        grad.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        logp.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        ctypes.c_void_p(user_data),
    )

    def call(args=args, keep=(x, grad, logp)):
        code = function(*args)
        if code not in (0, 4):
            raise RuntimeError(f"the logp callback failed with code {code}")

    return call, logp


def measure(name: str, make, generate, sizes) -> dict:
    import nutpie

    rng = np.random.default_rng(0)
    row = {"workload": name, "ns_bayesmix": {}, "ns_pymc": {}, "logp_rel_diff": {}}
    for n in sizes:
        X = generate(rng, n)
        estimator = make()
        data, priors = estimator._prepare(X)
        target = estimator._nuts_target(data, priors)
        start = time.perf_counter()
        compiled = nutpie.compile_pymc_model(estimator._build(data, priors), backend="numba")
        if n == sizes[0]:
            row["compile_pymc_s"] = time.perf_counter() - start
            row["fused"] = target is not None
        x = np.random.default_rng(1).normal(scale=0.3, size=compiled.n_dim)
        pymc_call, pymc_logp = _c_call(
            compiled.compiled_logp_func.address,
            compiled.n_dim,
            x,
            int(compiled.user_data.ctypes.data),
        )
        row["ns_pymc"][str(n)] = _time_per_point(pymc_call, n, rounds=5)
        if target is None:  # bayesmix samples the compiled PyMC model
            row["ns_bayesmix"][str(n)] = row["ns_pymc"][str(n)]
            print(f"  N={n:,}: {row['ns_pymc'][str(n)]:.1f} ns (the compiled PyMC model)")
            continue
        model = target.nutpie_model(target.shared_data(data.values))
        fused_call, fused_logp = _c_call(
            model.target.c_callbacks()[0].address,
            target.n_dim,
            x,
            int(model.user_data.ctypes.data),
        )
        row["ns_bayesmix"][str(n)] = _time_per_point(fused_call, n, rounds=5)
        diff = abs(fused_logp[0] - pymc_logp[0]) / abs(pymc_logp[0])
        row["logp_rel_diff"][str(n)] = float(diff)
        print(f"  N={n:,}: {row['ns_bayesmix'][str(n)]:.1f} vs {row['ns_pymc'][str(n)]:.1f} ns")
    return row


def report(rows: list[dict], meta: dict) -> str:
    sizes = list(rows[0]["ns_pymc"])
    header = ["workload", "bayesmix path"]
    for n in sizes:
        header += [f"bayesmix ns, N={int(n):.0e}", f"PyMC ns, N={int(n):.0e}"]
    header += ["PyMC compile s", "max rel. logp diff"]
    table = []
    for row in rows:
        cells = [row["workload"], "fused kernel" if row["fused"] else "compiled PyMC"]
        for n in sizes:
            cells += [f"{row['ns_bayesmix'][n]:.1f}", f"{row['ns_pymc'][n]:.1f}"]
        diffs = row["logp_rel_diff"].values()
        cells += [f"{row['compile_pymc_s']:.1f}", f"{max(diffs):.1e}" if diffs else "(same)"]
        table.append(cells)
    lines = [
        "# Log density + gradient per observation, every family",
        "",
        f"{meta['date']}, {meta['machine']}, Python {meta['python']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "D = 2, K = 3, one thread, through nutpie's C entry point; "
        "`python bench/family_kernels.py`.",
        "",
        *markdown_table(header, table),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e4 only")
    parser.add_argument("--folder", type=Path, default=None, help="where to write the results")
    args = parser.parse_args()
    sizes = SIZES[:1] if args.quick else SIZES
    meta = run_meta(["bayesmix", "numba", "nutpie", "pymc", "pytensor"])
    rows = []
    for name, (make, generate) in workloads().items():
        print(name, flush=True)
        rows.append(measure(name, make, generate, sizes))
    kwargs = {} if args.folder is None else {"folder": args.folder}
    print(write_results("family_kernels", meta, rows, report, **kwargs))


if __name__ == "__main__":
    main()
