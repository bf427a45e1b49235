"""sample_weight: integer frequency weights fit exactly what repeating the rows fits.

The oracle is the same data with every row repeated w_n times (rows of weight 0 dropped):
EM from the same start agrees to 1e-10, the NUTS log density and gradient are equal, and
score / bic / select_k are those of the repeated data.
"""

from __future__ import annotations

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.em import init as em_init
from bayesmix.exceptions import DataError
from bayesmix.families import FAMILIES
from bayesmix.families.bernoulli import fit_bernoulli_em
from bayesmix.families.gaussian.em import fit_em
from bayesmix.families.poisson import fit_poisson_em
from bayesmix.families.student_t import fit_student_t_em

RTOL = 1e-10
# Both fits run max_iter iterations (tol=0) so that they compare the same iterates.
pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.exceptions.ConvergenceWarning")


def _weights(rng, n):
    w = rng.integers(0, 4, size=n).astype(float)
    w[:3] = [0.0, 1.0, 3.0]  # a dropped row, a single and a triple one for sure
    return w


def _repeat(X, w):
    return np.repeat(X, w.astype(int), axis=0)


def _data(family, rng, n=120):
    if family in ("poisson", "negative-binomial"):
        z = rng.integers(0, 2, size=n)
        return rng.poisson(np.where(z[:, None] == 0, [1.0, 6.0], [7.0, 2.0])).astype(float)
    if family == "bernoulli":
        z = rng.integers(0, 2, size=n)
        p = np.where(z[:, None] == 0, [0.9, 0.8, 0.2], [0.1, 0.3, 0.7])
        return (rng.random((n, 3)) < p).astype(float)
    z = rng.integers(0, 2, size=n)
    return rng.normal(size=(n, 2)) + np.where(z[:, None] == 0, -2.0, 2.0)


@pytest.fixture
def fixed_seeds(monkeypatch):
    """k-means++ and random seeds fixed to the same points for both fits (the same start).

    Call the fixture's value with the full data first: the seeds are its column-wise
    minimum and maximum (the repeated data may lack a row of weight 0).
    """
    centres = {}

    def seeds(X, n_components, rng, sample_weight=None):
        return centres["value"][:n_components].copy()

    def set_data(X):
        centres["value"] = np.array([X.min(axis=0), X.max(axis=0)])

    monkeypatch.setattr(em_init, "kmeans_plusplus", seeds)
    monkeypatch.setattr(em_init, "_random_centres", seeds)
    return set_data


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("objective", ["ml", "map"])
def test_gaussian_em_equals_repeated_rows(rng, covariance_type, objective):
    X = _data("gaussian", rng)
    w = _weights(rng, X.shape[0])
    first = fit_em(X, 2, covariance_type=covariance_type, random_state=0, max_iter=1)
    start = {"weights": first.weights, "means": first.means, "covariances": first.covariances}
    settings = {
        "covariance_type": covariance_type,
        "init_params": start,
        "objective": objective,
        "tol": 0.0,
        "max_iter": 40,
    }
    weighted = fit_em(X, 2, sample_weight=w, **settings)
    repeated = fit_em(_repeat(X, w), 2, **settings)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(
            getattr(weighted, name), getattr(repeated, name), rtol=RTOL, atol=1e-12
        )
    np.testing.assert_allclose(weighted.lower_bounds, repeated.lower_bounds, rtol=RTOL)
    np.testing.assert_allclose(weighted.log_likelihood, repeated.log_likelihood, rtol=RTOL)


