"""Choosing K: BIC/ICL from EM, LOO plumbing (mocked sampler), entropy and elpd differences."""

import re
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
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


GOOD_CHAINS = {
    "divergences": 0,
    "max_rhat": 1.002,
    "min_ess_bulk": 3000.0,
    "min_ess_tail": 2500.0,
}


class FakeFits(dict):
    """K -> settings of its fake NUTS fit; ``original_loo`` is arviz-stats' own."""

    def __init__(self, original_loo):
        super().__init__()
        self.original_loo = original_loo


@pytest.fixture
def fake_nuts(mocked_sample, monkeypatch):
    """Give the NUTS fit of each K chosen sampler diagnostics and pointwise LOO elpd.

    Fill the returned dict: ``fake_nuts[K] = {"elpd_i": array, "diagnostics": {...}}``.
    The sampler is mocked; the fit's diagnostics (``idata.attrs``, as ``fit`` records them)
    are those of a healthy run unless ``diagnostics`` overrides them, and ``arviz_stats.loo``
    returns ``elpd_i`` (Pareto k 0.2) for a K that has one, the real LOO otherwise.
    """
    import arviz_stats as azs

    from bayesmix.model import MixtureModel

    settings = FakeFits(original_loo=azs.loo)
    check_chains = MixtureModel._check_chains

    def healthy_chains(self, idata, priors):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_chains(self, idata, priors)
        chosen = settings.get(self.n_components, {}).get("diagnostics", {})
        idata.attrs.update(GOOD_CHAINS | chosen)

    def loo(idata):
        k = idata["posterior"].sizes["component"]
        if "loo_error" in settings.get(k, {}):
            raise ValueError(settings[k]["loo_error"])
        if "elpd_i" not in settings.get(k, {}):
            return settings.original_loo(idata)
        elpd_i = np.asarray(settings[k]["elpd_i"], dtype=float)
        return SimpleNamespace(
            elpd=float(elpd_i.sum()),
            se=float(np.sqrt(elpd_i.size * elpd_i.var(ddof=1))),
            p=3.0,
            pareto_k=np.full(elpd_i.size, 0.2),
            good_k=0.7,
            elpd_i=elpd_i,
        )

    monkeypatch.setattr(MixtureModel, "_check_chains", healthy_chains)
    monkeypatch.setattr(azs, "loo", loo)
    return settings


def shifted(base, diff, dse, seed):
    """Pointwise elpd whose sum exceeds ``base``'s by ``diff``, with difference SE ``dse``."""
    z = np.random.default_rng(seed).normal(size=base.size)
    z = (z - z.mean()) / z.std(ddof=1)
    return base + diff / base.size + dse / np.sqrt(base.size) * z


def nuts_select(X, ks, **kwargs):
    return bm.select_k(
        X, ks=ks, method="nuts", draws=20, chains=2, random_state=0, progressbar=False, **kwargs
    )


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


def test_loo_columns_from_arviz_and_unreliable_pareto_k_marked(X3, fake_nuts, monkeypatch):
    import arviz_stats as azs

    original = fake_nuts.original_loo

    def unreliable(idata):  # as if importance sampling failed for the first 5 points
        result = original(idata)
        k = result.pareto_k.copy()
        k[:5] = 1.5
        result.pareto_k = k
        return result

    monkeypatch.setattr(azs, "loo", unreliable)
    # 5 of 400 observations (more than 1%) with Pareto k above the threshold in every
    # fit: no LOO estimate is reliable, so LOO chooses no K and says so.
    with pytest.warns(bm.SamplerWarning, match="no K"):
        table = bm.select_k(
            X3, ks=[2, 3], method="nuts", draws=20, chains=2, random_state=0, progressbar=False
        )
    for column in ("elpd_loo", "se", "p_loo", "elpd_diff", "dse", "rank_loo", "n_bad_pareto_k"):
        assert column in table
    assert np.all(table["n_bad_pareto_k"] >= 5)
    assert list(table["max_pareto_k"]) == [1.5, 1.5]
    assert table["loo_problems"].str.contains("Pareto k").all()
    assert table.attrs["best"]["loo"] is None
    # With no usable fit the differences are to the highest elpd (for reading only).
    top = int(table.loc[table["elpd_loo"].idxmax(), "n_components"])
    assert table.set_index("n_components").loc[top, "elpd_diff"] == 0.0


