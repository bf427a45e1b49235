"""compare_fits: EM estimate against the NUTS posterior, after putting both on one labelling."""

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score

import bayesmix as bm
from bayesmix.compare import adjusted_rand_index, compare_fits
from bayesmix.datasets import make_mixture
from bayesmix.exceptions import InvalidParameterError, NotFittedError, SamplerWarning
from bayesmix.families.gaussian.densities import (
    free_covariance_entries,
    n_parameters,
    scalar_parameters,
)

COLUMNS = ["em", "mean", "sd", "hdi94_lb", "hdi94_ub", "em_in_hdi", "z_score"]
EXPECTED_INDEX = [
    "weights[0]",
    "weights[1]",
    "means[0, length]",
    "means[0, width]",
    "means[1, length]",
    "means[1, width]",
    "covariances[0, length, length]",
    "covariances[0, width, length]",
    "covariances[0, width, width]",
    "covariances[1, length, length]",
    "covariances[1, width, length]",
    "covariances[1, width, width]",
]


@pytest.fixture(scope="module")
def X(mixture):
    return mixture(2)[0]  # 1000 samples, 2 separated components, columns length and width


@pytest.fixture(scope="module")
def truth(mixture):
    return mixture(2)[1]


@pytest.fixture(scope="module")
def em_fit(fitted_mixture):
    return fitted_mixture(2, "em")


@pytest.fixture(scope="module")
def nuts_fit(fitted_mixture):
    return fitted_mixture(2, "nuts")


@pytest.fixture(scope="module")
def table(em_fit, nuts_fit):
    return compare_fits(em_fit, nuts_fit)


def _with_posterior(fit, **changes):
    """Deep copy of ``fit`` with posterior variables replaced by functions of the old ones."""
    other = copy.deepcopy(fit)
    post = other.idata["posterior"].to_dataset()
    other.idata["posterior"] = post.assign({name: f(post[name]) for name, f in changes.items()})
    return other


# -- the table ------------------------------------------------------------------------------


def test_table_has_one_row_per_scalar_parameter(table):
    assert list(table.columns) == COLUMNS
    assert list(table.index) == EXPECTED_INDEX
    assert table["em_in_hdi"].dtype == bool
    assert table.drop(columns="em_in_hdi").dtypes.eq(np.float64).all()


def test_posterior_columns_match_arviz_summary(table, nuts_fit):
    reference = nuts_fit.summary("stats").loc[table.index]
    np.testing.assert_allclose(
        table[["mean", "sd", "hdi94_lb", "hdi94_ub"]].to_numpy(),
        reference[["mean", "sd", "hdi94_lb", "hdi94_ub"]].to_numpy(),
        rtol=1e-12,
        atol=1e-14,
    )
    z = (table["em"] - table["mean"]) / table["sd"]
    np.testing.assert_allclose(table["z_score"], z)
    inside = (table["hdi94_lb"] <= table["em"]) & (table["em"] <= table["hdi94_ub"])
    assert (table["em_in_hdi"] == inside).all()


def test_em_column_is_the_em_estimate(table, em_fit):
    assert table.attrs["fit"]["em_permutation"] == [0, 1]
    np.testing.assert_array_equal(table.loc[["weights[0]", "weights[1]"], "em"], em_fit.weights_)
    np.testing.assert_array_equal(
        table.loc[EXPECTED_INDEX[2:6], "em"], em_fit.means_.ravel()
    )  # row-major: component, then feature
    cov = em_fit.covariances_
    lower = [cov[k, i, j] for k in range(2) for i in range(2) for j in range(i + 1)]
    np.testing.assert_array_equal(table.loc[EXPECTED_INDEX[6:], "em"], lower)


def test_em_lies_inside_the_hdi_of_every_parameter(table, truth):
    assert truth["n_samples"] == 1000
    # Separated components and N = 1000: the MLE and the posterior agree closely.
    assert table["em_in_hdi"].all(), table
    assert (table["z_score"].abs() < 2).all(), table
    # and the posterior recovers the simulation truth
    np.testing.assert_allclose(
        table.loc[EXPECTED_INDEX[2:6], "mean"], truth["means"].ravel(), atol=0.15
    )


