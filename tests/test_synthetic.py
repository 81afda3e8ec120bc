import numpy as np

from aging.latents import LatentDataset
from aging.evaluate import explained_variance, lag1_autocorrelation
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
