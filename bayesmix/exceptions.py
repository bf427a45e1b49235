"""Exceptions and warnings raised by bayesmix.

Every error message says what was received, what was expected and what to try.
"""

from __future__ import annotations

__all__ = [
    "BayesmixDeprecationWarning",
    "BayesmixError",
    "ConvergenceWarning",
    "DataError",
    "DataTypeError",
    "DataWarning",
    "FitError",
    "InvalidParameterError",
    "LoadError",
    "NotFittedError",
    "PriorError",
    "SamplerWarning",
]


class BayesmixError(Exception):
    """Base class of every error raised by bayesmix."""


class DataError(BayesmixError, ValueError):
    """The data passed to a model cannot be used (shape, missing values, dtype, size).

    Also raised by ``predict_proba`` / ``predict`` for rows whose responsibilities are
    undefined: rows that every component gives probability zero (a count where every
    fitted rate of its feature is 0, an item answer every class excludes), named by
    their positions in ``X``.
    """


class DataTypeError(DataError, TypeError):
    """The data are of a type that cannot be read as real numbers.

    Sparse matrices, complex numbers and objects that are not numbers (a ``dict`` in an
    object array). A :class:`DataError` and, as NumPy's and scikit-learn's errors for
    such input are, a ``TypeError``.
    """


class InvalidParameterError(BayesmixError, ValueError):
    """A constructor or ``fit`` argument has an invalid value or an unknown option."""


class LoadError(BayesmixError, ValueError):
    """A file cannot be loaded as a bayesmix fit (not a fit, or a fit of another class)."""


class PriorError(BayesmixError, ValueError):
    """A prior specification is invalid; the message lists every bad key at once."""


class FitError(BayesmixError, RuntimeError):
    """A fit failed numerically (e.g. a singular covariance); the message says what to change."""


class NotFittedError(BayesmixError, ValueError, AttributeError):
    """A fitted quantity was requested from a model that has not been fitted: call ``fit`` first.

    A ``ValueError`` and an ``AttributeError``, as scikit-learn's ``NotFittedError`` is
    (``hasattr(model, "weights_")`` is False before ``fit``); it is not scikit-learn's
    class, which bayesmix does not import.
    """


class ConvergenceWarning(UserWarning):
    """EM stopped before its tolerance was reached, or a chain collapsed a component."""


class DataWarning(UserWarning):
    """The data can be fitted but look wrong: e.g. a column of row numbers or of labels.

    A column that is a function of the row number (an identifier, a counter, a year) or
    that takes as many integer values as there are components (component labels, such as
    the true classes of simulated data) is fitted as a feature like any other; drop it
    unless it is meant as one.
    """


class SamplerWarning(UserWarning):
    """MCMC diagnostics (divergences, R-hat, ESS) say the posterior draws need attention."""


class BayesmixDeprecationWarning(DeprecationWarning):
    """A bayesmix feature is deprecated."""
