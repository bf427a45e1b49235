"""The ``xarray.DataTree`` of a fit: group builders, the netCDF file and its checks (internal).

Every method of every family writes the same layout (ArviZ group names; dims ``chain``,
``draw``, ``component``, ``feature``, ``feature_bis``, ``obs``). This module builds the
groups that do not depend on the family (``observed_data``), reads posterior variables
back as arrays, writes and reads the file, and checks a file read back against the class
it names (:func:`check_fit`, through the family contract's hooks); it names no family.

**Saving.** A fit is written to a temporary file in the target's folder, created with the
mode a new file gets (``0o666`` less the umask; :func:`umask` reads it without changing
it), flushed to disk (``fsync``), renamed over the target (``os.replace``), and the folder
is flushed, so a save that fails part-way, or a crash, never leaves a truncated file.

**Loading.** Nothing in a file is used before :func:`check_fit` has checked it: the class,
the constructor arguments (the constructor's own checks), the priors (the distributions
each key accepts, their parameters and shapes), every posterior variable (dims and sizes
against ``n_components`` and the features, finite values, the support the family declares:
weights on the simplex, covariance matrices symmetric positive definite, ...), the EM
result, the stored data and weights. A file that fails raises
:class:`~bayesmix.exceptions.LoadError` naming the field.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import tempfile
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bayesmix._validation import MixtureData, check_sample_weight
from bayesmix.em.loop import EMResult
from bayesmix.exceptions import BayesmixError, DataError, LoadError
from bayesmix.priors import Prior, stored_prior

__all__ = [
    "SUPPORTS",
    "CheckedFit",
    "check_fit",
    "observed_data",
    "observed_data_group",
    "posterior_draws",
    "read_fit",
    "restore",
    "save_datatree",
    "umask",
]

_log = logging.getLogger("bayesmix")
_ENGINE = "h5netcdf"
REQUIRED_ATTRS = ("bayesmix_version", "model_class", "params", "priors", "em_result")


def posterior_draws(idata: xr.DataTree, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Return the posterior variables ``names`` as arrays, dims (chain, draw, component, ...)."""
    post = idata["posterior"]
    out = []
    for name in names:
        da = post[name]
        rest = [dim for dim in da.dims if dim not in ("chain", "draw", "component")]
        order = ["chain", "draw"] + (["component"] if "component" in da.dims else []) + rest
        out.append(da.transpose(*order).to_numpy())
    return tuple(out)


def observed_data_group(data: MixtureData) -> xr.Dataset:
    """Return the ``observed_data`` group of a fit to ``data`` (``x``, ``sample_weight``)."""
    variables = {"x": (("obs", "feature"), data.values)}
    if data.sample_weight is not None:
        variables["sample_weight"] = (("obs",), data.sample_weight)
    return xr.Dataset(variables, coords={"obs": data.obs, "feature": data.features})


def observed_data(idata: xr.DataTree) -> MixtureData:
    """Return the training data of a fit, from its ``observed_data`` group."""
    group = idata["observed_data"]
    observed = group["x"].transpose("obs", "feature")
    weights = None
    if "sample_weight" in group.data_vars:
        weights = np.asarray(group["sample_weight"].to_numpy(), dtype=np.float64)
    return MixtureData(
        values=np.asarray(observed.to_numpy(), dtype=np.float64),
        obs=observed["obs"].to_numpy(),
        features=[str(name) for name in observed["feature"].to_numpy()],
        sample_weight=weights,
    )


# -- the file ---------------------------------------------------------------------------


def _umask_from_proc() -> int | None:
    """Return the umask from ``/proc/self/status`` (Linux 4.7 and later), else None."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    """Return the umask when this module is imported, read without leaving it changed."""
    mask = _umask_from_proc()
    if mask is None:
        # Without /proc the umask can only be read by setting it. That is done once, here,
        # and to the most restrictive mask: a file another thread creates in between gets
        # fewer permissions, never more.
        mask = os.umask(0o777)
        os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def umask() -> int:
    """Return the process umask, without changing it.

    On Linux it is read from ``/proc/self/status`` on every call: the current value, with
    no moment in which another thread could create a file under a different mask.
    Elsewhere the umask can only be read by setting it, so it is read once, when this
    module is first imported, and that value is returned (a later ``os.umask`` call of the
    program is then not seen).
    """
    mask = _umask_from_proc()
    return _UMASK_AT_IMPORT if mask is None else mask


def _chmod(fd: int, path: str, mode: int) -> None:
    """Set the mode of the open file ``fd`` (``fchmod``; by name where there is none)."""
    if os.chmod in os.supports_fd:
        os.chmod(fd, mode)
    else:  # Windows before Python 3.13
        os.chmod(path, mode)


def _fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename into it) to disk, where a folder can be opened."""
    if os.name != "posix":
        return  # Windows cannot open a folder (NTFS journals the rename)
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:  # e.g. a network or FUSE file system that cannot sync a folder
        _log.debug("could not flush the folder %s to disk: %s", folder, err)


