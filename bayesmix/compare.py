"""Comparing an EM point estimate with an MCMC posterior of the same mixture.

:func:`compare_fits` puts both fits on the same component labels and tabulates, for
every scalar parameter, the EM estimate against the posterior mean, sd and HDI. The
maths (the adjusted Rand index, the choice of the free covariance entries, the
flattening of the parameters to scalars) lives in small pure functions that
:mod:`bayesmix.plots` reuses.
"""

from __future__ import annotations

import logging
from typing import Any

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from bayesmix._datatree import observed_data as _observed_data
from bayesmix._params import HDI_PROB as PROBABILITY
from bayesmix._params import validate_params, validated
from bayesmix._threads import single_blas_thread
from bayesmix.exceptions import InvalidParameterError, NotFittedError
from bayesmix.stats import relabel_permutations

__all__ = ["adjusted_rand_index", "compare_fits", "hdi_columns"]

_log = logging.getLogger("bayesmix")

#: HDI probability of compare_fits and of the summaries (the ArviZ default).
HDI_PROB = 0.94
PARAMETER_NAMES = ("weights", "means", "covariances")

# A point estimate of a mixture: the weights (K,) and then the family's component
# parameters, component axis first (Gaussian: means (K, D), full covariances (K, D, D)).
Point = tuple[np.ndarray, ...]


# -- pure maths -----------------------------------------------------------------------------


def hdi_columns(hdi_prob: float = HDI_PROB) -> tuple[str, str]:
    """Return the names of the lower and upper HDI columns, as :func:`arviz_stats.summary`.

    ``compare_fits`` and ``summary()`` name their interval columns alike, so the two
    tables of a report (and code reading both) agree.

    Examples
    --------
    >>> from bayesmix.compare import hdi_columns
    >>> hdi_columns(0.94)
    ('hdi94_lb', 'hdi94_ub')
    """
    percent = int(hdi_prob * 100)  # arviz_stats.summary's rule, so the names always match
    return f"hdi{percent}_lb", f"hdi{percent}_ub"


def adjusted_rand_index(labels_a: Any, labels_b: Any) -> float:
    """Return the adjusted Rand index of two partitions of the same samples.

    The Rand index corrected for chance (Hubert & Arabie 1985), from the contingency
    table ``n_ij`` of the two labellings::

        ARI = (sum_ij C(n_ij) - E) / ((sum_i C(a_i) + sum_j C(b_j)) / 2 - E),
        E = sum_i C(a_i) * sum_j C(b_j) / C(n),     C(m) = m (m - 1) / 2

    where ``a_i`` and ``b_j`` are the row and column sums. It is 1 for identical
    partitions (whatever the label names), about 0 for independent ones, and does not
    depend on how the clusters are numbered.

    Parameters
    ----------
    labels_a, labels_b : array-like of shape (n_samples,)
        Cluster labels of each sample (any hashable values).

    Returns
    -------
    float
        In [-1, 1]; 1.0 when both partitions are identical, including the degenerate
        cases (fewer than two samples, a single cluster, all singletons).

    Examples
    --------
    >>> from bayesmix.compare import adjusted_rand_index
    >>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> round(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), 12)
    -0.5
    """
    a = np.asarray(labels_a).ravel()
    b = np.asarray(labels_b).ravel()
    if a.shape != b.shape:
        raise InvalidParameterError(
            f"adjusted_rand_index needs two labellings of the same samples; got "
            f"{a.size} and {b.size} labels. Pass one label per sample in both."
        )
    _, row = np.unique(a, return_inverse=True)
    _, col = np.unique(b, return_inverse=True)
    table = np.zeros((row.max(initial=-1) + 1, col.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (row, col), 1)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) // 2).sum())

    together = pairs(table)
    sum_a = pairs(table.sum(axis=1))
    sum_b = pairs(table.sum(axis=0))
    n_pairs = a.size * (a.size - 1) / 2
    expected = sum_a * sum_b / n_pairs if n_pairs else 0.0
    maximum = (sum_a + sum_b) / 2
    if maximum == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0
    return (together - expected) / (maximum - expected)


def _permute_point(point: Point, perm: np.ndarray) -> Point:
    """Return a point estimate with its components taken in the order ``perm``."""
    return tuple(a[perm] for a in point)


