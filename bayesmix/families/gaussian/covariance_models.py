r"""mclust's covariance models: the eigen-decomposition, parameter counts and EM M-steps.

Celeux and Govaert (1995) write a component's covariance as

.. math::

    \Sigma_k = \lambda_k D_k A_k D_k^\top,

with the **volume** :math:`\lambda_k = |\Sigma_k|^{1/d}`, the **shape** :math:`A_k`
(diagonal, :math:`|A_k| = 1`, entries in decreasing order) and the **orientation**
:math:`D_k` (orthogonal: the eigenvectors). A model's three letters say whether each is
Equal across components, Variable, or the Identity (shape and orientation):
``EII`` ... ``VVV``, the fourteen models of mclust (Scrucca et al. 2016), and ``E`` /
``V`` for one feature. scikit-learn's names are aliases: ``spherical`` = VII,
``diag`` = VVI, ``tied`` = EEE, ``full`` = VVV.

The M-step of the covariances maximises, given the responsibilities' weighted scatter
matrices :math:`W_k = \sum_n z_{nk} (x_n - \mu_k)(x_n - \mu_k)^\top` about the new
means and the weights :math:`n_k = \sum_n z_{nk}`,

.. math::

    -\tfrac12 F, \qquad F(\Sigma) = \sum_k n_k \log|\Sigma_k| + \operatorname{tr}(\Sigma_k^{-1} W_k)

over the model's covariances (:func:`m_step_objective` returns ``F``). Closed forms
(Celeux and Govaert 1995, section 3) for EII, VII, EEI, EVI, VVI, EEE, EEV, EVV, VVV;
fixed-point iterations that decrease ``F`` at every step for VEI, VEE and VEV (the
same paper; they alternate the volumes and the common shape or matrix); for EVE and VVE
(a common orientation with varying shapes) the volumes and shapes in closed form given
the orientation, and the orientation given them by sweeps of exact plane rotations
(Flury and Gautschi 1986), where mclust uses the majorise-minimise step of Browne and
McNicholas (2014), which converges to the same minimum more slowly.

Parameter counts are mclust's ``nVarParams`` (mclust 6.1, ``R/mclust.R``), so that BIC
and ICL are comparable with mclust's.

**The Bayesian parameterisation** (NUTS and Laplace; :func:`free_parameters`). Free
variables, one per component where the model's letter is V, shared where it is E:
``log_volume`` (:math:`\log\lambda`, real), ``log_shape`` (:math:`\log A`, a real
vector that sums to zero, so :math:`|A| = 1`: PyMC's ``ZeroSumNormal``; absent for the
identity shape) and ``orientation_cayley``, a D x D matrix whose strictly lower triangle
holds the Cayley parameters of the orientation (absent for the identity orientation):
with :math:`S` the skew-symmetric matrix of those entries,
:math:`D = (I - S)(I + S)^{-1}` (:func:`cayley`), a smooth one-to-one map from
:math:`\mathbb{R}^{d(d-1)/2}` onto the rotations without the eigenvalue -1 (Cayley
1846; as a parameterisation of rotations for MCMC, Jauch, Hoff and Dunson 2020). The
diagonal and upper triangle of the variable do not enter the covariances: they are
independent draws from their prior, which keeps them proper (they cost NUTS nothing).
Identifiability: the covariances are identified; their decomposition is identified up
to the order of the axes (permuting the shape's entries with the orientation's columns)
and their signs (flipping two columns of the orientation), discrete symmetries whose
copies of a posterior mode are far apart. The chains start at the EM estimate's
decomposition, its columns signed so that the rotation is as close to the identity as
signs allow (:func:`cayley_parameters`), and stay in that copy. Report the covariances,
volumes and sorted shapes, which are invariant.

References
----------
Jauch, M., Hoff, P. D. and Dunson, D. B. (2020). Random orthogonal matrices and the
Cayley transform. Bernoulli 26(2), 1560-1586.
Celeux, G. and Govaert, G. (1995). Gaussian parsimonious clustering models. Pattern
Recognition 28(5), 781-793.
Browne, R. P. and McNicholas, P. D. (2014). Estimating common principal components in
high dimensions. Advances in Data Analysis and Classification 8(2), 217-226.
Flury, B. N. and Gautschi, W. (1986). An algorithm for simultaneous orthogonal
transformation of several positive definite symmetric matrices to nearly diagonal form.
SIAM Journal on Scientific and Statistical Computing 7(1), 169-184.
Scrucca, L., Fop, M., Murphy, T. B. and Raftery, A. E. (2016). mclust 5: clustering,
classification and density estimation using Gaussian finite mixture models. The R
Journal 8(1), 289-317.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayesmix.exceptions import InvalidParameterError

__all__ = [
    "ALIASES",
    "MODELS",
    "STORAGE",
    "CovarianceModel",
    "cayley",
    "cayley_parameters",
    "compose",
    "decompose",
    "free_parameters",
    "m_step_covariances",
    "m_step_objective",
    "n_variance_parameters",
    "resolve",
    "storage",
]


@dataclass(frozen=True)
class CovarianceModel:
    """One of mclust's covariance models: volume, shape and orientation, each E/V/I."""

    name: str

    @property
    def volume(self) -> str:
        """``"E"`` (equal) or ``"V"`` (variable)."""
        return self.name[0]

    @property
    def shape(self) -> str:
        """``"E"``, ``"V"`` or ``"I"`` (identity); ``"I"`` for one feature."""
        return self.name[1] if len(self.name) == 3 else "I"

    @property
    def orientation(self) -> str:
        """``"E"``, ``"V"`` or ``"I"`` (the axes); ``"I"`` for one feature."""
        return self.name[2] if len(self.name) == 3 else "I"


