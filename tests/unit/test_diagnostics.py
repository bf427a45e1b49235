"""Sampler diagnostics: one warning per problem, each naming its remedy, listed in summary."""

import warnings

import arviz_base as azb
import arviz_stats as azs
import numpy as np
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix.datasets import make_mixture
from bayesmix.diagnostics import (
    _worst_entry,
    label_invariant_draws,
    label_switching,
    sampler_problems,
    summary_table,
)
from bayesmix.exceptions import ConvergenceWarning, SamplerWarning

# The Gaussian family's summary variables, which its model passes to sampler_problems.
GAUSSIAN_VARS = ("weights", "means", "covariances")

CHAINS, DRAWS, K = 4, 500, 2


def _idata(rng, *, shift=0.0, walk=False, collapse=False, divergences=0):
    """A posterior of iid draws around fixed values, optionally broken in one way."""
    noise = rng.normal(size=(CHAINS, DRAWS, K))
    if walk:  # a slowly mixing random walk: tiny ESS
        noise = np.cumsum(noise, axis=1) * 0.05
    means = np.array([0.0, 5.0]) + 0.05 * noise
    means[0] += shift  # chain 0 elsewhere: R-hat
    w0 = np.clip(0.4 + 0.01 * noise[..., 0], 0.01, 0.99)
    if collapse:
        w0[1] = 0.01 + 0.001 * np.abs(noise[1, :, 0])
    weights = np.stack([w0, 1 - w0], axis=-1)
    cov = 1.0 + 0.01 * noise[..., None, None] ** 2
    diverging = np.zeros((CHAINS, DRAWS), dtype=bool)
    diverging.flat[:divergences] = True
    return azb.from_dict(
        {
            "posterior": {"weights": weights, "means": means[..., None], "covariances": cov},
            "sample_stats": {"diverging": diverging},
        },
        dims={
            "weights": ["component"],
            "means": ["component", "feature"],
            "covariances": ["component", "feature", "feature_bis"],
        },
    )


def _messages(problems):
    return [(category, message) for category, message in problems]


def test_healthy_draws_have_no_problems(rng):
    figures, problems = sampler_problems(_idata(rng), GAUSSIAN_VARS)
    assert problems == []
    assert figures["divergences"] == 0
    assert figures["max_rhat"] < 1.01
    assert figures["min_ess_bulk"] > 1000


@pytest.mark.parametrize(
    ("broken", "category", "fragments"),
    [
        ({"divergences": 7}, SamplerWarning, ["7 divergent transitions", "target_accept"]),
        ({"shift": 1.0}, SamplerWarning, ["max R-hat", "different K", "tune"]),
        ({"collapse": True}, ConvergenceWarning, ["chain(s) [1]", "fewer components"]),
    ],
)
def test_each_problem_gives_one_message_with_its_remedy(rng, broken, category, fragments):
    _, problems = sampler_problems(_idata(rng, **broken), GAUSSIAN_VARS)
    matching = [m for c, m in problems if c is category and fragments[0] in m]
    assert len(matching) == 1, problems
    for fragment in fragments[1:]:
        assert fragment in matching[0]


def test_slow_mixing_flags_bulk_and_tail_ess(rng):
    figures, problems = sampler_problems(_idata(rng, walk=True), GAUSSIAN_VARS)
    assert figures["min_ess_bulk"] < 400
    texts = [m for _, m in problems]
    assert sum("min bulk ESS" in t for t in texts) == 1
    assert sum("min tail ESS" in t for t in texts) == 1
    assert all("target_accept" in t for t in texts if "ESS" in t)


