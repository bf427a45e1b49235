"""Deprecated: the family EM functions moved to their families (removed in bayesmix 0.3).

``fit_poisson_em`` is in :mod:`bayesmix.families.poisson`, ``fit_bernoulli_em`` in
:mod:`bayesmix.families.bernoulli`, ``fit_student_t_em`` in
:mod:`bayesmix.families.student_t`, ``MixtureEMResult`` in :mod:`bayesmix.em.loop`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__all__: list[str] = []

_MOVED = {
    "fit_poisson_em": "bayesmix.families.poisson",
    "fit_bernoulli_em": "bayesmix.families.bernoulli",
    "fit_student_t_em": "bayesmix.families.student_t",
    "MixtureEMResult": "bayesmix.em.loop",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from bayesmix.exceptions import BayesmixDeprecationWarning

        warnings.warn(
            f"bayesmix.em_families.{name} moved to {_MOVED[name]}.{name}; the old path will "
            "be removed in bayesmix 0.3.",
            BayesmixDeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