MODELS = {
    name: CovarianceModel(name)
    for name in (
        "E",
        "V",
        "EII",
        "VII",
        "EEI",
        "VEI",
        "EVI",
        "VVI",
        "EEE",
        "VEE",
        "EVE",
        "VVE",
        "EEV",
        "VEV",
        "EVV",
        "VVV",
    )
}

ALIASES = {"spherical": "VII", "diag": "VVI", "tied": "EEE", "full": "VVV"}

# The scikit-learn covariance type whose array shape holds a model's covariances: the
# simplest of the four whose parameters include the model's (every shared or diagonal
# structure is kept as values, not as a smaller array).
STORAGE = {
    "E": "tied",
    "V": "spherical",
    "EII": "spherical",
    "VII": "spherical",
    "EEI": "diag",
    "VEI": "diag",
    "EVI": "diag",
    "VVI": "diag",
    "EEE": "tied",
    "VEE": "full",
    "EVE": "full",
    "VVE": "full",
    "EEV": "full",
    "VEV": "full",
    "EVV": "full",
    "VVV": "full",
}

# The fixed-point M-steps stop when F changes by less than this, relative.
_TOL = 1e-12
_MAX_ITER = 1000


def resolve(name: str, n_features: int) -> CovarianceModel:
    """Return the model called ``name`` (an mclust name or a scikit-learn alias).

    Raises
    ------
    bayesmix.exceptions.InvalidParameterError
        For an unknown name, a univariate name (``E``, ``V``) with several features, or
        a multivariate one with one feature (mclust's univariate models are ``E``, ``V``).
    """
    key = ALIASES.get(name, name)
    if key not in MODELS:
        raise InvalidParameterError(
            f"covariance_type={name!r} is not one of mclust's models "
            f"({', '.join(MODELS)}) or scikit-learn's names ({', '.join(ALIASES)})."
        )
    if (len(key) == 1) != (n_features == 1):
        expected = "'E' or 'V'" if n_features == 1 else "a three-letter name such as 'VVV'"
        raise InvalidParameterError(
            f"covariance_type={name!r} does not fit {n_features} feature(s): expected "
            f"{expected} (mclust's names), or one of scikit-learn's {', '.join(ALIASES)}."
        )
    return MODELS[key]


def storage(name: str, n_features: int) -> tuple[str, str | None]:
    """Return the scikit-learn type that stores model ``name``, and the constraint on it.

    The constraint is the mclust model the storage type's M-step must be projected on,
    or None when the storage type is the model itself (``VII`` = ``spherical``, ``VVI`` =
    ``diag``, ``EEE`` = ``tied``, ``VVV`` = ``full``, and the univariate ``E`` = ``tied``,
    ``V`` = ``spherical``). scikit-learn's names are accepted for any number of features.

    Examples
    --------
    >>> from bayesmix.families.gaussian.covariance_models import storage
    >>> storage("VEV", 3), storage("VVI", 3), storage("full", 1)
    (('full', 'VEV'), ('diag', None), ('full', None))
    """
    if name in ALIASES:
        return name, None
    model = resolve(name, n_features)
    kind = STORAGE[model.name]
    own = model.name in ("E", "V") or ALIASES[kind] == model.name
    return kind, None if own else model.name


