"""``aging fetch`` killed (SIGKILL) at chosen points, then run again to completion.

A fresh fetch of the fixture clip (a local file, so no server is needed in the subprocess) makes
18 atomic writes, one at a time, in this order: ``.fetch/source.json``, ``.fetch/scan.json``, the
12 aligned faces (in frame order), ``manifest.csv``, ``contact_sheet.jpg``, ``fetch.options.json``,
``.fetch/state.json``. The process is killed right after write N (``"N-"``: with write N's temporary complete but not
renamed); whatever it left must read as whole files, and a re-run must finish the job with outputs
byte-equal to an uninterrupted run's, mutually consistent, without temporaries, and a further
re-run must write nothing.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import pytest

from tests.harness import cli, hidden_leftovers, run_aging, snapshot

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
CLIP = FIXTURES / "photoaday_clip.mp4"
pytestmark = pytest.mark.skipif(not CLIP.is_file(), reason="../shared/fixtures absent (shared fixtures needed)")

ARGS = ["fetch", "--config", "videos.toml", "-o", "data", "--size", "64", "-q"]
CONFIG = f'[[video]]\nname = "clip"\nurl = "{CLIP}"\nstart_age = 6940\ndays_per_photo = 150\n'
WRITES = 18


def every_file(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, bookkeeping included: relative path -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "videos.toml").write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The files of an uninterrupted fetch."""
    work = workdir(tmp_path_factory.mktemp("reference"))
    out = cli(ARGS, cwd=work)
    assert out.exit_code == 0, out.stderr
    return every_file(work / "data" / "clip")


def assert_consistent(folder: Path) -> None:
    """Every kept manifest row has its aligned face, and there is no other face and no temporary."""
    rows = list(csv.DictReader(io.StringIO((folder / "manifest.csv").read_text())))
    kept = {r["file"] for r in rows if r["status"] == "kept"}
    assert len(kept) == 12 and all(r["file"] == "" for r in rows if r["status"] != "kept")
    assert {f"aligned/{p.name}" for p in (folder / "aligned").iterdir()} == kept
    assert hidden_leftovers(folder) == []


@pytest.mark.parametrize("kill_at", ["1", "2", "3-", "8", "15-", "16", "17"])
def test_killed_fetch_finishes_on_the_next_run(kill_at, reference, tmp_path):
    work = workdir(tmp_path)
    folder = work / "data" / "clip"
    killed = run_aging(ARGS, work, kill_at=kill_at, timeout=300)
    assert killed.returncode == -9, (killed.returncode, killed.stderr)   # the kill point was reached

    # what the killed run left is whole: finished writes are complete files, the unfinished one
    # is at most a hidden temporary
    left = every_file(folder)
    assert sum(1 for rel in left if "/." not in f"/{rel}" and ".tmp" not in rel) <= int(kill_at.rstrip("-"))
    for rel, data in left.items():
        if rel.startswith("aligned/") and not rel.startswith("aligned/."):
            assert data == reference[rel]
            assert cv2.imread(str(folder / rel)).shape == (64, 64, 3)
    assert bool(hidden_leftovers(folder)) == kill_at.endswith("-")

    out = cli(ARGS, cwd=work)
    assert out.exit_code == 0 and out.exception is None, out.stderr
    assert every_file(folder) == reference          # byte-equal, bookkeeping included
    assert_consistent(folder)

    snap = snapshot(work)                            # and now it is finished: nothing to do
    out = cli(ARGS, cwd=work)
    assert out.exit_code == 0 and "nothing to do" in out.stdout
    assert snapshot(work) == snap


def test_the_write_count_in_the_docstring_is_right(reference):
    """The kill points above were chosen from this count; a change of the write order shows here."""
    assert len(reference) == WRITES