@pytest.mark.parametrize(
    ("family", "fit", "kwargs"),
    [
        ("poisson", fit_poisson_em, {}),
        ("poisson", fit_poisson_em, {"objective": "map", "prior": {"alpha": 2.0, "beta": 0.5}}),
        ("bernoulli", fit_bernoulli_em, {}),
        ("bernoulli", fit_bernoulli_em, {"objective": "map", "prior": {"a": 2.0, "b": 2.0}}),
        ("student_t", fit_student_t_em, {"covariance_type": "full"}),
        ("student_t", fit_student_t_em, {"covariance_type": "diag"}),
    ],
)
def test_family_em_equals_repeated_rows(rng, fixed_seeds, family, fit, kwargs):
    X = _data(family, rng)
    fixed_seeds(X)
    w = _weights(rng, X.shape[0])
    settings = {"n_init": 1, "max_iter": 30, "tol": 0.0, "random_state": 0, **kwargs}
    weighted = fit(X, 2, sample_weight=w, **settings)
    repeated = fit(_repeat(X, w), 2, **settings)
    np.testing.assert_allclose(weighted.weights, repeated.weights, rtol=RTOL)
    for name, value in weighted.params.items():
        np.testing.assert_allclose(value, repeated.params[name], rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(weighted.lower_bounds, repeated.lower_bounds, rtol=RTOL)


@pytest.mark.parametrize(
    "name", ["gaussian", "student-t", "poisson", "bernoulli", "negative-binomial"]
)
def test_model_em_fit_equals_repeated_rows(rng, fixed_seeds, name):
    family = {"student-t": "gaussian"}.get(name, name)
    X = _data(family, rng)
    fixed_seeds(X)
    w = _weights(rng, X.shape[0])
    cls = FAMILIES[name]
    spec = {"n_components": 2, "n_init": 1, "random_state": 0, "max_iter": 500, "tol": 1e-12}
    weighted = cls(**spec).fit(X, method="em", sample_weight=w)
    repeated = cls(**spec).fit(_repeat(X, w), method="em")
    np.testing.assert_allclose(weighted.weights_, repeated.weights_, rtol=1e-8)
    np.testing.assert_allclose(weighted.em_.log_likelihood, repeated.em_.log_likelihood, rtol=1e-10)
    # score / bic / aic with the weights are those of the repeated data.
    Xr = _repeat(X, w)
    np.testing.assert_allclose(weighted.bic(X, sample_weight=w), repeated.bic(Xr), rtol=1e-8)
    np.testing.assert_allclose(weighted.aic(X, sample_weight=w), repeated.aic(Xr), rtol=1e-8)
    np.testing.assert_allclose(weighted.score(X, sample_weight=w), repeated.score(Xr), rtol=1e-8)


@pytest.mark.parametrize(
    "name", ["gaussian", "student-t", "poisson", "bernoulli", "negative-binomial"]
)
def test_nuts_log_density_and_gradient_equal_repeated_rows(rng, name):
    family = {"student-t": "gaussian"}.get(name, name)
    X = _data(family, rng, n=40)
    w = _weights(rng, X.shape[0])
    cls = FAMILIES[name]
    weighted = cls(n_components=2).build_model(X, sample_weight=w)
    repeated = cls(n_components=2).build_model(_repeat(X, w))
    point = weighted.initial_point(random_seed=1)
    assert set(point) == set(repeated.initial_point(random_seed=1))
    for key in point:
        point[key] = point[key] + 0.1 * rng.standard_normal(np.shape(point[key]))
    fast = {"mode": "FAST_COMPILE"}  # Python linker: no C compilation for four models
    np.testing.assert_allclose(
        weighted.compile_logp(**fast)(point), repeated.compile_logp(**fast)(point), rtol=1e-10
    )
    np.testing.assert_allclose(
        weighted.compile_dlogp(**fast)(point),
        repeated.compile_dlogp(**fast)(point),
        rtol=1e-9,
        atol=1e-9,
    )


def test_weights_are_stored_and_survive_save_and_load(rng, tmp_path):
    X = _data("gaussian", rng)
    w = _weights(rng, X.shape[0])
    fit = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em", sample_weight=w)
    np.testing.assert_array_equal(fit.idata["observed_data"]["sample_weight"].to_numpy(), w)
    loaded = bm.load(fit.save(tmp_path / "fit.nc"))
    np.testing.assert_array_equal(loaded.idata["observed_data"]["sample_weight"].to_numpy(), w)
    np.testing.assert_allclose(loaded.bic(X, sample_weight=w), fit.bic(X, sample_weight=w))


def test_select_k_with_weights_equals_repeated_rows(rng, fixed_seeds):
    X = _data("gaussian", rng)
    fixed_seeds(X)
    w = _weights(rng, X.shape[0])
    settings = {"method": "em", "random_state": 0, "progressbar": False, "n_init": 1}
    weighted = bm.select_k(X, [1, 2], sample_weight=w, tol=1e-12, **settings)
    repeated = bm.select_k(_repeat(X, w), [1, 2], tol=1e-12, **settings)
    for column in ("log_likelihood", "bic", "icl"):
        np.testing.assert_allclose(weighted[column], repeated[column], rtol=1e-8)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.ones(5), "one weight per row"),
        (-np.ones(40), "finite and non-negative"),
        (np.r_[np.nan, np.ones(39)], "finite and non-negative"),
        (np.zeros(40), "zero for every row"),
        (["a"] * 40, "must be numbers"),
    ],
)
def test_bad_weights_fail_before_any_work(rng, weights, match):
    X = _data("gaussian", rng, n=40)
    with pytest.raises(DataError, match=match):
        bm.GaussianMixture(n_components=2).fit(X, method="em", sample_weight=weights)


def test_user_weights_are_not_modified(rng):
    X = _data("gaussian", rng, n=40)
    w = _weights(rng, 40)
    before = w.copy()
    bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em", sample_weight=w)
    np.testing.assert_array_equal(w, before)
