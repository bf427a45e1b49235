"""Choosing the number of components: BIC and ICL of EM fits, LOO of NUTS fits."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from typing import Any, Literal

import arviz_stats as azs
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bayesmix._threads import single_blas_thread
from bayesmix._validation import (
    check_data,
    check_option,
    check_positive_int,
    check_sample_weight,
)
from bayesmix.exceptions import InvalidParameterError, SamplerWarning
from bayesmix.families import FAMILIES
from bayesmix.model import MixtureModel

__all__ = [
    "classification_entropy",
    "elpd_difference",
    "nonempty_components",
    "overfitted_mixture",
    "plot_select_k",
    "select_k",
]

_log = logging.getLogger("bayesmix")

SELECT_METHODS = ("both", "em", "nuts")


def classification_entropy(
    responsibilities: np.ndarray, sample_weight: np.ndarray | None = None
) -> float:
    """Return ``-sum_n w_n sum_k r_nk log r_nk``, the entropy of a soft classification (>= 0).

    ``w_n = 1`` without ``sample_weight`` (frequency weights).
    """
    r = np.asarray(responsibilities, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(r > 0, r * np.log(r), 0.0).sum(axis=1)
    return float(-(terms.sum() if sample_weight is None else sample_weight @ terms))


def elpd_difference(
    elpd_i: np.ndarray, reference_i: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[float, float]:
    """Return the difference in summed pointwise elpd to a reference, and its standard error.

    ``sum_n (elpd_n - ref_n)`` with standard error ``sqrt(N var(elpd_n - ref_n))``
    (Vehtari, Gelman & Gabry 2017, eq. 24). With ``sample_weight`` (frequency weights)
    the sum, ``N`` and the variance are those of the data with each row repeated ``w_n``
    times.
    """
    diff = np.asarray(elpd_i, dtype=np.float64) - np.asarray(reference_i, dtype=np.float64)
    if sample_weight is None:
        return float(diff.sum()), float(np.sqrt(diff.size * diff.var(ddof=1)))
    return float(sample_weight @ diff), _weighted_se(diff, sample_weight)


def _weighted_se(values: np.ndarray, sample_weight: np.ndarray) -> float:
    """``sqrt(N var(values))`` of the values repeated ``w_n`` times (``N = sum w``)."""
    total = float(sample_weight.sum())
    mean = float(sample_weight @ values) / total
    variance = float(sample_weight @ (values - mean) ** 2) / max(total - 1.0, 1.0)
    return float(np.sqrt(total * variance))


def _model_class(model: Any) -> type[MixtureModel]:
    """Return the model class of ``model``: a bayesmix class or a family registry name."""
    if isinstance(model, str) and model in FAMILIES:
        return FAMILIES[model]
    if isinstance(model, type) and issubclass(model, MixtureModel):
        return model
    raise InvalidParameterError(
        f"model must be a bayesmix mixture class such as bm.GaussianMixture or a family "
        f"name in {sorted(FAMILIES)}; got {model!r}."
    )


@single_blas_thread
def select_k(
    X: Any,
    ks: Iterable[int] = range(1, 7),
    *,
    method: Literal["both", "em", "nuts"] = "both",
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full",
    model: type[MixtureModel] | str = "gaussian",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_state: int | None = None,
    progressbar: bool = True,
    sample_weight: Any = None,
    **model_kwargs: Any,
) -> pd.DataFrame:
    """Fit a mixture for every K and rank the K by BIC, ICL and LOO.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    ks : iterable of int, default=range(1, 7)
        Numbers of components to compare.
    method : {"both", "em", "nuts"}, default="both"
        ``"em"``: BIC and ICL of the EM fits only (fast); ``"nuts"`` or ``"both"``: also
        the PSIS-LOO expected log predictive density of NUTS fits (arviz-stats).
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        For the Gaussian and Student-t families.
    model : class or str, default="gaussian"
        The mixture family: any bayesmix model class (``bm.PoissonMixture``, ...) or its
        name in the family registry (``"poisson"``; see ``bayesmix.families.FAMILIES``).
    draws, tune, chains : int
        Sampler settings of the NUTS fits.
    random_state : int, optional
        Seeds every fit.
    progressbar : bool, default=True
        Show the progress over K and the sampler's progress.
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights of the rows of ``X``, passed to every fit: the log-likelihood,
        BIC, ICL and the LOO elpd (``sum_n w_n elpd_n``, its SE from the weighted
        pointwise values) are those of the data with each row repeated ``w_n`` times.
    **model_kwargs
        Further arguments of ``model`` (``priors``, ``n_init``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per K (column ``n_components``): ``log_likelihood`` (EM, summed),
        ``n_parameters``, ``bic`` and ``icl`` (lower is better; ICL = BIC + 2 x the
        classification entropy, Biernacki, Celeux & Govaert 2000), and with NUTS
        ``elpd_loo``, ``se``, ``p_loo``, ``elpd_diff`` and ``dse`` (difference to the best
        K and its standard error), ``max_pareto_k`` and ``n_bad_pareto_k``, and the
        sampler's ``divergences``, ``max_rhat`` and ``min_ess_bulk`` (a LOO winner whose
        chains disagree is not a winner); a
        ``rank_<criterion>`` column per criterion (1 = best). ``df.attrs["best"]`` maps
        each criterion to its chosen K.

    Warns
    -----
    SamplerWarning
        When some Pareto k of a LOO exceed the reliability threshold: that LOO estimate
        is unreliable (try more draws, or K-fold cross-validation).

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_faithful()
    >>> table = bm.select_k(X, ks=[1, 2, 3], method="em", random_state=0, progressbar=False)
    >>> table.attrs["best"]["bic"]
    2
    """
    check_option(method, "method", SELECT_METHODS)
    model = _model_class(model)
    ks = [check_positive_int(k, "every K in ks") for k in ks]
    if not ks or len(set(ks)) != len(ks):
        raise InvalidParameterError(
            f"ks must be distinct positive integers; got {ks}. Try ks=range(1, 7)."
        )
    data = check_data(X, n_components=max(ks), allow_bool=model._accepts_bool, ks=ks)
    weights = check_sample_weight(sample_weight, data.n_samples)
    n_total = data.n_samples if weights is None else float(weights.sum())
    rows, pointwise = [], {}
    from rich.progress import track

    for k in track(ks, description="select_k: fitting K", disable=not progressbar, transient=True):
        spec = {"n_components": k, "random_state": random_state}
        if "covariance_type" in model._param_names():
            spec["covariance_type"] = covariance_type
        em = model(**spec, **model_kwargs).fit(data.values, method="em", sample_weight=weights)
        loglik = float(em.em_.log_likelihood * n_total)
        n_params = em._n_parameters(data.n_features)
        bic = em.bic(data.values, sample_weight=weights)
        row: dict[str, Any] = {
            "n_components": k,
            "log_likelihood": loglik,
            "n_parameters": n_params,
            "bic": bic,
            "icl": bic + 2.0 * classification_entropy(em.predict_proba(data.values), weights),
        }
        _log.info("K=%d: EM log-likelihood %.3f, BIC %.2f", k, loglik, bic)
        if method != "em":
            with warnings.catch_warnings():
                # Sampler problems are reported per K in the table, not once per fit.
                warnings.simplefilter("ignore", SamplerWarning)
                nuts = model(**spec, **model_kwargs).fit(
                    data.values,
                    draws=draws,
                    tune=tune,
                    chains=chains,
                    progressbar=progressbar,
                    sample_weight=weights,
                )
            nuts.compute_log_likelihood()  # stored already unless the fit is large
            loo = azs.loo(nuts.idata)
            pareto_k = np.asarray(loo.pareto_k).ravel()
            n_bad = int((~(pareto_k <= loo.good_k)).sum())  # NaN k: not estimable, bad
            elpd_i = np.asarray(loo.elpd_i).ravel()
            row |= {
                # Frequency weights: every copy of a row contributes its pointwise elpd.
                "elpd_loo": float(loo.elpd) if weights is None else float(weights @ elpd_i),
                "se": float(loo.se) if weights is None else _weighted_se(elpd_i, weights),
                "p_loo": float(loo.p),
                "max_pareto_k": float(np.nanmax(pareto_k)),
                "n_bad_pareto_k": n_bad,
                "divergences": int(nuts.idata.attrs.get("divergences", 0)),
                "max_rhat": float(nuts.idata.attrs.get("max_rhat", np.nan)),
                "min_ess_bulk": float(nuts.idata.attrs.get("min_ess_bulk", np.nan)),
            }
            pointwise[k] = elpd_i
            if n_bad:
                warnings.warn(
                    f"K={k}: {n_bad} of {pareto_k.size} observations have Pareto k above "
                    f"{loo.good_k:.2f}, so the LOO estimate for this K is unreliable. Draw "
                    "more samples, or compare the K by BIC / K-fold cross-validation.",
                    SamplerWarning,
                    stacklevel=2,
                )
        rows.append(row)
    table = pd.DataFrame(rows)
    best = {
        "bic": int(table.loc[table["bic"].idxmin(), "n_components"]),
        "icl": int(table.loc[table["icl"].idxmin(), "n_components"]),
    }
    table["rank_bic"] = table["bic"].rank(method="min").astype(int)
    table["rank_icl"] = table["icl"].rank(method="min").astype(int)
    if pointwise:
        best["loo"] = int(table.loc[table["elpd_loo"].idxmax(), "n_components"])
        diffs = [
            elpd_difference(pointwise[k], pointwise[best["loo"]], weights)
            for k in table["n_components"]
        ]
        table["elpd_diff"] = [d for d, _ in diffs]
        table["dse"] = [s for _, s in diffs]
        table["rank_loo"] = table["elpd_loo"].rank(ascending=False, method="min").astype(int)
    table.attrs["best"] = best
    table.attrs["covariance_type"] = covariance_type
    return table


def plot_select_k(table: pd.DataFrame, *, fig: Figure | None = None) -> Figure:
    """Plot the criteria of :func:`select_k` against K.

    Left: BIC and ICL (lower is better). Right, when present: LOO elpd with two
    standard errors (higher is better). The chosen K of each criterion is circled.

    Parameters
    ----------
    table : pandas.DataFrame
        The output of :func:`select_k`.
    fig : matplotlib.figure.Figure, optional
        Figure to draw in (cleared); a new one by default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    has_loo = "elpd_loo" in table
    if fig is None:
        fig = Figure(figsize=(9.0 if has_loo else 5.0, 3.6), layout="constrained")
    else:
        fig.clear()
    axes = fig.subplots(1, 2 if has_loo else 1, squeeze=False)[0]
    k = table["n_components"].to_numpy()
    best = table.attrs.get("best", {})
    ax = axes[0]
    for name, marker in (("bic", "o"), ("icl", "s")):
        ax.plot(k, table[name], marker=marker, label=name.upper())
        if name in best:
            chosen = table.loc[table["n_components"] == best[name], name]
            ax.plot([best[name]], chosen, marker="o", ms=14, mfc="none", mec="k")
    ax.set(xlabel="number of components K", ylabel="criterion (lower is better)", xticks=k)
    ax.legend()
    if has_loo:
        ax = axes[1]
        ax.errorbar(k, table["elpd_loo"], yerr=2 * table["se"], marker="o", capsize=3)
        if "loo" in best:
            chosen = table.loc[table["n_components"] == best["loo"], "elpd_loo"]
            ax.plot([best["loo"]], chosen, marker="o", ms=14, mfc="none", mec="k")
        ax.set(xlabel="number of components K", ylabel="LOO elpd (higher is better)", xticks=k)
    return fig


