r"""A fused log density and gradient for mixtures of independent exponential-family features.

The Poisson and Bernoulli families (and any family whose components are independent
features ``x_d | theta_kd`` of a natural exponential family) sample their posterior through
this module instead of a compiled PyMC model: one numba kernel, compiled once per machine
and loaded from numba's on-disk cache (:mod:`bayesmix._numba_cache`), handed to nutpie as
C callbacks (no Python per gradient), optionally in Laplace coordinates.

The model and its coordinates
-----------------------------
A family is described by its *cumulant* ``A``: the density of a feature is
``log p(x | eta) = x eta - A(eta) + c(x)``, where ``eta`` is the natural parameter, and the
PyMC model's transform of the constrained parameter is the link that makes ``eta`` the
unconstrained coordinate:

========== ====================== ===================== ===============================
cumulant   ``A(eta)``             parameter ``A'(eta)`` PyMC transform (value variable)
========== ====================== ===================== ===============================
``exp``    ``exp(eta)``           a rate (Poisson)      ``log`` (``<name>_log__``)
``softplus`` ``log(1 + exp(eta))`` a probability        ``logodds`` (``<name>_logodds__``)
========== ====================== ===================== ===============================

The unconstrained vector is laid out as nutpie lays out the PyMC model: the weights'
``weights_simplex__`` (K - 1; ``y = (v, -sum v)``, ``log pi = y - logsumexp(y)``,
log-Jacobian ``log K + sum_k log pi_k``) and then ``eta`` (K, D) in C order.

The prior of a rate is any prior family of a positive parameter on the log scale
(:func:`bayesmix.nuts._priors.log_scale_prior`: Gamma, Exponential, LogNormal,
HalfNormal, ...); the prior of a probability is ``Beta(alpha, beta)``, on the log-odds
scale with its Jacobian ``alpha eta - (alpha + beta) A(eta)`` (up to ``-log B(alpha,
beta)``).

The likelihood ``sum_n w_n logsumexp_k [log pi_k + sum_d (x_nd eta_kd - A(eta_kd))]`` plus
``sum_n w_n c(x_n)`` is one pass over the rows in blocks (:mod:`bayesmix.nuts._blocks`);
its gradient needs only the responsibility sums ``R_k = sum_n w_n r_nk`` and
``T_kd = sum_n w_n r_nk x_nd``: ``d/d log pi_k = R_k``,
``d/d eta_kd = T_kd - R_k A'(eta_kd)``. Scratch memory is O(K D block); nothing of size
(N, K) is formed. The constants ``c(x_n)`` (``-log x!`` for counts) are computed once per
data set (:meth:`ExpFamTarget.shared_data`), never per gradient.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from scipy.special import betaln

from bayesmix._numba_cache import cfunc, njit
from bayesmix.nuts import _nutpie_internals
from bayesmix.nuts._blocks import (
    BLOCK,
    FASTMATH,
    as_observations,
    as_weights,
    block_total,
    emit_block,
    finite_or_minus_inf,
    simplex_gradient,
    simplex_weights,
    transpose_block,
)
from bayesmix.nuts._nutpie_internals import _C_EXPAND, _C_LOGP, _as_pointer
from bayesmix.nuts._priors import LOG_SCALE_KINDS, dirichlet_data, log_scale_prior, prior_table
from bayesmix.nuts._target import IndependentFeaturesTarget, row_constants
from bayesmix.nuts.laplace import Affine

__all__ = [
    "CUMULANTS",
    "ExpFamTarget",
    "build",
    "logp_dlogp",
    "pointwise",
]

# The cumulants the kernel implements, and the PyMC transform whose value is ``eta``.
CUMULANTS = {"exp": 0, "softplus": 1}
_TRANSFORMS = {"exp": "log", "softplus": "logodds"}

# The Beta prior of a probability on the log-odds scale (the other kinds are those of
# bayesmix.nuts._priors.LOG_SCALE_KINDS).
_LOGIT_BETA = -1


# -- the kernel ---------------------------------------------------------------------------


@njit(nogil=True, fastmath=FASTMATH)
def _cumulant(eta, code):  # pragma: no cover - compiled
    """Return ``A(eta)`` and ``A'(eta)`` elementwise (``code``: see :data:`CUMULANTS`)."""
    a = np.empty_like(eta)
    da = np.empty_like(eta)
    for j in range(eta.shape[0]):
        e = eta[j]
        if code == 0:
            v = math.exp(e)
            a[j] = v
            da[j] = v
        else:  # softplus, without overflow at either end
            t = math.exp(-abs(e))
            a[j] = max(e, 0.0) + math.log1p(t)
            da[j] = 1.0 / (1.0 + t) if e >= 0.0 else t / (1.0 + t)
    return a, da


