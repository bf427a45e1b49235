"""Data sets shipped with bayesmix, and the generative story of a finite mixture.

Nothing here touches the network: every data set is a file inside the package.
"""

from bayesmix.datasets._loaders import (
    load_carcinoma,
    load_co2_gnp,
    load_discoveries,
    load_faithful,
    load_galaxies,
    load_iris,
    load_patents,
    load_warpbreaks,
)
from bayesmix.datasets._simulate import make_mixture, make_mixture_chunked

__all__ = [
    "load_carcinoma",
    "load_co2_gnp",
    "load_discoveries",
    "load_faithful",
    "load_galaxies",
    "load_iris",
    "load_patents",
    "load_warpbreaks",
    "make_mixture",
    "make_mixture_chunked",
]
