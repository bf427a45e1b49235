"""Prediction never returns NaN for finite input: rows far out in every family's tails.

Every registered family is fitted by EM to its shipped data set; rows from ordinary to
as far out as floats go (``1e155``, ``-1e300``, ``1.7e308``, ``1e-300``; counts of
``1e15`` and ``1e307``) are then predicted and scored. The reference for every value is
the same formula evaluated in exact decimal arithmetic at the fitted parameters (Python's
``decimal`` with 80 digits and an exponent range far beyond the floats': no overflow, no
cancellation), for the one-dimensional and the tied-covariance Gaussian also the closed
forms of the log-odds (the quadratic and the linear discriminant). Expected behaviour:

- ``predict_proba`` is finite, rows sum to one, and equals the exact responsibilities;
- ``predict`` is the exact most probable component;
- ``score_samples`` equals the exact log density wherever that is a float, and is
  ``-inf`` exactly where it is below the most negative float (``-1.8e308``);
- no NumPy ``RuntimeWarning`` anywhere (overflow, invalid);
- rows that every component gives probability zero raise ``DataError`` naming them.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.exceptions import DataError
from bayesmix.families import FAMILIES
from bayesmix.families.poisson import poisson_log_prob
from bayesmix.stats import posterior_log_density, posterior_responsibilities

PREC = 80
MAX_FLOAT = np.finfo(np.float64).max


def D(x) -> Decimal:
    """The exact value of a float (or int) as a Decimal."""
    return Decimal(float(x)) if not isinstance(x, int) else Decimal(x)


LOG_2PI = D(math.log(2.0 * math.pi))  # rounding 4e-16: negligible against the tests' tolerances
LOG_PI = D(math.log(math.pi))


# -- exact log densities (decimal) ------------------------------------------------------


def _lgamma(z: Decimal) -> Decimal:
    """log Gamma(z): math.lgamma below 1e5 (within an ulp), Stirling's series above."""
    if z < 100000:
        return D(math.lgamma(float(z)))
    inv = 1 / z
    inv2 = inv * inv
    series = inv * (
        Decimal(1) / 12 - inv2 * (Decimal(1) / 360 - inv2 * (Decimal(1) / 1260 - inv2 / 1680))
    )
    return (z - Decimal("0.5")) * z.ln() - z + LOG_2PI / 2 + series


