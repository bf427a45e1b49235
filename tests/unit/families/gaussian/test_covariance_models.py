"""mclust's covariance models: decomposition, parameter counts and M-steps (issue 20).

References: mclust's ``nVarParams`` (mclust 6.1.3, R/mclust.R, transcribed below as
the published formulas), and for the M-steps a general optimiser (scipy's BFGS) of the
same objective over each model's own parameterisation (volumes, shapes and rotations).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from bayesmix.exceptions import InvalidParameterError
from bayesmix.families.gaussian import covariance_models as cm

MULTIVARIATE = ["EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE"]
MULTIVARIATE += ["EEV", "VEV", "EVV", "VVV"]

# mclust 6.1.3, nVarParams(modelName, d, G): the published formulas, as written there.
MCLUST_NVARPARAMS = {
    "EII": lambda d, G: 1,
    "VII": lambda d, G: G,
    "EEI": lambda d, G: d,
    "VEI": lambda d, G: G + (d - 1),
    "EVI": lambda d, G: 1 + G * (d - 1),
    "VVI": lambda d, G: G * d,
    "EEE": lambda d, G: d * (d + 1) / 2,
    "EVE": lambda d, G: 1 + G * (d - 1) + d * (d - 1) / 2,
    "VEE": lambda d, G: G + (d - 1) + d * (d - 1) / 2,
    "VVE": lambda d, G: G + G * (d - 1) + d * (d - 1) / 2,
    "EEV": lambda d, G: 1 + (d - 1) + G * d * (d - 1) / 2,
    "VEV": lambda d, G: G + (d - 1) + G * d * (d - 1) / 2,
    "EVV": lambda d, G: 1 - G + G * d * (d + 1) / 2,
    "VVV": lambda d, G: G * d * (d + 1) / 2,
}


def _problem(rng, k=3, d=3, n=60):
    """Responsibility-weighted scatter matrices of random data."""
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    z = rng.dirichlet(np.ones(k), n)
    nk = z.sum(axis=0)
    means = (z.T @ X) / nk[:, None]
    centred = X[None] - means[:, None]
    scatter = np.einsum("nk,kni,knj->kij", z, centred, centred)
    return nk, scatter


def _rotations(theta, d):
    """Rotations from (R, d (d - 1) / 2) angles by the Cayley transform ``(I - S)^-1 (I + S)``."""
    skew = np.zeros((theta.shape[0], d, d))
    rows, cols = np.tril_indices(d, -1)
    skew[:, rows, cols] = theta
    skew = skew - skew.transpose(0, 2, 1)
    eye = np.eye(d)
    return np.linalg.solve(eye - skew, eye + skew)


def _general_optimum(name, nk, scatter, rng, starts=4):
    """Minimise F over the model's parameterisation with BFGS from several starts."""
    model = cm.MODELS[name]
    k, d = scatter.shape[0], scatter.shape[1]
    m = d * (d - 1) // 2
    n_vol = 1 if model.volume == "E" else k
    n_shape = {"I": 0, "E": d, "V": k * d}[model.shape]
    n_rot = {"I": 0, "E": m, "V": k * m}[model.orientation]

    def covariances(theta):
        vol = np.broadcast_to(np.exp(theta[:n_vol]), (k,))
        u = theta[n_vol : n_vol + n_shape].reshape(-1, d) if n_shape else np.zeros((1, d))
        shape = np.broadcast_to(np.exp(u - u.mean(axis=1, keepdims=True)), (k, d))
        r = theta[n_vol + n_shape :].reshape(-1, m) if n_rot else None
        if r is None:
            rot = np.broadcast_to(np.eye(d), (k, d, d))
        else:
            rot = np.broadcast_to(_rotations(r, d), (k, d, d))
        return cm.compose(vol, rot, shape)

    def objective(theta):
        return cm.m_step_objective(covariances(theta), nk, scatter)

    size = n_vol + n_shape + n_rot
    best = np.inf
    for _ in range(starts):
        theta0 = rng.normal(scale=0.5, size=size)
        theta0[:n_vol] += np.log(np.trace(scatter.sum(axis=0)) / (nk.sum() * d))
        result = minimize(objective, theta0, method="BFGS", options={"gtol": 1e-9})
        best = min(best, result.fun)
    return best


