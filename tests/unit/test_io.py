"""Save and load: every group, every constructor argument, priors and fitted state survive."""

import os
import pickle

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix.datasets import make_mixture
from bayesmix.exceptions import LoadError

MEANS = np.array([[0.0, 0.0], [6.0, 0.0]])
COVS = np.stack([np.eye(2), [[1.0, 0.5], [0.5, 1.0]]])

# A value different from the default for every constructor argument. When a new argument
# is added to GaussianMixture.__init__, test_every_constructor_argument_is_listed fails
# until it is listed here, and the round trip then checks that it is saved.
NON_DEFAULT = {
    "n_components": 3,
    "covariance_type": "diag",
    "priors": {"means": bm.Prior("Normal", mu=[0.0, 1.0], sigma=[5.0, 6.0])},
    "n_init": 2,
    "init": "k-means++",
    "max_iter": 321,
    "tol": 1e-5,
    "reg_covar": 1e-4,
    "random_state": 7,
    "objective": "map",
    "missing": "model",
}


@pytest.fixture
def frame():
    X, _ = make_mixture(150, [0.4, 0.6], MEANS, COVS, random_state=3)
    return pd.DataFrame(X, columns=["height", "weight"], index=[f"p{i}" for i in range(150)])


def _assert_same_fit(a, b):
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    assert a.priors_ == b.priors_
    assert set(a.idata.children) == set(b.idata.children)
    for group in a.idata.children:
        xr.testing.assert_identical(a.idata[group].to_dataset(), b.idata[group].to_dataset())
    assert a.idata.attrs == b.idata.attrs
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.feature_names_in_ == b.feature_names_in_
    assert a.n_features_in_ == b.n_features_in_
    for field in ("weights", "means", "covariances", "precisions_cholesky", "lower_bounds"):
        np.testing.assert_array_equal(getattr(a.em_, field), getattr(b.em_, field))
    assert (a.em_.n_iter, a.em_.converged) == (b.em_.n_iter, b.em_.converged)


def test_every_constructor_argument_is_listed():
    assert set(NON_DEFAULT) == set(bm.GaussianMixture._param_names())
    defaults = bm.GaussianMixture().get_params()
    assert all(NON_DEFAULT[key] != defaults[key] for key in NON_DEFAULT)


def test_em_fit_round_trips_with_every_argument(frame, tmp_path):
    gm = bm.GaussianMixture(**NON_DEFAULT).fit(frame, method="em")
    path = gm.save(tmp_path / "fit.nc")
    assert path == tmp_path / "fit.nc"
    loaded = bm.load(path)
    _assert_same_fit(gm, loaded)
    assert loaded.get_params()["priors"] == NON_DEFAULT["priors"]
    assert "em_stats" in loaded.idata.children
    np.testing.assert_array_equal(loaded.predict_proba(frame), gm.predict_proba(frame))
    assert list(loaded.idata["observed_data"]["obs"].values) == list(frame.index)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "spherical"])
def test_nuts_fit_round_trips(covariance_type, frame, tmp_path, mocked_sample):
    gm = bm.GaussianMixture(covariance_type=covariance_type, random_state=0)
    with pytest.warns(bm.SamplerWarning):  # prior draws fail the diagnostics
        gm.fit(frame, draws=15, chains=2, progressbar=False)
    loaded = bm.GaussianMixture.load(gm.save(tmp_path / "nuts.nc"))
    _assert_same_fit(gm, loaded)
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data"} <= set(
        loaded.idata.children
    )
    np.testing.assert_allclose(loaded.score_samples(frame), gm.score_samples(frame))


def test_one_feature_fit_round_trips(tmp_path):
    X, _ = make_mixture(100, [0.5, 0.5], [[0.0], [5.0]], [[[1.0]], [[1.0]]], random_state=1)
    gm = bm.GaussianMixture(random_state=0).fit(pd.Series(X[:, 0], name="v"), method="em")
    _assert_same_fit(gm, bm.load(gm.save(tmp_path / "one.nc")))