def test_bad_arguments():
    X, _ = make_mixture(50, [0.5, 0.5], MEANS[:2], COVS[:2], random_state=1)
    with pytest.raises(bm.exceptions.InvalidParameterError, match="distinct"):
        bm.select_k(X, ks=[2, 2], method="em")
    with pytest.raises(bm.exceptions.InvalidParameterError, match=r"ks must be.*got \[0, 1\]"):
        bm.select_k(X, ks=[0, 1], method="em")
    with pytest.raises(bm.exceptions.InvalidParameterError, match="GaussianMixture: n_init"):
        bm.select_k(X, ks=[1, 2], method="em", n_init=0)  # before any fit
    with pytest.raises(bm.exceptions.InvalidParameterError, match="covariance_type"):
        bm.select_k(X, ks=[1, 2], method="em", covariance_type="ful")
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


# -- the decision rule (issue 21, item 1) ---------------------------------------------------


def test_loo_never_chooses_a_fit_that_fails_the_sampler_checks(X3, fake_nuts):
    """Faithful K=1..5 chose the K=5 fit with R-hat 1.53, ESS 7 and 37 divergences."""
    base = np.random.default_rng(1).normal(-4.0, 1.0, size=len(X3))
    fake_nuts[2] = {"elpd_i": shifted(base, -60.0, 8.0, seed=2)}
    fake_nuts[3] = {"elpd_i": base}
    fake_nuts[4] = {
        "elpd_i": shifted(base, 25.0, 4.0, seed=3),  # clearly the best elpd ...
        "diagnostics": {"max_rhat": 1.5, "divergences": 37},  # ... of chains that disagree
    }
    table = nuts_select(X3, [2, 3, 4])
    assert table.attrs["best"]["loo"] == 3
    rows = table.set_index("n_components")
    assert re.search(r"R-hat 1\.50*\b", rows.loc[4, "loo_problems"])
    assert "37 divergences" in rows.loc[4, "loo_problems"]
    assert rows.loc[2, "loo_problems"] == ""
    assert rows.loc[3, "loo_problems"] == ""
    # Differences are to the best usable K, K=3; the unusable K=4 is 25 ahead of it.
    assert rows.loc[3, "elpd_diff"] == 0.0
    np.testing.assert_allclose(rows.loc[4, ["elpd_diff", "dse"]], [25.0, 4.0])
    np.testing.assert_allclose(rows.loc[2, ["elpd_diff", "dse"]], [-60.0, 8.0])
    reason = table.attrs["reason"]["loo"]
    assert reason.startswith("K=3")
    assert "K=4" in reason
    assert "R-hat" in reason


def test_a_k_whose_loo_fails_is_not_usable_and_select_k_goes_on(X3, fake_nuts):
    """An unseeded README select_k on Old Faithful met arviz-stats' PSIS error "All tail
    values are the same" (a row whose largest log-likelihood draws are equal)."""
    base = np.random.default_rng(4).normal(-4.0, 1.0, size=len(X3))
    fake_nuts[2] = {"elpd_i": shifted(base, -60.0, 8.0, seed=5)}
    fake_nuts[3] = {"elpd_i": base}
    fake_nuts[4] = {"loo_error": "All tail values are the same"}
    table = nuts_select(X3, [2, 3, 4])
    assert table.attrs["best"]["loo"] == 3
    rows = table.set_index("n_components")
    assert np.isnan(rows.loc[4, "elpd_loo"])
    assert "Pareto k" in rows.loc[4, "loo_problems"]
    assert rows.loc[3, "loo_problems"] == ""


@pytest.mark.parametrize(
    ("ahead", "dse", "chosen"),
    [
        (6.0, 3.5, 3),  # K=4 ahead by 6 < 2 x 3.5: not distinguishable, the smaller K
        (6.0, 2.0, 4),  # 6 > 2 x 2 and 6 > 4: K=4 is better
        (3.0, 0.5, 3),  # 6 SE, but |elpd_diff| < 4: a negligible difference
    ],
)
def test_loo_takes_the_smallest_k_close_to_the_best(X3, fake_nuts, ahead, dse, chosen):
    base = np.random.default_rng(1).normal(-4.0, 1.0, size=len(X3))
    fake_nuts[3] = {"elpd_i": base}
    fake_nuts[4] = {"elpd_i": shifted(base, ahead, dse, seed=4)}
    table = nuts_select(X3, [3, 4])
    assert table.attrs["best"]["loo"] == chosen
    np.testing.assert_allclose(table.set_index("n_components").loc[3, "dse"], dse)
    assert table.attrs["reason"]["loo"].startswith(f"K={chosen}")


