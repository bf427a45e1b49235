"""A fused log-density and gradient of the location-scale mixtures, for nutpie (internal).

The Gaussian family's model and, with degrees of freedom, the Student-t family's (the
same free variables plus ``dof_log__``; see *Student-t components* below).

:meth:`bayesmix.GaussianMixture.build_model` builds a PyMC model; compiling it with
nutpie's numba backend costs 10-25 s in every fresh process, and the generated code spends
about 65 ns per observation on ``log p`` and its gradient (two features, three
components). This module computes the same joint log density on the same unconstrained
vector by hand: one numba kernel, compiled once (the numbers of components and features
are array shapes at run time, the observations and the prior parameters are arguments)
and loaded from numba's on-disk cache by later processes, and handed to nutpie as numba C
callbacks (``nutpie.from_pyfunc`` if this nutpie lacks the internals they need), optionally
in affine coordinates (:mod:`bayesmix.nuts.laplace`).

What is computed, on the unconstrained vector laid out as nutpie lays out the PyMC model
(``model.free_RVs`` in order, each value variable flattened in C order):

* ``weights_simplex__`` (K - 1): PyMC's simplex transform, ``y = (v, -sum v)``,
  ``log pi = y - logsumexp(y)``, log-Jacobian ``log K + sum_k log pi_k``; prior
  ``Dirichlet(a)``.
* ``means`` (K, D), or ``means_ordered_components__`` (K, 1) for one feature
  (``mu_0 = u_0``, ``mu_k = mu_{k-1} + exp(u_k)``, log-Jacobian ``sum_{k>0} u_k``);
  prior ``Normal`` or ``StudentT`` (:func:`bayesmix.nuts._priors.real_prior`).
* ``sigma_log__``: ``sigma = exp(t)``, log-Jacobian ``sum t``; prior any family of
  :data:`bayesmix.nuts._priors.LOG_SCALE_KINDS` (HalfNormal, HalfStudentT, HalfCauchy,
  Exponential, Gamma, InverseGamma, LogNormal).
  Shape (K, D) for ``full`` and ``diag``, (D,) for ``tied``, (K,) for ``spherical``.
* ``corr_chol_cholesky_corr__`` (``full``: (K, D(D-1)/2), ``tied``: (D(D-1)/2,), only
  for D > 1): PyMC's ``CholeskyCorrTransform`` (the strictly lower triangle filled in
  TFP's spiral order, unit diagonal, rows normalised), log-Jacobian
  ``sum_i (i + 2) log L_ii`` (zero-based ``i``); prior ``LKJCorr(eta)`` on the factor.
* the likelihood ``sum_n logsumexp_k [log pi_k + log N(x_n | mu_k, C_k C_k^T)]`` with
  ``C_k = diag(sigma_k) L_k`` (``diag``: ``diag(sigma_k)``; ``tied``: one factor).

The likelihood is one pass over the observations in blocks of ``_BLOCK``: per component a
forward substitution ``C_k z = x_n - mu_k`` (multiplying by the reciprocal diagonal), the
log-sum-exp over components with a vectorising exponential, and the responsibility
weighted sums ``R_k = sum_n r_nk``, ``A_k = sum_n r_nk z_nk`` and
``S_k = sum_n r_nk z_nk z_nk^T``. The gradient follows from them in O(K D^3):
``d/d log pi_k = R_k``, ``d/d mu_k = C_k^-T A_k`` and
``d/d C_k = tril(C_k^-T S_k) - diag(R_k / C_k,ii)``, then the chain rule through the
transforms. Scratch memory is O(K D _BLOCK); nothing of size (N, K) or (N, K, D) is formed.

**Student-t components** (``FastGaussian.dof``, the Student-t family's model): the
degrees of freedom ``nu = exp(t)`` (``dof_log__``, (K,), last; prior any family of
:data:`~bayesmix.nuts._priors.LOG_SCALE_KINDS`) and the component density
``log t(x | mu, C C^T, nu) = lgamma((nu + D) / 2) - lgamma(nu / 2) - D / 2 log(pi nu)
- log|C| - (nu + D) / 2 log(1 + q / nu)``, ``q = |z|^2``. The pass is the same with the
sums ``A_k`` and ``S_k`` weighted by ``s_nk = (nu_k + D) / (nu_k + q_nk)`` (the
derivative of the density in ``q`` is ``-s / 2`` where the Normal's is ``-1 / 2``), and one
more sum per component, ``sum_n r_nk (s_nk q_nk / nu_k - log(1 + q_nk / nu_k)) / 2``,
which with ``R_k (psi((nu + D) / 2) - psi(nu / 2) - D / nu) / 2`` is ``d/d nu_k``.

The kernel runs on one thread and releases the GIL (nutpie runs chains in threads). It
is compiled once per machine (15-20 s) and cached by numba (:mod:`bayesmix._numba_cache`); later
processes load it in about 0.3 s.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from bayesmix._numba_cache import cfunc, njit
from bayesmix.nuts._blocks import BLOCK as _BLOCK
from bayesmix.nuts._blocks import FASTMATH as _FASTMATH
from bayesmix.nuts._blocks import (
    as_observations,
    as_weights,
    digamma,
    emit_block,
    finish_block,
    finite_or_minus_inf,
    log_block,
    simplex_gradient,
    simplex_weights,
    transpose_block,
    weigh_block,
)
from bayesmix.nuts._nutpie_internals import (
    _C_EXPAND,
    _C_LOGP,
    _as_pointer,
    model_point,
    pull_back,
)
from bayesmix.nuts._priors import (
    LOG_SCALE_KINDS,
    REAL_KINDS,
    dirichlet_data,
    log_scale_prior,
    prior_table,
    real_prior,
)
from bayesmix.nuts._target import CallbackTarget
from bayesmix.nuts.laplace import Affine

_log = logging.getLogger("bayesmix")

__all__ = ["FastGaussian", "build", "logp_dlogp", "pointwise_t"]

COVARIANCE_CODES = {"full": 0, "diag": 1, "spherical": 2, "tied": 3}

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_PI = math.log(math.pi)


# Reductions over a block with reassociation allowed, so that LLVM vectorises them.
@njit(nogil=True, fastmath={"contract", "reassoc"})
def _accumulate_full(e, inv_norm, zk, rz, n, first, second, k):  # pragma: no cover
    """Add a block's ``r z`` and ``r z z^T`` (upper) to ``first[k]``, ``second[k]``.

    ``e * inv_norm`` are the responsibilities of component ``k`` (``e`` is overwritten
    by them); returns their sum.
    """
    n_features = zk.shape[0]
    s = 0.0
    for b in range(n):
        r = e[b] * inv_norm[b]
        e[b] = r
        s += r
    for i in range(n_features):
        zi = zk[i]
        acc = 0.0
        for b in range(n):
            v = e[b] * zi[b]
            rz[b] = v
            acc += v
        first[k, i] += acc
        for j in range(i, n_features):
            zj = zk[j]
            acc = 0.0
            for b in range(n):
                acc += rz[b] * zj[b]
            second[k, i, j] += acc
    return s


@njit(nogil=True, fastmath={"contract", "reassoc"})
def _accumulate_diag(e, inv_norm, zk, n, first, second, k):  # pragma: no cover
    """Add a block's ``r z`` and ``r z**2`` to ``first[k]``, ``second[k]``; as above."""
    n_features = zk.shape[0]
    s = 0.0
    for b in range(n):
        r = e[b] * inv_norm[b]
        e[b] = r
        s += r
    for i in range(n_features):
        zi = zk[i]
        a1 = 0.0
        a2 = 0.0
        for b in range(n):
            v = e[b] * zi[b]
            a1 += v
            a2 += v * zi[b]
        first[k, i] += a1
        second[k, i] += a2
    return s


