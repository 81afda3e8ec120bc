import csv
import io as _stdio
import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import aging
from aging import io
from aging.experiments import (ExperimentError, RunConfig, bundled_dir, find_experiment, load_experiment,
                               run_config, run_experiment)
from aging.latents import EvalProtocol, LatentDataset, make_splits
from aging.models import make_model
from aging.scoring import check_anchors, fit_and_score, line_distances, linearity
from tests.harness import snapshot, working_dir

ROOT = Path(__file__).resolve().parents[1]
ERROR_CHART = (1100, 528)  # figsize (10, 4.8) at 110 dpi


def assert_chart(path: Path, size: tuple[int, int] | None = None, *, height_range=None) -> np.ndarray:
    """A chart that decodes, has the expected size in pixels and is not blank."""
    with Image.open(path) as im:
        im.load()
        arr = np.asarray(im.convert("RGB"))
    h, w = arr.shape[:2]
    if size is not None:
        assert (w, h) == size, f"{path.name}: {w}x{h}, expected {size[0]}x{size[1]}"
    if height_range is not None:
        assert height_range[0] <= h <= height_range[1], (path.name, h)
    inked = (arr < 240).any(axis=2).mean()
    colours = len(np.unique(arr.reshape(-1, 3), axis=0))
    assert inked > 0.01 and colours > 20, f"{path.name}: looks blank ({inked:.3%} inked, {colours} colours)"
    return arr


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(_stdio.StringIO(path.read_text(), newline="")))


def check_error_csv(run_dir: Path, metrics: dict) -> None:
    """error_vs_age.csv of a run agrees with its metrics.json: pair counts and pooled errors."""
    rows = read_csv(run_dir / "error_vs_age.csv")
    assert list(rows[0]) == ["set", "target_age_days", "target_age_years", "pairs", "model", "start", "mean", "truth"]
    for which in ("train", "test"):
        part = [r for r in rows if r["set"] == which]
        n = np.array([int(r["pairs"]) for r in part])
        assert n.sum() == metrics[f"n_{which}_pairs"]
        ages = [int(r["target_age_days"]) for r in part]
        assert ages == sorted(set(ages))  # one row per distinct target age, in order
        model = np.array([float(r["model"]) for r in part])
        assert (n * model).sum() / n.sum() == pytest.approx(metrics[f"{which}_mse"], rel=1e-9)
        start = np.array([float(r["start"]) for r in part])
        assert (n * start).sum() / n.sum() == pytest.approx(metrics["baselines"]["start"][f"{which}_mse"], rel=1e-9)


# ---------------------------------------------------------------------------------------------


def test_metrics_carry_the_contract_names(small_ds):
    res = fit_and_score(small_ds, lambda: make_model("offset", select="linear", dims=20), EvalProtocol(split="future"))
    m = res.metrics
    for key in ("model", "params", "pairs", "split", "train_mse", "test_mse", "baselines"):
        assert key in m
    assert set(m["baselines"]) >= {"start", "mean", "truth"}
    for b in m["baselines"].values():
        assert set(b) == {"train_mse", "test_mse"}
    assert m["params"] == {"select": "linear", "dims": 20, "inputs": "selected"}
    # the baselines are what they claim: on a future split the mean of the training photos is far
    # better than the (noisy) start latent, and the noise floor is better still
    b = m["baselines"]
    assert b["truth"]["test_mse"] < b["mean"]["test_mse"] < b["start"]["test_mse"]
    # ... and each equals its definition, recomputed here from the same test pairs
    fold = make_splits(small_ds, "future", "first", seed=0)[0]
    lat = small_ds.latents_flat.astype(np.float64)
    s, t = fold.test.start, fold.test.target
    assert b["start"]["test_mse"] == pytest.approx(np.mean((lat[s] - lat[t]) ** 2), rel=1e-6)
    means = {k: lat[fold.train.photos[small_ds.subject_of[fold.train.photos] == k]].mean(0) for k in range(3)}
    mean_err = [np.mean((lat[j] - means[small_ds.subject_of[j]]) ** 2) for j in t]
    assert b["mean"]["test_mse"] == pytest.approx(np.mean(mean_err), rel=1e-6)
    assert b["truth"]["test_mse"] == pytest.approx(np.mean((small_ds.clean_flat[t] - lat[t]) ** 2), rel=1e-6)
    assert m["n_test_pairs"] == len(t)


