"""Ages: integer days inside the code, years only in labels.

Parsers accept ``7300`` (days), ``7300d``, ``20y`` or ``20.5y`` (years of 365.25 days), and ranges
``START:STOP:STEP`` (inclusive of STOP when it falls on the grid), e.g. ``20y:60y:1y``.
"""

from __future__ import annotations

import math
import re

import numpy as np

DAYS_PER_YEAR = 365.25
MAX_AGE_DAYS = int(200 * DAYS_PER_YEAR)  # no person is older; larger values are typing errors

_AGE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([dDyY]?)\s*$")


def parse_age(text: str | int | float) -> int:
    """Parse one age (``7300``, ``7300d``, ``20y``) into whole days (0 to 200 years)."""
    if isinstance(text, (int, np.integer)):
        return _checked(int(text), text)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise ValueError(f"not an age: {text!r}")
        return _checked(int(round(text)), text)
    m = _AGE_RE.match(str(text))
    if not m:
        raise ValueError(f"not an age: {text!r} (use days like 7300, or years like 20y)")
    value, unit = float(m.group(1)), m.group(2).lower()
    if not math.isfinite(value):
        raise ValueError(f"not an age: {text!r}")
    if unit == "y":
        return _checked(int(round(value * DAYS_PER_YEAR)), text)
    if unit in ("", "d"):
        if value != int(value):
            raise ValueError(f"not a whole number of days: {text!r}")
        return _checked(int(value), text)
    raise ValueError(f"not an age: {text!r}")  # pragma: no cover - regex guards this


def _checked(days: int, text) -> int:
    if days < 0:
        raise ValueError(f"not an age: {text!r} (negative)")
    if days > MAX_AGE_DAYS:
        raise ValueError(f"not an age: {text!r} is more than 200 years ({MAX_AGE_DAYS} days)")
    return days


def parse_age_range(text: str, max_count: int | None = None) -> np.ndarray:
    """Parse ``START:STOP:STEP`` (or a comma list ``20y,30y,40y``, or one age) into days.

    With ``max_count`` a range of more ages is refused (before anything is allocated).
    """
    text = str(text).strip()
    if "," in text:
        ages = [parse_age(t) for t in text.split(",") if t.strip()]
        if not ages:
            raise ValueError(f"not an age list: {text!r}")
        _check_count(len(ages), max_count, text)
        return np.array(ages, dtype=np.int64)
    parts = text.split(":")
    if len(parts) == 1:
        return np.array([parse_age(parts[0])], dtype=np.int64)
    if len(parts) != 3:
        raise ValueError(f"not an age range: {text!r} (use START:STOP:STEP, e.g. 20y:60y:1y)")
    start, stop, step = (parse_age(p) for p in parts)
    if step <= 0:
        raise ValueError(f"age range step must be positive: {text!r}")
    if stop < start:
        raise ValueError(f"age range stops before it starts: {text!r}")
    _check_count((stop - start) // step + 1, max_count, text)
    return np.arange(start, stop + 1, step, dtype=np.int64)


def _check_count(n: int, max_count: int | None, text: str) -> None:
    if max_count is not None and n > max_count:
        raise ValueError(f"{text!r} gives {n} ages; at most {max_count} are allowed (use a larger step)")


def format_age(days: int) -> str:
    """Human label: ``23.4 y``."""
    return f"{float(days) / DAYS_PER_YEAR:.1f} y"
