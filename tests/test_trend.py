"""The ``trend`` model: a denoised start moved along a shrunk pooled age trend (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from aging import io as aio
from aging.latents import EvalProtocol, LatentDataset, PairSet, Subject, make_pairs, make_splits
from aging.models import ModelError, load_model, make_model
from aging.models.trend import box_windows, cv_errors, pooled_trend
from aging.scoring import fit_and_score
from aging.synthetic import generate
from tests.conftest import small_config
from tests.harness import assert_user_error, cli

FUTURE = EvalProtocol(pairs="first", split="future")


def _cos(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _subject_copy(ds: LatentDataset, latents_flat: np.ndarray) -> LatentDataset:
    subs = [Subject(s.name, s.ages, latents_flat[ds.photos_of(k)].reshape(s.latents.shape))
            for k, s in enumerate(ds.subjects)]
    return LatentDataset(subs)


@pytest.fixture(scope="module")
def planted():
    """A clear linear trend, one aging rate: the clean latents move at one known velocity."""
    return generate(small_config(shape=(8, 64), photos=80, noise=0.3, trend=2.0, curvature=0.0, rate_spread=0.0))


def test_recovers_the_planted_slope_and_beats_both_baselines(planted):
    ds, _ = planted
    res = fit_and_score(ds, lambda: make_model("trend"), FUTURE)
    m = res.model
    s = ds.subjects[0]
    truth = ((s.clean[-1] - s.clean[0]) / (s.ages[-1] - s.ages[0])).reshape(-1).astype(np.float64)  # per day
    velocity = float(m.shrinkage_) * m.slope_
    assert _cos(velocity, truth) >= 0.95
    assert 0.8 <= np.linalg.norm(velocity) / np.linalg.norm(truth) <= 1.2
    base = res.metrics["baselines"]
    assert res.metrics["test_mse"] < 0.95 * base["mean"]["test_mse"], res.metrics
    assert res.metrics["test_mse"] < 0.7 * base["start"]["test_mse"], res.metrics
    # an unseen subject starts from its own photo and still beats standing still
    ext = fit_and_score(ds, lambda: make_model("trend"), EvalProtocol(pairs="first", split="external"))
    assert ext.metrics["test_mse"] < 0.9 * ext.metrics["baselines"]["start"]["test_mse"], ext.metrics


@pytest.mark.parametrize("subjects", [1, 3])
def test_without_a_trend_it_shrinks_to_the_subject_mean(subjects):
    ds, _ = generate(small_config(shape=(8, 64), photos=80, subjects=subjects, trend=0.0, curvature=0.0))
    res = fit_and_score(ds, lambda: make_model("trend"), FUTURE)
    m, mean = res.model, res.metrics["baselines"]["mean"]["test_mse"]
    assert m.shrinkage_ <= 0.3  # (about 1 with the planted trend above)
    year = float(np.mean((m.shrinkage_ * m.slope_ * 365) ** 2))  # its move over a year, per component
    assert year < 0.002 * mean, (year, mean)
    assert abs(res.metrics["test_mse"] - mean) <= 0.01 * mean, (res.metrics["test_mse"], mean)


def test_one_subject_one_start_photo_uses_the_denoised_start():
    # the study's setting: one subject, `first` pairs, later photos predicted from the first one
    ds, _ = generate(small_config(subjects=1, photos=60, trend=0.5))
    (fold,) = make_splits(ds, "future", "first")
    m = make_model("trend").fit(fold.train)
    train = fold.train.photos
    ages = ds.ages[train].astype(np.float64)
    lo, hi = box_windows(ages, ages[:1], float(m.window_) * 365.25)
    level = ds.latents_flat[train[lo[0]:hi[0]]].astype(np.float64).mean(0)
    anchor = ages[lo[0]:hi[0]].mean()
    s = ds.subjects[0]
    pred = m.predict(s.latents[0], s.ages[0], [anchor, s.ages[-1]]).reshape(2, -1)
    np.testing.assert_allclose(pred[0], level, atol=1e-5)  # the window's mean, not the noisy photo
    assert np.abs(pred[0] - s.latents[0].reshape(-1)).max() > 0.1
    res = fit_and_score(ds, lambda: make_model("trend"), FUTURE)
    assert np.isfinite(res.metrics["test_mse"])
    assert res.metrics["test_mse"] <= res.metrics["baselines"]["mean"]["test_mse"] * 1.01


def test_an_unseen_start_is_its_own_level(planted):
    ds, _ = planted
    m = make_model("trend").fit(make_pairs(ds, "first", photos=np.nonzero(ds.subject_of != 2)[0]))
    s = ds.subjects[2]
    out = m.predict(s.latents[4], s.ages[4], [s.ages[4], s.ages[4] + 365])
    np.testing.assert_allclose(out[0], s.latents[4], atol=1e-6)
    step = (out[1] - out[0]).reshape(-1)
    np.testing.assert_allclose(step, 365 * float(m.shrinkage_) * m.slope_, rtol=1e-4, atol=1e-6)


def test_cross_validation_is_the_brute_force_error():
    ds, _ = generate(small_config(subjects=2, photos=30, shape=(3, 8)))
    (fold,) = make_splits(ds, "internal", "all")
    pairs, windows, min_t, shrink = fold.train, np.array([0.0, 40.0, 1e5]), np.array([0.0, 2.0]), np.array([0.0, 0.7])
    got = cv_errors(pairs, 0.25, windows, min_t, shrink)
    early, late = [], []
    for seq in pairs.sequences():
        m = min(max(int(np.ceil(0.75 * len(seq))), 2), len(seq) - 1)
        early.append(seq[:m])
        late.append(seq[m:])
    slope, tstat = pooled_trend(ds, early)
    fit_on = {int(p): e for e in early for p in e}
    later = set(np.concatenate(late).tolist())
    val = [(a, b) for a, b in zip(pairs.start, pairs.target) if int(a) in fit_on and int(b) in later]
    assert val
    want = np.zeros_like(got)
    for idx in np.ndindex(*want.shape):
        w, t, c = windows[idx[0]], min_t[idx[1]], shrink[idx[2]]
        errs = []
        for a, b in val:
            e = fit_on[int(a)]
            near = e[np.abs(ds.ages[e] - ds.ages[a]) <= w]
            level = ds.latents_flat[near].astype(np.float64).mean(0)
            pred = level + c * slope * (tstat >= t) * (ds.ages[b] - ds.ages[near].mean())
            errs.append(np.mean((pred - ds.latents_flat[b]) ** 2))
        want[idx] = np.mean(errs)
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_what_it_learns_never_depends_on_the_test_photos(planted):
    ds, _ = planted
    (fold,) = make_splits(ds, "future", "first")
    hidden = np.setdiff1d(np.arange(ds.num_photos), fold.train.photos)
    changed = ds.latents_flat.copy()
    changed[hidden] = np.random.default_rng(5).standard_normal(changed[hidden].shape) * 10
    other = _subject_copy(ds, changed)
    (fold2,) = make_splits(other, "future", "first")
    a, b = make_model("trend").fit(fold.train), make_model("trend").fit(fold2.train)
    for key in a._state_arrays:
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


def _near_pairs(ds: LatentDataset, n: int, gap: int = 3) -> PairSet:
    """Pairs from each of the first ``n`` photos of a one-subject dataset to its next ``gap`` photos."""
    start, target = np.array([(i, j) for i in range(n) for j in range(i + 1, min(i + gap + 1, n))]).T
    return PairSet(ds, start, target, np.arange(n))


def test_the_window_follows_the_data():
    # targets a few photos after the start: a subject that wanders (a random walk, little noise) is
    # best told by the photos near the start; for white noise around one latent, every photo counts
    rng = np.random.default_rng(0)
    ages = 7000 + 10 * np.arange(120)
    walk = np.cumsum(rng.standard_normal((120, 16)) * 0.3, axis=0) + 0.05 * rng.standard_normal((120, 16))
    windows = (0.0, 0.25, 1.0, 100.0)
    wander = LatentDataset([Subject("w", ages, walk.astype(np.float32))])
    assert make_model("trend", windows=windows).fit(_near_pairs(wander, 96)).window_ <= 0.25
    flat = LatentDataset([Subject("n", ages, rng.standard_normal((120, 16)).astype(np.float32))])
    assert make_model("trend", windows=windows).fit(_near_pairs(flat, 96)).window_ == 100.0


def test_save_load_round_trip_predicts_identically(planted, tmp_path):
    ds, _ = planted
    (fold,) = make_splits(ds, "future", "all")
    m = make_model("trend", windows=(0.25, 100)).fit(fold.train)
    m.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.get_params() == m.get_params()
    s = ds.subjects[1]
    unseen = s.latents[3] + 0.01
    targets = s.ages[50:80:5]
    for start, age in ((s.latents[3], s.ages[3]), (s.latents[30], s.ages[30]), (unseen, s.ages[3])):
        np.testing.assert_array_equal(m.predict(start, age, targets), again.predict(start, age, targets))
    # the photos are not saved: one level per distinct window
    assert len(again.levels_) <= len(fold.train.photos)
    # a damaged archive is one line naming the file
    arrays = aio.read_npz(tmp_path / "m" / "model.npz")
    arrays["level_of_"] = arrays["level_of_"] + 10**6
    aio.save_npz(tmp_path / "m" / "model.npz", **arrays)
    with pytest.raises(ModelError, match="model.npz: array level_of_ is not a list of level indices"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("params, needle", [
    ({"shrinkages": 1.5}, "parameter shrinkages must be a number or a non-empty list of numbers >= 0 and <= 1"),
    ({"shrinkages": []}, "parameter shrinkages"),
    ({"windows": [-1, 2]}, "parameter windows must be"),
    ({"windows": "wide"}, "parameter windows must be"),
    ({"min_t": float("nan")}, "parameter min_t must be"),
    ({"val_fraction": 1.0}, "parameter val_fraction must be a number > 0 and < 1"),
    ({"window": 2}, "unknown parameter 'window' for model trend"),
])
def test_bad_hyper_parameters_are_one_line(params, needle):
    with pytest.raises(ModelError) as exc:
        make_model("trend", **params)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_bad_hyper_parameter_on_the_command_line(small_dir, tmp_path):
    assert_user_error(cli(["train", small_dir, "--model", "trend", "-p", "shrinkages=[0,2]", "-o", tmp_path / "r"]),
                      "shrinkages")
    assert not (tmp_path / "r").exists()


def test_metrics_record_the_chosen_values(tmp_path):
    """metrics.json says which window, shrinkage and threshold the fit chose (the values saved in model.npz)."""
    import json

    data, run = tmp_path / "d", tmp_path / "run"
    assert cli(["synth", str(data), "--subjects", "2", "--photos", "30", "--shape", "4,8"]).exit_code == 0
    out = cli(["train", str(data), "--model", "trend", "--split", "future", "-o", str(run)])
    assert out.exit_code == 0, out.stderr
    chosen = json.loads((run / "metrics.json").read_text())["chosen"]
    model = load_model(run)
    assert chosen == {"window_years": float(model.window_), "shrinkage": float(model.shrinkage_),
                      "min_t": float(model.min_t_), "moving_components": int(np.count_nonzero(model.slope_))}
