"""Plots of fitted mixtures on matplotlib (and arviz-plots for MCMC diagnostics).

Every ``plot_<thing>(fit, *, ax=None, ...)`` draws on ``ax`` when given, otherwise on a
new figure, and returns the matplotlib :class:`~matplotlib.figure.Figure` (it never
calls ``plt.show()``). ``plot_trace`` and, for continuous data, ``plot_ppc`` return the
arviz-plots ``PlotCollection``. Artists a reader may want to find again carry a ``gid``:
``"bayesmix-em"`` (EM estimate), ``"bayesmix-draw"`` (posterior draws),
``"bayesmix-mean"`` (posterior mean density) and ``"bayesmix-band"`` (its pointwise
HDI band; in rank plots, the band of uniform ranks).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import arviz_plots as azp
import arviz_stats as azs
import matplotlib.pyplot as plt
import numpy as np
import scipy.stats
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, Patch

from bayesmix._numeric import logsumexp
from bayesmix._threads import single_blas_thread
from bayesmix.compare import (
    Point,
    _aligned_parameters,
    _check_comparable,
    _check_fitted,
    _check_mcmc,
    _check_prob,
    _point_from_em,
    _point_from_fit,
    _posterior_draws,
    _training_data,
)
from bayesmix.exceptions import InvalidParameterError
from bayesmix.stats import draw_log_prob

__all__ = [
    "PlotAccessor",
    "plot_compare",
    "plot_components",
    "plot_concomitant",
    "plot_ppc",
    "plot_rank",
    "plot_regression",
    "plot_responsibilities",
    "plot_trace",
]


GID_EM = "bayesmix-em"
GID_DRAW = "bayesmix-draw"
GID_MEAN = "bayesmix-mean"
GID_BAND = "bayesmix-band"
N_SIGMA = 2.0
_GRID_SIZE = 300

# Posterior draws as flat arrays: weights (S, K), means (S, K, D), covariances (S, K, D, D)
# (Student-t: the scale matrices, then the degrees of freedom (S, K)).
Draws = tuple[np.ndarray, ...]


# -- pure helpers ---------------------------------------------------------------------------


def ellipse_geometry(
    covariance: np.ndarray, n_sigma: float = N_SIGMA
) -> tuple[float, float, float]:
    """Return ``(width, height, angle)`` of the ``n_sigma`` contour of a 2-D Gaussian.

    The contour ``(x - mu)^T Sigma^-1 (x - mu) = n_sigma^2`` is an ellipse whose axes are
    the eigenvectors of ``Sigma`` with half-lengths ``n_sigma * sqrt(eigenvalue)``.

    Parameters
    ----------
    covariance : ndarray of shape (2, 2)
    n_sigma : float, default=2.0

    Returns
    -------
    width, height : float
        Full lengths of the major and minor axes (matplotlib's ``Ellipse`` arguments).
    angle : float
        Angle of the major axis from the x axis, in degrees.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmix.plots import ellipse_geometry
    >>> ellipse_geometry(np.diag([4.0, 1.0]))
    (8.0, 4.0, 0.0)
    """
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    major = eigenvectors[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0]))) % 180.0
    half = n_sigma * np.sqrt(np.clip(eigenvalues, 0.0, None))
    return float(2 * half[1]), float(2 * half[0]), angle


def mixture_densities(
    grid: np.ndarray, draws: Draws, component_log_prob: Callable[..., np.ndarray]
) -> np.ndarray:
    """Return the mixture density of every draw on a 1-D grid, shape (n_draws, n_grid).

    ``draws`` hold one feature: means (S, K, 1) and covariances (S, K, 1, 1), and any
    further component parameters of ``component_log_prob`` (Student-t: dof (S, K)).
    """
    log_prob = draw_log_prob(grid[:, None], *draws, component_log_prob=component_log_prob)
    return np.exp(logsumexp(log_prob, axis=2))


#: Largest number of features that plot_components draws in a pairs grid by default.
MAX_PAIRS_FEATURES = 6


def marginal(draws: Draws, features: Sequence[int]) -> Draws:
    """Return the mixture of the marginals on ``features``.

    A Gaussian (or Student-t, same degrees of freedom) mixture again: the sub-vector of
    the means and the sub-matrix of the covariance (scale) matrices.
    """
    weights, means, covariances, *rest = draws
    idx = np.asarray(features)
    return (weights, means[..., idx], covariances[..., idx[:, None], idx[None, :]], *rest)


def thin_indices(n_total: int, n_keep: int) -> np.ndarray:
    """Return ``min(n_total, n_keep)`` evenly spaced indices into ``range(n_total)``."""
    if n_keep >= n_total:
        return np.arange(n_total)
    return np.linspace(0, n_total - 1, n_keep).round().astype(int)


def component_color(k: int) -> str:
    """Return the colour of component ``k`` (matplotlib's default cycle)."""
    return f"C{k % 10}"


# -- fit plumbing ---------------------------------------------------------------------------


def _has_draws(fit: Any) -> bool:
    post = fit.idata["posterior"]
    return post.sizes["chain"] * post.sizes["draw"] > 1


def _thinned_draws(fit: Any, n_draws: int) -> Draws | None:
    """Up to ``n_draws`` evenly spaced posterior draws, or None for a fit without draws."""
    if not _has_draws(fit) or n_draws == 0:
        return None
    return _posterior_draws(fit, max_draws=n_draws)  # type: ignore[return-value]


def _data(fit: Any, X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return the data to plot (training data when X is None) and its responsibilities."""
    values = _training_data(fit) if X is None else X
    # Validates X; the training data as the fit takes them (a regression's y, X, Z).
    proba = fit.predict_proba(fit._training_inputs(values) if X is None else values)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    return values, proba


def _feature_names(fit: Any) -> list[str]:
    return [str(f) for f in fit.idata["posterior"]["feature"].to_numpy()]


def _new_axes(ax: Axes | None, **subplots: Any) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(**subplots)
        return fig, ax
    return ax.get_figure(), ax


def _check_n_draws(n_draws: Any) -> int:
    if isinstance(n_draws, bool) or not isinstance(n_draws, int | np.integer) or n_draws < 0:
        raise InvalidParameterError(
            f"n_draws must be an integer >= 0; got {n_draws!r}. Try 100, or 0 to draw no "
            "posterior draws."
        )
    return int(n_draws)


# -- panels ---------------------------------------------------------------------------------


def _density_panel(
    ax: Axes,
    x: np.ndarray,
    draws: Draws | None,
    em: Point,
    hdi_prob: float,
    component_log_prob: Callable[..., np.ndarray],
) -> None:
    """Histogram of one feature, posterior mean density with its band, EM density dashed."""
    lo, hi = float(x.min()), float(x.max())
    pad = 0.1 * (hi - lo) if hi > lo else 1.0
    grid = np.linspace(lo - pad, hi + pad, _GRID_SIZE)
    ax.hist(x, bins="auto", density=True, color="0.75", edgecolor="0.6", label="data")
    if draws is not None:
        dens = mixture_densities(grid, draws, component_log_prob)
        band = azs.hdi(xr.DataArray(dens, dims=("sample", "grid")), prob=hdi_prob, dim="sample")
        ax.fill_between(
            grid,
            band.sel(ci_bound="lower").to_numpy(),
            band.sel(ci_bound="upper").to_numpy(),
            color="C0",
            alpha=0.3,
            linewidth=0,
            label=f"{hdi_prob:.0%} band",
            gid=GID_BAND,
        )
        ax.plot(grid, dens.mean(axis=0), color="C0", label="posterior mean", gid=GID_MEAN)
    em_dens = mixture_densities(grid, tuple(a[None] for a in em), component_log_prob)
    ax.plot(grid, em_dens[0], color="k", linestyle="--", label="EM", gid=GID_EM)


def _ellipse_panel(
    ax: Axes,
    xy: np.ndarray,
    labels: np.ndarray,
    draws: Draws | None,
    em: Point,
) -> None:
    """Points coloured by component, faint 2-sigma ellipses of draws, EM ellipses black dashed."""
    colors = [component_color(k) for k in labels]
    ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=6, alpha=0.5, linewidths=0, zorder=1)
    if draws is not None:
        weights, means, covariances = draws[:3]
        for s in range(weights.shape[0]):
            for k in range(weights.shape[1]):
                width, height, angle = ellipse_geometry(covariances[s, k])
                ax.add_patch(
                    Ellipse(
                        means[s, k],
                        width,
                        height,
                        angle=angle,
                        fill=False,
                        edgecolor=component_color(k),
                        alpha=0.1,
                        linewidth=0.6,
                        zorder=2,
                        gid=GID_DRAW,
                    )
                )
    for k in range(em[0].shape[0]):
        width, height, angle = ellipse_geometry(em[2][k])
        ax.add_patch(
            Ellipse(
                em[1][k],
                width,
                height,
                angle=angle,
                fill=False,
                edgecolor="k",
                linestyle="--",
                linewidth=1.8,
                zorder=3,
                gid=GID_EM,
            )
        )
    ax.autoscale_view()


def _ellipse_legend(ax: Axes, n_components: int, with_draws: bool) -> None:
    handles = [
        Line2D([], [], marker="o", linestyle="", color=component_color(k), label=f"component {k}")
        for k in range(n_components)
    ]
    handles.append(Line2D([], [], color="k", linestyle="--", label=f"EM ({N_SIGMA:g}σ)"))
    if with_draws:
        handles.append(
            Line2D([], [], color="k", alpha=0.3, label=f"posterior draws ({N_SIGMA:g}σ)")
        )
    ax.legend(handles=handles, fontsize="small", loc="best")


def _shown_features(
    names: list[str], features: Sequence[str] | None, max_features: int
) -> list[int]:
    """Return the indices of the features to draw: ``features`` (by name) or the first."""
    if not (isinstance(max_features, int) and max_features >= 1):
        raise InvalidParameterError(
            f"max_features must be a positive integer; got {max_features!r}."
        )
    if features is None:
        return list(range(min(len(names), max_features)))
    if isinstance(features, str):
        features = [features]
    unknown = [name for name in features if name not in names]
    if unknown or not features:
        raise InvalidParameterError(
            f"features must name some of the fit's features {names}; got {list(features)!r}."
        )
    return [names.index(name) for name in features]


def _short_list(names: list[str], limit: int = 8) -> str:
    """Return ``a, b, c``, or ``a, b, ... (n more)`` for long lists."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names) - limit} more)"


def _discrete_components(fit: Any, X: Any, *, ax: Any, n_draws: int, hdi_prob: float) -> Figure:
    """Draw the count (Poisson) or item-profile (Bernoulli) view of a discrete mixture."""
    values, _ = _data(fit, X)
    draws = _thinned_draws(fit, n_draws)
    em = _point_from_em(fit)
    names = _feature_names(fit)
    title = f"{fit.n_components}-component mixture ({fit.idata.attrs.get('inference_method')})"
    if fit.plot_kind == "binary":
        fig, axis = _new_axes(
            ax, figsize=(max(5.0, 0.6 * len(names) + 2) + 3, 4), layout="constrained"
        )
        _profile_panel(axis, values, draws, em, hdi_prob, names)
        axis.set_title(title)
        return fig
    n_features = values.shape[1]
    if ax is None:
        fig, axes = plt.subplots(
            1, n_features, figsize=(4.5 * n_features, 3.8), squeeze=False, layout="constrained"
        )
        axes = axes[0]
    else:
        axes = np.atleast_1d(np.asarray(ax, dtype=object))
        if axes.size != n_features:
            raise InvalidParameterError(
                f"a count mixture of {n_features} features is drawn in {n_features} panels, "
                f"so ax must be None or {n_features} axes; got {axes.size}."
            )
        fig = axes[0].get_figure()
    for d, axis in enumerate(axes):
        # Every component parameter of a count family is (..., K, D): keep feature d.
        one = None if draws is None else (draws[0], *(p[..., [d]] for p in draws[1:]))
        em_d = (em[0], *(p[..., [d]] for p in em[1:]))
        _count_panel(axis, values[:, d], one, em_d, hdi_prob, fit.component_log_prob)
        axis.set(xlabel=names[d], ylabel="probability")
    axes[0].legend(fontsize="small")
    if ax is None:
        fig.suptitle(title)
    else:
        axes[0].set_title(title)
    return fig


def _count_panel(
    ax: Axes,
    x: np.ndarray,
    draws: Draws | None,
    em: Point,
    hdi_prob: float,
    log_pmf: Callable[..., np.ndarray],
) -> None:
    """Observed count frequencies, the mixture pmf (posterior mean, band) and EM components.

    ``log_pmf(X, *params)`` is the family's component log pmf of one feature's counts,
    ``params`` its component parameters (K, 1) (Poisson: rates; negative binomial: rates
    and dispersions).
    """
    grid = np.arange(0, int(x.max()) + 2, dtype=np.float64)
    observed = np.bincount(x.astype(np.int64), minlength=grid.size)[: grid.size] / x.size
    ax.bar(grid, observed, color="0.75", edgecolor="0.6", label="data", width=0.8)
    if draws is not None:
        pmf = mixture_densities(grid, draws, log_pmf)
        band = azs.hdi(xr.DataArray(pmf, dims=("sample", "grid")), prob=hdi_prob, dim="sample")
        ax.fill_between(
            grid,
            band.sel(ci_bound="lower").to_numpy(),
            band.sel(ci_bound="upper").to_numpy(),
            color="C0",
            alpha=0.3,
            linewidth=0,
            step=None,
            label=f"{hdi_prob:.0%} band",
            gid=GID_BAND,
        )
        ax.plot(
            grid, pmf.mean(axis=0), "o-", color="C0", ms=3, label="posterior mean", gid=GID_MEAN
        )
    weights, *params = em
    em_pmf = mixture_densities(grid, (weights[None], *(p[None] for p in params)), log_pmf)[0]
    ax.plot(grid, em_pmf, color="k", linestyle="--", label="EM", gid=GID_EM)
    for k in range(weights.size):
        one_k = (p[None, [k]] for p in params)
        component = weights[k] * np.exp(log_pmf(grid[:, None], *one_k)[0, :, 0])
        ax.plot(
            grid,
            component,
            color=component_color(k),
            linestyle=":",
            linewidth=1.2,
            label=f"EM component {k}",
        )


def _profile_panel(
    ax: Axes,
    values: np.ndarray,
    draws: Draws | None,
    em: Point,
    hdi_prob: float,
    names: list[str],
) -> None:
    """Item-response profile: P(item = 1 | class) per class, posterior HDI bars, EM crosses."""
    items = np.arange(values.shape[1])
    ax.bar(items, values.mean(axis=0), color="0.85", edgecolor="0.7", label="data (all)")
    weights, probs = em
    for k in range(weights.size):
        color = component_color(k)
        if draws is not None:
            mean = draws[1][:, k, :].mean(axis=0)
            band = azs.hdi(
                xr.DataArray(draws[1][:, k, :], dims=("sample", "item")),
                prob=hdi_prob,
                dim="sample",
            )
            low, high = band.sel(ci_bound="lower").to_numpy(), band.sel(ci_bound="upper").to_numpy()
            ax.errorbar(
                items,
                mean,
                yerr=np.stack([mean - low, high - mean]),
                color=color,
                marker="o",
                capsize=3,
                label=f"class {k} (weight {draws[0][:, k].mean():.2f})",
                gid=GID_MEAN,
            )
        ax.plot(
            items,
            probs[k],
            "x--",
            color=color if draws is None else "k",
            linewidth=0.8,
            label=f"EM class {k} (weight {weights[k]:.2f})",
            gid=GID_EM,
        )
    ax.set(xticks=items, ylim=(-0.02, 1.02), ylabel="P(item = 1 | class)", xlabel="item")
    ax.set_xticklabels(names, rotation=0 if len(names) < 10 else 90)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))


def _pairs_axes(ax: Any, n_features: int) -> tuple[Figure, np.ndarray]:
    if ax is None:
        size = 2.4 * n_features
        fig, axes = plt.subplots(n_features, n_features, figsize=(size, size), squeeze=False)
        return fig, axes
    axes = np.asarray(ax, dtype=object)
    if axes.shape != (n_features, n_features):
        raise InvalidParameterError(
            f"with {n_features} features plot_components draws a {n_features} x {n_features} "
            f"pairs grid, so ax must be None or an array of axes of that shape; got an array "
            f"of shape {axes.shape}. Pass ax=None to create the grid."
        )
    return axes[0, 0].get_figure(), axes


# -- public plots ---------------------------------------------------------------------------


@single_blas_thread
def plot_components(
    fit: Any,
    X: Any = None,
    *,
    ax: Axes | np.ndarray | None = None,
    n_draws: int = 100,
    hdi_prob: float = 0.94,
    features: Sequence[str] | None = None,
    max_features: int = MAX_PAIRS_FEATURES,
) -> Figure:
    """Draw the data with the fitted mixture: densities (1-D) or component ellipses (2-D).

    - One feature: a density histogram of the data, the posterior mean predictive
      density with its pointwise ``hdi_prob`` band over draws, and the EM density
      (``fit.em_``) dashed.
    - Two features: the points coloured by :meth:`predict`, the 2-sigma ellipse of every
      component for up to ``n_draws`` posterior draws (faint) and the EM ellipses
      (dashed).
    - More features: a pairs grid, 2-D panels of every pair of features in the lower
      triangle and 1-D panels of every feature on the diagonal (the marginals of the
      mixture are again Gaussian mixtures). At most ``max_features`` features are drawn
      (the first ones, or ``features``); the title names what is left out, so that a fit
      of many features gives a readable figure of bounded size.

    For an EM fit there are no draws: only the EM density or ellipses are drawn.

    Parameters
    ----------
    fit : fitted model
        A fitted :class:`bayesmix.GaussianMixture` (``method="em"`` or ``"nuts"``).
    X : array-like of shape (n_samples, n_features), optional
        Data to draw; defaults to the training data (``fit.idata.observed_data``).
    ax : matplotlib Axes, optional
        Axes to draw on; for more than two features, a ``(D, D)`` array of axes.
    n_draws : int, default=100
        Posterior draws whose densities (1-D) or ellipses (2-D) are drawn, evenly thinned.
    hdi_prob : float, default=0.94
        Mass of the pointwise band of the 1-D posterior density.
    features : sequence of str, optional
        The features to draw (names as in ``fit.feature_names_in_``); default: the first
        ``max_features``.
    max_features : int, default=6
        Largest number of features in the pairs grid.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import bayesmix as bm
    >>> from bayesmix.plots import plot_components
    >>> X = bm.datasets.load_faithful()
    >>> gm = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em")
    >>> fig = plot_components(gm)
    >>> len(fig.axes[0].patches)  # one dashed EM ellipse per component
    2
    """
    _check_fitted(fit, "fit")
    n_draws = _check_n_draws(n_draws)
    hdi_prob = _check_prob(hdi_prob, "hdi_prob")
    if fit.plot_kind in ("counts", "binary"):
        return _discrete_components(fit, X, ax=ax, n_draws=n_draws, hdi_prob=hdi_prob)
    density = fit.component_log_prob
    values, proba = _data(fit, X)
    labels = proba.argmax(axis=1)
    draws = _thinned_draws(fit, n_draws)
    em = _point_from_em(fit)
    names = _feature_names(fit)
    title = f"{fit.n_components}-component mixture ({fit.idata.attrs.get('inference_method')})"
    shown = _shown_features(names, features, max_features)
    if len(shown) < len(names):
        left_out = [name for i, name in enumerate(names) if i not in shown]
        title += f"\n{len(shown)} of {len(names)} features; not drawn: {_short_list(left_out)}"
        values = values[:, shown]
        draws = None if draws is None else marginal(draws, shown)
        em = marginal(em, shown)
        names = [names[i] for i in shown]
    n_features = values.shape[1]
    if n_features == 1:
        fig, axis = _new_axes(ax)
        _density_panel(axis, values[:, 0], draws, em, hdi_prob, density)
        axis.set(xlabel=names[0], ylabel="density", title=title)
        axis.legend(fontsize="small")
        return fig
    if n_features == 2:
        fig, axis = _new_axes(ax)
        _ellipse_panel(axis, values, labels, draws, em)
        axis.set(xlabel=names[0], ylabel=names[1], title=title)
        _ellipse_legend(axis, fit.n_components, draws is not None)
        return fig
    fig, axes = _pairs_axes(ax, n_features)
    for i in range(n_features):
        for j in range(n_features):
            axis = axes[i, j]
            if i == j:
                _density_panel(
                    axis,
                    values[:, i],
                    None if draws is None else marginal(draws, [i]),
                    marginal(em, [i]),
                    hdi_prob,
                    density,
                )
            elif i > j:
                _ellipse_panel(
                    axis,
                    values[:, [j, i]],
                    labels,
                    None if draws is None else marginal(draws, [j, i]),
                    marginal(em, [j, i]),
                )
            else:
                axis.set_axis_off()
                continue
            if i == n_features - 1:
                axis.set_xlabel(names[j])
            if j == 0 and i > 0:
                axis.set_ylabel(names[i])
    _ellipse_legend(axes[0, n_features - 1], fit.n_components, draws is not None)
    fig.suptitle(title)
    return fig


@single_blas_thread
def plot_compare(
    fit_mcmc: Any,
    fit_em: Any = None,
    *,
    var_names: Sequence[str] | None = None,
    max_panels: int = 48,
) -> Figure:
    """Draw the posterior of every scalar parameter with the EM estimate marked.

    One panel per scalar parameter (the rows of :func:`bayesmix.compare.compare_fits`),
    a density histogram of its posterior draws and a vertical dashed line at the EM
    estimate, relabelled to the MCMC labelling as in ``compare_fits``.

    Parameters
    ----------
    fit_mcmc : fitted model
        A model fitted with ``method="nuts"``.
    fit_em : fitted model, optional
        The same model fitted with ``method="em"``; defaults to the EM solution that
        started the sampler (``fit_mcmc.em_``).
    var_names : sequence of str, optional
        Which parameters to draw; defaults to the weights and the family's component
        parameters (Gaussian: ``("weights", "means", "covariances")``).
    max_panels : int, default=48
        Largest number of panels: the first ones are drawn and the title says how many
        are left out (choose others with ``var_names``), so that a fit of many features
        gives a readable figure of bounded size.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import bayesmix as bm
    >>> from bayesmix.plots import plot_compare
    >>> X = bm.datasets.load_faithful()
    >>> nuts = bm.GaussianMixture(n_components=2, random_state=0).fit(
    ...     X, method="nuts", chains=2, draws=300, progressbar=False
    ... )  # doctest: +SKIP
    >>> fig = plot_compare(nuts)  # doctest: +SKIP
    """
    _check_mcmc(fit_mcmc, "fit_mcmc", "plot_compare")
    available = fit_mcmc._summary_vars
    if var_names is None:
        var_names = available
    unknown = [name for name in var_names if name not in available]
    if isinstance(var_names, str) or unknown or not var_names:
        raise InvalidParameterError(
            f"var_names must be a non-empty sequence of {list(available)}; got "
            f"{var_names!r}. Try var_names=('weights', 'means')."
        )
    if fit_em is None:
        point = _point_from_em(fit_mcmc)
    else:
        _check_comparable(fit_em, fit_mcmc)
        point = _point_from_fit(fit_em)
    variables, labels, draws, estimate, _ = _aligned_parameters(fit_mcmc, point)
    if not (isinstance(max_panels, int) and max_panels >= 1):
        raise InvalidParameterError(f"max_panels must be a positive integer; got {max_panels!r}.")
    keep = [p for p, name in enumerate(variables) if name in var_names]
    left_out = len(keep) - max_panels
    keep = keep[:max_panels]
    n_cols = min(4, len(keep))
    n_rows = math.ceil(len(keep) / n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.0 * n_cols, 2.2 * n_rows), squeeze=False, layout="constrained"
    )
    flat_axes = axes.ravel()
    for axis, p in zip(flat_axes, keep, strict=False):
        axis.hist(draws[..., p].ravel(), bins=30, density=True, color="C0", alpha=0.6, gid=GID_DRAW)
        axis.axvline(estimate[p], color="C3", linestyle="--", linewidth=1.5, gid=GID_EM)
        axis.set_title(labels[p], fontsize="small")
        axis.tick_params(labelsize="small")
        axis.set_yticks([])
    for axis in flat_axes[len(keep) :]:
        axis.set_axis_off()
    flat_axes[0].legend(
        handles=[
            Line2D([], [], color="C0", alpha=0.6, linewidth=6, label="posterior"),
            Line2D([], [], color="C3", linestyle="--", label="EM"),
        ],
        fontsize="x-small",
    )
    if left_out > 0:
        fig.suptitle(
            f"{len(keep)} of {len(keep) + left_out} parameters; choose others with var_names",
            fontsize="small",
        )
    return fig


