r"""Mixtures of regressions: sub-populations that follow different regression lines.

Model (``family="gaussian"``; the other families change the response and its link)::

    pi        ~ Dirichlet(a * 1_K)
    beta_k    ~ Normal(m, s)                      coefficients, shape (K, P)
    sigma_k   ~ HalfNormal(tau)                   scales (Gaussian only)
    y_n | x_n, z_n = k ~ Normal(x_n' beta_k, sigma_k)
    log p(y_n | x_n) = logsumexp_k [log pi_k + log f(y_n | x_n' beta_k, sigma_k)]

The component of each observation is marginalised out, as in the mixture families. The
response distribution and its link come from the family registry
(:data:`bayesmix.families.FAMILIES`: a family that can be a regression component has a
``_response``, a :class:`bayesmix._glm.Response`): Gaussian (identity), Poisson (log),
Bernoulli (logit), negative binomial (log; NB2 with a dispersion per component, the
posterior variable ``dispersion``).

EM (Leisch 2004, flexmix; DeSarbo & Cron 1988): the E-step gives the responsibilities
``r_nk`` of the components for each observation, the M-step fits each component's
regression by weighted maximum likelihood with weights ``r_nk`` (weighted least squares
for the Gaussian, then ``sigma_k^2 = sum_n r_nk (y_n - x_n' beta_k)^2 / sum_n r_nk``; IRLS
for the canonical links, :func:`bayesmix._glm.weighted_fit`; a response's own
``weighted_fit`` otherwise: the negative binomial's Newton's method jointly in the
coefficients and the log dispersion) and ``pi_k = sum_n r_nk / N``. NUTS
samples the posterior from the EM estimate and relabels every draw to the EM labelling
(matching the coefficients, standardised by the predictors' and the response's spread).

The data are held as one matrix, the response then the design (intercept first), so
that the engines of the mixture families (EM restarts, NUTS, Laplace, relabelling, the
DataTree) serve the regression unchanged: ``observed_data`` has ``x`` (obs, feature),
whose ``feature`` coordinate is the response's name then the predictors', and ``y``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from bayesmix._glm import (
    Penalty,
    Response,
    check_design,
    log_softmax_weights,
    map_residual_scale,
    weighted_fit,
    weighted_multinomial_fit,
)
from bayesmix._numeric import column_moments, features_dot, logsumexp
from bayesmix._params import Options, validated
from bayesmix._validation import MixtureData, check_data, check_sample_weight
from bayesmix.em.init import initial_responsibilities
from bayesmix.em.loop import (
    _EMPTY_MASS,
    EMResult,
    _fit_restarts,
    _iterate,
    _log_responsibilities,
    _map_weights,
    _ml_weights,
    _Restart,
    _restart_plan,
)
from bayesmix.exceptions import DataError, FitError, InvalidParameterError
from bayesmix.families import FAMILIES
from bayesmix.model import MixtureModel
from bayesmix.priors import Prior

__all__ = ["MixtureRegression"]

_log = logging.getLogger("bayesmix")

_INIT_SMOOTHING = 0.1
# A Gaussian component's scale is kept at least this fraction of the response's spread
# (a component through as many points as coefficients has scale 0: the likelihood is
# unbounded there).
_SCALE_FLOOR = 1e-6
# A component whose residual scale is below this fraction of the response's spread is a
# spurious maximum (the variance ratio 1e-6 of the Gaussian mixture's degeneracy check).
_DEGENERATE_SCALE = 1e-3


# The columns of the concomitant variables in the data matrix carry this prefix.
_CONCOMITANT = "concomitant:"


class _Inputs:
    """The predictors, response and covariates of one call (the base class takes one X).

    Or (``matrix``) a fit's data matrix as stored: the response, the design and the
    covariates' design, labelled by ``features``.
    """

    def __init__(self, X: Any, y: Any, Z: Any = None, matrix: MixtureData | None = None) -> None:
        self.X, self.y, self.Z = _named_columns(X, y, Z)
        self.matrix = matrix


def _is_names(value: Any) -> bool:
    """Whether ``value`` names columns: a string, or a non-empty list or tuple of them."""
    if isinstance(value, str):
        return True
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(v, str) for v in value)
    )


def _named_columns(X: Any, y: Any, Z: Any) -> tuple[Any, Any, Any]:
    """Return ``(X, y, Z)`` with ``y`` and ``Z`` given as column names of ``X`` taken out of it.

    ``fit(frame, "outcome", ["age"])``: the response and the covariates are columns of one
    DataFrame (as in a flexmix formula); the predictors are the other columns.
    """
    named = {"y": y if isinstance(y, str) else None, "Z": Z if _is_names(Z) else None}
    if not any(v is not None for v in named.values()):
        return X, y, Z
    if not isinstance(X, pd.DataFrame):
        which = next(name for name, value in named.items() if value is not None)
        raise DataError(
            f"{which}={named[which]!r} names a column, but X is a {type(X).__name__}, not a "
            "pandas DataFrame. Pass the values instead, or X as a DataFrame with that column."
        )
    taken: list[str] = []
    for which, value in named.items():
        if value is None:
            continue
        names = [value] if isinstance(value, str) else list(value)
        unknown = [name for name in names if name not in X.columns]
        if unknown:
            raise DataError(
                f"{which}={value!r}: {unknown} not among the columns of X, {list(X.columns)}."
            )
        taken += names
    if len(set(taken)) < len(taken):
        raise DataError(f"a column is named both as the response and as a covariate: {taken}.")
    if named["y"] is not None:
        y = X[named["y"]]
    if named["Z"] is not None:
        Z = X[[named["Z"]] if isinstance(named["Z"], str) else list(named["Z"])]
    return X.drop(columns=taken), y, Z


def _inputs(X: Any, y: Any, Z: Any) -> _Inputs:
    """Return the inputs of a public method (an internal ``_Inputs`` passes through)."""
    if isinstance(X, _Inputs):
        return X
    if y is None:
        raise DataError(
            "A mixture of regressions needs the response: got y=None. Pass it as the "
            "second argument, e.g. fit(X, y) or predict_proba(X, y), with X the predictors "
            "(for a mixture of the columns of X themselves, use GaussianMixture or another "
            "family's mixture)."
        )
    return _Inputs(X, y, Z)


def _design_matrix(values: np.ndarray, intercept: bool) -> np.ndarray:
    """Return ``values`` with a column of ones in front when ``intercept``."""
    return np.column_stack([np.ones(values.shape[0]), values]) if intercept else values


def _split_features(features: list[str]) -> tuple[list[str], list[str]]:
    """Return the predictors (the design's columns) and the covariates of a data matrix."""
    rest = [str(f) for f in features[1:]]
    predictors = [f for f in rest if not f.startswith(_CONCOMITANT)]
    covariates = [f.removeprefix(_CONCOMITANT) for f in rest if f.startswith(_CONCOMITANT)]
    return predictors, covariates


def _response_values(y: Any, n_samples: int, response: Response) -> tuple[np.ndarray, str]:
    """Return ``y`` as a float64 vector and its name, checked against the family."""
    name = str(y.name) if isinstance(y, pd.Series) and y.name is not None else "y"
    if isinstance(y, pd.DataFrame):
        if y.shape[1] != 1:
            raise DataError(f"y must be one column; got a DataFrame with {y.shape[1]} columns.")
        name, y = str(y.columns[0]), y.iloc[:, 0]
    try:
        values = np.array(y, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"y must be numeric; could not convert {type(y).__name__} to float ({err})."
        ) from None
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DataError(f"y must be a vector (n_samples,); got shape {values.shape}.")
    if values.shape[0] != n_samples:
        raise DataError(
            f"X has {n_samples} rows but y has {values.shape[0]}; they must be the same "
            "observations, one response per row of X."
        )
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataError(
            f"y has {bad.size} NaN or infinite value(s) (first at position {bad[0]}); a "
            "mixture of regressions needs every response. Drop those rows."
        )
    response.check(values)
    return values, name


class MixtureRegression(MixtureModel):
    r"""Bayesian mixture of regressions: each latent component has its own regression.

    The component of each observation is marginalised out; NUTS samples the weights and
    every component's coefficients (and scale), starting from the EM estimate, and every
    draw is relabelled to the EM labelling. EM (``method="em"``) gives the maximum-
    likelihood estimate, as R's flexmix does.

    Parameters
    ----------
    n_components : int, default=2
        Number of components (regression lines) K.
    family : str, default="gaussian"
        The response distribution of a component, from the family registry:
        ``"gaussian"`` (identity link, a scale per component), ``"poisson"`` (log link),
        ``"bernoulli"`` (logit link) or ``"negative-binomial"`` (log link, NB2: variance
        ``mu + mu^2 / dispersion``, a dispersion per component; ``"negative_binomial"``
        works too: a family's own name is accepted for its registry name).
    fit_intercept : bool, default=True
        Add an intercept column (named ``"Intercept"``) in front of the predictors.
    concomitant : bool, default=False
        Model the mixing proportions by covariates ``Z`` (``fit(X, y, Z)``; flexmix's
        concomitant variables): ``P(z_n = k | w_n) = softmax_k(w_n' gamma_k)`` with
        ``w_n = (1, Z_n)``. ``gamma`` is identified up to a constant per covariate; the
        posterior variable ``concomitant`` (dims covariate, component) is its zero-sum
        representative (a ``ZeroSumNormal`` prior), and ``weights`` the population's
        average proportions. EM's M-step for ``gamma`` is a multinomial logistic
        regression on the responsibilities (Newton).
    priors : dict of str to Prior, optional
        Priors keyed by random variable: ``weights`` (Dirichlet; not with concomitant
        variables), ``coefficients`` (Normal or StudentT, dims (component, predictor)),
        ``scales`` (Gaussian: HalfNormal, ...), ``dispersion`` (negative binomial: Gamma,
        Exponential, LogNormal, HalfNormal), ``concomitant`` (ZeroSumNormal, dims
        (covariate, component)). Merged over the defaults (see Notes); never modified.
    n_init : int, default=5
        EM restarts run to convergence; the best is kept.
    init : {"emem", "k-means++", "random"}, default="emem"
        How the EM restarts start: partitions of the standardised (predictors,
        response), as for the mixture families (``"emem"``: the best of 40 short runs).
    max_iter : int, default=500
        Maximum number of EM iterations per restart.
    tol : float, default=1e-6
        EM stops when its objective (per observation) changes by less than ``tol``.
    random_state : int or None, default=None
        Seeds EM and, unless ``fit`` gets ``random_seed``, the sampler.
    objective : {"ml", "map"}, default="ml"
        What EM maximises: the likelihood, or the posterior density of the model's
        priors (the mode NUTS's posterior sits around; it also keeps a component on
        few points from a spurious maximum). ``"map"`` needs the priors its M-steps
        are written for, which the defaults are: ``Normal`` coefficients (each
        component's M-step a ridge regression, or penalised IRLS, towards the prior
        mean), a ``HalfNormal`` Gaussian scale (a closed form), a ``Gamma`` negative
        binomial dispersion (one more term of its Newton step), ``Dirichlet(a)``
        weights (``(n_k + a - 1) / (N + K (a - 1))``), and ``ZeroSumNormal``
        concomitant effects (penalised Newton).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Posterior mean (NUTS) or estimate (EM) of the mixing proportions.
    coefficients_ : ndarray of shape (n_components, n_predictors)
        Posterior mean or estimate of every component's coefficients, in the order of
        ``predictor_names_`` (the intercept first).
    scales_ : ndarray of shape (n_components,)
        Gaussian: the residual standard deviation of every component.
    dispersion_ : ndarray of shape (n_components,)
        Negative binomial: every component's dispersion (an EM estimate of ``1e6`` is
        the Poisson limit).
    concomitant_ : ndarray of shape (n_components, n_covariates)
        With ``concomitant=True``: ``gamma`` (zero-sum over the components), in the order
        of ``covariate_names_`` (``"Intercept"`` first).
    covariate_names_ : list of str
    predictor_names_ : list of str
        The design's columns: ``"Intercept"`` (unless ``fit_intercept=False``) and the
        predictors.
    response_name_ : str
    idata : xarray.DataTree
        ``posterior`` (``weights``, ``coefficients`` dims (component, predictor),
        ``scales`` or ``dispersion``), ``log_likelihood`` (``y``, per observation),
        ``observed_data``, ``sample_stats`` (NUTS) or ``em_stats`` (EM).
    em_ : bayesmix.em.loop.EMResult
    priors_ : dict of str to Prior
    n_features_in_ : int
        Number of predictors (columns of ``X``).
    feature_names_in_ : list of str

    Notes
    -----
    Default priors, on the scale of the data (``sd`` of each predictor ``x_j`` and of the
    response ``y``; for the log and logit links the response scale is 1): slopes
    ``Normal(0, 2.5 s_y / s_j)`` (rstanarm's weakly informative default); the intercept
    ``Normal(g(mean y), 2.5 s_y sqrt(1 + sum_j (mean x_j / s_j)^2))``, the spread those
    slopes imply for the intercept of predictors that are not centred; ``scales ~
    HalfNormal(s_y)``; ``dispersion ~ Gamma(2, 0.1)`` (the
    :class:`~bayesmix.NegativeBinomialMixture`'s default, see its Notes); ``weights ~
    Dirichlet(1)``; ``concomitant ~ ZeroSumNormal`` with the same scales on the log-odds
    scale (``2.5 / s_w`` for a covariate ``w``).

    The negative binomial's M-step is not IRLS: its log link is not canonical once the
    dispersion is free, so each component's coefficients and log dispersion are fitted
    jointly by Newton's method, started from the Poisson fit (the family's
    ``fit_negative_binomial_regression``).

    Components are labelled by increasing intercept (or first coefficient).

    A mixture of logistic regressions (``family="bernoulli"``) with one binary response
    per observation identifies the mixture's probability curve ``sum_k pi_k
    expit(x' beta_k)`` but not its components (Follmann & Lambert 1991), and a component
    whose responses its predictors separate has no finite maximum-likelihood estimate:
    read its coefficients with care.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesmix as bm
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0, 10, 300)
    >>> z = rng.random(300) < 0.4
    >>> y = np.where(z, 1.0 + 2.0 * x, 8.0 - 0.5 * x) + rng.normal(0, 0.5, 300)
    >>> fit = bm.MixtureRegression(n_components=2, random_state=0).fit(x, y, method="em")
    >>> fit.coefficients_.round(1)  # true lines 1 + 2 x and 8 - 0.5 x
    array([[ 0.9,  2. ],
           [ 7.9, -0.5]])
    >>> fit.weights_.round(2)
    array([0.38, 0.62])
    """

    _family = "regression"
    _observed = "y"
    #: Plots draw the regression lines (:func:`bayesmix.plot_regression`).
    plot_kind = "regression"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MixtureModel._parameter_constraints,
        "family": [str],
        "fit_intercept": ["boolean"],
        "concomitant": ["boolean"],
        "objective": [Options("ml", "map")],
    }

    def __init__(
        self,
        *,
        n_components: int = 2,
        family: str = "gaussian",
        fit_intercept: bool = True,
        concomitant: bool = False,
        priors: dict[str, Prior] | None = None,
        n_init: int = 5,
        init: Literal["emem", "k-means++", "random"] = "emem",
        max_iter: int = 500,
        tol: float = 1e-6,
        random_state: int | None = None,
        objective: Literal["ml", "map"] = "ml",
    ) -> None:
        self.n_components = n_components
        self.family = family
        self.fit_intercept = fit_intercept
        self.concomitant = concomitant
        self.priors = priors
        self.n_init = n_init
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.objective = objective

    # -- the component family --------------------------------------------------------------

    @property
    def _response(self) -> Response:
        """The component family's response distribution (from the registry)."""
        known = [name for name in FAMILIES if getattr(FAMILIES[name], "_response", None)]
        # The registry name, or the family's own (``_family``: underscores for hyphens).
        named = [name for name in FAMILIES if self.family in _names_of(name)]
        response = getattr(FAMILIES[named[0]], "_response", None) if named else None
        if response is None:
            raise InvalidParameterError(
                f"family={self.family!r} cannot be the component of a mixture of "
                f"regressions; expected one of {sorted(known)}."
            )
        return response

    @property
    def _data_kind(self) -> str:
        """The response's kind: the posterior predictive check draws ``y`` by it."""
        return self._response.kind

    def _check_params(self) -> None:
        super()._check_params()
        self._response  # noqa: B018  (raises for a family without a response)

    @property
    def _component_vars(self) -> tuple[str, ...]:  # type: ignore[override]
        scale = self._response.scale
        names = ("coefficients",) if scale is None else ("coefficients", scale)
        return (*names, "concomitant") if self.concomitant else names

    # -- data --------------------------------------------------------------------------------

    def _prepare(self, X: Any, sample_weight: Any = None) -> tuple[MixtureData, dict[str, Prior]]:
        self._check_params()
        data = self._regression_data(X, for_fit=True)
        weights = check_sample_weight(sample_weight, data.n_samples)
        if weights is not None:
            data = MixtureData(data.values, data.obs, data.features, weights)
        if data.n_samples < self.n_components:
            raise DataError(
                f"X has {data.n_samples} samples but n_components={self.n_components}; a "
                "mixture needs at least one sample per component. Use fewer components."
            )
        return data, self._resolve_priors(data)

    def _regression_data(self, inputs: Any, *, for_fit: bool) -> MixtureData:
        """Validate (X, y) and return them as one matrix: the response, then the design."""
        if not isinstance(inputs, _Inputs):
            raise DataError(
                "a MixtureRegression takes the predictors and the response: fit(X, y), "
                "predict_proba(X, y), score_samples(X, y)."
            )
        if inputs.matrix is not None:
            return inputs.matrix
        predictors = check_data(inputs.X, for_fit=False)
        response = self._response
        y, name = _response_values(inputs.y, predictors.n_samples, response)
        names = (["Intercept"] if self.fit_intercept else []) + predictors.features
        design = _design_matrix(predictors.values, self.fit_intercept)
        if for_fit:
            if name in names:
                raise DataError(
                    f"the response and a predictor are both named {name!r}; rename one."
                )
            check_design(design, names, self.fit_intercept)
        else:
            self._check_predictors(predictors.features, inputs.X)
            name = self.response_name_
            names = self.predictor_names_
        columns = [y[:, None], design]
        features = [name, *names]
        if self.concomitant:
            covariates = self._covariate_design(inputs.Z, predictors.n_samples, for_fit)
            columns.append(covariates.values)
            features += [_CONCOMITANT + f for f in covariates.features]
        elif inputs.Z is not None:
            raise DataError(
                "Z (covariates of the mixing proportions) was given but concomitant=False; "
                "pass MixtureRegression(concomitant=True) to model the proportions by Z, "
                "or leave Z out."
            )
        return MixtureData(np.column_stack(columns), predictors.obs, features)

    def _covariate_design(self, Z: Any, n_samples: int, for_fit: bool) -> MixtureData:
        """Validate Z and return its design: an intercept, then the covariates."""
        if Z is None:
            raise DataError(
                "concomitant=True models the mixing proportions by covariates Z: pass them, "
                "fit(X, y, Z=Z) (and Z= to the predictions), or use concomitant=False."
            )
        covariates = check_data(Z, for_fit=False)
        if covariates.n_samples != n_samples:
            raise DataError(
                f"X has {n_samples} rows but Z has {covariates.n_samples}; they must be the "
                "same observations."
            )
        names = ["Intercept", *covariates.features]
        design = _design_matrix(covariates.values, True)
        if for_fit:
            check_design(design, names, True)
        elif covariates.features != self.covariate_names_[1:]:
            if len(covariates.features) != len(self.covariate_names_) - 1 or isinstance(
                Z, pd.DataFrame
            ):
                raise DataError(
                    f"Z has columns {covariates.features}; the fit's covariates are "
                    f"{self.covariate_names_[1:]}. Pass those columns, in that order."
                )
            names = list(self.covariate_names_)
        return MixtureData(design, covariates.obs, names)

    def _check_predictors(self, features: list[str], X: Any) -> None:
        """Raise a DataError if X's predictors are not those of the fit."""
        self._check_fitted()
        if len(features) != self.n_features_in_:
            raise DataError(
                f"X has {len(features)} predictor(s), but {type(self).__name__} was fitted "
                f"with {self.n_features_in_} ({self.feature_names_in_})."
            )
        if isinstance(X, pd.DataFrame) and features != list(self.feature_names_in_):
            raise DataError(
                f"X has columns {features}; the fit's predictors are "
                f"{list(self.feature_names_in_)}. Pass those columns, in that order."
            )

    def _selection_data(
        self, X: Any, *, y: Any = None, Z: Any = None, ks: list[int]
    ) -> tuple[MixtureData, Any]:
        if y is None:
            raise InvalidParameterError(
                "select_k of a MixtureRegression needs the response: select_k(X, ks, "
                "model=bm.MixtureRegression, y=y) (and Z= with concomitant=True)."
            )
        data, _ = self._prepare(_Inputs(X, y, Z))
        return data, _Inputs(None, None, matrix=data)

    def _training_inputs(self, values: np.ndarray) -> Any:
        features = [self.response_name_, *self.predictor_names_]
        if self.concomitant:
            features += [_CONCOMITANT + name for name in self.covariate_names_]
        matrix = MixtureData(values, np.arange(values.shape[0]), features)
        return _Inputs(None, None, matrix=matrix)

    def _check_X(self, X: Any) -> MixtureData:
        self._check_fitted()
        return self._regression_data(X, for_fit=False)

    def _coords(self, data: Any) -> dict[str, Any]:
        coords = super()._coords(data)
        del coords["feature_bis"]
        coords["predictor"], covariates = _split_features(list(data.features))
        if self.concomitant:
            coords["covariate"] = covariates
        return coords

    def _feature_dims(self, features: list[Any]) -> dict[str, list[Any]]:
        predictors, covariates = _split_features(["response", *features])
        return {"predictor": predictors, "covariate": covariates}

    def _scalar_names(self, post: xr.DataTree) -> dict[str, list[Any]]:
        features = [str(f) for f in post["predictor"].to_numpy()]
        if "covariate" in post.coords:
            features += [_CONCOMITANT + str(f) for f in post["covariate"].to_numpy()]
        return {"components": post["component"].to_numpy().tolist(), "features": features}

    def _var_dims(self, n_features: int) -> dict[str, list[str]]:
        dims = self._posterior_dims(n_features)
        dims[self._observed] = ["obs"]
        return dims

    def _observed_data_group(self, data: MixtureData) -> xr.Dataset:
        group = super()._observed_data_group(data)
        return group.assign(y=("obs", data.values[:, 0]))

    # -- specification -----------------------------------------------------------------------

    def _rv_shapes(self, n_features: int) -> dict[str, tuple[str, ...]]:
        shapes: dict[str, tuple[str, ...]] = {}
        if not self.concomitant:  # else the weights are a deterministic (the average)
            shapes["weights"] = ("component",)
        shapes["coefficients"] = ("component", "predictor")
        if self._response.scale is not None:
            shapes[self._response.scale] = ("component",)
        if self.concomitant:  # zero-sum over the components (identified)
            shapes["concomitant"] = ("covariate", "component")
        return shapes

    def _posterior_dims(self, n_features: int) -> dict[str, list[str]]:
        return {"weights": ["component"], **super()._posterior_dims(n_features)}

    def _posterior_supports(self) -> dict[str, str]:
        supports = {"weights": "simplex"}
        if self._response.scale is not None:
            supports[self._response.scale] = "positive"
        return supports

    def _n_parameters(self, n_features: int) -> int:
        k, p = self.n_components, len(self.predictor_names_)
        proportions = (k - 1) * (len(self.covariate_names_) if self.concomitant else 1)
        return k * p + (k if self._response.scale is not None else 0) + proportions

    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        response = self._response
        mean, sd = column_moments(data.values, data.sample_weight)
        n_predictors = len(_split_features(list(data.features))[0])
        y_mean, y_sd = mean[0], sd[0]
        x_mean, x_sd = mean[1 : 1 + n_predictors], sd[1 : 1 + n_predictors]
        if self.fit_intercept:
            x_mean, x_sd = x_mean[1:], x_sd[1:]
        if response.link == "identity":
            spread, centre = y_sd, y_mean
        else:  # the log and logit scales: unit spread, centred on the link of the mean
            spread = 1.0
            low = 0.5 / max(data.n_samples, 1)
            top = np.inf if response.link == "log" else 1.0 - low
            centre = float(response.link_function(np.clip(y_mean, low, top)))
        slopes = 2.5 * spread / x_sd
        mu, sigma = np.zeros(n_predictors), np.empty(n_predictors)
        if self.fit_intercept:
            mu[0] = centre
            sigma[0] = _intercept_spread(2.5 * spread, x_mean, x_sd)
            sigma[1:] = slopes
        else:
            sigma[:] = slopes
        priors = {"coefficients": Prior("Normal", mu=mu.tolist(), sigma=sigma.tolist())}
        if self.concomitant:
            # On the log-odds scale of the proportions (unit spread), as the slopes of a
            # logistic regression: 2.5 / sd(w_j), the intercept as above.
            w_mean, w_sd = mean[2 + n_predictors :], sd[2 + n_predictors :]
            gamma = [_intercept_spread(2.5, w_mean, w_sd), *(2.5 / w_sd)]
            priors["concomitant"] = Prior("ZeroSumNormal", sigma=[[float(g)] for g in gamma])
        else:
            priors["weights"] = Prior("Dirichlet", a=1.0)
        if response.scale is not None:
            priors[response.scale] = response.scale_prior(float(y_mean), float(y_sd))
        return priors

    def _allowed_priors(self) -> dict[str, frozenset[str]]:
        allowed = {
            "weights": frozenset({"Dirichlet"}),
            "coefficients": frozenset({"Normal", "StudentT"}),
            "concomitant": frozenset({"ZeroSumNormal"}),
        }
        if self._response.scale is not None:
            allowed[self._response.scale] = self._response.scale_priors
        return allowed

    def _fitted_attributes(self, point: dict[str, np.ndarray]) -> None:
        self.coefficients_ = point["coefficients"]
        if self._response.scale is not None:
            setattr(self, f"{self._response.scale}_", point[self._response.scale])
        if self.concomitant:
            self.concomitant_ = point["concomitant"]

    def _set_fitted(self, data: Any, priors: dict[str, Prior], em: Any, idata: Any) -> None:
        super()._set_fitted(data, priors, em, idata)
        features = [str(f) for f in data.features]
        self.response_name_ = features[0]
        self.predictor_names_, covariates = _split_features(features)
        if self.concomitant:
            self.covariate_names_ = covariates
        names = self.predictor_names_
        self.feature_names_in_ = names[1:] if self.fit_intercept else names
        self.n_features_in_ = len(self.feature_names_in_)

    # -- densities -----------------------------------------------------------------------------

    def component_log_prob(self, X: np.ndarray, *params: np.ndarray) -> np.ndarray:  # type: ignore[override]
        """Return ``log f(y_n | x_n' beta_k, scale_k)`` of shape (n_draws, n_samples, K).

        ``X`` is the response then the design (as ``idata.observed_data.x``); ``params``
        the coefficients (draws, K, P) and, for the Gaussian, the scales (draws, K) (the
        negative binomial: the dispersions).
        """
        named = dict(zip(self._component_vars, params, strict=True))
        coefficients = named["coefficients"]
        n_predictors = coefficients.shape[-1]
        eta = features_dot(X[:, 1 : 1 + n_predictors], coefficients)  # (S, N, K)
        scale = named.get(self._response.scale or "")
        scales = None if scale is None else scale[:, None, :]
        out = self._response.log_prob(X[None, :, 0, None], eta, scales)
        if self.concomitant:  # the row's log mixing proportions (the weights are 1 then)
            out = out + log_softmax_weights(X[:, 1 + n_predictors :], named["concomitant"])
        return out

    def _density_draws(self, draws: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """Return the draws that the mixture densities take.

        With concomitant variables, unit weights: each row's proportions are in
        :meth:`component_log_prob`.
        """
        if not self.concomitant:
            return draws
        return (np.ones_like(draws[0]), *draws[1:])

    def _pointwise(self, X: np.ndarray, draws: tuple[np.ndarray, ...]) -> np.ndarray:
        return super()._pointwise(X, self._density_draws(draws))

    def _draws_for(
        self, X: Any, max_draws: int | None = None
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        values, draws = super()._draws_for(X, max_draws)
        return values, self._density_draws(draws)

    def _relabel_locations(self, params: dict[str, np.ndarray], data: MixtureData) -> np.ndarray:
        """Coefficients in units of the response's spread per predictor's spread."""
        coefficients = params["coefficients"]
        sd = column_moments(data.values, data.sample_weight)[1]
        y_scale = sd[0] if self._response.link == "identity" and sd[0] > 0 else 1.0
        x_sd = sd[1 : 1 + coefficients.shape[-1]]
        return coefficients * np.where(x_sd > 0, x_sd, 1.0) / y_scale

    # -- the PyMC model ----------------------------------------------------------------------

    def _build(self, data: MixtureData, priors: dict[str, Prior]) -> pm.Model:
        k = self.n_components
        predictors, covariates = _split_features(list(data.features))
        p, c = len(predictors), len(covariates)
        response = self._response
        with pm.Model(coords=self._coords(data)) as model:
            values = pm.Data("x_data", data.values, dims=("obs", "feature"))
            params = []
            if not self.concomitant:
                params.append(
                    priors["weights"].create_variable("weights", shape=(k,), dims=("component",))
                )
            params.append(
                priors["coefficients"].create_variable(
                    "coefficients", shape=(k, p), dims=("component", "predictor")
                )
            )
            if response.scale is not None:
                params.append(
                    priors[response.scale].create_variable(
                        response.scale, shape=(k,), dims=("component",)
                    )
                )
            params.append(values[:, 1 : 1 + p])
            if self.concomitant:
                gamma = priors["concomitant"].create_variable(
                    "concomitant", shape=(c, k), dims=("covariate", "component")
                )
                covariate_values = values[:, 1 + p :]
                params[-1:-1] = [gamma.T]
                params.append(covariate_values)
                # The population's proportions: the average of the rows'.
                eta = covariate_values @ gamma
                pm.Deterministic(
                    "weights", pt.special.softmax(eta, axis=-1).mean(axis=0), dims=("component",)
                )
            layout = (response.scale is not None, self.concomitant)
            signature = ",".join(
                ([] if self.concomitant else ["(k)"])
                + ["(k,p)"]
                + (["(k)"] if layout[0] else [])
                + (["(k,c)"] if self.concomitant else [])
                + ["(p)"]
                + (["(c)"] if self.concomitant else [])
            )
            pm.CustomDist(
                self._observed,
                *params,
                logp=functools.partial(_mixture_logp, response, layout),
                random=functools.partial(_mixture_random, response, layout),
                signature=f"{signature}->()",
                observed=values[:, 0],
                dims=("obs",),
            )
        return model

    # -- EM ------------------------------------------------------------------------------------

    def _run_em(
        self, data: MixtureData, rng: np.random.Generator, priors: dict[str, Prior]
    ) -> EMResult:
        return self._order_em(_fit_regression_em(self, data, rng, priors))

    def _order_em(self, em: EMResult) -> EMResult:
        # A canonical labelling: by increasing first coefficient (the intercept).
        return em.reordered(np.lexsort(em.params["coefficients"].T[::-1]))

    def _point_from_em(self, em: EMResult, n_features: int) -> dict[str, np.ndarray]:
        point = {"weights": em.weights, **em.params}
        if self.concomitant:  # (covariate, component) in the posterior
            point["concomitant"] = em.params["concomitant"].T
        return point

    def _start_from_em(self, em: EMResult, n_features: int) -> dict[str, np.ndarray]:
        point = self._point_from_em(em, n_features)
        scale, start = self._response.scale, self._response.scale_start
        if scale is not None and start is not None:
            point[scale] = start(point[scale])
        return point

    # -- predictions ---------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None, Z: Any = None, **kwargs: Any) -> Self:  # type: ignore[override]
        """Fit the mixture of regressions of ``y`` on ``X``: NUTS (default), EM or Laplace.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_predictors) or (n_samples,)
            The predictors (a DataFrame's column names name the coefficients).
        y : array-like of shape (n_samples,) or str
            The response, or the name of a column of the DataFrame ``X`` (the predictors
            are then its other columns).
        Z : array-like of shape (n_samples, n_covariates), str or list of str, optional
            With ``concomitant=True``: the covariates of the mixing proportions,
            ``P(z_n = k | w_n) = softmax_k(w_n' gamma_k)`` with ``w_n = (1, Z_n)``
            (flexmix's concomitant variables; the posterior variable ``concomitant``,
            dims (component, covariate), and ``weights`` the average proportions). Or
            the names of columns of the DataFrame ``X``: ``fit(frame, "y", ["age"])``
            takes the response and the covariates out of ``frame`` and the predictors
            are the remaining columns (the predictions take ``Z`` by name too).
        **kwargs
            ``method``, ``sample_weight``, ``draws``, ``tune``, ``chains`` and the other
            options of :meth:`bayesmix.GaussianMixture.fit`.

        Returns
        -------
        self
        """
        return super().fit(_inputs(X, y, Z), **kwargs)

    def build_model(  # type: ignore[override]
        self, X: Any, y: Any, Z: Any = None, sample_weight: Any = None
    ) -> pm.Model:
        """Return the PyMC model of ``y`` given ``X`` without fitting anything.

        Its observed variable ``y`` has one log-likelihood term per observation, the
        components summed out.
        """
        data, priors = self._prepare(_Inputs(X, y, Z), sample_weight)
        return self._model(data, priors)

    def predict_proba(self, X: Any, y: Any = None, Z: Any = None) -> np.ndarray:  # type: ignore[override]
        """Return the posterior probability of each component for each (x, y) pair.

        The responsibilities ``p(z_n = k | x_n, y_n)``, averaged over posterior draws;
        they need the response.
        """
        return super().predict_proba(_inputs(X, y, Z))

    def score_samples(self, X: Any, y: Any = None, Z: Any = None) -> np.ndarray:  # type: ignore[override]
        """Return ``log p(y_n | x_n)``, the log predictive density of each response."""
        return super().score_samples(_inputs(X, y, Z))

    def score(  # type: ignore[override]
        self, X: Any, y: Any, Z: Any = None, sample_weight: Any = None
    ) -> float:
        """Return the mean log predictive density of ``y`` given ``X`` (not R^2)."""
        values = self.score_samples(X, y, Z)
        weights = check_sample_weight(sample_weight, values.shape[0])
        if weights is None:
            return float(values.mean())
        return float(weights @ values / weights.sum())

    def bic(  # type: ignore[override]
        self, X: Any, y: Any = None, Z: Any = None, sample_weight: Any = None
    ) -> float:
        """Return the BIC of the estimate: ``-2 log L + n_parameters log n`` (lower is better)."""
        return super().bic(_inputs(X, y, Z), sample_weight=sample_weight)

    def aic(  # type: ignore[override]
        self, X: Any, y: Any = None, Z: Any = None, sample_weight: Any = None
    ) -> float:
        """Return the AIC of the estimate: ``-2 log L + 2 n_parameters`` (lower is better)."""
        return super().aic(_inputs(X, y, Z), sample_weight=sample_weight)

    def _design(self, X: Any) -> np.ndarray:
        """Return the design matrix of new predictors (intercept first), checked."""
        self._check_fitted()
        predictors = check_data(X, for_fit=False)
        self._check_predictors(predictors.features, X)
        return _design_matrix(predictors.values, self.fit_intercept)

    def predict(self, X: Any, Z: Any = None) -> np.ndarray:  # type: ignore[override]
        """Return the predictive mean ``E[y | x] = sum_k pi_k g^-1(x' beta_k)`` of each row.

        Averaged over the posterior draws (at most 1000, evenly thinned); at the estimate
        for an EM fit. :meth:`predict_components` gives each component's line with its
        posterior interval.
        """
        return self.predict_components(X, Z)["mean"].to_numpy()

    @validated({"prob": [float]})
    def predict_components(self, X: Any, Z: Any = None, *, prob: float = 0.94) -> xr.Dataset:
        """Return the mixture's and every component's predictive mean, with intervals.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_predictors)
        Z : array-like of shape (n_samples, n_covariates), optional
            The covariates of the proportions (``concomitant=True`` only; left out, the
            mixture's mean weights the components by ``weights``, the training rows'
            average proportions).
        prob : float, default=0.94
            Probability of the equal-tailed posterior intervals.

        Returns
        -------
        xarray.Dataset
            ``mean`` (obs): ``E[y | x]``, the posterior mean of ``sum_k pi_k mu_k(x)``
            (``pi_k(w)`` with concomitant variables);
            ``component_mean`` (obs, component): the posterior mean of ``mu_k(x) =
            g^-1(x' beta_k)``; ``component_lower`` and ``component_upper``: its
            ``prob`` interval (equal to the mean for an EM fit).
        """
        if not 0.0 < prob < 1.0:
            raise InvalidParameterError(f"prob must be in (0, 1); got {prob!r}.")
        X, _, Z = _named_columns(X, None, Z)
        design = self._design(X)
        draws = self.posterior_arrays(max_draws=1000)
        means = self._response.mean(np.einsum("np,skp->snk", design, draws["coefficients"]))
        if self.concomitant and Z is not None:
            covariates = self._covariate_design(Z, design.shape[0], for_fit=False).values
            proportions = np.exp(log_softmax_weights(covariates, draws["concomitant"]))
            mixture = np.einsum("snk,snk->sn", means, proportions)
        else:  # the population's proportions (with concomitant variables: Z left out)
            if Z is not None:
                raise DataError("Z was given but the fit has no concomitant variables.")
            mixture = np.einsum("snk,sk->sn", means, draws["weights"])
        tail = 0.5 * (1.0 - prob)
        lower, upper = np.quantile(means, [tail, 1.0 - tail], axis=0)
        dims = ("obs", "component")
        return xr.Dataset(
            {
                "mean": ("obs", mixture.mean(axis=0)),
                "component_mean": (dims, means.mean(axis=0)),
                "component_lower": (dims, lower),
                "component_upper": (dims, upper),
            },
            coords={"component": np.arange(self.n_components)},
            attrs={"prob": prob},
        )


def _names_of(registered: str) -> tuple[str, str | None]:
    """Return a family's registry name and its own (``_family``), both accepted as ``family``."""
    return registered, getattr(FAMILIES[registered], "_family", None)


def _intercept_spread(slope_spread: float, means: np.ndarray, sds: np.ndarray) -> float:
    """Return the prior sd of an intercept given slopes of prior sd ``slope_spread / sd_j``.

    An intercept at uncentred predictors is the centred one minus ``sum_j beta_j m_j``:
    its sd is ``slope_spread * sqrt(1 + sum_j (m_j / sd_j)^2)``.
    """
    return float(slope_spread * np.sqrt(1.0 + np.sum((means / sds) ** 2)))


def _unpack(layout: tuple[bool, bool], params: tuple) -> tuple:
    """Split the CustomDist's parameters: weights, coefficients, scale, gamma, X, Z."""
    has_scale, has_concomitant = layout
    rest = list(params)
    weights = None if has_concomitant else rest.pop(0)
    coefficients = rest.pop(0)
    scale = rest.pop(0) if has_scale else None
    gamma = rest.pop(0) if has_concomitant else None
    design = rest.pop(0)
    covariates = rest.pop(0) if has_concomitant else None
    return weights, coefficients, scale, gamma, design, covariates


def _linear(design: Any, coefficients: Any) -> Any:
    """Return ``x_n' beta_k``, unrolled over the (static) columns (PyTensor).

    Elementwise in (observation, component), whatever batch dimensions PyMC gives the
    parameters.
    """
    eta = 0.0
    for j in range(coefficients.type.shape[-1]):
        eta = eta + design[..., j, None] * coefficients[..., j]
    return eta


def _mixture_logp(response: Response, layout: tuple[bool, bool], value: Any, *params: Any) -> Any:
    """``log p(y_n | x_n)`` with the components summed out (PyTensor)."""
    weights, coefficients, scale, gamma, design, covariates = _unpack(layout, params)
    component = response.pt_log_prob(value[..., None], _linear(design, coefficients), scale)
    if gamma is None:
        log_weights = pt.log(weights)
    else:  # log softmax_k(z_n' gamma_k), the row's proportions
        eta = _linear(covariates, gamma)
        log_weights = eta - pt.logsumexp(eta, axis=-1, keepdims=True)
    return pt.logsumexp(log_weights + component, axis=-1)


def _mixture_random(
    response: Response, layout: tuple[bool, bool], *params: Any, rng=None, size=None
) -> np.ndarray:
    """Draw responses by the generative story: a component, then its regression (NumPy).

    Parameters may carry batch dimensions (the observations, prior draws); ``size`` is
    the batch shape of the draws.
    """
    rng = np.random.default_rng(rng)
    weights, coefficients, scale, gamma, design, covariates = _unpack(layout, params)
    k, p = coefficients.shape[-2:]
    shapes = [coefficients.shape[:-2], design.shape[:-1]]
    if gamma is None:
        shapes.append(weights.shape[:-1])
    else:
        shapes += [gamma.shape[:-2], covariates.shape[:-1]]
    batch = tuple(size) if size is not None else np.broadcast_shapes(*shapes)
    if gamma is not None:
        eta = np.einsum("...c,...kc->...k", covariates, gamma)
        weights = np.exp(eta - logsumexp(eta, axis=-1, keepdims=True))
    weights = np.broadcast_to(weights, (*batch, k))
    coefficients = np.broadcast_to(coefficients, (*batch, k, p))
    design = np.broadcast_to(design, (*batch, p))
    cdf = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
    labels = np.minimum((rng.random(batch)[..., None] > cdf).sum(axis=-1), k - 1)
    beta = np.take_along_axis(coefficients, labels[..., None, None], axis=-2)[..., 0, :]
    eta = np.einsum("...p,...p->...", design, beta)
    chosen = None
    if scale is not None:
        scales = np.broadcast_to(scale, (*batch, k))
        chosen = np.take_along_axis(scales, labels[..., None], axis=-1)[..., 0]
    return response.draw(rng, eta, chosen)


# Log densities (up to constants) of the scale priors that objective="map" takes, and
# the parameterisation they need.
_SCALE_LOG_PRIORS = {
    "HalfNormal": lambda x, p: -0.5 * (x / p["sigma"]) ** 2,
    "Gamma": lambda x, p: (p["alpha"] - 1.0) * np.log(x) - p["beta"] * x,
}
_SCALE_PRIOR_PARAMS = {"HalfNormal": {"sigma"}, "Gamma": {"alpha", "beta"}}


@dataclasses.dataclass(frozen=True)
class _MapTerms:
    """The priors of a mixture of regressions as its MAP M-steps take them."""

    penalties: tuple[Penalty, ...]  # one per component
    scale_name: str | None  # the response's scale parameter
    concentration: float | None  # the weights' symmetric Dirichlet (no concomitant)
    concomitant_sd: np.ndarray | None  # (n_covariates,): the zero-sum normal's sd

    def penalty(self, component: int) -> Penalty:
        """Return the log prior terms of one component's M-step."""
        return self.penalties[component]

    def log_prior(self, weights: np.ndarray, params: dict) -> float:
        """Return the log prior density at ``(weights, params)``, up to a constant."""
        total = 0.0
        for j, penalty in enumerate(self.penalties):
            total += penalty.log_density(params["coefficients"][j])
            prior = penalty.scale_prior
            if prior is not None and self.scale_name is not None:
                value = _SCALE_LOG_PRIORS[prior.distribution](
                    params[self.scale_name][j], prior.params
                )
                total += float(value)
        if self.concentration is not None:
            with np.errstate(divide="ignore"):
                logs = np.log(weights)
            if self.concentration != 1.0:
                total += (self.concentration - 1.0) * float(np.sum(logs[weights > 0]))
        if self.concomitant_sd is not None:
            total -= 0.5 * float(np.sum((params["concomitant"] / self.concomitant_sd) ** 2))
        return total


def _map_terms(
    model: MixtureRegression, priors: dict[str, Prior], response: Response, n_predictors: int
) -> _MapTerms:
    """Check that the priors have MAP M-steps and return them (objective="map")."""
    k = model.n_components
    problems = []
    coefficients = priors["coefficients"]
    if coefficients.distribution != "Normal" or not {"mu", "sigma"} <= set(coefficients.params):
        problems.append(f"coefficients ~ Normal(mu, sigma) (got {coefficients!r})")
    scale_prior = priors.get(response.scale) if response.scale else None
    if scale_prior is not None and (
        scale_prior.distribution not in response.map_scale_priors
        or set(scale_prior.params) != _SCALE_PRIOR_PARAMS.get(scale_prior.distribution)
    ):
        allowed = ", ".join(
            f"{name}({', '.join(sorted(_SCALE_PRIOR_PARAMS[name]))})"
            for name in sorted(response.map_scale_priors)
        )
        problems.append(f"{response.scale} ~ {allowed or 'none'} (got {scale_prior!r})")
    concentration = concomitant_sd = None
    if model.concomitant:
        prior = priors["concomitant"]
        if prior.distribution != "ZeroSumNormal":
            problems.append(f"concomitant ~ ZeroSumNormal (got {prior!r})")
        else:
            sd = np.asarray(prior.params.get("sigma", 1.0), dtype=np.float64)
            concomitant_sd = sd.reshape(-1) if sd.ndim else sd.reshape(1)
    else:
        prior = priors["weights"]
        a = np.asarray(prior.params.get("a", 1.0), dtype=np.float64)
        if prior.distribution != "Dirichlet" or np.ptp(a) > 0:
            problems.append(f"weights ~ Dirichlet(a) with one concentration (got {prior!r})")
        else:
            concentration = float(a.reshape(-1)[0])
    if problems:
        raise InvalidParameterError(
            'objective="map" has M-steps for these priors only: '
            + "; ".join(problems)
            + '. Use those priors or objective="ml".'
        )
    penalties = []
    for j in range(k):
        mu = np.asarray(coefficients.params["mu"], dtype=np.float64)
        sigma = np.asarray(coefficients.params["sigma"], dtype=np.float64)
        mu = np.broadcast_to(mu[j] if mu.ndim == 2 else mu, (n_predictors,))
        sigma = np.broadcast_to(sigma[j] if sigma.ndim == 2 else sigma, (n_predictors,))
        component_scale = None
        if scale_prior is not None:
            component_scale = Prior(
                scale_prior.distribution,
                **{
                    name: float(np.broadcast_to(np.asarray(value, dtype=np.float64), (k,))[j])
                    for name, value in scale_prior.params.items()
                },
            )
        penalties.append(Penalty(mu.copy(), sigma**-2.0, component_scale))
    return _MapTerms(tuple(penalties), response.scale, concentration, concomitant_sd)


def _residual_scale(rss: float, mass: float, penalty: Penalty | None) -> float:
    """Return the residual sd's M-step: ``sqrt(rss / mass)``, or HalfNormal's posterior mode."""
    if penalty is None or penalty.scale_prior is None:
        return float(np.sqrt(rss / mass))
    return map_residual_scale(rss, mass, float(penalty.scale_prior.params["sigma"]))


def _fit_regression_em(
    model: MixtureRegression,
    data: MixtureData,
    rng: np.random.Generator,
    priors: dict[str, Prior],
) -> EMResult:
    """EM of a mixture of regressions: weighted fits of every component, restarts."""
    response = model._response
    k = model.n_components
    n_predictors = len(_split_features(list(data.features))[0])
    terms = None
    if model.objective == "map":
        terms = _map_terms(model, priors, response, n_predictors)
    y, design = data.values[:, 0], data.values[:, 1 : 1 + n_predictors]
    covariates = data.values[:, 1 + n_predictors :]  # (N, 0) without concomitant variables
    w = data.sample_weight
    n_samples = float(data.n_samples if w is None else w.sum())
    y_sd = float(column_moments(data.values[:, :1], w)[1][0])
    floor = _SCALE_FLOOR * (y_sd if y_sd > 0 else 1.0)
    # The partitions of the starts: standardised predictors and response.
    start_features = design[:, 1:] if model.fit_intercept else design
    start_features = np.column_stack([start_features, y])
    centre, spread = column_moments(start_features, w)
    start_features = (start_features - centre) / np.where(spread > 0, spread, 1.0)

    def log_prob(params: dict) -> np.ndarray:
        draws = [params[name][None] for name in model._component_vars]
        return model.component_log_prob(data.values, *draws)[0]

    def e_step(weights: np.ndarray, params: dict) -> tuple[float, float, np.ndarray, None]:
        # With concomitant variables the rows' proportions are in log_prob.
        row_weights = np.ones(k) if model.concomitant else weights
        log_norm, log_resp = _log_responsibilities(log_prob(params), row_weights)
        log_likelihood = float(np.mean(log_norm) if w is None else w @ log_norm / n_samples)
        objective = log_likelihood
        if terms is not None:  # the log posterior (up to a constant), per observation
            objective += terms.log_prior(weights, params) / n_samples
        resp = np.exp(log_resp)
        return objective, log_likelihood, resp if w is None else resp * w[:, None], None

    def update(resp: np.ndarray, _cache, weights: np.ndarray, params: dict | None):
        nk = resp.sum(axis=0)
        coefficients = np.zeros((k, design.shape[1]))
        scales = np.ones(k)
        for j in range(k):
            if nk[j] < _EMPTY_MASS and params is not None:
                coefficients[j] = params["coefficients"][j]
                if response.scale:
                    scales[j] = params[response.scale][j]
                continue
            start = None if params is None else params["coefficients"][j]
            # MAP from the first iteration on (the starts' M-step is maximum likelihood).
            penalty = None if terms is None or params is None else terms.penalty(j)
            if response.weighted_fit is not None:  # coefficients and scale jointly
                previous = None if params is None else params[response.scale][j]
                extra = {} if penalty is None else {"penalty": penalty}
                coefficients[j], scale, converged = response.weighted_fit(
                    design, y, resp[:, j], start, previous, **extra
                )
                if response.scale:
                    scales[j] = scale
            else:
                # ECM: the coefficients given the current scale, then the scale.
                current = (
                    None if params is None or not response.scale else params[response.scale][j]
                )
                coefficients[j], converged = weighted_fit(
                    design, y, resp[:, j], response, start, penalty, current
                )
                if response.scale:  # the weighted residual sd (a Gaussian's)
                    residual = y - design @ coefficients[j]
                    rss = float(resp[:, j] @ residual**2)
                    scales[j] = max(_residual_scale(rss, nk[j], penalty), floor)
            if not converged:
                _log.info("component %d: the weighted fit did not converge", j)
        if not np.all(np.isfinite(coefficients)):
            raise FitError("the weighted fit of a component is not finite")
        new = {"coefficients": coefficients}
        if response.scale:
            new[response.scale] = scales
        if not model.concomitant:
            if terms is None or params is None:
                return _ml_weights(nk), new
            return _map_weights(nk, terms.concentration, weights), new
        # The proportions' M-step: a multinomial logistic regression on the soft labels.
        previous = None if params is None else params["concomitant"]
        prior_sd = None if terms is None or params is None else terms.concomitant_sd
        new["concomitant"], converged = weighted_multinomial_fit(
            covariates, resp, previous, prior_sd
        )
        if not converged:
            _log.info("the concomitant variables' fit did not converge (separation?)")
        proportions = np.exp(log_softmax_weights(covariates, new["concomitant"]))
        average = proportions.mean(axis=0) if w is None else w @ proportions / n_samples
        return average, new

    def start(partition: str) -> tuple[np.ndarray, dict]:
        resp = initial_responsibilities(start_features, k, rng, _INIT_SMOOTHING, w, partition)
        if w is not None:
            resp *= w[:, None]
        return update(resp, None, np.full(k, 1.0 / k), None)

    def run(
        weights: np.ndarray, params: dict, iterations: int, tolerance: float, name: str
    ) -> _Restart:
        return _iterate(
            e_step, update, weights, params, max_iter=iterations, tol=tolerance, name=name
        )

    def degenerate(run: _Restart) -> dict[int, str]:
        found = {}
        counts = run.weights * n_samples
        for j in np.flatnonzero(counts < design.shape[1] + 1):
            found[int(j)] = f"holds {counts[j]:.3g} observations for {design.shape[1]} coefficients"
        if response.scale and response.weighted_fit is None:  # a residual sd near 0
            small = _DEGENERATE_SCALE * (y_sd if y_sd > 0 else 1.0)
            for j in np.flatnonzero(run.params[response.scale] <= small):
                found[int(j)] = (
                    f"has a residual scale below {_DEGENERATE_SCALE:g} of the response's "
                    "spread (it interpolates a few points: a spurious maximum)"
                )
        return found

    label = f"{response.name} regression EM"
    return _fit_restarts(
        _restart_plan(
            start,
            run,
            init=model.init,
            n_init=model.n_init,
            max_iter=model.max_iter,
            tol=model.tol,
            label=label,
            degenerate=degenerate,
        ),
        n_init=model.n_init,
        max_iter=model.max_iter,
        tol=model.tol,
        family="regression",
        objective=model.objective,
        stacklevel=6,
        label=label,
        degenerate=degenerate,
    )
