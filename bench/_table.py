"""What the benchmark reports share: the run's metadata, a Markdown table, the files."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run_meta(packages: Iterable[str]) -> dict:
    """Date, machine and the versions of ``packages``: the header of every results file."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "versions": {name: version(name) for name in packages},
    }


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Lines of a Markdown table; a row shorter than the header is padded with empty cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [str(cell) for cell in row] + [""] * (len(header) - len(row))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_results(
    stem: str,
    meta: dict,
    rows: list[dict],
    report: Callable[[list[dict], dict], str],
    folder: Path = RESULTS,
) -> str:
    """Write ``{stem}.json`` (``meta`` and ``rows``) and ``{stem}.md`` in ``folder``.

    The Markdown file is ``report(rows, meta)``, which is returned (to print).
    """
    folder.mkdir(exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    text = report(rows, meta)
    (folder / f"{stem}.md").write_text(text)
    return text
