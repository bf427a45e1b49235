"""Saving and loading fits: one netCDF file holding the whole ``xarray.DataTree``.

A fit is saved as its ``idata``; the root attributes carry everything else needed to
rebuild the estimator (class name, constructor arguments, resolved priors, the EM
solution). Files are written to a temporary name in the same folder and renamed, so
a save that fails part-way never leaves a truncated file behind.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from bayesmix.exceptions import LoadError

if TYPE_CHECKING:
    from bayesmix._base import MixtureModel

__all__ = ["load", "save_datatree"]

_log = logging.getLogger("bayesmix")
_ENGINE = "h5netcdf"
_REQUIRED_ATTRS = ("bayesmix_version", "model_class", "params", "priors", "em_result")


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _log.info("saved the fit to %s", path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _model_classes() -> dict[str, type[MixtureModel]]:
    import bayesmix
    from bayesmix._base import MixtureModel

    return {
        name: obj
        for name in dir(bayesmix)
        if isinstance(obj := getattr(bayesmix, name), type) and issubclass(obj, MixtureModel)
    }


def load(path: str | os.PathLike, *, expected: type[MixtureModel] | None = None) -> MixtureModel:
    """Load a fit saved with ``fit.save(path)``.

    Parameters
    ----------
    path : str or path-like
        A file written by :meth:`bayesmix.GaussianMixture.save` (or another family's).
    expected : type, optional
        Raise unless the saved fit is of this class.

    Returns
    -------
    MixtureModel
        The estimator with its constructor arguments, ``idata``, resolved ``priors_``,
        ``em_`` and fitted attributes restored.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    bayesmix.exceptions.LoadError
        When the file is not a bayesmix fit, is a fit of another class than
        ``expected``, or its contents do not match the class it names (an edited file).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import bayesmix as bm
    >>> gm = bm.GaussianMixture(random_state=0).fit(bm.datasets.load_faithful(), method="em")
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fit.nc"
    >>> _ = gm.save(path)
    >>> bm.load(path).weights_.round(3).tolist() == gm.weights_.round(3).tolist()
    True
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
    missing = [key for key in _REQUIRED_ATTRS if key not in idata.attrs]
    if missing or "posterior" not in idata.children:
        raise LoadError(
            f"{str(path)!r} is a netCDF file but not a bayesmix fit (missing "
            f"{missing or ['posterior group']}). Save fits with fit.save(path)."
        )
    name = idata.attrs["model_class"]
    classes = _model_classes()
    if name not in classes:
        raise LoadError(
            f"{str(path)!r} holds a {name!r} fit, which this bayesmix version does not "
            f"know (known: {sorted(classes)}); it was saved by bayesmix "
            f"{idata.attrs['bayesmix_version']}."
        )
    cls = classes[name]
    if expected is not None and cls is not expected:
        raise LoadError(
            f"{str(path)!r} holds a {name} fit, not a {expected.__name__}. Load it with "
            f"bayesmix.load(path) or {name}.load(path)."
        )
    try:
        return cls._from_datatree(idata, json.loads(idata.attrs["params"]))
    except (TypeError, KeyError, ValueError) as err:
        raise LoadError(
            f"{str(path)!r} says it holds a {name} fit, but its contents do not match that "
            f"class ({type(err).__name__}: {err}); it was edited or written by something "
            "other than fit.save(path). Re-fit and save again, or restore the original file."
        ) from err
