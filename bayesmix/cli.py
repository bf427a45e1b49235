"""The ``bayesmix`` command line: ``demo``, ``fit``, ``select`` and ``simulate``.

Every command writes its results to a folder (``--out``) with a self-contained
``report.html``. Bad input (a missing file or column, a non-numeric column, a bad
option) is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from bayesmix import _progress
from bayesmix.exceptions import BayesmixError, DataError, InvalidParameterError
from bayesmix.families import FAMILIES
from bayesmix.nuts import NUTS_SAMPLERS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["main", "parse_components"]


def parse_components(text: str) -> list[int]:
    """Parse ``"3"``, ``"1..6"``, ``"1-6"`` or ``"2,3,5"`` into a list of K."""
    try:
        for sep in ("..", "-"):
            if sep in text:
                low, high = (int(part) for part in text.split(sep))
                return list(range(low, high + 1))
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--components must be an int, a range like 1..6, or a list like 2,3,5; got {text!r}"
        ) from None


def _read_csv(args: argparse.Namespace, console: Any) -> pd.DataFrame:
    """Read the data file of ``fit`` or ``select`` (dialect detected, header checked)."""
    from bayesmix._csv import read_data_csv

    columns = [name.strip() for name in (args.columns or "").split(",") if name.strip()]
    frame = read_data_csv(
        args.data, columns=columns, header=args.header, sep=args.sep, decimal=args.decimal
    )
    console.print(
        f"Data: {frame.shape[0]} rows of {Path(args.data).name}, columns {list(frame.columns)}"
    )
    return frame


def _sampler_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "target_accept": args.target_accept,
        "nuts_sampler": args.nuts_sampler,
        "progressbar": True,
    }


def _family(args: argparse.Namespace) -> Any:
    """Return the model class chosen with ``--family`` (from the family registry)."""
    return FAMILIES[args.family]


def _spec(args: argparse.Namespace, k: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"n_components": k, "random_state": args.seed}
    if "covariance_type" in _family(args)._param_names():
        spec["covariance_type"] = args.covariance
    if "missing" in _family(args)._param_names():
        spec["missing"] = args.missing
    return spec


def _describe(args: argparse.Namespace) -> str:
    if "covariance_type" in _family(args)._param_names():
        return f"{args.family} mixture ({args.covariance} covariances)"
    return f"{args.family} mixture"


def _fit_both(
    X: pd.DataFrame,
    k: int,
    method: str,
    args: argparse.Namespace,
    console: Any,
    model: Any = None,
    data: tuple = (),
) -> tuple[Any, Any]:
    """Fit EM and/or NUTS (or Laplace) and report on the way.

    The ``--family`` mixture of ``X``, or ``model`` (a class taking ``n_components`` and
    ``random_state``) of ``data`` (its fit's positional arguments: a mixture of
    regressions' X, y, Z).
    """
    if model is None:
        family, spec = _family(args), _spec(args, k)
    else:
        family, spec = model, {"n_components": k, "random_state": args.seed}
    data = data or (X,)
    em = nuts = None
    if method in ("em", "both", "laplace"):
        start = time.perf_counter()
        em = family(**spec).fit(*data, method="em")
        stats = em.idata["em_stats"].attrs
        console.print(
            f"EM: log-likelihood {stats['log_likelihood'] * len(X):.2f} after "
            f"{stats['n_iter']} iterations, best of {stats['n_init']} restarts "
            f"({time.perf_counter() - start:.2f} s)"
        )
    if method in ("nuts", "both"):
        console.print(
            f"NUTS: {args.chains} chains x {args.draws} draws (+{args.tune} tune), "
            "every chain started at the EM estimate ..."
        )
        start = time.perf_counter()
        nuts = family(**spec).fit(*data, method="nuts", **_sampler_kwargs(args))
        attrs = nuts.idata.attrs
        rhat = float(attrs.get("max_rhat", float("nan")))
        rhat_text = f"{rhat:.3f}" if rhat == rhat else "n/a (one chain)"
        console.print(
            f"NUTS: {time.perf_counter() - start:.1f} s (compile + sample); max R-hat "
            f"{rhat_text}, min bulk ESS {attrs['min_ess_bulk']:.0f}, "
            f"divergences {attrs.get('divergences', 0)}, relabelled draws "
            f"{attrs['relabelled_draws']}"
        )
    if method == "laplace":
        console.print("Laplace + PSIS: the mode from the EM estimate, then the draws ...")
        start = time.perf_counter()
        nuts = family(**spec).fit(*data, method="laplace")
        attrs = nuts.idata.attrs
        console.print(
            f"Laplace + PSIS: {time.perf_counter() - start:.1f} s; k-hat "
            f"{attrs['laplace_khat']:.2f} (below 0.7: usable), importance ESS "
            f"{attrs['laplace_ess']:.0f} of {nuts.idata['posterior'].sizes['draw']}"
        )
    return em, nuts


def _rich_table(frame: pd.DataFrame, title: str) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    table.add_column(frame.index.name or "", no_wrap=True)
    for column in frame.columns:
        text = len(frame) > 0 and isinstance(frame[column].iloc[0], str)
        # A header is never cut: a column is at least as wide as its name.
        table.add_column(
            str(column), justify="left" if text else "right", min_width=len(str(column))
        )
    for name, row in frame.iterrows():
        cells = [
            Text(f"{value:.4g}" if isinstance(value, float | np.floating) else str(value))
            for value in row.to_numpy()
        ]
        table.add_row(Text(str(name)), *cells)
    return table


def _print_table(console: Any, frame: pd.DataFrame, title: str) -> None:
    """Print ``frame`` as a table, split by columns into tables that fit the console.

    Each part repeats the index column, so that a wide table reads as a few whole
    tables rather than one whose columns are squeezed to a few characters.
    """
    from rich.measure import Measurement

    def width(columns: list[Any]) -> int:
        table = _rich_table(frame[columns], title)
        unbounded = console.options.update_width(1_000_000)  # the width it wants
        return Measurement.get(console, unbounded, table).maximum

    parts: list[list[Any]] = [[]]
    for column in frame.columns:
        if parts[-1] and width([*parts[-1], column]) > console.width:
            parts.append([])
        parts[-1].append(column)
    for number, columns in enumerate(parts, start=1):
        suffix = f" ({number} of {len(parts)})" if len(parts) > 1 else ""
        console.print(_rich_table(frame[columns], title + suffix))


_CONSOLE: Any = None  # the running command's console (main sets it)


def _console() -> Any:
    """Return the command's console: one per command, shared with its progress display."""
    if _CONSOLE is not None:
        return _CONSOLE
    from rich.console import Console

    console = Console()
    # Piped or captured output: do not squeeze tables to 80 columns, unless COLUMNS
    # says how wide the output is (rich reads it).
    if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return console
    return Console(width=130)


def _finish(console: Any, report: Path) -> int:
    console.print(f"Report: [bold]{report}[/bold] (figures, summary.csv, fit.nc beside it)")
    return 0


def _show_fits(console: Any, em: Any, nuts: Any, title: str) -> None:
    import bayesmix as bm

    if em is not None and nuts is not None:
        _print_table(console, bm.compare_fits(em, nuts), f"EM estimate vs posterior: {title}")
    else:
        fit = em if em is not None else nuts
        _print_table(console, fit.summary(), title)


def _demo(args: argparse.Namespace) -> int:
    import bayesmix as bm
    from bayesmix.report import check_out_dir

    check_out_dir(args.out)  # before any work: a fit is never lost to a bad --out
    console = _console()
    X = bm.datasets.load_faithful()
    console.print(
        f"[bold]Old Faithful[/bold]: {X.shape[0]} eruptions, columns {list(X.columns)}; "
        "a two-component Gaussian mixture with full covariances."
    )
    args.family, args.covariance, args.missing = "gaussian", "full", "raise"
    em, nuts = _fit_both(X, 2, "both", args, console)
    _show_fits(console, em, nuts, "Old Faithful, K=2, full covariance")
    report = bm.write_report(
        args.out,
        em_fit=em,
        nuts_fit=nuts,
        title="bayesmix demo: Old Faithful, K=2",
        description=(
            "Eruption duration (minutes) and waiting time to the next eruption (minutes) of "
            "272 eruptions of the Old Faithful geyser (R datasets::faithful; Hardle 1991, "
            "Azzalini & Bowman 1990), fitted by EM and by NUTS."
        ),
    )
    return _finish(console, report)


def _is_chunked_file(path: str) -> bool:
    """Whether ``path`` names a Zarr array or a Parquet data set (read with Dask)."""
    from bayesmix.dask import is_chunked

    return is_chunked(path)


@contextlib.contextmanager
def _scheduler(name: str | None) -> Iterator[None]:
    """Run Dask work on ``threads`` (default), ``processes``, ``synchronous`` or a cluster.

    Any other value is the address of a ``distributed`` scheduler (``tcp://host:8786``).
    """
    from bayesmix.dask import _import_dask

    dask, _ = _import_dask()
    if name in (None, "threads", "processes", "synchronous"):
        with dask.config.set(scheduler=name or "threads"):
            yield
        return
    try:
        from distributed import Client
    except ImportError as err:  # pragma: no cover - the dask extra installs it
        raise ImportError(
            f'--scheduler ADDRESS needs pip install "bayesmix[dask]" ({err})'
        ) from err
    try:
        client = Client(name, timeout="10s")
    except OSError as err:
        raise InvalidParameterError(
            f"--scheduler {name!r}: cannot reach a Dask scheduler there ({err}). Pass "
            "threads, processes, synchronous or the address of a running scheduler, such "
            "as tcp://127.0.0.1:8786."
        ) from err
    with client:
        yield


@contextlib.contextmanager
def _pass_progress(console: Any, what: str = "EM") -> Iterator[None]:
    """Show every data pass: a live line in a terminal, one line per pass otherwise."""
    from bayesmix.dask import on_pass

    started = time.perf_counter()
    passes = [0]
    if console.is_terminal:
        with _progress.task(f"{what}: reading the data") as update:

            def advance(seconds: float) -> None:
                passes[0] += 1
                update(passes[0], f"pass {passes[0]}: {seconds:.2f} s")

            with on_pass(advance):
                yield
        return

    def line(seconds: float) -> None:
        passes[0] += 1
        console.print(
            f"{what} pass {passes[0]}: {seconds:.2f} s "
            f"({time.perf_counter() - started:.1f} s in all)"
        )

    with on_pass(line):
        yield


def _fit_chunked(args: argparse.Namespace, console: Any) -> int:
    """``bayesmix fit data.zarr|data.parquet``: EM over the chunks, nothing loaded whole."""
    import bayesmix as bm
    from bayesmix.dask import as_chunked
    from bayesmix.em.chunked import sample_indices

    method = args.method or "em"
    if method not in ("em", "laplace", "nuts"):
        raise InvalidParameterError(
            f"{args.data} is read in chunks (Zarr / Parquet), which EM, Laplace + PSIS and "
            f"NUTS fit in passes; got --method {method}. Use --method em, laplace or nuts "
            "(one at a time)."
        )
    k = _one_k(args)
    data: Any = args.data
    columns = [name.strip() for name in (args.columns or "").split(",") if name.strip()]
    if columns:
        if Path(args.data).suffix.lower() == ".zarr":
            raise InvalidParameterError(
                "--columns selects columns of a Parquet data set; a Zarr array has no column "
                "names. Write the columns you need to their own array."
            )
        import dask.dataframe as dd

        data = dd.read_parquet(args.data, columns=columns)
    family, spec = _family(args), _spec(args, k)
    with _scheduler(args.scheduler):
        started = time.perf_counter()
        if method == "nuts":  # nutpie's own progress bar; a Dask pass per gradient
            em = family(**spec).fit(data, method="nuts", **_sampler_kwargs(args))
        else:
            with _pass_progress(console, "EM" if method == "em" else "EM / Laplace"):
                em = family(**spec).fit(data, method=method)
        stats = {
            "log_likelihood": em.em_.log_likelihood,
            "n_iter": em.em_.n_iter,
            "n_init": len(em.em_.init_log_likelihoods),
        }
        source = json.loads(em.idata.attrs["data_source"])
        n_rows = source["shape"][0]
        console.print(
            f"EM: {n_rows} rows in {source['n_chunks']} chunks, mean log-likelihood "
            f"{stats['log_likelihood']:.6g} after {stats['n_iter']} iterations, best of "
            f"{stats['n_init']} restarts ({time.perf_counter() - started:.1f} s)"
        )
        if method == "laplace":
            attrs = em.idata.attrs
            console.print(
                f"Laplace + PSIS: k-hat {attrs['laplace_khat']:.2f} (below 0.7: usable), "
                f"importance ESS {attrs['laplace_ess']:.0f} of "
                f"{em.idata['posterior'].sizes['draw']} "
                f"({time.perf_counter() - started:.1f} s with EM)"
            )
        if method == "nuts":
            stats_attrs = em.idata["sample_stats"].attrs
            console.print(
                f"NUTS: {stats_attrs['gradients']} gradients, each a pass over the chunks "
                f"({1e3 * stats_attrs['seconds_per_gradient']:.1f} ms each; "
                f"{time.perf_counter() - started:.1f} s with EM)"
            )
        chunked = as_chunked(data, allow_bool=family._accepts_bool)
        values, _ = chunked.rows(sample_indices(n_rows, np.random.default_rng(0), 5_000))
    import pandas as pd

    sample = pd.DataFrame(values, columns=chunked.features)
    title = f"{Path(args.data).name}, K={k}, {_describe(args)}"
    _print_table(console, em.summary(), title)
    how = {"em": "EM", "laplace": "EM and Laplace + PSIS", "nuts": "EM and NUTS"}[method]
    report = bm.write_report(
        args.out,
        **({"em_fit": em} if method == "em" else {"nuts_fit": em}),
        title=f"bayesmix fit: {Path(args.data).name}, K={k}",
        description=f"A {_describe(args)} fitted by {how} to {args.data} ({n_rows} rows, "
        f"read in chunks); the plots show a uniform sample of {len(sample)} rows.",
        data_sample=sample,
    )
    return _finish(console, report)


def _one_k(args: argparse.Namespace) -> int:
    if len(args.components) != 1:
        raise DataError(
            f"fit takes one --components value; got {args.components}. "
            "Use `bayesmix select` to compare several K."
        )
    return args.components[0]


def _fit(args: argparse.Namespace) -> int:
    import bayesmix as bm
    from bayesmix.report import check_out_dir

    check_out_dir(args.out)  # before any work: a fit is never lost to a bad --out
    console = _console()
    if _is_chunked_file(args.data):
        return _fit_chunked(args, console)
    args.method = args.method or "both"
    X = _read_csv(args, console)
    k = _one_k(args)
    if args.response is not None:
        em, nuts, what = _fit_regression(args, X, k, console)
    else:
        (em, nuts), what = _fit_both(X, k, args.method, args, console), _describe(args)
    _show_fits(console, em, nuts, f"{Path(args.data).name}, K={k}, {what}")
    report = bm.write_report(
        args.out,
        em_fit=em,
        nuts_fit=nuts,
        title=f"bayesmix fit: {Path(args.data).name}, K={k}",
        description=f"A {what} fitted to {args.data}.",
    )
    return _finish(console, report)


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _fit_regression(
    args: argparse.Namespace, frame: pd.DataFrame, k: int, console: Any
) -> tuple[Any, Any, str]:
    """``fit --response``: a mixture of regressions of one column on others.

    Returns the EM and NUTS (or Laplace) fits and what was fitted, in words.
    """
    import functools

    import bayesmix as bm

    concomitant = _names(args.concomitant)
    predictors = _names(args.predictors) or [
        c for c in frame.columns if c != args.response and c not in concomitant
    ]
    missing = [c for c in [args.response, *predictors, *concomitant] if c not in frame.columns]
    if missing:
        raise DataError(
            f"columns {missing} are not in {Path(args.data).name}, whose columns are "
            f"{list(frame.columns)}. Name them as in the header row."
        )
    data = (frame[predictors], frame[args.response])
    if concomitant:
        data += (frame[concomitant],)
    model = functools.partial(
        bm.MixtureRegression, family=args.family, concomitant=bool(concomitant)
    )
    em, nuts = _fit_both(frame, k, args.method, args, console, model=model, data=data)
    what = f"mixture of {args.family} regressions of {args.response} on {predictors}"
    if concomitant:
        what += f", proportions by {concomitant}"
    return em, nuts, what


# The tables ``select`` prints, EM's and NUTS's, and their columns (the CSV has them
# all); each problems column becomes a usable yes/no, and the reason lines below the
# tables name every problem.
_SELECT_TABLES = {
    "Choosing K: EM": {"bic": "bic", "icl": "icl", "em_problems": "usable"},
    "Choosing K: NUTS": {
        "elpd_loo": "elpd_loo",
        "elpd_diff": "elpd_diff",
        "dse": "dse",
        "max_rhat": "max_rhat",
        "min_ess_bulk": "ess_bulk",
        "divergences": "divergent",
        "n_bad_pareto_k": "bad_k",
        "loo_problems": "usable",
    },
}


def _covariance_grid(value: str) -> str | list[str]:
    """``--covariance`` of ``select``: one type, ``all``, or a comma-separated list."""
    return value.split(",") if "," in value else value


def _reported_k(table: pd.DataFrame) -> tuple[Any, str]:
    """Return the K whose fits the ``select`` report shows, and the criterion that chose it.

    Over several covariance types, the chosen ``(covariance type, K)``.

    LOO's choice when there is one (it judges the posterior the report shows), else BIC's.
    """
    best = table.attrs["best"]
    for criterion in ("loo", "bic"):
        if best.get(criterion) is not None:
            return best[criterion], criterion.upper()
    return None, ""


def _select(args: argparse.Namespace) -> int:
    import bayesmix as bm
    from bayesmix.report import check_out_dir

    out = check_out_dir(args.out)  # before any work: a fit is never lost to a bad --out
    covariance = _covariance_grid(args.covariance)
    console = _console()
    X = _read_csv(args, console)
    console.print(f"Comparing K in {args.components} ({args.method}) ...")
    table = bm.select_k(
        X,
        ks=args.components,
        method=args.method,
        covariance_type=covariance,
        model=_family(args),
        random_state=args.seed,
        **({} if args.method == "em" else _sampler_kwargs(args)),
    )
    grid = "covariance_type" in table
    indexed = table.set_index(["covariance_type", "n_components"] if grid else "n_components")
    for column in ("em_problems", "loo_problems"):
        if column in indexed:
            indexed[column] = np.where(indexed[column] == "", "yes", "no")
    for title, names in _SELECT_TABLES.items():
        columns = [c for c in names if c in indexed]
        if columns:
            shown = indexed[columns].rename(columns=names)
            if grid:
                shown.index = [f"{name} K={k}" for name, k in shown.index]
            shown = shown.rename_axis("covariance, K" if grid else "K")
            _print_table(console, shown, title)
    console.print(f"Rule: {table.attrs['rule']}", markup=False, style="dim")
    for criterion, reason in table.attrs["reason"].items():
        console.print(f"{criterion.upper()}: {reason}", markup=False, soft_wrap=True)
    chosen, by = _reported_k(table)
    if chosen is None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "select_k.csv", index=False)
        console.print(
            f"No K has a usable fit, so there is no fit to report; the table is in "
            f"{out / 'select_k.csv'}. Try fewer K, more --tune and --draws, or a higher "
            "--target-accept.",
            markup=False,
        )
        return 1
    shown_model = f"K={chosen}"
    if grid:  # (covariance type, K): the report shows that model's fits
        args.covariance, chosen = chosen
        shown_model = f"covariance {args.covariance}, K={chosen}"
    console.print(f"The report shows the fits for {shown_model} (chosen by {by}).", markup=False)
    em, nuts = _fit_both(X, chosen, args.method, args, console)
    report = bm.write_report(
        args.out,
        em_fit=em,
        nuts_fit=nuts,
        k_table=table,
        title=f"bayesmix select: {Path(args.data).name}, K={chosen}",
        description=(
            f"Choosing the number of components of a {_describe(args)} of {args.data}; "
            f"the fits shown are those of K={chosen}, chosen by {by}."
        ),
    )
    return _finish(console, report)


