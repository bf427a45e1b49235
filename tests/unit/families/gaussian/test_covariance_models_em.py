"""mclust's covariance models in EM and in GaussianMixture (issue 20).

The models' M-step maths is tested against a general optimiser in
``test_covariance_models.py``; here: the EM M-step of a model stored in a scikit-learn
shape equals that maths on the responsibilities' scatter matrices, EM is monotone,
fitted covariances satisfy their model, the fused, NumPy and chunked engines agree,
and the fits of mclust's published examples are reproduced.
"""

from __future__ import annotations

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.exceptions import InvalidParameterError
from bayesmix.families.gaussian import covariance_models as cm
from bayesmix.families.gaussian import em

MULTIVARIATE = [name for name in cm.MODELS if len(name) == 3]
# The models that are not one of scikit-learn's four types.
CONSTRAINED = [name for name in MULTIVARIATE if name not in cm.ALIASES.values()]


def _model_data(name: str, rng: np.random.Generator, n: int = 900, d: int = 3, k: int = 3):
    """Data from a K=3 mixture whose covariances follow model ``name`` (and its truth)."""
    model = cm.MODELS[name]
    volume = np.full(k, 0.6) if model.volume == "E" else np.array([0.3, 0.6, 1.2])
    if model.shape == "I":
        shape = np.ones((k, d))
    else:
        base = np.array([[3.0, 1.0, 1 / 3.0], [2.0, 1.5, 1 / 3.0], [4.0, 0.5, 0.5]])
        shape = np.broadcast_to(base[0], (k, d)) if model.shape == "E" else base
    shape = shape / np.exp(np.log(shape).mean(axis=1, keepdims=True))
    if model.orientation == "I":
        orientation = np.broadcast_to(np.eye(d), (k, d, d))
    else:
        rotations = np.stack([np.linalg.qr(rng.normal(size=(d, d)))[0] for _ in range(k)])
        orientation = (
            np.broadcast_to(rotations[0], (k, d, d)) if model.orientation == "E" else rotations
        )
    covariances = cm.compose(volume, orientation, shape)
    means = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 3.0], [0.0, 6.0, -3.0]])
    labels = rng.integers(0, k, n)
    chol = np.linalg.cholesky(covariances)
    X = means[labels] + np.einsum("nij,nj->ni", chol[labels], rng.standard_normal((n, d)))
    return X, covariances


def _scatters(X: np.ndarray, resp: np.ndarray):
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    W = np.stack([(resp[:, k, None] * (X - means[k])).T @ (X - means[k]) for k in range(len(nk))])
    return nk, W


def _as_full(covariances: np.ndarray, storage: str, k: int, d: int) -> np.ndarray:
    match storage:
        case "full":
            return covariances
        case "tied":
            return np.broadcast_to(covariances, (k, d, d))
        case "diag":
            return covariances[:, :, None] * np.eye(d)
        case "spherical":
            return covariances[:, None, None] * np.eye(d)
    raise AssertionError(storage)


@pytest.mark.parametrize("name", [*MULTIVARIATE, "E", "V"])
def test_m_step_equals_the_model_m_step_of_the_scatter_matrices(name):
    rng = np.random.default_rng(0)
    d = 1 if len(name) == 1 else 3
    X = rng.normal(size=(120, d)) * np.arange(1, d + 1)
    resp = rng.dirichlet(np.ones(3), size=120)
    storage, model = cm.storage(name, d)
    _, _, covariances = em.m_step(X, resp, storage, 0.0, model=model)
    nk, W = _scatters(X, resp)
    expected = cm.m_step_covariances(name, nk, W)
    np.testing.assert_allclose(_as_full(covariances, storage, 3, d), expected, rtol=1e-9)


@pytest.mark.parametrize("name", CONSTRAINED)
def test_reg_covar_is_added_after_the_projection(name):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 3))
    resp = rng.dirichlet(np.ones(2), size=80)
    storage, model = cm.storage(name, 3)
    bare = em.m_step(X, resp, storage, 0.0, model=model)[2]
    ridged = em.m_step(X, resp, storage, 0.25, model=model)[2]
    eye = np.eye(3) if storage == "full" else 1.0
    np.testing.assert_allclose(ridged, bare + 0.25 * eye, rtol=1e-9, atol=1e-12)


