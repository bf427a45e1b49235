"""Gaussian mixture: the PyMC model, its marginal likelihood and its EM counterpart.

Model (``covariance_type="full"``)::

    pi      ~ Dirichlet(a * 1_K)
    mu_k    ~ Normal(m, s)                       k = 1..K   (ordered when D = 1)
    sigma_k ~ HalfNormal(tau)                    component scales, shape (K, D)
    L_k     ~ LKJCorr(eta)                       Cholesky factor of the correlation
    Sigma_k = diag(sigma_k) L_k L_k^T diag(sigma_k)
    log p(x_n) = logsumexp_k [log pi_k + log N(x_n | mu_k, Sigma_k)]

The label ``z_n`` of each observation is marginalised out by the log-sum-exp, so
NUTS only sees continuous parameters. ``diag``, ``spherical`` and ``tied`` follow
scikit-learn's meanings: per-component diagonal covariances, one variance per
component, and one full covariance shared by all components.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.transforms import Ordered, Transform

from bayesmix._numeric import column_moments
from bayesmix._validation import MixtureData, check_nonnegative, check_option
from bayesmix.families.gaussian.densities import (
    fast_pointwise,
    gaussian_log_prob,
    n_parameters,
    scalar_parameters,
)
from bayesmix.families.gaussian.em import (
    COVARIANCE_TYPES,
    OBJECTIVES,
    EMResult,
    fit_em,
    full_covariances,
)
from bayesmix.model import MixtureModel
from bayesmix.priors import Prior

_log = logging.getLogger("bayesmix")

__all__ = ["GaussianMixture", "mahalanobis_terms", "mixture_logp", "mixture_random"]

_LOG_2PI = float(np.log(2.0 * np.pi))

_ALLOWED_PRIORS = {
    "weights": frozenset({"Dirichlet"}),
    "means": frozenset({"Normal", "StudentT"}),
    "sigma": frozenset(
        {
            "HalfNormal",
            "HalfStudentT",
            "HalfCauchy",
            "Exponential",
            "Gamma",
            "InverseGamma",
            "LogNormal",
        }
    ),
    "corr_chol": frozenset({"LKJCorr"}),
}


def mixture_logp(value: Any, weights: Any, means: Any, chol: Any) -> Any:
    r"""Return the marginal log-density of every observation (PyTensor).

    ``log p(x_n) = logsumexp_k [log pi_k + log N(x_n | mu_k, L_k L_k^T)]``. The
    Mahalanobis term comes from forward substitution ``L_k z = x_n - mu_k``, unrolled
    over the (static, small) number of features so that every operation is elementwise
    over (observation, component) and fuses into one loop: no ``(N, K, D)`` temporary
    and no matrix inverse. The log-determinant is the sum of the log Cholesky diagonal.

    Parameters
    ----------
    value : TensorVariable of shape (..., n_features)
        Observations; the batch dimensions include the observation axis.
    weights : TensorVariable of shape (..., n_components)
    means : TensorVariable of shape (..., n_components, n_features)
    chol : TensorVariable of shape (..., n_components, n_features, n_features)
        Lower Cholesky factors of the component covariances. Batch dimensions of the
        parameters broadcast against those of ``value`` (right-aligned), as PyMC passes
        them for a distribution with signature ``(k),(k,d),(k,d,d)->(d)``.

    Returns
    -------
    TensorVariable of shape ``value.shape[:-1]``
    """
    n_features, mahalanobis, log_det = mahalanobis_terms(value, means, chol)
    component = -0.5 * n_features * _LOG_2PI - log_det - 0.5 * mahalanobis
    return pt.logsumexp(pt.log(weights) + component, axis=-1)


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


def mixture_random(
    weights: np.ndarray,
    means: np.ndarray,
    chol: np.ndarray,
    rng: np.random.Generator | None = None,
    size: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Draw observations by the generative story: a label, then a Gaussian (NumPy).

    Parameters may carry leading batch dimensions (as in prior predictive sampling);
    ``size`` is the batch shape of the draws, without the feature dimension.
    """
    rng = np.random.default_rng(rng)
    n_components, n_features = means.shape[-2:]
    param_batch = np.broadcast_shapes(weights.shape[:-1], means.shape[:-2], chol.shape[:-3])
    batch = tuple(size) if size is not None else param_batch
    weights = np.broadcast_to(weights, (*batch, n_components))
    means = np.broadcast_to(means, (*batch, n_components, n_features))
    chol = np.broadcast_to(chol, (*batch, n_components, n_features, n_features))
    cdf = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
    z = np.minimum((rng.random(batch)[..., None] > cdf).sum(axis=-1), n_components - 1)
    mu = np.take_along_axis(means, z[..., None, None], axis=-2)[..., 0, :]
    factor = np.take_along_axis(chol, z[..., None, None, None], axis=-3)[..., 0, :, :]
    eps = rng.standard_normal((*batch, n_features))
    return mu + np.einsum("...ij,...j->...i", factor, eps)


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