# Every variable is written deflated (gzip level 4 after byte shuffling): 10-20% smaller for
# draws of floats, much more for integer sampler statistics; reading costs little more.
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


def _compressed(idata: xr.DataTree) -> dict[str, dict[str, dict]]:
    """Return the ``to_netcdf`` encoding that compresses every non-scalar variable."""
    return {
        node.path: {
            name: dict(_COMPRESSION)
            for name, variable in node.dataset.data_vars.items()
            if variable.ndim > 0 and variable.dtype.kind in "biuf"
        }
        for node in idata.subtree
        if node.dataset.data_vars
    }


def _storable_labels(idata: xr.DataTree) -> xr.DataTree:
    """Return ``idata`` with labels netCDF can store (a shallow copy where it changes them).

    Coordinates of Python objects other than strings (the tuples of a pandas MultiIndex,
    an index mixing numbers and strings) are written as their strings; netCDF has no
    type for them. ``idata`` itself is not modified.

    Raises
    ------
    bayesmix.exceptions.DataError
        For labels with a NUL character, which netCDF strings cannot hold (HDF5 stops
        at it, or refuses it): found by fuzzing with odd column names.
    """
    replaced = {}
    for node in idata.subtree:
        for name, coord in node.dataset.coords.items():
            if coord.dtype.kind not in "OUS":
                continue
            values = coord.to_numpy()
            labels = [str(v) if not isinstance(v, str | bytes) else v for v in values.ravel()]
            nul = sorted({str(label) for label in labels if "\x00" in str(label)})
            if nul:
                raise DataError(
                    f"the {name!r} labels {nul[:5]} have a NUL character ('\\x00'), which "
                    "a netCDF file cannot store, so this fit cannot be saved. Rename them "
                    "(the column names or the index of X) and fit again."
                )
            if coord.dtype.kind == "O" and not all(isinstance(v, str) for v in values.ravel()):
                replaced.setdefault(node.path, {})[name] = np.asarray(labels, dtype=str)
    if not replaced:
        return idata
    tree = idata.copy(deep=False)
    for path, coords in replaced.items():
        tree[path] = tree[path].to_dataset().assign_coords(coords)
    return tree


def save_datatree(idata: xr.DataTree, path: str | os.PathLike) -> Path:
    """Write ``idata`` to ``path`` (netCDF4/HDF5) atomically and durably; return the path.

    Labels that are Python objects other than strings (a MultiIndex's tuples) are written
    as strings (:func:`_storable_labels`). Every numeric variable is compressed (gzip
    level 4, shuffled). The tree is written
    to a temporary file next to ``path``, created with the mode a new file gets
    (``0o666 & ~umask``; the process umask is read, never changed), flushed to disk and
    then renamed over ``path``; the folder is flushed after the rename. On any error the
    temporary file is removed and an existing file at ``path`` is left untouched.
    """
    path = Path(path)
    idata = _storable_labels(idata)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            mode = 0o666 & ~umask()
            # mkstemp creates 0600. Others' bits are final before anything is written; the
            # owner keeps read and write until the data are in (the writer reopens the file
            # by name), which matters only under a umask that removes the owner's own.
            _chmod(fd, tmp, mode | 0o600)
            # Reopens tmp by name: same file, same mode.
            idata.to_netcdf(tmp, engine=_ENGINE, encoding=_compressed(idata))
            if mode != mode | 0o600:
                _chmod(fd, tmp, mode)
            os.fsync(fd)  # the data on disk before the name points at them
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    _log.info("saved the fit to %s", path)
    return path