def _simulate(args: argparse.Namespace) -> int:
    import pandas as pd

    import bayesmix as bm

    rng = np.random.default_rng(args.seed)
    k, d = args.components[0], args.features
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(0.0, args.separation, size=(k, d))
    factors = rng.normal(size=(k, d, d)) / np.sqrt(d)
    covariances = factors @ np.swapaxes(factors, 1, 2) + 0.3 * np.eye(d)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth = {"weights": weights, "means": means, "covariances": covariances}
    if out.suffix.lower() == ".zarr":
        return _simulate_zarr(args, out, truth)
    X, z = bm.datasets.make_mixture(args.n_samples, weights, means, covariances, random_state=rng)
    # The features only: labels in the data file would be fitted as a feature.
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(d)])
    frame.to_csv(out, index=False)
    labels_path = out.with_suffix(".labels.csv")
    pd.DataFrame({"component": z}).to_csv(labels_path, index=False)
    truth_path = out.with_suffix(".truth.json")
    truth_path.write_text(json.dumps({key: value.tolist() for key, value in truth.items()}))
    print(
        f"wrote {len(frame)} rows of {d} features to {out}, the component of each row to "
        f"{labels_path} and the truth to {truth_path}"
    )
    return 0


def _simulate_zarr(args: argparse.Namespace, out: Path, truth: dict[str, np.ndarray]) -> int:
    """Write simulated data to Zarr chunk by chunk (never whole in memory)."""
    import bayesmix as bm
    from bayesmix.dask import _import_dask

    dask, _ = _import_dask()
    X, z = bm.datasets.make_mixture_chunked(
        args.n_samples,
        truth["weights"],
        truth["means"],
        truth["covariances"],
        chunk_rows=min(args.n_samples, 1_000_000),
        random_state=args.seed,
    )
    labels_path = out.with_suffix(".labels.zarr")
    started = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        dask.compute(
            X.to_zarr(str(out), overwrite=True, compute=False),
            z.to_zarr(str(labels_path), overwrite=True, compute=False),
        )
    truth_path = out.with_suffix(".truth.json")
    truth_path.write_text(json.dumps({key: value.tolist() for key, value in truth.items()}))
    print(
        f"wrote {args.n_samples} rows of {X.shape[1]} features to {out} in "
        f"{len(X.chunks[0])} chunks ({time.perf_counter() - started:.1f} s), the component of "
        f"each row to {labels_path} and the truth to {truth_path}"
    )
    return 0


