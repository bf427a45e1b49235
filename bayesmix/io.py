"""Loading saved fits: :func:`load` finds the class in the family registry.

A fit is saved (``fit.save(path)``) as its ``idata`` in one netCDF4 file; the root
attributes carry everything needed to rebuild the estimator (class name, constructor
arguments, resolved priors, the EM solution). Everything read is checked before it is
used (:func:`bayesmix._datatree.check_fit`), so an edited or damaged file fails on load,
naming the field, instead of later. See :mod:`bayesmix._datatree`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from bayesmix._datatree import read_fit, restore
from bayesmix._params import Satisfies, validated
from bayesmix.exceptions import LoadError
from bayesmix.families import FAMILIES, class_named

if TYPE_CHECKING:
    from bayesmix.model import MixtureModel

__all__ = ["load"]


def _is_model_class(value: object) -> bool:
    from bayesmix.model import MixtureModel

    return isinstance(value, type) and issubclass(value, MixtureModel)


@validated(
    {
        "path": [str, os.PathLike],
        "expected": [None, Satisfies(_is_model_class, "a bayesmix model class")],
    }
)
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
        ``expected``, or its contents do not match the class it names (an edited or
        damaged file): unknown or invalid constructor arguments, priors the model does
        not accept (distribution, parameters or their shapes), posterior variables of
        the wrong dims or sizes, non-finite values or values outside their support
        (weights off the simplex, covariances not symmetric positive definite, negative
        rates, ...), an EM result that does not fit the model, non-finite data or
        negative sample weights. The message names the field.

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
    idata = read_fit(path)
    name = idata.attrs["model_class"]
    cls = class_named(name)
    if cls is None:
        raise LoadError(
            f"{str(path)!r} holds a {name!r} fit, which this bayesmix version does not "
            f"know (known: {sorted(FAMILIES.class_names())}); it was saved by bayesmix "
            f"{idata.attrs['bayesmix_version']}."
        )
    if expected is not None and cls is not expected:
        raise LoadError(
            f"{str(path)!r} holds a {name} fit, not a {expected.__name__}. Load it with "
            f"bayesmix.load(path) or {name}.load(path)."
        )
    return restore(cls, idata, path)
