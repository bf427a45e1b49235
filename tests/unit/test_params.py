"""The declarative parameter constraints (bayesmix._params) and their coverage of the API.

Every constructor argument of every family and every argument of the public functions
has a declaration, checked once per call before any work, and a bad value raises
InvalidParameterError naming the caller, the parameter, what was received and what
was expected.
"""

import inspect
from numbers import Integral, Real

import numpy as np
import pytest

import bayesmix as bm
from bayesmix._params import Hint, Interval, Options, Satisfies, validate_params, validated
from bayesmix.exceptions import InvalidParameterError
from bayesmix.families import FAMILIES


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_constructor_argument_is_declared(name):
    cls = FAMILIES[name]
    assert set(cls._parameter_constraints) == set(cls._param_names())


PUBLIC_FUNCTIONS = [
    bm.select_k,
    bm.overfitted_mixture,
    bm.nonempty_components,
    bm.compare_fits,
    bm.load,
    bm.datasets.load_iris,
    bm.datasets.load_warpbreaks,
    bm.datasets.make_mixture,
    bm.GaussianMixture.fit,
    bm.GaussianMixture.partial_fit,
    bm.GaussianMixture.save,
    bm.GaussianMixture.summary,
    bm.GaussianMixture.posterior_arrays,
    bm.GaussianMixture.sample_prior_predictive,
    bm.GaussianMixture.sample_posterior_predictive,
]


@pytest.mark.parametrize("func", PUBLIC_FUNCTIONS, ids=lambda f: f.__qualname__)
def test_public_functions_declare_their_arguments(func):
    constraints = func._parameter_constraints
    parameters = inspect.signature(func).parameters
    assert set(constraints) <= set(parameters)
    # Every argument with a default a user may change (not X, y or **kwargs) is declared;
    # weights, means and covariances of make_mixture are data (DataError).
    undeclared = {
        name
        for name, p in parameters.items()
        if p.default is not p.empty and p.kind is not p.VAR_KEYWORD and name not in constraints
    }
    assert undeclared <= {"y", "Z", "sample_weight"}, undeclared  # data, checked as data


@pytest.mark.parametrize(
    ("constraint", "good", "bad", "text"),
    [
        (
            Interval(Integral, 1, None),
            [1, 7, np.int64(3), np.uint8(1)],
            [0, -1, 2.0, True, np.bool_(True), "2", None],
            "a positive int (>= 1)",
        ),
        (
            Interval(Integral, 0, None),
            [0, 5],
            [-1, 1.5, False],
            "a non-negative int (>= 0)",
        ),
        (
            Interval(Real, 0, None),
            [0, 0.0, 1e300, np.float32(2.5), 3],
            [-1e-300, np.nan, np.inf, True, "1", complex(1, 0)],
            "a finite number >= 0",
        ),
        (
            Interval(Real, 0, 1, closed="neither"),
            [0.5, 1e-300, 0.999],
            [0, 1, 1.0, -0.1, np.nan],
            "a number in (0, 1)",
        ),
        (
            Interval(Real, 0.5, 1, closed="right"),
            [1, 0.75],
            [0.5, 1.01],
            "a number in (0.5, 1]",
        ),
        (Options("full", "diag"), ["full", np.str_("diag")], ["Full", 1, None], "one of"),
        (
            Satisfies(lambda v: v[0] < v[1], "an increasing pair"),
            [(1, 2)],
            [(2, 1), 3, None],
            "an increasing pair",
        ),
    ],
)
def test_constraints(constraint, good, bad, text):
    assert str(constraint).startswith(text)
    for value in good:
        assert constraint.is_satisfied_by(value), value
    for value in bad:
        assert not constraint.is_satisfied_by(value), value


def test_message_names_caller_parameter_received_expected_and_hint():
    constraints = {
        "n": [Interval(Integral, 1, None)],
        "kind": [Options("full", "diag")],
        "seed": [None, Interval(Integral, 0, None), Hint("Pass an int.")],
        "flag": ["boolean"],
        "data": ["no_validation"],
    }
    defaults = {"n": 2}
    cases = [
        ({"n": 0}, "f: n must be a positive int (>= 1); got 0 (int). Try the default, n=2."),
        ({"kind": "fulll"}, "f: kind must be one of ['full', 'diag']; got 'fulll'. Did you mean"),
        ({"seed": -3}, "f: seed must be None or a non-negative int (>= 0); got -3 (int). Pass"),
        ({"flag": "yes"}, "f: flag must be True or False; got 'yes'."),
        ({"n": np.zeros(1000)}, "0., 0.]) (ndarray). Try"),  # a long value is shortened
    ]
    for values, text in cases:
        with pytest.raises(InvalidParameterError) as info:
            validate_params(constraints, values, "f", defaults=defaults)
        assert text in str(info.value)
    validate_params(constraints, {"data": object(), "unknown": 1, "seed": None}, "f")


