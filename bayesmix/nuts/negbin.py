r"""A fused log density and gradient for mixtures of independent negative binomial features.

The negative binomial family samples its posterior through this module instead of a
compiled PyMC model: one numba kernel, compiled once per machine and loaded from numba's
on-disk cache (:mod:`bayesmix._numba_cache`), handed to nutpie as C callbacks (no Python
per gradient), optionally in Laplace coordinates (as :mod:`bayesmix.nuts.expfam`).

The model and its coordinates
-----------------------------
Each feature of a component is ``NegativeBinomial(mu_kd, alpha_kd)`` in PyMC's
parameterisation (mean ``mu``, variance ``mu + mu^2 / alpha``)::

    log NB(x | mu, alpha) = G(x; alpha) + x eta - alpha log(1 + mu / alpha) - log x!
    G(x; alpha)           = log Gamma(x + alpha) - log Gamma(alpha)
    eta                   = log mu - log(alpha + mu)

The unconstrained vector is laid out as nutpie lays out the PyMC model: the weights'
``weights_simplex__`` (K - 1), ``rates_log__`` (K, D) and ``dispersion_log__`` (K, D),
``rho = log mu`` and ``a = log alpha``. Each prior is any prior family of a positive
parameter on the log scale (:func:`bayesmix.nuts._priors.log_scale_prior`).

Where the time goes
-------------------
``G`` is the only part that depends on a count through more than a product, and counts
repeat: ``G`` and ``x eta`` are tabulated once per evaluation for every *distinct* count
``u`` of each feature (``M`` of them, computed when the data are given), so a row costs
``D`` table look-ups per component. For sorted integer counts the table is a running sum,
``G(u'; alpha) = G(u; alpha) + sum_{i=u}^{u'-1} log(alpha + i)`` (and the same with
``1 / (alpha + i)`` for the digamma difference), with ``lgamma`` only across gaps wider
than :data:`_MAX_RUN`. The gradient needs the responsibility histogram
``H_kj = sum_{n: x_nd = u_j} w_n r_nk`` of every distinct count, with ``R_k = sum_j H_kj``
(any one feature) and ``T_kd = sum_{j in d} H_kj u_j``::

    d/d log pi_k = R_k
    d/d rho_kd   = alpha / (alpha + mu) (T_kd - mu R_k)
    d/d a_kd     = alpha [sum_{j in d} H_kj (psi(u_j + alpha) - psi(alpha))
                          - R_k log(1 + mu / alpha) + (mu R_k - T_kd) / (alpha + mu)]

Scratch memory is O(K (M + block)); nothing of size (N, K) is formed. ``-log x!`` is
computed once per data set, never per gradient.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from bayesmix._numba_cache import cfunc, njit
from bayesmix.nuts import _nutpie_internals
from bayesmix.nuts._blocks import (
    BLOCK,
    FASTMATH,
    as_observations,
    as_weights,
    block_total,
    digamma,
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

__all__ = ["NegBinTarget", "build", "levels", "logp_dlogp", "pointwise"]

# Distinct counts further apart than this are tabulated by lgamma / digamma instead of
# the running sums.
_MAX_RUN = 16


# -- the data: distinct counts ----------------------------------------------------------------


def levels(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the distinct counts of every feature and each count's index among them.

    Returns ``(values, starts, index)``: ``values`` (M,) the sorted distinct counts of
    feature 0, then of feature 1, ...; ``starts`` (D + 1,) where each feature's begin in
    ``values``; ``index`` (N, D) int64 the position of ``X[n, d]`` in ``values``.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    values, starts, index = [], [0], np.empty((n, d), dtype=np.int64)
    for i in range(d):
        distinct, inverse = np.unique(X[:, i], return_inverse=True)
        index[:, i] = inverse.reshape(-1) + starts[-1]
        values.append(distinct)
        starts.append(starts[-1] + distinct.size)
    flat = np.concatenate(values) if values else np.zeros(0)
    return (
        np.ascontiguousarray(flat, dtype=np.float64),
        np.asarray(starts, dtype=np.int64),
        np.ascontiguousarray(index),
    )


# -- the kernel ---------------------------------------------------------------------------


@njit(nogil=True, fastmath=FASTMATH)
def _tables(values, starts, eta, alpha, table, dpsi, derivative):  # pragma: no cover
    """Fill ``table[k, j] = G(u_j; alpha) + u_j eta`` and ``dpsi[k, j]`` (psi difference).

    ``dpsi[k, j] = psi(u_j + alpha) - psi(alpha)``, only with ``derivative`` (``dpsi``
    may then be (K, 0)); ``eta``, ``alpha`` (K, D); ``table``, ``dpsi`` (K, M).
    """
    n_components, n_features = eta.shape
    for k in range(n_components):
        for i in range(n_features):
            a = alpha[k, i]
            h = eta[k, i]
            lg_a = math.lgamma(a)
            psi_a = digamma(a) if derivative else 0.0
            prev = 0.0
            g = 0.0
            p = 0.0
            for j in range(starts[i], starts[i + 1]):
                u = values[j]
                gap = u - prev
                if u == math.floor(u) and prev == math.floor(prev) and 0.0 <= gap <= _MAX_RUN:
                    v = a + prev
                    if derivative:
                        for _ in range(int(gap)):
                            g += math.log(v)
                            p += 1.0 / v
                            v += 1.0
                    else:
                        for _ in range(int(gap)):
                            g += math.log(v)
                            v += 1.0
                else:
                    g = math.lgamma(u + a) - lg_a
                    if derivative:
                        p = digamma(u + a) - psi_a
                prev = u
                table[k, j] = g + u * h
                if derivative:
                    dpsi[k, j] = p


@njit(nogil=True, fastmath=FASTMATH, inline="always")
def _draw_terms(log_weights, log_mu, mu, alpha, eta, log1p_ratio, logc):  # pragma: no cover
    """Fill one draw's ``eta``, ``log(1 + mu / alpha)`` (K D,) and ``logc`` (K,).

    ``eta = log mu - log(alpha + mu)`` and ``logc[k] = log pi_k - sum_d alpha log(1 + mu
    / alpha)``; ``log_mu``, ``mu``, ``alpha``: (K D,), component-major.
    """
    n_components = logc.shape[0]
    n_features = mu.shape[0] // n_components
    for k in range(n_components):
        c = log_weights[k]
        for i in range(n_features):
            j = k * n_features + i
            eta[j] = log_mu[j] - math.log(alpha[j] + mu[j])
            log1p_ratio[j] = math.log1p(mu[j] / alpha[j])
            c -= alpha[j] * log1p_ratio[j]
        logc[k] = c


@njit(nogil=True, fastmath=FASTMATH, inline="always")
def _gather_block(wlp, logc, table, ib, n):  # pragma: no cover - compiled
    """Fill ``wlp[k, b] = logc[k] + sum_d table[k, ib[d, b]]`` for a block of ``n`` rows."""
    for k in range(logc.shape[0]):
        row = wlp[k]
        tk = table[k]
        c = logc[k]
        for b in range(n):
            row[b] = c
        for i in range(ib.shape[0]):
            ii = ib[i]
            for b in range(n):
                row[b] += tk[ii[b]]


@njit(nogil=True, fastmath=FASTMATH)
def _pass(index, w, row_const, logc, table, hist):  # pragma: no cover - compiled
    """One pass over the rows: ``sum_n w_n log p(x_n)``; adds the histogram into ``hist``.

    ``logc[k] = log pi_k - sum_d alpha_kd log(1 + mu_kd / alpha_kd)``; ``table`` (K, M);
    ``hist`` (K, M) zeroed; ``w`` (N,) or (0,); ``row_const`` (N,) or (0,).
    """
    n_samples, n_features = index.shape
    n_components = logc.shape[0]
    ib = np.empty((n_features, BLOCK), dtype=np.int64)
    wlp = np.empty((n_components, BLOCK))
    top = np.empty(BLOCK)
    inv_norm = np.empty(BLOCK)
    scale = np.empty(BLOCK)
    total = 0.0
    for start in range(0, n_samples, BLOCK):
        n = min(BLOCK, n_samples - start)
        transpose_block(index, start, n, ib)
        _gather_block(wlp, logc, table, ib, n)
        total += block_total(wlp, top, inv_norm, scale, n, w, start, row_const)
        for k in range(n_components):
            e = wlp[k]
            hk = hist[k]
            for b in range(n):
                e[b] *= inv_norm[b]
            for i in range(n_features):
                ii = ib[i]
                for b in range(n):
                    hk[ii[b]] += e[b]
    return total


@njit(nogil=True, fastmath=FASTMATH)
def logp_dlogp(
    x, index, values, starts, w, row_const, a, kinds, rates_prior, dispersion_prior, const
):  # pragma: no cover - compiled
    """Return the joint log density (with Jacobians) and its gradient at ``x``.

    Parameters
    ----------
    x : (K - 1 + 2 K D,) the unconstrained point. index, values, starts : the distinct
    counts (:func:`levels`). w : (N,) or (0,) frequency weights. row_const : (N,) or (0,)
    ``-sum_d log x_nd!``. a : (K,) the Dirichlet concentrations. kinds : (2,) the prior
    kinds of the rates and the dispersions (:data:`bayesmix.nuts._priors.LOG_SCALE_KINDS`).
    rates_prior, dispersion_prior : their (4, K D) tables. const : the Dirichlet's
    normaliser and the simplex transform's ``log K``.
    """
    k_ = a.shape[0]
    d_ = starts.shape[0] - 1
    kd = k_ * d_
    m_ = values.shape[0]
    log_weights, weights = simplex_weights(x, k_)
    rho = x[k_ - 1 : k_ - 1 + kd]
    log_alpha = x[k_ - 1 + kd : k_ - 1 + 2 * kd]
    grad = np.zeros(x.shape[0])
    g_rho = grad[k_ - 1 : k_ - 1 + kd]
    g_a = grad[k_ - 1 + kd :]
    logp = const
    g_logw = np.empty(k_)
    for k in range(k_):
        logp += a[k] * log_weights[k]
        g_logw[k] = a[k]
    logp += log_scale_prior(kinds[0], rates_prior, rho, g_rho)
    logp += log_scale_prior(kinds[1], dispersion_prior, log_alpha, g_a)
    mu = np.exp(rho)
    alpha = np.exp(log_alpha)
    eta = np.empty(kd)
    log1p_ratio = np.empty(kd)
    logc = np.empty(k_)
    _draw_terms(log_weights, rho, mu, alpha, eta, log1p_ratio, logc)
    table = np.empty((k_, m_))
    dpsi = np.empty((k_, m_))
    _tables(values, starts, eta.reshape((k_, d_)), alpha.reshape((k_, d_)), table, dpsi, True)
    hist = np.zeros((k_, m_))
    logp += _pass(index, w, row_const, logc, table, hist)
    for k in range(k_):
        hk = hist[k]
        resp = 0.0
        for j in range(starts[0], starts[1]):
            resp += hk[j]
        g_logw[k] += resp
        for i in range(d_):
            t = 0.0
            psi_sum = 0.0
            for j in range(starts[i], starts[i + 1]):
                t += hk[j] * values[j]
                psi_sum += hk[j] * dpsi[k, j]
            j = k * d_ + i
            m, al = mu[j], alpha[j]
            g_rho[j] += al / (al + m) * (t - m * resp)
            g_a[j] += al * (psi_sum - resp * log1p_ratio[j] + (m * resp - t) / (al + m))
    simplex_gradient(g_logw, weights, grad)
    return finite_or_minus_inf(logp, grad)


@njit(nogil=True, fastmath=FASTMATH)
def constrained_values(x, n_components, n_features):  # pragma: no cover - compiled
    """Return the weights (K,), the rates (K D,) and the dispersions (K D,) at ``x``."""
    _, weights = simplex_weights(x, n_components)
    kd = n_components * n_features
    start = n_components - 1
    return weights, np.exp(x[start : start + kd]), np.exp(x[start + kd : start + 2 * kd])


@njit(nogil=True, fastmath=FASTMATH)
def _pointwise(
    index,
    values,
    starts,
    row_const,
    log_weights,
    log_rates,
    rates,
    dispersion,
    out,
    responsibilities,
):  # pragma: no cover - compiled
    """Write ``out[s, n] = log p(x_n | theta^s)`` for draws of weights and parameters.

    ``log_weights`` (S, K); ``log_rates``, ``rates``, ``dispersion`` (S, K D),
    component-major. Each draw tabulates its distinct counts (:func:`_tables`), then one
    pass over the rows. With ``responsibilities``, ``out`` (N, K) accumulates the
    responsibilities instead (:func:`bayesmix.nuts._blocks.emit_block`).
    """
    n_draws, n_components = log_weights.shape
    n_samples, n_features = index.shape
    table = np.empty((n_components, values.shape[0]))
    no_dpsi = np.empty((n_components, 0))
    eta = np.empty(n_components * n_features)
    log1p_ratio = np.empty(n_components * n_features)
    logc = np.empty(n_components)
    ib = np.empty((n_features, BLOCK), dtype=np.int64)
    wlp = np.empty((n_components, BLOCK))
    top = np.empty(BLOCK)
    inv_norm = np.empty(BLOCK)
    scale = np.empty(BLOCK)
    shape = (n_components, n_features)
    for s in range(n_draws):
        alpha = dispersion[s]
        _draw_terms(log_weights[s], log_rates[s], rates[s], alpha, eta, log1p_ratio, logc)
        _tables(values, starts, eta.reshape(shape), alpha.reshape(shape), table, no_dpsi, False)
        for start in range(0, n_samples, BLOCK):
            n = min(BLOCK, n_samples - start)
            transpose_block(index, start, n, ib)
            _gather_block(wlp, logc, table, ib, n)
            emit_block(wlp, top, inv_norm, scale, n, start, s, row_const, out, responsibilities)


def pointwise(
    X: np.ndarray,
    weights: np.ndarray,
    rates: np.ndarray,
    dispersion: np.ndarray,
    out: np.ndarray,
    *,
    row_constant: Callable[[np.ndarray], np.ndarray] | None = None,
    responsibilities: bool = False,
) -> bool:
    """Write ``log p(x_n | theta^s)`` of every draw into ``out`` (S, N) with the kernel.

    ``weights`` (S, K), ``rates`` and ``dispersion`` (S, K, D) are draws; ``row_constant``
    gives ``-sum_d log x_nd!``. With ``responsibilities``, add each row's
    responsibilities summed over the draws to ``out`` (N, K) instead; a row the kernel
    leaves to NumPy gets NaN (:func:`bayesmix.nuts._blocks.emit_block`). Returns False
    (``out`` untouched) for rates of 0 (EM estimates) and for dispersions above ``1e3``
    (the NumPy density's Stirling series keeps the Poisson limit exact). The family calls it as its
    :attr:`bayesmix.model.MixtureModel._fast_pointwise` for many values
    (:func:`bayesmix._numeric.kernel_pays_off`).
    """
    weights = np.asarray(weights, dtype=np.float64)
    rates = np.ascontiguousarray(rates, dtype=np.float64)
    dispersion = np.ascontiguousarray(dispersion, dtype=np.float64)
    usable = (rates > 0.0).all() and ((dispersion > 0.0) & (dispersion <= 1e3)).all()
    if not usable or not (weights > 0.0).all():
        return False
    X = as_observations(X, rates.shape[-1])
    values, starts, index = levels(X)
    row_const = row_constants(None if responsibilities else row_constant, X)
    n_draws = weights.shape[0]
    log_weights = np.ascontiguousarray(np.log(weights))
    rates = rates.reshape(n_draws, -1)
    _pointwise(
        index,
        values,
        starts,
        row_const,
        log_weights,
        np.log(rates),
        rates,
        dispersion.reshape(n_draws, -1),
        out,
        responsibilities,
    )
    return True


# -- C entry points for nutpie (see bayesmix.nuts.expfam) -------------------------------------

(
    _U_INDEX,
    _U_N,
    _U_D,
    _U_K,
    _U_VALUES,
    _U_M,
    _U_STARTS,
    _U_W,
    _U_NW,
    _U_C,
    _U_NC,
    _U_A,
    _U_KINDS,
    _U_RATES,
    _U_DISPERSION,
    _U_CONST,
    _U_SHIFT,
    _U_FACTOR,
) = range(18)
_U_SIZE = 18


@njit(nogil=True)
def _logp_record(x, user_data):  # pragma: no cover - compiled
    """``logp_dlogp`` at the kernel's point for ``x`` (the sampler's), from the record."""
    meta = numba.carray(user_data, (_U_SIZE,), np.int64)
    n, d, k, m = meta[_U_N], meta[_U_D], meta[_U_K], meta[_U_M]
    index = numba.carray(_as_pointer(meta[_U_INDEX]), (n, d), np.int64)
    values = numba.carray(_as_pointer(meta[_U_VALUES]), (m,), np.float64)
    starts = numba.carray(_as_pointer(meta[_U_STARTS]), (d + 1,), np.int64)
    w = numba.carray(_as_pointer(meta[_U_W]), (meta[_U_NW],), np.float64)
    row_const = numba.carray(_as_pointer(meta[_U_C]), (meta[_U_NC],), np.float64)
    a = numba.carray(_as_pointer(meta[_U_A]), (k,), np.float64)
    kinds = numba.carray(_as_pointer(meta[_U_KINDS]), (2,), np.int64)
    rates = numba.carray(_as_pointer(meta[_U_RATES]), (4, k * d), np.float64)
    dispersion = numba.carray(_as_pointer(meta[_U_DISPERSION]), (4, k * d), np.float64)
    const = numba.carray(_as_pointer(meta[_U_CONST]), (1,), np.float64)[0]
    point = _nutpie_internals.model_point(x, meta[_U_SHIFT], meta[_U_FACTOR])
    return logp_dlogp(
        point, index, values, starts, w, row_const, a, kinds, rates, dispersion, const
    )


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
    """Write nutpie's ``expand`` callback: weights, rates, dispersions; 0 on success."""
    try:
        meta = numba.carray(user_data, (_U_SIZE,), np.int64)
        k, d = meta[_U_K], meta[_U_D]
        x = numba.carray(x_, (dim,))
        point = _nutpie_internals.model_point(x, meta[_U_SHIFT], meta[_U_FACTOR])
        weights, rates, dispersion = constrained_values(point, k, d)
        if k + 2 * k * d != expanded:
            return -1
        out = numba.carray(out_, (expanded,))
        out[:k] = weights
        out[k : k + k * d] = rates
        out[k + k * d :] = dispersion
    except Exception:
        return -2
    return 0


