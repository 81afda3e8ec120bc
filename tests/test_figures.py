"""`aging figures`: figures, tables and the report on tiny synthetic datasets (2 subjects, and 1)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from aging.figures.noise import known_noise, noise_floor
from aging.synthetic import SynthConfig, generate, write_dataset
from tests.harness import cli, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = ["--mlp-epochs", "2", "--mlp-pairs", "120", "-q"]
PNG = b"\x89PNG\r\n\x1a\n"


def _dataset(tmp_path_factory, subjects: int):
    ds, truth = generate(SynthConfig(subjects=subjects, photos=30, shape=(4, 16), seed=3))
    return write_dataset(ds, truth, tmp_path_factory.mktemp("data") / f"s{subjects}")


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    data = _dataset(tmp_path_factory, 2)
    out = tmp_path_factory.mktemp("fig") / "out"
    res = cli(["figures", data, "-o", out, *QUICK])
    assert res.exit_code == 0, res.stderr + repr(res.exception)
    return data, out, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    data = _dataset(tmp_path_factory, 1)
    out = tmp_path_factory.mktemp("fig1") / "out"
    res = cli(["figures", data, "-o", out, *QUICK])
    assert res.exit_code == 0, res.stderr + repr(res.exception)
    return data, out, json.loads((out / "report.json").read_text())


def _check_outputs(out, report):
    for f in report["figures"]:
        assert (out / f["file"]).read_bytes().startswith(PNG), f["file"]
        assert f["study_figure"] in f["file"].replace("fig0", "fig"), f  # the study's number in the name
        assert f"Fig {f['study_figure']}" in f["caption"] and "Here" in f["caption"]
    for name, t in report["tables"].items():
        with open(out / t["csv"], newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows and list(rows[0]) == t["columns"], name
        assert len(rows) == len(t["rows"])
        assert (out / t["markdown"]).read_text().count("\n|") >= len(rows)


def test_every_figure_and_table_named_in_the_report_exists(two):
    _, out, report = two
    assert {f["study_figure"] for f in report["figures"]} == {"3.3", "8", "9", "10", "11", "12", "14", "15"}
    _check_outputs(out, report)
    cols = report["tables"]["offset"]["columns"]
    assert cols[:9] == ["model", "select", "dims", "split", "pairs", "train_mse", "test_mse", "start_mse", "mean_mse"]
    assert "truth_mse" in cols and "noise_floor" in cols  # synthetic data: the truth beside every error
    assert {r["split"] for r in report["tables"]["models"]["rows"]} == {"internal", "future", "external"}
    d = report["dataset"]
    assert d["photos"] == 60 and len(d["subjects"]) == 2 and len(d["content_sha256"]) == 64


def test_report_numbers_are_the_runs_metrics(two):
    _, out, report = two
    checked = 0
    for t in report["tables"].values():
        for row in t["rows"]:
            m = json.loads((out / "runs" / row["run"] / "metrics.json").read_text())
            assert row["test_mse"] == m["test_mse"] and row["train_mse"] == m["train_mse"]
            assert row["start_mse"] == m["baselines"]["start"]["test_mse"]
            assert row["truth_mse"] == m["baselines"]["truth"]["test_mse"]
            assert row["noise_floor"] == report["noise_floor"]["overall"]
            checked += 1
    assert checked >= 20


def test_html_is_self_contained(two):
    _, out, report = two
    text = (out / "report.html").read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)""", text)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert len(refs) == len(report["figures"])
    assert "url(" not in text and "@import" not in text
    for f in report["figures"]:
        assert f["caption"][:40].replace("'", "&#x27;") in text


def test_a_finished_rerun_writes_nothing(two):
    data, out, _ = two
    before = snapshot(out)
    res = cli(["figures", data, "-o", out, *QUICK])
    assert res.exit_code == 0, res.stderr
    assert snapshot(out) == before


def test_a_changed_option_redoes_only_what_depends_on_it(two, tmp_path):
    import shutil

    data, out, _ = two
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    before = snapshot(copy)
    res = cli(["figures", data, "-o", copy, *QUICK, "--anchors", "1,-2"])
    assert res.exit_code == 0, res.stderr
    changed = {k for k, v in snapshot(copy).items() if before.get(k) != v}
    assert "fig3.3_linearity.png" in changed and "report.json" in changed
    assert not any(k.startswith(("runs/", "tables/")) for k in changed), changed


def test_one_subject_dataset(one):
    _, out, report = one
    _check_outputs(out, report)
    figs = {f["study_figure"] for f in report["figures"]}
    assert "12" not in figs and {"3.3", "8", "11", "14", "15"} <= figs  # no subject to hold out
    assert {r["split"] for r in report["tables"]["offset"]["rows"]} == {"internal"}
    assert all("external" in k for k in report["tables"]["models"]["skipped"])
    assert "future split" in next(f for f in report["figures"] if f["study_figure"] == "15")["caption"]


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_floor_matches_the_known_noise(seed):
    ds, _ = generate(SynthConfig(subjects=3, photos=200, shape=(4, 16), seed=seed))
    nf = noise_floor(ds)
    truth = known_noise(ds)
    assert truth is not None and abs(nf["overall"] / truth - 1) < 0.05, (nf["overall"], truth)
    assert set(nf["per_subject"]) == {s.name for s in ds.subjects}
    # twice the noise std: four times the estimate
    ds2, _ = generate(SynthConfig(subjects=3, photos=200, shape=(4, 16), seed=seed, noise=1.0))
    assert abs(noise_floor(ds2)["overall"] / nf["overall"] - 4) < 0.4


def test_noise_floor_is_not_fooled_by_a_steep_trend():
    ds, _ = generate(SynthConfig(subjects=2, photos=200, shape=(4, 16), trend=20.0, curvature=0.0))
    assert abs(noise_floor(ds)["overall"] / known_noise(ds) - 1) < 0.05


def test_bad_anchors_and_direction_are_one_line(two, tmp_path):
    from tests.harness import assert_user_error

    data, _, _ = two
    assert_user_error(cli(["figures", data, "-o", tmp_path / "a", *QUICK, "--anchors", "0,99"]), "99")
    bad = tmp_path / "d.npy"
    np.save(bad, np.ones(7, np.float32))
    assert_user_error(cli(["figures", data, "-o", tmp_path / "b", *QUICK, "--direction", bad]), "d.npy")
