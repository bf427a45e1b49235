"""API plumbing with a mocked sampler: result layout, relabelling, inputs, fitted attributes."""

import json

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.datasets import make_mixture
from bayesmix.exceptions import SamplerWarning

MEANS = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
COVS = np.stack([np.eye(2), [[1.0, 0.5], [0.5, 1.0]], [[1.0, -0.3], [-0.3, 0.5]]])


@pytest.fixture
def X3():
    X, _ = make_mixture(300, [0.3, 0.3, 0.4], MEANS, COVS, random_state=1)
    return X


POSTERIOR_VARS = {
    "full": {
        "weights": ("chain", "draw", "component"),
        "means": ("chain", "draw", "component", "feature"),
        "sigma": ("chain", "draw", "component", "feature"),
        "corr_chol": ("chain", "draw", "component", "feature", "feature_bis"),
        "covariances": ("chain", "draw", "component", "feature", "feature_bis"),
    },
    "tied": {
        "weights": ("chain", "draw", "component"),
        "means": ("chain", "draw", "component", "feature"),
        "sigma": ("chain", "draw", "feature"),
        "corr_chol": ("chain", "draw", "feature", "feature_bis"),
        "covariances": ("chain", "draw", "component", "feature", "feature_bis"),
    },
    "diag": {
        "weights": ("chain", "draw", "component"),
        "means": ("chain", "draw", "component", "feature"),
        "sigma": ("chain", "draw", "component", "feature"),
        "covariances": ("chain", "draw", "component", "feature", "feature_bis"),
    },
    "spherical": {
        "weights": ("chain", "draw", "component"),
        "means": ("chain", "draw", "component", "feature"),
        "sigma": ("chain", "draw", "component"),
        "covariances": ("chain", "draw", "component", "feature", "feature_bis"),
    },
}


def _layout(idata, group):
    return {name: tuple(da.dims) for name, da in idata[group].data_vars.items()}


@pytest.mark.parametrize("covariance_type", list(POSTERIOR_VARS))
def test_nuts_result_layout_is_pinned(covariance_type, X3, mocked_sample):
    gm = bm.GaussianMixture(n_components=3, covariance_type=covariance_type, random_state=0)
    with pytest.warns(SamplerWarning):  # prior draws as a "posterior" fail every diagnostic
        gm.fit(X3, draws=20, chains=2, progressbar=False)
    idata = gm.idata
    assert set(idata.children) == {"posterior", "sample_stats", "log_likelihood", "observed_data"}
    assert _layout(idata, "posterior") == POSTERIOR_VARS[covariance_type]
    assert _layout(idata, "log_likelihood") == {"x": ("chain", "draw", "obs")}
    assert _layout(idata, "observed_data") == {"x": ("obs", "feature")}
    assert _layout(idata, "sample_stats") == {
        "diverging": ("chain", "draw"),
        "relabel_permutation": ("chain", "draw", "component"),
    }
    assert dict(idata["posterior"].sizes) == {
        "chain": 2,
        "draw": 20,
        "component": 3,
        "feature": 2,
        "feature_bis": 2,
    }
    attrs = idata.attrs
    assert attrs["inference_method"] == "nuts"
    assert attrs["model_class"] == "GaussianMixture"
    assert json.loads(attrs["params"])["covariance_type"] == covariance_type
    assert set(json.loads(attrs["priors"])) == set(POSTERIOR_VARS[covariance_type]) - {
        "covariances"
    }
    assert json.loads(attrs["sampler_settings"])["draws"] == 20
    assert 0 <= attrs["relabelled_draws"] <= 40


@pytest.mark.parametrize("covariance_type", list(POSTERIOR_VARS))
def test_em_result_has_the_nuts_layout_plus_em_stats(covariance_type, X3):
    gm = bm.GaussianMixture(n_components=3, covariance_type=covariance_type, random_state=0)
    gm.fit(X3, method="em")
    idata = gm.idata
    assert set(idata.children) == {"posterior", "log_likelihood", "observed_data", "em_stats"}
    assert _layout(idata, "posterior") == POSTERIOR_VARS[covariance_type]
    assert idata["posterior"].sizes["chain"] == 1
    assert idata["posterior"].sizes["draw"] == 1
    assert _layout(idata, "log_likelihood") == {"x": ("chain", "draw", "obs")}
    assert _layout(idata, "em_stats") == {
        "lower_bound": ("iteration",),
        "init_log_likelihood": ("restart",),
    }
    assert idata.attrs["inference_method"] == "em"
    # The stored pointwise log-likelihood is the EM log-likelihood.
    total = float(idata["log_likelihood"]["x"].sum())
    np.testing.assert_allclose(total / X3.shape[0], gm.em_.log_likelihood, rtol=1e-10)
    np.testing.assert_allclose(gm.score_samples(X3).sum(), total, rtol=1e-10)