def test_fit_level_figures(table, em_fit, nuts_fit, X):
    fit = table.attrs["fit"]
    assert fit["n_parameters"] == 11  # 1 weight + 4 means + 6 covariance entries
    assert fit["n_parameters_compared"] == 12
    assert fit["n_em_in_hdi"] == 12
    assert fit["hdi_prob"] == 0.94
    assert fit["adjusted_rand_index"] > 0.99
    # mean log predictive density of the EM fit, from scipy directly
    log_pdf = np.column_stack(
        [
            np.log(w) + multivariate_normal(m, c).logpdf(X.to_numpy())
            for w, m, c in zip(em_fit.weights_, em_fit.means_, em_fit.covariances_, strict=True)
        ]
    )
    assert fit["mean_lpd_em"] == pytest.approx(logsumexp(log_pdf, axis=1).mean(), rel=1e-10)
    # the posterior predictive density: log of the mean likelihood over draws (< 1000 draws)
    ll = nuts_fit.idata["log_likelihood"]["x"].transpose("obs", ...).to_numpy()
    ll = ll.reshape(ll.shape[0], -1)
    lpd = logsumexp(ll, axis=1) - np.log(ll.shape[1])
    assert fit["mean_lpd_mcmc"] == pytest.approx(lpd.mean(), rel=1e-10)
    # the posterior predictive is a little wider than the plug-in: close but not equal
    assert fit["mean_lpd_mcmc"] == pytest.approx(fit["mean_lpd_em"], abs=0.01)
    assert fit["mean_lpd_mcmc"] != fit["mean_lpd_em"]


def test_shifted_em_means_are_flagged_outside_the_hdi(table, em_fit, nuts_fit):
    # 10 posterior sd up in the first feature and down in the second
    sd = table.loc[EXPECTED_INDEX[2:6], "sd"].to_numpy().reshape(2, 2)
    shift = 10 * sd * np.array([1.0, -1.0])
    shifted = _with_posterior(em_fit, means=lambda da: da + shift[None, None])
    params = {**em_fit.em_.params, "means": em_fit.em_.means + shift}
    shifted.em_ = dataclasses.replace(em_fit.em_, params=params)
    shifted.means_ = em_fit.means_ + shift
    result = compare_fits(shifted, nuts_fit)
    means = result.loc[EXPECTED_INDEX[2:6]]
    assert not means["em_in_hdi"].any()
    assert (means["z_score"].abs() > 5).all()
    np.testing.assert_array_equal(np.sign(means["z_score"]), [1, -1, 1, -1])
    others = [label for label in EXPECTED_INDEX if not label.startswith("means")]
    pd.testing.assert_frame_equal(result.loc[others], table.loc[others])
    assert result.attrs["fit"]["n_em_in_hdi"] == 8


def test_permuted_em_labels_are_matched_back(table, em_fit, nuts_fit):
    def reverse(da):
        return da.isel(component=[1, 0]).assign_coords(component=[0, 1])

    swapped = _with_posterior(em_fit, weights=reverse, means=reverse, covariances=reverse)
    assert swapped.idata["posterior"]["weights"].values[0, 0, 0] == pytest.approx(
        table.loc["weights[1]", "em"]
    )  # the copy really is in the other labelling
    result = compare_fits(swapped, nuts_fit)
    assert result.attrs["fit"]["em_permutation"] == [1, 0]
    pd.testing.assert_frame_equal(result, table)
    assert result.attrs["fit"]["adjusted_rand_index"] == table.attrs["fit"]["adjusted_rand_index"]


def test_hdi_prob_changes_the_interval(em_fit, nuts_fit, table):
    narrow = compare_fits(em_fit, nuts_fit, hdi_prob=0.5)
    assert list(narrow.columns) == [
        "em",
        "mean",
        "sd",
        "hdi50_lb",
        "hdi50_ub",
        "em_in_hdi",
        "z_score",
    ]
    width = narrow["hdi50_ub"] - narrow["hdi50_lb"]
    assert (width < table["hdi94_ub"] - table["hdi94_lb"]).all()
    assert narrow.attrs["fit"]["hdi_prob"] == 0.5


