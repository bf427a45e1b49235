"""The command line on data read in chunks: simulate to Zarr, fit Zarr and Parquet by EM.

The oracle is the truth that simulate writes beside the data (and for Parquet the
in-memory fit of the same table).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.cli import main

pytest.importorskip("dask.array")  # the test extra installs dask: never skipped in CI


@pytest.fixture(scope="module")
def zarr_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "big.zarr"
    args = ["simulate", "-n", "60000", "-k", "3", "--seed", "4", "--separation", "6"]
    assert main([*args, "--out", str(path)]) == 0
    return path


def test_simulate_writes_zarr_data_labels_and_truth(zarr_data):
    import dask.array as da

    X = da.from_zarr(str(zarr_data))
    z = da.from_zarr(str(zarr_data.with_suffix(".labels.zarr")))
    truth = json.loads(zarr_data.with_suffix(".truth.json").read_text())
    assert X.shape == (60_000, 2)
    assert z.shape == (60_000,)
    counts = np.bincount(z.compute(), minlength=3) / 60_000
    np.testing.assert_allclose(counts, truth["weights"], atol=0.01)  # 3 sd of a proportion
    Xc, zc = X.compute(), z.compute()
    for k, mean in enumerate(truth["means"]):
        np.testing.assert_allclose(Xc[zc == k].mean(axis=0), mean, atol=0.05)


def test_fit_zarr_by_em_recovers_the_truth(zarr_data, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["fit", str(zarr_data), "-k", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "EM pass 1:" in printed  # one line per pass when not in a terminal
    assert "60000 rows" in printed
    fit = bm.load(out / "fit.nc")
    truth = json.loads(zarr_data.with_suffix(".truth.json").read_text())
    order = np.argsort(np.asarray(truth["means"])[:, 0])
    np.testing.assert_allclose(fit.means_, np.asarray(truth["means"])[order], atol=0.05)
    np.testing.assert_allclose(fit.weights_, np.asarray(truth["weights"])[order], atol=0.01)
    html = (out / "report.html").read_text()
    assert "uniform sample of 5000 rows" in html
    assert (out / "components.png").exists()


def test_fit_zarr_by_laplace_gives_a_posterior_around_the_truth(zarr_data, tmp_path, capsys):
    out = tmp_path / "laplace"
    args = ["fit", str(zarr_data), "-k", "3", "--method", "laplace", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "EM / Laplace pass 1:" in printed
    assert re.search(r"Laplace \+ PSIS: k-hat -?\d\.\d\d", printed)
    fit = bm.load(out / "fit.nc")
    assert fit.idata.attrs["inference_method"] == "laplace"
    assert fit.idata.attrs["laplace_khat"] < 0.7
    truth = json.loads(zarr_data.with_suffix(".truth.json").read_text())
    order = np.argsort(np.asarray(truth["means"])[:, 0])
    # 60,000 rows: posterior sds of the means ~0.01; the truth within 5 of them.
    post = fit.idata["posterior"]["means"]
    sd = post.std(("chain", "draw")).to_numpy()
    z = np.abs(fit.means_ - np.asarray(truth["means"])[order]) / sd
    assert z.max() < 5
    html = (out / "report.html").read_text()
    assert "PSIS k-hat" in html


@pytest.mark.slow  # starts worker processes (~9 s)
def test_fit_zarr_on_the_process_scheduler(zarr_data, tmp_path):
    out = tmp_path / "report"
    args = ["fit", str(zarr_data), "-k", "3", "--scheduler", "processes", "--out", str(out)]
    assert main(args) == 0
    threads = bm.GaussianMixture(n_components=3, random_state=0).fit(str(zarr_data), method="em")
    np.testing.assert_allclose(bm.load(out / "fit.nc").means_, threads.means_, rtol=1e-10)


def test_fit_parquet_columns(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "a": np.concatenate([rng.normal(0, 1, 300), rng.normal(6, 1, 300)]),
            "b": rng.normal(size=600),
            "id": np.arange(600.0),
        }
    )
    path = tmp_path / "table.parquet"
    frame.to_parquet(path)
    out = tmp_path / "report"
    code = main(["fit", str(path), "-k", "2", "--columns", "a,b", "--out", str(out)])
    assert code == 0
    fit = bm.load(out / "fit.nc")
    assert fit.feature_names_in_ == ["a", "b"]
    memory = bm.GaussianMixture(n_components=2, random_state=0).fit(frame[["a", "b"]], method="em")
    np.testing.assert_allclose(fit.means_, memory.means_, rtol=1e-10)


def test_both_on_chunked_data_is_refused_before_any_work(zarr_data, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["fit", str(zarr_data), "-k", "3", "--method", "both", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--method em, laplace or nuts" in err
    assert not out.exists()


def test_nuts_on_zarr_samples_with_a_pass_per_gradient(zarr_data, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["fit", str(zarr_data), "-k", "3", "--method", "nuts", "--out", str(out)]
    assert main([*args, "--draws", "30", "--tune", "30", "--chains", "2"]) == 0
    printed = capsys.readouterr().out
    assert "NUTS:" in printed
    assert "gradients, each a pass over the chunks" in printed
    fit = bm.load(out / "fit.nc")
    assert fit.idata["posterior"].sizes["chain"] == 2
    assert fit.idata["posterior"].sizes["draw"] == 30
    assert fit.idata.attrs["inference_method"] == "nuts"
