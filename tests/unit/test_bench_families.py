"""bench/families.py's arithmetic: seconds from the fresh fits, ESS over every seed.

The harness itself (fresh processes, PyMC peers) is run by ``python bench/families.py
--quick``; this checks, without sampling, how its runs are summarised.
"""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "families.py"


@pytest.fixture(scope="module")
def families():
    spec = importlib.util.spec_from_file_location("bench_families", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(seed, ess, rhat, divergences, **seconds):
    run = {"seed": seed, "min_ess_bulk": ess, "max_rhat": rhat, "divergences": divergences}
    return run | seconds


RUNS = [
    _run(0, 100.0, 1.005, 0, total_s=2.0, second_total_s=1.0),  # fresh, clean
    _run(2, 300.0, 1.020, 0, warm_s=0.5),  # R-hat above 1.01
    _run(1, 500.0, 1.001, 1, total_s=4.0, second_total_s=3.0),  # fresh, a divergence
    _run(3, 200.0, 1.000, 0, warm_s=0.4),  # clean
]


def test_summary_takes_seconds_from_fresh_fits_and_ess_from_every_seed(families):
    summary = families.summarise(RUNS)
    assert summary["total_s"] == 3.0  # median of the fresh 2.0 and 4.0, not of warm fits
    assert summary["second_total_s"] == 2.0
    assert summary["min_ess_bulk"] == 250.0  # median of 100, 300, 500, 200
    assert summary["ess_range"] == [100.0, 500.0]
    assert summary["ess_per_s"] == pytest.approx(250.0 / 3.0)
    assert (summary["clean"], summary["runs"], summary["processes"]) == (2, 4, 2)
    assert summary["divergences"] == 1
    assert summary["worst_rhat"] == 1.020
    assert summary["converged"]  # half the runs clean


def test_report_lists_every_seed_in_seed_order(families):
    name = next(iter(families.WORKLOADS))
    ours = [run | {"path": "fused kernel"} for run in RUNS]
    slower = [run | {"min_ess_bulk": run["min_ess_bulk"] / 10} for run in RUNS]
    row = {"workload": name, "bayesmix": ours, "plain": slower, "plain-em": slower}
    meta = {
        "date": "today",
        "machine": "test",
        "python": "3",
        "versions": {},
        "settings": {"chains": 2, "tune": 10, "draws": 10},
        "seeds": 4,
        "processes": 2,
    }
    text = families.report([row], meta)
    assert "100 500 300 200" in text  # seeds 0, 1, 2, 3
    assert "sampler seeds 0-3 in 2 fresh processes" in text
    table_row = next(line for line in text.splitlines() if line.startswith(f"| {name}"))
    assert "| 2/4 (R-hat <= 1.020) |" in table_row
    assert "**10.0x**" in table_row  # the same seconds, a tenth of the ESS