def _add_sampler_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--draws", type=int, default=1000, help="posterior draws per chain")
    parser.add_argument("--tune", type=int, default=1000, help="tuning steps per chain")
    parser.add_argument("--chains", type=int, default=4, help="number of chains")
    parser.add_argument(
        "--target-accept",
        type=float,
        default=0.9,
        help="NUTS target acceptance rate (default 0.9); raise it (0.95, 0.99) against divergences",
    )
    parser.add_argument(
        "--nuts-sampler",
        choices=NUTS_SAMPLERS,
        default="nutpie",
        help="NUTS implementation (default nutpie); numpyro and blackjax run on JAX (a GPU "
        'if JAX finds one) and need pip install "bayesmix[jax]"',
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of EM and NUTS")


def _separator(text: str) -> str:
    """Parse ``--sep``: one character, or ``tab`` (or a backslash and t) for a tab."""
    if text.lower() in ("tab", "\\t"):
        return "\t"
    if len(text) != 1:
        raise argparse.ArgumentTypeError(
            f"--sep must be one character such as ';' or ',', or 'tab'; got {text!r}"
        )
    return text


def _add_data_options(parser: argparse.ArgumentParser, components_help: str) -> None:
    parser.add_argument(
        "data",
        help="CSV file, one row per observation, with a header row of column names (or "
        "--no-header); the separator (',', ';', tab, '|') and the decimal mark ('.' or ',') "
        "are detected. fit also reads a Zarr array (.zarr) or a Parquet data set (.parquet, "
        "or a folder of them) in chunks, with EM",
    )
    parser.add_argument(
        "--components", "-k", type=parse_components, required=True, help=components_help
    )
    parser.add_argument("--columns", help="comma-separated columns to use (default: all)")
    parser.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--no-header: the file has no header row (the columns are then x0, x1, ...); "
        "--header: its first row is the column names even if they look like numbers "
        "(default: a header row is required and a first row of numbers is refused)",
    )
    parser.add_argument(
        "--sep", type=_separator, help="field separator, e.g. ';' or tab (default: detected)"
    )
    parser.add_argument(
        "--decimal",
        choices=[".", ","],
        metavar="MARK",
        help="decimal mark of the numbers, . or , (default: detected)",
    )
    parser.add_argument(
        "--covariance",
        default="full",
        help=(
            "covariance type of the gaussian and student-t families: full, tied, diag, "
            "spherical, or for the gaussian one of mclust's models (EII ... VVV; E, V for "
            "one feature); select also takes several, comma-separated, or 'all' (mclust's "
            "grid of models and K, with --method em) (default: full)"
        ),
    )
    parser.add_argument(
        "--missing",
        default="raise",
        choices=["raise", "model"],
        help="missing values (empty cells, NaN): 'raise' refuses them (default); 'model' "
        "fits each row's observed values, missing at random (EM, NUTS and Laplace in "
        "memory; EM and Laplace on Zarr or Parquet data)",
    )
    parser.add_argument(
        "--family",
        default="gaussian",
        choices=list(FAMILIES),
        help="mixture family (default: gaussian); poisson and negative-binomial need counts, "
        "bernoulli 0/1",
    )