@njit(nogil=True, fastmath=_FASTMATH, inline="always")
def _radial_block(row, qb, c, dof, k, n_features, n, sb, gb):  # pragma: no cover
    """Write a block's component log densities from the squared distances ``qb``.

    Normal (``dof`` of size 0): ``c - q / 2``. Student-t: ``c - (nu + D) / 2
    log(1 + q / nu)``, and for the gradient the weights ``s = (nu + D) / (nu + q)``
    (into ``sb[k]``) and ``d/d nu`` of the data term (into ``gb[k]``).
    """
    if dof.shape[0] == 0:
        for b in range(n):
            row[b] = c - 0.5 * qb[b]
        return
    nu = dof[k]
    inv_nu = 1.0 / nu
    half = 0.5 * (nu + n_features)
    sk = sb[k]
    gk = gb[k]
    for b in range(n):
        gk[b] = 1.0 + qb[b] * inv_nu
    log_block(gk, sk, n)  # log(1 + q / nu), vectorised (sk is scratch)
    for b in range(n):
        q = qb[b]
        lq = gk[b]
        row[b] = c - half * lq
        s = (nu + n_features) / (nu + q)
        sk[b] = s
        gk[b] = 0.5 * (s * q * inv_nu - lq)


@njit(nogil=True, fastmath=_FASTMATH, inline="always")
def _radial_weights(e, inv_norm, dof, k, n, sb, gb, dof_sums):  # pragma: no cover
    """Student-t only: return ``sum_b r_b`` and add ``sum_b r_b g_b`` to ``dof_sums[k]``.

    Scales ``e`` by ``s``, so that the sufficient sums that follow are ``s``-weighted.
    """
    sk = sb[k]
    gk = gb[k]
    acc = 0.0
    acc_g = 0.0
    for b in range(n):
        r = e[b] * inv_norm[b]
        acc += r
        acc_g += r * gk[b]
        e[b] *= sk[b]
    dof_sums[k] += acc_g
    return acc


@njit(nogil=True, fastmath=_FASTMATH)
def _full_pass(X, w, logc, means, chol, rdiag, dof):  # pragma: no cover - compiled
    """Likelihood pass for lower-triangular covariance factors ``chol`` (K, D, D).

    ``logc[k] = log pi_k - sum_i log C_k,ii - D log(2 pi) / 2`` and
    ``rdiag[k, i] = 1 / C_k,ii``. Returns ``sum_n log p(x_n)``, ``R`` (K,), ``A`` (K, D)
    and the upper triangle of ``S`` (K, D, D), as in the module docstring; with frequency
    weights ``w`` (N,) every sum is weighted (``w`` of size 0: unweighted). With degrees
    of freedom ``dof`` (K,) the components are Student-t: ``logc`` holds the t's
    normalising terms, ``A`` and ``S`` are weighted by ``s`` (:func:`_radial_block`) and
    the last result is ``sum_n r_nk d/d nu`` of the data terms (else zeros).
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    resp_sum = np.zeros(n_components)
    dof_sums = np.zeros(n_components)
    first = np.zeros((n_components, n_features))
    second = np.zeros((n_components, n_features, n_features))
    xb = np.empty((n_features, _BLOCK))
    zb = np.empty((n_components, n_features, _BLOCK))
    wlp = np.empty((n_components, _BLOCK))
    qb = np.empty(_BLOCK)
    n_t = n_components if dof.shape[0] > 0 else 0
    sb = np.empty((n_t, _BLOCK))
    gb = np.empty((n_t, _BLOCK))
    rz = np.empty(_BLOCK)
    top = np.empty(_BLOCK)
    inv_norm = np.empty(_BLOCK)
    scale = np.empty(_BLOCK)
    total = 0.0
    for start in range(0, n_samples, _BLOCK):
        n = min(_BLOCK, n_samples - start)
        transpose_block(X, start, n, xb)
        for k in range(n_components):
            for b in range(n):
                qb[b] = 0.0
            zk = zb[k]
            for i in range(n_features):
                m = means[k, i]
                xi = xb[i]
                zi = zk[i]
                for b in range(n):
                    zi[b] = xi[b] - m
                for j in range(i):
                    cij = chol[k, i, j]
                    zj = zk[j]
                    for b in range(n):
                        zi[b] -= cij * zj[b]
                r = rdiag[k, i]
                for b in range(n):
                    z = zi[b] * r
                    zi[b] = z
                    qb[b] += z * z
            _radial_block(wlp[k], qb, logc[k], dof, k, n_features, n, sb, gb)
        block = finish_block(wlp, top, inv_norm, scale, n_components, n)
        if w.shape[0] > 0:
            block = weigh_block(w, start, top, inv_norm, n)
        total += block
        for k in range(n_components):
            if n_t > 0:
                resp_sum[k] += _radial_weights(wlp[k], inv_norm, dof, k, n, sb, gb, dof_sums)
                _accumulate_full(wlp[k], inv_norm, zb[k], rz, n, first, second, k)
            else:
                resp_sum[k] += _accumulate_full(wlp[k], inv_norm, zb[k], rz, n, first, second, k)
    return total, resp_sum, first, second, dof_sums


@njit(nogil=True, fastmath=_FASTMATH)
def _diag_pass(X, w, logc, means, rsd, dof):  # pragma: no cover - compiled
    """Likelihood pass for diagonal factors; ``rsd[k, i] = 1 / sigma_ki``; ``w``, ``dof`` as above.

    Returns ``sum_n log p(x_n)``, ``R`` (K,), ``A`` (K, D), the diagonal of ``S`` (K, D)
    and the degrees-of-freedom sums (K,).
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    resp_sum = np.zeros(n_components)
    dof_sums = np.zeros(n_components)
    first = np.zeros((n_components, n_features))
    second = np.zeros((n_components, n_features))
    xb = np.empty((n_features, _BLOCK))
    zb = np.empty((n_components, n_features, _BLOCK))
    wlp = np.empty((n_components, _BLOCK))
    qb = np.empty(_BLOCK)
    n_t = n_components if dof.shape[0] > 0 else 0
    sb = np.empty((n_t, _BLOCK))
    gb = np.empty((n_t, _BLOCK))
    top = np.empty(_BLOCK)
    inv_norm = np.empty(_BLOCK)
    scale = np.empty(_BLOCK)
    total = 0.0
    for start in range(0, n_samples, _BLOCK):
        n = min(_BLOCK, n_samples - start)
        transpose_block(X, start, n, xb)
        for k in range(n_components):
            for b in range(n):
                qb[b] = 0.0
            for i in range(n_features):
                m = means[k, i]
                r = rsd[k, i]
                xi = xb[i]
                zi = zb[k, i]
                for b in range(n):
                    z = (xi[b] - m) * r
                    zi[b] = z
                    qb[b] += z * z
            _radial_block(wlp[k], qb, logc[k], dof, k, n_features, n, sb, gb)
        block = finish_block(wlp, top, inv_norm, scale, n_components, n)
        if w.shape[0] > 0:
            block = weigh_block(w, start, top, inv_norm, n)
        total += block
        for k in range(n_components):
            if n_t > 0:
                resp_sum[k] += _radial_weights(wlp[k], inv_norm, dof, k, n, sb, gb, dof_sums)
                _accumulate_diag(wlp[k], inv_norm, zb[k], n, first, second, k)
            else:
                resp_sum[k] += _accumulate_diag(wlp[k], inv_norm, zb[k], n, first, second, k)
    return total, resp_sum, first, second, dof_sums


