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


def _figures(tmp_path_factory, subjects: int):
    """``aging figures`` on a fresh dataset of ``subjects`` subjects: (data, out, report.json)."""
    data = _dataset(tmp_path_factory, subjects)
    out = tmp_path_factory.mktemp(f"fig{subjects}") / "out"
    res = cli(["figures", data, "-o", out, *QUICK])
    assert res.exit_code == 0, res.stderr + repr(res.exception)
    return data, out, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return _figures(tmp_path_factory, 2)


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    return _figures(tmp_path_factory, 1)


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
    assert {f["study_figure"] for f in report["figures"]} == {"1", "3.3", "8", "9", "10", "11", "12", "14", "15"}
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


# ---------------------------------------------------------------------------------------------
# With a generator: Fig 1 as faces, the aging videos of Figs 3.1/3.2 and 5.1/5.2

GAP = 4  # px between Fig 1's faces (aging.figures.generated.GAP)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """A tiny generator, a one-subject dataset of its W+ shape with aligned 'photos' (decoded at 32
    px), and one `aging figures -g G --photos` run with Fig 1 at 5 ages."""
    from PIL import Image

    from aging.render.video import DecodeOptions, decode
    from aging.stylegan.checkpoints import save_generator
    from tests.tiny import photo_generator

    G = photo_generator(16)
    root = tmp_path_factory.mktemp("gen")
    save_generator(G, root / "G")
    ds, truth = generate(SynthConfig(subjects=1, photos=12, shape=(G.num_ws, G.w_dim), noise=0.1, seed=1))
    data = write_dataset(ds, truth, root / "data")
    subject = root / "data" / ds.subjects[0].name
    (subject / "aligned").mkdir()
    s = ds.subjects[0]
    for age, frame in zip(s.ages, decode(G, s.latents, DecodeOptions(size=32))):
        Image.fromarray(frame).save(subject / "aligned" / f"{age}.png")
    out = root / "out"
    res = cli(["figures", data, "-o", out, *QUICK, "-g", root / "G", "--photos", subject, "--fig1-ages", "5"])
    assert res.exit_code == 0, res.stderr + repr(res.exception)
    return G, ds, root, out, json.loads((out / "report.json").read_text())


def _image(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_fig1_with_a_generator_shows_faces_in_three_rows(gen):
    from aging.photos import read_photo

    G, ds, root, out, report = gen
    fig1 = next(f for f in report["figures"] if f["study_figure"] == "1")
    assert fig1["file"] == "fig01_rows.png" and "Fig 1" in fig1["caption"] and "Here" in fig1["caption"]
    img = _image(out / fig1["file"])
    assert img.shape == (3 * 16 + 2 * GAP, 5 * 16 + 4 * GAP, 3)  # 3 rows x 5 ages of 16 px faces
    # row (a) is the aligned photo (above its caption band), not a decoded latent
    first = read_photo(root / "data" / ds.subjects[0].name / "aligned" / f"{ds.subjects[0].ages[0]}.png", 16)
    np.testing.assert_array_equal(img[:3, :16], first[:3])
    assert img[16:16 + GAP].max() == 0 and img[:, 16:16 + GAP].max() == 0  # the gaps between faces


def test_aging_videos_have_a_frame_per_photo_and_are_in_the_report(gen):
    from tests.test_render import read_video_frames

    _, ds, _, out, report = gen
    videos = [f for f in report["figures"] if f["file"].endswith((".gif", ".mp4"))]
    assert sorted(f["file"] for f in videos) == ["fig3-1_3-2_interpolation.gif", "fig3-1_3-2_interpolation.mp4",
                                                 "fig5-1_5-2_best_model.gif", "fig5-1_5-2_best_model.mp4"]
    internal = [r for r in report["tables"]["models"]["rows"] if r["split"] == "internal"]
    best = min(internal, key=lambda r: r["test_mse"])
    for f in videos:
        assert all(n.replace(".", "-") in f["file"] for n in f["study_figure"].split("/"))  # e.g. 3.1 -> 3-1
        assert f"Fig {f['study_figure']}" in f["caption"] and "Here" in f["caption"]
        frames = read_video_frames(out / f["file"])
        assert len(frames) == len(ds.subjects[0]) == 12, f["file"]
        assert frames[0].shape == (16, 2 * 16 + GAP, 3)  # real | generated
        if "best_model" in f["file"]:
            assert best["run"] in f["caption"]
    html_text = (out / "report.html").read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)""", html_text)
    assert sum(r.startswith("data:image/gif;base64,") for r in refs) == 2  # GIFs embedded
    assert all(r.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for r in refs)
    assert "<code>fig5-1_5-2_best_model.mp4</code>" in html_text  # the MP4 named, not referenced
    assert "[fig3-1_3-2_interpolation.mp4](fig3-1_3-2_interpolation.mp4)" in (out / "report.md").read_text()


