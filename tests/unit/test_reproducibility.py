"""The same random_state gives identical EM results; a different one changes the restarts."""

import numpy as np
import pandas as pd

import bayesmix as bm
from bayesmix.datasets import make_mixture


def _data():
    means = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]])
    covs = np.stack([np.eye(2)] * 3)
    X, _ = make_mixture(300, [0.3, 0.3, 0.4], means, covs, random_state=11)
    return X


def test_same_random_state_gives_identical_em():
    X = _data()
    a = bm.GaussianMixture(n_components=3, random_state=5).fit(X, method="em")
    b = bm.GaussianMixture(n_components=3, random_state=5).fit(X, method="em")
    np.testing.assert_array_equal(a.em_.init_log_likelihoods, b.em_.init_log_likelihoods)
    np.testing.assert_array_equal(a.em_.lower_bounds, b.em_.lower_bounds)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_different_random_state_changes_the_restarts():
    X = _data()
    a = bm.GaussianMixture(n_components=3, random_state=5).fit(X, method="em")
    b = bm.GaussianMixture(n_components=3, random_state=6).fit(X, method="em")
    # Different k-means++ seeds give different EM paths ...
    assert not np.array_equal(a.em_.init_log_likelihoods, b.em_.init_log_likelihoods)
    # ... to the same maximum on well-separated data.
    np.testing.assert_allclose(a.em_.log_likelihood, b.em_.log_likelihood, rtol=1e-6)


def test_row_order_of_a_dataframe_does_not_change_the_estimate():
    X = _data()
    df = pd.DataFrame(X, columns=["a", "b"])
    shuffled = df.sample(frac=1.0, random_state=0)
    # Converged tightly, both orders reach the same maximum whatever the k-means++ seeds.
    spec = {"n_components": 3, "random_state": 5, "tol": 1e-12, "max_iter": 5000}
    a = bm.GaussianMixture(**spec).fit(df, method="em")
    b = bm.GaussianMixture(**spec).fit(shuffled, method="em")
    # Canonical labels (sorted by the first feature's mean) make the estimates comparable.
    # tol=1e-12 on the mean log-likelihood leaves the parameters ~1e-6 from the maximum.
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-5)
