"""Galaxies: how many components? K chosen by BIC, ICL, LOO and an overfitted mixture.

Model
    ``GaussianMixture(n_components=K)`` on one feature, for K = 1..6: Dirichlet(1)
    weights, ordered Normal means (the ordering identifies the components in 1-D),
    half-normal component scales.

Data
    Velocities of 82 galaxies of the Corona Borealis region (Roeder 1990; R's
    ``MASS::galaxies``, :func:`bayesmix.datasets.load_galaxies`), in 1000 km/s.

What it shows
    Choosing K with :func:`bayesmix.select_k`: BIC and ICL of the EM fits (lower is
    better) and the PSIS-LOO expected log predictive density of the NUTS fits (higher is
    better, with its standard error and the difference to the best K). The criteria need
    not agree on so few points (the literature has answers from 3 to 6 and more): read
    ``elpd_diff`` against ``dse`` before calling one K better, and check the Pareto k
    columns (LOO is unreliable where k exceeds its threshold: 0.7 for long chains, lower
    for short ones). With the full settings BIC and ICL pick K=3 and LOO K=5, but K=3 to 6
    are within about one standard error of each other, and the fits with more than four
    components mix poorly (divergences, R-hat above 1.1: their extra components are
    barely identified). The recipe reports the smallest K within two standard errors of
    the best LOO, fitted by EM and NUTS.

    The other route to K: one overfitted ("sparse finite") mixture,
    :func:`bayesmix.overfitted_mixture` with K_max = 8 components and a Dirichlet(0.01)
    prior on the weights (Malsiner-Walli, Frühwirth-Schnatter & Grün 2016), whose
    posterior empties the components the data do not need;
    :func:`bayesmix.nonempty_components` gives the posterior of the number of non-empty
    components. Its empty components are unidentified, so the sampler's R-hat / ESS
    warnings for that fit are expected (the number of non-empty components is the
    quantity of interest, and it is label-invariant).

Run::

    python models/galaxies.py            # a few minutes: K = 1..6, 4 chains x 1000 draws
    python models/galaxies.py --smoke    # K = 2, 3 with tiny settings, for the tests

Outputs in ``--out`` (default ``models/out/galaxies``): ``select_k.csv`` and
``select_k.png`` (the criteria against K), ``nonempty_components.csv`` (the posterior
of the number of clusters of the overfitted mixture), ``report.html`` with its figures,
``summary.csv``, ``compare.csv`` and the saved fits of the chosen K.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pandas as pd

import bayesmix as bm

# Sampler and EM warnings of the fits are printed, one line each; other warnings are not.
REPORTED = (bm.SamplerWarning, bm.ConvergenceWarning)

NAME = "galaxies"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings (tests)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / NAME)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        ks, settings = [2, 3], {"draws": 100, "tune": 100, "chains": 2}
    else:
        ks, settings = range(1, 7), {"draws": 1000, "tune": 1000, "chains": 4}
    X = bm.datasets.load_galaxies() / 1000.0  # velocity in 1000 km/s
    args.out.mkdir(parents=True, exist_ok=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", bm.SamplerWarning)
        warnings.simplefilter("always", bm.ConvergenceWarning)
        table = bm.select_k(
            X, ks, method="both", random_state=args.seed, progressbar=False, **settings
        )
    for warning in (w for w in caught if issubclass(w.category, REPORTED)):
        print(f"warning: {warning.message}")
    best = table.attrs["best"]
    columns = ["n_components", "bic", "icl", "elpd_loo", "se", "elpd_diff", "dse"]
    columns += ["max_pareto_k", "n_bad_pareto_k"]
    with pd.option_context(
        "display.width", 160, "display.max_columns", None, "display.float_format", "{:.2f}".format
    ):
        print(table[columns].to_string(index=False))
    print(f"\nchosen K: {best}")

    # LOO differences within about two standard errors do not single out a K: take the
    # smallest K whose elpd is that close to the best one.
    close = table["elpd_diff"] >= -2.0 * table["dse"]
    k = int(table.loc[close, "n_components"].min())
    print(f"smallest K within two standard errors of the best LOO: {k}")
    spec = {"n_components": k, "random_state": args.seed}
    em = bm.GaussianMixture(**spec).fit(X, method="em")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SamplerWarning)  # reported above
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        nuts = bm.GaussianMixture(**spec).fit(X, progressbar=False, **settings)
    print(
        f"K={k}: posterior mean weights {nuts.weights_.round(3).tolist()}, "
        f"means {nuts.means_.ravel().round(2).tolist()} (1000 km/s)"
    )

    sparse = bm.overfitted_mixture(k_max=8, concentration=0.01, random_state=args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SamplerWarning)  # empty components: expected
        sparse.fit(X, progressbar=False, **settings)
    k_plus = bm.nonempty_components(sparse, random_seed=args.seed)
    k_plus.to_frame().to_csv(args.out / "nonempty_components.csv")
    print(
        "overfitted mixture (K_max=8, Dirichlet(0.01)): posterior of the number of "
        f"non-empty components {k_plus[k_plus > 0.005].round(3).to_dict()}, "
        f"mode {k_plus.attrs['mode']}"
    )
    report = bm.write_report(
        args.out,
        em_fit=em,
        nuts_fit=nuts,
        k_table=table,
        title=f"Galaxies: choosing K (K={k})",
        description=(
            "Velocities of 82 galaxies (1000 km/s). Gaussian mixtures with K = "
            f"{', '.join(map(str, ks))} compared by BIC and ICL (EM) and PSIS-LOO (NUTS); "
            f"best K by each criterion: {best}. The fits below are those of K={k}, the "
            "smallest K whose LOO elpd is within two standard errors of the best. An "
            "overfitted mixture (K_max=8, Dirichlet(0.01) weights) puts posterior mass "
            f"{k_plus.round(2).to_dict()} on the number of non-empty components."
        ),
    )
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
