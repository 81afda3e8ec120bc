import numpy as np
import pytest

from aging.latents import LatentDataset, LatentDatasetError
from aging.scoring import explained_variance, lag1_autocorrelation
from aging.synthetic import SynthConfig, generate
from tests.conftest import small_config


def test_defaults_look_like_the_real_data():
    ds, truth = generate(SynthConfig(photos=120))  # (18, 512) latents, as the study's
    assert ds.latent_shape == (18, 512)
    assert ds.subjects[0].latents.dtype == np.float32
    ev = explained_variance(ds)
    assert 0.01 < ev < 0.10, ev  # "a few percent", as the study's real latents (about 2.5 %)
    assert abs(lag1_autocorrelation(ds)) < 0.1  # residuals uncorrelated from photo to photo
    assert truth["age_components"].size == round(0.1 * 18 * 512)
    np.testing.assert_allclose(np.linalg.norm(truth["direction"]), 1.0, rtol=1e-5)


def test_truth_is_written_and_reloaded(small_dir):
    ds = LatentDataset.load(small_dir)
    assert ds.clean_flat is not None
    noise = ds.latents_flat - ds.clean_flat
    ns = np.load(small_dir / "truth.npz")["noise_scale"].reshape(-1)
    # the residual really is the per-component noise: its std follows noise_scale
    assert np.corrcoef(noise.std(0), ns)[0, 1] > 0.9


def test_seed_determines_the_data():
    a, _ = generate(small_config(seed=1))
    b, _ = generate(small_config(seed=1))
    c, _ = generate(small_config(seed=2))
    np.testing.assert_array_equal(a.latents_flat, b.latents_flat)
    assert not np.allclose(a.latents_flat, c.latents_flat)


def test_latent_stats_script(small_dir, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "latent_stats.py"
    spec = importlib.util.spec_from_file_location("latent_stats", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(small_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("subject0") == 3
    rows = mod.describe(LatentDataset.load(small_dir))
    assert all(0 < r["trend_explained"] < 0.5 for r in rows)
    assert mod.main([str(small_dir / "nope")]) == 1


# ---------------------------------------------------------------------------------------------
# a truth.npz that cannot be read or does not fit: one line naming it, never wrong numbers
# ---------------------------------------------------------------------------------------------


def _written(tmp_path, **kw):
    from aging.synthetic import write_dataset

    ds, truth = generate(small_config(subjects=2, photos=12, shape=(2, 4), **kw))
    write_dataset(ds, truth, tmp_path)
    return truth


def _rewrite_truth(tmp_path, fn):
    from aging.io import read_npz, save_npz

    truth = read_npz(tmp_path / "truth.npz")
    fn(truth)
    save_npz(tmp_path / "truth.npz", **truth)


def test_truth_fits_a_subset_of_the_photos(tmp_path):
    _written(tmp_path)
    (tmp_path / "subject00" / sorted(p.name for p in (tmp_path / "subject00").glob("*.npy"))[3]).unlink()
    ds = LatentDataset.load(tmp_path)
    assert len(ds.subjects[0]) == 11 and ds.clean_flat is not None
    truth = np.load(tmp_path / "truth.npz")
    keep = np.isin(truth["ages/subject00"], ds.subjects[0].ages)
    np.testing.assert_array_equal(ds.subjects[0].clean, truth["clean/subject00"][keep])


def test_a_subject_without_truth_has_no_noise_floor(tmp_path):
    _written(tmp_path)
    _rewrite_truth(tmp_path, lambda t: (t.pop("clean/subject01"), t.pop("ages/subject01")))
    ds = LatentDataset.load(tmp_path)
    assert ds.subjects[0].clean is not None and ds.subjects[1].clean is None and ds.clean_flat is None


@pytest.mark.parametrize("case,needle", [
    ("garbage", "unreadable ground-truth archive"),
    ("truncated", "unreadable ground-truth archive"),
    ("pickled", "unreadable ground-truth archive"),
    ("other-shape", r"clean/subject00 has shape \(12, 3, 4\)"),
    ("other-ages", "no clean latent of subject00 at age"),
    ("ages-missing", "no integer array ages/subject00"),
    ("ages-float", "no integer array ages/subject00"),
    ("nan", "clean/subject00 contains NaN"),
])
def test_a_truth_that_does_not_fit_is_one_line_naming_it(tmp_path, case, needle):
    _written(tmp_path)
    path = tmp_path / "truth.npz"
    if case == "garbage":
        path.write_bytes(b"not a zip archive")
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif case == "pickled":
        np.savez(path, x=np.array([{"a": 1}], dtype=object))
    elif case == "other-shape":
        _rewrite_truth(tmp_path, lambda t: t.update({"clean/subject00": np.zeros((12, 3, 4), np.float32)}))
    elif case == "other-ages":
        _rewrite_truth(tmp_path, lambda t: t.update({"ages/subject00": t["ages/subject00"] + 1}))
    elif case == "ages-missing":
        _rewrite_truth(tmp_path, lambda t: t.pop("ages/subject00"))
    elif case == "ages-float":
        _rewrite_truth(tmp_path, lambda t: t.update({"ages/subject00": t["ages/subject00"] + 0.5}))
    else:
        _rewrite_truth(tmp_path, lambda t: t["clean/subject00"].__setitem__((4, 0, 0), np.nan))
    with pytest.raises(LatentDatasetError, match=needle) as info:
        LatentDataset.load(tmp_path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg and "delete it" in msg, msg
