"""NUTS's target acceptance rate: the family's default unless fit (or select_k) is given one."""

from __future__ import annotations

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.exceptions import InvalidParameterError
from bayesmix.nuts import sampler as _nutpie


class _Sampled(Exception):
    """Raised by the fake sampler once it has seen its arguments."""


@pytest.fixture
def sampler_arguments(monkeypatch):
    seen: dict = {}

    def fake(model, **kwargs):
        seen.clear()
        seen.update(kwargs)
        raise _Sampled

    monkeypatch.setattr(_nutpie, "sample_nutpie", fake)
    return seen


@pytest.mark.parametrize(
    ("cls", "default"),
    [(bm.GaussianMixture, 0.9), (bm.PoissonMixture, 0.9), (bm.StudentTMixture, 0.95)],
)
def test_the_sampler_gets_the_familys_target_accept_unless_fit_is_given_one(
    cls, default, sampler_arguments, rng
):
    X = np.abs(np.round(rng.normal(5.0, 2.0, size=(60, 1))))
    settings = {"draws": 5, "tune": 5, "chains": 1, "progressbar": False}
    with pytest.raises(_Sampled):
        cls(n_components=2, random_state=0).fit(X, **settings)
    assert sampler_arguments["target_accept"] == default
    with pytest.raises(_Sampled):
        cls(n_components=2, random_state=0).fit(X, target_accept=0.8, **settings)
    assert sampler_arguments["target_accept"] == 0.8


def test_a_target_accept_outside_zero_one_fails_before_any_work(sampler_arguments, rng):
    X = rng.normal(size=(40, 1))
    with pytest.raises(InvalidParameterError, match="target_accept"):
        bm.StudentTMixture(n_components=2).fit(X, target_accept=1.5)
    assert not sampler_arguments
