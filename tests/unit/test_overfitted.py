"""The overfitted (sparse finite) mixture and the posterior of the number of clusters."""

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
