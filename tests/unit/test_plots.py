"""Plots: every function runs on 1-D, 2-D and 4-D fits, and draws what it says it draws."""

import copy

import arviz_plots as azp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import FillBetweenPolyCollection
from matplotlib.patches import Ellipse
from scipy.stats import multivariate_normal, norm

import bayesmix as bm
from bayesmix.compare import compare_fits
from bayesmix.exceptions import InvalidParameterError
from bayesmix.plots import (
    GID_BAND,
    GID_DRAW,
    GID_EM,
    GID_MEAN,
    ellipse_geometry,
    plot_compare,
    plot_components,
    plot_rank,
    plot_responsibilities,
    plot_trace,
    rank_histogram,
    uniform_rank_band,
)

N_DRAWS_TOTAL = 400  # 2 chains x 200 draws (tests/unit/conftest.py)
DIMS = (1, 2, 4)  # 4-D: covariance_type="diag"
METHODS = ("em", "nuts")


@pytest.fixture(scope="module")
def fit(fitted_mixture):
    """``fit(n_features, method)``: shared fits, each sampled once per session."""
    return fitted_mixture


@pytest.fixture(scope="module")
def data(mixture):
    return lambda n_features: mixture(n_features)[0]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def _ellipses(ax, gid):
    return [p for p in ax.patches if isinstance(p, Ellipse) and p.get_gid() == gid]


def _lines(ax, gid):
    return [line for line in ax.get_lines() if line.get_gid() == gid]


def _mahalanobis_of_outline(ellipse, mean, cov):
    """Mahalanobis distance of points on a drawn ellipse from (mean, cov)."""
    unit = ellipse.get_path().vertices  # the unit circle: Bezier end and control points
    on_curve = unit[np.isclose(np.hypot(unit[:, 0], unit[:, 1]), 1.0)]
    assert len(on_curve) >= 8
    points = ellipse.get_patch_transform().transform(on_curve)
    diff = points - mean
    return np.sqrt(np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff))


# -- every plot runs and saves --------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n_features", DIMS)
def test_every_plot_saves_a_png(fit, n_features, method, tmp_path):
    gm = fit(n_features, method)
    figures = {
        "components": plot_components(gm, n_draws=20),
        "responsibilities": plot_responsibilities(gm),
    }
    if method == "nuts":
        figures["compare"] = plot_compare(gm, var_names=("weights", "means"))
        figures["rank"] = plot_rank(gm, var_names=("weights",))
        trace = plot_trace(gm, var_names=("weights",))
        assert isinstance(trace, azp.PlotCollection)
        trace.savefig(tmp_path / "trace.png")
        assert _is_png(tmp_path / "trace.png")
    for name, figure in figures.items():
        assert isinstance(figure, plt.Figure)
        figure.savefig(tmp_path / f"{name}.png")
        assert _is_png(tmp_path / f"{name}.png"), name


@pytest.mark.parametrize("n_features", DIMS)
def test_em_fits_have_no_draws_to_trace(fit, n_features):
    gm = fit(n_features, "em")
    for plot in (plot_trace, plot_rank, plot_compare):
        with pytest.raises(InvalidParameterError, match=r"1 chain x 1 draw.*method='nuts'"):
            plot(gm)


# -- plot_components ------------------------------------------------------------------------


