"""The command line end to end in a temporary folder (sampler mocked), and its errors."""

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.cli import main, parse_components

pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.exceptions.SamplerWarning")


@pytest.fixture
def data_csv(tmp_path):
    path = tmp_path / "data.csv"
    assert (
        main(["simulate", "-n", "150", "-k", "2", "-d", "2", "--seed", "3", "--out", str(path)])
        == 0
    )
    return path


def _assert_self_contained_report(folder):
    page = (folder / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    # No external resources: every image is embedded, no scripts or stylesheets are linked.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert page.count('src="data:image/png;base64,') >= 2
    return page


def test_simulate_writes_data_and_truth(data_csv):
    frame = pd.read_csv(data_csv)
    assert list(frame.columns) == ["x0", "x1"]  # features only (issue 21, item 5)
    assert len(frame) == 150
    labels = pd.read_csv(data_csv.with_suffix(".labels.csv"))
    assert list(labels.columns) == ["component"]
    assert len(labels) == 150
    assert set(labels["component"]) == {0, 1}
    truth = json.loads(data_csv.with_suffix(".truth.json").read_text())
    assert np.isclose(sum(truth["weights"]), 1.0)
    assert np.array(truth["covariances"]).shape == (2, 2, 2)


def test_fit_em_writes_a_report_and_a_loadable_fit(data_csv, tmp_path, capsys):
    out = tmp_path / "em"
    code = main(
        ["fit", str(data_csv), "-k", "2", "--columns", "x0,x1", "--method", "em", "--out", str(out)]
    )
    assert code == 0
    page = _assert_self_contained_report(out)
    assert "EM estimate" in page
    fit = bm.load(out / "fit.nc")
    assert fit.idata.attrs["inference_method"] == "em"
    assert fit.feature_names_in_ == ["x0", "x1"]
    assert (out / "summary.csv").stat().st_size > 0
    assert "Report:" in capsys.readouterr().out


def test_fit_laplace_writes_the_psis_diagnostics_and_a_loadable_fit(data_csv, tmp_path, capsys):
    out = tmp_path / "laplace"
    code = main(["fit", str(data_csv), "-k", "2", "--method", "laplace", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert re.search(r"Laplace \+ PSIS: .* k-hat -?\d\.\d\d", printed)
    assert "EM: log-likelihood" in printed  # EM runs too: the report compares the two
    page = _assert_self_contained_report(out)
    assert "PSIS k-hat" in page
    assert "Comparison" in page or "compare" in page.lower()
    fit = bm.load(out / "fit.nc")
    assert fit.idata.attrs["inference_method"] == "laplace"
    assert fit.idata["posterior"].sizes["draw"] == 4000
    khat = fit.idata.attrs["laplace_khat"]
    assert f"{khat:.2f}" in printed


def test_fit_both_with_mocked_sampler(data_csv, tmp_path, mocked_sample):
    out = tmp_path / "both"
    code = main(
        [
            "fit",
            str(data_csv),
            "-k",
            "2",
            "--columns",
            "x0,x1",
            "--draws",
            "20",
            "--tune",
            "20",
            "--chains",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    page = _assert_self_contained_report(out)
    for section in ("Posterior summary", "Sampler diagnostics", "EM against MCMC"):
        assert section in page
    for name in ("components", "responsibilities", "trace", "rank", "compare"):
        assert (out / f"{name}.png").stat().st_size > 1000
    compare = pd.read_csv(out / "compare.csv", index_col=0)
    assert {"em", "mean", "sd", "hdi94_lb", "hdi94_ub", "em_in_hdi", "z_score"} <= set(compare)
    assert bm.load(out / "fit.nc").idata.attrs["inference_method"] == "nuts"
    assert bm.load(out / "fit_em.nc").idata.attrs["inference_method"] == "em"


def test_one_chain_works_with_r_hat_not_available(data_csv, tmp_path, mocked_sample, capsys):
    """Issue 21 item 2: --chains 1 crashed after sampling (KeyError 'max_rhat')."""
    out = tmp_path / "one"
    args = ["fit", str(data_csv), "-k", "2", "--columns", "x0,x1", "--draws", "20"]
    code = main([*args, "--tune", "20", "--chains", "1", "--out", str(out)])
    assert code == 0
    assert "max R-hat n/a (one chain)" in capsys.readouterr().out
    page = _assert_self_contained_report(out)
    assert "n/a (one chain)" in page
    fit = bm.load(out / "fit.nc")
    assert np.isnan(fit.idata.attrs["max_rhat"])
    assert fit.summary().shape[0] > 0


def test_select_em_reports_the_k_table(data_csv, tmp_path, capsys):
    out = tmp_path / "select"
    code = main(
        [
            "select",
            str(data_csv),
            "-k",
            "1..3",
            "--columns",
            "x0,x1",
            "--method",
            "em",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    page = _assert_self_contained_report(out)
    assert "Choosing the number of components" in page
    table = pd.read_csv(out / "select_k.csv")
    assert list(table["n_components"]) == [1, 2, 3]
    assert "em_problems" in table
    # The reason of every choice is printed and shown in the report (issue 21, item 1).
    X = pd.read_csv(data_csv)[["x0", "x1"]]
    expected = bm.select_k(X, ks=[1, 2, 3], method="em", random_state=0, progressbar=False)
    for criterion in ("bic", "icl"):
        reason = expected.attrs["reason"][criterion]
        assert f"{criterion.upper()}: {reason}" in printed
        assert html.escape(reason) in page
    assert bm.load(out / "fit.nc").n_components == expected.attrs["best"]["bic"]


def test_select_reports_a_k_loo_can_vouch_for_or_says_why_not(
    data_csv, tmp_path, mocked_sample, capsys
):
    """Mocked draws (prior draws, 20 per chain) fail the sampler checks at every K."""
    out = tmp_path / "select"
    args = ["select", str(data_csv), "-k", "1..2", "--columns", "x0,x1", "--draws", "20"]
    code = main([*args, "--tune", "20", "--chains", "2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert re.search(r"LOO: no K\b", printed)
    assert re.search(r"BIC: K=\d", printed)
    table = pd.read_csv(out / "select_k.csv")
    assert table["loo_problems"].str.contains("ESS").all()
    page = (out / "report.html").read_text()
    assert "loo_problems" in page
    # No LOO choice: the report shows the fits of the K that BIC chose, and says so.
    bic_k = int(table.loc[table["bic"].idxmin(), "n_components"])
    assert f"K={bic_k}" in printed.split("LOO: no K")[1]
    assert bm.load(out / "fit.nc").n_components == bic_k


def test_select_with_no_usable_fit_writes_the_table_and_exits_1(tmp_path, capsys):
    s = np.random.default_rng(0).normal(size=100)
    path = tmp_path / "line.csv"
    pd.DataFrame({"a": s, "b": 2.0 * s + 1.0}).to_csv(path, index=False)  # every fit collapses
    out = tmp_path / "select"
    with pytest.warns(bm.ConvergenceWarning, match="no K"):
        code = main(["select", str(path), "-k", "1..2", "--method", "em", "--out", str(out)])
    assert code == 1
    printed = capsys.readouterr().out
    assert re.search(r"BIC: no K\b", printed)
    assert "no fit to report" in printed
    assert list(pd.read_csv(out / "select_k.csv")["n_components"]) == [1, 2]
    assert not (out / "report.html").exists()


def test_select_over_covariance_models_reports_the_chosen_model(data_csv, tmp_path, capsys):
    out = tmp_path / "grid"
    args = ["select", str(data_csv), "-k", "1..3", "--covariance", "EII,VVV", "--out", str(out)]
    assert main([*args, "--method", "em"]) == 0
    printed = capsys.readouterr().out
    table = bm.select_k(
        pd.read_csv(data_csv),
        ks=[1, 2, 3],
        covariance_type=["EII", "VVV"],
        method="em",
        random_state=0,
        progressbar=False,
    )
    name, k = table.attrs["best"]["bic"]
    assert f"covariance {name}, K={k} (chosen by BIC)" in printed
    fit = bm.load(out / "fit.nc")
    assert (fit.covariance_type, fit.n_components) == (name, k)
    assert len(pd.read_csv(out / "select_k.csv")) == 6
    # Several types need EM (BIC and ICL, as mclust): a clear error otherwise.
    assert main([*args[:-1], str(tmp_path / "nuts")]) == 2
    assert "method='em'" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path, mocked_sample, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--draws", "20", "--tune", "20", "--chains", "2", "--out", str(out)]) == 0
    _assert_self_contained_report(out)
    printed = capsys.readouterr().out
    assert "Old Faithful" in printed
    assert "means[0, eruptions]" in printed


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, ["fit", "{dir}/missing.csv", "-k", "2", "--out", "{dir}/o"], "no such file"),
        (
            "a,b\n1,2\n3,4\n5,7\n",
            ["fit", "{csv}", "-k", "2", "--columns", "a,c", "--out", "{dir}/o"],
            "column(s) ['c'] not in",
        ),
        (
            "a,b\n1,x\n3,y\n5,z\n",
            ["fit", "{csv}", "-k", "1", "--method", "em", "--out", "{dir}/o"],
            "columns ['b'] are not numeric",
        ),
        ("", ["fit", "{csv}", "-k", "2", "--out", "{dir}/o"], "could not read"),
        ("a\n1\n2\n", ["fit", "{csv}", "-k", "2,3", "--out", "{dir}/o"], "one --components"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(make, args, message, tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    if make is not None:
        csv.write_text(make)
    argv = [a.format(dir=tmp_path, csv=csv) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesmix: error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [[], ["demo"], ["fit"], ["select"], ["simulate"]])
def test_help_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: bayesmix" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["select", "x.csv", "-k", "one..six", "--out", "o"], "--components must be"),
        (["fit", "x.csv", "-k", "2"], "the following arguments are required: --out"),
        (["fit", "x.csv", "-k", "2", "--out", "o", "--draws", "many"], "invalid int value"),
        (["fit", "x.csv", "-k", "2", "--out", "o", "--family", "gamma"], "invalid choice"),
        (["fit", "x.csv", "-k", "2", "--out", "o", "--bogus"], "unrecognized arguments"),
        (["frobnicate"], "invalid choice"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_code_2(argv, fragment, capsys):
    """The README's promise: bad input is one line on stderr (no usage block), code 2."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("bayesmix: error: ")
    assert fragment in lines[0]
    assert "--help" in lines[0]


def test_parse_components():
    assert parse_components("3") == [3]
    assert parse_components("1..4") == [1, 2, 3, 4]
    assert parse_components("2-3") == [2, 3]
    assert parse_components("2,5") == [2, 5]


@pytest.mark.parametrize(
    ("family", "loader", "cls"),
    [
        ("poisson", "load_discoveries", bm.PoissonMixture),
        ("bernoulli", "load_carcinoma", bm.BernoulliMixture),
    ],
)
def test_fit_other_families(family, loader, cls, tmp_path):
    frame = getattr(bm.datasets, loader)()
    if family == "poisson":
        frame = frame[["discoveries"]]
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / family
    code = main(
        ["fit", str(path), "-k", "2", "--family", family, "--method", "em", "--out", str(out)]
    )
    assert code == 0
    fit = bm.load(out / "fit.nc")
    assert type(fit) is cls
    direct = cls(n_components=2, random_state=0).fit(frame, method="em")
    np.testing.assert_allclose(fit.weights_, direct.weights_)


def test_fit_takes_an_mclust_covariance_model(data_csv, tmp_path, capsys):
    out = tmp_path / "vev"
    code = main(["fit", str(data_csv), "-k", "2", "--covariance", "VEV", "--method", "em"])
    assert code == 2  # --out is required
    capsys.readouterr()
    args = ["fit", str(data_csv), "-k", "2", "--covariance", "VEV"]
    assert main([*args, "--method", "em", "--out", str(out)]) == 0
    fit = bm.load(out / "fit.nc")
    assert fit.covariance_type == "VEV"
    frame = pd.read_csv(data_csv)
    direct = bm.GaussianMixture(n_components=2, covariance_type="VEV", random_state=0)
    np.testing.assert_allclose(fit.weights_, direct.fit(frame, method="em").weights_)


def test_fit_with_missing_values_needs_missing_model(data_csv, tmp_path, capsys):
    frame = pd.read_csv(data_csv)
    holes = frame.copy()
    holes.iloc[[3, 10, 17], 0] = np.nan
    holes.iloc[[5, 12], 1] = np.nan
    path = tmp_path / "holes.csv"
    holes.to_csv(path, index=False)  # empty cells
    args = ["fit", str(path), "-k", "2", "--method", "em", "--out"]
    assert main([*args, str(tmp_path / "refused")]) == 2
    assert "pass --missing model" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "fit"), "--missing", "model"]) == 0
    fit = bm.load(tmp_path / "fit" / "fit.nc")
    assert fit.missing == "model"
    direct = bm.GaussianMixture(n_components=2, random_state=0, missing="model")
    np.testing.assert_allclose(fit.means_, direct.fit(holes, method="em").means_, rtol=1e-10)


def test_a_family_rejects_data_it_cannot_model(data_csv, capsys):
    code = main(["fit", str(data_csv), "-k", "2", "--family", "poisson", "--out", "unused"])
    assert code == 2
    assert "non-negative integer counts" in capsys.readouterr().err


HEAVY = ("pymc", "matplotlib", "arviz_stats", "arviz_plots", "pandas", "numba")


def _modules_after(code: str) -> list[str]:
    """The heavy packages imported by running ``code`` in a fresh interpreter."""
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_help_and_import_do_not_load_the_stack():
    # `import bayesmix` and `bayesmix --help` answer without importing PyMC, ArviZ,
    # matplotlib, pandas or numba (seconds); the public names load on first use.
    assert _modules_after("import bayesmix") == []
    help_only = (
        "import contextlib, io\nfrom bayesmix.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])"
    )
    assert _modules_after(help_only) == []
    assert "pymc" in _modules_after("import bayesmix\nbayesmix.GaussianMixture")


def test_every_public_name_resolves_to_its_definition():
    import importlib

    for name in bm.__all__:
        value = getattr(bm, name)
        assert value is not None
        if name in bm._LAZY:
            assert value is getattr(importlib.import_module(bm._LAZY[name]), name)
    assert bm.datasets is importlib.import_module("bayesmix.datasets")
    assert set(bm.__all__) <= set(dir(bm))
    with pytest.raises(AttributeError, match="no attribute 'GaussianMixtures'"):
        bm.GaussianMixtures  # noqa: B018


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_an_unusable_out_fails_before_any_work(data_csv, tmp_path, capsys, monkeypatch, kind):
    """Issue 21 item 3: a bad --out was found only after EM and NUTS had run."""
    import bayesmix.model

    if kind == "file":
        out = tmp_path / "taken"
        out.write_text("not a folder")
        match = "is an existing file"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        out = locked / "report"
        match = "not a writable folder"
        if os.access(locked, os.W_OK):  # root ignores permissions: simulate the check
            monkeypatch.setattr(
                "bayesmix.report.os.access", lambda path, mode: Path(path) != locked
            )

    def no_fit(*args, **kwargs):
        raise AssertionError("fitting started before the output folder was checked")

    monkeypatch.setattr(bayesmix.model.MixtureModel, "fit", no_fit)
    args = ["fit", str(data_csv), "-k", "2", "--columns", "x0,x1", "--method", "em"]
    code = main([*args, "--out", str(out)])
    assert code == 2
    assert match in capsys.readouterr().err


def test_a_failed_report_leaves_no_half_written_folder(data_csv, tmp_path, monkeypatch):
    import bayesmix.report

    def fail(*args, **kwargs):
        raise OSError("disk full while drawing")

    monkeypatch.setattr(bayesmix.report, "plot_ppc", fail)
    out = tmp_path / "report"
    args = ["fit", str(data_csv), "-k", "2", "--columns", "x0,x1", "--method", "em"]
    code = main([*args, "--out", str(out)])
    assert code == 2
    assert not out.exists()
    assert not any(p.name.startswith(".report") for p in tmp_path.iterdir())  # no temp left


# Issue 21, item 4: the dialect of a CSV file and its header row.


def _frame_for_dialects():
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(0.0, 1.0, (20, 2)), rng.normal(6.0, 1.0, (20, 2))])
    return pd.DataFrame(values.round(3), columns=["length", "width"])


def _fit_em(path, tmp_path, *extra):
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    code = main(["fit", str(path), "-k", "2", "--method", "em", "--out", str(out), *extra])
    return code, out


def test_semicolons_and_decimal_commas_are_detected(tmp_path):
    """A European CSV (';' between fields, ',' in numbers) is the same data as its US twin."""
    frame = _frame_for_dialects()
    us, eu = tmp_path / "us.csv", tmp_path / "eu.csv"
    frame.to_csv(us, index=False)
    # Written by hand, not by pandas: the file as a spreadsheet in a German locale saves it.
    lines = [";".join(frame.columns)]
    lines += [";".join(f"{v:.3f}".replace(".", ",") for v in row) for row in frame.to_numpy()]
    eu.write_text("\n".join(lines) + "\n")
    code_us, out_us = _fit_em(us, tmp_path)
    code_eu, out_eu = _fit_em(eu, tmp_path)
    assert (code_us, code_eu) == (0, 0)
    fit_us, fit_eu = bm.load(out_us / "fit.nc"), bm.load(out_eu / "fit.nc")
    assert fit_eu.feature_names_in_ == ["length", "width"]
    np.testing.assert_array_equal(
        fit_eu.idata["observed_data"]["x"].to_numpy(), frame.to_numpy(dtype=float)
    )
    np.testing.assert_allclose(fit_eu.means_, fit_us.means_)


def test_a_headerless_csv_is_refused_with_advice_and_read_with_no_header(tmp_path, capsys):
    frame = _frame_for_dialects()
    path = tmp_path / "nohead.csv"
    frame.to_csv(path, index=False, header=False)
    code, _ = _fit_em(path, tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert "--no-header" in err
    assert f"{frame.iloc[0, 0]:g}" in err  # names the row it saw
    assert len(err.strip().splitlines()) == 1
    code, out = _fit_em(path, tmp_path, "--no-header")
    assert code == 0
    fit = bm.load(out / "fit.nc")
    assert fit.feature_names_in_ == ["x0", "x1"]
    assert fit.idata["observed_data"].sizes["obs"] == len(frame)  # no row lost to a header


def test_select_takes_no_header_too(tmp_path):
    path = tmp_path / "nohead.csv"
    _frame_for_dialects().to_csv(path, index=False, header=False)
    out = tmp_path / "select"
    code = main(
        ["select", str(path), "-k", "1..2", "--method", "em", "--no-header", "--out", str(out)]
    )
    assert code == 0
    assert bm.load(out / "fit.nc").feature_names_in_ == ["x0", "x1"]


def test_a_csv_with_no_clear_separator_is_refused_naming_what_was_seen(tmp_path, capsys):
    path = tmp_path / "odd.csv"
    rows = [f"{i};{'xyz'[i % 3]},{i * i % 7}" for i in range(12)]
    path.write_text("a;b,c\n" + "\n".join(rows) + "\n")  # half numeric on ';' and on ','
    code, _ = _fit_em(path, tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert "';'" in err
    assert "','" in err
    assert "--sep" in err
    code, out = _fit_em(path, tmp_path, "--sep", ",", "--columns", "c", "-k", "1")
    assert code == 0
    assert bm.load(out / "fit.nc").feature_names_in_ == ["c"]


def test_decimal_points_and_commas_in_one_file_are_refused(tmp_path, capsys):
    path = tmp_path / "mixed.csv"
    path.write_text("x;y\n1.5;2,5\n3.5;4,5\n2.5;1,5\n8.5;7,5\n")
    code, _ = _fit_em(path, tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert "'1.5'" in err
    assert "'2,5'" in err
    assert "--decimal" in err


# Issue 21, item 5: the README's own commands fitted the true labels as a feature.


def test_fitting_what_simulate_wrote_fits_the_features_only(data_csv, tmp_path, recwarn):
    out = tmp_path / "sim"
    assert main(["fit", str(data_csv), "-k", "2", "--method", "em", "--out", str(out)]) == 0
    assert bm.load(out / "fit.nc").feature_names_in_ == ["x0", "x1"]
    assert not [w for w in recwarn.list if issubclass(w.category, bm.DataWarning)]


@pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")  # z is a feature here
def test_fit_names_a_label_column_in_a_data_warning(data_csv, tmp_path):
    frame = pd.read_csv(data_csv)
    labels = pd.read_csv(data_csv.with_suffix(".labels.csv"))
    path = tmp_path / "with_labels.csv"
    frame.assign(z=labels["component"]).to_csv(path, index=False)
    out = tmp_path / "labelled"
    args = ["fit", str(path), "-k", "2", "--method", "em", "--out", str(out)]
    with pytest.warns(bm.DataWarning, match="'z'.*labels"):
        assert main(args) == 0
    # On the command line: one line of its own on stderr, not a source line of bayesmix.
    done = subprocess.run(
        [sys.executable, "-m", "bayesmix.cli", *args[:-1], str(tmp_path / "again")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if "DataWarning" in line]
    assert len(lines) == 1
    assert lines[0].startswith("bayesmix: warning (DataWarning): column 'z' takes only")


def test_an_em_fit_shows_no_column_of_zero_sds(data_csv, tmp_path, capsys):
    """Issue 21, item 6: the EM table, summary.csv and report showed sd = 0 everywhere."""
    out = tmp_path / "em"
    code = main(["fit", str(data_csv), "-k", "2", "--method", "em", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if "estimate" in line)
    assert not re.search(r"\bsd\b", header)
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert list(summary.columns) == ["estimate"]
    assert summary.loc["weights[0]", "estimate"] == pytest.approx(
        bm.load(out / "fit.nc").weights_[0], rel=1e-12
    )
    page = (out / "report.html").read_text()
    assert "<th>estimate</th>" in page
    assert "<th>sd</th>" not in page


@pytest.mark.parametrize("width", [100, pytest.param(80, marks=pytest.mark.slow)])
def test_select_both_tables_fit_the_terminal_with_whole_headers(
    data_csv, tmp_path, mocked_sample, capsys, monkeypatch, width
):
    """Issue 21, item 8: the table of select --method both cut its columns to 4-5 characters."""
    monkeypatch.setenv("COLUMNS", str(width))
    args = ["select", str(data_csv), "-k", "1..2", "--draws", "20", "--tune", "20"]
    assert main([*args, "--chains", "2", "--out", str(tmp_path / "select")]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    tables = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert tables, printed
    assert max(len(line) for line in tables) <= width
    assert "…" not in printed
    headers = {cell.strip() for line in lines if line.startswith("┃") for cell in line.split("┃")}
    for name in ("bic", "icl", "elpd_loo", "elpd_diff", "dse", "max_rhat", "ess_bulk"):
        assert name in headers, (name, headers)
    assert {"divergent", "bad_k", "usable", "K"} <= headers


def test_fit_a_mixture_of_regressions(tmp_path, capsys):
    rng = np.random.default_rng(4)
    n = 150
    dose, age = rng.uniform(0, 10, n), rng.normal(50, 10, n)
    responder = rng.random(n) < 1 / (1 + np.exp(-(age - 50) / 10))
    outcome = np.where(responder, 1 + 2 * dose, 8 - 0.5 * dose) + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({"dose": dose, "age": age, "outcome": outcome})
    path = tmp_path / "trial.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "report"
    args = ["fit", str(path), "--response", "outcome", "--predictors", "dose"]
    code = main([*args, "--concomitant", "age", "-k", "2", "--method", "em", "--out", str(out)])
    assert code == 0
    _assert_self_contained_report(out)
    fitted = bm.load(out / "fit.nc")
    # The same fit as the Python API's.
    api = bm.MixtureRegression(n_components=2, concomitant=True, random_state=0)
    api.fit(frame[["dose"]], frame["outcome"], frame[["age"]], method="em")
    np.testing.assert_allclose(fitted.coefficients_, api.coefficients_)
    np.testing.assert_allclose(fitted.concomitant_, api.concomitant_)
    assert "coefficients[1, dose]" in capsys.readouterr().out
    code = main([*args[:-1], "dosage", "-k", "2", "--method", "em", "--out", str(tmp_path / "x")])
    assert code != 0
    assert "dosage" in capsys.readouterr().err


def test_fit_a_mixture_of_negative_binomial_regressions(tmp_path, capsys):
    rng = np.random.default_rng(5)
    n = 300
    dose = rng.uniform(0, 10, n)
    responder = rng.random(n) < 0.4
    mean = np.exp(np.where(responder, 0.2 + 0.25 * dose, 2.0 - 0.15 * dose))
    dispersion = np.where(responder, 5.0, 2.0)
    count = rng.negative_binomial(dispersion, dispersion / (dispersion + mean))
    frame = pd.DataFrame({"dose": dose, "count": count})
    path = tmp_path / "counts.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "report"
    args = ["fit", str(path), "--response", "count", "--family", "negative-binomial"]
    assert main([*args, "-k", "2", "--method", "em", "--out", str(out)]) == 0
    fitted = bm.load(out / "fit.nc")
    api = bm.MixtureRegression(n_components=2, family="negative-binomial", random_state=0)
    api.fit(frame[["dose"]], frame["count"], method="em")
    np.testing.assert_allclose(fitted.coefficients_, api.coefficients_)
    np.testing.assert_allclose(fitted.dispersion_, api.dispersion_)
    assert "dispersion[1]" in capsys.readouterr().out
