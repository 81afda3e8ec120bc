"""TOML configuration files -> dataclasses.

Videos (``configs/videos.toml``), read by ``aging fetch``::

    [[video]]
    name = "hugo"                      # key used on the command line (aging fetch hugo)
    url = "https://www.youtube.com/watch?v=65nfbW-27ps"   # any yt-dlp URL, http(s) URL or local path
    subject = "hugo"                   # folder under data/ [default: name]
    start_age = "12y"                  # age of the first photo: days (4380), "4380d" or "12y" ...
    # birth_date = 1999-05-01          # ... or a birth date with the date of the first photo
    # first_photo_date = 2011-05-01
    days_per_photo = 1                 # how ages advance: days between photos ...
    # end_age = "24y"                  # ... or the age of the last photo, spread evenly
    start_time = 4.5                   # seconds (or "1:02.5") to skip title cards [optional]
    end_time = "5:31"                  # seconds to stop before the credits [optional]
    decimate = 1                       # keep every k-th photo [default 1]
    exclude = [17, "40-42"]            # photo numbers to drop after review (manifest column `photo`)
    stabilise = true                   # stabilise the alignment over the sequence [default true]
    cutoff = 0.15                      # de-dup: fraction of changed pixels that starts a new photo
    tolerance = 5                      # de-dup: grey levels a pixel must change by to count
    check = ["start_age"]              # fields still to be checked by hand (aging fetch warns)

One malformed video does not spoil the others: :func:`load_videos` returns the videos it could
read and one :class:`VideoConfigError` per video it could not, each naming the file, the video and
the field. Numbers are checked for what they mean: ages and times are finite and not negative,
ages stay under :data:`MAX_AGE_DAYS`, and ``exclude`` ranges are kept as ranges (never expanded)
and may span at most :data:`MAX_EXCLUDE_RANGE` photos each.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import math
import re
from dataclasses import dataclass
from pathlib import Path

from aging.ages import DAYS_PER_YEAR, parse_age
from aging.errors import AgingError, FileFormatError
from aging.io import read_toml

VIDEO_FIELDS = {
    "name", "url", "subject", "start_age", "birth_date", "first_photo_date", "days_per_photo", "end_age",
    "last_photo_date", "start_time", "end_time", "decimate", "exclude", "stabilise", "cutoff", "tolerance",
    "check", "notes",
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_RANGE = re.compile(r"^\s*(\d{1,15})\s*-\s*(\d{1,15})\s*$")

MAX_AGE_DAYS = 73050            # 200 years: no age (or step between photos) in a config is larger
MAX_EXCLUDE_RANGE = 1_000_000   # photos in one "a-b" range of `exclude`


class ConfigError(AgingError, ValueError):
    """A configuration file that cannot be read at all (missing, not TOML, wrong layout)."""


class VideoConfigError(ConfigError):
    """One video entry that cannot be used; ``name`` is the video's name (or ``#k`` without one)."""

    def __init__(self, message: str, name: str):
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class PhotoNumbers:
    """A set of photo numbers kept as sorted, disjoint, inclusive ranges (``exclude``): a range of
    a million photos costs two integers, and membership is a binary search."""

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_ranges(cls, ranges) -> PhotoNumbers:
        merged: list[list[int]] = []
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        return cls(tuple((lo, hi) for lo, hi in merged))

    def __contains__(self, n) -> bool:
        if n is None:
            return False
        k = bisect.bisect_right(self.ranges, (n, math.inf)) - 1
        return k >= 0 and self.ranges[k][0] <= n <= self.ranges[k][1]

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __iter__(self):
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def as_list(self) -> list:
        """The TOML form: ``[17, "40-42"]``."""
        return [lo if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges]


