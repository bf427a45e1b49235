"""Missing values (NaN) in the independent-feature families: Poisson, Bernoulli, NB (issue 20).

A missing feature drops out of its row's product: the row's density is the complete-data
mixture density summed over the missing values' support. The references below are built
from ``scipy.stats`` and such sums, never from the code under test.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pymc as pm
import pytest
from scipy import optimize, special, stats

import bayesmix as bm
from bayesmix._numeric import observed_values
from bayesmix.exceptions import DataError
from bayesmix.families import _independent
from bayesmix.families.bernoulli import bernoulli_log_prob
from bayesmix.families.negative_binomial import _m_step, _NBStatistics, negative_binomial_log_prob
from bayesmix.families.poisson import _poisson_terms, poisson_log_prob
from bayesmix.stats import pointwise_log_likelihood, posterior_responsibilities

WEIGHTS = np.array([0.35, 0.65])
RATES = np.array([[1.5, 6.0, 3.0], [7.0, 0.8, 2.0]])
PROBS = np.array([[0.2, 0.85, 0.4], [0.9, 0.1, 0.65]])
DISPERSION = np.array([[2.0, 5.0, 1.5], [3.0, 0.7, 4.0]])
# Counts 0..199: the Poisson and NB tails beyond are below 1e-30 for these parameters.
COUNTS = np.arange(200.0)


def _pmf(family: str, x: np.ndarray, k: int, d: int) -> np.ndarray:
    """log p(x | component k, feature d) from scipy.stats."""
    if family == "poisson":
        return stats.poisson.logpmf(x, RATES[k, d])
    if family == "bernoulli":
        return stats.bernoulli.logpmf(x, PROBS[k, d])
    mu, alpha = RATES[k, d], DISPERSION[k, d]
    return stats.nbinom.logpmf(x, alpha, alpha / (alpha + mu))


def _complete_log_density(family: str, X: np.ndarray) -> np.ndarray:
    """log sum_k pi_k prod_d p(x_nd | k) of complete rows, from scipy.stats."""
    terms = np.stack(
        [
            np.log(WEIGHTS[k]) + sum(_pmf(family, X[:, d], k, d) for d in range(X.shape[1]))
            for k in range(2)
        ],
        axis=-1,
    )
    return special.logsumexp(terms, axis=-1)


def _marginal_reference(family: str, row: np.ndarray) -> float:
    """The complete-data density summed over every value of the row's missing entries."""
    support = np.array([0.0, 1.0]) if family == "bernoulli" else COUNTS
    missing = np.flatnonzero(np.isnan(row))
    grid = np.array(list(itertools.product(support, repeat=missing.size)))
    rows = np.tile(row, (grid.shape[0], 1))
    rows[:, missing] = grid
    return float(special.logsumexp(_complete_log_density(family, rows)))


def _observed_terms(family: str, X: np.ndarray, weights, params) -> np.ndarray:
    """log pi_k + sum over the observed features of log p(x_nd | k), (N, K), scipy.stats."""
    out = np.tile(np.log(weights), (X.shape[0], 1))
    for n, k, d in itertools.product(range(X.shape[0]), range(len(weights)), range(X.shape[1])):
        x = X[n, d]
        if np.isnan(x):
            continue
        if family == "poisson":
            out[n, k] += stats.poisson.logpmf(x, params["rates"][k, d])
        elif family == "bernoulli":
            out[n, k] += stats.bernoulli.logpmf(x, params["probs"][k, d])
        else:
            mu, alpha = params["rates"][k, d], params["dispersion"][k, d]
            out[n, k] += stats.nbinom.logpmf(x, alpha, alpha / (alpha + mu))
    return out


