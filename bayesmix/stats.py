"""Post-processing of mixture fits: log densities per draw, responsibilities, relabelling.

Pure NumPy/SciPy functions over arrays with the draws flattened on the first axis;
the model classes call them on the arrays of their ``idata``. The functions that sum
over components take the component parameters positionally and a
``component_log_prob(X, *params) -> (n_draws, n_samples, n_components)`` that evaluates
one family's component densities (the family's ``component_log_prob``; a family may also
supply a faster ``fast_pointwise`` for :func:`pointwise_log_likelihood`, and a
``far_log_prob`` for rows far out in the tails, see :class:`FarTerms`). Nothing here
knows a family.

**Finite input, no NaN.** Everything is computed in log space. A log density may be
``-inf`` for two reasons only: the component gives the row probability zero (a positive
count where its rate is 0), or the log density is below ``-1.8e308``, the most negative
float (a Gaussian row ``1e155`` standard deviations out). :func:`pointwise_log_likelihood`
and :func:`posterior_log_density` return ``-inf`` then, and a finite value wherever the
log density is a float. The responsibilities of a row far out are computed from the exact
differences of the components' log densities (:class:`FarTerms`), so they go to the
component whose density is largest out there, never to NaN; a row that every component
gives probability zero has no responsibilities and :func:`posterior_responsibilities`
raises :class:`~bayesmix.exceptions.DataError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from bayesmix._numeric import logsumexp
from bayesmix._threads import cpu_count
from bayesmix.exceptions import DataError

__all__ = [
    "FarTerms",
    "draw_log_prob",
    "log_responsibilities",
    "pointwise_log_likelihood",
    "posterior_log_density",
    "posterior_responsibilities",
    "relabel_permutations",
]


# Largest (draws x samples x components x features) block evaluated at once (32 MiB).
_BLOCK_ELEMENTS = 2**22


ComponentLogProb = Callable[..., np.ndarray]
FastPointwise = Callable[..., bool]


@dataclass(frozen=True)
class FarTerms:
    r"""The component log densities of rows far out, as exact polynomials in a power of two.

    For the rows ``rows`` of ``X`` (positions), with :math:`s_n = 2^{e_n}`,

    .. math::

        \log p(x_n \mid \theta_k) = s_n^2 a_{nk} + s_n b_{nk} + c_{nk} + g_n,

    where ``a`` (``quadratic``) and ``b`` (``linear``) are finite, ``c`` (``constant``) is
    finite or ``-inf`` (the component gives the row probability zero) and :math:`g_n` is
    any term common to all components (left out). Far out, the log densities themselves
    may be beyond the float range (a Gaussian's ``-0.5 x^2 / sigma^2`` at ``x = 1e155``)
    or equal in every float digit while their differences are large (two Gaussians with
    one covariance: the difference is linear in ``x``); the differences of the terms are
    not, so :func:`posterior_responsibilities` compares the components through them.

    Attributes
    ----------
    rows : ndarray of int of shape (n_far,)
    exponent : ndarray of int of shape (n_far,)
        :math:`e_n \ge 0`, at most 1023.
    quadratic, linear, constant : ndarray of shape (n_draws, n_far, n_components)
    """

    rows: np.ndarray
    exponent: np.ndarray
    quadratic: np.ndarray
    linear: np.ndarray
    constant: np.ndarray


#: ``far_log_prob(X, *params)``: the :class:`FarTerms` of the rows of ``X`` that a family
#: computes better as exact polynomials (far out in its tails), or None when there is none.
FarLogProb = Callable[..., "FarTerms | None"]


def undefined_rows_error(rows: np.ndarray, what: str) -> DataError:
    """Return the :class:`DataError` for rows of ``X`` whose ``what`` cannot be computed."""
    rows = np.asarray(rows)
    shown = ", ".join(str(int(r)) for r in rows[:10]) + (", ..." if rows.size > 10 else "")
    return DataError(
        f"{what} of {rows.size} row(s) of X, at positions [{shown}], cannot be computed: "
        "every component gives them probability zero (e.g. a positive count in a feature "
        "whose fitted rate is 0 in every component, or an answer every class excludes), "
        "or their log densities are not numbers. Check those rows (they may be "
        "miscoded), or refit with a prior that keeps the parameters inside their "
        'support (objective="map").'
    )


def draw_log_prob(
    X: np.ndarray,
    weights: np.ndarray,
    *params: np.ndarray,
    component_log_prob: ComponentLogProb,
    centre: bool = False,
) -> np.ndarray:
    """Return ``log pi_k + log p(x_n | theta_k)`` for every draw, sample and component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    weights : ndarray of shape (n_draws, n_components)
    *params : ndarray
        The component parameters, draws first (Gaussian: ``means`` (S, K, D) and
        ``covariances`` (S, K, D, D)).
    component_log_prob : callable
        ``component_log_prob(X, *params)`` of shape (n_draws, n_samples, n_components).
    centre : bool, default=False
        Subtract each row's largest component log density (per draw) before adding the
        log weights. The responsibilities are unchanged, and keep their precision where
        the log densities are large: at ``-2.5e13`` the floats are 0.004 apart, so
        adding ``log pi_k`` first rounds it (rows summed to 1.002; found by fuzzing),
        while the common part of the log densities cancels exactly.

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_components)
    """
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    log_p = component_log_prob(X, *params)
    if centre:
        with np.errstate(invalid="ignore"):
            top = log_p.max(axis=2, keepdims=True)
        log_p = log_p - np.where(np.isfinite(top), top, 0.0)
    return log_w[:, None, :] + log_p


def _draw_blocks(X: np.ndarray, weights: np.ndarray) -> tuple[range, int]:
    """Start indices of blocks of draws small enough to evaluate at once."""
    n_draws, n_components = weights.shape
    size = max(1, _BLOCK_ELEMENTS // (X.shape[0] * n_components * max(X.shape[1], 1)))
    return range(0, n_draws, size), size


def _blocks(
    X: np.ndarray, weights: np.ndarray, params: tuple[np.ndarray, ...], fn: ComponentLogProb
):
    """Yield ``(slice, weighted log prob)`` over blocks of draws."""
    starts, size = _draw_blocks(X, weights)
    for start in starts:
        block = slice(start, start + size)
        sub = tuple(p[block] for p in params)
        yield block, draw_log_prob(X, weights[block], *sub, component_log_prob=fn)


def posterior_responsibilities(
    X: np.ndarray,
    weights: np.ndarray,
    *params: np.ndarray,
    component_log_prob: ComponentLogProb,
    far_log_prob: FarLogProb | None = None,
    fast_pointwise: FastPointwise | None = None,
) -> np.ndarray:
    """Return ``p(z_n = k | x_n)`` averaged over draws, shape ``(n_samples, n_components)``.

    Draws are processed in blocks, so memory does not grow with the number of draws.
    Arguments as in :func:`draw_log_prob`; ``far_log_prob(X, *params)``, if given, returns
    the :class:`FarTerms` of the rows the family computes exactly far out (or None), and
    their responsibilities come from those terms. ``fast_pointwise(X, weights, *params,
    out=out, responsibilities=True)``, if given, may add the responsibilities summed over
    the draws to ``out`` itself (a family's compiled kernel) and returns whether it did;
    the rows it leaves NaN (far out) are computed here.

    Returns
    -------
    ndarray of shape (n_samples, n_components)
        Finite, rows summing to one, for every finite row that some component gives a
        positive probability: a row far out in the tails goes to the component whose
        log density is largest there.

    Raises
    ------
    bayesmix.exceptions.DataError
        Naming the rows whose responsibilities are undefined in some draw: every
        component gives them probability zero, or a log density is NaN.
    """
    total = np.zeros((X.shape[0], weights.shape[1]))
    rows = np.arange(X.shape[0])
    if fast_pointwise is not None and fast_pointwise(
        X, weights, *params, out=total, responsibilities=True
    ):
        rows = np.flatnonzero(~np.isfinite(total).all(axis=1))
        total[rows] = 0.0
    if rows.size:
        X_rows = X if rows.size == X.shape[0] else X[rows]
        starts, size = _draw_blocks(X_rows, weights)
        for start in starts:
            block = slice(start, start + size)
            sub = tuple(p[block] for p in params)
            total[rows] += _block_responsibilities(
                X_rows, weights[block], sub, component_log_prob, far_log_prob, rows
            )
    return total / weights.shape[0]


def _block_responsibilities(
    X: np.ndarray,
    weights: np.ndarray,
    params: tuple[np.ndarray, ...],
    component_log_prob: ComponentLogProb,
    far_log_prob: FarLogProb | None,
    rows: np.ndarray,
) -> np.ndarray:
    """Return the responsibilities of one block of draws summed over its draws, (N, K).

    ``X`` are the data's rows ``rows`` (their positions, for the error message).
    """
    weighted = draw_log_prob(
        X, weights, *params, component_log_prob=component_log_prob, centre=True
    )
    log_norm = logsumexp(weighted, axis=2, keepdims=True)
    with np.errstate(invalid="ignore"):
        resp = np.exp(weighted - log_norm)
    undefined = ~np.isfinite(log_norm[..., 0]) | np.isnan(weighted).any(axis=2)  # (S, N)
    far = None if far_log_prob is None else far_log_prob(X, *params)
    if far is not None and far.rows.size:
        with np.errstate(divide="ignore"):
            log_w = np.log(weights)
        resp[:, far.rows], undefined[:, far.rows] = _far_responsibilities(far, log_w)
    if undefined.any():
        raise undefined_rows_error(rows[undefined.any(axis=0)], "The responsibilities")
    return resp.sum(axis=0)


def _far_responsibilities(far: FarTerms, log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities (S, n, K) of the rows of ``far`` and where they are undefined (S, n).

    ``log r_k = -log sum_j exp(L_j - L_k)`` with the differences
    ``L_j - L_k = s (s (a_j - a_k) + (b_j - b_k)) + (c_j - c_k)`` of the weighted log
    densities ``L = s^2 a + s b + c + log w``: the nested products overflow to an infinity
    of the right sign, never to NaN, because ``a`` and ``b`` are finite and ``c`` is
    compared only between components that are possible (``c + log w > -inf``).
    """
    s = np.ldexp(1.0, far.exponent.astype(np.int64))[None, :, None, None]
    c = far.constant + log_w[:, None, :]
    finite_terms = np.isfinite(far.quadratic).all(axis=2) & np.isfinite(far.linear).all(axis=2)
    possible = c > -np.inf  # (S, n, K); NaN compares False
    c = np.where(possible, c, 0.0)
    da = far.quadratic[..., :, None] - far.quadratic[..., None, :]
    db = far.linear[..., :, None] - far.linear[..., None, :]
    dc = c[..., :, None] - c[..., None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        diff = s * (s * da + db) + dc  # (S, n, j, k): L_j - L_k
    diff = np.where(possible[..., :, None], diff, -np.inf)
    dominated = (diff == np.inf).any(axis=-2)  # another component is infinitely more likely
    finite = np.where(np.isfinite(diff), diff, -np.inf)
    top = finite.max(axis=-2, keepdims=True)  # >= 0 where k is possible (L_k - L_k = 0)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(under="ignore", divide="ignore"):
        log_r = -(np.log(np.exp(finite - top).sum(axis=-2)) + top[..., 0, :])
    resp = np.where(possible & ~dominated, np.exp(log_r), 0.0)
    total = resp.sum(axis=2, keepdims=True)
    undefined = ~(total[..., 0] > 0) | ~finite_terms
    with np.errstate(invalid="ignore", divide="ignore"):
        resp = np.where(total > 0, resp / total, np.nan)
    return resp, undefined


def posterior_log_density(
    X: np.ndarray,
    weights: np.ndarray,
    *params: np.ndarray,
    component_log_prob: ComponentLogProb,
    fast_pointwise: FastPointwise | None = None,
) -> np.ndarray:
    """Return ``log (1/S) sum_s p(x_n | theta^s)``, shape ``(n_samples,)``, in blocks of draws.

    With one draw this is the plug-in log density of a point estimate. Arguments as in
    :func:`draw_log_prob`; finite wherever the log density is a float, ``-inf`` as in
    :func:`pointwise_log_likelihood`, never NaN.
    """
    per_draw = pointwise_log_likelihood(
        X,
        weights,
        *params,
        component_log_prob=component_log_prob,
        fast_pointwise=fast_pointwise,
    )  # (S, N)
    return logsumexp(per_draw, axis=0) - np.log(per_draw.shape[0])


# A compiled pointwise kernel (which releases the GIL) runs in threads, each on a share
# of the draws, when there are at least this many values to compute.
_THREADED_VALUES = 1 << 20


def _fast_in_threads(
    fast_pointwise: FastPointwise,
    X: np.ndarray,
    weights: np.ndarray,
    params: tuple[np.ndarray, ...],
    out: np.ndarray,
) -> bool:
    """Run ``fast_pointwise`` into ``out`` (S, N), the draws split over the CPUs.

    Returns what the kernel returns (whether it filled ``out``); every share must agree,
    or the whole is left to NumPy.
    """
    n_draws = weights.shape[0]
    n_threads = min(cpu_count(), n_draws, max(1, out.size // _THREADED_VALUES))
    if n_threads <= 1:
        return bool(fast_pointwise(X, weights, *params, out=out))
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, n_draws, n_threads + 1).astype(int)

    def share(i: int) -> bool:
        rows = slice(bounds[i], bounds[i + 1])
        part = tuple(param[rows] for param in params)
        return bool(fast_pointwise(X, weights[rows], *part, out=out[rows]))

    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        return all(list(pool.map(share, range(n_threads))))


def pointwise_log_likelihood(
    X: np.ndarray,
    weights: np.ndarray,
    *params: np.ndarray,
    component_log_prob: ComponentLogProb,
    fast_pointwise: FastPointwise | None = None,
) -> np.ndarray:
    """Return ``log p(x_n | theta^s)`` for every draw and sample, shape ``(n_draws, n_samples)``.

    The marginal (label-summed) log-density of each observation under each draw: the
    ``log_likelihood`` group that LOO and WAIC use. Draws are processed in blocks so the
    ``(draws, samples, components, features)`` intermediates stay small. Arguments as in
    :func:`draw_log_prob`; ``fast_pointwise(X, weights, *params, out=out)``, if given,
    may fill ``out`` itself (a family's compiled kernel) and returns whether it did.

    Returns
    -------
    ndarray of shape (n_draws, n_samples)
        Finite wherever the log density is a float; ``-inf`` where it is below the most
        negative float (``-1.8e308``, a row ~1e154 standard deviations out) or where
        every component gives the row probability zero. Never NaN.

    Raises
    ------
    bayesmix.exceptions.DataError
        Naming the rows whose log density is NaN (parameters that are not numbers).
    """
    out = np.empty((weights.shape[0], X.shape[0]))
    if fast_pointwise is not None and _fast_in_threads(fast_pointwise, X, weights, params, out):
        # A compiled kernel works at the data's scale: the rows where it gave no finite
        # value (far out) are recomputed by the family's overflow-safe densities.
        redo = np.flatnonzero(~np.isfinite(out).all(axis=0))
        if redo.size:
            out[:, redo] = pointwise_log_likelihood(
                X[redo], weights, *params, component_log_prob=component_log_prob
            )
        return out
    for block, weighted in _blocks(X, weights, params, component_log_prob):
        out[block] = logsumexp(weighted, axis=2)
    nan = np.isnan(out).any(axis=0)
    if nan.any():
        raise undefined_rows_error(np.flatnonzero(nan), "The log density")
    return out


def log_responsibilities(weighted_log_prob: np.ndarray) -> np.ndarray:
    """Return ``log p(z_n = k | x_n, theta^s)`` per draw, normalised over components."""
    return weighted_log_prob - logsumexp(weighted_log_prob, axis=2, keepdims=True)


def relabel_permutations(
    means: np.ndarray, reference_means: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """Find, for every draw, the permutation of components that best matches a reference.

    The cost of giving draw component ``j`` the reference label ``k`` is the squared
    distance between their means in units of ``scale`` (the data standard deviation
    per feature). The optimal assignment is found exactly (Hungarian algorithm,
    Kuhn 1955, via :func:`scipy.optimize.linear_sum_assignment`).

    Parameters
    ----------
    means : ndarray of shape (n_draws, n_components, n_features)
    reference_means : ndarray of shape (n_components, n_features)
    scale : ndarray of shape (n_features,)

    Returns
    -------
    ndarray of int of shape (n_draws, n_components)
        ``perm[s, k]`` is the draw component that takes reference label ``k``, so
        ``means[s, perm[s]]`` is draw ``s`` in the reference labelling.
    """
    scaled = means / scale
    ref = reference_means / scale
    cost = ((scaled[:, :, None, :] - ref[None, None, :, :]) ** 2).sum(axis=-1)  # (S, j, k)
    perms = np.empty(means.shape[:2], dtype=np.int64)
    for s in range(means.shape[0]):
        rows, cols = linear_sum_assignment(cost[s])
        perms[s, cols] = rows
    return perms