# tol=0 runs to max_iter on purpose (and a component of 300 points may degenerate).
@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("objective", ["ml", "map"])
@pytest.mark.parametrize("name", CONSTRAINED)
def test_em_never_decreases_its_objective(name, objective):
    rng = np.random.default_rng(2)
    X, _ = _model_data(name, rng, n=300)
    result = em.fit_em(
        X,
        3,
        covariance_type=name,
        init="random",
        max_iter=60,
        tol=0.0,
        reg_covar=0.0,
        objective=objective,
        random_state=0,
    )
    steps = np.diff(result.lower_bounds)
    assert np.all(steps >= -1e-9 * np.abs(result.lower_bounds[1:])), steps.min()


def _assert_follows(name: str, covariances: np.ndarray) -> None:
    """The decomposition of fitted covariances has the structure model ``name`` says."""
    model = cm.MODELS[name]
    volume, orientation, shape = cm.decompose(covariances)
    if model.volume == "E":
        np.testing.assert_allclose(volume, np.full_like(volume, volume[0]), rtol=1e-8)
    if model.shape != "V":
        np.testing.assert_allclose(shape, np.broadcast_to(shape[0], shape.shape), rtol=1e-6)
    if model.shape == "I":
        np.testing.assert_allclose(shape, 1.0, rtol=1e-8)
    if model.orientation == "I":
        off = covariances - np.diagonal(covariances, axis1=1, axis2=2)[:, :, None] * np.eye(3)
        np.testing.assert_allclose(off, 0.0, atol=1e-12)
    elif model.orientation == "E" and model.shape != "I":
        # The same axes up to sign and (when the shapes vary) order: |D_0' D_k| is a
        # permutation matrix.
        for k in range(1, len(covariances)):
            overlap = np.abs(orientation[0].T @ orientation[k])
            np.testing.assert_allclose(overlap, overlap.round(), atol=1e-6)
            np.testing.assert_allclose(overlap.sum(axis=0), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", MULTIVARIATE)
def test_fits_follow_their_model_and_recover_the_truth(name):
    rng = np.random.default_rng(3)
    X, truth = _model_data(name, rng, n=3000)
    # reg_covar=0: the ridge, added after the M-step, would blur the equal parts.
    fit = bm.GaussianMixture(
        n_components=3, covariance_type=name, reg_covar=0.0, random_state=0
    ).fit(X, method="em")
    full = fit.posterior_arrays()["covariances"][0]
    _assert_follows(name, full)
    order = np.argsort(fit.means_[:, 0] + 10 * fit.means_[:, 1])  # truth: (0,0), (6,0), (0,6)
    np.testing.assert_allclose(full[order], truth, atol=0.15 * np.abs(truth).max())
    k, d = 3, 3
    assert fit._n_parameters(d) == cm.n_variance_parameters(name, d, k) + k * d + k - 1


@pytest.mark.parametrize("name", ["VEV", "EEI", "EII", "EVE", "VEE", "EVV"])
def test_fused_and_numpy_engines_agree(name, monkeypatch):
    rng = np.random.default_rng(4)
    X, _ = _model_data(name, rng, n=600)
    settings = {"covariance_type": name, "max_iter": 40, "tol": 0.0, "random_state": 1}
    monkeypatch.setattr(em, "_FUSED_MIN_SAMPLES", 0)
    fused = em.fit_em(X, 3, **settings)
    monkeypatch.setattr(em, "_ENGINE", "numpy")
    numpy = em.fit_em(X, 3, **settings)
    np.testing.assert_allclose(fused.lower_bounds, numpy.lower_bounds, rtol=1e-9)
    for key in ("means", "covariances"):
        np.testing.assert_allclose(fused.params[key], numpy.params[key], rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize(("name", "objective"), [("VEV", "ml"), ("EEI", "map"), ("VVE", "ml")])
def test_chunked_em_equals_in_memory_em(name, objective):
    da = pytest.importorskip("dask.array")  # the test extra installs dask
    rng = np.random.default_rng(5)
    X, _ = _model_data(name, rng, n=700)
    settings = {"n_components": 3, "covariance_type": name, "objective": objective}
    settings |= {"random_state": 0, "tol": 1e-9, "max_iter": 80}
    memory = bm.GaussianMixture(**settings).fit(X, method="em")
    chunked = bm.GaussianMixture(**settings).fit(da.from_array(X, chunks=(150, 3)), method="em")
    np.testing.assert_allclose(chunked.weights_, memory.weights_, rtol=1e-7)
    np.testing.assert_allclose(chunked.covariances_, memory.covariances_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(chunked.em_.log_likelihood, memory.em_.log_likelihood, rtol=1e-10)


@pytest.mark.parametrize("name", CONSTRAINED)
def test_map_keeps_covariances_positive_definite_on_degenerate_data(name):
    # Each cluster on its own plane in 3-D: the maximum-likelihood covariances are
    # singular (the data's covariance is not, so the prior's scale is proper).
    rng = np.random.default_rng(6)
    X = np.concatenate([rng.normal(0, 1, (40, 3)), rng.normal(5, 1, (40, 3))])
    X[:40, 2] = 0.0
    X[40:, 0] = 5.0
    fit = bm.GaussianMixture(
        n_components=2, covariance_type=name, objective="map", reg_covar=0.0, random_state=0
    ).fit(X, method="em")
    full = fit.posterior_arrays()["covariances"][0]
    assert np.all(np.linalg.eigvalsh(full) > 0)
    _assert_follows(name, full)


# --- mclust's published fits -------------------------------------------------------------
# Scrucca, Fop, Murphy & Raftery (2016), The R Journal 8(1): Mclust(iris[, 1:4]) is VEV
# with 2 components, log-likelihood -215.726, df 26, BIC -561.7285, ICL -561.7289. The
# mclust 6.1.3 vignette (inst/doc/mclust.html): densityMclust(faithful) is EEE with 3
# components, log-likelihood -1126.326, df 11, BIC -2314.316, ICL -2357.824.


def _tight(**settings):
    return {"reg_covar": 0.0, "tol": 1e-10, "max_iter": 5000, "random_state": 0} | settings


def test_iris_vev_2_reproduces_mclust():
    X = bm.datasets.load_iris()
    table = bm.select_k(
        X, ks=[2], covariance_type=["VEV"], method="em", progressbar=False, **_tight()
    )
    row = table.iloc[0]
    assert row["n_parameters"] == 26
    assert row["log_likelihood"] == pytest.approx(-215.726, abs=1e-3)
    assert row["bic"] == pytest.approx(561.7285, abs=1e-3)
    assert row["icl"] == pytest.approx(561.7289, abs=1e-3)


def test_faithful_eee_3_reaches_mclusts_optimum():
    X = bm.datasets.load_faithful()
    table = bm.select_k(
        X, ks=[3], covariance_type=["EEE"], method="em", progressbar=False, **_tight()
    )
    row = table.iloc[0]
    assert row["n_parameters"] == 11
    # mclust stops EM when the log-likelihood changes by less than 1e-5 relatively, about
    # 0.011 here: its published value is that far below the optimum, which EM run to
    # convergence reaches (-1126.3159).
    assert -1126.326 <= row["log_likelihood"] <= -1126.326 + 0.012
    assert 2314.316 - 0.024 <= row["bic"] <= 2314.316


def test_select_k_grid_table():
    X = bm.datasets.load_faithful()
    table = bm.select_k(
        X,
        ks=[1, 2],
        covariance_type=["EII", "VVV", "EEE"],
        method="em",
        random_state=0,
        progressbar=False,
    )
    assert list(table["covariance_type"]) == ["EII", "EII", "VVV", "VVV", "EEE", "EEE"]
    assert list(table["n_components"]) == [1, 2] * 3
    best = table.loc[table["bic"].idxmin()]
    assert table.attrs["best"]["bic"] == (best["covariance_type"], best["n_components"])
    assert table.loc[table["bic"].idxmin(), "rank_bic"] == 1
    assert table.loc[table["bic"].idxmax(), "rank_bic"] == 6
    # One covariance per K=1 fit whatever the model: VVV and EEE are the same model there.
    one = table[table["n_components"] == 1].set_index("covariance_type")["log_likelihood"]
    assert one["VVV"] == pytest.approx(one["EEE"], rel=1e-10)
    assert one["EII"] < one["VVV"]


def test_select_k_all_models_of_one_feature():
    X = bm.datasets.load_faithful()[["eruptions"]]
    table = bm.select_k(X, ks=[2], covariance_type="all", method="em", progressbar=False)
    assert list(table["covariance_type"]) == ["E", "V"]


# --- errors --------------------------------------------------------------------------------


def test_a_fit_of_a_covariance_model_saves_and_loads(tmp_path):
    X = bm.datasets.load_iris()
    fit = bm.GaussianMixture(n_components=2, covariance_type="VEV", random_state=0)
    fit.fit(X, method="em")
    assert {"log_volume", "log_shape", "orientation_cayley"} <= set(
        fit.idata["posterior"].data_vars
    )
    fit.save(tmp_path / "vev.nc")
    loaded = bm.load(tmp_path / "vev.nc")
    assert loaded.covariance_type == "VEV"
    np.testing.assert_array_equal(loaded.covariances_, fit.covariances_)
    np.testing.assert_array_equal(loaded.predict_proba(X), fit.predict_proba(X))


def test_a_model_must_fit_the_number_of_features():
    X = bm.datasets.load_faithful()
    with pytest.raises(InvalidParameterError, match="'E' or 'V'"):
        bm.GaussianMixture(covariance_type="VEV").fit(X[["waiting"]], method="em")
    with pytest.raises(InvalidParameterError, match="three-letter"):
        bm.GaussianMixture(covariance_type="V").fit(X, method="em")
    with pytest.raises(InvalidParameterError, match="three-letter"):
        bm.select_k(X, ks=[1], covariance_type=["EII", "E"], method="em", progressbar=False)


def test_student_t_keeps_scikit_learns_four_types():
    with pytest.raises(InvalidParameterError, match="covariance_type"):
        bm.StudentTMixture(covariance_type="VEV").fit(np.zeros((10, 2)), method="em")


def test_select_k_grid_needs_em_and_a_covariance_type():
    X = bm.datasets.load_faithful()
    with pytest.raises(InvalidParameterError, match="method='em'"):
        bm.select_k(X, ks=[1], covariance_type=["EII", "VVV"])
    with pytest.raises(InvalidParameterError, match="no covariance_type"):
        bm.select_k(X.round(), ks=[1], covariance_type="all", model="poisson", method="em")
    with pytest.raises(InvalidParameterError, match="empty"):
        bm.select_k(X, ks=[1], covariance_type=[], method="em")


def test_plot_select_k_draws_one_line_per_covariance_type():
    X = bm.datasets.load_faithful()
    table = bm.select_k(
        X, ks=[1, 2, 3], covariance_type=["EII", "VVV"], method="em", progressbar=False
    )
    fig = bm.plot_select_k(table)
    bic_axis = fig.axes[0]
    lines = {line.get_label(): line for line in bic_axis.get_lines()}
    assert {"EII", "VVV"} <= set(lines)
    np.testing.assert_array_equal(lines["EII"].get_ydata(), table["bic"][:3])
    name, k = table.attrs["best"]["bic"]
    circled = [line for line in bic_axis.get_lines() if line.get_markersize() == 16]
    expected = table.loc[(table["covariance_type"] == name) & (table["n_components"] == k), "bic"]
    np.testing.assert_array_equal(circled[0].get_ydata(), expected)