def test_no_usable_nuts_fit_warns_and_chooses_none(X3, fake_nuts):
    base = np.random.default_rng(1).normal(-4.0, 1.0, size=len(X3))
    fake_nuts[2] = {"elpd_i": shifted(base, -9.0, 3.0, seed=2), "diagnostics": {"max_rhat": 1.2}}
    fake_nuts[3] = {"elpd_i": base, "diagnostics": {"divergences": 5, "min_ess_bulk": 90.0}}
    with pytest.warns(bm.SamplerWarning, match="no K") as record:
        table = nuts_select(X3, [2, 3])
    message = str(next(w.message for w in record if "no K" in str(w.message)))
    for remedy in ("tune", "draws", "target_accept", "fewer"):
        assert remedy in message
    assert "K=2" in message
    assert "K=3" in message
    assert table.attrs["best"]["loo"] is None
    assert table.attrs["best"]["bic"] == 3  # the EM criteria are not affected
    assert table.attrs["reason"]["loo"].startswith("no K")
    assert "bulk ESS 90" in table.set_index("n_components").loc[3, "loo_problems"]


def test_bic_and_icl_skip_degenerate_em_fits(X3, recwarn):
    """20 copies of one point: a K that gives them a component has an unbounded likelihood."""
    X = np.vstack([X3, np.tile([[12.0, 12.0]], (20, 1))])
    table = bm.select_k(X, ks=[1, 2, 3, 4, 5], method="em", random_state=0, progressbar=False)
    rows = table.set_index("n_components")
    # At K=4 EM prefers a sound restart (the duplicates share a component); at K=5 every
    # restart gives them a component of their own.
    assert rows.loc[5, "bic"] < rows.loc[3, "bic"]  # the degenerate fit has the lower BIC
    assert "collapsed" in rows.loc[5, "em_problems"]
    assert (rows.loc[[1, 2, 3, 4], "em_problems"] == "").all()
    assert table.attrs["best"] == {"bic": 3, "icl": 3}
    assert "K=5" in table.attrs["reason"]["bic"]
    # Recorded in the table, not warned about: the user has nothing to do.
    assert not [w for w in recwarn.list if issubclass(w.category, bm.ConvergenceWarning)]


def test_no_usable_em_fit_warns_and_chooses_none():
    s = np.random.default_rng(0).normal(size=100)
    X = np.column_stack([s, 2.0 * s + 1.0])  # on a line: every full covariance collapses
    with pytest.warns(bm.ConvergenceWarning, match="no K"):
        table = bm.select_k(X, ks=[1, 2], method="em", random_state=0, progressbar=False)
    assert table.attrs["best"] == {"bic": None, "icl": None}
    assert table["em_problems"].str.contains("collapsed").all()
    assert table.attrs["reason"]["bic"].startswith("no K")


def _loo_table(elpd, diff, dse, problems):
    return pd.DataFrame(
        {
            "n_components": range(1, len(elpd) + 1),
            "elpd_loo": elpd,
            "elpd_diff": diff,
            "dse": dse,
            "loo_problems": problems,
        }
    )


def test_choose_k_on_hand_written_tables():
    from bayesmix.selection import choose_k

    ok = ["", "", "", ""]
    elpd = [-900.0, -610.0, -602.5, -600.0]
    table = _loo_table(elpd, [-300.0, -10.0, -2.5, 0.0], [20.0, 3.0, 1.8, 0.0], ok)
    assert choose_k(table, "loo")[0] == 3  # -2.5 within 2 x 1.8
    assert choose_k(table, "loo", n_se=1.0)[0] == 3  # -2.5 beyond 1 x 1.8, but |-2.5| < 4
    table = _loo_table(elpd, [-300.0, -10.0, -4.5, 0.0], [20.0, 3.0, 2.5, 0.0], ok)
    assert choose_k(table, "loo")[0] == 3  # -4.5 within 2 x 2.5
    assert choose_k(table, "loo", n_se=1.0)[0] == 4  # beyond both 1 x 2.5 and 4
    table = _loo_table(elpd, [-300.0, -10.0, -4.5, 0.0], [20.0, 3.0, 1.8, 0.0], ok)
    assert choose_k(table, "loo")[0] == 4  # beyond 2 x 1.8 and 4
    # The best elpd fails the sampler checks: differences are to K=3, the best usable.
    bad = _loo_table(
        [-900.0, -610.0, -602.5, -590.0],
        [-297.5, -7.5, 0.0, 12.5],
        [20.0, 4.0, 0.0, 2.0],
        ["", "", "", "R-hat 1.534 > 1.01"],
    )
    k, reason = choose_k(bad, "loo")
    assert k == 2  # -7.5 within 2 x 4.0 of K=3
    assert "K=4" in reason
    assert "R-hat 1.534" in reason
    bad["elpd_diff"] = [-310.0, -20.0, -12.5, 0.0]  # to K=4, which is not usable
    with pytest.raises(bm.exceptions.InvalidParameterError, match="elpd_diff"):
        choose_k(bad, "loo")
    none = _loo_table([-900.0, -600.0], [-300.0, 0.0], [20.0, 0.0], ["2 divergences"] * 2)
    k, reason = choose_k(none, "loo")
    assert k is None
    assert reason.startswith("no K")
    em = pd.DataFrame(
        {
            "n_components": [1, 2, 3, 4],
            "bic": [4843.6, 4238.4, 3831.6, 2926.8],
            "icl": [4843.6, 4238.5, 3831.7, 2926.8],
            "em_problems": ["", "", "", "collapsed covariance"],
        }
    )
    assert choose_k(em, "bic")[0] == 3
    assert choose_k(em, "icl")[0] == 3
    em["em_problems"] = [np.nan, np.nan, np.nan, "empty component"]  # read back from CSV
    assert choose_k(em, "bic")[0] == 3
    with pytest.raises(bm.exceptions.InvalidParameterError, match="criterion"):
        choose_k(em, "aic")
    with pytest.raises(bm.exceptions.InvalidParameterError, match="loo"):
        choose_k(em, "loo")  # an EM-only table has no LOO columns


