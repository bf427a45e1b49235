"""The mixture families: one module each, and the one registry of them.

``FAMILIES`` maps a family's registry name (the CLI's ``--family``) to its model class.
It is read by :func:`bayesmix.load`, the command line and :func:`bayesmix.select_k`; a
new family is one module under ``bayesmix/families/`` plus one line in ``_REGISTRY``.
Classes are imported on first access, so ``import bayesmix`` and ``bayesmix --help`` do
not import PyMC.

Examples
--------
>>> from bayesmix.families import FAMILIES
>>> sorted(FAMILIES)
['bernoulli', 'gaussian', 'negative-binomial', 'poisson', 'student-t']
>>> FAMILIES["poisson"].__name__
'PoissonMixture'
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["FAMILIES", "class_named"]

# registry name -> (module, class name): the one list of families.
_REGISTRY: dict[str, tuple[str, str]] = {
    "gaussian": ("bayesmix.families.gaussian", "GaussianMixture"),
    "student-t": ("bayesmix.families.student_t", "StudentTMixture"),
    "poisson": ("bayesmix.families.poisson", "PoissonMixture"),
    "bernoulli": ("bayesmix.families.bernoulli", "BernoulliMixture"),
    "negative-binomial": ("bayesmix.families.negative_binomial", "NegativeBinomialMixture"),
}


class _Registry(Mapping[str, type]):
    """Read-only mapping of family names to model classes, imported on first access."""

    def __getitem__(self, name: str) -> type:
        if name not in _REGISTRY:
            raise KeyError(
                f"no mixture family named {name!r}; the families are {sorted(_REGISTRY)}."
            )
        module, attr = _REGISTRY[name]
        return getattr(importlib.import_module(module), attr)

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return f"FAMILIES({sorted(_REGISTRY)})"

    def class_names(self) -> dict[str, str]:
        """Return ``{class name: registry name}`` without importing any family."""
        return {attr: name for name, (_, attr) in _REGISTRY.items()}


FAMILIES = _Registry()


# Model classes that are not families but read them from the registry: loaded by name.
_MODELS = {"MixtureRegression": "bayesmix.regression"}


def class_named(class_name: str) -> Any:
    """Return the registered model class called ``class_name``, or None."""
    if class_name in _MODELS:
        return getattr(importlib.import_module(_MODELS[class_name]), class_name)
    name = FAMILIES.class_names().get(class_name)
    return None if name is None else FAMILIES[name]
