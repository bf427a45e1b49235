"""The negative binomial mixture: densities, PyMC model, EM (ECM) and the model plumbing.

References are independent of the family's code: PyMC's own ``pm.NegativeBinomial``
inside ``pm.Mixture``, scipy's ``nbinom`` with the labels enumerated, exact sums of
logarithms for the gamma-function differences, and ``scipy.optimize`` on the marginal
likelihood for the EM optimum. NUTS plumbing uses the mocked sampler of
tests/conftest.py (its "posterior" is prior draws: the layout is the point, not the
numbers); recovery with real sampling is tests/statistical/test_negative_binomial_recovery.py.
"""

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import pytest
import scipy.optimize as so
import scipy.stats as st
from pymc.distributions.shape_utils import rv_size_is_none
from scipy.special import expit, logsumexp

import bayesmix as bm
from bayesmix.em.init import initial_responsibilities
from bayesmix.exceptions import DataError, PriorError
from bayesmix.families import FAMILIES
from bayesmix.families.negative_binomial import (
    DISPERSION_BOUNDS,
    _log_rising,
    _NBStatistics,
    _run_restart,
    fit_negative_binomial_em,
    negative_binomial_log_prob,
    negative_binomial_mixture_random,
)

# The mocked "posterior" is prior draws: its diagnostics are bad by construction.
pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning")

K = 3


def _scipy_component(X, rates, dispersion):
    """``sum_d log NB(x_nd | mu_kd, alpha_kd)`` by scipy, shape (N, K)."""
    X = np.asarray(X, dtype=float)
    return np.stack(
        [
            st.nbinom.logpmf(X, a, a / (a + m)).sum(axis=1)
            for m, a in zip(rates, dispersion, strict=True)
        ],
        axis=1,
    )


def _marginal(X, weights, rates, dispersion):
    """Per-sample mixture log-likelihood by scipy (labels summed out), shape (N,)."""
    return logsumexp(np.log(weights) + _scipy_component(X, rates, dispersion), axis=1)


def _simulate(rng, n, weights, rates, dispersion):
    z = rng.choice(len(weights), size=n, p=weights)
    mu, alpha = np.asarray(rates)[z], np.asarray(dispersion)[z]
    return rng.negative_binomial(alpha, alpha / (alpha + mu)).astype(float), z


# -- densities -------------------------------------------------------------------------------


def test_log_prob_matches_scipy(rng):
    X = rng.negative_binomial(2.0, 0.2, size=(60, 3)).astype(float)
    X[0] = 0.0
    rates = rng.uniform(0.5, 30.0, size=(4, K, 3))
    dispersion = np.exp(rng.uniform(np.log(0.05), np.log(500.0), size=(4, K, 3)))
    out = negative_binomial_log_prob(X, rates, dispersion)
    assert out.shape == (4, 60, K)
    for s in range(4):
        np.testing.assert_allclose(
            out[s], _scipy_component(X, rates[s], dispersion[s]), rtol=1e-10, atol=1e-10
        )


def test_log_rising_is_exact_for_large_dispersions():
    # log Gamma(x + a) - log Gamma(a) = sum_{j < x} log(a + j), summed exactly.
    for a in (50.0, 100.5, 1e3, 1e6, 1e9, 1e12):
        for x in (0, 1, 7, 60):
            exact = math.fsum(math.log(a + j) for j in range(x))
            got = float(_log_rising(np.float64(x), np.float64(a)))
            assert abs(got - exact) <= 1e-14 * max(1.0, abs(exact)), (a, x, got, exact)


def test_large_dispersion_is_the_poisson_limit():
    X = np.arange(0.0, 40.0)[:, None]
    out = negative_binomial_log_prob(X, np.array([[[7.5]]]), np.array([[[1e12]]]))[0, :, 0]
    # The NB - Poisson difference is O(mu^2 / alpha) = 6e-11 here.
    np.testing.assert_allclose(out, st.poisson(7.5).logpmf(X[:, 0]), rtol=0, atol=1e-9)


