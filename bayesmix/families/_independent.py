r"""Mixtures of independent discrete features: Poisson (counts) and Bernoulli (binary).

Within a component the features are independent (the local independence assumption
of latent class analysis), so a component is a vector of per-feature parameters::

    pi         ~ Dirichlet(a * 1_K)
    lambda_kd  ~ Gamma(alpha, beta)        Poisson:   x_nd | z_n = k ~ Poisson(lambda_kd)
    p_kd       ~ Beta(a, b)                Bernoulli: x_nd | z_n = k ~ Bernoulli(p_kd)
    log p(x_n) = logsumexp_k [log pi_k + sum_d log p(x_nd | theta_kd)]

Both priors are conjugate, so EM has closed-form M-steps, for the likelihood
(``objective="ml"``) or for the posterior mode under these priors (``"map"``).

**M-step** (Poisson, Bernoulli). With :math:`n_k = \sum_n r_{nk}` and
:math:`s_{kd} = \sum_n r_{nk} x_{nd}`, maximum likelihood (``objective="ml"``) gives
:math:`\pi_k = n_k / N`, :math:`\lambda_{kd} = s_{kd} / n_k` and
:math:`p_{kd} = s_{kd} / n_k`. With ``objective="map"`` the estimates are the posterior
mode under conjugate priors -- a symmetric :math:`\operatorname{Dirichlet}(a)` on the
weights, :math:`\operatorname{Gamma}(\alpha, \beta)` (shape, rate) on every rate,
:math:`\operatorname{Beta}(a, b)` on every probability:

.. math::

    \lambda_{kd} = \frac{s_{kd} + \alpha - 1}{n_k + \beta}, \qquad
    p_{kd} = \frac{s_{kd} + a - 1}{n_k + a + b - 2}, \qquad
    \pi_k = \frac{\max(n_k + a - 1, 0)}{\sum_j \max(n_j + a - 1, 0)}.

The shapes must satisfy :math:`\alpha \ge 1` and :math:`a, b \ge 1` (for smaller values the
posterior density is unbounded at a zero rate or at a probability of 0 or 1, so there is
no mode). The Dirichlet concentration only needs :math:`a > 0`: for :math:`a < 1` a
component whose expected count :math:`n_k` falls below :math:`1 - a` gets weight exactly 0
and is switched off for good (the component annihilation of Figueiredo & Jain 2002). Its
rates or probabilities then stay at the prior mode, and from that iteration on the
Dirichlet term of the objective is the :math:`\operatorname{Dirichlet}(a)` density of the
remaining weights, so the objective can jump at an annihilation; between annihilations it
never decreases. For :math:`a \ge 1` no component is switched off.

**Missing values** (``missing="model"``; NaN entries, missing at random). A missing
feature drops out of its row's product: the row's component log density sums its observed
features only, which is the complete-data density summed over every value of the missing
ones. The M-steps are per feature, over the observed entries: with the mask
:math:`m_{nd}` (1 where :math:`x_{nd}` is observed), :math:`n_{kd} = \sum_n r_{nk} m_{nd}`
and :math:`s_{kd} = \sum_n r_{nk} m_{nd} x_{nd}` take the places of :math:`n_k` and
:math:`s_{kd}` in the formulas above (the weights keep :math:`n_k`). Without missing
values :math:`n_{kd} = n_k`, and the fit is that of complete data exactly.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import gammaln

from bayesmix._numeric import (
    column_sums,
    features_dot,
    kernel_pays_off,
    logsumexp,
    mean_filled,
    observed_values,
)
from bayesmix._params import Options
from bayesmix._validation import MixtureData
from bayesmix.em.chunked import EMSteps, sample_indices
from bayesmix.em.init import initial_responsibilities
from bayesmix.em.loop import (
    _EMPTY_MASS,
    EMResult,
    _fit_restarts,
    _iterate,
    _log_dirichlet,
    _log_responsibilities,
    _map_weights,
    _ml_weights,
    _Restart,
    _restart_plan,
)
from bayesmix.exceptions import DataError, InvalidParameterError
from bayesmix.model import MixtureModel
from bayesmix.priors import Prior

__all__: list[str] = []

logger = logging.getLogger("bayesmix")
_INIT_SMOOTHING = 0.1

_OBJECTIVES = ("ml", "map")
# Stands in for log(0) in products with the data, so that 0 * log(0) = 0; the entries
# that it makes impossible are then set to -inf exactly.
_LOG_FLOOR = -1e250
# A NUTS start must be inside the support: EM estimates on the boundary (a rate or a
# probability of exactly 0 or 1) are moved this far inside it.
_BOUNDARY = 1e-3
# Counts from this value on (about 1.1e12) are far out: their log densities combine the
# count's log factorial with the terms it cancels (no overflow, no loss of digits) and
# the responsibilities of their rows come from exact terms (``_count_far_terms``).
_LARGE_COUNT = 2.0**40


def count_row_constant(X: np.ndarray) -> np.ndarray:
    """Return ``-sum_d log x_nd!`` per row: the part of a row of counts free of parameters."""
    return -gammaln(np.asarray(X, dtype=np.float64) + 1.0).sum(axis=1)


def _count_far_terms(X: np.ndarray, log_ratio: np.ndarray, constant: Callable) -> Any:
    r"""Return the :class:`~bayesmix.stats.FarTerms` of the rows with a count >= 2^40.

    For counts whose component log densities are ``sum_d x_d log_ratio_kd + c_k(x) + g(x)``
    (Poisson: ``log lambda``, ``-sum lambda``; negative binomial: ``log(mu / (alpha +
    mu))`` and the rest): with ``s = 2^e`` at least the row's largest count, the linear
    term is ``s sum_d (x_d / s) log_ratio_kd``, finite however large the counts.
    ``log_ratio`` (S, K, D) may be ``-inf`` (a zero rate): those components get ``c = -inf``
    for the rows with a positive count in that feature. ``constant(rows)`` returns ``c``
    (S, n, K) of the rows (over their observed features: a missing value (NaN) adds
    nothing).
    """
    from bayesmix.stats import FarTerms

    rows = np.flatnonzero((X >= _LARGE_COUNT).any(axis=1))
    if rows.size == 0:
        return None
    x = X[rows]
    exponent = np.clip(np.frexp(np.nanmax(x, axis=1))[1].astype(np.int64), 0, 1023)
    u = np.ldexp(observed_values(x), -exponent[:, None])  # (n, D), below 2; a missing value adds 0
    floored = np.maximum(log_ratio, _LOG_FLOOR)  # finite, so 0 * log 0 = 0
    linear = features_dot(u, floored)
    out = np.array(constant(rows), dtype=np.float64)
    impossible = features_dot((x > 0).astype(np.float64), (log_ratio == -np.inf).astype(np.float64))
    out[impossible > 0] = -np.inf
    return FarTerms(
        rows=rows,
        exponent=exponent,
        quadratic=np.zeros_like(linear),
        linear=linear,
        constant=out,
    )


# -- missing values (NaN): a missing feature drops out of its row's product ---------------


def observed_sum(X: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """Return ``sum_d m_nd terms_skd`` over the observed features ``m_nd`` of every row.

    ``terms`` (S, K, D) are per-feature terms free of the data (``lambda_kd`` of the Poisson,
    the dispersion term of the negative binomial). Without missing values the plain sum
    ``terms.sum(-1)`` of shape (S, 1, K) (broadcasting against (S, N, K)), exactly as
    before; else (S, N, K).
    """
    if not np.isnan(X).any():
        return terms.sum(axis=-1)[:, None, :]
    return features_dot((~np.isnan(X)).astype(np.float64), terms)


def feature_statistics(
    resp: np.ndarray, X: np.ndarray, observed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``n_k`` (K,), the observed counts ``n_kd`` and the sums ``s_kd`` (K, D).

    ``resp`` (N, K) are the (weighted) responsibilities, ``X`` the data with missing values
    at 0 (:func:`bayesmix._numeric.observed_values`) and ``observed`` their mask as floats
    (None: no missing value).
    ``n_kd = sum_n r_nk m_nd`` is ``n_k[:, None]`` (K, 1) without missing values, so that
    the M-steps are exactly the complete-data ones.
    """
    nk = column_sums(resp)
    counts = nk[:, np.newaxis] if observed is None else resp.T @ observed
    return nk, counts, resp.T @ X


