import json

import numpy as np
import pytest
from click.testing import CliRunner

from aging.cli import main
from tests.harness import cli, hidden_leftovers, snapshot
from tests.test_evaluate import ERROR_CHART, assert_chart, check_error_csv, read_csv


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_every_stage_and_examples():
    r = run("--help")
    assert r.exit_code == 0
    for verb in ("synth", "train", "evaluate", "demo"):
        assert verb in r.output
    assert "Examples:" in run("train", "--help").output


def test_synth_train_evaluate_end_to_end(tmp_path):
    data = tmp_path / "synth"
    r = run("synth", data, "--subjects", 2, "--photos", 40, "--shape", "3,16")
    assert r.exit_code == 0, r.output
    assert (data / "subject00").is_dir() and (data / "truth.npz").is_file()
    assert len(list((data / "subject01").glob("*.npy"))) == 40
    assert "explains" in r.output

    out = tmp_path / "runs" / "off"
    args = ["train", data, "--model", "offset", "--select", "linear", "--dims", 12, "--pairs", "all",
            "--split", "internal", "-o", out, "-q"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "offset" and m["params"]["dims"] == 12 and m["pairs"] == "all"
    options = json.loads((out / "options.json").read_text())
    assert options["model"] == "offset" and options["params"] == {"select": "linear", "dims": 12}
    assert options["data"] == str(data)
    assert f"{m['test_mse']:.4f}" in r.output and "baseline start" in r.output
    check_error_csv(out, m)
    before = snapshot(out)
    r2 = run(*args)
    assert "reused" in r2.output and f"{m['test_mse']:.4f}" in r2.output
    assert snapshot(out) == before  # a no-op re-run writes nothing, options.json included

    r = run("train", data, "--model", "mlp", "--pairs", "random", "--n-pairs", 300, "-p", "hidden=16",
            "-p", "epochs=3", "-p", "dims=8", "-o", tmp_path / "runs" / "mlp", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "runs" / "mlp" / "metrics.json").read_text())["params"]["hidden"] == 16

    lin = tmp_path / "lin"
    r = run("evaluate", data, "--linearity", "--subject", "subject01", "--anchors", "2,-3", "-o", lin)
    assert r.exit_code == 0, r.output
    rows = read_csv(lin / "linearity_subject01.csv")
    assert len(rows) == 40 and list(rows[0]) == ["age_days", "distance"]
    ages = [int(r["age_days"]) for r in rows]
    assert ages == sorted(int(p.stem) for p in (data / "subject01").glob("*.npy"))
    dist = np.array([float(r["distance"]) for r in rows])
    assert dist[2] == pytest.approx(0, abs=1e-6) and dist[-3] == pytest.approx(0, abs=1e-6)
    assert (np.delete(dist, [2, 37]) > 0.01).all()  # noisy photos are off the anchor line
    assert_chart(lin / "linearity_subject01.png", (1210, 440))
    before = snapshot(lin)
    assert run("evaluate", data, "--linearity", "--subject", "subject01", "--anchors", "2,-3", "-o", lin).exit_code == 0
    assert snapshot(lin) == before


