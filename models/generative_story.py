"""The generative story: simulate a Gaussian mixture, fit it, and check what comes back.

Model
    A three-component Gaussian mixture in two dimensions with full covariances,
    ``GaussianMixture(n_components=3, covariance_type="full")``, with the default
    data-scaled priors (Dirichlet(1) weights, Normal means, half-normal scales and
    LKJ(2) correlations).

Data
    600 points simulated with :func:`bayesmix.datasets.make_mixture` from known weights,
    means and covariances: for every point a label ``z ~ Categorical(pi)``, then
    ``x ~ N(mu_z, Sigma_z)``.

What it shows
    Parameter recovery. EM and NUTS are fitted to the same data; every true weight,
    mean and covariance entry is compared with its posterior mean and 94% HDI (printed
    as a table; about 94% of them should be inside, and a miss of a few is expected);
    the hidden labels are compared with the fitted clusters (adjusted Rand index); and
    :func:`bayesmix.compare_fits` puts the EM estimate next to the posterior.

Run::

    python models/generative_story.py            # ~1 min: 4 chains x 1000 draws
    python models/generative_story.py --smoke    # tiny settings, for the tests

Outputs in ``--out`` (default ``models/out/generative_story``): ``data.csv`` (the
simulated points), ``labels.csv`` (the component of each point), ``recovery.csv``,
``report.html`` with its figures, ``summary.csv``, ``compare.csv`` and the saved fits.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

import bayesmix as bm
from bayesmix.compare import adjusted_rand_index

# Sampler and EM warnings of the fits are printed, one line each; other warnings are not.
REPORTED = (bm.SamplerWarning, bm.ConvergenceWarning)

NAME = "generative_story"

# The truth: three components in two dimensions.
WEIGHTS = np.array([0.5, 0.3, 0.2])
MEANS = np.array([[0.0, 0.0], [4.0, 3.0], [-2.0, 5.0]])
COVARIANCES = np.array(
    [
        [[1.0, 0.3], [0.3, 0.5]],
        [[0.6, -0.2], [-0.2, 1.2]],
        [[0.4, 0.0], [0.0, 0.4]],
    ]
)
FEATURES = ["x1", "x2"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings (tests)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / NAME)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def truth_table(labels: pd.Index, order: np.ndarray) -> pd.Series:
    """Return the true value of every summary row, in the fit's component labels.

    ``order[k]`` is the true component that the fit calls ``k``.
    """
    weights, means, cov = WEIGHTS[order], MEANS[order], COVARIANCES[order]
    truth = {}
    for k in range(len(order)):
        truth[f"weights[{k}]"] = weights[k]
        for i, fi in enumerate(FEATURES):
            truth[f"means[{k}, {fi}]"] = means[k, i]
            for j, fj in enumerate(FEATURES):
                truth[f"covariances[{k}, {fi}, {fj}]"] = cov[k, i, j]
    return pd.Series(truth).reindex(labels)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = (
        {"draws": 100, "tune": 100, "chains": 2}
        if args.smoke
        else {"draws": 1000, "tune": 1000, "chains": 4}
    )
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. The generative story: a label, then a point from that label's Gaussian.
    values, z = bm.datasets.make_mixture(600, WEIGHTS, MEANS, COVARIANCES, random_state=args.seed)
    X = pd.DataFrame(values, columns=FEATURES)
    X.to_csv(args.out / "data.csv", index=False)  # the features only: fit it as it is
    pd.DataFrame({"component": z}).to_csv(args.out / "labels.csv", index=False)
    print(f"simulated {len(X)} points; component sizes {np.bincount(z).tolist()}")

    # 2. EM (a point estimate) and NUTS (the posterior), same model.
    spec = {"n_components": 3, "covariance_type": "full", "random_state": args.seed}
    em = bm.GaussianMixture(**spec).fit(X, method="em")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", bm.SamplerWarning)
        warnings.simplefilter("always", bm.ConvergenceWarning)
        nuts = bm.GaussianMixture(**spec).fit(X, progressbar=False, **settings)
    for warning in (w for w in caught if issubclass(w.category, REPORTED)):
        print(f"warning: {warning.message}")

    # 3. Recovery: the fit labels components by increasing mean of x1; match the true
    #    components to the fitted ones by their means (an optimal assignment).
    distance = np.linalg.norm(nuts.means_[:, None, :] - MEANS[None, :, :], axis=-1)
    _, order = linear_sum_assignment(distance)
    summary = nuts.summary()
    table = pd.DataFrame(
        {
            "truth": truth_table(summary.index, order),
            "em": em.summary()["estimate"].reindex(summary.index),
            "mean": summary["mean"],
            "hdi94_lb": summary["hdi94_lb"],
            "hdi94_ub": summary["hdi94_ub"],
        }
    )
    table["inside"] = (table["hdi94_lb"] <= table["truth"]) & (table["truth"] <= table["hdi94_ub"])
    # covariances[k, x2, x1] repeats covariances[k, x1, x2]: keep the distinct entries
    upper = table.index.str.contains(r"covariances\[\d+, x1, x2\]")
    table = table[~upper]
    table.to_csv(args.out / "recovery.csv")
    with pd.option_context(
        "display.width", 160, "display.max_columns", None, "display.float_format", "{:.3f}".format
    ):
        print("\ntruth against the posterior (94% HDI):")
        print(table)
    n_in = int(table["inside"].sum())
    print(f"\n{n_in} of {len(table)} true values inside their 94% HDI (expect about 94%)")
    print(
        "adjusted Rand index of the hidden labels and the clusters: "
        f"EM {adjusted_rand_index(z, em.predict(X)):.3f}, "
        f"NUTS {adjusted_rand_index(z, nuts.predict(X)):.3f}"
    )

    # 4. EM against MCMC, and the report.
    compare = bm.compare_fits(em, nuts)
    fit_level = compare.attrs["fit"]
    print(
        f"EM inside the posterior 94% HDI for {fit_level['n_em_in_hdi']} of "
        f"{fit_level['n_parameters_compared']} parameters; ARI(EM, NUTS) = "
        f"{fit_level['adjusted_rand_index']:.3f}"
    )
    report = bm.write_report(
        args.out,
        em_fit=em,
        nuts_fit=nuts,
        title="The generative story: recovering a simulated mixture",
        description=(
            "600 points simulated from a known three-component Gaussian mixture in two "
            f"dimensions; {n_in} of {len(table)} true parameter values are inside their "
            "94% posterior HDI (recovery.csv)."
        ),
    )
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