@njit(nogil=True)
def _spiral_index(n_features):  # pragma: no cover - compiled
    """Position in the unconstrained vector of every strictly-lower entry of ``L``.

    ``index[i, j]`` (``j < i``) is where PyMC's ``CholeskyCorrTransform`` (lower, unit
    diagonal) reads ``L[i, j]`` from: the fill-triangular-spiral order of TFP.
    """
    index = -np.ones((n_features, n_features), dtype=np.int64)
    n1 = n_features - 1
    m = n1 * (n1 + 1) // 2
    for i in range(n1):
        for j in range(i + 1):
            p = i * n1 + j
            index[i + 1, j] = n1 + p if p < m - n1 else m - 1 - (p - (m - n1))
    return index


@njit(nogil=True, fastmath=_FASTMATH)
def _layout(n_components, n_features, code):  # pragma: no cover - compiled
    """Offsets of the unconstrained blocks and sizes: (o_mu, o_sig, n_sig, o_corr, n_corr)."""
    o_mu = n_components - 1
    o_sig = o_mu + n_components * n_features
    if code == 0 or code == 1:
        n_sig = n_components * n_features
    elif code == 2:
        n_sig = n_components
    else:
        n_sig = n_features
    o_corr = o_sig + n_sig
    if n_features > 1 and code == 0:
        n_corr = n_components
    elif n_features > 1 and code == 3:
        n_corr = 1
    else:
        n_corr = 0
    return o_mu, o_sig, n_sig, o_corr, n_corr


@njit(nogil=True, fastmath=_FASTMATH)
def _constrain(x, n_components, n_features, code):  # pragma: no cover - compiled
    """Constrained values at the unconstrained point ``x``.

    Returns ``log_weights`` (K,), ``weights`` (K,), ``means`` (K, D), ``sigma`` (flat, the
    size of ``sigma_log__``), ``corr`` (n_corr, D, D; identity rows of unit norm) and the
    row norms ``|q_i|`` of the unnormalised rows (n_corr, D).
    """
    k_, d_ = n_components, n_features
    o_mu, o_sig, n_sig, o_corr, n_corr = _layout(k_, d_, code)
    log_weights, weights = simplex_weights(x, k_)
    means = np.empty((k_, d_))
    if d_ == 1:
        means[0, 0] = x[o_mu]
        for k in range(1, k_):
            means[k, 0] = means[k - 1, 0] + math.exp(x[o_mu + k])
    else:
        for k in range(k_):
            for i in range(d_):
                means[k, i] = x[o_mu + k * d_ + i]
    sigma = np.empty(n_sig)
    for j in range(n_sig):
        sigma[j] = math.exp(x[o_sig + j])
    m = d_ * (d_ - 1) // 2
    index = _spiral_index(d_)
    corr = np.zeros((n_corr, d_, d_))
    norms = np.ones((n_corr, d_))
    for c in range(n_corr):
        corr[c, 0, 0] = 1.0
        for i in range(1, d_):
            ss = 1.0
            for j in range(i):
                w = x[o_corr + c * m + index[i, j]]
                ss += w * w
            r = math.sqrt(ss)
            norms[c, i] = r
            for j in range(i):
                corr[c, i, j] = x[o_corr + c * m + index[i, j]] / r
            corr[c, i, i] = 1.0 / r
    return log_weights, weights, means, sigma, corr, norms


@njit(nogil=True, fastmath=_FASTMATH)
def _factors(sigma, corr, n_components, n_features, code):  # pragma: no cover - compiled
    """Lower Cholesky factors (K, D, D) of the component covariances."""
    k_, d_ = n_components, n_features
    chol = np.zeros((k_, d_, d_))
    for k in range(k_):
        for i in range(d_):
            if code == 0 or code == 1:
                sd = sigma[k * d_ + i]
            elif code == 2:
                sd = sigma[k]
            else:
                sd = sigma[i]
            if (code == 0 or code == 3) and d_ > 1:
                c = k if code == 0 else 0
                for j in range(i + 1):
                    chol[k, i, j] = sd * corr[c, i, j]
            else:
                chol[k, i, i] = sd
    return chol