def test_external_split_has_no_mean_baseline_and_refits(small_ds):
    res = fit_and_score(small_ds, lambda: make_model("direction"), EvalProtocol(split="external"))
    m = res.metrics
    assert m["baselines"]["mean"]["test_mse"] is None
    assert m["baselines"]["mean"]["train_mse"] is not None
    assert [f["holdout"] for f in m["folds"]] == small_ds.names
    assert "refit" in m["final_model"]


def test_errors_by_target_age_add_up(small_ds):
    res = fit_and_score(small_ds, lambda: make_model("interp"), EvalProtocol(split="internal", pairs="all"))
    rows = res.test.by_target_age()
    assert sum(r["pairs"] for r in rows) == res.metrics["n_test_pairs"]
    pooled = sum(r["model"] * r["pairs"] for r in rows) / res.metrics["n_test_pairs"]
    assert pooled == pytest.approx(res.metrics["test_mse"])


def test_line_distances():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    on_line = [a + t * (b - a) for t in (0.0, 0.3, 1.0, 2.5)]
    perp = rng.standard_normal(16)
    perp -= (perp @ (b - a)) / ((b - a) @ (b - a)) * (b - a)
    off = a + 0.5 * (b - a) + perp
    d = line_distances(np.stack(on_line + [off]), 0, 2)
    np.testing.assert_allclose(d[:4], 0, atol=1e-9)
    assert d[4] == pytest.approx(np.sqrt(np.mean(perp**2)))


def test_linearity_of_a_subject(small_ds):
    res = linearity(small_ds, "subject01", (0, -1))
    assert res["distances"].shape == (len(small_ds.subjects[1]),)
    assert res["distances"][0] == pytest.approx(0, abs=1e-9) and res["distances"][-1] == pytest.approx(0, abs=1e-9)
    # age components move steadily (the synthetic data plants them among the least noisy): they
    # are exactly the components with the smallest step variances
    age = small_ds.truth["age_components"]
    assert res["step_variances"].shape == (small_ds.dim,)
    assert set(np.argsort(res["step_variances"])[:len(age)]) == set(age.tolist())


def test_anchors_out_of_range_are_refused_not_wrapped():
    assert check_anchors((0, -1), 40) == (0, 39)
    assert check_anchors((-40, 5), 40) == (0, 5)
    with pytest.raises(ValueError, match="999 is out of range.*40 photos"):
        check_anchors((0, 999), 40)
    with pytest.raises(ValueError, match="-41 is out of range"):
        check_anchors((-41, 0), 40)
    with pytest.raises(ValueError, match="same photo"):
        check_anchors((3, -37), 40)


# ---------------------------------------------------------------------------------------------


