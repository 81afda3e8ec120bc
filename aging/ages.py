"""Ages: integer days inside the code, years only in labels.

Parsers accept ``7300`` (days), ``7300d``, ``20y`` or ``20.5y`` (years of 365.25 days), and ranges
``START:STOP:STEP`` (inclusive of STOP when it falls on the grid), e.g. ``20y:60y:1y``.
"""

from __future__ import annotations

import re

import numpy as np

DAYS_PER_YEAR = 365.25

_AGE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([dDyY]?)\s*$")


def parse_age(text: str | int | float) -> int:
    """Parse one age (``7300``, ``7300d``, ``20y``) into whole days."""
    if isinstance(text, (int, np.integer)):
        return int(text)
    if isinstance(text, float):
        return int(round(text))
    m = _AGE_RE.match(str(text))
    if not m:
        raise ValueError(f"not an age: {text!r} (use days like 7300, or years like 20y)")
    value, unit = float(m.group(1)), m.group(2).lower()
    if unit == "y":
        return int(round(value * DAYS_PER_YEAR))
    if unit in ("", "d"):
        if value != int(value):
            raise ValueError(f"not a whole number of days: {text!r}")
        return int(value)
    raise ValueError(f"not an age: {text!r}")  # pragma: no cover - regex guards this


def parse_age_range(text: str) -> np.ndarray:
    """Parse ``START:STOP:STEP`` (or a comma list ``20y,30y,40y``, or one age) into days."""
    text = str(text).strip()
    if "," in text:
        return np.array([parse_age(t) for t in text.split(",") if t.strip()], dtype=np.int64)
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
    return np.arange(start, stop + 1, step, dtype=np.int64)


def years(days) -> np.ndarray | float:
    """Days -> years (for labels and charts only)."""
    return np.asarray(days, dtype=np.float64) / DAYS_PER_YEAR


def format_age(days: int) -> str:
    """Human label: ``23.4 y``."""
    return f"{float(days) / DAYS_PER_YEAR:.1f} y"