def overfitted_mixture(
    k_max: int = 8,
    *,
    concentration: float = 0.01,
    model: type[MixtureModel] | str = "gaussian",
    **params: Any,
) -> MixtureModel:
    """Return an overfitted ("sparse finite") mixture for inferring the number of clusters.

    ``k_max`` components, more than the data need, with a small symmetric Dirichlet
    concentration ``e0`` on the weights. When ``e0`` is below half the number of
    parameters of a component, the posterior empties the superfluous components
    instead of splitting clusters (Rousseau & Mengersen 2011); Malsiner-Walli,
    Frühwirth-Schnatter & Grün (2016) recommend ``e0 = 0.01``. The number of
    non-empty components in the posterior, :func:`nonempty_components`, estimates the
    number of clusters.

    Parameters
    ----------
    k_max : int, default=8
        Number of components of the overfitted model.
    concentration : float, default=0.01
        Dirichlet concentration ``e0`` of every weight.
    model : class or str, default="gaussian"
        The mixture family: a bayesmix model class or its registry name.
    **params
        Further arguments of ``model``; a ``priors`` dict is kept, with ``weights``
        replaced.

    Returns
    -------
    MixtureModel
        An unfitted model; fit it with ``method="nuts"``.

    References
    ----------
    J. Rousseau and K. Mengersen, "Asymptotic behaviour of the posterior distribution
    in overfitted mixture models", *JRSS B* 73, 689-710, 2011.
    G. Malsiner-Walli, S. Frühwirth-Schnatter and B. Grün, "Model-based clustering
    based on sparse finite Gaussian mixtures", *Statistics and Computing* 26, 303-324,
    2016.

    Examples
    --------
    >>> import bayesmix as bm
    >>> sparse = bm.overfitted_mixture(k_max=6, random_state=0)
    >>> sparse.n_components, sparse.priors["weights"]
    (6, Prior('Dirichlet', a=0.01))
    """
    check_positive_int(k_max, "k_max")
    model = _model_class(model)
    if not (isinstance(concentration, float | int) and 0 < concentration < np.inf):
        raise InvalidParameterError(
            f"concentration must be a positive number; got {concentration!r}. Try 0.01."
        )
    from bayesmix.priors import Prior

    priors = dict(params.pop("priors", None) or {})
    priors["weights"] = Prior("Dirichlet", a=float(concentration))
    return model(n_components=k_max, priors=priors, **params)


