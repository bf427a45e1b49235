"""The overfitted (sparse finite) mixture and the posterior of the number of clusters."""

import itertools

import numpy as np
import pytest
import scipy.stats as st

import bayesmix as bm
from bayesmix.exceptions import InvalidParameterError, NotFittedError

pytestmark = [
    pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning"),
    pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning"),
]


def test_overfitted_mixture_is_a_sparse_dirichlet_model():
    means_prior = bm.Prior("Normal", mu=0.0, sigma=10.0)
    model = bm.overfitted_mixture(
        k_max=6, concentration=0.05, covariance_type="diag", priors={"means": means_prior}
    )
    assert isinstance(model, bm.GaussianMixture)
    assert model.n_components == 6
    assert model.covariance_type == "diag"
    assert model.priors == {"means": means_prior, "weights": bm.Prior("Dirichlet", a=0.05)}
    poisson = bm.overfitted_mixture(k_max=5, model=bm.PoissonMixture)
    assert isinstance(poisson, bm.PoissonMixture)
    assert poisson.priors["weights"] == bm.Prior("Dirichlet", a=0.01)


@pytest.mark.parametrize("bad", [0, -1.0, np.inf, "0.01"])
def test_overfitted_mixture_rejects_bad_concentration(bad):
    with pytest.raises(InvalidParameterError, match="concentration"):
        bm.overfitted_mixture(concentration=bad)


def test_nonempty_components_needs_a_fit():
    with pytest.raises(NotFittedError):
        bm.nonempty_components(bm.GaussianMixture())


def test_nonempty_components_matches_the_exact_probability(mocked_sample):
    """P(K+ = 1) per draw is prod_n r_n0 + prod_n r_n1 (two components, N labels)."""
    X = np.array([[-0.3], [0.1], [0.4], [1.2], [-1.0]])
    fit = bm.GaussianMixture(n_components=2, random_state=0).fit(
        X, draws=500, tune=10, chains=2, random_seed=1
    )
    post = fit.idata["posterior"]
    w = post["weights"].to_numpy().reshape(-1, 2)
    mu = post["means"].to_numpy().reshape(-1, 2)
    sd = np.sqrt(post["covariances"].to_numpy().reshape(-1, 2))
    dens = w[:, None, :] * st.norm(mu[:, None, :], sd[:, None, :]).pdf(X[None, :, :1])
    r = dens / dens.sum(axis=2, keepdims=True)  # (S, N, K)
    exact = np.mean(r[:, :, 0].prod(axis=1) + r[:, :, 1].prod(axis=1))
    k_plus = bm.nonempty_components(fit, random_seed=0)
    assert list(k_plus.index) == [1, 2]
    assert k_plus.sum() == pytest.approx(1.0)
    assert k_plus.attrs["draws"].shape == (1000,)
    se = np.sqrt(exact * (1 - exact) / 1000)
    assert abs(k_plus[1] - exact) < 4 * se + 1e-12, (k_plus[1], exact)


def test_nonempty_components_of_well_separated_clusters():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.3, size=40) for c in (-6.0, 0.0, 6.0)])
    fit = bm.GaussianMixture(n_components=3, random_state=0).fit(X, method="em")
    k_plus = bm.nonempty_components(fit, random_seed=0)
    assert k_plus.attrs["mode"] == 3
    assert k_plus[3] == 1.0


@pytest.mark.parametrize("k_max", [1, 0, 2.0, True])
def test_overfitted_mixture_needs_two_components_or_more(k_max):
    with pytest.raises(InvalidParameterError, match=rf"k_max must be an int >= 2; got {k_max!r}"):
        bm.overfitted_mixture(k_max=k_max)


def _exact_nonempty(r):
    """P(K+ = m) of labels drawn from responsibilities ``r`` (N, K), by inclusion-exclusion.

    P(every label in S) = prod_n sum_{k in S} r_nk; P(the labels used are exactly S) =
    sum over T within S of (-1)^(|S| - |T|) P(every label in T).
    """
    k = r.shape[1]
    subsets = [s for m in range(1, k + 1) for s in itertools.combinations(range(k), m)]
    within = {s: r[:, list(s)].sum(axis=1).prod() for s in subsets}
    exactly = {
        s: sum((-1) ** (len(s) - len(t)) * within[t] for t in subsets if set(t) <= set(s))
        for s in subsets
    }
    return np.array([sum(p for s, p in exactly.items() if len(s) == m) for m in range(1, k + 1)])


def test_nonempty_components_of_an_em_fit_is_the_plug_in_distribution():
    """An EM fit is one point: K+ is drawn ``max_draws`` times from the allocations there.

    Issue 24: one allocation draw gave a random 0/1 answer (probability 1 for whatever
    count that draw had). Now the distribution of K+ given the estimate.
    """
    X = np.random.default_rng(0).normal(size=(8, 1))
    fit = bm.GaussianMixture(n_components=3, covariance_type="tied", random_state=0)
    fit.fit(X, method="em")
    exact = _exact_nonempty(fit.predict_proba(X))
    assert exact.max() < 0.99  # an answer that one allocation draw cannot give
    k_plus = bm.nonempty_components(fit, max_draws=4000, random_seed=0)
    assert k_plus.attrs["draws"].shape == (4000,)
    assert k_plus.attrs["plug_in"] is True
    se = np.sqrt(exact * (1 - exact) / 4000)
    np.testing.assert_array_less(np.abs(k_plus.to_numpy() - exact), 4 * se + 1e-12)
    again = bm.nonempty_components(fit, max_draws=4000, random_seed=0)
    assert again.equals(k_plus)