ROWS = {
    "poisson": np.array([[2.0, np.nan, 4.0], [np.nan, 1.0, np.nan], [0.0, 3.0, 1.0]]),
    "bernoulli": np.array([[1.0, np.nan, 0.0], [np.nan, 0.0, np.nan], [0.0, 1.0, 1.0]]),
    "negative_binomial": np.array([[5.0, np.nan, 0.0], [np.nan, 2.0, np.nan], [1.0, 7.0, 3.0]]),
}
FAMILIES = list(ROWS)
CLASSES = {
    "poisson": bm.PoissonMixture,
    "bernoulli": bm.BernoulliMixture,
    "negative_binomial": bm.NegativeBinomialMixture,
}


def _numpy_log_density(family: str, X: np.ndarray) -> np.ndarray:
    if family == "poisson":
        component = poisson_log_prob(X, RATES[None])
    elif family == "bernoulli":
        component = bernoulli_log_prob(X, PROBS[None])
    else:
        component = negative_binomial_log_prob(X, RATES[None], DISPERSION[None])
    return special.logsumexp(component[0] + np.log(WEIGHTS), axis=-1)


@pytest.mark.parametrize("family", FAMILIES)
def test_numpy_density_of_a_row_with_missing_values_sums_the_complete_density(family):
    rows = ROWS[family]
    expected = [_marginal_reference(family, row) for row in rows]
    np.testing.assert_allclose(_numpy_log_density(family, rows), expected, rtol=0, atol=1e-10)


