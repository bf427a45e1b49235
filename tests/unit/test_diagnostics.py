"""Sampler diagnostics: one warning per problem, each naming its remedy, listed in summary."""

import warnings

import arviz_base as azb
import numpy as np
import pytest

import bayesmix as bm
from bayesmix.datasets import make_mixture
from bayesmix.diagnostics import sampler_problems
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
