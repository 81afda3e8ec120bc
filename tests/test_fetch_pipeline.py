"""``aging fetch`` end to end: the fixture clip fetched through yt-dlp from a local HTTP server,
re-runs that only redo what changed (and write nothing when nothing changed), relative output
folders, a damaged cached download, and bad input that fails one video but not the others."""

import csv
import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from aging.cli.fetch import fetch
from aging.fetch.options import FetchOptions
from tests.harness import cli, snapshot

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "photoaday_clip.mp4").is_file(),
                                    reason="../shared/fixtures absent (shared fixtures needed)")
SIZE = 256


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The folder the test server serves: a copy of the fixture clip (a test may take it away)."""
    folder = tmp_path_factory.mktemp("served")
    if (FIXTURES / "photoaday_clip.mp4").is_file():
        shutil.copy(FIXTURES / "photoaday_clip.mp4", folder / "photoaday_clip.mp4")
    return folder


@pytest.fixture(scope="module")
def server(served):
    """An HTTP server on 127.0.0.1 serving ``served``; yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(served))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def run(*args):
    return CliRunner().invoke(fetch, [str(a) for a in args], catch_exceptions=False)


def video_entry(name, url, **extra):
    lines = [f'[[video]]\nname = "{name}"\nurl = "{url}"']
    extra = {"start_age": 6940, "days_per_photo": 150, **extra}
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n\n"


def manifest(folder):
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def assert_contact_sheet(folder, ages):
    """The contact sheet is a JPEG grid with one tile per kept face, in age order: each tile is
    its own face's thumbnail (closer to it than to any other face), the rest of the grid is blank.
    Geometry of make_contact_sheet for up to 1000 faces: 128 px tiles, 4 px gaps, 16 px labels
    under each tile, a 28 px title, about sqrt(1.6 n) columns."""
    img = cv2.imread(str(folder / "contact_sheet.jpg"), cv2.IMREAD_COLOR)
    assert img is not None, "contact_sheet.jpg is not a readable image"
    assert (folder / "contact_sheet.jpg").read_bytes()[:3] == b"\xff\xd8\xff"   # JPEG
    n = len(ages)
    cols = min(n, round(np.sqrt(n * 1.6)))
    rows = -(-n // cols)
    assert img.shape == (28 + rows * (128 + 16 + 4) + 4, cols * (128 + 4) + 4, 3)
    tiles = [img[32 + r * 148:32 + r * 148 + 128, 4 + c * 132:4 + c * 132 + 128].astype(np.float32)
             for r in range(rows) for c in range(cols)]
    faces = [cv2.resize(cv2.imread(str(folder / "aligned" / f"{a}.png")), (128, 128), interpolation=cv2.INTER_AREA)
             .astype(np.float32) for a in ages]
    for k, tile in enumerate(tiles[:n]):
        errors = [np.abs(tile - face).mean() for face in faces]
        assert tile.std() > 10 and errors[k] < 6 and int(np.argmin(errors)) == k, (k, np.round(errors, 1))
    for tile in tiles[n:]:
        assert tile.std() < 2 and abs(tile.mean() - 24) < 3   # the sheet's background


def mtimes(folder):
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@needs_fixtures
def test_end_to_end_over_http_then_reruns(tmp_path, server):
    truth = json.loads((FIXTURES / "photoaday_clip.json").read_text())
    cfg = tmp_path / "videos.toml"
    url = f"{server}/photoaday_clip.mp4"
    cfg.write_text(video_entry("clip", url))
    out = tmp_path / "data"
    r = run("--config", cfg, "--out", out, "--size", SIZE, "-q")
    assert r.exit_code == 0, r.output
    folder = out / "clip"

    # the download, through yt-dlp
    video = folder / "video.mp4"
    assert hashlib.sha256(video.read_bytes()).hexdigest() == truth["video"]["sha256"]
    assert json.loads((folder / ".fetch" / "source.json").read_text())["url"] == url

    # every distinct item, with its frames, status and age, exactly as the truth says
    rows = manifest(folder)
    assert len(rows) == truth["totals"]["num_items"]
    for row, item in zip(rows, truth["items"]):
        assert (int(row["first_frame"]), int(row["last_frame"])) == (item["first_frame"], item["last_frame"])
        if item["kind"] == "photo":
            assert row["status"] == "kept", row
            assert int(row["age_days"]) == item["age_days"] and int(row["photo"]) == item["photo_index"]
            assert row["file"] == f"aligned/{item['age_days']}.png"
        else:
            assert row["status"] == item["fault"] == "no_face" and row["age_days"] == row["photo"] == ""
    kept = {item["age_days"] for item in truth["items"] if item["expected_keep"]}
    assert {int(p.stem) for p in (folder / "aligned").glob("*.png")} == kept
    assert_contact_sheet(folder, sorted(kept))

    # the aligned faces are the original aligned photos again
    scores = []
    for age in sorted(kept):
        ours = cv2.imread(str(folder / "aligned" / f"{age}.png"))
        orig = cv2.imread(str(FIXTURES / "faces" / f"{age}.jpg"))
        assert ours.shape == (SIZE, SIZE, 3)
        scores.append(10 * np.log10(255.0 ** 2 / np.mean((ours.astype(float) - orig) ** 2)))
    assert np.mean(scores) > 27 and min(scores) > 20, np.round(scores, 1)

    # a second run downloads nothing and writes nothing (not even its bookkeeping)
    gets = len(_Quiet.requests)
    before = mtimes(folder)
    snap = snapshot(folder)
    r = run("--config", cfg, "--out", out, "--size", SIZE, "-q")
    assert r.exit_code == 0 and "nothing to do" in r.output
    assert snapshot(folder) == snap and len(_Quiet.requests) == gets

    # a new exclude only changes that photo: its file goes, its row says why, nothing else moves
    cfg.write_text(video_entry("clip", url, exclude=[3]))
    r = run("--config", cfg, "--out", out, "--size", SIZE, "-q")
    assert r.exit_code == 0, r.output
    after = mtimes(folder)
    changed = {k for k in before if after.get(k) != before[k]}
    assert changed == {"aligned/7390.png", "manifest.csv", "contact_sheet.jpg", ".fetch/state.json",
                       "fetch.options.json"}   # the options record holds the new exclude list
    assert "aligned/7390.png" not in after
    row = next(r for r in manifest(folder) if r["photo"] == "3")
    assert row["status"] == "excluded" and row["age_days"] == "7390" and row["file"] == ""
    assert [r["age_days"] for r in manifest(folder)] == [r["age_days"] for r in rows]   # ages do not shift
    assert_contact_sheet(folder, sorted(kept - {7390}))

    # and taking it back out of exclude brings exactly that photo back
    cfg.write_text(video_entry("clip", url))
    r = run("--config", cfg, "--out", out, "--size", SIZE, "-q")
    assert "1 faces aligned" in r.output
    assert {int(p.stem) for p in (folder / "aligned").glob("*.png")} == kept
    assert len(_Quiet.requests) == gets


@needs_fixtures
def test_bad_videos_fail_alone(tmp_path, server):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).bytes(20000))
    cfg = tmp_path / "videos.toml"
    cfg.write_text(
        video_entry("good", FIXTURES / "photoaday_clip.mp4")
        + video_entry("corrupt", broken)
        + video_entry("gone", f"{server}/no_such_video.mp4")
        + '[[video]]\nname = "nourl"\nstart_age = 10\ndays_per_photo = 1\n\n'
        + video_entry("good2", FIXTURES / "photoaday_clip.mp4", decimate=2)
    )
    out = tmp_path / "data"
    r = run("--config", cfg, "--out", out, "--size", 64, "-q")
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, r.stderr
    assert any("video 'nourl'" in e and "missing field 'url'" in e for e in errors)
    assert any("video 'corrupt'" in e and "cannot open the video" in e for e in errors)
    assert any("video 'gone'" in e and "404" in e for e in errors)
    assert "3 of 5 videos failed: nourl, corrupt, gone" in r.stdout and len(r.stderr.splitlines()) == 3
    assert "Traceback" not in r.output
    # the good videos were processed all the same (local files used in place, not copied)
    assert len(list((out / "good" / "aligned").glob("*.png"))) == 12
    assert not list((out / "good").glob("video.*"))
    statuses = [row["status"] for row in manifest(out / "good2")]
    assert statuses.count("kept") == 6 and statuses.count("decimated") == 6
    assert not (out / "gone").exists()


