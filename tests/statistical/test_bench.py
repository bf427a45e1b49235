"""Slow: the benchmark harness runs end to end in quick mode (it checks the harness only)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"
QUICK_CMD = [sys.executable, str(BENCH), "--quick", "--out"]


def test_quick_benchmark_writes_results(tmp_path):
    done = subprocess.run(
        [*QUICK_CMD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["mode"] == "quick"
    peers = {(row["workload"], row["peer"]) for row in results["rows"]}
    numpyro = importlib.util.find_spec("numpyro") is not None
    assert len(peers) == 2 * (4 + numpyro)
    assert bool(results["skipped"]) != numpyro  # a missing peer is stated, not dropped
    for row in results["rows"]:
        metrics = row["metrics"]
        assert metrics["total_s"] > 0
        if row["peer"] in ("bayesmix", "pymc-plain", "pymc-numpyro"):
            assert metrics["min_ess_bulk"] > 0
            assert metrics["max_rhat"] >= 0.99
            # A NUTS draw costs 1 to 2^10 - 1 leapfrog steps (maximum tree depth 10).
            assert 1 <= metrics.get("steps_per_draw", 1) <= 1023
            if row["peer"] == "bayesmix":
                assert "steps_per_draw" in metrics
        else:
            assert metrics["log_likelihood"] < 0
    # The two EM implementations reach the same maximum on these separated data.
    for workload in results["workloads"]:
        em = {r["peer"]: r["metrics"] for r in results["rows"] if r["workload"] == workload}
        ours, theirs = em["bayesmix-em"]["log_likelihood"], em["sklearn-em"]["log_likelihood"]
        assert abs(ours - theirs) < 1e-3 * abs(theirs)
    table = (tmp_path / "latest.md").read_text()
    assert table.count("| workload | peer |") == 2  # the NUTS and the EM tables
    assert table.count("| 2d-k3-n1e3 |") == len(peers) // 2

    # Re-running one peer replaces its rows and keeps the others.
    before = {(r["workload"], r["peer"]): r["metrics"] for r in results["rows"]}
    done = subprocess.run(
        [*QUICK_CMD, str(tmp_path), "--peers", "sklearn-em", "--update"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    updated = json.loads((tmp_path / "latest.json").read_text())
    after = {(r["workload"], r["peer"]): r["metrics"] for r in updated["rows"]}
    assert set(after) == set(before)
    assert len(updated["commands"]) == 2
    for key, metrics in after.items():
        if key[1] != "sklearn-em":
            assert metrics == before[key]
