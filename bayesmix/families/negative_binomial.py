r"""The negative binomial mixture: over-dispersed counts, independent features within a component.

One module holds the family: its component log density (NumPy and PyTensor), its
generative draw, its EM, the model class and its response as the component of a mixture
of regressions (:data:`RESPONSE`: NB2 with the log link and a dispersion per component,
fitted by :func:`fit_negative_binomial_regression`). The model::

    pi         ~ Dirichlet(a * 1_K)
    mu_kd      ~ Gamma(1, 1 / mean_d)          (the rates: component means)
    alpha_kd   ~ Gamma(2, 0.1)                 (the dispersions)
    x_nd | z_n = k ~ NegativeBinomial(mu_kd, alpha_kd)
    log p(x_n) = logsumexp_k [log pi_k + sum_d log NB(x_nd | mu_kd, alpha_kd)]

in PyMC's parameterisation (``pm.NegativeBinomial(mu=..., alpha=...)``): mean
:math:`\mu`, variance :math:`\mu + \mu^2 / \alpha`, and

.. math::

    \log NB(x \mid \mu, \alpha) = \log\Gamma(x + \alpha) - \log\Gamma(\alpha) - \log x!
        - \alpha \log(1 + \mu / \alpha) + x \log\frac{\mu}{\alpha + \mu}.

A small dispersion :math:`\alpha` is strong over-dispersion; :math:`\alpha \to \infty` is
the Poisson limit. A negative binomial is a Gamma mixture of Poissons, so a negative
binomial *mixture* separates sub-populations whose counts are over-dispersed even within
a sub-population.

**Missing values** (``missing="model"``, NaN): a missing count drops out of its row's
product, and every per-feature step below runs over the observed counts of its feature:
:math:`n_k` becomes :math:`n_{kd} = \sum_n c_{nk} m_{nd}` (:math:`m_{nd}` = 1 where
:math:`x_{nd}` is observed) and the histograms skip the missing values.

**EM** (maximum likelihood; no MAP objective). With :math:`c_{nk} = w_n r_{nk}` (the
responsibilities times the sample weights), :math:`n_k = \sum_n c_{nk}` and
:math:`s_{kd} = \sum_n c_{nk} x_{nd}`, the expected complete-data log-likelihood is
maximised over :math:`\mu_{kd}` in closed form, :math:`\mu_{kd} = s_{kd} / n_k`, whatever
:math:`\alpha_{kd}` (its score in :math:`\mu` does not involve :math:`\alpha`), and then
over :math:`\alpha_{kd}` by a one-dimensional root of the profile score

.. math::

    \sum_v H_{kdv} \left[\psi(v + \alpha) - \psi(\alpha)\right]
        - n_k \log\left(1 + \frac{\mu_{kd}}{\alpha}\right) = 0,

where :math:`H_{kdv} = \sum_{n: x_{nd} = v} c_{nk}` is the weighted histogram of feature
``d`` in component ``k`` (the sufficient statistics: the M-step costs the number of
distinct counts, not ``N``). The root is found in :math:`\log \alpha` by Newton steps
safeguarded by bisection, in :math:`[10^{-3}, 10^{6}]`; when the score is still positive
at :math:`10^6` (a component no more dispersed than a Poisson) the dispersion stays at
that bound, the Poisson limit. A new dispersion is kept only if it does not lower the
expected complete-data log-likelihood, so every iteration is an exact (ECM) M-step and
the log-likelihood never decreases (Meng & Rubin 1993). The first M-step starts the root
search from the moment estimate :math:`\mu^2 / (\sigma^2 - \mu)` of the softened k-means++
responsibilities (:func:`bayesmix.em.init.initial_responsibilities`).

References
----------
.. [1] J. F. Lawless, "Negative binomial and mixed Poisson regression", *Canadian Journal
   of Statistics*, 15(3), 209-225, 1987.
.. [2] B. Levin and J. Reeds, "Compound multinomial likelihood functions are unimodal:
   proof of a conjecture of I. J. Good", *Annals of Statistics*, 5(1), 79-87, 1977 (the
   maximum-likelihood dispersion exists iff the variance exceeds the mean).
.. [3] X.-L. Meng and D. B. Rubin, "Maximum likelihood estimation via the ECM algorithm: a
   general framework", *Biometrika*, 80(2), 267-278, 1993.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import sparse
from scipy.special import digamma, expit, gammaln, polygamma

from bayesmix._glm import (
    Penalty,
    Response,
    check_weighted_rank,
    newton_maximise,
    weighted_fit,
)
from bayesmix._numeric import (
    column_moments,
    features_dot,
    kernel_pays_off,
    mean_filled,
    observed_values,
)
from bayesmix._params import Options
from bayesmix._threads import single_blas_thread
from bayesmix._validation import MixtureData, check_sample_weight
from bayesmix.em.chunked import EMSteps, sample_indices
from bayesmix.em.init import initial_responsibilities
from bayesmix.em.loop import (
    _EMPTY_MASS,
    _EPS,
    EMResult,
    _check_arguments,
    _fit_restarts,
    _iterate,
    _log_responsibilities,
    _ml_weights,
    _Restart,
    _restart_plan,
)
from bayesmix.exceptions import DataError
from bayesmix.families._independent import (
    _BOUNDARY,
    _INIT_SMOOTHING,
    _LARGE_COUNT,
    _LOG_FLOOR,
    _check_count_data,
    _check_count_response,
    _check_counts,
    _component_params,
    _count_far_terms,
    count_row_constant,
    feature_values,
    impute_features,
    kernel_on_complete_rows,
    observed_mask,
    observed_sum,
    sum_features,
    with_missing,
)
from bayesmix.families.poisson import RESPONSE as POISSON_RESPONSE
from bayesmix.model import MixtureModel
from bayesmix.priors import Prior

logger = logging.getLogger("bayesmix")

__all__ = [
    "RESPONSE",
    "NegativeBinomialMixture",
    "fit_negative_binomial_em",
    "fit_negative_binomial_regression",
    "negative_binomial_log_pmf",
    "negative_binomial_log_prob",
    "negative_binomial_mixture_logp",
    "negative_binomial_mixture_random",
]

#: The EM estimate of every dispersion is kept in this interval; the upper end is the
#: Poisson limit (variance ``mu + mu^2 / 1e6``).
DISPERSION_BOUNDS: tuple[float, float] = (1e-3, 1e6)
# NUTS starts with dispersions at most this large: an EM estimate at the Poisson limit
# (1e6) is far in the tail of any sensible prior, where the gradient is huge.
_START_MAX_DISPERSION = 1e3
# Above this dispersion, log Gamma(x + alpha) - log Gamma(alpha) and the digamma
# difference are evaluated by Stirling series instead of differences of large numbers.
_STIRLING_FROM = 100.0
_NEWTON_MAX_STEPS = 100
_NEWTON_TOL = 1e-12
# A new dispersion is rejected if it lowers the expected complete-data log-likelihood by
# more than this (relative): a real second root, not rounding.
_SAFEGUARD_RTOL = 1e-10
#: The default prior of every dispersion (of a mixture's features and of a mixture of
#: regressions' components); see the Notes of :class:`NegativeBinomialMixture`.
DISPERSION_PRIOR = Prior("Gamma", alpha=2.0, beta=0.1)
# The prior families a rate or a dispersion accepts.
_POSITIVE_PRIORS = frozenset({"Gamma", "Exponential", "LogNormal", "HalfNormal"})


# ---------------------------------------------------------------------------------------
# Densities


def _stirling_tail(z: np.ndarray) -> np.ndarray:
    """``log Gamma(z) - [(z - 1/2) log z - z + log(2 pi) / 2]`` for ``z >= 100`` (error < 1e-17)."""
    inv = 1.0 / z
    inv2 = inv * inv
    return inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 / 1260.0))


def _log_rising(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Return ``log Gamma(x + alpha) - log Gamma(alpha)``, accurate for large ``alpha`` too.

    The plain difference loses ``eps * log Gamma(alpha)`` (3e-9 at ``alpha = 1e6``); above
    :data:`_STIRLING_FROM` the Stirling series of both terms is subtracted analytically:
    ``(alpha - 1/2) log1p(x / alpha) + x log(alpha + x) - x + tail(alpha + x) - tail(alpha)``.
    """
    x, alpha = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(alpha, np.float64))
    out = np.asarray(gammaln(x + alpha) - gammaln(alpha))
    large = alpha > _STIRLING_FROM
    if np.any(large):
        a, v = alpha[large], x[large]
        out[large] = (
            (a - 0.5) * np.log1p(v / a)
            + v * np.log(a + v)
            - v
            + (_stirling_tail(a + v) - _stirling_tail(a))
        )
    return out