def test_1d_posterior_density_band_and_em_density(fit):
    gm = fit(1, "nuts")
    assert (
        gm.idata["posterior"].sizes["chain"] * gm.idata["posterior"].sizes["draw"] == N_DRAWS_TOTAL
    )
    fig = plot_components(gm, n_draws=N_DRAWS_TOTAL)  # every draw: an exact reference
    (ax,) = fig.axes
    (mean_line,) = _lines(ax, GID_MEAN)
    (em_line,) = _lines(ax, GID_EM)
    grid, mean = mean_line.get_data()
    assert em_line.get_linestyle() == "--"
    # posterior mean density against scipy over every posterior draw
    post = gm.idata["posterior"]
    weights = post["weights"].to_numpy().reshape(N_DRAWS_TOTAL, 2)
    means = post["means"].to_numpy().reshape(N_DRAWS_TOTAL, 2)
    sds = np.sqrt(post["covariances"].to_numpy().reshape(N_DRAWS_TOTAL, 2))
    per_draw = (weights[:, None] * norm.pdf(grid[None, :, None], means[:, None], sds[:, None])).sum(
        axis=-1
    )
    np.testing.assert_allclose(mean, per_draw.mean(axis=0), rtol=1e-10)
    # EM density against scipy at the EM estimate
    em = gm.em_
    em_pdf = em.weights * norm.pdf(grid[:, None], em.means[:, 0], np.sqrt(em.covariances[:, 0, 0]))
    np.testing.assert_allclose(em_line.get_ydata(), em_pdf.sum(axis=1), rtol=1e-10)
    # the band contains the posterior mean curve and is not degenerate
    (band,) = [c for c in ax.collections if c.get_gid() == GID_BAND]
    assert isinstance(band, FillBetweenPolyCollection)
    vertices = band.get_paths()[0].vertices
    lower = np.array([vertices[vertices[:, 0] == x, 1].min() for x in grid])
    upper = np.array([vertices[vertices[:, 0] == x, 1].max() for x in grid])
    assert np.all(lower <= mean + 1e-12)
    assert np.all(mean <= upper + 1e-12)
    assert (upper - lower).max() > 0.01
    # the histogram is a density: its bars integrate to one
    bars = [p for p in ax.patches if p.get_gid() is None]
    assert sum(p.get_width() * p.get_height() for p in bars) == pytest.approx(1.0)


def test_1d_em_fit_draws_only_the_em_density(fit):
    ax = plot_components(fit(1, "em")).axes[0]
    assert len(_lines(ax, GID_EM)) == 1
    assert _lines(ax, GID_MEAN) == []
    assert [c for c in ax.collections if c.get_gid() == GID_BAND] == []


@pytest.mark.parametrize(("method", "n_draws"), [("em", 100), ("nuts", 30), ("nuts", 0)])
def test_2d_ellipses(fit, method, n_draws):
    gm = fit(2, method)
    fig, ax = plt.subplots()
    assert plot_components(gm, ax=ax, n_draws=n_draws) is fig
    n_drawn = n_draws if method == "nuts" else 0
    draws = _ellipses(ax, GID_DRAW)
    em_ellipses = _ellipses(ax, GID_EM)
    assert len(draws) == gm.n_components * n_drawn
    assert len(em_ellipses) == gm.n_components
    # the EM ellipses are the 2-sigma contours of the EM components
    cov = gm.em_.covariances
    for k, ellipse in enumerate(em_ellipses):
        assert ellipse.get_linestyle() == "--"
        distance = _mahalanobis_of_outline(ellipse, gm.em_.means[k], cov[k])
        np.testing.assert_allclose(distance, 2.0, rtol=1e-8)
    # each posterior ellipse is the 2-sigma contour of one component in one posterior draw
    if n_drawn:
        post = gm.idata["posterior"]
        means = post["means"].to_numpy().reshape(-1, 2, 2)
        covs = post["covariances"].to_numpy().reshape(-1, 2, 2, 2)
        centres = np.array([e.center for e in draws]).reshape(n_drawn, 2, 2)
        matches = np.isclose(centres[:, None], means[None]).all(axis=(2, 3))  # (drawn, all)
        assert matches.any(axis=1).all()
        for i, s in enumerate(matches.argmax(axis=1)):
            for k in range(2):
                distance = _mahalanobis_of_outline(draws[2 * i + k], means[s, k], covs[s, k])
                np.testing.assert_allclose(distance, 2.0, rtol=1e-8)
    (points,) = ax.collections
    assert points.get_offsets().shape == (gm.idata["observed_data"].sizes["obs"], 2)
    if method == "em":  # points coloured by the predicted component (cheap with one draw)
        colours = points.get_facecolors()[:, :3]
        predicted = gm.predict(gm.idata["observed_data"]["x"].to_numpy())
        for k in range(2):
            assert np.allclose(colours[predicted == k], colours[predicted == k][0])
        assert not np.allclose(colours[predicted == 0][0], colours[predicted == 1][0])


