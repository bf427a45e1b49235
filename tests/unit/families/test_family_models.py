"""The Student-t, Poisson and Bernoulli families share the MixtureModel machinery.

EM fits are checked against scipy densities at the estimate (log-likelihood group,
score_samples, predict_proba, BIC); NUTS plumbing (posterior layout, relabelling,
summary, compare, save/load, plots) uses the mocked sampler of tests/conftest.py, whose
"posterior" is prior draws: the layout is the point there, not the numbers. Recovery
with real sampling is in tests/statistical/test_family_recovery.py.
"""

import functools

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.stats as st
from mixture_data import binary_frame, counts_frame
from scipy.special import logsumexp

import bayesmix as bm
from bayesmix.exceptions import DataError, InvalidParameterError, PriorError

# The mocked "posterior" is prior draws: its diagnostics are bad by construction.
pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning")


def _heavy(rng, n=150):
    z = rng.random(n) < 0.5
    return np.where(z[:, None], [-4.0, 0.0], [4.0, 1.0]) + rng.standard_t(3, size=(n, 2))


def _component_logpdf(fit, X):
    """scipy per-component log densities at the fitted point (the independent reference)."""
    X = np.asarray(X, dtype=float)
    match fit:
        case bm.PoissonMixture():
            return np.stack([st.poisson(r).logpmf(X).sum(1) for r in fit.rates_], axis=1)
        case bm.BernoulliMixture():
            return np.stack([st.bernoulli(p).logpmf(X).sum(1) for p in fit.probs_], axis=1)
        case bm.StudentTMixture():
            return np.stack(
                [
                    st.multivariate_t(m, s, df=nu).logpdf(X)
                    for m, s, nu in zip(fit.means_, fit.scales_, fit.dof_, strict=True)
                ],
                axis=1,
            )


CASES = {
    "poisson": (bm.PoissonMixture, functools.partial(counts_frame, n=120), "rates"),
    "bernoulli": (bm.BernoulliMixture, functools.partial(binary_frame, n=150), "probs"),
    "student_t": (bm.StudentTMixture, _heavy, "scales"),
}


@pytest.fixture(params=sorted(CASES))
def case(request, rng):
    cls, make, param = CASES[request.param]
    return cls, make(rng), param


def test_em_fit_matches_scipy_at_the_estimate(case):
    cls, X, param = case
    fit = cls(n_components=2, random_state=0).fit(X, method="em")
    assert fit.weights_.shape == (2,)
    np.testing.assert_allclose(fit.weights_.sum(), 1.0)
    comp = _component_logpdf(fit, X)
    reference = logsumexp(np.log(fit.weights_) + comp, axis=1)
    stored = fit.idata["log_likelihood"]["x"].isel(chain=0, draw=0).to_numpy()
    np.testing.assert_allclose(stored, reference, rtol=1e-9)
    np.testing.assert_allclose(fit.score_samples(X), reference, rtol=1e-9)
    np.testing.assert_allclose(fit.em_.log_likelihood, reference.mean(), rtol=1e-9)
    resp = np.exp(np.log(fit.weights_) + comp - reference[:, None])
    np.testing.assert_allclose(fit.predict_proba(X), resp, rtol=1e-8, atol=1e-12)
    n_params = fit._n_parameters(np.shape(X)[1])
    np.testing.assert_allclose(
        fit.bic(X), -2 * reference.sum() + n_params * np.log(len(X)), rtol=1e-10
    )
    assert param in fit.idata["posterior"]
    # Canonical labels: increasing first parameter (location, rate, probability).
    first = fit.means_ if param == "scales" else getattr(fit, f"{param}_")
    assert first[0, 0] <= first[1, 0]


def test_parameter_counts():
    assert bm.PoissonMixture(n_components=3)._n_parameters(4) == 3 * 4 + 2
    assert bm.BernoulliMixture(n_components=2)._n_parameters(7) == 2 * 7 + 1
    # Gaussian full (K=2, D=2): 2 * 3 + 2 * 2 + 1 = 11, plus two degrees of freedom.
    assert bm.StudentTMixture(n_components=2)._n_parameters(2) == 13


def test_nuts_plumbing_with_mocked_sampler(case, mocked_sample, tmp_path):
    cls, X, param = case
    fit = cls(n_components=2, random_state=0).fit(X, draws=30, tune=10, chains=2)
    post = fit.idata["posterior"]
    assert (post.sizes["chain"], post.sizes["draw"]) == (2, 30)
    assert post[param].dims[:3] == ("chain", "draw", "component")
    perm = fit.idata["sample_stats"]["relabel_permutation"].to_numpy()
    assert np.all(np.sort(perm, axis=-1) == np.arange(2))  # a permutation per draw
    assert fit.idata["log_likelihood"]["x"].shape == (2, 30, len(X))
    table = fit.summary()
    assert table.index[0] == "weights[0]"
    assert any(label.startswith(f"{param}[") for label in table.index)
    em = cls(n_components=2, random_state=0).fit(X, method="em")
    compared = bm.compare_fits(em, fit)
    assert compared.attrs["fit"]["n_parameters"] == fit._n_parameters(np.shape(X)[1])
    # The distinct scalars of the summary (a symmetric matrix once, its lower triangle).
    assert set(compared.index) <= set(table.index)
    assert {label.split("[")[0] for label in compared.index} == set(fit._summary_vars)
    loaded = bm.load(fit.save(tmp_path / "fit.nc"))
    assert type(loaded) is cls
    np.testing.assert_allclose(loaded.predict_proba(X), fit.predict_proba(X))
    np.testing.assert_allclose(loaded.weights_, fit.weights_)


