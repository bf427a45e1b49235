"""Reading a data file of the command line: its dialect and its header row.

A CSV file saved by a spreadsheet in a German or French locale separates fields with
``;`` and writes ``1,5`` for one and a half; read with pandas' defaults it becomes one
column of text. A file without a header row loses its first observation to the column
names. :func:`sniff_csv` looks at the first lines of a file and says which separator and
decimal mark make its rows line up as numbers, and whether its first row looks like data;
:func:`read_data_csv` reads the file accordingly, or raises :class:`DataError` saying what
it saw and which option to pass.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from bayesmix.exceptions import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SEPARATORS", "CsvDialect", "read_data_csv", "sniff_csv"]

_log = logging.getLogger("bayesmix")

# The field separators tried, in the order preferred on a tie of equally good readings
# (a tie is refused, so the order only names them in messages).
SEPARATORS = (",", ";", "\t", "|")
SAMPLE_BYTES = 64 * 1024  # the part of the file looked at
SAMPLE_LINES = 200

_INT = re.compile(r"[+-]?\d+")
_POINT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+|\.\d+[eE][+-]?\d+)")
_COMMA = re.compile(r"[+-]?(\d+,\d*|,\d+)([eE][+-]?\d+)?")
_SPECIAL = frozenset({"nan", "inf", "-inf", "+inf"})


@dataclasses.dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written, as far as its first lines tell.

    Attributes
    ----------
    sep : str
        The field separator.
    decimal : str
        The decimal mark of its numbers, ``"."`` or ``","``.
    first_row : list of str
        The fields of its first non-blank row.
    first_row_numeric : bool
        True when every field of the first row is a number: a data row, not a header.
    """

    sep: str
    decimal: str
    first_row: list[str]
    first_row_numeric: bool


def _kind(field: str) -> str:
    """Classify a field: ``"int"``, ``"point"`` or ``"comma"`` (a decimal mark), or ``"text"``."""
    text = field.strip()
    if _INT.fullmatch(text):
        return "int"
    if _POINT.fullmatch(text) or text.lower() in _SPECIAL:
        return "point"
    if _COMMA.fullmatch(text):
        return "comma"
    return "text"


def _numeric(kind: str, decimal: str) -> bool:
    return kind == "int" or kind == ("point" if decimal == "." else "comma")


def _show(sep: str) -> str:
    return "'\\t' (tab)" if sep == "\t" else repr(sep)


def _option(sep: str) -> str:
    return "--sep tab" if sep == "\t" else f"--sep '{sep}'"


@dataclasses.dataclass(frozen=True)
class _Reading:
    """The first lines of a file split on one separator."""

    sep: str
    rows: list[list[str]]
    decimal: str  # the decimal mark its numbers use
    mixed: tuple[str, str] | None  # a field with a decimal point and one with a comma
    numeric: float  # fraction of the fields after the first row that are numbers


def _read_with(lines: list[str], sep: str, decimal: str | None) -> _Reading:
    rows = list(csv.reader(lines, delimiter=sep))
    body = rows[1:] or rows
    kinds = [(_kind(field), field.strip()) for row in body for field in row]
    point = next((text for kind, text in kinds if kind == "point"), None)
    comma = next((text for kind, text in kinds if kind == "comma"), None)
    mixed = (point, comma) if point is not None and comma is not None else None
    if decimal is None:
        decimal = "," if comma is not None and point is None else "."
    numbers = sum(_numeric(kind, decimal) for kind, _ in kinds)
    return _Reading(sep, rows, decimal, mixed, numbers / max(len(kinds), 1))


def _one_column(lines: list[str], readings: list[_Reading], decimal: str | None) -> _Reading:
    """Read a file that no separator splits evenly into several fields.

    With no separator in it, the file is one column (``1,5`` lines: with a decimal comma,
    unless the header has a comma too). Otherwise its rows are ragged: the separator that
    splits the first line into the most fields is used, and pandas says what is wrong.
    """
    used = [s for s in SEPARATORS if any(s in line for line in lines)]
    if not used:
        return _read_with(lines, ",", decimal)
    if used == [","] and decimal != ".":
        whole = _read_with(lines, ";", decimal)  # ';' is in no line: one field per line
        kinds = [_kind(row[0]) for row in whole.rows]
        body_numeric = all(kind in ("int", "comma") for kind in kinds[1:])
        header_ok = kinds[0] in ("int", "comma") or "," not in whole.rows[0][0]
        if body_numeric and "comma" in kinds and header_ok:
            return dataclasses.replace(whole, decimal=",")
    return max(readings, key=lambda r: len(r.rows[0]))


