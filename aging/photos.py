"""A subject's aligned photos, as every stage that reads them sees them.

A subject folder written by ``aging fetch`` is read through its ``manifest.csv``: the rows of
status ``kept``, in manifest (video) order, each with its ``file``; aligned images the manifest
does not keep (photos excluded since, say) are not photos. Without a manifest, every
``<age_days>.png|jpg`` of ``folder/aligned`` (or of ``folder`` itself) is a photo; hidden files,
temporaries and the outputs a stage writes beside them (``skip_names``) are not.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aging import io
from aging.errors import AgingError, FileFormatError

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
MANIFEST_NAME = "manifest.csv"  # written by aging fetch
_DIGITS = re.compile(r"^[0-9]+$")


class PhotoError(AgingError, ValueError):
    """A subject folder whose photos cannot be listed (one line naming the file)."""


@dataclass
class SubjectPhotos:
    """A subject's aligned photos in age order."""

    source: Path  # folder the images are read from
    ages: list[int]  # days, strictly increasing
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.ages)


def subject_photos(folder: str | os.PathLike, *, skip_names=()) -> SubjectPhotos:
    """The photos of a subject folder (manifest) or of a plain folder, in age order.

    Raises :class:`PhotoError`: no such folder, no photos, an image whose name is not an age in
    days (digits only: ``9_207.png`` and ``-5.png`` are refused), two images of one age, a
    manifest that cannot be read or names a missing file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PhotoError(f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder")
    manifest = folder / MANIFEST_NAME
    if manifest.is_file():
        ages, paths = kept_in_manifest(manifest)
        return SubjectPhotos(source=folder / "aligned", ages=ages, paths=paths)
    src = folder / "aligned" if (folder / "aligned").is_dir() else folder
    skip = {n.lower() for n in skip_names}
    found: dict[int, Path] = {}
    for p in io.data_files(src, IMAGE_EXTS):
        if p.name.lower() in skip:
            continue
        try:
            age = io.age_from_name(p)
        except FileFormatError:
            raise PhotoError(f"{p}: image name is not an age in days (digits only, e.g. 7300.png)") from None
        if age in found:
            raise PhotoError(f"{p}: a second photo of age {age} days (also {found[age].name})")
        found[age] = p
    if not found:
        raise PhotoError(f"{src}: no photos (expected aligned images named <age_days>.png or .jpg)")
    ages = sorted(found)
    return SubjectPhotos(source=src, ages=ages, paths=[found[a] for a in ages])


def kept_in_manifest(manifest: Path) -> tuple[list[int], list[Path]]:
    """``(ages, paths)`` of the ``kept`` rows of an ``aging fetch`` manifest, in its order."""
    ages: list[int] = []
    paths: list[Path] = []
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"age_days", "status", "file"} - set(reader.fieldnames or [])
            if missing:
                raise PhotoError(f"{manifest}: not an aging fetch manifest (no column {sorted(missing)[0]!r})")
            for line, row in enumerate(reader, start=2):
                if row["status"] != "kept":
                    continue
                text = (row["age_days"] or "").strip()
                if not _DIGITS.match(text):
                    raise PhotoError(f"{manifest}:{line}: kept row without an age in days (got {text!r})")
                age = int(text)
                if ages and age <= ages[-1]:
                    raise PhotoError(f"{manifest}:{line}: ages must increase down the manifest "
                                     f"({age} after {ages[-1]})")
                path = manifest.parent / (row["file"] or f"aligned/{age}.png")
                if not path.is_file():
                    raise PhotoError(f"{path}: listed as kept in {manifest.name} but missing "
                                     "(run aging fetch again to rebuild it)")
                ages.append(age)
                paths.append(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PhotoError(f"{manifest}: unreadable manifest ({exc.__class__.__name__}: {exc})") from None
    if not ages:
        raise PhotoError(f"{manifest}: no kept photos")
    return ages, paths


def read_photo(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """An aligned photo as uint8 RGB ``[size, size, 3]``, area-resized (box filter) when its size
    differs; 16-bit, palette and grey images are converted by :func:`aging.io.read_image`."""
    return io.read_image(path, size, square=True)
