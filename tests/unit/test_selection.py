"""Choosing K: BIC/ICL from EM, LOO plumbing (mocked sampler), entropy and elpd differences."""

import numpy as np
import pytest
from scipy.special import softmax

import bayesmix as bm
from bayesmix.datasets import make_mixture
from bayesmix.selection import classification_entropy, elpd_difference

MEANS = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 7.0]])
COVS = np.stack([np.eye(2)] * 3)


@pytest.fixture
def X3():
    X, _ = make_mixture(400, [0.3, 0.3, 0.4], MEANS, COVS, random_state=8)
    return X


def test_entropy_closed_forms(rng):
    assert classification_entropy(np.eye(3)[[0, 1, 2, 1]]) == 0.0
    np.testing.assert_allclose(classification_entropy(np.full((10, 4), 0.25)), 10 * np.log(4))
    r = softmax(rng.normal(size=(7, 3)), axis=1)
    np.testing.assert_allclose(classification_entropy(r), -(r * np.log(r)).sum())


def test_elpd_difference_against_the_formula(rng):
    a, b = rng.normal(size=50), rng.normal(size=50)
    diff, se = elpd_difference(a, b)
    np.testing.assert_allclose(diff, a.sum() - b.sum())
    np.testing.assert_allclose(se, np.sqrt(50) * np.std(a - b, ddof=1))
    assert elpd_difference(a, a) == (0.0, 0.0)


def test_em_criteria_pick_the_true_k(X3):
    table = bm.select_k(X3, ks=[1, 2, 3, 4, 5], method="em", random_state=0)
    assert list(table["n_components"]) == [1, 2, 3, 4, 5]
    assert table.attrs["best"] == {"bic": 3, "icl": 3}
    assert table.loc[table["n_components"] == 3, "rank_bic"].item() == 1
    # BIC is -2 log L + p log n with scikit-learn's parameter count.
    from sklearn.mixture import GaussianMixture as SkGM

    sk = SkGM(n_components=3, random_state=0, n_init=5, tol=1e-8).fit(X3)
    row = table.set_index("n_components").loc[3]
    np.testing.assert_allclose(row["bic"], sk.bic(X3), rtol=1e-4)
    assert row["n_parameters"] == sk._n_parameters()
    assert np.all(table["icl"] >= table["bic"])  # the entropy penalty is non-negative


def test_loo_columns_and_pareto_warning(X3, mocked_sample, monkeypatch):
    import arviz_stats as azs

    original = azs.loo

    def unreliable(idata):  # as if importance sampling failed for the first 5 points
        result = original(idata)
        k = result.pareto_k.copy()
        k[:5] = 1.5
        result.pareto_k = k
        return result

    monkeypatch.setattr(azs, "loo", unreliable)
    with pytest.warns(bm.SamplerWarning, match="Pareto k above"):
        table = bm.select_k(
            X3, ks=[2, 3], method="nuts", draws=20, chains=2, random_state=0, progressbar=False
        )
    for column in ("elpd_loo", "se", "p_loo", "elpd_diff", "dse", "rank_loo", "n_bad_pareto_k"):
        assert column in table
    assert np.all(table["n_bad_pareto_k"] >= 5)
    assert list(table["max_pareto_k"]) == [1.5, 1.5]
    best = table.attrs["best"]["loo"]
    assert table.set_index("n_components").loc[best, "elpd_diff"] == 0.0


def test_bad_arguments():
    X, _ = make_mixture(50, [0.5, 0.5], MEANS[:2], COVS[:2], random_state=1)
    with pytest.raises(bm.exceptions.InvalidParameterError, match="distinct"):
        bm.select_k(X, ks=[2, 2], method="em")
    with pytest.raises(bm.exceptions.InvalidParameterError, match="got 0"):
        bm.select_k(X, ks=[0, 1], method="em")
    with pytest.raises(bm.exceptions.InvalidParameterError, match="method must be one of"):
        bm.select_k(X, ks=[1, 2], method="bic")


def test_plot_select_k_writes_an_image(X3, tmp_path):
    table = bm.select_k(X3, ks=[1, 2, 3], method="em", random_state=0)
    fig = bm.plot_select_k(table)
    assert len(fig.axes) == 1
    assert len(fig.axes[0].lines) >= 2
    path = tmp_path / "k.png"
    fig.savefig(path)
    assert path.stat().st_size > 1000