@njit(nogil=True, fastmath=_FASTMATH)
def logp_dlogp(
    x, X, w, a, kinds, means_prior, sigma_prior, dof_prior, eta, code
):  # pragma: no cover
    """Return the joint log density (with Jacobians) and its gradient at ``x``.

    Parameters
    ----------
    x : ndarray of shape (n_dim,)
        The unconstrained point, laid out as nutpie lays out the PyMC model.
    X : ndarray of shape (N, D)
        Observations (C-contiguous float64).
    w : ndarray of shape (N,) or (0,)
        Frequency weights of the observations (the likelihood is ``sum_n w_n log p(x_n)``);
        size 0 for none.
    a : ndarray of shape (K,)
        Dirichlet concentrations.
    kinds : ndarray of shape (3,)
        The prior families of the means (:data:`~bayesmix.nuts._priors.REAL_KINDS`), of
        the scales and of the degrees of freedom
        (:data:`~bayesmix.nuts._priors.LOG_SCALE_KINDS`), as floats; a negative third
        kind: Normal components, no degrees of freedom.
    means_prior : ndarray of shape (4, K D)
        The table of the means' prior (:func:`bayesmix.nuts._priors.prior_table`).
    sigma_prior : ndarray of shape (4, n_sigma)
        The table of the scales' prior, flattened to the shape of ``sigma``.
    dof_prior : ndarray of shape (4, K) or (4, 0)
        The table of the degrees of freedom's prior (Student-t components; ``dof_log__``
        last in ``x``).
    eta : float
        LKJ shape (unused without correlation factors).
    code : int
        ``COVARIANCE_CODES[covariance_type]``.

    Returns
    -------
    logp : float
        ``-inf`` if the log density or a gradient entry is not finite.
    grad : ndarray of shape (n_dim,)
    """
    d_ = X.shape[1]
    k_ = a.shape[0]
    o_mu, o_sig, n_sig, o_corr, n_corr = _layout(k_, d_, code)
    m = d_ * (d_ - 1) // 2
    student = kinds[2] >= 0.0
    o_dof = o_corr + n_corr * m
    n_dof = k_ if student else 0
    grad = np.zeros(x.shape[0])
    if x.shape[0] != o_dof + n_dof:
        return -np.inf, grad
    log_weights, weights, means, sigma, corr, norms = _constrain(x, k_, d_, code)
    logp = 0.0

    # Dirichlet prior and simplex Jacobian: sum_k a_k log pi_k + const + log K.
    a_sum = 0.0
    for k in range(k_):
        a_sum += a[k]
        logp += a[k] * log_weights[k] - math.lgamma(a[k])
    logp += math.lgamma(a_sum) + math.log(k_)
    g_logw = a.copy()

    # Prior of the means (and the ordering Jacobian for one feature).
    g_mu = np.zeros((k_, d_))
    logp += real_prior(int(kinds[0]), means_prior, means.reshape(k_ * d_), g_mu.reshape(k_ * d_))
    if d_ == 1:
        for k in range(1, k_):
            logp += x[o_mu + k]

    # Prior of the scales with the log Jacobian (g_t is d/d log sigma); g_sig, the
    # likelihood's part, is d/d sigma.
    g_t = np.zeros(n_sig)
    logp += log_scale_prior(int(kinds[1]), sigma_prior, x[o_sig : o_sig + n_sig], g_t)
    g_sig = np.zeros(n_sig)

    # LKJ prior of the correlation factors and the transform's Jacobian; g_corr is d/d L.
    g_corr = np.zeros((n_corr, d_, d_))
    if n_corr > 0:
        const = (d_ - 1) * math.lgamma(eta + 0.5 * (d_ - 1))
        for j in range(1, d_):
            const -= 0.5 * j * _LOG_PI + math.lgamma(eta + 0.5 * (d_ - 1 - j))
        for c in range(n_corr):
            logp += const
            for i in range(d_):
                coef = (2.0 * eta - 2.0 + d_ - (i + 1)) + (i + 2)
                logp += coef * math.log(corr[c, i, i])
                g_corr[c, i, i] = coef / corr[c, i, i]

    # Student-t components: the prior of the degrees of freedom with the log Jacobian.
    dof = np.empty(n_dof)
    g_tdof = np.zeros(n_dof)
    if student:
        for k in range(k_):
            dof[k] = math.exp(x[o_dof + k])
        logp += log_scale_prior(int(kinds[2]), dof_prior, x[o_dof : o_dof + k_], g_tdof)

    # The likelihood.
    chol = _factors(sigma, corr, k_, d_, code)
    logc = np.empty(k_)
    for k in range(k_):
        if student:
            nu = dof[k]
            v = log_weights[k] + math.lgamma(0.5 * (nu + d_)) - math.lgamma(0.5 * nu)
            v -= 0.5 * d_ * math.log(math.pi * nu)
        else:
            v = log_weights[k] - 0.5 * d_ * _LOG_2PI
        for i in range(d_):
            v -= math.log(chol[k, i, i])
        logc[k] = v
    if code == 0 or code == 3:
        rdiag = np.empty((k_, d_))
        for k in range(k_):
            for i in range(d_):
                rdiag[k, i] = 1.0 / chol[k, i, i]
        total, resp_sum, first, second, dof_sums = _full_pass(X, w, logc, means, chol, rdiag, dof)
        work = np.empty((d_, d_))
        for k in range(k_):
            # d/d mu_k = C^-T A_k (back substitution).
            for i in range(d_ - 1, -1, -1):
                v = first[k, i]
                for j in range(i + 1, d_):
                    v -= chol[k, j, i] * work[j, 0]
                work[i, 0] = v * rdiag[k, i]
            for i in range(d_):
                g_mu[k, i] += work[i, 0]
            # d/d C_k = tril(C^-T S_k) - diag(R_k / C_ii); S_k from its upper triangle.
            for col in range(d_):
                for i in range(d_ - 1, -1, -1):
                    v = second[k, i, col] if i <= col else second[k, col, i]
                    for j in range(i + 1, d_):
                        v -= chol[k, j, i] * work[j, col]
                    work[i, col] = v * rdiag[k, i]
            for i in range(d_):
                work[i, i] -= resp_sum[k] * rdiag[k, i]
            # C_ij = sigma_i L_ij: to sigma and to L.
            c = k if code == 0 else 0
            for i in range(d_):
                s_index = k * d_ + i if code == 0 else i
                if n_corr > 0:
                    v = 0.0
                    for j in range(i + 1):
                        v += work[i, j] * corr[c, i, j]
                        g_corr[c, i, j] += sigma[s_index] * work[i, j]
                    g_sig[s_index] += v
                else:
                    g_sig[s_index] += work[i, i]
    else:
        rsd = np.empty((k_, d_))
        for k in range(k_):
            for i in range(d_):
                rsd[k, i] = 1.0 / chol[k, i, i]
        total, resp_sum, first, second, dof_sums = _diag_pass(X, w, logc, means, rsd, dof)
        for k in range(k_):
            for i in range(d_):
                g_mu[k, i] += first[k, i] * rsd[k, i]
                g = (second[k, i] - resp_sum[k]) * rsd[k, i]
                if code == 1:
                    g_sig[k * d_ + i] += g
                else:
                    g_sig[k] += g
    logp += total
    for k in range(k_):
        g_logw[k] += resp_sum[k]
    for k in range(n_dof):
        nu = dof[k]
        per_row = 0.5 * (digamma(0.5 * (nu + d_)) - digamma(0.5 * nu) - d_ / nu)
        grad[o_dof + k] = nu * (dof_sums[k] + resp_sum[k] * per_row) + g_tdof[k]

    # Chain rule through the transforms.
    simplex_gradient(g_logw, weights, grad)
    if d_ == 1:
        tail = 0.0
        for k in range(k_ - 1, 0, -1):
            tail += g_mu[k, 0]
            grad[o_mu + k] = math.exp(x[o_mu + k]) * tail + 1.0
        grad[o_mu] = tail + g_mu[0, 0]
    else:
        for k in range(k_):
            for i in range(d_):
                grad[o_mu + k * d_ + i] = g_mu[k, i]
    for j in range(n_sig):
        grad[o_sig + j] = sigma[j] * g_sig[j] + g_t[j]
    if n_corr > 0:
        index = _spiral_index(d_)
        for c in range(n_corr):
            for i in range(1, d_):
                proj = 0.0
                for j in range(i + 1):
                    proj += g_corr[c, i, j] * corr[c, i, j]
                r = norms[c, i]
                for j in range(i):
                    g = (g_corr[c, i, j] - proj * corr[c, i, j]) / r
                    grad[o_corr + c * m + index[i, j]] = g
    return finite_or_minus_inf(logp, grad)