@njit(nogil=True, fastmath={"contract", "reassoc"})
def _accumulate(e, inv_norm, xb, n, sums, k):  # pragma: no cover - compiled
    """Add a block's ``r x`` to ``sums[k]``; return the sum of the responsibilities.

    ``e * inv_norm`` are component ``k``'s responsibilities (``e`` is overwritten by them).
    """
    s = 0.0
    for b in range(n):
        r = e[b] * inv_norm[b]
        e[b] = r
        s += r
    for i in range(xb.shape[0]):
        xi = xb[i]
        acc = 0.0
        for b in range(n):
            acc += e[b] * xi[b]
        sums[k, i] += acc
    return s


@njit(nogil=True, fastmath=FASTMATH, inline="always")
def _linear_block(wlp, logc, eta, xb, n):  # pragma: no cover - compiled
    """Fill ``wlp[k, b] = logc[k] + sum_d eta[k, d] xb[d, b]`` for a block of ``n`` rows."""
    for k in range(logc.shape[0]):
        row = wlp[k]
        c = logc[k]
        for b in range(n):
            row[b] = c
        for i in range(xb.shape[0]):
            h = eta[k, i]
            xi = xb[i]
            for b in range(n):
                row[b] += h * xi[b]


@njit(nogil=True, fastmath=FASTMATH)
def _pass(X, w, row_const, logc, eta):  # pragma: no cover - compiled
    """One pass over the rows: ``(sum_n w_n log p(x_n), R (K,), T (K, D))``.

    ``logc[k] = log pi_k - sum_d A(eta_kd)``; ``eta`` (K, D); ``w`` (N,) or (0,) for
    none; ``row_const`` (N,) the constants ``c(x_n)``, or (0,) when they are zero.
    """
    n_samples, n_features = X.shape
    n_components = logc.shape[0]
    resp_sum = np.zeros(n_components)
    sums = np.zeros((n_components, n_features))
    xb = np.empty((n_features, BLOCK))
    wlp = np.empty((n_components, BLOCK))
    top = np.empty(BLOCK)
    inv_norm = np.empty(BLOCK)
    scale = np.empty(BLOCK)
    total = 0.0
    for start in range(0, n_samples, BLOCK):
        n = min(BLOCK, n_samples - start)
        transpose_block(X, start, n, xb)
        _linear_block(wlp, logc, eta, xb, n)
        total += block_total(wlp, top, inv_norm, scale, n, w, start, row_const)
        for k in range(n_components):
            resp_sum[k] += _accumulate(wlp[k], inv_norm, xb, n, sums, k)
    return total, resp_sum, sums