def test_zero_rate_excludes_only_positive_counts():
    X = np.array([[0.0, 2.0], [1.0, 2.0]])
    out = negative_binomial_log_prob(X, np.array([[[0.0, 3.0]]]), np.array([[[2.0, 2.0]]]))[0, :, 0]
    assert out[1] == -np.inf
    np.testing.assert_allclose(out[0], st.nbinom.logpmf(2, 2.0, 0.4), rtol=1e-12)


def test_random_draws_have_the_mixture_moments():
    weights = np.array([0.3, 0.7])
    rates = np.array([[2.0, 30.0], [12.0, 5.0]])
    dispersion = np.array([[0.8, 50.0], [4.0, 1e6]])
    draws = negative_binomial_mixture_random(
        weights, rates, dispersion, rng=np.random.default_rng(0), size=(400_000,)
    )
    assert draws.shape == (400_000, 2)
    mean = weights @ rates
    second = weights @ (rates + rates**2 / dispersion + rates**2)
    np.testing.assert_allclose(draws.mean(axis=0), mean, rtol=0.01)
    np.testing.assert_allclose(draws.var(axis=0), second - mean**2, rtol=0.02)
    # One label per observation: the features are correlated through it.
    corr = np.corrcoef(draws.T)[0, 1]
    assert corr < -0.2


# -- the PyMC model --------------------------------------------------------------------------


def _random_point(model, rng):
    ip = model.initial_point()
    return {name: v + rng.uniform(-0.5, 0.5, size=np.shape(v)) for name, v in ip.items()}


def _values(model, point, names):
    outputs = model.replace_rvs_by_values([model[name] for name in names])
    fn = model.compile_fn(
        outputs, inputs=model.value_vars, on_unused_input="ignore", mode="FAST_COMPILE"
    )
    return dict(zip(names, fn(point), strict=True))


def _pointwise(model, point):
    # PyTensor's Python linker (FAST_COMPILE): no C compilation per model.
    return model.compile_fn(
        model.logp(vars=[model["x"]], sum=False)[0],
        inputs=model.value_vars,
        on_unused_input="ignore",
        mode="FAST_COMPILE",
    )(point)


def _independent_nb(mu, alpha, size):
    """D independent ``pm.NegativeBinomial`` as one draw of a D-vector (for pm.Mixture)."""
    if not rv_size_is_none(size):
        size = pt.concatenate([pt.as_tensor(size, dtype="int64").flatten(), mu.shape[-1:]])
    return pm.NegativeBinomial.dist(mu=mu, alpha=alpha, size=size)


def _independent_nb_logp(value, mu, alpha):
    return pm.logp(pm.NegativeBinomial.dist(mu=mu, alpha=alpha), value).sum(axis=-1)


@pytest.mark.parametrize("n_features", [1, 2])
def test_model_logp_equals_pm_mixture_and_enumerated_labels(n_features, rng):
    X = rng.negative_binomial(3.0, 3.0 / (3.0 + rng.choice([2.0, 9.0, 25.0], size=(40, 1))))
    X = np.broadcast_to(X, (40, n_features)) + rng.poisson(1.0, size=(40, n_features))
    model = bm.NegativeBinomialMixture(n_components=K).build_model(X)
    assert {rv.name for rv in model.free_RVs} == {"weights", "rates", "dispersion"}
    for _ in range(3):  # several random parameter points
        point = _random_point(model, rng)
        v = _values(model, point, ["weights", "rates", "dispersion"])
        pointwise = _pointwise(model, point)
        assert pointwise.shape == (40,)

        if n_features == 1:  # PyMC's univariate mixture of its own NB components
            comp = pm.NegativeBinomial.dist(mu=v["rates"][:, 0], alpha=v["dispersion"][:, 0])
            ref = pm.logp(pm.Mixture.dist(w=v["weights"], comp_dists=comp), X[:, 0]).eval(
                mode="FAST_COMPILE"
            )
            np.testing.assert_allclose(pointwise, ref, rtol=0, atol=1e-8)
        # One label per observation, features independent given it: each component is a
        # D-vector of independent pm.NegativeBinomial (D = 1 included).
        comps = [
            pm.CustomDist.dist(
                v["rates"][k],
                v["dispersion"][k],
                dist=_independent_nb,
                logp=_independent_nb_logp,
                signature="(d),(d)->(d)",
            )
            for k in range(K)
        ]
        ref = pm.logp(pm.Mixture.dist(w=v["weights"], comp_dists=comps), X).eval(
            mode="FAST_COMPILE"
        )
        np.testing.assert_allclose(pointwise, ref, rtol=0, atol=1e-8)

        comp = _scipy_component(X, v["rates"], v["dispersion"])
        np.testing.assert_allclose(
            pointwise, logsumexp(np.log(v["weights"]) + comp, axis=1), rtol=0, atol=1e-8
        )
        # The enumerated latent labels of the first four observations.
        joint = [
            sum(np.log(v["weights"][z]) + comp[n, z] for n, z in enumerate(labels))
            for labels in itertools.product(range(K), repeat=4)
        ]
        np.testing.assert_allclose(logsumexp(joint), pointwise[:4].sum(), rtol=0, atol=1e-8)
        numpy_side = negative_binomial_log_prob(X, v["rates"][None], v["dispersion"][None])[0]
        np.testing.assert_allclose(numpy_side, comp, rtol=1e-10)