class GaussianMixture(MixtureModel):
    r"""Bayesian finite mixture of multivariate Gaussians.

    The component labels are marginalised out; NUTS samples the weights, means and
    covariances, and an exact EM gives maximum-likelihood point estimates of the same
    quantities. Every NUTS chain starts from the EM solution and every draw is
    relabelled to the EM labelling, so ``arviz_stats.summary(model.idata)`` gives
    meaningful R-hat and ESS for every component parameter.

    Parameters
    ----------
    n_components : int, default=2
        Number of mixture components K.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        ``full``: each component has its own covariance (scales ``sigma`` with an LKJ
        prior on the correlations ``corr_chol``); ``tied``: one covariance shared by
        all components; ``diag``: each component has its own diagonal covariance;
        ``spherical``: each component has a single variance.
    priors : dict of str to Prior, optional
        Priors keyed by random variable: ``weights`` (Dirichlet), ``means`` (Normal or
        StudentT), ``sigma`` (HalfNormal, ...), ``corr_chol`` (LKJCorr, full and tied
        with more than one feature). Merged over the defaults (see Notes); the dict is
        never modified.
    n_init : int, default=5
        Number of EM restarts (k-means++ initialisations); the best is kept.
    max_iter : int, default=500
        Maximum number of EM iterations per restart.
    tol : float, default=1e-6
        EM stops when the mean log-likelihood changes by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the diagonal of EM covariance estimates to keep them positive definite.
    random_state : int or None, default=None
        Seeds EM and, unless ``fit`` gets ``random_seed``, the sampler.
    objective : {"ml", "map"}, default="ml"
        What EM maximises: the likelihood (as scikit-learn), or the posterior under
        mclust's conjugate regularising prior (Fraley & Raftery 2007), which keeps
        covariances positive definite on degenerate data. For ``method="nuts"`` it
        only changes the EM start and reference labelling.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Posterior mean (NUTS) or estimate (EM) of the mixing proportions.
    means_ : ndarray of shape (n_components, n_features)
        Posterior mean or estimate of the component means.
    covariances_ : ndarray
        Posterior mean or estimate of the covariances, shaped as in scikit-learn:
        ``full`` (K, D, D), ``tied`` (D, D), ``diag`` (K, D), ``spherical`` (K,).
    idata : xarray.DataTree
        The result: ``posterior`` (``weights``, ``means``, ``covariances``, ``sigma``,
        ``corr_chol``), ``log_likelihood`` (``x``, per observation), ``observed_data``,
        ``sample_stats`` (NUTS) or ``em_stats`` (EM).
    em_ : bayesmix.families.gaussian.em.EMResult
        The EM solution: the estimate of ``method="em"`` and the start and reference
        labelling of ``method="nuts"``.
    priors_ : dict of str to Prior
        The priors used, defaults resolved against the data.
    n_features_in_ : int
    feature_names_in_ : list of str

    Notes
    -----
    Default priors, scaled by the data mean ``m`` and standard deviation ``s`` of each
    feature: ``weights ~ Dirichlet(1)``, ``means ~ Normal(m, 3 s)``,
    ``sigma ~ HalfNormal(2 s)`` (the mean ``s`` for ``spherical``),
    ``corr_chol ~ LKJCorr(eta=2)``. For one feature, the means are ordered.

    Components are labelled by increasing mean of the first feature (the EM estimate
    is sorted that way and every posterior draw is relabelled to it).

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_faithful()
    >>> gm = bm.GaussianMixture(n_components=2, random_state=0).fit(X, method="em")
    >>> gm.weights_.round(2)
    array([0.36, 0.64])
    >>> gm.predict(X.iloc[:3]).tolist()
    [1, 0, 1]
    """

    _family = "gaussian"
    _component_vars = ("means", "covariances")
    component_log_prob = staticmethod(gaussian_log_prob)
    _fast_pointwise = staticmethod(fast_pointwise)
    # Name of the deterministic (K, D, D) matrices built from ``sigma`` and ``corr_chol``.
    _matrix_var = "covariances"

    def __init__(
        self,
        *,
        n_components: int = 2,
        covariance_type: Literal["full", "tied", "diag", "spherical"] = "full",
        priors: dict[str, Prior] | None = None,
        n_init: int = 5,
        max_iter: int = 500,
        tol: float = 1e-6,
        reg_covar: float = 1e-6,
        random_state: int | None = None,
        objective: Literal["ml", "map"] = "ml",
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.priors = priors
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.objective = objective

    # -- specification -------------------------------------------------------------------

    def _check_params(self) -> None:
        super()._check_params()
        check_nonnegative(self.reg_covar, "reg_covar")
        check_option(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_option(self.objective, "objective", OBJECTIVES)

    def _min_samples(self, n_features: int) -> tuple[int, str]:
        if self.covariance_type == "full" and n_features > 1:
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
        }[self.covariance_type]
        dims = {"weights": ("component",), "means": ("component", "feature"), "sigma": sigma}
        if n_features > 1 and self.covariance_type in ("full", "tied"):
            batch = ("component",) if self.covariance_type == "full" else ()
            dims["corr_chol"] = (*batch, "feature", "feature_bis")
        return dims

    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        loc, scale = column_moments(data.values, data.sample_weight)
        if data.n_samples == 1:
            scale = np.ones(data.n_features)
        sigma_scale = 2.0 * (scale.mean() if self.covariance_type == "spherical" else scale)
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

    def _scalar_parameters(
        self, draws: tuple[np.ndarray, ...], *, components: list[Any], features: list[Any]
    ) -> tuple[list[str], list[str], np.ndarray]:
        """Weights, means and the free covariance entries of this covariance type."""
        weights, means, matrices, *rest = draws
        variables, labels, values = scalar_parameters(
            weights,
            means,
            matrices,
            covariance_type=self.covariance_type,
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

    def _fitted_attributes(self, point: dict[str, np.ndarray]) -> None:
        self.means_ = point["means"]
        self.covariances_ = self._sklearn_covariances(point["covariances"])

    def _n_parameters(self, n_features: int) -> int:
        return n_parameters(self.n_components, n_features, self.covariance_type)

    # -- the PyMC model ------------------------------------------------------------------

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
            self._likelihood(rvs, chol, pm.Data("x_data", data.values, dims=("obs", "feature")))
        return model

    def _likelihood(self, rvs: dict[str, Any], chol: Any, observed: Any) -> Any:
        """Add the observed variable ``x``: the mixture with the labels summed out."""
        return pm.CustomDist(
            "x",
            rvs["weights"],
            rvs["means"],
            chol,
            logp=mixture_logp,
            random=mixture_random,
            signature="(k),(k,d),(k,d,d)->(d)",
            observed=observed,
            dims=("obs", "feature"),
        )

    def _cholesky(self, rvs: dict[str, Any], k: int, d: int) -> Any:
        """Cholesky factors (K, D, D) of the component covariances from the free variables."""
        sigma = rvs["sigma"]
        match self.covariance_type:
            case "full" | "tied":
                corr = rvs["corr_chol"] if d > 1 else pt.ones((d, d))
                chol = sigma[..., :, None] * corr
                return pt.broadcast_to(chol, (k, d, d))
            case "diag":
                return sigma[:, :, None] * pt.eye(d)
            case "spherical":
                return sigma[:, None, None] * pt.eye(d)

    # -- EM ------------------------------------------------------------------------------

    def _nuts_target(self, data: MixtureData, priors: dict[str, Prior]) -> Any:
        """Return the fused numba log density + gradient (``_nuts_kernel``) if it applies.

        It implements the default prior families (Dirichlet, Normal, HalfNormal, LKJCorr);
        for other priors None, and the PyMC model is compiled instead.
        """
        from bayesmix.families.gaussian import _nuts_kernel

        if data.sample_weight is not None:
            _log.info("the fused kernel has no sample weights; compiling the PyMC model")
            return None
        target = _nuts_kernel.build(
            {
                "covariance_type": self.covariance_type,
                "n_components": self.n_components,
                "n_features": data.n_features,
                "priors": priors,
                "features": list(data.features),
            }
        )
        if target is None:
            _log.info(
                "the fused Gaussian-mixture kernel does not cover this model "
                "(covariance_type=%r, priors %s); compiling the PyMC model instead",
                self.covariance_type,
                {name: prior.distribution for name, prior in priors.items()},
            )
        return target

    def _run_em(
        self, data: MixtureData, rng: np.random.Generator, priors: dict[str, Prior]
    ) -> EMResult:
        result = fit_em(
            data.values,
            self.n_components,
            covariance_type=self.covariance_type,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            random_state=rng,
            sample_weight=data.sample_weight,
            objective=self.objective,
        )
        # A canonical labelling: components by increasing mean of the first feature
        # (the ordering constraint of the 1-D model, and the reference of relabelling).
        order = np.lexsort(result.means.T[::-1])
        return result.reordered(order)

    def _point_from_em(self, em: EMResult, n_features: int) -> dict[str, np.ndarray]:
        """Every posterior variable at the EM estimate (constrained space)."""
        cov = full_covariances(em.covariances, em.covariance_type, self.n_components, n_features)
        return self._matrix_point(em.weights, em.means, cov, n_features)

    def _matrix_point(
        self, weights: np.ndarray, means: np.ndarray, matrices: np.ndarray, n_features: int
    ) -> dict[str, np.ndarray]:
        """Weights, means, the (K, D, D) matrices and their ``sigma`` / ``corr_chol``."""
        sd = np.sqrt(np.diagonal(matrices, axis1=-2, axis2=-1))  # (K, D)
        sigma = sd[0] if self.covariance_type == "tied" else sd
        if self.covariance_type == "spherical":
            sigma = sd[:, 0]
        point = {
            "weights": weights,
            "means": means,
            "sigma": sigma,
            self._matrix_var: matrices,
        }
        if "corr_chol" in self._rv_shapes(n_features):
            corr = _correlation_cholesky(matrices)
            point["corr_chol"] = corr if self.covariance_type == "full" else corr[0]
        return point

    def _jitter_start(
        self,
        start: dict[str, np.ndarray],
        data: MixtureData,
        em: EMResult,
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
        jittered["sigma"] = start["sigma"] * np.exp(rng.uniform(-0.05, 0.05, start["sigma"].shape))
        return jittered

    def _sklearn_covariances(self, cov: np.ndarray) -> np.ndarray:
        """Convert full (K, D, D) covariances to scikit-learn's shape for this type."""
        match self.covariance_type:
            case "full":
                return cov
            case "tied":
                return cov[0]
            case "diag":
                return np.diagonal(cov, axis1=-2, axis2=-1).copy()
            case "spherical":
                return np.diagonal(cov, axis1=-2, axis2=-1).mean(axis=-1)
