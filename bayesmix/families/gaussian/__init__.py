"""The Gaussian family: model, densities, EM steps and its two numba kernels.

* :mod:`.model`: :class:`GaussianMixture` (priors, the PyMC model, hooks);
* :mod:`.densities`: the NumPy component density, parameter count and flattening;
* :mod:`.em`: exact EM (E/M steps, mclust's conjugate prior, :func:`~.em.fit_em`);
* :mod:`._em_kernels`: the fused numba EM pass and pointwise density;
* :mod:`._nuts_kernel`: the fused numba log density + gradient that nutpie samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bayesmix.families.gaussian.model import GaussianMixture

__all__ = ["GaussianMixture"]


def __getattr__(name: str) -> Any:
    if name == "GaussianMixture":
        from bayesmix.families.gaussian.model import GaussianMixture

        return GaussianMixture
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
