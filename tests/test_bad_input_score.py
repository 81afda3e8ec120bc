"""Bad input of ``aging score`` (issue 13): one error line naming the folder or file, a non-zero
exit, and nothing of the working directory changed.

Each case builds its input inside a fresh directory holding ``real/`` (two small photos) and
``gen/`` (one generated image); the images need no face, since every case fails before or while
reading them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from tests.harness import assert_user_error, cli, snapshot


@dataclass
class Case:
    name: str
    make: Callable[[Path], None]  # spoils the working directory
    args: list[str]
    needles: tuple[str, ...]


def _image(path: Path, size=(32, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 120, np.uint8)).save(path)


def _nothing(root: Path) -> None:
    pass


def _empty_gen(root: Path) -> None:
    for p in (root / "gen").iterdir():
        p.unlink()


def _text_only(root: Path) -> None:
    _empty_gen(root)
    (root / "gen" / "notes.txt").write_text("not an image")


def _corrupt(root: Path) -> None:
    (root / "gen" / "7400.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")


def _badly_named(root: Path) -> None:
    _image(root / "gen" / "frame_001.png")


def _out_is_file(root: Path) -> None:
    (root / "out").write_text("a file")


BASE = ["real", "gen", "-o", "out", "-q", "--no-ages", "--cache", "cache"]
CASES = [
    Case("missing real folder", _nothing, ["nope", *BASE[1:]], ("nope", "no such folder")),
    Case("missing generated folder", _nothing, ["real", "nope", *BASE[2:]], ("nope", "no such folder")),
    Case("empty generated folder", _empty_gen, BASE, ("gen", "no photos")),
    Case("only non-image files", _text_only, BASE, ("gen", "no photos")),
    Case("corrupt image", _corrupt, BASE, ("7400.png", "unreadable image")),
    Case("name not an age", _badly_named, BASE, ("frame_001.png", "not an age in days")),
    Case("missing source", _nothing, [*BASE, "--source", "real/1.png"], ("--source", "real/1.png")),
    Case("output is a file", _out_is_file, BASE, ("--out", "is a file")),
    Case("bad threshold", _nothing, [*BASE, "--threshold", "nan"], ("--threshold",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path):
    _image(tmp_path / "real" / "7000.png")
    _image(tmp_path / "real" / "7300.png", (40, 30))
    _image(tmp_path / "gen" / "7100.png")
    case.make(tmp_path)
    before = snapshot(tmp_path)
    out = cli(["score", *case.args], cwd=tmp_path)
    assert_user_error(out, *case.needles)
    assert snapshot(tmp_path) == before
