"""Student-t mixture: heavy-tailed components for clustering with outliers.

Model (``covariance_type="full"``)::

    pi      ~ Dirichlet(a * 1_K)
    mu_k    ~ Normal(m, s)
    sigma_k ~ HalfNormal(tau)                    scales, shape (K, D)
    L_k     ~ LKJCorr(eta)                       Cholesky factor of the correlation
    nu_k    ~ Gamma(2, 0.1)                      degrees of freedom (Juarez & Steel 2010)
    Sigma_k = diag(sigma_k) L_k L_k^T diag(sigma_k)        the scale matrix
    log p(x_n) = logsumexp_k [log pi_k + log t_nu_k(x_n | mu_k, Sigma_k)]

A multivariate t is a Gaussian whose covariance is ``Sigma / u`` with
``u ~ Gamma(nu / 2, nu / 2)``: outlying observations get a small ``u`` and little
weight, so one outlier does not pull a mean or inflate a covariance the way it does
in a Gaussian mixture. EM is the ECM algorithm of McLachlan & Peel (2000).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix._base import MixtureModel
from bayesmix._gaussian import GaussianMixture, mahalanobis_terms
from bayesmix._validation import MixtureData, check_nonnegative, check_option
from bayesmix.em import COVARIANCE_TYPES, full_covariances
from bayesmix.em_families import MixtureEMResult, fit_student_t_em
from bayesmix.exceptions import InvalidParameterError
from bayesmix.priors import Prior
from bayesmix.stats import n_parameters, student_t_log_prob

__all__ = ["StudentTMixture", "student_t_mixture_logp", "student_t_mixture_random"]


def student_t_mixture_logp(value: Any, weights: Any, means: Any, chol: Any, dof: Any) -> Any:
    """Return the marginal log-density of every observation under a t mixture (PyTensor).

    Shapes as in :func:`bayesmix._gaussian.mixture_logp`, plus ``dof`` of shape
    ``(..., n_components)``.
    """
    n_features, mahalanobis, log_det = mahalanobis_terms(value, means, chol)
    component = (
        pt.gammaln(0.5 * (dof + n_features))
        - pt.gammaln(0.5 * dof)
        - 0.5 * n_features * pt.log(np.pi * dof)
        - log_det
        - 0.5 * (dof + n_features) * pt.log1p(mahalanobis / dof)
    )
    return pt.logsumexp(pt.log(weights) + component, axis=-1)


def student_t_mixture_random(
    weights: np.ndarray,
    means: np.ndarray,
    chol: np.ndarray,
    dof: np.ndarray,
    rng: np.random.Generator | None = None,
    size: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Draw observations: a label, a Gamma(nu/2, nu/2) precision scale, then a Gaussian."""
    rng = np.random.default_rng(rng)
    n_components, n_features = means.shape[-2:]
    param_batch = np.broadcast_shapes(
        weights.shape[:-1], means.shape[:-2], chol.shape[:-3], dof.shape[:-1]
    )
    batch = tuple(size) if size is not None else param_batch
    weights = np.broadcast_to(weights, (*batch, n_components))
    means = np.broadcast_to(means, (*batch, n_components, n_features))
    chol = np.broadcast_to(chol, (*batch, n_components, n_features, n_features))
    dof = np.broadcast_to(dof, (*batch, n_components))
    cdf = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
    z = np.minimum((rng.random(batch)[..., None] > cdf).sum(axis=-1), n_components - 1)
    mu = np.take_along_axis(means, z[..., None, None], axis=-2)[..., 0, :]
    factor = np.take_along_axis(chol, z[..., None, None, None], axis=-3)[..., 0, :, :]
    nu = np.take_along_axis(dof, z[..., None], axis=-1)[..., 0]
    u = rng.gamma(0.5 * nu, 2.0 / nu)
    eps = rng.standard_normal((*batch, n_features)) / np.sqrt(u)[..., None]
    return mu + np.einsum("...ij,...j->...i", factor, eps)


