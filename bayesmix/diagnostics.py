"""Sampler diagnostics and summary tables of a fit's posterior (family-agnostic).

The variables to check are always passed in (a family's ``summary_vars``); nothing here
knows a family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.exceptions import ConvergenceWarning, SamplerWarning

__all__ = [
    "collapsed_chains",
    "label_invariant_draws",
    "label_switching",
    "sampler_problems",
    "summary_table",
]

# A chain whose mean weight for some component is below this fraction of the median
# over chains has collapsed that component (an empty-component mode).
COLLAPSE_RATIO = 0.25
# Label switching within chains above this fraction of the draws, with a sampler
# problem, is reported as its cause: overlapping components.
SWITCH_MIN = 0.05
# A chain whose mean log density is this many within-chain sd from the other chains'
# median sampled elsewhere.
MODE_SD = 0.5
# A component expected to hold fewer observations than this is weakly identified.
SMALL_COMPONENT = 20
RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100


def sampler_problems(
    idata: xr.DataTree, var_names: tuple[str, ...], *, sparse: bool = False
) -> tuple[dict[str, float], list[tuple[type[Warning], str]]]:
    """Diagnose a NUTS result: figures for ``attrs`` and one message per problem.

    Checks divergences after tuning, max R-hat (> 1.01), min bulk and tail ESS (below
    100 per chain) over ``var_names``, and chains that collapsed a component (a chain
    whose mean weight for a component is below a quarter of the median over chains: an
    empty-component mode). Each message names the remedy. When there is a problem and
    the chains swapped component labels in more than ``SWITCH_MIN`` of the draws
    (:func:`label_switching`), one more message says why: the components overlap.

    Parameters
    ----------
    idata : xarray.DataTree
        A NUTS fit's result (``posterior``, ``sample_stats``).
    var_names : tuple of str
        The variables whose R-hat and ESS are checked.
    sparse : bool, default=False
        The weights' prior favours empty components (an overfitted mixture): the
        labels of empty components are identified by nothing, so R-hat and ESS are
        checked on the label-invariant summaries of :func:`label_invariant_draws`
        instead of ``var_names``, and empty-component modes are not problems.

    Returns
    -------
    figures : dict
        ``divergences``, ``max_rhat`` (NaN with one chain: R-hat needs two),
        ``min_ess_bulk``, ``min_ess_tail``, ``label_switching``.
    problems : list of (warning class, message)
    """
    if sparse:
        idata_checked = label_invariant_draws(idata)
        var_names = tuple(idata_checked["posterior"].data_vars)
    else:
        idata_checked = idata
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
    by_variable = _convergence_datasets(idata_checked["posterior"], var_names)
    ess_bulk, ess_tail, r_hat = (_flat(figure, var_names) for figure in by_variable)
    figures["min_ess_bulk"] = _extreme(ess_bulk, np.min)
    figures["min_ess_tail"] = _extreme(ess_tail, np.min)
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
        figures["max_rhat"] = worst = _extreme(r_hat, np.max)
        if not worst <= RHAT_MAX:
            message = (
                f"max R-hat is {worst:.3f} (> {RHAT_MAX}): the chains disagree. Run "
                "longer (more tune and draws), or reconsider the number of components "
                "(a different K)."
            )
            problems.append((SamplerWarning, message))
            if sparse:
                problems.append((ConvergenceWarning, _sparse_reason(idata)))
        collapsed = [] if sparse else collapsed_chains(idata)
        if collapsed:
            message = (
                f"chain(s) {collapsed} put a component's weight far below the "
                "other chains' (an empty-component mode): their draws are not from the "
                "same mode. Try fewer components, a different random_seed, or compare K."
            )
            problems.append((ConvergenceWarning, message))
    figures["label_switching"] = switching = label_switching(idata)
    if problems and not sparse:
        reason = _reason(idata, by_variable[2], switching)
        if reason is not None:
            problems.append((ConvergenceWarning, reason))
    return figures, problems


def _reason(idata: xr.DataTree, r_hat: xr.Dataset, switching: float) -> str | None:
    """Why a fit has sampler problems, when the draws show it; the first cause that fits.

    1. Overlapping components: chains swapped labels in more than ``SWITCH_MIN`` of
       the draws (:func:`label_switching`).
    2. A chain elsewhere: its mean log density differs from the other chains' median
       by more than ``MODE_SD`` within-chain standard deviations.
    3. A small component: the variable with the worst R-hat (or ESS) belongs to a
       component holding fewer than ``SMALL_COMPONENT`` expected observations.
    """
    post = idata["posterior"]
    k = post.sizes["component"]
    if switching > SWITCH_MIN:
        return (
            f"why: the components overlap. In {switching:.0%} of the draws a chain had "
            "swapped component labels (the draws are relabelled afterwards): the sampler "
            f"crossed between labellings where the components coincide, so the data "
            f"barely separate {k} components, and that ridge is what is hard to sample. "
            "Compare K (bayesmix.select_k): fewer components may describe the data as "
            "well. To keep K, fit(..., target_accept=0.99) and, if problems remain, a "
            "weights prior that keeps components apart from empty, "
            "priors={'weights': Prior('Dirichlet', a=4)}."
        )
    stats = idata["sample_stats"] if "sample_stats" in idata.children else {}
    if "logp" in stats and post.sizes["chain"] > 1:
        logp = stats["logp"].transpose("chain", "draw").to_numpy()
        means, spread = logp.mean(axis=1), float(np.median(logp.std(axis=1)))
        gap = means - np.median(means)
        away = np.flatnonzero(np.abs(gap) > MODE_SD * max(spread, 1e-12)).tolist()
        if away:
            steps = ""
            if "n_steps" in stats:
                n_steps = stats["n_steps"].transpose("chain", "draw").to_numpy().mean(axis=1)
                others = np.median(np.delete(n_steps, away))
                ratio = float(n_steps[away].max() / others) if others > 0 else np.nan
                steps = f"; its trajectories were up to {ratio:.1f}x as long" if ratio > 1.5 else ""
            worst = away[int(np.argmax(np.abs(gap[away])))]
            return (
                f"why: chain(s) {away} sampled elsewhere: chain {worst}'s mean log density "
                f"is {gap[worst]:+.1f} from the other chains' ({abs(gap[worst]) / spread:.1f} "
                f"within-chain sd){steps}. It found another mode (a component fitted to a "
                "few tied or extreme rows, another split of the data) or a region it "
                "leaves slowly, and the chains' draws are not from one distribution. "
                "Compare K (bayesmix.select_k) and covariance types; to keep the model, "
                "run more chains or a longer tune and look at each chain "
                "(fit.plot.trace()), or use a prior that keeps that mode out."
            )
    n_obs = idata["observed_data"].sizes.get("obs") if "observed_data" in idata.children else None
    worst = _worst_entry(r_hat) if n_obs else None
    if worst is not None:
        worst_row, component = worst
        if component is not None:
            held = float(post["weights"].mean(("chain", "draw")).values[component]) * n_obs
            if held < SMALL_COMPONENT:
                return (
                    f"why: the worst-mixing parameter, {worst_row}, belongs to component "
                    f"{component}, which holds about {held:.0f} of the {n_obs} observations: "
                    "so few points identify its parameters weakly (wide, heavy-tailed "
                    "posteriors), and chains explore them slowly. Draw more (draws=4000) "
                    "if the component is real, or compare K (bayesmix.select_k): fewer "
                    "components may describe the data as well."
                )
    return None


def _worst_entry(r_hat: xr.Dataset) -> tuple[str, int | None] | None:
    """Return the entry with the largest R-hat: its label and component (None if none).

    The label is the summary table's (``name[coord, ...]``); the first entry wins a tie,
    in the order of the variables and then of their entries, as ``idxmax`` on the table.
    None when every R-hat is NaN.
    """
    found = None
    for name, values in r_hat.data_vars.items():
        array = values.to_numpy()
        if array.size == 0 or np.isnan(array).all():
            continue
        index = np.unravel_index(np.nanargmax(array), array.shape)
        if found is None or array[index] > found[0]:
            found = (array[index], str(name), values, index)
    if found is None:
        return None
    _, name, values, index = found
    component = int(index[values.dims.index("component")]) if "component" in values.dims else None
    return _entry_label(name, values, index), component


def _entry_label(name: str, values: xr.DataArray, index: tuple[int, ...]) -> str:
    """ArviZ's label of entry ``index`` of variable ``name``: ``name[coord, ...]``.

    A dimension without coordinates gives the position; a scalar is ``name``.
    """
    if not values.dims:
        return name
    labels = ", ".join(
        str(values[dim].values[i]) if dim in values.coords else str(i)
        for dim, i in zip(values.dims, index, strict=True)
    )
    return f"{name}[{labels}]"


def _sparse_reason(idata: xr.DataTree) -> str:
    """Why an overfitted mixture's chains disagree: each kept its own number of clusters."""
    weights = idata["posterior"]["weights"].transpose("chain", "draw", "component").to_numpy()
    n_obs = idata["observed_data"].sizes.get("obs") if "observed_data" in idata.children else None
    floor = 1.0 / n_obs if n_obs else 0.01
    per_chain = (weights >= floor).sum(axis=-1).mean(axis=-1)  # expected >= 1 observation
    counts = ", ".join(f"chain {c}: {k:.1f}" for c, k in enumerate(per_chain))
    return (
        "why: the chains settled on different numbers of non-empty components "
        f"(components holding at least one expected observation, mean over draws: "
        f"{counts}). NUTS moves between those modes only rarely, because a component "
        "has to empty or fill on the way, so the pooled posterior of the number of "
        "clusters (bayesmix.nonempty_components) weighs the modes by how many chains "
        "found each, not by their posterior mass. Compare K with bayesmix.select_k "
        "(each K fitted on its own), or run more chains and read each chain's answer."
    )


