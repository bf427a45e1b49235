"""Issue 21: the README's commands, run in order as written, give correct results.

The quick start (the first ``python`` block) runs as a script, and the CLI block (the
``bash`` block that starts with ``bayesmix demo``) runs line by line in one folder, as
a user would type them. Three substitutions make the block runnable in a test, and
nothing else is changed: ``data.csv`` and ``data.parquet`` (the user's own files in the
README) are written by the test, ``-n 100000000`` (1.6 GB) becomes ``-n 200000``, and
the cluster address ``tcp://host:8786`` becomes a ``LocalCluster`` on this machine.
The results are then checked against the simulation's truth and the data.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BAYESMIX = Path(sys.executable).with_name("bayesmix")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def _env() -> dict[str, str]:
    return dict(os.environ) | {"MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


def _order(estimate: np.ndarray, truth: np.ndarray) -> list[int]:
    """The order of ``estimate``'s rows that best matches ``truth`` (labels are arbitrary)."""
    best = min(
        itertools.permutations(range(len(truth))),
        key=lambda order: float(np.abs(estimate[list(order)] - truth).sum()),
    )
    return list(best)


def _match(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return estimate[_order(estimate, truth)]


def test_the_quick_start_runs_as_written(tmp_path):
    code = _blocks("python")[0]
    assert code.startswith("import bayesmix as bm")
    scope: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # gm.save("fit.nc") writes here
    try:
        exec(compile(code, "README.md quick start", "exec"), scope)
    finally:
        os.chdir(cwd)
    gm, em, table, X = scope["gm"], scope["em"], scope["table"], scope["X"]
    # Old Faithful's two clusters: short (about 2 min, 55 min wait) and long eruptions.
    np.testing.assert_allclose(np.sort(em.means_[:, 0]), [2.04, 4.29], atol=0.05)
    np.testing.assert_allclose(np.sort(gm.means_[:, 0]), np.sort(em.means_[:, 0]), atol=0.1)
    assert gm.idata.attrs["max_rhat"] <= 1.01
    assert table.attrs["best"]["bic"] in (2, 3)
    k_plus = bm.nonempty_components(scope["sparse"], random_seed=0)
    assert abs(k_plus.sum() - 1) < 1e-9
    loaded = bm.load(tmp_path / "fit.nc")
    np.testing.assert_array_equal(loaded.predict(X), gm.predict(X))


def test_the_cli_block_runs_in_order_as_written(tmp_path):
    from distributed import LocalCluster

    block = next(b for b in _blocks("bash") if b.startswith("bayesmix demo"))
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert [c.split()[1] for c in commands] == [
        "demo", "simulate", "fit", "select", "select", "fit", "fit", "simulate", "fit", "fit",
    ]  # fmt: skip
    rng = np.random.default_rng(0)
    own = pd.DataFrame(
        np.vstack(
            [rng.normal(-3, 1, (100, 3)), rng.normal(0, 1, (100, 3)), rng.normal(3, 1, (100, 3))]
        ),
        columns=["a", "b", "c"],
    )
    own.to_csv(tmp_path / "data.csv", index=False)
    own.to_parquet(tmp_path / "data.parquet")
    # The mixture of regressions' file: two dose-response lines, responders older.
    dose, age = rng.uniform(0, 10, 200), rng.normal(50, 10, 200)
    responder = rng.random(200) < 1 / (1 + np.exp(-(age - 50) / 8))
    outcome = np.where(responder, 1 + 2 * dose, 8 - 0.5 * dose) + rng.normal(0, 0.5, 200)
    trial = pd.DataFrame({"dose": dose, "age": age, "outcome": outcome})
    trial.to_csv(tmp_path / "trial.csv", index=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster:
        for command in commands:
            command = command.replace("-n 100000000", "-n 200000")
            command = command.replace("tcp://host:8786", cluster.scheduler_address)
            argv = [str(BAYESMIX), *shlex.split(command)[1:]]
            result = subprocess.run(
                argv, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=1200
            )
            assert result.returncode == 0, (
                f"{command}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n"
                f"{result.stderr[-3000:]}"
            )
    assert (tmp_path / "bayesmix-demo" / "report.html").is_file()
    # The small simulation (500 rows; its clusters overlap, so the posterior of the means
    # is wide, sd 0.4-1.0): every true mean within 3 posterior sd of the posterior mean.
    truth = np.array(json.loads((tmp_path / "sim.truth.json").read_text())["means"])
    fit = bm.load(tmp_path / "report" / "fit.nc")
    assert list(fit.feature_names_in_) == ["x0", "x1"]  # the labels are not a feature
    sd = fit.idata["posterior"]["means"].std(("chain", "draw")).to_numpy()
    order = _order(fit.means_, truth)
    z = (fit.means_[order] - truth) / sd[order]
    assert np.abs(z).max() < 3, z
    chosen = pd.read_csv(tmp_path / "select" / "select_k.csv")
    assert set(chosen["n_components"]) == set(range(1, 7))
    # mclust's grid: every (model, K) of the command, and the report of BIC's choice.
    grid = pd.read_csv(tmp_path / "mclust" / "select_k.csv")
    assert len(grid) == 14 * 4
    usable = grid[grid["em_problems"].fillna("") == ""]
    best = usable.loc[usable["bic"].idxmin()]
    shown = bm.load(tmp_path / "mclust" / "fit.nc")
    assert (shown.covariance_type, shown.n_components) == (
        best["covariance_type"],
        best["n_components"],
    )
    # The clusters overlap, so BIC need not find all three: check it against
    # scikit-learn's BIC on the same file instead.
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    sim = pd.read_csv(tmp_path / "sim.csv").to_numpy()
    sk_bic = np.array(
        [
            SkGaussianMixture(k, n_init=20, tol=1e-8, max_iter=5000, reg_covar=0.0, random_state=0)
            .fit(sim)
            .bic(sim)
            for k in range(1, 7)
        ]
    )
    ours = chosen.sort_values("n_components")["bic"].to_numpy()
    # The best known BIC of each K is the better of the two EM runs (either can stop at a
    # local optimum). bayesmix reaches it for K = 1..3, and chooses the K that minimises it.
    best = np.minimum(ours, sk_bic)
    np.testing.assert_allclose(ours[:3], best[:3], atol=0.5)
    assert chosen.loc[chosen["bic"].idxmin(), "n_components"] == 1 + int(np.argmin(best))
    em = bm.load(tmp_path / "report-em" / "fit.nc")
    assert list(em.feature_names_in_) == ["a", "b"]
    np.testing.assert_allclose(np.sort(em.means_[:, 0]), [-3, 0, 3], atol=0.4)
    # The Zarr simulation, fitted by EM in passes: the truth to a few hundredths.
    truth = json.loads((tmp_path / "big.truth.json").read_text())
    big = bm.load(tmp_path / "report-big" / "fit.nc")
    np.testing.assert_allclose(
        _match(big.means_, np.array(truth["means"])), truth["means"], atol=0.05
    )
    # The mixture of regressions: the two lines, the proportions rising with age.
    reg = bm.load(tmp_path / "reg" / "fit.nc")
    assert isinstance(reg, bm.MixtureRegression)
    np.testing.assert_allclose(reg.coefficients_, [[1, 2], [8, -0.5]], atol=0.3)
    age_slope = reg.idata["posterior"]["concomitant"].sel(covariate="age").mean(("chain", "draw"))
    assert float(age_slope[0]) > 0 > float(age_slope[1])  # the responders' line is first
    parquet = bm.load(tmp_path / "report-pq" / "fit.nc")
    np.testing.assert_allclose(np.sort(parquet.means_[:, 0]), [-3, 0, 3], atol=0.4)