def test_components_on_new_data(fit, data):
    gm = fit(2, "em")
    X_new = data(2)[:50] + 0.1
    ax = plot_components(gm, X_new).axes[0]
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), X_new.to_numpy())


@pytest.mark.parametrize("method", METHODS)
def test_4d_pairs_grid(fit, method):
    gm = fit(4, method)
    n_draws = 10
    fig = plot_components(gm, n_draws=n_draws)
    axes = np.array(fig.axes[:16]).reshape(4, 4)
    assert gm.covariance_type == "diag"
    cov = np.stack([np.diag(c) for c in gm.em_.covariances])
    for i in range(4):
        for j in range(4):
            ax = axes[i, j]
            if i < j:
                assert not ax.axison
            elif i == j:  # EM marginal density of feature i
                (em_line,) = _lines(ax, GID_EM)
                x, y = em_line.get_data()
                pdf = gm.em_.weights * norm.pdf(
                    x[:, None], gm.em_.means[:, i], np.sqrt(cov[:, i, i])
                )
                np.testing.assert_allclose(y, pdf.sum(axis=1), rtol=1e-10)
                assert len(_lines(ax, GID_MEAN)) == (method == "nuts")
            else:  # EM ellipses of the (j, i) marginal
                n_drawn = n_draws if method == "nuts" else 0
                assert len(_ellipses(ax, GID_DRAW)) == 2 * n_drawn
                for k, ellipse in enumerate(_ellipses(ax, GID_EM)):
                    idx = [j, i]
                    distance = _mahalanobis_of_outline(
                        ellipse, gm.em_.means[k, idx], cov[k][np.ix_(idx, idx)]
                    )
                    np.testing.assert_allclose(distance, 2.0, rtol=1e-8)


def test_4d_pairs_grid_needs_a_grid_of_axes(fit):
    gm = fit(4, "em")
    _, ax = plt.subplots()
    with pytest.raises(InvalidParameterError, match=r"4 x 4 pairs grid"):
        plot_components(gm, ax=ax)
    fig, axes = plt.subplots(4, 4)
    assert plot_components(gm, ax=axes) is fig


def test_components_rejects_bad_options(fit):
    gm = fit(2, "em")
    with pytest.raises(InvalidParameterError, match="n_draws"):
        plot_components(gm, n_draws=-1)
    with pytest.raises(InvalidParameterError, match="hdi_prob"):
        plot_components(gm, hdi_prob=94)
    with pytest.raises(bm.NotFittedError):
        plot_components(bm.GaussianMixture())


@pytest.mark.parametrize(
    ("covariance", "expected"),
    [
        (np.diag([4.0, 1.0]), (8.0, 4.0, 0.0)),
        (np.diag([1.0, 9.0]), (12.0, 4.0, 90.0)),
        (np.array([[2.0, 1.0], [1.0, 2.0]]), (4 * np.sqrt(3.0), 4.0, 45.0)),
    ],
)
def test_ellipse_geometry(covariance, expected):
    np.testing.assert_allclose(ellipse_geometry(covariance), expected, atol=1e-12)


# -- plot_responsibilities ------------------------------------------------------------------


@pytest.mark.parametrize("n_features", DIMS)
def test_responsibilities_are_sorted_uncertainties(fit, n_features):
    gm = fit(n_features, "em")
    X = gm.idata["observed_data"]["x"].to_numpy()
    # responsibilities at the EM estimate, from scipy
    em = gm.em_
    cov = gm.idata["posterior"]["covariances"].to_numpy()[0, 0]
    dens = np.column_stack(
        [
            w * multivariate_normal(m, c).pdf(X)
            for w, m, c in zip(em.weights, em.means, cov, strict=True)
        ]
    )
    proba = dens / dens.sum(axis=1, keepdims=True)
    _, ax = plt.subplots()
    plot_responsibilities(gm, ax=ax)
    ranks, values, components = [], [], []
    for k, collection in enumerate(ax.collections):
        offsets = collection.get_offsets()
        ranks.append(offsets[:, 0])
        values.append(offsets[:, 1])
        components.append(np.full(len(offsets), k))
    order = np.argsort(np.concatenate(ranks))
    values = np.concatenate(values)[order]
    np.testing.assert_allclose(values, np.sort(1 - proba.max(axis=1)), atol=1e-10)
    assert np.all(np.diff(values) >= 0)
    counts = np.bincount(np.concatenate(components), minlength=2)
    np.testing.assert_array_equal(counts, np.bincount(proba.argmax(axis=1), minlength=2))


