"""The shared shell of the location-scale families: Gaussian and Student-t components.

Both parameterise a component by a mean and a (K, D, D) matrix built from per-feature
scales ``sigma`` and an LKJ correlation factor ``corr_chol`` (or their ``diag``,
``spherical`` and ``tied`` restrictions, as scikit-learn names them); they differ in the
component density (the observed variable ``x``, :meth:`_LocationScaleMixture._likelihood`),
in their EM and in their extra parameters. This module holds what they share (the random
variables, default priors, the PyMC model up to the likelihood, the conversion of an EM
estimate, relabelling, flattening), so that neither family subclasses the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.transforms import Ordered, Transform

from bayesmix._numeric import column_moments, missing_patterns, observed_values
from bayesmix._params import Interval, Options
from bayesmix._validation import MixtureData
from bayesmix.em.chunked import fit_chunked, in_memory_pass
from bayesmix.em.loop import EMResult
from bayesmix.exceptions import DataError
from bayesmix.families.gaussian.covariance_models import STORAGE
from bayesmix.families.gaussian.densities import scalar_parameters
from bayesmix.families.gaussian.em import COVARIANCE_TYPES
from bayesmix.model import MixtureModel
from bayesmix.priors import SCALE_PRIORS, Prior
from bayesmix.stats import log_responsibilities

__all__ = ["mahalanobis_terms", "marginal_logp"]

_log = logging.getLogger("bayesmix")


_ALLOWED_PRIORS = {
    "weights": frozenset({"Dirichlet"}),
    "means": frozenset({"Normal", "StudentT"}),
    "sigma": SCALE_PRIORS,
    "corr_chol": frozenset({"LKJCorr"}),
}


def mahalanobis_terms(value: Any, means: Any, chol: Any) -> tuple[int, Any, Any]:
    """Return D, the squared Mahalanobis distances and ``log|L|`` per (observation, component).

    Forward substitution ``L_k z = x_n - mu_k`` unrolled over the static number of
    features (PyTensor); shapes as in :func:`mixture_logp`, results of shape
    ``(..., N, K)`` and ``(..., K)``.
    """
    n_features = value.type.shape[-1] or means.type.shape[-1]
    if n_features is None:
        raise ValueError("the mixture likelihood needs a static number of features.")
    x = value[..., None, :]  # (..., N, 1, D) against parameters (..., K, ...)
    z: list[Any] = []
    mahalanobis = 0.0
    log_det = 0.0
    for i in range(n_features):
        residual = x[..., i] - means[..., i]
        for j in range(i):
            residual = residual - chol[..., i, j] * z[j]
        z.append(residual / chol[..., i, i])
        mahalanobis = mahalanobis + z[i] ** 2
        log_det = log_det + pt.log(chol[..., i, i])
    return n_features, mahalanobis, log_det


def _check_conditionals(rows: np.ndarray, resp: np.ndarray, cond_mean: np.ndarray) -> None:
    """Raise ``DataError`` for rows whose conditional distribution is not a number.

    ``rows`` are the positions in ``X`` of one pattern's rows; ``resp`` (S, n, K) their
    responsibilities, ``cond_mean`` (S, K, n, m) their conditional means.
    """
    bad = ~(np.isfinite(resp).all(axis=(0, 2)) & np.isfinite(cond_mean).all(axis=(0, 1, 3)))
    if bad.any():
        raise DataError(
            f"the missing values of {bad.sum()} row(s) of X (first at position "
            f"{rows[bad][0]}) cannot be imputed: their conditional distribution is beyond "
            "the floats (observed values about 1e154 scale units or more from every "
            "component). Check those rows, or rescale the data and refit."
        )


def marginal_logp(logp: Callable[..., Any], patterns: list) -> Callable[..., Any]:
    """Return ``logp`` taken over the observed coordinates of each row (PyTensor).

    ``logp(value, weights, means, chol, *rest)`` is a location-scale mixture's log density
    (:func:`bayesmix.families.gaussian.model.mixture_logp`); ``patterns`` are the
    ``(observed, rows)`` pairs of :func:`bayesmix._numeric.missing_patterns` of the data.
    The rows of a pattern get the same density on their observed coordinates ``o``: the
    means ``mu_{k,o}`` and the Cholesky factor of the block ``Sigma_{k,oo}`` (a Gaussian's
    or a Student-t's marginal; the other parameters unchanged), so the missing values are
    integrated out and never read. A complete pattern is ``logp`` itself.
    """

    def marginal(value: Any, weights: Any, means: Any, chol: Any, *rest: Any) -> Any:
        out = pt.zeros(value.shape[:-1])
        matrices = None
        for observed, rows in patterns:
            if observed.all():
                part = logp(value[rows], weights, means, chol, *rest)
            else:
                kept = np.flatnonzero(observed)
                if matrices is None:
                    matrices = chol @ chol.mT
                block = pt.linalg.cholesky(matrices[..., kept[:, None], kept])
                values = pt.specify_shape(value[rows][:, kept], (None, kept.size))
                part = logp(values, weights, means[..., kept], block, *rest)
            out = pt.set_subtensor(out[rows], part)
        return out

    return marginal


class _OrderedComponents(Transform):
    """Order a ``(n_components, 1)`` array of means along the component axis."""

    name = "ordered_components"
    ndim_supp = 2

    def backward(self, value, *inputs):
        return Ordered().backward(value.mT, *inputs).mT

    def forward(self, value, *inputs):
        return Ordered().forward(value.mT, *inputs).mT

    def log_jac_det(self, value, *inputs):
        return pt.sum(value[..., 1:, :], axis=(-2, -1))


def _correlation_cholesky(cov: np.ndarray) -> np.ndarray:
    """Cholesky factor of the correlation matrix of each covariance in ``cov`` (..., D, D)."""
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    corr = cov / (sd[..., :, None] * sd[..., None, :])
    return np.linalg.cholesky(corr)


class _LocationScaleMixture(MixtureModel):
    """Shared hooks of the Gaussian and Student-t mixtures (not instantiated directly).

    Subclasses set ``_matrix_var`` (the name of the (K, D, D) matrices: ``covariances``
    or ``scales``) and implement :meth:`_likelihood`; their constructors store
    ``covariance_type`` and ``reg_covar``.
    """

    # Name of the deterministic (K, D, D) matrices built from ``sigma`` and ``corr_chol``.
    _matrix_var = "covariances"
    # Whether the components have degrees of freedom ``dof`` (multivariate Student-t).
    _has_dof = False

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MixtureModel._parameter_constraints,
        "covariance_type": [Options(*COVARIANCE_TYPES)],
        "reg_covar": [Interval(Real, 0, None)],
    }

    @classmethod
    def _covariance_types(cls, n_features: int) -> tuple[str, ...]:
        """Every covariance type of this family for ``n_features`` (``select_k``'s "all")."""
        return COVARIANCE_TYPES

    @property
    def _storage_type(self) -> str:
        """The scikit-learn covariance type whose shapes hold ``covariance_type``'s covariances.

        ``covariance_type`` itself for scikit-learn's names, else the storage of the
        mclust model (:data:`bayesmix.families.gaussian.covariance_models.STORAGE`).
        """
        return STORAGE.get(self.covariance_type, self.covariance_type)

    def _nuts_target(self, data: MixtureData, priors: dict[str, Prior]) -> Any:
        """Return the fused numba log density + gradient if it applies.

        :mod:`bayesmix.families.gaussian._nuts_kernel`, with Normal components or, with
        degrees of freedom, Student-t ones. It implements every prior family these
        families accept (Normal or StudentT means, any of the scales' and the degrees of
        freedom's families, LKJCorr with a scalar eta) in PyMC's canonical parameters;
        for other parameterisations None, and the PyMC model is compiled.
        """
        from bayesmix.families.gaussian import _nuts_kernel

        target = _nuts_kernel.build(
            {
                "covariance_type": self._storage_type,
                "n_components": self.n_components,
                "n_features": data.n_features,
                "priors": priors,
                "features": list(data.features),
                "dof": self._has_dof,
                "matrix_name": self._matrix_var,
            }
        )
        if target is None:
            _log.info(
                "the fused location-scale kernel does not cover this model "
                "(covariance_type=%r, priors %s); compiling the PyMC model instead",
                self.covariance_type,
                {name: prior.distribution for name, prior in priors.items()},
            )
        return target

    # -- missing values (missing="model") -------------------------------------------------

    def impute(
        self, X: Any, *, n_imputations: int | None = None, random_state: int | None = None
    ) -> np.ndarray:
        r"""Fill the missing values (NaN) of ``X`` from the fitted mixture.

        For a row with observed coordinates ``o`` and missing ``m``, under each posterior
        draw (at most 1000, evenly thinned; the estimate for an EM fit) the missing
        values given the observed ones are a mixture: component ``k`` with probability
        :math:`p(z = k \mid x_o)` (the responsibilities of the observed coordinates)
        and, given it, its conditional distribution, whose mean is
        :math:`\hat{x}_m = \mu_{k,m} + \Sigma_{k,mo} \Sigma_{k,oo}^{-1} (x_o -
        \mu_{k,o})`. Gaussian components: :math:`\mathcal{N}(\hat{x}_m, \Sigma_{k,mm}
        - \Sigma_{k,mo} \Sigma_{k,oo}^{-1} \Sigma_{k,om})`. Student-t components: the t
        with :math:`\nu_k + p_o` degrees of freedom, location :math:`\hat{x}_m` and that
        matrix times :math:`(\nu_k + \delta_o) / (\nu_k + p_o)`, :math:`\delta_o` the
        squared Mahalanobis distance of :math:`x_o` (Liu & Rubin 1995).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows with missing values (NaN); observed values are returned unchanged.
        n_imputations : int, optional
            Return that many multiple imputations instead of the mean: each from a
            posterior draw (in turn), a component drawn from the responsibilities and the
            missing values from its conditional distribution (Rubin's multiple
            imputation; for t components through a latent precision
            :math:`\tau \sim \text{Gamma}((\nu_k + p_o) / 2, (\nu_k + \delta_o) / 2)`).
        random_state : int, optional
            Seeds the multiple imputations.

        Returns
        -------
        ndarray of shape (n_samples, n_features), or (n_imputations, n_samples, n_features)
            With ``n_imputations=None`` the conditional posterior mean of every missing
            value (the mean over draws of the mixture's conditional mean).

        Raises
        ------
        bayesmix.exceptions.DataError
            For rows whose conditional distribution is beyond the floats (observed
            values about 1e154 scale units or more from every component).

        Examples
        --------
        >>> import numpy as np
        >>> import bayesmix as bm
        >>> X = bm.datasets.load_faithful().to_numpy()
        >>> gm = bm.GaussianMixture(n_components=2, missing="model", random_state=0)
        >>> gm = gm.fit(X, method="em")
        >>> gm.impute(np.array([[4.5, np.nan]])).round(1)
        array([[ 4.5, 81.1]])
        """
        values, (weights, *params) = self._draws_for(X, max_draws=1000)
        n_draws = weights.shape[0]
        rng = np.random.default_rng(random_state)
        if n_imputations is None:
            out = values.copy()
        else:
            out = np.broadcast_to(values, (n_imputations, *values.shape)).copy()
            chosen = np.arange(n_imputations) % n_draws
        for observed, rows in missing_patterns(values):
            missing = ~observed
            if not missing.any():
                continue
            log_density, cond_mean, cond_cov, noise_scale = self._conditional(
                values[np.ix_(rows, observed)], tuple(params), observed
            )  # (S, K, n), (S, K, n, m), (S, K, m, m), a latent scale or None
            with np.errstate(divide="ignore"):
                weighted = np.swapaxes(np.log(weights)[..., None] + log_density, 1, 2)
            with np.errstate(invalid="ignore"):
                resp = np.exp(log_responsibilities(weighted))  # (S, n, K)
            _check_conditionals(rows, resp, cond_mean)
            if n_imputations is None:
                filled = np.einsum("snk,sknm->nm", resp, cond_mean) / n_draws
                out[np.ix_(rows, missing)] = filled
                continue
            chol = np.linalg.cholesky(cond_cov)
            at = np.arange(rows.size)
            for i, s in enumerate(chosen):
                labels = (rng.random((rows.size, 1)) > np.cumsum(resp[s], axis=1)).sum(axis=1)
                labels = np.minimum(labels, self.n_components - 1)
                noise = rng.standard_normal((rows.size, missing.sum()))
                if noise_scale is not None:
                    noise *= noise_scale(rng, s, labels)[:, None]
                draw = cond_mean[s, labels, at]
                draw += np.einsum("nij,nj->ni", chol[s, labels], noise)
                out[i][np.ix_(rows, missing)] = draw
        return out

    def _conditional(
        self, observed_values: np.ndarray, params: tuple[np.ndarray, ...], observed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Callable | None]:
        """Return the terms of :meth:`impute` for one pattern of missing values.

        ``observed_values`` (n, p_o) are the rows' observed coordinates and ``params``
        the component parameters of the draws; returns the component log densities of
        the observed coordinates (S, K, n), the conditional means (S, K, n, m), the
        conditional covariances (S, K, m, m) and ``noise_scale(rng, s, labels)``, a
        factor of the standard normal noise per row (a latent scale), or None.
        """
        raise NotImplementedError

    def _fit_missing_em(
        self, data: MixtureData, rng: np.random.Generator, priors: dict[str, Prior]
    ) -> EMResult:
        """Fit EM to data with missing values (NaN): the chunked EM over the data in memory.

        The family's :meth:`_em_steps`, whose E-step integrates the missing values out.
        """
        X, w = data.values, data.sample_weight
        data_pass = in_memory_pass(X, w)
        result = fit_chunked(
            self._em_steps(priors, data.n_features, data_pass),
            data_pass,
            lambda rows: (X, w) if rows is None else (X[rows], None if w is None else w[rows]),
            data.n_samples,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            rng=rng,
            init=self.init,
        )
        return self._order_em(result)

    def _min_samples(self, n_features: int) -> tuple[int, str]:
        if self._storage_type == "full" and n_features > 1:
            return (
                self.n_components * (n_features + 1),
                "n_components x (n_features + 1) for full covariances, so that every "
                "component's covariance can be estimated",
            )
        return super()._min_samples(n_features)

    def _rv_shapes(self, n_features: int) -> dict[str, tuple[str, ...]]:
        """Dims of every free random variable, by name (the prior keys of this model)."""
        sigma = {
            "full": ("component", "feature"),
            "diag": ("component", "feature"),
            "tied": ("feature",),
            "spherical": ("component",),
        }[self._storage_type]
        dims = {"weights": ("component",), "means": ("component", "feature"), "sigma": sigma}
        if n_features > 1 and self._storage_type in ("full", "tied"):
            batch = ("component",) if self._storage_type == "full" else ()
            dims["corr_chol"] = (*batch, "feature", "feature_bis")
        return dims

    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        loc, scale = column_moments(data.values, data.sample_weight)
        if data.n_samples == 1:
            scale = np.ones(data.n_features)
        sigma_scale = 2.0 * (scale.mean() if self._storage_type == "spherical" else scale)
        priors = {
            "weights": Prior("Dirichlet", a=1.0),
            "means": Prior("Normal", mu=loc.tolist(), sigma=(3.0 * scale).tolist()),
            "sigma": Prior("HalfNormal", sigma=np.asarray(sigma_scale).tolist()),
            "corr_chol": Prior("LKJCorr", eta=2.0),
        }
        return {name: priors[name] for name in self._rv_shapes(data.n_features) if name in priors}

    def _allowed_priors(self) -> dict[str, frozenset[str]]:
        return _ALLOWED_PRIORS

    def _posterior_dims(self, n_features: int) -> dict[str, list[str]]:
        dims = super()._posterior_dims(n_features)
        dims[self._matrix_var] = ["component", "feature", "feature_bis"]
        return dims

    def _posterior_supports(self) -> dict[str, str]:
        return super()._posterior_supports() | {
            "sigma": "positive",
            "corr_chol": "correlation_cholesky",
            self._matrix_var: "positive_definite",
        }

    def _scalar_parameters(
        self, draws: tuple[np.ndarray, ...], *, components: list[Any], features: list[Any]
    ) -> tuple[list[str], list[str], np.ndarray]:
        """Weights, means and the free covariance entries of this covariance type."""
        weights, means, matrices, *rest = draws
        variables, labels, values = scalar_parameters(
            weights,
            means,
            matrices,
            covariance_type=self._storage_type,
            components=components,
            features=features,
            matrix_name=self._matrix_var,
        )
        for name, extra in zip(self._component_vars[2:], rest, strict=True):
            for c in range(extra.shape[1]):
                variables.append(name)
                labels.append(f"{name}[{components[c]}]")
            values = np.concatenate([values, extra], axis=-1)
        return variables, labels, values

    def _relabel_locations(self, params: dict[str, np.ndarray], data: MixtureData) -> np.ndarray:
        """Component means in units of the data standard deviation of each feature."""
        scale = column_moments(data.values, data.sample_weight)[1]
        return params["means"] / np.where(scale > 0, scale, 1.0)

    def _build(self, data: MixtureData, priors: dict[str, Prior]) -> pm.Model:
        k, d = self.n_components, data.n_features
        dims = self._rv_shapes(d)
        sizes = {"component": k, "feature": d, "feature_bis": d}
        coords = {
            "component": np.arange(k),
            "feature": data.features,
            "feature_bis": data.features,
            "obs": data.obs,
        }
        with pm.Model(coords=coords) as model:
            rvs = {}
            for name, rv_dims in dims.items():
                shape = tuple(sizes[dim] for dim in rv_dims)
                extra: dict[str, Any] = {}
                if name == "means" and d == 1:
                    # One feature: order the means, the standard defence against label
                    # switching; start at data quantiles so the ordered start is valid.
                    quantiles = np.quantile(data.values[:, 0], (np.arange(k) + 0.5) / k)
                    extra = {"transform": _OrderedComponents(), "initval": quantiles[:, None]}
                if name == "corr_chol":
                    extra = {"n": d}
                rvs[name] = priors[name].create_variable(name, shape=shape, dims=rv_dims, **extra)
            chol = self._cholesky(rvs, k, d)
            pm.Deterministic(
                self._matrix_var, chol @ chol.mT, dims=("component", "feature", "feature_bis")
            )
            observed = pm.Data("x_data", observed_values(data.values), dims=("obs", "feature"))
            patterns = missing_patterns(data.values) if np.isnan(data.values).any() else None
            self._likelihood(rvs, chol, observed, patterns)
        return model

    def _cholesky(self, rvs: dict[str, Any], k: int, d: int) -> Any:
        """Cholesky factors (K, D, D) of the component covariances from the free variables."""
        sigma = rvs["sigma"]
        match self._storage_type:
            case "full" | "tied":
                corr = rvs["corr_chol"] if d > 1 else pt.ones((d, d))
                chol = sigma[..., :, None] * corr
                return pt.broadcast_to(chol, (k, d, d))
            case "diag":
                return sigma[:, :, None] * pt.eye(d)
            case "spherical":
                return sigma[:, None, None] * pt.eye(d)

    def _matrix_point(
        self, weights: np.ndarray, means: np.ndarray, matrices: np.ndarray, n_features: int
    ) -> dict[str, np.ndarray]:
        """Weights, means, the (K, D, D) matrices and their ``sigma`` / ``corr_chol``."""
        sd = np.sqrt(np.diagonal(matrices, axis1=-2, axis2=-1))  # (K, D)
        sigma = sd[0] if self._storage_type == "tied" else sd
        if self._storage_type == "spherical":
            sigma = sd[:, 0]
        point = {
            "weights": weights,
            "means": means,
            "sigma": sigma,
            self._matrix_var: matrices,
        }
        if "corr_chol" in self._rv_shapes(n_features):
            corr = _correlation_cholesky(matrices)
            point["corr_chol"] = corr if self._storage_type == "full" else corr[0]
        return point

    def _jitter_start(
        self,
        start: dict[str, np.ndarray],
        data: MixtureData,
        em: Any,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Return a start near the EM estimate, moved by about one posterior sd of the means."""
        counts = np.maximum(em.weights * data.n_samples, 1.0)
        sd = column_moments(data.values)[1]
        means = start["means"] + rng.uniform(-1, 1, start["means"].shape) * sd / np.sqrt(
            counts[:, None]
        )
        if data.n_features == 1:
            means = np.sort(means, axis=0)
        jittered = dict(start)
        jittered["means"] = means
        weights = start["weights"] * np.exp(rng.uniform(-0.05, 0.05, start["weights"].shape))
        jittered["weights"] = weights / weights.sum()
        if "sigma" in start:
            scale = np.exp(rng.uniform(-0.05, 0.05, start["sigma"].shape))
            jittered["sigma"] = start["sigma"] * scale
        return jittered

    def _sklearn_covariances(self, cov: np.ndarray) -> np.ndarray:
        """Convert full (K, D, D) covariances to scikit-learn's shape for this type."""
        match self._storage_type:
            case "full":
                return cov
            case "tied":
                return cov[0]
            case "diag":
                return np.diagonal(cov, axis1=-2, axis2=-1).copy()
            case "spherical":
                return np.diagonal(cov, axis1=-2, axis2=-1).mean(axis=-1)

    def _likelihood(
        self, rvs: dict[str, Any], chol: Any, observed: Any, patterns: list | None = None
    ) -> Any:
        """Add the observed variable ``x`` (the family's mixture, labels summed out).

        With missing values, ``patterns`` (:func:`bayesmix._numeric.missing_patterns`)
        and ``observed`` holds 0 where a value is missing: the likelihood is then
        :func:`marginal_logp` of the family's.
        """
        raise NotImplementedError