@njit(nogil=True, fastmath=FASTMATH)
def logp_dlogp(x, X, w, row_const, a, kind, table, const, cumulant):  # pragma: no cover
    """Return the joint log density (with Jacobians) and its gradient at ``x``.

    Parameters
    ----------
    x : (K - 1 + K D,) the unconstrained point. X : (N, D) the rows. w : (N,) or (0,)
    frequency weights. row_const : (N,) or (0,) the constants ``c(x_n)``. a : (K,) the
    Dirichlet concentrations. kind, table : the prior of the parameters (a kind of
    :data:`bayesmix.nuts._priors.LOG_SCALE_KINDS` and its (4, K D) table, or
    ``_LOGIT_BETA`` with alpha, alpha + beta and the constant in rows 0, 1 and 3).
    const : the Dirichlet's normaliser and the simplex transform's ``log K``.
    cumulant : the code of ``A`` (:data:`CUMULANTS`).
    """
    k_ = a.shape[0]
    d_ = X.shape[1]
    eta = x[k_ - 1 :].copy()
    A, dA = _cumulant(eta, cumulant)
    log_weights, weights = simplex_weights(x, k_)
    grad = np.zeros(x.shape[0])
    logp = const
    g_logw = np.empty(k_)
    for k in range(k_):
        logp += a[k] * log_weights[k]
        g_logw[k] = a[k]
    g_eta = grad[k_ - 1 :]
    if kind == _LOGIT_BETA:
        for j in range(eta.shape[0]):
            logp += table[3, j] + table[0, j] * eta[j] - table[1, j] * A[j]
            g_eta[j] = table[0, j] - table[1, j] * dA[j]
    else:
        logp += log_scale_prior(kind, table, eta, g_eta)
    logc = np.empty(k_)
    for k in range(k_):
        s = log_weights[k]
        for i in range(d_):
            s -= A[k * d_ + i]
        logc[k] = s
    total, resp_sum, sums = _pass(X, w, row_const, logc, eta.reshape((k_, d_)))
    logp += total
    for k in range(k_):
        g_logw[k] += resp_sum[k]
        for i in range(d_):
            j = k * d_ + i
            g_eta[j] += sums[k, i] - resp_sum[k] * dA[j]
    simplex_gradient(g_logw, weights, grad)
    return finite_or_minus_inf(logp, grad)


@njit(nogil=True, fastmath=FASTMATH)
def constrained_values(x, n_components, cumulant):  # pragma: no cover - compiled
    """Return the weights (K,) and the parameters ``A'(eta)`` (K D,) at ``x``."""
    _, weights = simplex_weights(x, n_components)
    _, mean = _cumulant(x[n_components - 1 :].copy(), cumulant)
    return weights, mean


@njit(nogil=True, fastmath=FASTMATH)
def _pointwise(X, row_const, logc, eta, out, responsibilities):  # pragma: no cover - compiled
    """Write ``out[s, n] = log sum_k exp(logc[s, k] + sum_d eta[s, k, d] x_nd) + c(x_n)``.

    ``logc`` (S, K) are ``log pi_k - sum_d A(eta_kd)`` per draw; ``row_const`` (N,) or
    (0,). With ``responsibilities``, ``out`` (N, K) accumulates the responsibilities
    instead (:func:`bayesmix.nuts._blocks.emit_block`). Rows in blocks, every draw per
    block (the block stays in cache).
    """
    n_draws, n_components = logc.shape
    n_samples, n_features = X.shape
    xb = np.empty((n_features, BLOCK))
    wlp = np.empty((n_components, BLOCK))
    top = np.empty(BLOCK)
    inv_norm = np.empty(BLOCK)
    scale = np.empty(BLOCK)
    for start in range(0, n_samples, BLOCK):
        n = min(BLOCK, n_samples - start)
        transpose_block(X, start, n, xb)
        for s in range(n_draws):
            _linear_block(wlp, logc[s], eta[s], xb, n)
            emit_block(wlp, top, inv_norm, scale, n, start, s, row_const, out, responsibilities)


