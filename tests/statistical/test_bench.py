"""Slow: the benchmark harness runs end to end in quick mode (it checks the harness only)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"
QUICK_CMD = [sys.executable, str(BENCH), "--quick", "--out"]


# The harness is checked without the NumPyro peer: it samples the same PyMC model as
# pymc-plain through PyMC's JAX route, adds about a minute to the slow suite, and the
# JAX samplers have their own statistical tests (tests/statistical/test_jax_samplers.py).
HARNESS_PEERS = "bayesmix,pymc-plain,pymc-plain-em,bayesmix-em,sklearn-em"
# One of the two quick workloads: the harness is the same for both (CI time).
WORKLOAD = "2d-k3-n1e3"


def test_quick_benchmark_writes_results(tmp_path):
    done = subprocess.run(
        [*QUICK_CMD, str(tmp_path), "--peers", HARNESS_PEERS, "--workloads", WORKLOAD],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["mode"] == "quick"
    peers = {(row["workload"], row["peer"]) for row in results["rows"]}
    numpyro = importlib.util.find_spec("numpyro") is not None
    assert len(peers) == 5
    assert bool(results["skipped"]) != numpyro  # a missing peer is stated, not dropped
    for row in results["rows"]:
        metrics = row["metrics"]
        assert metrics["total_s"] > 0
        if row["peer"] in ("bayesmix", "pymc-plain", "pymc-plain-em", "pymc-numpyro"):
            assert metrics["min_ess_bulk"] > 0
            assert metrics["max_rhat"] >= 0.99
            # A NUTS draw costs 1 to 2^10 - 1 leapfrog steps (maximum tree depth 10).
            assert 1 <= metrics.get("steps_per_draw", 1) <= 1023
            if row["peer"] == "bayesmix":
                assert "steps_per_draw" in metrics
            if row["peer"] == "pymc-plain-em":
                assert 0 < metrics["em_s"] < metrics["total_s"]
        else:
            assert metrics["log_likelihood"] < 0
    # The two EM implementations reach the same maximum on these separated data.
    for workload in results["workloads"]:
        em = {r["peer"]: r["metrics"] for r in results["rows"] if r["workload"] == workload}
        ours, theirs = em["bayesmix-em"]["log_likelihood"], em["sklearn-em"]["log_likelihood"]
        assert abs(ours - theirs) < 1e-3 * abs(theirs)
    table = (tmp_path / "latest.md").read_text()
    assert table.count("| workload | peer |") == 2  # the NUTS and the EM tables
    assert table.count("| 2d-k3-n1e3 |") == len(peers)
    nuts_table, em_table = table.split("EM (one start")
    assert nuts_table.count("| 2d-k3-n1e3 | pymc-plain-em |") == 1
    assert em_table.count("| 2d-k3-n1e3 |") == 2  # bayesmix-em and sklearn-em only

    # Re-running one peer replaces its rows and keeps the others.
    before = {(r["workload"], r["peer"]): r["metrics"] for r in results["rows"]}
    done = subprocess.run(
        [*QUICK_CMD, str(tmp_path), "--peers", "sklearn-em", "--update", "--workloads", WORKLOAD],
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


def test_em_start_of_the_plain_model_is_sklearns_estimate():
    # pymc-plain-em starts at EM's estimate: the model's means and covariances at that
    # initial point (through its ordered and LKJ transforms) are scikit-learn's, sorted.
    from pymc.initial_point import make_initial_point_fn
    from sklearn.mixture import GaussianMixture

    spec = importlib.util.spec_from_file_location("bench_run", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for n_features, k in ((1, 2), (3, 3)):
        X = bench.make_data(n_features=n_features, n_components=k, n_samples=600)
        em = GaussianMixture(n_components=k, **bench.EM_SETTINGS).fit(X)
        order = np.argsort(em.means_[:, 0])
        model = bench.plain_pymc_model(X, k)
        points = bench.em_initial_points(X, k)
        point = make_initial_point_fn(
            model=model, overrides=points, jitter_rvs=set(), return_transformed=True
        )(0)
        deterministics = model.compile_fn(
            model.replace_rvs_by_values([model["means"], model["covariances"]]),
            inputs=model.value_vars,
            on_unused_input="ignore",
        )
        means, covariances = deterministics(point)
        np.testing.assert_allclose(means, em.means_[order], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(covariances, em.covariances_[order], rtol=1e-8, atol=1e-12)
        assert np.isfinite(model.compile_logp()(point))