def test_fit_warns_once_per_problem_and_lists_them(mocked_sample):
    X, _ = make_mixture(120, [0.5, 0.5], [[0.0, 0.0], [5.0, 5.0]], [np.eye(2)] * 2, random_state=0)
    gm = bm.GaussianMixture(random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm.fit(X, draws=30, chains=2, progressbar=False)
    ours = [str(w.message) for w in caught if issubclass(w.category, SamplerWarning)]
    assert ours  # prior draws as a posterior fail R-hat and ESS
    assert len(ours) == len(set(ours))
    listed = gm.summary().attrs["warnings"]
    assert set(ours) <= set(listed)


@pytest.mark.parametrize("kind", ["all", "stats", "diagnostics"])
def test_an_em_summary_shows_the_estimate_and_no_sd(kind):
    """Issue 21, item 6: sd = 0 for every EM parameter read as zero uncertainty."""
    means = np.array([[0.0, 0.0], [6.0, 1.0]])
    covs = np.stack([np.eye(2), np.eye(2)])
    X, _ = make_mixture(200, [0.4, 0.6], means, covs, random_state=0)
    fit = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em")
    table = fit.summary(kind)
    assert "sd" not in table.columns
    assert list(table.columns) == ["estimate"]
    weights = table.loc[["weights[0]", "weights[1]"], "estimate"].to_numpy()
    np.testing.assert_array_equal(weights, fit.weights_)
    assert table.loc["means[1, x1]", "estimate"] == fit.means_[1, 1]
    assert len(table) == 2 + 4 + 6  # each covariance entry once (issue 21, item 8)


# -- issue 21, item 7: say why a default fit cannot converge ------------------------------


def _with_permutations(idata, perms):
    """Add relabelling permutations (chain, draw, component) to a synthetic fit."""
    stats = idata["sample_stats"].to_dataset()
    idata["sample_stats"] = stats.assign(
        relabel_permutation=(("chain", "draw", "component"), np.asarray(perms))
    )
    return idata


def test_label_switching_counts_swaps_within_chains_only(rng):
    identity, swapped = [0, 1], [1, 0]
    perms = np.empty((CHAINS, DRAWS, K), dtype=np.int64)
    perms[0] = identity
    perms[1] = swapped  # a whole chain in the other labelling: no switching
    perms[2] = identity
    perms[2, :100] = swapped  # 100 draws swapped within chain 2
    perms[3] = swapped
    perms[3, :50] = identity  # 50 within chain 3
    idata = _with_permutations(_idata(rng), perms)
    assert label_switching(idata) == pytest.approx(150 / (CHAINS * DRAWS))
    assert label_switching(_idata(rng)) == 0.0  # nothing stored


def test_a_problem_with_label_switching_names_overlap_as_its_cause(rng):
    perms = np.zeros((CHAINS, DRAWS, K), dtype=np.int64) + np.arange(K)
    perms[:, ::4] = [1, 0]  # a quarter of the draws swapped in every chain
    idata = _with_permutations(_idata(rng, divergences=7), perms)
    figures, problems = sampler_problems(idata, GAUSSIAN_VARS)
    why = [m for c, m in problems if c is ConvergenceWarning and m.startswith("why:")]
    assert len(why) == 1, problems
    assert "overlap" in why[0]
    assert "25%" in why[0]
    assert "target_accept=0.99" in why[0]
    assert figures["label_switching"] == pytest.approx(0.25)
    # Without a problem the switching is reported in the figures but not warned about.
    _, healthy = sampler_problems(_with_permutations(_idata(rng), perms), GAUSSIAN_VARS)
    assert healthy == []


def test_sparse_fits_are_diagnosed_on_label_invariant_summaries(rng):
    """Empty components carry arbitrary labels: chains that agree up to labels converge."""
    chains = []
    for c in range(CHAINS):
        big = 0.7 + 0.01 * rng.normal(size=DRAWS)
        mid = 0.3 - 0.001 - 0.01 * (big - 0.7)
        tiny = np.full(DRAWS, 0.001)
        order = [(0, 1, 2), (2, 0, 1), (1, 2, 0), (0, 2, 1)][c]  # a different labelling
        chains.append(np.stack([big, mid, tiny], axis=-1)[:, order])
    weights = np.stack(chains)
    logp = rng.normal(size=(CHAINS, DRAWS))
    idata = azb.from_dict(
        {
            "posterior": {"weights": weights},
            "sample_stats": {"diverging": np.zeros((CHAINS, DRAWS), dtype=bool), "logp": logp},
        },
        dims={"weights": ["component"]},
    )
    _, labelled = sampler_problems(idata, ("weights",))
    assert any("max R-hat" in m for _, m in labelled)  # per label, the chains disagree
    figures, problems = sampler_problems(idata, ("weights",), sparse=True)
    assert problems == []
    assert figures["max_rhat"] < 1.01
    invariant = label_invariant_draws(idata)["posterior"]
    np.testing.assert_allclose(invariant["weights_sorted"].values[..., 0], weights.max(axis=-1))
    np.testing.assert_array_equal(invariant["logp"].values, logp)


def test_sparse_chains_with_different_cluster_counts_say_why(rng):
    n_obs = 200
    weights = np.empty((CHAINS, DRAWS, 3))
    weights[:2] = [0.6, 0.4 - 1e-4, 1e-4]  # two clusters (1e-4 < 1 / 200)
    weights[2:] = [0.5, 0.3, 0.2]  # three clusters
    weights += 0.001 * rng.random(weights.shape)
    weights /= weights.sum(axis=-1, keepdims=True)
    idata = azb.from_dict(
        {
            "posterior": {"weights": weights},
            "sample_stats": {"diverging": np.zeros((CHAINS, DRAWS), dtype=bool)},
            "observed_data": {"x": np.zeros(n_obs)},
        },
        dims={"weights": ["component"], "x": ["obs"]},
    )
    _, problems = sampler_problems(idata, ("weights",), sparse=True)
    why = [m for c, m in problems if c is ConvergenceWarning and m.startswith("why:")]
    assert len(why) == 1, problems
    assert "chain 0: 2.0" in why[0]
    assert "chain 3: 3.0" in why[0]
    assert "select_k" in why[0]


def test_an_overfitted_fit_uses_label_invariant_diagnostics(mocked_sample):
    X, _ = make_mixture(120, [0.5, 0.5], [[0.0, 0.0], [5.0, 5.0]], [np.eye(2)] * 2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse = bm.overfitted_mixture(k_max=3, random_state=0).fit(
            X, draws=30, chains=2, progressbar=False
        )
        plain = bm.GaussianMixture(n_components=3, random_state=0).fit(
            X, draws=30, chains=2, progressbar=False
        )
    assert sparse.idata.attrs["label_invariant_diagnostics"] == 1
    assert plain.idata.attrs["label_invariant_diagnostics"] == 0


def test_a_chain_in_another_mode_is_named_with_its_log_density_gap(rng):
    idata = _idata(rng, shift=1.0)  # chain 0 elsewhere: an R-hat problem
    logp = -272.0 + 4.7 * rng.normal(size=(CHAINS, DRAWS))
    logp[3] -= 26.0  # chain 3's mean log density 26 below the others' (5.5 sd)
    n_steps = np.full((CHAINS, DRAWS), 12.0)
    n_steps[3] = 100.0
    stats = idata["sample_stats"].to_dataset()
    idata["sample_stats"] = stats.assign(
        logp=(("chain", "draw"), logp), n_steps=(("chain", "draw"), n_steps)
    )
    _, problems = sampler_problems(idata, GAUSSIAN_VARS)
    why = [m for c, m in problems if c is ConvergenceWarning and m.startswith("why:")]
    assert len(why) == 1, problems
    assert "chain(s) [3] sampled elsewhere" in why[0]
    gap = float(why[0].split("mean log density is ")[1].split()[0])
    assert gap == pytest.approx(-26.0, abs=1.0)  # the other chains' median is noisy
    assert "8.3x as long" in why[0]


def test_a_problem_in_a_small_component_names_its_size(rng):
    n_obs = 82
    w0 = 0.09 + 0.005 * rng.normal(size=(CHAINS, DRAWS))
    weights = np.stack([w0, 1 - w0], axis=-1)
    means = np.stack(
        [29.0 + rng.normal(size=(CHAINS, DRAWS)), 21.0 + 0.1 * rng.normal(size=(CHAINS, DRAWS))],
        axis=-1,
    )
    means[0, :, 0] += 1.5  # component 0's mean disagrees across chains
    idata = azb.from_dict(
        {
            "posterior": {"weights": weights, "means": means[..., None]},
            "sample_stats": {"diverging": np.zeros((CHAINS, DRAWS), dtype=bool)},
            "observed_data": {"x": np.zeros(n_obs)},
        },
        dims={"weights": ["component"], "means": ["component", "feature"], "x": ["obs"]},
    )
    _, problems = sampler_problems(idata, ("weights", "means"))
    why = [m for c, m in problems if c is ConvergenceWarning and m.startswith("why:")]
    assert len(why) == 1, problems
    assert "means[0, 0]" in why[0]
    assert "holds about 7 of the 82 observations" in why[0]


@pytest.mark.parametrize("broken", [{}, {"walk": True}, {"shift": 1.0}])
def test_figures_are_the_summary_tables_extremes(broken, rng):
    """min ESS and max R-hat (computed once for all variables) are the summary table's,
    also with a constant variable (its ESS and R-hat are NaN and skipped, as pandas does)."""
    idata = _idata(rng, **broken)
    posterior = idata["posterior"].to_dataset()
    idata["posterior"] = posterior.assign(constant=posterior["weights"] * 0.0 + 1.0)
    names = (*GAUSSIAN_VARS, "constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        table = summary_table(idata, "diagnostics", names)
    figures, _ = sampler_problems(idata, names)
    assert figures["min_ess_bulk"] == pytest.approx(table["ess_bulk"].min(), rel=1e-12)
    assert figures["min_ess_tail"] == pytest.approx(table["ess_tail"].min(), rel=1e-12)
    assert figures["max_rhat"] == pytest.approx(table["r_hat"].max(), rel=1e-12)


@pytest.mark.parametrize("broken", [{"walk": True}, {"shift": 1.0}])
def test_worst_entry_is_the_summary_tables_worst_row(broken, rng):
    """The small-component check names the summary table's row of largest R-hat (ArviZ's
    labels), from the R-hat computed once with ESS (no second summary table)."""
    idata = _idata(rng, **broken)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = summary_table(idata, "diagnostics", GAUSSIAN_VARS)
    label, component = _worst_entry(azs.rhat(idata["posterior"].to_dataset()[list(GAUSSIAN_VARS)]))
    assert label == str(table["r_hat"].idxmax())
    assert component == int(label.split("[")[1].split(",")[0].rstrip("]"))


def test_worst_entry_finds_the_component_by_its_dimension(rng):
    # component is not the first dimension; the worst entry is (feature 1, component 2)
    values = np.full((3, 4), 1.001)
    values[1, 2] = 1.2
    values[0, 0] = np.nan
    r_hat = xr.Dataset(
        {
            "scalar": ((), 1.05),
            "loadings": (("feature", "component"), values),
        },
        coords={"feature": ["a", "b", "c"]},
    )
    assert _worst_entry(r_hat) == ("loadings[b, 2]", 2)
    assert _worst_entry(r_hat[["scalar"]]) == ("scalar", None)
    assert _worst_entry(xr.Dataset({"x": (("component",), [np.nan, np.nan])})) is None
