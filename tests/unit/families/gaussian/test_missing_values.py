"""Missing values (NaN) in the Gaussian mixture: marginal densities, EM, the PyMC model.

Issue 20: the E-step of rows with missing coordinates (the chunked EM's statistics), the
fit, predictions and imputation, and the PyMC model's marginal likelihood (NUTS, Laplace).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

import bayesmix as bm
from bayesmix.em.chunked import fit_chunked, in_memory_pass
from bayesmix.exceptions import DataError
from bayesmix.families.gaussian import em

WEIGHTS = np.array([0.3, 0.7])
MEANS = np.array([[0.0, 1.0], [3.0, -1.0]])
COVARIANCES = np.array([[[1.0, 0.6], [0.6, 2.0]], [[0.5, -0.2], [-0.2, 0.8]]])


def _density(x):
    return sum(
        WEIGHTS[k] * stats.multivariate_normal(MEANS[k], COVARIANCES[k]).pdf(x) for k in range(2)
    )


def test_marginal_density_equals_integrating_out_the_missing_coordinate():
    X = np.array([[0.5, np.nan], [np.nan, -0.3], [1.0, 2.0]])
    sums = em._missing_chunk_sums(X, None, WEIGHTS, MEANS, COVARIANCES, "full", MEANS)
    marginal = [
        integrate.quad(lambda t: _density([0.5, t]), -np.inf, np.inf, epsrel=1e-12)[0],
        integrate.quad(lambda t: _density([t, -0.3]), -np.inf, np.inf, epsrel=1e-12)[0],
        _density([1.0, 2.0]),
    ]
    assert sums["log_likelihood"] == pytest.approx(np.log(marginal).sum(), abs=1e-6)


def test_conditional_statistics_equal_the_expectations_by_integration():
    # s1 of component k for the row (0.5, NaN): r_k (0.5 - c, E[x1 | x0, k] - c), and the
    # missing coordinate's second moment adds its conditional variance.
    X = np.array([[0.5, np.nan]])
    centres = np.zeros((2, 2))
    sums = em._missing_chunk_sums(X, None, WEIGHTS, MEANS, COVARIANCES, "full", centres)
    joint = [
        lambda t, k=k: (
            WEIGHTS[k] * stats.multivariate_normal(MEANS[k], COVARIANCES[k]).pdf([0.5, t])
        )
        for k in range(2)
    ]
    total = sum(integrate.quad(f, -np.inf, np.inf)[0] for f in joint)
    for k in range(2):
        mass = integrate.quad(joint[k], -np.inf, np.inf)[0] / total
        first = integrate.quad(lambda t, k=k: t * joint[k](t), -np.inf, np.inf)[0] / total
        second = integrate.quad(lambda t, k=k: t * t * joint[k](t), -np.inf, np.inf)[0] / total
        assert sums["nk"][k] == pytest.approx(mass, abs=1e-9)
        np.testing.assert_allclose(sums["s1"][k], [0.5 * mass, first], atol=1e-8)
        np.testing.assert_allclose(sums["s2"][k][1, 1], second, atol=1e-8)
        np.testing.assert_allclose(sums["s2"][k][0, 1], 0.5 * first, atol=1e-8)


def test_without_missing_values_the_sums_are_the_complete_data_sums():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    precisions = em.compute_precision_cholesky(COVARIANCES, "full")
    complete = em._chunk_sums(X, None, WEIGHTS, MEANS, precisions, "full", MEANS)
    missing = em._missing_chunk_sums(X, None, WEIGHTS, MEANS, COVARIANCES, "full", MEANS)
    for key, value in complete.items():
        np.testing.assert_allclose(missing[key], value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_the_second_pass_of_an_empty_component_integrates_the_missing_values_out(
    covariance_type,
):
    # An empty component makes the M-step sum about the new means in a second pass
    # (in memory and on Dask); with missing values that pass must be the marginal E-step
    # too, not the complete-data sums (which were NaN: a FitError).
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(0.0, 1.0, (100, 2)), rng.normal(5.0, 1.0, (100, 2))])
    X[rng.random(X.shape) < 0.15] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    data_pass = in_memory_pass(X)
    steps = em.chunked_steps(
        3, 2, covariance_type=covariance_type, reg_covar=1e-6, objective="ml", data_pass=data_pass
    )
    weights, params = steps.initialise(lambda idx: (X, None), 200, rng, "k-means++")
    params["means"][2] = 1e6  # far from every row: no responsibility
    params = em._params(
        params["means"],
        params["covariances"],
        em.compute_precision_cholesky(params["covariances"], covariance_type),
    )
    stats = steps.statistics(X, None, weights, params)
    assert stats["nk"][2] == 0.0
    new_weights, new_params = steps.m_step(stats, weights, params, data_pass)
    # The reference: the marginal sums about the new means, the M-step by hand.
    nk = stats["nk"][:2]
    means = params["means"][:2] + stats["s1"][:2] / nk[:, None]
    about = em._missing_chunk_sums(
        X,
        None,
        weights,
        params["means"],
        params["covariances"],
        covariance_type,
        np.concatenate([means, params["means"][2:]]),
    )
    scatter = about["s2"][:2] / nk.reshape(-1, *[1] * (about["s2"].ndim - 1))
    ridge = 1e-6 * (np.eye(2) if covariance_type == "full" else np.ones(2))
    np.testing.assert_allclose(new_params["means"][:2], means, rtol=1e-12)
    np.testing.assert_allclose(new_params["covariances"][:2], scatter + ridge, rtol=1e-10)
    np.testing.assert_array_equal(new_params["means"][2], params["means"][2])
    assert new_weights[2] < 1e-12


def _simulate(rng, n=900):
    labels = rng.integers(0, 3, n)
    means = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, 2.0], [0.0, 5.0, -3.0]])
    cov = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    return means[labels] + rng.normal(size=(n, 3)) @ np.linalg.cholesky(cov).T


def _fit(X, covariance_type="full"):
    data_pass = in_memory_pass(X)
    steps = em.chunked_steps(
        3, 3, covariance_type=covariance_type, reg_covar=1e-6, objective="ml", data_pass=data_pass
    )
    return fit_chunked(
        steps,
        data_pass,
        lambda idx: (X if idx is None else X[idx], None),
        X.shape[0],
        n_init=3,
        max_iter=300,
        tol=1e-8,
        rng=np.random.default_rng(0),
    )


def _sorted(result):
    order = np.lexsort(result.params["means"].T[::-1])
    return result.params["means"][order], result.params["covariances"][order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_with_missing_values_beats_listwise_deletion(seed):
    rng = np.random.default_rng(seed)
    X = _simulate(rng)
    mask = rng.random(X.shape) < 0.25  # MCAR
    mask[mask.all(axis=1), 0] = False
    masked = np.where(mask, np.nan, X)
    full_means, full_cov = _sorted(_fit(X))
    model_means, model_cov = _sorted(_fit(masked))
    complete_rows = masked[~np.isnan(masked).any(axis=1)]
    listwise_means, listwise_cov = _sorted(_fit(complete_rows))
    model_error = np.abs(model_means - full_means).max() + np.abs(model_cov - full_cov).max()
    listwise_error = np.abs(listwise_means - full_means).max()
    listwise_error += np.abs(listwise_cov - full_cov).max()
    assert model_error < listwise_error


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "VEV"])
def test_em_with_missing_values_never_decreases_the_likelihood(covariance_type):
    rng = np.random.default_rng(3)
    X = _simulate(rng, n=400)
    mask = rng.random(X.shape) < 0.3
    mask[mask.all(axis=1), 1] = False
    result = _fit(np.where(mask, np.nan, X), covariance_type)
    assert np.all(np.diff(result.lower_bounds) >= -1e-10)


# --- GaussianMixture(missing="model") ------------------------------------------------------


def _masked(rng, X, rate=0.2):
    mask = rng.random(X.shape) < rate
    mask[mask.all(axis=1), 0] = False
    return np.where(mask, np.nan, X)


def test_fit_with_missing_values_is_closer_to_the_full_data_fit_than_listwise_deletion():
    rng = np.random.default_rng(4)
    X = _simulate(rng)
    masked = _masked(rng, X, 0.25)
    settings = {"n_components": 3, "covariance_type": "VEV", "random_state": 0}
    full = bm.GaussianMixture(**settings).fit(X, method="em")
    model = bm.GaussianMixture(**settings, missing="model").fit(masked, method="em")
    listwise = bm.GaussianMixture(**settings).fit(
        masked[~np.isnan(masked).any(axis=1)], method="em"
    )

    def error(fit):
        return (
            np.abs(fit.means_ - full.means_).max()
            + np.abs(fit.covariances_ - full.covariances_).max()
        )

    assert error(model) < error(listwise)
    assert np.all(np.isfinite(model.idata["log_likelihood"]["x"].values))


def test_without_missing_values_the_fit_is_todays():
    X = _simulate(np.random.default_rng(5), n=300)
    today = bm.GaussianMixture(n_components=3, random_state=0).fit(X, method="em")
    model = bm.GaussianMixture(n_components=3, random_state=0, missing="model").fit(X, method="em")
    np.testing.assert_array_equal(model.means_, today.means_)
    np.testing.assert_array_equal(model.covariances_, today.covariances_)
    assert model.em_.log_likelihood == today.em_.log_likelihood


def test_predictions_of_rows_with_missing_values_are_the_marginal_ones():
    rng = np.random.default_rng(6)
    X = _simulate(rng, n=300)
    fit = bm.GaussianMixture(n_components=3, random_state=0, missing="model").fit(
        _masked(rng, X), method="em"
    )
    rows = np.array([[0.5, np.nan, 1.0], [np.nan, np.nan, -2.0], [4.0, 1.0, 2.0]])
    expected_log = []
    expected_resp = []
    for row in rows:
        observed = ~np.isnan(row)
        terms = np.array(
            [
                np.log(fit.weights_[k])
                + stats.multivariate_normal(
                    fit.means_[k, observed], fit.covariances_[k][np.ix_(observed, observed)]
                ).logpdf(row[observed])
                for k in range(3)
            ]
        )
        total = np.logaddexp.reduce(terms)
        expected_log.append(total)
        expected_resp.append(np.exp(terms - total))
    np.testing.assert_allclose(fit.score_samples(rows), expected_log, rtol=1e-10)
    np.testing.assert_allclose(fit.predict_proba(rows), expected_resp, atol=1e-10)


def test_a_fit_with_missing_values_saves_and_loads(tmp_path):
    rng = np.random.default_rng(7)
    X = _masked(rng, _simulate(rng, n=200))
    fit = bm.GaussianMixture(n_components=3, random_state=0, missing="model").fit(X, method="em")
    fit.save(tmp_path / "missing.nc")
    loaded = bm.load(tmp_path / "missing.nc")
    np.testing.assert_array_equal(loaded.predict_proba(X), fit.predict_proba(X))


def test_missing_values_errors():
    X = _simulate(np.random.default_rng(8), n=100)
    masked = X.copy()
    masked[0, 1] = np.nan
    with pytest.raises(DataError, match="missing='model'"):
        bm.GaussianMixture(n_components=2).fit(masked, method="em")
    gm = bm.GaussianMixture(n_components=2, missing="model")
    empty_row = masked.copy()
    empty_row[3] = np.nan
    with pytest.raises(DataError, match="every value missing"):
        gm.fit(empty_row, method="em")
    empty_column = masked.copy()
    empty_column[:, 2] = np.nan
    with pytest.raises(DataError, match="columns"):
        gm.fit(empty_column, method="em")
    infinite = masked.copy()
    infinite[5, 0] = np.inf
    with pytest.raises(DataError, match="infinite"):
        gm.fit(infinite, method="em")


def _conditional_mean(fit, row):
    """E[x_m | x_o] under the EM estimate, from scipy's densities and explicit formulas."""
    observed = ~np.isnan(row)
    terms, means = [], []
    for k in range(fit.n_components):
        mu, cov = fit.means_[k], fit.covariances_[k]
        o, m = observed, ~observed
        terms.append(
            np.log(fit.weights_[k])
            + stats.multivariate_normal(mu[o], cov[np.ix_(o, o)]).logpdf(row[o])
        )
        means.append(mu[m] + cov[np.ix_(m, o)] @ np.linalg.solve(cov[np.ix_(o, o)], row[o] - mu[o]))
    resp = np.exp(np.array(terms) - np.logaddexp.reduce(terms))
    return resp @ np.array(means)