def read_fit(path: str | os.PathLike) -> xr.DataTree:
    """Read a saved fit into memory and check that it is one (not which class it is).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    bayesmix.exceptions.LoadError
        When the file is not netCDF4 or not a bayesmix fit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved fit at {str(path)!r}: the file does not exist.")
    try:
        with xr.open_datatree(path, engine=_ENGINE) as tree:
            idata = tree.load()
    except (OSError, ValueError) as err:
        raise LoadError(
            f"{str(path)!r} could not be read as a netCDF4 file ({err}); bayesmix fits are "
            "saved with fit.save(path). Check the path."
        ) from None
    missing = [key for key in REQUIRED_ATTRS if key not in idata.attrs]
    if missing or "posterior" not in idata.children:
        raise LoadError(
            f"{str(path)!r} is a netCDF file but not a bayesmix fit (missing "
            f"{missing or ['posterior group']}). Save fits with fit.save(path)."
        )
    return idata


def restore(cls: Any, idata: xr.DataTree, path: str | os.PathLike) -> Any:
    """Rebuild a fitted ``cls`` from a tree read by :func:`read_fit`, checked in full.

    Raises
    ------
    bayesmix.exceptions.LoadError
        Naming the first field of the file that a fit of ``cls`` cannot have.
    """
    name = idata.attrs["model_class"]
    try:
        return cls._from_datatree(idata)
    except LoadError as err:
        problem, cause = str(err), None
    except (TypeError, KeyError, ValueError, IndexError, AttributeError, ArithmeticError) as err:
        # Not expected after check_fit; kept so that no file can fail with a bare error.
        problem, cause = f"{type(err).__name__}: {err}", err
    raise LoadError(
        f"{str(path)!r} says it holds a {name} fit, but its contents do not match that "
        f"class: {problem.rstrip('.')}. It was edited, damaged or written by something other than "
        "fit.save(path); re-fit and save again, or restore the original file."
    ) from cause


# -- checks of a file read back ---------------------------------------------------------

# |sum of the weights - 1| accepted in every draw (NUTS' simplex transform and EM's
# normalisation reach ~1e-15).
SIMPLEX_TOLERANCE = 1e-6
# Asymmetry of a covariance matrix accepted, relative to its largest entry.
_SYMMETRY_TOLERANCE = 1e-8
# |row norm - 1| of a correlation Cholesky factor, and its entries above the diagonal.
_UNIT_NORM_TOLERANCE = 1e-6
# An EM fit's posterior is its EM estimate: equal to rounding.
_EM_POINT_RTOL, _EM_POINT_ATOL = 1e-9, 1e-12

# What the first failing element is, and why: (index into the leading axes, text).
_Problem = tuple[tuple[int, ...], str] | None


def _first(bad: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first True entry of ``bad``, or None."""
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _elementwise(outside: Callable[[np.ndarray], np.ndarray], expected: str) -> Callable:
    def check(values: np.ndarray) -> _Problem:
        index = _first(outside(values))
        return None if index is None else (index, f"{values[index]:.6g}, expected {expected}")

    return check


def _simplex(values: np.ndarray) -> _Problem:
    index = _first((values < 0).any(axis=-1))
    if index is not None:
        return index, f"has a negative entry ({values[index].min():.6g}), expected >= 0"
    total = values.sum(axis=-1)
    index = _first(np.abs(total - 1.0) > SIMPLEX_TOLERANCE)
    if index is not None:
        return index, f"sums to {total[index]:.6g}, expected 1"
    return None


def _positive_definite(values: np.ndarray) -> _Problem:
    scale = np.abs(values).max(axis=(-2, -1))
    asymmetry = np.abs(values - np.swapaxes(values, -1, -2)).max(axis=(-2, -1))
    index = _first(asymmetry > _SYMMETRY_TOLERANCE * scale)
    if index is not None:
        return index, (
            f"is not symmetric (entries differ from their transpose by up to "
            f"{asymmetry[index]:.3g}), expected a symmetric positive definite matrix"
        )
    try:
        np.linalg.cholesky(values)
        return None
    except np.linalg.LinAlgError:
        pass
    for index in np.ndindex(values.shape[:-2]):  # find the first that fails
        try:
            np.linalg.cholesky(values[index])
        except np.linalg.LinAlgError:
            smallest = np.linalg.eigvalsh(values[index]).min()
            return index, (
                f"is not positive definite (its Cholesky factorisation fails; smallest "
                f"eigenvalue {smallest:.3g}), expected a symmetric positive definite matrix"
            )
    return None  # pragma: no cover - the stacked factorisation failed, so one does