@single_blas_thread
def nonempty_components(
    fit: MixtureModel, *, max_draws: int = 1000, random_seed: int | None = None
) -> pd.Series:
    """Posterior distribution of the number of non-empty components ``K+``.

    For each posterior draw (at most ``max_draws``, evenly thinned), a label is drawn
    for every training observation from its responsibilities under that draw, and the
    distinct labels are counted: a draw of ``K+`` from its posterior, as the
    allocations of a Gibbs sampler would give it (Malsiner-Walli et al. 2016).

    Parameters
    ----------
    fit : fitted model
        Usually an :func:`overfitted_mixture` fitted with NUTS.
    max_draws : int, default=1000
    random_seed : int, optional
        Seeds the allocation draws.

    Returns
    -------
    pandas.Series
        Posterior probability of each value of ``K+`` (index ``1..n_components``,
        name ``"probability"``); ``series.attrs["draws"]`` holds the per-draw counts
        and ``series.attrs["mode"]`` the most probable ``K+``.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_faithful()
    >>> gm = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em")
    >>> bm.nonempty_components(gm, random_seed=0).attrs["mode"]
    2
    """
    from bayesmix._validation import check_seed
    from bayesmix.compare import _check_fitted, _training_data
    from bayesmix.stats import draw_log_prob, log_responsibilities

    _check_fitted(fit, "fit")
    check_positive_int(max_draws, "max_draws")
    check_seed(random_seed, "random_seed")
    rng = np.random.default_rng(random_seed)
    X = _training_data(fit)
    draws = tuple(fit.posterior_arrays(max_draws).values())
    n_draws = draws[0].shape[0]
    counts = np.empty(n_draws, dtype=np.int64)
    for s in range(n_draws):
        one = tuple(a[s : s + 1] for a in draws)
        weighted = draw_log_prob(X, *one, component_log_prob=fit.component_log_prob)
        proba = np.exp(log_responsibilities(weighted))[0]  # (N, K)
        cdf = np.cumsum(proba, axis=1)
        labels = (rng.random((X.shape[0], 1)) > cdf).sum(axis=1)
        counts[s] = np.unique(np.minimum(labels, fit.n_components - 1)).size
    index = pd.RangeIndex(1, fit.n_components + 1, name="nonempty_components")
    table = pd.Series(
        np.bincount(counts, minlength=fit.n_components + 1)[1:] / n_draws,
        index=index,
        name="probability",
    )
    table.attrs["draws"] = counts
    table.attrs["mode"] = int(index[np.argmax(table.to_numpy())])
    return table
