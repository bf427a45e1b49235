"""Prior specifications for the random variables of a mixture model.

A :class:`Prior` names a PyMC distribution and its parameters. Models merge the
priors a user passes over data-scaled, weakly-informative defaults; the merged
result is what the model uses and is stored on the fitted model as ``priors_``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pymc as pm

from bayesmix.exceptions import PriorError

__all__ = ["SCALE_PRIORS", "Prior", "resolve_priors", "stored_prior"]

#: The prior families of a positive scale (a standard deviation) that every model accepts.
SCALE_PRIORS = frozenset(
    {
        "HalfNormal",
        "HalfStudentT",
        "HalfCauchy",
        "Exponential",
        "Gamma",
        "InverseGamma",
        "LogNormal",
    }
)

# Parameters that must be strictly positive wherever they appear.
_POSITIVE_PARAMS = frozenset({"sigma", "tau", "eta", "a", "lam", "alpha", "beta", "nu"})
# Parameters that the model sets from its own structure; a user may not pass them.
_STRUCTURAL_PARAMS = frozenset({"n", "shape", "size", "dims", "observed", "transform", "initval"})
# Parameters the model supplies when a prior leaves them out (create_variable, the LKJ
# size), given to PyMC when checking that a prior can be built.
_MODEL_SUPPLIED: dict[str, dict[str, Any]] = {
    "Dirichlet": {"a": np.asarray(1.0)},
    "LKJCorr": {"n": 2},
    "ZeroSumNormal": {"support_shape": (2,)},
}
# Parameters that PyMC takes only as scalars (not broadcast to the variable's shape).
_SCALAR_PARAMS: dict[str, frozenset[str]] = {"LKJCorr": frozenset({"eta"})}


def _jsonable(value: Any) -> Any:
    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else array.tolist()


class Prior:
    """A prior distribution for one random variable of a mixture model.

    Parameters
    ----------
    distribution : str
        Name of a PyMC distribution, for example ``"Normal"`` or ``"HalfNormal"``.
    **params : float or array-like
        The distribution's parameters. Arrays must broadcast against the shape of
        the variable they are used for (for ``means``: ``(n_components,
        n_features)``).

    See Also
    --------
    bayesmix.GaussianMixture : lists the random variables whose priors can be set.

    Examples
    --------
    >>> import bayesmix as bm
    >>> p = bm.Prior("Normal", mu=0.0, sigma=5.0)
    >>> p
    Prior('Normal', mu=0.0, sigma=5.0)
    >>> bm.Prior.from_dict(p.to_dict()) == p
    True
    """

    __slots__ = ("_distribution", "_params")

    def __init__(self, distribution: str, /, **params: Any) -> None:
        object.__setattr__(self, "_distribution", distribution)
        object.__setattr__(self, "_params", MappingProxyType(dict(params)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Prior is immutable; build a new Prior instead.")

    @property
    def distribution(self) -> str:
        """Name of the PyMC distribution."""
        return self._distribution

    @property
    def params(self) -> Mapping[str, Any]:
        """Read-only mapping of the distribution's parameters."""
        return self._params

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self._params.items())
        return f"Prior({self._distribution!r}{', ' if args else ''}{args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prior):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # parameters may be arrays

    def __reduce__(self) -> tuple[Any, tuple[str, dict[str, Any]]]:
        # Pickling and copy.deepcopy rebuild through the constructor (slots, read-only).
        return (_rebuild_prior, (self._distribution, dict(self._params)))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description, the inverse of :meth:`from_dict`."""
        return {
            "distribution": self._distribution,
            "params": {key: _jsonable(value) for key, value in self._params.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prior:
        """Rebuild a prior from the output of :meth:`to_dict`."""
        return cls(data["distribution"], **dict(data["params"]))

    def problems(
        self,
        allowed: frozenset[str],
        *,
        shape: tuple[int, ...] | None = None,
        dims: tuple[str, ...] | None = None,
    ) -> list[str]:
        """List what is wrong with this prior for a variable allowing ``allowed`` distributions.

        Parameters
        ----------
        allowed : frozenset of str
            The PyMC distributions the variable accepts.
        shape : tuple of int, optional
            The variable's shape; when given, every parameter must broadcast to it (and
            those PyMC takes only as scalars, such as ``LKJCorr``'s ``eta``, be scalars).
        dims : tuple of str, optional
            The names of the variable's dims (``("component", "feature")``), for the
            messages.

        Returns
        -------
        list of str
            One sentence per problem; empty when the prior is valid.
        """
        if not isinstance(self._distribution, str) or self._distribution not in allowed:
            return [
                f"distribution {self._distribution!r} is not supported here; "
                f"expected one of {sorted(allowed)}"
            ]
        signature = inspect.signature(getattr(pm, self._distribution).dist)
        known = (
            {
                name
                for name, par in signature.parameters.items()
                if par.kind in (par.POSITIONAL_OR_KEYWORD, par.KEYWORD_ONLY)
            }
            - _STRUCTURAL_PARAMS
            - {"cls"}
        )
        found = []
        for key, value in self._params.items():
            if key not in known:
                found.append(
                    f"unknown parameter {key!r} for {self._distribution}; "
                    f"expected some of {sorted(known)}"
                )
                continue
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                found.append(f"parameter {key!r} must be numeric; got {value!r}")
                continue
            if not np.all(np.isfinite(array)):
                found.append(f"parameter {key!r} must be finite; got {value!r}")
            elif key in _POSITIVE_PARAMS and not np.all(array > 0):
                found.append(f"parameter {key!r} must be > 0; got {value!r}")
            if shape is not None:
                found.extend(self._shape_problems(key, array.shape, tuple(shape), dims))
        if not found:
            found.extend(self._parametrisation_problems())
        return found

    def _parametrisation_problems(self) -> list[str]:
        """Say why PyMC cannot build the distribution from these parameters, if it cannot.

        A required parameter left out (``HalfStudentT`` without ``nu``) or a combination
        PyMC refuses would otherwise pass an EM fit, which does not use the priors, and
        fail when the PyMC model is built (found by fuzzing).
        """
        params = {key: np.asarray(value, dtype=np.float64) for key, value in self._params.items()}
        for key, value in _MODEL_SUPPLIED.get(self._distribution, {}).items():
            params.setdefault(key, value)
        if self._distribution == "Dirichlet" and params["a"].ndim == 0:
            params["a"] = np.full(2, params["a"])  # create_variable broadcasts it to (K,)
        try:
            getattr(pm, self._distribution).dist(**params)
        except (TypeError, ValueError) as err:
            given = ", ".join(self._params) or "no parameters"
            return [f"PyMC cannot build {self._distribution} from {given}: {err}"]
        return []

    def _shape_problems(
        self,
        key: str,
        param_shape: tuple[int, ...],
        shape: tuple[int, ...],
        dims: tuple[str, ...] | None = None,
    ) -> list[str]:
        """Problems of parameter ``key`` (of shape ``param_shape``) on a variable of ``shape``."""
        if key in _SCALAR_PARAMS.get(self._distribution, frozenset()):
            if param_shape:
                return [
                    f"parameter {key!r} of {self._distribution} must be a scalar; got an "
                    f"array of shape {param_shape}"
                ]
            return []
        try:
            fits = np.broadcast_shapes(param_shape, shape) == shape
        except ValueError:
            fits = False
        if fits:
            return []
        named = f" ({', '.join(dims)})" if dims else ""
        return [
            f"parameter {key!r} has shape {param_shape}, which does not broadcast to the "
            f"variable's shape {shape}{named}; pass a scalar or an array of a shape that does"
        ]

    def create_variable(self, name: str, *, shape: tuple[int, ...], **kwargs: Any) -> Any:
        """Register this prior as the PyMC random variable ``name`` in the current model.

        Parameters
        ----------
        name : str
            Name of the random variable.
        shape : tuple of int
            Shape of the variable. Parameters are broadcast to it (for a Dirichlet, the
            concentration ``a`` is broadcast to ``shape``).
        **kwargs
            Passed on to the PyMC distribution (``dims``, ``transform``, ``initval``,
            structural parameters such as ``n`` for ``LKJCorr``).

        Returns
        -------
        pytensor.tensor.TensorVariable
            The random variable.
        """
        params = {key: np.asarray(value, dtype=np.float64) for key, value in self._params.items()}
        if self._distribution == "Dirichlet":
            params["a"] = np.broadcast_to(params.get("a", 1.0), shape).copy()
        try:
            return getattr(pm, self._distribution)(name, **params, shape=shape, **kwargs)
        except ValueError as err:
            raise PriorError(
                f"prior for {name!r} ({self!r}) does not fit a variable of shape {shape}: {err}. "
                "Pass scalar parameters or arrays that broadcast to that shape."
            ) from err


def resolve_priors(
    defaults: Mapping[str, Prior],
    user: Mapping[str, Prior | Mapping[str, Any]] | None,
    allowed: Mapping[str, frozenset[str]],
    *,
    dims: Mapping[str, tuple[tuple[int, ...], tuple[str, ...]]] | None = None,
) -> dict[str, Prior]:
    """Merge user priors over defaults, reporting every bad key in one :class:`PriorError`.

    Parameters
    ----------
    defaults : mapping of str to Prior
        The model's default prior for each random variable.
    user : mapping of str to Prior or dict, or None
        The user's priors; dicts in the :meth:`Prior.to_dict` form are accepted. Not
        modified.
    allowed : mapping of str to frozenset of str
        The distributions allowed for each random variable.
    dims : mapping of str to (shape, dim names), optional
        The shape of each random variable and the names of its dims: every parameter of
        a user's prior must broadcast to it (``mu`` of ``means`` to ``(n_components,
        n_features)``), checked here so that a wrong shape is named before any model is
        built, not met as a broadcasting error deep inside PyMC or EM.

    Returns
    -------
    dict of str to Prior
        A new dict: the defaults with the user's priors laid over them.

    Raises
    ------
    bayesmix.exceptions.PriorError
        Listing every unknown key and every invalid prior at once.
    """
    if user is None:
        user = {}  # a mapping otherwise: the model's parameter constraints say so
    problems = []
    merged = dict(defaults)
    for key, value in user.items():
        if key not in defaults:
            close = [name for name in defaults if name.startswith(str(key)[:3])]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{key!r}: not a random variable of this model{hint}")
            continue
        prior = Prior.from_dict(value) if isinstance(value, Mapping) else value
        if not isinstance(prior, Prior):
            problems.append(f"{key!r}: expected a bayesmix.Prior, got {type(value).__name__}")
            continue
        shape, names = (None, None) if dims is None or key not in dims else dims[key]
        problems.extend(
            f"{key!r}: {text}" for text in prior.problems(allowed[key], shape=shape, dims=names)
        )
        merged[key] = prior
    if problems:
        raise PriorError(
            "invalid priors:\n  - "
            + "\n  - ".join(problems)
            + f"\nValid variable names for this model: {sorted(defaults)}."
        )
    return merged


def stored_prior(value: Any) -> Prior:
    """Rebuild a prior from its stored form (the output of :meth:`Prior.to_dict`), strictly.

    Unlike :meth:`Prior.from_dict`, the form itself is checked: a mapping with exactly the
    keys ``distribution`` (a string) and ``params`` (a mapping of parameter names to
    numbers or nested lists of numbers). Whether the distribution and its parameters suit
    a variable is :meth:`Prior.problems`.

    Parameters
    ----------
    value : Any
        What a file holds for one prior.

    Returns
    -------
    Prior

    Raises
    ------
    bayesmix.exceptions.PriorError
        Saying what was received and what is expected.
    """
    expected = '{"distribution": "<PyMC distribution>", "params": {"<name>": <number(s)>}}'
    if not isinstance(value, Mapping) or set(value) != {"distribution", "params"}:
        received = sorted(map(str, value)) if isinstance(value, Mapping) else type(value).__name__
        raise PriorError(f"expected a prior of the form {expected}; got {received!r}")
    distribution, params = value["distribution"], value["params"]
    if not isinstance(distribution, str):
        raise PriorError(
            f"the distribution must be the name of a PyMC distribution; got {distribution!r}"
        )
    if not isinstance(params, Mapping) or not all(isinstance(key, str) for key in params):
        raise PriorError(f"the parameters must be a mapping of names to numbers; got {params!r}")
    for key, param in params.items():
        try:
            kind = np.asarray(param).dtype.kind
        except ValueError:  # a ragged nested list
            kind = "O"
        if kind not in "iuf":
            raise PriorError(
                f"parameter {key!r} must be a number or a (nested) list of numbers; got {param!r}"
            )
    return Prior(distribution, **params)


def _rebuild_prior(distribution: str, params: dict[str, Any]) -> Prior:
    return Prior(distribution, **params)