def label_switching(idata: xr.DataTree) -> float:
    """Fraction of draws in which a chain's component labels differ from its usual ones.

    From the relabelling permutations (``sample_stats.relabel_permutation``): for each
    chain, the permutation it needed most often is its labelling, and every draw that
    needed another one had swapped labels within the chain. A whole chain in another
    labelling is not switching (relabelling fixes it exactly); switching within chains
    means the sampler moved between the copies of the posterior, which it can only do
    where components coincide.

    Parameters
    ----------
    idata : xarray.DataTree
        A NUTS fit's result.

    Returns
    -------
    float
        The fraction in [0, 1]; 0 when no permutations are stored.
    """
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    if stats is None or "relabel_permutation" not in stats:
        return 0.0
    perms = stats["relabel_permutation"].transpose("chain", "draw", "component").to_numpy()
    switched = 0
    for chain in perms:
        _, inverse, counts = np.unique(chain, axis=0, return_inverse=True, return_counts=True)
        switched += int((inverse.ravel() != np.argmax(counts)).sum())
    return switched / (perms.shape[0] * perms.shape[1])


def label_invariant_draws(idata: xr.DataTree) -> xr.DataTree:
    """Label-invariant summaries of the draws: sorted weights and the log density.

    ``weights_sorted`` (chain, draw, rank) holds each draw's weights in decreasing
    order, and ``logp`` the sampler's log density (``sample_stats.logp``) when stored.
    Neither depends on which label a component carries, so their R-hat and ESS measure
    convergence where the labels are not identified (the empty components of an
    overfitted mixture).

    Parameters
    ----------
    idata : xarray.DataTree
        A NUTS fit's result with ``weights`` (chain, draw, component).

    Returns
    -------
    xarray.DataTree
        A tree with one ``posterior`` group holding those variables.
    """
    weights = idata["posterior"]["weights"].transpose("chain", "draw", "component")
    ordered = -np.sort(-weights.to_numpy(), axis=-1)
    data = {"weights_sorted": (("chain", "draw", "rank"), ordered)}
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    if stats is not None and "logp" in stats:
        data["logp"] = (("chain", "draw"), stats["logp"].transpose("chain", "draw").to_numpy())
    coords = {"chain": weights["chain"].values, "draw": weights["draw"].values}
    return xr.DataTree.from_dict({"posterior": xr.Dataset(data, coords=coords)})


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


