"""Loaders for the real data sets shipped inside the package."""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load_faithful"]


def _read_csv(name: str) -> pd.DataFrame:
    with resources.files("bayesmix.datasets").joinpath("data", name).open("r") as handle:
        return pd.read_csv(handle)


def load_faithful() -> pd.DataFrame:
    """Load the Old Faithful geyser data (272 eruptions, 2 columns).

    Eruptions of the Old Faithful geyser in Yellowstone National Park, as in R's
    ``datasets::faithful``. The two clusters (short eruptions followed by short
    waits, long eruptions by long waits) make it the classic two-component
    Gaussian mixture example.

    Returns
    -------
    pandas.DataFrame of shape (272, 2)
        ``eruptions``: eruption time in minutes; ``waiting``: waiting time to the
        next eruption in minutes. The index is 0..271.

    Notes
    -----
    Source: W. Härdle (1991), *Smoothing Techniques with Implementation in S*,
    Springer; A. Azzalini and A. W. Bowman (1990), "A look at some data on the Old
    Faithful geyser", *Applied Statistics* 39, 357-365. Distributed with R
    (``datasets`` package, public domain data).

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_faithful()
    >>> X.shape
    (272, 2)
    >>> list(X.columns)
    ['eruptions', 'waiting']
    """
    return _read_csv("faithful.csv").astype("float64")
