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