def test_loading_a_file_that_is_not_a_fit_fails_clearly(tmp_path):
    text = tmp_path / "notes.nc"
    text.write_text("not a netCDF file")
    with pytest.raises(LoadError, match="could not be read as a netCDF4 file"):
        bm.load(text)
    other = tmp_path / "other.nc"
    xr.DataTree(xr.Dataset({"a": ("x", np.arange(3))})).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(LoadError, match="not a bayesmix fit"):
        bm.load(other)
    with pytest.raises(FileNotFoundError, match="no saved fit"):
        bm.load(tmp_path / "missing.nc")


def test_loading_a_fit_of_another_class_fails_clearly(frame, tmp_path):
    class OtherMixture(bm.GaussianMixture):
        pass

    path = bm.GaussianMixture(random_state=0).fit(frame, method="em").save(tmp_path / "f.nc")
    with pytest.raises(LoadError, match="holds a GaussianMixture fit, not a OtherMixture"):
        OtherMixture.load(path)

    gm = bm.GaussianMixture(random_state=0).fit(frame, method="em")
    gm.idata.attrs["model_class"] = "HiddenMarkovMixture"
    with pytest.raises(LoadError, match="'HiddenMarkovMixture' fit, which this"):
        bm.load(gm.save(tmp_path / "p.nc"))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model_class", "PoissonMixture"),  # a known class, but not the one that was fitted
        ("params", '{"n_components": 2, "colour": "red"}'),
        ("em_result", "{}"),
    ],
)
def test_loading_an_edited_fit_raises_load_error(frame, tmp_path, key, value):
    gm = bm.GaussianMixture(n_components=2, random_state=0).fit(frame, method="em")
    gm.idata.attrs[key] = value
    with pytest.raises(LoadError, match="contents do not match that class"):
        bm.load(gm.save(tmp_path / "edited.nc"))


def test_a_failed_save_leaves_no_truncated_file(frame, tmp_path, monkeypatch):
    gm = bm.GaussianMixture(random_state=0).fit(frame, method="em")
    target = tmp_path / "fit.nc"
    gm.save(target)
    good = target.read_bytes()

    def broken(self, path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"\x89HDF partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        gm.save(target)
    assert target.read_bytes() == good  # the earlier save is intact
    with pytest.raises(OSError, match="disk full"):
        gm.save(tmp_path / "new.nc")
    assert sorted(os.listdir(tmp_path)) == ["fit.nc"]  # no partial or temporary files


def test_priors_pickle_and_deepcopy():
    prior = bm.Prior("Normal", mu=[0.0, 1.0], sigma=2.0)
    assert pickle.loads(pickle.dumps(prior)) == prior
    import copy

    assert copy.deepcopy(prior) == prior


def test_saved_fits_are_compressed_and_leave_out_predictive_draws(tmp_path, mocked_sample):
    X = bm.datasets.load_faithful()
    fit = bm.GaussianMixture(n_components=2, random_state=0).fit(X, chains=2, draws=50, tune=50)
    fit.sample_posterior_predictive(random_seed=0)
    assert "posterior_predictive" in fit.idata.children
    small = fit.save(tmp_path / "small.nc")
    full = fit.save(tmp_path / "full.nc", predictive=True)
    with xr.open_datatree(small, engine="h5netcdf") as tree:
        assert "posterior_predictive" not in tree.children
        assert tree["log_likelihood"]["x"].encoding["zlib"]  # compressed
    with xr.open_datatree(full, engine="h5netcdf") as tree:
        assert "posterior_predictive" in tree.children
    assert small.stat().st_size < full.stat().st_size
    loaded = bm.load(small)
    np.testing.assert_array_equal(loaded.means_, fit.means_)
    assert "posterior_predictive" in fit.idata.children  # the fit itself is unchanged
