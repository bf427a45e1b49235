"""Data beyond one machine's memory: Dask arrays and DataFrames, Dask-backed xarray, Zarr, Parquet.

``fit(X, method="em")`` accepts a :class:`dask.array.Array`, a Dask DataFrame, an
:class:`xarray.DataArray` backed by Dask, or the path of a Zarr array or a Parquet data set.
The data are never loaded whole: every EM iteration is one pass in which each chunk
computes its family's sufficient statistics (:mod:`bayesmix.em.chunked`, with the same
kernels as in-memory EM) and a tree reduction (fan-in :data:`SPLIT_EVERY`) adds them up;
the M-step runs on the client. The pass runs on whatever Dask scheduler is active: the
threaded one by default, ``dask.config.set(scheduler="processes")``, or a
:class:`distributed.Client` (created before the fit, or passed to it with ``with
client:``/``client.as_current()``).

Every chunk is checked in every pass as ``fit`` checks data in memory
(:func:`bayesmix._validation.check_values`: finite values, or with ``missing="model"``
NaN for a missing value but no infinite value and no row with every value missing;
non-negative finite weights; the family's own checks such as counts or 0/1); a bad value
raises :class:`~bayesmix.exceptions.DataError` naming the chunk and row. Missing values
need no other code here: the families' EM statistics integrate them out chunk by chunk
(the in-memory ``missing="model"`` EM is the same statistics over one chunk).
``predict``, ``predict_proba`` and ``score_samples`` on such input return lazy Dask
arrays with the row chunks of ``X`` (every block checked the same way); ``score``,
``bic`` and ``aic`` reduce in one pass.

Needs the optional extra ``dask`` (``pip install "bayesmix[dask]"``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayesmix.exceptions import DataError

__all__ = ["SPLIT_EVERY", "ChunkedData", "as_chunked", "is_chunked", "on_pass"]

#: Largest number of partial sums added up by one task of the tree reduction.
SPLIT_EVERY = 8

_PARQUET_SUFFIXES = (".parquet", ".pq")
# Called with the seconds of every data pass (see on_pass).
_PASS_CALLBACKS: list[Callable[[float], None]] = []
_EXTRA = 'pip install "bayesmix[dask]"'


def _import_dask():
    """Return ``(dask, dask.array)``, or raise an ImportError that names the extra."""
    try:
        import dask
        import dask.array as da
    except ImportError as err:  # pragma: no cover - the test extra installs dask
        raise ImportError(
            f"Data on Dask, in Zarr or in Parquet need the optional extra 'dask': {_EXTRA} ({err})."
        ) from err
    return dask, da


def _is_path_of_chunked_data(X: Any) -> bool:
    if not isinstance(X, str | os.PathLike):
        return False
    path = Path(os.fspath(X))
    suffix = path.suffix.lower()
    if suffix == ".zarr" or suffix in _PARQUET_SUFFIXES:
        return True
    if path.is_dir():
        return (
            (path / "zarr.json").exists()
            or (path / ".zarray").exists()
            or any(path.glob("*.parquet"))
        )
    return False


def is_chunked(X: Any) -> bool:
    """Whether ``X`` is data for the chunked path: Dask, Dask-backed xarray, Zarr or Parquet."""
    module = type(X).__module__
    if module.startswith(("dask.", "dask_expr")):
        return True
    if module.startswith("xarray.") and hasattr(X, "chunks"):
        return X.chunks is not None
    return _is_path_of_chunked_data(X)


@dataclass(frozen=True)
class ChunkedData:
    """Validated chunked data: a (n_samples, n_features) float64 Dask array and its labels.

    ``array`` has one chunk along the features; ``sample_weight`` (or None) has the row
    chunks of ``array``. Nothing is computed until a pass.
    """

    array: Any
    features: list[str]
    sample_weight: Any = None
    source: dict = field(default_factory=dict)
    # The family's check of the values, check(MixtureData) -> None or DataError naming
    # the row by its number (counts, 0/1, ...); run on every chunk of every pass.
    check_chunk: Any = None
    # True when every chunk was checked already (see ``persisted``): passes skip the checks.
    checked: bool = False
    # Whether NaN is a missing value (a model with missing="model") rather than an error.
    allow_missing: bool = False

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return int(self.array.shape[0])

    @property
    def n_features(self) -> int:
        """Number of columns."""
        return int(self.array.shape[1])

    @property
    def row_chunks(self) -> tuple[int, ...]:
        """The number of rows of every chunk."""
        return tuple(int(c) for c in self.array.chunks[0])

    @property
    def row_starts(self) -> np.ndarray:
        """First row of every chunk, and the row count at the end (``n_chunks + 1``)."""
        return np.concatenate([[0], np.cumsum(self.row_chunks)]).astype(np.int64)

    def with_check(self, check_chunk: Any) -> ChunkedData:
        """Return these data with the family's chunk check."""
        return dataclasses.replace(self, check_chunk=check_chunk)

    def persisted(self) -> ChunkedData:
        """Return these data held in memory (on the workers, with a distributed client).

        For many passes over the same data (NUTS: one per gradient): the chunks are read
        once. Every later pass skips the checks of the values, which the first pass (EM's)
        made.
        """
        dask, _ = _import_dask()
        array, weight = dask.persist(self.array, self.sample_weight)
        return dataclasses.replace(
            self, array=array, sample_weight=weight, check_chunk=None, checked=True
        )

    def data_pass(self, fn: Any, split_every: int = SPLIT_EVERY) -> dict:
        """Apply ``fn(X_chunk, w_chunk)`` to every chunk and return the sum of the results.

        One pass over the data: each chunk's result (a dictionary of arrays and floats) is
        added up by a tree of tasks with at most ``split_every`` inputs each, so the
        client receives one small dictionary. Every chunk is checked first (its values
        as in memory, valid weights, the family's check) unless the data are ``checked``.
        """
        dask, _ = _import_dask()
        blocks = self.array.to_delayed().ravel()
        weights = (
            [None] * len(blocks)
            if self.sample_weight is None
            else list(self.sample_weight.to_delayed().ravel())
        )
        starts = self.row_starts
        # Passes over checked data (NUTS: one per gradient, two chains at once) get fresh
        # keys: hashing ``fn`` each time costs time, and two identical passes in flight
        # on a distributed client would share keys that the first one releases.
        pure = not self.checked
        parts = [
            dask.delayed(_chunk_pass, pure=True)(
                fn,
                block,
                weight,
                index,
                int(starts[index]),
                self.check_chunk,
                self.features,
                self.allow_missing,
            )
            if not self.checked
            else dask.delayed(fn, pure=False)(block, weight)
            for index, (block, weight) in enumerate(zip(blocks, weights, strict=True))
        ]
        while len(parts) > 1:
            parts = [
                dask.delayed(_add, pure=pure)(*parts[i : i + split_every])
                for i in range(0, len(parts), split_every)
            ]
        started = time.perf_counter()
        (total,) = dask.compute(parts[0])
        for callback in list(_PASS_CALLBACKS):
            callback(time.perf_counter() - started)
        return total

    def rows(self, indices: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the rows at the sorted ``indices`` (all rows for None) in memory, checked.

        As a fit checks data in memory; with ``allow_missing`` a column with no observed
        value among these rows is refused too (EM's start needs its mean).
        """
        from bayesmix._validation import check_values

        dask, _ = _import_dask()
        array = self.array if indices is None else self.array[indices]
        weight = None
        if self.sample_weight is not None:
            weight = self.sample_weight if indices is None else self.sample_weight[indices]
        values, weight = dask.compute(array, weight)
        values = np.asarray(values, dtype=np.float64)
        positions = np.arange(values.shape[0]) if indices is None else indices
        check_values(
            values,
            self.features,
            allow_missing=self.allow_missing,
            data="X" if indices is None else f"the sample of {values.shape[0]} rows drawn from X",
            where=lambda row: self._where(int(positions[row])),
        )
        if weight is not None:
            weight = np.asarray(weight, dtype=np.float64)
            _check_weights(weight, lambda r: self._where(int(positions[r])))
        if self.check_chunk is not None:  # chunk by chunk, so that errors name the chunk
            starts = self.row_starts
            owner = np.searchsorted(starts, positions, side="right") - 1
            for index in np.unique(owner):
                mine = owner == index
                try:
                    self.check_chunk(_as_data(values[mine], positions[mine], self.features))
                except DataError as err:
                    raise DataError(
                        f"chunk {index} (rows {starts[index]}-{starts[index + 1] - 1}): {err}"
                    ) from err
        return values, weight

    def _where(self, row: int) -> str:
        """'chunk i (rows a-b), row r' for a global row index."""
        starts = self.row_starts
        index = int(np.searchsorted(starts, row, side="right") - 1)
        return f"chunk {index} (rows {starts[index]}-{starts[index + 1] - 1}), row {row}"

    def map_rows(self, fn: Any, n_out: int | None, dtype: Any = np.float64) -> Any:
        """Lazily apply ``fn`` to every chunk: (n_samples, n_out), or (n_samples,) for None.

        Every chunk is checked first as in :meth:`data_pass` (unless ``checked``).
        """
        array = self.array
        if not self.checked:
            fn = functools.partial(
                _checked_block, fn, self.check_chunk, self.features, self.allow_missing
            )
        if n_out is None:
            return array.map_blocks(fn, drop_axis=1, dtype=dtype)
        return array.map_blocks(fn, chunks=(array.chunks[0], (n_out,)), dtype=dtype)


def _add(*parts: dict) -> dict:
    """Sum dictionaries of arrays and floats key by key (a task of the tree reduction)."""
    total = dict(parts[0])
    for part in parts[1:]:
        for key, value in part.items():
            total[key] = total[key] + value
    return total


def _check_weights(weight: np.ndarray, where) -> None:
    bad = ~(np.isfinite(weight) & (weight >= 0.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"sample_weight at {where(row)} is {weight[row]!r}; weights must be finite and "
            "non-negative."
        )


def _as_data(values: np.ndarray, rows: np.ndarray, features: list[str]) -> Any:
    """Return the rows as the family checks take them (global row numbers as labels)."""
    from bayesmix._validation import MixtureData

    return MixtureData(values=values, obs=rows, features=features)


def _check_chunk(
    X: Any, w: Any, index: int, start: int, check, features: list[str], allow_missing: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check one chunk (its values, its weights, the family's check); return it as float64.

    The values get the checks of in-memory data
    (:func:`bayesmix._validation.check_values`; a column with no observed value is
    allowed in one chunk), and every message names the chunk and the row.
    """
    from bayesmix._validation import check_values

    X = np.asarray(X, dtype=np.float64)
    stop = start + X.shape[0] - 1
    chunk = f"chunk {index} (rows {start}-{stop})"
    check_values(
        X,
        features,
        allow_missing=allow_missing,
        columns=False,
        data=f"{chunk} of X",
        where=lambda row: f"row {start + row}",
    )
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        _check_weights(w, lambda row: f"{chunk}, row {start + row}")
    if check is not None:
        try:
            check(_as_data(X, np.arange(start, stop + 1), features))
        except DataError as err:
            raise DataError(f"{chunk}: {err}") from err
    return X, w


def _chunk_pass(
    fn, X, w, index: int, start: int, check, features: list[str], allow_missing: bool = False
) -> dict:
    """Check one chunk and return ``fn(X, w)`` (a task of :meth:`ChunkedData.data_pass`)."""
    X, w = _check_chunk(X, w, index, start, check, features, allow_missing)
    return fn(X, w)


def _checked_block(
    fn, check, features: list[str], allow_missing: bool, X: Any, block_info: Any = None
) -> Any:
    """Check one block and return ``fn(X)`` (a block of :meth:`ChunkedData.map_rows`).

    Dask passes ``block_info``: where the block lies, which the messages name.
    """
    index, start = 0, 0
    if block_info is not None and 0 in block_info:
        index = int(block_info[0]["chunk-location"][0])
        start = int(block_info[0]["array-location"][0][0])
    X, _ = _check_chunk(X, None, index, start, check, features, allow_missing)
    return fn(X)


def _layout_checksum(chunks: tuple[int, ...], n_features: int) -> str:
    """Return a short checksum of the shape and the chunk layout (recorded with the fit)."""
    text = json.dumps({"chunks": list(chunks), "n_features": n_features})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _from_dataframe(frame: Any, source: dict, allow_bool: bool) -> tuple[Any, list[str]]:
    """Return a Dask DataFrame's numeric columns as a Dask array (its row lengths computed)."""
    features = [str(c) for c in frame.columns]
    import pandas as pd

    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype) and allow_bool:
            continue
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            raise DataError(
                f"column {name!r} of {source.get('path', 'the Dask DataFrame')} has dtype "
                f"{dtype}, not a number. Select the numeric columns (df[[...]]) or encode it."
            )
    array = frame.to_dask_array(lengths=True)
    return array, features


def _check_parquet_files(path: Path) -> None:
    """Every file of a Parquet data set has the same columns and types (footers only)."""
    import pyarrow.parquet as pq

    files = sorted(path.glob("**/*.parquet")) if path.is_dir() else [path]
    reference = None
    for file in files:
        schema = pq.read_schema(file)
        columns = {name: str(schema.field(name).type) for name in schema.names}
        columns.pop("__null_dask_index__", None)
        if reference is None:
            reference = (file, columns)
            continue
        first, expected = reference
        if columns != expected:
            missing = sorted(set(expected) - set(columns))
            extra = sorted(set(columns) - set(expected))
            changed = sorted(
                name for name in set(expected) & set(columns) if expected[name] != columns[name]
            )
            raise DataError(
                f"Parquet file {str(file)!r} does not match {str(first)!r}: missing columns "
                f"{missing}, extra columns {extra}, columns of another type {changed}. All "
                "files of a data set must have the same numeric columns."
            )


def as_chunked(
    X: Any, sample_weight: Any = None, *, allow_bool: bool = False, allow_missing: bool = False
) -> ChunkedData:
    """Validate chunked input and return it as :class:`ChunkedData`.

    Nothing is computed but the row lengths of a DataFrame. ``allow_missing`` (a model
    with ``missing="model"``) lets the chunks' checks take NaN as a missing value.

    Raises
    ------
    ImportError
        Without the optional extra ``dask``.
    DataError
        Unknown chunk sizes, a non-numeric column, not 1-D or 2-D, Parquet files that do not
        match, or weights that do not align with the rows.
    """
    _, da = _import_dask()
    source: dict[str, Any] = {}
    features: list[str] | None = None
    if isinstance(X, str | os.PathLike):
        path = Path(os.fspath(X))
        if not path.exists():
            raise FileNotFoundError(f"No such Zarr array or Parquet data set: {str(path)!r}.")
        if path.suffix.lower() in _PARQUET_SUFFIXES or (
            path.is_dir() and any(path.glob("*.parquet"))
        ):
            import dask.dataframe as dd

            _check_parquet_files(path)
            source = {"kind": "parquet", "path": str(path)}
            X, features = _from_dataframe(dd.read_parquet(path), source, allow_bool)
        else:
            source = {"kind": "zarr", "path": str(path)}
            try:
                X = da.from_zarr(str(path))
            except Exception as err:
                raise DataError(
                    f"{str(path)!r} is not a Zarr array that Dask can read ({err}). Pass the "
                    "path of one array (not a group), or open it yourself with "
                    "dask.array.from_zarr."
                ) from err
    elif type(X).__module__.startswith("xarray."):
        source = {"kind": "xarray"}
        if X.ndim == 2:
            dim = X.dims[1]
            features = (
                [str(v) for v in X[dim].to_numpy()]
                if dim in X.coords
                else [f"x{i}" for i in range(X.shape[1])]
            )
        X = X.data
    elif hasattr(X, "to_dask_array"):  # a Dask DataFrame or Series
        source = {"kind": "dask.dataframe"}
        if getattr(X, "ndim", 2) == 1:
            X = X.to_frame()
        X, features = _from_dataframe(X, source, allow_bool)
    else:
        source = {"kind": "dask.array"}
    if not isinstance(X, da.Array):
        raise DataError(f"Expected chunked data, got {type(X).__name__}.")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise DataError(
            f"X must be 2-D (n_samples, n_features) or 1-D; got a Dask array of shape {X.shape}."
        )
    if any(np.isnan(c) for c in X.chunks[0]) or any(np.isnan(c) for c in X.chunks[1]):
        raise DataError(
            "X has chunks of unknown size (NaN in X.chunks), as after boolean indexing or "
            "from a DataFrame without lengths; call X.compute_chunk_sizes() (or "
            "df.to_dask_array(lengths=True)) first."
        )
    kind = X.dtype.kind
    if kind not in "iufb" or (kind == "b" and not allow_bool):
        raise DataError(
            f"X has dtype {X.dtype}; expected numbers. Convert it with X.astype(float)."
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"X is empty (shape {X.shape}).")
    X = X.astype(np.float64).rechunk({1: -1})
    features = features if features is not None else [f"x{i}" for i in range(X.shape[1])]
    weight = _align_weights(sample_weight, X, da)
    chunks = tuple(int(c) for c in X.chunks[0])
    source |= {
        "shape": [int(X.shape[0]), int(X.shape[1])],
        "n_chunks": len(chunks),
        "chunk_layout_sha256": _layout_checksum(chunks, int(X.shape[1])),
        "weighted": weight is not None,
    }
    return ChunkedData(
        array=X,
        features=features,
        sample_weight=weight,
        source=source,
        allow_missing=allow_missing,
    )


def _align_weights(sample_weight: Any, X: Any, da: Any) -> Any:
    """``sample_weight`` as a float64 Dask array with the row chunks of ``X`` (or None)."""
    if sample_weight is None:
        return None
    if hasattr(sample_weight, "to_dask_array"):
        sample_weight = sample_weight.to_dask_array(lengths=True)
    if not isinstance(sample_weight, da.Array):
        sample_weight = np.asarray(sample_weight)
        if sample_weight.dtype.kind not in "iuf":
            raise DataError(f"sample_weight must hold numbers; got dtype {sample_weight.dtype}.")
    if sample_weight.ndim != 1 or sample_weight.shape[0] != X.shape[0]:
        raise DataError(
            f"sample_weight must have shape ({X.shape[0]},) to match the rows of X; got "
            f"{sample_weight.shape}."
        )
    if not isinstance(sample_weight, da.Array):
        sample_weight = da.from_array(sample_weight, chunks=(X.chunks[0],))
    if any(np.isnan(c) for c in sample_weight.chunks[0]):
        raise DataError(
            "sample_weight has chunks of unknown size; call compute_chunk_sizes() first."
        )
    return sample_weight.astype(np.float64).rechunk((X.chunks[0],))


@contextlib.contextmanager
def one_process_pool() -> Iterator[None]:
    """Keep one process pool for a whole fit when Dask's process scheduler is active.

    Dask's ``"processes"`` scheduler starts a new pool for every ``compute`` unless one is
    configured; a fit computes once per EM iteration, and every new worker process imports
    bayesmix again (seconds). Inside this context such a scheduler reuses one pool (unless
    the user configured their own); with any other scheduler it does nothing.
    """
    try:
        import dask
        import dask.multiprocessing
        from dask.base import get_scheduler
    except ImportError:  # pragma: no cover - only called with chunked data
        yield
        return
    if get_scheduler() is not dask.multiprocessing.get or dask.config.get("pool", None):
        yield
        return
    from concurrent.futures import ProcessPoolExecutor

    workers = dask.config.get("num_workers", None) or os.cpu_count() or 1
    pool = ProcessPoolExecutor(workers, mp_context=dask.multiprocessing.get_context())
    try:
        with dask.config.set(pool=pool):
            yield
    finally:
        pool.shutdown()


@contextlib.contextmanager
def on_pass(callback: Callable[[float], None]) -> Iterator[None]:
    """Call ``callback(seconds)`` after every data pass over chunked data (progress).

    Examples
    --------
    >>> from bayesmix.dask import on_pass
    >>> passes = []
    >>> with on_pass(passes.append):
    ...     pass  # fit chunked data here; passes gets the seconds of every pass
    """
    _PASS_CALLBACKS.append(callback)
    try:
        yield
    finally:
        _PASS_CALLBACKS.remove(callback)
