"""Every recipe in models/ runs in smoke mode, and every notebook executes without error.

Recipes run as scripts (``python models/<name>.py --smoke --out DIR``) in a subprocess,
as a user would run them; notebooks run in a Jupyter kernel (nbclient) with
``BAYESMIX_SMOKE=1``. Most of the time is compiling NUTS models (about 10-25 s per
model structure on 2 cores), so the smoke settings compare few K and sample little.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
NOTEBOOKS = ROOT / "notebooks"
TIMEOUT = 600  # seconds, per recipe and per notebook

REPORT = ["report.html", "summary.csv", "components.png", "ppc.png", "fit.nc"]
NUTS_REPORT = [*REPORT, "compare.csv", "compare.png", "trace.png", "rank.png", "fit_em.nc"]
# A mixture of regressions' report: its regression plots instead of the data plots.
REGRESSION_REPORT = [
    *(name for name in NUTS_REPORT if name != "components.png"),
    "responsibilities.png",
    "published.csv",
    "regression.png",
]

# recipe -> files it must write to --out
RECIPES = {
    "generative_story": [*NUTS_REPORT, "data.csv", "recovery.csv"],
    "old_faithful": NUTS_REPORT,
    "galaxies": [*NUTS_REPORT, "select_k.csv", "select_k.png", "nonempty_components.csv"],
    "robust_clustering": [*NUTS_REPORT, "shifts.csv", "data.csv"],
    "counts": [*NUTS_REPORT, "select_k.csv", "regimes.csv"],
    "latent_classes": [*NUTS_REPORT, "select_k.csv", "profiles.csv"],
    # Its own figures (pmf of both families, ppc, trace), not the HTML report.
    "negative_binomial": [
        "comparison.csv",
        "groups.csv",
        "pmf.png",
        "summary.csv",
        "compare.csv",
        "ppc.png",
        "trace.png",
        "fit.nc",
        "fit_em.nc",
    ],
    "iris": [*REPORT, "covariance_types.csv", "bic_grid.csv", "bic_grid.png", "confusion.csv"],
    "co2_regimes": [*REGRESSION_REPORT, "select_k.csv"],
    "patents": [*REGRESSION_REPORT, "concomitant.png"],
}


def smoke_env():
    env = dict(os.environ)
    env |= {"BAYESMIX_SMOKE": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    return env


def test_every_recipe_is_tested():
    scripts = {path.stem for path in MODELS.glob("*.py") if not path.name.startswith("_")}
    assert scripts == set(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_runs_in_smoke_mode(name, tmp_path):
    out = tmp_path / name
    result = subprocess.run(
        [sys.executable, str(MODELS / f"{name}.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env=smoke_env(),
        cwd=tmp_path,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"{name}.py exited {result.returncode}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-5000:]}"
    )
    missing = [f for f in RECIPES[name] if not (out / f).is_file() or (out / f).stat().st_size == 0]
    assert not missing, f"{name}.py did not write {missing}; it wrote {sorted(os.listdir(out))}"
    assert "wrote" in result.stdout
    if name == "generative_story":
        recovery = pd.read_csv(out / "recovery.csv", index_col=0)
        # 3 weights, 6 means, 9 distinct covariance entries of a 3-component 2-D mixture
        assert len(recovery) == 18
        assert {"truth", "mean", "hdi94_lb", "hdi94_ub", "inside"} <= set(recovery.columns)
        assert recovery["truth"].notna().all()
    if name == "galaxies":
        table = pd.read_csv(out / "select_k.csv")
        assert table["n_components"].tolist() == [2, 3]
        assert table["elpd_loo"].notna().all()
    if name == "galaxies":
        k_plus = pd.read_csv(out / "nonempty_components.csv", index_col=0)["probability"]
        assert list(k_plus.index) == list(range(1, 9))
        assert abs(k_plus.sum() - 1) < 1e-9
    if name == "robust_clustering":
        shifts = pd.read_csv(out / "shifts.csv", index_col=0)
        assert list(shifts.index) == ["gaussian", "student_t"]
    if name in ("counts", "latent_classes"):
        table = pd.read_csv(out / "select_k.csv")
        assert table["bic"].notna().all()
    if name == "negative_binomial":
        table = pd.read_csv(out / "comparison.csv")
        assert set(table["family"]) == {"poisson", "negative-binomial"}
        assert table["bic"].is_monotonic_increasing
    if name == "iris":
        table = pd.read_csv(out / "covariance_types.csv", index_col=0)
        assert list(table.index) == ["full", "tied", "diag", "spherical"]
        assert table["ari_em"].between(-1, 1).all()


NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_there_are_notebooks():
    assert [path.name for path in NOTEBOOK_FILES] == [
        "01_mixtures_from_scratch.ipynb",
        "02_inspecting_the_posterior.ipynb",
        "03_choosing_k.ipynb",
        "04_mixtures_of_regressions.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=[path.stem for path in NOTEBOOK_FILES])
def test_notebook_executes_in_smoke_mode(path, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    for key, value in smoke_env().items():  # the kernel inherits this environment
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on error
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, json.dumps(errors, indent=1)[:3000]
