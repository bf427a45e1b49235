"""Slow: select_k finds the true K on separated data by BIC and by LOO."""

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.datasets import make_mixture

pytestmark = pytest.mark.slow


def test_bic_and_loo_pick_the_true_k():
    means = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 6.0]])
    X, _ = make_mixture(600, [0.3, 0.3, 0.4], means, np.stack([np.eye(2)] * 3), random_state=5)
    table = bm.select_k(
        X, ks=[2, 3, 4], draws=500, tune=500, chains=2, random_state=0, progressbar=False
    )
    assert table.attrs["best"]["bic"] == 3
    assert table.attrs["best"]["loo"] == 3
    row2 = table.set_index("n_components").loc[2]
    assert row2["elpd_diff"] < -4 * row2["dse"]  # K=2 is clearly worse
    assert table["n_bad_pareto_k"].loc[table["n_components"] == 3].item() == 0


def test_loo_on_old_faithful_skips_the_fits_that_fail_the_sampler_checks():
    """Issue 21 item 1: the quick start's select_k crowned K=5 (R-hat 1.53, 37 divergences)."""
    X = bm.datasets.load_faithful()
    table = bm.select_k(X, ks=range(1, 6), random_state=0, progressbar=False)
    rows = table.set_index("n_components")
    chosen = table.attrs["best"]["loo"]
    assert chosen is not None
    assert rows.loc[chosen, "loo_problems"] == ""
    # The fit with the highest elpd fails the checks, is marked, and is not chosen.
    top = int(rows["elpd_loo"].idxmax())
    assert rows.loc[top, "loo_problems"] != ""
    assert chosen != top
    assert f"K={top} (" in table.attrs["reason"]["loo"]
    # The documented rule, recomputed: the smallest usable K within max(2 dse, 4) of the
    # best usable K's elpd.
    usable = rows[rows["loo_problems"] == ""]
    assert usable.loc[usable["elpd_loo"].idxmax(), "elpd_diff"] == 0.0
    close = usable[usable["elpd_diff"] >= -np.maximum(2.0 * usable["dse"], 4.0)]
    assert chosen == close.index.min()
