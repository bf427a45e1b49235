"""Starting partitions of every family's EM (bayesmix.em.init)."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmix.em.init import initial_labels, initial_responsibilities
from bayesmix.exceptions import InvalidParameterError


def test_random_partition_is_the_voronoi_partition_of_distinct_random_rows():
    X = np.random.default_rng(0).normal(size=(50, 3))
    labels, sq_distances = initial_labels(X, 4, np.random.default_rng(1), "random")
    assert set(labels.tolist()) == {0, 1, 2, 3}  # every centre is a row: it keeps itself
    zero = np.flatnonzero(sq_distances == 0.0)
    assert zero.size == 4
    assert sorted(labels[zero].tolist()) == [0, 1, 2, 3]
    # Each row goes to its nearest centre.
    centres = X[zero[np.argsort(labels[zero])]]
    nearest = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(axis=-1), axis=1)
    np.testing.assert_array_equal(labels, nearest)


def test_random_partition_draws_centres_by_weight_and_is_seeded():
    X = np.arange(10.0)[:, None]
    weight = np.zeros(10)
    weight[[2, 7]] = 1.0
    labels, sq_distances = initial_labels(X, 2, np.random.default_rng(3), "random", weight)
    assert sq_distances[2] == 0.0
    assert sq_distances[7] == 0.0  # only rows with weight are drawn
    again = initial_labels(X, 2, np.random.default_rng(3), "random", weight)[0]
    np.testing.assert_array_equal(labels, again)


def test_responsibilities_from_either_partition_are_softened_one_hot():
    X = np.random.default_rng(4).normal(size=(30, 2))
    for partition in ("k-means++", "random"):
        resp = initial_responsibilities(X, 3, np.random.default_rng(5), 0.1, None, partition)
        np.testing.assert_allclose(resp.sum(axis=1), 1.0)
        assert set(np.round(np.unique(resp), 12)) == {round(0.1 / 3, 12), round(0.9 + 0.1 / 3, 12)}


def test_an_unknown_partition_is_refused():
    with pytest.raises(InvalidParameterError, match="partition must be one of"):
        initial_labels(np.zeros((5, 1)), 2, np.random.default_rng(0), "ward")
