"""Bad input fails in ``fit`` before any model is built or sampled, with a specific error.

One parametrised case per row of the table of bad inputs; each case checks the exception
class and that the message names what was received. Nothing the user passed is modified.
"""

import copy

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import sparse

import bayesmix as bm
from bayesmix.datasets import make_mixture
from bayesmix.exceptions import (
    DataError,
    DataTypeError,
    InvalidParameterError,
    NotFittedError,
    PriorError,
)

MEANS = np.array([[0.0, 0.0], [6.0, 0.0]])
COVS = np.stack([np.eye(2), [[1.0, 0.5], [0.5, 1.0]]])


def _X(n=60, seed=0):
    X, _ = make_mixture(n, [0.5, 0.5], MEANS, COVS, random_state=seed)
    return X


def _objects():
    X = _X().astype(object)
    X[0, 0] = {"foo": "bar"}
    return X


def _with(value, index, X=None):
    X = _X() if X is None else X.copy()
    X[index] = value
    return X


GM = bm.GaussianMixture

# (id, model, X, fit kwargs, exception, fragment of the message)
BAD_INPUTS = [
    ("nan", GM(), _with(np.nan, (3, 1)), {}, DataError, "NaN or infinite values in 1 row"),
    ("inf", GM(), _with(np.inf, (5, 0)), {}, DataError, "first at position 5"),
    ("0-d array", GM(), np.array(3.0), {}, DataError, "got an array with 0 dimensions"),
    ("3-d array", GM(), np.zeros((4, 3, 2)), {}, DataError, "got an array with 3 dimensions"),
    ("empty", GM(), np.zeros((0, 2)), {}, DataError, "0 sample(s) (shape=(0, 2))"),
    ("no columns", GM(), np.zeros((12, 0)), {}, DataError, "0 feature(s) (shape=(12, 0))"),
    # Type errors are DataTypeError: a DataError that is also a TypeError, as NumPy's and
    # scikit-learn's are (sparse input, complex numbers, objects that are not numbers).
    ("complex", GM(), _X() + 1j, {}, DataTypeError, "Complex data not supported"),
    ("sparse", GM(), sparse.csr_array(_X()), {}, DataTypeError, "sparse data are not supported"),
    ("object", GM(), _objects(), {}, DataTypeError, "float() argument must be"),
    ("empty list", GM(), [], {}, DataError, "X is empty"),
    ("fewer samples than K", GM(n_components=4), _X()[:3], {}, DataError, "3 samples but"),
    (
        "too few for full covariances",
        GM(n_components=3),
        _X()[:8],
        {},
        DataError,
        "needs at least 9",
    ),
    ("n_components=0", GM(n_components=0), _X(), {}, InvalidParameterError, "got 0 (int)"),
    ("n_components=2.5", GM(n_components=2.5), _X(), {}, InvalidParameterError, "got 2.5"),
    ("n_components='3'", GM(n_components="3"), _X(), {}, InvalidParameterError, "got '3'"),
    ("n_components=True", GM(n_components=True), _X(), {}, InvalidParameterError, "got True"),
    ("n_init=0", GM(n_init=0), _X(), {}, InvalidParameterError, "n_init must be"),
    ("tol<0", GM(tol=-1.0), _X(), {}, InvalidParameterError, "tol must be a finite"),
    ("reg_covar=nan", GM(reg_covar=np.nan), _X(), {}, InvalidParameterError, "reg_covar"),
    (
        "random_state generator",
        GM(random_state=np.random.default_rng(0)),
        _X(),
        {},
        InvalidParameterError,
        "random_state must be None or a non-negative int",
    ),
    (
        "constant column",
        GM(),
        np.column_stack([_X()[:, 0], np.full(60, 2.0)]),
        {},
        DataError,
        "columns ['x1'] are constant",
    ),
    (
        "string column",
        GM(),
        pd.DataFrame({"a": _X()[:, 0], "name": ["u"] * 60}),
        {},
        DataError,
        "columns ['name'] are not numeric",
    ),
    # Found by the fuzzer (issue 24): repeated names were "not numeric" columns, and
    # names equal as strings gave a fit with two features of one name.
    (
        "repeated column names",
        GM(),
        pd.DataFrame(_X(), columns=["a", "a"]),
        {},
        DataError,
        "['a'] occur more than once",
    ),
    (
        "column names equal as strings",
        GM(),
        pd.DataFrame(_X(), columns=[1, "1"]),
        {},
        DataError,
        "['1'] occur more than once (as strings)",
    ),
    (
        "categorical column",
        GM(),
        pd.DataFrame({"a": _X()[:, 0], "c": pd.Categorical(["u", "v"] * 30)}),
        {},
        DataError,
        "columns ['c'] are not numeric",
    ),
    (
        "unknown covariance_type",
        GM(covariance_type="fulll"),
        _X(),
        {},
        InvalidParameterError,
        "got 'fulll'. Did you mean 'full'?",
    ),
    (
        "unknown objective",
        GM(objective="mle"),
        _X(),
        {},
        InvalidParameterError,
        "objective must be one of ['ml', 'map']; got 'mle'",
    ),
    ("unknown method", GM(), _X(), {"method": "mcmc"}, InvalidParameterError, "got 'mcmc'"),
    ("draws=0", GM(), _X(), {"draws": 0}, InvalidParameterError, "draws must be"),
    ("tune=-5", GM(), _X(), {"tune": -5}, InvalidParameterError, "tune must be"),
    ("chains=0", GM(), _X(), {"chains": 0}, InvalidParameterError, "chains must be"),
    (
        "target_accept=1",
        GM(),
        _X(),
        {"target_accept": 1.0},
        InvalidParameterError,
        "target_accept must be a number in (0, 1); got 1.0",
    ),
    ("random_seed<0", GM(), _X(), {"random_seed": -1}, InvalidParameterError, "got -1"),
    (
        "unknown sampler",
        GM(),
        _X(),
        {"nuts_sampler": "stan"},
        InvalidParameterError,
        "nuts_sampler must be one of",
    ),
    (
        "unknown prior name",
        GM(priors={"mean": bm.Prior("Normal", mu=0, sigma=1)}),
        _X(),
        {},
        PriorError,
        "did you mean 'means'",
    ),
    (
        "unknown distribution",
        GM(priors={"weights": bm.Prior("Beta", alpha=1, beta=1)}),
        _X(),
        {},
        PriorError,
        "'Beta'",
    ),
    (
        "invalid prior parameter",
        GM(priors={"weights": bm.Prior("Dirichlet", a=-1.0)}),
        _X(),
        {},
        PriorError,
        "'a' must be > 0",
    ),
    # Issue 24, item 3: a prior parameter whose shape does not fit K or D failed with a
    # NumPy broadcast error from deep inside the model (or was silently ignored by EM).
    (
        "prior means of the wrong shape",
        GM(priors={"means": bm.Prior("Normal", mu=[0.0, 0.0, 0.0], sigma=1.0)}),
        _X(),
        {},
        PriorError,
        "'means': parameter 'mu' has shape (3,), which does not broadcast to the "
        "variable's shape (2, 2) (component, feature)",
    ),
    (
        "prior weights of the wrong shape",
        GM(n_components=2, priors={"weights": bm.Prior("Dirichlet", a=[1.0, 1.0, 1.0])}),
        _X(),
        {"method": "em"},
        PriorError,
        "'weights': parameter 'a' has shape (3,), which does not broadcast to the "
        "variable's shape (2,) (component)",
    ),
    (
        "prior sigma of the wrong shape",
        GM(priors={"sigma": bm.Prior("HalfNormal", sigma=np.ones((3, 1)))}),
        _X(),
        {},
        PriorError,
        "'sigma': parameter 'sigma' has shape (3, 1)",
    ),
    # Found by the fuzzer: a prior PyMC cannot build passed an EM fit and failed in
    # build_model with PyMC's TypeError.
    (
        "prior without a required parameter",
        GM(priors={"sigma": bm.Prior("HalfStudentT", sigma=1.0)}),
        _X(),
        {"method": "em"},
        PriorError,
        "PyMC cannot build HalfStudentT from sigma: HalfStudentT.dist() missing 1 required "
        "positional argument: 'nu'",
    ),
    (
        "prior of an incomplete parametrisation",
        GM(priors={"sigma": bm.Prior("Gamma", alpha=2.0)}),
        _X(),
        {"method": "em"},
        PriorError,
        "PyMC cannot build Gamma from alpha: Incompatible parameterization",
    ),
    (
        "priors not a dict",
        GM(priors=[bm.Prior("Dirichlet", a=1.0)]),
        _X(),
        {},
        InvalidParameterError,
        "priors must be None or a dict",
    ),
    (
        "progressbar not a bool",
        GM(),
        _X(),
        {"progressbar": "yes"},
        InvalidParameterError,
        "progressbar must be True or False; got 'yes'",
    ),
]