@single_blas_thread
def plot_responsibilities(fit: Any, X: Any = None, *, ax: Axes | None = None) -> Figure:
    """Draw the classification uncertainty of every observation, sorted.

    For each observation, ``1 - max_k p(z = k | x)`` (0 for a certain assignment, at
    most ``1 - 1/K``) from :meth:`predict_proba` (posterior-averaged for NUTS), sorted
    increasingly and coloured by the assigned component.

    Parameters
    ----------
    fit : fitted model
    X : array-like of shape (n_samples, n_features), optional
        Defaults to the training data.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import bayesmix as bm
    >>> from bayesmix.plots import plot_responsibilities
    >>> X = bm.datasets.load_faithful()
    >>> gm = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em")
    >>> fig = plot_responsibilities(gm)
    >>> len(fig.axes[0].collections)  # one set of points per component
    2
    """
    _check_fitted(fit, "fit")
    _, proba = _data(fit, X)
    assigned = proba.argmax(axis=1)
    uncertainty = 1.0 - proba.max(axis=1)
    order = np.argsort(uncertainty, kind="stable")
    rank = np.arange(order.size)
    fig, axis = _new_axes(ax)
    for k in range(proba.shape[1]):
        mine = assigned[order] == k
        axis.scatter(
            rank[mine],
            uncertainty[order][mine],
            s=10,
            color=component_color(k),
            label=f"component {k}",
            gid=f"bayesmix-component-{k}",
        )
    axis.axhline(1.0 - 1.0 / proba.shape[1], color="0.5", linestyle=":", linewidth=1)
    axis.set(
        xlabel="observation (sorted by uncertainty)",
        ylabel="1 − max posterior membership probability",
        title=f"classification uncertainty ({fit.idata.attrs.get('inference_method')})",
    )
    axis.legend(fontsize="small", loc="upper left")
    return fig