def test_generator_rerun_writes_nothing_and_fig1_follows_the_options(gen, tmp_path):
    import shutil

    _, ds, root, out, _ = gen
    args = ["figures", root / "data", "-o", out, *QUICK, "-g", root / "G", "--photos",
            root / "data" / ds.subjects[0].name, "--fig1-ages", "5"]
    before = snapshot(out)
    res = cli(args)
    assert res.exit_code == 0, res.stderr
    assert snapshot(out) == before
    # 3 ages and decoded latents as the real row: a narrower Fig 1; the videos' real side changes too
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    before = snapshot(copy)
    res = cli(["figures", root / "data", "-o", copy, *QUICK, "-g", root / "G", "--fig1-ages", "3"])
    assert res.exit_code == 0, res.stderr
    assert _image(copy / "fig01_rows.png").shape[:2] == (3 * 16 + 2 * GAP, 3 * 16 + 2 * GAP)
    import torch

    assert torch.is_grad_enabled()  # decoding real and generated faces left torch as it found it
    changed = {k for k, v in snapshot(copy).items() if before.get(k) != v}
    assert {"fig01_rows.png", "fig3-1_3-2_interpolation.gif", "fig5-1_5-2_best_model.mp4"} <= changed
    assert not any(k.startswith(("runs/", "tables/")) for k in changed), changed


def test_fig1_without_a_generator_is_a_distance_chart(gen, tmp_path):
    import shutil

    _, _, root, out, _ = gen
    widths = {}
    for n in (3, 6):
        copy = tmp_path / f"out{n}"
        shutil.copytree(out / "runs", copy / "runs")  # the runs are reused
        res = cli(["figures", root / "data", "-o", copy, *QUICK, "--fig1-ages", str(n)])
        assert res.exit_code == 0, res.stderr
        report = json.loads((copy / "report.json").read_text())
        fig1 = next(f for f in report["figures"] if f["study_figure"] == "1")
        assert "no --generator" in fig1["caption"] and f"at {n} photo ages" in fig1["caption"]
        assert not list(copy.glob("*.gif")) and not list(copy.glob("*.mp4"))
        widths[n] = _image(copy / fig1["file"]).shape[1]
    assert widths[6] > widths[3] + 200  # a column per age


def test_a_generator_that_does_not_fit_the_latents_is_one_line(gen, tmp_path):
    from aging.stylegan.checkpoints import save_generator
    from tests.harness import assert_user_error
    from tests.tiny import photo_generator

    _, _, root, _, _ = gen
    save_generator(photo_generator(16, w_dim=8), tmp_path / "G8")
    assert_user_error(cli(["figures", root / "data", "-o", tmp_path / "o", *QUICK, "-g", tmp_path / "G8"]),
                      "--generator", "does not fit")
    assert not (tmp_path / "o" / "runs").exists()  # checked before any run
    assert_user_error(cli(["figures", root / "data", "-o", tmp_path / "p", *QUICK, "--photos", tmp_path]),
                      "--photos", "--generator")
