"""BIC over (K x covariance model) chooses the models mclust publishes (issue 20).

Scrucca, Fop, Murphy & Raftery (2016), The R Journal 8(1), 289-317: ``Mclust(iris[,
1:4])`` chooses VEV with 2 components. The mclust 6.1.3 vignette: ``densityMclust(
faithful)`` chooses EEE with 3 components, both over mclust's default grid, K = 1..9 and
the fourteen models; here K = 1..5 (the chosen K and the next two; ~25 s each).
"""

from __future__ import annotations

import sys
from pathlib import Path

import arviz_stats as azs
import numpy as np
import pytest

import bayesmix as bm

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("load", "expected"),
    [(bm.datasets.load_iris, ("VEV", 2)), (bm.datasets.load_faithful, ("EEE", 3))],
    ids=["iris", "faithful"],
)
def test_bic_over_the_mclust_grid_chooses_mclusts_model(load, expected):
    table = bm.select_k(
        load(),
        ks=range(1, 6),
        covariance_type="all",
        method="em",
        reg_covar=0.0,
        random_state=0,
        progressbar=False,
    )
    assert len(table) == 5 * 14
    assert table.attrs["best"]["bic"] == expected


def _hdi(draws, prob=0.94):
    """Narrowest interval holding ``prob`` of the draws (first axis), per scalar."""
    ordered = np.sort(draws, axis=0)
    n = ordered.shape[0]
    width = int(np.ceil(prob * n))
    lows = ordered[: n - width + 1]
    highs = ordered[width - 1 :]
    best = np.argmin(highs - lows, axis=0)
    index = np.indices(best.shape)
    return lows[(best, *index)], highs[(best, *index)]


@pytest.mark.parametrize(
    "name", ["EII", "EEI", "VEI", "EVI", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV"]
)
def test_nuts_recovers_a_simulated_covariance_model(name):
    sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "families" / "gaussian"))
    from test_covariance_models_em import _model_data

    rng = np.random.default_rng(11)
    X, truth = _model_data(name, rng, n=600)
    fit = bm.GaussianMixture(n_components=3, covariance_type=name, random_state=0).fit(
        X, chains=4, progressbar=False
    )
    attrs = fit.idata.attrs
    assert attrs["divergences"] == 0
    post = fit.idata["posterior"]
    # R-hat of the identified quantities (the decomposition's free variables are
    # identified only up to the axes' order and signs).
    rhat = azs.rhat(post.to_dataset()[["weights", "means", "covariances", "log_volume"]])
    assert max(float(rhat[v].max()) for v in rhat.data_vars) <= 1.01
    # Truth's components are at means (0, 0, 0), (6, 0, 3), (0, 6, -3).
    order = np.argsort(fit.means_[:, 0] + 10 * fit.means_[:, 1])
    cov = post["covariances"].values.reshape(-1, 3, 3, 3)[:, order]
    rows, cols = np.tril_indices(3)
    draws = cov[:, :, rows, cols].reshape(cov.shape[0], -1)
    volume = np.exp(np.log(np.linalg.eigvalsh(cov)).mean(axis=-1))  # (draws, K)
    true_volume = np.exp(np.log(np.linalg.eigvalsh(truth)).mean(axis=-1))
    scalars = np.concatenate([draws, volume], axis=1)
    true = np.concatenate([truth[:, rows, cols].reshape(-1), true_volume])
    low, high = _hdi(scalars)
    covered = np.mean((low <= true) & (true <= high))
    assert covered >= 0.9, covered