def sniff_csv(
    sample: str, *, sep: str | None = None, decimal: str | None = None, name: str = "the file"
) -> CsvDialect:
    """Tell the separator and decimal mark of a CSV file from its first lines.

    Every separator of :data:`SEPARATORS` is tried (quotes respected, blank lines
    skipped). A separator is a candidate when it splits every line into the same number
    (more than one) of fields; the decimal mark of a candidate is ``","`` when its fields
    hold numbers like ``1,5`` and none like ``1.5``. Of the candidates, the one whose
    fields after the first row are most often numbers wins: ``1,5;2,5`` splits evenly on
    both ``,`` and ``;``, but only on ``;`` into numbers. A file no separator splits
    evenly is one column (with a decimal comma when its values are like ``1,5``).
    :class:`csv.Sniffer` is not used: it prefers ``,`` whenever ``,`` splits evenly, which
    is the wrong answer for exactly the files this is for.

    Parameters
    ----------
    sample : str
        The beginning of the file (complete lines).
    sep, decimal : str, optional
        Known separator or decimal mark; only the rest is detected.
    name : str, default="the file"
        How to name the file in error messages.

    Returns
    -------
    CsvDialect

    Raises
    ------
    bayesmix.exceptions.DataError
        When the sample is empty, when two separators read the file equally well, or
        when its numbers use both decimal marks.
    """
    lines = [line for line in sample.splitlines() if line.strip()][:SAMPLE_LINES]
    if not lines:
        raise DataError(f"could not read {name} as CSV (it is empty). Pass a CSV file.")
    if sep is not None:
        reading = _read_with(lines, sep, decimal)
    else:
        readings = [_read_with(lines, s, decimal) for s in SEPARATORS]
        even = [r for r in readings if len({len(row) for row in r.rows}) == 1]
        candidates = sorted(
            (r for r in even if len(r.rows[0]) > 1), key=lambda r: r.numeric, reverse=True
        )
        if len(candidates) > 1 and candidates[0].numeric == candidates[1].numeric:
            first, second = candidates[0].sep, candidates[1].sep
            raise DataError(
                f"cannot tell the field separator of {name}: its lines split evenly on both "
                f"{_show(first)} and {_show(second)}, and neither gives more numbers "
                f"(first line {lines[0][:80]!r}). Pass the separator, e.g. {_option(first)} "
                f"or {_option(second)} (and --decimal , for decimal commas)."
            )
        reading = candidates[0] if candidates else _one_column(lines, readings, decimal)
    if reading.mixed is not None and decimal is None:
        point, comma = reading.mixed
        raise DataError(
            f"{name} has numbers with a decimal point ({point!r}) and numbers with a "
            f"decimal comma ({comma!r}) between {_show(reading.sep)} separators; one file "
            "needs one decimal mark. Fix the file, or pass --decimal . or --decimal , "
            "(numbers written the other way are then read as text)."
        )
    first_row = [field.strip() for field in reading.rows[0]]
    first_numeric = all(_numeric(_kind(field), reading.decimal) for field in first_row)
    return CsvDialect(reading.sep, reading.decimal, first_row, first_numeric)


def _sample(path: Path) -> str:
    """Return the first complete lines of ``path`` (at most :data:`SAMPLE_BYTES`) as text."""
    with path.open("rb") as handle:
        head = handle.read(SAMPLE_BYTES)
        truncated = bool(handle.read(1))
    text = head.decode("utf-8-sig", errors="replace")
    if truncated:  # the last line may be cut: leave it out
        text = text[: text.rfind("\n") + 1] or text
    return text


def read_data_csv(
    path: str | os.PathLike,
    *,
    columns: list[str] | None = None,
    header: bool | None = None,
    sep: str | None = None,
    decimal: str | None = None,
) -> pd.DataFrame:
    """Read the data columns of a CSV file, detecting its dialect (see :func:`sniff_csv`).

    Parameters
    ----------
    path : str or path-like
        The CSV file, one row per observation.
    columns : list of str, optional
        Keep only these columns (default: all).
    header : bool, optional
        ``None`` (default): the first row holds the column names and must not look like
        data (every field a number); ``True``: the first row holds the names, whatever
        they look like; ``False``: there is no header row, the columns are named ``x0``,
        ``x1``, ... (as for a NumPy array).
    sep, decimal : str, optional
        The field separator and decimal mark (``"."`` or ``","``); detected when not
        given.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    bayesmix.exceptions.DataError
        When the file is missing, empty or unreadable, when its dialect cannot be told
        (see :func:`sniff_csv`), when its first row looks like data and ``header`` is
        None, or when a requested column is missing. The message names the option to pass
        (``--no-header``, ``--header``, ``--sep``, ``--decimal``).
    """
    import pandas as pd

    file = Path(path)
    shown = repr(str(path))
    if not file.is_file():
        raise DataError(f"no such file: {shown}. Pass the path of a CSV file.")
    dialect = sniff_csv(_sample(file), sep=sep, decimal=decimal, name=shown)
    if header is None and dialect.first_row_numeric:
        raise DataError(
            f"the first row of {shown} looks like data, not column names: "
            f"{dialect.first_row[:6]}. If the file has no header row, pass --no-header (the "
            "columns are then named x0, x1, ...); if these are the column names, pass --header."
        )
    try:
        frame = pd.read_csv(
            file,
            sep=dialect.sep,
            decimal=dialect.decimal,
            header=None if header is False else 0,
            skip_blank_lines=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f"could not read {shown} as CSV with separator {_show(dialect.sep)} and "
            f"decimal {dialect.decimal!r} ({reason}). Pass --sep and --decimal if these "
            "are wrong."
        ) from None
    if header is False:
        frame.columns = [f"x{i}" for i in range(frame.shape[1])]
    _log.info(
        "read %s: %d rows x %d columns, separator %r, decimal %r",
        file,
        *frame.shape,
        dialect.sep,
        dialect.decimal,
    )
    if columns:
        missing = [name for name in columns if name not in frame.columns]
        if missing:
            raise DataError(
                f"column(s) {missing} not in {shown}; its columns are {list(frame.columns)}."
            )
        frame = frame[columns]
    return frame
