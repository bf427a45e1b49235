"""Initialisation of EM for every family: starting partitions and responsibilities.

A restart of any family starts from a partition of the rows (:func:`initial_labels`):

* ``"k-means++"`` -- every row goes to its nearest of ``K`` seeds chosen by
  :func:`kmeans_plusplus` (Arthur & Vassilvitskii 2007), spread over the data;
* ``"random"`` -- every row goes to its nearest of ``K`` distinct rows drawn uniformly
  (weighted by ``sample_weight``): a random Voronoi partition, the "random centres" start
  of Biernacki, Celeux & Govaert (2003).

:func:`initial_responsibilities` turns the partition into responsibilities, softened, so
that any family's M-step can start from it. Which partitions the restarts use, and how
(``init="emem"``: many short runs from both kinds, the best continued), is the EM loop's
(:mod:`bayesmix.em.loop`).
"""

from __future__ import annotations

import logging

import numpy as np

from bayesmix.exceptions import InvalidParameterError

__all__ = [
    "PARTITIONS",
    "initial_labels",
    "initial_responsibilities",
    "kmeans_plusplus",
    "nearest_centres",
]

logger = logging.getLogger("bayesmix")

# Softening of the hard k-means++ assignment of the starting responsibilities.
_INIT_SMOOTHING = 0.1

# The starting partitions a restart can use (see the module docstring).
PARTITIONS: tuple[str, ...] = ("k-means++", "random")


