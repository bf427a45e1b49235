"""bayesmix: Bayesian mixture models on PyMC, with exact EM and ArviZ results.

Examples
--------
>>> import bayesmix as bm
>>> X = bm.datasets.load_faithful()
>>> gm = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em")
>>> gm.idata.attrs["inference_method"]
'em'
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from bayesmix.exceptions import (
    ConvergenceWarning,
    DataError,
    DataWarning,
    NotFittedError,
    PriorError,
    SamplerWarning,
)

if TYPE_CHECKING:
    from bayesmix import datasets
    from bayesmix.compare import compare_fits
    from bayesmix.families.bernoulli import BernoulliMixture as BernoulliMixture
    from bayesmix.families.gaussian.model import GaussianMixture as GaussianMixture
    from bayesmix.families.poisson import PoissonMixture as PoissonMixture
    from bayesmix.families.student_t import StudentTMixture as StudentTMixture
    from bayesmix.io import load
    from bayesmix.plots import (
        plot_compare,
        plot_components,
        plot_concomitant,
        plot_ppc,
        plot_rank,
        plot_regression,
        plot_responsibilities,
        plot_trace,
    )
    from bayesmix.priors import Prior
    from bayesmix.regression import MixtureRegression
    from bayesmix.report import write_report
    from bayesmix.selection import (
        nonempty_components,
        overfitted_mixture,
        plot_select_k,
        select_k,
    )

# The public names and the modules that define them, imported on first use (PEP 562):
# importing PyMC, ArviZ and matplotlib takes seconds, which ``import bayesmix``, the
# exceptions and ``bayesmix --help`` do not need.
_LAZY = {
    "compare_fits": "bayesmix.compare",
    "load": "bayesmix.io",
    "plot_compare": "bayesmix.plots",
    "plot_components": "bayesmix.plots",
    "plot_concomitant": "bayesmix.plots",
    "plot_ppc": "bayesmix.plots",
    "plot_rank": "bayesmix.plots",
    "plot_regression": "bayesmix.plots",
    "plot_responsibilities": "bayesmix.plots",
    "plot_trace": "bayesmix.plots",
    "Prior": "bayesmix.priors",
    "MixtureRegression": "bayesmix.regression",
    "write_report": "bayesmix.report",
    "nonempty_components": "bayesmix.selection",
    "overfitted_mixture": "bayesmix.selection",
    "plot_select_k": "bayesmix.selection",
    "select_k": "bayesmix.selection",
}
_SUBMODULES = ("datasets",)


def _family_classes() -> dict[str, str]:
    """``{class name: module}`` of every registered family (bayesmix.families.FAMILIES)."""
    from bayesmix.families import _REGISTRY

    return {attr: module for module, attr in _REGISTRY.values()}


def __getattr__(name: str) -> Any:
    if name in _family_classes():
        value = getattr(importlib.import_module(_family_classes()[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"bayesmix.{name}")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'bayesmix' has no attribute {name!r}")
    globals()[name] = value  # later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


try:
    __version__ = version("bayesmix")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DataWarning",
    "MixtureRegression",
    "NotFittedError",
    "Prior",
    "PriorError",
    "SamplerWarning",
    "__version__",
    "compare_fits",
    "datasets",
    "load",
    "nonempty_components",
    "overfitted_mixture",
    "plot_compare",
    "plot_components",
    "plot_concomitant",
    "plot_ppc",
    "plot_rank",
    "plot_regression",
    "plot_responsibilities",
    "plot_select_k",
    "plot_trace",
    "select_k",
    "write_report",
]
# Every registered family's model class is public (a new family is one registry line).
__all__ = sorted([*__all__, *_family_classes()])