def test_demo_small_and_its_rerun_writes_nothing(tmp_path):
    exp = tmp_path / "mini.toml"
    exp.write_text('name = "mini"\n[defaults]\nsplit = "future"\n[[run]]\nmodel = "interp"\n'
                   '[[run]]\nmodel = "direction"\n')
    args = ["demo", "-o", tmp_path / "demo", "--photos", 30, "--experiment", exp, "-q"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    demo = tmp_path / "demo"
    summary = (demo / "summary.md").read_text()
    assert "future split" in summary and "best" in summary
    metrics = {n: json.loads((demo / n / "metrics.json").read_text()) for n in ("interp", "direction")}
    best = min(metrics, key=lambda n: metrics[n]["test_mse"])
    assert f"best `{best}` test MSE {metrics[best]['test_mse']:.4f}" in summary
    table = (demo / "comparison.md").read_text()
    for n, m in metrics.items():
        assert f"| {n} | {n} | first | future | {m['train_mse']:.4f} | **{m['test_mse']:.4f}** |" in table
    assert_chart(demo / "comparison.png")
    assert_chart(demo / "error_vs_age_future_first.png", ERROR_CHART)
    assert json.loads((demo / "data" / "synth.json").read_text())["config"]["photos"] == 30
    before = snapshot(demo)
    r = run(*args)
    assert r.exit_code == 0 and "synthesising" not in r.output
    assert snapshot(demo) == before


def test_synth_rerun_is_a_noop_and_force_replaces_the_whole_dataset(tmp_path):
    small = ["--shape", "4,16"]
    assert cli(["synth", "d", "--subjects", 3, "--photos", 30, *small], tmp_path).exit_code == 0
    before = snapshot(tmp_path / "d")
    again = cli(["synth", "d", "--subjects", 3, "--photos", 30, *small], tmp_path)
    assert again.exit_code == 0 and "nothing to do" in again.stdout
    assert snapshot(tmp_path / "d") == before
    # another dataset without --force: refused, nothing touched
    other = cli(["synth", "d", "--subjects", 2, "--photos", 20, *small], tmp_path)
    assert other.exit_code == 1 and "--force" in other.stderr
    assert snapshot(tmp_path / "d") == before
    # with --force: the new dataset only, never a mix (the old subject02 and the old ages are gone)
    r = cli(["synth", "d", "--subjects", 2, "--photos", 20, "--seed", 5, *small, "--force"], tmp_path)
    assert r.exit_code == 0, r.stderr
    d = tmp_path / "d"
    assert sorted(p.name for p in d.iterdir()) == ["subject00", "subject01", "synth.json", "truth.npz"]
    with np.load(d / "truth.npz") as truth:
        for s in ("subject00", "subject01"):
            ages = sorted(int(p.stem) for p in (d / s).iterdir())
            assert ages == truth[f"ages/{s}"].tolist() and len(ages) == 20
    assert hidden_leftovers(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["d"]
    # --force never deletes what is not a latent dataset
    (d / "subject00" / "notes.txt").write_text("mine")
    before = snapshot(d)
    refused = cli(["synth", "d", "--subjects", 1, "--photos", 20, *small, "--force"], tmp_path)
    assert refused.exit_code == 1 and "notes.txt" in refused.stderr and "not part of a latent dataset" in refused.stderr
    assert snapshot(d) == before


def test_one_subject_study_skips_the_external_runs_and_writes_the_comparison(tmp_path):
    """`aging evaluate DATA --experiment study` on one video (one subject), from a folder without
    configs/: the bundled study is found in the package, the runs that need two subjects are
    skipped with the reason, every other run is in the comparison."""
    assert cli(["synth", "d", "--subjects", 1, "--photos", 30, "--shape", "4,16"], tmp_path).exit_code == 0
    out = cli(["evaluate", "d", "--experiment", "study", "-q"], tmp_path)
    assert out.exit_code == 0, out.stderr + str(out.exception)
    study = tmp_path / "runs" / "study"
    rows = read_csv(study / "comparison.csv")
    assert len(rows) == 20
    external = [r for r in rows if r["split"] == "external"]
    assert [r["name"] for r in external] == ["offset-linear-512-external", "direction-external", "trend-external"]
    for r in external:
        assert "at least two" in r["skipped"] and r["test_mse"] == ""
    ran = [r for r in rows if not r["skipped"]]
    assert {"interp", "direct", "direction", "direct-future", "direction-future", "trend", "trend-future"} \
        <= {r["name"] for r in ran}
    md = (study / "comparison.md").read_text()
    for r in external:
        assert f"skipped `{r['name']}` ({r['model']}, {r['pairs']} pairs, external split): {r['skipped']}" in md
    for r in ran:
        assert f"| {r['name']} | {r['model']} |" in md
        assert float(r["test_mse"]) == pytest.approx(
            json.loads((study / r["name"] / "metrics.json").read_text())["test_mse"])
    assert_chart(study / "comparison.png")
    assert "skipped" in out.stdout


def test_python_dash_m_works():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "aging", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "synth" in r.stdout
