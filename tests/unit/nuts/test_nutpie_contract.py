"""Contract tests of every private nutpie name bayesmix uses (bayesmix.nuts._nutpie_internals).

They fail loudly when nutpie changes what the C path relies on; run them on every nutpie
bump, then widen the pin in pyproject.toml. The fallback (nutpie's public from_pyfunc) is
sampled here, so a user with another nutpie still gets a correct posterior.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
import logging
import pathlib

import numpy as np
import pytest
from packaging.requirements import Requirement

import bayesmix as bm
from bayesmix.nuts import _nutpie_internals as internals

nutpie = pytest.importorskip("nutpie")


def test_installed_nutpie_is_inside_the_pinned_range():
    requirements = [Requirement(r) for r in importlib.metadata.requires("bayesmix")]
    (pin,) = [r for r in requirements if r.name == "nutpie"]
    assert pin.specifier.contains(nutpie.__version__), (pin, nutpie.__version__)
    upper = [spec for spec in pin.specifier if spec.operator == "<"]
    assert upper, f"nutpie needs a ceiling (its private API is used): {pin}"


def test_the_private_names_the_c_path_uses_exist():
    import importlib.util

    from nutpie import _lib
    from nutpie.sample import CompiledModel

    for name in ("PySampler", "LogpFunc", "ExpandFunc", "PyVariable", "PyMcModel"):
        assert hasattr(_lib, name), name
    assert callable(_lib.PySampler.from_pymc)
    assert callable(_lib.PyVariable.new_variables)
    # Imported only when normalizing-flow adaptation is asked for (it needs flowjax).
    spec = importlib.util.find_spec("nutpie.transform_adapter")
    assert "def make_transform_adapter(" in pathlib.Path(spec.origin).read_text()
    for hook in ("_make_sampler", "_make_model"):
        assert hook in vars(CompiledModel), hook
    # nutpie.sample calls the hook with these arguments, positionally (nutpie 0.16).
    source = inspect.getsource(importlib.import_module("nutpie.sample"))
    assert "compiled_model._make_sampler(" in source


def test_compiled_pymc_model_has_the_fields_the_laplace_wrapper_reads():
    from nutpie.compile_pymc import CompiledPyMCModel

    fields = {f.name for f in dataclasses.fields(CompiledPyMCModel)}
    needed = {"compiled_logp_func", "compiled_expand_func", "user_data", "n_expanded"}
    assert needed <= fields
    assert "initial_point_func" in fields
    assert dataclasses.is_dataclass(CompiledPyMCModel)


def test_from_pyfunc_takes_the_arguments_of_the_fallback():
    from nutpie.compiled_pyfunc import from_pyfunc

    params = inspect.signature(from_pyfunc).parameters
    for name in ("coords", "dims", "shared_data", "make_initial_point_fn"):
        assert name in params, name


def test_the_c_path_is_taken_with_this_nutpie():
    X = bm.datasets.load_faithful()
    gm = bm.GaussianMixture(n_components=2, random_state=0)
    data, priors = gm._prepare(X)
    target = gm._nuts_target(data, priors)
    compiled = target.nutpie_model(target.shared_data(data.values))
    assert isinstance(compiled, internals.callback_model_class())


def test_a_changed_compiled_model_raises_the_seam_error():
    @dataclasses.dataclass(frozen=True)
    class NotNutpie016:
        n_dim: int = 3

    with pytest.raises(internals.NutpieInternalsError):
        internals.in_laplace_coordinates(
            NotNutpie016(), internals.Affine(np.zeros(3), np.eye(3)), lambda seed: np.zeros(3)
        )
    with pytest.raises(internals.NutpieInternalsError):
        internals.compiled_logp_dlogp(NotNutpie016(), np.zeros(3))


def _fit(seed=3):
    X = bm.datasets.load_faithful()
    return bm.GaussianMixture(n_components=2, random_state=0).fit(
        X, draws=300, tune=300, chains=2, random_seed=seed, progressbar=False
    )


# Short chains: the test checks R-hat itself (< 1.02) instead of the sampler's warning.
@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.SamplerWarning")
def test_the_fallback_is_sampled_and_gives_the_same_posterior(monkeypatch, caplog):
    """Without nutpie's internals the fused kernel runs through from_pyfunc: same posterior."""
    reference = _fit()

    def missing():
        raise AttributeError("module 'nutpie._lib' has no attribute 'PyMcModel'")

    monkeypatch.setattr(internals, "callback_model_class", missing)
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        fallback = _fit()
    assert "using nutpie's from_pyfunc" in caplog.text
    assert int(fallback.idata.sample_stats["diverging"].sum()) == 0
    assert float(fallback.idata.attrs["max_rhat"]) < 1.02
    # Same target density, seed and starts: the two runs estimate the same posterior
    # (not bitwise: the Laplace map is applied in NumPy here, in numba on the C path).
    for name in ("weights", "means", "covariances"):
        a = reference.idata.posterior[name]
        b = fallback.idata.posterior[name]
        sd = a.std(("chain", "draw")).to_numpy()
        diff = np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw"))).to_numpy()
        assert np.all(diff < 0.5 * sd + 1e-12), (name, diff, sd)