def test_impute_gives_the_conditional_mean_and_multiple_imputations_around_it():
    rng = np.random.default_rng(9)
    X = _simulate(rng, n=400)
    fit = bm.GaussianMixture(n_components=3, random_state=0, missing="model").fit(
        _masked(rng, X), method="em"
    )
    rows = np.array([[0.5, np.nan, 1.0], [np.nan, np.nan, -2.0], [4.0, 1.0, 2.0]])
    original = rows.copy()
    imputed = fit.impute(rows)
    np.testing.assert_array_equal(rows, original)  # the input is not modified
    np.testing.assert_array_equal(imputed[~np.isnan(rows)], rows[~np.isnan(rows)])
    for row, filled in zip(rows[:2], imputed[:2], strict=True):
        np.testing.assert_allclose(filled[np.isnan(row)], _conditional_mean(fit, row), rtol=1e-10)
    draws = fit.impute(rows, n_imputations=4000, random_state=0)
    assert draws.shape == (4000, 3, 3)
    spread = draws.std(axis=0)
    error = np.abs(draws.mean(axis=0) - imputed)
    assert np.all(error <= 4.0 * spread / np.sqrt(4000) + 1e-12)
    assert np.all(spread[np.isnan(rows)] > 0)
    assert np.all(spread[~np.isnan(rows)] == 0)