def observed_mask(X: np.ndarray) -> np.ndarray | None:
    """Return the mask of the observed entries of ``X`` as floats, or None if it has no NaN."""
    return (~np.isnan(X)).astype(np.float64) if np.isnan(X).any() else None


def with_missing(logp: Callable[..., Any], values: np.ndarray) -> Callable[..., Any]:
    """Return the mixture ``logp`` of a ``pm.CustomDist``, told the missing entries of ``values``.

    The PyMC model holds its data with the missing values (NaN) at 0
    (:func:`bayesmix._numeric.observed_values`; ``pm.Data`` refuses NaN), so ``logp`` gets
    them as a constant ``missing=`` (N, D); a compiled model is reused only for data with
    the same pattern (its structure key has :func:`bayesmix._numeric.missing_digest`).
    ``logp`` itself without missing values (today's graph, exactly).
    """
    missing = np.isnan(values)
    return functools.partial(logp, missing=pt.as_tensor(missing)) if missing.any() else logp


def sum_features(terms: Any, missing: Any | None) -> Any:
    """Sum per-entry log densities ``terms`` (..., N, K, D) over the observed features.

    ``missing`` (N, D) (or None: every feature) marks the entries left out; their terms
    must be finite (the data hold 0 there, :func:`feature_values`) so that no gradient is
    NaN.
    """
    if missing is None:
        return terms.sum(axis=-1)
    return pt.where(missing[..., None, :], 0.0, terms).sum(axis=-1)