def _correlation_cholesky(values: np.ndarray) -> _Problem:
    expected = "expected the Cholesky factor of a correlation matrix"
    index = _first(np.abs(np.triu(values, 1)).max(axis=(-2, -1)) > _UNIT_NORM_TOLERANCE)
    if index is not None:
        return index, f"is not lower triangular, {expected}"
    index = _first((np.diagonal(values, axis1=-2, axis2=-1) <= 0).any(axis=-1))
    if index is not None:
        return index, f"has a diagonal entry <= 0, {expected}"
    norms = np.sqrt((values**2).sum(axis=-1))
    index = _first((np.abs(norms - 1.0) > _UNIT_NORM_TOLERANCE).any(axis=-1))
    if index is not None:
        return index, f"has rows of norm {np.round(norms[index], 6).tolist()}, {expected}"
    return None


#: The supports a family can declare for its posterior variables
#: (``MixtureModel._posterior_supports``): name -> (number of trailing axes one value
#: spans, check). Every value must also be finite; "real" asks nothing more.
SUPPORTS: dict[str, tuple[int, Callable[[np.ndarray], _Problem]]] = {
    "real": (0, lambda values: None),
    "positive": (0, _elementwise(lambda v: v <= 0, "> 0")),
    "nonnegative": (0, _elementwise(lambda v: v < 0, ">= 0")),
    "unit_interval": (0, _elementwise(lambda v: (v < 0) | (v > 1), "in [0, 1]")),
    "simplex": (1, _simplex),
    "positive_definite": (2, _positive_definite),
    "correlation_cholesky": (2, _correlation_cholesky),
}


@dataclasses.dataclass(frozen=True)
class CheckedFit:
    """What :func:`check_fit` read from a file, checked: all a fitted model is built from."""

    model: Any  # an unfitted estimator with the saved constructor arguments
    data: MixtureData  # the training data; for chunked data or a stream, no rows
    priors: dict[str, Prior]  # the resolved priors
    em: EMResult


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Sizes and labels of a fit's dims, for checks and their messages."""

    n_components: int
    features: list[str]
    # Sizes of the other dims (the model's coords for these features), if any.
    extra: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        n = len(self.features)
        return {"component": self.n_components, "feature": n, "feature_bis": n, **self.extra}

    def shape(self, dims: tuple[str, ...] | list[str]) -> tuple[int, ...]:
        return tuple(self.sizes[dim] for dim in dims)

    def where(self, dims: tuple[str, ...], index: tuple[int, ...]) -> str:
        """Say where ``index`` is: ``"draw (0, 3), component 1, feature 'waiting'"``."""
        parts, position = [], dict(zip(dims, index, strict=False))
        if "chain" in position and "draw" in position:
            parts.append(f"draw ({position.pop('chain')}, {position.pop('draw')})")
        for dim, i in position.items():
            label = self.features[i] if dim in ("feature", "feature_bis") else i
            parts.append(f"{dim} {label!r}" if isinstance(label, str) else f"{dim} {label}")
        return ", ".join(parts)


def _fail(field: str, problem: str) -> LoadError:
    return LoadError(f"{field}: {problem}")


def _json_attr(idata: xr.DataTree, key: str, kind: type) -> Any:
    """Return the root attribute ``key`` decoded from JSON, checked to be a ``kind``."""
    field = f"attribute {key!r}"
    text = idata.attrs[key]
    if not isinstance(text, str):
        raise _fail(field, f"a {type(text).__name__}, expected JSON text")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise _fail(field, f"not valid JSON ({err})") from None
    if not isinstance(value, kind):
        expected = "a JSON object" if kind is dict else "a JSON array"
        raise _fail(field, f"a JSON {type(value).__name__}, expected {expected}")
    return value


def _numbers(field: str, values: Any) -> np.ndarray:
    """Return ``values`` as float64, unless they are not real numbers."""
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise _fail(field, f"values of dtype {array.dtype}, expected real numbers")
    return array.astype(np.float64, copy=False)


