"""The ``direction`` model reads published age directions in the shapes they come in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aging.latents import make_pairs
from aging.models import ModelError, make_model
from aging.models.direction import broadcast_direction
from aging.synthetic import SynthConfig, generate

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "directions"
needs_fixtures = pytest.mark.skipif(not (FIX / "puzer_age.npy").is_file(),
                                    reason="needs the shared fixtures ../shared/fixtures/directions")


@pytest.fixture(scope="module")
def wplus_ds():
    """3 subjects x 20 photos of (18, 512) latents: the W+ shape of the published directions."""
    ds, _ = generate(SynthConfig(subjects=3, photos=20, shape=(18, 512), seed=1))
    return ds


def test_broadcast_shapes():
    w = np.arange(4, dtype=np.float64) + 1
    flat = broadcast_direction(w, (3, 4))
    assert flat.shape == (12,) and flat.dtype == np.float64
    np.testing.assert_array_equal(flat.reshape(3, 4), np.tile(w, (3, 1)))
    np.testing.assert_array_equal(broadcast_direction(w[None], (3, 4)), flat)
    full = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_array_equal(broadcast_direction(full, (3, 4)), full.reshape(-1))
    np.testing.assert_array_equal(broadcast_direction(full.reshape(-1), (3, 4)), full.reshape(-1))
    for bad in (np.ones(5), np.ones((2, 4)), np.ones((4, 3)), np.ones((3, 4, 1))):
        with pytest.raises(ModelError, match="does not match"):
            broadcast_direction(bad, (3, 4), where="d.npy")


@needs_fixtures
@pytest.mark.parametrize("file,shape", [
    ("puzer_age.npy", (18, 512)),
    ("interfacegan_stylegan_ffhq_age_w_boundary.npy", (1, 512)),
])
def test_published_directions_load_and_predict_along_them(wplus_ds, file, shape):
    raw = np.load(FIX / file)
    assert raw.shape == shape and raw.dtype == np.float64
    model = make_model("direction", direction=str(FIX / file)).fit(make_pairs(wplus_ds, "first"))
    expect = np.broadcast_to(raw.reshape(-1, 512), (18, 512)).reshape(-1)
    expect = expect / np.linalg.norm(expect)
    assert model.direction_.shape == (18 * 512,) and model.direction_.dtype == np.float32
    np.testing.assert_allclose(model.direction_, expect, atol=1e-6)
    start = wplus_ds.subjects[0].latents[0]
    out = model.predict(start, 7300, [7300, 7300 + 3650])  # [2, 18, 512]
    assert out.shape == (2, 18, 512)
    np.testing.assert_allclose(out[0], start, atol=1e-6)
    step = (out[1] - out[0]).reshape(-1).astype(np.float64)
    cos = step @ expect / np.linalg.norm(step)
    assert abs(abs(cos) - 1) < 1e-5  # the prediction moves along the published direction only
    if shape == (1, 512):  # broadcast: every W+ row moves the same way
        np.testing.assert_allclose(out[1] - out[0], np.tile((out[1] - out[0])[:1], (18, 1)), atol=1e-5)


@needs_fixtures
def test_published_w_vector_does_not_fit_other_latents(tmp_path):
    ds, _ = generate(SynthConfig(subjects=3, photos=20, shape=(4, 32), seed=1))
    with pytest.raises(ModelError, match=r"interfacegan.*\(1, 512\) does not match latents \(4, 32\)"):
        make_model("direction", direction=str(FIX / "interfacegan_stylegan_ffhq_age_w_boundary.npy")).fit(
            make_pairs(ds, "first"))
