"""Shared test configuration: the slow statistical suite is opt-in with --run-slow."""

import matplotlib
import numpy as np
import pymc as pm
import pytensor
import pytest
from pymc.testing import mock_sample

from bayesmix.nuts import sampler as _nutpie

matplotlib.use("Agg")

# Unit tests compile many small PyTensor graphs on tiny data: PyTensor's Python
# implementations are fast enough there and skip cold C compilation. Set here, not through
# PYTENSOR_FLAGS: pytest's configuration (the filterwarnings entry naming a bayesmix
# warning) imports bayesmix, hence PyTensor, before this file runs. Sampling (nutpie)
# compiles with numba and is unaffected.
pytensor.config.cxx = ""


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (statistical tests that sample for real)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        # Deselect rather than skip: the slow suite is a separate run (see .ci/run).
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)


@pytest.fixture
def mocked_sample(monkeypatch):
    """Replace pm.sample with prior draws shaped as a posterior, with NUTS sample stats."""

    def fake(*args, **kwargs):
        kwargs.pop("initvals", None)
        stats = {"diverging": lambda size: np.zeros(size, dtype=bool)}
        return mock_sample(sample_stats=stats, **kwargs)

    def fake_nutpie(model, *, draws, chains, random_seed, **kwargs):
        return fake(model=model, draws=draws, chains=chains, random_seed=random_seed)

    monkeypatch.setattr(pm, "sample", fake)
    monkeypatch.setattr(_nutpie, "sample_nutpie", fake_nutpie)
    # The fake draws from the PyMC model's prior, so the fit must build it (with nutpie and
    # the fused kernel it would not need one).
    from bayesmix.families import FAMILIES
    from bayesmix.model import MixtureModel

    for name in FAMILIES:  # the classes are imported on first access
        FAMILIES[name]
    classes = [MixtureModel]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if "_nuts_target" in vars(cls):  # every family with a fused kernel
            monkeypatch.setattr(cls, "_nuts_target", lambda self, data, priors: None)
