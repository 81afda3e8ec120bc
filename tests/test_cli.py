import json

import numpy as np
from click.testing import CliRunner

from aging.cli import main
from tests.conftest import write_subject


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
    r = run("train", data, "--model", "offset", "--select", "linear", "--dims", 12, "--pairs", "all",
            "--split", "internal", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "offset" and m["params"]["dims"] == 12 and m["pairs"] == "all"
    assert json.loads((out / "options.json").read_text())["model"] == "offset"
    assert "baseline start" in r.output
    r2 = run("train", data, "--model", "offset", "--select", "linear", "--dims", 12, "--pairs", "all",
             "--split", "internal", "-o", out, "-q")
    assert "reused" in r2.output

    r = run("train", data, "--model", "mlp", "--pairs", "random", "--n-pairs", 300, "-p", "hidden=16",
            "-p", "epochs=3", "-p", "dims=8", "-o", tmp_path / "runs" / "mlp", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "runs" / "mlp" / "metrics.json").read_text())["params"]["hidden"] == 16

    r = run("evaluate", data, "--linearity", "--subject", "subject01", "-o", tmp_path / "lin")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "lin" / "linearity_subject01.png").is_file()


def test_demo_small(tmp_path):
    exp = tmp_path / "mini.toml"
    exp.write_text('name = "mini"\n[defaults]\nsplit = "future"\n[[run]]\nmodel = "interp"\n'
                   '[[run]]\nmodel = "direction"\n')
    r = run("demo", "-o", tmp_path / "demo", "--photos", 30, "--experiment", exp, "-q")
    assert r.exit_code == 0, r.output
    summary = (tmp_path / "demo" / "summary.md").read_text()
    assert "future split" in summary and "best" in summary
    assert (tmp_path / "demo" / "comparison.md").is_file()


def _one_line_error(r, *needles):
    assert r.exit_code != 0
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    assert "Traceback" not in r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_input_gives_one_line(tmp_path):
    _one_line_error(run("train", tmp_path / "missing"), "missing", "no such directory")
    write_subject(tmp_path / "d" / "ann", [10, 20, 30, 40, 50, 60])
    np.save(tmp_path / "d" / "ann" / "x1.npy", np.zeros((2, 3), np.float32))
    _one_line_error(run("train", tmp_path / "d"), "x1.npy", "not an integer age")
    (tmp_path / "d" / "ann" / "x1.npy").unlink()
    np.save(tmp_path / "d" / "ann" / "70.npy", np.zeros((5,), np.float32))
    _one_line_error(run("train", tmp_path / "d"), "70.npy", "shape")
    (tmp_path / "d" / "ann" / "70.npy").unlink()
    _one_line_error(run("train", tmp_path / "d", "--model", "transformer"), "unknown model")
    _one_line_error(run("train", tmp_path / "d", "--model", "offset", "-p", "depth=3"), "unknown parameter 'depth'")
    _one_line_error(run("train", tmp_path / "d", "--model", "direct", "--dims", 3), "--dims does not apply")
    _one_line_error(run("train", tmp_path / "d", "--split", "external"), "at least two subjects")
    _one_line_error(run("evaluate", tmp_path / "d"), "exactly one of")
    _one_line_error(run("evaluate", tmp_path / "d", "--experiment", tmp_path / "nope.toml"), "no such experiment")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("keep me")
    _one_line_error(run("synth", tmp_path / "s"), "not empty")
    assert (tmp_path / "s" / "x").read_text() == "keep me"  # nothing already written is lost


def test_python_dash_m_works():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "aging", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "synth" in r.stdout
