"""Validation of user input, done in ``fit`` before any model is built or sampled."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from bayesmix._numeric import column_ranges
from bayesmix.exceptions import DataError, DataTypeError, DataWarning

__all__ = [
    "MixtureData",
    "check_data",
    "check_enough_samples",
    "check_sample_weight",
    "check_values",
    "suspicious_columns",
]

# Warnings point at the first frame outside the package (the user's call).
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Fewer rows than this: no opinion on what a column looks like.
MIN_ROWS_FOR_COLUMN_CHECKS = 10


@dataclass(frozen=True)
class MixtureData:
    """Validated data: a float64 copy of the values plus the labels of both axes."""

    values: np.ndarray  # (n_samples, n_features), float64, a copy
    obs: np.ndarray  # (n_samples,) labels of the rows (the DataFrame index or 0..n-1)
    features: list[str]  # column names (or "x0", "x1", ... for arrays)
    # (n_samples,) non-negative finite frequency / importance weights, or None (all 1).
    sample_weight: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return self.values.shape[0]

    @property
    def n_features(self) -> int:
        """Number of columns."""
        return self.values.shape[1]


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray | None:
    """Return ``sample_weight`` as a float64 copy of shape (n_samples,), or None.

    Frequency (or importance) weights: finite, non-negative, not all zero. A pandas
    Series is taken by position, as the rows of ``X``.

    Raises
    ------
    DataError
        When the weights have the wrong length, are not numbers, are negative or
        non-finite, or are all zero.
    """
    if sample_weight is None:
        return None
    try:
        w = np.array(sample_weight, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"sample_weight must be numbers (one non-negative weight per row of X); got "
            f"{type(sample_weight).__name__} that cannot be read as floats ({err})."
        ) from None
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise DataError(
            f"sample_weight must have one weight per row of X ({n_samples}); got shape "
            f"{w.shape}. Pass a 1-D array of length {n_samples}."
        )
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"sample_weight must be finite and non-negative; {int(bad.sum())} entries are "
            f"not, the first {w[first]!r} at row {first}. Drop those rows or fix the weights."
        )
    if not w.sum() > 0:
        raise DataError(
            "sample_weight is zero for every row: there is nothing to fit. Pass positive "
            "weights (frequency weights: 1 for a row seen once, 2 for twice, ...)."
        )
    return w


def suspicious_columns(
    values: np.ndarray, features: list[str], n_components: Iterable[int]
) -> list[str]:
    """Name the columns that look like row identifiers or component labels, not features.

    Two patterns, each found in time linear in the size of the data (no sorting):

    - a column that is an exact function of the row number: it changes by the same
      non-zero step from every row to the next (``0..N-1``, ``1..N``, a run of years,
      time stamps at a fixed interval);
    - a column of integers that takes exactly K consecutive values (``0..K-1``, ``1..K``,
      ...) for a K in ``n_components``: component labels, such as the true classes of
      simulated data. Not reported when every column does (binary items of a latent class
      model all take two values at K=2).

    Parameters
    ----------
    values : numpy.ndarray of shape (n_samples, n_features)
        The data, finite.
    features : list of str
        The column names.
    n_components : iterable of int
        The numbers of components of the fits the data are for.

    Returns
    -------
    list of str
        One message per suspicious column, naming it and saying what to do; empty when
        there is none or when there are fewer than 10 rows.
    """
    n_samples, n_features = values.shape
    if n_samples < MIN_ROWS_FOR_COLUMN_CHECKS:
        return []
    messages: dict[int, str] = {}
    steps = np.diff(values, axis=0)
    step = steps[0]
    scale = np.abs(values).max(axis=0)
    tolerance = 1e-9 * np.abs(step) + 8 * np.finfo(np.float64).eps * scale
    for j in np.flatnonzero((step != 0) & np.all(np.abs(steps - step) <= tolerance, axis=0)):
        column = values[:, j]
        messages[j] = (
            f"column {features[j]!r} changes by the same step ({step[j]:g}) from every row "
            f"to the next ({column[0]:g}, {column[1]:g}, ..., {column[-1]:g}): it is a "
            "function of the row number (an identifier, a counter, a year), not a "
            "measurement, and the mixture fits it as a feature. Drop it (or make it the "
            "DataFrame index) unless it is meant as one."
        )
    low, high = values.min(axis=0), values.max(axis=0)
    integral = np.all(values == np.rint(values), axis=0)
    for k in sorted({int(k) for k in n_components if k >= 2}):
        labels = []
        for j in np.flatnonzero(integral & (high - low == k - 1)):
            codes = (values[:, j] - low[j]).astype(np.int64)
            if np.all(np.bincount(codes, minlength=k) > 0):
                labels.append(j)
        if len(labels) == n_features:
            continue
        for j in labels:
            messages.setdefault(
                j,
                f"column {features[j]!r} takes only the {k} integer values "
                f"{low[j]:g}..{high[j]:g}, as many as there are components (K={k}): it looks "
                "like component labels (such as the true classes of simulated data), which "
                "the mixture fits as a feature. Drop it unless it is meant as one.",
            )
    return [messages[j] for j in sorted(messages)]


def check_data(
    X: Any,
    *,
    n_components: int | None = None,
    for_fit: bool = True,
    allow_bool: bool = False,
    ks: Iterable[int] | None = None,
    allow_missing: bool = False,
) -> MixtureData:
    """Validate ``X`` and return a float64 copy with its axis labels.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_samples,)
        NumPy array, pandas DataFrame or Series, or nested lists. A vector is one
        feature.
    n_components : int, optional
        When given, at least this many samples are required.
    for_fit : bool, default=True
        Reject constant columns (they make a fitted covariance singular); data passed to
        ``predict`` may have any number of rows, constant or not.
    allow_bool : bool, default=False
        Accept boolean DataFrame columns (binary data, read as 0 and 1).
    ks : iterable of int, optional
        The numbers of components of the fits to come (default: ``n_components``), for
        the label check below.
    allow_missing : bool, default=False
        Accept missing values (NaN; a model with ``missing="model"``), but not a row or a
        column with every value missing, nor infinite values.

    Returns
    -------
    MixtureData

    Raises
    ------
    bayesmix.exceptions.DataTypeError
        On sparse matrices, complex numbers and objects that are not numbers (a
        ``DataError`` that is also a ``TypeError``).
    bayesmix.exceptions.DataError
        On non-numeric columns, repeated column names (compared as strings: ``1`` and
        ``"1"`` both name feature ``"1"``), wrong dimensionality, empty input (no rows or no
        columns), NaN or inf, constant columns, or fewer samples than components.

    Warns
    -----
    bayesmix.exceptions.DataWarning
        For a fit (``for_fit`` and ``n_components`` given) of a DataFrame or Series: one
        per column that looks like a row identifier or component labels
        (:func:`suspicious_columns`). Arrays have no column names to mistake.
    """
    named = isinstance(X, pd.DataFrame | pd.Series)
    _check_dense_real(X)
    if isinstance(X, pd.Series):
        X = X.to_frame()
    if isinstance(X, pd.DataFrame):
        features = [str(c) for c in X.columns]
        repeated = sorted({name for name in features if features.count(name) > 1})
        if repeated:
            raise DataError(
                f"column names must be unique, as they name the features of the fit; "
                f"{repeated} occur more than once (as strings) in the columns {features}. "
                "Rename the columns, or drop the repeated ones."
            )
        nul = [name for name in features if "\x00" in name]
        if nul:  # NumPy strings drop a trailing NUL, netCDF cannot store one
            raise DataError(
                f"column names {nul} have a NUL character ('\\x00'), which the fit's "
                "labels cannot hold (NumPy drops it, netCDF refuses it). Rename the columns."
            )
        # By position: X[name] of a repeated name would be a DataFrame.
        bad = [
            name
            for name, dtype in zip(features, X.dtypes, strict=True)
            if not pd.api.types.is_numeric_dtype(dtype)
            or (pd.api.types.is_bool_dtype(dtype) and not allow_bool)
        ]
        if bad:
            raise DataError(
                f"columns {bad} are not numeric; this mixture needs numeric features. "
                "Drop them or encode them as numbers first."
            )
        obs = np.asarray(X.index)
        values = X.to_numpy(dtype=np.float64, copy=True)
    else:
        try:
            values = np.array(X, dtype=np.float64, copy=True)
        except TypeError as err:  # objects that are not numbers (a dict, None, ...)
            raise DataTypeError(
                f"X must be numeric array-like; could not convert {type(X).__name__} to float "
                f"({err}). Pass a numeric NumPy array or DataFrame."
            ) from None
        except ValueError as err:  # strings that are not numbers, ragged lists
            raise DataError(
                f"X must be numeric array-like; could not convert {type(X).__name__} to float "
                f"({err}). Pass a numeric NumPy array or DataFrame."
            ) from None
        if values.ndim == 1:
            values = values[:, None]
        features = [f"x{i}" for i in range(values.shape[1])] if values.ndim == 2 else []
        obs = np.arange(values.shape[0]) if values.ndim >= 1 else np.arange(0)
    if values.ndim != 2:
        raise DataError(
            f"X must be 1-D or 2-D (n_samples, n_features); got an array with {values.ndim} "
            "dimensions. Reshape it, e.g. X.reshape(len(X), -1)."
        )
    if values.shape[0] == 0:
        raise DataError(
            f"Found array with 0 sample(s) (shape={values.shape}) while a minimum of 1 is "
            "required: X is empty. Pass at least one sample."
        )
    if values.shape[1] == 0:
        raise DataError(
            f"Found array with 0 feature(s) (shape={values.shape}) while a minimum of 1 is "
            "required: X has no columns. Pass at least one feature."
        )
    check_values(values, features, allow_missing=allow_missing, columns=for_fit)
    if n_components is not None and values.shape[0] < n_components:
        raise DataError(
            f"X has {values.shape[0]} samples but n_components={n_components}; a mixture "
            "needs at least one sample per component. Use fewer components or more data."
        )
    if for_fit and values.shape[0] > 1:
        with np.errstate(over="ignore"):  # a range beyond the floats is inf, not 0
            ranges = (
                np.nanmax(values, axis=0) - np.nanmin(values, axis=0)
                if allow_missing
                else column_ranges(values)
            )
        constant = [features[j] for j in np.flatnonzero(ranges == 0)]
    else:
        constant = []
    if constant:
        raise DataError(
            f"columns {constant} are constant (zero variance); they carry no information "
            "about the components and make the covariance singular. Drop them."
        )
    if for_fit and named and n_components is not None:
        ks = [n_components] if ks is None else ks
        for message in suspicious_columns(values, features, ks):
            warnings.warn(message, DataWarning, skip_file_prefixes=(PACKAGE_DIR,))
    return MixtureData(values=values, obs=obs, features=features)


def check_values(
    values: np.ndarray,
    features: list[str],
    *,
    allow_missing: bool,
    columns: bool = True,
    data: str = "X",
    where: Callable[[int], str] | None = None,
) -> None:
    """Raise :class:`DataError` for values a mixture cannot take: NaN and inf, or missing rows.

    Without ``allow_missing`` every value must be finite. With it (``missing="model"``),
    NaN is a missing value, but infinite values, a row with every value missing and (with
    ``columns``) a column with every value missing are refused. ``data`` names the block
    of rows checked in the message (``"X"``, or a chunk of it) and ``where(i)`` its row
    ``i`` (default ``"position i"``), so that in-memory and chunked data
    (:mod:`bayesmix.dask`) get the same checks and messages.
    """
    where = where if where is not None else (lambda row: f"position {row}")
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = np.isinf(values) if allow_missing else ~finite
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        col = features[int(np.flatnonzero(bad[rows[0]])[0])]
        first = f"first at {where(int(rows[0]))}, column {col!r}"
        if allow_missing:
            raise DataError(
                f"{data} contains infinite values in {rows.size} row(s) ({first}); missing "
                "values are NaN, infinite ones are not allowed. Replace them with NaN if "
                "they stand for missing values, or drop them."
            )
        raise DataError(
            f"{data} contains NaN or infinite values in {rows.size} row(s) ({first}). Drop "
            "or impute them before fitting, or, for a mixture, pass missing='model' to "
            "integrate the missing values (NaN) out."
        )
    missing = ~finite
    empty = np.flatnonzero(missing.all(axis=1))
    if empty.size:
        raise DataError(
            f"{data} has {empty.size} row(s) with every value missing (first at "
            f"{where(int(empty[0]))}); a row must have at least one observed value. Drop "
            "those rows."
        )
    unobserved = [features[j] for j in np.flatnonzero(missing.all(axis=0))] if columns else []
    if unobserved:
        scope = "" if data == "X" else f" in {data}"
        raise DataError(
            f"columns {unobserved} have every value missing{scope}; they carry no "
            "information. Drop them."
        )


def _check_dense_real(X: Any) -> None:
    """Raise :class:`DataTypeError` for sparse matrices and complex numbers, by name.

    NumPy would densify a sparse matrix into a 0-d object array (or fail with an unrelated
    message) and silently drop the imaginary part of complex numbers.
    """
    if sparse.issparse(X):
        raise DataTypeError(
            f"X is a sparse matrix ({type(X).__name__}, shape {X.shape}): sparse data are "
            "not supported, a mixture needs every value. Pass X.toarray() (dense) if it "
            "fits in memory."
        )
    if isinstance(X, pd.DataFrame):
        complex_ = any(pd.api.types.is_complex_dtype(dtype) for dtype in X.dtypes)
    elif isinstance(X, pd.Series):
        complex_ = pd.api.types.is_complex_dtype(X.dtype)
    else:
        complex_ = np.iscomplexobj(X) if isinstance(X, np.ndarray | list | tuple) else False
    if complex_:
        raise DataTypeError(
            "Complex data not supported: X has complex values, and a mixture's features "
            "are real numbers. Pass the real and imaginary parts as separate columns "
            "(np.column_stack([X.real, X.imag])) or the moduli (np.abs(X))."
        )


def check_enough_samples(data: MixtureData, needed: int, reason: str) -> None:
    """Raise ``DataError`` when ``data`` has fewer than ``needed`` samples, saying why."""
    if data.n_samples < needed:
        raise DataError(
            f"X has {data.n_samples} samples but this model needs at least {needed} "
            f"({reason}). Use fewer components, a simpler covariance_type ('diag' or "
            "'spherical'), or more data."
        )
