"""The saved-fit file: a durable save that never touches the umask, a load that checks all.

Files are edited the way a person or a bug would (a value changed in place with h5py, or a
DataTree rewritten through xarray) and every defect must fail ``load`` with ``LoadError``
naming the field; valid files of every family (EM, mocked NUTS, chunked data, a stream)
still load.
"""

import json
import os
import stat
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix import _datatree
from bayesmix.datasets import make_mixture
from bayesmix.exceptions import LoadError
from bayesmix.families import FAMILIES

pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning")

MEANS = np.array([[0.0, 0.0], [6.0, 0.0]])
COVS = np.stack([np.eye(2), [[1.0, 0.5], [0.5, 1.0]]])
PREFIX = "says it holds a GaussianMixture fit, but its contents do not match that class: "

# The support every family's posterior variables must have (the rest are real numbers).
SUPPORT = {
    "weights": "simplex",
    "sigma": "positive",
    "corr_chol": "correlation_cholesky",
    "covariances": "positive_definite",
    "scales": "positive_definite",
    "dof": "positive",
    "rates": "nonnegative",
    "probs": "unit_interval",
    "dispersion": "positive",
}


def _outside(support, values):
    """Move ``values`` (chain, draw, ...) out of ``support``; return the expected message."""
    if support == "simplex":
        values *= 1.7
        return "sums to 1.7, expected 1"
    if support == "positive_definite":
        values[0, 0, 0] *= -1.0  # negative definite, still symmetric
        return "is not positive definite"
    if support == "correlation_cholesky":
        values *= 2.0
        return "has rows of norm"
    bad, expected = {
        "positive": (0.0, "0, expected > 0"),
        "nonnegative": (-1.0, "-1, expected >= 0"),
        "unit_interval": (1.5, "1.5, expected in [0, 1]"),
    }[support]
    values.flat[0] = bad
    return expected


def _data(kind, rng, n=90):
    z = rng.random(n) < 0.4
    if kind == "counts":
        values = np.column_stack([rng.poisson(np.where(z, 1.0, 8.0)), rng.poisson(3.0, n)])
    elif kind == "binary":
        p = np.where(z[:, None], [0.9, 0.8, 0.1], [0.1, 0.3, 0.8])
        values = (rng.random((n, 3)) < p).astype(int)
    else:
        values = rng.normal(size=(n, 2)) + np.where(z[:, None], -2.5, 2.5)
    return pd.DataFrame(values, columns=[f"c{j}" for j in range(values.shape[1])])


@pytest.fixture(scope="module")
def frame():
    X, _ = make_mixture(150, [0.4, 0.6], MEANS, COVS, random_state=3)
    return pd.DataFrame(X, columns=["height", "weight"], index=[f"p{i}" for i in range(150)])


@pytest.fixture(scope="module")
def gaussian(frame):
    return bm.GaussianMixture(random_state=0).fit(frame, method="em")


@pytest.fixture(scope="module")
def em_fits():
    """Return ``get(name)``: an EM fit of the registered family ``name`` (cached)."""
    cache = {}

    def get(name):
        if name not in cache:
            cls = FAMILIES[name]
            X = _data(cls.plot_kind, np.random.default_rng(5))
            cache[name] = (cls(n_components=2, random_state=0).fit(X, method="em"), X)
        return cache[name]

    return get


def _save(tree, path):
    tree.to_netcdf(path, engine="h5netcdf")
    return path


def _edited(fit, path, change):
    tree = fit.idata.copy(deep=True)
    change(tree)
    return _save(tree, path)


def _set_var(tree, group, name, change):
    """Apply ``change`` in place to the values of ``group/name`` (in their stored dims)."""
    ds = tree[group].to_dataset()
    values = ds[name].to_numpy().copy()
    change(values)
    tree[group] = ds.assign({name: ds[name].copy(data=values)})


def _set_json(tree, key, change):
    """Apply ``change`` in place to the decoded JSON attribute ``key``."""
    value = json.loads(tree.attrs[key])
    change(value)
    tree.attrs[key] = json.dumps(value)


def _load_error(path):
    with pytest.raises(LoadError) as info:
        bm.load(path)
    return str(info.value)


# -- each defect fails the load, naming the field -------------------------------------------


def _drop_feature_dim(tree):
    ds = tree["posterior"].to_dataset()
    tree["posterior"] = ds.assign(means=ds["means"].isel(feature=0, drop=True))