def feature_values(value: Any, missing: Any | None) -> Any:
    """Return ``value`` (..., N, D) as (..., N, 1, D), with its missing entries at 0."""
    x = value[..., None, :]
    return x if missing is None else pt.where(missing[..., None, :], 0.0, x)


def kernel_on_complete_rows(
    kernel: Callable[[np.ndarray, np.ndarray], bool],
    X: np.ndarray,
    out: np.ndarray,
    *,
    responsibilities: bool,
) -> bool:
    """Run a fused ``kernel(X, out) -> bool`` on the rows of ``X`` without missing values.

    The kernels take complete rows; the rows with NaN get NaN in ``out``, which
    :func:`bayesmix.stats.pointwise_log_likelihood` and
    :func:`~bayesmix.stats.posterior_responsibilities` compute with the family's NumPy
    density (NaN-aware). ``out`` is (S, N) (log densities) or (N, K) (responsibilities,
    added to).
    """
    incomplete = np.isnan(X).any(axis=1)
    if not incomplete.any():
        return kernel(X, out)
    complete = np.flatnonzero(~incomplete)
    shape = (complete.size, out.shape[1]) if responsibilities else (out.shape[0], complete.size)
    part = np.zeros(shape)
    if complete.size and not kernel(X[complete], part):
        return False
    if responsibilities:
        out[complete] += part
        out[incomplete] = np.nan
    else:
        out[:, complete] = part
        out[:, incomplete] = np.nan
    return True


