"""The model core every family shares: fit dispatch, results, prediction (names no family).

A family (one module under :mod:`bayesmix.families`, one line in its registry) subclasses
:class:`MixtureModel` and implements the hooks of the family contract documented on the
class; this module runs validation, EM (:mod:`bayesmix.em`), NUTS started at the EM
solution (:mod:`bayesmix.nuts`), relabelling, diagnostics, and packages every result in
one ``xarray.DataTree`` layout (:mod:`bayesmix._datatree`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import logging
import os
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import arviz_base as azb
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from bayesmix import _datatree
from bayesmix import dask as _dask
from bayesmix import laplace as _laplace
from bayesmix._numeric import missing_digest, observed_values
from bayesmix._params import (
    POSITIVE_INT,
    SEED,
    TARGET_ACCEPT,
    Hint,
    Interval,
    Options,
    signature_defaults,
    validate_params,
    validated,
)
from bayesmix._threads import one_blas_thread, single_blas_thread
from bayesmix._validation import (
    PACKAGE_DIR,
    MixtureData,
    check_data,
    check_enough_samples,
    check_sample_weight,
)
from bayesmix.diagnostics import sampler_problems, summary_table
from bayesmix.em.chunked import EMSteps, OnlineEM, fit_chunked, in_memory_pass, sample_indices
from bayesmix.em.loop import INITS, EMResult
from bayesmix.exceptions import (
    BayesmixDeprecationWarning,
    DataError,
    InvalidParameterError,
    LoadError,
    NotFittedError,
    SamplerWarning,
)
from bayesmix.nuts import NUTS_SAMPLERS
from bayesmix.nuts import jax as _jax
from bayesmix.nuts import sampler as _nutpie
from bayesmix.priors import Prior, resolve_priors
from bayesmix.stats import (
    pointwise_log_likelihood,
    posterior_log_density,
    posterior_responsibilities,
    relabel_permutations,
)

__all__ = ["MixtureModel"]

# Groups of replicated data that save() leaves out unless asked (they can be drawn again).
_PREDICTIVE_GROUPS = ("posterior_predictive", "prior", "prior_predictive")


@dataclasses.dataclass(frozen=True)
class _Features:
    """The columns of data that a fit does not store (a stream of batches)."""

    features: list[str]

    @property
    def n_features(self) -> int:
        """Number of columns."""
        return len(self.features)


_log = logging.getLogger("bayesmix")

# The EM result of every family.
AnyEMResult = EMResult

METHODS = ("nuts", "em", "laplace")
# Laplace draws when fit(method="laplace") is not given draws= (PSIS needs a few thousand).
_LAPLACE_DRAWS = 4000
# Laplace's exact-density pass evaluates blocks of draws of at most this many
# (draw, observation) values at once (32 MiB of float64).
_BATCH_VALUES = 2**22

# The declaration of fit's arguments (bayesmix._params), checked before any work.
_FIT_CONSTRAINTS: dict[str, list[Any]] = {
    "X": ["no_validation"],  # check_data
    "y": ["no_validation"],  # ignored (a string: the deprecated positional method)
    "method": [Options(*METHODS)],
    "draws": [None, *POSITIVE_INT],
    "tune": POSITIVE_INT,
    "chains": POSITIVE_INT,
    "cores": [None, *POSITIVE_INT],
    "target_accept": TARGET_ACCEPT,
    "nuts_sampler": [Options(*NUTS_SAMPLERS)],
    "random_seed": SEED,
    "progressbar": ["boolean"],
    "log_likelihood": [None, "boolean", Hint("None stores it when it is small enough.")],
    "sample_weight": ["no_validation"],  # check_sample_weight, against X
    "warm_start": ["boolean"],
}
# The pointwise log-likelihood (chains x draws x observations, float64) is stored with a
# NUTS fit by default up to this many values (256 MiB); beyond, on request.
_LOG_LIKELIHOOD_MAX_VALUES = 2**25


def _sampler_seed(rng: np.random.Generator, random_seed: int | None) -> int:
    """Return ``random_seed``, or one drawn from the estimator's ``rng`` when it is None."""
    return int(rng.integers(2**31 - 1)) if random_seed is None else random_seed


