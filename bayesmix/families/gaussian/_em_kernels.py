"""Fused numba kernels for the Gaussian EM iteration of :mod:`.em` (internal).

One pass over the data computes, for every observation, the weighted component log
densities through the precision Cholesky factors (as
:func:`bayesmix.families.gaussian.em.estimate_log_gaussian_prob`), their log-sum-exp (the
log-likelihood of the observation) and the responsibilities, and accumulates what the M-step needs:

* ``total = sum_n log p(x_n)``;
* ``nk[k] = sum_n r_nk``;
* ``s1[k] = sum_n r_nk d_nk`` with ``d_nk = x_n - m_k``;
* ``s2[k] = sum_n r_nk d_nk d_nk^T`` (:func:`full_pass`, a (D, D) matrix) or
  ``sum_n r_nk d_nk**2`` (:func:`diag_pass`, a (D,) vector),

where ``m_k`` are the means the densities are evaluated at. Accumulating about the current
mean of each component rather than about the origin keeps the scatter accurate when the
data are far from 0: the scatter about the updated mean ``m_k + delta_k`` is
``s2 - s1 delta^T - delta s1^T + nk delta delta^T``, and ``delta_k`` (one EM update of the
mean) is small compared with the spread of the component, so little cancels.

No (N, K) array is formed: the data are processed in blocks of ``_BLOCK`` observations, whose
intermediate quantities live in small scratch arrays laid out so that every inner loop runs
over the observations of the block with unit stride (and is vectorised by LLVM). The
exponential is evaluated by :func:`_exp_accumulate`, a branch-free Cody-Waite reduction and
a degree-13 Taylor polynomial (error below 2 ulp, subnormal results included) that
vectorises, unlike a call to ``exp`` from the C library. The log-likelihood
``sum_n log p(x_n)`` is ``sum_n max_k + log prod_n s_n`` with ``s_n`` in ``[1, K]`` the
normaliser of the shifted exponentials, so a logarithm is taken once per block (or per
``690 / log K`` observations), not per observation. The sums are blocked (a block's partial
sums are added to the totals), so their rounding error grows like ``_BLOCK + N / _BLOCK``
rather than ``N``. Only floating-point contraction (fused multiply-add) is allowed, no
reassociation.

:func:`full_m_step` and :func:`diag_m_step` turn the sums into the M-step of
:func:`bayesmix.families.gaussian.em.m_step` (maximum likelihood or the conjugate-prior posterior
mode) and the precision Cholesky factors, and report when cancellation or a missing Cholesky factor
means the iteration must be redone with NumPy.

The ``"tied"`` covariance type uses :func:`full_pass` with the shared factor repeated for
every component, ``"spherical"`` uses :func:`diag_pass` with the factor repeated for every
feature. All arrays must be C-contiguous, writeable float64 arrays (a read-only array would
compile a second specialisation).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from bayesmix._numba_cache import ERROR_MODEL, njit
from bayesmix.nuts._blocks import emit_block

__all__ = [
    "FALL_BACK",
    "OK",
    "diag_m_step",
    "diag_pass",
    "exp_nonpositive",
    "full_m_step",
    "full_pass",
    "mixture_log_density",
]

# Only fused multiply-adds: no reassociation, no assumptions about NaN or infinities.
_FASTMATH = {"contract"}

_EPS = float(np.finfo(np.float64).eps)

# Observations per block.
_BLOCK = 256

# exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln 2 / 2, ln 2 / 2].
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 rounded to 32 significant bits: n * _LN2_HI exact
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
# Adding 1.5 * 2^52 rounds to an integer, which then sits in the low bits of the float.
_SHIFTER = 6755399441055744.0
_SHIFTER_BITS = int(np.array([_SHIFTER]).view(np.int64)[0])
# Below this exp underflows to 0 (it is below -1075 ln 2).
_EXP_FLOOR = -746.0
# 2^n is applied as 2^n1 2^n2 with n1 = floor((n + _N_OFFSET) / 2) - _N_OFFSET / 2 and
# n2 = n - n1: both factors are normal numbers for every n >= -1077, so results in the
# subnormal range are rounded once, by the last multiplication.
_N_OFFSET = 1100
_HALF_BIAS = 1023 - _N_OFFSET // 2
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


@numba.njit(nogil=True, fastmath=_FASTMATH, error_model=ERROR_MODEL)
def _exp_accumulate(row, top, norm, poly, t_float, n):  # pragma: no cover - compiled
    """Set ``row[:n] = exp(row[:n] - top[:n])`` and add it to ``norm[:n]``.

    The argument must be non-positive (or NaN): below -746 the result is 0, NaN stays NaN.
    ``poly`` and ``t_float`` are float64 scratch arrays of at least ``n`` elements.
    """
    for b in range(n):
        y = row[b] - top[b]
        y = _EXP_FLOOR if y < _EXP_FLOOR else y  # keeps NaN
        t = y * _LOG2E + _SHIFTER
        nf = t - _SHIFTER
        r = (y - nf * _LN2_HI) - nf * _LN2_LO
        # Estrin's scheme: a shallow dependency chain, so that iterations overlap.
        r2 = r * r
        r4 = r2 * r2
        q0 = (1.0 + r) + (_C2 + _C3 * r) * r2
        q1 = (_C4 + _C5 * r) + (_C6 + _C7 * r) * r2
        q2 = (_C8 + _C9 * r) + (_C10 + _C11 * r) * r2
        q3 = _C12 + _C13 * r
        poly[b] = (q0 + q1 * r4) + (q2 + q3 * r4) * (r4 * r4)
        t_float[b] = t
    # The scale factors 2^n1 and 2^n2 are built as bit patterns, in place of t and in row.
    t_bits = t_float.view(np.int64)
    row_bits = row.view(np.int64)
    for b in range(n):
        shifted = t_bits[b] - (_SHIFTER_BITS - _N_OFFSET)  # n + _N_OFFSET >= 0
        half = shifted >> 1
        t_bits[b] = (half + _HALF_BIAS) << 52
        row_bits[b] = (shifted - half + _HALF_BIAS) << 52
    for b in range(n):
        value = poly[b] * t_float[b] * row[b]
        row[b] = value
        norm[b] += value


@njit(nogil=True, fastmath=_FASTMATH)
def exp_nonpositive(x):  # pragma: no cover - compiled
    """Return ``exp(x)`` for a 1-D array of non-positive values (the kernels' exponential)."""
    n = x.shape[0]
    out = x.copy()
    _exp_accumulate(out, np.zeros(n), np.zeros(n), np.empty(n), np.empty(n), n)
    return out


@numba.njit(nogil=True, fastmath=_FASTMATH, error_model=ERROR_MODEL)
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


@numba.njit(nogil=True, fastmath=_FASTMATH, error_model=ERROR_MODEL)
def _dot(a, c, n):  # pragma: no cover - compiled
    """Return ``sum(a[:n] * c[:n])`` with four interleaved partial sums."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    m = n - n % 4
    for b in range(0, m, 4):
        s0 += a[b] * c[b]
        s1 += a[b + 1] * c[b + 1]
        s2 += a[b + 2] * c[b + 2]
        s3 += a[b + 3] * c[b + 3]
    for b in range(m, n):
        s0 += a[b] * c[b]
    return (s0 + s1) + (s2 + s3)


@numba.njit(nogil=True, fastmath=_FASTMATH, error_model=ERROR_MODEL)
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


@numba.njit(nogil=True, fastmath=_FASTMATH, error_model=ERROR_MODEL)
def _load_block(X, start, n, xb):  # pragma: no cover - compiled
    """Copy rows ``start:start + n`` of ``X`` into ``xb`` transposed (features x block)."""
    for b in range(n):
        for i in range(X.shape[1]):
            xb[i, b] = X[start + b, i]


@numba.njit(nogil=True, fastmath=_FASTMATH, error_model=ERROR_MODEL)
def _exp_sum_block(wlp, top, norm, poly, t_float, n_components, n):  # pragma: no cover
    """Set ``top`` to the maximum over components and ``norm`` to ``sum_k exp(wlp - top)``.

    ``wlp[k]`` is overwritten with ``exp(wlp[k] - top)``. Where every value is ``-inf``,
    ``top`` is ``-inf`` and ``norm`` NaN.
    """
    for b in range(n):
        top[b] = wlp[0, b]
        norm[b] = 0.0
    for k in range(1, n_components):
        row = wlp[k]
        for b in range(n):
            v = row[b]
            t = top[b]
            top[b] = v if v > t else t
    for k in range(n_components):
        _exp_accumulate(wlp[k], top, norm, poly, t_float, n)


@numba.njit(nogil=True, fastmath=_FASTMATH, error_model=ERROR_MODEL)
def _finish_block(wlp, top, norm, poly, t_float, n_components, n):  # pragma: no cover
    """Turn the weighted log densities of a block into responsibilities (in place).

    Sets ``top`` to the per-observation maximum, ``wlp[k]`` to the responsibilities and
    ``norm`` to ``1 / s_n``; returns ``sum_n log p(x_n)``, which is NaN if a value is NaN
    (its exponential is NaN) and not finite if every value of an observation is ``-inf``.
    """
    _exp_sum_block(wlp, top, norm, poly, t_float, n_components, n)
    # s_n <= K (1 + eps): K^chunk stays below 2^1000.
    chunk = n if n_components < 2 else max(1, min(n, int(690.0 / math.log(n_components))))
    log_likelihood = _sum(top, n) + _log_prod(norm, n, chunk)
    for b in range(n):
        norm[b] = 1.0 / norm[b]
    for k in range(n_components):
        row = wlp[k]
        for b in range(n):
            row[b] *= norm[b]
    return log_likelihood


@njit(nogil=True, fastmath=_FASTMATH)
def full_pass(X, means, prec_chol, log_norm):  # pragma: no cover - compiled
    """Fused E-step and sufficient statistics for full precision Cholesky factors.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data.
    means : numpy.ndarray of shape (n_components, n_features)
        Component means ``m_k``.
    prec_chol : numpy.ndarray of shape (n_components, n_features, n_features)
        Upper-triangular precision Cholesky factors ``U_k`` (``Sigma_k^-1 = U_k U_k^T``);
        only the upper triangle is read.
    log_norm : numpy.ndarray of shape (n_components,)
        ``log pi_k + log det U_k - D log(2 pi) / 2``.

    Returns
    -------
    total : float
        ``sum_n log p(x_n)``; not finite if some observation has no finite density.
    nk : numpy.ndarray of shape (n_components,)
        Total responsibilities.
    s1 : numpy.ndarray of shape (n_components, n_features)
        ``sum_n r_nk (x_n - m_k)``.
    s2 : numpy.ndarray of shape (n_components, n_features, n_features)
        ``sum_n r_nk (x_n - m_k)(x_n - m_k)^T`` (symmetric).
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    nk = np.zeros(n_components)
    s1 = np.zeros((n_components, n_features))
    s2 = np.zeros((n_components, n_features, n_features))
    xb = np.empty((n_features, _BLOCK))
    diff = np.empty((n_features, _BLOCK))
    rdiff = np.empty((n_features, _BLOCK))
    wlp = np.empty((n_components, _BLOCK))
    y = np.empty(_BLOCK)
    maha = np.empty(_BLOCK)
    top = np.empty(_BLOCK)
    norm = np.empty(_BLOCK)
    poly = np.empty(_BLOCK)
    t_float = np.empty(_BLOCK)
    total = 0.0
    for start in range(0, n_samples, _BLOCK):
        n = min(_BLOCK, n_samples - start)
        _load_block(X, start, n, xb)
        # Weighted log densities log pi_k + log N(x | m_k, Sigma_k).
        for k in range(n_components):
            for i in range(n_features):
                m = means[k, i]
                xi = xb[i]
                di = diff[i]
                for b in range(n):
                    di[b] = xi[b] - m
            for b in range(n):
                maha[b] = 0.0
            for j in range(n_features):
                u = prec_chol[k, 0, j]
                d0 = diff[0]
                for b in range(n):
                    y[b] = d0[b] * u
                for i in range(1, j + 1):
                    u = prec_chol[k, i, j]
                    di = diff[i]
                    for b in range(n):
                        y[b] += di[b] * u
                for b in range(n):
                    maha[b] += y[b] * y[b]
            c = log_norm[k]
            row = wlp[k]
            for b in range(n):
                row[b] = c - 0.5 * maha[b]
        total += _finish_block(wlp, top, norm, poly, t_float, n_components, n)
        # Sufficient statistics about m_k.
        for k in range(n_components):
            resp = wlp[k]
            nk[k] += _sum(resp, n)
            for i in range(n_features):
                m = means[k, i]
                xi = xb[i]
                di = diff[i]
                ri = rdiff[i]
                for b in range(n):
                    d = xi[b] - m
                    di[b] = d
                    ri[b] = resp[b] * d
            for i in range(n_features):
                ri = rdiff[i]
                s1[k, i] += _sum(ri, n)
                for j in range(i, n_features):
                    s2[k, i, j] += _dot(ri, diff[j], n)
    for k in range(n_components):
        for i in range(n_features):
            for j in range(i):
                s2[k, i, j] = s2[k, j, i]
    return total, nk, s1, s2


@njit(nogil=True, fastmath=_FASTMATH)
def diag_pass(X, means, prec, log_norm):  # pragma: no cover - compiled
    """Fused E-step and sufficient statistics for diagonal precision factors.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data.
    means : numpy.ndarray of shape (n_components, n_features)
        Component means ``m_k``.
    prec : numpy.ndarray of shape (n_components, n_features)
        Inverse standard deviations ``1 / sigma_kj``.
    log_norm : numpy.ndarray of shape (n_components,)
        ``log pi_k + sum_j log(1 / sigma_kj) - D log(2 pi) / 2``.

    Returns
    -------
    total : float
        ``sum_n log p(x_n)``; not finite if some observation has no finite density.
    nk : numpy.ndarray of shape (n_components,)
        Total responsibilities.
    s1 : numpy.ndarray of shape (n_components, n_features)
        ``sum_n r_nk (x_n - m_k)``.
    s2 : numpy.ndarray of shape (n_components, n_features)
        ``sum_n r_nk (x_n - m_k)**2``.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    nk = np.zeros(n_components)
    s1 = np.zeros((n_components, n_features))
    s2 = np.zeros((n_components, n_features))
    xb = np.empty((n_features, _BLOCK))
    diff = np.empty((n_features, _BLOCK))
    rdiff = np.empty((n_features, _BLOCK))
    wlp = np.empty((n_components, _BLOCK))
    maha = np.empty(_BLOCK)
    top = np.empty(_BLOCK)
    norm = np.empty(_BLOCK)
    poly = np.empty(_BLOCK)
    t_float = np.empty(_BLOCK)
    total = 0.0
    for start in range(0, n_samples, _BLOCK):
        n = min(_BLOCK, n_samples - start)
        _load_block(X, start, n, xb)
        for k in range(n_components):
            for b in range(n):
                maha[b] = 0.0
            for i in range(n_features):
                m = means[k, i]
                p = prec[k, i]
                xi = xb[i]
                for b in range(n):
                    y = (xi[b] - m) * p
                    maha[b] += y * y
            c = log_norm[k]
            row = wlp[k]
            for b in range(n):
                row[b] = c - 0.5 * maha[b]
        total += _finish_block(wlp, top, norm, poly, t_float, n_components, n)
        for k in range(n_components):
            resp = wlp[k]
            nk[k] += _sum(resp, n)
            for i in range(n_features):
                m = means[k, i]
                xi = xb[i]
                di = diff[i]
                ri = rdiff[i]
                for b in range(n):
                    d = xi[b] - m
                    di[b] = d
                    ri[b] = resp[b] * d
                s1[k, i] += _sum(ri, n)
                s2[k, i] += _dot(ri, di, n)
    return total, nk, s1, s2


# ---------------------------------------------------------------------------------------
# M-step from the sums

# Status codes of the M-steps.
OK = 0
FALL_BACK = 1


@numba.njit(nogil=True, fastmath=_FASTMATH, error_model=ERROR_MODEL)
def _shifts(nk, s1, centres, use_prior, kappa, prior_mean):  # pragma: no cover - compiled
    """Return the new means and ``delta = means - centres`` (see ``em.m_step``)."""
    n_components, n_features = centres.shape
    eps10 = 10.0 * _EPS
    means = np.empty((n_components, n_features))
    delta = np.empty((n_components, n_features))
    for k in range(n_components):
        for i in range(n_features):
            c = centres[k, i]
            if use_prior:
                # (sum_n r x + kappa mu_P) / (n_k + kappa)
                shift = (s1[k, i] + kappa * (prior_mean[i] - c)) / (nk[k] + kappa)
            else:
                # sum_n r x / (n_k + 10 eps)
                shift = (s1[k, i] - eps10 * c) / (nk[k] + eps10)
            m = c + shift
            means[k, i] = m
            delta[k, i] = m - c  # the shift to the rounded mean
    return means, delta


@numba.njit(nogil=True, fastmath=_FASTMATH, error_model=ERROR_MODEL)
def _resolution(means, centres, k, i, factor):  # pragma: no cover - compiled
    """``(factor * eps * max(|mean|, |centre|))**2``: a variance at the rounding scale."""
    scale = factor * _EPS * max(abs(means[k, i]), abs(centres[k, i]))
    return scale * scale


@numba.njit(nogil=True, fastmath=_FASTMATH, error_model=ERROR_MODEL)
def _precision_cholesky(cov, out):  # pragma: no cover - compiled
    """Set ``out`` to ``L^-T`` where ``cov = L L^T``; return False if that fails."""
    n = cov.shape[0]
    low = np.zeros((n, n))
    for j in range(n):
        pivot = cov[j, j]
        for m in range(j):
            pivot -= low[j, m] * low[j, m]
        if not (pivot > 0.0 and pivot < np.inf):
            return False
        low[j, j] = math.sqrt(pivot)
        for i in range(j + 1, n):
            value = cov[i, j]
            for m in range(j):
                value -= low[i, m] * low[j, m]
            low[i, j] = value / low[j, j]
    # out^T = L^-1, column by column (forward substitution).
    for j in range(n):
        for i in range(n):
            if i < j:
                out[j, i] = 0.0
                continue
            value = 1.0 if i == j else 0.0
            for m in range(j, i):
                value -= low[i, m] * out[j, m]
            out[j, i] = value / low[i, i]
    return True


@njit(nogil=True, fastmath=_FASTMATH)
def full_m_step(
    nk,
    s1,
    s2,
    centres,
    tied,
    reg_covar,
    use_prior,
    kappa,
    nu,
    prior_mean,
    prior_scale,
    rcond,
    resolution,
):  # pragma: no cover - compiled
    """M-step for ``"full"`` (``tied=False``) or ``"tied"`` from the sums of :func:`full_pass`.

    Follows ``bayesmix.families.gaussian.em.m_step`` (maximum likelihood) or
    ``bayesmix.families.gaussian.em._m_step_map`` (``use_prior``: shrinkage ``kappa``, degrees of
    freedom ``nu``, prior mean and (D, D) scale) operation by operation, with the scatter about the
    new mean ``centres + delta`` obtained as ``s2 - s1 delta^T - delta s1^T + nk delta delta^T``
    (upper triangle, mirrored: the covariances are exactly symmetric).

    Returns
    -------
    weights, means : numpy.ndarray
        Shapes (K,) and (K, D).
    covariances, precisions_cholesky : numpy.ndarray
        Shape (K, D, D), or (1, D, D) for ``tied``.
    status : int
        :data:`OK`, or :data:`FALL_BACK` when the result may be spoiled by cancellation or
        a covariance has no Cholesky factor. With ``S`` the diagonal matrix of the sizes of
        the terms of the scatter of each feature (divided as the covariance is), the
        rounding error of ``Sigma`` is about ``eps S^1/2 J S^1/2``, so the smallest
        eigenvalue of ``S^-1/2 Sigma S^-1/2`` says how much of it survives; its lower bound
        ``1 / tr(S^1/2 Sigma^-1 S^1/2)`` must exceed ``rcond``. Every variance must also
        exceed ``(resolution * eps * |mean|)**2``.
    """
    n_components, n_features = centres.shape
    eps10 = 10.0 * _EPS
    floored = nk + eps10
    total_floored = floored.sum()
    weights = floored / total_floored
    means, delta = _shifts(nk, s1, centres, use_prior, kappa, prior_mean)

    n_out = 1 if tied else n_components
    covariances = np.zeros((n_out, n_features, n_features))
    precisions = np.zeros((n_out, n_features, n_features))
    sizes = np.zeros((n_out, n_features))
    floors = np.zeros((n_out, n_features))
    for k in range(n_components):
        out = 0 if tied else k
        for i in range(n_features):
            magnitude = s2[k, i, i] + 2.0 * abs(s1[k, i] * delta[k, i])
            sizes[out, i] += magnitude + nk[k] * (delta[k, i] * delta[k, i])
            floors[out, i] = max(floors[out, i], _resolution(means, centres, k, i, resolution))
        for i in range(n_features):
            for j in range(i, n_features):
                scatter = (s2[k, i, j] - s1[k, i] * delta[k, j]) - delta[k, i] * s1[k, j]
                scatter += nk[k] * (delta[k, i] * delta[k, j])
                if use_prior:
                    shift_i = means[k, i] - prior_mean[i]
                    shift_j = means[k, j] - prior_mean[j]
                    scatter += kappa * (shift_i * shift_j)
                covariances[out, i, j] += scatter
    for out in range(n_out):
        if use_prior:
            if tied:
                denominator = nu + nk.sum() + n_components + n_features + 1.0
            else:
                denominator = nu + nk[out] + n_features + 2.0
            for i in range(n_features):
                for j in range(i, n_features):
                    covariances[out, i, j] += prior_scale[i, j]
        else:
            denominator = total_floored if tied else floored[out]
        for i in range(n_features):
            for j in range(i, n_features):
                value = covariances[out, i, j] / denominator
                covariances[out, i, j] = value
                covariances[out, j, i] = value
            covariances[out, i, i] += reg_covar
            sizes[out, i] /= denominator

    status = OK
    for out in range(n_out):
        for i in range(n_features):
            if not covariances[out, i, i] > floors[out, i]:
                status = FALL_BACK
        if not _precision_cholesky(covariances[out], precisions[out]):
            status = FALL_BACK
            continue
        # tr(S^1/2 Sigma^-1 S^1/2) = sum_i S_ii (U U^T)_ii
        scaled_trace = 0.0
        for i in range(n_features):
            row = 0.0
            for j in range(i, n_features):
                row += precisions[out, i, j] * precisions[out, i, j]
            scaled_trace += sizes[out, i] * row
        if not rcond * scaled_trace < 1.0:
            status = FALL_BACK
    return weights, means, covariances, precisions, status


@njit(nogil=True, fastmath=_FASTMATH)
def diag_m_step(
    nk,
    s1,
    s2,
    centres,
    spherical,
    reg_covar,
    use_prior,
    kappa,
    nu,
    prior_mean,
    prior_scale,
    rcond,
    resolution,
):  # pragma: no cover - compiled
    """M-step for ``"diag"`` or ``"spherical"`` from the sums of :func:`diag_pass`.

    As :func:`full_m_step`, with the variances ``s2 - 2 s1 delta + nk delta**2`` and the
    prior scale a (D,) array (``"diag"``) or a (1,) array (``"spherical"``).

    Returns
    -------
    weights, means : numpy.ndarray
        Shapes (K,) and (K, D).
    covariances, precisions_cholesky : numpy.ndarray
        Variances and ``1 / sqrt(variances)``, shape (K, D), or (K, 1) for ``spherical``.
    status : int
        :data:`OK` or :data:`FALL_BACK` (see :func:`full_m_step`).
    """
    n_components, n_features = centres.shape
    eps10 = 10.0 * _EPS
    floored = nk + eps10
    weights = floored / floored.sum()
    means, delta = _shifts(nk, s1, centres, use_prior, kappa, prior_mean)

    n_cols = 1 if spherical else n_features
    covariances = np.zeros((n_components, n_cols))
    sizes = np.zeros((n_components, n_cols))
    floors = np.zeros((n_components, n_cols))
    for k in range(n_components):
        if use_prior and spherical:
            denominator = nu + (nk[k] + 1.0) * n_features + 2.0
        elif use_prior:
            denominator = nu + nk[k] + 3.0
        else:
            denominator = floored[k]
        for i in range(n_features):
            col = 0 if spherical else i
            scatter = (s2[k, i] - 2.0 * s1[k, i] * delta[k, i]) + nk[k] * (
                delta[k, i] * delta[k, i]
            )
            magnitude = s2[k, i] + 2.0 * abs(s1[k, i] * delta[k, i])
            magnitude += nk[k] * (delta[k, i] * delta[k, i])
            floor = _resolution(means, centres, k, i, resolution)
            floors[k, col] = max(floors[k, col], floor)
            if use_prior:
                shift = means[k, i] - prior_mean[i]
                scatter += kappa * (shift * shift)
                if not spherical:
                    covariances[k, col] = (prior_scale[i] + scatter) / denominator + reg_covar
                    sizes[k, col] = magnitude / denominator
                else:
                    covariances[k, col] += scatter
                    sizes[k, col] += magnitude
            elif spherical:
                covariances[k, col] += scatter / denominator + reg_covar
                sizes[k, col] += magnitude / denominator
            else:
                covariances[k, col] = scatter / denominator + reg_covar
                sizes[k, col] = magnitude / denominator
        if spherical and use_prior:
            covariances[k, 0] = (prior_scale[0] + covariances[k, 0]) / denominator + reg_covar
            sizes[k, 0] /= denominator
        elif spherical:
            covariances[k, 0] /= n_features
            sizes[k, 0] /= n_features

    precisions = np.empty((n_components, n_cols))
    status = OK
    for k in range(n_components):
        for col in range(n_cols):
            variance = covariances[k, col]
            if not (
                variance > rcond * sizes[k, col] and variance > floors[k, col] and variance < np.inf
            ):
                status = FALL_BACK
                precisions[k, col] = 0.0
            else:
                precisions[k, col] = 1.0 / math.sqrt(variance)
    return weights, means, covariances, precisions, status


@njit(nogil=True, fastmath=_FASTMATH)
def mixture_log_density(X, log_weights, means, chol, out, responsibilities):  # pragma: no cover
    """Write ``log sum_k pi_k N(x_n | m_k, L_k L_k^T)`` for every draw and observation.

    The label-summed log density of :func:`bayesmix.stats.pointwise_log_likelihood` for
    Gaussian components, in blocks of observations (no (S, N, K) array): forward
    substitution ``L_k z = x_n - m_k`` and a log-sum-exp over the components with the
    kernels' vectorised exponential. With ``responsibilities``, ``out`` (N, K)
    accumulates the responsibilities over the draws instead
    (:func:`bayesmix.nuts._blocks.emit_block`: NaN for a row left to NumPy).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
    log_weights : numpy.ndarray of shape (n_draws, n_components)
        ``log pi_k`` (``-inf`` for a zero weight).
    means : numpy.ndarray of shape (n_draws, n_components, n_features)
    chol : numpy.ndarray of shape (n_draws, n_components, n_features, n_features)
        Lower Cholesky factors of the covariances; only the lower triangle is read.
    out : numpy.ndarray of shape (n_draws, n_samples), or (n_samples, n_components)
        Filled in place (added to, for the responsibilities).
    responsibilities : bool
    """
    n_samples, n_features = X.shape
    n_draws, n_components = log_weights.shape
    # Per draw and component: log pi_k - D log(2 pi) / 2 - log det L_k, and 1 / L_k[i, i].
    const = np.empty((n_draws, n_components))
    rdiag = np.empty((n_draws, n_components, n_features))
    half_log_2pi = 0.5 * math.log(2.0 * math.pi)
    for s in range(n_draws):
        for k in range(n_components):
            v = log_weights[s, k] - n_features * half_log_2pi
            for i in range(n_features):
                v -= math.log(chol[s, k, i, i])
                rdiag[s, k, i] = 1.0 / chol[s, k, i, i]
            const[s, k] = v
    xb = np.empty((n_features, _BLOCK))
    z = np.empty((n_features, _BLOCK))
    wlp = np.empty((n_components, _BLOCK))
    maha = np.empty(_BLOCK)
    top = np.empty(_BLOCK)
    inv_norm = np.empty(_BLOCK)
    scale = np.empty(_BLOCK)
    no_const = np.zeros(0)
    for start in range(0, n_samples, _BLOCK):
        n = min(_BLOCK, n_samples - start)
        _load_block(X, start, n, xb)
        for s in range(n_draws):
            for k in range(n_components):
                for b in range(n):
                    maha[b] = 0.0
                for i in range(n_features):
                    m = means[s, k, i]
                    r = rdiag[s, k, i]
                    xi = xb[i]
                    zi = z[i]
                    for b in range(n):
                        zi[b] = xi[b] - m
                    for j in range(i):
                        c = chol[s, k, i, j]
                        zj = z[j]
                        for b in range(n):
                            zi[b] -= c * zj[b]
                    for b in range(n):
                        zi[b] *= r
                        maha[b] += zi[b] * zi[b]
                c = const[s, k]
                row = wlp[k]
                for b in range(n):
                    row[b] = c - 0.5 * maha[b]
            emit_block(wlp, top, inv_norm, scale, n, start, s, no_const, out, responsibilities)