def _digamma_difference(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Return ``psi(x + alpha) - psi(alpha)``, by the asymptotic series for large ``alpha``."""
    x, alpha = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(alpha, np.float64))
    out = np.asarray(digamma(x + alpha) - digamma(alpha))
    large = alpha > _STIRLING_FROM
    if np.any(large):
        a, v = alpha[large], x[large]
        b = a + v

        def series(z: np.ndarray) -> np.ndarray:  # psi(z) - log z + 1 / (2 z), up to z^-8
            inv2 = 1.0 / (z * z)
            return -inv2 * (1.0 / 12.0 - inv2 * (1.0 / 120.0 - inv2 / 252.0))

        out[large] = np.log1p(v / a) + v / (2.0 * a * b) + (series(b) - series(a))
    return out


def _levels(X: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return the distinct counts of every feature and each sample's index among them."""
    return [np.unique(column, return_inverse=True) for column in X.T]


def _log_factorials(X: np.ndarray) -> np.ndarray:
    """Return ``sum_d log x_nd!`` over the counts below 2^40 (:func:`_log_rising_factorial`).

    A missing value (NaN) adds nothing.
    """
    return np.where(X < _LARGE_COUNT, gammaln(X + 1.0), 0.0).sum(axis=1)


def _log_rising_factorial(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Return ``log Gamma(x + alpha) - log Gamma(alpha) - log x!`` for counts ``x >= 2^40``.

    With Stirling's series for both gamma functions at ``x + alpha`` and ``x + 1`` (both
    above 100, where its tail is below 1e-17), the terms of size ``x log x`` cancel
    analytically:

        (x + 1/2) log1p((alpha - 1) / (x + 1)) + (alpha - 1) log(x + alpha) - (alpha - 1)
        + tail(x + alpha) - tail(x + 1) - log Gamma(alpha),

    about ``(alpha - 1) log x - log Gamma(alpha)``, finite for every count (the difference
    of the two gamma functions, ~3e16 each at ``x = 1e15``, would lose every digit).
    """
    x, alpha = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(alpha, np.float64))
    return (
        (x + 0.5) * np.log1p((alpha - 1.0) / (x + 1.0))
        + (alpha - 1.0) * np.log(x + alpha)
        - (alpha - 1.0)
        + (_stirling_tail(x + alpha) - _stirling_tail(x + 1.0))
        - gammaln(alpha)
    )


def _log_coefficient(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Return ``log Gamma(x + alpha) - log Gamma(alpha) - log x!`` elementwise, for every count.

    Counts of 2^40 or more by :func:`_log_rising_factorial` (no digits lost, nothing
    overflows), the others by :func:`_log_rising` and ``log x!``; broadcasting.
    """
    x = np.asarray(x, np.float64)
    large = x >= _LARGE_COUNT
    small = np.where(large, 0.0, x)
    out = _log_rising(small, alpha) - gammaln(small + 1.0)
    if np.any(large):
        out = np.where(large, _log_rising_factorial(np.where(large, x, _LARGE_COUNT), alpha), out)
    return out


def negative_binomial_log_pmf(
    x: np.ndarray, log_mean: np.ndarray, dispersion: np.ndarray
) -> np.ndarray:
    r"""Return ``log NB(x | mu, alpha)`` elementwise, given ``log mu`` (broadcasting).

    The density of the module docstring with :math:`t = \log\alpha` and :math:`s(z) =
    \log(1 + e^z)`: :math:`\log\Gamma(x + \alpha) - \log\Gamma(\alpha) - \log x! - \alpha
    s(\log\mu - t) - x\, s(t - \log\mu)`, finite for every linear predictor ``log mu``
    whose mean overflows (a log-link regression's) and accurate up to the Poisson limit
    (:func:`_log_coefficient`). :func:`negative_binomial_log_prob` is the same density of
    feature vectors, tabulated per distinct count.

    Parameters
    ----------
    x : array-like
        Non-negative integer counts (as floats).
    log_mean : array-like
        ``log mu`` (a regression's linear predictor).
    dispersion : array-like
        ``alpha > 0``.

    Returns
    -------
    ndarray
        The broadcast shape of the three.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.stats import nbinom
    >>> out = negative_binomial_log_pmf(np.array([0.0, 3.0]), np.log(2.0), 0.5)
    >>> bool(np.allclose(out, nbinom.logpmf([0, 3], 0.5, 0.5 / 2.5)))
    True
    """
    log_mean = np.asarray(log_mean, np.float64)
    dispersion = np.asarray(dispersion, np.float64)
    log_dispersion = np.log(dispersion)
    return (
        _log_coefficient(x, dispersion)
        - dispersion * np.logaddexp(0.0, log_mean - log_dispersion)
        - np.asarray(x, np.float64) * np.logaddexp(0.0, log_dispersion - log_mean)
    )


def _log_prob(
    X: np.ndarray,
    levels: list[tuple[np.ndarray, np.ndarray]],
    log_factorials: np.ndarray,
    rates: np.ndarray,
    dispersion: np.ndarray,
) -> np.ndarray:
    """:func:`negative_binomial_log_prob` with the distinct counts and :func:`_log_factorials`.

    A count of 2^40 or more has its log factorial in :func:`_log_rising_factorial`, not in
    ``log_factorials``, so that no digits are lost (and nothing overflows) however large
    it is. A missing value (NaN, a distinct value of its feature in ``levels``) adds
    nothing.
    """
    rates, dispersion = np.broadcast_arrays(
        np.asarray(rates, np.float64), np.asarray(dispersion, np.float64)
    )
    with np.errstate(divide="ignore"):
        log_rates = np.log(rates)
    # log(mu / (alpha + mu)), finite (0 * log 0 = 0 for a zero rate; fixed below).
    log_odds = np.maximum(log_rates - np.log(dispersion + rates), _LOG_FLOOR)
    out = features_dot(observed_values(X), log_odds)
    out -= observed_sum(X, dispersion * np.log1p(rates / dispersion))
    out -= log_factorials[None, :, None]
    for d, (values, inverse) in enumerate(levels):
        # log Gamma(x + alpha) - log Gamma(alpha) once per distinct count: (S, V, K).
        rising = _log_rising(values[None, :, None], dispersion[:, None, :, d])
        large = values >= _LARGE_COUNT
        if large.any():  # with - log x! (left out of log_factorials)
            rising[:, large, :] = _log_rising_factorial(
                values[None, large, None], dispersion[:, None, :, d]
            )
        rising[:, np.isnan(values), :] = 0.0  # a missing value
        out += rising[:, inverse, :]
    zero = rates == 0.0
    if zero.any():
        impossible = features_dot((X > 0).astype(np.float64), zero.astype(np.float64))
        out[impossible > 0] = -np.inf
    return out


def negative_binomial_log_prob(
    X: np.ndarray, rates: np.ndarray, dispersion: np.ndarray
) -> np.ndarray:
    r"""Return ``sum_d log NB(x_nd | mu_kd, alpha_kd)`` for every draw, sample and component.

    PyMC's parameterisation: mean ``mu`` (the rate), variance ``mu + mu^2 / alpha``.
    ``log Gamma(x + alpha) - log Gamma(alpha)`` is evaluated once per distinct count of
    each feature, by Stirling series for ``alpha > 100`` (accurate up to the Poisson
    limit); a zero rate (an EM estimate) gives ``-inf`` only to samples with a positive
    count in that feature.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Non-negative integer counts (as floats); NaN where a value is missing: it drops
        out of the sum (a row's density is that of its observed features).
    rates : numpy.ndarray of shape (n_draws, n_components, n_features)
        The means ``mu >= 0``.
    dispersion : numpy.ndarray of shape (n_draws, n_components, n_features)
        The dispersions ``alpha > 0``.

    Returns
    -------
    numpy.ndarray of shape (n_draws, n_samples, n_components)

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.stats import nbinom
    >>> X = np.array([[0.0], [3.0]])
    >>> out = negative_binomial_log_prob(X, np.array([[[2.0]]]), np.array([[[0.5]]]))
    >>> bool(np.allclose(out[0, :, 0], nbinom.logpmf([0, 3], 0.5, 0.5 / 2.5)))
    True
    """
    X = np.asarray(X, dtype=np.float64)
    return _log_prob(X, _levels(X), _log_factorials(X), rates, dispersion)


def _negative_binomial_far_log_prob(
    X: np.ndarray, rates: np.ndarray, dispersion: np.ndarray
) -> Any:
    """Return the exact far-out terms of :func:`negative_binomial_log_prob` (counts >= 2^40).

    The linear term is ``sum_d x_d log(mu_kd / (alpha_kd + mu_kd))``; the rest (the
    dispersion terms and :func:`_log_rising_factorial`, ``log x!`` included) is finite.
    """
    X = np.asarray(X, dtype=np.float64)
    rates, dispersion = np.broadcast_arrays(
        np.asarray(rates, np.float64), np.asarray(dispersion, np.float64)
    )
    with np.errstate(divide="ignore"):
        log_odds = np.log(rates) - np.log(dispersion + rates)

    def constant(rows: np.ndarray) -> np.ndarray:
        shape = (rates.shape[0], rows.size, rates.shape[1])
        out = -observed_sum(X[rows], dispersion * np.log1p(rates / dispersion))
        out = np.broadcast_to(out, shape).copy()
        for d in range(X.shape[1]):
            # (1, n, 1) against dispersions (S, 1, K); a missing value at 0 adds nothing.
            x = observed_values(X[rows])[None, :, None, d]
            out += _log_coefficient(x, dispersion[:, None, :, d])
        return out

    return _count_far_terms(X, log_odds, constant)


def negative_binomial_mixture_logp(
    value: Any, weights: Any, rates: Any, dispersion: Any, *, missing: Any = None
) -> Any:
    """Return ``log sum_k pi_k prod_d NB(x_nd | mu_kd, alpha_kd)`` per observation (PyTensor).

    The log-density of ``pm.CustomDist`` (``value`` (..., N, D) against weights (..., K)
    and rates, dispersions (..., K, D)). The gamma-function difference is evaluated
    directly, as ``pm.NegativeBinomial`` does: exact to ~1e-12 for the dispersions NUTS
    visits under the default prior (the NumPy density is accurate up to the Poisson limit).
    ``missing`` (N, D), if given, marks missing values, which drop out of the product.
    """
    x = feature_values(value, missing)  # (..., N, 1, D) against (..., K, D)
    component = sum_features(_pt_log_pmf(x, pt.log(rates), dispersion), missing)
    return pt.logsumexp(pt.log(weights) + component, axis=-1)


def _pt_log_pmf(x: Any, log_mean: Any, dispersion: Any) -> Any:
    """:func:`negative_binomial_log_pmf` in PyTensor (the gamma functions subtracted directly)."""
    log_dispersion = pt.log(dispersion)
    return (
        pt.gammaln(x + dispersion)
        - pt.gammaln(dispersion)
        - pt.gammaln(x + 1.0)
        - dispersion * pt.softplus(log_mean - log_dispersion)
        - x * pt.softplus(log_dispersion - log_mean)
    )


def negative_binomial_mixture_random(
    weights: np.ndarray,
    rates: np.ndarray,
    dispersion: np.ndarray,
    rng: np.random.Generator | None = None,
    size: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Draw counts by the generative story: a label, then independent negative binomials.

    ``NB(mu, alpha)`` is drawn as NumPy's ``negative_binomial(alpha, alpha / (alpha + mu))``
    (failures before the ``alpha``-th success: mean ``mu``, variance ``mu + mu^2 / alpha``;
    :func:`_draw`).
    """
    rates, dispersion = np.broadcast_arrays(np.asarray(rates), np.asarray(dispersion))
    n_features = rates.shape[-1]
    # One label draw for both parameters: stack them along the feature axis.
    chosen, rng = _component_params(
        weights, np.concatenate([rates, dispersion], axis=-1), rng, size
    )
    return _draw(rng, chosen[..., :n_features], chosen[..., n_features:])


def _draw(rng: np.random.Generator, mean: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """Draw ``NB(mu, alpha)`` as NumPy's ``negative_binomial(alpha, alpha / (alpha + mu))``."""
    return rng.negative_binomial(dispersion, dispersion / (dispersion + mean)).astype(np.float64)


# ---------------------------------------------------------------------------------------
# EM


def _profile_score(
    values: np.ndarray, hist: np.ndarray, nk: np.ndarray, rates: np.ndarray, alpha: np.ndarray
) -> np.ndarray:
    """Return the score in ``alpha`` of the expected complete-data log-likelihood, (K,)."""
    return (hist * _digamma_difference(values[None, :], alpha[:, None])).sum(
        axis=1
    ) - nk * np.log1p(rates / alpha)


def _profile_slope(
    values: np.ndarray, hist: np.ndarray, nk: np.ndarray, rates: np.ndarray, alpha: np.ndarray
) -> np.ndarray:
    """Return the derivative of :func:`_profile_score` in ``alpha``, (K,)."""
    trigamma = polygamma(1, values[None, :] + alpha[:, None]) - polygamma(1, alpha)[:, None]
    return (hist * trigamma).sum(axis=1) + nk * rates / (alpha * (alpha + rates))


def _profile_objective(
    values: np.ndarray, hist: np.ndarray, nk: np.ndarray, rates: np.ndarray, alpha: np.ndarray
) -> np.ndarray:
    """Return the alpha-dependent part of the expected complete-data log-likelihood, (K,).

    ``sum_v H_v [log Gamma(v + a) - log Gamma(a)] - n_k a log(1 + mu / a) - s log(a + mu)``
    with ``s = n_k mu``.
    """
    rising = (hist * _log_rising(values[None, :], alpha[:, None])).sum(axis=1)
    return rising - nk * alpha * np.log1p(rates / alpha) - nk * rates * np.log(alpha + rates)


def _solve_dispersion(
    values: np.ndarray,
    hist: np.ndarray,
    nk: np.ndarray,
    rates: np.ndarray,
    start: np.ndarray,
) -> np.ndarray:
    """Maximise the expected complete-data log-likelihood in ``alpha`` for every component.

    A root of :func:`_profile_score` in ``t = log alpha`` inside :data:`DISPERSION_BOUNDS`:
    Newton steps, replaced by bisection whenever they leave the bracket. When the score
    is still positive at the upper bound the component is no more dispersed than a
    Poisson and gets the upper bound; when it is negative at the lower bound, the lower
    bound. The result is a maximum if the score has one sign change (Levin & Reeds 1977);
    the caller keeps the previous value if the objective did not increase.
    """
    low, high = np.log(DISPERSION_BOUNDS[0]), np.log(DISPERSION_BOUNDS[1])
    n_components = nk.shape[0]
    lo = np.full(n_components, low)
    hi = np.full(n_components, high)
    at_high = _profile_score(values, hist, nk, rates, np.exp(hi)) >= 0.0
    at_low = ~at_high & (_profile_score(values, hist, nk, rates, np.exp(lo)) <= 0.0)
    t = np.where(at_high, high, np.where(at_low, low, np.clip(np.log(start), low, high)))
    active = ~(at_high | at_low)
    for _ in range(_NEWTON_MAX_STEPS):
        if not active.any():
            break
        alpha = np.exp(t[active])
        args = (values, hist[active], nk[active], rates[active])
        score = _profile_score(*args, alpha)
        slope = alpha * _profile_slope(*args, alpha)  # d score / d t
        idx = np.flatnonzero(active)
        # The score decreases through its root: a positive score means the root is above.
        lo[idx] = np.where(score > 0.0, t[idx], lo[idx])
        hi[idx] = np.where(score > 0.0, hi[idx], t[idx])
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = t[idx] - score / slope
        outside = ~np.isfinite(newton) | (newton < lo[idx]) | (newton > hi[idx])
        step = np.where(outside, 0.5 * (lo[idx] + hi[idx]), newton)
        done = (np.abs(step - t[idx]) <= _NEWTON_TOL * (1.0 + np.abs(t[idx]))) | (
            hi[idx] - lo[idx] <= _NEWTON_TOL
        )
        t[idx] = step
        active[idx[done]] = False
    alpha = np.exp(t)
    alpha[at_high] = DISPERSION_BOUNDS[1]  # exactly the bounds, not exp(log(bound))
    alpha[at_low] = DISPERSION_BOUNDS[0]
    return alpha


def _moment_dispersion(
    values: np.ndarray, hist: np.ndarray, nk: np.ndarray, rates: np.ndarray
) -> np.ndarray:
    """Method-of-moments dispersion ``mu^2 / (var - mu)`` per component, inside the bounds."""
    var = (hist * (values[None, :] - rates[:, None]) ** 2).sum(axis=1) / (nk + 10.0 * _EPS)
    return _dispersion_from_moments(rates**2, var - rates)


def _dispersion_from_moments(square: np.ndarray, excess: np.ndarray) -> np.ndarray:
    """Return the moment estimate ``alpha = mu^2 / (var - mu)`` inside the bounds.

    From ``E[(x - mu)^2 - mu] = mu^2 / alpha``: ``square`` the (summed) ``mu^2``,
    ``excess`` the (summed) variance beyond the mean. No excess is the Poisson limit.
    """
    square, excess = np.asarray(square, np.float64), np.asarray(excess, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(excess > 0.0, square / excess, DISPERSION_BOUNDS[1])
    return np.clip(np.nan_to_num(alpha, nan=1.0), *DISPERSION_BOUNDS)


class _NBStatistics:
    """The data of one EM fit in the form the E- and M-steps use (computed once).

    The distinct counts of each feature, a sparse one-hot matrix of each sample's count
    among them (so that the weighted histograms ``H_kdv`` are one sparse product per
    feature), ``sum_d log x_nd!``, the sample weights and the mask of the observed values
    (None without missing values; a missing value, NaN, is a distinct value of its
    feature whose histogram column the M-step leaves out).
    """

    def __init__(self, X: np.ndarray, sample_weight: np.ndarray | None) -> None:
        self.X = X
        self.observed = observed_mask(X)
        self.levels = _levels(X)
        self.log_factorials = _log_factorials(X)
        self.sample_weight = sample_weight
        self.total_weight = float(X.shape[0] if sample_weight is None else sample_weight.sum())
        n_samples = X.shape[0]
        self.one_hot = [
            sparse.csr_array(
                (np.ones(n_samples), (np.arange(n_samples), inverse)),
                shape=(n_samples, values.size),
            ).T.tocsr()
            for values, inverse in self.levels
        ]

    def log_prob(self, rates: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
        return _log_prob(self.X, self.levels, self.log_factorials, rates[None], dispersion[None])[0]

    def weighted(self, resp: np.ndarray) -> np.ndarray:
        return resp if self.sample_weight is None else resp * self.sample_weight[:, None]

    def histograms(self, weighted_resp: np.ndarray) -> list[np.ndarray]:
        """``H[d]`` of shape (K, V_d): the weighted counts of every distinct value."""
        return [np.asarray(one_hot @ weighted_resp).T for one_hot in self.one_hot]


def _e_step(
    stats: _NBStatistics, weights: np.ndarray, params: dict
) -> tuple[float, float, np.ndarray, None]:
    log_norm, log_resp = _log_responsibilities(
        stats.log_prob(params["rates"], params["dispersion"]), weights
    )
    if stats.sample_weight is None:
        value = float(np.mean(log_norm))
    else:
        positive = stats.sample_weight > 0.0  # a zero weight ignores even an impossible row
        value = float(stats.sample_weight[positive] @ log_norm[positive]) / stats.total_weight
    # Weighted responsibilities, as every family's E-step returns them: their sum is the
    # (weighted) number of samples.
    return value, value, stats.weighted(np.exp(log_resp)), None


def _m_step(
    stats: _NBStatistics, weighted: np.ndarray, old: dict | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weights and rates in closed form, then every dispersion by its 1-D root (ECM).

    ``weighted`` are the responsibilities times the sample weights, (N, K). With missing
    values, the histograms' NaN columns are left out and each feature has its expected
    count of observed values.
    """
    hists = stats.histograms(weighted)
    values = [values for values, _ in stats.levels]
    counts = None
    if stats.observed is not None:
        counts = weighted.T @ stats.observed
        kept = [~np.isnan(level) for level in values]
        values = [level[keep] for level, keep in zip(values, kept, strict=True)]
        hists = [hist[:, keep] for hist, keep in zip(hists, kept, strict=True)]
    return _m_step_from_histograms(values, hists, weighted.sum(axis=0), old, counts)


def _m_step_from_histograms(
    levels: list[np.ndarray],
    hists: list[np.ndarray],
    nk: np.ndarray,
    old: dict | None,
    counts: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return the ECM steps of :func:`_m_step` from the weighted histograms.

    ``hists[d]`` (K, V_d) counts the distinct (observed) counts ``levels[d]``; ``nk`` are
    the expected counts of the components; ``counts`` (K, D) those of the observed values
    of every feature (None: no missing value, ``nk`` for every feature). Each feature's
    steps use its own.
    """
    n_components, n_features = nk.shape[0], len(levels)
    rates = np.empty((n_components, n_features))
    dispersion = np.empty((n_components, n_features))
    for d, (values, hist) in enumerate(zip(levels, hists, strict=True)):
        n_d = nk if counts is None else counts[:, d]
        mu = (hist @ values) / (n_d + 10.0 * _EPS)
        if old is None:
            start = _moment_dispersion(values, hist, n_d, mu)
        else:
            start = old["dispersion"][:, d]
        alpha = _solve_dispersion(values, hist, n_d, mu, start)
        if old is not None:  # never lower the objective (a second root of the score)
            before = _profile_objective(values, hist, n_d, mu, start)
            after = _profile_objective(values, hist, n_d, mu, alpha)
            # Beyond rounding only: near convergence the two differ by less than it.
            worse = after < before - _SAFEGUARD_RTOL * (1.0 + np.abs(before))
            alpha = np.where(worse, start, alpha)
        rates[:, d], dispersion[:, d] = mu, alpha
    # An empty component (or a feature of it with no observed value) keeps its parameters.
    observed = nk[:, np.newaxis] if counts is None else counts
    empty = np.broadcast_to(observed < _EMPTY_MASS, rates.shape)
    if old is not None and np.any(empty):
        rates[empty] = old["rates"][empty]
        dispersion[empty] = old["dispersion"][empty]
    return _ml_weights(nk), {"rates": rates, "dispersion": dispersion}


def _run_restart(
    stats: _NBStatistics,
    resp: np.ndarray,
    *,
    max_iter: int,
    tol: float,
    name: str,
) -> _Restart:
    """One EM run from starting responsibilities (an M-step, then E- and M-steps).

    ``resp`` are not weighted: the sample weights multiply them here.
    """
    weights, params = _m_step(stats, stats.weighted(resp), None)
    return _iterate(
        lambda w, p: _e_step(stats, w, p),
        lambda r, _cache, _w, p: _m_step(stats, r, p),
        weights,
        params,
        max_iter=max_iter,
        tol=tol,
        name=name,
    )


@dataclass(frozen=True)
class _DistinctCounts:
    """The distinct counts of every feature; ``+`` is their union (a data-pass total)."""

    values: tuple[np.ndarray, ...]

    def __add__(self, other: _DistinctCounts) -> _DistinctCounts:
        return _DistinctCounts(
            tuple(np.union1d(a, b) for a, b in zip(self.values, other.values, strict=True))
        )


def _distinct_counts(X: np.ndarray, w: np.ndarray | None) -> dict:
    """Return the distinct observed counts of every feature of a chunk (NaN left out)."""
    return {
        "levels": _DistinctCounts(tuple(np.unique(column[~np.isnan(column)]) for column in X.T))
    }


def _nb_chunk_statistics(
    X: np.ndarray,
    w: np.ndarray | None,
    weights: np.ndarray,
    params: dict,
    *,
    levels: tuple[np.ndarray, ...],
) -> dict:
    """Return the E-step statistics of one chunk: the weighted histograms of the counts.

    ``hists`` is (K, sum_d V_d): feature ``d``'s histogram over the data set's distinct
    counts ``levels[d]`` in its own block of columns. Missing values (NaN) are left out of
    the histograms; ``n_missing`` counts them and ``counts`` (K, D) are the expected
    counts of the observed values (``nk`` for every feature without missing values).
    """
    local = _levels(X)
    log_prob = _log_prob(
        X, local, _log_factorials(X), params["rates"][None], params["dispersion"][None]
    )[0]
    log_norm, log_resp = _log_responsibilities(log_prob, weights)
    resp = np.exp(log_resp)
    if w is None:
        total, weight = float(np.sum(log_norm)), float(X.shape[0])
    else:
        resp *= w[:, np.newaxis]
        positive = w > 0.0  # a zero weight ignores even an impossible row
        total, weight = float(w[positive] @ log_norm[positive]), float(w.sum())
    observed = observed_mask(X)
    blocks = []
    for d, (column, values) in enumerate(zip(X.T, levels, strict=True)):
        kept = slice(None) if observed is None else observed[:, d] > 0
        column = column[kept]
        index = np.minimum(np.searchsorted(values, column), values.size - 1)
        unseen = values[index] != column
        if unseen.any():
            raise DataError(
                f"feature {d} has the count {column[unseen][0]:g}, which the pass that "
                "collected the distinct counts did not see: the data changed during the fit."
            )
        blocks.append(
            np.array([np.bincount(index, weights=r[kept], minlength=values.size) for r in resp.T])
        )
    nk = resp.sum(axis=0)
    counts = np.broadcast_to(nk[:, np.newaxis], (nk.size, X.shape[1]))
    return {
        "log_likelihood": total,
        "weight": weight,
        "nk": nk,
        "hists": np.concatenate(blocks, axis=1),
        "counts": counts.copy() if observed is None else resp.T @ observed,
        "n_missing": float(np.isnan(X).sum()),
    }


def chunked_nb_steps(n_components: int, data_pass: Callable[[Callable], dict]) -> EMSteps:
    """Return the negative-binomial ECM as sufficient statistics (:class:`EMSteps`).

    One pass first collects the distinct counts of every feature; then every iteration is
    one pass of weighted histograms over them (:func:`_nb_chunk_statistics`), from which
    :func:`_m_step_from_histograms` does both CM-steps as the in-memory ECM does.
    """
    levels = data_pass(_distinct_counts)["levels"].values
    sizes = np.cumsum([0, *(values.size for values in levels)])

    def m_step(stats: dict, weights: np.ndarray, params: dict, data_pass) -> tuple:
        hists = [stats["hists"][:, a:b] for a, b in itertools.pairwise(sizes)]
        counts = stats["counts"] if stats["n_missing"] > 0 else None
        return _m_step_from_histograms(list(levels), hists, np.asarray(stats["nk"]), params, counts)

    def initialise(
        rows, n_samples: int, rng: np.random.Generator, partition: str = "k-means++"
    ) -> tuple:
        X, w = rows(sample_indices(n_samples, rng))
        stats = _NBStatistics(X, w)
        resp = initial_responsibilities(
            mean_filled(X, w), n_components, rng, _INIT_SMOOTHING, w, partition
        )
        return _m_step(stats, stats.weighted(resp), None)

    return EMSteps(
        family="negative_binomial",
        statistics=functools.partial(_nb_chunk_statistics, levels=levels),
        m_step=m_step,
        initialise=initialise,
        online=False,  # a later batch may hold counts that the histograms do not have
    )


@single_blas_thread
def fit_negative_binomial_em(
    X: np.ndarray,
    n_components: int,
    *,
    n_init: int = 1,
    max_iter: int = 200,
    tol: float = 1e-6,
    random_state: int | np.random.Generator | None = None,
    sample_weight: np.ndarray | None = None,
    init: str = "k-means++",
    missing: str = "raise",
) -> EMResult:
    r"""Fit a mixture of independent negative binomials by maximum likelihood (ECM).

    Model: :math:`p(x_n) = \sum_k \pi_k \prod_d \operatorname{NB}(x_{nd} \mid \mu_{kd},
    \alpha_{kd})` (mean :math:`\mu`, variance :math:`\mu + \mu^2 / \alpha`). Weights and
    rates are updated in closed form, each dispersion by a one-dimensional root search
    (see the module docstring); the log-likelihood never decreases.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Counts: finite non-negative integers (any numeric dtype). Not modified.
    n_components : int
        Number of components ``K``.
    n_init : int, default=1
        Number of restarts (see ``init``); the one with the highest final objective is
        returned (the first on ties).
    max_iter : int, default=200
        Maximum number of EM iterations per restart (0 returns the starting parameters).
    tol : float, default=1e-6
        Convergence threshold on the change of the objective (per sample).
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the initialisation; a ``Generator`` is used as is.
    sample_weight : numpy.ndarray of shape (n_samples,) or None, default=None
        Non-negative frequency weights (None: all ones). They multiply the
        responsibilities in every sufficient statistic, and the objective is the
        weighted mean log-likelihood ``sum_n w_n log p(x_n) / sum_n w_n``: integer weights
        give the fit of the data with every row repeated ``w_n`` times. The seeding is
        weighted too.
    init : {"k-means++", "random", "emem"}, default="k-means++"
        How the restarts start (:func:`bayesmix.em.loop._restart_plan`): each from the
        nearest-seed partition of new k-means++ seeds or of ``K`` random rows; or
        ``"emem"``: ``8 * n_init`` short runs (to a change below 1e-3, at most 50
        iterations) from both kinds, the best ``n_init`` run to convergence (the
        estimators' default).
    missing : {"raise", "model"}, default="raise"
        ``"model"``: NaN entries of ``X`` are missing values, left out of their rows'
        densities and of the steps of their feature (see the module docstring); rows must
        not be all NaN.

    Returns
    -------
    EMResult
        ``params={"rates": (K, D), "dispersion": (K, D)}``, ``family="negative_binomial"``,
        ``objective="ml"``; ``log_likelihood`` and ``lower_bounds`` are weighted means per
        sample. Components are not sorted.

    Raises
    ------
    InvalidParameterError
        If an argument is invalid.
    DataError
        If ``X`` does not hold non-negative integers or ``sample_weight`` is invalid.
    FitError
        If every restart failed (a non-finite objective).

    Warns
    -----
    ConvergenceWarning
        If the best restart did not reach ``tol`` within ``max_iter`` iterations, if a
        restart failed while another succeeded, or if a component of the result is empty.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.negative_binomial(2.0, 2.0 / (2.0 + 10.0), size=(500, 1))
    >>> result = fit_negative_binomial_em(X, 1, random_state=0)
    >>> result.params["rates"].round(3).tolist() == [[round(float(X.mean()), 3)]]
    True
    >>> bool(1.5 < result.params["dispersion"][0, 0] < 2.5)
    True
    """
    X = np.asarray(X, dtype=np.float64)
    _check_arguments(X, n_components, n_init, max_iter, tol, "ml", init)
    _check_counts(X, "negative binomial", missing)
    stats = _NBStatistics(X, check_sample_weight(sample_weight, X.shape[0]))
    rng = np.random.default_rng(random_state)
    X_start = mean_filled(X, stats.sample_weight)

    def start(partition: str) -> tuple[np.ndarray, dict]:
        resp = initial_responsibilities(
            X_start, n_components, rng, _INIT_SMOOTHING, stats.sample_weight, partition
        )
        return _m_step(stats, stats.weighted(resp), None)

    def run(
        weights: np.ndarray, params: dict, iterations: int, tolerance: float, name: str
    ) -> _Restart:
        return _iterate(
            lambda w, p: _e_step(stats, w, p),
            lambda r, _cache, _w, p: _m_step(stats, r, p),
            weights,
            params,
            max_iter=iterations,
            tol=tolerance,
            name=name,
        )

    return _fit_restarts(
        _restart_plan(
            start,
            run,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            label="negative_binomial EM",
        ),
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        family="negative_binomial",
        objective="ml",
        stacklevel=4,  # _fit_restarts, fit_negative_binomial_em, BLAS-thread wrapper, caller
    )


# ---------------------------------------------------------------------------------------
# The component of a mixture of regressions


def _start_dispersion(dispersion: np.ndarray) -> np.ndarray:
    """Return the NUTS start of EM dispersions: inside the support, off the Poisson limit."""
    return np.clip(dispersion, _BOUNDARY, _START_MAX_DISPERSION)


def fit_negative_binomial_regression(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    coefficients: np.ndarray | None = None,
    dispersion: float | None = None,
    penalty: Penalty | None = None,
) -> tuple[np.ndarray, float, bool]:
    r"""Return the weighted maximum-likelihood negative binomial regression, and convergence.

    Maximises :math:`\ell(\beta, \alpha) = \sum_n w_n \log NB(y_n \mid e^{x_n^T \beta},
    \alpha)` (NB2: variance :math:`\mu + \mu^2 / \alpha`) jointly in :math:`\theta =
    (\beta, t = \log\alpha)`: the M-step of a component of a mixture of regressions
    (weights: its responsibilities times the sample weights). The log link is not
    canonical once :math:`\alpha` is free, so this is no IRLS: Newton's method on
    :math:`\theta` (:func:`bayesmix._glm.newton_maximise`, each step halved until
    :math:`\ell` does not decrease, so an EM iteration never lowers the likelihood), with
    :math:`t` boxed to :data:`DISPERSION_BOUNDS` (projected Newton: a component no more
    dispersed than a Poisson ends exactly at the upper bound, the Poisson limit, as in
    the mixture's EM). With :math:`p_n = \mu_n / (\mu_n + \alpha)` and :math:`q_n = 1 -
    p_n`, the derivatives per observation are

    .. math::

        \partial_\eta = y q - \alpha p, \quad
        \partial_t = \alpha [\psi(y + \alpha) - \psi(\alpha) - \log(1 + \mu / \alpha)
            + p - y q / \alpha],

        \partial^2_\eta = -(y + \alpha) p q, \quad
        \partial_\eta \partial_t = p\, \partial_\eta, \quad
        \partial^2_t = \partial_t + \alpha^2 [\psi'(y + \alpha) - \psi'(\alpha)]
            + \alpha p^2 + y q^2,

    and the terms in :math:`y` and :math:`\alpha` alone are summed over the weighted
    histogram of the distinct counts. :math:`\ell` is concave in :math:`\beta` but not
    jointly: where the observed information is not positive definite, its
    :math:`(t, t)` entry is raised until the Schur complement of the coefficients' block
    is as large as it was negative (the coefficients' block, positive definite, is
    kept), which keeps every step an ascent direction and Newton's quadratic
    convergence where the information is positive definite (near a maximum).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_predictors)
        The design.
    y : ndarray of shape (n_samples,)
        Counts.
    weights : ndarray of shape (n_samples,)
        Non-negative.
    coefficients, dispersion : ndarray of shape (n_predictors,) and float, optional
        The start (the previous M-step's). Without them: the weighted Poisson IRLS fit
        and the moment estimate :math:`\sum w \mu^2 / \sum w [(y - \mu)^2 - \mu]` of
        the dispersion at its means (the Poisson limit when there is no excess).
    penalty : bayesmix._glm.Penalty, optional
        The MAP M-step: add the coefficients' normal log prior and, with a
        ``Gamma(alpha, beta)`` ``penalty.scale_prior``, the dispersion's, :math:`(a - 1)
        t - b e^t` (the density of :math:`\alpha`, without the Jacobian of the log).

    Returns
    -------
    coefficients : ndarray of shape (n_predictors,)
    dispersion : float
    converged : bool
        False when Newton's method stopped at its iteration limit (coefficients that
        diverge: a component of zero counts).

    Raises
    ------
    FitError
        If the weighted design has less than full rank.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0, 2, 4000)
    >>> X = np.column_stack([np.ones_like(x), x])
    >>> mu = np.exp(0.5 + 0.8 * x)
    >>> y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu)).astype(float)
    >>> beta, alpha, converged = fit_negative_binomial_regression(X, y, np.ones_like(y))
    >>> beta.round(1), round(alpha, 0), converged
    (array([0.5, 0.8]), 3.0, True)
    """
    check_weighted_rank(X, weights)
    if coefficients is None or dispersion is None:
        coefficients, _ = weighted_fit(X, y, weights, POISSON_RESPONSE)
        mean = np.exp(X @ coefficients)
        dispersion = float(
            _dispersion_from_moments(weights @ mean**2, weights @ ((y - mean) ** 2 - mean))
        )
    values, inverse = np.unique(y, return_inverse=True)
    hist = np.bincount(inverse, weights=weights, minlength=values.size)  # of the counts
    n_predictors = X.shape[1]
    low, high = np.log(DISPERSION_BOUNDS)
    bounds = (
        np.append(np.full(n_predictors, -np.inf), low),
        np.append(np.full(n_predictors, np.inf), high),
    )
    start = np.append(coefficients, np.clip(np.log(dispersion), low, high))
    shape, rate = _gamma_prior(penalty)

    def objective(theta: np.ndarray) -> float:
        eta, t = X @ theta[:-1], theta[-1]
        alpha = np.exp(t)
        rest = alpha * np.logaddexp(0.0, eta - t) + y * np.logaddexp(0.0, t - eta)
        value = float(hist @ _log_coefficient(values, alpha) - weights @ rest)
        if penalty is not None:
            value += penalty.log_density(theta[:-1]) + (shape - 1.0) * t - rate * alpha
        return value

    def derivatives(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eta, t = X @ theta[:-1], theta[-1]
        alpha = np.exp(t)
        p, q = expit(eta - t), expit(t - eta)
        d_eta = y * q - alpha * p
        d_t = alpha * (
            hist @ _digamma_difference(values, alpha)
            + weights @ (p - y * q / alpha - np.logaddexp(0.0, eta - t))
        )
        trigamma = polygamma(1, values + alpha) - polygamma(1, alpha)
        d_tt = d_t + alpha**2 * (hist @ trigamma) + weights @ (alpha * p**2 + y * q**2)
        d_beta = X.T @ (weights * d_eta)
        information = np.empty((n_predictors + 1, n_predictors + 1))
        block = (X.T * (weights * (y + alpha) * p * q)) @ X
        if penalty is not None:  # the log prior's derivatives
            d_beta = d_beta - penalty.precision * (theta[:-1] - penalty.mean)
            block = block + np.diag(penalty.precision)
            d_t, d_tt = d_t + (shape - 1.0) - rate * alpha, d_tt - rate * alpha
        cross = -X.T @ (weights * p * d_eta)
        information[:-1, :-1] = block
        information[:-1, -1] = information[-1, :-1] = cross
        # Positive definite: the Schur complement of the (positive definite) block.
        try:
            explained = float(cross @ np.linalg.solve(block, cross))
        except np.linalg.LinAlgError:  # fitted means at rounding level (a diverging fit)
            explained = float(cross @ np.linalg.lstsq(block, cross, rcond=None)[0])
        schur = -d_tt - explained
        floor = 1e-10 * max(abs(d_tt), explained, 1e-300)
        information[-1, -1] = explained + max(abs(schur), floor)
        return np.append(d_beta, d_t), information

    theta, converged = newton_maximise(objective, derivatives, start, bounds)
    dispersion = float(np.exp(theta[-1]))
    if theta[-1] >= high:  # exactly the bound, not exp(log(bound))
        dispersion = DISPERSION_BOUNDS[1]
    elif theta[-1] <= low:
        dispersion = DISPERSION_BOUNDS[0]
    return theta[:-1], dispersion, converged


def _gamma_prior(penalty: Penalty | None) -> tuple[float, float]:
    """Shape and rate of a MAP M-step's Gamma prior on the dispersion (1, 0: none)."""
    if penalty is None or penalty.scale_prior is None:
        return 1.0, 0.0
    params = penalty.scale_prior.params
    return float(params["alpha"]), float(params["beta"])


def _regression_log_prob(y: np.ndarray, eta: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    return negative_binomial_log_pmf(y, eta, dispersion)


def _regression_pt_log_prob(y: Any, eta: Any, dispersion: Any) -> Any:
    return _pt_log_pmf(y, eta, dispersion)


#: The negative binomial response of a mixture of regressions
#: (:class:`bayesmix.MixtureRegression`): ``y | x, z = k ~ NB(exp(x' beta_k),
#: dispersion_k)`` (NB2, the log link), each component's dispersion its posterior variable
#: ``dispersion`` with the mixture's default prior, and its M-step
#: :func:`fit_negative_binomial_regression`.
RESPONSE = Response(
    name="negative-binomial",
    link="log",
    log_prob=_regression_log_prob,
    pt_log_prob=_regression_pt_log_prob,
    mean=np.exp,
    variance=np.exp,  # the Poisson limit's (no IRLS: the M-step is weighted_fit below)
    draw=lambda rng, eta, dispersion: _draw(rng, np.exp(eta), dispersion),
    check=functools.partial(_check_count_response, family="negative binomial"),
    scale="dispersion",
    scale_prior=lambda y_mean, y_sd: DISPERSION_PRIOR,
    scale_priors=_POSITIVE_PRIORS,
    scale_start=_start_dispersion,
    weighted_fit=fit_negative_binomial_regression,
    map_scale_priors=frozenset({"Gamma"}),
    kind="counts",
)


# ---------------------------------------------------------------------------------------
# The model


class NegativeBinomialMixture(MixtureModel):
    r"""Bayesian finite mixture of independent negative binomial counts.

    Each component has a rate (mean) and a dispersion per feature; given the component,
    the counts are independent negative binomials with variance ``rate + rate^2 /
    dispersion``. Where a :class:`~bayesmix.PoissonMixture` needs a component for every
    level of over-dispersion, a negative binomial component absorbs over-dispersion
    within a sub-population, so the components are the sub-populations with different
    means. EM is maximum likelihood only (no ``objective="map"``).

    Parameters
    ----------
    n_components : int, default=2
    priors : dict of str to Prior, optional
        ``weights`` (Dirichlet), ``rates`` and ``dispersion`` (Gamma, Exponential,
        LogNormal, HalfNormal).
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
    missing : {"raise", "model"}, default="raise"
        Missing values (NaN) in ``X``: ``"raise"`` refuses them (a ``DataError``);
        ``"model"`` treats them as missing at random: a missing count drops out of its
        row's product (the features are independent within a component), so a row's
        likelihood is the density of its observed counts, and EM's steps per feature
        (rate, dispersion) run over the observed counts. NUTS and Laplace sample that
        likelihood (the PyMC model, not the fused kernel). ``predict``, ``predict_proba``
        and ``score_samples`` then accept rows with missing values too. A row or column
        with every value missing is a ``DataError``. On chunked data (Dask, Zarr,
        Parquet) EM and Laplace take them too, chunk by chunk; NUTS there needs complete
        rows.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    rates_ : ndarray of shape (n_components, n_features)
        Posterior mean (NUTS) or estimate (EM) of the component means.
    dispersion_ : ndarray of shape (n_components, n_features)
        Posterior mean (NUTS) or estimate (EM) of the dispersions; an EM estimate of
        ``1e6`` is the Poisson limit (no over-dispersion in that component).
    idata : xarray.DataTree
        ``posterior`` (``weights``, ``rates``, ``dispersion``), ``log_likelihood``,
        ``observed_data``, ``sample_stats`` or ``em_stats``.
    em_ : bayesmix.em.loop.EMResult
    priors_ : dict of str to Prior
    n_features_in_ : int
    feature_names_in_ : list of str

    Notes
    -----
    Default priors: ``weights ~ Dirichlet(1)``, ``rates ~ Gamma(1, 1 / m)`` with ``m`` the
    mean count of each feature (an exponential prior with the data's mean, as for the
    Poisson mixture), ``dispersion ~ Gamma(2, 0.1)`` (mean 20, 94% of its mass between
    about 2.7 and 54). The dispersion prior is weakly informative on purpose: the
    likelihood is flat as ``dispersion -> infinity`` (the Poisson limit), so a flat or
    heavy-tailed prior gives an improper or badly mixing posterior there, and its zero
    density at 0 keeps NUTS out of the singular corner ``dispersion -> 0``. Pass a
    different prior for very strongly over-dispersed counts (dispersion well below 1).
    Components are labelled by increasing rate of the first feature; draws are relabelled
    on the square roots of the rates.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_warpbreaks()[["breaks"]]
    >>> nb = bm.NegativeBinomialMixture(n_components=1, random_state=0).fit(X, method="em")
    >>> round(float(nb.rates_[0, 0]), 2)  # the mean number of breaks
    28.15
    >>> round(float(nb.dispersion_[0, 0]), 2)  # variance 28.15 + 28.15**2 / 6.5
    6.5
    """

    _family = "negative_binomial"
    plot_kind = "counts"
    _response = RESPONSE
    _component_vars = ("rates", "dispersion")
    component_log_prob = staticmethod(negative_binomial_log_prob)
    _far_log_prob = staticmethod(_negative_binomial_far_log_prob)
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MixtureModel._parameter_constraints,
        "missing": [Options("raise", "model")],
    }

    def __init__(
        self,
        *,
        n_components: int = 2,
        priors: dict[str, Prior] | None = None,
        n_init: int = 5,
        init: Literal["emem", "k-means++", "random"] = "emem",
        max_iter: int = 500,
        tol: float = 1e-6,
        random_state: int | None = None,
        missing: Literal["raise", "model"] = "raise",
    ) -> None:
        self.n_components = n_components
        self.priors = priors
        self.n_init = n_init
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.missing = missing

    def _check_data(self, data: MixtureData) -> None:
        _check_count_data(data, "negative binomial")

    def _rv_shapes(self, n_features: int) -> dict[str, tuple[str, ...]]:
        return {
            "weights": ("component",),
            "rates": ("component", "feature"),
            "dispersion": ("component", "feature"),
        }

    def _n_parameters(self, n_features: int) -> int:
        return self.n_components - 1 + 2 * self.n_components * n_features

    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        # Over the observed counts (column_moments leaves missing values out).
        mean = np.maximum(column_moments(data.values, data.sample_weight)[0], 1e-3)
        return {
            "weights": Prior("Dirichlet", a=1.0),
            "rates": Prior("Gamma", alpha=1.0, beta=(1.0 / mean).tolist()),
            "dispersion": DISPERSION_PRIOR,
        }

    def _allowed_priors(self) -> dict[str, frozenset[str]]:
        positive = _POSITIVE_PRIORS
        return {"weights": frozenset({"Dirichlet"}), "rates": positive, "dispersion": positive}

    def _posterior_supports(self) -> dict[str, str]:
        # An EM rate is 0 where a component has no counts; a dispersion is never 0.
        return super()._posterior_supports() | {"rates": "nonnegative", "dispersion": "positive"}

    def _build(self, data: MixtureData, priors: dict[str, Prior]) -> pm.Model:
        k, d = self.n_components, data.n_features
        coords = {"component": np.arange(k), "feature": data.features, "obs": data.obs}
        dims = ("component", "feature")
        with pm.Model(coords=coords) as model:
            weights = priors["weights"].create_variable("weights", shape=(k,), dims=("component",))
            rates = priors["rates"].create_variable("rates", shape=(k, d), dims=dims)
            dispersion = priors["dispersion"].create_variable("dispersion", shape=(k, d), dims=dims)
            pm.CustomDist(
                "x",
                weights,
                rates,
                dispersion,
                logp=with_missing(negative_binomial_mixture_logp, data.values),
                random=negative_binomial_mixture_random,
                signature="(k),(k,d),(k,d)->(d)",
                observed=pm.Data("x_data", observed_values(data.values), dims=("obs", "feature")),
                dims=("obs", "feature"),
            )
        return model

    def _run_em(
        self, data: MixtureData, rng: np.random.Generator, priors: dict[str, Prior]
    ) -> EMResult:
        result = fit_negative_binomial_em(
            data.values,
            self.n_components,
            n_init=self.n_init,
            init=self.init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=rng,
            sample_weight=data.sample_weight,
            missing=self.missing,
        )
        return self._order_em(result)

    def _order_em(self, em: EMResult) -> EMResult:
        # Canonical labels: components by increasing rate of the first feature.
        return em.reordered(np.lexsort(em.params["rates"].T[::-1]))

    def _em_steps(
        self, priors: dict[str, Prior], n_features: int, data_pass: Callable[[Callable], dict]
    ) -> EMSteps:
        return chunked_nb_steps(self.n_components, data_pass)

    def _point_from_em(self, em: EMResult, n_features: int) -> dict[str, np.ndarray]:
        return {
            "weights": em.weights,
            "rates": em.params["rates"],
            "dispersion": em.params["dispersion"],
        }

    def _start_from_em(self, em: EMResult, n_features: int) -> dict[str, np.ndarray]:
        weights = np.maximum(em.weights, _BOUNDARY)
        return {
            "weights": weights / weights.sum(),
            "rates": np.maximum(em.params["rates"], _BOUNDARY),
            "dispersion": _start_dispersion(em.params["dispersion"]),
        }

    def _relabel_locations(self, params: dict[str, np.ndarray], data: MixtureData) -> np.ndarray:
        """Square roots of the rates (the variance-stabilising scale of counts)."""
        return np.sqrt(params["rates"])

    def _fitted_attributes(self, point: dict[str, np.ndarray]) -> None:
        self.rates_ = point["rates"]
        self.dispersion_ = point["dispersion"]

    def impute(
        self, X: Any, *, n_imputations: int | None = None, random_state: int | None = None
    ) -> np.ndarray:
        """Fill the missing values (NaN) of ``X`` from the fitted mixture.

        As :meth:`bayesmix.PoissonMixture.impute`: the conditional posterior mean
        ``sum_k p(z = k | x_o) mu_kd`` of every missing count, or with ``n_imputations``
        multiple imputations drawn from a component's negative binomials.
        """
        return impute_features(
            self,
            X,
            negative_binomial_mixture_random,
            n_imputations=n_imputations,
            random_state=random_state,
        )

    def _fast_pointwise(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        rates: np.ndarray,
        dispersion: np.ndarray,
        out: np.ndarray,
        *,
        responsibilities: bool = False,
    ) -> bool:
        """Fill the pointwise log-likelihood (or responsibilities) of many draws on the kernel."""
        if not kernel_pays_off(weights.shape[0] * X.shape[0]):
            return False
        from bayesmix.nuts import negbin

        def kernel(rows: np.ndarray, into: np.ndarray) -> bool:
            return negbin.pointwise(
                rows,
                weights,
                rates,
                dispersion,
                into,
                row_constant=count_row_constant,
                responsibilities=responsibilities,
            )

        return kernel_on_complete_rows(kernel, X, out, responsibilities=responsibilities)

    def _nuts_target(self, data: MixtureData, priors: dict[str, Prior]) -> Any:
        """Return the fused negative binomial kernel (:mod:`bayesmix.nuts.negbin`) if it applies.

        It covers every prior family this mixture accepts, in PyMC's canonical
        parameters; for other parameterisations None, and the PyMC model is compiled
        (also for data with missing values:
        :meth:`bayesmix.model.MixtureModel._fused_target`).
        """
        from bayesmix.nuts import negbin

        target = negbin.build(
            n_components=self.n_components,
            n_features=data.n_features,
            priors=priors,
            features=list(data.features),
            row_constant=count_row_constant,
        )
        if target is None:
            logger.info(
                "the fused kernel does not cover these priors (%s); compiling the PyMC model",
                priors,
            )
        return target
