"""``aging age``: one photo -> aging video (detect, align, encode, render), on the shared fixtures.

Photos are made from a fixture face placed in a larger 640x480 photo with a background (also one
stored sideways with an EXIF orientation, one with two faces, one blank); the generator is the tiny
real StyleGAN2 pickle (64 px, W+ 10 x 64); the age model is trained in the test on synthetic
latents of that shape. Encoding uses --steps 5 --loss mse.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from aging.ages import parse_age, parse_age_range
from tests.conftest import FIXTURES
from tests.harness import assert_user_error, cli, snapshot

pytestmark = [pytest.mark.skipif(not (FIXTURES / "faces").is_dir() or not (FIXTURES / "stylegan2").is_dir(),
                                 reason="../shared/fixtures absent"),
              pytest.mark.usefixtures("one_thread")]

G = FIXTURES / "stylegan2" / "tiny.pkl"
FAST = ["--steps", "5", "--loss", "mse"]
W, H = 640, 480
BACKGROUND = (90, 120, 140)


def _face(size: int, name: str = "6940.jpg") -> np.ndarray:
    im = Image.open(FIXTURES / "faces" / name).convert("RGB")
    return np.asarray(im.resize((size, size), Image.Resampling.LANCZOS))


def _scene(*faces: tuple[int, int, int]) -> np.ndarray:
    """A 640x480 photo with a fixture face of ``size`` px at each ``(x, y, size)``."""
    photo = np.empty((H, W, 3), np.uint8)
    photo[:] = BACKGROUND
    for x, y, size in faces:
        photo[y:y + size, x:x + size] = _face(size)
    return photo


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(_scene((300, 100, 256))).save(d / "one.jpg", quality=95)
    Image.fromarray(_scene((40, 250, 150), (330, 90, 256))).save(d / "two.png")
    Image.fromarray(_scene()).save(d / "blank.png")
    # stored sideways: the pixels turned 90 degrees counter-clockwise, EXIF 6 = turn clockwise to view
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(_scene((300, 100, 256)))).save(d / "sideways.jpg", quality=95, exif=exif.tobytes())
    (d / "notes.jpg").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def models(tmp_path_factory, small_dir):
    """An offset model on W+ 10 x 64 (the tiny generator's), one on (4, 32), a direction file."""
    d = tmp_path_factory.mktemp("models")
    assert cli(["synth", d / "synth", "--subjects", "2", "--photos", "30", "--shape", "10,64"]).exit_code == 0
    for data, run in ((d / "synth", "offset"), (small_dir, "small")):
        out = cli(["train", data, "--model", "offset", "-o", d / run, "-q"])
        assert out.exit_code == 0, out.stderr
    np.save(d / "age.npy", np.random.default_rng(0).standard_normal((10, 64)).astype(np.float32))
    return d


def _gif(path) -> tuple[int, tuple[int, int]]:
    with Image.open(path) as im:
        return im.n_frames, im.size


def test_default_output_relative_paths_and_rerun_skips_encoding(tmp_path, photos, models):
    shutil.copy(photos / "one.jpg", tmp_path / "me.jpg")
    shutil.copytree(models / "offset", tmp_path / "offset")
    args = ["age", "me.jpg", "--age", "19y", "-g", G, *FAST]
    out = cli([*args, "--model", "offset", "--ages", "19y:25y:2y", "-o", "videos/me.gif"], cwd=tmp_path)
    assert out.exit_code == 0, out.stderr + repr(out.exception)
    assert "encoding it" in out.stdout
    assert _gif(tmp_path / "videos" / "me.gif") == (4, (2 * 256 + 4, 256))  # real | generated, --size 256
    assert not (tmp_path / "videos" / "me.mp4").exists()
    side = json.loads((tmp_path / "videos" / "me.json").read_text())
    assert side["frames"] == 4 and side["ages_days"] == list(parse_age_range("19y:25y:2y"))
    assert side["photo_age_days"] == parse_age("19y") == 6940
    assert side["model"] == "offset" and side["faces"] == 1
    works = list((tmp_path / "videos" / "aging-work").iterdir())
    assert len(works) == 1 and works[0].name.startswith("me-")
    work = works[0]
    assert (work / "aligned" / "6940.png").is_file() and (work / "recon" / "6940.png").is_file()
    with Image.open(work / "aligned" / "6940.png") as im:
        assert im.size == (64, 64)  # the generator's resolution
    assert np.load(work / "latents" / "6940.npy").shape == (10, 64)
    before = snapshot(work)
    # other ages, a direction, another output: straight to rendering, the work folder untouched
    again = cli([*args, "--direction", models / "age.npy", "--rate", "2", "--ages", "20y:30y:5y", "-o", "videos/dir"],
                cwd=tmp_path)
    assert again.exit_code == 0, again.stderr + repr(again.exception)
    assert "reusing the encoded face" in again.stdout and "encoding it" not in again.stdout
    assert snapshot(work) == before
    assert len((work / "encode.jsonl").read_text().splitlines()) == 1
    assert _gif(tmp_path / "videos" / "dir.gif")[0] == 3 and (tmp_path / "videos" / "dir.mp4").is_file()
    assert json.loads((tmp_path / "videos" / "dir.json").read_text())["rate_per_year"] == 2
    # other encoder settings are another work folder
    third = cli([*args[:-4], "--steps", "6", "--loss", "mse", "--model", "offset", "--ages", "19y", "--work", "w",
                 "-o", "videos/me3.gif"], cwd=tmp_path)
    assert third.exit_code == 0, third.stderr
    assert "encoding it" in third.stdout and len(list((tmp_path / "w").iterdir())) == 1


def test_paste_back_whole_photo_exif_orientation(tmp_path, photos, models):
    out = cli(["age", photos / "sideways.jpg", "--age", "19y", "-g", G, *FAST, "--model", models / "offset",
               "--ages", "19y,30y,40y", "--paste-back", "-o", tmp_path / "pasted.gif"])
    assert out.exit_code == 0, out.stderr + repr(out.exception)
    assert _gif(tmp_path / "pasted.gif") == (3, (W, H))  # the upright original photo's size
    with Image.open(tmp_path / "pasted.gif") as im:
        frame = np.asarray(im.convert("RGB"))
    assert np.abs(frame[10:200, 10:200].astype(int) - BACKGROUND).max() <= 8  # far from the face: the photo
    assert json.loads((tmp_path / "pasted.json").read_text())["paste_back"] is True


def test_paste_back_inverts_the_alignment(photos):
    """Pasting the aligned real face back gives the photo again: the warp is the alignment's inverse."""
    from aging.age.paste import PasteBack
    from aging.age.photo import align, pick_face, read_photo

    rgb = read_photo(photos / "one.jpg")
    face = pick_face(rgb)
    aligned = align(rgb, face, 256)
    paste = PasteBack(rgb, face.quad, 256, feather=0.05)
    back = paste(aligned)
    inside = paste.mask[..., 0] > 0.99
    assert inside.sum() > 5000  # the face's ellipse is a large area of the photo
    assert np.abs(back[inside].astype(int) - rgb[inside].astype(int)).mean() < 4
    outside = paste.mask[..., 0] == 0
    assert np.array_equal(back[outside], rgb[outside])
    wrong = PasteBack(rgb, type(face.quad)(center=face.quad.center + 20, x=face.quad.x), 256, feather=0.05)(aligned)
    assert np.abs(wrong[inside].astype(int) - rgb[inside].astype(int)).mean() > 3 * \
        np.abs(back[inside].astype(int) - rgb[inside].astype(int)).mean()


def test_exif_orientation_and_face_choice(photos):
    from aging.age.photo import pick_face, read_photo

    upright = read_photo(photos / "sideways.jpg")
    assert upright.shape == (H, W, 3)
    assert np.abs(upright.astype(int) - read_photo(photos / "one.jpg").astype(int)).mean() < 3
    two = read_photo(photos / "two.png")
    largest = pick_face(two)
    assert largest.count == 2 and largest.number == 2 and largest.box[0] > 300
    left = pick_face(two, 1)
    assert left.number == 1 and left.box[2] < 200 and left.quad.size < largest.quad.size


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, photos, models):
    """An output folder with a finished render, which no failed command may lose."""
    d = tmp_path_factory.mktemp("earlier")
    out = cli(["age", photos / "one.jpg", "--age", "19y", "-g", G, *FAST, "--model", models / "offset",
               "--ages", "19y:21y:1y", "-o", d / "me.gif"])
    assert out.exit_code == 0, out.stderr
    return d


