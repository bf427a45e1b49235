"""Robust clustering: Gaussian against Student-t components on data with outliers.

Model
    ``GaussianMixture(n_components=2)`` and ``StudentTMixture(n_components=2)``, full
    covariance (scale) matrices; the t components have their own degrees of freedom
    (prior Gamma(2, 0.1)). Both fitted by EM (ECM for the t) and by NUTS.

Data
    Old Faithful (:func:`bayesmix.datasets.load_faithful`, 272 eruptions) with 5% gross
    outliers added: 14 points drawn uniformly over a box three times the data's range
    (fixed seed), standing in for recording errors.

What it shows
    On the clean data both families find the same two clusters. With the outliers, the
    Gaussian mixture spends a component on them: one broad component covers the outliers
    and all 272 eruptions fall in the other (adjusted Rand index with the clean
    clustering 0.0; the means move up to 53 posterior sd). The t components absorb the
    outliers in their tails instead (posterior mean degrees of freedom 24 and 2.1: the
    larger cluster takes the outliers), keep the clusters of the clean fit (ARI 0.96,
    means within about 1 posterior sd) and predict the real eruptions better (mean log
    predictive density of the clean points -4.23 against -4.79). Both NUTS fits converge
    (max R-hat 1.003, no divergences; 4 x 1000 draws). The report is the Student-t fit
    to the contaminated data.

Run::

    python models/robust_clustering.py            # a few minutes: four NUTS fits
    python models/robust_clustering.py --smoke    # tiny settings, for the tests

Outputs in ``--out`` (default ``models/out/robust_clustering``): ``shifts.csv`` (mean
shifts and fit figures per family), ``data.csv`` (with the outlier flag),
``report.html`` and its figures, ``summary.csv``, ``compare.csv`` and the saved fits.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmix as bm
from bayesmix.compare import adjusted_rand_index

NAME = "robust_clustering"
FAMILIES = {"gaussian": bm.GaussianMixture, "student_t": bm.StudentTMixture}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings (tests)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / NAME)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def contaminate(X: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """Append ``fraction`` x N points uniform over a box three times the data's range."""
    low, high = X.min().to_numpy(), X.max().to_numpy()
    centre, half = (low + high) / 2, 1.5 * (high - low)
    n_out = round(fraction * len(X))
    outliers = rng.uniform(centre - half, centre + half, size=(n_out, X.shape[1]))
    frame = pd.concat([X, pd.DataFrame(outliers, columns=X.columns)], ignore_index=True)
    frame["outlier"] = np.r_[np.zeros(len(X), bool), np.ones(n_out, bool)]
    return frame


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = (
        {"draws": 150, "tune": 150, "chains": 2}
        if args.smoke
        else {"draws": 1000, "tune": 1000, "chains": 4}
    )
    args.out.mkdir(parents=True, exist_ok=True)
    clean = bm.datasets.load_faithful()
    data = contaminate(clean, 0.05, np.random.default_rng(args.seed))
    data.to_csv(args.out / "data.csv", index=False)
    dirty = data[clean.columns]
    is_clean = ~data["outlier"].to_numpy()
    spec = {"n_components": 2, "random_state": args.seed}

    rows, fits = [], {}
    for name, family in FAMILIES.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", bm.SamplerWarning)
            reference = family(**spec).fit(clean, progressbar=False, **settings)
            em = family(**spec).fit(dirty, method="em")
            nuts = family(**spec).fit(dirty, progressbar=False, **settings)
        for warning in caught:
            if issubclass(warning.category, bm.SamplerWarning):
                print(f"warning ({name}): {warning.message}")
        fits[name] = (em, nuts)
        ref_sd = reference.idata["posterior"]["means"].std(("chain", "draw")).to_numpy()
        shift = np.abs(nuts.means_ - reference.means_) / ref_sd
        ari = adjusted_rand_index(reference.predict(clean), nuts.predict(clean))
        row = {
            "family": name,
            "max_mean_shift_sd": float(shift.max()),
            "ari_clean_points": ari,
            "lpd_clean_points": float(nuts.score_samples(clean).mean()),
            "max_rhat": nuts.idata.attrs.get("max_rhat"),
            "divergences": nuts.idata.attrs.get("divergences"),
        }
        if name == "student_t":
            row["dof"] = np.round(nuts.dof_, 2).tolist()
        rows.append(row)
    table = pd.DataFrame(rows).set_index("family")
    table.to_csv(args.out / "shifts.csv")
    with pd.option_context("display.width", 160, "display.max_columns", None):
        print(table)
    t_shift, g_shift = (
        table.loc["student_t", "max_mean_shift_sd"],
        table.loc["gaussian", "max_mean_shift_sd"],
    )
    print(
        f"\nwith {int((~is_clean).sum())} outliers the Gaussian means move up to "
        f"{g_shift:.1f} posterior sd from the clean fit, the Student-t means {t_shift:.1f}"
    )
    em, nuts = fits["student_t"]
    report = bm.write_report(
        args.out,
        em_fit=em,
        nuts_fit=nuts,
        title="Robust clustering: Student-t components on Old Faithful with 5% outliers",
        description=(
            "Old Faithful with 14 uniform outliers. Gaussian and Student-t mixtures were "
            "fitted to the clean and the contaminated data; shifts.csv has the movement "
            "of the means. Shown: the Student-t mixture on the contaminated data."
        ),
    )
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