@dataclass(frozen=True)
class VideoConfig:
    """One "photo a day" video and how to turn it into age-labelled photos."""

    name: str
    url: str                                # yt-dlp URL, direct http(s) URL, or local path
    subject: str                            # folder under the output root
    start_age_days: int                     # age of photo 0
    days_per_photo: float | None = None     # photo k: start + k * days_per_photo ...
    end_age_days: int | None = None         # ... or spread evenly from start to end over all photos
    start_time: float | None = None         # seconds
    end_time: float | None = None           # seconds
    decimate: int = 1
    exclude: PhotoNumbers = PhotoNumbers()
    stabilise: bool = True
    cutoff: float | None = None             # de-dup settings; None: the fetch defaults
    tolerance: float | None = None
    check: tuple[str, ...] = ()
    source: Path | None = None              # the config file it came from

    @property
    def is_local(self) -> bool:
        return not _REMOTE.match(self.url) or self.url.startswith("file://")

    def local_path(self) -> Path:
        """The video file for a local ``url`` (relative paths: the working directory first,
        then the config file's folder)."""
        text = self.url[len("file://"):] if self.url.startswith("file://") else self.url
        p = Path(text).expanduser()
        if not p.is_absolute() and not p.exists() and self.source is not None:
            alt = self.source.parent / p
            if alt.exists():
                return alt
        return p

    def ages(self, n_photos: int) -> list[int]:
        """Age in days of each of ``n_photos`` photos, in video order (strictly increasing)."""
        if n_photos <= 0:
            return []
        if self.days_per_photo is not None:
            ages = [self.start_age_days + int(round(k * self.days_per_photo)) for k in range(n_photos)]
        else:
            span = self.end_age_days - self.start_age_days
            ages = [self.start_age_days + (int(round(k * span / (n_photos - 1))) if n_photos > 1 else 0)
                    for k in range(n_photos)]
        if any(b <= a for a, b in zip(ages, ages[1:])):
            where = f"{self.source}: video {self.name!r}" if self.source else f"video {self.name!r}"
            spread = (f"{self.days_per_photo:g} days apart" if self.days_per_photo is not None else
                      f"between {self.start_age_days} and {self.end_age_days} days")
            raise VideoConfigError(f"{where}: {n_photos} photos {spread} do not get distinct whole-day ages",
                                   self.name)
        return ages


# ---------------------------------------------------------------------------------------------


def load_videos(path: str | Path) -> tuple[list[VideoConfig], list[VideoConfigError]]:
    """Read a videos file: the usable videos, and one error per unusable video.

    Raises :class:`ConfigError` when the file itself cannot be read.
    """
    path = Path(path)
    try:
        data = read_toml(path, {"video": list}, what="config file")
    except FileFormatError as exc:
        raise ConfigError(str(exc)) from None
    entries = data.get("video")
    if not entries:
        raise ConfigError(f"{path}: no [[video]] tables")
    videos: list[VideoConfig] = []
    errors: list[VideoConfigError] = []
    names: set[str] = set()
    subjects: dict[str, str] = {}
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            errors.append(VideoConfigError(f"{path}: video #{k + 1}: not a [[video]] table", f"#{k + 1}"))
            continue
        name = entry.get("name")
        label = name.strip() if isinstance(name, str) and name.strip() else f"#{k + 1}"
        try:
            v = parse_video(entry, source=path, label=label)
            if v.name in names:
                raise VideoConfigError(f"{path}: video {v.name!r}: name used twice", v.name)
            if v.subject in subjects:
                raise VideoConfigError(f"{path}: video {v.name!r}: subject {v.subject!r} is also the subject of "
                                       f"video {subjects[v.subject]!r} (both would write data/{v.subject}/)", v.name)
            names.add(v.name)
            subjects[v.subject] = v.name
            videos.append(v)
        except VideoConfigError as exc:
            errors.append(exc)
    return videos, errors