def test_prior_predictive_uses_the_generative_story(rng):
    X = rng.negative_binomial(2.0, 0.2, size=(30, 2))
    prior = bm.NegativeBinomialMixture(n_components=2).sample_prior_predictive(
        X, draws=20, random_seed=1
    )
    x = prior["prior_predictive"]["x"]
    assert (x.sizes["obs"], x.sizes["feature"]) == (30, 2)
    values = x.to_numpy()
    assert np.all((values >= 0) & (values == np.round(values)))
    assert prior["prior"]["dispersion"].dims[-2:] == ("component", "feature")


# -- EM --------------------------------------------------------------------------------------

TRUTH = {
    "weights": np.array([0.35, 0.65]),
    "rates": np.array([[3.0, 20.0], [25.0, 6.0]]),
    "dispersion": np.array([[2.0, 8.0], [5.0, 1.5]]),
}


@pytest.fixture(scope="module")
def simulated():
    X, _ = _simulate(np.random.default_rng(7), 2000, **TRUTH)
    return X


@pytest.fixture(scope="module")
def em_fit(simulated):
    return fit_negative_binomial_em(
        simulated, 2, n_init=3, max_iter=5000, tol=1e-13, random_state=0
    )


def _unpack(theta, n_features):
    k = 2
    weights = np.array([expit(-theta[0]), expit(theta[0])])
    rates = np.exp(theta[1 : 1 + k * n_features]).reshape(k, n_features)
    dispersion = np.exp(theta[1 + k * n_features :]).reshape(k, n_features)
    return weights, rates, dispersion


def _pack(weights, rates, dispersion):
    return np.concatenate(
        [[np.log(weights[1] / weights[0])], np.log(rates).ravel(), np.log(dispersion).ravel()]
    )


def test_em_reaches_the_maximum_that_scipy_finds(simulated, em_fit):
    X = simulated
    d = X.shape[1]
    assert em_fit.converged

    def negative(theta):
        return -_marginal(X, *_unpack(theta, d)).mean()

    em_theta = _pack(em_fit.weights, em_fit.params["rates"], em_fit.params["dispersion"])
    em_value = -negative(em_theta)
    np.testing.assert_allclose(em_fit.log_likelihood, em_value, rtol=0, atol=1e-10)
    perturbed = em_theta + np.random.default_rng(3).normal(0.0, 0.2, size=em_theta.shape)
    # The truth in EM's labels (TRUTH is sorted by the first feature's rate).
    ranks = np.argsort(np.argsort(em_fit.params["rates"][:, 0]))
    truth = {key: value[ranks] for key, value in TRUTH.items()}
    truth_labelled = _pack(truth["weights"], truth["rates"], truth["dispersion"])
    for start in (perturbed, truth_labelled):
        found = so.minimize(
            negative,
            start,
            method="L-BFGS-B",
            jac="3-point",
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5000},
        )
        # EM's optimum is at least as high as scipy's, to 1e-6 per sample ...
        assert em_value >= -found.fun - 1e-6, (em_value, -found.fun)
        # ... and the same point.
        weights, rates, dispersion = _unpack(found.x, d)
        np.testing.assert_allclose(weights, em_fit.weights, rtol=1e-3)
        np.testing.assert_allclose(rates, em_fit.params["rates"], rtol=1e-3)
        np.testing.assert_allclose(dispersion, em_fit.params["dispersion"], rtol=1e-3)
    # The estimate is close to the truth (N = 2000).
    np.testing.assert_allclose(em_fit.params["rates"], truth["rates"], rtol=0.1)
    np.testing.assert_allclose(em_fit.params["dispersion"], truth["dispersion"], rtol=0.35)


