"""Kill tests of ``train``, ``evaluate`` and ``synth``: SIGKILL at chosen atomic writes, then run
again without the hook. The outputs must be complete, consistent (model and metrics of one
configuration, a valid completion record, no hidden temporaries) and equal to an uninterrupted
run's, apart from timing fields.

The kill points are picked from the number of atomic writes an uninterrupted run makes (counted
in-process), so they follow the code when it gains or loses a write.
"""

from __future__ import annotations

import csv
import io as _stdio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aging import io
from tests.harness import cli, contents, hidden_leftovers, run_aging, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")

TIMING = {"fit_seconds", "eval_seconds"}
EXPERIMENT = ('name = "mini"\n[defaults]\nsplit = "future"\n'
              '[[run]]\nname = "interp"\nmodel = "interp"\n'
              '[[run]]\nname = "offset"\nmodel = "offset"\nselect = "linear"\ndims = 16\n'
              '[[run]]\nname = "direction-external"\nmodel = "direction"\nsplit = "external"\n')


def _drop_timing(obj):
    if isinstance(obj, dict):
        return {k: _drop_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_drop_timing(v) for v in obj]
    return obj


def normalized(folder: Path) -> dict:
    """Every non-hidden file under ``folder``, comparable across runs: timing fields dropped,
    completion records reduced to their key and output names (output sizes follow the timing
    digits of metrics.json), charts and archives decoded."""
    out = {}
    for rel, data in contents(folder).items():
        name = Path(rel).name
        if name in ("finished.json", "synth.json"):
            rec = json.loads(data)
            out[rel] = (rec["key"], sorted(rec["outputs"]))
        elif name.endswith(".json"):
            out[rel] = _drop_timing(json.loads(data))
        elif name.endswith(".csv"):
            rows = list(csv.DictReader(_stdio.StringIO(data.decode(), newline="")))
            out[rel] = [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
        elif name.endswith(".md"):  # the last column of a comparison table is the fit time
            out[rel] = [ln.rsplit("|", 2)[0] if ln.startswith("| ") else ln for ln in data.decode().splitlines()]
        elif name.endswith(".png"):
            out[rel] = np.asarray(Image.open(_stdio.BytesIO(data)).convert("RGB")).tobytes()
        elif name.endswith(".npz"):
            with np.load(_stdio.BytesIO(data), allow_pickle=False) as z:
                out[rel] = {k: z[k].tobytes() for k in z.files}
        else:
            out[rel] = data
    return out


def count_writes(args, cwd: Path) -> int:
    """Atomic writes of an uninterrupted ``aging ARGS`` (run in-process from ``cwd``)."""
    before = io._writes
    out = cli(args, cwd)
    assert out.exit_code == 0, (args, out.stderr, out.exception)
    return io._writes - before


def kill_points(n: int) -> list:
    """First write, one temporary left unrenamed mid-way, the middle, and the last two writes
    (the completion record and what follows it)."""
    return sorted({1, f"{max(2, n // 3)}-", n // 2, n - 1, f"{n}-", n}, key=lambda k: (int(str(k).rstrip("-")),
                                                                                     str(k)))


def killed(args, cwd: Path, at) -> None:
    p = run_aging(args, cwd, kill_at=at)
    assert p.returncode == -9, f"kill at {at} did not fire (rc {p.returncode}): {p.stderr[-2000:]}"


def check_run_folder(run: Path) -> None:
    """A run folder is consistent: its record is valid and model, metrics and options describe
    the same configuration."""
    rec = json.loads((run / "finished.json").read_text())
    assert io.is_finished(run / "finished.json", rec["key"])
    model = json.loads((run / "model.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert model["model"] == metrics["model"] and model["params"] == metrics["params"]
    assert metrics["config"]["model"] == metrics["model"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A folder with a small dataset ``d`` (2 subjects x 30 photos of (4, 16))."""
    b = tmp_path_factory.mktemp("base")
    assert cli(["synth", "d", "--subjects", 2, "--photos", 30, "--shape", "4,16"], b).exit_code == 0
    return b


def fresh(base: Path, tmp_path: Path, name: str) -> Path:
    w = tmp_path / name
    shutil.copytree(base, w)
    return w


def test_kill_train(base, tmp_path):
    """A killed `train --model offset` over a finished `direction` run in the same folder: the
    next `train` of either configuration redoes it (never reuses a mix) and matches a clean run."""
    direction = ["train", "d", "--model", "direction", "-o", "runs/x", "-q"]
    offset = ["train", "d", "--model", "offset", "--select", "linear", "--dims", 16, "--split", "future",
              "-o", "runs/x", "-q"]
    ref_dir = fresh(base, tmp_path, "ref-direction")
    count_writes(direction, ref_dir)
    ref_off = fresh(base, tmp_path, "ref-offset")
    n = count_writes(offset, ref_off)
    assert n >= 6  # model.npz, model.json, csv, png, metrics, record (+ options)
    want_dir, want_off = normalized(ref_dir / "runs"), normalized(ref_off / "runs")
    old_key = json.loads((ref_dir / "runs" / "x" / "finished.json").read_text())["key"]
    for at in kill_points(n):
        w = fresh(ref_dir, tmp_path, f"kill-{at}")  # holds the finished direction run
        killed(offset, w, at)
        # the old record is gone before the first new file is written
        assert not io.is_finished(w / "runs" / "x" / "finished.json", old_key), f"kill at {at}"
        # the old configuration again: redone, not reused from the half-replaced folder
        out = cli(direction, w)
        assert out.exit_code == 0, out.stderr
        assert ("reused" in out.stdout) is False, f"kill at {at}: reused a half-replaced run"
        check_run_folder(w / "runs" / "x")
        assert normalized(w / "runs") == want_dir, f"kill at {at}"
        assert hidden_leftovers(w) == []
    # and the killed configuration itself, re-run after a kill, equals an uninterrupted run
    for at in (n // 2, f"{n}-"):
        w = fresh(ref_dir, tmp_path, f"again-{at}")
        killed(offset, w, at)
        assert cli(offset, w).exit_code == 0
        check_run_folder(w / "runs" / "x")
        assert normalized(w / "runs") == want_off, f"kill at {at}"
        assert hidden_leftovers(w) == []
        before = snapshot(w)
        assert "reused" in cli(offset, w).stdout and snapshot(w) == before


def test_kill_evaluate(base, tmp_path):
    args = ["evaluate", "d", "--experiment", "mini.toml", "-q"]
    ref = fresh(base, tmp_path, "ref")
    (ref / "mini.toml").write_text(EXPERIMENT)
    n = count_writes(args, ref)
    want = normalized(ref / "runs")
    assert {"mini/comparison.md", "mini/comparison.csv", "mini/comparison.png", "mini/finished.json",
            "mini/error_vs_age_future_first.png", "mini/error_vs_age_external_first.png",
            "mini/options.json"} <= set(want)
    for at in kill_points(n):
        w = fresh(base, tmp_path, f"kill-{at}")
        (w / "mini.toml").write_text(EXPERIMENT)
        killed(args, w, at)
        out = cli(args, w)
        assert out.exit_code == 0, out.stderr
        for name in ("interp", "offset", "direction-external"):
            check_run_folder(w / "runs" / "mini" / name)
        rec = json.loads((w / "runs" / "mini" / "finished.json").read_text())
        assert io.is_finished(w / "runs" / "mini" / "finished.json", rec["key"])
        assert normalized(w / "runs") == want, f"kill at {at}"
        assert hidden_leftovers(w) == []
        before = snapshot(w)
        assert cli(args, w).exit_code == 0 and snapshot(w) == before  # finished: a re-run writes nothing


def test_kill_synth_force(base, tmp_path):
    """A killed `synth --force` leaves the old dataset whole (never a mix); run again, the new
    dataset equals an uninterrupted one and no temporary folder is left."""
    args = ["synth", "d", "--subjects", 3, "--photos", 20, "--shape", "4,16", "--seed", 7, "--force"]
    ref = fresh(base, tmp_path, "ref")
    n = count_writes(args, ref)
    assert n == 3 * 20 + 2  # latents, truth.npz, the record
    old, want = normalized(base / "d"), normalized(ref / "d")
    for at in kill_points(n):
        w = fresh(base, tmp_path, f"kill-{at}")
        killed(args, w, at)
        assert normalized(w / "d") == old, f"kill at {at}: the old dataset is not whole"
        out = cli(args, w)
        assert out.exit_code == 0, out.stderr
        assert normalized(w / "d") == want, f"kill at {at}"
        assert hidden_leftovers(w) == [] and sorted(p.name for p in w.iterdir()) == ["d"]
        assert "nothing to do" in cli(args[:-1], w).stdout  # finished: no --force, no writes
