"""Sampler diagnostics and summary tables of a fit's posterior (family-agnostic).

The variables to check are always passed in (a family's ``summary_vars``); nothing here
knows a family.
"""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.exceptions import ConvergenceWarning, SamplerWarning

__all__ = ["collapsed_chains", "sampler_problems", "summary_table"]

# A chain whose mean weight for some component is below this fraction of the median
# over chains has collapsed that component (an empty-component mode).
COLLAPSE_RATIO = 0.25
RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100


def sampler_problems(
    idata: xr.DataTree, var_names: tuple[str, ...]
) -> tuple[dict[str, float], list[tuple[type[Warning], str]]]:
    """Diagnose a NUTS result: figures for ``attrs`` and one message per problem.

    Checks divergences after tuning, max R-hat (> 1.01), min bulk and tail ESS (below
    100 per chain) over ``var_names``,
    and chains that collapsed
    a component (a chain whose mean weight for a component is below a quarter of the
    median over chains: an empty-component mode). Each message names the remedy.

    Returns
    -------
    figures : dict
        ``divergences``, ``max_rhat`` (NaN with one chain: R-hat needs two),
        ``min_ess_bulk``, ``min_ess_tail``.
    problems : list of (warning class, message)
    """
    post = idata["posterior"]
    n_chains = post.sizes["chain"]
    figures: dict[str, float] = {}
    problems: list[tuple[type[Warning], str]] = []
    stats = idata["sample_stats"] if "sample_stats" in idata.children else {}
    if "diverging" in stats:
        figures["divergences"] = n_div = int(stats["diverging"].sum())
        if n_div:
            message = (
                f"{n_div} divergent transitions after tuning: the posterior has regions "
                "the sampler cannot explore. Raise target_accept (e.g. fit(..., "
                "target_accept=0.95)) and tune, or use fewer components."
            )
            problems.append((SamplerWarning, message))
    with np.errstate(invalid="ignore", divide="ignore"):  # constant draws give NaN
        diag = summary_table(idata, "diagnostics", var_names)
    figures["min_ess_bulk"] = float(diag["ess_bulk"].min())
    figures["min_ess_tail"] = float(diag["ess_tail"].min())
    needed = ESS_PER_CHAIN_MIN * n_chains
    for kind in ("bulk", "tail"):
        low = figures[f"min_ess_{kind}"]
        if not low >= needed:  # also NaN
            message = (
                f"min {kind} ESS is {low:.0f} (< {ESS_PER_CHAIN_MIN} per chain x "
                f"{n_chains} chains): posterior estimates are noisy. Draw more (draws, "
                "tune), raise target_accept, or try fewer components / a different K."
            )
            problems.append((SamplerWarning, message))
    # R-hat compares chains: with one chain it is not available (NaN), not an error.
    figures["max_rhat"] = float("nan")
    if n_chains > 1:
        figures["max_rhat"] = worst = float(diag["r_hat"].max())
        if not worst <= RHAT_MAX:
            message = (
                f"max R-hat is {worst:.3f} (> {RHAT_MAX}): the chains disagree. Run "
                "longer (more tune and draws), or reconsider the number of components "
                "(a different K)."
            )
            problems.append((SamplerWarning, message))
        collapsed = collapsed_chains(idata)
        if collapsed:
            message = (
                f"chain(s) {collapsed} put a component's weight far below the "
                "other chains' (an empty-component mode): their draws are not from the "
                "same mode. Try fewer components, a different random_seed, or compare K."
            )
            problems.append((ConvergenceWarning, message))
    return figures, problems


def collapsed_chains(idata: xr.DataTree) -> list[int]:
    """Return the chains that collapsed a component (an empty-component mode).

    A chain collapsed a component when its mean weight for that component is below
    ``COLLAPSE_RATIO`` (a quarter) of the median over chains. With one chain there is
    nothing to compare: the list is empty.

    Parameters
    ----------
    idata : xarray.DataTree
        A NUTS fit's result, with ``weights`` (chain, draw, component) in ``posterior``.

    Returns
    -------
    list of int
        The indices of those chains, in increasing order.
    """
    post = idata["posterior"]
    if post.sizes["chain"] < 2:
        return []
    weights = post["weights"].mean("draw").to_numpy()  # (chain, component)
    median = np.median(weights, axis=0)
    return np.flatnonzero(np.any(weights < COLLAPSE_RATIO * median, axis=1)).tolist()


def summary_table(idata: xr.DataTree, kind: str, var_names: tuple[str, ...]) -> pd.DataFrame:
    """Summary table of the variables ``var_names`` of ``idata``.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit's result, with a ``posterior`` group.
    kind : {"all", "stats", "diagnostics"}
        Passed to :func:`arviz_stats.summary` (posterior draws only).
    var_names : tuple of str
        The variables to summarise.

    Returns
    -------
    pandas.DataFrame
        One row per scalar entry (``weights[0]``, ``means[1, x0]``, ...). For posterior
        draws, :func:`arviz_stats.summary` (mean, sd, 94% HDI, ESS, R-hat, MCSE,
        unrounded). For a posterior of one draw (an EM fit's point estimate) a single
        column ``estimate``, whatever ``kind``: one value has no spread, and a column of
        sd = 0 would read as zero uncertainty.
    """
    var_names = list(var_names)
    if idata["posterior"].sizes["chain"] * idata["posterior"].sizes["draw"] == 1:
        rows = {}
        for name in var_names:
            da = idata["posterior"][name].isel(chain=0, draw=0)
            for index in np.ndindex(da.shape):
                labels = ", ".join(
                    str(da[dim].values[i]) for dim, i in zip(da.dims, index, strict=True)
                )
                rows[f"{name}[{labels}]"] = float(da.values[index])
        return pd.DataFrame({"estimate": pd.Series(rows, dtype=np.float64)})
    return azs.summary(
        idata, var_names=var_names, kind=kind, ci_prob=0.94, ci_kind="hdi", round_to="none"
    )