def test_validated_functions_and_methods():
    @validated({"k": [Interval(Integral, 1, None)]})
    def f(x, k=1):
        return x * k

    assert f(2, k=3) == 6
    with pytest.raises(InvalidParameterError, match=r"^f: k must be"):
        f(2, 0)
    with pytest.raises(TypeError):  # a wrong call is Python's error, as without checks
        f()
    with pytest.raises(TypeError, match="no parameters"):
        validated({"nope": [None]})(f)
    with pytest.raises(InvalidParameterError, match=r"^GaussianMixture.fit: draws must be"):
        bm.GaussianMixture().fit(np.zeros((5, 1)), draws=0)
    with pytest.raises(InvalidParameterError, match=r"^GaussianMixture.load: path must be"):
        bm.GaussianMixture.load(3)


FIT_ARGUMENTS = [
    ("method", "bayes"),
    ("draws", 0),
    ("tune", 1.5),
    ("chains", -1),
    ("cores", 0),
    ("target_accept", 1.0),
    ("nuts_sampler", "stan"),
    ("random_seed", np.random.default_rng(0)),
    ("progressbar", None),
    ("log_likelihood", "auto"),
    ("warm_start", 1),
]


@pytest.mark.parametrize(("name", "value"), FIT_ARGUMENTS, ids=[a for a, _ in FIT_ARGUMENTS])
@pytest.mark.parametrize("method", ["em", "nuts"])
def test_every_fit_argument_is_checked_before_any_work(name, value, method, monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("validation should have failed before this point")

    monkeypatch.setattr(bm.GaussianMixture, "_prepare", reached)
    kwargs = {"method": method, name: value}
    with pytest.raises(InvalidParameterError, match=rf"GaussianMixture.fit: {name} must be"):
        bm.GaussianMixture().fit(np.zeros((5, 1)), **kwargs)


CONSTRUCTOR_ARGUMENTS = [
    (bm.GaussianMixture, "n_components", 0),
    (bm.GaussianMixture, "covariance_type", "ful"),
    (bm.GaussianMixture, "priors", ["weights"]),
    (bm.GaussianMixture, "n_init", 0.5),
    (bm.GaussianMixture, "max_iter", 0),
    (bm.GaussianMixture, "tol", np.inf),
    (bm.GaussianMixture, "reg_covar", -1e-9),
    (bm.GaussianMixture, "random_state", -1),
    (bm.GaussianMixture, "objective", "mle"),
    (bm.StudentTMixture, "dof_bounds", (5.0, 1.0)),
    (bm.StudentTMixture, "dof_bounds", "1,200"),
    (bm.StudentTMixture, "covariance_type", None),
    (bm.PoissonMixture, "objective", "MAP"),
    (bm.BernoulliMixture, "tol", "1e-6"),
    (bm.NegativeBinomialMixture, "n_components", np.float64(2.0)),
]


@pytest.mark.parametrize(("cls", "name", "value"), CONSTRUCTOR_ARGUMENTS)
def test_constructor_arguments_are_checked_at_fit(cls, name, value):
    model = cls(**{name: value})  # the constructor stores, does no work, checks nothing
    assert getattr(model, name) is value
    with pytest.raises(InvalidParameterError, match=rf"^{cls.__name__}: {name} must be"):
        model.fit(np.ones((6, 1)), method="em")


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: bm.overfitted_mixture(model="gamma"), "model must be a bayesmix mixture class"),
        (lambda: bm.overfitted_mixture(concentration=0), "concentration must be"),
        (lambda: bm.select_k(np.zeros((5, 1)), ks=iter([1, 2])), "ks must be distinct"),
        (lambda: bm.select_k(np.zeros((5, 1)), ks=[1, 2], draws=0), "draws must be"),
        (lambda: bm.select_k(np.zeros((5, 1)), n_se=-1.0), "n_se must be"),
        (lambda: bm.load(None), "path must be a string or a PathLike"),
        (lambda: bm.load("f.nc", expected="gaussian"), "expected must be None or a bayesmix"),
        (lambda: bm.datasets.load_iris(return_labels="yes"), "return_labels must be True or"),
        (lambda: bm.datasets.make_mixture(0, [1.0], [[0.0]], [[[1.0]]]), "n_samples must be"),
        (lambda: bm.compare_fits(None, None, hdi_prob=94), "hdi_prob must be"),
        (lambda: bm.nonempty_components(None, max_draws=0), "max_draws must be"),
    ],
)
def test_public_functions_check_their_arguments(call, fragment):
    with pytest.raises(InvalidParameterError, match=fragment):
        call()
