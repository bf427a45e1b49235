"""An affine reparametrisation from the curvature at the posterior mode (internal).

NUTS adapts a diagonal metric during warmup; nutpie starts that adaptation from the
gradient at the initial point (variance ``1 / |grad|`` per coordinate), which has the right
units only when the posterior's scale is about one. Around the EM estimate of a mixture
fitted to N points the posterior standard deviations shrink like ``1 / sqrt(N)``, differ by
orders of magnitude between parameters, and are correlated, so the first metric is far
off and the step size collapses early in warmup (at N = 10^6 one chain's step size fell
to 7e-4 and ran eight draws to the maximum tree depth).

With ``H`` the negative Hessian of the log density at the mode ``m`` (finite differences
of the gradient) and ``H = V diag(lambda) V^T``, sampling ``u`` with
``x = m + F u``, ``F = V diag(lambda)^(-1/2)``, gives a posterior that is about standard
normal in ``u`` (the Laplace approximation), whatever N and the data's units. The
gradient in ``u`` is ``F^T grad_x``. Draws are still stored on the model's own scale: the
map only changes the coordinates the sampler moves in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Affine", "corner_start", "laplace_affine", "negative_hessian"]

# Above this many unconstrained parameters no map is built: the 2 P gradient evaluations
# and the O(P^2) product per gradient start to cost more than they save.
MAX_DIM = 256
# Eigenvalues of the negative Hessian are kept within this ratio of the largest one.
_MAX_CONDITION = 1e12


class Affine(NamedTuple):
    """The map ``x = shift + factor @ u`` from sampler coordinates ``u`` to the model's."""

    shift: np.ndarray
    factor: np.ndarray

    def forward(self, u: np.ndarray) -> np.ndarray:
        """Return the model's unconstrained point ``x`` at ``u``."""
        return self.shift + self.factor @ u

    def pullback(self, grad: np.ndarray) -> np.ndarray:
        """Return the gradient in ``u`` from the gradient ``grad`` in ``x``."""
        return self.factor.T @ grad

    def wrap(
        self, logp_dlogp: Callable[..., tuple[float, np.ndarray]]
    ) -> Callable[..., tuple[float, np.ndarray]]:
        """Return ``f(u, ...) -> (logp, grad_u)`` from ``logp_dlogp(x, ...) -> (logp, grad_x)``."""

        def logp_dlogp_u(u: np.ndarray, *args: Any, **kwargs: Any) -> tuple[float, np.ndarray]:
            value, grad = logp_dlogp(self.forward(u), *args, **kwargs)
            return value, self.pullback(grad)

        return logp_dlogp_u


def negative_hessian(
    grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, *, rel_step: float = 1e-5
) -> np.ndarray:
    """Negative Hessian of a log density at ``x`` by central differences of its gradient.

    Coordinate ``i`` moves by ``rel_step * max(1, |x_i|)``; the result is symmetrised.
    Costs ``2 * x.size`` gradient evaluations.
    """
    x = np.asarray(x, dtype=np.float64)
    hessian = np.empty((x.size, x.size))
    for i in range(x.size):
        step = rel_step * max(1.0, abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += step
        down[i] -= step
        hessian[i] = (np.asarray(grad(down)) - np.asarray(grad(up))) / (2.0 * step)
    return 0.5 * (hessian + hessian.T)


def laplace_affine(hessian: np.ndarray, shift: np.ndarray) -> Affine | None:
    """Return the map whose coordinates make ``N(shift, hessian^-1)`` standard normal.

    ``hessian`` is the negative Hessian at ``shift``. Negative eigenvalues (``shift`` not
    quite at a mode) count by their size, and every eigenvalue is raised to at least
    ``1e-12`` times the largest. Returns None if ``hessian`` is not finite or is zero.
    """
    if not np.all(np.isfinite(hessian)):
        return None
    eigenvalues, vectors = np.linalg.eigh(hessian)
    eigenvalues = np.abs(eigenvalues)
    top = eigenvalues.max(initial=0.0)
    if not top > 0.0:
        return None
    eigenvalues = np.maximum(eigenvalues, top / _MAX_CONDITION)
    factor = np.ascontiguousarray(vectors / np.sqrt(eigenvalues))
    return Affine(np.array(shift, dtype=np.float64), factor)


def corner_start(n_dim: int) -> Callable[[int], np.ndarray]:
    """Return nutpie's per-chain initial point in Laplace coordinates: a random corner.

    Each chain starts at ``u`` with entries ``+1`` or ``-1`` (seeded by the chain), at
    distance ``sqrt(n_dim)`` from the mode: on the typical set of a standard normal, and
    where the gradient is about ``-u``, so nutpie's first metric ``1 / |grad|`` is about
    one in every coordinate. No entry of the gradient is exactly zero, and chains start
    apart.
    """

    def initial_point(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.choice(np.array([-1.0, 1.0]), size=n_dim)

    return initial_point
