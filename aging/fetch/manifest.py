"""``manifest.csv``: one row per distinct item of a video (every photo and every non-photo).

Columns:

* ``index``: the item's number among the video's distinct items (0-based, video order);
* ``photo``: the photo number (0-based, video order) = its age slot; empty for ``no_face`` items,
  which are not photos. ``exclude`` in the config and the contact sheet use this number;
* ``age_days``: the photo's age (empty for ``no_face``);
* ``status``: ``kept``, ``no_face``, ``multi_face``, ``face_too_small``, ``face_cropped``,
  ``landmarks_implausible``, ``decimated`` or ``excluded``; ``reason``: why, in words. A photo with
  several faces of similar size keeps the one that matches the subject (its reason says so) and
  is ``multi_face`` only when none does (or no clean single-face photo gives the subject's look);
* ``time_s``: the video time of the item's first frame; ``first_frame``, ``last_frame``: its frames
  (inclusive); ``frame``: the frame the photo was taken from (the sharpest);
* ``file``: ``aligned/<age_days>.png`` for kept photos.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from aging.io import read_text, write_if_changed

KEPT = "kept"
DECIMATED = "decimated"
EXCLUDED = "excluded"
STATUSES = (KEPT, "no_face", "multi_face", "face_too_small", "face_cropped", "landmarks_implausible",
            DECIMATED, EXCLUDED)


@dataclass
class ManifestRow:
    index: int
    photo: int | None
    age_days: int | None
    status: str
    reason: str
    time_s: float
    first_frame: int
    last_frame: int
    frame: int
    file: str = ""


COLUMNS = [f.name for f in fields(ManifestRow)]


def manifest_text(rows: list[ManifestRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        d = asdict(row)
        d["time_s"] = f"{row.time_s:.3f}"
        d["photo"] = "" if row.photo is None else row.photo
        d["age_days"] = "" if row.age_days is None else row.age_days
        writer.writerow(d)
    return buf.getvalue()


def write_manifest(path: str | Path, rows: list[ManifestRow]) -> bool:
    """Write the manifest atomically; False (and nothing touched) when it is unchanged."""
    return write_if_changed(path, manifest_text(rows))


def read_manifest(path: str | Path) -> list[ManifestRow]:
    rows = []
    with io.StringIO(read_text(path, "manifest"), newline="") as fh:
        for d in csv.DictReader(fh):
            rows.append(ManifestRow(
                index=int(d["index"]), photo=int(d["photo"]) if d["photo"] else None,
                age_days=int(d["age_days"]) if d["age_days"] else None, status=d["status"], reason=d["reason"],
                time_s=float(d["time_s"]), first_frame=int(d["first_frame"]), last_frame=int(d["last_frame"]),
                frame=int(d["frame"]), file=d["file"]))
    return rows