@njit(nogil=True, fastmath=_FASTMATH)
def constrained_values(x, n_components, n_features, code, n_dof):  # pragma: no cover
    """Return the weights, means, sigma, corr, the (K, D, D) matrices and the dof.

    Shapes (K,), (K, D), flat, (n_corr, D, D), (K, D, D) and (n_dof,) (``n_dof``: K for
    Student-t components, else 0).
    """
    _, weights, means, sigma, corr, _ = _constrain(x, n_components, n_features, code)
    dof = np.empty(n_dof)
    for k in range(n_dof):
        dof[k] = math.exp(x[x.shape[0] - n_dof + k])
    chol = _factors(sigma, corr, n_components, n_features, code)
    k_, d_ = n_components, n_features
    cov = np.zeros((k_, d_, d_))
    for k in range(k_):
        for i in range(d_):
            for j in range(d_):
                v = 0.0
                for t in range(min(i, j) + 1):
                    v += chol[k, i, t] * chol[k, j, t]
                cov[k, i, j] = v
    return weights, means, sigma, corr, cov, dof


@njit(nogil=True, fastmath=_FASTMATH)
def _pointwise_t(X, logc, means, chol, dof, out, responsibilities):  # pragma: no cover
    """Write ``out[s, n] = log sum_k exp(logc[s, k] - (nu + D) / 2 log(1 + q / nu))``.

    ``q = |L_sk^-1 (x_n - mu_sk)|^2`` with the lower Cholesky factors ``chol`` (S, K, D, D)
    of the scale matrices; ``logc`` (S, K) the log weights plus the t's normalising terms;
    ``dof`` (S, K). With ``responsibilities``, ``out`` (N, K) accumulates the
    responsibilities instead (:func:`bayesmix.nuts._blocks.emit_block`). Rows in blocks,
    every draw per block (the block stays in cache).
    """
    n_draws, n_components = logc.shape
    n_samples, n_features = X.shape
    xb = np.empty((n_features, _BLOCK))
    zb = np.empty((n_features, _BLOCK))
    wlp = np.empty((n_components, _BLOCK))
    top = np.empty(_BLOCK)
    inv_norm = np.empty(_BLOCK)
    scale = np.empty(_BLOCK)
    no_const = np.zeros(0)
    for start in range(0, n_samples, _BLOCK):
        n = min(_BLOCK, n_samples - start)
        transpose_block(X, start, n, xb)
        for s in range(n_draws):
            for k in range(n_components):
                row = wlp[k]
                for b in range(n):
                    row[b] = 0.0
                for i in range(n_features):
                    m = means[s, k, i]
                    xi = xb[i]
                    zi = zb[i]
                    for b in range(n):
                        zi[b] = xi[b] - m
                    for j in range(i):
                        cij = chol[s, k, i, j]
                        zj = zb[j]
                        for b in range(n):
                            zi[b] -= cij * zj[b]
                    r = 1.0 / chol[s, k, i, i]
                    for b in range(n):
                        z = zi[b] * r
                        zi[b] = z
                        row[b] += z * z
                nu = dof[s, k]
                inv_nu = 1.0 / nu
                for b in range(n):
                    row[b] = 1.0 + row[b] * inv_nu
                log_block(row, scale, n)  # log(1 + q / nu); scale is scratch
                half = 0.5 * (nu + n_features)
                c = logc[s, k]
                for b in range(n):
                    row[b] = c - half * row[b]
            emit_block(wlp, top, inv_norm, scale, n, start, s, no_const, out, responsibilities)


def pointwise_t(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    scales: np.ndarray,
    dof: np.ndarray,
    out: np.ndarray,
    *,
    responsibilities: bool = False,
) -> bool:
    """Write ``log p(x_n | theta^s)`` of Student-t mixture draws into ``out`` (S, N).

    ``weights`` (S, K), ``means`` (S, K, D), ``scales`` (S, K, D, D), ``dof`` (S, K).
    With ``responsibilities``, add each row's responsibilities summed over the draws to
    ``out`` (N, K) instead; a row the kernel leaves to NumPy gets NaN
    (:func:`bayesmix.nuts._blocks.emit_block`). Returns False (``out`` untouched) for
    weights of 0; rows whose value is not finite here (beyond the floats' range) are
    recomputed by the family's overflow-safe density
    (:func:`bayesmix.stats.pointwise_log_likelihood`). A scale matrix that is not
    positive definite raises ``numpy.linalg.LinAlgError``. The family calls it as its
    :attr:`bayesmix.model.MixtureModel._fast_pointwise` for many values
    (:func:`bayesmix._numeric.kernel_pays_off`).
    """
    from scipy.special import gammaln

    weights = np.asarray(weights, dtype=np.float64)
    if not (weights > 0.0).all():
        return False
    dof = np.ascontiguousarray(dof, dtype=np.float64)
    chol = np.ascontiguousarray(np.linalg.cholesky(scales), dtype=np.float64)
    n_features = chol.shape[-1]
    log_det = np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    logc = (
        np.log(weights)
        + gammaln(0.5 * (dof + n_features))
        - gammaln(0.5 * dof)
        - 0.5 * n_features * np.log(np.pi * dof)
        - log_det
    )
    _pointwise_t(
        as_observations(X, n_features),
        np.ascontiguousarray(logc),
        np.ascontiguousarray(means, dtype=np.float64),
        chol,
        dof,
        out,
        responsibilities,
    )
    return True


# -- C entry points for nutpie ------------------------------------------------------------
#
# nutpie's Rust sampler calls a log density through a C function pointer with a pointer to
# "user data" (this is how its PyMC backend runs numba code without the GIL). Here the user
# data is an int64 array: addresses and sizes of the observations and prior parameters,
# and of an optional affine map ``x = shift + factor @ u`` (bayesmix.nuts.laplace; address 0:
# none) from the sampler's coordinates ``u`` to the kernel's ``x``. The two C functions
# below read it and call the kernels above; they close over nothing, so numba caches them
# on disk like the kernels.

(
    _U_X,
    _U_N,
    _U_D,
    _U_K,
    _U_CODE,
    _U_A,
    _U_MP,
    _U_KINDS,
    _U_SP,
    _U_NSIG,
    _U_ETA,
    _U_SHIFT,
    _U_FACTOR,
    _U_W,
    _U_NW,
    _U_DP,
    _U_NDOF,
) = range(17)
_U_SIZE = 17


@njit(inline="always")
def _unpack(user_data):  # pragma: no cover - compiled
    """(X, w, a, kinds, means_prior, sigma_prior, dof_prior, eta, code) from the user data."""
    meta = numba.carray(user_data, (_U_SIZE,), np.int64)
    n, d, k = meta[_U_N], meta[_U_D], meta[_U_K]
    X = numba.carray(_as_pointer(meta[_U_X]), (n, d), np.float64)
    a = numba.carray(_as_pointer(meta[_U_A]), (k,), np.float64)
    kinds = numba.carray(_as_pointer(meta[_U_KINDS]), (3,), np.float64)
    means_prior = numba.carray(_as_pointer(meta[_U_MP]), (4, k * d), np.float64)
    sigma_prior = numba.carray(_as_pointer(meta[_U_SP]), (4, meta[_U_NSIG]), np.float64)
    dof_prior = numba.carray(_as_pointer(meta[_U_DP]), (4, meta[_U_NDOF]), np.float64)
    eta = numba.carray(_as_pointer(meta[_U_ETA]), (1,), np.float64)[0]
    w = numba.carray(_as_pointer(meta[_U_W]), (meta[_U_NW],), np.float64)
    return X, w, a, kinds, means_prior, sigma_prior, dof_prior, eta, meta[_U_CODE]