class StudentTMixture(GaussianMixture):
    r"""Bayesian finite mixture of multivariate Student-t distributions (robust clustering).

    Like :class:`GaussianMixture`, with heavy-tailed components: every component has
    a location ``means``, a scale matrix ``scales`` (parameterised like the Gaussian
    covariances: ``sigma`` and ``corr_chol``) and its own degrees of freedom ``dof``.
    Outliers are absorbed by the tails instead of distorting the components or
    demanding components of their own. The EM estimate is maximum likelihood by ECM.

    Parameters
    ----------
    n_components : int, default=2
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Structure of the scale matrices, as for :class:`GaussianMixture`.
    priors : dict of str to Prior, optional
        Priors for ``weights``, ``means``, ``sigma``, ``corr_chol`` (as for
        :class:`GaussianMixture`) and ``dof`` (Gamma, Exponential, ...).
    n_init : int, default=5
        Number of ECM restarts.
    max_iter : int, default=500
    tol : float, default=1e-6
    reg_covar : float, default=1e-6
    random_state : int or None, default=None
    dof_bounds : tuple of float, default=(1.0, 200.0)
        Range of the degrees of freedom in ECM.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
        Posterior mean (or ECM estimate) of the component locations.
    scales_ : ndarray
        Scale matrices in scikit-learn's covariance shape for ``covariance_type``; the
        covariance of component ``k`` is ``dof_[k] / (dof_[k] - 2) * Sigma_k`` for
        ``dof_[k] > 2``.
    dof_ : ndarray of shape (n_components,)
        Degrees of freedom.
    idata : xarray.DataTree
        ``posterior`` (``weights``, ``means``, ``scales``, ``dof``, ``sigma``,
        ``corr_chol``) and the other groups as for :class:`GaussianMixture`.
    em_ : bayesmix.em_families.MixtureEMResult
    priors_ : dict of str to Prior
    n_features_in_ : int
    feature_names_in_ : list of str

    Notes
    -----
    Default priors as for :class:`GaussianMixture`, and ``dof ~ Gamma(2, 0.1)``
    (mean 20, Juárez & Steel 2010). Components are labelled by increasing location
    of the first feature.

    References
    ----------
    G. J. McLachlan and D. Peel, *Finite Mixture Models*, Wiley, 2000, chapter 7.
    M. A. Juárez and M. F. J. Steel, "Model-based clustering of non-Gaussian panel
    data based on skew-t distributions", *JBES* 28, 52-66, 2010.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_faithful()
    >>> tm = bm.StudentTMixture(n_components=2, random_state=0).fit(X, method="em")
    >>> tm.weights_.round(2)
    array([0.36, 0.64])
    >>> bool(np.all(tm.dof_ > 1))
    True
    """

    _family = "student_t"
    _component_vars = ("means", "scales", "dof")
    _component_log_prob = staticmethod(student_t_log_prob)
    _matrix_var = "scales"

    def __init__(
        self,
        *,
        n_components: int = 2,
        covariance_type: str = "full",
        priors: dict[str, Prior] | None = None,
        n_init: int = 5,
        max_iter: int = 500,
        tol: float = 1e-6,
        reg_covar: float = 1e-6,
        random_state: int | None = None,
        dof_bounds: tuple[float, float] = (1.0, 200.0),
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.priors = priors
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.dof_bounds = dof_bounds

    def _check_params(self) -> None:
        MixtureModel._check_params(self)
        check_nonnegative(self.reg_covar, "reg_covar")
        check_option(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        _check_bounds(self.dof_bounds)

    def _rv_shapes(self, n_features: int) -> dict[str, tuple[str, ...]]:
        dims = super()._rv_shapes(n_features)
        dims["dof"] = ("component",)
        return dims

    def _default_priors(self, data: MixtureData) -> dict[str, Prior]:
        priors = super()._default_priors(data)
        priors["dof"] = Prior("Gamma", alpha=2.0, beta=0.1)
        return priors

    def _allowed_priors(self) -> dict[str, frozenset[str]]:
        allowed = dict(super()._allowed_priors())
        allowed["dof"] = frozenset({"Gamma", "Exponential", "LogNormal", "InverseGamma"})
        return allowed

    def _n_parameters(self, n_features: int) -> int:
        return n_parameters(self.n_components, n_features, self.covariance_type) + (
            self.n_components
        )

    def _likelihood(self, rvs: dict[str, Any], chol: Any, observed: Any) -> Any:
        """Add the observed variable ``x``: the t mixture with the labels summed out."""
        return pm.CustomDist(
            "x",
            rvs["weights"],
            rvs["means"],
            chol,
            rvs["dof"],
            logp=student_t_mixture_logp,
            random=student_t_mixture_random,
            signature="(k),(k,d),(k,d,d),(k)->(d)",
            observed=observed,
            dims=("obs", "feature"),
        )

    def _fitted_attributes(self, point: dict[str, np.ndarray]) -> None:
        self.means_ = point["means"]
        self.scales_ = self._sklearn_covariances(point["scales"])
        self.dof_ = point["dof"]

    @classmethod
    def _em_from_dict(cls, data: dict) -> MixtureEMResult:
        return MixtureEMResult.from_dict(data)

    def _run_em(
        self, data: MixtureData, rng: np.random.Generator, priors: dict[str, Prior]
    ) -> MixtureEMResult:
        result = fit_student_t_em(
            data.values,
            self.n_components,
            covariance_type=self.covariance_type,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            random_state=rng,
            dof_bounds=tuple(float(b) for b in self.dof_bounds),
        )
        order = np.lexsort(result.params["means"].T[::-1])
        return result.reordered(order)

    def _point_from_em(self, em: MixtureEMResult, n_features: int) -> dict[str, np.ndarray]:
        """Every posterior variable at the ECM estimate (constrained space)."""
        scales = full_covariances(
            em.params["covariances"], self.covariance_type, self.n_components, n_features
        )
        point = self._matrix_point(em.weights, em.params["means"], scales, n_features)
        point["dof"] = np.asarray(em.params["dof"], dtype=np.float64)
        return point


def _check_bounds(bounds: Any) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        low, high = np.nan, np.nan
    if not (0 < low < high < np.inf):
        raise InvalidParameterError(
            f"dof_bounds must be two numbers 0 < low < high; got {bounds!r}. "
            "Try the default (1.0, 200.0)."
        )
    return low, high
