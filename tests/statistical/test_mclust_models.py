"""BIC over (K x covariance model) chooses the models mclust publishes (issue 20).

Scrucca, Fop, Murphy & Raftery (2016), The R Journal 8(1), 289-317: ``Mclust(iris[,
1:4])`` chooses VEV with 2 components. The mclust 6.1.3 vignette: ``densityMclust(
faithful)`` chooses EEE with 3 components. Both over mclust's default grid, K = 1..9 and
the fourteen models; about 50 s each here.
"""

from __future__ import annotations

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
        ks=range(1, 10),
        covariance_type="all",
        method="em",
        reg_covar=0.0,
        random_state=0,
        progressbar=False,
    )
    assert len(table) == 9 * 14
    assert table.attrs["best"]["bic"] == expected