def test_run_is_finished_only_by_its_record(small_dir, tmp_path):
    ds = LatentDataset.load(small_dir)
    cfg = RunConfig(name="r", model="direction", split="future")
    run = tmp_path / "r"
    m1, reused1 = run_config(ds, cfg, run)
    assert reused1 is False
    assert sorted(p.name for p in run.iterdir()) == ["error_vs_age.csv", "error_vs_age.png", "finished.json",
                                                     "metrics.json", "model.json", "model.npz"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_mse"] == m1["test_mse"] and metrics["config"] == cfg.as_dict()
    check_error_csv(run, metrics)
    assert_chart(run / "error_vs_age.png", ERROR_CHART)
    assert json.loads((run / "model.json").read_text())["model"] == "direction"
    record = json.loads((run / "finished.json").read_text())
    assert set(record["outputs"]) == {"model.json", "model.npz", "metrics.json", "error_vs_age.csv",
                                      "error_vs_age.png"}

    # a re-run reuses it and writes nothing at all
    before = snapshot(run)
    m2, reused2 = run_config(ds, cfg, run)
    assert reused2 is True and m2["test_mse"] == m1["test_mse"]
    assert snapshot(run) == before

    # a changed configuration is recomputed
    _, reused3 = run_config(ds, RunConfig(name="r", model="direction", split="internal"), run)
    assert reused3 is False
    assert json.loads((run / "metrics.json").read_text())["split"] == "internal"


def test_changed_latents_are_not_taken_for_a_finished_run(small_dir, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(small_dir, data)
    cfg = RunConfig(name="r", model="offset", params={"select": "linear", "dims": 16}, split="future")
    m1, _ = run_config(LatentDataset.load(data), cfg, tmp_path / "r")
    # same path, same number of photos, one latent changed: the old check reused the run
    f = sorted((data / "subject00").glob("*.npy"))[5]
    np.save(f, np.load(f) + 3.0)
    m2, reused = run_config(LatentDataset.load(data), cfg, tmp_path / "r")
    assert reused is False and m2["test_mse"] != m1["test_mse"]


def test_a_folder_without_a_valid_record_is_redone(small_dir, tmp_path):
    """What a killed train left: the old code's outputs (no record), or one model's files beside
    another's metrics. Neither is reused; the run is redone and consistent afterwards."""
    ds = LatentDataset.load(small_dir)
    a = RunConfig(name="r", model="offset", params={"select": "linear", "dims": 16}, split="future")
    b = RunConfig(name="r", model="interp", split="future")
    run_config(ds, a, tmp_path / "a")
    run_config(ds, b, tmp_path / "b")
    for f in ("model.json", "model.npz"):  # killed after saving b's model over a's run
        shutil.copy(tmp_path / "b" / f, tmp_path / "a" / f)
    (tmp_path / "a" / "finished.json").unlink()
    m, reused = run_config(ds, a, tmp_path / "a")
    assert reused is False
    assert json.loads((tmp_path / "a" / "model.json").read_text())["model"] == "offset" == m["model"]
    assert io.is_finished(tmp_path / "a" / "finished.json", json.loads((tmp_path / "a" / "finished.json")
                                                                      .read_text())["key"])
    # a record whose outputs changed size is not finished either
    (tmp_path / "a" / "error_vs_age.csv").write_text("set\n")
    assert run_config(ds, a, tmp_path / "a")[1] is False
    check_error_csv(tmp_path / "a", m)


def test_experiment_file(tmp_path, small_dir):
    exp_file = tmp_path / "e.toml"
    exp_file.write_text('name = "t"\n[defaults]\nsplit = "future"\n'
                        '[[run]]\nname = "a"\nmodel = "interp"\n'
                        '[[run]]\nname = "b"\nmodel = "offset"\nselect = "linear"\ndims = 16\n'
                        '[[run]]\nname = "c"\nmodel = "direction"\nsplit = "external"\n')
    exp = load_experiment(exp_file)
    assert [r.name for r in exp.runs] == ["a", "b", "c"]
    assert exp.runs[1].params == {"select": "linear", "dims": 16}
    assert exp.runs[2].split == "external" and exp.runs[0].split == "future"
    out = tmp_path / "out"
    rows = run_experiment(LatentDataset.load(small_dir), exp, out, progress=False, echo=lambda s: None)
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    table = (out / "comparison.md").read_text()
    assert "| b | offset | first | future |" in table and "Skipped" not in table
    # the CSV holds every run's numbers as its metrics.json has them
    csv_rows = read_csv(out / "comparison.csv")
    assert [r["name"] for r in csv_rows] == ["a", "b", "c"]
    for r in csv_rows:
        m = json.loads((out / r["name"] / "metrics.json").read_text())
        assert float(r["test_mse"]) == pytest.approx(m["test_mse"], rel=1e-12)
        assert float(r["start_test_mse"]) == pytest.approx(m["baselines"]["start"]["test_mse"], rel=1e-12)
        assert int(r["n_test_pairs"]) == m["n_test_pairs"] and r["split"] == m["split"] and r["skipped"] == ""
        assert float(r["vs_start"]) == pytest.approx(m["test_mse"] / m["baselines"]["start"]["test_mse"])
        assert f"**{m['test_mse']:.4f}**" in table
        check_error_csv(out / r["name"], m)
    assert [r["mean_test_mse"] == "" for r in csv_rows] == [False, False, True]  # external: no mean
    assert_chart(out / "error_vs_age_future_first.png", ERROR_CHART)
    assert_chart(out / "error_vs_age_external_first.png", ERROR_CHART)
    assert_chart(out / "comparison.png", height_range=(310, 318))  # 3 bars: (0.45 * 3 + 1.5) in at 110 dpi
    # a re-run writes nothing
    before = snapshot(out)
    run_experiment(LatentDataset.load(small_dir), exp, out, progress=False, echo=lambda s: None)
    assert snapshot(out) == before


def test_runs_that_cannot_apply_are_skipped_with_the_reason(tmp_path):
    from aging.synthetic import SynthConfig, generate

    one, _ = generate(SynthConfig(subjects=1, photos=30, shape=(4, 8), seed=2))
    exp_file = tmp_path / "e.toml"
    exp_file.write_text('name = "t"\n'
                        '[[run]]\nname = "inside"\nmodel = "direction"\nsplit = "internal"\n'
                        '[[run]]\nname = "held-out"\nmodel = "direction"\nsplit = "external"\n'
                        '[[run]]\nname = "wide"\nmodel = "offset"\ndims = 33\n')
    said = []
    rows = run_experiment(one, load_experiment(exp_file), tmp_path / "out", progress=False, echo=said.append)
    assert [r["skipped"] is None for r in rows] == [True, False, False]
    assert "at least two" in rows[1]["skipped"] and "33" in rows[2]["skipped"]
    assert any(line.split()[:2] == ["skip", "held-out"] for line in said)
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert f"skipped `held-out` (direction, first pairs, external split): {rows[1]['skipped']}" in md
    assert "| inside | direction |" in md and "| held-out |" not in md
    csv_rows = read_csv(tmp_path / "out" / "comparison.csv")
    assert [r["skipped"] for r in csv_rows] == ["", rows[1]["skipped"], rows[2]["skipped"]]
    assert csv_rows[1]["test_mse"] == "" and float(csv_rows[0]["test_mse"]) > 0
    assert not (tmp_path / "out" / "held-out").exists() and not (tmp_path / "out" / "wide").exists()
    assert not (tmp_path / "out" / "error_vs_age_external_first.png").exists()

    # when no run applies, the experiment fails with the reason and writes nothing
    only = tmp_path / "only.toml"
    only.write_text('[[run]]\nname = "held-out"\nmodel = "direction"\nsplit = "external"\n')
    with pytest.raises(ExperimentError, match="no run applies.*at least two"):
        run_experiment(one, load_experiment(only), tmp_path / "none", progress=False, echo=said.append)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("body, message", [
    ('[[run]]\nmodel = "nope"\n', "unknown model 'nope'"),
    ('[[run]]\nname = "x"\nmodel = "offset"\ndepth = 2\n', "unknown parameter 'depth'"),
    ('[[run]]\nname = "x"\n', "has no 'model'"),
    ('[[run]]\nmodel = "interp"\n[[run]]\nmodel = "interp"\n', "two runs named"),
    ('name = \n', "not valid TOML"),
    ('[defaults]\nsplitt = "x"\n[[run]]\nmodel = "interp"\n', "unknown key 'splitt'"),
    # wrong types: one line naming the key, never a traceback
    ('run = 5\n', "key 'run' must be a list, got 5"),
    ('defaults = 3\n[[run]]\nmodel = "interp"\n', "key 'defaults' must be a table, got 3"),
    ('[defaults]\nseed = "abc"\n[[run]]\nmodel = "interp"\n', r"\[defaults\]: key 'seed' must be a whole number"),
    ('[[run]]\nmodel = ["offset"]\n', "key 'model' must be a string"),
    ('[[run]]\nmodel = "interp"\nseed = 1.5\n', "key 'seed' must be a whole number"),
    ('[[run]]\nmodel = "interp"\ntest_fraction = "a"\n', "key 'test_fraction' must be a number"),
    ('run = [5]\n', "run #1 must be a table"),
    ('name = 7\n[[run]]\nmodel = "interp"\n', "key 'name' must be a string"),
    ('[[runs]]\nmodel = "interp"\n', "unknown key 'runs'"),
    # values no dataset can take
    ('[[run]]\nmodel = "interp"\ntest_fraction = 1.5\n', "test_fraction must be strictly between 0 and 1"),
    ('[[run]]\nmodel = "interp"\ntest_fraction = nan\n', "test_fraction must be strictly between 0 and 1"),
    ('[[run]]\nmodel = "interp"\nn_pairs = 0\n', "n_pairs must be between 1"),
    ('[[run]]\nmodel = "interp"\nmin_gap = -1\n', "min_gap must not be negative"),
    ('[[run]]\nmodel = "interp"\nseed = -1\n', "seed must not be negative"),
    ('[[run]]\nmodel = "interp"\nsplit = "sideways"\n', "unknown split 'sideways'"),
    ('[[run]]\nmodel = "mlp"\nhidden = "abc"\n', "run 'mlp'.*hidden"),
    ('[[run]]\nname = "../escape"\nmodel = "interp"\n', "not usable as a folder name"),
    ('name = "a/b"\n[[run]]\nmodel = "interp"\n', "experiment name 'a/b' is not usable"),
])
def test_bad_experiment_files(tmp_path, body, message):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(ExperimentError, match=message) as info:
        load_experiment(f)
    assert str(f) in str(info.value) and "\n" not in str(info.value)


def test_experiment_file_not_utf8(tmp_path):
    f = tmp_path / "latin.toml"
    f.write_bytes('description = "évaluation"\n[[run]]\nmodel = "interp"\n'.encode("latin-1"))
    with pytest.raises(ExperimentError, match="not UTF-8"):
        load_experiment(f)


def test_shipped_experiments_are_package_data(tmp_path):
    """`--experiment study` must work from any folder and in a non-editable install: the bundled
    experiments live inside the package, pyproject ships them, configs/experiments links to them."""
    folder = bundled_dir()
    assert folder == Path(aging.__file__).parent / "configs" / "experiments"
    names = sorted(p.name for p in folder.glob("*.toml"))
    assert names == ["demo.toml", "study.toml"]
    with working_dir(tmp_path):  # no configs/ here
        for name in ("demo", "study", "study.toml"):
            assert find_experiment(name).parent == folder
            assert load_experiment(name).runs
        with pytest.raises(ExperimentError, match="no such experiment file.*demo, study"):
            find_experiment("studdy")
        # a folder named like an experiment (a user's `demo/` output) does not hide the bundled one
        (tmp_path / "demo").mkdir()
        assert find_experiment("demo").parent == folder
        (tmp_path / "mine").mkdir()
        with pytest.raises(ExperimentError, match="mine: is a folder"):
            find_experiment("mine")
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["aging"]
    pkg = Path(aging.__file__).parent
    shipped = {p.relative_to(pkg) for g in globs for p in pkg.glob(g)}
    assert {Path("configs/experiments") / n for n in names} <= shipped
    # one copy: the checkout's configs/experiments is the packaged folder
    assert (ROOT / "configs" / "experiments").resolve() == folder.resolve()