@functools.cache
def c_callbacks() -> tuple[Any, Any]:
    """Return nutpie's C callbacks ``(logp, expand)`` as numba ``CFunc`` objects (loaded once)."""
    return cfunc(_C_LOGP)(_logp_c), cfunc(_C_EXPAND)(_expand_c)


# -- priors ---------------------------------------------------------------------------------


def _prior_data(
    priors: Mapping[str, Any], n_components: int, n_features: int
) -> dict[str, Any] | None:
    """Kernel data of the priors, or None if one is outside what the kernel covers."""
    if set(priors) != {"weights", "rates", "dispersion"}:
        return None
    dirichlet = dirichlet_data(priors["weights"], n_components)
    rates = prior_table(priors["rates"], LOG_SCALE_KINDS, (n_components, n_features))
    dispersion = prior_table(priors["dispersion"], LOG_SCALE_KINDS, (n_components, n_features))
    if dirichlet is None or rates is None or dispersion is None:
        return None
    return {
        "kinds": np.array([rates[0], dispersion[0]], dtype=np.int64),
        "weights_a": dirichlet[0],
        "rates_prior": rates[1],
        "dispersion_prior": dispersion[1],
        "prior_const": np.array([dirichlet[1]]),
    }


# -- the model description -------------------------------------------------------------------

