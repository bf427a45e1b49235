"""The Poisson mixture: counts, independent features within a component.

One module holds the family: its component log density (NumPy and PyTensor), its
generative draw, its EM (closed-form M-step, ML or MAP under the conjugate Gamma prior)
and the model class.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytensor.tensor as pt
from scipy.special import gammaln, xlogy

from bayesmix._glm import Response
from bayesmix._numeric import column_moments, features_dot, observed_values
from bayesmix._threads import single_blas_thread
from bayesmix._validation import MixtureData
from bayesmix.em.loop import (
    _EPS,
    EMResult,
    _check_arguments,
)
from bayesmix.exceptions import InvalidParameterError
from bayesmix.families._independent import (
    _BOUNDARY,
    _LARGE_COUNT,
    _LOG_FLOOR,
    _check_count_data,
    _check_count_response,
    _check_counts,
    _component_params,
    _count_far_terms,
    _fit_discrete,
    _IndependentFeaturesMixture,
    _resolve_prior,
    count_row_constant,
    feature_values,
    observed_sum,
    sum_features,
)
from bayesmix.priors import Prior

__all__ = ["PoissonMixture", "fit_poisson_em", "poisson_log_prob", "poisson_mixture_logp"]


def poisson_log_prob(X: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Return ``sum_d log Poisson(x_nd | lambda_kd)`` for every draw, sample and component.

    ``x log(lambda) - lambda - log(x!)`` with ``0 log 0 = 0``: a zero rate (an EM
    estimate) gives ``-inf`` only to samples with a positive count in that feature.
    Finite for every count whose log density is a float (counts of 2^40 or more are
    evaluated by :func:`_large_count_log_prob`), ``-inf`` beyond, never NaN. A missing
    value (NaN) drops out: the sum is over the row's observed features.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Non-negative integer counts (as floats); NaN where a value is missing.
    rates : ndarray of shape (n_draws, n_components, n_features)

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)
    """
    with np.errstate(divide="ignore"):
        log_rates = np.maximum(np.log(rates), _LOG_FLOOR)  # finite, so 0 * log 0 = 0
    if np.any(X >= _LARGE_COUNT):
        out = _large_count_log_prob(X, rates, log_rates)
    else:
        counts = observed_values(X)  # a missing value: 0, whose terms are 0 but for -lambda
        out = (
            features_dot(counts, log_rates)
            - observed_sum(X, rates)
            - gammaln(counts + 1.0).sum(axis=1)[None, :, None]
        )
    zero = rates == 0
    if zero.any():
        out[features_dot((X > 0).astype(float), zero.astype(float)) > 0] = -np.inf
    return out


_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))