def parse_video(entry: dict, *, source: Path | None = None, label: str | None = None) -> VideoConfig:
    """One ``[[video]]`` table -> :class:`VideoConfig` (errors name the file, video and field)."""
    if label is None:
        name = entry.get("name")
        label = name.strip() if isinstance(name, str) and name.strip() else "?"
    where = f"{source}: video {label!r}" if source else f"video {label!r}"

    def fail(msg: str):
        raise VideoConfigError(f"{where}: {msg}", label)

    unknown = sorted(set(entry) - VIDEO_FIELDS)
    if unknown:
        fail(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(VIDEO_FIELDS))})")
    for key in ("name", "url"):
        if key not in entry:
            fail(f"missing field {key!r}")
        if not isinstance(entry[key], str) or not entry[key].strip():
            fail(f"field {key!r} must be a non-empty string")
        if any(ord(ch) < 32 for ch in entry[key]):
            fail(f"field {key!r} holds a control character")
    name = entry["name"].strip()
    if not _SAFE_NAME.match(name):
        fail("field 'name' may hold only letters, digits, '.', '_' and '-'")
    subject = entry.get("subject", name)
    if not isinstance(subject, str) or not _SAFE_NAME.match(subject):
        fail("field 'subject' must be a folder name (letters, digits, '.', '_', '-')")

    def age(key: str) -> int:
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            fail(f"field {key!r}: not an age (days like 4380, or years like \"12y\"): {_short(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            fail(f"field {key!r} must be a finite age, got {value!r}")
        try:
            days = parse_age(value)
        except (ValueError, OverflowError) as exc:
            fail(f"field {key!r}: {str(exc)[:80]}")
        if days < 0:
            fail(f"field {key!r} must not be negative")
        if days > MAX_AGE_DAYS:
            fail(f"field {key!r}: {days} days is over {MAX_AGE_DAYS / DAYS_PER_YEAR:.0f} years")
        return days

    def date(key: str) -> _dt.date:
        value = entry[key]
        if isinstance(value, _dt.datetime):
            return value.date()
        if isinstance(value, _dt.date):
            return value
        try:
            if not isinstance(value, str):
                raise ValueError
            return _dt.date.fromisoformat(value.strip())
        except ValueError:
            fail(f"field {key!r}: not a date (use 2001-09-30): {_short(value)}")

    # age of the first photo
    if "start_age" in entry:
        if "first_photo_date" in entry:
            fail("give either 'start_age' or 'birth_date' + 'first_photo_date', not both")
        start = age("start_age")
    elif "first_photo_date" in entry or "birth_date" in entry:
        for key in ("birth_date", "first_photo_date"):
            if key not in entry:
                fail(f"missing field {key!r} (the first photo's age is first_photo_date - birth_date)")
        start = (date("first_photo_date") - date("birth_date")).days
        if start < 0:
            fail("'first_photo_date' is before 'birth_date'")
        if start > MAX_AGE_DAYS:
            fail(f"'first_photo_date' is over {MAX_AGE_DAYS / DAYS_PER_YEAR:.0f} years after 'birth_date'")
    else:
        fail("missing field 'start_age' (or 'birth_date' + 'first_photo_date')")

    # how ages advance
    given = [k for k in ("days_per_photo", "end_age", "last_photo_date") if k in entry]
    if not given:
        fail("missing field 'days_per_photo' (or 'end_age')")
    if len(given) > 1:
        fail(f"give only one of 'days_per_photo', 'end_age', 'last_photo_date' (got {', '.join(given)})")
    days_per_photo = end = None
    if given[0] == "days_per_photo":
        value = entry["days_per_photo"]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            fail(f"field 'days_per_photo' must be a number of days, got {_short(value)}")
        if isinstance(value, str):
            try:
                value = parse_age(value)
            except (ValueError, OverflowError) as exc:
                fail(f"field 'days_per_photo': {str(exc)[:80]}")
        days_per_photo = float(value)
        if not days_per_photo > 0:
            fail(f"field 'days_per_photo' must be positive, got {value!r}")
        if not days_per_photo <= MAX_AGE_DAYS:    # also inf
            fail(f"field 'days_per_photo' must be at most {MAX_AGE_DAYS} days, got {value!r}")
    elif given[0] == "end_age":
        end = age("end_age")
    else:
        if "birth_date" not in entry:
            fail("missing field 'birth_date' (needed with 'last_photo_date')")
        end = (date("last_photo_date") - date("birth_date")).days
        if end > MAX_AGE_DAYS:
            fail(f"'last_photo_date' is over {MAX_AGE_DAYS / DAYS_PER_YEAR:.0f} years after 'birth_date'")
    if end is not None and end <= start:
        fail(f"the last photo's age ({end} days) is not after the first photo's ({start} days)")

    def seconds(key: str) -> float | None:
        if key not in entry:
            return None
        value = entry[key]
        try:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError
            if isinstance(value, (int, float)):
                s = float(value)
            else:
                s = 0.0
                for part in value.strip().split(":"):
                    if not re.fullmatch(r"\s*[0-9]*\.?[0-9]+\s*", part):
                        raise ValueError
                    s = s * 60 + float(part)
        except (ValueError, OverflowError):
            fail(f"field {key!r}: not a time in seconds (use 12.5 or \"1:02.5\"): {_short(value)}")
        if not math.isfinite(s):
            fail(f"field {key!r} must be a finite number of seconds, got {value!r}")
        if s < 0:
            fail(f"field {key!r} must not be negative")
        return s

    start_time, end_time = seconds("start_time"), seconds("end_time")
    if start_time is not None and end_time is not None and end_time <= start_time:
        fail("'end_time' is not after 'start_time'")

    decimate = entry.get("decimate", 1)
    if isinstance(decimate, bool) or not isinstance(decimate, int) or decimate < 1:
        fail(f"field 'decimate' must be a whole number >= 1, got {_short(decimate)}")
    exclude = _parse_indices(entry.get("exclude", []), fail)
    stabilise = entry.get("stabilise", True)
    if not isinstance(stabilise, bool):
        fail(f"field 'stabilise' must be true or false, got {_short(stabilise)}")
    dedup = {}
    for key, lo, hi in (("cutoff", 0.0, 1.0), ("tolerance", 0.0, 255.0)):
        value = entry.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo < value < hi:
                fail(f"field {key!r} must be a number between {lo:g} and {hi:g}, got {_short(value)}")
            dedup[key] = float(value)
    check = entry.get("check", [])
    if not isinstance(check, list) or not all(isinstance(c, str) for c in check):
        fail("field 'check' must be a list of field names")
    if not isinstance(entry.get("notes", ""), str):
        fail("field 'notes' must be a string")
    return VideoConfig(name=name, url=entry["url"].strip(), subject=subject, start_age_days=start,
                       days_per_photo=days_per_photo, end_age_days=end, start_time=start_time, end_time=end_time,
                       decimate=decimate, exclude=exclude, stabilise=stabilise, check=tuple(check), source=source,
                       **dedup)


def _parse_indices(value, fail) -> PhotoNumbers:
    """``[3, 7, "10-12"]`` -> ranges ``(3, 3), (7, 7), (10, 12)``, never expanded."""
    if not isinstance(value, list):
        fail("field 'exclude' must be a list of photo numbers, e.g. [3, 7, \"10-12\"]")
    ranges = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            ranges.append((item, item))
            continue
        m = _RANGE.match(item) if isinstance(item, str) else None
        if not m or int(m.group(2)) < int(m.group(1)):
            fail(f"field 'exclude': not a photo number or range: {_short(item)}")
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi - lo + 1 > MAX_EXCLUDE_RANGE:
            fail(f"field 'exclude': range {item!r} spans {hi - lo + 1} photos (at most {MAX_EXCLUDE_RANGE:,})")
        ranges.append((lo, hi))
    return PhotoNumbers.from_ranges(ranges)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
