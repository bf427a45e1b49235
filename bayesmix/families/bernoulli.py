"""The Bernoulli mixture (latent class analysis): binary items, independent within a class.

One module holds the family: its component log density (NumPy and PyTensor), its
generative draw, its EM (closed-form M-step, ML or MAP under the conjugate Beta prior)
and the model class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytensor.tensor as pt
from scipy.special import betaln, expit, xlog1py, xlogy

from bayesmix._glm import Response
from bayesmix._numeric import features_dot, observed_values
from bayesmix._threads import single_blas_thread
from bayesmix._validation import MixtureData
from bayesmix.em.loop import (
    _EPS,
    EMResult,
    _check_arguments,
)
from bayesmix.exceptions import DataError
from bayesmix.families._independent import (
    _BOUNDARY,
    _LOG_FLOOR,
    _component_params,
    _fit_discrete,
    _IndependentFeaturesMixture,
    _resolve_prior,
    feature_values,
    sum_features,
)
from bayesmix.priors import Prior

__all__ = ["BernoulliMixture", "bernoulli_log_prob", "bernoulli_mixture_logp", "fit_bernoulli_em"]


def bernoulli_log_prob(X: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Return ``sum_d log Bernoulli(x_nd | p_kd)`` for every draw, sample and component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Zeros and ones (as floats); NaN where a value is missing: it drops out of the
        sum (a row's density is that of its observed features).
    probs : ndarray of shape (n_draws, n_components, n_features)
        Success probabilities; exactly 0 or 1 is allowed (an EM estimate on the
        boundary) and gives ``-inf`` only to the samples it excludes (``0 log 0 = 0``).

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)
    """
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(probs), _LOG_FLOOR)  # finite, so 0 * log 0 = 0
        log_q = np.maximum(np.log1p(-probs), _LOG_FLOOR)
    # The ones and the zeros among the observed values (a missing value is neither).
    ones = observed_values(X)
    zeros = 1.0 - X if ones is X else (~np.isnan(X)) - ones
    out = features_dot(ones, log_p) + features_dot(zeros, log_q)
    edge = (probs == 0) | (probs == 1)
    if edge.any():
        excluded = features_dot(ones, (probs == 0).astype(float)) + features_dot(
            zeros, (probs == 1).astype(float)
        )
        out[excluded > 0] = -np.inf
    return out


def _check_binary(X: np.ndarray, missing: str = "raise") -> None:
    """Raise :class:`DataError` unless every entry of ``X`` is 0 or 1 (or NaN, if modelled)."""
    allowed = (X == 0.0) | (X == 1.0)
    if missing == "model":
        allowed |= np.isnan(X)
    if not np.all(allowed):
        extra = " (or NaN, missing)" if missing == "model" else ""
        raise DataError(
            "A Bernoulli mixture (latent class analysis) needs binary data: every entry of X "
            f"must be 0 or 1{extra}. Recode the answers as 0/1 indicators (one column per "
            "category)."
        )


