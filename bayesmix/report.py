"""A report folder a person can read: one self-contained HTML page plus its parts.

``write_report`` writes, into one folder: ``report.html`` (no external resources: the
figures are embedded as data URIs, the style is inline), the figures as PNG files,
``summary.csv`` (posterior summary with R-hat and ESS; for an EM fit alone, the
``estimate`` of every parameter and no sd), ``compare.csv`` (EM against
the posterior), ``select_k.csv`` when K was chosen, and the saved fits (``fit.nc``,
loadable with :func:`bayesmix.load`; ``fit_em.nc`` when both were run).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from bayesmix._datatree import umask
from bayesmix.compare import compare_fits
from bayesmix.exceptions import InvalidParameterError
from bayesmix.plots import (
    plot_compare,
    plot_components,
    plot_concomitant,
    plot_ppc,
    plot_rank,
    plot_regression,
    plot_responsibilities,
    plot_trace,
)
from bayesmix.selection import plot_select_k

__all__ = ["write_report"]

_log = logging.getLogger("bayesmix")

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.3em; }
.table-wrap { max-width: 100%; overflow-x: auto; }
.text-last td:last-child { text-align: left; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.warn { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.5em 1em; }
.ok { background: #eef8ee; border-left: 4px solid #3a3; padding: 0.5em 1em; }
.meta { color: #666; font-size: 0.9em; }
"""


def _save_figure(figure: Any, path: Path) -> Path:
    """Save a matplotlib Figure or an arviz-plots PlotCollection as PNG, then close it."""
    figure.savefig(path, dpi=110)
    is_collection = hasattr(figure, "get_viz")
    plt.close(figure.get_viz("figure") if is_collection else figure)
    return path


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table(frame: pd.DataFrame, digits: int = 4) -> str:
    """Return the HTML of ``frame`` in a box as wide as the page that scrolls if need be.

    A last column of text (the select_k problems) is aligned left.
    """
    table = frame.to_html(
        float_format=lambda value: f"{value:.{digits}g}", border=0, na_rep="", escape=True
    )
    # Long names (min_ess_bulk, n_bad_pareto_k) may break after an underscore.
    table = re.sub(
        r"(<th[^>]*>)([^<]*)(</th>)",
        lambda match: match[1] + match[2].replace("_", "_<wbr>") + match[3],
        table,
    )
    text_last = len(frame.columns) > 0 and all(isinstance(v, str) for v in frame.iloc[:, -1])
    extra = " text-last" if text_last else ""
    return f'<div class="table-wrap{extra}">{table}</div>'


# The select_k table in parts a page can hold, each with its title; columns of no part
# (none today) are shown in a last one, so that the report never hides a column.
_K_TABLES = (
    (
        "EM: BIC and ICL (lower is better)",
        ("log_likelihood", "n_parameters", "bic", "rank_bic", "icl", "rank_icl", "em_problems"),
    ),
    (
        "NUTS: LOO (higher elpd is better)",
        ("elpd_loo", "se", "p_loo", "elpd_diff", "dse", "rank_loo", "loo_problems"),
    ),
    (
        "NUTS: sampler and PSIS checks",
        (
            "divergences",
            "max_rhat",
            "min_ess_bulk",
            "min_ess_tail",
            "collapsed_chains",
            "max_pareto_k",
            "n_bad_pareto_k",
        ),
    ),
)


def _k_tables(k_table: pd.DataFrame) -> str:
    """Return the HTML of the select_k table as a few narrow tables, one K per row."""
    shown = k_table.set_index("n_components")
    for column in ("em_problems", "loo_problems"):
        if column in shown:
            shown[column] = shown[column].fillna("").replace("", "ok")
    parts = [(title, [c for c in columns if c in shown]) for title, columns in _K_TABLES]
    placed = {c for _, columns in parts for c in columns}
    parts.append(("Other columns", [c for c in shown if c not in placed]))
    return "".join(
        f"<h3>{html.escape(title)}</h3>{_table(shown[columns])}"
        for title, columns in parts
        if columns
    )