@needs_fixtures
def test_the_options_are_recorded_and_rewritten_only_when_they_change(tmp_path):
    """fetch.options.json holds the options the video was fetched with (its own de-dup settings
    included) and its config fields; a re-run with the same options does not rewrite it."""
    clip = FIXTURES / "photoaday_clip.mp4"
    cfg = tmp_path / "videos.toml"
    cfg.write_text(video_entry("clip", clip, tolerance=6, exclude=[3, "5-6"]))
    out = tmp_path / "data"
    args = ["fetch", "--config", cfg, "-o", out, "--size", 64, "-q"]
    assert cli(args).exit_code == 0
    path = out / "clip" / "fetch.options.json"
    record = json.loads(path.read_text())
    assert record["options"] == asdict(FetchOptions(size=64, tolerance=6.0))
    assert record["video"] == {"name": "clip", "url": str(clip), "start_age_days": 6940, "days_per_photo": 150.0,
                               "end_age_days": None, "start_time": None, "end_time": None, "decimate": 1,
                               "exclude": [3, "5-6"], "stabilise": True}
    snap = snapshot(out)
    r = cli(args)
    assert r.exit_code == 0 and "nothing to do" in r.stdout
    assert snapshot(out) == snap
    r = cli([*args, "--no-stabilise"])
    assert r.exit_code == 0 and "nothing to do" not in r.stdout
    assert json.loads(path.read_text())["options"] == asdict(FetchOptions(size=64, tolerance=6.0, stabilise=False))


