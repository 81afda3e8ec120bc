"""``aging fetch`` on bad input, table-driven.

Every case runs the CLI (in-process, from a working directory, the output root given relative to
it) on a config that holds an already-fetched subject ``good`` beside the bad input where that
makes sense, and asserts what the design promises: a non-zero exit, no traceback, exactly one error
line per failed video (naming the file, the video and the field or option), the other videos
still processed, and nothing finished lost or rewritten (the ``good`` subject's files keep their
size, mtime and inode; no folder is made for a video that failed).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.harness import assert_user_error, cli, hidden_leftovers, snapshot

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
CLIP = FIXTURES / "photoaday_clip.mp4"
pytestmark = pytest.mark.skipif(not CLIP.is_file(), reason="../shared/fixtures absent (shared fixtures needed)")

GOOD = '[[video]]\nname = "good"\nurl = "{clip}"\nstart_age = 6940\ndays_per_photo = 150\n\n'
ARGS = ["-o", "data", "--size", "64", "-q"]


def entry(name="bad", **fields) -> str:
    """A ``[[video]]`` table, valid unless ``fields`` (raw TOML values; None drops a field) spoil it."""
    base = {"url": '"{clip}"', "start_age": "6940", "days_per_photo": "150", **fields}
    lines = [f'name = "{name}"'] if name is not None else []
    lines += [f"{k} = {v}" for k, v in base.items() if v is not None]
    return "[[video]]\n" + "\n".join(lines) + "\n\n"


@dataclass
class Case:
    id: str
    config: str | bytes                  # videos.toml ({clip}, {corrupt}, ... filled in)
    errors: list[tuple[str, ...]]        # one tuple of needles per expected error line
    args: tuple[str, ...] = ()
    code: int = 1
    good_runs: bool = True               # the good video is still processed (and up to date)


def bad(case_id: str, *needles: str, **fields) -> Case:
    """A config with the good video and one video 'bad' whose entry ``fields`` spoil; the error
    line must name the config file, the video and ``needles`` (the field)."""
    return Case(case_id, GOOD + entry(**fields), [("videos.toml", "video 'bad'", *needles)])


def bad_video(case_id: str, *needles: str, **fields) -> Case:
    """Like :func:`bad` for a well-formed entry whose video cannot be used: the error line names
    the video and ``needles`` (the video file, what is wrong with it)."""
    return Case(case_id, GOOD + entry(**fields), [("video 'bad'", *needles)])


CASES = [
    # the config file itself: the whole run stops, with one line naming the file
    Case("missing-config", GOOD, [("missing.toml", "no such config file")], ("--config", "missing.toml"),
         good_runs=False),
    Case("config-is-a-folder", GOOD, [("data", "is a folder")], ("--config", "data"), good_runs=False),
    Case("config-not-toml", "[[video]\nname = 1\n", [("videos.toml", "not valid TOML")], good_runs=False),
    Case("config-not-utf8", '[[video]]\nname = "caf\xe9"\n'.encode("latin-1"), [("videos.toml", "not UTF-8")],
         good_runs=False),
    Case("config-without-videos", "# nothing yet\n", [("videos.toml", "no [[video]] tables")], good_runs=False),
    Case("config-unknown-table", GOOD + "[settings]\nsize = 3\n", [("videos.toml", "unknown key 'settings'")],
         good_runs=False),
    Case("video-not-a-table", "video = [1]\n", [("videos.toml", "video #1", "not a [[video]] table")],
         good_runs=False),
    # options
    Case("unknown-video-name", GOOD, [("videos.toml", "no video named 'nope'", "good")], ("nope",),
         good_runs=False),
    Case("out-is-a-file", GOOD, [("-o/--out", "videos.toml", "is a file")], ("-o", "videos.toml"), good_runs=False),
    Case("size-out-of-range", GOOD, [("--size",)], ("--size", "10"), code=2, good_runs=False),
    Case("size-not-a-number", GOOD, [("--size", "big")], ("--size", "big"), code=2, good_runs=False),
    # one bad video among good ones: its own line, the good one still runs
    bad("unknown-field", "unknown field 'exlude'", exlude="[3]"),
    bad("missing-url", "missing field 'url'", url=None),
    bad("url-not-a-string", "field 'url'", url="3"),
    bad("subject-not-a-folder-name", "field 'subject'", subject='"../elsewhere"'),
    bad("start-age-words", "field 'start_age'", start_age='"ten"'),
    bad("start-age-inf", "field 'start_age'", start_age="inf"),
    bad("start-age-nan", "field 'start_age'", start_age="nan"),
    bad("start-age-negative", "field 'start_age'", start_age="-5"),
    bad("start-age-huge", "field 'start_age'", start_age="9000000000000000000"),
    bad("start-age-missing", "missing field 'start_age'", start_age=None),
    bad("birth-date-not-a-date", "field 'birth_date'", start_age=None, birth_date='"last spring"',
        first_photo_date="2001-01-01"),
    bad("days-per-photo-negative", "field 'days_per_photo'", days_per_photo="-1"),
    bad("days-per-photo-zero", "field 'days_per_photo'", days_per_photo="0"),
    bad("days-per-photo-words", "field 'days_per_photo'", days_per_photo='"x"'),
    bad("days-per-photo-inf", "field 'days_per_photo'", days_per_photo="inf"),
    bad("days-per-photo-nan", "field 'days_per_photo'", days_per_photo="nan"),
    bad("days-per-photo-and-end-age", "'days_per_photo', 'end_age'", end_age="9000"),
    bad("end-age-inf", "field 'end_age'", days_per_photo=None, end_age="inf"),
    bad("end-age-before-start", "is not after", days_per_photo=None, end_age="100"),
    bad("start-time-nan", "field 'start_time'", start_time="nan"),
    bad("start-time-inf", "field 'start_time'", start_time="inf"),
    bad("start-time-negative", "field 'start_time'", start_time="-1"),
    bad("start-time-nan-text", "field 'start_time'", start_time='"1:nan"'),
    bad("start-time-words", "field 'start_time'", start_time='"soon"'),
    bad("end-time-minus-inf", "field 'end_time'", end_time="-inf"),
    bad("end-time-before-start-time", "'end_time' is not after", start_time="9", end_time="3"),
    bad("decimate-words", "field 'decimate'", decimate='"x"'),
    bad("decimate-zero", "field 'decimate'", decimate="0"),
    bad("decimate-fraction", "field 'decimate'", decimate="1.5"),
    bad("stabilise-number", "field 'stabilise'", stabilise="3"),
    bad("stabilise-words", "field 'stabilise'", stabilise='"yes"'),
    bad("exclude-huge-range", "field 'exclude'", "40-4200000000", exclude='["40-4200000000"]'),
    bad("exclude-negative", "field 'exclude'", exclude="[-1]"),
    bad("exclude-not-a-list", "field 'exclude'", exclude='"3"'),
    bad("exclude-words", "field 'exclude'", exclude='["three"]'),
    bad("cutoff-over-one", "field 'cutoff'", cutoff="2"),
    bad("cutoff-nan", "field 'cutoff'", cutoff="nan"),
    bad("tolerance-words", "field 'tolerance'", tolerance='"x"'),
    bad("check-not-a-list", "field 'check'", check='"start_age"'),
    bad("notes-not-text", "field 'notes'", notes="3"),
    Case("name-used-twice", GOOD + GOOD, [("videos.toml", "video 'good'", "name used twice")]),
    Case("subject-of-another-video", GOOD + entry(subject='"good"'),
         [("videos.toml", "video 'bad'", "subject 'good'")]),
    Case("name-not-a-folder-name", GOOD + entry(name="a/b"), [("videos.toml", "video 'a/b'", "field 'name'")]),
    # videos that cannot be used
    bad_video("corrupt-video", "corrupt.mp4", "cannot open the video", url='"{corrupt}"'),
    bad_video("missing-video", "missing.mp4", "no such video file", url='"{missing}"'),
    bad_video("video-without-a-face", "noface.avi", "no face", url='"{noface}"'),
    bad_video("start-time-past-the-end", "photoaday_clip.mp4", "no frame could be decoded", start_time="3600"),
    bad("too-many-photos-for-the-ages", "12 photos", "distinct whole-day ages", days_per_photo=None, end_age="6945"),
    bad_video("unreachable-url", "cannot download", "127.0.0.1:9", url='"http://127.0.0.1:9/clip.mp4"'),
    Case("two-bad-videos", GOOD + entry(url='"{corrupt}"') + entry(name="bad2", decimate="0"),
         [("videos.toml", "video 'bad2'", "field 'decimate'"), ("video 'bad'", "corrupt.mp4")]),
    # the finished subject's own video replaced by something unusable: nothing of it is lost
    Case("own-video-now-corrupt", entry("good", url='"{corrupt}"'), [("video 'good'", "cannot open the video")],
         good_runs=False),
    Case("own-video-now-truncated", entry("good", url='"{truncated}"'),
         [("video 'good'", "truncated.mp4", "decoding stopped")], good_runs=False),
    Case("own-video-now-missing", entry("good", url='"{missing}"'), [("video 'good'", "no such video file")],
         good_runs=False),
    Case("own-video-now-without-a-face", entry("good", url='"{noface}"'), [("video 'good'", "no face")],
         good_runs=False),
]


def write_faceless_video(path: Path) -> None:
    """Four "photos" of an empty backdrop (no face anywhere), each held three frames."""
    rng = np.random.default_rng(3)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 24, (320, 180))
    for _ in range(4):
        backdrop = cv2.resize(rng.uniform(20, 200, (3, 4, 3)).astype(np.float32), (320, 180),
                              interpolation=cv2.INTER_CUBIC).astype(np.uint8)
        for _ in range(3):
            vw.write(backdrop)
    vw.release()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A folder with the bad videos and ``data/good``, the clip fetched once (64 px)."""
    base = tmp_path_factory.mktemp("bad_input")
    (base / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(30000))
    (base / "truncated.mp4").write_bytes(CLIP.read_bytes()[:CLIP.stat().st_size // 2])
    write_faceless_video(base / "noface.avi")
    (base / "videos.toml").write_text(GOOD.format(clip=CLIP))
    out = cli(["fetch", "--config", "videos.toml", *ARGS], cwd=base)
    assert out.exit_code == 0, out.stderr
    assert len(list((base / "data" / "good" / "aligned").glob("*.png"))) == 12
    return base


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, base: Path, tmp_path: Path):
    shutil.copytree(base / "data", tmp_path / "data")
    files = {"clip": CLIP, "corrupt": base / "corrupt.mp4", "truncated": base / "truncated.mp4",
             "noface": base / "noface.avi", "missing": base / "missing.mp4"}
    config = case.config if isinstance(case.config, bytes) else case.config.format(**files).encode("utf-8")
    (tmp_path / "videos.toml").write_bytes(config)
    good = tmp_path / "data" / "good"
    before = snapshot(good)

    out = cli(["fetch", "--config", "videos.toml", *ARGS, *case.args], cwd=tmp_path)

    assert out.exit_code == case.code, (out.exit_code, out.stdout, out.stderr)
    if len(case.errors) == 1:
        assert_user_error(out, *case.errors[0])
    else:
        assert out.exception is None and "Traceback" not in out.stderr, out.stderr
        lines = out.error_lines
        assert len(lines) == len(case.errors), out.stderr
        for line, needles in zip(lines, case.errors):
            assert all(n in line for n in needles), (needles, line)
    # nothing finished lost or rewritten, no folder for a failed video, no temporaries
    assert snapshot(good) == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["good"]
    assert hidden_leftovers(tmp_path / "data") == []
    # one bad video never stops the others
    if case.good_runs:
        assert "good: " in out.stdout and "nothing to do" in out.stdout, out.stdout
        assert f"{len(case.errors)} of " in out.stdout and "videos failed" in out.stdout
    else:
        assert "good: " not in out.stdout