# -- fits -----------------------------------------------------------------------------------


def _check_fitted(fit: Any, name: str) -> None:
    """Raise :class:`NotFittedError` unless ``fit`` is a fitted bayesmix model."""
    if not hasattr(fit, "posterior_arrays") or not hasattr(fit, "idata"):
        raise NotFittedError(
            f"{name} is not a fitted bayesmix model (got {type(fit).__name__}); call "
            f"fit(X) on it first, or pass a fitted model."
        )


def _inference_method(fit: Any) -> str:
    """Return ``"em"``, ``"nuts"`` or ``"laplace"``: how ``fit`` was fitted."""
    return str(fit.idata.attrs.get("inference_method", "unknown"))


def _check_mcmc(fit: Any, name: str, what: str) -> None:
    """Raise unless ``fit`` is a fitted model with more than one posterior draw."""
    _check_fitted(fit, name)
    post = fit.idata["posterior"]
    if post.sizes["chain"] * post.sizes["draw"] < 2:
        raise InvalidParameterError(
            f"{what} needs posterior draws, but {name} has {post.sizes['chain']} chain x "
            f"{post.sizes['draw']} draw (inference_method={_inference_method(fit)!r}). Fit "
            "it with fit(X, method='nuts') first."
        )


def _training_data(fit: Any) -> np.ndarray:
    """Return the data ``fit`` was fitted to, shape (n_samples, n_features)."""
    return _observed_data(fit.idata).values


def _point_from_fit(fit: Any) -> Point:
    """Return the first draw of a fit's posterior (the EM estimate for an EM fit)."""
    return tuple(a[0] for a in fit.posterior_arrays().values())


def _point_from_em(fit: Any) -> Point:
    """Return the EM solution stored on a fit (``fit.em_``) as a point estimate."""
    point = fit._point_from_em(fit.em_, fit.n_features_in_)
    return tuple(point[name] for name in ("weights", *fit._component_vars))


def _posterior_draws(fit: Any, max_draws: int | None = None) -> tuple[np.ndarray, ...]:
    """Return the posterior weights and component parameters, draws flattened first."""
    return tuple(fit.posterior_arrays(max_draws).values())


def _check_comparable(em_fit: Any, mcmc_fit: Any) -> None:
    """Raise unless ``em_fit`` is EM and ``mcmc_fit`` a posterior (NUTS, Laplace) of one model."""
    _check_fitted(em_fit, "em_fit")
    _check_fitted(mcmc_fit, "mcmc_fit")
    for name, fit, expected in (
        ("em_fit", em_fit, ("em",)),
        ("mcmc_fit", mcmc_fit, ("nuts", "laplace")),
    ):
        received = _inference_method(fit)
        if received not in expected:
            raise InvalidParameterError(
                f"{name} must be fitted with method={' or '.join(map(repr, expected))}, but "
                f"it was fitted with method={received!r}. Pass the EM fit first and the "
                "posterior (NUTS or Laplace) fit second: "
                "compare_fits(model.fit(X, method='em'), other.fit(X, method='nuts'))."
            )
    if type(em_fit) is not type(mcmc_fit):
        raise InvalidParameterError(
            f"the fits are of different model classes: em_fit is a {type(em_fit).__name__} "
            f"and mcmc_fit a {type(mcmc_fit).__name__}. Fit the same model both ways."
        )
    for attr in ("n_components", "covariance_type", "n_features_in_"):
        a, b = getattr(em_fit, attr, None), getattr(mcmc_fit, attr, None)
        if a != b:
            raise InvalidParameterError(
                f"the fits are of different models: em_fit has {attr}={a!r} but mcmc_fit has "
                f"{attr}={b!r}. Fit both with the same model settings and data."
            )
    x_em, x_mcmc = _training_data(em_fit), _training_data(mcmc_fit)
    if x_em.shape != x_mcmc.shape or not np.allclose(x_em, x_mcmc, equal_nan=True):
        raise InvalidParameterError(
            f"the fits are of different data: em_fit was fitted to {x_em.shape[0]} x "
            f"{x_em.shape[1]} values and mcmc_fit to {x_mcmc.shape[0]} x {x_mcmc.shape[1]}, "
            "which differ. Fit both to the same X (same rows and column order)."
        )