def test_cli_help_and_light_import(tmp_path):
    r = run("--help")
    assert r.exit_code == 0 and "Examples:" in r.output and "--no-stabilise" in r.output
    code = ("import sys, aging.cli.fetch; heavy = {'cv2', 'dlib', 'yt_dlp', 'torch'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    r = run("--config", tmp_path / "missing.toml")
    assert r.exit_code == 1 and "no such config file" in r.output
    cfg = tmp_path / "v.toml"
    cfg.write_text(video_entry("a", "a.mp4"))
    r = run("--config", cfg, "b")
    assert r.exit_code == 1 and "no video named 'b'" in r.output


@needs_fixtures
@pytest.mark.parametrize("out_args, out_rel", [([], "data"), (["-o", "out/faces"], "out/faces")],
                         ids=["default-folder", "relative-o"])
def test_fetch_over_http_into_a_relative_output_folder(tmp_path, server, out_args, out_rel):
    """yt-dlp reports absolute paths; the output root given relative to the working directory
    (the default `data`, or a relative -o) must get the download, not lose it."""
    truth = json.loads((FIXTURES / "photoaday_clip.json").read_text())
    cfg = tmp_path / "videos.toml"
    cfg.write_text(video_entry("clip", f"{server}/photoaday_clip.mp4"))
    work = tmp_path / "work"
    work.mkdir()
    r = cli(["fetch", "--config", cfg, *out_args, "--size", 64, "-q"], cwd=work)
    assert r.exception is None and r.exit_code == 0, r.stderr
    folder = work / out_rel / "clip"
    assert hashlib.sha256((folder / "video.mp4").read_bytes()).hexdigest() == truth["video"]["sha256"]
    assert len(list((folder / "aligned").glob("*.png"))) == truth["totals"]["expected_kept_faces"]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [".fetch", "aligned"]   # no data/clip/data/clip
    assert sorted(p.name for p in (work / out_rel).iterdir()) == ["clip"]
    snap = snapshot(work)
    r = cli(["fetch", "--config", cfg, *out_args, "--size", 64, "-q"], cwd=work)
    assert r.exit_code == 0 and "nothing to do" in r.stdout, r.stderr
    assert snapshot(work) == snap


@needs_fixtures
def test_a_damaged_cached_download_is_fetched_again_and_no_face_is_lost(tmp_path, server, monkeypatch):
    import aging.fetch.download as D

    cfg = tmp_path / "videos.toml"
    cfg.write_text(video_entry("clip", f"{server}/photoaday_clip.mp4"))
    out = tmp_path / "data"
    args = ["fetch", "--config", cfg, "-o", out, "--size", 64, "-q"]
    assert cli(args).exit_code == 0
    folder = out / "clip"
    video = folder / "video.mp4"
    good = video.read_bytes()
    faces = snapshot(folder / "aligned")
    manifest_before = (folder / "manifest.csv").read_bytes()

    # an untouched download is trusted from its size and time: not hashed again on every run
    hashed = []
    monkeypatch.setattr(D, "sha256_file", lambda p, *a: hashed.append(p) or D.io.sha256_file(p, *a))
    assert cli(args).exit_code == 0 and hashed == []

    rng = np.random.default_rng(1)
    rotten = bytearray(good)
    rotten[len(good) // 2:len(good) // 2 + 2000] = rng.bytes(2000)
    for damaged in (bytes(rotten), good[:len(good) // 2]):      # same size but other bytes; truncated
        video.write_bytes(damaged)
        gets = len(_Quiet.requests)
        r = cli(args)
        assert r.exit_code == 0, r.stderr
        assert "damaged" in r.stderr and len(_Quiet.requests) > gets     # said so, and downloaded again
        assert video.read_bytes() == good
        # the same video again: the faces aligned before are kept as they were, not re-made
        assert snapshot(folder / "aligned") == faces
        assert (folder / "manifest.csv").read_bytes() == manifest_before
    assert hashed   # the touched file was checked


@needs_fixtures
def test_a_damaged_download_that_cannot_be_fetched_again_loses_nothing(tmp_path, server, served):
    shutil.copy(served / "photoaday_clip.mp4", served / "going.mp4")
    cfg = tmp_path / "videos.toml"
    cfg.write_text(video_entry("clip", f"{server}/going.mp4"))
    out = tmp_path / "data"
    args = ["fetch", "--config", cfg, "-o", out, "--size", 64, "-q"]
    assert cli(args).exit_code == 0
    (served / "going.mp4").unlink()            # the video is gone from the internet
    folder = out / "clip"
    video = folder / "video.mp4"
    video.write_bytes(video.read_bytes()[:20000])    # and the cached copy is damaged
    snap = snapshot(folder)
    r = cli(args)
    assert r.exit_code == 1 and r.exception is None
    errors = r.error_lines
    assert len(errors) == 1 and "video 'clip'" in errors[0] and "404" in errors[0], r.stderr
    assert "cached copy is damaged" in errors[0]
    assert snapshot(folder) == snap
    assert len(list((folder / "aligned").glob("*.png"))) == 12