class _ArgumentError(Exception):
    """A command line that argparse cannot parse (reported in one line by :func:`main`)."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (with a pointer to --help).

    argparse prints the usage block and then the error; a bad option would be many lines
    of usage around one of error. Subcommands' parsers are of this class too (argparse
    makes them of the class of their parent).
    """

    def error(self, message: str) -> NoReturn:
        """Raise the error for :func:`main` to print on one line (exit code 2)."""
        raise _ArgumentError(f"{message} (`{self.prog} --help` lists the options)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bayesmix", description="Bayesian mixture models on PyMC, with exact EM.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what bayesmix does")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="Old Faithful: EM and NUTS (K=2), compared, with a report"
    )
    _add_sampler_options(demo)
    demo.add_argument("--out", default="bayesmix-demo", help="report folder (bayesmix-demo)")
    demo.set_defaults(run=_demo)

    fit = commands.add_parser(
        "fit", help="fit a mixture (--family) to a CSV file, a Zarr array or a Parquet data set"
    )
    _add_data_options(fit, "number of components K")
    fit.add_argument(
        "--method",
        choices=["nuts", "em", "both", "laplace"],
        help="default: both (EM and NUTS) for a CSV file, em for Zarr / Parquet (read in "
        "chunks); laplace: EM and the Laplace + PSIS posterior (fast at large N); nuts on "
        "Zarr / Parquet: each gradient one pass over the chunks (exact, slow per draw)",
    )
    fit.add_argument(
        "--scheduler",
        help="Zarr / Parquet data: Dask scheduler, threads (default), processes, synchronous, "
        "or the address of a distributed scheduler (tcp://host:8786)",
    )
    fit.add_argument(
        "--response",
        help="fit a mixture of regressions of this column (--family gaussian, poisson, "
        "bernoulli or negative-binomial) on --predictors",
    )
    fit.add_argument(
        "--predictors",
        help="with --response: comma-separated predictor columns (default: the others)",
    )
    fit.add_argument(
        "--concomitant",
        help="with --response: comma-separated columns that the mixing proportions depend "
        "on (concomitant variables)",
    )
    _add_sampler_options(fit)
    fit.add_argument("--out", required=True, help="report folder")
    fit.set_defaults(run=_fit)

    select = commands.add_parser(
        "select",
        help="choose K by BIC, ICL and LOO, among the fits that pass the checks (non-"
        "degenerate EM; NUTS without divergences, R-hat <= 1.01, ESS >= 100 per chain, "
        "reliable LOO); LOO takes the smallest K within max(2 SE, 4) of the best elpd",
    )
    _add_data_options(select, "the K to compare: 1..6, 1-6 or 2,3,5")
    select.add_argument("--method", default="both", choices=["nuts", "em", "both"])
    _add_sampler_options(select)
    select.add_argument("--out", required=True, help="report folder")
    select.set_defaults(run=_select)

    simulate = commands.add_parser(
        "simulate",
        help="draw data from a random Gaussian mixture (the generative story); the labels "
        "go to a file of their own",
    )
    simulate.add_argument("--n-samples", "-n", type=int, default=500)
    simulate.add_argument("--components", "-k", type=parse_components, default=[3])
    simulate.add_argument("--features", "-d", type=int, default=2)
    simulate.add_argument(
        "--separation", type=float, default=4.0, help="sd of the component means (default 4)"
    )
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument(
        "--out",
        required=True,
        help="CSV file to write, the features only (x0, x1, ...); the component of each row "
        "goes to <name>.labels.csv and the true parameters to <name>.truth.json beside it. "
        "A name ending in .zarr writes a Zarr array chunk by chunk (any size; labels to "
        "<name>.labels.zarr; needs the dask extra)",
    )
    simulate.set_defaults(run=_simulate)
    return parser


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """Show a warning on the command line as a line of its own, without a source line."""
    return f"bayesmix: warning ({category.__name__}): {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bayesmix`` command; return the exit code (2 for bad input)."""
    try:
        args = _parser().parse_args(argv)
    except _ArgumentError as err:
        print(f"bayesmix: error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    formatwarning = warnings.formatwarning
    warnings.formatwarning = _format_warning
    global _CONSOLE
    _CONSOLE = None
    _CONSOLE = _console()
    try:
        # One progress display for the whole command: select_k's K, NUTS's draws and EM's
        # data passes are rows of one live display in a terminal, lines in a log.
        with _progress.display(_CONSOLE):
            return args.run(args)
    except (BayesmixError, ValueError, OSError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        # The API's advice in the command line's words.
        message = message.replace("pass missing='model'", "pass --missing model")
        print(f"bayesmix: error: {message}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatwarning
        _CONSOLE = None


if __name__ == "__main__":
    sys.exit(main())