@njit(nogil=True)
def _model_point(x, user_data):  # pragma: no cover - compiled
    """Return the kernel's point: ``x``, or ``shift + factor @ x`` if the record has a map."""
    meta = numba.carray(user_data, (_U_SIZE,), np.int64)
    return model_point(x, meta[_U_SHIFT], meta[_U_FACTOR])


def _logp_c(dim, x_, out_, logp_, user_data):  # pragma: no cover - compiled
    """Compute nutpie's ``logp`` callback: 0, or 4 when the density is not finite, 1 on errors."""
    try:
        X, w, a, kinds, means_prior, sigma_prior, dof_prior, eta, code = _unpack(user_data)
        x = _model_point(numba.carray(x_, (dim,)), user_data)
        out = numba.carray(out_, (dim,))
        logp = numba.carray(logp_, (1,))
        value, grad = logp_dlogp(x, X, w, a, kinds, means_prior, sigma_prior, dof_prior, eta, code)
        if grad.shape[0] != dim:
            return -1
        meta = numba.carray(user_data, (_U_SIZE,), np.int64)
        pull_back(grad, out, meta[_U_FACTOR])
        logp[0] = value
        if not math.isfinite(value):
            return 4
    except Exception:
        return 1
    return 0


@njit(nogil=True)
def _write(out, pos, values):  # pragma: no cover - compiled
    for j in range(values.size):
        out[pos + j] = values.flat[j]
    return pos + values.size


@njit(nogil=True)
def expand_into(x, out, n_components, n_features, code, n_dof):  # pragma: no cover
    """Write the stored variables at ``x`` into ``out`` in :attr:`FastGaussian.stored` order.

    Returns the number of values written.
    """
    weights, means, sigma, corr, cov, dof = constrained_values(
        x, n_components, n_features, code, n_dof
    )
    pos = 0
    if n_features > 1:  # untransformed, so stored first
        pos = _write(out, pos, means)
    pos = _write(out, pos, weights)
    if n_features == 1:
        pos = _write(out, pos, means)
    pos = _write(out, pos, sigma)
    pos = _write(out, pos, corr)
    pos = _write(out, pos, dof)
    return _write(out, pos, cov)


def _expand_c(dim, expanded, x_, out_, user_data):  # pragma: no cover - compiled
    """Write nutpie's ``expand`` callback: the stored values at ``x``; 0 on success."""
    try:
        meta = numba.carray(user_data, (_U_SIZE,), np.int64)
        x = _model_point(numba.carray(x_, (dim,)), user_data)
        out = numba.carray(out_, (expanded,))
        n_dof = meta[_U_NDOF]
        if expand_into(x, out, meta[_U_K], meta[_U_D], meta[_U_CODE], n_dof) != expanded:
            return -1
    except Exception:
        return -2
    return 0


@functools.cache
def c_callbacks() -> tuple[Any, Any]:
    """Return nutpie's C callbacks ``(logp, expand)`` as numba ``CFunc`` objects (loaded once)."""
    return (
        cfunc(_C_LOGP)(_logp_c),
        cfunc(_C_EXPAND)(_expand_c),
    )


# -- the model description ----------------------------------------------------------------


def _param(prior: Any, name: str, default: float | None) -> np.ndarray | None:
    value = prior.params.get(name, default)
    if value is None:
        return None
    return np.asarray(value, dtype=np.float64)


