"""The videos file (``configs/videos.toml``) -> :class:`VideoConfig` dataclasses, for ``aging fetch``::

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
from typing import NoReturn

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
    for k, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise VideoConfigError(f"{path}: video #{k + 1}: not a [[video]] table", f"#{k + 1}")
            video = parse_video(entry, source=path, label=_label(entry, f"#{k + 1}"))
            _check_unique(video, videos)
            videos.append(video)
        except VideoConfigError as exc:
            errors.append(exc)
    return videos, errors


def _check_unique(video: VideoConfig, others: list[VideoConfig]) -> None:
    """Two videos may share neither a name nor a subject folder."""
    where = f"{video.source}: video {video.name!r}"
    if any(other.name == video.name for other in others):
        raise VideoConfigError(f"{where}: name used twice", video.name)
    for other in others:
        if other.subject == video.subject:
            raise VideoConfigError(f"{where}: subject {video.subject!r} is also the subject of video {other.name!r} "
                                   f"(both would write data/{video.subject}/)", video.name)


def parse_video(entry: dict, *, source: Path | None = None, label: str | None = None) -> VideoConfig:
    """One ``[[video]]`` table -> :class:`VideoConfig` (errors name the file, video and field).

    The fields are read in steps, each checking its own: who the video is (name, url, subject),
    the age of its first photo, how ages advance, the time range, and how photos are kept."""
    fields = _Fields(entry, source, label if label is not None else _label(entry, "?"))
    name, subject = _identity(fields)
    start = _start_age(fields)
    days_per_photo, end = _age_step(fields, start)
    start_time, end_time = _time_range(fields)
    return VideoConfig(name=name, url=entry["url"].strip(), subject=subject, start_age_days=start,
                       days_per_photo=days_per_photo, end_age_days=end, start_time=start_time, end_time=end_time,
                       source=source, **_photo_choices(fields))


def _label(entry: dict, default: str) -> str:
    """How errors call a video: its name, or ``default`` when it has none."""
    name = entry.get("name")
    return name.strip() if isinstance(name, str) and name.strip() else default


class _Fields:
    """The fields of one ``[[video]]`` table, read with errors that name the file, video and field."""

    def __init__(self, entry: dict, source: Path | None, label: str):
        self.entry = entry
        self.label = label
        self.where = f"{source}: video {label!r}" if source else f"video {label!r}"

    def __contains__(self, key: str) -> bool:
        return key in self.entry

    def __getitem__(self, key: str):
        return self.entry[key]

    def get(self, key: str, default=None):
        return self.entry.get(key, default)

    def fail(self, msg: str) -> NoReturn:
        raise VideoConfigError(f"{self.where}: {msg}", self.label)

    def age(self, key: str) -> int:
        """An age in days (``4380``, ``"4380d"``, ``"12y"``): finite, not negative, under 200 years."""
        value = self.entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.fail(f"field {key!r}: not an age (days like 4380, or years like \"12y\"): {_short(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(f"field {key!r} must be a finite age, got {value!r}")
        try:
            days = parse_age(value)
        except (ValueError, OverflowError) as exc:
            self.fail(f"field {key!r}: {str(exc)[:80]}")
        if days < 0:
            self.fail(f"field {key!r} must not be negative")
        if days > MAX_AGE_DAYS:
            self.fail(f"field {key!r}: {days} days is over {MAX_AGE_DAYS / DAYS_PER_YEAR:.0f} years")
        return days

    def date(self, key: str) -> _dt.date:
        """A date (TOML date or ``"2001-09-30"``)."""
        value = self.entry[key]
        if isinstance(value, _dt.datetime):
            return value.date()
        if isinstance(value, _dt.date):
            return value
        try:
            if not isinstance(value, str):
                raise ValueError
            return _dt.date.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"field {key!r}: not a date (use 2001-09-30): {_short(value)}")

    def days_since_birth(self, key: str) -> int:
        """Days from ``birth_date`` to the date ``key``, at most :data:`MAX_AGE_DAYS`."""
        days = (self.date(key) - self.date("birth_date")).days
        if days > MAX_AGE_DAYS:
            self.fail(f"{key!r} is over {MAX_AGE_DAYS / DAYS_PER_YEAR:.0f} years after 'birth_date'")
        return days

    def seconds(self, key: str) -> float | None:
        """A video time: seconds (``12.5``) or ``"[h:]m:s"`` (``"1:02.5"``); None when absent."""
        if key not in self.entry:
            return None
        value = self.entry[key]
        try:
            s = _parse_seconds(value)
        except (ValueError, OverflowError):
            self.fail(f"field {key!r}: not a time in seconds (use 12.5 or \"1:02.5\"): {_short(value)}")
        if not math.isfinite(s):
            self.fail(f"field {key!r} must be a finite number of seconds, got {value!r}")
        if s < 0:
            self.fail(f"field {key!r} must not be negative")
        return s


def _identity(f: _Fields) -> tuple[str, str]:
    """No unknown field; ``name`` and ``url`` given; ``(name, subject)``, both folder names."""
    unknown = sorted(set(f.entry) - VIDEO_FIELDS)
    if unknown:
        f.fail(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(VIDEO_FIELDS))})")
    for key in ("name", "url"):
        if key not in f:
            f.fail(f"missing field {key!r}")
        if not isinstance(f[key], str) or not f[key].strip():
            f.fail(f"field {key!r} must be a non-empty string")
        if any(ord(ch) < 32 for ch in f[key]):
            f.fail(f"field {key!r} holds a control character")
    name = f["name"].strip()
    if not _SAFE_NAME.match(name):
        f.fail("field 'name' may hold only letters, digits, '.', '_' and '-'")
    subject = f.get("subject", name)
    if not isinstance(subject, str) or not _SAFE_NAME.match(subject):
        f.fail("field 'subject' must be a folder name (letters, digits, '.', '_', '-')")
    return name, subject


def _start_age(f: _Fields) -> int:
    """The first photo's age: ``start_age``, or ``first_photo_date - birth_date``."""
    if "start_age" in f:
        if "first_photo_date" in f:
            f.fail("give either 'start_age' or 'birth_date' + 'first_photo_date', not both")
        return f.age("start_age")
    if "first_photo_date" not in f and "birth_date" not in f:
        f.fail("missing field 'start_age' (or 'birth_date' + 'first_photo_date')")
    for key in ("birth_date", "first_photo_date"):
        if key not in f:
            f.fail(f"missing field {key!r} (the first photo's age is first_photo_date - birth_date)")
    start = (f.date("first_photo_date") - f.date("birth_date")).days
    if start < 0:
        f.fail("'first_photo_date' is before 'birth_date'")
    if start > MAX_AGE_DAYS:
        f.fail(f"'first_photo_date' is over {MAX_AGE_DAYS / DAYS_PER_YEAR:.0f} years after 'birth_date'")
    return start