def n_variance_parameters(name: str, n_features: int, n_components: int) -> int:
    """Return the free parameters of the covariances (mclust's ``nVarParams``).

    Examples
    --------
    >>> from bayesmix.families.gaussian.covariance_models import n_variance_parameters
    >>> n_variance_parameters("VEV", 3, 4)  # 4 volumes, 2 shape, 4 x 3 orientation
    18
    """
    d, g = n_features, n_components
    counts = {
        "E": 1,
        "V": g,
        "EII": 1,
        "VII": g,
        "EEI": d,
        "VEI": g + (d - 1),
        "EVI": 1 + g * (d - 1),
        "VVI": g * d,
        "EEE": d * (d + 1) // 2,
        "EVE": 1 + g * (d - 1) + d * (d - 1) // 2,
        "VEE": g + (d - 1) + d * (d - 1) // 2,
        "VVE": g + g * (d - 1) + d * (d - 1) // 2,
        "EEV": 1 + (d - 1) + g * d * (d - 1) // 2,
        "VEV": g + (d - 1) + g * d * (d - 1) // 2,
        "EVV": 1 - g + g * d * (d + 1) // 2,
        "VVV": g * d * (d + 1) // 2,
    }
    # scikit-learn's names count for any number of features (VVV in 1-D is V's count).
    return counts[ALIASES[name] if name in ALIASES else resolve(name, n_features).name]