# -- the PyMC model (NUTS, Laplace) ------------------------------------------------------


def _model_values(model, point):
    """The model's constrained variables and deterministics at a point of its value space."""
    outs = model.unobserved_value_vars
    fn = model.compile_fn(outs, inputs=model.value_vars, mode="FAST_COMPILE")
    return dict(zip([out.name for out in outs], fn(point), strict=True))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "VEV", "EEI"])
def test_the_pymc_model_integrates_out_the_missing_values(covariance_type):
    # Each row's term of the PyMC model is the marginal mixture density of its observed
    # coordinates, scipy's, at a random point; the gradient is finite (no NaN leaks in).
    rng = np.random.default_rng(10)
    X = _masked(rng, _simulate(rng, n=40), rate=0.3)
    model = bm.GaussianMixture(
        n_components=2, covariance_type=covariance_type, missing="model"
    ).build_model(X)
    point = {
        key: value + 0.2 * rng.standard_normal(np.shape(value))
        for key, value in model.initial_point().items()
    }
    pointwise = model.compile_logp(
        vars=[model["x"]], sum=False, jacobian=False, mode="FAST_COMPILE"
    )
    values = _model_values(model, point)
    weights, means, covariances = values["weights"], values["means"], values["covariances"]
    expected = []
    for row in X:
        o = ~np.isnan(row)
        terms = [
            np.log(weights[k])
            + stats.multivariate_normal(means[k][o], covariances[k][np.ix_(o, o)]).logpdf(row[o])
            for k in range(2)
        ]
        expected.append(np.logaddexp.reduce(terms))
    assert np.isnan(X).any(axis=1).sum() > 10
    np.testing.assert_allclose(pointwise(point)[0], expected, rtol=0, atol=1e-10)
    assert np.isfinite(model.compile_dlogp(mode="FAST_COMPILE")(point)).all()


