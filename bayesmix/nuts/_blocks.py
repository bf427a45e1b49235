"""Numba building blocks of the fused log-density kernels (internal).

One pass of a fused mixture kernel over a block of observations: the weighted
component log densities ``wlp[k, b] = log pi_k + log p(x_b | theta_k)`` are turned into
unnormalised responsibilities and the block's log-likelihood by :func:`finish_block` (a
vectorising exponential), and weighted by the frequency weights by :func:`weigh_block`.
The family kernels (:mod:`bayesmix.families.gaussian._nuts_kernel`,
:mod:`bayesmix.nuts.expfam`) fill ``wlp`` and accumulate their own sufficient
statistics from the responsibilities. Every function is inlined into its caller, so the
callers' numba caches hold the machine code (:mod:`bayesmix._numba_cache` keys them on
this module's source too).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from bayesmix._numba_cache import ERROR_MODEL

__all__ = [
    "BLOCK",
    "FASTMATH",
    "as_observations",
    "as_weights",
    "block_log_densities",
    "block_total",
    "digamma",
    "emit_block",
    "finish_block",
    "finite_or_minus_inf",
    "log_block",
    "simplex_gradient",
    "simplex_weights",
    "transpose_block",
    "weigh_block",
]

# Only fused multiply-adds: no reassociation, no assumptions about NaN or infinities.
FASTMATH = {"contract"}

# Observations per block.
BLOCK = 256

# exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln 2 / 2, ln 2 / 2]
# (Cody-Waite reduction, as in bayesmix.families.gaussian._em_kernels).
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 rounded to 32 significant bits: n * _LN2_HI exact
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_SHIFTER = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer in the low bits
# Subtracted from the bits of t = x log2(e) + _SHIFTER, leaves n + 1023 (the biased exponent).
_SCALE_OFFSET = int(np.array([_SHIFTER]).view(np.int64)[0]) - 1023
# Arguments are raised to this floor: 2^n stays a normal number (n >= -1022).
_EXP_FLOOR = -708.0
# Taylor coefficients 1 / j!, j = 2..13 (|r|^14 / 14! < 2^-60 for |r| <= ln 2 / 2).
_C2 = 1.0 / 2.0
_C3 = 1.0 / 6.0
_C4 = 1.0 / 24.0
_C5 = 1.0 / 120.0
_C6 = 1.0 / 720.0
_C7 = 1.0 / 5040.0
_C8 = 1.0 / 40320.0
_C9 = 1.0 / 362880.0
_C10 = 1.0 / 3628800.0
_C11 = 1.0 / 39916800.0
_C12 = 1.0 / 479001600.0
_C13 = 1.0 / 6227020800.0


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def _sum(a, n):  # pragma: no cover - compiled
    """Return ``sum(a[:n])`` with four interleaved partial sums."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    m = n - n % 4
    for b in range(0, m, 4):
        s0 += a[b]
        s1 += a[b + 1]
        s2 += a[b + 2]
        s3 += a[b + 3]
    for b in range(m, n):
        s0 += a[b]
    return (s0 + s1) + (s2 + s3)


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def _log_prod(a, n, chunk):  # pragma: no cover - compiled
    """Return ``sum(log(a[:n]))`` as the log of products of ``chunk`` values (``a >= 1``)."""
    total = 0.0
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        p0 = 1.0
        p1 = 1.0
        m = stop - (stop - start) % 2
        for b in range(start, m, 2):
            p0 *= a[b]
            p1 *= a[b + 1]
        for b in range(m, stop):
            p0 *= a[b]
        total += math.log(p0 * p1)
    return total


