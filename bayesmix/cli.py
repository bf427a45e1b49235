"""The ``bayesmix`` command line: ``bayesmix demo`` runs the main job on Old Faithful."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import pandas as pd

from bayesmix.exceptions import BayesmixError

__all__ = ["main"]


_DEMO_COLUMNS = ["em", "mean", "sd", "hdi94_lb", "hdi94_ub", "ess_bulk", "r_hat"]


def _side_by_side(
    em_summary: pd.DataFrame, nuts_summary: pd.DataFrame, features: Sequence[str]
) -> pd.DataFrame:
    """Join the EM estimates to the posterior summary, one row per distinct scalar.

    Covariance matrices are symmetric: entries above the diagonal are dropped.
    """
    table = nuts_summary.copy()
    table.insert(0, "em", em_summary["mean"].reindex(table.index))
    upper = {f"{a}, {b}]" for i, a in enumerate(features) for b in features[i + 1 :]}
    keep = [
        not (name.startswith("covariances[") and any(name.endswith(end) for end in upper))
        for name in table.index
    ]
    return table.loc[keep, [column for column in _DEMO_COLUMNS if column in table.columns]]


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    import bayesmix as bm

    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table to 80 columns
        console = Console(width=120)
    X = bm.datasets.load_faithful()
    console.print(f"[bold]Old Faithful[/bold]: {X.shape[0]} eruptions, columns {list(X.columns)}")
    spec = {"n_components": 2, "covariance_type": "full", "random_state": args.seed}

    start = time.perf_counter()
    em = bm.GaussianMixture(**spec).fit(X, method="em")
    em_seconds = time.perf_counter() - start
    console.print(
        f"EM: log-likelihood {em.em_.log_likelihood * X.shape[0]:.2f} after {em.em_.n_iter} "
        f"iterations ({em_seconds:.2f} s)"
    )

    console.print(f"NUTS: {args.chains} chains x {args.draws} draws (+{args.tune} tune) ...")
    start = time.perf_counter()
    nuts = bm.GaussianMixture(**spec).fit(
        X, method="nuts", draws=args.draws, tune=args.tune, chains=args.chains, progressbar=True
    )
    nuts_seconds = time.perf_counter() - start
    attrs = nuts.idata.attrs
    console.print(
        f"NUTS: {nuts_seconds:.1f} s (compile + sample); max R-hat {attrs['max_rhat']:.3f}, "
        f"min bulk ESS {attrs['min_ess_bulk']:.0f}, divergences {attrs['divergences']}, "
        f"relabelled draws {attrs['relabelled_draws']}"
    )

    table = _side_by_side(em.summary(), nuts.summary(), list(X.columns))
    rich_table = Table(title="EM estimate vs posterior (Old Faithful, K=2, full covariance)")
    rich_table.add_column("parameter")
    for column in table.columns:
        rich_table.add_column(str(column), justify="right")
    for name, row in table.iterrows():
        rich_table.add_row(str(name), *(f"{value:.4g}" for value in row.to_numpy()))
    console.print(rich_table)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesmix", description="Bayesian mixture models on PyMC, with exact EM."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what bayesmix does")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="fit Old Faithful with EM and NUTS (K=2) and compare the two"
    )
    demo.add_argument("--draws", type=int, default=1000, help="posterior draws per chain")
    demo.add_argument("--tune", type=int, default=1000, help="tuning steps per chain")
    demo.add_argument("--chains", type=int, default=4, help="number of chains")
    demo.add_argument("--seed", type=int, default=0, help="random seed of EM and NUTS")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bayesmix`` command; returns the exit code (2 for bad input)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    try:
        return args.run(args)
    except (BayesmixError, ValueError, OSError) as err:
        print(f"bayesmix: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