@pytest.mark.parametrize("name", sorted(CASES))
def test_plots(name, rng, mocked_sample):
    cls, make, _ = CASES[name]
    X = make(rng)
    fit = cls(n_components=2, random_state=0).fit(X, draws=20, tune=10, chains=2)
    for figure in (fit.plot.components(), fit.plot.compare(), fit.plot.responsibilities()):
        assert figure.axes
        plt.close(figure)
    ppc = fit.plot.ppc(n_draws=10, random_seed=0)
    assert fit.idata["posterior_predictive"]["x"].shape[-2:] == np.shape(X)
    if name != "student_t":  # counts and binary data: observed frequencies as bars
        values = np.asarray(X, dtype=int)
        stat = values.sum(axis=1) if name == "bernoulli" else values[:, 0]
        heights = [bar.get_height() for bar in ppc.axes[0].patches]
        expected = np.bincount(stat) / len(stat)
        np.testing.assert_allclose(heights[: expected.size], expected)
        plt.close(ppc)
    em = cls(n_components=2, random_state=0).fit(X, method="em")
    figure = em.plot.components()
    artists = [a for ax in figure.axes for a in (*ax.lines, *ax.patches)]
    assert any(artist.get_gid() == "bayesmix-em" for artist in artists)
    plt.close(figure)


def test_student_t_overrides_gaussian_names(rng):
    fit = bm.StudentTMixture(n_components=2, random_state=0).fit(_heavy(rng), method="em")
    post = fit.idata["posterior"]
    assert {"scales", "dof"} <= set(post.data_vars)
    assert "covariances" not in post
    assert (fit.scales_.shape, fit.dof_.shape) == ((2, 2, 2), (2,))
    with pytest.raises(AttributeError):
        fit.covariances_  # noqa: B018  (a t fit has scales, not covariances)


def test_student_t_is_robust_to_outliers(rng):
    X = _heavy(rng, 300)
    outliers = rng.uniform(-60, 60, size=(15, 2))
    dirty = np.vstack([X, outliers])
    clean_t = bm.StudentTMixture(n_components=2, random_state=0).fit(X, method="em")
    dirty_t = bm.StudentTMixture(n_components=2, random_state=0).fit(dirty, method="em")
    dirty_g = bm.GaussianMixture(n_components=2, random_state=0).fit(dirty, method="em")
    shift_t = np.abs(dirty_t.means_ - clean_t.means_).max()
    shift_g = np.abs(dirty_g.means_ - clean_t.means_).max()
    assert shift_t < 0.3 < shift_g


def test_poisson_map_is_the_closed_form_posterior_mode(rng):
    X = rng.poisson(4.0, size=(50, 1))
    prior = {"rates": bm.Prior("Gamma", alpha=3.0, beta=0.5)}
    fit = bm.PoissonMixture(n_components=1, priors=prior, objective="map").fit(X, method="em")
    np.testing.assert_allclose(fit.rates_[0, 0], (X.sum() + 3.0 - 1.0) / (50 + 0.5), rtol=1e-10)


def test_bernoulli_accepts_booleans_and_reproduces_polca():
    X = bm.datasets.load_carcinoma()
    fit = bm.BernoulliMixture(n_components=2, n_init=10, random_state=0)
    fit.fit(X.astype(bool), method="em")
    # poLCA's documented maximum log-likelihood of the 2-class model of these data.
    np.testing.assert_allclose(fit.em_.log_likelihood * len(X), -317.2568, atol=1e-3)
    assert ((fit.probs_ == 0) | (fit.probs_ > 0)).all()  # boundary estimates kept exact


@pytest.mark.parametrize(
    ("cls", "X", "match"),
    [
        (bm.PoissonMixture, [[1.0], [2.5], [3.0]], "non-negative integer counts"),
        (bm.PoissonMixture, [[1.0], [-2.0], [3.0]], "non-negative integer counts"),
        (bm.BernoulliMixture, [[0.0], [1.0], [2.0]], "binary data"),
    ],
)
def test_bad_data_for_the_family(cls, X, match):
    before = np.array(X)
    with pytest.raises(DataError, match=match):
        cls(n_components=1).fit(X, method="em")
    np.testing.assert_array_equal(np.array(X), before)


def test_bad_family_parameters():
    with pytest.raises(InvalidParameterError, match="dof_bounds"):
        bm.StudentTMixture(dof_bounds=(5.0, 1.0)).fit([[0.0, 1.0], [1.0, 0.0], [2, 2]], method="em")
    with pytest.raises(InvalidParameterError, match="objective"):
        bm.PoissonMixture(objective="mle").fit([[1.0], [2.0]], method="em")
    with pytest.raises(PriorError, match="rates"):
        bm.PoissonMixture(priors={"rates": bm.Prior("Normal", mu=0, sigma=1)}).build_model(
            [[1.0], [2.0]]
        )