def _extra_variable(tree):
    ds = tree["posterior"].to_dataset()
    tree["posterior"] = ds.assign(x=ds["weights"])


def _add_sample_weight(tree):
    ds = tree["observed_data"].to_dataset()
    weights = np.ones(ds.sizes["obs"])
    weights[2] = -1.0
    tree["observed_data"] = ds.assign(sample_weight=("obs", weights))


def _drop_data(tree):
    del tree["observed_data"]


def _set_attr(key, value):
    def change(tree):
        tree.attrs[key] = value

    return change


def _prior(key, distribution, **params):
    def change(priors):
        priors[key] = {"distribution": distribution, "params": params}

    return change


EDITS = {
    # posterior variables: values
    "negative weights": (
        lambda t: _set_var(t, "posterior", "weights", lambda v: v.__setitem__(0, [-0.2, 1.2])),
        "posterior variable 'weights', draw (0, 0): has a negative entry (-0.2), expected >= 0",
    ),
    "weights not summing to 1": (
        lambda t: _set_var(t, "posterior", "weights", lambda v: v.__imul__(1.7)),
        "posterior variable 'weights', draw (0, 0): sums to 1.7, expected 1",
    ),
    "infinite mean": (
        lambda t: _set_var(t, "posterior", "means", lambda v: v.__setitem__((0, 0, 1, 0), np.inf)),
        "posterior variable 'means', draw (0, 0), component 1, feature 'height': inf, "
        "expected a finite number",
    ),
    "covariance not positive definite": (
        lambda t: _set_var(
            t, "posterior", "covariances", lambda v: v.__setitem__((0, 0, 1), [[1, 2], [2, 1]])
        ),
        "posterior variable 'covariances', draw (0, 0), component 1: is not positive definite",
    ),
    "covariance not symmetric": (
        lambda t: _set_var(
            t, "posterior", "covariances", lambda v: v.__setitem__((0, 0, 0, 0, 1), 0.7)
        ),
        "posterior variable 'covariances', draw (0, 0), component 0: is not symmetric",
    ),
    "negative scale": (
        lambda t: _set_var(t, "posterior", "sigma", lambda v: v.__setitem__((0, 0, 0, 1), -1.0)),
        "posterior variable 'sigma', draw (0, 0), component 0, feature 'weight': -1, expected > 0",
    ),
    # posterior variables: shapes
    "more components than the posterior has": (
        lambda t: _set_json(t, "params", lambda p: p.__setitem__("n_components", 3)),
        "posterior variable 'weights': dim 'component' has size 2, expected 3 (n_components)",
    ),
    "a variable without its feature dim": (
        _drop_feature_dim,
        "posterior variable 'means': dims ('chain', 'draw', 'component'), expected "
        "('chain', 'draw', 'component', 'feature')",
    ),
    "an unknown posterior variable": (
        _extra_variable,
        "posterior group: variables ['corr_chol', 'covariances', 'means', 'sigma', "
        "'weights', 'x'], expected",
    ),
    # priors
    "unknown prior distribution": (
        lambda t: _set_json(t, "priors", _prior("means", "NoSuchDistribution")),
        "attribute 'priors', prior 'means': distribution 'NoSuchDistribution' is not "
        "supported here; expected one of ['Normal', 'StudentT']",
    ),
    "a PyMC distribution the key does not accept": (
        lambda t: _set_json(t, "priors", _prior("sigma", "Flat")),
        "attribute 'priors', prior 'sigma': distribution 'Flat' is not supported here",
    ),
    "a user prior the key does not accept": (
        lambda t: _set_json(
            t,
            "params",
            lambda p: p.__setitem__("priors", {"means": {"distribution": "Flat", "params": {}}}),
        ),
        "attribute 'params' (the constructor arguments), prior 'means': distribution 'Flat' "
        "is not supported here",
    ),
    "a prior key the model does not have": (
        lambda t: _set_json(t, "priors", _prior("colour", "Normal", mu=0.0, sigma=1.0)),
        "attribute 'priors', prior 'colour': 'colour' is not a random variable of this model",
    ),
    "a prior parameter of the wrong shape": (
        lambda t: _set_json(t, "priors", _prior("means", "Normal", mu=[0.0] * 3, sigma=1.0)),
        "attribute 'priors', prior 'means': parameter 'mu' has shape (3,), which does not "
        "broadcast to the variable's shape (2, 2)",
    ),
    "an LKJ concentration that is not a scalar": (
        lambda t: _set_json(t, "priors", _prior("corr_chol", "LKJCorr", eta=[2.0, 2.0])),
        "attribute 'priors', prior 'corr_chol': parameter 'eta' of LKJCorr must be a scalar; "
        "got an array of shape (2,)",
    ),
    "a prior parameter that is text": (
        lambda t: _set_json(t, "priors", _prior("sigma", "HalfNormal", sigma="5")),
        "attribute 'priors', prior 'sigma': parameter 'sigma' must be a number or a (nested) "
        "list of numbers; got '5'",
    ),
    "a prior parameter out of range": (
        lambda t: _set_json(t, "priors", _prior("sigma", "HalfNormal", sigma=-1.0)),
        "attribute 'priors', prior 'sigma': parameter 'sigma' must be > 0; got -1.0",
    ),
    "a missing prior": (
        lambda t: _set_json(t, "priors", lambda p: p.pop("sigma")),
        "attribute 'priors': no prior for ['sigma']",
    ),
    "resolved priors that are not the user's": (
        lambda t: _set_json(
            t,
            "params",
            lambda p: p.__setitem__(
                "priors", {"means": {"distribution": "Normal", "params": {"sigma": 9.0}}}
            ),
        ),
        "attribute 'priors', prior 'means': Prior('Normal', mu=[",
    ),
    # constructor parameters
    "an unknown constructor parameter": (
        lambda t: _set_json(t, "params", lambda p: p.__setitem__("colour", "red")),
        "attribute 'params' (the constructor arguments): ['colour'] are not arguments of "
        "GaussianMixture",
    ),
    "n_components=-1": (
        lambda t: _set_json(t, "params", lambda p: p.__setitem__("n_components", -1)),
        "attribute 'params' (the constructor arguments): GaussianMixture: n_components must "
        "be a positive int (>= 1); got -1 (int)",
    ),
    "an unknown covariance type": (
        lambda t: _set_json(t, "params", lambda p: p.__setitem__("covariance_type", "banana")),
        "attribute 'params' (the constructor arguments): GaussianMixture: covariance_type "
        "must be one of ['full', 'tied', 'diag', 'spherical', 'E', 'V', 'EII', 'VII', 'EEI', "
        "'VEI', 'EVI', 'VVI', 'EEE', 'VEE', 'EVE', 'VVE', 'EEV', 'VEV', 'EVV', 'VVV']; got "
        "'banana'. Try the default, covariance_type='full'. It was edited",
    ),
    # the EM result
    "em_result that is not JSON": (
        _set_attr("em_result", "{not json"),
        "attribute 'em_result': not valid JSON",
    ),
    "em_result that is a list": (
        _set_attr("em_result", "[1, 2]"),
        "attribute 'em_result': a JSON list, expected a JSON object",
    ),
    "em_result without weights": (
        lambda t: _set_json(t, "em_result", lambda e: e.pop("weights")),
        "attribute 'em_result': not an EM result (KeyError: 'weights')",
    ),
    "em_result weights of the wrong shape": (
        lambda t: _set_json(t, "em_result", lambda e: e.__setitem__("weights", [0.2, 0.3, 0.5])),
        "attribute 'em_result', 'weights': shape (3,), expected (2,)",
    ),
    "em_result with a NaN parameter": (
        lambda t: _set_json(
            t, "em_result", lambda e: e["params"]["covariances"][0][0].__setitem__(0, np.nan)
        ),
        "attribute 'em_result', parameter 'covariances', entry (0, 0, 0): nan, expected finite",
    ),
    "em_result of another family": (
        lambda t: _set_json(t, "em_result", lambda e: e.__setitem__("family", "poisson")),
        "attribute 'em_result', 'family': 'poisson', expected 'gaussian'",
    ),
    "em_result with a covariance that is not positive definite": (
        lambda t: _set_json(
            t, "em_result", lambda e: e["params"]["covariances"].__setitem__(1, [[1, 2], [2, 1]])
        ),
        "attribute 'em_result' (the EM estimate): parameters ['covariances', 'means', "
        "'precisions_cholesky'] that do not make a 2-component fit of 2 features",
    ),
    "em_result that is not the EM fit's posterior": (
        lambda t: _set_json(t, "em_result", lambda e: e["params"]["means"][0].__setitem__(0, 9.0)),
        "posterior variable 'means': differs from the EM estimate in attribute 'em_result'",
    ),
    "em_result with a text iteration count": (
        lambda t: _set_json(t, "em_result", lambda e: e.__setitem__("n_iter", "many")),
        "attribute 'em_result', 'n_iter': 'many', expected an integer >= 0",
    ),
    "em_stats that are not the EM result's": (
        lambda t: _set_var(t, "em_stats", "lower_bound", lambda v: v.__iadd__(1.0)),
        "group 'em_stats', 'lower_bound': differs from attribute 'em_result'",
    ),
    # the data
    "NaN in the data": (
        lambda t: _set_var(t, "observed_data", "x", lambda v: v.__setitem__((3, 0), np.nan)),
        "observed_data variable 'x', obs 'p3', feature 'height': nan, expected a finite number",
    ),
    "a negative sample weight": (
        _add_sample_weight,
        "observed_data variable 'sample_weight': sample_weight must be finite and "
        "non-negative; 1 entries are not, the first",
    ),
    "NaN in the log-likelihood": (
        lambda t: _set_var(t, "log_likelihood", "x", lambda v: v.__setitem__((0, 0, 5), np.nan)),
        "log_likelihood variable 'x', draw (0, 0), obs 5: nan, expected a finite number",
    ),
    "no data and no record of them": (
        _drop_data,
        "group 'observed_data': missing, and no attribute 'data_source' says where the data are",
    ),
    "warnings that are not JSON": (
        _set_attr("warnings", "oops"),
        "attribute 'warnings': not valid JSON",
    ),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_file_fails_to_load_naming_the_field(gaussian, tmp_path, edit):
    change, expected = EDITS[edit]
    message = _load_error(_edited(gaussian, tmp_path / "edited.nc", change))
    assert PREFIX + expected in message
    assert message.endswith("re-fit and save again, or restore the original file.")


def test_a_value_changed_in_the_file_itself_fails_to_load(gaussian, tmp_path):
    path = gaussian.save(tmp_path / "fit.nc")
    with h5py.File(path, "r+") as handle:  # in place, as an editor or a bad disk would
        handle["posterior"]["weights"][0, 0, 1] = np.nan
    message = _load_error(path)
    assert (
        "posterior variable 'weights', draw (0, 0), component 1: nan, expected a finite number"
        in message
    )
    with pytest.raises(LoadError, match="component 1: nan"):
        bm.GaussianMixture.load(path)  # the class's own load checks the same


def test_a_nuts_fit_loads_and_a_bad_draw_is_named(frame, tmp_path, mocked_sample):
    nuts = bm.GaussianMixture(random_state=0).fit(frame, draws=15, chains=2, progressbar=False)
    loaded = bm.load(nuts.save(tmp_path / "nuts.nc"))
    np.testing.assert_array_equal(loaded.weights_, nuts.weights_)
    np.testing.assert_array_equal(loaded.covariances_, nuts.covariances_)

    def double(values):
        values[1, 3] *= 2.0

    path = _edited(
        nuts, tmp_path / "edited.nc", lambda t: _set_var(t, "posterior", "weights", double)
    )
    assert "posterior variable 'weights', draw (1, 3): sums to 2, expected 1" in _load_error(path)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_loads_and_every_support_is_checked(em_fits, tmp_path, name):
    fit, X = em_fits(name)
    loaded = bm.load(fit.save(tmp_path / "fit.nc"))
    np.testing.assert_array_equal(loaded.weights_, fit.weights_)
    np.testing.assert_array_equal(loaded.predict_proba(X), fit.predict_proba(X))
    checked = [var for var in fit.idata["posterior"].data_vars if var in SUPPORT]
    assert "weights" in checked
    assert len(checked) >= 2  # and the family's own parameters
    for var in checked:
        tree = fit.idata.copy(deep=True)
        post = tree["posterior"].to_dataset()
        values = post[var].to_numpy().copy()
        expected = _outside(SUPPORT[var], values)
        tree["posterior"] = post.assign({var: post[var].copy(data=values)})
        message = _load_error(_save(tree, tmp_path / f"{var}.nc"))
        assert f"posterior variable {var!r}, draw (0, 0)" in message, var
        assert expected in message, (var, message)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_declares_the_supports_of_its_variables(name):
    model = FAMILIES[name](n_components=2)
    dims = model._posterior_dims(3)
    supports = model._posterior_supports()
    assert set(supports) <= set(dims)
    assert set(supports.values()) <= set(_datatree.SUPPORTS)
    assert {var: supports.get(var, "real") for var in dims} == {
        var: SUPPORT.get(var, "real") for var in dims
    }


def test_a_chunked_data_fit_and_a_stream_fit_still_load(tmp_path):
    da = pytest.importorskip("dask.array")
    X, _ = make_mixture(600, [0.4, 0.6], MEANS, COVS, random_state=4)
    chunked = bm.GaussianMixture(random_state=0).fit(da.from_array(X, chunks=(200, 2)), method="em")
    assert "observed_data" not in chunked.idata.children
    loaded = bm.load(chunked.save(tmp_path / "chunked.nc"))
    np.testing.assert_array_equal(loaded.means_, chunked.means_)
    assert loaded.idata.attrs["data_source"] == chunked.idata.attrs["data_source"]

    stream = bm.GaussianMixture(random_state=0).partial_fit(X[:300]).partial_fit(X[300:])
    np.testing.assert_array_equal(
        bm.load(stream.save(tmp_path / "stream.nc")).means_, stream.means_
    )

    def wrong_width(tree):
        _set_json(tree, "data_source", lambda s: s.__setitem__("shape", [600, 3]))

    message = _load_error(_edited(chunked, tmp_path / "edited.nc", wrong_width))
    assert "attribute 'data_source': 3 features, but the posterior has 2" in message


def test_a_weighted_fit_loads_with_its_weights(frame, tmp_path):
    w = np.resize([1.0, 2.0, 0.0], len(frame))
    fit = bm.GaussianMixture(random_state=0).fit(frame, method="em", sample_weight=w)
    loaded = bm.load(fit.save(tmp_path / "weighted.nc"))
    np.testing.assert_array_equal(loaded.idata["observed_data"]["sample_weight"], w)


# -- save: the mode, the umask, fsync --------------------------------------------------


@pytest.fixture
def process_umask():
    """Set the process umask for one test and restore it afterwards."""
    real_umask = os.umask  # tests replace os.umask with a spy
    old = real_umask(0o022)
    real_umask(old)
    yield real_umask
    real_umask(old)


def test_umask_is_read_without_being_set(process_umask, monkeypatch):
    process_umask(0o027)
    calls = []
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask))
    assert _datatree.umask() == 0o027
    assert calls == []


