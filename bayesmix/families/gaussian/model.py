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
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix._glm import Response
from bayesmix._params import Options
from bayesmix._validation import MixtureData
from bayesmix.em.chunked import EMSteps
from bayesmix.families._location_scale import (
    _LocationScaleMixture,
    mahalanobis_terms,
    marginal_logp,
)
from bayesmix.families.gaussian.covariance_models import (
    ALIASES,
    MODELS,
    CovarianceModel,
    free_parameters,
    storage,
)
from bayesmix.families.gaussian.densities import (
    conditional_gaussians,
    fast_pointwise,
    gaussian_far_log_prob,
    gaussian_log_prob,
    n_parameters,
)
from bayesmix.families.gaussian.em import (
    COVARIANCE_TYPES,
    OBJECTIVES,
    EMResult,
    _prior_scale,
    chunked_steps,
    fit_em,
    full_covariances,
)
from bayesmix.priors import SCALE_PRIORS, Prior

_log = logging.getLogger("bayesmix")

__all__ = ["GaussianMixture", "mahalanobis_terms", "mixture_logp", "mixture_random"]

_LOG_2PI = float(np.log(2.0 * np.pi))
# The mclust models held as free volume, shape and orientation variables in the Bayesian
# model (covariance_models' parameterisation); the others are scikit-learn's four types
# (sigma and corr_chol) and the univariate E and V (held as tied and spherical).
_DECOMPOSED_TYPES = frozenset(MODELS) - {*ALIASES.values(), "E", "V"}
_DECOMPOSED_PRIORS = {
    "log_volume": frozenset({"Normal", "StudentT"}),
    "log_shape": frozenset({"ZeroSumNormal"}),
    "orientation_cayley": frozenset({"Normal", "StudentT"}),
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


def _normal_log_prob(y: np.ndarray, eta: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (y - eta) / scale
    return -0.5 * z * z - np.log(scale) - 0.5 * _LOG_2PI


def _normal_pt_log_prob(y: Any, eta: Any, scale: Any) -> Any:
    z = (y - eta) / scale
    return -0.5 * z * z - pt.log(scale) - 0.5 * _LOG_2PI


#: The Gaussian response of a mixture of regressions (:class:`bayesmix.MixtureRegression`):
#: ``y | x, z = k ~ Normal(x' beta_k, scales_k)``, the identity link.
RESPONSE = Response(
    name="gaussian",
    link="identity",
    log_prob=_normal_log_prob,
    pt_log_prob=_normal_pt_log_prob,
    mean=lambda eta: eta,
    variance=np.ones_like,
    draw=lambda rng, eta, scale: rng.normal(eta, scale),
    check=lambda y: None,  # any finite response
    scale="scales",
    scale_prior=lambda y_mean, y_sd: Prior("HalfNormal", sigma=float(y_sd)),
    scale_priors=SCALE_PRIORS,
    map_scale_priors=frozenset({"HalfNormal"}),
)


class GaussianMixture(_LocationScaleMixture):
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
    covariance_type : str, default="full"
        ``full``: each component has its own covariance (scales ``sigma`` with an LKJ
        prior on the correlations ``corr_chol``); ``tied``: one covariance shared by
        all components; ``diag``: each component has its own diagonal covariance;
        ``spherical``: each component has a single variance. Or one of mclust's
        covariance models ``Sigma_k = lambda_k D_k A_k D_k'`` (volume, orientation,
        shape each Equal, Variable or the Identity; Celeux & Govaert 1995): ``"EII"``,
        ``"VII"``, ``"EEI"``, ``"VEI"``, ``"EVI"``, ``"VVI"``, ``"EEE"``, ``"VEE"``,
        ``"EVE"``, ``"VVE"``, ``"EEV"``, ``"VEV"``, ``"EVV"``, ``"VVV"``, and ``"E"``,
        ``"V"`` for one feature (:mod:`bayesmix.families.gaussian.covariance_models`).
        ``spherical``, ``diag``, ``tied`` and ``full`` are VII, VVI, EEE and VVV. EM uses
        mclust's M-steps and parameter counts (BIC is mclust's with the sign flipped);
        NUTS and Laplace sample the other ten as ``log_volume``, ``log_shape`` (zero
        sum) and ``orientation_cayley`` (the Cayley parameters of the orientation), one
        per component where the letter is V, shared where it is E (see
        :mod:`bayesmix.families.gaussian.covariance_models`). Their ``covariances_`` have
        the shape of the smallest of the four names that holds them (EII as
        ``spherical``, EEI / VEI / EVI as ``diag``, the rest as ``full``).
    priors : dict of str to Prior, optional
        Priors keyed by random variable: ``weights`` (Dirichlet), ``means`` (Normal or
        StudentT), ``sigma`` (HalfNormal, ...), ``corr_chol`` (LKJCorr, full and tied
        with more than one feature); for the other mclust models ``log_volume`` (Normal
        or StudentT), ``log_shape`` (ZeroSumNormal) and ``orientation_cayley`` (Normal or
        StudentT) instead of ``sigma`` and ``corr_chol``. Merged over the defaults (see
        Notes); the dict is never modified.
    n_init : int, default=5
        Number of EM restarts run to convergence; the best is kept.
    init : {"emem", "k-means++", "random"}, default="emem"
        How the EM restarts start. ``"emem"`` (Biernacki, Celeux & Govaert 2003): ``8 *
        n_init`` short runs (until the mean log-likelihood changes by less than 1e-3, at
        most 50 iterations) from k-means++ and random partitions in turn, of which the
        best ``n_init`` run to convergence; it reaches the best known optimum more often
        than k-means++ restarts (``bench/results/em_init.md``). ``"k-means++"``:
        every restart from new k-means++ seeds (scikit-learn's start, bayesmix's earlier
        default); ``"random"``: from ``K`` random rows. With maximum likelihood, a
        restart that ends degenerate (a component on fewer points than its parameters
        need, or with a variance below 1e-6 of the data's) is kept only if every restart
        does.
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
    missing : {"raise", "model"}, default="raise"
        Missing values (NaN) in ``X``: ``"raise"`` refuses them (a ``DataError``);
        ``"model"`` treats them as missing at random and integrates them out: each row's
        likelihood is the marginal density of its observed coordinates, and EM's E-step
        takes the conditional expectations of the missing ones (Ghahramani & Jordan
        1994), rows grouped by their pattern of missing values. ``predict``,
        ``predict_proba`` and ``score_samples`` then accept rows with missing values too.
        NUTS and Laplace sample the same marginal likelihood (the PyMC model, per pattern
        of missing values; not the fused kernel); a row or column with every value
        missing is a ``DataError``. On chunked data (Dask, Zarr, Parquet) EM and Laplace
        take them too, chunk by chunk; NUTS there needs complete rows.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Posterior mean (NUTS) or estimate (EM) of the mixing proportions.
    means_ : ndarray of shape (n_components, n_features)
        Posterior mean or estimate of the component means.
    covariances_ : ndarray
        Posterior mean or estimate of the covariances, shaped as in scikit-learn:
        ``full`` (K, D, D), ``tied`` (D, D), ``diag`` (K, D), ``spherical`` (K,) (an
        mclust model: the shape of the type that holds it, see ``covariance_type``).
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
    ``corr_chol ~ LKJCorr(eta=2)``. For one feature, the means are ordered. The other
    mclust models: ``log_volume ~ Normal(v, 2)`` with ``v`` the log-volume of
    ``cov(X) / K^(2/D)`` (mclust's prior scale), ``log_shape ~ ZeroSumNormal(1)``,
    ``orientation_cayley ~ Normal(0, 1)``.

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
    _response = RESPONSE
    _component_vars = ("means", "covariances")
    component_log_prob = staticmethod(gaussian_log_prob)
    _fast_pointwise = staticmethod(fast_pointwise)
    _far_log_prob = staticmethod(gaussian_far_log_prob)
    # Name of the deterministic (K, D, D) matrices built from ``sigma`` and ``corr_chol``.
    _matrix_var = "covariances"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **_LocationScaleMixture._parameter_constraints,
        "covariance_type": [Options(*COVARIANCE_TYPES, *MODELS)],
        "objective": [Options(*OBJECTIVES)],
        "missing": [Options("raise", "model")],
    }

    def __init__(
        self,
        *,
        n_components: int = 2,
        covariance_type: str = "full",
        priors: dict[str, Prior] | None = None,
        n_init: int = 5,
        init: Literal["emem", "k-means++", "random"] = "emem",
        max_iter: int = 500,
        tol: float = 1e-6,
        reg_covar: float = 1e-6,
        random_state: int | None = None,
        objective: Literal["ml", "map"] = "ml",
        missing: Literal["raise", "model"] = "raise",
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.priors = priors
        self.n_init = n_init
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.objective = objective
        self.missing = missing

    # -- specification -------------------------------------------------------------------

    def _fitted_attributes(self, point: dict[str, np.ndarray]) -> None:
        self.means_ = point["means"]
        self.covariances_ = self._sklearn_covariances(point["covariances"])

    def _n_parameters(self, n_features: int) -> int:
        return n_parameters(self.n_components, n_features, self.covariance_type)

    @classmethod
    def _covariance_types(cls, n_features: int) -> tuple[str, ...]:
        """Return mclust's models for ``n_features``: the fourteen, or ``E`` and ``V`` for one."""
        return tuple(name for name in MODELS if (len(name) == 1) == (n_features == 1))

    def _check_data(self, data: MixtureData) -> None:
        storage(self.covariance_type, data.n_features)  # the model fits the features

    # -- missing values -------------------------------------------------------------------

    def _conditional(
        self, observed_values: np.ndarray, params: tuple[np.ndarray, ...], observed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Callable | None]:
        """Return the Gaussian components' terms of :meth:`impute` for one pattern.

        Component ``k``'s missing coordinates given the observed ones are the
        conditional Gaussian (:func:`bayesmix.families.gaussian.densities.
        conditional_gaussians`): no latent scale.
        """
        means, covariances = params
        log_density, cond_mean, cond_cov = conditional_gaussians(
            observed_values, means, covariances, observed
        )
        return log_density, cond_mean, cond_cov, None

    # -- mclust's models as volume, shape and orientation -------------------------------

    @property
    def _decomposed(self) -> CovarianceModel | None:
        """The mclust model sampled as volume, shape and orientation, or None."""
        return (
            MODELS.get(self.covariance_type) if self.covariance_type in _DECOMPOSED_TYPES else None
        )

    def _rv_shapes(self, n_features: int) -> dict[str, tuple[str, ...]]:
        model = self._decomposed
        if model is None:
            return super()._rv_shapes(n_features)

        def dims(letter: str, own: tuple[str, ...]) -> tuple[str, ...]:
            return ("component", *own) if letter == "V" else own

        shapes = {
            "weights": ("component",),
            "means": ("component", "feature"),
            "log_volume": dims(model.volume, ()),
        }
        if model.shape != "I":
            shapes["log_shape"] = dims(model.shape, ("feature",))
        if model.orientation != "I":
            shapes["orientation_cayley"] = dims(model.orientation, ("feature", "feature_bis"))
        return shapes

    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        priors = super()._default_priors(data)
        if self._decomposed is None:
            return priors
        # Centred on the volume of mclust's prior scale cov(X) / K^(2/D), two orders of
        # magnitude either side; shapes within a factor of e or so; Cayley parameters
        # t = tan(angle / 2) of about one (angles mostly within +-127 degrees of the axes).
        scale = _prior_scale(
            data.values, self.n_components, "full", sample_weight=data.sample_weight
        )
        eigenvalues = np.linalg.eigvalsh(scale)
        eigenvalues = np.maximum(eigenvalues, 1e-12 * max(eigenvalues.max(), 1e-300))
        centre = np.log(eigenvalues).mean()
        priors["log_volume"] = Prior("Normal", mu=float(centre), sigma=2.0)
        priors["log_shape"] = Prior("ZeroSumNormal", sigma=1.0)
        priors["orientation_cayley"] = Prior("Normal", mu=0.0, sigma=1.0)
        return {name: priors[name] for name in self._rv_shapes(data.n_features)}

    def _allowed_priors(self) -> dict[str, frozenset[str]]:
        return super()._allowed_priors() | _DECOMPOSED_PRIORS

    def _cholesky(self, rvs: dict[str, Any], k: int, d: int) -> Any:
        model = self._decomposed
        if model is None:
            return super()._cholesky(rvs, k, d)
        volume = pt.broadcast_to(pt.exp(rvs["log_volume"]), (k,))
        shape = pt.broadcast_to(
            pt.exp(rvs["log_shape"]) if "log_shape" in rvs else pt.ones(d), (k, d)
        )
        eigenvalues = volume[:, None] * shape
        if "orientation_cayley" not in rvs:
            return pt.sqrt(eigenvalues)[:, :, None] * pt.eye(d)
        lower = pt.tril(pt.broadcast_to(rvs["orientation_cayley"], (k, d, d)), -1)
        skew = lower - lower.mT
        eye = pt.eye(d)
        # covariance_models.cayley: (I - S)(I + S)^-1.
        orientation = pt.linalg.solve(eye + skew, eye - skew)
        covariances = (orientation * eigenvalues[:, None, :]) @ orientation.mT
        return pt.linalg.cholesky(covariances)

    def _nuts_target(self, data: MixtureData, priors: dict[str, Prior]) -> Any:
        if self._decomposed is not None:
            _log.info(
                "covariance_type=%r is sampled from its PyMC model (no fused kernel yet)",
                self.covariance_type,
            )
            return None
        return super()._nuts_target(data, priors)

    # -- the PyMC model ------------------------------------------------------------------

    def _likelihood(
        self, rvs: dict[str, Any], chol: Any, observed: Any, patterns: list | None = None
    ) -> Any:
        """Add the observed variable ``x``: the mixture with the labels summed out.

        With missing values (``patterns``), each row's marginal density of its observed
        coordinates (:func:`bayesmix.families._location_scale.marginal_logp`).
        """
        return pm.CustomDist(
            "x",
            rvs["weights"],
            rvs["means"],
            chol,
            logp=mixture_logp if patterns is None else marginal_logp(mixture_logp, patterns),
            random=mixture_random,
            signature="(k),(k,d),(k,d,d)->(d)",
            observed=observed,
            dims=("obs", "feature"),
        )

    # -- EM ------------------------------------------------------------------------------

    def _run_em(
        self, data: MixtureData, rng: np.random.Generator, priors: dict[str, Prior]
    ) -> EMResult:
        if np.isnan(data.values).any():
            # Missing values: the EM of sufficient statistics, whose E-step integrates
            # them out (em._missing_chunk_sums), over the data in memory.
            return self._fit_missing_em(data, rng, priors)
        result = fit_em(
            data.values,
            self.n_components,
            covariance_type=self.covariance_type,
            n_init=self.n_init,
            init=self.init,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            random_state=rng,
            sample_weight=data.sample_weight,
            objective=self.objective,
        )
        return self._order_em(result)

    def _order_em(self, em: EMResult) -> EMResult:
        # A canonical labelling: components by increasing mean of the first feature
        # (the ordering constraint of the 1-D model, and the reference of relabelling).
        return em.reordered(np.lexsort(em.means.T[::-1]))

    def _em_steps(
        self, priors: dict[str, Prior], n_features: int, data_pass: Callable[[Callable], dict]
    ) -> EMSteps:
        return chunked_steps(
            self.n_components,
            n_features,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            objective=self.objective,
            data_pass=data_pass,
        )

    def _point_from_em(self, em: EMResult, n_features: int) -> dict[str, np.ndarray]:
        """Every posterior variable at the EM estimate (constrained space)."""
        cov = full_covariances(em.covariances, em.covariance_type, self.n_components, n_features)
        if self._decomposed is not None:
            parts = free_parameters(self.covariance_type, cov)
            return {"weights": em.weights, "means": em.means, "covariances": cov, **parts}
        return self._matrix_point(em.weights, em.means, cov, n_features)
