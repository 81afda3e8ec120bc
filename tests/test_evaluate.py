import numpy as np
import pytest

from aging.evaluate import evaluate, line_distances, linearity
from aging.experiments import ExperimentError, RunConfig, load_experiment, run_config, run_experiment
from aging.latents import LatentDataset
from aging.models import make_model


def test_metrics_carry_the_contract_names(small_ds):
    res = evaluate(small_ds, lambda: make_model("offset", select="linear", dims=20), split="future")
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
    # the start baseline equals the error of a model that never moves
    none = evaluate(small_ds, lambda: make_model("offset", select="first", dims=1), split="future")
    assert abs(none.metrics["baselines"]["start"]["test_mse"] - b["start"]["test_mse"]) < 1e-12


def test_external_split_has_no_mean_baseline_and_refits(small_ds):
    res = evaluate(small_ds, lambda: make_model("direction"), split="external")
    m = res.metrics
    assert m["baselines"]["mean"]["test_mse"] is None
    assert m["baselines"]["mean"]["train_mse"] is not None
    assert [f["holdout"] for f in m["folds"]] == small_ds.names
    assert "refit" in m["final_model"]


def test_errors_by_target_age_add_up(small_ds):
    res = evaluate(small_ds, lambda: make_model("interp"), split="internal", pairs="all")
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
    # age components move steadily: their step variances are the smallest
    assert res["step_variances"].shape == (small_ds.dim,)


def test_run_is_reused_when_finished(small_dir, tmp_path):
    ds = LatentDataset.load(small_dir)
    cfg = RunConfig(name="r", model="direction", split="future")
    m1, reused1 = run_config(ds, cfg, tmp_path / "r")
    m2, reused2 = run_config(ds, cfg, tmp_path / "r")
    assert (reused1, reused2) == (False, True)
    assert m1["test_mse"] == m2["test_mse"]
    for f in ("model.json", "model.npz", "metrics.json", "error_vs_age.csv", "error_vs_age.png"):
        assert (tmp_path / "r" / f).is_file()
    # a changed configuration is recomputed
    _, reused3 = run_config(ds, RunConfig(name="r", model="direction", split="internal"), tmp_path / "r")
    assert reused3 is False


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
    rows = run_experiment(LatentDataset.load(small_dir), exp, tmp_path / "out", progress=False, echo=lambda s: None)
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    table = (tmp_path / "out" / "comparison.md").read_text()
    assert "| b | offset | first | future |" in table
    for f in ("comparison.csv", "comparison.png", "error_vs_age_future_first.png", "error_vs_age_external_first.png"):
        assert (tmp_path / "out" / f).is_file()


@pytest.mark.parametrize("body, message", [
    ('[[run]]\nmodel = "nope"\n', "unknown model 'nope'"),
    ('[[run]]\nname = "x"\nmodel = "offset"\ndepth = 2\n', "unknown parameter 'depth'"),
    ('[[run]]\nname = "x"\n', "has no 'model'"),
    ('[[run]]\nmodel = "interp"\n[[run]]\nmodel = "interp"\n', "two runs named"),
    ('name = \n', "invalid TOML"),
    ('[defaults]\nsplitt = "x"\n[[run]]\nmodel = "interp"\n', "unknown key"),
])
def test_bad_experiment_files(tmp_path, body, message):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(ExperimentError, match=message):
        load_experiment(f)


def test_shipped_experiments_load():
    for name in ("demo", "study"):
        exp = load_experiment(name)
        assert exp.runs