def test_summary_and_compare_name_the_hdi_alike_and_list_each_parameter_once(
    table, em_fit, nuts_fit
):
    """Issue 21, item 8: the two tables of the report named the HDI differently
    (hdi94_lb / hdi_low), and the summary listed every off-diagonal covariance twice."""
    summary = nuts_fit.summary()
    hdi = [column for column in summary.columns if column.startswith("hdi")]
    assert hdi == [column for column in table.columns if column.startswith("hdi")]
    assert list(summary.index) == EXPECTED_INDEX == list(table.index)
    assert "covariances[0, length, width]" not in summary.index  # the upper triangle
    assert list(em_fit.summary().index) == EXPECTED_INDEX


@pytest.mark.parametrize(
    ("covariance_type", "entries"),
    [
        (
            "diag",
            [
                "[0, length, length]",
                "[0, width, width]",
                "[1, length, length]",
                "[1, width, width]",
            ],
        ),
        ("tied", ["[0, length, length]", "[0, width, length]", "[0, width, width]"]),
        ("spherical", ["[0, length, length]", "[1, length, length]"]),
    ],
)
def test_summary_rows_are_the_free_entries_of_the_covariance_type(X, covariance_type, entries):
    em = bm.GaussianMixture(n_components=2, covariance_type=covariance_type, random_state=0).fit(
        X, method="em"
    )
    assert list(em.summary().index) == [
        *EXPECTED_INDEX[:6],
        *(f"covariances{entry}" for entry in entries),
    ]


# -- errors ---------------------------------------------------------------------------------


def test_fits_in_the_wrong_order_are_rejected(em_fit, nuts_fit):
    with pytest.raises(InvalidParameterError, match=r"em_fit must be fitted with method='em'"):
        compare_fits(nuts_fit, em_fit)
    with pytest.raises(InvalidParameterError, match=r"mcmc_fit must be fitted with method='nuts'"):
        compare_fits(em_fit, em_fit)


@pytest.mark.parametrize(
    ("model", "rows", "match"),
    [
        ({"n_components": 1}, slice(0, 300), "n_components=1"),
        ({"covariance_type": "diag"}, slice(0, 300), "covariance_type='diag'"),
        ({}, slice(0, 700), "different data"),
    ],
)
def test_mismatched_fits_are_rejected(X, nuts_fit, model, rows, match):
    other = bm.GaussianMixture(**{"n_components": 2, **model}, random_state=1)
    other.fit(X.iloc[rows], method="em")  # n_components is checked before the data
    with pytest.raises(InvalidParameterError, match=match) as info:
        compare_fits(other, nuts_fit)
    assert isinstance(info.value, ValueError)
    assert "Fit both" in str(info.value)  # says what to try


def test_other_features_are_rejected(X, nuts_fit):
    other = bm.GaussianMixture(n_components=2).fit(X[["length"]], method="em")
    with pytest.raises(InvalidParameterError, match="n_features_in_=1"):
        compare_fits(other, nuts_fit)


def test_unfitted_models_and_bad_hdi_prob_are_rejected(em_fit, nuts_fit):
    with pytest.raises(NotFittedError, match="em_fit is not a fitted"):
        compare_fits(bm.GaussianMixture(n_components=2), nuts_fit)
    with pytest.raises(NotFittedError, match="mcmc_fit is not a fitted"):
        compare_fits(em_fit, "not a model")
    for bad in (0.0, 1.0, 1.5, "0.9", True):
        with pytest.raises(InvalidParameterError, match="hdi_prob"):
            compare_fits(em_fit, nuts_fit, hdi_prob=bad)


# -- other covariance types (mocked_sample, tests/conftest.py: the layout, not the posterior)


