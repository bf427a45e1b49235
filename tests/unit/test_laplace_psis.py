"""Laplace + PSIS (``bayesmix.laplace`` and ``fit(method="laplace")``), issue 23 item 1.

The engine is checked on log densities with known answers (a Gaussian, whose Laplace
approximation is exact; a log-gamma, whose mean differs from its mode by a known amount
that only the importance correction recovers; a heavy-tailed Student-t, which PSIS must
flag); the models' log posteriors against PyMC's own ``compile_logp``; the fits' layout
and results against EM and the NUTS layout. Laplace against NUTS on the same data is in
``tests/statistical/test_laplace_vs_nuts.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special, stats

import bayesmix as bm
from bayesmix import laplace
from bayesmix.em.chunked import in_memory_pass
from bayesmix.exceptions import FitError, SamplerWarning


def _gaussian(mean: np.ndarray, cov: np.ndarray):
    precision = np.linalg.inv(cov)

    def logp_dlogp(x):
        d = x - mean
        return float(-0.5 * d @ precision @ d), -precision @ d

    return logp_dlogp


def test_a_gaussian_target_is_approximated_exactly():
    mean = np.array([1.0, -2.0, 0.5])
    a = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.4], [0.0, -0.4, 0.5]])
    result = laplace.approximate(
        _gaussian(mean, a), np.zeros(3), draws=2000, rng=np.random.default_rng(0)
    )
    np.testing.assert_allclose(result.mode, mean, atol=1e-6)
    np.testing.assert_allclose(result.factor @ result.factor.T, a, rtol=1e-5, atol=1e-8)
    # q is p: every importance ratio is the same constant, every weight 1/S.
    np.testing.assert_allclose(result.log_ratios, result.log_ratios[0], atol=1e-6)
    np.testing.assert_allclose(np.exp(result.log_weights), 1 / 2000, rtol=1e-6)
    assert result.ess == pytest.approx(2000, rel=1e-6)
    assert result.khat < laplace.KHAT_GOOD
    # Equal weights: systematic resampling keeps every proposal exactly once.
    np.testing.assert_array_equal(result.resampled, np.arange(2000))


def test_the_importance_correction_recovers_the_mean_the_mode_misses():
    # log p(x) = -x^2/2 + x^3/6 - x^4/8: one mode at 0 with curvature 1, so q = N(0, 1);
    # skewed to the right, with lighter tails than q (bounded importance ratios). The
    # mean and sd by quadrature.
    def logp_dlogp(x):
        y = x[0]
        return float(-(y**2) / 2 + y**3 / 6 - y**4 / 8), np.array([-y + y**2 / 2 - y**3 / 2])

    density = lambda y: np.exp(logp_dlogp(np.array([y]))[0])  # noqa: E731
    norm = integrate.quad(density, -np.inf, np.inf)[0]
    mean = integrate.quad(lambda y: y * density(y), -np.inf, np.inf)[0] / norm
    sd = np.sqrt(integrate.quad(lambda y: (y - mean) ** 2 * density(y), -np.inf, np.inf)[0] / norm)

    result = laplace.approximate(
        logp_dlogp, np.array([0.7]), draws=8000, rng=np.random.default_rng(1)
    )
    assert result.mode[0] == pytest.approx(0.0, abs=1e-7)
    assert result.factor[0, 0] ** 2 == pytest.approx(1.0, rel=1e-4)
    assert result.khat < laplace.KHAT_GOOD
    draws = result.proposals[result.resampled, 0]
    mc_error = sd / np.sqrt(result.ess)
    assert abs(mean) > 10 * mc_error  # the mode (and q's mean) is far off
    assert draws.mean() == pytest.approx(mean, abs=4 * mc_error)
    assert draws.std() == pytest.approx(sd, rel=0.05)
    assert result.proposals[:, 0].std() == pytest.approx(1.0, rel=0.05)  # q's, not p's


def test_a_heavy_tailed_target_gets_a_large_khat():
    # A 4-D Student-t with 2 degrees of freedom: far heavier tails than its Laplace
    # approximation, so the importance ratios have an infinite-variance tail.
    nu, dim = 2.0, 4

    def logp_dlogp(x):
        q = x @ x
        return float(-0.5 * (nu + dim) * np.log1p(q / nu)), -(nu + dim) * x / (nu + q)

    result = laplace.approximate(
        logp_dlogp, np.full(dim, 0.3), draws=4000, rng=np.random.default_rng(2)
    )
    assert result.khat > laplace.KHAT_MAX
    assert result.ess < 0.5 * 4000


def test_central_differences_of_a_quadratic_are_exact():
    rng = np.random.default_rng(11)
    a = rng.standard_normal((4, 4))
    precision = a @ a.T + 4 * np.eye(4)
    b = rng.standard_normal(4)

    def batch(points):
        return -0.5 * np.einsum("si,ij,sj->s", points, precision, points) + points @ b

    x = rng.standard_normal(4)
    steps = np.array([0.3, 0.1, 1.0, 0.05])
    points = laplace.difference_points(x, steps)
    assert points.shape == (1 + 2 * 4**2, 4)
    grad, hessian = laplace.difference_derivatives(batch(points), steps)
    np.testing.assert_allclose(grad, -precision @ x + b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(hessian, precision, rtol=1e-9, atol=1e-9)


def test_newton_from_log_densities_finds_the_mode_and_curvature():
    # The Laplace setting at large N: a log posterior that is quadratic near its mode
    # (here with a small quartic term far out), started a few sds away.
    mean = np.array([1.0, -2.0, 0.5])
    cov = np.array([[2e-4, 3e-5, 0.0], [3e-5, 1e-4, -4e-5], [0.0, -4e-5, 5e-5]])
    precision = np.linalg.inv(cov)

    def batch(points):
        d = points - mean
        return -0.5 * np.einsum("si,ij,sj->s", d, precision, d) - 1e-3 * (d**4).sum(axis=1)

    mode, at_mode, hessian, report = laplace.newton_mode(batch, mean + 0.05)
    assert report["converged"]
    assert report["n_iter"] <= 4
    assert report["n_eval"] == report["n_iter"] * (1 + 2 * 3**2)
    np.testing.assert_allclose(mode, mean, atol=1e-3 * np.sqrt(np.diag(cov)).min())
    np.testing.assert_allclose(hessian, precision, rtol=1e-3)
    assert at_mode == pytest.approx(float(batch(mode[None])[0]), abs=1e-6)


def test_newton_halves_a_step_that_overshoots():
    # A ridge whose curvature grows away from the start: the first Newton step overshoots.
    def batch(points):
        x = points[:, 0]
        return -np.log(np.cosh(x - 3.0))

    mode, _, _, report = laplace.newton_mode(batch, np.array([0.0]), max_passes=40)
    assert report["converged"]
    assert mode[0] == pytest.approx(3.0, abs=1e-2)


def test_smoothed_weights_are_normalised_and_khat_is_psis():
    rng = np.random.default_rng(3)
    # Ratios of a Pareto(1/k) tail: PSIS estimates k.
    log_ratios = np.log(stats.genpareto.rvs(0.8, size=20000, random_state=rng))
    log_weights, khat = laplace.smoothed_log_weights(log_ratios)
    assert special.logsumexp(log_weights) == pytest.approx(0.0, abs=1e-10)
    assert khat == pytest.approx(0.8, abs=0.1)


def test_systematic_resampling_keeps_floor_or_ceil_of_n_w_copies():
    rng = np.random.default_rng(4)
    weights = rng.dirichlet(np.full(50, 0.5))
    indices = laplace.systematic_resample(np.log(weights), 1000, rng)
    assert np.all(np.diff(indices) >= 0)
    counts = np.bincount(indices, minlength=50)
    assert counts.sum() == 1000
    expected = 1000 * weights
    assert np.all(counts >= np.floor(expected) - 1e-9)
    assert np.all(counts <= np.ceil(expected) + 1e-9)


def test_a_saddle_is_not_approximated():
    def logp_dlogp(x):  # a maximum in x0, a minimum in x1: no mode
        return float(-(x[0] ** 2) + 1e-3 * x[1] ** 2), np.array([-2 * x[0], 2e-3 * x[1]])

    with pytest.raises(FitError, match="no strict maximum"):
        laplace.approximate(logp_dlogp, np.zeros(2), draws=10, rng=np.random.default_rng(0))


def test_a_start_outside_the_support_is_an_error():
    with pytest.raises(FitError, match="not finite at the EM start"):
        laplace.find_mode(lambda x: (-np.inf, np.zeros_like(x)), np.zeros(2))


# -- the models ------------------------------------------------------------------------


def _data(family: str, rng: np.random.Generator) -> np.ndarray:
    if family == "poisson":
        return np.concatenate([rng.poisson(2.0, (150, 2)), rng.poisson(15.0, (150, 2))])
    if family == "bernoulli":
        p = np.array([[0.9, 0.8, 0.1, 0.2], [0.1, 0.2, 0.9, 0.8]])
        return np.concatenate([rng.random((150, 4)) < p[0], rng.random((150, 4)) < p[1]]).astype(
            float
        )
    if family == "negative_binomial":
        return np.concatenate(
            [rng.negative_binomial(5, 5 / 7, (150, 1)), rng.negative_binomial(5, 5 / 35, (150, 1))]
        )
    centres = np.array([[0.0, 0.0], [6.0, 3.0]])
    return np.concatenate([rng.standard_normal((150, 2)) + c for c in centres])


FAMILIES = {
    "gaussian": lambda: bm.GaussianMixture(n_components=2, random_state=0),
    "gaussian_prior": lambda: bm.GaussianMixture(
        n_components=2,
        covariance_type="diag",
        # A parameterisation the fused kernel lacks: the PyMC model's route.
        priors={"means": bm.Prior("StudentT", nu=4, mu=0, lam=0.01)},
        random_state=0,
    ),
    "student_t": lambda: bm.StudentTMixture(n_components=2, random_state=0),
    "poisson": lambda: bm.PoissonMixture(n_components=2, random_state=0),
    "bernoulli": lambda: bm.BernoulliMixture(n_components=2, random_state=0),
    "negative_binomial": lambda: bm.NegativeBinomialMixture(n_components=2, random_state=0),
}


def _family_data(name: str) -> np.ndarray:
    family = name if name in ("poisson", "bernoulli", "negative_binomial") else "gaussian"
    return _data(family, np.random.default_rng(5))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_target_is_the_models_log_posterior(name):
    """The engine's log density is PyMC's ``compile_logp`` of the model (Jacobians included)."""
    model_ = FAMILIES[name]()
    X = _family_data(name)
    data, priors = model_._prepare(X, None)
    em = model_._run_em(data, np.random.default_rng(0), priors)
    start = model_._start_from_em(em, data.n_features)
    model = model_._model(data, priors)
    free = {rv.name for rv in model.free_RVs}
    start = {k: v for k, v in start.items() if k in free}
    names = list(model_._posterior_dims(data.n_features))
    target = laplace.pymc_target(model, start, names)
    logp = model.compile_logp(jacobian=True)
    values = list(model.continuous_value_vars)
    sizes = np.cumsum([int(np.prod(model.initial_point()[v.name].shape)) for v in values])[:-1]
    rng = np.random.default_rng(6)
    for x in (target.start, target.start + 0.05 * rng.standard_normal(target.start.size)):
        parts = np.split(x, sizes)
        point = {
            v.name: p.reshape(model.initial_point()[v.name].shape)
            for v, p in zip(values, parts, strict=True)
        }
        assert target.logp_dlogp(x)[0] == pytest.approx(float(logp(point)), rel=1e-10)
    # expand at the start gives back the constrained start
    expanded = target.expand(target.start)
    for key, value in start.items():
        np.testing.assert_allclose(expanded[key], value, rtol=1e-8, atol=1e-10)
    fused = model_._nuts_target(data, priors)
    if fused is not None:  # the fused kernel is the same log density, in the same x
        from bayesmix.model import _model_data

        other = laplace.fused_target(fused, _model_data(data), start)
        np.testing.assert_allclose(other.start, target.start, rtol=1e-10, atol=1e-12)
        x = target.start + 0.05 * rng.standard_normal(target.start.size)
        a, b = target.logp_dlogp(x), other.logp_dlogp(x)
        assert a[0] == pytest.approx(b[0], rel=1e-10)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-8, atol=1e-8)
        for key, value in target.expand(x).items():
            np.testing.assert_allclose(other.expand(x)[key], value, rtol=1e-10, atol=1e-12)


# 400 draws are enough for the layout, not for a stable k-hat (PSIS fits its Pareto tail
# to the largest 60 ratios): a SamplerWarning here is noise.
@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.SamplerWarning")
@pytest.mark.parametrize("name", list(FAMILIES))
def test_laplace_fit_has_the_nuts_layout_and_sits_at_the_em_estimate(name):
    X = _family_data(name)
    em = FAMILIES[name]().fit(X, method="em")
    fit = FAMILIES[name]().fit(X, method="laplace", draws=400)
    post = fit.idata["posterior"]
    assert post.sizes["chain"] == 1
    assert post.sizes["draw"] == 400
    assert set(post.data_vars) == set(em.idata["posterior"].data_vars)
    for var in post.data_vars:
        assert post[var].dims[2:] == em.idata["posterior"][var].dims[2:]
        assert np.all(np.isfinite(post[var].to_numpy()))
    stats_ = fit.idata["sample_stats"]
    assert {"lp", "log_weight", "proposal", "relabel_permutation"} <= set(stats_.data_vars)
    assert fit.idata["log_likelihood"]["x"].shape == (1, 400, X.shape[0])
    assert fit.idata.attrs["inference_method"] == "laplace"
    assert np.isfinite(fit.idata.attrs["laplace_khat"])
    # Separated clusters, 300 rows: the posterior mean of the weights is near EM's.
    np.testing.assert_allclose(post["weights"].mean(("chain", "draw")), em.weights_, atol=0.05)
    table = bm.compare_fits(em, fit)  # a Laplace fit is a posterior to compare EM with
    np.testing.assert_allclose(table.loc["weights[0]", "em"], em.weights_[0])
    # 300 rows: the ML estimate sits well inside the posterior (but for the Student-t's
    # degrees of freedom: on Gaussian data EM takes the upper bound, the prior decides).
    located = table.loc[[row for row in table.index if not row.startswith("dof")]]
    assert located["z_score"].abs().max() < 3
    summary = fit.summary()
    assert {"mean", "sd"} <= set(summary.columns)
    assert "r_hat" not in summary.columns


def test_laplace_matches_the_conjugate_posterior_of_one_component():
    # K = 1, one feature, diag: the posterior of (mean, sigma) with a Normal prior on the
    # mean and HalfNormal on sigma has no closed form, but at N = 4000 it is within
    # 1/sqrt(N) of Normal(xbar, s^2/N) for the mean and of sd s/sqrt(2N) for sigma.
    rng = np.random.default_rng(7)
    X = rng.normal(3.0, 2.0, size=(4000, 1))
    fit = bm.GaussianMixture(n_components=1, covariance_type="diag", random_state=0).fit(
        X, method="laplace", draws=4000
    )
    post = fit.idata["posterior"]
    mean = post["means"].to_numpy().ravel()
    sigma = np.sqrt(post["covariances"].to_numpy().ravel())
    s = X.std()
    assert mean.mean() == pytest.approx(X.mean(), abs=0.1 * s / np.sqrt(4000))
    assert mean.std() == pytest.approx(s / np.sqrt(4000), rel=0.05)
    assert sigma.mean() == pytest.approx(s, abs=0.1 * s / np.sqrt(8000))
    assert sigma.std() == pytest.approx(s / np.sqrt(8000), rel=0.05)
    assert fit.idata.attrs["laplace_khat"] < laplace.KHAT_GOOD


def test_a_non_gaussian_posterior_warns_and_says_use_nuts():
    # 40 rows of two overlapping clusters: the posterior of the weights and of the
    # small component's scale is far from Gaussian.
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(0, 1, (32, 1)), rng.normal(1.5, 0.5, (8, 1))])
    with pytest.warns(SamplerWarning, match=r"k-hat is .* Use method='nuts'"):
        fit = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="laplace")
    assert fit.idata.attrs["laplace_khat"] > laplace.KHAT_MAX
    assert "k-hat" in fit.summary().attrs["warnings"][0]


def test_laplace_fits_are_reproducible_and_survive_save_and_load(tmp_path):
    X = _family_data("gaussian")
    a = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="laplace", draws=300)
    b = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="laplace", draws=300)
    np.testing.assert_array_equal(a.idata["posterior"]["means"], b.idata["posterior"]["means"])
    loaded = bm.load(a.save(tmp_path / "fit.nc"))
    assert loaded.idata.attrs["inference_method"] == "laplace"
    np.testing.assert_array_equal(loaded.predict_proba(X), a.predict_proba(X))
    assert loaded.idata.attrs["laplace_khat"] == a.idata.attrs["laplace_khat"]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "gaussian"])
def test_the_batched_log_posterior_equals_the_per_draw_one(name, weighted):
    """One pass for many draws (family densities + prior) equals PyMC's per-draw density."""
    model_ = FAMILIES[name]()
    X = _family_data(name)
    weights = np.random.default_rng(9).integers(0, 4, X.shape[0]) if weighted else None
    data, priors = model_._prepare(X, weights)
    em = model_._run_em(data, np.random.default_rng(0), priors)
    model = model_._model(data, priors)
    start = model_._free_start(em, data.n_features, model, None)
    names = list(model_._posterior_dims(data.n_features))
    data_pass = in_memory_pass(data.values, data.sample_weight)
    target = laplace.pymc_target(model, start, names, model_._batch_log_likelihood(data_pass))
    rng = np.random.default_rng(10)
    points = target.start + 0.1 * rng.standard_normal((7, target.start.size))
    batched = target.batch_log_density(points)
    per_draw = np.array([target.logp_dlogp(x)[0] for x in points])
    np.testing.assert_allclose(batched, per_draw, rtol=1e-10)