def _diagnostic_data(
    fit: Any, var_names: Sequence[str] | None, what: str
) -> tuple[xr.DataTree, list[str]]:
    _check_mcmc(fit, "fit", what)
    if var_names is None:
        var_names = fit._diagnostic_vars
    available = list(fit.idata["posterior"].data_vars)
    unknown = [name for name in var_names if name not in available]
    if isinstance(var_names, str) or unknown or not var_names:
        raise InvalidParameterError(
            f"var_names must be a non-empty sequence of posterior variables {available}; got "
            f"{var_names!r}. Try var_names=('weights', 'means')."
        )
    return fit.idata, list(var_names)


def plot_trace(fit: Any, *, var_names: Sequence[str] | None = None, **kwargs: Any) -> Any:
    """Draw trace and marginal density of posterior variables (arviz-plots).

    One row per variable and feature (``weights``, then ``means`` of each feature, ...),
    so that features on different scales do not flatten each other; in a row, one
    colour per component and one line style per chain, named by the two legends.

    Parameters
    ----------
    fit : fitted model
        A model fitted with ``method="nuts"``.
    var_names : sequence of str, optional
        Defaults to the free variables other than correlation factors (Gaussian:
        ``("weights", "means", "sigma")``).
        Posterior variables to draw (``covariances`` and ``corr_chol`` are available too).
    **kwargs
        Passed to :func:`arviz_plots.plot_trace_dist` (e.g. ``rows``, ``aes``,
        ``backend=...``); ``compact=True`` draws every entry of a variable on one axis
        (arviz-plots' default layout) and adds no legends.

    Returns
    -------
    arviz_plots.PlotCollection
        Save with ``.savefig(path)``.

    Raises
    ------
    bayesmix.exceptions.InvalidParameterError
        For a fit without posterior draws (``method="em"``).
    """
    idata, names = _diagnostic_data(fit, var_names, "plot_trace")
    kwargs.setdefault("compact", False)
    if kwargs["compact"]:
        return azp.plot_trace_dist(idata, var_names=names, **kwargs)
    posterior = idata["posterior"].to_dataset()[names]
    sample_dims = ("chain", "draw")
    by_component = "component" in posterior.dims
    rest = [dim for dim in posterior.dims if dim not in (*sample_dims, "component")]
    kwargs.setdefault("rows", ["__variable__", *rest])
    aes = dict(kwargs.pop("aes", {}))
    if by_component:
        aes.setdefault("color", ["component"])
    aes.setdefault("linestyle", ["chain"])
    aes.setdefault("overlay", [*(["component"] if by_component else []), "chain"])
    collection = azp.plot_trace_dist(idata, var_names=names, aes=aes, **kwargs)
    for dim in ("component", "chain"):
        if any(dim in dims for dims in aes.values()):
            collection.add_legend(dim, title=dim)
    return collection