def _age_step(f: _Fields, start: int) -> tuple[float | None, int | None]:
    """How ages advance: ``(days_per_photo, None)`` or ``(None, last photo's age)`` (from
    ``end_age`` or ``last_photo_date``), exactly one of them given."""
    given = [k for k in ("days_per_photo", "end_age", "last_photo_date") if k in f]
    if not given:
        f.fail("missing field 'days_per_photo' (or 'end_age')")
    if len(given) > 1:
        f.fail(f"give only one of 'days_per_photo', 'end_age', 'last_photo_date' (got {', '.join(given)})")
    if given[0] == "days_per_photo":
        return _days_per_photo(f), None
    if given[0] == "end_age":
        end = f.age("end_age")
    else:
        if "birth_date" not in f:
            f.fail("missing field 'birth_date' (needed with 'last_photo_date')")
        end = f.days_since_birth("last_photo_date")
    if end <= start:
        f.fail(f"the last photo's age ({end} days) is not after the first photo's ({start} days)")
    return None, end


def _days_per_photo(f: _Fields) -> float:
    """``days_per_photo``: a positive number of days (``1.5`` or ``"1d"``), at most 200 years."""
    value = f["days_per_photo"]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        f.fail(f"field 'days_per_photo' must be a number of days, got {_short(value)}")
    if isinstance(value, str):
        try:
            value = parse_age(value)
        except (ValueError, OverflowError) as exc:
            f.fail(f"field 'days_per_photo': {str(exc)[:80]}")
    days = float(value)
    if not days > 0:
        f.fail(f"field 'days_per_photo' must be positive, got {value!r}")
    if not days <= MAX_AGE_DAYS:    # also inf
        f.fail(f"field 'days_per_photo' must be at most {MAX_AGE_DAYS} days, got {value!r}")
    return days