def _check_values(
    field: str, values: np.ndarray, dims: tuple[str, ...], support: str, layout: _Layout
) -> None:
    """Check that ``values`` (dims ``dims``) are finite and inside ``support``."""
    values = _numbers(field, values)
    index = _first(~np.isfinite(values))
    if index is not None:
        where = layout.where(dims, index)
        raise _fail(f"{field}, {where}", f"{values[index]}, expected a finite number")
    if support not in SUPPORTS:
        raise ValueError(f"unknown support {support!r}; the supports are {sorted(SUPPORTS)}.")
    core, check = SUPPORTS[support]
    found = check(values)
    if found is not None:
        index, text = found
        where = layout.where(dims[: len(dims) - core] if core else dims, index)
        raise _fail(f"{field}, {where}" if where else field, text)


def _check_params(cls: Any, idata: xr.DataTree) -> dict[str, Any]:
    """Return the saved constructor arguments, decoded; unknown or malformed ones fail."""
    params = _json_attr(idata, "params", dict)
    field = "attribute 'params' (the constructor arguments)"
    names = cls._param_names()
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise _fail(
            field, f"{unknown} are not arguments of {cls.__name__}, expected some of {names}"
        )
    args = dict(params)
    user = args.get("priors")
    if user is not None:
        if not isinstance(user, dict):
            raise _fail(f"{field}, 'priors'", f"a {type(user).__name__}, expected an object")
        args["priors"] = {key: _prior(f"{field}, 'priors', {key!r}", p) for key, p in user.items()}
    # JSON has no tuples: a tuple argument (Student-t's dof_bounds) comes back a list.
    defaults = inspect.signature(cls.__init__).parameters
    for name, value in args.items():
        if isinstance(value, list) and isinstance(getattr(defaults[name], "default", None), tuple):
            args[name] = tuple(value)
    return args


def _prior(field: str, value: Any) -> Prior:
    try:
        return stored_prior(value)
    except BayesmixError as err:
        raise _fail(field, str(err)) from None


def _check_priors(
    model: Any, user: Mapping[str, Prior] | None, resolved: dict[str, Any], layout: _Layout
) -> dict[str, Prior]:
    """Check the user's and the resolved priors against the family's table; return these."""
    shapes = model._rv_shapes(len(layout.features))
    allowed = model._allowed_priors()

    def check(field: str, key: str, prior: Prior) -> None:
        if key not in shapes:
            raise _fail(
                field,
                f"{key!r} is not a random variable of this model, expected some of {list(shapes)}",
            )
        problems = prior.problems(allowed.get(key, frozenset()), shape=layout.shape(shapes[key]))
        if problems:
            raise _fail(field, "; ".join(problems))

    for key, prior in (user or {}).items():
        check(f"attribute 'params' (the constructor arguments), prior {key!r}", key, prior)
    priors = {}
    for key, value in resolved.items():
        priors[key] = _prior(f"attribute 'priors', prior {key!r}", value)
        check(f"attribute 'priors', prior {key!r}", key, priors[key])
    missing = [key for key in shapes if key not in priors]
    if missing:
        raise _fail(
            "attribute 'priors'",
            f"no prior for {missing}, expected one per variable {list(shapes)}",
        )
    for key, prior in (user or {}).items():
        if priors[key] != prior:
            raise _fail(
                f"attribute 'priors', prior {key!r}",
                f"{priors[key]!r}, but the constructor argument says {prior!r}; expected the same",
            )
    return priors


def _check_posterior(model: Any, post: xr.Dataset, layout: _Layout) -> dict[str, np.ndarray]:
    """Check every posterior variable's dims, sizes and values; return them (chain, draw, ...)."""
    expected = model._posterior_dims(len(layout.features))
    supports = model._posterior_supports()
    names = list(post.data_vars)
    if set(names) != set(expected):
        raise _fail(
            "posterior group",
            f"variables {sorted(names)}, expected {sorted(expected)} for this model",
        )
    for dim in ("chain", "draw"):
        if post.sizes.get(dim, 0) < 1:
            raise _fail("posterior group", f"no {dim!r} dim (or size 0), expected at least one")
    out = {}
    for name, var_dims in expected.items():
        field = f"posterior variable {name!r}"
        dims = ("chain", "draw", *var_dims)
        da = post[name]
        if sorted(map(str, da.dims)) != sorted(dims):
            raise _fail(field, f"dims {tuple(da.dims)}, expected {dims}")
        for dim in var_dims:
            if da.sizes[dim] != layout.sizes[dim]:
                what = "n_components" if dim == "component" else "the number of features"
                raise _fail(
                    field,
                    f"dim {dim!r} has size {da.sizes[dim]}, expected {layout.sizes[dim]} ({what})",
                )
        values = da.transpose(*dims).to_numpy()
        _check_values(field, values, dims, supports.get(name, "real"), layout)
        out[name] = values
    return out


