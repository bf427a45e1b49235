"""What the benchmark reports share: the run's metadata and a Markdown table."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable, Sequence
from importlib.metadata import version


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
