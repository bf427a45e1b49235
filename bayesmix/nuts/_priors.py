r"""The prior families of the fused kernels: log densities and gradients on the sampler's scale.

A fused kernel (:mod:`bayesmix.families.gaussian._nuts_kernel`, :mod:`bayesmix.nuts.expfam`)
adds the prior of each parameter array through one of two functions, by the parameter's
PyMC transform:

* :func:`real_prior` for a real parameter (no transform: means), the density of the
  value itself;
* :func:`log_scale_prior` for a positive parameter sampled as ``t = log x`` (PyMC's
  ``log`` transform: scales, rates, degrees of freedom), the density of ``x`` plus the
  transform's log-Jacobian ``t``.

Each takes a prior *kind* (an integer of :data:`REAL_KINDS` or :data:`LOG_SCALE_KINDS`)
and a (3, n) array of its parameters per element (two parameters and the normalising
constant, computed once by :func:`prior_table`). On the log scale, with ``x = exp(t)``:

================== ========================================== =============================
prior of ``x``     log density + ``t`` (up to the constant)   derivative in ``t``
================== ========================================== =============================
HalfNormal(s)      ``t - x^2 / (2 s^2)``                      ``1 - x^2 / s^2``
HalfStudentT(n, s) ``t - (n + 1) / 2 log(1 + x^2 / (n s^2))`` ``1 - (n + 1) v / (1 + v)``,
                                                              ``v = x^2 / (n s^2)``
HalfCauchy(b)      ``t - log(1 + x^2 / b^2)``                 ``1 - 2 v / (1 + v)``
Exponential(l)     ``t - l x``                                ``1 - l x``
Gamma(a, b)        ``a t - b x``                              ``a - b x``
InverseGamma(a, b) ``-a t - b / x``                           ``-a + b / x``
LogNormal(m, s)    ``-(t - m)^2 / (2 s^2)``                   ``-(t - m) / s^2``
================== ========================================== =============================

and for a real value ``Normal(m, s)`` and ``StudentT(n, m, s)`` (PyMC's densities). The
constants are PyMC's normalisers, so the sums equal ``model.logp()`` of the PyMC model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import gammaln

from bayesmix._numba_cache import njit

__all__ = [
    "LOG_SCALE_KINDS",
    "REAL_KINDS",
    "dirichlet_data",
    "log_scale_prior",
    "prior_table",
    "real_prior",
]

# Prior families of a real parameter, and their parameters (PyMC's names) in table order.
REAL_KINDS = {"Normal": 0, "StudentT": 1}
# Prior families of a positive parameter sampled on the log scale.
LOG_SCALE_KINDS = {
    "HalfNormal": 0,
    "HalfStudentT": 1,
    "HalfCauchy": 2,
    "Exponential": 3,
    "Gamma": 4,
    "InverseGamma": 5,
    "LogNormal": 6,
}
# The parameters of each family (PyMC's names) in the order of the table's rows, and
# PyMC's defaults (a parameter without one is required).
_ORDER = {
    "Normal": ("mu", "sigma"),
    "StudentT": ("nu", "mu", "sigma"),
    "HalfNormal": ("sigma",),
    "HalfStudentT": ("nu", "sigma"),
    "HalfCauchy": ("beta",),
    "Exponential": ("lam",),
    "Gamma": ("alpha", "beta"),
    "InverseGamma": ("alpha", "beta"),
    "LogNormal": ("mu", "sigma"),
}
_DEFAULTS = {"mu": 0.0, "sigma": 1.0}
# Parameters that must be positive.
_POSITIVE = {"sigma", "nu", "beta", "lam", "alpha"}
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_PI = math.log(math.pi)


@njit(nogil=True, fastmath={"contract"})
def real_prior(kind, table, value, grad):  # pragma: no cover - compiled
    """Add the prior's gradient in ``value`` to ``grad``; return its log density.

    ``table`` (4, n): Normal: mu, sigma, (unused), constant; StudentT: nu, mu, sigma,
    constant.
    """
    total = 0.0
    for j in range(value.shape[0]):
        if kind == 0:
            z = (value[j] - table[0, j]) / table[1, j]
            total += table[3, j] - 0.5 * z * z
            grad[j] += -z / table[1, j]
        else:
            nu = table[0, j]
            s = table[2, j]
            z = (value[j] - table[1, j]) / s
            total += table[3, j] - 0.5 * (nu + 1.0) * math.log1p(z * z / nu)
            grad[j] += -(nu + 1.0) * z / (s * (nu + z * z))
    return total


@njit(nogil=True, fastmath={"contract"})
def log_scale_prior(kind, table, t, grad):  # pragma: no cover - compiled
    """Add the gradient in ``t = log x`` (Jacobian included) to ``grad``; return the log density.

    ``table`` (4, n): the parameters in :data:`_ORDER`, the constant in row 3.
    """
    total = 0.0
    for j in range(t.shape[0]):
        tj = t[j]
        p0 = table[0, j]
        p1 = table[1, j]
        c = table[3, j]
        if kind == 0:  # HalfNormal(sigma)
            u = math.exp(tj) / p0
            total += c + tj - 0.5 * u * u
            grad[j] += 1.0 - u * u
        elif kind == 1:  # HalfStudentT(nu, sigma)
            u = math.exp(tj) / p1
            v = u * u / p0
            total += c + tj - 0.5 * (p0 + 1.0) * math.log1p(v)
            grad[j] += 1.0 - (p0 + 1.0) * v / (1.0 + v)
        elif kind == 2:  # HalfCauchy(beta)
            u = math.exp(tj) / p0
            v = u * u
            total += c + tj - math.log1p(v)
            grad[j] += 1.0 - 2.0 * v / (1.0 + v)
        elif kind == 3:  # Exponential(lam)
            x = p0 * math.exp(tj)
            total += c + tj - x
            grad[j] += 1.0 - x
        elif kind == 4:  # Gamma(alpha, beta)
            x = p1 * math.exp(tj)
            total += c + p0 * tj - x
            grad[j] += p0 - x
        elif kind == 5:  # InverseGamma(alpha, beta)
            x = p1 * math.exp(-tj)
            total += c - p0 * tj - x
            grad[j] += -p0 + x
        else:  # LogNormal(mu, sigma)
            z = (tj - p0) / p1
            total += c - 0.5 * z * z
            grad[j] += -z / p1
    return total


def _constant(name: str, p: dict[str, np.ndarray]) -> np.ndarray:
    """PyMC's normalising constant of each element (the log-Jacobian's constant included)."""
    match name:
        case "Normal":
            return -np.log(p["sigma"]) - 0.5 * _LOG_2PI
        case "StudentT":
            nu = p["nu"]
            return (
                gammaln(0.5 * (nu + 1.0))
                - gammaln(0.5 * nu)
                - 0.5 * np.log(nu * math.pi)
                - np.log(p["sigma"])
            )
        case "HalfNormal":
            return 0.5 * math.log(2.0 / math.pi) - np.log(p["sigma"])
        case "HalfStudentT":
            nu = p["nu"]
            return (
                math.log(2.0)
                + gammaln(0.5 * (nu + 1.0))
                - gammaln(0.5 * nu)
                - 0.5 * np.log(nu * math.pi)
                - np.log(p["sigma"])
            )
        case "HalfCauchy":
            return math.log(2.0) - _LOG_PI - np.log(p["beta"])
        case "Exponential":
            return np.log(p["lam"])
        case "Gamma" | "InverseGamma":
            return p["alpha"] * np.log(p["beta"]) - gammaln(p["alpha"])
        case "LogNormal":
            return -np.log(p["sigma"]) - 0.5 * _LOG_2PI
    raise ValueError(name)


def prior_table(prior: Any, kinds: Mapping[str, int], shape: tuple[int, ...]) -> tuple | None:
    """Return ``(kind, table)`` of ``prior`` for a parameter of ``shape``, or None.

    ``kinds`` is :data:`REAL_KINDS` or :data:`LOG_SCALE_KINDS`; ``table`` is (4, n) with
    ``n = prod(shape)``: the parameters in :data:`_ORDER` broadcast to the parameter's
    shape and flattened in C order, then PyMC's normalising constant. None when the
    prior's family or parameterisation is not in the table, or a parameter does not
    broadcast or is out of its range: the PyMC model is compiled instead.
    """
    name = getattr(prior, "distribution", None)
    params = dict(getattr(prior, "params", {}) or {})
    if name not in kinds or not set(params) <= set(_ORDER[name]):
        return None
    n = int(np.prod(shape, dtype=int))
    table = np.zeros((4, n))
    values = {}
    for row, key in enumerate(_ORDER[name]):
        value = params.get(key, _DEFAULTS.get(key))
        if value is None:
            return None
        try:
            array = np.broadcast_to(np.asarray(value, dtype=np.float64), shape).reshape(-1)
        except ValueError:
            return None
        if not np.all(np.isfinite(array)) or (key in _POSITIVE and not np.all(array > 0)):
            return None
        table[row] = array
        values[key] = table[row]
    table[3] = _constant(name, values)
    return kinds[name], table


def dirichlet_data(prior: Any, n_components: int) -> tuple[np.ndarray, float] | None:
    """Return the weights' Dirichlet concentrations and constant, or None if not a Dirichlet.

    The constant is the Dirichlet's normaliser plus the simplex transform's ``log K``.
    """
    if getattr(prior, "distribution", None) != "Dirichlet" or set(prior.params) - {"a"}:
        return None
    try:
        a = np.broadcast_to(
            np.asarray(prior.params.get("a", 1.0), dtype=np.float64), (n_components,)
        ).copy()
    except ValueError:
        return None
    if not np.all(np.isfinite(a)) or not np.all(a > 0):
        return None
    return a, float(gammaln(a.sum()) - gammaln(a).sum() + math.log(n_components))