def _model_point(model: pm.Model, rng: np.random.Generator) -> dict:
    """A point away from the initial one, on the unconstrained scale."""
    return {
        name: value + 0.4 * rng.standard_normal(np.shape(value))
        for name, value in model.initial_point().items()
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_pymc_model_density_sums_the_complete_density_with_finite_gradient(family):
    rng = np.random.default_rng(1)
    rows = ROWS[family]
    estimator = CLASSES[family](n_components=2, missing="model")
    model = estimator.build_model(rows)
    names = ["weights", *estimator._component_vars]
    per_row = model.logp(vars=[model["x"]], sum=False)[0]
    # The constrained values of the parameters at the point (not random draws of them).
    values = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn([per_row, *values], mode="FAST_COMPILE")
    point = _model_point(model, rng)
    log_density, weights, *params = fn(point)
    # The reference at the model's constrained values, from scipy.stats.
    rates = params[0]
    expected = []
    for row in rows:
        support = np.array([0.0, 1.0]) if family == "bernoulli" else COUNTS
        missing = np.flatnonzero(np.isnan(row))
        grid = np.array(list(itertools.product(support, repeat=missing.size)))
        filled = np.tile(row, (grid.shape[0], 1))
        filled[:, missing] = grid
        values = dict(zip(estimator._component_vars, params, strict=True))
        terms = _observed_terms(family, filled, weights, values)
        expected.append(special.logsumexp(terms))
    assert rates.shape == (2, 3)
    np.testing.assert_allclose(log_density, expected, rtol=0, atol=1e-10)
    gradient = model.compile_dlogp(mode="FAST_COMPILE")(point)
    assert np.all(np.isfinite(gradient))
    assert np.isfinite(model.compile_logp(mode="FAST_COMPILE")(point))


def test_pymc_model_with_sample_weight_and_missing_values_is_finite():
    X = ROWS["poisson"]
    model = bm.PoissonMixture(n_components=2, missing="model").build_model(
        X, sample_weight=np.array([1.0, 2.0, 3.0])
    )
    point = _model_point(model, np.random.default_rng(2))
    assert np.isfinite(model.compile_logp(mode="FAST_COMPILE")(point))
    assert np.all(np.isfinite(model.compile_dlogp(mode="FAST_COMPILE")(point)))


# --- EM ---------------------------------------------------------------------------------


def _simulate(family: str, rng: np.random.Generator, n: int = 600, copies: int = 1) -> np.ndarray:
    """Draw ``n`` rows of the mixture, its 3 features repeated ``copies`` times."""
    z = rng.choice(2, size=n, p=WEIGHTS)
    rates, probs, dispersion = (np.tile(a, (1, copies))[z] for a in (RATES, PROBS, DISPERSION))
    if family == "poisson":
        return rng.poisson(rates).astype(float)
    if family == "bernoulli":
        return (rng.random(probs.shape) < probs).astype(float)
    return rng.negative_binomial(dispersion, dispersion / (dispersion + rates)).astype(float)


def _mcar(rng: np.random.Generator, X: np.ndarray, rate: float) -> np.ndarray:
    mask = rng.random(X.shape) < rate
    mask[mask.all(axis=1), 0] = False  # no row with every value missing
    return np.where(mask, np.nan, X)


def _em(family: str, X: np.ndarray, **settings) -> bm.MixtureModel:
    return CLASSES[family](n_components=2, random_state=0, **settings).fit(X, method="em")


@pytest.mark.parametrize(
    ("family", "settings"),
    [
        ("poisson", {}),
        ("poisson", {"objective": "map"}),
        ("bernoulli", {}),
        ("bernoulli", {"objective": "map"}),
        ("negative_binomial", {}),
    ],
)
def test_without_missing_values_the_em_fit_is_todays(family, settings):
    rng = np.random.default_rng(3)
    X = _simulate(family, rng, n=300)
    w = rng.integers(1, 4, X.shape[0]).astype(float)
    today = CLASSES[family](n_components=2, random_state=0, **settings).fit(
        X, method="em", sample_weight=w
    )
    model = CLASSES[family](n_components=2, random_state=0, missing="model", **settings).fit(
        X, method="em", sample_weight=w
    )
    for name, value in today.em_.params.items():
        np.testing.assert_array_equal(model.em_.params[name], value)
    np.testing.assert_array_equal(model.weights_, today.weights_)
    np.testing.assert_array_equal(model.em_.lower_bounds, today.em_.lower_bounds)
    np.testing.assert_array_equal(model.predict_proba(X), today.predict_proba(X))


@pytest.mark.parametrize(
    ("family", "settings"),
    [
        ("poisson", {}),
        ("poisson", {"objective": "map"}),
        ("bernoulli", {}),
        ("negative_binomial", {}),
    ],
)
def test_em_with_missing_values_never_decreases_the_objective(family, settings):
    rng = np.random.default_rng(4)
    X = _mcar(rng, _simulate(family, rng, n=400), 0.3)
    fit = _em(family, X, missing="model", **settings)
    assert np.all(np.diff(fit.em_.lower_bounds) >= -1e-10)
    assert np.all(np.isfinite(fit.idata["log_likelihood"]["x"].values))


def _error(fit: bm.MixtureModel, full: bm.MixtureModel) -> float:
    """Root mean square difference of every parameter (dispersions on the log scale)."""
    differences = [fit.weights_ - full.weights_]
    for name, value in full.em_.params.items():
        log = name == "dispersion"
        estimate = fit.em_.params[name]
        differences.append(np.log(estimate) - np.log(value) if log else estimate - value)
    return float(np.sqrt(np.mean(np.concatenate([d.ravel() for d in differences]) ** 2)))


# Measured RMS errors against the full-data EM fit (model vs listwise deletion), 6 features,
# 25% MCAR, n=600 (about 110 complete rows are left for listwise deletion):
#   poisson   seed 0: 0.115 vs 0.178; seed 1: 0.067 vs 0.202; seed 2: 0.058 vs 0.150
#   bernoulli seed 0: 0.014 vs 0.059; seed 1: 0.014 vs 0.045; seed 2: 0.017 vs 0.047
#   NB        seed 0: 0.125 vs 2.634; seed 1: 0.193 vs 3.561; seed 2: 0.113 vs 0.397
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_with_missing_values_beats_listwise_deletion(family, seed):
    rng = np.random.default_rng(10 + seed)
    X = _simulate(family, rng, copies=2)
    masked = _mcar(rng, X, 0.25)
    full = _em(family, X)
    model = _em(family, masked, missing="model")
    listwise = _em(family, masked[~np.isnan(masked).any(axis=1)])
    assert _error(model, full) < _error(listwise, full)


def _weighted_nb_objective(x, r, mu, alpha):
    return -(r * stats.nbinom.logpmf(x, alpha, alpha / (alpha + mu))).sum()


def test_negative_binomial_m_step_maximises_the_weighted_observed_data_likelihood():
    rng = np.random.default_rng(5)
    X = _mcar(rng, _simulate("negative_binomial", rng, n=300), 0.25)
    resp = rng.dirichlet([1.0, 1.0], size=X.shape[0])
    weights, params = _m_step(_NBStatistics(X, None), resp, None)
    np.testing.assert_allclose(weights, resp.mean(axis=0), rtol=1e-12)
    for k, d in itertools.product(range(2), range(X.shape[1])):
        observed = ~np.isnan(X[:, d])
        x, r = X[observed, d], resp[observed, k]
        best = optimize.minimize(
            lambda t, x=x, r=r: _weighted_nb_objective(x, r, *np.exp(t)),
            np.log([x.mean(), 2.0]),
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000},
        )
        mu, alpha = np.exp(best.x)
        assert params["rates"][k, d] == pytest.approx((r * x).sum() / r.sum(), rel=1e-12)
        assert params["rates"][k, d] == pytest.approx(mu, rel=1e-5)
        assert params["dispersion"][k, d] == pytest.approx(alpha, rel=1e-4)
        # and it is at least as good as the numerical optimum
        value = _weighted_nb_objective(x, r, params["rates"][k, d], params["dispersion"][k, d])
        assert value <= best.fun + 1e-9