def test_em_objective_never_decreases(simulated, em_fit):
    trace = np.asarray(em_fit.lower_bounds)
    assert trace.size > 5
    assert np.all(np.diff(trace) >= -1e-10), np.diff(trace).min()
    # Also from a poor start: many iterations, still monotone.
    with pytest.warns(bm.ConvergenceWarning, match="did not converge"):  # tol=0
        result = fit_negative_binomial_em(simulated, 3, max_iter=300, tol=0.0, random_state=1)
    assert np.all(np.diff(result.lower_bounds) >= -1e-10), np.diff(result.lower_bounds).min()


def test_single_component_dispersion_is_the_ml_estimate(rng):
    x = rng.negative_binomial(1.3, 1.3 / (1.3 + 7.0), size=400).astype(float)
    w = rng.integers(1, 4, size=400).astype(float)
    result = fit_negative_binomial_em(x[:, None], 1, sample_weight=w)
    mean = (w * x).sum() / w.sum()
    np.testing.assert_allclose(result.params["rates"][0, 0], mean, rtol=1e-12)

    def negative(log_alpha):
        a = np.exp(log_alpha)
        return -(w * st.nbinom.logpmf(x, a, a / (a + mean))).sum() / w.sum()

    best = so.minimize_scalar(negative, bounds=(-5, 5), method="bounded", options={"xatol": 1e-12})
    # scipy's minimum is located to ~sqrt(eps) (a flat objective); EM's is at least as high.
    np.testing.assert_allclose(result.params["dispersion"][0, 0], np.exp(best.x), rtol=1e-6)
    assert result.log_likelihood >= -best.fun - 1e-14
    np.testing.assert_allclose(result.log_likelihood, -best.fun, rtol=0, atol=1e-12)


def test_under_dispersed_counts_reach_the_poisson_limit(rng):
    x = rng.binomial(20, 0.3, size=(300, 1)).astype(float)  # variance below the mean
    result = fit_negative_binomial_em(x, 1)
    assert result.params["dispersion"][0, 0] == DISPERSION_BOUNDS[1]
    poisson = st.poisson(x.mean()).logpmf(x).mean()
    np.testing.assert_allclose(result.log_likelihood, poisson, rtol=0, atol=1e-5)


