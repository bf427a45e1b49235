"""Module paths users may have imported keep working for one release, with a warning."""

from __future__ import annotations

import importlib

import pytest

from bayesmix.exceptions import BayesmixDeprecationWarning


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("bayesmix.em", "fit_em", "bayesmix.families.gaussian.em"),
        ("bayesmix.em", "EMResult", "bayesmix.families.gaussian.em"),
        ("bayesmix.em", "kmeans_plusplus", "bayesmix.families.gaussian.em"),
        ("bayesmix.em_families", "fit_poisson_em", "bayesmix.families.poisson"),
        ("bayesmix.em_families", "fit_bernoulli_em", "bayesmix.families.bernoulli"),
        ("bayesmix.em_families", "fit_student_t_em", "bayesmix.families.student_t"),
        ("bayesmix.em_families", "MixtureEMResult", "bayesmix.em.loop"),
    ],
)
def test_old_paths_resolve_to_the_new_objects_with_a_deprecation_warning(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(BayesmixDeprecationWarning, match=rf"{old}\.{name} moved to {new}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)


def test_unknown_names_are_still_attribute_errors():
    import bayesmix.em

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bayesmix.em.nope  # noqa: B018
