r"""Generalised linear models for the components of a mixture of regressions.

A family that can be the component of :class:`bayesmix.MixtureRegression` describes its
response distribution by a :class:`Response` (in the family's own module): its link, its
log density in NumPy and in PyTensor, how it draws, which responses it accepts, and
whether it has a scale (its default prior, its NUTS start). This module holds the
family-agnostic maths: the weighted maximum-likelihood fit of one component (the M-step
of EM) for every canonical link, and Newton's method (with bounds) that a response whose
M-step is not a weighted GLM fit (a negative binomial's dispersion, estimated jointly with
the coefficients: its own ``Response.weighted_fit``) maximises with.

With the canonical link the log density is :math:`\log f(y \mid \eta, \phi) = (y \eta -
b(\eta)) / \phi + c(y, \phi)` with :math:`\eta = x^T \beta`, so for weights :math:`r_n`
the weighted log-likelihood is concave in :math:`\beta`, its gradient is
:math:`X^T R (y - b'(\eta)) / \phi` and its Hessian :math:`-X^T R\, \mathrm{diag}(b''(\eta))
X / \phi`: Newton's method is Fisher scoring is IRLS (McCullagh & Nelder 1989, sec. 2.5).
The Gaussian (identity link) is the one-step case, weighted least squares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import linalg

from bayesmix._numeric import logsumexp
from bayesmix.exceptions import DataError, FitError

if TYPE_CHECKING:
    from bayesmix.priors import Prior

__all__ = [
    "Penalty",
    "Response",
    "check_design",
    "check_weighted_rank",
    "log_softmax_weights",
    "map_residual_scale",
    "newton_maximise",
    "weighted_fit",
    "weighted_multinomial_fit",
]

# Newton's iterations of one weighted fit stop when the largest step of a coefficient is
# below this (relative to the coefficient's size, at least 1), ...
_NEWTON_TOL = 1e-12
# ... or after this many.
_NEWTON_MAX_ITER = 100


@dataclass(frozen=True)
class Response:
    """The response distribution of a component of a mixture of regressions.

    Attributes
    ----------
    name : str
        The family's registry name.
    link : str
        The link: ``"identity"``, ``"log"`` or ``"logit"`` (canonical, unless
        ``weighted_fit`` is given).
    log_prob : callable
        ``log_prob(y, eta, scale)``: NumPy log density of ``y`` given the linear predictor
        ``eta`` (and the scale, None for families without one), broadcasting.
    pt_log_prob : callable
        The same in PyTensor (the PyMC model's likelihood).
    mean : callable
        ``b'(eta)``, the mean of the response (the inverse link).
    variance : callable
        ``b''(eta)``, the variance function at ``eta`` (times the scale): the IRLS
        weights of :func:`weighted_fit` (not used when ``weighted_fit`` is given).
    draw : callable
        ``draw(rng, eta, scale)``: responses drawn given the linear predictor.
    check : callable
        ``check(y)`` raises :class:`~bayesmix.exceptions.DataError` for responses outside
        the distribution's support.
    scale : str or None
        Name of the per-component scale parameter (``"scales"``: a Gaussian's standard
        deviation; ``"dispersion"``: a negative binomial's), or None.
    scale_prior : callable or None
        ``scale_prior(y_mean, y_sd)``: the default :class:`~bayesmix.priors.Prior` of the
        scale given the (weighted) mean and sd of the response. Required with ``scale``.
    scale_priors : frozenset of str
        The prior families the scale accepts.
    scale_start : callable or None
        ``scale_start(scales)``: the NUTS and Laplace start of the scale from its EM
        estimate (e.g. moved off a bound that is far in the prior's tail); None keeps it.
    weighted_fit : callable or None
        ``weighted_fit(X, y, weights, coefficients, scale)`` returns ``(coefficients,
        scale, converged)``, the weighted maximum-likelihood fit of one component jointly
        in its coefficients and scale, from the previous M-step's ``coefficients`` and
        ``scale`` (None at the first). For a response whose M-step is not weighted least
        squares or IRLS (a non-canonical link with a free dispersion). None: the
        component's M-step is :func:`weighted_fit`, and a scale is the weighted residual
        standard deviation (a Gaussian's).
    map_scale_priors : frozenset of str
        The scale's prior families that ``objective="map"`` takes (the MAP M-step's
        closed form or Newton terms exist for them): a Gaussian's ``HalfNormal``, a
        negative binomial's ``Gamma``.
    kind : str
        What the response's values are, for the posterior predictive check:
        ``"continuous"``, ``"counts"`` or ``"binary"`` (as a mixture's ``plot_kind``).
    """

    name: str
    link: str
    log_prob: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]
    pt_log_prob: Callable[[Any, Any, Any], Any]
    mean: Callable[[np.ndarray], np.ndarray]
    variance: Callable[[np.ndarray], np.ndarray]
    draw: Callable[[np.random.Generator, np.ndarray, np.ndarray | None], np.ndarray]
    check: Callable[[np.ndarray], None]
    scale: str | None = None
    kind: str = "continuous"
    map_scale_priors: frozenset[str] = frozenset()
    scale_prior: Callable[[float, float], Prior] | None = None
    scale_priors: frozenset[str] = frozenset()
    scale_start: Callable[[np.ndarray], np.ndarray] | None = None
    weighted_fit: (
        Callable[
            [np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float | None],
            tuple[np.ndarray, float, bool],
        ]
        | None
    ) = None

    def link_function(self, mu: np.ndarray) -> np.ndarray:
        """Return ``g(mu)``, the linear predictor of a mean (``mu`` inside the support)."""
        match self.link:
            case "identity":
                return mu
            case "log":
                return np.log(mu)
            case "logit":
                return np.log(mu) - np.log1p(-mu)
        raise ValueError(f"unknown link {self.link!r}")


@dataclass(frozen=True)
class Penalty:
    r"""The log prior of one component's coefficients: the MAP M-step's extra terms.

    ``Normal(mean_j, 1 / sqrt(precision_j))`` independently on every coefficient, i.e.
    :math:`-\tfrac12 \sum_j \text{precision}_j (\beta_j - \text{mean}_j)^2` added to the
    weighted log-likelihood (a ridge towards the prior mean), and the prior of the
    component's scale (None: no scale, or maximum likelihood for it).
    """

    mean: np.ndarray
    precision: np.ndarray
    scale_prior: Prior | None = None

    def log_density(self, beta: np.ndarray) -> float:
        """Return the penalty at ``beta`` (the log prior up to a constant)."""
        return -0.5 * float(self.precision @ (beta - self.mean) ** 2)


def weighted_fit(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    response: Response,
    start: np.ndarray | None = None,
    penalty: Penalty | None = None,
    scale: float | None = None,
) -> tuple[np.ndarray, bool]:
    """Return the coefficients maximising ``sum_n w_n log f(y_n | x_n' beta)``, and convergence.

    Weighted least squares for the identity link (exact, by a QR factorisation of
    ``sqrt(W) X``, no normal equations); Newton's method (IRLS) from ``start`` (default:
    the intercept-free zero, or the previous M-step's coefficients) for the others, each
    step halved until the weighted log-likelihood does not decrease, until the largest
    relative step is below 1e-12.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_predictors)
    y : ndarray of shape (n_samples,)
    weights : ndarray of shape (n_samples,)
        Non-negative (responsibilities times frequency weights).
    response : Response
    start : ndarray of shape (n_predictors,), optional
    penalty : Penalty, optional
        Maximise ``sum_n w_n log f(y_n | x_n' beta) + penalty.log_density(beta)`` instead
        (the MAP M-step): for the identity link the augmented least squares of ridge
        regression, rows ``sqrt(scale^2 precision_j) e_j`` with targets ``sqrt(scale^2
        precision_j) mean_j`` below ``sqrt(W) X``; otherwise Newton's method on the
        penalised objective.
    scale : float, optional
        The identity link's residual standard deviation (the current one), which weighs
        the penalty against the sum of squares; required with ``penalty`` for it.

    Returns
    -------
    coefficients : ndarray of shape (n_predictors,)
    converged : bool
        False when Newton's method stopped at its iteration limit (the coefficients
        diverge, as for separated binary data).

    Raises
    ------
    FitError
        If the weighted design has less than full rank (a component on too few points).
    """
    if response.link == "identity":
        root = np.sqrt(weights)
        design, target = root[:, None] * X, root * y
        if penalty is not None:
            if scale is None:
                raise ValueError("a penalised least-squares fit needs the current scale")
            prior_rows = scale * np.sqrt(penalty.precision)
            check_weighted_rank(X, weights)  # the prior rows would hide a rank deficit
            design = np.vstack([design, np.diag(prior_rows)])
            target = np.concatenate([target, prior_rows * penalty.mean])
        q, r = linalg.qr(design, mode="economic", check_finite=False)
        _check_rank(r)
        return linalg.solve_triangular(r, q.T @ target, check_finite=False), True
    check_weighted_rank(X, weights)
    beta = np.zeros(X.shape[1]) if start is None else np.array(start, dtype=np.float64)

    def objective(b: np.ndarray) -> float:
        value = float(weights @ response.log_prob(y, X @ b, None))
        return value if penalty is None else value + penalty.log_density(b)

    def derivatives(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eta = X @ b
        gradient = X.T @ (weights * (y - response.mean(eta)))
        information = (X.T * (weights * response.variance(eta))) @ X
        if penalty is not None:
            gradient = gradient - penalty.precision * (b - penalty.mean)
            information = information + np.diag(penalty.precision)
        return gradient, information

    return newton_maximise(objective, derivatives, beta)


def map_residual_scale(rss: float, mass: float, prior_sd: float) -> float:
    r"""Return the residual sd maximising the weighted Normal likelihood times HalfNormal.

    The posterior mode of :math:`s` in :math:`-m \log s - R / (2 s^2) - s^2 / (2
    \tau^2)` (``mass`` :math:`m = \sum_n r_n`, ``rss`` :math:`R = \sum_n r_n e_n^2`, the
    prior :math:`\operatorname{HalfNormal}(\tau)`): the positive root of :math:`s^4 +
    m \tau^2 s^2 - R \tau^2 = 0`, :math:`s^2 = 2R / (m + \sqrt{m^2 + 4R/\tau^2})`
    (the form without cancellation), which is :math:`R / m` as :math:`\tau \to \infty`.
    """
    return float(np.sqrt(2.0 * rss / (mass + np.sqrt(mass**2 + 4.0 * rss / prior_sd**2))))


def newton_maximise(
    objective: Callable[[np.ndarray], float],
    derivatives: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    start: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, bool]:
    """Maximise a concave ``objective`` by Newton's method, each step halved until it climbs.

    ``derivatives(x)`` returns the gradient (flat) and the negative Hessian at ``x``
    (positive semi-definite; a singular one is solved by least squares). Stops when the
    largest step is below 1e-12 relative to the parameter (at least 1); when no halving
    climbs before the step is that small or 1e-10 of Newton's (an optimum at rounding
    level); or after 100 steps (not converged: the parameters diverge, as for separated
    data). The objective never decreases, so a function that is not concave is climbed
    too if ``derivatives`` hands over a positive definite stand-in for its negative
    Hessian.

    ``bounds`` (lower, upper), flat arrays like ``start`` (``-inf`` / ``inf`` for none),
    box the parameters: projected Newton (Bertsekas 1982). A parameter on its bound whose
    gradient points outwards is held there (its row and column leave the Newton
    system), and every trial point is clipped into the box, so that an optimum on a
    bound is reached exactly.

    Parameters
    ----------
    objective : callable
        ``objective(x)``, a float.
    derivatives : callable
        ``derivatives(x)``: the gradient (flat) and the negative Hessian (or a positive
        definite stand-in).
    start : ndarray
        The start (any shape; the gradient and the information are over its flat form).
    bounds : tuple of ndarray, optional
        Lower and upper bounds of the flat parameters.

    Returns
    -------
    x : ndarray
        The maximiser, of the shape of ``start``.
    converged : bool
    """
    x = np.array(start, dtype=np.float64)
    current = objective(x)
    for _ in range(_NEWTON_MAX_ITER):
        gradient, information = derivatives(x)
        if bounds is None:
            step = _newton_step(information, gradient).reshape(x.shape)
        else:
            lower, upper = bounds
            flat = x.reshape(-1)
            held = ((flat <= lower) & (gradient < 0.0)) | ((flat >= upper) & (gradient > 0.0))
            free = np.flatnonzero(~held)
            step = np.zeros(x.size)
            if free.size:
                step[free] = _newton_step(information[np.ix_(free, free)], gradient[free])
            step = step.reshape(x.shape)
        size = 1.0
        # A step below the tolerance that does not climb is convergence: no more halving.
        relative = np.max(np.abs(step) / np.maximum(np.abs(x), 1.0), initial=0.0)
        while size > 1e-10 and size * relative >= _NEWTON_TOL:
            trial = x + size * step
            if bounds is not None:
                trial = np.clip(trial.reshape(-1), *bounds).reshape(x.shape)
            value = objective(trial)
            if value >= current:
                break
            size *= 0.5
        else:
            return x, True  # no ascent left at rounding level
        moved = size * step if bounds is None else trial - x
        x, current = trial, value
        if np.max(np.abs(moved) / np.maximum(np.abs(x), 1.0), initial=0.0) < _NEWTON_TOL:
            return x, True
    return x, False


def _newton_step(information: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Return ``information^-1 gradient`` (least squares for a singular information)."""
    try:
        factor = linalg.cho_factor(information, check_finite=False)
        return linalg.cho_solve(factor, gradient, check_finite=False)
    except linalg.LinAlgError:  # a flat direction (fitted means at the boundary)
        return linalg.lstsq(information, gradient, check_finite=False)[0]


def log_softmax_weights(Z: np.ndarray, concomitant: np.ndarray) -> np.ndarray:
    """Return ``log softmax_k(z_n' gamma_k)``, the log mixing proportions of every row.

    ``Z`` (N, C) and ``concomitant`` (..., K, C); the result has shape (..., N, K).
    """
    eta = np.einsum("nc,...kc->...nk", Z, concomitant)
    return eta - logsumexp(eta, axis=-1, keepdims=True)


def weighted_multinomial_fit(
    Z: np.ndarray,
    targets: np.ndarray,
    start: np.ndarray | None = None,
    prior_sd: np.ndarray | None = None,
) -> tuple[np.ndarray, bool]:
    r"""Return ``gamma`` maximising ``sum_n sum_k t_nk log softmax_k(z_n' gamma_k)``, converged.

    The M-step of the concomitant variables (flexmix's ``FLXPmultinom``): a multinomial
    logistic regression on soft labels ``t_nk`` (responsibilities times frequency
    weights). Newton's method on the identified parameters (``gamma_0 = 0``), each step
    halved until the objective does not decrease; the result is returned with every
    covariate's coefficients summing to zero over the components, the representative
    that a symmetric prior on ``gamma`` centres on (the likelihood is flat along
    ``gamma_k + c``).

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_covariates)
    targets : ndarray of shape (n_samples, n_components)
    start : ndarray of shape (n_components, n_covariates), optional
    prior_sd : ndarray of shape (n_covariates,), optional
        Add the log density of a zero-sum normal prior with these standard deviations
        (PyMC's ``ZeroSumNormal`` over the components, one per covariate): the MAP
        M-step. On the identified parameters ``b_k = gamma_k - gamma_0`` its quadratic
        form is ``b_c' (I - J / K) b_c / sigma_c^2`` per covariate ``c``.

    Returns
    -------
    gamma : ndarray of shape (n_components, n_covariates)
    converged : bool
        False when Newton's method stopped at its iteration limit (the coefficients
        diverge: covariates that separate the components).
    """
    n_components, n_covariates = targets.shape[1], Z.shape[1]
    if n_components == 1:  # one component: the proportion is 1 whatever gamma
        return np.zeros((1, n_covariates)), True
    totals = targets.sum(axis=1)
    free = np.zeros((n_components - 1, n_covariates))
    if start is not None:
        free = np.asarray(start[1:] - start[0], dtype=np.float64)

    def full(b: np.ndarray) -> np.ndarray:
        return np.vstack([np.zeros((1, n_covariates)), b])

    # The prior's precision on the flattened identified parameters (row k * C + c).
    centring = np.eye(n_components - 1) - 1.0 / n_components
    precision = None if prior_sd is None else np.kron(centring, np.diag(prior_sd**-2.0))

    def centred(b: np.ndarray) -> np.ndarray:
        gamma = full(b)
        return gamma - gamma.mean(axis=0)

    def objective(b: np.ndarray) -> float:
        value = float(np.sum(targets * log_softmax_weights(Z, full(b))))
        if precision is not None:
            value -= 0.5 * float(b.reshape(-1) @ precision @ b.reshape(-1))
        return value

    def derivatives(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.exp(log_softmax_weights(Z, full(b)))[:, 1:]  # (N, K - 1)
        gradient = ((targets[:, 1:] - totals[:, None] * p).T @ Z).reshape(-1)
        information = np.zeros((b.size, b.size))
        for k in range(n_components - 1):
            for m in range(n_components - 1):
                weight = totals * p[:, k] * ((k == m) - p[:, m])
                rows = slice(k * n_covariates, (k + 1) * n_covariates)
                columns = slice(m * n_covariates, (m + 1) * n_covariates)
                information[rows, columns] = (Z.T * weight) @ Z
        if precision is not None:
            gradient = gradient - precision @ b.reshape(-1)
            information = information + precision
        return gradient, information

    free, converged = newton_maximise(objective, derivatives, free)
    return centred(free), converged


def check_weighted_rank(X: np.ndarray, weights: np.ndarray) -> None:
    """Raise a FitError if the weighted design ``sqrt(W) X`` has less than full rank."""
    root = np.sqrt(weights)
    _check_rank(linalg.qr(root[:, None] * X, mode="r", check_finite=False)[0])


def _check_rank(r: np.ndarray) -> None:
    """Raise a FitError if the triangular factor of the weighted design is singular."""
    diagonal = np.abs(np.diagonal(r))
    if diagonal.size and diagonal.min() <= 1e-10 * max(diagonal.max(), 1e-300):
        raise FitError(
            "a component's weighted design matrix has less than full rank: the component "
            "holds too few points to estimate its coefficients"
        )


def check_design(X: np.ndarray, names: list[str], intercept: bool) -> None:
    """Raise a DataError for a constant predictor (besides the intercept) or collinear ones.

    ``X`` is the design (with the intercept column first when ``intercept``).
    """
    start = 1 if intercept else 0
    spread = np.ptp(X[:, start:], axis=0) if X.shape[0] else np.zeros(X.shape[1] - start)
    constant = [names[start + j] for j in np.flatnonzero(spread == 0.0)]
    if constant:
        raise DataError(
            f"the predictor(s) {constant} are constant: with the intercept they carry no "
            "information and make the coefficients unidentifiable. Drop them."
        )
    scaled = X / np.maximum(np.abs(X).max(axis=0), 1e-300)
    singular = np.linalg.svd(scaled, compute_uv=False)
    if singular.size and singular.min() <= 1e-10 * singular.max():
        _, _, vt = np.linalg.svd(scaled, full_matrices=False)
        involved = [names[j] for j in np.flatnonzero(np.abs(vt[-1]) > 1e-6)]
        raise DataError(
            f"the predictors {involved} are perfectly collinear (one is a linear "
            "combination of the others"
            + (" and the intercept" if intercept else "")
            + "), so their coefficients are not identified. Drop one of them."
        )