def _align_point(point: Point, mcmc_fit: Any) -> tuple[Point, np.ndarray]:
    """Put a point estimate on the labelling of an MCMC fit.

    The reference is the posterior mean of the component parameters; components are
    matched on the family's relabelling summaries (Gaussian: the means in units of the
    data standard deviation) by :func:`bayesmix.stats.relabel_permutations`.

    Returns
    -------
    point : (weights, *component parameters) in the MCMC labelling
    perm : ndarray of int of shape (n_components,)
        ``perm[k]`` is the component of the input that takes MCMC label ``k``.
    """
    names = mcmc_fit._component_vars
    data = _observed_data(mcmc_fit.idata)
    posterior_mean = mcmc_fit._posterior_mean()[1:]
    reference = mcmc_fit._relabel_locations(
        {name: a[None] for name, a in zip(names, posterior_mean, strict=True)}, data
    )[0]
    locations = mcmc_fit._relabel_locations(
        {name: a[None] for name, a in zip(names, point[1:], strict=True)}, data
    )
    perm = relabel_permutations(locations, reference, np.ones(1))[0]
    return _permute_point(point, perm), perm


def _aligned_parameters(
    mcmc_fit: Any, point: Point
) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Return the MCMC draws and a point estimate as scalars in the same labelling.

    Returns
    -------
    variables, labels : list of str
        As in the family's ``_scalar_parameters``.
    draws : ndarray of shape (n_chains, n_draws, n_scalars)
    estimate : ndarray of shape (n_scalars,)
        ``point`` relabelled to the MCMC labelling.
    perm : ndarray of int of shape (n_components,)
        The permutation applied to ``point`` (see :func:`_align_point`).
    """
    post = mcmc_fit.idata["posterior"]
    names = mcmc_fit._scalar_names(post)
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    flat = _posterior_draws(mcmc_fit)  # (chain x draw, ...), chains one after the other
    variables, labels, values = mcmc_fit._scalar_parameters(flat, **names)
    aligned, perm = _align_point(point, mcmc_fit)
    _, _, estimate = mcmc_fit._scalar_parameters(tuple(a[None] for a in aligned), **names)
    return variables, labels, values.reshape(n_chains, n_draws, -1), estimate[0], perm


def _check_prob(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking it is a probability in (0, 1)."""
    validate_params({name: PROBABILITY}, {name: value}, None)
    return float(value)


