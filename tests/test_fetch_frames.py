"""Cut + de-duplication on synthetic "photo a day" frames with compression-like noise."""

import cv2
import numpy as np
import pytest

from aging.fetch.frames import (VideoError, changed_fraction, compare_image, cut, decimate, iter_frames,
                                open_video, prefetch)

H, W = 360, 640


def scene(rng, background=None):
    """A synthetic photo: a backdrop (shared by photos of the same set-up, with that day's light)
    and a textured, randomly placed and lit head and shoulders filling about 40 % of the frame."""
    if background is None:
        background = cv2.resize(rng.uniform(30, 120, (4, 6, 3)).astype(np.float32), (W, H),
                                interpolation=cv2.INTER_CUBIC)
    img = background * rng.uniform(0.97, 1.03) + rng.uniform(-4, 4)
    cx, cy = W / 2 + rng.uniform(-0.05, 0.05) * W, H / 2 + rng.uniform(-0.05, 0.05) * H
    axes = (int(W * rng.uniform(0.17, 0.21)), int(H * rng.uniform(0.34, 0.40)))
    mask = np.zeros((H, W), np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), axes, rng.uniform(-10, 10), 0, 360, 255, -1)
    skin = np.array([150, 170, 205], np.float32) * rng.uniform(0.85, 1.15)
    texture = cv2.GaussianBlur(rng.standard_normal((H, W, 3), dtype=np.float32) * 40, (0, 0), 1.5)
    img[mask > 0] = (skin + texture)[mask > 0]
    shoulders = np.zeros((H, W), np.uint8)
    cv2.ellipse(shoulders, (int(cx), H), (int(axes[0] * 2.2), int(H * 0.22)), 0, 180, 360, 255, -1)
    cloth = rng.uniform(20, 230, 3).astype(np.float32)
    img[shoulders > 0] = (cloth + 0.5 * texture)[shoulders > 0]
    for dx in (-0.4, 0.4):  # eyes
        cv2.circle(img, (int(cx + dx * axes[0]), int(cy - 0.2 * axes[1])), 9, (40, 40, 40), -1)
    return np.clip(img, 0, 255).astype(np.uint8), background


def compress(rng, img):
    """Compression-like noise: sensor-like grain, a little flicker, JPEG at quality 40."""
    grain = rng.standard_normal(img.shape, dtype=np.float32) * 2.5
    noisy = img.astype(np.float32) + grain + rng.uniform(-1.5, 1.5)
    ok, buf = cv2.imencode(".jpg", np.clip(noisy, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 40])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def make_stream(seed=0, photos=30):
    """Frames of ``photos`` distinct photos, each held 1-5 frames; every 4th photo reuses the
    previous photo's backdrop (same set-up, new day). Returns (frames, true runs)."""
    rng = np.random.default_rng(seed)
    frames, runs, background = [], [], None
    for k in range(photos):
        img, bg = scene(rng, background if k % 4 else None)
        background = bg
        hold = int(rng.integers(1, 6))
        runs.append((len(frames), len(frames) + hold - 1))
        frames += [compress(rng, img) for _ in range(hold)]
    return frames, runs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_false_merges_no_false_splits(seed):
    frames, truth = make_stream(seed=seed)
    found = [(r.first_frame, r.last_frame) for r, _ in cut(enumerate(frames))]
    assert found == truth


def test_margins_between_noise_and_new_photos():
    """With the default tolerance (5 grey levels), a hold's noise stays far under the 15 % cutoff
    and a new photo, even in the same set-up, above it."""
    frames, truth = make_stream(seed=3)
    small = [compare_image(f) for f in frames]
    starts = {a for a, _ in truth}
    within = [changed_fraction(small[i], small[i - 1], 5) for i in range(1, len(small)) if i not in starts]
    across = [changed_fraction(small[i], small[i - 1], 5) for i in range(1, len(small)) if i in starts]
    assert max(within) < 0.075 and min(across) > 0.15
    # the raw L0 of the study (any change at all) would split every hold
    assert min(changed_fraction(small[i], small[i - 1], 0) for i in range(1, len(small)) if i not in starts) > 0.15


def test_keeps_the_sharpest_frame_of_a_run():
    rng = np.random.default_rng(2)
    img, _ = scene(rng)
    soft = cv2.GaussianBlur(img, (0, 0), 0.8)
    frames = [compress(rng, soft), compress(rng, soft), compress(rng, img), compress(rng, soft)]
    other, _ = scene(rng)
    frames += [compress(rng, other)] * 2
    runs = list(cut(enumerate(frames)))
    assert [(r.first_frame, r.last_frame, r.frame) for r, _ in runs] == [(0, 3, 2), (4, 5, 4)]
    assert runs[0][1] is frames[2]


def test_a_slow_drift_does_not_chain_photos():
    """Each step changes little, but the run's first frame is compared too."""
    rng = np.random.default_rng(3)
    a, _ = scene(rng)
    b, _ = scene(rng)
    steps = [np.clip(a * (1 - t) + b * t, 0, 255).astype(np.uint8) for t in np.linspace(0, 1, 12)]
    runs = [r for r, _ in cut(enumerate(steps))]
    assert len(runs) >= 2 and runs[-1].last_frame == 11


def test_decimate():
    assert decimate([0, 1, 2, 3, 4, 5, 6], 3) == [True, False, False, True, False, False, True]
    with pytest.raises(ValueError):
        decimate([0], 0)


def test_stream_from_a_video_file_with_time_range(tmp_path):
    path = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    rng = np.random.default_rng(4)
    truth = []
    for k in range(6):
        img, _ = scene(rng)
        for _ in range(5):
            vw.write(img)
        truth.append((5 * k, 5 * k + 4))
    vw.release()
    _, info = open_video(path)
    assert info.fps == 10 and (info.width, info.height) == (W, H)
    runs = [(r.first_frame, r.last_frame) for r, _ in cut(iter_frames(path))]
    assert runs == truth
    runs = [(r.first_frame, r.last_frame) for r, _ in cut(iter_frames(path, start_time=1.2, end_time=2.0))]
    assert runs == [(12, 14), (15, 19)]
    # frames a caller does not want are skipped without being converted
    seen = [(i, f is None) for i, f in iter_frames(path, wanted=lambda i: i == 7)]
    assert len(seen) == 30 and seen[7] == (7, False) and all(none for i, none in seen if i != 7)


def test_unreadable_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(VideoError, match="cannot open the video"):
        list(iter_frames(bad))
    with pytest.raises(VideoError, match="no such video file"):
        list(iter_frames(tmp_path / "missing.mp4"))


def test_prefetch_keeps_order_raises_and_stops_early():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise VideoError("decoder gave up")

    got = []
    with pytest.raises(VideoError, match="decoder gave up"):
        for x in prefetch(broken()):
            got.append(x)
    assert got == [1]
    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    for x in prefetch(endless(), depth=2):
        if x == 5:
            break
    assert closed == [True]   # the producer was stopped and its generator closed
