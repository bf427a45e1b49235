"""The Bayesian model of mclust's covariance models: volume, shape and Cayley orientation.

The PyMC model's covariances equal the NumPy composition of its free variables, and its
likelihood equals ``pm.Mixture`` of ``pm.MvNormal`` with those covariances; the EM
estimate's decomposition is a point of the model with the EM covariances.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest

import bayesmix as bm
from bayesmix.families.gaussian import covariance_models as cm
from bayesmix.families.gaussian.model import _DECOMPOSED_TYPES

DECOMPOSED = sorted(_DECOMPOSED_TYPES)


def test_the_decomposed_types_are_the_ten_new_models():
    assert (
        sorted(["EII", "EEI", "VEI", "EVI", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV"]) == DECOMPOSED
    )


def _data(rng, n=60, d=3):
    means = rng.normal(0, 4, size=(3, d))
    return means[rng.integers(0, 3, n)] + rng.normal(size=(n, d))


# PyTensor's Python linker: no C compilation, so that ten models build in seconds.
FAST = "FAST_COMPILE"


def _values(model, point, names):
    outputs = model.replace_rvs_by_values([model[name] for name in names])
    fn = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore", mode=FAST)
    return dict(zip(names, fn(point), strict=True))


def _numpy_covariances(name, values, k, d):
    parts = cm.MODELS[name]
    volume = np.broadcast_to(np.exp(values["log_volume"]), (k,))
    shape = np.exp(values["log_shape"]) if "log_shape" in values else np.ones(d)
    shape = np.broadcast_to(shape, (k, d))
    if parts.orientation == "I":
        orientation = np.broadcast_to(np.eye(d), (k, d, d))
    else:
        orientation = np.broadcast_to(cm.cayley(values["orientation_cayley"]), (k, d, d))
    return cm.compose(volume, orientation, shape)


@pytest.mark.parametrize("name", DECOMPOSED)
def test_pymc_model_equals_pm_mixture_of_the_composed_covariances(name):
    rng = np.random.default_rng(0)
    X = _data(rng)
    model = bm.GaussianMixture(n_components=3, covariance_type=name).build_model(X)
    start = model.initial_point()
    point = {key: v + rng.uniform(-0.7, 0.7, np.shape(v)) for key, v in start.items()}
    free = [rv.name for rv in model.free_RVs]
    values = _values(model, point, [*free, "covariances"])
    expected_free = {"weights", "means", "log_volume"}
    expected_free |= {"log_shape"} if cm.MODELS[name].shape != "I" else set()
    expected_free |= {"orientation_cayley"} if cm.MODELS[name].orientation != "I" else set()
    assert set(free) == expected_free
    if "log_shape" in values:
        np.testing.assert_allclose(values["log_shape"].sum(axis=-1), 0.0, atol=1e-12)
    covariances = _numpy_covariances(name, values, 3, 3)
    np.testing.assert_allclose(values["covariances"], covariances, rtol=1e-10, atol=1e-12)

    pointwise = model.compile_fn(
        model.logp(vars=[model["x"]], sum=False)[0],
        inputs=model.value_vars,
        on_unused_input="ignore",
        mode=FAST,
    )(point)
    with pm.Model():
        comp = pm.MvNormal.dist(mu=values["means"], cov=covariances, shape=(3, 3))
        mixture = pm.Mixture.dist(w=values["weights"], comp_dists=comp)
        reference = pm.logp(mixture, X).eval(mode=FAST)
    np.testing.assert_allclose(pointwise, reference, rtol=0, atol=1e-8)
    grad = model.compile_dlogp(mode=FAST)(point)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("name", DECOMPOSED)
def test_em_estimate_is_a_point_of_the_model(name):
    rng = np.random.default_rng(1)
    X = _data(rng, n=300)
    gm = bm.GaussianMixture(n_components=3, covariance_type=name, reg_covar=0.0, random_state=0)
    gm.fit(X, method="em")
    point = gm._point_from_em(gm.em_, 3)
    model = gm.build_model(X)
    for rv in model.free_RVs:
        model.set_initval(rv, point[rv.name])
    values = model.initial_point()  # the point in the value (transformed) space
    rebuilt = _values(model, values, ["covariances"])["covariances"]
    np.testing.assert_allclose(rebuilt, point["covariances"], rtol=1e-7, atol=1e-10)


def test_cayley_parameters_invert_the_cayley_map_up_to_column_signs():
    rng = np.random.default_rng(2)
    Q = np.linalg.qr(rng.normal(size=(50, 4, 4)))[0]
    rotations = cm.cayley(cm.cayley_parameters(Q))
    np.testing.assert_allclose(np.abs(rotations), np.abs(Q), atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-10)
    np.testing.assert_allclose(
        rotations @ np.swapaxes(rotations, 1, 2), np.eye(4) + 0 * Q, atol=1e-12
    )
    # Only the strictly lower triangle is used.
    noise = np.triu(rng.normal(size=(4, 4)))
    np.testing.assert_allclose(cm.cayley(cm.cayley_parameters(Q[0]) + noise), rotations[0])


def test_priors_of_the_decomposed_variables_can_be_set_and_are_checked():
    X = _data(np.random.default_rng(3))
    gm = bm.GaussianMixture(
        n_components=3,
        covariance_type="VEV",
        priors={"log_volume": bm.Prior("Normal", mu=0.0, sigma=1.0)},
    )
    model = gm.build_model(X)
    assert model["log_volume"].owner.op.name == "normal"
    with pytest.raises(bm.exceptions.PriorError, match="orientation_cayley"):
        bm.GaussianMixture(
            covariance_type="VEV", priors={"orientation_cayley": bm.Prior("HalfNormal")}
        ).build_model(X)
