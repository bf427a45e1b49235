"""bayesmix: Bayesian mixture models on PyMC, with exact EM and ArviZ results.

Examples
--------
>>> import bayesmix as bm
>>> X = bm.datasets.load_faithful()
>>> gm = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em")
>>> gm.idata.attrs["inference_method"]
'em'
"""

from importlib.metadata import PackageNotFoundError, version

from bayesmix import datasets
from bayesmix._discrete import BernoulliMixture, PoissonMixture
from bayesmix._gaussian import GaussianMixture
from bayesmix._student_t import StudentTMixture
from bayesmix.compare import compare_fits
from bayesmix.exceptions import (
    ConvergenceWarning,
    DataError,
    NotFittedError,
    PriorError,
    SamplerWarning,
)
from bayesmix.io import load
from bayesmix.plots import (
    plot_compare,
    plot_components,
    plot_ppc,
    plot_rank,
    plot_responsibilities,
    plot_trace,
)
from bayesmix.priors import Prior
from bayesmix.report import write_report
from bayesmix.selection import (
    nonempty_components,
    overfitted_mixture,
    plot_select_k,
    select_k,
)

try:
    __version__ = version("bayesmix")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "BernoulliMixture",
    "ConvergenceWarning",
    "DataError",
    "GaussianMixture",
    "NotFittedError",
    "PoissonMixture",
    "Prior",
    "PriorError",
    "SamplerWarning",
    "StudentTMixture",
    "__version__",
    "compare_fits",
    "datasets",
    "load",
    "nonempty_components",
    "overfitted_mixture",
    "plot_compare",
    "plot_components",
    "plot_ppc",
    "plot_rank",
    "plot_responsibilities",
    "plot_select_k",
    "plot_trace",
    "select_k",
    "write_report",
]