def test_sample_weight_equals_repeated_rows(simulated):
    """Integer weights give the EM of the data with every row repeated w_n times.

    From the same starting responsibilities (each repeated row gets its row's), the two
    runs do the same arithmetic up to the order of the sums: the whole trace and the
    estimates agree to 1e-10. Through the public function the (weighted) k-means++
    seeding draws its random numbers over different rows, so the starts differ and only
    the optimum can be compared: it is unique here (well-separated, N = 2000; several
    restarts), and both runs converge to it to 1e-8 in log-likelihood.
    """
    X = simulated
    weight = np.random.default_rng(5).integers(0, 4, size=X.shape[0])
    repeated = np.repeat(X, weight, axis=0)
    resp = initial_responsibilities(X, 2, np.random.default_rng(0), 0.1)
    settings = {"max_iter": 40, "tol": 0.0, "name": "test"}
    weighted = _run_restart(_NBStatistics(X, weight.astype(float)), resp, **settings)
    plain = _run_restart(_NBStatistics(repeated, None), np.repeat(resp, weight, axis=0), **settings)
    np.testing.assert_allclose(weighted.lower_bounds, plain.lower_bounds, rtol=0, atol=1e-10)
    np.testing.assert_allclose(weighted.weights, plain.weights, rtol=1e-10)
    for name in ("rates", "dispersion"):
        np.testing.assert_allclose(weighted.params[name], plain.params[name], rtol=1e-9)

    options = {"n_init": 3, "max_iter": 5000, "tol": 1e-14, "random_state": 0}
    by_weight = fit_negative_binomial_em(X, 2, sample_weight=weight, **options)
    by_rows = fit_negative_binomial_em(repeated, 2, **options)
    np.testing.assert_allclose(by_weight.log_likelihood, by_rows.log_likelihood, rtol=0, atol=1e-8)
    order_w = np.argsort(by_weight.params["rates"][:, 0])
    order_r = np.argsort(by_rows.params["rates"][:, 0])
    np.testing.assert_allclose(by_weight.weights[order_w], by_rows.weights[order_r], rtol=1e-6)
    for name in ("rates", "dispersion"):
        np.testing.assert_allclose(
            by_weight.params[name][order_w], by_rows.params[name][order_r], rtol=1e-5
        )


@pytest.mark.parametrize(
    ("sample_weight", "match"),
    [
        (np.ones(3), "shape"),
        (-np.ones(5), "non-negative"),
        (np.zeros(5), "zero for every row"),
        (np.array([1.0, np.nan, 1.0, 1.0, 1.0]), "finite"),
    ],
)
def test_bad_sample_weight(sample_weight, match):
    X = np.array([[0.0], [3.0], [5.0], [1.0], [9.0]])
    with pytest.raises(DataError, match=match):
        fit_negative_binomial_em(X, 1, sample_weight=sample_weight)


def test_em_function_rejects_non_counts():
    with pytest.raises(DataError, match="non-negative"):
        fit_negative_binomial_em(np.array([[1.0], [2.5], [3.0]]), 1)


def test_em_is_reproducible(simulated):
    first = fit_negative_binomial_em(simulated, 2, n_init=2, random_state=3)
    second = fit_negative_binomial_em(simulated, 2, n_init=2, random_state=3)
    np.testing.assert_array_equal(first.params["dispersion"], second.params["dispersion"])
    np.testing.assert_array_equal(first.lower_bounds, second.lower_bounds)


# -- the model class -------------------------------------------------------------------------


def _frame(rng, n=150):
    X, _ = _simulate(
        rng,
        n,
        np.array([0.4, 0.6]),
        np.array([[2.0, 15.0], [20.0, 4.0]]),
        np.array([[3.0, 5.0], [6.0, 2.0]]),
    )
    return pd.DataFrame(X.astype(int), columns=["a", "b"])


def test_registry_and_public_name():
    assert FAMILIES["negative-binomial"] is bm.NegativeBinomialMixture
    assert "NegativeBinomialMixture" in bm.__all__
    assert FAMILIES.class_names()["NegativeBinomialMixture"] == "negative-binomial"


def test_constructor_stores_arguments_unchanged():
    priors = {"dispersion": bm.Prior("Gamma", alpha=2.0, beta=0.5)}
    model = bm.NegativeBinomialMixture(
        n_components=3, priors=priors, n_init=2, max_iter=10, tol=1e-4, random_state=4
    )
    assert model.get_params() == {
        "n_components": 3,
        "priors": priors,
        "n_init": 2,
        "init": "emem",
        "max_iter": 10,
        "tol": 1e-4,
        "random_state": 4,
        "missing": "raise",
    }
    assert model.priors is priors
    with pytest.raises(TypeError):
        bm.NegativeBinomialMixture(2)  # keyword-only