def compose(volume: np.ndarray, orientation: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Return ``Sigma_k = lambda_k D_k diag(A_k) D_k'``, shape (K, d, d).

    ``volume`` (K,), ``orientation`` (K, d, d) orthogonal, ``shape`` (K, d) with product 1.
    """
    volume = np.asarray(volume, dtype=np.float64)
    D = np.asarray(orientation, dtype=np.float64)
    A = np.asarray(shape, dtype=np.float64)
    return volume[:, None, None] * np.einsum("kij,kj,klj->kil", D, A, D)


def decompose(covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(volume, orientation, shape)`` of covariances (K, d, d): :func:`compose`'s inverse.

    The shape's entries are in decreasing order (mclust's convention); the orientation's
    columns are the matching eigenvectors.
    """
    eigenvalues, vectors = np.linalg.eigh(np.asarray(covariances, dtype=np.float64))
    eigenvalues, vectors = eigenvalues[:, ::-1], vectors[:, :, ::-1]
    volume = np.exp(np.log(eigenvalues).mean(axis=1))
    return volume, vectors, eigenvalues / volume[:, None]


def cayley(parameters: np.ndarray) -> np.ndarray:
    """Return the rotations ``(I - S)(I + S)^-1`` of matrices (..., d, d).

    ``S`` is skew-symmetric with the strictly lower triangle of ``parameters`` (the rest
    of ``parameters`` is not used).
    """
    lower = np.tril(np.asarray(parameters, dtype=np.float64), -1)
    skew = lower - np.swapaxes(lower, -1, -2)
    eye = np.eye(skew.shape[-1])
    # (I - S) and (I + S)^-1 commute: a solve, never an inverse.
    return np.linalg.solve(eye + skew, eye - skew)


def cayley_parameters(orientation: np.ndarray) -> np.ndarray:
    """Return Cayley parameters (strictly lower triangle, zeros elsewhere) of orthogonal matrices.

    The columns' signs, which no covariance sees, are chosen first: a non-negative
    diagonal, then the column with the smallest diagonal entry flipped if needed for a
    rotation (determinant +1). ``cayley(cayley_parameters(D))`` is ``D`` up to those signs.
    """
    D = np.array(orientation, dtype=np.float64, copy=True)
    signs = np.where(np.diagonal(D, axis1=-2, axis2=-1) < 0, -1.0, 1.0)
    negative = np.linalg.det(D * signs[..., None, :]) < 0
    weakest = np.argmin(np.abs(np.diagonal(D, axis1=-2, axis2=-1)), axis=-1)
    flip = np.where(negative[..., None], np.arange(D.shape[-1]) == weakest[..., None], False)
    D *= np.where(flip, -signs, signs)[..., None, :]
    eye = np.eye(D.shape[-1])
    # S = (I - D)(I + D)^-1, the Cayley map's own inverse.
    return np.tril(np.linalg.solve(eye + D, eye - D), -1)


def free_parameters(name: str, covariances: np.ndarray) -> dict[str, np.ndarray]:
    """Return the Bayesian parameterisation's free variables of covariances (K, d, d).

    ``log_volume`` (K,) or () for an equal volume; ``log_shape`` (K, d) or (d,), absent
    for the identity shape; ``orientation_cayley`` (K, d, d) or (d, d), the Cayley
    parameters of the orientation (:func:`cayley_parameters`), absent for the identity
    orientation. The
    covariances must follow the model (an EM estimate of it): shared parts are taken
    from the first component, and for a common orientation the shapes are the diagonals
    of ``D' Sigma_k D``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmix.families.gaussian.covariance_models import free_parameters
    >>> cov = np.array([np.diag([4.0, 1.0]), np.diag([1.0, 4.0])])
    >>> {key: value.round(3).tolist() for key, value in free_parameters("EVI", cov).items()}
    {'log_volume': 0.693, 'log_shape': [[0.693, -0.693], [-0.693, 0.693]]}
    """
    covariances = np.asarray(covariances, dtype=np.float64)
    model = resolve(name, covariances.shape[-1])
    volume, vectors, shape = decompose(covariances)
    log_volume = np.log(volume)
    if model.orientation == "I":
        diagonal = np.diagonal(covariances, axis1=1, axis2=2)
        shape, vectors = diagonal / volume[:, None], None
    elif model.orientation == "E":
        vectors = vectors[0]
        shape = np.einsum("ij,kil,lj->kj", vectors, covariances, vectors) / volume[:, None]
    out = {"log_volume": log_volume if model.volume == "V" else log_volume[0]}
    if model.shape != "I":
        log_shape = np.log(shape)
        log_shape -= log_shape.mean(axis=-1, keepdims=True)  # exactly zero-sum
        out["log_shape"] = log_shape if model.shape == "V" else log_shape[0]
    if vectors is not None:
        out["orientation_cayley"] = cayley_parameters(vectors)
    return out


def m_step_objective(covariances: np.ndarray, nk: np.ndarray, scatter: np.ndarray) -> float:
    """Return ``F = sum_k n_k log|Sigma_k| + tr(Sigma_k^-1 W_k)`` (the M-step minimises it)."""
    chol = np.linalg.cholesky(covariances)
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    # tr(Sigma^-1 W) = |L^-1 M|^2 with W = M M' (M: W's factor): solve, never invert.
    solved = np.linalg.solve(chol, _factor(scatter))
    return float(np.sum(nk * log_det) + np.sum(solved**2))


def _factor(scatter: np.ndarray) -> np.ndarray:
    """Return ``M`` with ``M M' = W`` for a positive semi-definite ``W`` (eigen-based)."""
    values, vectors = np.linalg.eigh(scatter)
    return vectors * np.sqrt(np.clip(values, 0.0, None))[:, None, :]


def _geometric_mean(values: np.ndarray) -> np.ndarray:
    return np.exp(np.log(values).mean(axis=-1))


def m_step_covariances(
    name: str, nk: np.ndarray, scatter: np.ndarray, *, tol: float = _TOL
) -> np.ndarray:
    """Return the covariances (K, d, d) of model ``name`` that minimise :func:`m_step_objective`.

    Parameters
    ----------
    name : str
        An mclust model name or a scikit-learn alias (:func:`resolve`).
    nk : ndarray of shape (K,)
        The components' summed responsibilities (positive).
    scatter : ndarray of shape (K, d, d)
        ``W_k``, the responsibility-weighted scatter about the components' means.
    tol : float
        Relative change of ``F`` that stops the iterations (VEI, VEE, VEV, EVE, VVE).
    """
    nk = np.asarray(nk, dtype=np.float64)
    W = np.asarray(scatter, dtype=np.float64)
    k, d = W.shape[0], W.shape[1]
    model = resolve(name, d)
    n = nk.sum()
    eye = np.broadcast_to(np.eye(d), (k, d, d))
    match model.name:
        case "E" | "EII":
            return eye * (np.trace(W.sum(axis=0)) / (n * d))
        case "V" | "VII":
            return eye * (np.trace(W, axis1=1, axis2=2) / (nk * d))[:, None, None]
        case "EEI":
            return np.broadcast_to(np.diag(np.diagonal(W.sum(axis=0)) / n), (k, d, d)).copy()
        case "VVI":
            return _diagonal(np.diagonal(W, axis1=1, axis2=2) / nk[:, None])
        case "EVI":
            diag = np.diagonal(W, axis1=1, axis2=2)
            size = _geometric_mean(diag)  # |diag W_k|^(1/d)
            return _diagonal(diag / size[:, None] * (size.sum() / n))
        case "EEE":
            return np.broadcast_to(W.sum(axis=0) / n, (k, d, d)).copy()
        case "VVV":
            return W / nk[:, None, None]
        case "EVV":
            size = _geometric_mean(np.linalg.eigvalsh(W))  # |W_k|^(1/d)
            return W / size[:, None, None] * (size.sum() / n)
        case "EEV":
            omega, vectors = _eigen(W)
            total = omega.sum(axis=0)
            shape = total / _geometric_mean(total)
            volume = np.full(k, _geometric_mean(total) / n)
            return compose(volume, vectors, np.broadcast_to(shape, (k, d)))
        case "VEI":
            diag = np.diagonal(W, axis1=1, axis2=2)
            return _diagonal(_volumes_and_common(diag, nk, tol, diagonal=True))
        case "VEE":
            return _volumes_and_common(W, nk, tol, diagonal=False)
        case "VEV":
            omega, vectors = _eigen(W)
            return compose(*_vev(omega, vectors, nk, tol))
        case "EVE" | "VVE":
            return _common_orientation(W, nk, tol, equal_volume=model.volume == "E")
    raise AssertionError(model.name)  # pragma: no cover - every model is matched


def _diagonal(values: np.ndarray) -> np.ndarray:
    k, d = values.shape
    out = np.zeros((k, d, d))
    out[:, np.arange(d), np.arange(d)] = values
    return out


def _eigen(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (decreasing) and eigenvectors of each W_k."""
    values, vectors = np.linalg.eigh(W)
    return values[:, ::-1], vectors[:, :, ::-1]


def _volumes_and_common(W: np.ndarray, nk: np.ndarray, tol: float, *, diagonal: bool):
    """VEI (``W`` (K, d): diagonals) and VEE (``W`` (K, d, d)): ``lambda_k C``, |C| = 1.

    Alternates ``C = sum_k W_k / lambda_k`` normalised to determinant 1 and
    ``lambda_k = tr(C^-1 W_k) / (d n_k)``: each step minimises F in one block, so F never
    increases. Returns the diagonals (VEI) or the matrices (VEE).
    """
    k, d = W.shape[0], W.shape[1]
    volume = (np.einsum("ki->k", W) if diagonal else np.trace(W, axis1=1, axis2=2)) / (nk * d)
    previous = np.inf
    for _ in range(_MAX_ITER):
        common = (W / volume.reshape((k,) + (1,) * (W.ndim - 1))).sum(axis=0)
        if diagonal:
            common = common / _geometric_mean(common)
            volume = (W / common).sum(axis=1) / (nk * d)
            objective = d * np.sum(nk * np.log(volume)) + np.sum((W / common).sum(axis=1) / volume)
        else:
            common = common / _geometric_mean(np.linalg.eigvalsh(common))
            solved = np.linalg.solve(common, W)  # C^-1 W_k
            volume = np.trace(solved, axis1=1, axis2=2) / (nk * d)
            objective = d * np.sum(nk * np.log(volume)) + np.sum(
                np.trace(solved, axis1=1, axis2=2) / volume
            )
        if abs(previous - objective) <= tol * abs(objective):
            break
        previous = objective
    if diagonal:
        return volume[:, None] * common[None, :]
    return volume[:, None, None] * common[None, :, :]


def _vev(omega: np.ndarray, vectors: np.ndarray, nk: np.ndarray, tol: float):
    """VEV: ``lambda_k D_k A D_k'`` with ``D_k`` the eigenvectors of ``W_k``.

    Alternates ``A = sum_k Omega_k / lambda_k`` normalised and ``lambda_k = tr(Omega_k
    A^-1) / (d n_k)`` (Celeux and Govaert 1995); with the eigenvalues in decreasing order
    matched to A's, ``D_k`` is optimal for every A with decreasing entries.
    """
    k, d = omega.shape
    volume = omega.sum(axis=1) / (nk * d)
    previous = np.inf
    for _ in range(_MAX_ITER):
        shape = (omega / volume[:, None]).sum(axis=0)
        shape = shape / _geometric_mean(shape)
        volume = (omega / shape).sum(axis=1) / (nk * d)
        objective = d * np.sum(nk * np.log(volume)) + np.sum((omega / shape).sum(axis=1) / volume)
        if abs(previous - objective) <= tol * abs(objective):
            break
        previous = objective
    return volume, vectors, np.broadcast_to(shape, (k, d))


def _common_orientation(W: np.ndarray, nk: np.ndarray, tol: float, *, equal_volume: bool):
    """EVE / VVE: ``lambda_k D A_k D'`` with one orientation ``D``.

    Alternates (1) given ``D``, with ``m_k = diag(D' W_k D)``: ``A_k = m_k / |m_k|^(1/d)``
    and ``lambda_k = |m_k|^(1/d) / n_k`` (VVE) or ``lambda = sum_k |m_k|^(1/d) / n``
    (EVE); (2) given them, with ``Psi_k = diag(1 / (lambda_k A_k))``, one sweep of plane
    rotations of ``D``'s column pairs, each the exact minimiser of
    ``sum_k tr(D' W_k D Psi_k)`` over its angle (the Jacobi-type sweep of Flury and
    Gautschi 1986 for common principal components, with the weights fixed). Neither step
    increases F. (Browne and McNicholas's majorise-minimise step for ``D`` decreases F
    too, but needed about 20 times as many iterations to the same F here.)
    """
    k, d = W.shape[0], W.shape[1]
    n = nk.sum()
    _, D = np.linalg.eigh(W.sum(axis=0))
    previous = np.inf
    for _ in range(_MAX_ITER):
        m = np.einsum("ij,kil,lj->kj", D, W, D)  # diag(D' W_k D), (K, d)
        size = _geometric_mean(m)
        volume = np.full(k, size.sum() / n) if equal_volume else size / nk
        shape = m / size[:, None]
        psi = 1.0 / (volume[:, None] * shape)  # (K, d)
        objective = d * np.sum(nk * np.log(volume)) + np.sum(m * psi)
        if abs(previous - objective) <= tol * abs(objective):
            break
        previous = objective
        _rotation_sweep(D, W, psi)
    return compose(volume, np.broadcast_to(D, (k, d, d)), shape)


def _rotation_sweep(D: np.ndarray, W: np.ndarray, psi: np.ndarray) -> None:
    r"""Rotate every pair of columns of ``D`` (in place) to minimise ``sum_k tr(D' W_k D Psi_k)``.

    Rotating columns ``i, j`` by ``theta`` changes the sum by
    :math:`P \cos 2\theta + Q \sin 2\theta` plus a constant, with
    :math:`P = \frac12 \sum_k (\psi_{ki} - \psi_{kj})(a_k - b_k)`,
    :math:`Q = \sum_k (\psi_{ki} - \psi_{kj}) e_k` and :math:`a_k, b_k, e_k` the entries
    :math:`d_i' W_k d_i, d_j' W_k d_j, d_i' W_k d_j`: the minimum is at
    :math:`2\theta = \operatorname{atan2}(-Q, -P)`.
    """
    d = D.shape[0]
    for i in range(d - 1):
        for j in range(i + 1, d):
            di, dj = D[:, i].copy(), D[:, j].copy()
            wi, wj = W @ di, W @ dj  # (K, d)
            a, b, e = wi @ di, wj @ dj, wi @ dj
            g = psi[:, i] - psi[:, j]
            theta = 0.5 * np.arctan2(-(g @ e), -0.5 * (g @ (a - b)))
            c, s = np.cos(theta), np.sin(theta)
            D[:, i], D[:, j] = c * di + s * dj, c * dj - s * di
