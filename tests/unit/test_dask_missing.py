"""Missing values (NaN) in chunked data: EM with missing="model" on Dask (issue 20).

The oracle is the in-memory ``missing="model"`` EM fit of the same data from the same
random_state: both run the families' EM statistics (which integrate the missing values
out) from the same start, so they agree to rounding. The patterns of missing values are
spread over the chunks, one chunk has none and one chunk is a single row.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from mixture_data import assert_same_em, binary_array, counts_array

import bayesmix as bm
from bayesmix.exceptions import DataError, InvalidParameterError

da = pytest.importorskip("dask.array")  # the test extra installs dask: never skipped in CI

pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.exceptions.ConvergenceWarning")

RTOL = 1e-10
CHUNKS = (80, 1, 120, 99)  # 300 rows; chunk 2 (rows 81-200) has no missing value
COMPLETE_CHUNK = slice(81, 201)
# One k-means++ start and a few iterations: the equality of the passes is the point.
FAST = {"init": "k-means++", "n_init": 1, "max_iter": 25, "tol": 1e-8, "random_state": 0}


def _gaussian(rng: np.random.Generator, n: int = 300) -> np.ndarray:
    sizes = (n // 3, n // 3, n - 2 * (n // 3))
    return np.concatenate(
        [
            rng.normal(0.0, 1.0, (sizes[0], 2)),
            rng.normal(5.0, 1.5, (sizes[1], 2)),
            rng.normal((0.0, 6.0), 0.7, (sizes[2], 2)),
        ]
    )[rng.permutation(n)]


def _with_holes(X: np.ndarray, rng: np.random.Generator, rate: float = 0.15) -> np.ndarray:
    """``X`` with ``rate`` of its entries NaN, none in chunk 2 and no row left empty."""
    X = X.copy()
    mask = rng.random(X.shape) < rate
    mask[mask.all(axis=1), 0] = False
    mask[COMPLETE_CHUNK] = False
    X[mask] = np.nan
    return X


def _chunked(X: np.ndarray) -> da.Array:
    return da.from_array(X, chunks=(CHUNKS, X.shape[1]))


def _assert_same_fit(chunked, memory, rtol=RTOL):
    assert_same_em(chunked, memory, rtol)


CASES = [
    (bm.GaussianMixture, {"covariance_type": "full"}, _gaussian),
    (bm.GaussianMixture, {"covariance_type": "tied", "objective": "map"}, _gaussian),
    (bm.GaussianMixture, {"covariance_type": "diag"}, _gaussian),
    (bm.GaussianMixture, {"covariance_type": "spherical", "objective": "map"}, _gaussian),
    (bm.GaussianMixture, {"covariance_type": "VEV"}, _gaussian),  # mclust's models
    (bm.GaussianMixture, {"covariance_type": "EEI", "objective": "map"}, _gaussian),
    (bm.StudentTMixture, {"covariance_type": "full"}, _gaussian),
    (bm.StudentTMixture, {"covariance_type": "diag"}, _gaussian),
    (bm.PoissonMixture, {"objective": "ml"}, counts_array),
    (bm.PoissonMixture, {"objective": "map"}, counts_array),
    (bm.BernoulliMixture, {"objective": "ml"}, binary_array),
    (bm.BernoulliMixture, {"objective": "map"}, binary_array),
    (bm.NegativeBinomialMixture, {}, counts_array),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    ("cls", "params", "make"), CASES, ids=[f"{c.__name__}-{p}" for c, p, _ in CASES]
)
def test_dask_em_with_missing_values_equals_in_memory_em(cls, params, make, weighted):
    rng = np.random.default_rng(1)
    X = _with_holes(make(rng, n=300), rng)
    starts = np.cumsum((0, *CHUNKS))
    patterns = [{tuple(row) for row in np.isnan(X[a:b])} for a, b in itertools.pairwise(starts)]
    assert patterns[2] == {(False,) * X.shape[1]}  # the chunk without missing values
    assert len(patterns[0]) > 2  # several patterns in a chunk
    assert len(patterns[3]) > 2
    w = rng.uniform(0.2, 3.0, X.shape[0]) if weighted else None
    k = 3 if cls in (bm.GaussianMixture, bm.StudentTMixture) else 2
    settings = {"n_components": k, "missing": "model", **FAST, **params}
    memory = cls(**settings).fit(X, method="em", sample_weight=w)
    w_chunked = None if w is None else da.from_array(w, chunks=(CHUNKS,))
    chunked = cls(**settings).fit(_chunked(X), method="em", sample_weight=w_chunked)
    # A negative-binomial dispersion lies on a flat ridge of the likelihood: the rounding
    # of the chunked histogram sums moves it by ~1e-11 relatively (as without NaN).
    _assert_same_fit(chunked, memory, rtol=1e-9 if cls is bm.NegativeBinomialMixture else RTOL)
    assert np.isfinite(chunked.em_.log_likelihood)


def test_warm_start_on_dask_with_missing_values_equals_the_in_memory_warm_start():
    rng = np.random.default_rng(2)
    X = _with_holes(_gaussian(rng), rng)
    settings = {"n_components": 3, "missing": "model", **FAST, "max_iter": 5}
    memory = bm.GaussianMixture(**settings).fit(X, method="em")
    chunked = bm.GaussianMixture(**settings).fit(X, method="em")
    memory.fit(X, method="em", warm_start=True)
    chunked.fit(_chunked(X), method="em", warm_start=True)
    _assert_same_fit(chunked, memory)


# -- errors --------------------------------------------------------------------------------


def test_without_missing_model_nan_in_a_chunk_names_the_option():
    rng = np.random.default_rng(3)
    X = _with_holes(_gaussian(rng), rng)
    with pytest.raises(DataError, match=r"chunk 0 \(rows 0-79\).*missing='model'"):
        bm.GaussianMixture(n_components=3, **FAST).fit(_chunked(X), method="em")


@pytest.mark.parametrize("missing", ["raise", "model"])
def test_infinite_values_stay_an_error(missing):
    X = _gaussian(np.random.default_rng(4))
    X[250, 1] = np.inf
    with pytest.raises(DataError, match=r"row 250, column 'x1'"):
        bm.GaussianMixture(n_components=3, missing=missing, **FAST).fit(_chunked(X), method="em")


def test_a_row_with_every_value_missing_names_its_chunk_and_row():
    X = counts_array(np.random.default_rng(5), n=300)
    X[250] = np.nan
    with pytest.raises(
        DataError,
        match=r"1 row\(s\) with every value missing \(first at chunk 3 \(rows 201-299\), "
        r"row 250\); a row must have at least one observed value",
    ):
        bm.PoissonMixture(n_components=2, missing="model").fit(_chunked(X), method="em")


def test_every_pass_checks_the_rows_of_its_chunks():
    # Data beyond the starting sample are checked by the passes: the same message, with
    # the chunk and the row.
    from bayesmix.dask import as_chunked

    X = _gaussian(np.random.default_rng(6))
    X[:, 0] = np.where(np.arange(300) % 7 == 0, np.nan, X[:, 0])
    X[290] = np.nan
    data = as_chunked(_chunked(X), allow_missing=True)
    with pytest.raises(
        DataError,
        match=r"chunk 3 \(rows 201-299\) of X has 1 row\(s\) with every value missing "
        r"\(first at row 290\)",
    ):
        data.data_pass(lambda X, w: {"n": X.shape[0]})
    X[290] = 1.0
    total = as_chunked(_chunked(X), allow_missing=True).data_pass(lambda X, w: {"n": X.shape[0]})
    assert total["n"] == 300


def test_a_column_with_no_observed_value_is_refused():
    X = _gaussian(np.random.default_rng(7))
    X[:, 1] = np.nan
    with pytest.raises(DataError, match=r"columns \['x1'\] have every value missing"):
        bm.GaussianMixture(n_components=2, missing="model").fit(_chunked(X), method="em")


def test_nuts_on_dask_with_missing_model_is_refused_before_any_work(monkeypatch):
    from bayesmix import dask as bm_dask

    def no_work(*args, **kwargs):
        raise AssertionError("the data were read before the refusal")

    monkeypatch.setattr(bm_dask, "as_chunked", no_work)
    monkeypatch.setattr(bm.GaussianMixture, "_chunked_em", no_work)
    X = _chunked(_gaussian(np.random.default_rng(8)))
    model = bm.GaussianMixture(n_components=2, missing="model")
    with pytest.raises(InvalidParameterError, match=r"needs complete rows.*method='em'"):
        model.fit(X, method="nuts")


# -- after EM: predictions, scores, Laplace -------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "make"),
    [(bm.GaussianMixture, _gaussian), (bm.PoissonMixture, counts_array)],
    ids=["gaussian", "poisson"],
)
def test_predictions_on_dask_with_missing_values_equal_in_memory(cls, make):
    rng = np.random.default_rng(9)
    X = _with_holes(make(rng, n=300), rng)
    w = rng.uniform(0.5, 2.0, X.shape[0])
    fit = cls(n_components=2, missing="model", **FAST).fit(X, method="em")
    Xd, wd = _chunked(X), da.from_array(w, chunks=(CHUNKS,))
    proba = fit.predict_proba(Xd)
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(proba.compute(), fit.predict_proba(X), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(fit.predict(Xd).compute(), fit.predict(X))
    np.testing.assert_allclose(fit.score_samples(Xd).compute(), fit.score_samples(X), rtol=1e-12)
    assert fit.score(Xd, sample_weight=wd) == pytest.approx(
        fit.score(X, sample_weight=w), rel=1e-12
    )
    assert fit.bic(Xd) == pytest.approx(fit.bic(X), rel=1e-12)
    empty = X.copy()
    empty[150] = np.nan
    with pytest.raises(DataError, match=r"chunk 2 \(rows 81-200\).*row 150"):
        fit.predict_proba(_chunked(empty)).compute()


def test_a_fit_without_missing_model_refuses_nan_in_dask_predictions():
    rng = np.random.default_rng(10)
    X = _gaussian(rng)
    fit = bm.GaussianMixture(n_components=2, **FAST).fit(X, method="em")
    # Blocks run in parallel threads: the first to fail names its chunk.
    with pytest.raises(DataError, match=r"chunk [03] \(rows \d+-\d+\) of X .*missing='model'"):
        fit.predict(_chunked(_with_holes(X, rng))).compute()


def test_laplace_log_densities_on_dask_with_missing_values_equal_in_memory():
    """The only data pass of Laplace on chunked data: the batched log-likelihood of many
    points, which integrates the missing values out chunk by chunk."""
    from bayesmix.dask import as_chunked
    from bayesmix.em.chunked import in_memory_pass

    rng = np.random.default_rng(11)
    X = _with_holes(_gaussian(rng), rng)
    w = rng.uniform(0.5, 2.0, X.shape[0])
    fit = bm.GaussianMixture(n_components=3, missing="model", **FAST).fit(
        X, method="em", sample_weight=w
    )
    point = {name: value[0] for name, value in fit.posterior_arrays().items()}
    moved = {**point, "means": point["means"] + 0.1}
    chunked = as_chunked(_chunked(X), da.from_array(w, chunks=(CHUNKS,)), allow_missing=True)
    values = [
        fit._batch_log_likelihood(data_pass)([point, moved])
        for data_pass in (in_memory_pass(X, w), chunked.data_pass)
    ]
    assert np.all(np.isfinite(values[0]))
    np.testing.assert_allclose(values[1], values[0], rtol=1e-12)