@pytest.mark.parametrize("name", MULTIVARIATE)
def test_m_step_reaches_the_general_optimiser_s_optimum(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    nk, scatter = _problem(rng, k=2, d=3)
    ours = cm.m_step_objective(cm.m_step_covariances(name, nk, scatter), nk, scatter)
    reference = _general_optimum(name, nk, scatter, rng)
    assert ours <= reference + 1e-7 * abs(reference)
    assert ours == pytest.approx(reference, rel=1e-7)


@pytest.mark.parametrize("name", MULTIVARIATE)
def test_m_step_covariances_satisfy_the_model_s_constraints(name):
    rng = np.random.default_rng(3)
    nk, scatter = _problem(rng, k=4, d=3)
    volume, _, shape = cm.decompose(cm.m_step_covariances(name, nk, scatter))
    model = cm.MODELS[name]
    np.testing.assert_allclose(np.prod(shape, axis=1), 1.0, rtol=1e-12)
    if model.volume == "E":
        np.testing.assert_allclose(volume, volume[0], rtol=1e-12)
    if model.shape == "I":
        np.testing.assert_allclose(shape, 1.0, rtol=1e-10)
    if model.shape == "E":
        np.testing.assert_allclose(shape, np.broadcast_to(shape[0], shape.shape), rtol=1e-10)
    if model.orientation == "I":  # axis-aligned: the covariances are diagonal
        cov = cm.m_step_covariances(name, nk, scatter)
        off = cov - np.einsum("kii->ki", cov)[:, :, None] * np.eye(3)
        np.testing.assert_allclose(off, 0.0, atol=1e-14)
    if model.orientation == "E" and model.shape != "I":
        # one orientation: the covariances commute
        cov = cm.m_step_covariances(name, nk, scatter)
        np.testing.assert_allclose(cov[0] @ cov[1], cov[1] @ cov[0], atol=1e-10)


def test_compose_inverts_decompose_to_1e10():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 3, 3))
    covariances = a @ a.transpose(0, 2, 1) + 0.1 * np.eye(3)
    np.testing.assert_allclose(cm.compose(*cm.decompose(covariances)), covariances, rtol=1e-10)
    volume, orientation, shape = cm.decompose(covariances)
    np.testing.assert_allclose(volume, np.linalg.det(covariances) ** (1 / 3), rtol=1e-12)
    assert np.all(np.diff(shape, axis=1) <= 0)  # decreasing, mclust's convention
    np.testing.assert_allclose(
        orientation.transpose(0, 2, 1) @ orientation,
        np.broadcast_to(np.eye(3), (4, 3, 3)),
        atol=1e-12,
    )


@pytest.mark.parametrize("d", [2, 3, 5])
@pytest.mark.parametrize("G", [1, 2, 4, 7])
def test_parameter_counts_equal_mclust_s(d, G):
    for name, formula in MCLUST_NVARPARAMS.items():
        assert cm.n_variance_parameters(name, d, G) == formula(d, G), name
    assert cm.n_variance_parameters("E", 1, G) == 1
    assert cm.n_variance_parameters("V", 1, G) == G


def test_scikit_learn_names_are_aliases():
    rng = np.random.default_rng(6)
    nk, scatter = _problem(rng)
    for alias, name in cm.ALIASES.items():
        np.testing.assert_array_equal(
            cm.m_step_covariances(alias, nk, scatter), cm.m_step_covariances(name, nk, scatter)
        )
    # scikit-learn's own closed forms: full W_k / n_k, tied sum W / n, diag, spherical.
    np.testing.assert_allclose(
        cm.m_step_covariances("full", nk, scatter), scatter / nk[:, None, None], rtol=1e-14
    )
    spherical = np.trace(scatter, axis1=1, axis2=2) / (3 * nk)
    np.testing.assert_allclose(
        np.diagonal(cm.m_step_covariances("spherical", nk, scatter), axis1=1, axis2=2),
        np.repeat(spherical[:, None], 3, axis=1),
        rtol=1e-14,
    )


def test_univariate_models():
    nk = np.array([3.0, 5.0])
    scatter = np.array([[[6.0]], [[20.0]]])
    np.testing.assert_allclose(cm.m_step_covariances("V", nk, scatter)[:, 0, 0], [2.0, 4.0])
    np.testing.assert_allclose(cm.m_step_covariances("E", nk, scatter)[:, 0, 0], [26 / 8] * 2)


def test_names_are_checked_before_any_work():
    nk, scatter = np.ones(2), np.broadcast_to(np.eye(2), (2, 2, 2))
    with pytest.raises(InvalidParameterError, match="not one of mclust's models"):
        cm.m_step_covariances("XYZ", nk, scatter)
    with pytest.raises(InvalidParameterError, match="expected a three-letter name"):
        cm.m_step_covariances("V", nk, scatter)
    with pytest.raises(InvalidParameterError, match="expected 'E' or 'V'"):
        cm.resolve("VVV", 1)
