"""Slow: the benchmark harness runs end to end in quick mode (it checks the harness only)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def test_quick_benchmark_writes_results(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["mode"] == "quick"
    peers = {(row["workload"], row["peer"]) for row in results["rows"]}
    assert len(peers) == 2 * 4
    for row in results["rows"]:
        metrics = row["metrics"]
        assert metrics["total_s"] > 0
        if row["peer"] in ("bayesmix", "pymc-plain"):
            assert metrics["min_ess_bulk"] > 0
            assert metrics["max_rhat"] >= 0.99
        else:
            assert metrics["log_likelihood"] < 0
    # The two EM implementations reach the same maximum on these separated data.
    for workload in results["workloads"]:
        em = {r["peer"]: r["metrics"] for r in results["rows"] if r["workload"] == workload}
        ours, theirs = em["bayesmix-em"]["log_likelihood"], em["sklearn-em"]["log_likelihood"]
        assert abs(ours - theirs) < 1e-3 * abs(theirs)
    table = (tmp_path / "latest.md").read_text()
    assert "| workload | peer |" in table
