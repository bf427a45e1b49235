"""MixtureRegression's EM reproduces the published fits of mixtools and flexmix.

The data are shipped (``load_co2_gnp``: mixtools' ``CO2data``; ``load_patents``:
flexmix's ``patent``); the reference values are printed in the packages' documentation:

* mixtools (Benaglia, Chauveau, Hunter & Young 2009, JSS 32(6), section 5.2):
  ``summary(regmixEM(CO2, GNP, ...))``, two Gaussian regression lines;
* flexmix (Grün & Leisch, vignette "FlexMix: regression examples", the patent data):
  ``summary(stepFlexmix(Patents ~ lgRD, k = 3, model = FLXMRglm(family = "poisson"),
  concomitant = FLXPmultinom(~ RDS)))``.

Tolerances: each package stops its EM early (mixtools at an absolute log-likelihood
change of 1e-8, flexmix at a relative change of 1e-6), so bayesmix, run to 1e-10, may sit
slightly higher on the likelihood than the published value, never lower, and its
parameters within the distance that early stop allows.
"""

import numpy as np
import pytest

import bayesmix as bm


def test_two_gaussian_lines_reproduce_mixtools_co2_gnp():
    data = bm.datasets.load_co2_gnp()
    X, y = data[["gnp"]], data["co2"]
    em = bm.MixtureRegression(n_components=2, n_init=10, tol=1e-10, random_state=0)
    em.fit(X, y, method="em")
    log_likelihood = em.em_.log_likelihood * len(y)
    # printed to 5 decimals: -66.93977
    assert log_likelihood == pytest.approx(-66.93977, abs=5e-6)
    flat, steep = np.argsort(em.coefficients_[:, 1])
    np.testing.assert_allclose(em.weights_[[flat, steep]], [0.754921, 0.245079], atol=5e-6)
    np.testing.assert_allclose(em.coefficients_[flat], [8.678987, -0.023344], atol=5e-5)
    np.testing.assert_allclose(em.coefficients_[steep], [1.415150, 0.676596], atol=5e-5)
    np.testing.assert_allclose(em.scales_[[flat, steep]], [2.049315, 0.809389], atol=1e-5)
    # ... and BIC chooses those two lines among K = 1..3
    table = bm.select_k(X, [1, 2, 3], model=bm.MixtureRegression, y=y, method="em")
    assert table.attrs["best"]["bic"] == 2


def test_poisson_lines_with_a_concomitant_reproduce_flexmix_patents():
    data = bm.datasets.load_patents()
    X, y, Z = data[["lgrd"]], data["patents"], data[["rds"]]
    em = bm.MixtureRegression(
        n_components=3, family="poisson", concomitant=True, n_init=10, tol=1e-10, random_state=0
    ).fit(X, y, Z, method="em")
    log_likelihood = em.em_.log_likelihood * len(y)
    # flexmix: 'log Lik.' -197.6753 (df=10), AIC 415.3505, BIC 437.8355, from an EM
    # stopped at a relative change of 1e-6: bayesmix's maximum may be a little higher.
    assert -197.6753 - 5e-5 <= log_likelihood <= -197.6753 + 5e-4
    n_parameters = (em.aic(X, y, Z) + 2 * log_likelihood) / 2
    assert n_parameters == pytest.approx(10)
    assert em.bic(X, y, Z) == pytest.approx(437.8355, abs=1e-3)
    assert em.aic(X, y, Z) == pytest.approx(415.3505, abs=1e-3)
    # clusters (most probable component) of 45, 13 and 12 companies; the "post > 0"
    # counts of flexmix's summary (posterior above 1e-4): 63, 47 and 48
    proba = em.predict_proba(X, y, Z)
    sizes = np.bincount(proba.argmax(axis=1), minlength=3)
    order = np.argsort(-sizes, kind="stable")
    assert sizes[order].tolist() == [45, 13, 12]
    assert (proba > 1e-4).sum(axis=0)[order].tolist() == [63, 47, 48]
    # flexmix's prior (the mean posterior probability): 0.615, 0.184, 0.201
    np.testing.assert_allclose(proba.mean(axis=0)[order], [0.615, 0.184, 0.201], atol=1.5e-3)


def test_response_and_covariates_by_column_name_equal_the_arrays():
    """fit(frame, "patents", ["rds"]): one DataFrame, as in a flexmix formula."""
    data = bm.datasets.load_patents()
    spec = {"n_components": 3, "family": "poisson", "concomitant": True, "random_state": 0}
    by_name = bm.MixtureRegression(**spec).fit(data, "patents", ["rds"], method="em")
    by_value = bm.MixtureRegression(**spec).fit(
        data[["lgrd"]], data["patents"], data[["rds"]], method="em"
    )
    assert by_name.feature_names_in_ == ["lgrd"]
    assert by_name.covariate_names_ == ["Intercept", "rds"]
    np.testing.assert_array_equal(by_name.coefficients_, by_value.coefficients_)
    np.testing.assert_array_equal(
        by_name.predict_proba(data, "patents", "rds"),
        by_value.predict_proba(data[["lgrd"]], data["patents"], data[["rds"]]),
    )
    np.testing.assert_array_equal(
        by_name.predict(data.drop(columns="patents"), "rds"),
        by_value.predict(data[["lgrd"]], data[["rds"]]),
    )
    with pytest.raises(bm.DataError, match="not among the columns"):
        bm.MixtureRegression(**spec).fit(data, "patent", ["rds"], method="em")
    with pytest.raises(bm.DataError, match="not a pandas DataFrame"):
        bm.MixtureRegression(**spec).fit(data.to_numpy(), "patents", method="em")
