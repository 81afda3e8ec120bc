"""Render stage: latents -> frames -> GIF/MP4, style mixing, morphing (tiny generators, CPU)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aging.cli import main
from aging.render.edits import layer_presets, lerp, mix, morph_ws, parse_layers, slerp
from aging.render.video import DecodeOptions, RenderError, VideoWriter, check_ws, decode
from aging.stylegan.checkpoints import save_generator
from aging.synthetic import SynthConfig, generate, write_dataset
from tests.harness import assert_user_error, cli, contents, hidden_leftovers
from tests.tiny import photo_generator


def read_video_frames(path):
    """All frames of a GIF or MP4 as uint8 arrays."""
    if path.suffix.lower() == ".gif":
        from PIL import ImageSequence

        with Image.open(path) as im:
            return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    w, h = next(gen)["size"]  # the first item is the metadata
    return [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen]


@pytest.fixture(scope="module")
def gen_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "tiny"
    save_generator(photo_generator(16), path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, gen_path):
    """A synthetic latent dataset shaped for the tiny generator, aligned 'photos' and a model."""
    G = photo_generator(16)
    root = tmp_path_factory.mktemp("world")
    ds, truth = generate(SynthConfig(subjects=2, photos=12, shape=(G.num_ws, G.w_dim), noise=0.1, seed=1))
    write_dataset(ds, truth, root / "data")
    # real photos of subject00: decode its latents, as if they were the aligned photos
    aligned = root / "data" / "subject00" / "aligned"
    aligned.mkdir()
    s = ds.subjects[0]
    for age, frame in zip(s.ages, decode(G, s.latents, DecodeOptions(size=32))):
        Image.fromarray(frame).save(aligned / f"{age}.png")
    r = CliRunner().invoke(main, ["train", str(root / "data"), "--model", "direction", "-o", str(root / "run"), "-q"])
    assert r.exit_code == 0, r.output
    return root, ds


def test_decode_shapes_and_size():
    G = photo_generator(16)
    ws = np.random.default_rng(0).standard_normal((5, G.num_ws, G.w_dim)).astype(np.float32)
    frames = list(decode(G, ws, DecodeOptions(batch=2)))
    assert len(frames) == 5 and frames[0].shape == (16, 16, 3) and frames[0].dtype == np.uint8
    small = list(decode(G, ws[:1], DecodeOptions(size=8)))
    assert small[0].shape == (8, 8, 3)
    # batching does not change the result
    np.testing.assert_array_equal(np.stack(list(decode(G, ws, DecodeOptions(batch=5)))), np.stack(frames))
    with pytest.raises(RenderError, match="wrong latent shape"):
        check_ws(np.zeros((3, 7)), G)
    assert check_ws(np.zeros(G.w_dim), G).shape == (1, G.num_ws, G.w_dim)  # W broadcast to W+


def test_writer_gif_and_mp4(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (24, 40, 3), dtype=np.uint8) for _ in range(7)]
    with VideoWriter(tmp_path / "v.gif", fps=5) as w:
        for f in frames:
            w.write(f)
    gif, mp4 = read_video_frames(tmp_path / "v.gif"), read_video_frames(tmp_path / "v.mp4")
    assert len(gif) == 7 and gif[0].shape == (24, 40, 3)
    assert len(mp4) == 7 and mp4[0].shape == (24, 40, 3)
    assert hidden_leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["v.gif", "v.mp4"]
    # an interrupted render leaves no output behind
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(tmp_path / "x.gif", fps=5) as w:
            w.write(frames[0])
            raise KeyboardInterrupt
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob(".x*"))
    # ... and an interrupted re-render leaves the previous video as it was
    before = contents(tmp_path)
    with pytest.raises(RenderError, match="differs"):
        with VideoWriter(tmp_path / "v.gif", fps=5) as w:
            w.write(frames[0][:, :20])
            w.write(frames[1])  # another size
    assert contents(tmp_path) == before and hidden_leftovers(tmp_path) == []
    with pytest.raises(RenderError, match="no frames"):
        with VideoWriter(tmp_path / "v.gif", fps=5):
            pass
    assert contents(tmp_path) == before and hidden_leftovers(tmp_path) == []


def test_gif_stream_keeps_each_frame_and_its_colours(tmp_path):
    yy, xx = np.mgrid[0:45, 0:60]
    frames = [np.stack([(xx * 4 + 40 * k) % 256, yy * 5, np.full_like(xx, 50 * k)], -1).astype(np.uint8)
              for k in range(5)]
    with VideoWriter(tmp_path / "g.gif", fps=4, formats=("gif",)) as w:
        for f in frames:
            w.write(f)
        assert not hasattr(w._gif, "frames")  # streamed: only a file handle is kept
    back = read_video_frames(tmp_path / "g.gif")
    assert len(back) == 5
    for k, (a, b) in enumerate(zip(back, frames)):
        assert np.abs(a.astype(int) - b).mean() < 4, k  # per-frame palettes: near-lossless here
    im = Image.open(tmp_path / "g.gif")
    assert im.info["loop"] == 0 and im.info["duration"] == 250


def test_render_model_side_by_side(world, gen_path, tmp_path):
    root, ds = world
    s = ds.subjects[0]
    src = root / "data" / "subject00" / f"{s.ages[0]}.npy"
    out = tmp_path / "age.gif"
    r = CliRunner().invoke(main, ["render", "--model", str(root / "run"), "-g", str(gen_path), "--source", str(src),
                                  "--ages", f"{s.ages[0]}:{s.ages[-1]}:20", "--subject", str(root / "data" / "subject00"),
                                  "--size", "32", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    n = len(np.arange(s.ages[0], s.ages[-1] + 1, 20))
    gif = read_video_frames(out)
    mp4 = read_video_frames(out.with_suffix(".mp4"))
    assert len(gif) == n and len(mp4) == n
    assert gif[0].shape == (32, 32 + 4 + 32, 3)  # real | gap | generated
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["frames"] == n
    # the left panel is the real photo nearest in age (captions cover the bottom band only)
    real = np.asarray(Image.open(root / "data" / "subject00" / "aligned" / f"{s.ages[0]}.png").convert("RGB"))
    top = slice(0, 20)
    assert np.abs(gif[0][top, :32].astype(int) - real[top].astype(int)).mean() < 12


def test_render_subject_photos_follow_the_manifest(world, gen_path, tmp_path):
    """A photo the subject's manifest.csv does not keep (excluded since) never appears in the video,
    even though its aligned file is still there and its age is a frame's age."""
    import shutil

    root, ds = world
    s = ds.subjects[0]
    subject = tmp_path / "subject00"
    shutil.copytree(root / "data" / "subject00" / "aligned", subject / "aligned")
    excluded = int(s.ages[len(s.ages) // 2])
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(subject / "aligned" / f"{excluded}.png")
    rows = ["index,photo,age_days,status,reason,file"]
    for k, age in enumerate(s.ages):
        kept = age != excluded
        rows.append(f"{k},{k},{age},{'kept' if kept else 'excluded'},{'' if kept else 'listed in exclude'},"
                    f"{f'aligned/{age}.png' if kept else ''}")
    (subject / "manifest.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "recon.gif"
    args = ["render", "--latents", str(root / "data" / "subject00"), "-g", str(gen_path), "--subject", str(subject),
            "--format", "gif", "--size", "16", "--no-caption", "-o", str(out), "-q"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    frames = read_video_frames(out)
    assert len(frames) == len(s.ages)
    real = [f[:, :16].astype(int) for f in frames]  # the left panel: the real photo nearest in age
    assert all(panel.mean() < 200 for panel in real)  # the white, excluded photo is never shown
    # ... while without the manifest it is (it is the photo of that exact age)
    (subject / "manifest.csv").unlink()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    shown = read_video_frames(out)[list(s.ages).index(excluded)][:, :16].astype(int)
    assert shown.mean() > 240


def test_render_reconstruction_video(world, gen_path, tmp_path):
    root, ds = world
    out = tmp_path / "recon.mp4"
    r = CliRunner().invoke(main, ["render", "--latents", str(root / "data" / "subject01"), "-g", str(gen_path),
                                  "--format", "mp4", "--size", "16", "--no-caption", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    frames = read_video_frames(out)
    assert len(frames) == len(ds.subjects[1]) and not out.with_suffix(".gif").exists()
    G = photo_generator(16)
    expect = list(decode(G, ds.subjects[1].latents[[0, -1]]))

    def blur(x):  # H.264 with 4:2:0 chroma is lossy on 16 px noise: compare 4x4 block means
        return x.astype(float).reshape(4, 4, 4, 4, 3).mean(axis=(1, 3))

    first = np.abs(blur(frames[0]) - blur(expect[0])).mean()
    assert first < np.abs(blur(frames[0]) - blur(expect[1])).mean()  # frame 0 is photo 0, not the last
    assert first < 25


def test_render_bad_input(world, gen_path, tmp_path):
    root, _ = world
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 3), np.float32))
    r = cli(["render", "--model", root / "run", "-g", gen_path, "--source", bad, "--start-age", "20y",
             "--ages", "20y:30y:1y", "-o", tmp_path / "o.gif"])
    assert_user_error(r, "bad.npy", "wrong latent shape")
    r = cli(["render", "--latents", root / "data" / "subject01", "-g", tmp_path / "nope.pkl", "-o", tmp_path / "o.gif"])
    assert_user_error(r, "nope.pkl")
    assert not (tmp_path / "o.gif").exists()
    # the more cases of the table-driven suite: tests/test_bad_input_cli.py


def test_mix_all_target_layers_equals_target(gen_path, tmp_path):
    G = photo_generator(16)
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((G.num_ws, G.w_dim)).astype(np.float32) for _ in range(2))
    np.testing.assert_array_equal(mix(a, b, range(G.num_ws)), b)
    img_mix = list(decode(G, mix(a, b, range(G.num_ws))[None]))[0]
    img_b = list(decode(G, b[None]))[0]
    np.testing.assert_array_equal(img_mix, img_b)
    assert parse_layers("2:4", G.num_ws) == [2, 3]
    assert parse_layers("alternating", G.num_ws) == layer_presets(G.num_ws)["alternating"]
    with pytest.raises(RenderError):
        parse_layers("3:99", G.num_ws)
    # CLI: a folder of target latents is averaged; the grid has source, target and every preset
    folder = tmp_path / "olds"
    folder.mkdir()
    np.save(tmp_path / "a.npy", a)
    for k in range(3):
        np.save(folder / f"{k}.npy", b + k)
    r = CliRunner().invoke(main, ["mix", str(tmp_path / "a.npy"), str(folder), "-g", str(gen_path), "--grid",
                                  "--size", "16", "-o", str(tmp_path / "grid.png")])
    assert r.exit_code == 0, r.output
    assert "mean of 3" in r.output
    w = Image.open(tmp_path / "grid.png").size[0]
    n = 2 + len(layer_presets(G.num_ws))
    assert w == n * 16 + (n - 1) * 4
    assert hidden_leftovers(tmp_path) == []


def test_morph_endpoints(gen_path, tmp_path):
    G = photo_generator(16)
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal((G.num_ws, G.w_dim)).astype(np.float32) for _ in range(2))
    ws = morph_ws(G, a, b, 5)
    np.testing.assert_array_equal(ws[0], a)
    np.testing.assert_allclose(ws[-1], b, atol=1e-6)
    za, zb = rng.standard_normal(16), rng.standard_normal(16)
    path = slerp(za, zb, 9)
    np.testing.assert_allclose(path[0], za, atol=1e-6)
    np.testing.assert_allclose(path[-1], zb, atol=1e-6)
    np.testing.assert_allclose(lerp(a, b, 3)[1], (a + b) / 2, atol=1e-6)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    r = CliRunner().invoke(main, ["morph", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "-g", str(gen_path),
                                  "--frames", "6", "--size", "16", "-o", str(tmp_path / "m.gif"), "-q"])
    assert r.exit_code == 0, r.output
    frames = read_video_frames(tmp_path / "m.gif")
    assert len(frames) == 6
    first, last = (list(decode(G, x[None]))[0] for x in (a, b))
    # GIF quantises colours: compare loosely, and check the ends are the two faces, not each other
    assert np.abs(frames[0].astype(int) - first).mean() < np.abs(frames[0].astype(int) - last).mean()
    assert np.abs(frames[-1].astype(int) - last).mean() < 8


def test_render_along_a_published_direction(world, gen_path, tmp_path):
    """--direction FILE --rate R: frames are the start latent moved R latent units per year along the
    (unit) direction; a W vector (w_dim,) is repeated on every W+ row, as published boundaries are."""
    from aging.cli.render import direction_model

    root, ds = world
    G = photo_generator(16)
    s = ds.subjects[0]
    src = root / "data" / "subject00" / f"{s.ages[0]}.npy"
    w = np.random.default_rng(3).standard_normal(G.w_dim).astype(np.float32)
    np.save(tmp_path / "boundary.npy", w[None])  # (1, w_dim), like InterFaceGAN's
    ages = [s.ages[0], s.ages[0] + 365, s.ages[0] + 730]
    out = tmp_path / "dir.gif"
    r = cli(["render", "--direction", tmp_path / "boundary.npy", "--rate", "2.0", "-g", gen_path, "--source", src,
             "--ages", ",".join(map(str, ages)), "--format", "gif", "--size", "16", "--no-caption", "-o", out, "-q"])
    assert r.exit_code == 0, r.stderr
    frames = read_video_frames(out)
    assert len(frames) == 3
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["direction"].endswith("boundary.npy") and info["rate_per_year"] == 2.0
    model = direction_model(w[None], 2.0, (G.num_ws, G.w_dim), tmp_path / "boundary.npy")
    ws = model.predict(ds.subjects[0].latents[0], s.ages[0], ages)
    unit = np.tile(w / np.linalg.norm(w), (G.num_ws, 1)) / np.sqrt(G.num_ws)
    step = ws[2] - ws[0]  # 730 days at 2 units per year along the unit direction
    assert np.allclose(step, 2.0 * (730 / 365.25) * unit, atol=1e-5)
    expect = list(decode(G, ws, DecodeOptions(size=16)))
    assert np.abs(frames[0].astype(int) - expect[0].astype(int)).mean() < 8  # GIF palette
    assert np.abs(frames[2].astype(int) - expect[0].astype(int)).mean() > \
        np.abs(frames[2].astype(int) - expect[2].astype(int)).mean()
    # --direction without --rate, and a direction of another shape: one line each
    assert_user_error(cli(["render", "--direction", tmp_path / "boundary.npy", "-g", gen_path, "--source", src,
                           "--ages", "20y", "-o", tmp_path / "x.gif"]), "--rate")
    np.save(tmp_path / "bad.npy", np.ones(7, np.float32))
    assert_user_error(cli(["render", "--direction", tmp_path / "bad.npy", "--rate", "1", "-g", gen_path,
                           "--source", src, "--ages", "20y", "-o", tmp_path / "y.gif"]), "bad.npy", "(7,)")
    assert not (tmp_path / "y.gif").exists() and not (tmp_path / "x.gif").exists()


def test_writer_keeps_dotted_names_and_decode_leaves_grad_mode_alone(tmp_path):
    import torch

    G = photo_generator(16)
    ws = np.random.default_rng(0).standard_normal((3, G.num_ws, G.w_dim)).astype(np.float32)
    frames = decode(G, ws, DecodeOptions(batch=1))
    next(frames)  # suspended between two batches
    assert torch.is_grad_enabled()
    frames.close()
    with VideoWriter(tmp_path / "fig3.1_interp.gif", fps=5) as w:
        for f in decode(G, ws):
            w.write(f)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig3.1_interp.gif", "fig3.1_interp.mp4"]


def test_render_score_writes_the_summary_into_the_sidecar(world, gen_path, tmp_path, monkeypatch):
    """``--score`` (issue 13): every generated frame is scored against the real photo nearest in
    age. The tiny generator draws no faces, so dlib is replaced by a stand-in whose descriptor is
    the image's mean grey level: a frame and its own latent's photo are then "the same person"."""
    from aging.score.faces import FaceScore, FaceScorer

    root, ds = world
    monkeypatch.setenv("AGING_CACHE", str(tmp_path / "cache"))
    seen = []

    def fake(self, image):
        seen.append(image.shape)
        return FaceScore(faces=1, box=(0, 0, 4, 4), descriptor=np.full(128, image.mean() / 255 / 12, np.float32),
                         age_years=30.0)

    monkeypatch.setattr(FaceScorer, "analyse", fake)
    out = tmp_path / "scored.gif"
    r = cli(["render", "--latents", root / "data" / "subject00", "-g", gen_path, "--subject", root / "data" / "subject00",
             "--size", "32", "--format", "gif", "--score", "-o", out, "-q"])
    assert r.exit_code == 0, r.stderr + repr(r.exception)
    score = json.loads(out.with_suffix(".json").read_text())["score"]
    n = len(ds.subjects[0])
    assert score["pairs"] == n and score["face_rate"] == 1.0 and score["same_person_rate"] == 1.0
    assert score["mean_identity_distance"] < 0.05 and score["source"]["age_days"] == ds.subjects[0].ages[0]
    assert seen.count((32, 32, 3)) >= 2 * n   # uncaptioned 32 px faces (frames and photos), not the side-by-side
    r = cli(["render", "--latents", root / "data" / "subject00", "-g", gen_path, "--score", "-o", tmp_path / "x.gif"])
    assert_user_error(r, "--score needs --subject")