def pointwise(
    X: np.ndarray,
    weights: np.ndarray,
    param: np.ndarray,
    out: np.ndarray,
    *,
    cumulant: str,
    row_constant: Callable[[np.ndarray], np.ndarray] | None = None,
    responsibilities: bool = False,
) -> bool:
    """Write ``log p(x_n | theta^s)`` of every draw into ``out`` (S, N) with the kernel.

    ``weights`` (S, K) and ``param`` (S, K, D) (rates or probabilities) are draws;
    ``row_constant`` gives ``c(x_n)``. With ``responsibilities``, add each row's
    responsibilities summed over the draws to ``out`` (N, K) instead; a row the kernel
    leaves to NumPy gets NaN (:func:`bayesmix.nuts._blocks.emit_block`). Returns False
    (``out`` untouched) for parameters on the boundary of their support (a rate of 0, a
    probability of 0 or 1: EM estimates), which the family's NumPy density handles.
    Families call it as their :attr:`bayesmix.model.MixtureModel._fast_pointwise` for
    many values (:func:`bayesmix._numeric.kernel_pays_off`).
    """
    weights = np.asarray(weights, dtype=np.float64)
    param = np.asarray(param, dtype=np.float64)
    inside = (param > 0.0) & (param < (np.inf if cumulant == "exp" else 1.0))
    if not inside.all() or not (weights > 0.0).all():
        return False
    if cumulant == "exp":
        eta, a = np.log(param), param
    else:
        eta = np.log(param) - np.log1p(-param)
        a = -np.log1p(-param)  # log(1 + exp(eta))
    X = as_observations(X, param.shape[-1])
    row_const = row_constants(None if responsibilities else row_constant, X)
    logc = np.ascontiguousarray(np.log(weights) - a.sum(axis=-1))
    _pointwise(X, row_const, logc, np.ascontiguousarray(eta), out, responsibilities)
    return True


# -- C entry points for nutpie (see bayesmix.families.gaussian._nuts_kernel) ---------------

(
    _U_X,
    _U_N,
    _U_D,
    _U_K,
    _U_W,
    _U_NW,
    _U_C,
    _U_NC,
    _U_A,
    _U_KIND,
    _U_TABLE,
    _U_CONST,
    _U_CUMULANT,
    _U_SHIFT,
    _U_FACTOR,
) = range(15)
_U_SIZE = 15


@njit(nogil=True)
def _logp_record(x, user_data):  # pragma: no cover - compiled
    """``logp_dlogp`` at the kernel's point for ``x`` (the sampler's), from the record."""
    meta = numba.carray(user_data, (_U_SIZE,), np.int64)
    n, d, k = meta[_U_N], meta[_U_D], meta[_U_K]
    X = numba.carray(_as_pointer(meta[_U_X]), (n, d), np.float64)
    w = numba.carray(_as_pointer(meta[_U_W]), (meta[_U_NW],), np.float64)
    row_const = numba.carray(_as_pointer(meta[_U_C]), (meta[_U_NC],), np.float64)
    a = numba.carray(_as_pointer(meta[_U_A]), (k,), np.float64)
    table = numba.carray(_as_pointer(meta[_U_TABLE]), (4, k * d), np.float64)
    const = numba.carray(_as_pointer(meta[_U_CONST]), (1,), np.float64)[0]
    point = _nutpie_internals.model_point(x, meta[_U_SHIFT], meta[_U_FACTOR])
    return logp_dlogp(point, X, w, row_const, a, meta[_U_KIND], table, const, meta[_U_CUMULANT])


def _logp_c(dim, x_, out_, logp_, user_data):  # pragma: no cover - compiled
    """Compute nutpie's ``logp`` callback: 0, or 4 when the density is not finite, 1 on errors."""
    try:
        meta = numba.carray(user_data, (_U_SIZE,), np.int64)
        value, grad = _logp_record(numba.carray(x_, (dim,)), user_data)
        if grad.shape[0] != dim:
            return -1
        _nutpie_internals.pull_back(grad, numba.carray(out_, (dim,)), meta[_U_FACTOR])
        numba.carray(logp_, (1,))[0] = value
        if not math.isfinite(value):
            return 4
    except Exception:
        return 1
    return 0


