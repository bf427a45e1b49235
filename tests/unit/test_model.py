"""The model API, once, over every registered family (bayesmix.families.FAMILIES).

A new family gets these checks by its registry line alone: the data each test uses
follow the family's ``plot_kind`` (continuous, counts or binary). References: the
constructor arguments, closed forms (BIC, responsibilities summing to one), the
repeated-rows identity of weights, and the mocked sampler for the NUTS plumbing.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.exceptions import NotFittedError
from bayesmix.families import FAMILIES
from bayesmix.model import MixtureModel

pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning")


def _data(kind: str, rng: np.random.Generator, n: int = 90) -> pd.DataFrame:
    z = rng.random(n) < 0.4
    if kind == "counts":
        values = np.column_stack([rng.poisson(np.where(z, 1.0, 8.0)), rng.poisson(3.0, n)])
    elif kind == "binary":
        p = np.where(z[:, None], [0.9, 0.8, 0.1], [0.1, 0.3, 0.8])
        values = (rng.random((n, 3)) < p).astype(int)
    else:
        values = rng.normal(size=(n, 2)) + np.where(z[:, None], -2.5, 2.5)
    return pd.DataFrame(values, columns=[f"c{j}" for j in range(values.shape[1])])


@pytest.fixture(params=sorted(FAMILIES))
def family(request, rng):
    cls = FAMILIES[request.param]
    return cls, _data(cls.plot_kind, rng)


def test_registry_names_a_model_class_exported_by_bayesmix():
    for name, cls in FAMILIES.items():
        assert issubclass(cls, MixtureModel)
        assert getattr(bm, cls.__name__) is cls, name
        assert cls.__name__ in bm.__all__


def test_constructor_is_keyword_only_and_stores_arguments_unchanged(family):
    cls, _ = family
    params = inspect.signature(cls.__init__).parameters
    kinds = {p.kind for name, p in params.items() if name != "self"}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}
    priors = {"weights": bm.Prior("Dirichlet", a=2.0)}
    model = cls(n_components=3, priors=priors, random_state=7)
    assert model.priors is priors
    assert model.n_components == 3
    assert model.random_state == 7
    assert model.get_params()["n_components"] == 3
    assert repr(model).startswith(f"{cls.__name__}(")
    with pytest.raises(NotFittedError):
        model.weights_  # noqa: B018


def test_em_fit_returns_self_with_fitted_attributes_and_layout(family, tmp_path):
    cls, X = family
    before = X.copy()
    model = cls(n_components=2, random_state=0)
    assert model.fit(X, method="em") is model
    pd.testing.assert_frame_equal(X, before)  # the user's data are not modified
    idata = model.idata
    assert {"posterior", "log_likelihood", "observed_data", "em_stats"} <= set(idata.children)
    assert idata.attrs["inference_method"] == "em"
    assert idata.attrs["model_class"] == cls.__name__
    post = idata["posterior"]
    assert post["weights"].dims == ("chain", "draw", "component")
    for name in model._component_vars:
        assert post[name].dims[:3] == ("chain", "draw", "component"), name
        assert hasattr(model, f"{name}_"), name
    np.testing.assert_allclose(model.weights_.sum(), 1.0)
    assert list(post["feature"].to_numpy()) == list(X.columns)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    log_density = model.score_samples(X)
    assert np.all(np.isfinite(log_density))
    # BIC: -2 sum log p(x_n | theta_hat) + p log n, with the family's parameter count.
    p = model._n_parameters(X.shape[1])
    np.testing.assert_allclose(
        model.bic(X), -2.0 * log_density.sum() + p * np.log(len(X)), rtol=1e-10
    )
    np.testing.assert_allclose(model.score(X), log_density.mean(), rtol=1e-12)
    loaded = bm.load(model.save(tmp_path / "fit.nc"))
    assert type(loaded) is cls
    assert loaded.get_params() == model.get_params()
    np.testing.assert_allclose(loaded.weights_, model.weights_)
    np.testing.assert_allclose(loaded.predict_proba(X), proba)


def test_integer_weights_give_the_bic_of_repeated_rows(family):
    cls, X = family
    w = np.resize([1.0, 2.0, 3.0], len(X))
    model = cls(n_components=2, random_state=0).fit(X, method="em", sample_weight=w)
    repeated = X.loc[X.index.repeat(w.astype(int))]
    np.testing.assert_allclose(model.bic(X, sample_weight=w), model.bic(repeated), rtol=1e-10)
    np.testing.assert_array_equal(model.idata["observed_data"]["sample_weight"].to_numpy(), w)


def test_nuts_plumbing_with_mocked_sampler(family, mocked_sample):
    cls, X = family
    model = cls(n_components=2, random_state=0).fit(X, draws=20, tune=10, chains=2)
    post = model.idata["posterior"]
    assert (post.sizes["chain"], post.sizes["draw"]) == (2, 20)
    perm = model.idata["sample_stats"]["relabel_permutation"].to_numpy()
    assert np.all(np.sort(perm, axis=-1) == np.arange(2))
    assert model.idata["log_likelihood"]["x"].shape == (2, 20, len(X))
    settings = model.idata.attrs["sampler_settings"]
    assert '"draws": 20' in settings
    assert '"chains": 2' in settings
    table = model.summary()
    assert table.index[0] == "weights[0]"