# -- plot_compare ---------------------------------------------------------------------------


@pytest.mark.parametrize("with_em_fit", [False, True])
def test_compare_marks_the_relabelled_em_estimate(fit, with_em_fit):
    em, nuts = fit(2, "em"), fit(2, "nuts")
    table = compare_fits(em, nuts)
    fig = plot_compare(nuts, em if with_em_fit else None)
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == list(table.index)
    for ax, (label, row) in zip(panels, table.iterrows(), strict=True):
        (line,) = _lines(ax, GID_EM)
        assert line.get_xdata()[0] == pytest.approx(row["em"], rel=1e-12), label
        heights = [p.get_height() for p in ax.patches]
        widths = [p.get_width() for p in ax.patches]
        assert np.dot(heights, widths) == pytest.approx(1.0)  # a posterior density


def test_compare_selects_variables_and_rejects_bad_ones(fit, data):
    nuts = fit(1, "nuts")
    fig = plot_compare(nuts, var_names=("weights",))
    assert [ax.get_title() for ax in fig.axes if ax.axison] == ["weights[0]", "weights[1]"]
    for bad in (("sigma",), "weights", ()):
        with pytest.raises(InvalidParameterError, match="var_names"):
            plot_compare(nuts, var_names=bad)
    with pytest.raises(InvalidParameterError, match="n_components"):
        plot_compare(nuts, bm.GaussianMixture(n_components=3).fit(data(1), method="em"))


# -- arviz-plots diagnostics ----------------------------------------------------------------


def test_trace_and_rank_show_the_posterior_variables(fit):
    nuts = fit(2, "nuts")
    trace = plot_trace(nuts)
    assert set(trace.data.data_vars) == {"weights", "means", "sigma"}
    rank = plot_rank(nuts, var_names=("covariances",))
    assert _panel_titles(rank) == [
        f"covariances[{k}, {entry}]"
        for k in (0, 1)
        for entry in ("length, length", "width, length", "width, width")
    ]  # a symmetric matrix once
    with pytest.raises(InvalidParameterError, match="posterior variables"):
        plot_trace(nuts, var_names=("nope",))
    with pytest.raises(InvalidParameterError, match="n_bins"):
        plot_rank(nuts, n_bins=1)


def _panel_titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.axison]


