"""The HTML report: its tables (fast), and the page in a real headless browser (slow)."""

import html
import json
import os
import re
import shutil
import struct
import subprocess

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.cli import main
from bayesmix.report import write_report

pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.exceptions.SamplerWarning")

# The columns of select_k(..., method="both") (see its docstring).
K_COLUMNS = [
    "n_components",
    "log_likelihood",
    "n_parameters",
    "bic",
    "icl",
    "em_problems",
    "elpd_loo",
    "se",
    "p_loo",
    "max_pareto_k",
    "n_bad_pareto_k",
    "divergences",
    "max_rhat",
    "min_ess_bulk",
    "min_ess_tail",
    "collapsed_chains",
    "loo_problems",
    "rank_bic",
    "rank_icl",
    "elpd_diff",
    "dse",
    "rank_loo",
]


def _tables(page):
    """Return the column names of every table of the page (its first header row)."""
    rows = [
        re.search(r"<thead>\s*<tr[^>]*>(.*?)</tr>", table, re.S)[1]
        for table in re.findall(r"<table.*?</table>", page, re.S)
    ]
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<th[^>]*>(.*?)</th>", row, re.S)
        ]
        for row in rows
    ]


@pytest.fixture(scope="module")
def report(fitted_mixture, tmp_path_factory):
    """A report of EM and NUTS fits of 2-D data, with a select_k table of every column."""
    k_table = pd.DataFrame(
        {column: np.arange(1.0, 4.0) for column in K_COLUMNS if "problems" not in column}
    ).assign(
        n_components=[1, 2, 3],
        em_problems=["", "", "EM did not converge"],
        loo_problems=["R-hat 1.023 > 1.01", "", "R-hat 1.170 > 1.01; bulk ESS 8 < 200"],
    )[K_COLUMNS]
    k_table.attrs.update(best={"bic": 2, "icl": 2, "loo": 2}, reason={}, rule="")
    out = tmp_path_factory.mktemp("report")
    path = write_report(
        out,
        em_fit=fitted_mixture(2, "em"),
        nuts_fit=fitted_mixture(2, "nuts"),
        k_table=k_table,
    )
    return path.read_text(encoding="utf-8")


def test_the_hdi_columns_are_named_alike_in_every_table(report):
    """Issue 21, item 8: the summary said hdi94_lb, the comparison hdi_low."""
    interval = re.compile(r"hdi\w*_(lb|ub|low|high)")
    hdi = [[cell for cell in header if interval.fullmatch(cell)] for header in _tables(report)]
    assert [names for names in hdi if names] == [["hdi94_lb", "hdi94_ub"]] * 2


def test_every_covariance_entry_appears_once_in_the_summary(report, fitted_mixture):
    """Issue 21, item 8: covariances[0, length, width] and [0, width, length] both shown."""
    summary = report.split("<h2>Posterior summary</h2>")[1].split("<h2>")[0]
    assert "covariances[0, width, length]" in summary
    assert "covariances[0, length, width]" not in summary
    rows = re.findall(r"<th>((?:weights|means|covariances)\[[^<]*)</th>", summary)
    assert rows == list(fitted_mixture(2, "nuts").summary().index)
    assert len(rows) == len(set(rows)) == 2 + 4 + 6


def test_the_select_k_table_is_shown_in_narrow_tables_that_keep_every_column(report):
    """Issue 21, item 8: one select-K table of every column overflowed the page."""
    section = report.split("<h2>Choosing the number of components</h2>")[1]
    headers = _tables(section)
    assert len(headers) >= 3
    for header in headers:
        assert len(header) <= 1 + 8  # the index, at most 8 columns
    shown = [cell for header in headers for cell in header]
    assert set(K_COLUMNS) - {"n_components"} <= set(shown)
    assert len(re.findall(r"<th>n_(?:<wbr>)?components</th>", section)) == len(headers)
    assert report.count('<div class="table-wrap') == report.count("<table")


# -- the page in a real browser -------------------------------------------------------------

# Appended to a copy of the report: once the page has loaded, measure it and write the
# result into the page, where chromium --dump-dom prints it.
_CHECK = """<script>
window.addEventListener("load", () => {
  const page = document.documentElement.clientWidth;
  const images = Array.from(document.images).map((img) => ({
    alt: img.alt,
    loaded: img.complete && img.naturalWidth > 0,
    right: img.getBoundingClientRect().right,
  }));
  const tables = Array.from(document.querySelectorAll("table")).map((table) => ({
    header: Array.from(table.querySelectorAll("th")).slice(0, 3).map((th) => th.textContent),
    width: table.getBoundingClientRect().width,
    right: table.getBoundingClientRect().right,
    room: table.parentElement.clientWidth,
  }));
  const out = document.createElement("pre");
  out.id = "bayesmix-check";
  out.textContent = JSON.stringify({
    page,
    scrollWidth: document.documentElement.scrollWidth,
    title: document.querySelector("h1") && document.querySelector("h1").textContent,
    images,
    tables,
  });
  document.body.appendChild(out);
});
</script>"""


def _chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")


def _chromium_run(chromium, tmp_path, width, *args):
    command = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",  # root in a container; the page is our own file
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--window-size={width},2000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_the_report_renders_in_a_browser_with_every_figure_and_no_table_wider_than_the_page(
    tmp_path,
):
    """Issue 21, item 8: the select-K table overflowed the page. The report of the
    widest command (select --method both) in headless Chromium: it renders, every figure
    loads, no table is wider than its place on the page and the page does not scroll
    sideways, in a laptop's window and a tablet's."""
    chromium = _chromium()
    data = tmp_path / "faithful.csv"
    bm.datasets.load_faithful().to_csv(data, index=False)
    out = tmp_path / "select"
    args = ["select", str(data), "-k", "1..3", "--draws", "200", "--tune", "200", "--chains", "2"]
    assert main([*args, "--out", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", _CHECK + "</body>"), encoding="utf-8")
    figures = sorted(out.glob("*.png"))
    assert len(figures) >= 7  # components, responsibilities, ppc, trace, rank, compare, K

    screenshot = tmp_path / "report.png"  # BAYESMIX_SCREENSHOT=path keeps a copy to look at
    _chromium_run(chromium, tmp_path, 1280, f"--screenshot={screenshot}", checked.as_uri())
    assert _png_size(screenshot) == (1280, 2000)
    assert screenshot.stat().st_size > 50_000  # a page with figures, not a blank one
    if os.environ.get("BAYESMIX_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["BAYESMIX_SCREENSHOT"])

    for width in (1280, 1024):
        done = _chromium_run(chromium, tmp_path, width, "--dump-dom", checked.as_uri())
        found = re.search(r'<pre id="bayesmix-check">(.*?)</pre>', done.stdout, re.S)
        assert found, f"the page did not finish loading: {done.stderr[-2000:]}"
        result = json.loads(html.unescape(found[1]))
        assert result["title"].startswith("bayesmix select: faithful.csv")
        assert len(result["images"]) == len(figures)
        assert all(image["loaded"] for image in result["images"]), result["images"]
        assert all(image["right"] <= result["page"] + 0.5 for image in result["images"])
        wide = [t for t in result["tables"] if t["width"] > t["room"] + 0.5]
        assert wide == [], (width, wide)
        assert all(t["right"] <= result["page"] + 0.5 for t in result["tables"])
        assert result["scrollWidth"] <= result["page"], (width, result["scrollWidth"])
        assert len(result["tables"]) >= 7  # summary, diagnostics, 2 of EM vs MCMC, 3 of K