def rank_histogram(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Return the histogram of every chain's ranks among all draws, shape (chain, n_bins).

    The draws of all chains are ranked together (ties get their average rank); bin ``b``
    counts a chain's draws whose rank is in the ``b``-th of ``n_bins`` equal slices of
    ``1..n_chains x n_draws``. When every chain samples the same distribution, every
    count is about ``n_draws / n_bins`` (Vehtari et al. 2021).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmix.plots import rank_histogram
    >>> rank_histogram(np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]), 2)
    array([[4, 0],
           [0, 4]])
    """
    ranks = scipy.stats.rankdata(values, axis=None).reshape(values.shape)
    bins = np.minimum(((ranks - 1) * n_bins / values.size).astype(int), n_bins - 1)
    return np.stack([np.bincount(row, minlength=n_bins) for row in bins])


def uniform_rank_band(n_draws: int, n_bins: int, prob: float) -> tuple[float, float, float]:
    """Return the expected count of a rank bin and its central ``prob`` interval.

    Under uniform ranks a chain's count in one of ``n_bins`` bins is (about)
    Binomial(``n_draws``, 1 / ``n_bins``): the band is pointwise, so about
    ``1 - prob`` of the bars of well-mixed chains fall outside it.

    Examples
    --------
    >>> from bayesmix.plots import uniform_rank_band
    >>> uniform_rank_band(1000, 20, 0.94)
    (50.0, 37.0, 63.0)
    """
    low, high = scipy.stats.binom.interval(prob, n_draws, 1.0 / n_bins)
    return n_draws / n_bins, float(low), float(high)


def _scalar_entries(posterior: xr.DataTree, names: list[str]) -> list[tuple[str, np.ndarray]]:
    """Label and (chain, draw) values of every entry of ``names``, a symmetric matrix once.

    Labels as :func:`arviz_stats.summary`'s (``"means[0, waiting]"``); of a matrix over
    ``feature`` and ``feature_bis`` only the entries on and below the diagonal.
    """
    entries = []
    for name in names:
        da = posterior[name].transpose("chain", "draw", ...)
        dims = da.dims[2:]
        for index in np.ndindex(da.shape[2:]):
            where = dict(zip(dims, index, strict=True))
            if "feature_bis" in where and where["feature_bis"] > where.get("feature", 0):
                continue
            labels = ", ".join(str(da[dim].values[i]) for dim, i in where.items())
            label = f"{name}[{labels}]" if labels else name
            entries.append((label, da.to_numpy()[(slice(None), slice(None), *index)]))
    return entries


def plot_rank(
    fit: Any,
    *,
    var_names: Sequence[str] | None = None,
    n_bins: int | None = None,
    prob: float = 0.94,
    max_panels: int = 48,
) -> Figure:
    """Draw rank histograms of posterior variables, one line per chain.

    All draws of a parameter are ranked together and each chain's ranks binned: when the
    chains sample the same distribution, every chain's bars stay near the expected count
    (dashed), inside the grey band where a bin of uniform ranks falls with probability
    ``prob`` (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021). A chain stuck in one
    region piles its ranks at one end. One panel per scalar parameter (a symmetric
    matrix once, by its entries on and below the diagonal).

    Parameters
    ----------
    fit : fitted model
        A model fitted with ``method="nuts"``.
    var_names : sequence of str, optional
        Defaults to the free variables other than correlation factors (Gaussian:
        ``("weights", "means", "sigma")``).
        Posterior variables to draw.
    n_bins : int, optional
        Bins of the histograms; default ``min(20, max(5, n_draws // 10))``.
    prob : float, default=0.94
        Probability of the pointwise band of uniform ranks.
    max_panels : int, default=48
        Largest number of panels: the first ones are drawn and the title says how many
        are left out (choose others with ``var_names``).

    Returns
    -------
    matplotlib.figure.Figure
        Panels carry the band (``gid="bayesmix-band"``) and one line per chain
        (``gid="bayesmix-chain-<c>"``).

    Raises
    ------
    bayesmix.exceptions.InvalidParameterError
        For a fit without posterior draws (``method="em"``) or with one chain.

    References
    ----------
    A. Vehtari, A. Gelman, D. Simpson, B. Carpenter and P.-C. Bürkner, "Rank-normalization,
    folding, and localization: an improved R-hat for assessing convergence of MCMC",
    *Bayesian Analysis* 16(2), 667-718, 2021.
    """
    idata, names = _diagnostic_data(fit, var_names, "plot_rank")
    posterior = idata["posterior"]
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    if n_chains < 2:
        raise InvalidParameterError(
            f"rank plots compare chains, and this fit has {n_chains} chain; fit with "
            "chains=2 or more, or look at plot_trace."
        )
    if n_bins is None:
        n_bins = min(20, max(5, n_draws // 10))
    if not (isinstance(n_bins, int | np.integer) and not isinstance(n_bins, bool) and n_bins >= 2):
        raise InvalidParameterError(f"n_bins must be an integer >= 2; got {n_bins!r}.")
    prob = _check_prob(prob, "prob")
    if not (isinstance(max_panels, int) and max_panels >= 1):
        raise InvalidParameterError(f"max_panels must be a positive integer; got {max_panels!r}.")
    entries = _scalar_entries(posterior, names)
    left_out = len(entries) - max_panels
    entries = entries[:max_panels]
    expected, low, high = uniform_rank_band(n_draws, int(n_bins), prob)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    n_cols = min(4, len(entries))
    n_rows = math.ceil(len(entries) / n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(3.0 * n_cols, 0.6 + 2.0 * n_rows),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    flat_axes = axes.ravel()
    for axis, (label, values) in zip(flat_axes, entries, strict=False):
        axis.axhspan(low, high, color="0.88", linewidth=0, gid=GID_BAND)
        axis.axhline(expected, color="0.45", linestyle="--", linewidth=1)
        for c, counts in enumerate(rank_histogram(values, int(n_bins))):
            axis.stairs(
                counts,
                edges,
                baseline=None,
                color=f"C{c % 10}",
                linewidth=1.3,
                gid=f"bayesmix-chain-{c}",
            )
        axis.set_title(label, fontsize="small")
        axis.tick_params(labelsize="x-small")
        axis.set_ylim(bottom=0)
    for axis in flat_axes[len(entries) :]:
        axis.set_axis_off()
    for axis in flat_axes[max(0, len(entries) - n_cols) : len(entries)]:  # each column's last
        axis.xaxis.set_tick_params(labelbottom=True)
        axis.set_xlabel("rank (fraction of all draws)", fontsize="small")
    handles = [
        Line2D([], [], color=f"C{c % 10}", linewidth=1.3, label=f"chain {c}")
        for c in range(n_chains)
    ]
    handles += [
        Line2D([], [], color="0.45", linestyle="--", label="expected (uniform ranks)"),
        Patch(color="0.88", label=f"{prob:.0%} band of uniform ranks"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 6))
    if left_out > 0:
        fig.suptitle(
            f"{len(entries)} of {len(entries) + left_out} parameters; choose others with var_names",
            fontsize="small",
        )
    return fig


def plot_ppc(fit: Any, *, n_draws: int = 50, random_seed: int | None = None, **kwargs: Any) -> Any:
    """Posterior predictive check: the density of replicated data against the data.

    One panel per feature: the kernel density of the observed data (black) over those
    of up to ``n_draws`` data sets simulated from the posterior (for an EM fit, from
    the estimate). For a mixture of regressions, one panel: its response ``y``, drawn
    as its family's data are (a density, or frequencies of counts and of 0/1).
    Posterior predictive draws are sampled first if ``fit.idata`` has none.

    Parameters
    ----------
    fit : fitted model
    n_draws : int, default=50
        Replicated data sets to draw.
    random_seed : int, optional
        Seed of the posterior predictive sampling, when it is needed.
    **kwargs
        Passed to :func:`arviz_plots.plot_ppc_dist`.

    Returns
    -------
    arviz_plots.PlotCollection or matplotlib.figure.Figure
        For continuous families the collection of :func:`arviz_plots.plot_ppc_dist`
        (save with ``.savefig(path)``); for counts (Poisson) and binary data (Bernoulli)
        a figure of observed frequencies against the replicates' median and 94%
        interval: of every count value per feature, and of the number of positive items
        per observation (which a latent class model must reproduce).
    """
    _check_fitted(fit, "fit")
    n_draws = _check_n_draws(n_draws)
    if "posterior_predictive" not in fit.idata.children:
        fit.sample_posterior_predictive(random_seed=random_seed)
    sizes = fit.idata["posterior_predictive"].sizes
    available = sizes["chain"] * sizes["draw"]
    if fit._data_kind in ("counts", "binary"):
        return _discrete_ppc(fit, min(n_draws, available))
    name = fit._observed  # "x" (obs, feature); a mixture of regressions' response "y" (obs)
    if "feature" in fit.idata["observed_data"][name].dims:
        kwargs.setdefault("cols", ["feature"])
    return azp.plot_ppc_dist(
        fit.idata, var_names=[name], num_samples=min(n_draws, available), **kwargs
    )


def _discrete_ppc(fit: Any, n_draws: int) -> Figure:
    """Observed frequencies against replicated ones (median, 94% interval), per statistic."""
    name = fit._observed
    observed = fit.idata["observed_data"][name]
    replicated = fit.idata["posterior_predictive"][name]
    if "feature" not in observed.dims:  # a mixture of regressions' response: one column
        observed = observed.expand_dims(feature=[name], axis=-1)
        replicated = replicated.expand_dims(feature=[name], axis=-1)
    names = [str(f) for f in observed["feature"].to_numpy()]
    observed = observed.transpose("obs", "feature").to_numpy()
    replicated = replicated.transpose("chain", "draw", "obs", "feature").to_numpy()
    replicated = replicated.reshape(-1, *observed.shape)
    replicated = replicated[thin_indices(replicated.shape[0], n_draws)]
    if fit._data_kind == "binary" and len(names) > 1:
        panels = [("positive items per observation", observed.sum(1), replicated.sum(2))]
    else:
        panels = [(names[d], observed[:, d], replicated[:, :, d]) for d in range(len(names))]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False, layout="constrained"
    )
    for axis, (label, obs, rep) in zip(axes[0], panels, strict=True):
        top = int(max(obs.max(), np.quantile(rep, 0.99))) + 1
        values = np.arange(top + 1)
        freq_obs = np.bincount(obs.astype(np.int64), minlength=top + 1)[: top + 1] / obs.size
        freq_rep = (
            np.stack([np.bincount(r.astype(np.int64), minlength=top + 1)[: top + 1] for r in rep])
            / rep.shape[1]
        )
        low, mid, high = np.quantile(freq_rep, [0.03, 0.5, 0.97], axis=0)
        axis.bar(values, freq_obs, color="0.75", edgecolor="0.6", label="data")
        axis.errorbar(
            values,
            mid,
            yerr=np.stack([mid - low, high - mid]),
            fmt="o",
            color="C0",
            capsize=3,
            label=f"replicates (median, 94%; {rep.shape[0]} data sets)",
            gid=GID_MEAN,
        )
        axis.set(xlabel=label, ylabel="frequency")
    axes[0, 0].legend(fontsize="small")
    fig.suptitle("posterior predictive check")
    return fig


def plot_regression(
    fit: Any,
    X: Any = None,
    y: Any = None,
    Z: Any = None,
    *,
    ax: Axes | None = None,
    prob: float = 0.94,
    n_grid: int = 200,
) -> Figure:
    """Draw a mixture of regressions (:class:`bayesmix.MixtureRegression`).

    One predictor: the data coloured by their most probable component, each
    component's mean line ``g^-1(x' beta_k)`` (posterior mean, gid ``"bayesmix-mean"``)
    with its equal-tailed ``prob`` band (``"bayesmix-band"``), and the EM estimate's
    line dashed (``"bayesmix-em"``) for a posterior fit. More predictors: every
    component's coefficients, posterior mean and ``prob`` interval, the EM estimate
    marked (a forest plot).

    Parameters
    ----------
    fit : MixtureRegression
        A fitted mixture of regressions.
    X, y : array-like, optional
        The data to draw (default: the training data).
    Z : array-like, optional
        Their covariates of the proportions (a fit with concomitant variables).
    ax : matplotlib Axes, optional
    prob : float, default=0.94
    n_grid : int, default=200
        Points of the predictor's grid for the lines.

    Returns
    -------
    matplotlib.figure.Figure
    """
    prob = _check_prob(prob, "prob")
    if not hasattr(fit, "predict_components"):
        raise InvalidParameterError(
            f"plot_regression draws a MixtureRegression; got {type(fit).__name__}. "
            "Use plot_components for a mixture."
        )
    _check_fitted(fit, "fit")
    if (X is None) != (y is None):
        raise InvalidParameterError("pass both X and y, or neither (the training data).")
    if X is None:  # the training data: response, design, covariates' design
        values = fit.idata["observed_data"]["x"].transpose("obs", "feature").to_numpy()
        labels = fit.predict_proba(fit._training_inputs(values)).argmax(axis=1)
        stop = 1 + len(fit.predictor_names_)
        X, y = values[:, 2 if fit.fit_intercept else 1 : stop], values[:, 0]
    else:
        labels = fit.predict_proba(X, y, Z).argmax(axis=1)
    X = np.asarray(X, dtype=np.float64)
    X = X[:, None] if X.ndim == 1 else X
    y = np.asarray(y, dtype=np.float64)
    has_em = getattr(fit, "em_", None) is not None and _has_draws(fit)
    if X.shape[1] == 1:
        fig, ax = _new_axes(ax)
        for k in range(fit.n_components):
            chosen = labels == k
            ax.scatter(X[chosen, 0], y[chosen], s=10, alpha=0.6, color=component_color(k))
        grid = np.linspace(X[:, 0].min(), X[:, 0].max(), n_grid)
        lines = fit.predict_components(grid[:, None], prob=prob)
        design = np.column_stack([np.ones(n_grid), grid]) if fit.fit_intercept else grid[:, None]
        for k in range(fit.n_components):
            color = component_color(k)
            ax.plot(
                grid,
                lines["component_mean"][:, k],
                color=color,
                gid=GID_MEAN,
                label=f"component {k}",
            )
            if _has_draws(fit):
                ax.fill_between(
                    grid,
                    lines["component_lower"][:, k],
                    lines["component_upper"][:, k],
                    color=color,
                    alpha=0.25,
                    gid=GID_BAND,
                )
            if has_em:
                em_line = fit._response.mean(design @ fit.em_.params["coefficients"][k])
                ax.plot(grid, em_line, color=color, linestyle="--", gid=GID_EM)
        ax.set_xlabel(fit.feature_names_in_[0])
        ax.set_ylabel(fit.response_name_)
        ax.legend(loc="best", fontsize="small")
        return fig
    draws = fit.posterior_arrays()["coefficients"]  # (S, K, P)
    names = fit.predictor_names_
    fig, ax = _new_axes(ax, figsize=(6, 0.5 + 0.35 * len(names) * fit.n_components))
    tail = 0.5 * (1.0 - prob)
    low, high = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    mean = draws.mean(axis=0)
    rows = np.arange(len(names))
    for k in range(fit.n_components):
        offset = rows * (fit.n_components + 1) + k
        color = component_color(k)
        ax.hlines(offset, low[k], high[k], color=color, gid=GID_BAND)
        ax.plot(mean[k], offset, "o", color=color, gid=GID_MEAN, label=f"component {k}")
        if has_em:
            ax.plot(fit.em_.params["coefficients"][k], offset, "x", color="black", gid=GID_EM)
    ax.set_yticks(rows * (fit.n_components + 1) + 0.5 * (fit.n_components - 1), names)
    ax.invert_yaxis()
    ax.axvline(0.0, color="grey", linewidth=0.5)
    ax.set_xlabel("coefficient")
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_concomitant(
    fit: Any,
    covariate: str | None = None,
    *,
    ax: Axes | None = None,
    prob: float = 0.94,
    n_grid: int = 200,
) -> Figure:
    """Draw a mixture of regressions' proportions as functions of one covariate.

    ``P(z = k | w) = softmax_k(w' gamma_k)`` over the training range of ``covariate``,
    the other covariates at their training means: the posterior mean of each
    component's probability (gid ``"bayesmix-mean"``) and its equal-tailed ``prob``
    band (``"bayesmix-band"``); the estimate alone for an EM fit.

    Parameters
    ----------
    fit : MixtureRegression
        Fitted with ``concomitant=True``.
    covariate : str, optional
        A name in ``fit.covariate_names_`` (default: the first after the intercept).
    ax : matplotlib Axes, optional
    prob : float, default=0.94
    n_grid : int, default=200

    Returns
    -------
    matplotlib.figure.Figure
    """
    prob = _check_prob(prob, "prob")
    _check_fitted(fit, "fit")
    if not getattr(fit, "concomitant", False):
        raise InvalidParameterError(
            "plot_concomitant draws the proportions of a MixtureRegression fitted with "
            f"concomitant=True; got {type(fit).__name__} without concomitant variables."
        )
    names = list(fit.covariate_names_)
    covariate = names[1] if covariate is None else covariate
    if covariate not in names[1:]:
        raise InvalidParameterError(
            f"covariate {covariate!r} is not one of the fit's covariates {names[1:]}."
        )
    values = fit.idata["observed_data"]["x"].transpose("obs", "feature").to_numpy()
    design = values[:, values.shape[1] - len(names) :]  # the covariates' design
    j = names.index(covariate)
    grid = np.linspace(design[:, j].min(), design[:, j].max(), n_grid)
    rows = np.tile(design.mean(axis=0), (n_grid, 1))
    rows[:, j] = grid
    gamma = fit.posterior_arrays(max_draws=1000)["concomitant"]  # (S, K, C)
    eta = np.einsum("nc,skc->snk", rows, gamma)
    proportions = np.exp(eta - logsumexp(eta, axis=-1, keepdims=True))
    tail = 0.5 * (1.0 - prob)
    low, high = np.quantile(proportions, [tail, 1.0 - tail], axis=0)
    fig, ax = _new_axes(ax)
    for k in range(fit.n_components):
        color = component_color(k)
        ax.plot(
            grid,
            proportions[:, :, k].mean(axis=0),
            color=color,
            gid=GID_MEAN,
            label=f"component {k}",
        )
        if _has_draws(fit):
            ax.fill_between(grid, low[:, k], high[:, k], color=color, alpha=0.25, gid=GID_BAND)
    ax.set(xlabel=covariate, ylabel="P(component | covariates)", ylim=(0.0, 1.0))
    ax.legend(loc="best", fontsize="small")
    return fig


class PlotAccessor:
    """``fit.plot.<thing>(...)`` calls ``bayesmix.plot_<thing>(fit, ...)``.

    Examples
    --------
    >>> import bayesmix as bm
    >>> gm = bm.GaussianMixture(random_state=0).fit(bm.datasets.load_faithful(), method="em")
    >>> fig = gm.plot.components()
    >>> sorted(name for name in dir(gm.plot) if not name.startswith("_"))[:3]
    ['compare', 'components', 'concomitant']
    """

    def __init__(self, fit: Any) -> None:
        self._fit = fit

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or f"plot_{name}" not in __all__:
            raise AttributeError(f"no plot named {name!r}; available: {self.__dir__()}")
        function = globals()[f"plot_{name}"]

        @functools.wraps(function)
        def bound(*args: Any, **kwargs: Any) -> Any:
            return function(self._fit, *args, **kwargs)

        return bound

    def __dir__(self) -> list[str]:
        return sorted(name.removeprefix("plot_") for name in __all__ if name.startswith("plot_"))
