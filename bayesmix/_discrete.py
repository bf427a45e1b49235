"""Mixtures of independent discrete features: Poisson (counts) and Bernoulli (binary).

Within a component the features are independent (the local independence assumption
of latent class analysis), so a component is a vector of per-feature parameters::

    pi         ~ Dirichlet(a * 1_K)
    lambda_kd  ~ Gamma(alpha, beta)        Poisson:   x_nd | z_n = k ~ Poisson(lambda_kd)
    p_kd       ~ Beta(a, b)                Bernoulli: x_nd | z_n = k ~ Bernoulli(p_kd)
    log p(x_n) = logsumexp_k [log pi_k + sum_d log p(x_nd | theta_kd)]

Both priors are conjugate, so EM has closed-form M-steps, for the likelihood
(``objective="ml"``) or for the posterior mode under these priors (``"map"``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix._base import MixtureModel
from bayesmix._numeric import column_means
from bayesmix._validation import MixtureData, check_option
from bayesmix.em_families import MixtureEMResult, fit_bernoulli_em, fit_poisson_em
from bayesmix.exceptions import DataError, InvalidParameterError
from bayesmix.priors import Prior
from bayesmix.stats import bernoulli_log_prob, poisson_log_prob

__all__ = [
    "BernoulliMixture",
    "PoissonMixture",
    "bernoulli_mixture_logp",
    "poisson_mixture_logp",
]

_OBJECTIVES = ("ml", "map")
# A NUTS start must be inside the support: EM estimates on the boundary (a rate or a
# probability of exactly 0 or 1) are moved this far inside it.
_BOUNDARY = 1e-3


def poisson_mixture_logp(value: Any, weights: Any, rates: Any) -> Any:
    """Return ``log sum_k pi_k prod_d Poisson(x_nd | lambda_kd)`` per observation (PyTensor)."""
    x = value[..., None, :]  # (..., N, 1, D) against rates (..., K, D)
    component = (x * pt.log(rates) - rates - pt.gammaln(x + 1.0)).sum(axis=-1)
    return pt.logsumexp(pt.log(weights) + component, axis=-1)


def bernoulli_mixture_logp(value: Any, weights: Any, probs: Any) -> Any:
    """Return ``log sum_k pi_k prod_d p_kd^x (1 - p_kd)^(1 - x)`` per observation (PyTensor)."""
    x = value[..., None, :]
    component = (x * pt.log(probs) + (1.0 - x) * pt.log1p(-probs)).sum(axis=-1)
    return pt.logsumexp(pt.log(weights) + component, axis=-1)


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


def poisson_mixture_random(weights, rates, rng=None, size=None) -> np.ndarray:
    """Draw counts by the generative story: a label, then independent Poissons."""
    chosen, rng = _component_params(weights, rates, rng, size)
    return rng.poisson(chosen).astype(np.float64)


def bernoulli_mixture_random(weights, probs, rng=None, size=None) -> np.ndarray:
    """Draw binary vectors by the generative story: a label, then independent Bernoullis."""
    chosen, rng = _component_params(weights, probs, rng, size)
    return (rng.random(chosen.shape) < chosen).astype(np.float64)


class _IndependentFeaturesMixture(MixtureModel):
    """Shared machinery of the Poisson and Bernoulli mixtures (one parameter per feature)."""

    _param: str = ""  # the (K, D) component parameter: "rates" or "probs"
    _em_function: Any = None  # its EM function in bayesmix.em_families
    _logp: Any = None
    _random: Any = None

    def __init__(
        self,
        *,
        n_components: int = 2,
        priors: dict[str, Prior] | None = None,
        n_init: int = 5,
        max_iter: int = 500,
        tol: float = 1e-6,
        random_state: int | None = None,
        objective: Literal["ml", "map"] = "ml",
    ) -> None:
        self.n_components = n_components
        self.priors = priors
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.objective = objective

    @property
    def _component_vars(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self._param,)

    def _check_params(self) -> None:
        super()._check_params()
        check_option(self.objective, "objective", _OBJECTIVES)

    def _rv_shapes(self, n_features: int) -> dict[str, tuple[str, ...]]:
        return {"weights": ("component",), self._param: ("component", "feature")}

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
                logp=type(self)._logp,
                random=type(self)._random,
                signature="(k),(k,d)->(d)",
                observed=pm.Data("x_data", data.values, dims=("obs", "feature")),
                dims=("obs", "feature"),
            )
        return model

    def _fitted_attributes(self, point: dict[str, np.ndarray]) -> None:
        setattr(self, f"{self._param}_", point[self._param])

    @classmethod
    def _em_from_dict(cls, data: dict) -> MixtureEMResult:
        return MixtureEMResult.from_dict(data)

    def _em_prior(self, priors: dict[str, Prior]) -> dict[str, Any] | None:
        """Hyperparameters of the conjugate priors for ``objective="map"``."""
        raise NotImplementedError

    def _run_em(
        self, data: MixtureData, rng: np.random.Generator, priors: dict[str, Prior]
    ) -> MixtureEMResult:
        prior = self._em_prior(priors) if self.objective == "map" else None
        result = self._em_function(
            data.values,
            self.n_components,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=rng,
            objective=self.objective,
            prior=prior,
        )
        # Canonical labels: components by increasing parameter of the first feature.
        order = np.lexsort(result.params[self._param].T[::-1])
        return result.reordered(order)

    def _point_from_em(self, em: MixtureEMResult, n_features: int) -> dict[str, np.ndarray]:
        return {"weights": em.weights, self._param: em.params[self._param]}

    def _start_from_em(self, em: MixtureEMResult, n_features: int) -> dict[str, np.ndarray]:
        weights = np.maximum(em.weights, _BOUNDARY)
        return {
            "weights": weights / weights.sum(),
            self._param: self._inside(em.params[self._param]),
        }


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
        Number of EM restarts.
    max_iter : int, default=500
    tol : float, default=1e-6
    random_state : int or None, default=None
    objective : {"ml", "map"}, default="ml"
        What EM maximises: the likelihood, or the posterior density under the
        (conjugate) default priors.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    rates_ : ndarray of shape (n_components, n_features)
        Posterior mean (NUTS) or estimate (EM) of the rates.
    idata : xarray.DataTree
        ``posterior`` (``weights``, ``rates``), ``log_likelihood``, ``observed_data``,
        ``sample_stats`` or ``em_stats``.
    em_ : bayesmix.em_families.MixtureEMResult
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
    _param = "rates"
    _logp = staticmethod(poisson_mixture_logp)
    _random = staticmethod(poisson_mixture_random)
    _component_log_prob = staticmethod(poisson_log_prob)
    _em_function = staticmethod(fit_poisson_em)

    def _check_data(self, data: MixtureData) -> None:
        values = data.values
        bad = (values < 0) | (values != np.round(values))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(
                f"a Poisson mixture needs non-negative integer counts; X has "
                f"{int(bad.sum())} other value(s), the first {values[row, col]!r} in row {row}, "
                f"column {data.features[col]!r}. Pass counts, or use GaussianMixture."
            )

    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        mean = np.maximum(column_means(data.values), 1e-3)
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
    max_iter : int, default=500
    tol : float, default=1e-6
    random_state : int or None, default=None
    objective : {"ml", "map"}, default="ml"
        What EM maximises: the likelihood (as poLCA), or the posterior density under
        the Beta prior (with ``Beta(a, b)``, ``a, b > 1``, estimates stay off 0 and 1).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Class sizes.
    probs_ : ndarray of shape (n_components, n_features)
        Probability of a 1 for each item in each class.
    idata : xarray.DataTree
        ``posterior`` (``weights``, ``probs``) and the other groups as for every family.
    em_ : bayesmix.em_families.MixtureEMResult
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
    _param = "probs"
    _accepts_bool = True
    _logp = staticmethod(bernoulli_mixture_logp)
    _random = staticmethod(bernoulli_mixture_random)
    _component_log_prob = staticmethod(bernoulli_log_prob)
    _em_function = staticmethod(fit_bernoulli_em)

    def _check_data(self, data: MixtureData) -> None:
        values = data.values
        bad = (values != 0) & (values != 1)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(
                f"a Bernoulli mixture needs binary data (0/1 or True/False); X has "
                f"{int(bad.sum())} other value(s), the first {values[row, col]!r} in row {row}, "
                f"column {data.features[col]!r}. Recode the items to 0/1."
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