@pytest.fixture
def nothing_runs(monkeypatch):
    """Make building, EM and sampling fail loudly: validation must come first."""

    def reached(*args, **kwargs):
        raise AssertionError("validation should have failed before this point")

    monkeypatch.setattr(bm.GaussianMixture, "_build", reached)
    monkeypatch.setattr(bm.GaussianMixture, "_run_em", reached)
    monkeypatch.setattr(pm, "sample", reached)


@pytest.mark.parametrize(
    ("model", "X", "kwargs", "error", "fragment"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_fails_before_any_work(model, X, kwargs, error, fragment, nothing_runs):
    with pytest.raises(error) as info:
        model.fit(X, **kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, bm.exceptions.BayesmixError)


def test_all_bad_prior_keys_are_reported_at_once(nothing_runs):
    priors = {
        "mean": bm.Prior("Normal", mu=0.0, sigma=1.0),
        "sigma": bm.Prior("Normal", mu=0.0, sigma=1.0),
        "weights": bm.Prior("Dirichlet", a=-1.0),
    }
    with pytest.raises(PriorError) as info:
        GM(priors=priors).fit(_X())
    text = str(info.value)
    for fragment in ("'mean'", "did you mean 'means'", "'sigma'", "'a' must be > 0"):
        assert fragment in text


def test_predict_with_other_features_fails():
    gm = GM(random_state=0).fit(_X(), method="em")
    for call in (gm.predict, gm.predict_proba, gm.score_samples, gm.bic, gm.aic):
        with pytest.raises(
            DataError, match="X has 3 features, but GaussianMixture is expecting 2 features"
        ):
            call(np.zeros((4, 3)))


@pytest.mark.parametrize(
    "accessor",
    [
        lambda gm: gm.weights_,
        lambda gm: gm.means_,
        lambda gm: gm.covariances_,
        lambda gm: gm.em_,
        lambda gm: gm.priors_,
        lambda gm: gm.idata,
        lambda gm: gm.n_features_in_,
        lambda gm: gm.summary(),
        lambda gm: gm.predict(np.zeros((3, 2))),
        lambda gm: gm.predict_proba(np.zeros((3, 2))),
        lambda gm: gm.score_samples(np.zeros((3, 2))),
        lambda gm: gm.bic(np.zeros((3, 2))),
        lambda gm: gm.aic(np.zeros((3, 2))),
        lambda gm: gm.save("never-written.nc"),
    ],
)
def test_unfitted_accessors_say_call_fit_first(accessor):
    gm = GM()
    with pytest.raises(NotFittedError, match=r"call fit\(X\) first"):
        accessor(gm)
    assert not hasattr(gm, "weights_")  # NotFittedError is an AttributeError


def test_other_missing_attributes_are_plain_attribute_errors():
    with pytest.raises(AttributeError) as info:
        _ = GM().no_such_thing
    assert not isinstance(info.value, NotFittedError)


@pytest.mark.parametrize("method", ["em", "nuts"])
def test_nothing_the_user_passed_is_modified(method, mocked_sample):
    X = _X(80)
    df = pd.DataFrame(X, columns=["a", "b"], index=[f"r{i}" for i in range(80)])
    priors = {"means": bm.Prior("Normal", mu=[0.0, 1.0], sigma=10.0)}
    before = (X.copy(), df.copy(deep=True), copy.deepcopy(priors))
    gm = GM(priors=priors, random_state=0)
    fit_kwargs = {"draws": 10, "tune": 10, "chains": 2, "progressbar": False}
    kwargs = fit_kwargs if method == "nuts" else {}
    for data in (X, df):
        with pytest.warns() if method == "nuts" else _no_warning_check():
            gm.fit(data, method=method, **kwargs)
        gm.predict_proba(data)
        gm.score_samples(data)
        gm.bic(data)
    np.testing.assert_array_equal(X, before[0])
    assert X.flags.writeable
    pd.testing.assert_frame_equal(df, before[1])
    assert priors == before[2]
    assert gm.priors is priors  # the constructor keeps the object, sklearn-style


class _no_warning_check:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# Issue 21, item 5: identifiers and labels are not features. A column that is a function
# of the row number, or that takes K consecutive integer values for K = n_components, is
# named in a DataWarning.


def _frame_with(**columns):
    X = _X(n=60)
    return pd.DataFrame(X, columns=["a", "b"]).assign(**columns)


@pytest.mark.parametrize(
    ("extra", "name", "fragment"),
    [
        ({"id": np.arange(60)}, "id", "row number"),
        ({"row": np.arange(1, 61)}, "row", "row number"),
        ({"year": np.arange(1900, 1960)}, "year", "row number"),
        ({"t": np.linspace(0.0, 1.0, 60)}, "t", "row number"),
        ({"countdown": np.arange(60)[::-1] * 0.5}, "countdown", "row number"),
        ({"z": np.arange(60) % 2}, "z", "labels"),  # 0/1 labels, K = 2
        ({"cls": np.repeat([1, 2], 30).astype(float)}, "cls", "labels"),  # 1..K, as floats
    ],
)
def test_identifier_and_label_columns_are_named(extra, name, fragment):
    from bayesmix._validation import suspicious_columns

    X = _frame_with(**extra)
    messages = suspicious_columns(X.to_numpy(dtype=float), list(X.columns), [2])
    assert len(messages) == 1
    assert repr(name) in messages[0]
    assert fragment in messages[0]
    with pytest.warns(bm.DataWarning, match=rf"'{name}'.*{fragment}"):
        bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em")


@pytest.mark.parametrize(
    ("values", "ks"),
    [
        (_X(n=60), [1, 2, 3, 6]),  # measurements
        (np.sort(_X(n=60), axis=0), [2]),  # sorted, but not by a constant step
        (np.column_stack([_X(n=60), np.arange(60) % 3]), [2, 4]),  # 3 values, K = 2 or 4
        (np.column_stack([_X(n=60), np.arange(60) % 2 * 2]), [2]),  # 0/2: not consecutive
        # Binary items of a latent class model: every column takes two values at K = 2.
        (np.random.default_rng(0).integers(0, 2, size=(60, 5)), [2]),
        (np.arange(9)[:, None] + np.zeros((9, 2)), [2]),  # fewer than 10 rows: no opinion
    ],
)
def test_features_are_not_named(values, ks):
    from bayesmix._validation import suspicious_columns

    features = [f"x{i}" for i in range(values.shape[1])]
    assert suspicious_columns(np.asarray(values, dtype=float), features, ks) == []


def test_select_k_looks_for_labels_of_every_k(recwarn):
    X = _frame_with(z=np.arange(60) % 3)  # three labels: a problem for K = 3 only
    bm.select_k(X, ks=[1, 2, 3], method="em", random_state=0, progressbar=False)
    messages = [str(w.message) for w in recwarn.list if issubclass(w.category, bm.DataWarning)]
    assert len(messages) == 1
    assert "'z'" in messages[0]
    assert recwarn.list[0].filename == __file__  # points at the caller, not at bayesmix


def test_arrays_and_predict_are_not_checked(recwarn):
    X = _frame_with(id=np.arange(60))
    fit = bm.GaussianMixture(n_components=2, random_state=0)
    fit.fit(X.to_numpy(), method="em")  # no names: the check is for DataFrames
    fit.predict(X)
    assert not [w for w in recwarn.list if issubclass(w.category, bm.DataWarning)]


@pytest.mark.parametrize(
    ("model", "X", "key", "fragment"),
    [
        (
            bm.PoissonMixture(priors={"rates": bm.Prior("Gamma", alpha=[1.0] * 3, beta=1.0)}),
            np.random.default_rng(0).poisson(3.0, size=(30, 2)),
            "rates",
            "(2, 2) (component, feature)",
        ),
        (
            bm.StudentTMixture(priors={"dof": bm.Prior("Gamma", alpha=[2.0] * 5, beta=0.1)}),
            _X(),
            "dof",
            "(2,) (component)",
        ),
        (
            bm.BernoulliMixture(
                n_components=3, priors={"probs": bm.Prior("Beta", alpha=np.ones((2, 4)), beta=1)}
            ),
            np.random.default_rng(0).integers(0, 2, size=(30, 4)),
            "probs",
            "(3, 4) (component, feature)",
        ),
    ],
    ids=["poisson", "student-t", "bernoulli"],
)
@pytest.mark.parametrize("method", ["em", "nuts"])
def test_prior_shapes_are_checked_against_k_and_d(model, X, key, fragment, method, monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("validation should have failed before this point")

    monkeypatch.setattr(type(model), "_run_em", reached)
    with pytest.raises(PriorError) as info:
        model.fit(X, method=method)
    assert f"'{key}': parameter" in str(info.value)
    assert fragment in str(info.value)
    with pytest.raises(PriorError):
        model.build_model(X)