def _expand_c(dim, expanded, x_, out_, user_data):  # pragma: no cover - compiled
    """Write nutpie's ``expand`` callback: the weights, then the parameters; 0 on success."""
    try:
        meta = numba.carray(user_data, (_U_SIZE,), np.int64)
        k = meta[_U_K]
        x = numba.carray(x_, (dim,))
        point = _nutpie_internals.model_point(x, meta[_U_SHIFT], meta[_U_FACTOR])
        weights, mean = constrained_values(point, k, meta[_U_CUMULANT])
        if weights.shape[0] + mean.shape[0] != expanded:
            return -1
        out = numba.carray(out_, (expanded,))
        out[:k] = weights
        out[k:] = mean
    except Exception:
        return -2
    return 0


@functools.cache
def c_callbacks() -> tuple[Any, Any]:
    """Return nutpie's C callbacks ``(logp, expand)`` as numba ``CFunc`` objects (loaded once)."""
    return cfunc(_C_LOGP)(_logp_c), cfunc(_C_EXPAND)(_expand_c)


# -- priors ---------------------------------------------------------------------------------


def _prior_on_eta(prior: Any, cumulant: str, shape: tuple[int, ...]) -> tuple | None:
    """``(kind, table)`` of the parameters' ``prior`` on eta, or None if not covered."""
    if cumulant == "exp":  # a rate, on the log scale
        return prior_table(prior, LOG_SCALE_KINDS, shape)
    params = dict(getattr(prior, "params", {}) or {})
    if getattr(prior, "distribution", None) != "Beta" or set(params) != {"alpha", "beta"}:
        return None
    try:
        alpha, beta = (
            np.broadcast_to(np.asarray(params[key], dtype=np.float64), shape).reshape(-1)
            for key in ("alpha", "beta")
        )
    except ValueError:
        return None
    if not np.all(np.isfinite(alpha + beta)) or not np.all((alpha > 0) & (beta > 0)):
        return None
    table = np.zeros((4, alpha.size))
    table[0], table[1], table[3] = alpha, alpha + beta, -betaln(alpha, beta)
    return _LOGIT_BETA, table


def _prior_data(
    priors: Mapping[str, Any], param: str, cumulant: str, n_components: int, n_features: int
) -> dict[str, Any] | None:
    """Kernel data of the priors, or None if one is outside what the kernel covers."""
    if set(priors) != {"weights", param}:
        return None
    dirichlet = dirichlet_data(priors["weights"], n_components)
    on_eta = _prior_on_eta(priors[param], cumulant, (n_components, n_features))
    if dirichlet is None or on_eta is None:
        return None
    kind, table = on_eta
    return {
        "kind": kind,
        "weights_a": dirichlet[0],
        "prior_table": table,
        "prior_const": np.array([dirichlet[1]]),
    }


# -- the model description -------------------------------------------------------------------

_SHARED_KEYS = ("x_data", "w_data", "row_const", "weights_a", "prior_table", "prior_const")


