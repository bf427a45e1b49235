"""The ``xarray.DataTree`` of a fit: group builders and the netCDF file (internal).

Every method of every family writes the same layout (ArviZ group names; dims ``chain``,
``draw``, ``component``, ``feature``, ``feature_bis``, ``obs``). This module builds the
groups that do not depend on the family (``observed_data``), reads posterior variables
back as arrays, and writes and reads the file; it knows no family and no model class.
Files are written to a temporary name in the same folder and renamed, so a save that
fails part-way never leaves a truncated file behind.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bayesmix._validation import MixtureData
from bayesmix.exceptions import LoadError

__all__ = [
    "observed_data",
    "observed_data_group",
    "posterior_draws",
    "read_fit",
    "restore",
    "save_datatree",
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


def save_datatree(idata: xr.DataTree, path: str | os.PathLike) -> Path:
    """Write ``idata`` to ``path`` (netCDF4/HDF5) atomically; return the path.

    The tree is written to a temporary file next to ``path`` and moved over it only
    once complete; on any error the temporary file is removed and an existing file at
    ``path`` is left untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        idata.to_netcdf(tmp, engine=_ENGINE)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _log.info("saved the fit to %s", path)
    return path


def umask() -> int:
    """Return the process umask (without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    """Rebuild a fitted ``cls`` from a tree read by :func:`read_fit` (else ``LoadError``)."""
    name = idata.attrs["model_class"]
    try:
        return cls._from_datatree(idata, json.loads(idata.attrs["params"]))
    except (TypeError, KeyError, ValueError) as err:
        raise LoadError(
            f"{str(path)!r} says it holds a {name} fit, but its contents do not match that "
            f"class ({type(err).__name__}: {err}); it was edited or written by something "
            "other than fit.save(path). Re-fit and save again, or restore the original file."
        ) from err
