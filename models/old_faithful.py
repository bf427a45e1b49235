"""Old Faithful: a two-component bivariate Gaussian mixture, EM against NUTS.

Model
    ``GaussianMixture(n_components=2, covariance_type="full")``: each component has its
    own mean and full 2 x 2 covariance (half-normal scales, LKJ(2) correlation),
    Dirichlet(1) weights, the component of every eruption marginalised out.

Data
    The 272 eruptions of the Old Faithful geyser (:func:`bayesmix.datasets.load_faithful`):
    eruption time and waiting time to the next eruption, both in minutes.

What it shows
    The classic two-cluster data set: short eruptions after short waits, long ones after
    long waits. With 272 points the posterior is tight and the maximum-likelihood (EM)
    estimate sits inside the 94% HDI of nearly every parameter; the report shows the
    data with the posterior and EM ellipses, the posterior summary and diagnostics,
    trace and rank plots, the posterior predictive check and the EM-vs-MCMC table.

Run::

    python models/old_faithful.py            # ~1 min: 4 chains x 1000 draws
    python models/old_faithful.py --smoke    # tiny settings, for the tests

Outputs in ``--out`` (default ``models/out/old_faithful``): ``report.html`` and its
figures, ``summary.csv``, ``compare.csv``, ``fit.nc`` and ``fit_em.nc``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pandas as pd

import bayesmix as bm

# Sampler and EM warnings of the fits are printed, one line each; other warnings are not.
REPORTED = (bm.SamplerWarning, bm.ConvergenceWarning)

NAME = "old_faithful"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings (tests)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / NAME)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = (
        {"draws": 100, "tune": 100, "chains": 2}
        if args.smoke
        else {"draws": 1000, "tune": 1000, "chains": 4}
    )
    X = bm.datasets.load_faithful()
    spec = {"n_components": 2, "covariance_type": "full", "random_state": args.seed}

    em = bm.GaussianMixture(**spec).fit(X, method="em")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", bm.SamplerWarning)
        warnings.simplefilter("always", bm.ConvergenceWarning)
        nuts = bm.GaussianMixture(**spec).fit(X, progressbar=False, **settings)
    for warning in (w for w in caught if issubclass(w.category, REPORTED)):
        print(f"warning: {warning.message}")

    table = bm.compare_fits(em, nuts)
    fit_level = table.attrs["fit"]
    with pd.option_context(
        "display.width", 160, "display.max_columns", None, "display.float_format", "{:.4g}".format
    ):
        print(table)
    print(
        f"\nEM inside the 94% HDI for {fit_level['n_em_in_hdi']} of "
        f"{fit_level['n_parameters_compared']} parameters; adjusted Rand index of the two "
        f"clusterings {fit_level['adjusted_rand_index']:.3f}; mean log predictive density "
        f"EM {fit_level['mean_lpd_em']:.4f}, NUTS {fit_level['mean_lpd_mcmc']:.4f}"
    )
    print(
        f"posterior mean weights {nuts.weights_.round(3).tolist()}, "
        f"EM weights {em.weights_.round(3).tolist()}"
    )
    report = bm.write_report(
        args.out,
        em_fit=em,
        nuts_fit=nuts,
        title="Old Faithful: two Gaussian components, EM and NUTS",
        description=(
            "272 eruptions (eruption time, waiting time; minutes). A two-component "
            "Gaussian mixture with full covariances, fitted by EM and by NUTS started "
            "at the EM estimate."
        ),
    )
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