def _time_range(f: _Fields) -> tuple[float | None, float | None]:
    """``(start_time, end_time)`` in seconds (None where not given); the end after the start."""
    start_time, end_time = f.seconds("start_time"), f.seconds("end_time")
    if start_time is not None and end_time is not None and end_time <= start_time:
        f.fail("'end_time' is not after 'start_time'")
    return start_time, end_time


def _photo_choices(f: _Fields) -> dict:
    """The fields that choose photos and how they are aligned: ``decimate``, ``exclude``,
    ``stabilise``, the de-dup settings ``cutoff`` and ``tolerance`` (only when given), ``check``
    (``notes`` is only checked)."""
    decimate = f.get("decimate", 1)
    if isinstance(decimate, bool) or not isinstance(decimate, int) or decimate < 1:
        f.fail(f"field 'decimate' must be a whole number >= 1, got {_short(decimate)}")
    exclude = _exclude(f)
    stabilise = f.get("stabilise", True)
    if not isinstance(stabilise, bool):
        f.fail(f"field 'stabilise' must be true or false, got {_short(stabilise)}")
    choices = {"decimate": decimate, "exclude": exclude, "stabilise": stabilise}
    for key, lo, hi in (("cutoff", 0.0, 1.0), ("tolerance", 0.0, 255.0)):
        value = f.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo < value < hi:
                f.fail(f"field {key!r} must be a number between {lo:g} and {hi:g}, got {_short(value)}")
            choices[key] = float(value)
    check = f.get("check", [])
    if not isinstance(check, list) or not all(isinstance(c, str) for c in check):
        f.fail("field 'check' must be a list of field names")
    if not isinstance(f.get("notes", ""), str):
        f.fail("field 'notes' must be a string")
    return {**choices, "check": tuple(check)}


def _exclude(f: _Fields) -> PhotoNumbers:
    """``exclude = [3, 7, "10-12"]`` -> ranges ``(3, 3), (7, 7), (10, 12)``, never expanded."""
    value = f.get("exclude", [])
    if not isinstance(value, list):
        f.fail("field 'exclude' must be a list of photo numbers, e.g. [3, 7, \"10-12\"]")
    ranges = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            ranges.append((item, item))
            continue
        m = _RANGE.match(item) if isinstance(item, str) else None
        if not m or int(m.group(2)) < int(m.group(1)):
            f.fail(f"field 'exclude': not a photo number or range: {_short(item)}")
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi - lo + 1 > MAX_EXCLUDE_RANGE:
            f.fail(f"field 'exclude': range {item!r} spans {hi - lo + 1} photos (at most {MAX_EXCLUDE_RANGE:,})")
        ranges.append((lo, hi))
    return PhotoNumbers.from_ranges(ranges)


def _parse_seconds(value) -> float:
    """``12.5`` or ``"1:02.5"`` -> seconds; ValueError for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return float(value)
    s = 0.0
    for part in value.strip().split(":"):
        if not re.fullmatch(r"\s*[0-9]*\.?[0-9]+\s*", part):
            raise ValueError(value)
        s = s * 60 + float(part)
    return s


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