def test_the_compiled_model_is_keyed_by_the_pattern_of_missing_values():
    # nutpie's compiled models are reused across data of one structure: the positions of
    # the missing values are part of it (the likelihood is built per pattern).
    rng = np.random.default_rng(11)
    X = _simulate(rng, n=50)
    gm = bm.GaussianMixture(n_components=2, missing="model")
    complete, priors = gm._prepare(X)
    keys = []
    for rows in ([0, 1], [0, 1], [0, 2]):
        masked = X + rng.normal(scale=0.01, size=X.shape)  # new values, same structure
        masked[rows, 1] = np.nan
        data, _ = gm._prepare(masked)
        keys.append(gm._structure_key(data, priors))
    assert keys[0] == keys[1]
    assert keys[0] != keys[2]
    assert gm._structure_key(complete, priors) not in keys


@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.SamplerWarning")  # prior draws
@pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")
def test_nuts_with_missing_values_samples_the_model_and_keeps_the_data(mocked_sample):
    # Plumbing (the sampler mocked): the posterior and pointwise log-likelihood are finite
    # and the observed data are the data as given, NaN where they are missing.
    rng = np.random.default_rng(12)
    X = _masked(rng, _simulate(rng, n=60), rate=0.2)
    fit = bm.GaussianMixture(n_components=2, missing="model", random_state=0)
    fit.fit(X, method="nuts", draws=20, tune=10, chains=2, progressbar=False)
    np.testing.assert_array_equal(fit.idata["observed_data"]["x"].to_numpy(), X)
    assert np.isfinite(fit.idata["log_likelihood"]["x"].to_numpy()).all()
    assert np.isfinite(fit.predict_proba(X)).all()