def _convergence_datasets(
    posterior: xr.DataTree | xr.Dataset, var_names: tuple[str, ...]
) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
    """Bulk ESS, tail ESS and rank R-hat of every entry of ``var_names``, by variable.

    The figures of :func:`summary_table`'s ``"diagnostics"`` columns, computed once for all
    the variables (one :func:`arviz_stats.summary` per variable costs about twice as much).
    """
    dataset = posterior.to_dataset() if isinstance(posterior, xr.DataTree) else posterior
    subset = dataset[list(var_names)]
    with np.errstate(invalid="ignore", divide="ignore"):  # constant draws give NaN
        return (
            azs.ess(subset, method="bulk"),
            azs.ess(subset, method="tail"),
            azs.rhat(subset),
        )


def _flat(figure: xr.Dataset, var_names: tuple[str, ...]) -> np.ndarray:
    """Return the values of ``var_names`` in ``figure``, flattened and concatenated in order."""
    return np.concatenate([np.ravel(figure[name].to_numpy()) for name in var_names])


def _extreme(values: np.ndarray, reduce: Callable[[np.ndarray], Any]) -> float:
    """``reduce`` over the values that are numbers (as pandas' min/max); NaN if none is."""
    finite = values[~np.isnan(values)]
    return float(reduce(finite)) if finite.size else float("nan")


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
                rows[_entry_label(name, da, index)] = float(da.values[index])
        return pd.DataFrame({"estimate": pd.Series(rows, dtype=np.float64)})
    # One variable at a time: arviz-stats 1.x mislabels the entries of a variable whose
    # dims are not in the order shared with the others (a mixture of regressions'
    # concomitant (covariate, component) next to (component, ...) variables).
    return pd.concat(
        [
            azs.summary(
                idata, var_names=[name], kind=kind, ci_prob=0.94, ci_kind="hdi", round_to="none"
            )
            for name in var_names
        ]
    )
