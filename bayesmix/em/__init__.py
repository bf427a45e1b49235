"""The EM engine shared by every family: the loop (:mod:`.loop`) and seeding (:mod:`.init`).

Until bayesmix 0.2, ``bayesmix.em`` was the Gaussian family's EM module; its names still
resolve here, with a :class:`~bayesmix.exceptions.BayesmixDeprecationWarning`, for one
release: import them from :mod:`bayesmix.families.gaussian.em` instead.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__all__: list[str] = []

# Names of the old ``bayesmix.em`` module, now in the Gaussian family.
_MOVED = (
    "COVARIANCE_TYPES",
    "OBJECTIVES",
    "ConjugatePrior",
    "EMResult",
    "compute_precision_cholesky",
    "default_prior",
    "e_step",
    "estimate_log_gaussian_prob",
    "fit_em",
    "full_covariances",
    "kmeans_plusplus",
    "log_prior",
    "m_step",
)
_NEW_HOME = "bayesmix.families.gaussian.em"


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"bayesmix.em.{name} moved to {_NEW_HOME}.{name}; the old path will be removed "
            f"in bayesmix 0.3. Import it as `from {_NEW_HOME} import {name}`.",
            _deprecation_warning(),
            stacklevel=2,
        )
        return getattr(importlib.import_module(_NEW_HOME), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _deprecation_warning() -> type[Warning]:
    from bayesmix.exceptions import BayesmixDeprecationWarning

    return BayesmixDeprecationWarning