def _cholesky(a: list[list[Decimal]]) -> list[list[Decimal]]:
    n = len(a)
    chol = [[Decimal(0)] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            s = a[i][j] - sum(chol[i][k] * chol[j][k] for k in range(j))
            chol[i][j] = s.sqrt() if i == j else s / chol[j][j]
    return chol


def _mahalanobis(x, mean, cov) -> tuple[Decimal, Decimal]:
    """Exact squared Mahalanobis distance and log-determinant."""
    chol = _cholesky([[D(v) for v in row] for row in cov])
    diff = [D(a) - D(b) for a, b in zip(x, mean, strict=True)]
    z: list[Decimal] = []
    for i in range(len(diff)):
        z.append((diff[i] - sum(chol[i][j] * z[j] for j in range(i))) / chol[i][i])
    log_det = 2 * sum(chol[i][i].ln() for i in range(len(diff)))
    return sum(v * v for v in z), log_det


def gaussian_exact(x, means, covariances):
    out = []
    for mean, cov in zip(means, covariances, strict=True):
        m, log_det = _mahalanobis(x, mean, cov)
        out.append(-(len(x) * LOG_2PI + log_det + m) / 2)
    return out


def student_t_exact(x, means, scales, dof):
    out = []
    d = len(x)
    for mean, cov, nu in zip(means, scales, dof, strict=True):
        m, log_det = _mahalanobis(x, mean, cov)
        nu = D(nu)
        out.append(
            _lgamma((nu + d) / 2)
            - _lgamma(nu / 2)
            - Decimal(d) / 2 * (nu.ln() + LOG_PI)
            - log_det / 2
            - (nu + d) / 2 * (1 + m / nu).ln()
        )
    return out


def poisson_exact(x, rates):
    out = []
    for lam in rates:
        total = Decimal(0)
        for xd, ld in zip(x, lam, strict=True):
            xd, ld = D(xd), D(ld)
            if ld == 0:
                if xd > 0:
                    total = None
                    break
                continue
            total += xd * ld.ln() - ld - _lgamma(xd + 1)
        out.append(total)
    return out


def negative_binomial_exact(x, rates, dispersion):
    out = []
    for mus, alphas in zip(rates, dispersion, strict=True):
        total = Decimal(0)
        for xd, mu, alpha in zip(x, mus, alphas, strict=True):
            xd, mu, alpha = D(xd), D(mu), D(alpha)
            total += (
                _lgamma(xd + alpha)
                - _lgamma(alpha)
                - _lgamma(xd + 1)
                + xd * (mu / (alpha + mu)).ln()
                + alpha * (alpha / (alpha + mu)).ln()
            )
        out.append(total)
    return out


def bernoulli_exact(x, probs):
    out = []
    for p in probs:
        total = Decimal(0)
        for xd, pd_ in zip(x, p, strict=True):
            q = D(pd_) if xd == 1 else 1 - D(pd_)
            if q == 0:
                total = None
                break
            total += q.ln()
        out.append(total)
    return out


EXACT = {
    "gaussian": gaussian_exact,
    "student-t": student_t_exact,
    "poisson": poisson_exact,
    "bernoulli": bernoulli_exact,
    "negative-binomial": negative_binomial_exact,
}


def exact(family: str, fit, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact responsibilities (N, K) and log densities (N,) at the fit's parameters."""
    arrays = fit.posterior_arrays()
    weights = arrays.pop("weights")[0]
    params = [a[0] for a in arrays.values()]
    proba, density = [], []
    with localcontext() as ctx:
        ctx.prec = PREC
        for x in X:
            logs = EXACT[family](list(x), *params)
            terms = [
                None if lp is None else D(w).ln() + lp for w, lp in zip(weights, logs, strict=True)
            ]
            top = max(t for t in terms if t is not None)
            e = [Decimal(0) if t is None else (t - top).exp() for t in terms]
            total = sum(e)
            proba.append([float(v / total) for v in e])
            density.append(float(top + total.ln()))  # -inf beyond the floats
    return np.array(proba), np.array(density)


# -- the fits ---------------------------------------------------------------------------


def _shipped(family: str) -> tuple[np.ndarray, int]:
    if family in ("gaussian", "student-t"):
        return bm.datasets.load_faithful().to_numpy(float), 2
    if family == "poisson":
        return bm.datasets.load_discoveries()[["discoveries"]].to_numpy(float), 2
    if family == "negative-binomial":
        return bm.datasets.load_warpbreaks().to_numpy(float), 2
    return bm.datasets.load_carcinoma().to_numpy(float), 3


def _far_rows(family: str, X: np.ndarray) -> np.ndarray:
    kind = FAMILIES[family].plot_kind
    if kind == "continuous":
        far = [
            [1e155, 0.0],
            [0.0, 1e155],
            [-1e300, 0.0],
            [-1e300, 1e300],
            [1e150, 70.0],
            [3.0, 1e20],
            [-1e20, -1e20],
            [1e-300, 1e-300],
            [-1e-300, 1e-300],
            [MAX_FLOAT, -MAX_FLOAT],
            [-MAX_FLOAT, 5.0],
        ]
    elif kind == "counts":
        far = [[0.0], [1e6], [2.0**40], [1e15], [1e100], [1e300], [1e307], [MAX_FLOAT]]
    else:  # every answer pattern of the binary items
        d = X.shape[1]
        far = [[(i >> j) & 1 for j in range(d)] for i in range(2**d)]
    return np.vstack([X[:5], np.array(far, dtype=float)])


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def em_fit(request):
    family = request.param
    X, k = _shipped(family)
    fit = FAMILIES[family](n_components=k, random_state=0).fit(X, method="em")
    return family, fit, _far_rows(family, X)


# -- every family ---------------------------------------------------------------------


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_predict_proba_is_the_exact_responsibilities_however_far_the_row(em_fit):
    family, fit, rows = em_fit
    proba = fit.predict_proba(rows)
    expected, _ = exact(family, fit, rows)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(proba, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_predict_is_the_exact_most_probable_component(em_fit):
    family, fit, rows = em_fit
    expected, _ = exact(family, fit, rows)
    top = np.sort(expected, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-9  # a unique most probable component
    assert clear.sum() >= rows.shape[0] - 2
    np.testing.assert_array_equal(fit.predict(rows)[clear], expected.argmax(axis=1)[clear])


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_score_samples_is_exact_where_a_float_and_minus_inf_beyond(em_fit):
    family, fit, rows = em_fit
    density = fit.score_samples(rows)
    _, expected = exact(family, fit, rows)
    assert not np.isnan(density).any()
    beyond = np.isneginf(expected)  # the exact log density is below -1.8e308
    np.testing.assert_array_equal(np.isneginf(density), beyond)
    np.testing.assert_allclose(density[~beyond], expected[~beyond], rtol=1e-12, atol=1e-9)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_score_bic_aic_are_the_sums_of_the_log_densities(em_fit):
    family, fit, rows = em_fit
    _, expected = exact(family, fit, rows)
    n_params = fit._n_parameters(fit.n_features_in_)
    # Python floats: -2 log L may be beyond the floats (inf) even when log L is not.
    total = float(expected.sum())  # -inf when a row's log density is beyond the floats
    assert fit.score(rows) == pytest.approx(total / rows.shape[0], rel=1e-12)
    assert fit.bic(rows) == pytest.approx(-2 * total + n_params * np.log(rows.shape[0]), rel=1e-12)
    assert fit.aic(rows) == pytest.approx(-2 * total + 2 * n_params, rel=1e-12)
    # A zero weight drops a row, even one of log density -inf (0 * -inf is not 0 in floats).
    w = np.where(np.isneginf(expected), 0.0, 1.0)
    kept = float(expected[w > 0].sum())
    assert fit.score(rows, sample_weight=w) == pytest.approx(kept / w.sum(), rel=1e-12)
    assert fit.bic(rows, sample_weight=w) == pytest.approx(
        -2 * kept + n_params * np.log(w.sum()), rel=1e-12
    )


# -- closed forms -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussian_1d():
    """Two 1-D components, sd 0.5 at 0 and sd 2 at 4 (the fit's variances are near those)."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0.0, 0.5, 300), rng.normal(4.0, 2.0, 300)])
    return bm.GaussianMixture(n_components=2, random_state=0).fit(x, method="em")


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_far_1d_rows_go_to_the_component_with_the_larger_variance(gaussian_1d):
    # log r_1 / r_2 = log(w_1 s_2 / (w_2 s_1)) - (x - m_1)^2 / (2 s_1^2) + (x - m_2)^2 / (2 s_2^2)
    # = -(1/s_1^2 - 1/s_2^2) x^2 / 2 + O(x): for s_1 < s_2 it tends to -inf on both sides,
    # so far out the wider component has responsibility 1 (exactly, in floats).
    fit = gaussian_1d
    var = fit.covariances_[:, 0, 0]
    wide = int(np.argmax(var))
    far = np.array([1e155, -1e155, 1e300, -1e300, MAX_FLOAT, -MAX_FLOAT, 1e20])[:, None]
    proba = fit.predict_proba(far)
    np.testing.assert_array_equal(proba[:, wide], 1.0)
    np.testing.assert_array_equal(fit.predict(far), wide)
    # Where the two quadratics compete, the closed-form log-odds in exact arithmetic.
    x = np.linspace(-30.0, 30.0, 61)
    (w1, w2), (m1, m2) = fit.weights_, fit.means_[:, 0]
    with localcontext() as ctx:
        ctx.prec = PREC
        s1, s2 = D(var[0]).sqrt(), D(var[1]).sqrt()
        log_odds = [
            (D(w1) * s2 / (D(w2) * s1)).ln()
            - (D(v) - D(m1)) ** 2 / (2 * s1**2)
            + (D(v) - D(m2)) ** 2 / (2 * s2**2)
            for v in x
        ]
        r1 = [float(1 / (1 + (-lo).exp())) for lo in log_odds]
    np.testing.assert_allclose(fit.predict_proba(x[:, None])[:, 0], r1, rtol=1e-9, atol=1e-300)


@pytest.fixture(scope="module")
def gaussian_tied():
    rng = np.random.default_rng(5)
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    chol = np.linalg.cholesky(cov)
    z = rng.standard_normal((600, 2)) @ chol.T
    X = z + np.where(rng.random(600)[:, None] < 0.4, [0.0, 0.0], [3.0, 1.0])
    return bm.GaussianMixture(n_components=2, covariance_type="tied", random_state=0).fit(
        X, method="em"
    )


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("t", [1e3, 1e10, 1e20, 1e100, 1e155, 1e300])
@pytest.mark.parametrize("direction", [(1.0, 0.0), (-1.0, 0.5), (0.3, -1.0)])
def test_tied_covariances_give_the_linear_discriminant_however_far(gaussian_tied, t, direction):
    # One covariance S: log r_1 / r_2 = log(w_1 / w_2) + (m_1 - m_2)' S^-1 x
    #                                  - (m_1' S^-1 m_1 - m_2' S^-1 m_2) / 2, linear in x.
    # The two quadratic terms x' S^-1 x / 2 are equal, so far out (t = 1e20 on) the log
    # densities agree in every float digit and only their exact difference decides.
    fit = gaussian_tied
    x = np.array(direction) * t
    (w1, w2), (m1, m2), cov = fit.weights_, fit.means_, fit.covariances_
    with localcontext() as ctx:
        ctx.prec = PREC
        det = D(cov[0, 0]) * D(cov[1, 1]) - D(cov[0, 1]) * D(cov[1, 0])
        inv = [[D(cov[1, 1]) / det, -D(cov[0, 1]) / det], [-D(cov[1, 0]) / det, D(cov[0, 0]) / det]]

        def quad(a, b):
            return sum(D(a[i]) * inv[i][j] * D(b[j]) for i in range(2) for j in range(2))

        diff = [D(m1[i]) - D(m2[i]) for i in range(2)]
        log_odds = (
            (D(w1) / D(w2)).ln()
            + sum(diff[i] * sum(inv[i][j] * D(x[j]) for j in range(2)) for i in range(2))
            - (quad(m1, m1) - quad(m2, m2)) / 2
        )
        r1 = float(1 / (1 + (-log_odds).exp())) if log_odds > -(10**6) else 0.0
    proba = fit.predict_proba(x[None])[0]
    np.testing.assert_allclose(proba, [r1, 1.0 - r1], rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_tied_rows_with_equal_discriminants_keep_the_weights_and_constants(gaussian_tied):
    # Along a direction d with (m_1 - m_2)' S^-1 d = 0 the log-odds stay at
    # log(w_1 / w_2) - (m_1' S^-1 m_1 - m_2' S^-1 m_2) / 2 however far: only the weights
    # and the constants decide. (d is rounded to floats, so a' (t d) is not exactly 0 but
    # of order eps |a| |d| t: the test stops at t = 1e9, where that is below 1e-5.)
    fit = gaussian_tied
    (m1, m2), cov = fit.means_, fit.covariances_
    a = np.linalg.solve(cov, m1 - m2)
    d = np.array([-a[1], a[0]])
    near = fit.predict_proba(d[None])[0]
    assert 0.01 < near[0] < 0.999  # not decided by the distance alone
    for t in (1e3, 1e6, 1e9):
        np.testing.assert_allclose(fit.predict_proba((d * t)[None])[0], near, rtol=1e-6)


# -- rows with zero probability -------------------------------------------------------------


def test_rows_every_component_excludes_raise_a_data_error_naming_them():
    # Rates exactly 0 (maximum likelihood for a feature never positive in a component):
    # row 1 has a positive count in a feature of rate 0 in both components.
    weights = np.array([[0.5, 0.5]])
    rates = np.array([[[0.0, 3.0], [2.0, 0.0]]])
    X = np.array([[0.0, 2.0], [1.0, 1.0], [4.0, 0.0], [0.0, 0.0]])
    with pytest.raises(DataError, match=r"1 row\(s\) of X, at positions \[1\]"):
        posterior_responsibilities(X, weights, rates, component_log_prob=poisson_log_prob)
    # The other rows are fine, and the log density of row 1 is log 0 = -inf, not NaN.
    ok = posterior_responsibilities(
        X[[0, 2, 3]], weights, rates, component_log_prob=poisson_log_prob
    )
    np.testing.assert_array_equal(ok[:2], [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(ok[2], [np.exp(-3.0), np.exp(-2.0)] / np.exp([-3.0, -2.0]).sum())
    density = posterior_log_density(X, weights, rates, component_log_prob=poisson_log_prob)
    assert np.isneginf(density[1])
    assert np.isfinite(density[[0, 2, 3]]).all()


def test_a_fit_with_zero_rates_names_the_impossible_rows_in_predict():
    X = np.array([[0, 5], [0, 6], [0, 4], [0, 7], [5, 0], [6, 0], [4, 0], [7, 0]] * 3, float)
    fit = bm.PoissonMixture(n_components=2, random_state=0).fit(X, method="em")
    assert (fit.rates_ == 0).sum() == 2  # each component excludes the other's feature
    with pytest.raises(DataError, match=r"positions \[1\]"):
        fit.predict(np.array([[0.0, 3.0], [2.0, 2.0]]))
    assert np.isneginf(fit.score_samples(np.array([[2.0, 2.0]]))[0])