BAD = [  # (name, args replacing the defaults, needle in the error line)
    ("missing photo", {"photo": "nowhere.jpg"}, "nowhere.jpg: no such photo"),
    ("not an image", {"photo": "{photos}/notes.jpg"}, "notes.jpg"),
    ("no face", {"photo": "{photos}/blank.png"}, "no face"),
    ("face out of range", {"extra": ["--face", "3"]}, "--face 3"),
    ("missing generator", {"-g": "{photos}/G.pkl"}, "G.pkl"),
    ("unknown generator", {"-g": "{photos}/notes.jpg"}, "notes.jpg"),
    ("model of another shape", {"--model": "{models}/small"}, "do not fit"),
    ("bad ages", {"--ages": "30y:20y:1y"}, "--ages"),
    ("model and direction", {"extra": ["--direction", "{models}/age.npy"]}, "--direction"),
    ("neither", {"--model": None}, "--model"),
    ("unwritable output", {"-o": "{photos}/notes.jpg/me.gif"}, "notes.jpg"),
    ("output suffix", {"-o": "{earlier}/me.png"}, ".gif"),
]


@pytest.mark.parametrize("name,change,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_loses_nothing(name, change, needle, photos, models, earlier):
    where = {"photos": photos, "models": models, "earlier": earlier}
    args = {"photo": "{photos}/two.png", "--age": "19y", "-g": str(G), "--model": "{models}/offset",
            "--ages": "19y:20y:1y", "-o": "{earlier}/me.gif"}
    args.update({k: v for k, v in change.items() if k != "extra"})
    argv = ["age", args.pop("photo").format(**where), *FAST]
    for k, v in args.items():
        if v is not None:
            argv += [k, v.format(**where)]
    argv += [a.format(**where) for a in change.get("extra", [])]
    before = snapshot(earlier)
    out = cli(argv)
    assert_user_error(out, needle)
    assert snapshot(earlier) == before


def test_frame_hooks_are_recorded_per_frame(tmp_path, photos, models):
    """The library entry point: a per-frame hook (as --score will be) sees every generated face
    beside the real one, and what it returns is in the sidecar, frame by frame."""
    from aging.age.options import AgeOptions, EncodeSettings
    from aging.age.photo import pick_face, read_photo
    from aging.age.pipeline import AgeJob, age_photo
    from aging.models import load_model
    from aging.render.video import DecodeOptions
    from aging.stylegan import load_generator

    rgb = read_photo(photos / "one.jpg")
    ages = parse_age_range("19y:23y:2y")
    job = AgeJob(photo=photos / "one.jpg", rgb=rgb, face=pick_face(rgb), age_days=parse_age("19y"), ages=ages,
                 out=tmp_path / "lib.gif", generator=str(G), model_name="offset",
                 options=AgeOptions(quiet=True), encode=EncodeSettings(steps=5, loss="mse"),
                 decode=DecodeOptions(size=32))
    seen = []

    def hook(frame):
        seen.append(frame)
        return {"distance": float(np.abs(frame.face.astype(int) - frame.real.astype(int)).mean())}

    sidecar = age_photo(job, load_generator(G), load_model(models / "offset"), hooks=[hook])
    assert [f.age_days for f in seen] == list(ages) and [f.index for f in seen] == [0, 1, 2]
    assert all(f.face.shape == f.real.shape == (32, 32, 3) for f in seen)
    written = json.loads((tmp_path / "lib.json").read_text())
    assert written == json.loads(json.dumps(sidecar))
    assert [r["age_days"] for r in written["per_frame"]] == list(ages)
    assert [r["distance"] for r in written["per_frame"]] == pytest.approx(
        [float(np.abs(f.face.astype(int) - f.real.astype(int)).mean()) for f in seen])
    assert (tmp_path / "aging-work").is_dir() and _gif(tmp_path / "lib.gif") == (3, (2 * 32 + 4, 32))


def test_score_hook_same_person_a_year_later_and_blank_frames_fail():
    """--score's hook: the photo's own face a year later is the same person, a blank frame counts
    as a failure (no face, not the same person), and the summary's rates say so."""
    from aging.age.pipeline import AgedFrame
    from aging.age.scoring import PhotoIdentity

    real, later = _face(256, "6940.jpg"), _face(256, "7390.jpg")
    other = np.asarray(Image.open(FIXTURES / "others" / "biden.jpg").convert("RGB"))  # the hook takes any size
    hook = PhotoIdentity()
    rows = [hook(AgedFrame(k, 6940 + 150 * k, face, real))
            for k, face in enumerate([later, np.zeros_like(real), other])]
    assert rows[0]["face_found"] and rows[0]["same_person"] and 0 < rows[0]["identity_distance"] < 0.6
    assert rows[1] == {**rows[1], "face_found": False, "identity_distance": None, "same_person": None}
    assert rows[2]["face_found"] and not rows[2]["same_person"] and rows[2]["identity_distance"] > 0.6
    s = hook.summary()
    assert s["frames"] == 3 and s["source_face_found"]
    assert s["face_rate"] == pytest.approx(2 / 3) and s["same_person_rate"] == pytest.approx(1 / 3)
    assert s["mean_identity_distance"] == pytest.approx((rows[0]["identity_distance"] + rows[2]["identity_distance"]) / 2)
    if s["age_mae_generated"] is not None:  # the estimator (aging[eval]) is installed
        target = [r["age_target_years"] for r in rows]
        assert s["age_mae_generated"] == pytest.approx(np.mean([abs(r["age_generated_years"] - t)
                                                                for r, t in zip(rows, target) if r["face_found"]]))


def test_score_flag_writes_the_summary_into_the_sidecar(tmp_path, photos, models):
    out = cli(["age", photos / "one.jpg", "--age", "19y", "-g", G, *FAST, "--direction", models / "age.npy",
               "--ages", "19y:21y:1y", "--score", "-o", tmp_path / "s.gif", "--work", tmp_path / "w"])
    assert out.exit_code == 0, out.stderr + repr(out.exception)
    side = json.loads((tmp_path / "s.json").read_text())
    assert side["score"]["frames"] == 3 == len(side["per_frame"])
    assert side["score"]["source_face_found"]  # the aligned 64 px input face is found (enlarged for the detector)
    assert {"face_found", "identity_distance", "same_person", "age_target_years"} <= set(side["per_frame"][0])
    assert "score: faces found in" in out.stdout


def test_stylegan_v1_pickle_works_as_the_generator(tmp_path, photos):
    """The study's generator family: a StyleGAN v1 TF pickle aligns the face at its resolution."""
    from aging.stylegan.checkpoints import load_checkpoint

    g1 = FIXTURES / "stylegan1" / "small128.pkl"
    G1 = load_checkpoint(g1)
    np.save(tmp_path / "d.npy", np.ones(G1.w_dim, np.float32))
    out = cli(["age", photos / "one.jpg", "--age", "19y", "-g", g1, *FAST, "--direction", tmp_path / "d.npy",
               "--ages", "19y,21y", "-o", tmp_path / "v1.gif", "--work", tmp_path / "w"])
    assert out.exit_code == 0, out.stderr + repr(out.exception)
    assert _gif(tmp_path / "v1.gif")[0] == 2
    work = next((tmp_path / "w").iterdir())
    with Image.open(work / "aligned" / "6940.png") as im:
        assert im.size == (G1.img_resolution, G1.img_resolution) == (128, 128)
    assert np.load(work / "latents" / "6940.npy").shape == (G1.num_ws, G1.w_dim)