def _is_laplace(fit: Any) -> bool:
    return fit.idata.attrs.get("inference_method") == "laplace"


def _warnings_block(fit: Any) -> str:
    messages = json.loads(fit.idata.attrs.get("warnings", "[]"))
    if not messages and _is_laplace(fit):
        return '<p class="ok">No warnings: PSIS k-hat &le; 0.7.</p>'
    if not messages:
        return '<p class="ok">No sampler warnings: no divergences, R-hat &le; 1.01, ESS OK.</p>'
    items = "".join(f"<li>{html.escape(m)}</li>" for m in messages)
    return f'<div class="warn"><b>Sampler warnings</b><ul>{items}</ul></div>'


def _rhat_text(value: Any) -> Any:
    """R-hat for the table: 'n/a (one chain)' when it was not computable."""
    if value is None:
        return None
    return "n/a (one chain)" if value != value else value


def _diagnostics(fit: Any) -> pd.DataFrame:
    attrs = fit.idata.attrs
    settings = json.loads(attrs.get("sampler_settings", "{}"))
    if _is_laplace(fit):
        rows = {
            "method": "Laplace approximation at the mode + PSIS",
            "draws": settings.get("draws"),
            "PSIS k-hat": attrs.get("laplace_khat"),
            "importance ESS": attrs.get("laplace_ess"),
            "distinct resampled draws": attrs.get("laplace_unique_draws"),
            "relabelled draws": attrs.get("relabelled_draws"),
        }
        return pd.DataFrame({"value": pd.Series(rows, dtype=object)})
    rows = {
        "chains x draws (tune)": (
            f"{settings.get('chains')} x {settings.get('draws')} ({settings.get('tune')})"
        ),
        "sampler": settings.get("nuts_sampler"),
        "divergences": attrs.get("divergences"),
        "max R-hat": _rhat_text(attrs.get("max_rhat")),
        "min bulk ESS": attrs.get("min_ess_bulk"),
        "min tail ESS": attrs.get("min_ess_tail"),
        "relabelled draws": attrs.get("relabelled_draws"),
    }
    return pd.DataFrame({"value": pd.Series(rows, dtype=object)})


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """Return ``out_dir`` as a path once it is known to be usable for a report folder.

    Call it before any work: an existing file in its place, or a folder that cannot be
    created or written, is an error now rather than after EM and NUTS have run.

    Raises
    ------
    bayesmix.exceptions.InvalidParameterError
        Saying what is in the way and what to try.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidParameterError(
            f"the output folder {str(out)!r} is an existing file, not a folder; pass a "
            "folder path (it is created if needed), e.g. --out report/."
        )
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidParameterError(
            f"cannot write the output folder {str(out)!r}: {str(existing)!r} is not a "
            "writable folder. Pass --out somewhere you can write (e.g. a folder in your "
            "home or the current directory)."
        )
    return out


def write_report(
    out_dir: str | Path,
    *,
    em_fit: Any = None,
    nuts_fit: Any = None,
    k_table: pd.DataFrame | None = None,
    title: str = "bayesmix report",
    description: str = "",
    data_sample: pd.DataFrame | None = None,
) -> Path:
    """Write the report folder for EM and/or NUTS fits (and a K selection table).

    Parameters
    ----------
    out_dir : str or path-like
        Created if needed; files in it with the same names are replaced. The report is
        written to a temporary folder beside it and moved in only once complete, so a
        failure leaves no half-written report (see :func:`check_out_dir`).
    em_fit, nuts_fit : fitted models, optional
        At least one. With both, the EM-vs-MCMC comparison is included.
    k_table : pandas.DataFrame, optional
        The output of :func:`bayesmix.select_k`.
    title, description : str
        Shown at the top of the page.
    data_sample : pandas.DataFrame, optional
        For a fit that does not store its data (chunked data, a stream): rows to draw
        the data plots with (say a uniform sample of a few thousand); without it those
        plots are left out. The posterior predictive check needs the data and is left
        out for such fits.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.
    """
    if em_fit is None and nuts_fit is None:
        raise InvalidParameterError("write_report needs em_fit, nuts_fit or both; got neither.")
    final = check_out_dir(out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        _write_report_files(out, em_fit, nuts_fit, k_table, title, description, data_sample)
        if not final.exists():
            out.chmod(0o777 & ~umask())  # mkdtemp creates 0700; give the usual mode
            os.replace(out, final)  # the whole folder at once
        else:  # an existing folder: its other files stay, the report's are replaced
            for path in sorted(out.iterdir()):
                os.replace(path, final / path.name)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    report = final / "report.html"
    _log.info("wrote the report to %s", report)
    return report


def _write_report_files(
    out: Path,
    em_fit: Any,
    nuts_fit: Any,
    k_table: pd.DataFrame | None,
    title: str,
    description: str,
    data_sample: pd.DataFrame | None = None,
) -> None:
    """Write every file of the report into the folder ``out``."""
    main = nuts_fit if nuts_fit is not None else em_fit
    body: list[str] = [f"<h1>{html.escape(title)}</h1>"]
    if description:
        body.append(f"<p>{html.escape(description)}</p>")
    stored = "observed_data" in main.idata.children
    if stored:
        n_obs = main.idata["observed_data"].sizes["obs"]
    else:  # chunked data or a stream: the size is in the data source record
        source = json.loads(main.idata.attrs.get("data_source", "{}"))
        n_obs = int(source.get("shape", [source.get("weight_seen", 0)])[0])
    body.append(
        f'<p class="meta">{type(main).__name__}({html.escape(_params(main))}); '
        f"{n_obs} observations of {main.n_features_in_} feature(s) "
        f"{html.escape(str(main.feature_names_in_))}. Written "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC by bayesmix "
        f"{html.escape(main.idata.attrs.get('bayesmix_version', '?'))}.</p>"
    )

    body.append("<h2>Data and fitted components</h2>")
    if main.plot_kind == "regression" and stored:  # a mixture of regressions
        path = _save_figure(plot_regression(main), out / "regression.png")
        body.append(
            _img(path, "Data by most probable component, each component's regression (EM dashed).")
        )
        if getattr(main, "concomitant", False):
            path = _save_figure(plot_concomitant(main), out / "concomitant.png")
            body.append(_img(path, "The mixing proportions as a function of a covariate."))
        path = _save_figure(plot_responsibilities(main), out / "responsibilities.png")
        body.append(_img(path, "Classification uncertainty of the observations."))
    elif stored or data_sample is not None:
        shown = "Data" if stored else f"A uniform sample of {len(data_sample)} rows"
        path = _save_figure(plot_components(main, data_sample), out / "components.png")
        body.append(_img(path, f"{shown} with the fitted mixture (draws faint, EM dashed)."))
        path = _save_figure(plot_responsibilities(main, data_sample), out / "responsibilities.png")
        body.append(_img(path, f"Classification uncertainty ({shown.lower()})."))
    else:
        body.append("<p>The fit does not store its data and no sample was given: no plots.</p>")
    if stored:
        path = _save_figure(plot_ppc(main, random_seed=0), out / "ppc.png")
        body.append(
            _img(path, "Posterior predictive check: density of the data (black) and replicates.")
        )

    if nuts_fit is not None:
        body.append("<h2>Posterior summary</h2>")
        body.append(_warnings_block(nuts_fit))
        summary = nuts_fit.summary()
        summary.to_csv(out / "summary.csv")
        body.append(_table(summary))
        body.append("<h2>Sampler diagnostics</h2>")
        body.append(_table(_diagnostics(nuts_fit)))
        caption = (
            "Marginal posterior (left) and trace (right) of every chain: one row per "
            "variable and feature, one colour per component, one line style per chain."
        )
        figures = [("trace", plot_trace, caption)]
        if nuts_fit.idata["posterior"].sizes["chain"] > 1:
            caption = (
                "Rank histograms: all draws of a parameter ranked together, one line per "
                "chain. When the chains agree every line stays near the dashed expected "
                "count, mostly inside the grey band (94% of the bins of uniform ranks)."
            )
            figures.append(("rank", plot_rank, caption))
        elif _is_laplace(nuts_fit):
            body.append(
                "<p>Laplace + PSIS: independent draws resampled by their importance "
                "weights, so no R-hat and no rank plots; PSIS's k-hat above says whether "
                "the approximation can be trusted (below 0.5 reliable, above 0.7 not).</p>"
            )
        else:
            body.append("<p>One chain: no R-hat and no rank plots (they compare chains).</p>")
        for name, plot, caption in figures:
            path = _save_figure(plot(nuts_fit), out / f"{name}.png")
            body.append(_img(path, caption))
        nuts_fit.save(out / "fit.nc")
    else:
        summary = em_fit.summary()
        summary.to_csv(out / "summary.csv")
        body.append("<h2>EM estimate</h2>")
        body.append(_table(summary))  # one column, "estimate": EM gives no sd

    if em_fit is not None:
        em_fit.save(out / ("fit_em.nc" if nuts_fit is not None else "fit.nc"))
        stats = em_fit.idata["em_stats"].attrs
        body.append(
            f'<p class="meta">EM: log-likelihood {stats["log_likelihood"] * n_obs:.3f} after '
            f"{stats['n_iter']} iterations (converged: {bool(stats['converged'])}), best of "
            f"{stats['n_init']} restarts.</p>"
        )

    if em_fit is not None and nuts_fit is not None:
        body.append("<h2>EM against MCMC</h2>")
        table = compare_fits(em_fit, nuts_fit)
        table.to_csv(out / "compare.csv")
        fit_level = pd.DataFrame({"value": pd.Series(table.attrs.get("fit", {}), dtype=object)})
        body.append(_table(fit_level))
        body.append(_table(table))
        path = _save_figure(plot_compare(nuts_fit, em_fit), out / "compare.png")
        body.append(_img(path, "Posterior of every parameter, EM estimate marked."))

    if k_table is not None:
        body.append("<h2>Choosing the number of components</h2>")
        k_table.to_csv(out / "select_k.csv", index=False)
        body.append(_k_choice(k_table))
        body.append(_k_tables(k_table))
        path = _save_figure(plot_select_k(k_table), out / "select_k.png")
        body.append(_img(path, "BIC and ICL (lower is better), LOO elpd (higher is better)."))

    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )
    (out / "report.html").write_text(page, encoding="utf-8")


def _k_choice(k_table: pd.DataFrame) -> str:
    """Return the HTML of the K each criterion chose, why, and the rule of ``select_k``."""
    best = k_table.attrs.get("best", {})
    reasons = k_table.attrs.get("reason", {})
    items = "".join(
        f"<li><b>{html.escape(name.upper())}</b>: {html.escape(reasons.get(name, f'K={k}'))}</li>"
        for name, k in best.items()
    )
    rule = k_table.attrs.get("rule")
    rule_text = f'<p class="meta">Rule: {html.escape(rule)}</p>' if rule else ""
    flagged = any(
        (k_table[c].fillna("") != "").any() for c in ("em_problems", "loo_problems") if c in k_table
    )
    warn = (
        '<p class="warn">Some fits failed the checks (the <code>em_problems</code> / '
        "<code>loo_problems</code> columns): no criterion chose them.</p>"
        if flagged
        else ""
    )
    return f"<ul>{items}</ul>{rule_text}{warn}"


def _params(fit: Any) -> str:
    params = fit.get_params()
    return ", ".join(f"{key}={value!r}" for key, value in params.items() if key != "priors")