@pytest.mark.parametrize(
    ("covariance_type", "covariance_rows"),
    [("tied", ["[0, a, a]", "[0, b, a]", "[0, b, b]"])],  # diag, spherical: see below
)
def test_covariance_rows_follow_the_covariance_type(
    covariance_type, covariance_rows, mocked_sample
):
    values, _ = make_mixture(200, [0.4, 0.6], [[0, 0], [5, 3]], [np.eye(2)] * 2, random_state=3)
    X = pd.DataFrame(values, columns=["a", "b"])
    em = bm.GaussianMixture(n_components=2, covariance_type=covariance_type, random_state=0)
    em.fit(X, method="em")
    nuts = bm.GaussianMixture(n_components=2, covariance_type=covariance_type, random_state=0)
    with pytest.warns(SamplerWarning):  # prior draws as a "posterior"
        nuts.fit(X, draws=30, chains=2, progressbar=False)
    result = compare_fits(em, nuts)
    assert list(result.index[6:]) == [f"covariances{row}" for row in covariance_rows]
    fit = result.attrs["fit"]
    assert fit["n_parameters"] == n_parameters(2, 2, covariance_type)
    assert fit["n_parameters_compared"] == fit["n_parameters"] + 1  # every weight is a row
    # the EM covariance entries, taken from the EM component given each MCMC label
    full = em.idata["posterior"]["covariances"].to_numpy()[0, 0][fit["em_permutation"]]
    expected = [full[int(r[1]), "ab".index(r[4]), "ab".index(r[7])] for r in covariance_rows]
    np.testing.assert_allclose(result["em"].to_numpy()[6:], expected)


# -- pure functions -------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize(("k", "d"), [(1, 1), (2, 3), (4, 2)])
def test_free_covariance_entries_count_the_free_parameters(covariance_type, k, d):
    entries = free_covariance_entries(covariance_type, k, d)
    assert len(entries) == n_parameters(k, d, covariance_type) - k * d - (k - 1)
    assert len(set(entries)) == len(entries)
    assert all(i >= j for _, i, j in entries)  # on or below the diagonal


@pytest.mark.parametrize(
    ("covariance_type", "labels", "values"),
    [
        ("diag", ["[0, u, u]", "[0, v, v]", "[1, u, u]", "[1, v, v]"], [8, 11, 12, 15]),
        ("spherical", ["[0, u, u]", "[1, u, u]"], [8, 12]),
        (
            "full",
            ["[0, u, u]", "[0, v, u]", "[0, v, v]", "[1, u, u]", "[1, v, u]", "[1, v, v]"],
            [8, 10, 11, 12, 14, 15],
        ),
    ],
)
def test_covariance_entries_by_type(covariance_type, labels, values):
    weights = np.array([[0.3, 0.7], [0.4, 0.6]])
    means = np.arange(8.0).reshape(2, 2, 2)
    cov = np.arange(16.0).reshape(2, 2, 2, 2)
    _, got_labels, got = scalar_parameters(
        weights, means, cov, covariance_type=covariance_type, components=[0, 1], features="uv"
    )
    assert got_labels[6:] == [f"covariances{label}" for label in labels]
    np.testing.assert_array_equal(got[1, 6:], values)


def test_scalar_parameters_labels_and_values():
    weights = np.array([[0.3, 0.7], [0.4, 0.6]])
    means = np.arange(8.0).reshape(2, 2, 2)
    cov = np.arange(16.0).reshape(2, 2, 2, 2)
    variables, labels, values = scalar_parameters(
        weights, means, cov, covariance_type="diag", components=[0, 1], features=["u", "v"]
    )
    assert variables == ["weights"] * 2 + ["means"] * 4 + ["covariances"] * 4
    assert labels[-4:] == [
        "covariances[0, u, u]",
        "covariances[0, v, v]",
        "covariances[1, u, u]",
        "covariances[1, v, v]",
    ]
    np.testing.assert_array_equal(values[1], [0.4, 0.6, 4, 5, 6, 7, 8, 11, 12, 15])


def test_adjusted_rand_index_known_values():
    assert adjusted_rand_index([0, 0, 1, 1], ["b", "b", "a", "a"]) == 1.0
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    assert adjusted_rand_index([0, 0, 0], [0, 1, 2]) == 0.0
    assert adjusted_rand_index([5, 5, 5], [1, 1, 1]) == 1.0
    assert adjusted_rand_index([3], [4]) == 1.0
    with pytest.raises(InvalidParameterError, match="same samples"):
        adjusted_rand_index([0, 1], [0, 1, 1])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=60).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 4), min_size=n, max_size=n),
            st.lists(st.integers(0, 6), min_size=n, max_size=n),
        )
    )
)
def test_adjusted_rand_index_matches_scikit_learn(labels):
    a, b = labels
    assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_index(b, a), abs=1e-12)
