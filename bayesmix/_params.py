"""Declarative parameter constraints, checked once per call before any work.

scikit-learn's ``_parameter_constraints`` pattern: an estimator class (or a public
function, through :func:`validated`) declares, for every argument, the values it
accepts, and one function, :func:`validate_params`, checks them all and raises
:class:`~bayesmix.exceptions.InvalidParameterError` naming the parameter, the value
received and the values expected, with a hint. A declaration is a list whose entries
are alternatives (the value must satisfy one of them):

- a :class:`Constraint`: :class:`Interval`, :class:`Options`, :class:`Satisfies`;
- ``None``: the value ``None``;
- ``"boolean"``: ``True`` or ``False`` (Python's or NumPy's);
- ``"no_validation"``: checked elsewhere (data, sample weights; the priors against the
  data by :func:`bayesmix.priors.resolve_priors`);
- a type (``dict``, ``str``, :class:`os.PathLike`, any ABC): an instance of it;

plus at most one :class:`Hint`, the sentence that says what to try (by default the
parameter's default value, or the closest option to a misspelt string).

Examples
--------
>>> from numbers import Integral
>>> from bayesmix._params import Interval, Options, validate_params
>>> constraints = {"n": [Interval(Integral, 1, None)], "kind": [Options("a", "b")]}
>>> validate_params(constraints, {"n": 3, "kind": "a"}, "f")
>>> validate_params(constraints, {"n": 3, "kind": "c"}, "f")
Traceback (most recent call last):
  ...
bayesmix.exceptions.InvalidParameterError: f: kind must be one of ['a', 'b']; got 'c'.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import reprlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from bayesmix.exceptions import InvalidParameterError

__all__ = [
    "HDI_PROB",
    "POSITIVE_INT",
    "SEED",
    "TARGET_ACCEPT",
    "Constraint",
    "Hint",
    "Interval",
    "Options",
    "Satisfies",
    "validate_params",
    "validated",
]

_NO_DEFAULT = inspect.Parameter.empty
_repr = reprlib.Repr(maxstring=60, maxother=60, maxlist=6, maxtuple=6, maxdict=4)


class Constraint(ABC):
    """A set of accepted values, with a description that completes "must be ..."."""

    @abstractmethod
    def is_satisfied_by(self, value: Any) -> bool:
        """Return whether ``value`` is accepted."""

    @abstractmethod
    def __str__(self) -> str:
        """Describe the accepted values: ``"an int >= 1"``, ``"one of ['a', 'b']"``."""


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


class Interval(Constraint):
    """Numbers of a type in an interval; reals are finite unless a bound says otherwise.

    Parameters
    ----------
    kind : {numbers.Integral, numbers.Real}
        ``Integral``: Python and NumPy integers (not booleans). ``Real``: integers and
        floats (Python or NumPy, not booleans, not NaN).
    low, high : float or None
        The bounds; ``None`` is unbounded on that side.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds belong to the interval.
    """

    def __init__(
        self, kind: type, low: float | None, high: float | None, *, closed: str = "both"
    ) -> None:
        if kind not in (Integral, Real):
            raise TypeError(f"kind must be numbers.Integral or numbers.Real; got {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be 'both', 'left', 'right' or 'neither'; got {closed!r}")
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def is_satisfied_by(self, value: Any) -> bool:
        """Return whether ``value`` is a number of the kind, inside the interval."""
        if _is_bool(value) or not isinstance(value, self.kind):
            return False
        if self.kind is Real and not math.isfinite(value):
            return False
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.low is not None and not (value >= self.low if left else value > self.low):
            return False
        return self.high is None or bool(value <= self.high if right else value < self.high)

    def __str__(self) -> str:
        noun = "an int" if self.kind is Integral else "a finite number"
        low, high = self.low, self.high
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.kind is Integral and low == 1 and left and high is None:
            return "a positive int (>= 1)"
        if self.kind is Integral and low == 0 and left and high is None:
            return "a non-negative int (>= 0)"
        if low is not None and high is None:
            return f"{noun} {'>=' if left else '>'} {low:g}"
        if low is None and high is not None:
            return f"{noun} {'<=' if right else '<'} {high:g}"
        if low is None and high is None:
            return noun
        noun = "an int" if self.kind is Integral else "a number"
        return f"{noun} in {'[' if left else '('}{low:g}, {high:g}{']' if right else ')'}"


class Options(Constraint):
    """One of a few values (strings, usually): a misspelt string gets a "Did you mean"."""

    def __init__(self, *options: Any) -> None:
        self.options = tuple(options)

    def is_satisfied_by(self, value: Any) -> bool:
        """Return whether ``value`` is one of the options (of the same type)."""
        return any(
            isinstance(value, type(option))
            and _is_bool(value) == _is_bool(option)
            and value == option
            for option in self.options
        )

    def __str__(self) -> str:
        return f"one of {list(self.options)}"

    def closest(self, value: Any) -> Any:
        """Return the option closest to a string ``value``, or None."""
        names = [option for option in self.options if isinstance(option, str)]
        if not isinstance(value, str) or not names:
            return None
        close = difflib.get_close_matches(value, names, n=1)
        if not close:
            close = [name for name in names if name.lower() == value.lower()]
        return close[0] if close else None


class Satisfies(Constraint):
    """Values for which ``predicate(value)`` is true (it may raise: not satisfied)."""

    def __init__(self, predicate: Callable[[Any], bool], description: str) -> None:
        self.predicate, self.description = predicate, description

    def is_satisfied_by(self, value: Any) -> bool:
        """Return ``predicate(value)``; False if it raises."""
        try:
            return bool(self.predicate(value))
        except (TypeError, ValueError, ArithmeticError):
            return False

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class Hint:
    """What to try, appended to the message (replaces the default-value hint)."""

    text: str


class _InstanceOf(Constraint):
    def __init__(self, kind: type) -> None:
        self.kind = kind

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, self.kind)

    def __str__(self) -> str:
        names = {dict: "a dict", str: "a string", Mapping: "a dict", type: "a class"}
        return names.get(self.kind, f"a {self.kind.__name__}")


class _NoneValue(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


class _Boolean(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return _is_bool(value)

    def __str__(self) -> str:
        return "True or False"


def _constraint(entry: Any) -> Constraint | None:
    """Return the constraint an entry of a declaration stands for (None: no validation)."""
    if isinstance(entry, Constraint):
        return entry
    if entry is None:
        return _NoneValue()
    if entry == "boolean":
        return _Boolean()
    if entry == "no_validation":
        return None
    if isinstance(entry, type):
        return _InstanceOf(entry)
    raise TypeError(f"not a parameter constraint: {entry!r}")


def _join(descriptions: list[str]) -> str:
    if len(descriptions) == 1:
        return descriptions[0]
    return ", ".join(descriptions[:-1]) + " or " + descriptions[-1]


def _received(value: Any) -> str:
    text = _repr.repr(value)
    # A string's quotes say its type; for anything else the type name says what it is.
    return text if isinstance(value, str) else f"{text} ({type(value).__name__})"


def validate_params(
    constraints: Mapping[str, list[Any]],
    values: Mapping[str, Any],
    caller: str | None,
    *,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Check every value that has a declaration; raise on the first that fits none.

    Parameters
    ----------
    constraints : mapping of str to list
        The declaration of each parameter (see the module docstring).
    values : mapping of str to object
        The values received, by parameter name; names without a declaration are not
        checked.
    caller : str or None
        The class or function the parameters are for, the start of the message
        (``"GaussianMixture"``, ``"select_k"``).
    defaults : mapping of str to object, optional
        Default values, suggested in the message when the declaration has no hint.

    Raises
    ------
    bayesmix.exceptions.InvalidParameterError
        ``"<caller>: <name> must be <expected>; got <value> (<type>). <hint>"``.
    """
    for name, declaration in constraints.items():
        if name not in values:
            continue
        value = values[name]
        hints = [entry.text for entry in declaration if isinstance(entry, Hint)]
        accepted = [_constraint(entry) for entry in declaration if not isinstance(entry, Hint)]
        if any(c is None or c.is_satisfied_by(value) for c in accepted):
            continue
        checked = [c for c in accepted if c is not None]
        expected = _join([str(c) for c in checked])
        close = [c.closest(value) for c in checked if isinstance(c, Options)]
        close = [option for option in close if option is not None]
        if close:
            hint = f" Did you mean {close[0]!r}?"
        elif hints:
            hint = f" {hints[0]}"
        elif defaults is not None and defaults.get(name, _NO_DEFAULT) is not _NO_DEFAULT:
            hint = f" Try the default, {name}={defaults[name]!r}."
        else:
            hint = ""
        prefix = f"{caller}: " if caller else ""
        raise InvalidParameterError(
            f"{prefix}{name} must be {expected}; got {_received(value)}.{hint}"
        )