def test_dataframe_names_become_coordinates(mocked_sample):
    X, _ = make_mixture(120, [0.5, 0.5], MEANS[:2], COVS[:2], random_state=2)
    df = pd.DataFrame(X, columns=["height", "weight"], index=[f"id{i}" for i in range(120)])
    gm = bm.GaussianMixture(n_components=2, random_state=0)
    with pytest.warns(SamplerWarning):
        gm.fit(df, draws=10, chains=2, progressbar=False)
    post = gm.idata["posterior"]
    assert list(post["feature"].values) == ["height", "weight"]
    assert list(post["feature_bis"].values) == ["height", "weight"]
    assert list(gm.idata["observed_data"]["obs"].values) == list(df.index)
    assert list(gm.idata["log_likelihood"]["obs"].values) == list(df.index)
    assert gm.feature_names_in_ == ["height", "weight"]
    em = bm.GaussianMixture(n_components=2, random_state=0).fit(df, method="em")
    assert list(em.idata["posterior"]["feature"].values) == ["height", "weight"]
    assert list(em.idata["observed_data"]["obs"].values) == list(df.index)


def test_series_and_vector_are_one_feature():
    x, _ = make_mixture(200, [0.5, 0.5], [[0.0], [5.0]], [[[1.0]], [[1.0]]], random_state=3)
    series = pd.Series(x[:, 0], name="velocity")
    gm = bm.GaussianMixture(n_components=2, random_state=0).fit(series, method="em")
    assert gm.feature_names_in_ == ["velocity"]
    assert gm.means_.shape == (2, 1)
    assert gm.means_[0, 0] < gm.means_[1, 0]  # 1-D: components ordered by their means
    vec = bm.GaussianMixture(n_components=2, random_state=0).fit(x[:, 0], method="em")
    np.testing.assert_allclose(vec.means_, gm.means_)


def test_relabelling_restores_permuted_draws(X3, mocked_sample):
    gm = bm.GaussianMixture(n_components=3, random_state=0).fit(X3, method="em")
    em = gm.em_
    idata = gm.idata.copy()
    # Build a 2-chain x 3-draw posterior from the EM point, then permute some draws.
    post = idata["posterior"].to_dataset().isel(chain=[0, 0], draw=[0, 0, 0])
    post = post.assign_coords(chain=[0, 1], draw=[0, 1, 2])
    perms = np.array([[[0, 1, 2], [2, 0, 1], [1, 2, 0]], [[0, 2, 1], [0, 1, 2], [2, 1, 0]]])
    permuted = {}
    for name, da in post.data_vars.items():
        if "component" in da.dims:
            values = da.transpose("chain", "draw", "component", ...).to_numpy().copy()
            for c in range(2):
                for s in range(3):
                    values[c, s] = values[c, s][np.argsort(perms[c, s])]
            permuted[name] = da.transpose("chain", "draw", "component", ...).copy(data=values)
    idata["posterior"] = post.assign(permuted)
    from bayesmix._validation import check_data

    gm._relabel(idata, em, check_data(X3))
    restored = idata["posterior"]
    for name in ("weights", "means", "covariances", "sigma", "corr_chol"):
        expected = gm.idata["posterior"][name].isel(chain=0, draw=0)
        for c in range(2):
            for s in range(3):
                np.testing.assert_allclose(restored[name].isel(chain=c, draw=s), expected)
    assert idata.attrs["relabelled_draws"] == 4
    kept = idata["sample_stats"]["relabel_permutation"].to_numpy()
    # The kept permutation maps each reference label to the draw's component.
    for c in range(2):
        for s in range(3):
            np.testing.assert_array_equal(np.argsort(perms[c, s])[kept[c, s]], np.arange(3))