def _draw_labels(
    weights: np.ndarray, batch: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    n_components = weights.shape[-1]
    weights = np.broadcast_to(weights, (*batch, n_components))
    cdf = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
    return np.minimum((rng.random(batch)[..., None] > cdf).sum(axis=-1), n_components - 1)


def _component_params(
    weights: np.ndarray,
    params: np.ndarray,
    rng: np.random.Generator | None,
    size: tuple[int, ...] | None,
) -> tuple[np.ndarray, np.random.Generator]:
    """Draw a label per observation and return that component's parameters (batch, D)."""
    rng = np.random.default_rng(rng)
    n_components, n_features = params.shape[-2:]
    batch = (
        tuple(size)
        if size is not None
        else np.broadcast_shapes(weights.shape[:-1], params.shape[:-2])
    )
    z = _draw_labels(weights, batch, rng)
    params = np.broadcast_to(params, (*batch, n_components, n_features))
    return np.take_along_axis(params, z[..., None, None], axis=-2)[..., 0, :], rng


def impute_features(
    model: MixtureModel,
    X: Any,
    random: Callable[..., np.ndarray],
    *,
    n_imputations: int | None,
    random_state: int | None,
) -> np.ndarray:
    r"""Fill the missing values (NaN) of ``X`` from a fitted independent-feature mixture.

    The features are independent within a component, so given the observed ones a
    missing value is a mixture of the components' distributions for its feature,
    weighted by the responsibilities of the observed features :math:`p(z = k \mid
    x_o)`: its conditional mean is :math:`\sum_k p(z = k \mid x_o)\, m_{kd}` (``m`` the
    first component variable: the rates, probabilities or negative-binomial means),
    averaged over the posterior draws (at most 1000). With ``n_imputations``, each
    imputation takes a posterior draw in turn, a component from the responsibilities and
    the missing values from it (``random(weights, *params, rng=, size=)``, the family's
    generative draw with the responsibilities as the weights).
    """
    values, (weights, *params) = model._draws_for(X, max_draws=1000)
    missing = np.isnan(values)
    with np.errstate(divide="ignore"):
        joint = np.log(weights)[:, None, :] + model.component_log_prob(values, *params)
    resp = np.exp(joint - logsumexp(joint, axis=2, keepdims=True))  # (S, N, K)
    n_draws = weights.shape[0]
    if n_imputations is None:
        out = values.copy()
        filled = np.einsum("snk,skd->nd", resp, params[0]) / n_draws
        out[missing] = filled[missing]
        return out
    rng = np.random.default_rng(random_state)
    out = np.broadcast_to(values, (n_imputations, *values.shape)).copy()
    for i in range(n_imputations):
        s = i % n_draws
        draw = random(resp[s], *(p[s] for p in params), rng=rng, size=(values.shape[0],))
        out[i][missing] = draw[missing]
    return out


def _check_counts(X: np.ndarray, family: str, missing: str = "raise") -> None:
    """Raise :class:`DataError` unless ``X`` holds finite non-negative integers (EM input).

    With ``missing="model"`` NaN (a missing value) is allowed too.
    """
    entries = X[~np.isnan(X)] if missing == "model" else X
    counts = np.all(np.isfinite(entries)) and np.all(entries >= 0.0)
    if not (counts and np.all(np.floor(entries) == entries)):
        allowed = " (or NaN, missing)" if missing == "model" else ""
        raise DataError(
            f"A {family} mixture needs counts: X must hold finite non-negative integers"
            f"{allowed}, but it has negative, fractional or non-finite entries. Use another "
            "family for continuous data."
        )


def _check_count_data(data: MixtureData, family: str) -> None:
    """Raise :class:`DataError` naming the first entry of ``data`` that is not a count.

    Missing values (NaN) have passed :func:`bayesmix._validation.check_data` (a model with
    ``missing="model"``) and are not checked here.
    """
    values = data.values
    bad = ((values < 0) | (values != np.round(values))) & ~np.isnan(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        negative = "Negative values in data: " if (values < 0).any() else ""
        raise DataError(
            f"{negative}a {family} mixture needs non-negative integer counts; X has "
            f"{int(bad.sum())} other value(s), the first {values[row, col]!r} in row "
            f"{data.obs[row]}, column {data.features[col]!r}. Pass counts, or use "
            "GaussianMixture."
        )


def _check_count_response(y: np.ndarray, family: str) -> None:
    """Raise :class:`DataError` unless the response ``y`` of a count regression holds counts.

    The response check of the count families as components of a mixture of regressions
    (:class:`bayesmix.MixtureRegression`; ``family`` names the regression in the message).
    """
    bad = np.flatnonzero((y < 0) | (y != np.round(y)))
    if bad.size:
        raise DataError(
            f"a {family} regression needs counts (non-negative integers) as the response; "
            f"y has {bad.size} other value(s), the first {y[bad[0]]!r} at position "
            f"{bad[0]}. Use family='gaussian' for a real-valued response."
        )


class _IndependentFeaturesMixture(MixtureModel):
    """Shared machinery of the Poisson and Bernoulli mixtures (one parameter per feature)."""

    _param: str = ""  # the (K, D) component parameter: "rates" or "probs"
    _param_support: str = "real"  # its support (a name of bayesmix._datatree.SUPPORTS)
    _em_function: Any = None  # its EM function in bayesmix.em.loop
    # (objective, prior, K, D) -> (component M-step, log prior, Dirichlet concentration)
    _em_terms: Any = None
    _logp: Any = None
    _random: Any = None
    # The fused NUTS kernel (bayesmix.nuts.expfam): the cumulant of the features'
    # exponential family, and the constant c(x_n) of each row's log density (None: zero).
    _cumulant: str = ""
    _row_constant: Any = None
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MixtureModel._parameter_constraints,
        "objective": [Options(*_OBJECTIVES)],
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
        objective: Literal["ml", "map"] = "ml",
        missing: Literal["raise", "model"] = "raise",
    ) -> None:
        self.n_components = n_components
        self.priors = priors
        self.n_init = n_init
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.objective = objective
        self.missing = missing

    @property
    def _component_vars(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self._param,)

    def _rv_shapes(self, n_features: int) -> dict[str, tuple[str, ...]]:
        return {"weights": ("component",), self._param: ("component", "feature")}

    def _posterior_supports(self) -> dict[str, str]:
        return super()._posterior_supports() | {self._param: self._param_support}

    def _n_parameters(self, n_features: int) -> int:
        return self.n_components * n_features + self.n_components - 1

    def _build(self, data: MixtureData, priors: dict[str, Prior]) -> pm.Model:
        k, d = self.n_components, data.n_features
        coords = {"component": np.arange(k), "feature": data.features, "obs": data.obs}
        with pm.Model(coords=coords) as model:
            weights = priors["weights"].create_variable("weights", shape=(k,), dims=("component",))
            params = priors[self._param].create_variable(
                self._param, shape=(k, d), dims=("component", "feature")
            )
            pm.CustomDist(
                "x",
                weights,
                params,
                logp=with_missing(type(self)._logp, data.values),
                random=type(self)._random,
                signature="(k),(k,d)->(d)",
                observed=pm.Data("x_data", observed_values(data.values), dims=("obs", "feature")),
                dims=("obs", "feature"),
            )
        return model

    def _fitted_attributes(self, point: dict[str, np.ndarray]) -> None:
        setattr(self, f"{self._param}_", point[self._param])

    def impute(
        self, X: Any, *, n_imputations: int | None = None, random_state: int | None = None
    ) -> np.ndarray:
        """Fill the missing values (NaN) of ``X`` from the fitted mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows with missing values; observed values are returned unchanged.
        n_imputations : int, optional
            Return that many multiple imputations instead of the conditional mean: each
            from a posterior draw (in turn), a component drawn from the responsibilities
            of the row's observed features, and the missing values drawn from it.
        random_state : int, optional
            Seeds the multiple imputations.

        Returns
        -------
        ndarray of shape (n_samples, n_features), or (n_imputations, n_samples, n_features)
            With ``n_imputations=None``, the conditional posterior mean of every missing
            value (:func:`impute_features`): not an integer in general.
        """
        return impute_features(
            self, X, self._random, n_imputations=n_imputations, random_state=random_state
        )

    def _fast_pointwise(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        param: np.ndarray,
        out: np.ndarray,
        *,
        responsibilities: bool = False,
    ) -> bool:
        """Fill the pointwise log-likelihood (or responsibilities) of many draws on the kernel."""
        if not kernel_pays_off(weights.shape[0] * X.shape[0]):
            return False
        from bayesmix.nuts import expfam

        def kernel(rows: np.ndarray, into: np.ndarray) -> bool:
            return expfam.pointwise(
                rows,
                weights,
                param,
                into,
                cumulant=self._cumulant,
                row_constant=self._row_constant,
                responsibilities=responsibilities,
            )

        return kernel_on_complete_rows(kernel, X, out, responsibilities=responsibilities)

    def _nuts_target(self, data: MixtureData, priors: dict[str, Prior]) -> Any:
        """Return the fused exponential-family kernel (:mod:`bayesmix.nuts.expfam`) if it applies.

        It covers every prior family these mixtures accept for the defaults' parameters;
        for other parameterisations None, and the PyMC model is compiled instead (also
        for data with missing values: :meth:`bayesmix.model.MixtureModel._fused_target`).
        """
        from bayesmix.nuts import expfam

        target = expfam.build(
            param=self._param,
            cumulant=self._cumulant,
            n_components=self.n_components,
            n_features=data.n_features,
            priors=priors,
            features=list(data.features),
            row_constant=self._row_constant,
        )
        if target is None:
            logger.info(
                "the fused kernel does not cover these priors (%s); compiling the PyMC model",
                priors,
            )
        return target

    def _em_prior(self, priors: dict[str, Prior]) -> dict[str, Any] | None:
        """Hyperparameters of the conjugate priors for ``objective="map"``."""
        raise NotImplementedError

    def _run_em(
        self, data: MixtureData, rng: np.random.Generator, priors: dict[str, Prior]
    ) -> EMResult:
        prior = self._em_prior(priors) if self.objective == "map" else None
        result = self._em_function(
            data.values,
            self.n_components,
            n_init=self.n_init,
            init=self.init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=rng,
            sample_weight=data.sample_weight,
            objective=self.objective,
            prior=prior,
            missing=self.missing,
        )
        return self._order_em(result)

    def _order_em(self, em: EMResult) -> EMResult:
        # Canonical labels: components by increasing parameter of the first feature.
        return em.reordered(np.lexsort(em.params[self._param].T[::-1]))

    def _em_steps(
        self, priors: dict[str, Prior], n_features: int, data_pass: Callable[[Callable], dict]
    ) -> EMSteps:
        prior = self._em_prior(priors) if self.objective == "map" else None
        component_m_step, log_prior, concentration = self._em_terms(
            self.objective, prior, self.n_components, n_features
        )
        return _discrete_steps(
            self.n_components,
            family=self._family,
            name=self._param,
            component_log_prob=self.component_log_prob,
            component_m_step=component_m_step,
            log_prior=log_prior,
            concentration=concentration,
            objective=self.objective,
        )

    def _point_from_em(self, em: EMResult, n_features: int) -> dict[str, np.ndarray]:
        return {"weights": em.weights, self._param: em.params[self._param]}

    def _start_from_em(self, em: EMResult, n_features: int) -> dict[str, np.ndarray]:
        weights = np.maximum(em.weights, _BOUNDARY)
        return {
            "weights": weights / weights.sum(),
            self._param: self._inside(em.params[self._param]),
        }


def _prior_value(
    prior: Mapping, key: str, shape: tuple[int, ...], minimum: float, strict: bool, family: str
) -> np.ndarray:
    """Return ``prior[key]`` broadcast to ``shape`` after checking its range."""
    try:
        value = np.broadcast_to(np.asarray(prior[key], dtype=np.float64), shape).copy()
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(
            f"prior[{key!r}] of the {family} MAP objective must be a number or an array "
            f"broadcastable to {shape}; got {prior[key]!r}."
        ) from err
    ok = np.isfinite(value) & ((value > minimum) if strict else (value >= minimum))
    if not np.all(ok):
        relation = ">" if strict else ">="
        raise InvalidParameterError(
            f"prior[{key!r}] of the {family} MAP objective must be finite and {relation} "
            f"{minimum:g}; got {prior[key]!r}."
            + (
                ""
                if strict
                else " (A shape below 1 makes the posterior density unbounded on the "
                "boundary, so there is no posterior mode.)"
            )
        )
    return value


def _resolve_prior(
    prior: Mapping | None,
    family: str,
    shape_keys: tuple[str, str],
    n_components: int,
    n_features: int,
) -> dict[str, np.ndarray | float]:
    """Check a MAP prior dictionary and return it broadcast, with the default ``weights``.

    ``shape_keys`` are the two keys of the conjugate prior of the component parameters:
    ``("alpha", "beta")`` (Gamma shape and rate, Poisson) or ``("a", "b")`` (Beta,
    Bernoulli). ``"weights"`` (Dirichlet concentration, default 1) is optional.
    """
    if prior is None:
        keys = ", ".join(repr(k) for k in shape_keys)
        raise InvalidParameterError(
            f'objective="map" needs a prior: pass prior={{{keys}: ..., "weights": ...}} '
            f"(the conjugate prior of the {family} rates or probabilities and the Dirichlet "
            'concentration of the weights), or use objective="ml".'
        )
    if not isinstance(prior, Mapping):
        raise InvalidParameterError(
            f"prior must be a dict with keys {[*shape_keys, 'weights']}, got "
            f"{type(prior).__name__}."
        )
    allowed = {*shape_keys, "weights"}
    unknown = sorted(set(prior) - allowed)
    missing = [key for key in shape_keys if key not in prior]
    if unknown or missing:
        raise InvalidParameterError(
            f"The {family} MAP prior takes the keys {sorted(allowed)} ('weights' is "
            f"optional); unknown keys: {unknown}, missing keys: {missing}."
        )
    shape = (n_components, n_features)
    first, second = shape_keys
    resolved: dict[str, np.ndarray | float] = {
        first: _prior_value(prior, first, shape, 1.0, strict=False, family=family),
        # Gamma rate: > 0; Beta second shape: >= 1.
        second: _prior_value(
            prior,
            second,
            shape,
            0.0 if second == "beta" else 1.0,
            strict=second == "beta",
            family=family,
        ),
    }
    concentration = prior.get("weights", 1.0)
    if np.ndim(concentration) != 0 or not (
        math.isfinite(float(concentration)) and float(concentration) > 0.0
    ):
        raise InvalidParameterError(
            "prior['weights'] is the concentration of a symmetric Dirichlet prior on the "
            f"weights and must be a finite scalar > 0; got {concentration!r}."
        )
    resolved["weights"] = float(concentration)
    return resolved


def _fit_discrete(
    X: np.ndarray,
    n_components: int,
    *,
    family: str,
    name: str,
    log_prob: Callable[[np.ndarray], np.ndarray],
    component_m_step: Callable[[np.ndarray, np.ndarray], np.ndarray],
    log_prior: Callable[[np.ndarray], float] | None,
    concentration: float | None,
    n_init: int,
    max_iter: int,
    tol: float,
    random_state: int | np.random.Generator | None,
    objective: str,
    sample_weight: np.ndarray | None = None,
    init: str = "k-means++",
) -> EMResult:
    """EM for a mixture with conditionally independent features (Poisson, Bernoulli).

    ``component_m_step(counts, sums)`` returns the component parameters (K, D) from the
    expected counts of observed values ``n_kd`` ((K, 1): ``n_k``, without missing values)
    and the weighted sums ``s_kd`` (:func:`feature_statistics`; ``X`` may have missing
    values, NaN, which ``log_prob`` leaves out); ``log_prior(values)`` is the log
    prior of the component parameters (None for maximum likelihood), ``concentration`` the
    Dirichlet concentration of the weights. ``sample_weight`` (frequency weights)
    multiplies the responsibilities in every sufficient statistic and the log-likelihood.
    """
    w = sample_weight
    n_samples = float(X.shape[0] if w is None else w.sum())
    rng = np.random.default_rng(random_state)
    observed, X_sums, X_start = observed_mask(X), observed_values(X), mean_filled(X, w)

    def e_step(weights: np.ndarray, params: dict) -> tuple[float, float, np.ndarray, None]:
        log_norm, log_resp = _log_responsibilities(log_prob(params[name]), weights)
        log_likelihood = float(np.mean(log_norm) if w is None else w @ log_norm / n_samples)
        value = log_likelihood
        if log_prior is not None:
            total_prior = log_prior(params[name]) + _log_dirichlet(weights, concentration)
            value += total_prior / n_samples
        resp = np.exp(log_resp)
        return value, log_likelihood, resp if w is None else resp * w[:, np.newaxis], None

    m_step = functools.partial(
        _discrete_m_step,
        family=family,
        name=name,
        component_m_step=component_m_step,
        log_prior=log_prior,
        concentration=concentration,
    )

    def update(resp: np.ndarray, _cache, weights: np.ndarray, params: dict | None):
        return m_step(*feature_statistics(resp, X_sums, observed), weights, params)

    def start(partition: str) -> tuple[np.ndarray, dict]:
        resp = initial_responsibilities(X_start, n_components, rng, _INIT_SMOOTHING, w, partition)
        if w is not None:
            resp *= w[:, np.newaxis]
        return update(resp, None, np.full(n_components, 1.0 / n_components), None)

    def run(
        weights: np.ndarray, params: dict, iterations: int, tolerance: float, run_name: str
    ) -> _Restart:
        return _iterate(
            e_step, update, weights, params, max_iter=iterations, tol=tolerance, name=run_name
        )

    return _fit_restarts(
        _restart_plan(
            start, run, init=init, n_init=n_init, max_iter=max_iter, tol=tol, label=f"{family} EM"
        ),
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        family=family,
        objective=objective,
        stacklevel=5,  # _fit_restarts, _fit_discrete, fit_*, BLAS-thread wrapper, caller
    )


def _discrete_m_step(
    nk: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
    weights: np.ndarray,
    params: dict | None,
    *,
    family: str,
    name: str,
    component_m_step: Callable[[np.ndarray, np.ndarray], np.ndarray],
    log_prior: Callable[[np.ndarray], float] | None,
    concentration: float | None,
) -> tuple[np.ndarray, dict]:
    """Return the M-step from the expected counts and the weighted sums (K, D).

    ``nk`` (K,) are the expected counts of the components (their weights), ``counts``
    those of the observed values per feature, (K, D), or (K, 1) without missing values
    (:func:`feature_statistics`). Maximum likelihood: an empty component, or feature of a
    component with no observed value, keeps its previous parameters. MAP: the Dirichlet
    posterior-mode weights, which may switch a component off.
    """
    values = component_m_step(counts, sums)
    if log_prior is None:
        new_weights = _ml_weights(nk)
        empty = np.broadcast_to(counts < _EMPTY_MASS, values.shape)
        if params is not None and np.any(empty):
            values[empty] = params[name][empty]
    else:
        new_weights = _map_weights(nk, concentration, weights)
        switched_off = np.flatnonzero((new_weights <= 0.0) & (weights > 0.0)).tolist()
        if switched_off:
            logger.info(
                "%s MAP EM: component(s) %s switched off (expected count below 1 - a "
                "with the Dirichlet concentration a=%g).",
                family,
                switched_off,
                concentration,
            )
    return new_weights, {name: values}


def _discrete_statistics(
    X: np.ndarray,
    w: np.ndarray | None,
    weights: np.ndarray,
    params: dict,
    *,
    name: str,
    component_log_prob: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> dict:
    """E-step statistics of one chunk: log-likelihood, weight, ``nk`` and ``sum r x``.

    With missing values (NaN): ``n_missing`` counts them and ``counts`` are the expected
    counts of the observed values per feature (:func:`feature_statistics`; ``nk`` repeated
    over the features for a chunk without missing values), summed over the chunks.
    """
    X = np.asarray(X, dtype=np.float64)
    log_norm, log_resp = _log_responsibilities(
        component_log_prob(X, params[name][None])[0], weights
    )
    resp = np.exp(log_resp)
    if w is None:
        total, weight = float(np.sum(log_norm)), float(X.shape[0])
    else:
        resp *= w[:, np.newaxis]
        total, weight = float(w @ log_norm), float(w.sum())
    nk, counts, sums = feature_statistics(resp, observed_values(X), observed_mask(X))
    return {
        "log_likelihood": total,
        "weight": weight,
        "nk": nk,
        "sums": sums,
        "counts": np.broadcast_to(counts, sums.shape).copy(),
        "n_missing": float(np.isnan(X).sum()),
    }


def _discrete_steps(
    n_components: int,
    *,
    family: str,
    name: str,
    component_log_prob: Callable[[np.ndarray, np.ndarray], np.ndarray],
    component_m_step: Callable[[np.ndarray, np.ndarray], np.ndarray],
    log_prior: Callable[[np.ndarray], float] | None,
    concentration: float | None,
    objective: str,
) -> EMSteps:
    """Return the EM of :func:`_fit_discrete` as sufficient statistics (chunked data)."""
    m_step = functools.partial(
        _discrete_m_step,
        family=family,
        name=name,
        component_m_step=component_m_step,
        log_prior=log_prior,
        concentration=concentration,
    )

    def initialise(
        rows, n_samples: int, rng: np.random.Generator, partition: str = "k-means++"
    ) -> tuple:
        X, w = rows(sample_indices(n_samples, rng))
        resp = initial_responsibilities(
            mean_filled(X, w), n_components, rng, _INIT_SMOOTHING, w, partition
        )
        if w is not None:
            resp *= w[:, np.newaxis]
        start = np.full(n_components, 1.0 / n_components)
        return m_step(*feature_statistics(resp, observed_values(X), observed_mask(X)), start, None)

    return EMSteps(
        family=family,
        statistics=functools.partial(
            _discrete_statistics, name=name, component_log_prob=component_log_prob
        ),
        m_step=lambda stats, weights, params, _pass: m_step(
            stats["nk"],
            stats["counts"] if stats["n_missing"] > 0 else stats["nk"][:, np.newaxis],
            stats["sums"],
            weights,
            params,
        ),
        initialise=initialise,
        log_prior=None
        if log_prior is None
        else functools.partial(_discrete_log_prior, log_prior, concentration, name),
        objective=objective,
    )


def _discrete_log_prior(
    log_prior: Callable[[np.ndarray], float],
    concentration: float,
    name: str,
    weights: np.ndarray,
    params: dict,
) -> float:
    """Log prior of the component parameters plus the Dirichlet of the weights."""
    return log_prior(params[name]) + _log_dirichlet(weights, concentration)