def test_without_proc_the_umask_is_read_once_and_only_ever_tightened(process_umask, monkeypatch):
    process_umask(0o027)
    calls = []
    real_umask = os.umask

    def spy_umask(value):
        calls.append(value)
        return real_umask(value)

    monkeypatch.setattr(_datatree, "_umask_from_proc", lambda: None)
    monkeypatch.setattr(os, "umask", spy_umask)
    assert _datatree._umask_at_import() == 0o027
    assert calls == [0o777, 0o027]  # set to the tightest mask for an instant, then restored
    calls.clear()
    assert _datatree.umask() == _datatree._UMASK_AT_IMPORT  # later reads never set it
    assert calls == []


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o277])
def test_save_never_changes_the_umask_and_writes_the_final_mode(
    gaussian, tmp_path, monkeypatch, process_umask, mask
):
    process_umask(mask)
    umask_calls, modes_while_writing = [], []
    real_umask, real_write = os.umask, xr.DataTree.to_netcdf

    def spy_umask(value):
        umask_calls.append(value)
        return real_umask(value)

    def spy_write(self, path, **kwargs):
        modes_while_writing.append(stat.S_IMODE(os.stat(path).st_mode))
        return real_write(self, path, **kwargs)

    monkeypatch.setattr(os, "umask", spy_umask)
    monkeypatch.setattr(xr.DataTree, "to_netcdf", spy_write)
    path = gaussian.save(tmp_path / "fit.nc")
    final = 0o666 & ~mask
    assert umask_calls == []  # a umask of 0, even briefly, makes other threads' files 0666
    assert stat.S_IMODE(path.stat().st_mode) == final
    # Others' permissions are final before any data are written (the owner keeps rw).
    assert modes_while_writing == [final | 0o600]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc"]


def test_save_flushes_the_file_before_the_rename_and_the_folder_after(
    gaussian, tmp_path, monkeypatch
):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def spy_fsync(fd):
        info = os.fstat(fd)
        kind = "folder" if stat.S_ISDIR(info.st_mode) else "file"
        events.append((kind, info.st_ino))
        return real_fsync(fd)

    def spy_replace(src, dst):
        events.append(("replace", Path(dst).name))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    path = gaussian.save(tmp_path / "fit.nc")
    assert events == [
        ("file", path.stat().st_ino),
        ("replace", "fit.nc"),
        ("folder", tmp_path.stat().st_ino),
    ]
    assert bm.load(path).weights_.tolist() == gaussian.weights_.tolist()