def _bernoulli_terms(
    objective: str, prior: Mapping | None, n_components: int, n_features: int
) -> tuple:
    """Return the component M-step, the log prior and the Dirichlet concentration.

    The M-step takes the expected counts of observed values ``n_kd`` ((K, D), or (K, 1))
    and the sums ``s_kd``. The last two are None for maximum likelihood.
    """
    if objective == "map":
        resolved = _resolve_prior(prior, "Bernoulli", ("a", "b"), n_components, n_features)
        a, b = resolved["a"], resolved["b"]
        log_norm_beta = -float(np.sum(betaln(a, b)))

        def component_m_step(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
            denominator = np.maximum(counts + a + b - 2.0, 10.0 * _EPS)
            return np.clip((sums + a - 1.0) / denominator, 0.0, 1.0)

        def log_prior(probs: np.ndarray) -> float:
            return log_norm_beta + float(np.sum(xlogy(a - 1.0, probs) + xlog1py(b - 1.0, -probs)))

        concentration = resolved["weights"]
    else:

        def component_m_step(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
            return np.clip(sums / (counts + 10.0 * _EPS), 0.0, 1.0)

        log_prior, concentration = None, None
    return component_m_step, log_prior, concentration


@single_blas_thread
def fit_bernoulli_em(
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
    r"""Fit a latent class model (mixture of independent Bernoullis) with EM.

    Model: :math:`p(x_n) = \sum_k \pi_k \prod_d p_{kd}^{x_{nd}} (1 - p_{kd})^{1 -
    x_{nd}}`. The maximum-likelihood M-step is ``p_kd = sum_n r_nk x_nd / n_k``; estimates
    of exactly 0 or 1 are allowed and handled with ``0 log 0 = 0``.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Binary data (0/1 as float64), already validated. Not modified.
    n_components : int
        Number of latent classes ``K``.
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
        Required for ``objective="map"`` (ignored for ``"ml"``): ``"a"`` and ``"b"``, the
        shapes (>= 1) of a Beta prior on every probability (scalars or arrays broadcastable
        to (K, D)), and optionally ``"weights"``, the concentration ``> 0`` of a symmetric
        Dirichlet prior on the weights (default 1). The posterior mode is
        ``(sum_n r_nk x_nd + a - 1) / (n_k + a + b - 2)``; the weights are as in
        :func:`fit_poisson_em`.
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
        densities and of the M-step of their item (see the module docstring of
        :mod:`bayesmix.families._independent`); rows must not be all NaN.

    Returns
    -------
    EMResult
        ``params={"probs": (K, D)}``, ``family="bernoulli"``. Components are not sorted.

    Raises
    ------
    InvalidParameterError
        If an argument or the prior is invalid, or ``objective="map"`` without a prior.
    DataError
        If an entry of ``X`` is not 0 or 1.
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
    _check_binary(X, missing)
    n_features = X.shape[1]

    component_m_step, log_prior, concentration = _bernoulli_terms(
        objective, prior, n_components, n_features
    )

    return _fit_discrete(
        X,
        n_components,
        family="bernoulli",
        name="probs",
        log_prob=lambda probs: bernoulli_log_prob(X, probs[None])[0],
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


def bernoulli_mixture_logp(value: Any, weights: Any, probs: Any, *, missing: Any = None) -> Any:
    """Return ``log sum_k pi_k prod_d p_kd^x (1 - p_kd)^(1 - x)`` per observation (PyTensor).

    ``missing`` (N, D), if given, marks missing values, which drop out of the product.
    """
    x = feature_values(value, missing)
    component = sum_features(x * pt.log(probs) + (1.0 - x) * pt.log1p(-probs), missing)
    return pt.logsumexp(pt.log(weights) + component, axis=-1)


def bernoulli_mixture_random(weights, probs, rng=None, size=None) -> np.ndarray:
    """Draw binary vectors by the generative story: a label, then independent Bernoullis."""
    chosen, rng = _component_params(weights, probs, rng, size)
    return (rng.random(chosen.shape) < chosen).astype(np.float64)


def _bernoulli_regression_log_prob(y: np.ndarray, eta: np.ndarray, scale: Any) -> np.ndarray:
    return y * eta - np.logaddexp(0.0, eta)


def _bernoulli_regression_pt_log_prob(y: Any, eta: Any, scale: Any) -> Any:
    return y * eta - pt.softplus(eta)


def _check_binary_response(y: np.ndarray) -> None:
    bad = np.flatnonzero((y != 0.0) & (y != 1.0))
    if bad.size:
        raise DataError(
            f"a Bernoulli (logistic) regression needs a 0/1 response; y has {bad.size} "
            f"other value(s), the first {y[bad[0]]!r} at position {bad[0]}. Encode the two "
            "outcomes as 0 and 1."
        )


#: The Bernoulli response of a mixture of regressions (:class:`bayesmix.MixtureRegression`):
#: ``y | x, z = k ~ Bernoulli(expit(x' beta_k))``, the logit link.
RESPONSE = Response(
    name="bernoulli",
    link="logit",
    log_prob=_bernoulli_regression_log_prob,
    pt_log_prob=_bernoulli_regression_pt_log_prob,
    mean=expit,
    variance=lambda eta: expit(eta) * expit(-eta),
    draw=lambda rng, eta, scale: (rng.random(np.shape(eta)) < expit(eta)).astype(np.float64),
    check=_check_binary_response,
    kind="binary",
)


class BernoulliMixture(_IndependentFeaturesMixture):
    r"""Bayesian latent class model: a finite mixture of independent Bernoulli features.

    Each latent class has one probability per binary item; given the class the items
    are independent (local independence). Latent class analysis (Lazarsfeld 1950;
    Goodman 1974) with the classes marginalised out.

    Parameters
    ----------
    n_components : int, default=2
        Number of latent classes.
    priors : dict of str to Prior, optional
        ``weights`` (Dirichlet) and ``probs`` (Beta).
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
        What EM maximises: the likelihood (as poLCA), or the posterior density under
        the Beta prior (with ``Beta(a, b)``, ``a, b > 1``, estimates stay off 0 and 1).
    missing : {"raise", "model"}, default="raise"
        Missing values (NaN) in ``X``: ``"raise"`` refuses them (a ``DataError``);
        ``"model"`` treats them as missing at random: a missing item drops out of its
        row's product (the items are independent within a class), so a row's likelihood
        is the density of its observed items, and EM's M-step is per item over the
        observed answers. NUTS and Laplace sample that likelihood (the PyMC model, not
        the fused kernel). ``predict``, ``predict_proba`` and ``score_samples`` then
        accept rows with missing values too. A row or column with every value missing is
        a ``DataError``. On chunked data (Dask, Zarr, Parquet) EM and Laplace take them
        too, chunk by chunk; NUTS there needs complete rows.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Class sizes.
    probs_ : ndarray of shape (n_components, n_features)
        Probability of a 1 for each item in each class.
    idata : xarray.DataTree
        ``posterior`` (``weights``, ``probs``) and the other groups as for every family.
    em_ : bayesmix.em.loop.EMResult
    priors_ : dict of str to Prior
    n_features_in_ : int
    feature_names_in_ : list of str

    Notes
    -----
    Default priors: ``weights ~ Dirichlet(1)``, ``probs ~ Beta(1, 1)`` (uniform).
    Maximum-likelihood estimates of item probabilities are often exactly 0 or 1; NUTS
    starts from them moved 0.001 inside the interval. Classes are labelled by
    increasing probability of the first item.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_carcinoma()
    >>> lca = bm.BernoulliMixture(n_components=2, random_state=0).fit(X, method="em")
    >>> lca.probs_.shape
    (2, 7)
    """

    _family = "bernoulli"
    plot_kind = "binary"
    _param = "probs"
    _param_support = "unit_interval"  # EM estimates are often exactly 0 or 1
    _accepts_bool = True
    _response = RESPONSE
    _logp = staticmethod(bernoulli_mixture_logp)
    _random = staticmethod(bernoulli_mixture_random)
    component_log_prob = staticmethod(bernoulli_log_prob)
    _em_function = staticmethod(fit_bernoulli_em)
    _em_terms = staticmethod(_bernoulli_terms)
    _cumulant = "softplus"  # log p(x | eta) = x eta - log(1 + exp(eta)), eta = logit p

    def _check_data(self, data: MixtureData) -> None:
        values = data.values
        bad = (values != 0) & (values != 1) & ~np.isnan(values)  # NaN: missing="model"
        if bad.any():
            row, col = np.argwhere(bad)[0]
            negative = "Negative values in data: " if (values < 0).any() else ""
            raise DataError(
                f"{negative}a Bernoulli mixture needs binary data (0/1 or True/False); X has "
                f"{int(bad.sum())} other value(s), the first {values[row, col]!r} in row "
                f"{data.obs[row]}, column {data.features[col]!r}. Recode the items to 0/1."
            )

    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        return {"weights": Prior("Dirichlet", a=1.0), "probs": Prior("Beta", alpha=1.0, beta=1.0)}

    def _allowed_priors(self) -> dict[str, frozenset[str]]:
        return {"weights": frozenset({"Dirichlet"}), "probs": frozenset({"Beta"})}

    def _em_prior(self, priors: dict[str, Prior]) -> dict[str, Any]:
        probs = priors["probs"]
        return {
            "a": np.asarray(probs.params.get("alpha", 1.0), dtype=np.float64),
            "b": np.asarray(probs.params.get("beta", 1.0), dtype=np.float64),
            "weights": float(np.asarray(priors["weights"].params.get("a", 1.0)).mean()),
        }

    @staticmethod
    def _inside(probs: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(probs, dtype=np.float64), _BOUNDARY, 1.0 - _BOUNDARY)

    def _relabel_locations(self, params: dict[str, np.ndarray], data: MixtureData) -> np.ndarray:
        """``arcsin(sqrt(p))``, the variance-stabilising scale of proportions."""
        return np.arcsin(np.sqrt(np.clip(params["probs"], 0.0, 1.0)))