@numba.njit(nogil=True, inline="always", error_model=ERROR_MODEL)
def transpose_block(X, start, n, out):  # pragma: no cover - compiled
    """Copy rows ``start:start + n`` of ``X`` (N, D) into ``out[:, :n]`` (D, block), by feature.

    ``X`` is C-contiguous. One feature at a time from the flat buffer (a constant stride
    of ``D``, which LLVM turns into vector gathers; one feature is a plain copy): row by
    row it took about 2.6 ns per row at D = 1 and 5.1 at D = 6, against 0.7 and 4.0.
    """
    n_features = X.shape[1]
    flat = X.reshape(-1)
    if n_features == 1:
        row = out[0]
        for b in range(n):
            row[b] = flat[start + b]
        return
    base = start * n_features
    for i in range(n_features):
        row = out[i]
        for b in range(n):
            row[b] = flat[base + b * n_features + i]


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def finish_block(wlp, top, inv_norm, scale, n_components, n):  # pragma: no cover
    """Exponentiate the weighted log densities of a block, shifted by their maximum.

    On return ``wlp[k, b] = exp(wlp[k, b] - top[b])`` (unnormalised responsibilities)
    and ``inv_norm[b]`` is the inverse of their sum over components; returns
    ``sum_b logsumexp_k wlp[k, b]`` (NaN if a value is NaN). The exponential is a
    Cody-Waite reduction and a degree-13 Taylor polynomial (about 1 ulp), written so that
    LLVM vectorises it; arguments below -708 are raised to -708 (their exponentials,
    below 4e-308, only meet sums of at least 1).
    """
    for b in range(n):
        top[b] = wlp[0, b]
    for k in range(1, n_components):
        row = wlp[k]
        for b in range(n):
            v = row[b]
            t = top[b]
            top[b] = v if v > t else t
    for b in range(n):
        inv_norm[b] = 0.0
    scale_bits = scale.view(np.int64)
    for k in range(n_components):
        row = wlp[k]
        for b in range(n):
            y = row[b] - top[b]
            y = _EXP_FLOOR if y < _EXP_FLOOR else y  # keeps NaN
            t = y * _LOG2E + _SHIFTER
            nf = t - _SHIFTER
            r = (y - nf * _LN2_HI) - nf * _LN2_LO
            # Estrin's scheme: a shallow dependency chain.
            r2 = r * r
            r4 = r2 * r2
            q0 = (1.0 + r) + (_C2 + _C3 * r) * r2
            q1 = (_C4 + _C5 * r) + (_C6 + _C7 * r) * r2
            q2 = (_C8 + _C9 * r) + (_C10 + _C11 * r) * r2
            q3 = _C12 + _C13 * r
            row[b] = (q0 + q1 * r4) + (q2 + q3 * r4) * (r4 * r4)
            scale[b] = t
        # 2^n as a bit pattern: n + 1023 sits in the low bits of t.
        for b in range(n):
            scale_bits[b] = (scale_bits[b] - _SCALE_OFFSET) << 52
        for b in range(n):
            e = row[b] * scale[b]
            row[b] = e
            inv_norm[b] += e
    # The normaliser of an observation is in [1, K]: K^chunk stays below 2^1000.
    chunk = n if n_components < 2 else max(1, min(n, int(690.0 / math.log(n_components))))
    total = _sum(top, n) + _log_prod(inv_norm, n, chunk)
    for b in range(n):
        inv_norm[b] = 1.0 / inv_norm[b]
    return total


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def weigh_block(w, start, top, inv_norm, n):  # pragma: no cover - compiled
    """Weight a finished block by the frequency weights ``w[start:start + n]``.

    Returns ``sum_b w_b log p(x_b)`` (``log p = top - log inv_norm``; a row of weight 0
    adds nothing, even with a non-finite density) and multiplies ``inv_norm`` by ``w``,
    so that the responsibilities, and every sum of them, are weighted.
    """
    total = 0.0
    for b in range(n):
        wb = w[start + b]
        if wb != 0.0:
            total += wb * (top[b] - math.log(inv_norm[b]))
        inv_norm[b] *= wb
    return total