def initial_labels(
    X: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
    partition: str = "k-means++",
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return a starting partition of the rows of ``X`` and each row's distance to its centre.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data.
    n_components : int
        Number of groups ``K`` (at least 1, at most ``n_samples``).
    rng : numpy.random.Generator
        Source of randomness.
    partition : {"k-means++", "random"}, default="k-means++"
        ``"k-means++"``: the nearest of the :func:`kmeans_plusplus` seeds; ``"random"``:
        the nearest of ``K`` distinct rows drawn uniformly (with probability proportional
        to ``sample_weight``).
    sample_weight : numpy.ndarray of shape (n_samples,), optional
        Non-negative weights, not all zero.

    Returns
    -------
    labels : numpy.ndarray of shape (n_samples,)
        The group of every row, in ``0 .. K-1``. A group is empty only when ``X`` has
        fewer distinct rows than ``K``.
    sq_distances : numpy.ndarray of shape (n_samples,)
        Squared Euclidean distance of every row to its centre.
    """
    seeding = _SEEDINGS.get(partition)
    if seeding is None:
        raise InvalidParameterError(f"partition must be one of {PARTITIONS}, got {partition!r}.")
    centres = seeding(np.asarray(X, dtype=np.float64), n_components, rng, sample_weight)
    return nearest_centres(X, centres)


def _random_centres(
    X: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
    sample_weight: np.ndarray | None,
) -> np.ndarray:
    """Return ``K`` distinct rows of ``X`` drawn at random (with probability by weight).

    Each draw picks a row with probability proportional to its weight (as the first
    k-means++ seed is drawn: one uniform number, weight 0 never drawn); a row equal to one
    already drawn is drawn again (up to ``100 K`` draws, for data with fewer distinct rows
    than ``K``). So integer weights draw the same rows as the data with every row repeated
    ``w_n`` times.
    """
    n_samples = X.shape[0]
    if not 1 <= n_components <= n_samples:
        raise InvalidParameterError(
            f"n_components must be between 1 and the number of samples ({n_samples}), got "
            f"{n_components}."
        )
    weights = np.ones(n_samples) if sample_weight is None else sample_weight
    cumulative = np.cumsum(weights)
    chosen: list[int] = []
    for attempt in range(100 * n_components + n_components):
        if len(chosen) == n_components:
            break
        value = rng.uniform() * cumulative[-1]
        index = min(int(np.searchsorted(cumulative, value)), n_samples - 1)
        repeated = any(np.array_equal(X[index], X[other]) for other in chosen)
        if not repeated or attempt >= 100 * n_components:
            chosen.append(index)
    return X[chosen].copy()


def initial_responsibilities(
    X: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
    smoothing: float,
    sample_weight: np.ndarray | None = None,
    partition: str = "k-means++",
) -> np.ndarray:
    """Hard-assign every sample to its group of :func:`initial_labels`, softened by ``smoothing``.

    The responsibilities are ``(1 - s) * one-hot + s / K``. With ``smoothing=0`` they stay
    hard unless a group receives no sample (``X`` has fewer distinct rows than
    ``n_components``), in which case :data:`_INIT_SMOOTHING` is used so that no component
    starts empty. ``sample_weight`` weights the seeding; the responsibilities are not
    weighted (the caller's M-step weights them). ``partition`` is ``"k-means++"`` or
    ``"random"`` (see :func:`initial_labels`).
    """
    labels = initial_labels(X, n_components, rng, partition, sample_weight)[0]
    resp = np.zeros((X.shape[0], n_components), dtype=np.float64)
    resp[np.arange(X.shape[0]), labels] = 1.0
    empty = np.flatnonzero(np.bincount(labels, minlength=n_components) == 0).tolist()
    if empty and smoothing == 0.0:
        smoothing = _INIT_SMOOTHING
        logger.warning(
            "%s initialisation: component(s) %s received no sample (X has fewer "
            "distinct rows than n_components=%d?); starting from softened responsibilities.",
            partition,
            empty,
            n_components,
        )
    if smoothing > 0.0:
        resp = (1.0 - smoothing) * resp + smoothing / n_components
    return resp


def _squared_distances(columns: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Return the squared Euclidean distances ``||x_n - c_j||^2``, shape (n_centres, N).

    ``columns`` is the data transposed to contiguous rows, ``np.ascontiguousarray(X.T)``
    of shape (D, N): the sums run along contiguous memory (NumPy sums the short rows of
    an (N, D) array 20-50x slower), and the differences are exact (no ``|x|^2 - 2 x.c +
    |c|^2`` cancellation, so a sample's distance to itself is exactly 0).
    """
    out = np.zeros((centres.shape[0], columns.shape[1]), dtype=np.float64)
    diff = np.empty(columns.shape[1], dtype=np.float64)
    for j, centre in enumerate(centres):
        for d, column in enumerate(columns):
            np.subtract(column, centre[d], out=diff)
            diff *= diff
            out[j] += diff
    return out


def nearest_centres(X: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the index of each sample's nearest centre and its squared distance to it."""
    sq_distances = _squared_distances(np.ascontiguousarray(X.T), centres)
    # argmin over the first axis, a row at a time (NumPy's axis-0 argmin is ~10x slower);
    # ties go to the lower index, as with np.argmin.
    labels = np.zeros(X.shape[0], dtype=np.intp)
    nearest = sq_distances[0].copy()
    for k in range(1, centres.shape[0]):
        closer = sq_distances[k] < nearest
        labels[closer] = k
        np.minimum(nearest, sq_distances[k], out=nearest)
    return labels, nearest


def kmeans_plusplus(
    X: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Choose initial centres with greedy k-means++ seeding.

    The first centre is a uniformly drawn sample. Each further centre is chosen among
    ``2 + floor(log K)`` candidates drawn with probability proportional to the squared
    distance to the nearest centre already chosen, keeping the candidate that most
    reduces the total squared distance (Arthur & Vassilvitskii, 2007; the greedy variant
    used by scikit-learn). With ``sample_weight`` every probability and distance total is
    weighted (a sample of weight 2 counts as two copies; weight 0 is never chosen), as
    scikit-learn's ``kmeans_plusplus`` does.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Data.
    n_components : int
        Number of centres ``K`` (at least 1, at most ``n_samples``).
    rng : numpy.random.Generator
        Source of randomness.
    sample_weight : numpy.ndarray of shape (n_samples,), optional
        Non-negative weights, not all zero.

    Returns
    -------
    numpy.ndarray of shape (n_components, n_features)
        The chosen centres, which are rows of ``X``.
    """
    X = np.asarray(X, dtype=np.float64)
    n_samples = X.shape[0]
    if not 1 <= n_components <= n_samples:
        raise InvalidParameterError(
            f"n_components must be between 1 and the number of samples ({n_samples}), got "
            f"{n_components}."
        )
    n_local_trials = 2 + int(np.log(n_components))
    indices = np.empty(n_components, dtype=np.intp)

    columns = np.ascontiguousarray(X.T)
    if sample_weight is None:
        indices[0] = rng.integers(n_samples)
    else:
        first = rng.uniform() * sample_weight.sum()
        indices[0] = min(int(np.searchsorted(np.cumsum(sample_weight), first)), n_samples - 1)
    closest_dist_sq = _squared_distances(columns, X[indices[:1]])[0]
    current_pot = _total(closest_dist_sq, sample_weight)

    for c in range(1, n_components):
        rand_vals = rng.uniform(size=n_local_trials) * current_pot
        weighted = closest_dist_sq if sample_weight is None else closest_dist_sq * sample_weight
        candidate_ids = np.searchsorted(np.cumsum(weighted), rand_vals)
        np.clip(candidate_ids, None, n_samples - 1, out=candidate_ids)
        # (n_local_trials, n_samples): distance of every sample to its nearest centre
        # if the candidate were added.
        distances = np.minimum(closest_dist_sq, _squared_distances(columns, X[candidate_ids]))
        candidates_pot = _total(distances, sample_weight)
        best = int(np.argmin(candidates_pot))
        current_pot = candidates_pot[best]
        closest_dist_sq = distances[best]
        indices[c] = candidate_ids[best]

    return X[indices].copy()


# partition -> seeding(X, n_components, rng, sample_weight) -> centres (K, D); through the
# module's names, so that a test can replace them.
_SEEDINGS = {
    "k-means++": lambda *args: kmeans_plusplus(*args),
    "random": lambda *args: _random_centres(*args),
}


def _total(distances: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """Sum of (weighted) squared distances over the samples (the last axis)."""
    return distances.sum(axis=-1) if sample_weight is None else distances @ sample_weight
