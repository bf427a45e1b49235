"""The Laplace coordinates NUTS moves in (bayesmix.nuts.laplace), against closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmix.nuts.laplace import Affine, corner_start, laplace_affine, negative_hessian


def _spd(rng, n, spread=1e3):
    """A random SPD matrix with eigenvalues spread over ``spread``."""
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.geomspace(1.0, spread, n)) @ q.T


def test_negative_hessian_of_a_gaussian_is_its_precision(rng):
    precision = _spd(rng, 6)
    mean = rng.normal(size=6)
    hessian = negative_hessian(lambda x: -precision @ (x - mean), rng.normal(size=6) * 100)
    np.testing.assert_allclose(hessian, precision, rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(hessian, hessian.T)


def test_negative_hessian_of_a_non_quadratic_density(rng):
    # log p(x) = sum(b x - exp(x)) (Poisson-like): -d2/dx2 = diag(exp(x)).
    b = rng.uniform(1.0, 3.0, size=4)
    x = rng.normal(size=4)
    hessian = negative_hessian(lambda x: b - np.exp(x), x)
    np.testing.assert_allclose(hessian, np.diag(np.exp(x)), rtol=1e-8, atol=1e-9)


def test_laplace_affine_whitens_the_curvature(rng):
    precision = _spd(rng, 5, spread=1e8)
    shift = rng.normal(size=5)
    affine = laplace_affine(precision, shift)
    # F^T H F = I and F F^T = H^-1 (checked as H F F^T = I, no inverse formed).
    np.testing.assert_allclose(affine.factor.T @ precision @ affine.factor, np.eye(5), atol=1e-7)
    np.testing.assert_allclose(precision @ affine.factor @ affine.factor.T, np.eye(5), atol=1e-6)
    np.testing.assert_array_equal(affine.shift, shift)
    assert affine.factor.flags.c_contiguous


def test_laplace_affine_of_indefinite_singular_and_bad_curvature():
    # Negative curvature counts by its size; zero curvature is raised to 1e-12 of the top.
    affine = laplace_affine(np.diag([4.0, -9.0, 0.0]), np.zeros(3))
    scales = np.sort(np.abs(affine.factor).max(axis=0))
    np.testing.assert_allclose(scales, [1.0 / 3.0, 0.5, 1.0 / np.sqrt(9e-12)])
    assert laplace_affine(np.zeros((2, 2)), np.zeros(2)) is None
    assert laplace_affine(np.array([[1.0, np.nan], [np.nan, 1.0]]), np.zeros(2)) is None


def test_affine_forward_and_pullback_are_the_chain_rule(rng):
    affine = Affine(rng.normal(size=3), rng.normal(size=(3, 3)))
    a = rng.normal(size=3)

    def f(x):  # a smooth function of x and its gradient
        return np.sin(a @ x), np.cos(a @ x) * a

    u = rng.normal(size=3)
    np.testing.assert_allclose(affine.forward(u), affine.shift + affine.factor @ u)
    grad_u = affine.pullback(f(affine.forward(u))[1])
    step = 1e-6
    numeric = [
        (f(affine.forward(u + step * e))[0] - f(affine.forward(u - step * e))[0]) / (2 * step)
        for e in np.eye(3)
    ]
    np.testing.assert_allclose(grad_u, numeric, rtol=1e-7, atol=1e-9)
    # wrap: the same value and gradient from a function of x.
    value, wrapped = affine.wrap(f)(u)
    assert value == f(affine.forward(u))[0]
    np.testing.assert_array_equal(wrapped, grad_u)


def test_corner_start_is_seeded_and_on_the_unit_cube():
    start = corner_start(50)
    u = start(3)
    assert u.shape == (50,)
    assert set(np.unique(u)) == {-1.0, 1.0}
    np.testing.assert_array_equal(start(3), u)
    assert np.any(start(4) != u)


@pytest.mark.parametrize("n_dim", [1, 7])
def test_corner_start_dimensions(n_dim):
    assert corner_start(n_dim)(0).shape == (n_dim,)