def test_the_sampler_checks_and_their_thresholds():
    from bayesmix.selection import loo_problems

    # At the documented limits: R-hat 1.01, ESS 100 per chain, 1% of the rows with
    # Pareto k above the threshold, no divergence, no collapsed chain.
    limit = {
        "divergences": 0,
        "max_rhat": 1.01,
        "min_ess_bulk": 400.0,
        "min_ess_tail": 400.0,
        "collapsed_chains": 0,
        "n_bad_pareto_k": 4,
    }
    assert loo_problems(limit, n_chains=4, n_rows=400) == []
    over = {
        "divergences": (1, "divergence"),
        "max_rhat": (1.0101, "R-hat"),
        "min_ess_bulk": (399.0, "bulk ESS"),
        "min_ess_tail": (399.0, "tail ESS"),
        "collapsed_chains": (1, "collapsed"),
        "n_bad_pareto_k": (5, "Pareto k"),
    }
    for name, (value, words) in over.items():
        problems = loo_problems(limit | {name: value}, n_chains=4, n_rows=400)
        assert len(problems) == 1, name
        assert words in problems[0]
    # One chain: no R-hat (it compares chains), and 100 draws of ESS suffice.
    one = limit | {"max_rhat": np.nan, "min_ess_bulk": 100.0, "min_ess_tail": 100.0}
    assert loo_problems(one, n_chains=1, n_rows=400) == []
    assert loo_problems(one | {"min_ess_bulk": np.nan}, n_chains=1, n_rows=400)
    # Fewer than 100 rows: 1% is less than one row, so any bad Pareto k fails.
    assert loo_problems(limit | {"n_bad_pareto_k": 1}, n_chains=4, n_rows=82)


def test_plot_select_k_marks_unusable_fits_and_a_criterion_with_no_choice():
    s = np.random.default_rng(0).normal(size=100)
    X = np.column_stack([s, 2.0 * s + 1.0])
    with pytest.warns(bm.ConvergenceWarning, match="no K"):
        table = bm.select_k(X, ks=[1, 2], method="em", random_state=0, progressbar=False)
    fig = bm.plot_select_k(table)
    crosses = [line for line in fig.axes[0].lines if line.get_marker() == "x"]
    assert len(crosses) == 2  # BIC and ICL, each with both K marked
    assert all(len(line.get_xdata()) == 2 for line in crosses)


def test_progress_is_a_line_per_k_on_stderr(capsys):
    # Lines, not a live bar: the sampler's own bar cannot draw over them, and a log
    # (output not a terminal) shows every K as it starts and ends.
    X = bm.datasets.load_faithful()
    bm.select_k(X, ks=[1, 2], method="em", random_state=0, progressbar=True)
    err = capsys.readouterr().err.splitlines()
    starts = [line for line in err if line.startswith("select_k: K=") and line.endswith("...")]
    ends = [line for line in err if " done in " in line]
    assert starts == ["select_k: K=1 (1 of 2) ...", "select_k: K=2 (2 of 2) ..."]
    assert len(ends) == 2
    assert ends[1].startswith("select_k: K=2 (2 of 2): done in ")
    bm.select_k(X, ks=[1, 2], method="em", random_state=0, progressbar=False)
    assert "select_k" not in capsys.readouterr().err


def test_a_criterion_missing_for_some_k_ranks_the_others():
    """A NaN elpd (a fit LOO could not score) crashed the ranking with an int cast."""
    from bayesmix.selection import _rank

    ranks = _rank(pd.Series([-10.0, np.nan, -8.0, -8.0]), ascending=False)
    assert ranks.tolist()[0] == 3
    assert ranks.isna().tolist() == [False, True, False, False]
    assert ranks.tolist()[2:] == [1, 1]