@dataclass(frozen=True)
class FastGaussian(CallbackTarget):
    """The layout of one location-scale mixture structure (covariance type, K, D) for nutpie.

    Build it with :func:`build`; :meth:`shared_data` gives the kernel's data for
    observations and priors, :meth:`nutpie_model` a ``nutpie`` model. With ``dof`` the
    components are multivariate Student-t (degrees of freedom ``dof_log__`` last in the
    unconstrained vector; the Student-t family's model, whose (K, D, D) matrices are
    named ``matrix_name``), else Normal.
    """

    covariance_type: str
    n_components: int
    n_features: int
    features: tuple[Any, ...]
    prior_data: dict[str, Any] = field(repr=False)
    dof: bool = False
    matrix_name: str = "covariances"

    _callbacks = staticmethod(c_callbacks)

    @property
    def code(self) -> int:
        """Integer code of the covariance type in the kernel."""
        return COVARIANCE_CODES[self.covariance_type]

    @property
    def free(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """``(variable, value variable, shape)`` of every free variable, in nutpie's order."""
        k, d = self.n_components, self.n_features
        sigma = {"full": (k, d), "diag": (k, d), "tied": (d,), "spherical": (k,)}
        out = [
            ("weights", "weights_simplex__", (k - 1,)),
            ("means", "means" if d > 1 else "means_ordered_components__", (k, d)),
            ("sigma", "sigma_log__", sigma[self.covariance_type]),
        ]
        if d > 1 and self.covariance_type in ("full", "tied"):
            m = d * (d - 1) // 2
            shape = (k, m) if self.covariance_type == "full" else (m,)
            out.append(("corr_chol", "corr_chol_cholesky_corr__", shape))
        if self.dof:
            out.append(("dof", "dof_log__", (k,)))
        return out

    @property
    def n_dim(self) -> int:
        """Length of the unconstrained vector."""
        return int(sum(np.prod(shape, dtype=int) for _, _, shape in self.free))

    @property
    def dims(self) -> dict[str, tuple[str, ...]]:
        """Dims of every stored variable (as the PyMC model names them)."""
        sigma = {
            "full": ("component", "feature"),
            "diag": ("component", "feature"),
            "tied": ("feature",),
            "spherical": ("component",),
        }[self.covariance_type]
        dims = {
            "weights": ("component",),
            "means": ("component", "feature"),
            "sigma": sigma,
        }
        if any(name == "corr_chol" for name, _, _ in self.free):
            batch = ("component",) if self.covariance_type == "full" else ()
            dims["corr_chol"] = (*batch, "feature", "feature_bis")
        if self.dof:
            dims["dof"] = ("component",)
        dims[self.matrix_name] = ("component", "feature", "feature_bis")
        return dims

    @property
    def stored(self) -> list[tuple[str, tuple[int, ...]]]:
        """Stored variables in the order of nutpie's PyMC path, with their shapes.

        nutpie stores the value variables and then the constrained variables and
        deterministics, and drops the transformed value variables: untransformed free
        variables (the means for D > 1) come first.
        """
        sizes = {
            "component": self.n_components,
            "feature": self.n_features,
            "feature_bis": self.n_features,
        }
        untransformed = [name for name, value, _ in self.free if name == value]
        names = untransformed + [name for name, _, _ in self.free if name not in untransformed]
        names.append(self.matrix_name)
        return [(name, tuple(sizes[dim] for dim in self.dims[name])) for name in names]

    @property
    def coords(self) -> dict[str, Any]:
        """Coordinates of the stored variables' dims."""
        import pandas as pd

        features = list(self.features)
        return {
            "component": pd.Index(np.arange(self.n_components)),
            "feature": pd.Index(features),
            "feature_bis": pd.Index(features),
        }

    # -- data -------------------------------------------------------------------------

    def shared_data(
        self,
        X: np.ndarray,
        priors: Mapping[str, Any] | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> dict:
        """Return the kernel's shared data for observations ``X`` (and other priors).

        Keys: ``x_data`` (the observations, named as the ``pm.Data`` of the PyMC model, so
        that ``with_data(x_data=...)`` works on both paths), ``w_data`` (frequency
        weights of the observations, as the PyMC model's ``pm.Data``; size 0 for none),
        ``weights_a`` (the Dirichlet's concentrations), ``prior_kinds`` (the prior
        families of the means, the scales and the degrees of freedom, as three floats; -1
        for none), ``means_prior``, ``sigma_prior`` and ``dof_prior`` (their tables,
        :func:`bayesmix.nuts._priors.prior_table`; (4, 0) for none) and
        ``corr_chol_eta`` (a float). ``priors``
        (resolved ``bayesmix.Prior`` objects) replace the priors given to :func:`build`;
        priors outside the supported families raise ``ValueError``.
        """
        data = dict(self.prior_data)
        if priors is not None:
            new = _prior_data(
                priors, self.covariance_type, self.n_components, self.n_features, self.dof
            )
            if new is None:
                raise ValueError("these priors are not supported by the fused kernel")
            data.update(new)
        data["x_data"] = as_observations(X, self.n_features)
        data["w_data"] = as_weights(sample_weight, data["x_data"].shape[0])
        return data

    # -- the model functions ------------------------------------------------------------

    def logp_dlogp(self, x: np.ndarray, **shared: Any) -> tuple[float, np.ndarray]:
        """Return ``(logp, grad)`` at the unconstrained point ``x`` (see :func:`logp_dlogp`)."""
        return logp_dlogp(
            np.ascontiguousarray(x, dtype=np.float64),
            shared["x_data"],
            as_weights(shared.get("w_data"), shared["x_data"].shape[0]),
            shared["weights_a"],
            np.asarray(shared["prior_kinds"], dtype=np.float64),
            shared["means_prior"],
            shared["sigma_prior"],
            shared["dof_prior"],
            float(np.asarray(shared["corr_chol_eta"]).reshape(-1)[0]),
            self.code,
        )

    def make_logp_fn(self) -> Callable[..., tuple[float, np.ndarray]]:
        """Return nutpie's logp function ``logp(x, **shared_data) -> (logp, grad)``."""
        code = self.code
        kernel = logp_dlogp

        def logp(
            x,
            *,
            x_data,
            weights_a,
            prior_kinds,
            means_prior,
            sigma_prior,
            dof_prior,
            corr_chol_eta,
            w_data=None,
        ):
            w = as_weights(w_data, x_data.shape[0])
            eta = float(np.asarray(corr_chol_eta).reshape(-1)[0])
            priors = (prior_kinds, means_prior, sigma_prior, dof_prior)
            return kernel(x, x_data, w, weights_a, *priors, eta, code)

        return logp

    def expand(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Constrained values of every stored variable at the unconstrained point ``x``."""
        k, d = self.n_components, self.n_features
        weights, means, sigma, corr, cov, dof = constrained_values(
            np.ascontiguousarray(x, dtype=np.float64), k, d, self.code, k if self.dof else 0
        )
        values = {"weights": weights, "means": means, self.matrix_name: cov, "dof": dof}
        shapes = dict(self.stored)
        values["sigma"] = sigma.reshape(shapes["sigma"])
        if "corr_chol" in shapes:
            values["corr_chol"] = corr.reshape(shapes["corr_chol"])
        return {name: values[name] for name, _ in self.stored}

    def make_expand_fn(self, seed1: int, seed2: int, chain: int) -> Callable[..., dict]:
        """Return nutpie's expand function ``expand(x, **shared_data) -> dict``."""
        expand = self.expand

        def expand_fn(x, **shared):
            return expand(x)

        return expand_fn

    def unconstrain(self, point: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return the constrained ``point`` (weights, means, sigma, corr_chol) as ``x``.

        The forward transforms of the PyMC model, flattened in nutpie's order; extra keys
        are ignored.
        """
        shapes = dict(self.stored)
        parts = []
        for name, _, _ in self.free:
            value = np.asarray(point[name], dtype=np.float64).reshape(shapes[name])
            match name:
                case "weights":
                    log_w = np.log(value)
                    parts.append((log_w - log_w.mean())[:-1])
                case "means" if self.n_features == 1:
                    mu = value[:, 0]
                    parts.append(np.concatenate([mu[:1], np.log(np.diff(mu))]))
                case "means":
                    parts.append(value.ravel())
                case "sigma":
                    parts.append(np.log(value).ravel())
                case "corr_chol":
                    parts.append(_corr_unconstrain(value, self.n_features).ravel())
                case "dof":
                    parts.append(np.log(value).ravel())
        return np.concatenate(parts)

    # -- what nutpie's callback model needs (bayesmix.nuts._nutpie_internals) -----------

    def freeze(self, shared: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Return read-only C-contiguous float64 copies of ``shared`` (the C code reads them)."""
        return _frozen(shared)

    def record(self, shared: Mapping[str, np.ndarray], affine: Affine | None) -> np.ndarray:
        """Return the int64 user-data record the C callbacks read (see :func:`user_data`)."""
        return user_data(self, shared, affine)

    def updated_data(
        self, shared: Mapping[str, np.ndarray], updates: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        """Return frozen shared data with ``updates`` (nutpie's ``with_data``) applied."""
        unknown = set(updates) - set(_SHARED_KEYS)
        if unknown:
            raise KeyError(f"unknown data {sorted(unknown)}; expected {_SHARED_KEYS}")
        updates = dict(updates)
        if "x_data" in updates:
            updates["x_data"] = as_observations(updates["x_data"], self.n_features)
            updates.setdefault("w_data", None)  # new observations: their own weights or none
        merged = {**shared, **updates}
        merged["w_data"] = as_weights(merged.get("w_data"), merged["x_data"].shape[0])
        return _frozen(merged)


_SHARED_KEYS = (
    "x_data",
    "w_data",
    "weights_a",
    "prior_kinds",
    "means_prior",
    "sigma_prior",
    "dof_prior",
    "corr_chol_eta",
)


def _frozen(shared: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Read-only C-contiguous float64 copies of the kernel's data (the C code reads them)."""
    out = {}
    for key in _SHARED_KEYS:
        raw = shared.get(key) if key == "w_data" else shared[key]
        if key == "w_data":
            raw = as_weights(raw, np.shape(shared["x_data"])[0])
        value = np.array(raw, dtype=np.float64, order="C", copy=True)
        value = value.reshape(1) if key == "corr_chol_eta" else value
        value.flags.writeable = False
        out[key] = value
    return out


def user_data(
    fast: FastGaussian, shared: Mapping[str, np.ndarray], affine: Affine | None = None
) -> np.ndarray:
    """Return the int64 record the C callbacks read: addresses and sizes of ``shared``'s arrays.

    ``shared`` (from :func:`_frozen`) and ``affine`` (from :func:`_frozen_affine`) must
    outlive every use of the record.
    """
    X = shared["x_data"]
    if X.ndim != 2 or X.shape[1] != fast.n_features:
        raise ValueError(f"expected observations of shape (N, {fast.n_features}); got {X.shape}")
    k, d = fast.n_components, fast.n_features
    expected = {
        "weights_a": (k,),
        "prior_kinds": (3,),
        "means_prior": (4, k * d),
        "corr_chol_eta": (1,),
    }
    for key, shape in expected.items():
        if shared[key].shape != shape:
            raise ValueError(f"{key} must have shape {shape}; got {shared[key].shape}")
    record = np.zeros(_U_SIZE, dtype=np.int64)
    record[_U_X] = X.ctypes.data
    record[_U_N], record[_U_D], record[_U_K] = X.shape[0], d, k
    record[_U_CODE] = fast.code
    record[_U_A] = shared["weights_a"].ctypes.data
    sigma_prior = shared["sigma_prior"]
    if sigma_prior.ndim != 2 or sigma_prior.shape[0] != 4:
        raise ValueError(f"sigma_prior must have shape (4, n); got {sigma_prior.shape}")
    record[_U_KINDS] = shared["prior_kinds"].ctypes.data
    record[_U_MP] = shared["means_prior"].ctypes.data
    record[_U_SP] = sigma_prior.ctypes.data
    record[_U_NSIG] = sigma_prior.shape[1]
    dof_prior = shared["dof_prior"]
    if dof_prior.shape != (4, k if fast.dof else 0):
        raise ValueError(
            f"dof_prior must have shape (4, {k if fast.dof else 0}); got {dof_prior.shape}"
        )
    record[_U_DP] = dof_prior.ctypes.data
    record[_U_NDOF] = dof_prior.shape[1]
    record[_U_ETA] = shared["corr_chol_eta"].ctypes.data
    weights = shared["w_data"]
    if weights.shape not in ((0,), (X.shape[0],)):
        raise ValueError(f"w_data must have shape (0,) or ({X.shape[0]},); got {weights.shape}")
    record[_U_W] = weights.ctypes.data
    record[_U_NW] = weights.size
    if affine is not None:
        record[_U_SHIFT] = affine.shift.ctypes.data
        record[_U_FACTOR] = affine.factor.ctypes.data
    return record


def _corr_unconstrain(corr: np.ndarray, n_features: int) -> np.ndarray:
    """PyMC's ``CholeskyCorrTransform.forward`` of (..., D, D) factors."""
    index = _spiral_index(n_features)
    m = n_features * (n_features - 1) // 2
    batch = corr.shape[:-2]
    flat = corr.reshape(-1, n_features, n_features)
    out = np.empty((flat.shape[0], m))
    for i in range(1, n_features):
        for j in range(i):
            out[:, index[i, j]] = flat[:, i, j] / flat[:, i, i]
    return out.reshape(*batch, m)


def _prior_data(
    priors: Mapping[str, Any],
    covariance_type: str,
    n_components: int,
    n_features: int,
    dof: bool = False,
) -> dict[str, Any] | None:
    """Kernel data of the priors, or None if one is outside the supported families."""
    k, d = n_components, n_features
    needs_corr = d > 1 and covariance_type in ("full", "tied")
    expected = {"weights", "means", "sigma"} | ({"corr_chol"} if needs_corr else set())
    expected |= {"dof"} if dof else set()
    if set(priors) != expected:
        return None
    dirichlet = dirichlet_data(priors["weights"], k)
    if dirichlet is None:
        return None
    a = dirichlet[0]
    sigma_shape = {"full": (k, d), "diag": (k, d), "tied": (d,), "spherical": (k,)}
    means = prior_table(priors["means"], REAL_KINDS, (k, d))
    sigma = prior_table(priors["sigma"], LOG_SCALE_KINDS, sigma_shape[covariance_type])
    dof_table = prior_table(priors["dof"], LOG_SCALE_KINDS, (k,)) if dof else (-1, np.zeros((4, 0)))
    if means is None or sigma is None or dof_table is None:
        return None
    eta = 1.0
    if needs_corr:
        corr = priors["corr_chol"]
        if getattr(corr, "distribution", None) != "LKJCorr" or set(corr.params) - {"eta"}:
            return None
        value = _param(corr, "eta", None)
        if value is None or value.ndim != 0:
            return None
        eta = float(value)
    if not (math.isfinite(eta) and eta > 0):
        return None
    return {
        "weights_a": a,
        "prior_kinds": np.array([means[0], sigma[0], dof_table[0]], dtype=np.float64),
        "means_prior": means[1],
        "sigma_prior": sigma[1],
        "dof_prior": dof_table[1],
        "corr_chol_eta": eta,
    }


def build(spec: Mapping[str, Any]) -> FastGaussian | None:
    """Return the fused model for ``spec``, or None when the kernel does not cover it.

    Parameters
    ----------
    spec : mapping
        ``covariance_type``, ``n_components``, ``n_features``, ``priors`` (resolved
        ``bayesmix.Prior`` objects by variable name), ``features`` (names) and optionally
        ``obs`` (unused: the posterior has no observation dimension), ``dof`` (True:
        multivariate Student-t components with degrees of freedom ``dof``, prior any
        family of :data:`~bayesmix.nuts._priors.LOG_SCALE_KINDS`) and ``matrix_name``
        (the name of the (K, D, D) matrices; default ``"covariances"``).

    Returns
    -------
    FastGaussian or None
        None for an unknown covariance type or a prior outside Dirichlet (weights),
        the families of :data:`bayesmix.nuts._priors.REAL_KINDS` (means) and
        :data:`~bayesmix.nuts._priors.LOG_SCALE_KINDS` (sigma) in PyMC's canonical
        parameters, and LKJCorr with a scalar eta (corr_chol).
    """
    covariance_type = spec.get("covariance_type")
    if covariance_type not in COVARIANCE_CODES:
        return None
    k = int(spec["n_components"])
    d = int(spec["n_features"])
    if k < 1 or d < 1:
        return None
    features = tuple(spec.get("features", [f"x{i}" for i in range(d)]))
    if len(features) != d:
        return None
    dof = bool(spec.get("dof", False))
    data = _prior_data(spec.get("priors", {}), covariance_type, k, d, dof)
    if data is None:
        return None
    matrix_name = str(spec.get("matrix_name", "covariances"))
    return FastGaussian(covariance_type, k, d, features, data, dof, matrix_name)