def test_em_fit_matches_scipy_at_the_estimate(rng):
    X = _frame(rng)
    fit = bm.NegativeBinomialMixture(n_components=2, random_state=0).fit(X, method="em")
    assert fit.weights_.shape == (2,)
    assert fit.rates_.shape == fit.dispersion_.shape == (2, 2)
    assert fit.rates_[0, 0] <= fit.rates_[1, 0]  # canonical labels
    post = fit.idata["posterior"]
    assert post["dispersion"].dims == ("chain", "draw", "component", "feature")
    assert list(post["feature"].to_numpy()) == ["a", "b"]
    reference = _marginal(X, fit.weights_, fit.rates_, fit.dispersion_)
    stored = fit.idata["log_likelihood"]["x"].isel(chain=0, draw=0).to_numpy()
    np.testing.assert_allclose(stored, reference, rtol=1e-10)
    np.testing.assert_allclose(fit.score_samples(X), reference, rtol=1e-10)
    np.testing.assert_allclose(fit.em_.log_likelihood, reference.mean(), rtol=1e-10)
    proba = fit.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    resp = np.exp(
        np.log(fit.weights_) + _scipy_component(X, fit.rates_, fit.dispersion_) - reference[:, None]
    )
    np.testing.assert_allclose(proba, resp, rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(fit.predict(X), proba.argmax(axis=1))
    n_params = 2 - 1 + 2 * 2 * 2
    assert fit._n_parameters(2) == n_params
    np.testing.assert_allclose(
        fit.bic(X), -2 * reference.sum() + n_params * np.log(len(X)), rtol=1e-12
    )
    np.testing.assert_allclose(fit.aic(X), -2 * reference.sum() + 2 * n_params, rtol=1e-12)


def test_parameter_count():
    assert bm.NegativeBinomialMixture(n_components=3)._n_parameters(4) == 2 + 2 * 3 * 4


def test_nuts_plumbing_with_mocked_sampler(rng, mocked_sample, tmp_path):
    X = _frame(rng)
    model = bm.NegativeBinomialMixture(n_components=2, random_state=0)
    fit = model.fit(X, draws=30, tune=10, chains=2)
    post = fit.idata["posterior"]
    assert (post.sizes["chain"], post.sizes["draw"]) == (2, 30)
    assert post["dispersion"].dims == ("chain", "draw", "component", "feature")
    perm = fit.idata["sample_stats"]["relabel_permutation"].to_numpy()
    assert np.all(np.sort(perm, axis=-1) == np.arange(2))
    assert fit.idata["log_likelihood"]["x"].shape == (2, 30, len(X))
    table = fit.summary()
    assert table.index[0] == "weights[0]"
    assert "dispersion[1, b]" in table.index
    em = bm.NegativeBinomialMixture(n_components=2, random_state=0).fit(X, method="em")
    compared = bm.compare_fits(em, fit)
    assert compared.attrs["fit"]["n_parameters"] == 9
    assert {label.split("[")[0] for label in compared.index} == {"weights", "rates", "dispersion"}
    proba = fit.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    loaded = bm.load(fit.save(tmp_path / "fit.nc"))
    assert type(loaded) is bm.NegativeBinomialMixture
    assert loaded.get_params() == fit.get_params()
    np.testing.assert_allclose(loaded.predict_proba(X), proba)
    np.testing.assert_allclose(loaded.dispersion_, fit.dispersion_)
    np.testing.assert_allclose(loaded.em_.params["dispersion"], em.em_.params["dispersion"])


def test_em_fit_round_trips_and_simulates(rng, tmp_path):
    X = _frame(rng)
    fit = bm.NegativeBinomialMixture(n_components=2, random_state=0).fit(X, method="em")
    loaded = bm.load(fit.save(tmp_path / "em.nc"))
    np.testing.assert_allclose(loaded.rates_, fit.rates_)
    np.testing.assert_allclose(loaded.bic(X), fit.bic(X))
    assert loaded.idata.attrs["inference_method"] == "em"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Numba will use object mode", UserWarning)
        replicated = fit.sample_posterior_predictive(random_seed=0)["posterior_predictive"]["x"]
    assert replicated.shape[-2:] == X.shape
    values = replicated.to_numpy()
    assert np.all((values >= 0) & (values == np.round(values)))


def test_start_is_inside_the_support():
    model = bm.NegativeBinomialMixture(n_components=2)
    em = fit_negative_binomial_em(
        np.array([[0.0], [0.0], [0.0], [5.0], [6.0], [5.0]]), 2, random_state=0
    )
    start = model._start_from_em(em, 1)
    assert np.all(start["rates"] > 0)
    assert np.all(start["weights"] > 0)
    assert np.all((start["dispersion"] > 0) & (start["dispersion"] <= 1e3))
    np.testing.assert_allclose(start["weights"].sum(), 1.0)


@pytest.mark.parametrize("bad", [[[1.0], [-2.0], [3.0]], [[1.0], [2.5], [3.0]]])
def test_bad_data_raises_data_error(bad):
    with pytest.raises(DataError, match="non-negative integer counts"):
        bm.NegativeBinomialMixture(n_components=1).fit(bad, method="em")


def test_prediction_data_are_checked(rng):
    X = _frame(rng)
    fit = bm.NegativeBinomialMixture(n_components=2, random_state=0).fit(X, method="em")
    with pytest.raises(DataError, match="non-negative integer counts"):
        fit.predict_proba(np.array([[1.0, 0.5]]))


def test_priors_are_checked_and_defaults_are_data_scaled(rng):
    X = _frame(rng)
    with pytest.raises(PriorError, match="dispersion"):
        bm.NegativeBinomialMixture(
            priors={"dispersion": bm.Prior("Normal", mu=0, sigma=1)}
        ).build_model(X)
    fit = bm.NegativeBinomialMixture(n_components=2, random_state=0).fit(X, method="em")
    assert fit.priors_["dispersion"] == bm.Prior("Gamma", alpha=2.0, beta=0.1)
    np.testing.assert_allclose(fit.priors_["rates"].params["beta"], 1.0 / X.mean().to_numpy())
    custom = {"dispersion": bm.Prior("Exponential", lam=0.05)}
    model = bm.NegativeBinomialMixture(priors=custom).build_model(X)
    assert "dispersion" in {rv.name for rv in model.free_RVs}
    assert custom == {"dispersion": bm.Prior("Exponential", lam=0.05)}  # not mutated


def test_warpbreaks_nb_beats_poisson_by_bic():
    X = bm.datasets.load_warpbreaks()[["breaks"]]
    nb = bm.NegativeBinomialMixture(n_components=1, random_state=0).fit(X, method="em")
    poisson = bm.PoissonMixture(n_components=1, random_state=0).fit(X, method="em")
    np.testing.assert_allclose(nb.rates_[0, 0], 1520 / 54, rtol=1e-12)
    assert nb.bic(X) < poisson.bic(X) - 100


def test_model_sample_weight_is_repeated_rows(rng):
    X = _frame(rng, 80)
    weight = rng.integers(0, 4, size=len(X))
    repeated = X.loc[X.index.repeat(weight)].reset_index(drop=True)
    spec = {"n_components": 2, "random_state": 0, "tol": 1e-12, "max_iter": 5000}
    by_weight = bm.NegativeBinomialMixture(**spec).fit(X, method="em", sample_weight=weight)
    by_rows = bm.NegativeBinomialMixture(**spec).fit(repeated, method="em")
    np.testing.assert_allclose(
        by_weight.em_.log_likelihood, by_rows.em_.log_likelihood, rtol=0, atol=1e-8
    )
    np.testing.assert_allclose(by_weight.rates_, by_rows.rates_, rtol=1e-5)
    # The PyMC models: the same log density (weighted mean priors, weighted likelihood).
    weighted_model = bm.NegativeBinomialMixture(n_components=2).build_model(X, sample_weight=weight)
    plain_model = bm.NegativeBinomialMixture(n_components=2).build_model(repeated)
    point = _random_point(plain_model, rng)
    np.testing.assert_allclose(
        weighted_model.compile_logp(mode="FAST_COMPILE")(point),
        plain_model.compile_logp(mode="FAST_COMPILE")(point),
        rtol=1e-10,
    )