@dataclass(frozen=True)
class ExpFamTarget(IndependentFeaturesTarget):
    """The layout of one exponential-family mixture structure (cumulant, K, D) for nutpie.

    Build it with :func:`build`. It has the interface of the Gaussian family's fused
    target (``free``, ``unconstrain``, ``shared_data``, ``logp_dlogp``, ``expand``,
    ``nutpie_model``) and samples exactly the posterior of the family's PyMC model.
    """

    param: str
    cumulant: str
    n_components: int
    n_features: int
    features: tuple[Any, ...]
    prior_data: dict[str, Any] = field(repr=False)
    row_constant: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    _callbacks = staticmethod(c_callbacks)

    @property
    def free(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """``(variable, value variable, shape)`` of every free variable, in nutpie's order."""
        k, d = self.n_components, self.n_features
        return [
            ("weights", "weights_simplex__", (k - 1,)),
            (self.param, f"{self.param}_{_TRANSFORMS[self.cumulant]}__", (k, d)),
        ]

    # -- data -------------------------------------------------------------------------

    def shared_data(
        self,
        X: np.ndarray,
        priors: Mapping[str, Any] | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> dict:
        """Return the kernel's data for rows ``X`` (and other ``priors``).

        Keys: ``x_data`` and ``w_data`` (named as the PyMC model's ``pm.Data``; ``w_data``
        of size 0 for no weights), ``row_const`` (the constants ``c(x_n)``, size 0 when
        the family has none), ``weights_a``, ``prior_table``, ``prior_const``.
        ``priors`` (resolved ``bayesmix.Prior`` objects) replace the priors given to
        :func:`build`; priors the kernel does not cover raise ``ValueError``.
        """
        data = {key: value for key, value in self.prior_data.items() if key != "kind"}
        if priors is not None:
            new = _prior_data(priors, self.param, self.cumulant, self.n_components, self.n_features)
            if new is None or new["kind"] != self.prior_data["kind"]:
                raise ValueError("these priors are not supported by this fused kernel")
            data.update((key, value) for key, value in new.items() if key != "kind")
        X = as_observations(X, self.n_features)
        data["x_data"] = X
        data["w_data"] = as_weights(sample_weight, X.shape[0])
        data["row_const"] = self._row_const(X)
        return data

    # -- the model functions ------------------------------------------------------------

    def logp_dlogp(self, x: np.ndarray, **shared: Any) -> tuple[float, np.ndarray]:
        """Return ``(logp, grad)`` at the unconstrained point ``x`` (see :func:`logp_dlogp`)."""
        X = shared["x_data"]
        row_const = shared.get("row_const")
        if row_const is None:
            row_const = self._row_const(X)
        return logp_dlogp(
            np.ascontiguousarray(x, dtype=np.float64),
            X,
            as_weights(shared.get("w_data"), X.shape[0]),
            row_const,
            shared["weights_a"],
            self.prior_data["kind"],
            shared["prior_table"],
            float(np.asarray(shared["prior_const"]).reshape(-1)[0]),
            CUMULANTS[self.cumulant],
        )

    def expand(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Constrained values of the stored variables at the unconstrained point ``x``."""
        weights, mean = constrained_values(
            np.ascontiguousarray(x, dtype=np.float64),
            self.n_components,
            CUMULANTS[self.cumulant],
        )
        return {"weights": weights, self.param: mean.reshape(self.n_components, -1)}

    def unconstrain(self, point: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return the constrained ``point`` (weights and the parameter) as ``x``."""
        log_w = np.log(np.asarray(point["weights"], dtype=np.float64).reshape(-1))
        value = np.asarray(point[self.param], dtype=np.float64).reshape(-1)
        eta = np.log(value) if self.cumulant == "exp" else np.log(value) - np.log1p(-value)
        return np.concatenate([(log_w - log_w.mean())[:-1], eta])

    def freeze(self, shared: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Return read-only C-contiguous float64 copies of ``shared`` (the C code reads them)."""
        X = as_observations(shared["x_data"], self.n_features)
        out = {
            "x_data": X,
            "w_data": as_weights(shared.get("w_data"), X.shape[0]),
            "row_const": (
                np.asarray(shared["row_const"], dtype=np.float64)
                if shared.get("row_const") is not None
                else self._row_const(X)
            ),
        }
        for key in ("weights_a", "prior_table", "prior_const"):
            out[key] = shared[key]
        frozen = {}
        for key, value in out.items():
            value = np.array(value, dtype=np.float64, order="C", copy=True).reshape(
                (1,) if key == "prior_const" else np.shape(value)
            )
            value.flags.writeable = False
            frozen[key] = value
        return frozen

    def record(self, shared: Mapping[str, np.ndarray], affine: Affine | None) -> np.ndarray:
        """Return the int64 record the C callbacks read: addresses and sizes of ``shared``.

        ``shared`` (from :meth:`freeze`) and ``affine`` must outlive every use of it.
        """
        X = shared["x_data"]
        k, d = self.n_components, self.n_features
        expected = {"weights_a": (k,), "prior_table": (4, k * d)}
        for key, shape in expected.items():
            if shared[key].shape != shape:
                raise ValueError(f"{key} must have shape {shape}; got {shared[key].shape}")
        for key in ("w_data", "row_const"):
            if shared[key].shape not in ((0,), (X.shape[0],)):
                raise ValueError(
                    f"{key} must have shape (0,) or ({X.shape[0]},); got {shared[key].shape}"
                )
        record = np.zeros(_U_SIZE, dtype=np.int64)
        record[_U_X] = X.ctypes.data
        record[_U_N], record[_U_D], record[_U_K] = X.shape[0], d, k
        record[_U_W], record[_U_NW] = shared["w_data"].ctypes.data, shared["w_data"].size
        record[_U_C], record[_U_NC] = shared["row_const"].ctypes.data, shared["row_const"].size
        record[_U_A] = shared["weights_a"].ctypes.data
        record[_U_KIND] = self.prior_data["kind"]
        record[_U_TABLE] = shared["prior_table"].ctypes.data
        record[_U_CONST] = shared["prior_const"].ctypes.data
        record[_U_CUMULANT] = CUMULANTS[self.cumulant]
        if affine is not None:
            record[_U_SHIFT] = affine.shift.ctypes.data
            record[_U_FACTOR] = affine.factor.ctypes.data
        return record

    def updated_data(
        self, shared: Mapping[str, np.ndarray], updates: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        """Return frozen shared data with ``updates`` (nutpie's ``with_data``) applied."""
        unknown = set(updates) - {"x_data", "w_data"}
        if unknown:
            raise KeyError(f"unknown data {sorted(unknown)}; expected x_data and w_data")
        merged = dict(shared)
        merged.update(updates)
        if "x_data" in updates:
            X = as_observations(updates["x_data"], self.n_features)
            merged["x_data"] = X
            merged["row_const"] = self._row_const(X)
            merged.setdefault("w_data", None)
            if "w_data" not in updates:
                merged["w_data"] = None  # new rows: their own weights or none
        return self.freeze(merged)


def build(
    *,
    param: str,
    cumulant: str,
    n_components: int,
    n_features: int,
    priors: Mapping[str, Any],
    features: Any = None,
    row_constant: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ExpFamTarget | None:
    """Return the fused target of one mixture structure, or None when the kernel does not cover it.

    Parameters
    ----------
    param : str
        Name of the component parameter (``"rates"``, ``"probs"``).
    cumulant : {"exp", "softplus"}
        The cumulant of the features' exponential family (:data:`CUMULANTS`).
    n_components, n_features : int
        K and D.
    priors : mapping
        Resolved ``bayesmix.Prior`` objects for ``"weights"`` (Dirichlet) and ``param``.
    features : sequence, optional
        Feature names (default ``x0, x1, ...``).
    row_constant : callable, optional
        ``X -> c(x_n)`` per row (module-level, so the target pickles); None for zero.

    Returns
    -------
    ExpFamTarget or None
        None for a prior the kernel does not cover (see the module docstring).
    """
    if cumulant not in CUMULANTS or n_components < 1 or n_features < 1:
        return None
    features = tuple(features if features is not None else [f"x{i}" for i in range(n_features)])
    if len(features) != n_features:
        return None
    data = _prior_data(priors, param, cumulant, n_components, n_features)
    if data is None:
        return None
    return ExpFamTarget(param, cumulant, n_components, n_features, features, data, row_constant)
