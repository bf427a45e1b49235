

@pytest.mark.parametrize("family", FAMILIES)
def test_a_fit_with_missing_values_saves_and_loads(family, tmp_path):
    rng = np.random.default_rng(14)
    X = _mcar(rng, _simulate(family, rng, n=150), 0.2)
    fit = _em(family, X, missing="model")
    fit.save(tmp_path / "missing.nc")
    loaded = bm.load(tmp_path / "missing.nc")
    np.testing.assert_array_equal(loaded.predict_proba(X), fit.predict_proba(X))


def test_online_em_takes_batches_with_missing_values():
    rng = np.random.default_rng(15)
    X = _mcar(rng, _simulate("poisson", rng, n=2000), 0.2)
    batch = bm.PoissonMixture(n_components=2, random_state=0, missing="model").fit(X, method="em")
    online = bm.PoissonMixture(n_components=2, random_state=0, missing="model")
    for part in np.array_split(X, 10):
        online.partial_fit(part, kappa=1.0)
    assert np.all(np.isfinite(online.rates_))
    np.testing.assert_allclose(online.rates_, batch.rates_, rtol=0.1)
    np.testing.assert_allclose(online.weights_, batch.weights_, atol=0.05)