@pytest.mark.parametrize("objective", ["ml", "map"])
def test_poisson_m_step_is_the_per_feature_formula_over_observed_counts(objective):
    rng = np.random.default_rng(6)
    X = _mcar(rng, _simulate("poisson", rng, n=200), 0.3)
    resp = rng.dirichlet([1.0, 1.0], size=X.shape[0])
    alpha, beta = 2.0, 0.5
    m_step = _poisson_terms(objective, {"alpha": alpha, "beta": beta}, 2, 3)[0]
    nk, counts, sums = _independent.feature_statistics(
        resp, observed_values(X), _independent.observed_mask(X)
    )
    rates = m_step(counts, sums)
    for k, d in itertools.product(range(2), range(3)):
        observed = ~np.isnan(X[:, d])
        s = (resp[observed, k] * X[observed, d]).sum()
        n = resp[observed, k].sum()
        expected = s / n if objective == "ml" else (s + alpha - 1.0) / (n + beta)
        assert rates[k, d] == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(nk, resp.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_warm_start_on_missing_values_stays_at_the_in_memory_fixed_point(family):
    # The chunked EM steps (warm starts, Dask without NaN) use the same masked statistics.
    rng = np.random.default_rng(7)
    X = _mcar(rng, _simulate(family, rng, n=300), 0.25)
    fit = _em(family, X, missing="model", tol=1e-10)
    before = {name: value.copy() for name, value in fit.em_.params.items()}
    fit.fit(X, method="em", warm_start=True)
    for name, value in before.items():
        np.testing.assert_allclose(fit.em_.params[name], value, rtol=1e-4, atol=1e-6)


# --- predictions ------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_predictions_of_rows_with_missing_values_are_the_observed_feature_ones(family):
    rng = np.random.default_rng(8)
    fit = _em(family, _mcar(rng, _simulate(family, rng, n=300), 0.2), missing="model")
    rows = ROWS[family]
    terms = _observed_terms(family, rows, fit.weights_, fit.em_.params)
    total = special.logsumexp(terms, axis=1)
    np.testing.assert_allclose(fit.score_samples(rows), total, rtol=1e-10)
    np.testing.assert_allclose(fit.predict_proba(rows), np.exp(terms - total[:, None]), atol=1e-10)
    np.testing.assert_array_equal(fit.predict(rows), np.argmax(terms, axis=1))
    assert np.isfinite(fit.score(rows))
    assert np.isfinite(fit.bic(rows))


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_fused_kernels_leave_rows_with_missing_values_to_numpy(family):
    import numba  # noqa: F401 - loaded, so the kernels pay off from 2^15 values

    rng = np.random.default_rng(9)
    fit = _em(family, _mcar(rng, _simulate(family, rng, n=200), 0.2), missing="model")
    X = _mcar(rng, _simulate(family, rng, n=1500), 0.1)
    n_draws = 30
    weights = np.tile(fit.weights_, (n_draws, 1)) * rng.uniform(0.9, 1.1, (n_draws, 2))
    weights /= weights.sum(axis=1, keepdims=True)
    params = [
        fit.em_.params[name] * rng.uniform(0.9, 1.1, (n_draws, 2, 3))
        for name in fit._component_vars
    ]

    def fast(X, w, *p, out, responsibilities=False):
        return fit._fast_pointwise(X, w, *p, out=out, responsibilities=responsibilities)

    numpy = pointwise_log_likelihood(X, weights, *params, component_log_prob=fit.component_log_prob)
    kernel = pointwise_log_likelihood(
        X, weights, *params, component_log_prob=fit.component_log_prob, fast_pointwise=fast
    )
    assert np.all(np.isfinite(kernel))
    np.testing.assert_allclose(kernel, numpy, rtol=1e-9)
    resp = posterior_responsibilities(
        X, weights, *params, component_log_prob=fit.component_log_prob, fast_pointwise=fast
    )
    expected = posterior_responsibilities(
        X, weights, *params, component_log_prob=fit.component_log_prob
    )
    np.testing.assert_allclose(resp, expected, atol=1e-9)


def test_far_out_counts_next_to_missing_values_have_finite_predictions():
    rng = np.random.default_rng(10)
    fit = _em("poisson", _mcar(rng, _simulate("poisson", rng, n=200), 0.2), missing="model")
    rows = np.array([[2.0**45, np.nan, 3.0], [np.nan, 2.0**41, 1.0]])
    proba = fit.predict_proba(rows)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all(np.isfinite(fit.score_samples(rows)))


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_values_errors(family):
    rng = np.random.default_rng(11)
    X = _simulate(family, rng, n=60)
    masked = X.copy()
    masked[0, 1] = np.nan
    with pytest.raises(DataError, match="missing='model'"):
        CLASSES[family](n_components=2).fit(masked, method="em")
    estimator = CLASSES[family](n_components=2, missing="model")
    empty_row = masked.copy()
    empty_row[3] = np.nan
    with pytest.raises(DataError, match="every value missing"):
        estimator.fit(empty_row, method="em")
    wrong = masked.copy()
    wrong[4, 0] = 0.5  # neither a count nor binary: still refused next to NaN
    with pytest.raises(DataError, match=r"0\.5"):
        estimator.fit(wrong, method="em")
    fitted = CLASSES[family](n_components=2, random_state=0).fit(X, method="em")
    with pytest.raises(DataError, match="missing='model'"):
        fitted.predict_proba(masked[:3])
    with pytest.raises(DataError, match="every value missing"):
        estimator.fit(masked, method="em").predict(np.full((1, 3), np.nan))
    with pytest.raises(bm.exceptions.InvalidParameterError, match="missing"):
        CLASSES[family](n_components=2, missing="drop").fit(X, method="em")


# --- NUTS and Laplace -------------------------------------------------------------------


def _finite_posterior(fit: bm.MixtureModel) -> bool:
    posterior = fit.idata["posterior"]
    return all(np.all(np.isfinite(posterior[name].values)) for name in posterior.data_vars)


# Short smoke runs: their ESS and Pareto k warnings are expected.
@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.SamplerWarning")
@pytest.mark.parametrize("family", FAMILIES)
def test_laplace_with_missing_values_runs_on_the_pymc_model(family, caplog):
    rng = np.random.default_rng(12)
    X = _mcar(rng, _simulate(family, rng, n=120), 0.2)
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        fit = CLASSES[family](n_components=2, random_state=0, missing="model").fit(
            X, method="laplace", draws=100, log_likelihood=True
        )
    assert "the PyMC model, not the fused kernel" in caplog.text
    assert _finite_posterior(fit)
    assert np.all(np.isfinite(fit.idata["log_likelihood"]["x"].values))
    assert np.isnan(fit.idata["observed_data"]["x"].values).sum() == np.isnan(X).sum()


# Short smoke runs: their ESS and Pareto k warnings are expected.
@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.SamplerWarning")
def test_nuts_with_missing_values_and_sample_weight_runs():
    rng = np.random.default_rng(13)
    X = _mcar(rng, _simulate("poisson", rng, n=120), 0.2)
    fit = bm.PoissonMixture(n_components=2, random_state=0, missing="model").fit(
        X,
        method="nuts",
        sample_weight=rng.integers(1, 3, X.shape[0]).astype(float),
        draws=40,
        tune=40,
        chains=1,
        nuts_sampler="pymc",
        progressbar=False,
    )
    assert _finite_posterior(fit)
    assert np.all(np.isfinite(fit.idata["log_likelihood"]["x"].values))
    assert np.all(np.isfinite(fit.predict_proba(X)))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_fit_with_missing_values_saves_and_loads(family, tmp_path):
    rng = np.random.default_rng(14)
    X = _mcar(rng, _simulate(family, rng, n=150), 0.2)
    fit = _em(family, X, missing="model")
    fit.save(tmp_path / "missing.nc")
    loaded = bm.load(tmp_path / "missing.nc")
    np.testing.assert_array_equal(loaded.predict_proba(X), fit.predict_proba(X))


def test_online_em_takes_batches_with_missing_values():
    rng = np.random.default_rng(15)
    X = _mcar(rng, _simulate("poisson", rng, n=2000), 0.2)
    batch = bm.PoissonMixture(n_components=2, random_state=0, missing="model").fit(X, method="em")
    online = bm.PoissonMixture(n_components=2, random_state=0, missing="model")
    for part in np.array_split(X, 10):
        online.partial_fit(part, kappa=1.0)
    assert np.all(np.isfinite(online.rates_))
    np.testing.assert_allclose(online.rates_, batch.rates_, rtol=0.1)
    np.testing.assert_allclose(online.weights_, batch.weights_, atol=0.05)


@pytest.mark.parametrize("family", FAMILIES)
def test_impute_gives_the_conditional_mean_and_draws_around_it(family):
    rng = np.random.default_rng(16)
    fit = _em(family, _mcar(rng, _simulate(family, rng, n=400), 0.2), missing="model")
    params = {name: getattr(fit, f"{name}_") for name in fit._component_vars}
    rows = ROWS[family]
    terms = _observed_terms(family, rows, fit.weights_, params)
    resp = np.exp(terms - special.logsumexp(terms, axis=1, keepdims=True))
    expected = np.where(np.isnan(rows), resp @ params[fit._component_vars[0]], rows)
    np.testing.assert_allclose(fit.impute(rows), expected, rtol=1e-10)
    draws = fit.impute(rows, n_imputations=4000, random_state=0)
    assert draws.shape == (4000, *rows.shape)
    observed = ~np.isnan(rows)
    assert np.all(draws[:, observed] == rows[observed])
    assert np.all(draws == np.round(draws))
    assert np.all(draws >= 0)
    # Monte Carlo mean of the imputations: within 5 standard errors of the conditional mean.
    spread = draws.std(axis=0) / np.sqrt(draws.shape[0])
    missing = np.isnan(rows)
    assert np.all(np.abs(draws.mean(axis=0) - expected)[missing] <= 5 * spread[missing] + 1e-12)