@single_blas_thread
@validated({"em_fit": ["no_validation"], "mcmc_fit": ["no_validation"], "hdi_prob": PROBABILITY})
def compare_fits(em_fit: Any, mcmc_fit: Any, *, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
    """Compare an EM point estimate with the NUTS posterior of the same mixture.

    Both fits are put on the same component labels first: the EM estimate is permuted
    to the labelling of the MCMC fit by matching its component means to the posterior
    mean of the means (:func:`bayesmix.stats.relabel_permutations`), so fits whose
    labels differ are still compared component by component.

    Parameters
    ----------
    em_fit : fitted model
        A model fitted with ``fit(X, method="em")``.
    mcmc_fit : fitted model
        The same model (same ``n_components`` and ``covariance_type``) fitted to the
        same ``X`` with ``fit(X, method="nuts")``.
    hdi_prob : float, default=0.94
        Probability mass of the highest-density interval.

    Returns
    -------
    pandas.DataFrame
        One row per distinct scalar parameter, indexed like :func:`arviz_stats.summary`
        (``"weights[0]"``, ``"means[0, waiting]"``, ``"covariances[0, waiting,
        eruptions]"``; covariance entries on and below the diagonal for ``full``, of
        component 0 only for ``tied``, the diagonal for ``diag`` and one variance per
        component for ``spherical``), with columns

        - ``em``: the EM estimate, in the MCMC labelling;
        - ``mean``, ``sd``: posterior mean and standard deviation;
        - ``hdi94_lb``, ``hdi94_ub``: the ``hdi_prob`` highest-density interval,
          named as in :meth:`summary` and :func:`arviz_stats.summary` (``hdi90_lb``
          and ``hdi90_ub`` for ``hdi_prob=0.9``; see :func:`hdi_columns`);
        - ``em_in_hdi``: whether the EM estimate is inside that interval;
        - ``z_score``: ``(em - mean) / sd``.

        ``df.attrs["fit"]`` is a dict of fit-level figures: ``adjusted_rand_index``
        (agreement of the two fits' hard assignments of the training data),
        ``mean_lpd_em`` and ``mean_lpd_mcmc`` (mean log predictive density of the
        training data, :meth:`score_samples`), ``n_parameters`` (free parameters of the
        model), ``n_em_in_hdi``, ``n_parameters_compared`` (rows of the table),
        ``hdi_prob`` and ``em_permutation`` (``em_permutation[k]`` is the EM component
        given the MCMC label ``k``).

    Raises
    ------
    bayesmix.exceptions.NotFittedError
        If either model is not fitted.
    bayesmix.exceptions.InvalidParameterError
        If ``em_fit`` is not an EM fit, ``mcmc_fit`` not a NUTS fit, or the fits differ
        in components, covariance type, features or training data.

    Examples
    --------
    >>> import bayesmix as bm
    >>> from bayesmix.compare import compare_fits
    >>> X = bm.datasets.load_faithful()
    >>> em = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em")
    >>> nuts = bm.GaussianMixture(n_components=2, random_state=0).fit(
    ...     X, method="nuts", chains=2, draws=300, progressbar=False
    ... )  # doctest: +SKIP
    >>> table = compare_fits(em, nuts)  # doctest: +SKIP
    >>> table.loc["weights[0]", ["em", "mean", "hdi94_lb", "hdi94_ub"]]  # doctest: +SKIP
    >>> table.attrs["fit"]["adjusted_rand_index"]  # doctest: +SKIP
    """
    hdi_prob = float(hdi_prob)
    _check_comparable(em_fit, mcmc_fit)
    _, labels, draws, estimate, perm = _aligned_parameters(mcmc_fit, _point_from_fit(em_fit))
    da = xr.DataArray(draws, dims=("chain", "draw", "parameter"))
    interval = azs.hdi(da, prob=hdi_prob, dim=("chain", "draw"))
    low = interval.sel(ci_bound="lower").to_numpy()
    high = interval.sel(ci_bound="upper").to_numpy()
    flat = draws.reshape(-1, draws.shape[-1])
    mean = flat.mean(axis=0)
    sd = flat.std(axis=0, ddof=1)  # as arviz_stats.summary
    with np.errstate(divide="ignore", invalid="ignore"):
        z_score = (estimate - mean) / sd
    low_name, high_name = hdi_columns(hdi_prob)
    table = pd.DataFrame(
        {
            "em": estimate,
            "mean": mean,
            "sd": sd,
            low_name: low,
            high_name: high,
            "em_in_hdi": (low <= estimate) & (estimate <= high),
            "z_score": z_score,
        },
        index=pd.Index(labels, name="parameter"),
    )
    # What predict_proba and score_samples take of the training data (the data matrix,
    # or a mixture of regressions' response, predictors and covariates).
    X = mcmc_fit._training_inputs(_training_data(mcmc_fit))
    ari = adjusted_rand_index(
        em_fit.predict_proba(X).argmax(axis=1), mcmc_fit.predict_proba(X).argmax(axis=1)
    )
    lpd_em = float(np.mean(em_fit.score_samples(X)))
    lpd_mcmc = float(np.mean(mcmc_fit.score_samples(X)))
    n_in = int(table["em_in_hdi"].sum())
    table.attrs["fit"] = {
        "adjusted_rand_index": ari,
        "mean_lpd_em": lpd_em,
        "mean_lpd_mcmc": lpd_mcmc,
        "n_parameters": mcmc_fit._n_parameters(mcmc_fit.n_features_in_),
        "n_em_in_hdi": n_in,
        "n_parameters_compared": len(table),
        "hdi_prob": hdi_prob,
        "em_permutation": perm.tolist(),
    }
    _log.info(
        "compare_fits: EM inside the %.0f%% HDI for %d of %d parameters",
        100 * hdi_prob,
        n_in,
        len(table),
    )
    return table