# log(y) = k ln 2 + log(m), y = 2^k m with m in [sqrt(2) / 2, sqrt(2)) (fdlibm's e_log.c):
# with f = m - 1 and s = f / (2 + f), log(m) = f - (f^2 / 2 - s (f^2 / 2 + R(s^2))).
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
# Added to the bits of y, carries the exponent up where the mantissa is >= sqrt(2).
_SQRT2_SHIFT = 0x3FF0000000000000 - 0x3FE6A09E00000000
_SQRT_HALF_BITS = 0x3FE6A09E00000000
_MANTISSA = 0x000FFFFFFFFFFFFF
_LARGEST = 1.7976931348623157e308


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def log_block(a, exponent, n):  # pragma: no cover - compiled
    """Replace ``a[:n]`` (positive normal numbers) by their natural logarithms, vectorised.

    fdlibm's algorithm (below 1 ulp) without branches or calls, so that LLVM vectorises
    it; ``exponent`` (at least ``n`` floats) is scratch. Infinities and NaN are left as
    they are. Not for zero, negative or subnormal arguments (the kernels call it on
    ``1 + q / nu >= 1``).
    """
    bits = a.view(np.int64)
    for b in range(n):
        y = a[b]
        shifted = bits[b] + _SQRT2_SHIFT
        exponent[b] = float((shifted >> 52) - 1023) if y <= _LARGEST else y
        bits[b] = (shifted & _MANTISSA) + _SQRT_HALF_BITS
    for b in range(n):
        f = a[b] - 1.0
        hfsq = 0.5 * f * f
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
        t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
        dk = exponent[b]
        a[b] = dk * _LN2_HI - ((hfsq - (s * (hfsq + t1 + t2) + dk * _LN2_LO)) - f)


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def simplex_weights(x, n_components):  # pragma: no cover - compiled
    """Return ``(log pi, pi)`` from the simplex coordinates ``x[:K - 1]``.

    PyMC's simplex transform: ``y = (x[:K - 1], -sum x[:K - 1])``,
    ``log pi = y - logsumexp(y)``.
    """
    k_ = n_components
    y = np.empty(k_)
    s = 0.0
    for j in range(k_ - 1):
        y[j] = x[j]
        s += x[j]
    y[k_ - 1] = -s
    top = y.max()
    acc = 0.0
    for j in range(k_):
        acc += math.exp(y[j] - top)
    lse = top + math.log(acc)
    log_weights = np.empty(k_)
    weights = np.empty(k_)
    for j in range(k_):
        log_weights[j] = y[j] - lse
        weights[j] = math.exp(y[j] - top) / acc
    return log_weights, weights


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def simplex_gradient(g_logw, weights, grad):  # pragma: no cover - compiled
    """Write the gradient in the simplex coordinates into ``grad[:K - 1]``.

    ``g_logw`` (K,) is the gradient in ``log pi``; the chain rule through
    ``log pi = y - logsumexp(y)`` and ``y = (v, -sum v)`` of :func:`simplex_weights`.
    """
    k_ = weights.shape[0]
    g_sum = 0.0
    for k in range(k_):
        g_sum += g_logw[k]
    last = g_logw[k_ - 1] - weights[k_ - 1] * g_sum
    for j in range(k_ - 1):
        grad[j] = (g_logw[j] - weights[j] * g_sum) - last