_PRIOR_KEYS = ("weights_a", "rates_prior", "dispersion_prior", "prior_const")


@dataclass(frozen=True)
class NegBinTarget(IndependentFeaturesTarget):
    """The layout of one negative binomial mixture structure (K, D) for nutpie.

    Build it with :func:`build`. It has the interface of the other fused targets
    (:class:`bayesmix.nuts.expfam.ExpFamTarget`) and samples exactly the posterior of the
    family's PyMC model.
    """

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
            ("rates", "rates_log__", (k, d)),
            ("dispersion", "dispersion_log__", (k, d)),
        ]

    # -- data -------------------------------------------------------------------------

    def _rows(self, X: Any, sample_weight: Any) -> dict[str, np.ndarray]:
        X = as_observations(X, self.n_features)
        values, starts, index = levels(X)
        return {
            "x_data": X,
            "w_data": as_weights(sample_weight, X.shape[0]),
            "row_const": self._row_const(X),
            "level_values": values,
            "level_starts": starts,
            "level_index": index,
        }

    def shared_data(
        self,
        X: np.ndarray,
        priors: Mapping[str, Any] | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> dict:
        """Return the kernel's data for rows ``X`` (and other ``priors``).

        Keys: ``x_data`` and ``w_data`` (named as the PyMC model's ``pm.Data``; ``w_data``
        of size 0 for no weights), ``row_const`` (``-sum_d log x_nd!``), the distinct
        counts (``level_values``, ``level_starts``, ``level_index``: :func:`levels`), and
        the priors' data. ``priors`` (resolved ``bayesmix.Prior`` objects) replace the
        priors given to :func:`build`; priors the kernel does not cover raise ``ValueError``.
        """
        data = {key: self.prior_data[key] for key in _PRIOR_KEYS}
        if priors is not None:
            new = _prior_data(priors, self.n_components, self.n_features)
            if new is None or not np.array_equal(new["kinds"], self.prior_data["kinds"]):
                raise ValueError("these priors are not supported by this fused kernel")
            data.update((key, new[key]) for key in _PRIOR_KEYS)
        data.update(self._rows(X, sample_weight))
        return data

    # -- the model functions ------------------------------------------------------------

    def logp_dlogp(self, x: np.ndarray, **shared: Any) -> tuple[float, np.ndarray]:
        """Return ``(logp, grad)`` at the unconstrained point ``x`` (see :func:`logp_dlogp`)."""
        if "level_index" not in shared:  # data from another route: x_data (and w_data)
            shared = {**shared, **self._rows(shared["x_data"], shared.get("w_data"))}
        n_rows = shared["level_index"].shape[0]
        row_const = shared.get("row_const")
        return logp_dlogp(
            np.ascontiguousarray(x, dtype=np.float64),
            shared["level_index"],
            shared["level_values"],
            shared["level_starts"],
            as_weights(shared.get("w_data"), n_rows),
            self._row_const(shared["x_data"]) if row_const is None else row_const,
            shared["weights_a"],
            self.prior_data["kinds"],
            shared["rates_prior"],
            shared["dispersion_prior"],
            float(np.asarray(shared["prior_const"]).reshape(-1)[0]),
        )

    def expand(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Constrained values of the stored variables at the unconstrained point ``x``."""
        k, d = self.n_components, self.n_features
        weights, rates, dispersion = constrained_values(
            np.ascontiguousarray(x, dtype=np.float64), k, d
        )
        return {
            "weights": weights,
            "rates": rates.reshape(k, d),
            "dispersion": dispersion.reshape(k, d),
        }

    def unconstrain(self, point: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return the constrained ``point`` (weights, rates, dispersions) as ``x``."""
        log_w = np.log(np.asarray(point["weights"], dtype=np.float64).reshape(-1))
        rates = np.asarray(point["rates"], dtype=np.float64).reshape(-1)
        dispersion = np.asarray(point["dispersion"], dtype=np.float64).reshape(-1)
        return np.concatenate([(log_w - log_w.mean())[:-1], np.log(rates), np.log(dispersion)])

    def freeze(self, shared: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Return read-only C-contiguous copies of ``shared`` (the C code reads them)."""
        out = self._rows(shared["x_data"], shared.get("w_data"))
        if shared.get("row_const") is not None:
            out["row_const"] = np.asarray(shared["row_const"], dtype=np.float64)
        for key in _PRIOR_KEYS:
            out[key] = shared[key]
        out["kinds"] = self.prior_data["kinds"]
        frozen = {}
        for key, value in out.items():
            dtype = np.int64 if key in ("level_starts", "level_index", "kinds") else np.float64
            value = np.array(value, dtype=dtype, order="C", copy=True).reshape(
                (1,) if key == "prior_const" else np.shape(value)
            )
            value.flags.writeable = False
            frozen[key] = value
        return frozen

    def record(self, shared: Mapping[str, np.ndarray], affine: Affine | None) -> np.ndarray:
        """Return the int64 record the C callbacks read: addresses and sizes of ``shared``.

        ``shared`` (from :meth:`freeze`) and ``affine`` must outlive every use of it.
        """
        index = shared["level_index"]
        k, d = self.n_components, self.n_features
        expected = {
            "weights_a": (k,),
            "rates_prior": (4, k * d),
            "dispersion_prior": (4, k * d),
            "level_starts": (d + 1,),
            "kinds": (2,),
        }
        for key, shape in expected.items():
            if shared[key].shape != shape:
                raise ValueError(f"{key} must have shape {shape}; got {shared[key].shape}")
        for key in ("w_data", "row_const"):
            if shared[key].shape not in ((0,), (index.shape[0],)):
                raise ValueError(
                    f"{key} must have shape (0,) or ({index.shape[0]},); got {shared[key].shape}"
                )
        record = np.zeros(_U_SIZE, dtype=np.int64)
        record[_U_INDEX] = index.ctypes.data
        record[_U_N], record[_U_D], record[_U_K] = index.shape[0], d, k
        record[_U_VALUES] = shared["level_values"].ctypes.data
        record[_U_M] = shared["level_values"].size
        record[_U_STARTS] = shared["level_starts"].ctypes.data
        record[_U_W], record[_U_NW] = shared["w_data"].ctypes.data, shared["w_data"].size
        record[_U_C], record[_U_NC] = shared["row_const"].ctypes.data, shared["row_const"].size
        record[_U_A] = shared["weights_a"].ctypes.data
        record[_U_KINDS] = shared["kinds"].ctypes.data
        record[_U_RATES] = shared["rates_prior"].ctypes.data
        record[_U_DISPERSION] = shared["dispersion_prior"].ctypes.data
        record[_U_CONST] = shared["prior_const"].ctypes.data
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
            merged["row_const"] = None  # new rows: their own constants
            if "w_data" not in updates:
                merged["w_data"] = None  # and their own weights or none
        return self.freeze(merged)


def build(
    *,
    n_components: int,
    n_features: int,
    priors: Mapping[str, Any],
    features: Any = None,
    row_constant: Callable[[np.ndarray], np.ndarray] | None = None,
) -> NegBinTarget | None:
    """Return the fused target of one mixture structure, or None when the kernel does not cover it.

    Parameters
    ----------
    n_components, n_features : int
        K and D.
    priors : mapping
        Resolved ``bayesmix.Prior`` objects for ``"weights"`` (Dirichlet), ``"rates"`` and
        ``"dispersion"`` (prior families of a positive parameter).
    features : sequence, optional
        Feature names (default ``x0, x1, ...``).
    row_constant : callable, optional
        ``X -> -sum_d log x_nd!`` per row (module-level, so the target pickles).

    Returns
    -------
    NegBinTarget or None
        None for a prior the kernel does not cover (see :func:`bayesmix.nuts._priors.prior_table`).
    """
    if n_components < 1 or n_features < 1:
        return None
    features = tuple(features if features is not None else [f"x{i}" for i in range(n_features)])
    if len(features) != n_features:
        return None
    data = _prior_data(priors, n_components, n_features)
    if data is None:
        return None
    return NegBinTarget(n_components, n_features, features, data, row_constant)