def test_fitted_attributes_and_predictions(X3):
    gm = bm.GaussianMixture(n_components=3, random_state=0).fit(X3, method="em")
    assert gm.weights_.shape == (3,)
    assert gm.means_.shape == (3, 2)
    assert gm.covariances_.shape == (3, 2, 2)
    proba = gm.predict_proba(X3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(gm.predict(X3), proba.argmax(axis=1))
    n_params = 3 * 3 + 3 * 2 + 2  # covariances, means, weights
    loglik = gm.score_samples(X3).sum()
    np.testing.assert_allclose(gm.bic(X3), -2 * loglik + n_params * np.log(300))
    np.testing.assert_allclose(gm.aic(X3), -2 * loglik + 2 * n_params)
    table = gm.summary()
    assert len(table) == 3 + 6 + 9  # a symmetric 2 x 2 covariance: 3 distinct entries
    np.testing.assert_allclose(
        np.sort(table.filter(like="weights", axis=0)["estimate"]), np.sort(gm.weights_)
    )


@pytest.mark.parametrize(
    ("covariance_type", "shape"),
    [("full", (2, 2, 2)), ("tied", (2, 2)), ("diag", (2, 2)), ("spherical", (2,))],
)
def test_covariances_follow_sklearn_shapes(covariance_type, shape):
    X, _ = make_mixture(200, [0.5, 0.5], MEANS[:2], COVS[:2], random_state=4)
    gm = bm.GaussianMixture(n_components=2, covariance_type=covariance_type, random_state=0)
    assert gm.fit(X, method="em").covariances_.shape == shape


def test_constructor_stores_arguments_and_does_no_work():
    priors = {"means": bm.Prior("Normal", mu=0.0, sigma=10.0)}
    gm = bm.GaussianMixture(n_components="oops", priors=priors)  # validated at fit, not here
    assert gm.n_components == "oops"
    assert gm.priors is priors
    assert not hasattr(gm, "idata")
    with pytest.raises(TypeError):
        bm.GaussianMixture(3)  # keyword-only


def test_unfitted_accessors_raise():
    gm = bm.GaussianMixture()
    for call in (
        gm.summary,
        lambda: gm.predict(np.zeros((3, 2))),
        lambda: gm.bic(np.zeros((3, 2))),
    ):
        with pytest.raises(bm.NotFittedError, match="call fit"):
            call()


def test_user_priors_are_merged_and_not_mutated(X3):
    user = {"means": bm.Prior("Normal", mu=0.0, sigma=10.0)}
    snapshot = dict(user)
    gm = bm.GaussianMixture(n_components=3, priors=user, random_state=0).fit(X3, method="em")
    assert user == snapshot
    assert list(user) == ["means"]
    assert gm.priors_["means"] == bm.Prior("Normal", mu=0.0, sigma=10.0)
    assert gm.priors_["weights"] == bm.Prior("Dirichlet", a=1.0)
    model = gm.build_model(X3)
    assert model["means"].owner.op.name == "normal"


def test_bad_priors_are_reported_together(X3):
    priors = {
        "mean": bm.Prior("Normal", mu=0.0, sigma=1.0),
        "sigma": bm.Prior("Normal", mu=0.0, sigma=1.0),
        "weights": bm.Prior("Dirichlet", a=-1.0),
    }
    with pytest.raises(bm.PriorError) as err:
        bm.GaussianMixture(n_components=3, priors=priors).fit(X3, method="em")
    text = str(err.value)
    assert "'mean'" in text
    assert "did you mean 'means'" in text
    assert "'sigma'" in text
    assert "not supported" in text
    assert "'a' must be > 0" in text


@pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning")
def test_log_likelihood_on_request(mocked_sample):
    import scipy.stats as st
    from scipy.special import logsumexp

    X = bm.datasets.load_faithful().iloc[:60]
    fit = bm.GaussianMixture(n_components=2, random_state=0)
    fit.fit(X, draws=20, tune=10, chains=2, log_likelihood=False)
    assert "log_likelihood" not in fit.idata.children
    group = fit.compute_log_likelihood()
    assert group["x"].dims == ("chain", "draw", "obs")
    assert "log_likelihood" in fit.idata.children
    draw = fit.idata["posterior"].isel(chain=1, draw=7)
    w, mu, cov = (draw[name].to_numpy() for name in ("weights", "means", "covariances"))
    reference = logsumexp(
        [np.log(w[k]) + st.multivariate_normal(mu[k], cov[k]).logpdf(X) for k in range(2)],
        axis=0,
    )
    np.testing.assert_allclose(group["x"].isel(chain=1, draw=7), reference, rtol=1e-10)
    with pytest.raises(bm.exceptions.InvalidParameterError, match="log_likelihood"):
        fit.fit(X, draws=20, tune=10, chains=2, log_likelihood="yes")
