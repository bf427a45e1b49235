"""What the fused targets share (internal).

nutpie's model on their C callbacks, and the layout of mixtures of independent
features. A fused target (a family's ``_nuts_target``:
:mod:`bayesmix.families.gaussian._nuts_kernel`,
:mod:`bayesmix.nuts.expfam`, :mod:`bayesmix.nuts.negbin`) describes one mixture structure:
its free variables in nutpie's order, its data (``shared_data``), its log density and
gradient in Python (``logp_dlogp``) and as C callbacks read through an int64 record
(``c_callbacks``, ``freeze``, ``record``, ``updated_data``; see
:mod:`bayesmix.nuts._nutpie_internals`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from bayesmix.nuts import _nutpie_internals
from bayesmix.nuts.laplace import Affine

__all__ = [
    "CallbackTarget",
    "IndependentFeaturesTarget",
    "distinct_rows",
    "kernel_data",
    "row_constants",
]


class CallbackTarget:
    """Mixin: nutpie's model on a fused target's C callbacks.

    A subclass sets ``_callbacks`` (a function returning the numba ``CFunc`` pair, loaded
    once) and defines ``n_dim`` and ``logp_dlogp``.
    """

    _callbacks: ClassVar[Callable[[], tuple[Any, Any]]]
    n_dim: int

    def logp_dlogp(self, x: np.ndarray, **shared: Any) -> tuple[float, np.ndarray]:
        raise NotImplementedError

    def make_logp_fn(self) -> Callable[..., tuple[float, np.ndarray]]:
        """Return nutpie's logp function ``logp(x, **shared_data) -> (logp, grad)``."""
        return lambda x, **shared: self.logp_dlogp(x, **shared)

    def c_callbacks(self) -> tuple[Any, Any]:
        """Return the C callbacks ``(logp, expand)`` (numba ``CFunc`` objects)."""
        return type(self)._callbacks()

    def nutpie_model(
        self,
        shared_data: Mapping[str, Any],
        *,
        initial_point: Callable[[Any], np.ndarray] | None = None,
        affine: Affine | None = None,
    ) -> Any:
        """Return a ``nutpie`` model on the kernel's C callbacks (no Python per gradient).

        ``shared_data`` comes from ``shared_data``; ``with_data`` on the result replaces
        any of it (new observations, new prior parameters) without compiling. With
        ``affine`` (:mod:`bayesmix.nuts.laplace`) the sampler moves in coordinates ``u``
        with ``x = affine.shift + affine.factor @ u``; ``initial_point`` then returns
        ``u``. Falls back to ``nutpie``'s public ``from_pyfunc`` (a Python call per
        gradient, about 25 us) if this nutpie lacks the internals the C path needs
        (:mod:`bayesmix.nuts._nutpie_internals`).
        """
        return _nutpie_internals.callback_model(
            self,
            shared_data,
            initial_point=initial_point or (lambda seed: np.zeros(self.n_dim)),
            affine=affine,
        )


class IndependentFeaturesTarget(CallbackTarget):
    """Mixin: the layout of a mixture whose components are independent features.

    The free variables (``free``) are the weights' simplex coordinates and parameter
    arrays of shape (K, D); a subclass has ``n_components``, ``n_features``,
    ``features`` and ``row_constant`` (``X -> c(x_n)`` or None) fields.
    """

    n_components: int
    n_features: int
    features: tuple[Any, ...]
    row_constant: Callable[[np.ndarray], np.ndarray] | None

    @property
    def free(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """``(variable, value variable, shape)`` of every free variable, in nutpie's order."""
        raise NotImplementedError

    @property
    def n_dim(self) -> int:  # type: ignore[override]
        """Length of the unconstrained vector."""
        return sum(int(np.prod(shape)) for _, _, shape in self.free)

    @property
    def dims(self) -> dict[str, tuple[str, ...]]:
        """Dims of every stored variable (as the PyMC model names them)."""
        return {
            name: ("component",) if name == "weights" else ("component", "feature")
            for name, _, _ in self.free
        }

    @property
    def stored(self) -> list[tuple[str, tuple[int, ...]]]:
        """Stored variables in the order of nutpie's PyMC path, with their shapes."""
        return [
            (name, (self.n_components,) if name == "weights" else shape)
            for name, _, shape in self.free
        ]

    @property
    def coords(self) -> dict[str, Any]:
        """Coordinates of the stored variables' dims."""
        import pandas as pd

        return {
            "component": pd.Index(np.arange(self.n_components)),
            "feature": pd.Index(list(self.features)),
        }

    def _row_const(self, X: np.ndarray) -> np.ndarray:
        """Return the rows' constants ``c(x_n)``, or (0,) when the family has none."""
        return row_constants(self.row_constant, X)


def row_constants(
    row_constant: Callable[[np.ndarray], np.ndarray] | None, X: np.ndarray
) -> np.ndarray:
    """Return the rows' constants ``c(x_n)`` as the kernels take them: (N,), or (0,) for none."""
    if row_constant is None or X.shape[0] == 0:
        return np.zeros(0)
    return np.ascontiguousarray(row_constant(X), dtype=np.float64).reshape(-1)


def kernel_data(target: Any, data: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Return a fused ``target``'s shared data for the model data ``data``.

    ``data`` holds the values of the PyMC model's ``pm.Data`` (``x_data``, and
    ``w_data`` with frequency weights); repeated rows are merged first
    (:func:`distinct_rows`), so the kernel evaluates each distinct row once.
    """
    data = distinct_rows(data)
    shared = target.shared_data(data["x_data"])
    shared.update((name, value) for name, value in data.items() if name != "x_data")
    return shared


def distinct_rows(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Merge the repeated rows of ``data["x_data"]``, summing their weights in ``w_data``.

    Every fused target's log-likelihood is ``sum_n w_n log p(x_n)``, so a row that occurs
    ``m`` times is the same as that row once with weight ``m``: the log density and its
    gradient are unchanged (up to the order of summation) and each gradient costs the
    number of distinct rows instead of N. Count data and binary items repeat a lot (a
    Poisson sample of 2,000 counts has a few dozen values; six binary items have at most
    64 patterns); continuous data do not, and are returned as they are (found from the
    first column: distinct values there mean distinct rows).

    Parameters
    ----------
    data : mapping of str to ndarray
        ``x_data`` (N, D) or (N,), and optionally ``w_data`` (N,) (size 0: no weights).

    Returns
    -------
    dict of str to ndarray
        A copy of ``data``: with the distinct rows (sorted) in ``x_data`` and their
        summed weights (the counts, without weights) in ``w_data`` when a row repeats;
        ``data``'s own arrays otherwise, and when a value is not finite.
    """
    out = dict(data)
    X = np.asarray(data["x_data"])
    rows = X.reshape(X.shape[0], -1) if X.ndim >= 1 else X
    if rows.ndim != 2 or rows.shape[0] < 2 or not np.isfinite(rows).all():
        return out
    first = np.sort(rows[:, 0])
    if rows.shape[1] == 0 or (first[1:] != first[:-1]).all():
        return out
    unique, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    if unique.shape[0] == rows.shape[0]:
        return out
    weights = data.get("w_data")
    if weights is None or np.size(weights) == 0:
        summed = counts.astype(np.float64)
    else:
        summed = np.bincount(
            inverse.reshape(-1),
            weights=np.asarray(weights, dtype=np.float64).reshape(-1),
            minlength=unique.shape[0],
        )
    out["x_data"] = np.ascontiguousarray(unique if X.ndim == 2 else unique.reshape(-1))
    out["w_data"] = summed
    return out