def signature_defaults(func: Callable[..., Any]) -> dict[str, Any]:
    """Return the default value of every parameter of ``func`` that has one."""
    return {
        name: p.default
        for name, p in inspect.signature(func).parameters.items()
        if p.default is not _NO_DEFAULT
    }


def validated[F: Callable[..., Any]](constraints: Mapping[str, list[Any]]) -> Callable[[F], F]:
    """Return a decorator that checks a function's arguments against ``constraints``.

    The arguments are bound to the function's signature (a wrong number of arguments is
    Python's ``TypeError``, as without the decorator) and checked by
    :func:`validate_params` before the function runs. The declaration is kept on the
    function as ``_parameter_constraints``.
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        unknown = sorted(set(constraints) - set(signature.parameters))
        if unknown:
            raise TypeError(f"{func.__qualname__} has no parameters {unknown}")
        defaults = signature_defaults(func)
        first = next(iter(signature.parameters), None)
        method = first in ("self", "cls")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            caller = func.__name__
            if method:  # "GaussianMixture.fit"
                owner = bound.arguments[first]
                owner = owner if isinstance(owner, type) else type(owner)
                caller = f"{owner.__name__}.{caller}"
            validate_params(constraints, bound.arguments, caller, defaults=defaults)
            return func(*args, **kwargs)

        wrapper._parameter_constraints = constraints  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


# -- declarations shared by several classes and functions ------------------------------------

#: A count of at least one (components, restarts, iterations, draws, chains).
POSITIVE_INT: list[Any] = [Interval(Integral, 1, None)]

#: A seed: saved with a fit, so an int (or None), never a generator.
SEED: list[Any] = [
    None,
    Interval(Integral, 0, None),
    Hint(
        "Pass an int such as 0 to make fits reproducible (seeds are saved with the fit, "
        "so generators are not accepted)."
    ),
]

#: NUTS's target acceptance rate.
TARGET_ACCEPT: list[Any] = [
    Interval(Real, 0, 1, closed="neither"),
    Hint("Try 0.9, or 0.95-0.99 when there are divergences."),
]

#: The probability mass of a highest-density interval.
HDI_PROB: list[Any] = [
    Interval(Real, 0, 1, closed="neither"),
    Hint("Try 0.94 (the ArviZ default)."),
]