def _summed_log_likelihood(
    pointwise: Callable[[np.ndarray, tuple], np.ndarray],
    params: tuple[np.ndarray, ...],
    X: np.ndarray,
    w: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """``sum_n w_n log p(x_n | theta_s)`` of one chunk for every point ``s`` (a data pass task)."""
    n_points = params[0].shape[0]
    out = np.empty(n_points)
    block = max(1, _BATCH_VALUES // max(1, X.shape[0]))
    for first in range(0, n_points, block):
        part = pointwise(X, tuple(p[first : first + block] for p in params))
        out[first : first + part.shape[0]] = part.sum(axis=1) if w is None else part @ w
    return {"log_likelihood": out}


class MixtureModel(ABC):
    """Base class of the bayesmix mixture families (not instantiated directly).

    **The family contract.** A family module implements, and this class uses nothing
    else of it:

    ==========================  ==========================================================
    ``_family``                 its name (as in ``EMResult.family``)
    ``_component_vars``         posterior variables of a component, after ``weights``
    ``plot_kind``               ``"continuous"``, ``"counts"`` or ``"binary"`` (plots)
    ``__init__``                keyword-only, stores its arguments unchanged, no work
    ``_rv_shapes``              dims of every random variable (the prior keys)
    ``_default_priors``         data-scaled defaults (use ``data.sample_weight``)
    ``_allowed_priors``         the distributions each prior key accepts
    ``_check_data``             family data checks (counts, 0/1, ...); optional
    ``_check_method``           whether a fit method applies to the data; optional
    ``_build``                  the ``pm.Model``: labels summed out, observed ``x`` (dims
                                obs, feature) with a pointwise log-likelihood
    ``component_log_prob``     NumPy ``log p(x_n | theta_k)`` of flat draws
    ``_run_em``                 EM through :func:`bayesmix.em.loop.converge` /
                                ``_fit_restarts`` with ``data.sample_weight``, returning
                                an :class:`~bayesmix.em.loop.EMResult`
    ``_point_from_em``          the EM estimate as posterior variables
    ``_start_from_em``          the NUTS start (inside the support); optional
    ``_relabel_locations``      component summaries matched when relabelling draws
    ``_fitted_attributes``      the trailing-underscore attributes from posterior means
    ``_n_parameters``           free parameters (BIC, AIC)
    ``_scalar_parameters``      flattening to labelled scalars; optional
    ``_nuts_target``            a fused log density + gradient for nutpie; optional
    ``_fast_pointwise``         a compiled mixture log density and responsibilities;
                                optional
    ``_far_log_prob``           exact terms of the log densities of rows far out in the
                                tails (:class:`~bayesmix.stats.FarTerms`), for their
                                responsibilities; optional
    ``_em_steps``               EM as sufficient statistics (an
                                :class:`~bayesmix.em.chunked.EMSteps`) for chunked data
                                (Dask, Zarr, Parquet); optional
    ``_order_em``               the canonical order of the components of an EM result
    ``_posterior_supports``     the support of each posterior variable, checked when a
                                fit is loaded (default: weights on the simplex, the
                                rest finite)
    ``_response``               the family as the component of a mixture of
                                regressions (a :class:`bayesmix._glm.Response`); optional
    ==========================  ==========================================================

    Everything else (validation, the EM loop, NUTS, Laplace coordinates, relabelling,
    the DataTree, diagnostics, save/load, plots, compare, select_k, the CLI) is written
    once and works for every registered family (:data:`bayesmix.families.FAMILIES`).
    """

    _family: str = ""
    # The observed variable of the PyMC model and of the log_likelihood group.
    _observed: str = "x"
    # Posterior variables that parameterise each component's density, in the order that
    # ``component_log_prob`` takes them (component axis first after chain and draw).
    _component_vars: tuple[str, ...] = ()
    # Whether boolean DataFrame columns are data (binary families) or an encoding mistake.
    _accepts_bool = False
    #: How :func:`bayesmix.plot_components` and :func:`bayesmix.plot_ppc` draw the data:
    #: ``"continuous"`` (densities, ellipses), ``"counts"`` (frequencies of each count per
    #: feature) or ``"binary"`` (item profiles, number of positive items).
    plot_kind: str = "continuous"

    @property
    def _data_kind(self) -> str:
        """What the observed values are (``plot_kind``'s three kinds): the PPC's drawing."""
        return self.plot_kind

    # What every constructor argument accepts (bayesmix._params), checked when the model
    # is fitted (the constructor stores its arguments and does no work). A family adds
    # its own arguments: {**MixtureModel._parameter_constraints, "name": [...]}.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_components": POSITIVE_INT,
        "priors": [
            None,
            Mapping,
            Hint(
                "Pass a dict of bayesmix.Prior by random variable, such as priors="
                "{'weights': bm.Prior('Dirichlet', a=1.0)}."
            ),
        ],
        "n_init": POSITIVE_INT,
        "init": [Options(*INITS)],
        "max_iter": POSITIVE_INT,
        "tol": [Interval(Real, 0, None)],
        "random_state": SEED,
    }

    # -- hooks a family implements ---------------------------------------------------------

    @staticmethod
    @abstractmethod
    def component_log_prob(X: np.ndarray, *params: np.ndarray) -> np.ndarray:
        """Return ``log p(x_n | theta_k)`` of shape (n_draws, n_samples, n_components).

        Public: ``params`` are the component parameters of :meth:`posterior_arrays` (after
        ``weights``), with the draws on the first axis.
        """

    @abstractmethod
    def _relabel_locations(self, params: dict[str, np.ndarray], data: MixtureData) -> np.ndarray:
        """Component summaries (n_draws, K, F) on a common scale, matched when relabelling."""

    @abstractmethod
    def _fitted_attributes(self, point: dict[str, np.ndarray]) -> None:
        """Set the family's fitted attributes from the posterior means of ``_component_vars``."""

    @abstractmethod
    def _rv_shapes(self, n_features: int) -> dict[str, tuple[str, ...]]:
        """Return the dims of every free random variable by name (the prior keys)."""

    @abstractmethod
    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        """Return weakly informative priors scaled to ``data`` (and its sample_weight)."""

    @abstractmethod
    def _allowed_priors(self) -> dict[str, frozenset[str]]:
        """Return the distribution names each prior key accepts."""

    @abstractmethod
    def _build(self, data: MixtureData, priors: dict[str, Prior]) -> pm.Model:
        """Return the PyMC model: ``x_data`` observed as ``x``, labels summed out."""

    @abstractmethod
    def _run_em(
        self, data: MixtureData, rng: np.random.Generator, priors: dict[str, Prior]
    ) -> AnyEMResult:
        """Fit EM (restarts seeded by ``rng``) to ``data``, weighted by data.sample_weight."""

    @abstractmethod
    def _point_from_em(self, em: AnyEMResult, n_features: int) -> dict[str, np.ndarray]:
        """Return the EM estimate as values of the posterior variables."""

    @abstractmethod
    def _n_parameters(self, n_features: int) -> int:
        """Return the number of free parameters (as scikit-learn counts them)."""

    def _check_method(self, method: str, data: MixtureData) -> None:
        """Raise before any work if ``method`` cannot fit these data with these settings."""
        return None  # every method, unless a family says otherwise

    def _start_from_em(self, em: AnyEMResult, n_features: int) -> dict[str, np.ndarray]:
        """Return the NUTS start: the EM point, moved inside the support if on its edge."""
        return self._point_from_em(em, n_features)

    def _em_steps(
        self, priors: dict[str, Prior], n_features: int, data_pass: Callable[[Callable], dict]
    ) -> EMSteps:
        """Return the family's EM as sufficient statistics, for chunked data."""
        raise InvalidParameterError(
            f"{type(self).__name__} cannot be fitted to chunked data (Dask, Zarr, Parquet) "
            "yet: its EM has no sufficient-statistics form in this version. Load the data "
            "into memory (X.compute(), or a sample of it) and fit that."
        )

    def _order_em(self, em: AnyEMResult) -> AnyEMResult:
        """Return ``em`` with its components in the family's canonical order."""
        return em

    @property
    def _summary_vars(self) -> tuple[str, ...]:
        """Posterior variables in summaries, comparisons and diagnostics."""
        return ("weights", *self._component_vars)

    @property
    def _diagnostic_vars(self) -> tuple[str, ...]:
        """Free variables shown by trace and rank plots (not correlation factors)."""
        shapes = self._rv_shapes(self.n_features_in_)
        return tuple(name for name, dims in shapes.items() if "feature_bis" not in dims)

    def _scalar_parameters(
        self, draws: tuple[np.ndarray, ...], *, components: list[Any], features: list[Any]
    ) -> tuple[list[str], list[str], np.ndarray]:
        """Flatten flat draws (weights, *component params) to labelled scalar columns.

        Every entry of every variable, labelled as :func:`arviz_stats.summary` does
        (``"weights[0]"``, ``"rates[1, count]"``); families with redundant entries
        (symmetric matrices) override this.
        """
        dims = self._posterior_dims(len(features))
        labels_of = {"component": components, **self._feature_dims(features)}
        variables, labels, columns = [], [], []
        for name, values in zip(self._summary_vars, draws, strict=True):
            var_dims = dims.get(name, ["component"])
            # Draws come component first (_datatree.posterior_draws); labels follow the
            # posterior's own order of dims, as arviz_stats.summary's.
            drawn = ["component", *(d for d in var_dims if d != "component")]
            if "component" in var_dims and drawn != var_dims:
                order = [drawn.index(d) + 1 for d in var_dims]
                values = np.transpose(values, [0, *order])
            for index in np.ndindex(values.shape[1:]):
                text = ", ".join(
                    str(labels_of[dim][i]) for dim, i in zip(var_dims, index, strict=True)
                )
                variables.append(name)
                labels.append(f"{name}[{text}]")
                columns.append(values[(slice(None), *index)])
        return variables, labels, np.stack(columns, axis=-1)

    def _feature_dims(self, features: list[Any]) -> dict[str, list[Any]]:
        """Labels of the posterior dims other than ``component``, from ``features``."""
        return {"feature": features, "feature_bis": features}

    def _scalar_names(self, post: xr.DataTree) -> dict[str, list[Any]]:
        """Return the ``components`` and ``features`` of :meth:`_scalar_parameters`."""
        return {
            "components": post["component"].to_numpy().tolist(),
            "features": [str(f) for f in post["feature"].to_numpy()],
        }

    def _posterior_dims(self, n_features: int) -> dict[str, list[str]]:
        """Dims of every posterior variable (free and deterministic)."""
        return {name: list(d) for name, d in self._rv_shapes(n_features).items()}

    def _posterior_supports(self) -> dict[str, str]:
        """Support of each posterior variable, checked when a fit is loaded.

        Names of :data:`bayesmix._datatree.SUPPORTS`: ``"simplex"``, ``"positive"``,
        ``"nonnegative"``, ``"unit_interval"``, ``"positive_definite"`` (symmetric
        matrices on the last two dims), ``"correlation_cholesky"``, ``"real"``. A
        variable not listed only has to be finite.
        """
        return {"weights": "simplex"}

    def _check_data(self, data: MixtureData) -> None:
        """Run family-specific checks of the training data (counts, binary values, ...)."""
        return None

    @property
    def _models_missing(self) -> bool:
        """Whether missing values (NaN) are modelled (a family's ``missing="model"``)."""
        return getattr(self, "missing", "raise") == "model"

    # Optional: ``fast_pointwise(X, weights, *params, out=out, responsibilities=False)
    # -> bool``, a compiled mixture log density that fills ``out`` (draws, N) when it is
    # the faster way (:func:`bayesmix.stats.pointwise_log_likelihood`), or with
    # ``responsibilities`` adds the responsibilities summed over the draws to ``out``
    # (N, K) (:func:`bayesmix.stats.posterior_responsibilities`); None uses
    # ``component_log_prob``.
    _fast_pointwise: Any = None

    # Optional: ``far_log_prob(X, *params) -> FarTerms | None``, the component log
    # densities of the rows of X far out in the family's tails as exact polynomials in a
    # power of two (:class:`bayesmix.stats.FarTerms`), from which
    # :func:`bayesmix.stats.posterior_responsibilities` computes their responsibilities;
    # None: the log densities are compared as they are.
    _far_log_prob: Any = None

    def _nuts_target(self, data: MixtureData, priors: dict[str, Prior]) -> Any:
        """Return a fused log density + gradient for nutpie, or None (compile the PyMC model).

        Optional. The target has the interface of
        :class:`bayesmix.families.gaussian._nuts_kernel.FastGaussian` (``free``,
        ``unconstrain``, ``shared_data``, ``logp_dlogp``, ``nutpie_model``) and samples
        exactly the posterior of :meth:`_build`, in the same variables.
        """
        return None

    def _fused_target(self, data: MixtureData, priors: dict[str, Prior]) -> Any:
        """Return the family's fused target (:meth:`_nuts_target`) for ``data``, or None.

        The fused kernels take complete data only: with missing values (NaN) NUTS and
        Laplace sample the PyMC model, whose likelihood integrates them out.
        """
        if np.isnan(data.values).any():
            _log.info("X has missing values (NaN): the PyMC model, not the fused kernel")
            return None
        return self._nuts_target(data, priors)

    # -- specification -------------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Return the constructor arguments, as scikit-learn estimators do.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of arguments that are estimators themselves, as
            ``"name__parameter"`` (scikit-learn's convention; bayesmix's own arguments
            are plain values, so this only matters for a subclass that takes one).

        Returns
        -------
        dict of str to object
            Every constructor argument by name, unchanged (not copied).
        """
        params = {name: getattr(self, name) for name in self._param_names()}
        if deep:
            for name, value in list(params.items()):
                if hasattr(value, "get_params") and not isinstance(value, type):
                    for key, inner in value.get_params(deep=True).items():
                        params[f"{name}__{key}"] = inner
        return params

    def set_params(self, **params: Any) -> Self:
        """Set constructor arguments by name and return the estimator (scikit-learn's API).

        Values are stored unchanged and checked when the model is fitted, as the
        constructor's are. ``"name__parameter"`` sets a parameter of an argument that
        is itself an estimator. A fit already made is kept until the next ``fit``.

        Returns
        -------
        self

        Raises
        ------
        bayesmix.exceptions.InvalidParameterError
            For a name that is not a constructor argument (the message lists them).
        """
        valid = self._param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                hint = difflib.get_close_matches(name, valid, n=1)
                raise InvalidParameterError(
                    f"{type(self).__name__} has no parameter {name!r}; its parameters are "
                    f"{valid}." + (f" Did you mean {hint[0]!r}?" if hint else "")
                )
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __sklearn_tags__(self) -> Any:
        """Return scikit-learn's tags of this estimator (called by scikit-learn only).

        scikit-learn is imported here, when scikit-learn itself asks; bayesmix does not
        depend on it. A density estimator whose target is ignored, taking 2-D real data;
        families for counts or binary items declare non-negative input.
        """
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type="density_estimator",
            target_tags=TargetTags(required=False),
            input_tags=InputTags(positive_only=self.plot_kind != "continuous"),
        )

    def __sklearn_is_fitted__(self) -> bool:
        """Whether the model is fitted (scikit-learn's ``check_is_fitted`` asks this)."""
        return "idata" in self.__dict__

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"

    def _min_samples(self, n_features: int) -> tuple[int, str]:
        """Fewest samples the model can be fitted to, and why (families may override)."""
        return self.n_components, "at least one sample per component"

    def _check_params(self) -> None:
        """Check every constructor argument against ``_parameter_constraints``."""
        validate_params(
            self._parameter_constraints,
            self.get_params(deep=False),
            type(self).__name__,
            defaults=signature_defaults(type(self).__init__),
        )

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: fitted attributes before ``fit``.
        if name == "idata" or (name.endswith("_") and not name.startswith("__")):
            raise NotFittedError(
                f"this {type(self).__name__} has no {name!r} yet because it is not fitted; "
                "call fit(X) first (or bayesmix.load a saved fit)."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _prepare(self, X: Any, sample_weight: Any = None) -> tuple[MixtureData, dict[str, Prior]]:
        """Validate parameters, data and weights and resolve the priors; no side effects."""
        self._check_params()
        data = check_data(
            X,
            n_components=self.n_components,
            allow_bool=self._accepts_bool,
            allow_missing=self._models_missing,
        )
        weights = check_sample_weight(sample_weight, data.n_samples)
        if weights is not None:
            data = dataclasses.replace(data, sample_weight=weights)
        self._check_data(data)
        check_enough_samples(data, *self._min_samples(data.n_features))
        return data, self._resolve_priors(data)

    def _resolve_priors(self, data: MixtureData) -> dict[str, Prior]:
        """Return the user's priors over the data-scaled defaults, shapes checked (K, D)."""
        dims = self._rv_shapes(data.n_features)
        sizes = {dim: len(values) for dim, values in self._coords(data).items() if dim != "obs"}
        return resolve_priors(
            self._default_priors(data),
            self.priors,
            self._allowed_priors(),
            dims={key: (tuple(sizes[d] for d in names), names) for key, names in dims.items()},
        )

    def build_model(self, X: Any, sample_weight: Any = None) -> pm.Model:
        """Build the PyMC model for data ``X`` without fitting anything.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights: the model's log-likelihood is ``sum_n w_n log p(x_n)``
            (a potential ``sample_weight`` adds ``(w_n - 1) log p(x_n)`` to the observed
            variable's terms).

        Returns
        -------
        pymc.Model
            The model with the component labels marginalised out; its observed
            variable ``x`` has one log-likelihood term per observation.
        """
        data, priors = self._prepare(X, sample_weight)
        return self._model(data, priors)

    def _model(self, data: MixtureData, priors: dict[str, Prior]) -> pm.Model:
        """Return the family's PyMC model, with the frequency weights if the data have them."""
        model = self._build(data, priors)
        if data.sample_weight is not None:
            with model:
                weights = pm.Data("w_data", data.sample_weight, dims=("obs",))
                observed = model[self._observed]
                pointwise = pm.logp(observed, model.rvs_to_values[observed])
                pm.Potential("sample_weight", ((weights - 1.0) * pointwise).sum())
        return model

    # -- fitting -------------------------------------------------------------------------

    @single_blas_thread
    @validated(_FIT_CONSTRAINTS)
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        method: Literal["nuts", "em", "laplace"] = "nuts",
        draws: int | None = None,
        tune: int = 1000,
        chains: int = 4,
        cores: int | None = None,
        target_accept: float = 0.9,
        nuts_sampler: Literal["nutpie", "pymc", "numpyro", "blackjax"] = "nutpie",
        random_seed: int | None = None,
        progressbar: bool = True,
        log_likelihood: bool | None = None,
        sample_weight: Any = None,
        warm_start: bool = False,
    ) -> Self:
        """Fit the mixture to ``X``: NUTS or Laplace + PSIS (the posterior), or EM (a point).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples,)
            NumPy array, pandas DataFrame or Series. Column names and the index become
            the ``feature`` and ``obs`` coordinates of the result.
        y : ignored
            Not used: present so that scikit-learn's ``Pipeline`` and ``GridSearchCV``,
            which pass ``fit(X, y)``, can fit the model. (Passing the method here, as
            ``fit(X, "em")``, is deprecated: write ``fit(X, method="em")``.)
        method : {"nuts", "em", "laplace"}, default="nuts"
            ``"nuts"`` samples the posterior, every chain starting at the EM solution;
            ``"em"`` stores the EM estimate as a one-chain, one-draw posterior;
            ``"laplace"`` draws from the Gaussian approximation at the posterior mode
            (found from the EM solution) and corrects the draws by Pareto smoothed
            importance sampling (:mod:`bayesmix.laplace`): one chain of ``draws``
            resampled draws, the importance weights in ``sample_stats``, PSIS's k-hat in
            ``idata.attrs["laplace_khat"]``, and a
            :class:`~bayesmix.exceptions.SamplerWarning` when k-hat > 0.7 (then use
            NUTS). For large N, where the posterior is close to Gaussian, it is the
            fast posterior. On chunked data (Dask, Zarr, Parquet) ``"nuts"`` evaluates
            every gradient as one pass over the persisted chunks
            (:mod:`bayesmix.nuts.distributed`; nutpie only; complete rows only, so a
            model with ``missing="model"`` is refused there: ``"em"`` and ``"laplace"``
            integrate missing values out on chunked data too).
        draws : int, optional
            NUTS: draws per chain (default 1000). Laplace: proposals and resampled
            draws (default 4000).
        tune, chains : int, default=1000, 4
            NUTS's tuning steps per chain, and the number of chains (ignored by
            ``"laplace"`` and ``"em"``).
        cores : int, optional
            Chains run in parallel; defaults to ``min(chains, number of CPUs)``.
        target_accept : float, default=0.9
            NUTS target acceptance rate; raise it if there are divergences.
        nuts_sampler : {"nutpie", "pymc", "numpyro", "blackjax"}, default="nutpie"
            NUTS implementation. nutpie starts every chain exactly at the EM estimate
            and moves in Laplace coordinates; the others start each chain at a jittered
            copy of it. ``"numpyro"`` and ``"blackjax"`` run the PyMC model on JAX, on a
            GPU when JAX finds one (optional extra ``jax``:
            :mod:`bayesmix.nuts.jax`); the result has the same layout.
        random_seed : int, optional
            Seed of the sampler; defaults to one derived from ``random_state``.
        progressbar : bool, default=True
            Show sampling progress.
        log_likelihood : bool, optional
            Store the pointwise log-likelihood of every draw (the ``log_likelihood``
            group, for LOO and WAIC) with a NUTS fit. By default it is stored when it
            has at most 2**25 values (chains x draws x observations, 256 MiB); for
            larger fits call :meth:`compute_log_likelihood` when it is needed.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative frequency (or importance) weights of the rows of ``X``: EM
            weights every sufficient statistic and NUTS samples the posterior with the
            log-likelihood ``sum_n w_n log p(x_n)``, so integer weights fit the data with
            every row repeated ``w_n`` times. Stored in ``observed_data`` (saved with the
            fit); ``log_likelihood`` holds the unweighted ``log p(x_n)``.
        warm_start : bool, default=False
            Start EM from the current estimate (of an earlier ``fit`` or of
            :meth:`partial_fit`) instead of k-means++ restarts: a few exact passes after
            online EM over a stream reach the batch optimum. Ignored when the model is
            not fitted yet.

        Returns
        -------
        self
            The fitted model. ``self.idata.attrs["timings"]`` (JSON) records the seconds
            spent in each phase: ``em``, and for NUTS ``build`` (the PyMC model),
            ``nuts`` (compilation, unless a compiled model is reused, and sampling) and
            ``postprocess`` (relabelling, log-likelihood, diagnostics).
        """
        if isinstance(y, str):  # fit(X, "em"): the method where scikit-learn passes y
            warnings.warn(
                f"fit(X, {y!r}) passes the method as the second argument, which is now y "
                f"(ignored, for scikit-learn); write fit(X, method={y!r}). The positional "
                "form will be removed.",
                BayesmixDeprecationWarning,
                skip_file_prefixes=(PACKAGE_DIR,),
            )
            method = y
            validate_params(
                {"method": _FIT_CONSTRAINTS["method"]}, {"method": y}, f"{type(self).__name__}.fit"
            )
        if method == "nuts" and nuts_sampler in _jax.JAX_SAMPLERS:
            _jax.require(nuts_sampler)  # the optional extra, before any work
        if _dask.is_chunked(X):
            nuts = {"tune": tune, "chains": chains, "cores": cores, "nuts_sampler": nuts_sampler}
            nuts |= {"target_accept": target_accept, "progressbar": progressbar}
            return self._fit_chunked(
                X, method, sample_weight, warm_start, draws=draws, random_seed=random_seed, **nuts
            )
        data, priors = self._prepare(X, sample_weight)
        self._check_method(method, data)
        rng = np.random.default_rng(self.random_state)
        started = time.perf_counter()
        start = self._warm_start(warm_start, data.n_features)
        if start is None:
            em = self._run_em(data, rng, priors)
        else:
            data_pass = in_memory_pass(data.values, data.sample_weight)
            steps = self._em_steps(priors, data.n_features, data_pass)
            em = self._em_from(steps, start, data.n_features, data)
        timings = {"em": time.perf_counter() - started}
        if method == "em":
            idata = self._em_datatree(data, em)
            settings: dict[str, Any] = {}
        elif method == "laplace":
            seed = _sampler_seed(rng, random_seed)
            settings = {"draws": draws or _LAPLACE_DRAWS, "random_seed": seed}
            if log_likelihood is None:
                log_likelihood = data.n_samples * settings["draws"] <= _LOG_LIKELIHOOD_MAX_VALUES
            idata = self._fit_laplace(data, priors, em, log_likelihood=log_likelihood, **settings)
        else:
            draws = draws or 1000
            seed = _sampler_seed(rng, random_seed)
            settings = {
                "draws": draws,
                "tune": tune,
                "chains": chains,
                "target_accept": target_accept,
                "nuts_sampler": nuts_sampler,
                "random_seed": seed,
            }
            if log_likelihood is None:
                log_likelihood = data.n_samples * draws * chains <= _LOG_LIKELIHOOD_MAX_VALUES
            idata = self._sample_nuts(
                data,
                priors,
                em,
                cores=cores,
                progressbar=progressbar,
                log_likelihood=log_likelihood,
                **settings,
            )
        timings |= json.loads(idata.attrs.get("timings", "{}"))
        idata.attrs.update(self._root_attrs(priors, em, method, settings))
        idata.attrs["timings"] = json.dumps({key: round(v, 4) for key, v in timings.items()})
        self._set_fitted(data, priors, em, idata)
        return self

    @single_blas_thread
    @validated(
        {
            "kappa": [
                Interval(Real, 0.5, 1, closed="right"),
                Hint("Try 0.75 (the step-size exponent of online EM)."),
            ]
        }
    )
    def partial_fit(
        self, X: Any, y: Any = None, sample_weight: Any = None, *, kappa: float = 0.75
    ) -> Self:
        """Update the EM estimate with one batch of data (stepwise online EM).

        For data read once (a stream, or batches of a data set too large to pass over
        many times): each call blends the batch's E-step statistics into a running
        average with step size ``(t + 2)^-kappa`` and sets the parameters to its M-step
        (Cappé & Moulines 2009; :class:`bayesmix.em.chunked.OnlineEM`). The first call
        fits EM to its batch as :meth:`fit` does (k-means++ restarts; at least
        ``n_components`` rows), which fixes the data-scaled priors and gives online EM a
        good start; after :meth:`fit` or :func:`bayesmix.load`, it
        continues from the current estimate with a new running average. Online EM ends
        near the optimum (measured on 20,000 shuffled rows of three separated 2-D
        Gaussians in 20 batches: 1.3e-4 nats per row below the batch optimum with
        ``kappa=0.75``, 4.7e-4 with 0.6, 1.8e-5 with 1); ``fit(X, method="em",
        warm_start=True)`` then reaches it in a few exact passes. The result is an EM fit
        (``idata`` without the data, ``em_.n_iter`` batches seen, ``em_.log_likelihood``
        the running mean log-likelihood of the batches); :meth:`fit` starts afresh.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One batch (in memory). Shuffle the stream if its order is not random.
        y : ignored
            Not used, present for scikit-learn's API (``partial_fit(X, y)``).
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights of the batch's rows.
        kappa : float, default=0.75
            Step-size exponent in (0.5, 1]: smaller forgets the early batches (and a
            drifting stream) faster; 1 averages every batch equally, best for a
            shuffled data set read once.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> import bayesmix as bm
        >>> X = bm.datasets.load_faithful().to_numpy()
        >>> gm = bm.GaussianMixture(n_components=2, random_state=0)
        >>> for batch in np.array_split(np.random.default_rng(0).permutation(X), 4):
        ...     gm = gm.partial_fit(batch)
        >>> gm.em_.n_iter
        4
        >>> gm = gm.fit(X, method="em", warm_start=True)
        """
        online = self.__dict__.get("_online")
        if online is None and "em_" not in self.__dict__:  # the first batch: fit EM to it
            data, priors = self._prepare(X, sample_weight)
            values, w = data.values, data.sample_weight
            steps = self._online_steps(priors, data.n_features, in_memory_pass(values, w))

            def rows(indices: np.ndarray | None) -> tuple:
                if indices is None:
                    return values, w
                return values[indices], None if w is None else w[indices]

            em = fit_chunked(
                steps,
                in_memory_pass(values, w),
                rows,
                data.n_samples,
                n_init=self.n_init,
                max_iter=self.max_iter,
                tol=self.tol,
                rng=np.random.default_rng(self.random_state),
                init=self.init,
            )
            online = OnlineEM(steps, em.weights, em.params, kappa=float(kappa))
            online.prime(values, w, em.log_likelihood)
            features = data.features
        else:
            data = self._check_X(X)
            values = data.values
            w = check_sample_weight(sample_weight, data.n_samples)
            priors, features = self.priors_, self.feature_names_in_
            if online is None:  # after fit or load: continue from the current estimate
                steps = self._online_steps(priors, data.n_features, in_memory_pass(values, w))
                start = self._warm_start(True, data.n_features)
                online = OnlineEM(steps, *start, kappa=float(kappa))
            online.kappa = float(kappa)
            online.update(values, w)
        em = self._order_em(online.result())
        stream = {
            "kind": "stream",
            "batches": online.n_updates,
            "weight_seen": online.seen,
            "n_features": len(features),
        }
        meta = _Features(list(features))
        idata = self._em_datatree(meta, em)
        idata.attrs.update(self._root_attrs(priors, em, "em", {}))
        idata.attrs["data_source"] = json.dumps(stream)
        self._set_fitted(meta, priors, em, idata)
        self._online = online
        return self

    def _online_steps(
        self, priors: dict[str, Prior], n_features: int, data_pass: Callable[[Callable], dict]
    ) -> EMSteps:
        steps = self._em_steps(priors, n_features, data_pass)
        if not steps.online:
            raise InvalidParameterError(
                f"{type(self).__name__} has no online EM: its sufficient statistics are "
                "defined on the values the first pass saw. Fit the data with fit(X, "
                'method="em") (in memory, or on Dask for data beyond memory).'
            )
        return steps

    def _warm_start(self, warm_start: bool, n_features: int) -> tuple | None:
        """Return the current (weights, params) to start EM from, or None."""
        if not warm_start or "em_" not in self.__dict__:
            return None
        if n_features != self.n_features_in_:
            raise DataError(
                f"warm_start=True continues the current fit, which has "
                f"{self.n_features_in_} features ({self.feature_names_in_}); X has "
                f"{n_features}. Pass the same columns, or warm_start=False."
            )
        return self.em_.weights.copy(), {k: v.copy() for k, v in self.em_.params.items()}

    def _em_from(
        self,
        steps: EMSteps,
        start: tuple,
        n_features: int,
        data: MixtureData | _dask.ChunkedData | _Features,
    ) -> AnyEMResult:
        """EM over ``data`` (in memory: one chunk) from ``start``; one restart."""
        steps = dataclasses.replace(steps, initialise=lambda rows, n, rng, partition: start)
        if isinstance(data, MixtureData):
            data_pass = in_memory_pass(data.values, data.sample_weight)
        else:
            data_pass = data.data_pass
        em = fit_chunked(
            steps,
            data_pass,
            lambda indices: (None, None),  # not called: the start is given
            data.n_samples,
            n_init=1,
            max_iter=self.max_iter,
            tol=self.tol,
            rng=np.random.default_rng(self.random_state),
        )
        return self._order_em(em)

    def _fit_chunked(
        self,
        X: Any,
        method: str,
        sample_weight: Any,
        warm_start: bool,
        *,
        draws: int | None = None,
        random_seed: int | None = None,
        nuts_sampler: str = "nutpie",
        progressbar: bool = True,
        **nuts: Any,
    ) -> Self:
        """EM, Laplace + PSIS or NUTS on chunked data (:mod:`bayesmix.dask`), nothing loaded.

        EM takes one pass per iteration; ``method="laplace"`` then a pass per Newton
        step to the mode and one for the draws' exact density; ``method="nuts"`` one
        pass per gradient over the persisted chunks (:mod:`bayesmix.nuts.distributed`).
        """
        if method == "nuts" and nuts_sampler != "nutpie":
            raise InvalidParameterError(
                f"Data on Dask (or a Zarr / Parquet path) are sampled by nutpie, each "
                f"gradient one Dask pass; got nuts_sampler={nuts_sampler!r}. Use "
                "nuts_sampler='nutpie', or load the data into memory (X.compute()) for "
                "the JAX samplers."
            )
        self._check_params()
        if method == "nuts" and self._models_missing:
            raise InvalidParameterError(
                "NUTS on chunked data (Dask, Zarr, Parquet) needs complete rows: each "
                "gradient is a pass of the fused or compiled likelihood over the chunks, "
                "which does not integrate missing values out; got missing='model'. Use "
                "method='em' or method='laplace' (both integrate missing values, NaN, out "
                "on chunked data), or load the data into memory (X.compute()) for NUTS "
                "with missing='model'. If X has no missing values, pass missing='raise'."
            )
        data = _dask.as_chunked(
            X, sample_weight, allow_bool=self._accepts_bool, allow_missing=self._models_missing
        )
        if not 1 <= self.n_components <= data.n_samples:
            raise InvalidParameterError(
                f"n_components must be between 1 and the number of samples "
                f"({data.n_samples}); got {self.n_components}."
            )
        started = time.perf_counter()
        # Every chunk of every pass is checked as fit checks in-memory data (a fresh copy
        # of the estimator: tasks pickle the check, and this one may hold an old fit).
        data = data.with_check(type(self)(**self.get_params(deep=False))._check_data)
        start = self._warm_start(warm_start, data.n_features)
        rng = np.random.default_rng(self.random_state)
        settings: dict[str, Any] = {}
        with _dask.one_process_pool():
            priors, em, sample = self._chunked_em(data, start)
            timings = {"em": time.perf_counter() - started}
            if method == "laplace":
                seed = _sampler_seed(rng, random_seed)
                settings = {"draws": draws or _LAPLACE_DRAWS, "random_seed": seed}
                idata = self._fit_laplace(data, priors, em, model_data=sample, **settings)
                timings |= json.loads(idata.attrs["timings"])
            elif method == "nuts":
                seed = _sampler_seed(rng, random_seed)
                settings = {"draws": draws or 1000, "random_seed": seed} | nuts
                idata = self._sample_nuts_chunked(
                    data, priors, em, sample, progressbar=progressbar, **settings
                )
                settings["nuts_sampler"] = nuts_sampler  # recorded in the root attrs
                timings |= json.loads(idata.attrs["timings"])
            else:
                idata = self._em_datatree(data, em)
        idata.attrs.update(self._root_attrs(priors, em, method, settings))
        idata.attrs["data_source"] = json.dumps(data.source)
        idata.attrs["timings"] = json.dumps({key: round(v, 4) for key, v in timings.items()})
        self._set_fitted(data, priors, em, idata)
        return self

    def _chunked_em(
        self, data: _dask.ChunkedData, start: tuple | None = None
    ) -> tuple[dict[str, Prior], AnyEMResult, MixtureData]:
        """Resolve the priors and run EM over the chunks (see :func:`fit_chunked`).

        Returns the priors, the EM result and the rows the priors were scaled to.
        """
        # The data-scaled default priors from the rows that seed EM when there are few,
        # else from 2**16 rows drawn with a fixed seed.
        values, weights = data.rows(sample_indices(data.n_samples, np.random.default_rng(0)))
        sample = MixtureData(
            values=values,
            obs=np.arange(values.shape[0]),
            features=data.features,
            sample_weight=weights,
        )
        check_enough_samples(sample, *self._min_samples(data.n_features))
        priors = self._resolve_priors(sample)
        steps = self._em_steps(priors, data.n_features, data.data_pass)
        if start is not None:
            return priors, self._em_from(steps, start, data.n_features, data), sample
        em = fit_chunked(
            steps,
            data.data_pass,
            data.rows,
            data.n_samples,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            rng=np.random.default_rng(self.random_state),
            init=self.init,
        )
        return priors, self._order_em(em), sample

    def _root_attrs(
        self, priors: dict[str, Prior], em: AnyEMResult, method: str, settings: dict[str, Any]
    ) -> dict[str, Any]:
        from bayesmix import __version__

        params = self.get_params(deep=False)
        params["priors"] = (
            None
            if params["priors"] is None
            else {
                key: (p.to_dict() if isinstance(p, Prior) else dict(p))
                for key, p in params["priors"].items()
            }
        )
        return {
            "bayesmix_version": __version__,
            "model_class": type(self).__name__,
            "params": json.dumps(params),
            "priors": json.dumps({key: p.to_dict() for key, p in priors.items()}),
            "inference_method": method,
            "em_result": json.dumps(em.to_dict()),
            "sampler_settings": json.dumps(settings),
        }

    @validated({"path": [str, os.PathLike], "predictive": ["boolean"]})
    def save(self, path: str | os.PathLike, *, predictive: bool = False) -> Path:
        """Save the fit (its ``idata`` with everything needed to rebuild it) to ``path``.

        The file is netCDF4 (HDF5), compressed, readable by :func:`xarray.open_datatree`
        and by :func:`bayesmix.load`, which restores the estimator. It is written to a
        temporary file and renamed, so a failed save leaves no truncated file. The
        posterior and prior predictive draws are left out unless ``predictive=True``:
        they are replicates of the data per draw (the demo's were 17 of its 27 MB) and
        :meth:`sample_posterior_predictive` draws them again.

        Parameters
        ----------
        path : str or path-like
            Usually ending in ``.nc``.
        predictive : bool, default=False
            Also store the ``posterior_predictive``, ``prior`` and ``prior_predictive``
            groups, if any.

        Returns
        -------
        pathlib.Path
            The path written.

        Raises
        ------
        bayesmix.exceptions.DataError
            When a label of the training data (the index of ``X``) has a NUL character,
            which netCDF cannot store. Labels that are neither strings nor numbers (the
            tuples of a pandas MultiIndex) are saved as their strings.
        """
        self._check_fitted()
        tree = self.idata
        left_out = [] if predictive else [g for g in _PREDICTIVE_GROUPS if g in tree.children]
        if left_out:
            tree = tree.copy(deep=False)
            for group in left_out:
                del tree[group]
        return _datatree.save_datatree(tree, path)

    @classmethod
    @validated({"path": [str, os.PathLike]})
    def load(cls, path: str | os.PathLike) -> Self:
        """Load a fit of this class saved with :meth:`save` (see :func:`bayesmix.load`)."""
        idata = _datatree.read_fit(path)
        name = idata.attrs["model_class"]
        if name != cls.__name__:
            raise LoadError(
                f"{str(path)!r} holds a {name} fit, not a {cls.__name__}. Load it with "
                f"bayesmix.load(path) or {name}.load(path)."
            )
        return _datatree.restore(cls, idata, path)

    @classmethod
    def _from_datatree(cls, idata: xr.DataTree) -> Self:
        """Rebuild a fitted estimator from a saved ``idata``, once all of it is checked.

        Raises
        ------
        bayesmix.exceptions.LoadError
            Naming the first field that a fit of this class cannot have
            (:func:`bayesmix._datatree.check_fit`).
        """
        checked = _datatree.check_fit(cls, idata)
        model = checked.model
        model._set_fitted(checked.data, checked.priors, checked.em, idata)
        return model

    def _set_fitted(
        self,
        data: MixtureData | _dask.ChunkedData | _Features,
        priors: dict[str, Prior],
        em: AnyEMResult,
        idata: xr.DataTree,
    ) -> None:
        self.__dict__.pop("_online", None)  # a new fit ends any online EM
        self.idata = idata
        self.em_ = em
        self.priors_ = priors
        self.n_features_in_ = data.n_features
        self.feature_names_in_ = list(data.features)
        weights, *params = self._posterior_mean()
        self.weights_ = weights
        self._fitted_attributes(dict(zip(self._component_vars, params, strict=True)))

    def _posterior_mean(self) -> list[np.ndarray]:
        """Posterior means of the weights and the component parameters."""
        return [a.mean(axis=(0, 1)) for a in self._param_draws(self.idata)]

    def _param_draws(self, idata: xr.DataTree) -> tuple[np.ndarray, ...]:
        """Return the weights and component parameters, dims (chain, draw, component, ...)."""
        return _datatree.posterior_draws(idata, ("weights", *self._component_vars))

    # -- EM result -----------------------------------------------------------------------

    def _coords(self, data: MixtureData | _dask.ChunkedData | _Features) -> dict[str, Any]:
        coords = {
            "component": np.arange(self.n_components),
            "feature": list(data.features),
            "feature_bis": list(data.features),
        }
        if isinstance(data, MixtureData):
            coords["obs"] = data.obs
        return coords

    def _var_dims(self, n_features: int) -> dict[str, list[str]]:
        dims = self._posterior_dims(n_features)
        dims[self._observed] = ["obs", "feature"]
        return dims

    def _selection_data(
        self, X: Any, *, y: Any = None, Z: Any = None, ks: list[int]
    ) -> tuple[MixtureData, Any]:
        """Validate the data of :func:`bayesmix.select_k` once for every K.

        Returns the data and what ``fit``, ``bic`` and ``predict_proba`` take of them
        (a mixture: the matrix; a mixture of regressions: its response, predictors and
        covariates).
        """
        if y is not None or Z is not None:
            raise InvalidParameterError(
                f"y and Z are the response and covariates of a mixture of regressions; "
                f"{type(self).__name__} models X alone. Pass model=bm.MixtureRegression, or "
                "leave y and Z out."
            )
        data = check_data(X, n_components=max(ks), allow_bool=self._accepts_bool, ks=ks)
        return data, data.values

    def _training_inputs(self, values: np.ndarray) -> Any:
        """Return what :meth:`predict_proba` and :meth:`score_samples` take of ``values``.

        ``values`` is the data matrix of a fit (``idata.observed_data.x``); a mixture
        takes it as it is.
        """
        return values

    def _observed_data_group(self, data: MixtureData) -> xr.Dataset:
        """Return the ``observed_data`` group of a fit to ``data``."""
        return _datatree.observed_data_group(data)

    def _pointwise(self, X: np.ndarray, draws: tuple[np.ndarray, ...]) -> np.ndarray:
        """``log p(x_n | theta^s)`` of flat draws (weights, *component params)."""
        return pointwise_log_likelihood(
            X,
            *draws,
            component_log_prob=self.component_log_prob,
            fast_pointwise=self._fast_pointwise,
        )

    def _em_datatree(
        self, data: MixtureData | _dask.ChunkedData | _Features, em: AnyEMResult
    ) -> xr.DataTree:
        point = self._point_from_em(em, data.n_features)
        idata = azb.from_dict(
            {"posterior": {key: value[None, None] for key, value in point.items()}},
            coords=self._coords(data),
            dims=self._var_dims(data.n_features),
        )
        # The data groups as the NUTS path builds them: ArviZ's from_dict deep-copies the
        # (N,) coordinate several times (25 ms of a 70 ms EM fit at N = 10^5). Chunked
        # data are not stored (idata.attrs["data_source"] says where they are).
        if isinstance(data, MixtureData):
            idata["log_likelihood"] = self._log_likelihood_group(idata, data)
            idata["observed_data"] = self._observed_data_group(data)
        idata["em_stats"] = xr.Dataset(
            {
                "lower_bound": ("iteration", np.asarray(em.lower_bounds)),
                "init_log_likelihood": ("restart", np.asarray(em.init_log_likelihoods)),
            },
            attrs={
                "n_iter": int(em.n_iter),
                "converged": int(bool(em.converged)),
                "log_likelihood": float(em.log_likelihood),
                "best_init": int(em.best_init),
                "n_init": len(em.init_log_likelihoods),
            },
        )
        return idata

    # -- NUTS ----------------------------------------------------------------------------

    def _free_start(
        self, em: AnyEMResult, n_features: int, model: pm.Model | None, fused: Any
    ) -> dict[str, np.ndarray]:
        """Return the EM start (:meth:`_start_from_em`) of the variables that are sampled.

        Those are the free variables of the family's fused kernel ``fused`` (its
        ``_nuts_target``) if given, else of the PyMC ``model``.
        """
        if fused is None:
            free = {rv.name for rv in model.free_RVs}
        else:
            free = _nutpie.fused_free_variables(fused)
        start = self._start_from_em(em, n_features)
        return {key: value for key, value in start.items() if key in free}

    def _sample_nuts(
        self,
        data: MixtureData,
        priors: dict[str, Prior],
        em: AnyEMResult,
        *,
        draws: int,
        tune: int,
        chains: int,
        cores: int | None,
        target_accept: float,
        nuts_sampler: str,
        random_seed: int,
        progressbar: bool,
        log_likelihood: bool = True,
    ) -> xr.DataTree:
        clock = time.perf_counter()
        target = self._fused_target(data, priors) if nuts_sampler == "nutpie" else None
        # The PyMC model, compiled by nutpie or sampled by PyMC; none if nutpie samples
        # the family's fused kernel.
        model = self._model(data, priors) if target is None else None
        timings = {"build": time.perf_counter() - clock}
        start = self._free_start(em, data.n_features, model, target)
        _log.info(
            "NUTS (%s): %d chains x %d draws (+%d tune), started at the EM estimate "
            "(log-likelihood %.4f per sample)",
            nuts_sampler,
            chains,
            draws,
            tune,
            em.log_likelihood,
        )
        settings = {"draws": draws, "tune": tune, "chains": chains, "cores": cores}
        clock = time.perf_counter()
        with one_blas_thread():
            if nuts_sampler == "nutpie":
                # One start for all chains, exactly the EM estimate: nutpie's default
                # U(-1, 1) jitter on the unconstrained scale is not scale aware.
                idata = _nutpie.sample_nutpie(
                    model,
                    key=self._structure_key(data, priors),
                    data=_model_data(data),
                    start=start,
                    target_accept=target_accept,
                    random_seed=random_seed,
                    progressbar=progressbar,
                    target=target,
                    **settings,
                )
            else:
                jitter_rng = np.random.default_rng(random_seed)
                initvals = [self._jitter_start(start, data, em, jitter_rng) for _ in range(chains)]
                if nuts_sampler == "pymc":
                    idata = pm.sample(
                        model=model,
                        nuts_sampler="pymc",
                        initvals=initvals,
                        init="adapt_diag",
                        target_accept=target_accept,
                        random_seed=random_seed,
                        progressbar=progressbar,
                        compute_convergence_checks=False,
                        **settings,
                    )
                else:
                    idata = _jax.sample_jax(
                        model,
                        sampler=nuts_sampler,
                        initvals=initvals,
                        target_accept=target_accept,
                        random_seed=random_seed,
                        progressbar=progressbar,
                        **settings,
                    )
        timings["nuts"] = time.perf_counter() - clock  # compile (unless cached) + sample
        clock = time.perf_counter()
        # The data as given (PyMC's copy of the model data has missing values at 0).
        idata["observed_data"] = self._observed_data_group(data)
        self._relabel(idata, em, data)
        if log_likelihood:
            idata["log_likelihood"] = self._log_likelihood_group(idata, data)
        else:
            _log.info(
                "the pointwise log-likelihood (%d values) is not stored; "
                "compute_log_likelihood() adds it",
                data.n_samples * draws * chains,
            )
        self._check_chains(idata, priors)
        timings["postprocess"] = time.perf_counter() - clock
        idata.attrs["timings"] = json.dumps(timings)
        return idata

    def _sample_nuts_chunked(
        self,
        data: _dask.ChunkedData,
        priors: dict[str, Prior],
        em: AnyEMResult,
        sample: MixtureData,
        *,
        draws: int,
        tune: int,
        chains: int,
        cores: int | None,
        target_accept: float,
        random_seed: int,
        progressbar: bool,
    ) -> xr.DataTree:
        """NUTS on chunked data, each gradient one Dask pass (:mod:`bayesmix.nuts.distributed`).

        The family's fused kernel per chunk if it has one, else the PyMC model's compiled
        log-likelihood per chunk; the model is built on ``sample`` (a sample of rows: it
        supplies the prior, the transforms and the layout, not the likelihood).
        """
        from bayesmix.nuts import distributed as _distributed

        clock = time.perf_counter()
        logp_dlogp, flat, expand = self._distributed_log_density(data, priors, em, sample)
        timings = {"build": time.perf_counter() - clock}
        _log.info(
            "NUTS on %d rows in %d chunks: %d chains x %d draws (+%d tune) from the EM estimate",
            data.n_samples,
            len(data.row_chunks),
            chains,
            draws,
            tune,
        )
        clock = time.perf_counter()
        with one_blas_thread():
            idata = _distributed.sample(
                logp_dlogp,
                expand,
                flat,
                dims=self._posterior_dims(data.n_features),
                coords=self._coords(data),
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                target_accept=target_accept,
                random_seed=random_seed,
                progressbar=progressbar,
            )
        timings["nuts"] = time.perf_counter() - clock
        clock = time.perf_counter()
        # Relabelling scales the locations by the data's spread: the sample's.
        self._relabel(idata, em, sample)
        self._check_chains(idata, priors)
        timings["postprocess"] = time.perf_counter() - clock
        idata.attrs["timings"] = json.dumps(timings)
        return idata

    def _distributed_log_density(
        self,
        data: _dask.ChunkedData,
        priors: dict[str, Prior],
        em: AnyEMResult,
        sample: MixtureData,
    ) -> tuple[Any, np.ndarray, Callable[[np.ndarray], dict[str, np.ndarray]]]:
        """Return ``(log density, flat EM start, expand)`` for NUTS on chunked data.

        The log density is a :class:`~bayesmix.nuts.distributed.DistributedLogDensity`
        over the persisted chunks of ``data``; ``expand`` maps a flat unconstrained point
        to the posterior variables.
        """
        from bayesmix.nuts import distributed as _distributed

        fused = self._fused_target(sample, priors)
        model = self._model(sample, priors) if fused is None else None
        start = self._free_start(em, data.n_features, model, fused)
        if model is not None:  # the PyMC model, compiled by PyTensor
            names = list(self._posterior_dims(data.n_features))
            target = _laplace.pymc_target(model, start, names)
            flat, expand = target.start, target.expand
            values = list(model.continuous_value_vars)
            chunk = _distributed.PyMCChunkLikelihood(model, values)
            log_prior = _distributed.pymc_log_prior(model, values)
        else:  # the family's fused kernel, chunk by chunk
            flat, expand = fused.unconstrain(start), fused.expand
            chunk = _distributed.FusedChunkLikelihood(fused)
            log_prior = chunk.log_prior
        logp_dlogp = _distributed.DistributedLogDensity(
            log_prior, chunk, data.persisted().data_pass
        )
        return logp_dlogp, flat, expand

    # -- Laplace + PSIS ------------------------------------------------------------------

    def _fit_laplace(
        self,
        data: MixtureData | _dask.ChunkedData,
        priors: dict[str, Prior],
        em: AnyEMResult,
        *,
        draws: int,
        random_seed: int,
        log_likelihood: bool = False,
        model_data: MixtureData | None = None,
    ) -> xr.DataTree:
        """Return the Laplace fit: approximation at the mode, PSIS (:mod:`bayesmix.laplace`).

        In memory, the mode by L-BFGS on the log density and its gradient (the family's
        fused kernel if it has one, else the PyMC model) and the curvature from gradient
        differences. Chunked data (Dask): Newton steps from log densities only, each step
        one batched pass (:func:`bayesmix.laplace.newton_mode`); the PyMC model is built on
        ``model_data`` (a sample of rows; it supplies the prior, the transforms and the
        constrained values, not the likelihood). Then the same draws, one batched pass
        for their exact density, PSIS and resampling.
        """
        clock = time.perf_counter()
        names = list(self._posterior_dims(data.n_features))
        chunked = isinstance(data, _dask.ChunkedData)
        data_pass = data.data_pass if chunked else in_memory_pass(data.values, data.sample_weight)
        batch = self._batch_log_likelihood(data_pass)
        fused = None if chunked else self._fused_target(data, priors)
        model = self._model(model_data if chunked else data, priors) if fused is None else None
        start = self._free_start(em, data.n_features, model, fused)
        if model is not None:  # the PyMC model, compiled by PyTensor
            target = _laplace.pymc_target(model, start, names, batch)
        else:  # the family's fused log density
            target = _laplace.fused_target(fused, _model_data(data), start)
        timings = {"build": time.perf_counter() - clock}
        clock = time.perf_counter()
        rng = np.random.default_rng(random_seed)
        with one_blas_thread():
            if chunked:
                mode, at_mode, hessian, report = _laplace.newton_mode(
                    target.batch_log_density, target.start
                )
                result = _laplace.correct(
                    mode,
                    at_mode,
                    hessian,
                    target.batch_log_density,
                    draws=draws,
                    rng=rng,
                    report=report,
                )
            else:
                result = _laplace.approximate(
                    target.logp_dlogp,
                    target.start,
                    draws=draws,
                    rng=rng,
                    batch_log_density=target.batch_log_density,
                )
        timings["laplace"] = time.perf_counter() - clock
        clock = time.perf_counter()
        expanded = [target.expand(x) for x in result.proposals[result.resampled]]
        posterior = {name: np.stack([values[name] for values in expanded])[None] for name in names}
        chosen = result.resampled
        idata = azb.from_dict(
            {
                "posterior": posterior,
                "sample_stats": {
                    "lp": result.log_density[chosen][None],
                    "log_weight": result.log_weights[chosen][None],
                    "proposal": chosen[None],
                },
            },
            coords=self._coords(data),
            dims=self._posterior_dims(data.n_features),
        )
        if not chunked:
            idata["observed_data"] = self._observed_data_group(data)
        # Relabelling scales the locations by the data's spread: the sample's, if chunked.
        self._relabel(idata, em, model_data if chunked else data)
        if log_likelihood and not chunked:
            idata["log_likelihood"] = self._log_likelihood_group(idata, data)
        self._check_laplace(idata, result, draws)
        timings["postprocess"] = time.perf_counter() - clock
        idata.attrs["timings"] = json.dumps(timings)
        return idata

    def _batch_log_likelihood(
        self, data_pass: Callable[[Callable], dict]
    ) -> Callable[[list[dict]], np.ndarray]:
        """Return ``points -> sum_n w_n log p(x_n | theta)`` of many constrained points.

        One data pass for all the points: every chunk evaluates the family's vectorised
        pointwise densities (:meth:`_pointwise`) for blocks of points (at most 32 MiB of
        ``(points, rows)`` values at once) and the chunks' sums are added up.
        """
        names = ("weights", *self._component_vars)
        # A fresh estimator: chunk tasks pickle the function, and this one may hold a fit.
        pointwise = type(self)(**self.get_params(deep=False))._pointwise

        def log_likelihood(points: list[dict]) -> np.ndarray:
            params = tuple(np.stack([point[name] for point in points]) for name in names)
            task = functools.partial(_summed_log_likelihood, pointwise, params)
            return np.asarray(data_pass(task)["log_likelihood"], dtype=np.float64)

        return log_likelihood

    def _check_laplace(
        self, idata: xr.DataTree, result: _laplace.LaplaceResult, draws: int
    ) -> None:
        """Record PSIS's k-hat and importance ESS in ``idata.attrs``; warn when k-hat > 0.7."""
        khat, ess = result.khat, result.ess
        idata.attrs.update(
            {
                "laplace_khat": float(khat),
                "laplace_ess": float(ess),
                "laplace_unique_draws": int(np.unique(result.resampled).size),
                "laplace_optimizer": json.dumps(result.optimizer),
            }
        )
        problems = []
        if khat > _laplace.KHAT_MAX:
            problems.append(
                f"Laplace + PSIS: Pareto k-hat is {khat:.2f} (above {_laplace.KHAT_MAX}): the "
                f"posterior is too far from the Gaussian approximation at its mode for "
                f"importance sampling to correct (importance ESS {ess:.0f} of {draws} "
                "draws), so these draws are not reliable. Use method='nuts'."
            )
        elif khat > _laplace.KHAT_GOOD:
            _log.info(
                "Laplace + PSIS: k-hat %.2f (between %.1f and %.1f): usable, with a "
                "noisier correction (importance ESS %.0f of %d); method='nuts' is exact",
                khat,
                _laplace.KHAT_GOOD,
                _laplace.KHAT_MAX,
                ess,
                draws,
            )
        idata.attrs["warnings"] = json.dumps(problems)
        for message in problems:
            warnings.warn(message, SamplerWarning, skip_file_prefixes=(PACKAGE_DIR,))

    def _structure_key(self, data: MixtureData, priors: dict[str, Prior]) -> tuple:
        """Everything a compiled model depends on except the data values."""
        resolved = json.dumps({key: p.to_dict() for key, p in priors.items()}, sort_keys=True)
        shapes = tuple(sorted(self._rv_shapes(data.n_features).items()))
        return (
            type(self).__module__,
            type(self).__qualname__,
            self.n_components,
            shapes,
            tuple(data.features),
            resolved,
            data.sample_weight is not None,  # the model has the weights' potential
            missing_digest(data.values),  # a likelihood per pattern of missing values
        )

    def _log_likelihood_group(self, idata: xr.DataTree, data: MixtureData) -> xr.Dataset:
        """Pointwise log-likelihood of every posterior draw (dims chain, draw, obs)."""
        post = idata["posterior"]
        n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
        draws = tuple(a.reshape(n_chains * n_draws, *a.shape[2:]) for a in self._param_draws(idata))
        pointwise = self._pointwise(data.values, draws)
        return xr.Dataset(
            {self._observed: (("chain", "draw", "obs"), pointwise.reshape(n_chains, n_draws, -1))},
            coords={"chain": post["chain"], "draw": post["draw"], "obs": data.obs},
        )

    def _jitter_start(
        self,
        start: dict[str, np.ndarray],
        data: MixtureData,
        em: Any,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Return a per-chain start for PyMC's sampler near the EM estimate (families override)."""
        return dict(start)

    def _relabel(self, idata: xr.DataTree, em: AnyEMResult, data: MixtureData) -> None:
        """Put every draw in the EM labelling, in place; keep the permutations."""
        post = idata["posterior"].to_dataset()
        draws = _datatree.posterior_draws(idata, self._component_vars)
        n_chains, n_draws = draws[0].shape[:2]
        flat = {
            name: a.reshape(n_chains * n_draws, *a.shape[2:])
            for name, a in zip(self._component_vars, draws, strict=True)
        }
        point = self._point_from_em(em, data.n_features)
        reference = {name: point[name][None] for name in self._component_vars}
        perms = relabel_permutations(
            self._relabel_locations(flat, data),
            self._relabel_locations(reference, data)[0],
            np.ones(1),
        )
        perms = perms.reshape(n_chains, n_draws, -1)
        moved = int(np.any(perms != np.arange(self.n_components), axis=-1).sum())
        relabelled = {}
        for name, da in post.data_vars.items():
            if "component" not in da.dims:
                continue
            other = [dim for dim in da.dims if dim not in ("chain", "draw", "component")]
            ordered = da.transpose("chain", "draw", "component", *other)
            index = perms.reshape(perms.shape + (1,) * len(other))
            values = np.take_along_axis(ordered.to_numpy(), index, axis=2)
            relabelled[name] = ordered.copy(data=values).transpose(*da.dims)
        idata["posterior"] = post.assign(relabelled)
        stats = idata["sample_stats"].to_dataset() if "sample_stats" in idata.children else None
        perm_da = xr.DataArray(
            perms,
            dims=("chain", "draw", "component"),
            coords={"chain": post["chain"], "draw": post["draw"], "component": post["component"]},
        )
        idata["sample_stats"] = (
            xr.Dataset({"relabel_permutation": perm_da})
            if stats is None
            else stats.assign(relabel_permutation=perm_da)
        )
        idata.attrs["relabelled_draws"] = moved
        idata.attrs["relabel_reference"] = "em"
        if moved:
            _log.info("relabelled %d of %d draws to the EM labelling", moved, n_chains * n_draws)

    def _check_chains(self, idata: xr.DataTree, priors: dict[str, Prior]) -> None:
        """Record the sampler diagnostics in ``idata.attrs`` and warn once per problem.

        A weights prior that favours empty components (Dirichlet ``a < 1``: its density
        piles up on the simplex's faces, as in :func:`bayesmix.overfitted_mixture`)
        leaves the labels of empty components identified by nothing: the diagnostics
        then use label-invariant summaries.
        """
        weights = priors.get("weights")
        sparse = weights is not None and bool(
            np.all(np.asarray(weights.params.get("a", 1.0), dtype=np.float64) < 1)
        )
        idata.attrs["label_invariant_diagnostics"] = int(sparse)
        figures, problems = sampler_problems(idata, var_names=self._summary_vars, sparse=sparse)
        idata.attrs.update(figures)
        idata.attrs["warnings"] = json.dumps([message for _, message in problems])
        for category, message in problems:
            warnings.warn(message, category, skip_file_prefixes=(PACKAGE_DIR,))

    # -- fitted accessors ----------------------------------------------------------------

    @single_blas_thread
    def compute_log_likelihood(self) -> xr.Dataset:
        """Add the pointwise log-likelihood of every draw to ``idata`` and return it.

        ``log p(x_n | theta^s)`` with the labels summed out, dims (chain, draw, obs), as
        :func:`arviz_stats.loo` needs. A NUTS fit stores it already unless it was too large
        (see ``fit(log_likelihood=...)``); it is computed in blocks of draws, so only
        the result has to fit in memory.

        Returns
        -------
        xarray.Dataset
            The ``log_likelihood`` group (variable ``x``).
        """
        self._check_fitted()
        if "log_likelihood" not in self.idata.children:
            data = _datatree.observed_data(self.idata)
            self.idata["log_likelihood"] = self._log_likelihood_group(self.idata, data)
        return self.idata["log_likelihood"].to_dataset()

    def _check_fitted(self) -> None:
        if not hasattr(self, "idata"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X) first."
            )

    @validated({"draws": POSITIVE_INT, "random_seed": SEED})
    def sample_prior_predictive(
        self, X: Any, *, draws: int = 500, random_seed: int | None = None
    ) -> xr.DataTree:
        """Draw parameters and data sets from the prior (no fitting needed).

        The priors are resolved against ``X`` (data-scaled defaults), so the simulated
        data sets show what the model believes before seeing the data, on its scale.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Sets the default priors, the number of observations and the coordinates.
        draws : int, default=500
        random_seed : int, optional

        Returns
        -------
        xarray.DataTree
            Groups ``prior`` (weights, means, covariances, ...) and
            ``prior_predictive`` (``x`` with dims chain, draw, obs, feature).
        """
        data, priors = self._prepare(X)
        model = self._model(data, priors)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Numba will use object mode", UserWarning)
            return pm.sample_prior_predictive(draws, model=model, random_seed=random_seed)

    @property
    def plot(self) -> Any:
        """Plots of this fit: ``fit.plot.components()``, ``.compare()``, ``.ppc()``, ...

        Each is ``bayesmix.plot_<name>(fit, ...)``; see :mod:`bayesmix.plots`.
        """
        from bayesmix.plots import PlotAccessor

        return PlotAccessor(self)

    @single_blas_thread
    @validated({"random_seed": SEED, "extend_idata": ["boolean"]})
    def sample_posterior_predictive(
        self, *, random_seed: int | None = None, extend_idata: bool = True
    ) -> xr.DataTree:
        """Simulate replicated data sets from the posterior (or the EM estimate).

        One data set of the training size per posterior draw, by the generative story:
        a component label from the weights, then a draw from that component.

        Parameters
        ----------
        random_seed : int, optional
        extend_idata : bool, default=True
            Add the ``posterior_predictive`` group to ``self.idata``.

        Returns
        -------
        xarray.DataTree
            With a ``posterior_predictive`` group: ``x`` (chain, draw, obs, feature).
        """
        self._check_fitted()
        model = self._model(_datatree.observed_data(self.idata), self.priors_)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Numba will use object mode", UserWarning)
            result = pm.sample_posterior_predictive(
                self.idata,
                model=model,
                var_names=[self._observed],
                random_seed=random_seed,
                progressbar=False,
                extend_inferencedata=False,
            )
        if extend_idata:
            self.idata["posterior_predictive"] = result["posterior_predictive"]
        return result

    @validated({"kind": [Options("all", "stats", "diagnostics")]})
    def summary(self, kind: Literal["all", "stats", "diagnostics"] = "all") -> pd.DataFrame:
        """Summarise the posterior of the weights, means and covariances with arviz-stats.

        Parameters
        ----------
        kind : {"all", "stats", "diagnostics"}, default="all"
            Passed to :func:`arviz_stats.summary`.

        Returns
        -------
        pandas.DataFrame
            One row per distinct scalar parameter (``weights[k]``, ``means[k, feature]``,
            ``covariances[k, feature, feature]``), the rows of
            :func:`bayesmix.compare_fits`: a symmetric matrix appears once, by its
            entries on and below the diagonal (and only the free entries of the
            covariance type: the diagonal for ``diag``, component 0 for ``tied``).
            Unrounded: mean, sd, 94% HDI (``hdi94_lb``, ``hdi94_ub``, named as in
            ``compare_fits``), ESS, R-hat and MCSE. For an EM fit, one
            column, ``estimate`` (the maximum-likelihood or MAP point estimate; EM gives
            no posterior sd, so there is no ``sd`` column), whatever ``kind``. For a
            Laplace fit, the statistics whatever ``kind``: its draws are resampled
            independent draws, which R-hat, ESS and MCSE do not describe (PSIS's k-hat
            and importance ESS are ``idata.attrs["laplace_khat"]`` and
            ``["laplace_ess"]``).
            ``table.attrs["warnings"]`` lists the sampler's diagnostic warnings (empty
            when all is well).
        """
        self._check_fitted()
        if self.idata.attrs.get("inference_method") == "laplace":
            kind = "stats"  # resampled independent draws: no chains to diagnose
        table = summary_table(self.idata, kind, self._summary_vars)
        distinct = set(self._scalar_labels())
        table = table.loc[[label for label in table.index if label in distinct]]
        table.attrs["warnings"] = json.loads(self.idata.attrs.get("warnings", "[]"))
        return table

    def _scalar_labels(self) -> list[str]:
        """Return the labels of the distinct scalar parameters (``_scalar_parameters``)."""
        one_draw = tuple(a[:1] for a in self.posterior_arrays(max_draws=1).values())
        _, labels, _ = self._scalar_parameters(
            one_draw, **self._scalar_names(self.idata["posterior"])
        )
        return labels

    @validated({"max_draws": [None, *POSITIVE_INT]})
    def posterior_arrays(self, max_draws: int | None = None) -> dict[str, np.ndarray]:
        """Return the posterior draws of the weights and component parameters as arrays.

        Parameters
        ----------
        max_draws : int, optional
            Keep at most this many draws, evenly spaced over the chains.

        Returns
        -------
        dict of str to ndarray
            ``"weights"`` then the family's component variables, in the order that
            :meth:`component_log_prob` takes them; chains and draws are flattened into
            the first axis, the component axis is next. An EM fit has one draw.

        Examples
        --------
        >>> import bayesmix as bm
        >>> gm = bm.GaussianMixture(random_state=0).fit(bm.datasets.load_faithful(), method="em")
        >>> {name: a.shape for name, a in gm.posterior_arrays().items()}
        {'weights': (1, 2), 'means': (1, 2, 2), 'covariances': (1, 2, 2, 2)}
        """
        self._check_fitted()
        names = ("weights", *self._component_vars)
        arrays = [a.reshape(-1, *a.shape[2:]) for a in self._param_draws(self.idata)]
        if max_draws is not None:
            n_draws = arrays[0].shape[0]
            if n_draws > max_draws:
                keep = np.linspace(0, n_draws - 1, max_draws).round().astype(int)
                arrays = [a[keep] for a in arrays]
        return dict(zip(names, arrays, strict=True))

    def _check_X(self, X: Any) -> MixtureData:
        """Validate data for prediction: fitted model, finite values, the fitted features.

        As scikit-learn checks: the number of features must be ``n_features_in_`` (a 1-D
        array is one feature; when the fit has several, the message says to reshape),
        and a DataFrame's columns must be ``feature_names_in_``, in that order, when the
        fit was to named columns.
        """
        self._check_fitted()
        data = check_data(
            X, for_fit=False, allow_bool=self._accepts_bool, allow_missing=self._models_missing
        )
        if data.n_features != self.n_features_in_:
            if np.ndim(X) == 1 and self.n_features_in_ > 1:
                raise DataError(
                    f"X is 1-D (shape {np.shape(X)}), which bayesmix reads as one feature, "
                    f"but {type(self).__name__} is expecting {self.n_features_in_} features "
                    f"as input ({self.feature_names_in_}). Reshape your data: "
                    "X.reshape(1, -1) if it is one sample."
                )
            raise DataError(self._feature_count_message(data.n_features))
        named = isinstance(X, pd.DataFrame | pd.Series) and self._named_features()
        if named and data.features != list(self.feature_names_in_):
            order = sorted(data.features) == sorted(self.feature_names_in_)
            raise DataError(
                f"The feature names should match those that were passed during fit: X "
                f"has columns {data.features}, {type(self).__name__} was fitted with "
                f"{list(self.feature_names_in_)}. "
                + (
                    "The same columns in another order: select them as X[fit.feature_names_in_]."
                    if order
                    else "Pass the columns the model was fitted to."
                )
            )
        self._check_data(data)
        return data

    def _feature_count_message(self, n_features: int) -> str:
        return (
            f"X has {n_features} features, but {type(self).__name__} is expecting "
            f"{self.n_features_in_} features as input ({self.feature_names_in_}). Pass the "
            "columns the model was fitted to."
        )

    def _named_features(self) -> bool:
        """Whether the fit's features are column names (not the x0, x1, ... of an array)."""
        return list(self.feature_names_in_) != [f"x{j}" for j in range(self.n_features_in_)]

    def _draws_for(
        self, X: Any, max_draws: int | None = None
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Return validated ``X`` and the posterior draws (evenly thinned to ``max_draws``)."""
        data = self._check_X(X)
        return data.values, tuple(self.posterior_arrays(max_draws).values())

    @single_blas_thread
    def predict_proba(self, X: Any) -> np.ndarray:
        """Return the posterior probability of each component for each sample.

        The responsibilities ``p(z_n = k | x_n, theta)`` averaged over posterior draws
        (at most 1000, evenly thinned); for an EM fit, at the estimate. Computed in log
        space: a finite row however far out (``1e155``, ``-1e300``) gets finite
        responsibilities, those of the component whose density is largest out there
        (the exact differences of the log densities decide, not their rounded values).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            Rows sum to one; never NaN.

        Raises
        ------
        bayesmix.exceptions.DataError
            If ``X`` is not valid data for this fit, or for rows that every component
            gives probability zero (a count where every fitted rate of its feature is
            0): their responsibilities are undefined, and the message gives their
            positions.
        """
        if _dask.is_chunked(X):
            return self._chunked_rows(X).map_rows(
                self._chunk_function("proba"), n_out=self.n_components
            )
        X, draws = self._draws_for(X, max_draws=1000)
        return posterior_responsibilities(
            X,
            *draws,
            component_log_prob=self.component_log_prob,
            far_log_prob=self._far_log_prob,
            fast_pointwise=self._fast_pointwise,
        )

    def predict(self, X: Any) -> np.ndarray:
        """Return the most probable component of each sample, shape (n_samples,).

        The largest of :meth:`predict_proba`, which is never NaN (rows without
        responsibilities raise :class:`~bayesmix.exceptions.DataError` there).
        """
        return self.predict_proba(X).argmax(axis=1)

    @single_blas_thread
    def score_samples(self, X: Any) -> np.ndarray:
        """Return the log predictive density of each sample, shape (n_samples,).

        For NUTS, ``log mean_s p(x_n | theta_s)`` over posterior draws (at most 1000,
        evenly thinned); for EM, ``log p(x_n | theta_hat)``. Computed in log space
        without overflow: finite wherever the log density is a float, even a huge
        negative one (about ``-5e299`` for a Gaussian row ``1e150`` standard deviations
        out); ``-inf`` only where it is below the most negative float (``-1.8e308``) or
        every component gives the row probability zero. Never NaN. :meth:`score`,
        :meth:`bic` and :meth:`aic` are sums of these values, so they are ``-inf``
        (``score``) or ``inf`` (``bic``, ``aic``) when one of them is.
        """
        if _dask.is_chunked(X):
            return self._chunked_rows(X).map_rows(self._chunk_function("density"), n_out=None)
        X, draws = self._draws_for(X, max_draws=1000)
        return posterior_log_density(
            X,
            *draws,
            component_log_prob=self.component_log_prob,
            fast_pointwise=self._fast_pointwise,
        )

    def _chunked_rows(self, X: Any, sample_weight: Any = None) -> _dask.ChunkedData:
        """Validate chunked data for prediction (lazily: every chunk is checked when used)."""
        self._check_fitted()
        data = _dask.as_chunked(
            X, sample_weight, allow_bool=self._accepts_bool, allow_missing=self._models_missing
        )
        if data.n_features != self.n_features_in_:
            raise DataError(self._feature_count_message(data.n_features))
        # Every chunk is checked as predict checks data in memory, and by the family.
        return data.with_check(type(self)(**self.get_params(deep=False))._check_data)

    def _chunk_function(self, kind: str) -> Callable:
        """Return a picklable function of one chunk (responsibilities, density, plug-in)."""
        if kind == "plugin":
            draws = tuple(a[None] for a in self._posterior_mean())
        else:
            draws = tuple(self.posterior_arrays(1000).values())
        return functools.partial(
            _chunk_prediction,
            kind=kind,
            draws=draws,
            component_log_prob=self.component_log_prob,
            fast_pointwise=self._fast_pointwise,
            far_log_prob=self._far_log_prob,
        )

    def _chunked_sum(self, X: Any, sample_weight: Any, kind: str) -> tuple[float, float]:
        """``sum_n w_n f(x_n)`` and ``sum_n w_n`` over chunked data, in one pass."""
        data = self._chunked_rows(X, sample_weight)
        result = data.data_pass(functools.partial(_weighted_total, self._chunk_function(kind)))
        return result["total"], result["weight"]

    def _plugin_log_likelihood(self, X: Any, sample_weight: Any = None) -> tuple[float, float]:
        """``sum_n w_n log p(x_n | theta_hat)`` and ``sum_n w_n`` (w = 1 without weights)."""
        if _dask.is_chunked(X):
            return self._chunked_sum(X, sample_weight, "plugin")
        data = self._check_X(X)
        weights = check_sample_weight(sample_weight, data.n_samples)
        point = tuple(a[None] for a in self._posterior_mean())
        pointwise = self._pointwise(data.values, point)[0]
        if weights is None:
            return float(pointwise.sum()), float(data.n_samples)
        return _weighted_sum(weights, pointwise), float(weights.sum())

    @single_blas_thread
    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Return the mean log predictive density of ``X`` (weighted by ``sample_weight``).

        The (weighted) mean of :meth:`score_samples`, as scikit-learn's ``score``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
            Not used, present for scikit-learn's API (``score(X, y)``).
        sample_weight : array-like of shape (n_samples,), optional
            Pass it by keyword: the second argument is ``y``.

        Returns
        -------
        float
        """
        if _dask.is_chunked(X):
            total, weight = self._chunked_sum(X, sample_weight, "density")
            return total / weight
        data = self._check_X(X)
        weights = check_sample_weight(sample_weight, data.n_samples)
        values = self.score_samples(X)
        if weights is None:
            return float(values.mean())
        return _weighted_sum(weights, values) / float(weights.sum())

    @single_blas_thread
    def bic(self, X: Any, sample_weight: Any = None) -> float:
        """Bayesian information criterion at the point estimate (lower is better).

        ``-2 log L(theta_hat) + p log n`` with scikit-learn's parameter count; for a NUTS
        fit, ``theta_hat`` is the posterior mean. With ``sample_weight`` (frequency
        weights) ``log L = sum_n w_n log p(x_n)`` and ``n = sum_n w_n``: the BIC of the
        data with every row repeated ``w_n`` times.
        """
        loglik, n = self._plugin_log_likelihood(X, sample_weight)
        return -2.0 * loglik + self._n_parameters(self.n_features_in_) * np.log(n)

    @single_blas_thread
    def aic(self, X: Any, sample_weight: Any = None) -> float:
        """Akaike information criterion at the point estimate (lower is better)."""
        loglik, _ = self._plugin_log_likelihood(X, sample_weight)
        return -2.0 * loglik + 2.0 * self._n_parameters(self.n_features_in_)


def _weighted_total(values: Callable, X: np.ndarray, w: np.ndarray | None) -> dict:
    """``sum_n w_n values(X)_n`` and ``sum_n w_n`` of one chunk."""
    f = values(X)
    if w is None:
        return {"total": float(f.sum()), "weight": float(X.shape[0])}
    return {"total": _weighted_sum(w, f), "weight": float(w.sum())}


def _weighted_sum(w: np.ndarray, values: np.ndarray) -> float:
    """Return ``sum_n w_n values_n`` over the rows of positive weight.

    A zero weight drops its row, even one of log density ``-inf`` (``0 * -inf`` is NaN).
    """
    positive = w > 0
    return float(w[positive] @ values[positive])


def _chunk_prediction(
    X: np.ndarray,
    *,
    kind: str,
    draws: tuple[np.ndarray, ...],
    component_log_prob: Callable,
    fast_pointwise: Callable | None,
    far_log_prob: Callable | None = None,
) -> np.ndarray:
    """Return the responsibilities, log predictive density or plug-in log-likelihood.

    ``kind`` is ``"proba"``, ``"density"`` or ``"plugin"``; one chunk of data, checked
    already (:meth:`bayesmix.dask.ChunkedData.map_rows` and ``data_pass`` check every
    chunk as ``predict`` checks data in memory; with ``missing="model"`` its rows may have
    missing values, which the densities integrate out).
    """
    if kind == "proba":
        return posterior_responsibilities(
            X,
            *draws,
            component_log_prob=component_log_prob,
            far_log_prob=far_log_prob,
            fast_pointwise=fast_pointwise,
        )
    if kind == "density":
        return posterior_log_density(
            X, *draws, component_log_prob=component_log_prob, fast_pointwise=fast_pointwise
        )
    return pointwise_log_likelihood(
        X, *draws, component_log_prob=component_log_prob, fast_pointwise=fast_pointwise
    )[0]


def _model_data(data: MixtureData) -> dict[str, np.ndarray]:
    """Values of the PyMC model's ``pm.Data`` (observations, and weights if any)."""
    values = {"x_data": observed_values(data.values)}
    if data.sample_weight is not None:
        values["w_data"] = data.sample_weight
    return values
