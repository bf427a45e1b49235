"""EM on chunked data (Dask arrays and DataFrames, xarray, Zarr, Parquet) equals in-memory EM.

The oracle is the in-memory fit of the same data from the same random_state: both draw the
same starting rows (bayesmix.em.chunked.sample_indices is the in-memory Gaussian EM's
subsample), so the iterates agree to rounding. Chunks are deliberately unequal (one has a
single row).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from mixture_data import assert_same_em, binary_array, counts_array

import bayesmix as bm
from bayesmix.exceptions import DataError, NotFittedError

da = pytest.importorskip("dask.array")  # the test extra installs dask: never skipped in CI
dd = pytest.importorskip("dask.dataframe")
xr = pytest.importorskip("xarray")

RTOL = 1e-10
# Both fits run the same iterations; some stop at max_iter on purpose.
pytestmark = [
    pytest.mark.filterwarnings("ignore::bayesmix.exceptions.ConvergenceWarning"),
    # dask's Parquet reader on pandas 3.1 (not ours)
    pytest.mark.filterwarnings("ignore:The inplace keyword:Warning"),
]

CHUNKS = (37, 63, 150, 1, 149, 240, 160, 200)  # 8 unequal chunks, 1000 rows
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _gaussian(rng, n=1000):
    sizes = (3 * n // 10, n // 2, n - 3 * n // 10 - n // 2)
    return np.concatenate(
        [
            rng.normal(0.0, 1.0, (sizes[0], 2)),
            rng.normal(5.0, 1.5, (sizes[1], 2)),
            rng.normal((0.0, 6.0), 0.7, (sizes[2], 2)),
        ]
    )


def _chunked(X, chunks=CHUNKS):
    return da.from_array(X, chunks=(chunks, X.shape[1]))


def _assert_same_fit(chunked, memory, rtol=RTOL):
    assert_same_em(chunked, memory, rtol)
    for name, value in memory.posterior_arrays().items():
        np.testing.assert_allclose(chunked.posterior_arrays()[name], value, rtol=rtol, atol=rtol)


CASES = [
    *(
        (bm.GaussianMixture, {"covariance_type": ct, "objective": obj}, _gaussian)
        for ct in COVARIANCE_TYPES
        for obj in ("ml", "map")
    ),
    *((bm.StudentTMixture, {"covariance_type": ct}, _gaussian) for ct in COVARIANCE_TYPES),
    (bm.NegativeBinomialMixture, {}, counts_array),
    (bm.PoissonMixture, {"objective": "ml"}, counts_array),
    (bm.PoissonMixture, {"objective": "map"}, counts_array),
    (bm.BernoulliMixture, {"objective": "ml"}, binary_array),
    (bm.BernoulliMixture, {"objective": "map"}, binary_array),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    ("cls", "params", "make"), CASES, ids=[f"{c.__name__}-{p}" for c, p, _ in CASES]
)
def test_dask_em_equals_in_memory_em(cls, params, make, weighted):
    rng = np.random.default_rng(1)
    X = make(rng)
    w = rng.uniform(0.2, 3.0, X.shape[0]) if weighted else None
    k = 3 if cls in (bm.GaussianMixture, bm.StudentTMixture) else 2
    settings = {"n_components": k, "random_state": 0, "tol": 1e-8, "max_iter": 60, **params}
    memory = cls(**settings).fit(X, method="em", sample_weight=w)
    w_chunked = None if w is None else da.from_array(w, chunks=(CHUNKS,))
    chunked = cls(**settings).fit(_chunked(X), method="em", sample_weight=w_chunked)
    # A negative-binomial dispersion near the Poisson limit lies on a flat ridge of the
    # likelihood: the rounding of the chunked sums moves it by ~1e-10 relatively.
    _assert_same_fit(chunked, memory, rtol=1e-9 if cls is bm.NegativeBinomialMixture else RTOL)


def test_large_data_start_from_the_same_subsample():
    # Above 2**16 rows both seed k-means++ on the same 2**16 drawn rows.
    rng = np.random.default_rng(2)
    X = _gaussian(rng, n=70_000)
    settings = {"n_components": 3, "covariance_type": "diag", "random_state": 3, "max_iter": 20}
    memory = bm.GaussianMixture(**settings).fit(X, method="em")
    chunked = bm.GaussianMixture(**settings).fit(_chunked(X, 9_000), method="em")
    _assert_same_fit(chunked, memory)


def test_restarts_are_compared_on_the_full_data():
    rng = np.random.default_rng(3)
    X = _gaussian(rng)
    settings = {"n_components": 3, "random_state": 5, "n_init": 3, "max_iter": 30}
    memory = bm.GaussianMixture(**settings).fit(X, method="em")
    chunked = bm.GaussianMixture(**settings).fit(_chunked(X), method="em")
    np.testing.assert_allclose(
        chunked.em_.init_log_likelihoods, memory.em_.init_log_likelihoods, rtol=RTOL
    )
    assert chunked.em_.best_init == memory.em_.best_init


def test_result_layout_and_source_without_the_data():
    rng = np.random.default_rng(4)
    X = _gaussian(rng)
    fit = bm.GaussianMixture(n_components=3, random_state=0).fit(_chunked(X), method="em")
    assert set(fit.idata.children) == {"posterior", "em_stats"}
    assert fit.idata.attrs["inference_method"] == "em"
    source = json.loads(fit.idata.attrs["data_source"])
    assert source["kind"] == "dask.array"
    assert source["shape"] == [1000, 2]
    assert source["n_chunks"] == len(CHUNKS)
    other = bm.GaussianMixture(n_components=3, random_state=0).fit(
        _chunked(X, (500, 500)), method="em"
    )
    assert (
        json.loads(other.idata.attrs["data_source"])["chunk_layout_sha256"]
        != (source["chunk_layout_sha256"])
    )
    assert fit.idata["posterior"]["means"].dims == ("chain", "draw", "component", "feature")


def test_predictions_are_lazy_and_equal_to_in_memory():
    rng = np.random.default_rng(5)
    X = _gaussian(rng)
    w = rng.uniform(0.5, 2.0, X.shape[0])
    fit = bm.GaussianMixture(n_components=3, random_state=0).fit(X, method="em")
    Xd = _chunked(X)
    proba = fit.predict_proba(Xd)
    labels = fit.predict(Xd)
    density = fit.score_samples(Xd)
    for lazy in (proba, labels, density):
        assert isinstance(lazy, da.Array)
        assert lazy.chunks[0] == CHUNKS
    np.testing.assert_allclose(proba.compute(), fit.predict_proba(X), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(labels.compute(), fit.predict(X))
    np.testing.assert_allclose(density.compute(), fit.score_samples(X), rtol=1e-12)
    wd = da.from_array(w, chunks=(CHUNKS,))
    assert fit.score(Xd) == pytest.approx(fit.score(X), rel=1e-12)
    assert fit.score(Xd, sample_weight=wd) == pytest.approx(
        fit.score(X, sample_weight=w), rel=1e-12
    )
    assert fit.bic(Xd, wd) == pytest.approx(fit.bic(X, w), rel=1e-12)
    assert fit.aic(Xd) == pytest.approx(fit.aic(X), rel=1e-12)


def test_dataframe_xarray_zarr_and_parquet_inputs(tmp_path):
    rng = np.random.default_rng(6)
    X = _gaussian(rng, n=600)
    frame = pd.DataFrame(X, columns=["eruptions", "waiting"])
    settings = {"n_components": 3, "random_state": 0, "max_iter": 40}
    memory = bm.GaussianMixture(**settings).fit(frame, method="em")

    da.from_array(X, chunks=(70, 2)).to_zarr(str(tmp_path / "x.zarr"))
    frame.to_parquet(tmp_path / "x.parquet")
    folder = tmp_path / "parts"
    dd.from_pandas(frame, npartitions=4).to_parquet(folder)
    inputs = {
        "dask.dataframe": dd.from_pandas(frame, npartitions=7),
        "xarray": xr.DataArray(
            _chunked(X, (100, 250, 250)),
            dims=("obs", "feature"),
            coords={"feature": ["eruptions", "waiting"]},
        ),
        "zarr": str(tmp_path / "x.zarr"),
        "parquet": tmp_path / "x.parquet",
        "parquet folder": str(folder),
    }
    for name, data in inputs.items():
        fit = bm.GaussianMixture(**settings).fit(data, method="em")
        np.testing.assert_allclose(fit.means_, memory.means_, rtol=RTOL, err_msg=name)
        if name != "zarr":
            assert fit.feature_names_in_ == ["eruptions", "waiting"], name


def test_save_and_load_a_chunked_fit(tmp_path):
    rng = np.random.default_rng(7)
    X = _gaussian(rng)
    fit = bm.GaussianMixture(n_components=3, random_state=0).fit(_chunked(X), method="em")
    loaded = bm.load(fit.save(tmp_path / "fit.nc"))
    np.testing.assert_array_equal(loaded.means_, fit.means_)
    assert loaded.idata.attrs["data_source"] == fit.idata.attrs["data_source"]
    np.testing.assert_array_equal(loaded.predict(X), fit.predict(X))


# -- bad input ---------------------------------------------------------------------------


def test_nan_in_a_late_chunk_names_the_chunk_and_leaves_the_model_unfitted():
    rng = np.random.default_rng(8)
    X = _gaussian(rng, n=70_000)  # more rows than the starting sample: found by a pass
    X[69_990, 1] = np.nan
    model = bm.GaussianMixture(n_components=3, random_state=0)
    with pytest.raises(
        DataError, match=r"chunk 7 \(rows 63000-69999\).*row 69990.*missing='model'"
    ):
        model.fit(_chunked(X, 9_000), method="em")
    with pytest.raises(NotFittedError):
        _ = model.weights_


def test_a_failed_fit_keeps_the_previous_result():
    rng = np.random.default_rng(9)
    X = _gaussian(rng)
    model = bm.GaussianMixture(n_components=3, random_state=0).fit(X, method="em")
    before = model.means_.copy()
    bad = X.copy()
    bad[-1, 0] = np.inf
    with pytest.raises(DataError, match="chunk 7"):
        model.fit(_chunked(bad), method="em")
    np.testing.assert_array_equal(model.means_, before)


def test_count_check_runs_on_every_chunk():
    rng = np.random.default_rng(10)
    X = counts_array(rng, n=70_000)
    X[69_000, 0] = 2.5
    with pytest.raises(DataError, match=r"chunk 7 .*non-negative integer"):
        bm.PoissonMixture(n_components=2, random_state=0).fit(_chunked(X, 9_000), method="em")


def test_unknown_chunk_sizes():
    X = _chunked(_gaussian(np.random.default_rng(11)))
    unknown = X[X[:, 0] > 0]  # boolean indexing: chunk sizes NaN
    with pytest.raises(DataError, match="compute_chunk_sizes"):
        bm.GaussianMixture(n_components=2).fit(unknown, method="em")


def test_non_numeric_column():
    frame = pd.DataFrame({"x": np.arange(10.0), "name": list("abcdefghij")})
    with pytest.raises(DataError, match="column 'name'"):
        bm.GaussianMixture(n_components=2).fit(dd.from_pandas(frame, npartitions=2), method="em")


def test_parquet_file_with_a_missing_column_is_named(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(12)
    pd.DataFrame(rng.normal(size=(20, 2)), columns=["a", "b"]).to_parquet(folder / "part0.parquet")
    pd.DataFrame(rng.normal(size=(20, 1)), columns=["a"]).to_parquet(folder / "part1.parquet")
    with pytest.raises(DataError, match=r"part1\.parquet.*missing columns \['b'\]"):
        bm.GaussianMixture(n_components=2).fit(str(folder), method="em")


def test_weights_must_align_and_be_valid():
    rng = np.random.default_rng(13)
    X = _chunked(_gaussian(rng))
    with pytest.raises(DataError, match=r"shape \(1000,\)"):
        bm.GaussianMixture(n_components=2).fit(X, method="em", sample_weight=np.ones(999))
    w = np.ones(1000)
    w[500] = -1.0
    with pytest.raises(DataError, match="row 500"):
        bm.GaussianMixture(n_components=2).fit(X, method="em", sample_weight=w)


def test_laplace_on_dask_stores_no_data_and_says_where_they_are():
    X = _chunked(counts_array(np.random.default_rng(15)))
    fit = bm.PoissonMixture(n_components=2, random_state=0).fit(X, method="laplace", draws=500)
    assert fit.idata.attrs["inference_method"] == "laplace"
    assert "observed_data" not in fit.idata.children
    assert json.loads(fit.idata.attrs["data_source"])["kind"] == "dask.array"
    assert fit.idata["posterior"]["rates"].shape == (1, 500, 2, 2)
    # 1000 rows of two separated count clusters: the posterior means are near EM's.
    em = bm.PoissonMixture(n_components=2, random_state=0).fit(X, method="em")
    np.testing.assert_allclose(fit.rates_, em.rates_, rtol=0.05)


# -- Laplace + PSIS on chunked data (issue 23) -------------------------------------------

LAPLACE_CASES = [
    (bm.GaussianMixture, {"covariance_type": "full"}, _gaussian),
    (bm.StudentTMixture, {"covariance_type": "diag"}, _gaussian),
    (bm.NegativeBinomialMixture, {}, counts_array),
    (bm.PoissonMixture, {}, counts_array),
    (bm.BernoulliMixture, {}, binary_array),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    ("cls", "params", "make"),
    LAPLACE_CASES,
    ids=[c.__name__ for c, _, _ in LAPLACE_CASES],
)
def test_laplace_from_the_same_mode_is_the_same_on_dask_and_in_memory(cls, params, make, weighted):
    """One batched pass over 8 unequal chunks gives the in-memory log densities (1e-10), so
    the draws, their PSIS weights and the resampled posterior from one mode are equal."""
    from bayesmix import laplace
    from bayesmix.dask import as_chunked
    from bayesmix.em.chunked import in_memory_pass

    rng = np.random.default_rng(2)
    X = make(rng)
    w = rng.uniform(0.2, 3.0, X.shape[0]) if weighted else None
    model_ = cls(n_components=2, random_state=0, **params)
    data, priors = model_._prepare(X, w)
    em = model_._run_em(data, np.random.default_rng(0), priors)
    model = model_._model(data, priors)
    start = model_._free_start(em, data.n_features, model, None)
    names = list(model_._posterior_dims(data.n_features))
    chunked = as_chunked(_chunked(X), None if w is None else da.from_array(w, chunks=(CHUNKS,)))
    in_memory = in_memory_pass(data.values, data.sample_weight)
    targets = [
        laplace.pymc_target(model, start, names, model_._batch_log_likelihood(data_pass))
        for data_pass in (in_memory, chunked.data_pass)
    ]
    # Any point with a positive definite curvature will do: one Newton pass from EM.
    mode, at_mode, hessian, report = laplace.newton_mode(
        targets[0].batch_log_density, targets[0].start, max_passes=1
    )
    results = [
        laplace.correct(
            mode,
            at_mode,
            hessian,
            target.batch_log_density,
            draws=300,
            rng=np.random.default_rng(3),
            report=dict(report),
        )
        for target in targets
    ]
    np.testing.assert_allclose(results[1].log_density, results[0].log_density, rtol=1e-10)
    np.testing.assert_allclose(results[1].log_weights, results[0].log_weights, atol=1e-8)
    np.testing.assert_array_equal(results[1].resampled, results[0].resampled)
    assert results[1].khat == pytest.approx(results[0].khat, abs=1e-8)


@pytest.mark.slow  # 20,000 rows, 4000 draws, two fits each: ~70 s
@pytest.mark.parametrize(
    ("cls", "make"),
    [(bm.GaussianMixture, _gaussian), (bm.PoissonMixture, counts_array)],
    ids=["gaussian", "poisson"],
)
def test_laplace_on_dask_agrees_with_laplace_in_memory(cls, make):
    """Newton from log densities (Dask) and L-BFGS with gradients (in memory) find the same
    posterior: means within 0.1 posterior sd, sds within 5%; the fit stores no data."""
    X = make(np.random.default_rng(3), n=20_000)
    settings = {"n_components": 3 if cls is bm.GaussianMixture else 2, "random_state": 0}
    memory = cls(**settings).fit(X, method="laplace")
    chunked = cls(**settings).fit(da.from_array(X, chunks=(5000, X.shape[1])), method="laplace")
    a, b = memory.summary(), chunked.summary()
    assert ((a["mean"] - b["mean"]).abs() / a["sd"]).max() < 0.1
    assert (b["sd"] / a["sd"]).between(0.95, 1.05).all()
    assert chunked.idata.attrs["laplace_khat"] < 0.5
    assert chunked.idata.attrs["inference_method"] == "laplace"
    assert "observed_data" not in chunked.idata.children
    assert json.loads(chunked.idata.attrs["data_source"])["kind"] == "dask.array"
    optimizer = json.loads(chunked.idata.attrs["laplace_optimizer"])
    assert optimizer["converged"]
    assert optimizer["n_iter"] <= 4  # passes of the Newton steps from the EM estimate


def test_predicting_chunked_data_with_other_features():
    rng = np.random.default_rng(16)
    fit = bm.GaussianMixture(n_components=2, random_state=0).fit(_gaussian(rng), method="em")
    with pytest.raises(DataError, match="3 features"):
        fit.predict(da.ones((10, 3), chunks=5))


def test_without_the_extra_the_error_names_it(monkeypatch, tmp_path):
    from bayesmix import dask as bm_dask

    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"bayesmix\[dask\]"):
        bm_dask.as_chunked(tmp_path / "x.zarr")


# -- schedulers ----------------------------------------------------------------------------


@pytest.mark.slow  # starts worker processes (~10 s)
def test_processes_scheduler():
    dask = pytest.importorskip("dask")
    rng = np.random.default_rng(17)
    X = _gaussian(rng)
    settings = {"n_components": 3, "random_state": 0, "max_iter": 30}
    memory = bm.GaussianMixture(**settings).fit(X, method="em")
    with dask.config.set(scheduler="processes", num_workers=2):
        chunked = bm.GaussianMixture(**settings).fit(_chunked(X), method="em")
    _assert_same_fit(chunked, memory)


@pytest.mark.parametrize(
    ("cls", "params", "make"),
    [
        (bm.GaussianMixture, {"covariance_type": "full"}, _gaussian),
        # The other families on a cluster in the slow suite (a fast-suite budget).
        pytest.param(bm.PoissonMixture, {"objective": "map"}, counts_array, marks=pytest.mark.slow),
        pytest.param(bm.BernoulliMixture, {}, binary_array, marks=pytest.mark.slow),
        pytest.param(bm.NegativeBinomialMixture, {}, counts_array, marks=pytest.mark.slow),
    ],
    ids=["gaussian", "poisson-map", "bernoulli", "negative-binomial"],
)
def test_local_cluster_equals_in_memory(cluster_client, cls, params, make):
    rng = np.random.default_rng(18)
    X = make(rng)
    w = rng.uniform(0.5, 2.0, X.shape[0])
    # One k-means++ start: emEM's 40 short runs are a pass each on the cluster, and the
    # equality of the passes is the point here (emEM on chunked data is tested above).
    settings = {"n_components": 2, "random_state": 0, "max_iter": 30, **params}
    settings |= {"init": "k-means++", "n_init": 1}
    memory = cls(**settings).fit(X, method="em", sample_weight=w)
    chunked = cls(**settings).fit(
        _chunked(X), method="em", sample_weight=da.from_array(w, chunks=(CHUNKS,))
    )
    # A negative-binomial dispersion is the root of a flat profile likelihood: the
    # rounding of the histogram totals (summed in another order) moves it by ~1e-10.
    _assert_same_fit(chunked, memory, 1e-8 if cls is bm.NegativeBinomialMixture else RTOL)
    labels = chunked.predict(_chunked(X)).compute()
    np.testing.assert_array_equal(labels, memory.predict(X))


def test_local_cluster_with_missing_values_equals_in_memory(cluster_client):
    # missing="model" (issue 20): the chunk checks and the statistics that integrate the
    # missing values out, pickled to two worker processes (this module's cluster).
    rng = np.random.default_rng(19)
    X = _gaussian(rng, n=300)
    mask = rng.random(X.shape) < 0.15
    mask[mask.all(axis=1), 0] = False
    mask[100:200] = False  # chunks 1-2 without missing values
    X[mask] = np.nan
    w = rng.uniform(0.5, 2.0, X.shape[0])
    chunks = (80, 20, 100, 100)
    settings = {"n_components": 3, "random_state": 0, "max_iter": 25, "missing": "model"}
    settings |= {"init": "k-means++", "n_init": 1}
    memory = bm.GaussianMixture(**settings).fit(X, method="em", sample_weight=w)
    chunked = bm.GaussianMixture(**settings).fit(
        _chunked(X, chunks), method="em", sample_weight=da.from_array(w, chunks=(chunks,))
    )
    _assert_same_fit(chunked, memory)
    labels = chunked.predict(_chunked(X, chunks)).compute()
    np.testing.assert_array_equal(labels, memory.predict(X))