@numba.njit(nogil=True, inline="always", error_model=ERROR_MODEL)
def finite_or_minus_inf(logp, grad):  # pragma: no cover - compiled
    """Return ``(logp, grad)``, or ``(-inf, grad)`` if either is not finite (nutpie rejects it)."""
    if not math.isfinite(logp):
        return -np.inf, grad
    for j in range(grad.shape[0]):
        if not math.isfinite(grad[j]):
            return -np.inf, grad
    return logp, grad


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def digamma(x):  # pragma: no cover - compiled
    """Return the digamma function at ``x > 0`` (error below 1e-11, 1e-12 relative).

    The recurrence ``psi(x) = psi(x + 1) - 1 / x`` up to ``x >= 6``, then the asymptotic
    series.
    """
    result = 0.0
    while x < 6.0:
        result -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    series = f * (
        1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f * (1.0 / 132.0))))
    )
    return result + math.log(x) - 0.5 / x - series


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def block_total(wlp, top, inv_norm, scale, n, w, start, row_const):  # pragma: no cover
    """Return a filled block's ``sum_b w_b (log p(x_b) + c(x_b))`` and its responsibilities.

    :func:`finish_block`, then :func:`weigh_block` when there are frequency weights
    ``w`` (size 0: none), plus the rows' constants ``row_const`` (size 0: none; a row of
    weight 0 adds nothing). ``wlp[k] * inv_norm`` are the (weighted) responsibilities.
    """
    total = finish_block(wlp, top, inv_norm, scale, wlp.shape[0], n)
    weighted = w.shape[0] > 0
    if weighted:
        total = weigh_block(w, start, top, inv_norm, n)
    if row_const.shape[0] > 0:
        for b in range(n):
            if not weighted:
                total += row_const[start + b]
            elif w[start + b] != 0.0:
                total += w[start + b] * row_const[start + b]
    return total


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def block_log_densities(wlp, top, inv_norm, scale, n_components, n):  # pragma: no cover
    """Turn a block's weighted log densities into each row's ``log sum_k exp wlp[k, b]``.

    The result is left in ``top[:n]`` (:func:`finish_block`, then a vectorised log of the
    normalisers); ``wlp``, ``inv_norm`` and ``scale`` are overwritten.
    """
    finish_block(wlp, top, inv_norm, scale, n_components, n)
    log_block(inv_norm, scale, n)
    for b in range(n):
        top[b] -= inv_norm[b]


# A row whose largest weighted log density lies outside +-2^20 has lost digits in the
# differences its responsibilities are made of: :func:`emit_block` leaves it to the
# family's NumPy densities (with their exact terms for rows far out).
_RESPONSIBILITY_RANGE = 2.0**20


@numba.njit(nogil=True, inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
def emit_block(
    wlp, top, inv_norm, scale, n, start, s, row_const, out, responsibilities
):  # pragma: no cover - compiled
    """Write a filled block of draw ``s`` into ``out``: log densities or responsibilities.

    ``responsibilities`` False: ``out`` (S, N) gets each row's ``log sum_k exp wlp[k, b]``
    plus its constant ``row_const`` (size 0: none). True: ``out`` (N, K) accumulates
    the rows' responsibilities over the draws; a row whose largest weighted log density
    is not within +-2^20 (or not finite) gets NaN, for the caller to recompute.
    ``wlp``, ``top``, ``inv_norm`` and ``scale`` are overwritten.
    """
    n_components = wlp.shape[0]
    if responsibilities:
        finish_block(wlp, top, inv_norm, scale, n_components, n)
        for b in range(n):
            row = out[start + b]
            if abs(top[b]) <= _RESPONSIBILITY_RANGE:
                r = inv_norm[b]
                for k in range(n_components):
                    row[k] += wlp[k, b] * r
            else:
                row[0] = np.nan
    else:
        block_log_densities(wlp, top, inv_norm, scale, n_components, n)
        out_s = out[s]
        if row_const.shape[0] > 0:
            for b in range(n):
                out_s[start + b] = top[b] + row_const[start + b]
        else:
            for b in range(n):
                out_s[start + b] = top[b]


# -- the kernels' data ---------------------------------------------------------------


def as_weights(sample_weight: Any, n_samples: int) -> np.ndarray:
    """Return frequency weights as a C-contiguous float64 (N,) array, or (0,) for none."""
    if sample_weight is None or np.size(sample_weight) == 0:
        return np.zeros(0)
    w = np.array(sample_weight, dtype=np.float64, order="C", copy=True).reshape(-1)
    if w.shape[0] != n_samples:
        raise ValueError(f"expected {n_samples} weights (one per observation); got {w.shape[0]}")
    return w


def as_observations(X: Any, n_features: int) -> np.ndarray:
    """Return ``X`` as a writeable C-contiguous float64 (N, D) array (one kernel type)."""
    X = np.array(X, dtype=np.float64, order="C", copy=True)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"expected observations of shape (N, {n_features}); got {X.shape}")
    return np.ascontiguousarray(X)