def _large_count_log_prob(X: np.ndarray, rates: np.ndarray, log_rates: np.ndarray) -> np.ndarray:
    """:func:`poisson_log_prob` for data with counts of 2^40 or more, feature by feature.

    A count ``x >= 2^40`` has ``x log lambda - lambda - log x!`` written with Stirling's
    ``log x! = (x + 1/2) log(x + 1) - (x + 1) + log(2 pi) / 2 + 1 / (12 (x + 1))`` (the
    next term is below 1e-37) as ``x log(lambda / (x + 1)) + (x + 1 - lambda) - log(x +
    1) / 2 - log(2 pi) / 2 - 1 / (12 (x + 1))``: the terms of size ``x log x`` cancel
    analytically, so nothing overflows to ``inf - inf`` and no digits are lost when the
    rate is near the count (``log(lambda / (x + 1))`` is then a ``log1p``). The result is
    ``-inf`` only where the log density is below the most negative float. Missing values
    (NaN) add nothing.
    """
    missing = np.isnan(X)[None, :, None, :]
    x = observed_values(X)[None, :, None, :]  # (1, N, 1, D) against rates (S, 1, K, D)
    lam = rates[:, None, :, :]
    large = x >= _LARGE_COUNT
    small = np.where(large, 0.0, x)
    terms = small * log_rates[:, None, :, :] - lam - gammaln(small + 1.0)  # x = 0 if large
    big = np.where(large, x, _LARGE_COUNT)  # (1, N, 1, D), every entry large
    ratio = (lam - (big + 1.0)) / (big + 1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = np.where(np.abs(ratio) < 0.5, np.log1p(ratio), np.log(lam) - np.log(big + 1.0))
        stirling = (
            big * log_ratio
            + ((big + 1.0) - lam)
            - 0.5 * np.log(big + 1.0)
            - _HALF_LOG_2PI
            - 1.0 / (12.0 * (big + 1.0))
        )
    terms = np.where(large, stirling, terms)
    return np.where(missing, 0.0, terms).sum(axis=-1)


def _poisson_far_log_prob(X: np.ndarray, rates: np.ndarray) -> Any:
    """Return the exact far-out terms of :func:`poisson_log_prob` (rows with a count >= 2^40)."""
    with np.errstate(divide="ignore"):
        log_rates = np.log(rates)
    n_draws, n_components = rates.shape[:2]

    def constant(rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(-observed_sum(X[rows], rates), (n_draws, rows.size, n_components))

    return _count_far_terms(X, log_rates, constant)


def _poisson_terms(
    objective: str, prior: Mapping | None, n_components: int, n_features: int
) -> tuple:
    """Return the component M-step, the log prior and the Dirichlet concentration.

    The M-step takes the expected counts of observed values ``n_kd`` ((K, D), or (K, 1))
    and the sums ``s_kd``. The last two are None for maximum likelihood.
    """
    if objective == "map":
        resolved = _resolve_prior(prior, "Poisson", ("alpha", "beta"), n_components, n_features)
        alpha, beta = resolved["alpha"], resolved["beta"]
        log_norm_gamma = float(np.sum(alpha * np.log(beta) - gammaln(alpha)))

        def component_m_step(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
            return (sums + alpha - 1.0) / (counts + beta)

        def log_prior(rates: np.ndarray) -> float:
            return log_norm_gamma + float(np.sum(xlogy(alpha - 1.0, rates) - beta * rates))

        concentration = resolved["weights"]
    else:

        def component_m_step(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
            return sums / (counts + 10.0 * _EPS)

        log_prior, concentration = None, None
    return component_m_step, log_prior, concentration


@single_blas_thread
def fit_poisson_em(
    X: np.ndarray,
    n_components: int,
    *,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    random_state: int | np.random.Generator | None = None,
    objective: str = "ml",
    prior: Mapping | None = None,
    sample_weight: np.ndarray | None = None,
    init: str = "k-means++",
    missing: str = "raise",
) -> EMResult:
    r"""Fit a mixture of independent Poissons by maximum likelihood or posterior mode (EM).

    Model: :math:`p(x_n) = \sum_k \pi_k \prod_d \operatorname{Poisson}(x_{nd} \mid
    \lambda_{kd})`. The M-step is in closed form (see the module docstring).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Counts, already validated (2-D float64); non-negative integers. Not modified.
    n_components : int
        Number of components ``K``.
    n_init : int, default=1
        Number of restarts (see ``init``); the one with the highest final objective is
        returned (the first on ties).
    max_iter : int, default=100
        Maximum number of EM iterations per restart (0 returns the starting parameters).
    tol : float, default=1e-3
        Convergence threshold on the change of the objective (per sample).
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the initialisation; a ``Generator`` is used as is.
    objective : {"ml", "map"}, default="ml"
        ``"ml"`` maximises the likelihood; ``"map"`` the posterior density under
        ``prior``, and ``lower_bounds`` are then ``(log-likelihood + log prior) / N``.
    prior : dict or None, default=None
        Required for ``objective="map"`` (ignored for ``"ml"``): ``"alpha"`` and ``"beta"``,
        the shape (>= 1) and rate (> 0) of a Gamma prior on every rate (scalars or arrays
        broadcastable to (K, D)), and optionally ``"weights"``, the concentration
        ``a > 0`` of a symmetric Dirichlet prior on the weights (default 1, no prior). The
        posterior mode is ``(sum_n r_nk x_nd + alpha - 1) / (n_k + beta)`` and the weights
        ``max(n_k + a - 1, 0) / sum_j max(n_j + a - 1, 0)``; with ``a < 1`` a component
        whose expected count drops below ``1 - a`` gets weight 0 for good.
    sample_weight : numpy.ndarray of shape (n_samples,), optional
        Non-negative frequency weights (validated by the caller); integer weights give the
        fit of the data with every row repeated ``w_n`` times.
    init : {"k-means++", "random", "emem"}, default="k-means++"
        How the restarts start (:func:`bayesmix.em.loop._restart_plan`): each from the
        nearest-seed partition of new k-means++ seeds or of ``K`` random rows; or
        ``"emem"``: ``8 * n_init`` short runs (to a change below 1e-3, at most 50
        iterations) from both kinds, the best ``n_init`` run to convergence (the
        estimators' default).
    missing : {"raise", "model"}, default="raise"
        ``"model"``: NaN entries of ``X`` are missing values, left out of their rows'
        densities and of the M-step of their feature (see the module docstring of
        :mod:`bayesmix.families._independent`); rows must not be all NaN.

    Returns
    -------
    EMResult
        ``params={"rates": (K, D)}``, ``family="poisson"``. Components are not sorted.

    Raises
    ------
    InvalidParameterError
        If an argument or the prior is invalid, or ``objective="map"`` without a prior.
    DataError
        If ``X`` does not hold non-negative integers.
    FitError
        If every restart failed (a non-finite objective).

    Warns
    -----
    ConvergenceWarning
        If the best restart did not reach ``tol`` within ``max_iter`` iterations, if a
        restart failed while another succeeded, or if a component of the result is empty.
    """
    X = np.asarray(X, dtype=np.float64)
    _check_arguments(X, n_components, n_init, max_iter, tol, objective, init)
    _check_counts(X, "Poisson", missing)
    n_features = X.shape[1]

    component_m_step, log_prior, concentration = _poisson_terms(
        objective, prior, n_components, n_features
    )

    return _fit_discrete(
        X,
        n_components,
        family="poisson",
        name="rates",
        log_prob=lambda rates: poisson_log_prob(X, rates[None])[0],
        component_m_step=component_m_step,
        log_prior=log_prior,
        concentration=concentration,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=random_state,
        objective=objective,
        sample_weight=sample_weight,
        init=init,
    )


def poisson_mixture_logp(value: Any, weights: Any, rates: Any, *, missing: Any = None) -> Any:
    """Return ``log sum_k pi_k prod_d Poisson(x_nd | lambda_kd)`` per observation (PyTensor).

    ``missing`` (N, D), if given, marks missing values, which drop out of the product.
    """
    x = feature_values(value, missing)  # (..., N, 1, D) against rates (..., K, D)
    component = sum_features(x * pt.log(rates) - rates - pt.gammaln(x + 1.0), missing)
    return pt.logsumexp(pt.log(weights) + component, axis=-1)


def poisson_mixture_random(weights, rates, rng=None, size=None) -> np.ndarray:
    """Draw counts by the generative story: a label, then independent Poissons."""
    chosen, rng = _component_params(weights, rates, rng, size)
    return rng.poisson(chosen).astype(np.float64)


def _poisson_regression_log_prob(y: np.ndarray, eta: np.ndarray, scale: Any) -> np.ndarray:
    with np.errstate(over="ignore"):
        return y * eta - np.exp(eta) - gammaln(y + 1.0)


def _poisson_regression_pt_log_prob(y: Any, eta: Any, scale: Any) -> Any:
    return y * eta - pt.exp(eta) - pt.gammaln(y + 1.0)


#: The Poisson response of a mixture of regressions (:class:`bayesmix.MixtureRegression`):
#: ``y | x, z = k ~ Poisson(exp(x' beta_k))``, the log link.
RESPONSE = Response(
    name="poisson",
    link="log",
    log_prob=_poisson_regression_log_prob,
    pt_log_prob=_poisson_regression_pt_log_prob,
    mean=np.exp,
    variance=np.exp,
    draw=lambda rng, eta, scale: rng.poisson(np.exp(eta)).astype(np.float64),
    check=functools.partial(_check_count_response, family="Poisson"),
    kind="counts",
)


class PoissonMixture(_IndependentFeaturesMixture):
    r"""Bayesian finite mixture of independent Poisson counts.

    Each component has one rate per feature; given the component, the counts are
    independent Poissons. Over-dispersed counts (variance above the mean) are what a
    Poisson mixture explains: sub-populations with different rates.

    Parameters
    ----------
    n_components : int, default=2
    priors : dict of str to Prior, optional
        ``weights`` (Dirichlet) and ``rates`` (Gamma, Exponential, LogNormal, HalfNormal).
    n_init : int, default=5
        Number of EM restarts run to convergence; the best is kept.
    init : {"emem", "k-means++", "random"}, default="emem"
        How the EM restarts start. ``"emem"`` (Biernacki, Celeux & Govaert 2003): ``8 *
        n_init`` short runs (until the mean log-likelihood changes by less than 1e-3, at
        most 50 iterations) from k-means++ and random partitions in turn, of which the
        best ``n_init`` run to convergence; it reaches the best known optimum more often
        than k-means++ restarts (``bench/results/em_init.md``). ``"k-means++"``:
        every restart from new k-means++ seeds (scikit-learn's start, bayesmix's earlier
        default); ``"random"``: from ``K`` random rows.
    max_iter : int, default=500
    tol : float, default=1e-6
    random_state : int or None, default=None
    objective : {"ml", "map"}, default="ml"
        What EM maximises: the likelihood, or the posterior density under the
        (conjugate) default priors.
    missing : {"raise", "model"}, default="raise"
        Missing values (NaN) in ``X``: ``"raise"`` refuses them (a ``DataError``);
        ``"model"`` treats them as missing at random: a missing count drops out of its
        row's product (the features are independent within a component), so a row's
        likelihood is the density of its observed counts, and EM's M-step is per
        feature over the observed counts. NUTS and Laplace sample that likelihood (the
        PyMC model, not the fused kernel). ``predict``, ``predict_proba`` and
        ``score_samples`` then accept rows with missing values too. A row or column with
        every value missing is a ``DataError``. On chunked data (Dask, Zarr, Parquet) EM
        and Laplace take them too, chunk by chunk; NUTS there needs complete rows.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    rates_ : ndarray of shape (n_components, n_features)
        Posterior mean (NUTS) or estimate (EM) of the rates.
    idata : xarray.DataTree
        ``posterior`` (``weights``, ``rates``), ``log_likelihood``, ``observed_data``,
        ``sample_stats`` or ``em_stats``.
    em_ : bayesmix.em.loop.EMResult
    priors_ : dict of str to Prior
    n_features_in_ : int
    feature_names_in_ : list of str

    Notes
    -----
    Default priors: ``weights ~ Dirichlet(1)``, ``rates ~ Gamma(1, 1 / m)`` with ``m``
    the mean count of each feature (an exponential prior with the data's mean).
    Components are labelled by increasing rate of the first feature.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_discoveries()[["discoveries"]]
    >>> pm_ = bm.PoissonMixture(n_components=2, random_state=0).fit(X, method="em")
    >>> bool(pm_.rates_[0, 0] < pm_.rates_[1, 0])
    True
    """

    _family = "poisson"
    plot_kind = "counts"
    _param = "rates"
    _param_support = "nonnegative"  # an EM rate is 0 where a component has no counts
    _response = RESPONSE
    _logp = staticmethod(poisson_mixture_logp)
    _random = staticmethod(poisson_mixture_random)
    component_log_prob = staticmethod(poisson_log_prob)
    _far_log_prob = staticmethod(_poisson_far_log_prob)
    _em_function = staticmethod(fit_poisson_em)
    _em_terms = staticmethod(_poisson_terms)
    _cumulant = "exp"  # log p(x | eta) = x eta - exp(eta) - log x!, eta = log rate
    _row_constant = staticmethod(count_row_constant)

    def _check_data(self, data: MixtureData) -> None:
        _check_count_data(data, "Poisson")

    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        # Over the observed counts (column_moments leaves missing values out).
        mean = np.maximum(column_moments(data.values, data.sample_weight)[0], 1e-3)
        return {
            "weights": Prior("Dirichlet", a=1.0),
            "rates": Prior("Gamma", alpha=1.0, beta=(1.0 / mean).tolist()),
        }

    def _allowed_priors(self) -> dict[str, frozenset[str]]:
        return {
            "weights": frozenset({"Dirichlet"}),
            "rates": frozenset({"Gamma", "Exponential", "LogNormal", "HalfNormal"}),
        }

    def _em_prior(self, priors: dict[str, Prior]) -> dict[str, Any]:
        rates = priors["rates"]
        if rates.distribution != "Gamma" or priors["weights"].distribution != "Dirichlet":
            raise InvalidParameterError(
                f"objective='map' needs the conjugate prior Gamma(alpha, beta) on rates; got "
                f"{rates!r}. Use objective='ml' or a Gamma prior."
            )
        return {
            "alpha": np.asarray(rates.params["alpha"], dtype=np.float64),
            "beta": np.asarray(rates.params["beta"], dtype=np.float64),
            "weights": float(np.asarray(priors["weights"].params.get("a", 1.0)).mean()),
        }

    @staticmethod
    def _inside(rates: np.ndarray) -> np.ndarray:
        return np.maximum(np.asarray(rates, dtype=np.float64), _BOUNDARY)

    def _relabel_locations(self, params: dict[str, np.ndarray], data: MixtureData) -> np.ndarray:
        """Square roots of the rates (the variance-stabilising scale of counts)."""
        return np.sqrt(params["rates"])