def _overlaps(fig):
    """Pairs (title, tick label) of the figure whose drawn boxes intersect."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [ax.title for ax in fig.axes if ax.axison and ax.get_title()]
    ticks = [
        label
        for ax in fig.axes
        if ax.axison
        for label in ax.get_xticklabels() + ax.get_yticklabels()
        if label.get_visible() and label.get_text()
    ]
    return [
        (title.get_text(), label.get_text())
        for title in titles
        for label in ticks
        if title.get_window_extent(renderer).overlaps(label.get_window_extent(renderer))
    ]


def test_trace_has_a_row_per_variable_and_feature_and_legends(fit):
    """Issue 21, item 8: every feature of a variable shared one axis (eruption traces
    flat next to waiting times), with no legend."""
    nuts = fit(2, "nuts")
    figure = plot_trace(nuts).get_viz("figure")
    rows = [ax.get_ylabel() for ax in figure.axes if ax.get_ylabel()]
    assert rows == [
        "weights",
        "means\nlength",
        "means\nwidth",
        "sigma\nlength",
        "sigma\nwidth",
    ]
    assert len(figure.axes) == 2 * len(rows)  # density and trace of every row
    legends = {legend.get_title().get_text(): legend for legend in figure.legends}
    assert set(legends) == {"component", "chain"}
    assert [t.get_text() for t in legends["chain"].get_texts()] == ["0", "1"]
    # A row holds one feature: its traces stay on that feature's scale.
    for ax in figure.axes[1::2]:
        low, high = ax.get_ylim()
        assert high - low < 10  # length and width in one row would span about 5 + 3


def test_rank_plots_have_a_uniform_band_and_a_line_per_chain(fit):
    """Issue 21, item 8: no uniform reference band, titles over the tick labels."""
    nuts = fit(2, "nuts")
    n_draws = nuts.idata["posterior"].sizes["draw"]
    fig = plot_rank(nuts, n_bins=10)
    expected, low, high = uniform_rank_band(n_draws, 10, 0.94)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 2 + 4 + 4  # weights, means and sigma of 2 components, 2 features
    for ax in panels:
        (band,) = [p for p in ax.patches if p.get_gid() == GID_BAND]
        assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((low, high))
        (dashed,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert list(dashed.get_ydata()) == [expected, expected]
        chains = [p for p in ax.patches if str(p.get_gid()).startswith("bayesmix-chain-")]
        assert len(chains) == 2
    assert fig.legends, "the chains, the expected count and the band are named"
    assert _overlaps(fig) == []


def test_rank_titles_clear_the_tick_labels_of_many_panels(fit):
    fig = plot_rank(fit(4, "nuts"))  # 2 + 8 + 8 panels
    assert len([ax for ax in fig.axes if ax.axison]) == 18
    assert _overlaps(fig) == []


def test_rank_histogram_and_its_uniform_band():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 1000))
    counts = rank_histogram(values, 20)
    assert counts.shape == (4, 20)
    assert (counts.sum(axis=1) == 1000).all()
    assert (counts.sum(axis=0) == 200).all()  # the pooled ranks are exactly uniform
    expected, low, high = uniform_rank_band(1000, 20, 0.94)
    assert expected == 50.0
    inside = [
        np.mean((low <= c) & (c <= high))
        for c in (rank_histogram(rng.normal(size=(4, 1000)), 20) for _ in range(50))
    ]
    assert 0.92 <= np.mean(inside) <= 0.995  # pointwise: about 94% of well-mixed bins
    stuck = np.stack([rng.normal(size=1000), rng.normal(size=1000) + 1.0])
    assert (rank_histogram(stuck, 20)[1, -3:] > high).all()  # a shifted chain's ranks pile up


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n_features", [1, 2])
def test_ppc_compares_replicates_with_the_data(fit, n_features, method, tmp_path):
    gm = copy.deepcopy(fit(n_features, method))
    assert "posterior_predictive" not in gm.idata.children
    collection = bm.plot_ppc(gm, n_draws=10, random_seed=0)
    assert isinstance(collection, azp.PlotCollection)
    replicated = gm.idata["posterior_predictive"]["x"]
    assert replicated.sizes["obs"] == gm.idata["observed_data"].sizes["obs"]
    assert replicated.sizes["feature"] == n_features
    collection.savefig(tmp_path / "ppc.png")
    assert _is_png(tmp_path / "ppc.png")
    # One panel per feature.
    figure = collection.get_viz("figure")
    assert len([ax for ax in figure.axes if ax.has_data()]) == n_features


def test_fit_plot_accessor_is_the_plot_functions(fit):
    gm = fit(2, "em")
    assert isinstance(gm.plot.components(n_draws=5), plt.Figure)
    assert gm.plot.responsibilities.__wrapped__ is plot_responsibilities
    assert "ppc" in dir(gm.plot)
    with pytest.raises(AttributeError, match="no plot named 'nothing'"):
        _ = gm.plot.nothing


@pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning")  # the mocked draws are prior draws
def test_rank_plots_need_two_chains(rng, mocked_sample):
    X = rng.normal(size=(60, 2)) + np.where(rng.random((60, 1)) < 0.5, -3.0, 3.0)
    one = bm.GaussianMixture(n_components=2, random_state=0).fit(X, draws=20, tune=10, chains=1)
    assert np.isnan(one.idata.attrs["max_rhat"])  # R-hat is not available with one chain
    with pytest.raises(InvalidParameterError, match="rank plots compare chains"):
        plot_rank(one)
    assert plot_trace(one) is not None


# -- bounded figure sizes ------------------------------------------------------------------


def test_a_pairs_grid_of_many_features_is_bounded_and_names_the_rest():
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(12)]
    X = rng.normal(size=(300, 12)) + rng.integers(0, 2, 300)[:, None] * 4.0
    gm = bm.GaussianMixture(n_components=2, random_state=0, covariance_type="diag")
    gm.fit(pd.DataFrame(X, columns=names), method="em")
    fig = plot_components(gm)
    assert len(fig.axes) == 6 * 6
    assert max(fig.get_size_inches()) <= 2.4 * 6
    title = fig._suptitle.get_text()
    assert "6 of 12 features" in title
    assert "f6" in title
    assert "f11" in title
    # The marginal of the drawn features: panel (1, 0) is features f0 (x) and f1 (y).
    (ellipse, _) = _ellipses(fig.axes[6], GID_EM)
    np.testing.assert_allclose(ellipse.center, gm.means_[0][[0, 1]])
    chosen = plot_components(gm, features=["f3", "f7"])
    assert chosen.axes[0].get_xlabel() == "f3"
    assert chosen.axes[0].get_ylabel() == "f7"
    for bad in (["nope"], []):
        with pytest.raises(InvalidParameterError, match="features"):
            plot_components(gm, features=bad)
    with pytest.raises(InvalidParameterError, match="max_features"):
        plot_components(gm, max_features=0)


def test_compare_draws_at_most_max_panels(fit):
    nuts = fit(2, "nuts")
    everything = [ax for ax in plot_compare(nuts).axes if ax.axison]
    few = plot_compare(nuts, max_panels=3)
    assert [ax.get_title() for ax in few.axes if ax.axison] == [
        ax.get_title() for ax in everything[:3]
    ]
    assert f"3 of {len(everything)} parameters" in few._suptitle.get_text()


@pytest.mark.parametrize("family", ["gaussian", "poisson", "bernoulli", "negative-binomial"])
def test_ppc_of_a_mixture_of_regressions_replicates_its_response(family, rng, tmp_path):
    x = rng.uniform(0, 2, 120)
    eta = np.where(rng.random(120) < 0.5, 0.5 + x, 2.0 - x)
    y = {
        "gaussian": eta + 0.3 * rng.normal(size=120),
        "poisson": rng.poisson(np.exp(eta)).astype(float),
        "negative-binomial": rng.negative_binomial(5, 5 / (5 + np.exp(eta))).astype(float),
        "bernoulli": (rng.random(120) < 1 / (1 + np.exp(-eta))).astype(float),
    }[family]
    em = bm.MixtureRegression(n_components=2, family=family, random_state=0)
    em.fit(x, y, method="em")
    drawn = bm.plot_ppc(em, random_seed=0)
    replicated = em.idata["posterior_predictive"]["y"]
    assert replicated.dims == ("chain", "draw", "obs")
    assert replicated.sizes["obs"] == 120
    if family == "gaussian":  # a density (ECDF) panel of y against its replicates
        assert isinstance(drawn, azp.PlotCollection)
        figure = drawn.get_viz("figure")
        assert len([ax for ax in figure.axes if ax.has_data()]) == 1
        drawn.savefig(tmp_path / "ppc.png")
    else:  # observed frequencies of every value of y, against the replicates'
        assert isinstance(drawn, plt.Figure)
        (axis,) = drawn.axes
        heights = [patch.get_height() for patch in axis.patches]
        expected = np.bincount(y.astype(int)) / y.size
        np.testing.assert_allclose(heights[: expected.size], expected)
        assert axis.get_xlabel() == "y"
        drawn.savefig(tmp_path / "ppc.png")
    assert _is_png(tmp_path / "ppc.png")