def _check_em(model: Any, idata: xr.DataTree, layout: _Layout) -> EMResult:
    """Check the EM result's fields against the model; return it."""
    field = "attribute 'em_result'"
    stored = _json_attr(idata, "em_result", dict)
    try:
        em = EMResult.from_dict(stored)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise _fail(field, f"not an EM result ({type(err).__name__}: {err})") from None
    for key, want in (
        ("family", type(model)._family),
        # EM works in the shape that holds the model's covariance type (an mclust model's
        # storage type; scikit-learn's names are their own).
        ("covariance_type", getattr(model, "_storage_type", None)),
        ("objective", getattr(model, "objective", "ml")),
    ):
        if getattr(em, key) != want:
            raise _fail(
                f"{field}, {key!r}", f"{getattr(em, key)!r}, expected {want!r} (the model's)"
            )
    for key in ("n_iter", "best_init"):
        value = getattr(em, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(f"{field}, {key!r}", f"{value!r}, expected an integer >= 0")
    if not isinstance(em.converged, bool):
        raise _fail(f"{field}, 'converged'", f"{em.converged!r}, expected true or false")
    value = em.log_likelihood
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise _fail(f"{field}, 'log_likelihood'", f"{value!r}, expected a finite number")
    for key in ("lower_bounds", "init_log_likelihoods"):
        values = getattr(em, key)
        # -inf is a restart that failed; nan or +inf is never an objective.
        if values.ndim != 1 or np.isnan(values).any() or (values == np.inf).any():
            raise _fail(
                f"{field}, {key!r}",
                f"{values.tolist()!r}, expected a list of numbers (-inf for a failed restart)",
            )
    n_init = em.init_log_likelihoods.size
    if n_init and em.best_init >= n_init:
        raise _fail(
            f"{field}, 'best_init'",
            f"{em.best_init}, expected an index of init_log_likelihoods ({n_init} restarts)",
        )
    if em.weights.shape != (layout.n_components,):
        raise _fail(
            f"{field}, 'weights'", f"shape {em.weights.shape}, expected ({layout.n_components},)"
        )
    for key, value in em.params.items():
        index = _first(~np.isfinite(value))
        if index is not None:
            raise _fail(
                f"{field}, parameter {key!r}, entry {index}", f"{value[index]}, expected finite"
            )
    return em


def _check_em_point(
    model: Any, idata: xr.DataTree, em: EMResult, posterior: dict[str, np.ndarray], layout: _Layout
) -> None:
    """Check the EM estimate as posterior variables, and an EM fit's posterior against it."""
    field = "attribute 'em_result' (the EM estimate)"
    n_features = len(layout.features)
    try:  # the family's own conversion; then checked as the posterior is
        with np.errstate(all="ignore"):
            point = model._point_from_em(em, n_features)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        raise _fail(
            field,
            f"parameters {sorted(em.params)} that do not make a {layout.n_components}-component "
            f"fit of {n_features} features ({type(err).__name__}: {err})",
        ) from None
    supports = model._posterior_supports()
    for name, var_dims in model._posterior_dims(n_features).items():
        label = f"{field}, as variable {name!r}"
        value = np.asarray(point[name])
        if value.shape != layout.shape(var_dims):
            raise _fail(label, f"shape {value.shape}, expected {layout.shape(var_dims)}")
        _check_values(label, value, tuple(var_dims), supports.get(name, "real"), layout)
    if idata.attrs.get("inference_method") != "em":
        return  # NUTS: the EM estimate is the start and the reference labelling
    for name, values in posterior.items():  # an EM fit's posterior is its EM estimate
        label = f"posterior variable {name!r}"
        if values.shape[:2] != (1, 1):
            raise _fail(
                label,
                f"{values.shape[0]} chains x {values.shape[1]} draws, expected 1 x 1 (an EM fit)",
            )
        if not np.allclose(values[0, 0], point[name], rtol=_EM_POINT_RTOL, atol=_EM_POINT_ATOL):
            gap = float(np.abs(values[0, 0] - point[name]).max())
            raise _fail(
                label,
                f"differs from the EM estimate in attribute 'em_result' by up to {gap:.3g}, "
                "expected equal (an EM fit's posterior is its EM estimate)",
            )


def _check_em_stats(idata: xr.DataTree, em: EMResult) -> None:
    """Check that the ``em_stats`` group, when there is one, restates the EM result."""
    if "em_stats" not in idata.children:
        return
    stats = idata["em_stats"].to_dataset()
    field = "group 'em_stats'"
    arrays = {"lower_bound": em.lower_bounds, "init_log_likelihood": em.init_log_likelihoods}
    for name, want in arrays.items():
        if name not in stats.data_vars:
            raise _fail(field, f"no variable {name!r}")
        got = np.asarray(stats[name].to_numpy())
        if got.shape != want.shape or not np.array_equal(got, want):
            raise _fail(
                f"{field}, {name!r}", "differs from attribute 'em_result', expected the same"
            )
    attrs = {
        "n_iter": em.n_iter,
        "converged": int(bool(em.converged)),
        "log_likelihood": em.log_likelihood,
        "best_init": em.best_init,
        "n_init": len(em.init_log_likelihoods),
    }
    for key, want in attrs.items():
        got = stats.attrs.get(key)
        if got is None or np.ndim(got) != 0 or got != want:
            raise _fail(
                f"{field}, attribute {key!r}", f"{got!r}, expected {want!r} (from 'em_result')"
            )


def _check_data(model: Any, idata: xr.DataTree, layout: _Layout) -> MixtureData:
    """Check the stored training data (or, for chunked data, the record of the source)."""
    if "observed_data" not in idata.children:
        if "data_source" not in idata.attrs:
            raise _fail(
                "group 'observed_data'",
                "missing, and no attribute 'data_source' says where the data are; expected one",
            )
        source = _json_attr(idata, "data_source", dict)
        shape = source.get("shape")  # chunked data: (rows, features); a stream: n_features
        stated = shape[-1] if isinstance(shape, list) and shape else source.get("n_features")
        if stated is not None and stated != len(layout.features):
            raise _fail(
                "attribute 'data_source'",
                f"{stated!r} features, but the posterior has {len(layout.features)}; "
                "expected the same",
            )
        features = layout.features
        return MixtureData(np.empty((0, len(features))), np.empty(0), features)
    group = idata["observed_data"].to_dataset()
    field = "observed_data variable 'x'"
    if "x" not in group.data_vars:
        raise _fail("group 'observed_data'", "no variable 'x', expected the training data")
    x = group["x"]
    if sorted(map(str, x.dims)) != ["feature", "obs"]:
        raise _fail(field, f"dims {tuple(x.dims)}, expected ('obs', 'feature')")
    features = [str(name) for name in x["feature"].to_numpy()]
    if features != layout.features:
        raise _fail(
            field,
            f"features {features}, but the posterior's are {layout.features}; expected the same",
        )
    if x.sizes["obs"] < 1:
        raise _fail(field, "no rows, expected the training data")
    values = x.transpose("obs", "feature").to_numpy()
    values = _numbers(field, values)
    invalid = ~np.isfinite(values)
    if model._models_missing:  # NaN: the missing values of a missing="model" fit
        invalid &= ~np.isnan(values)
    bad = _first(invalid)
    if bad is not None:
        obs = np.asarray(x["obs"].to_numpy()[bad[0]]).item()
        raise _fail(
            f"{field}, obs {obs!r}, feature {features[bad[1]]!r}",
            f"{values[bad]}, expected a finite number",
        )
    if "sample_weight" in group.data_vars:
        weights = group["sample_weight"]
        if tuple(weights.dims) != ("obs",):
            raise _fail(
                "observed_data variable 'sample_weight'",
                f"dims {tuple(weights.dims)}, expected ('obs',)",
            )
        try:
            check_sample_weight(
                _numbers("observed_data variable 'sample_weight'", weights.to_numpy()),
                x.sizes["obs"],
            )
        except BayesmixError as err:
            raise _fail("observed_data variable 'sample_weight'", str(err)) from None
    data = observed_data(idata)
    try:
        model._check_data(data)
    except BayesmixError as err:
        raise _fail(field, str(err)) from None
    return data


def _check_log_likelihood(
    idata: xr.DataTree, post: xr.Dataset, data: MixtureData, layout: _Layout, name: str
) -> None:
    """Check the pointwise log-likelihood group (the model's observed variable ``name``)."""
    if "log_likelihood" not in idata.children:
        return
    group = idata["log_likelihood"].to_dataset()
    field = f"log_likelihood variable {name!r}"
    if name not in group.data_vars:
        raise _fail("group 'log_likelihood'", f"no variable {name!r}")
    x = group[name]
    dims = ("chain", "draw", "obs")
    if sorted(map(str, x.dims)) != sorted(dims):
        raise _fail(field, f"dims {tuple(x.dims)}, expected {dims}")
    want = {"chain": post.sizes["chain"], "draw": post.sizes["draw"], "obs": data.n_samples}
    for dim, size in want.items():
        if x.sizes[dim] != size:
            raise _fail(
                field,
                f"dim {dim!r} has size {x.sizes[dim]}, expected {size} (as the posterior "
                "and the data)",
            )
    _check_values(field, x.transpose(*dims).to_numpy(), dims, "real", layout)


def _check_other_attrs(idata: xr.DataTree) -> None:
    """Check the JSON root attributes that readers decode later."""
    for key, kind in (("sampler_settings", dict), ("timings", dict), ("warnings", list)):
        if key in idata.attrs:
            _json_attr(idata, key, kind)


def check_fit(cls: Any, idata: xr.DataTree) -> CheckedFit:
    """Check everything a fit of ``cls`` reads from ``idata`` (a saved fit), or fail.

    The checks use the family contract's hooks (``_param_names`` and ``_check_params``,
    ``_rv_shapes`` and ``_allowed_priors``, ``_posterior_dims`` and
    ``_posterior_supports``, ``_point_from_em``, ``_check_data``), so every registered
    family is checked the same way.

    Parameters
    ----------
    cls : type
        The model class the file is loaded as.
    idata : xarray.DataTree
        A tree read by :func:`read_fit`.

    Returns
    -------
    CheckedFit
        The unfitted estimator with the saved constructor arguments, the training data,
        the resolved priors and the EM result, all checked.

    Raises
    ------
    bayesmix.exceptions.LoadError
        Naming the first field that is wrong, what it holds and what was expected, e.g.
        ``"posterior variable 'weights', draw (0, 3): sums to 1.7, expected 1"``.
    """
    name = idata.attrs.get("model_class")
    if name != cls.__name__:
        raise _fail("attribute 'model_class'", f"{name!r}, expected {cls.__name__!r}")
    args = _check_params(cls, idata)
    model = cls(**args)
    try:
        model._check_params()
    except (BayesmixError, TypeError, ValueError) as err:
        raise _fail("attribute 'params' (the constructor arguments)", str(err)) from None
    post = idata["posterior"].to_dataset()
    # The data's columns: the posterior's feature dim, or (a model whose posterior has
    # other dims, as a mixture of regressions') the observed data's.
    source = post if "feature" in post.dims else None
    if source is None and "observed_data" in idata.children:
        source = idata["observed_data"].to_dataset()
    if source is None or "feature" not in source.dims:
        raise _fail("posterior group", "no 'feature' dim, expected the features of the data")
    features = [str(f) for f in source["feature"].to_numpy()]
    coords = model._coords(types.SimpleNamespace(features=features))
    extra = {dim: len(values) for dim, values in coords.items() if dim not in ("obs", "component")}
    layout = _Layout(model.n_components, features, extra)
    priors = _check_priors(model, args.get("priors"), _json_attr(idata, "priors", dict), layout)
    posterior = _check_posterior(model, post, layout)
    em = _check_em(model, idata, layout)
    _check_em_point(model, idata, em, posterior, layout)
    _check_em_stats(idata, em)
    data = _check_data(model, idata, layout)
    _check_log_likelihood(idata, post, data, layout, model._observed)
    _check_other_attrs(idata)
    return CheckedFit(model=model, data=data, priors=priors, em=em)
