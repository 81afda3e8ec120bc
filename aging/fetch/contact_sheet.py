"""``contact_sheet.jpg``: every kept face in one grid, labelled with its photo number and age, so a
person can spot what the automatic checks missed and list it under ``exclude``."""

from __future__ import annotations

import math

import cv2
import numpy as np

from aging.ages import DAYS_PER_YEAR


def thumbnail_size(n: int) -> int:
    """Thumbnail edge (px) for ``n`` faces: smaller for long videos so the sheet stays openable."""
    return 128 if n <= 1000 else 96 if n <= 2500 else 64


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def make_contact_sheet(faces: list[tuple[int, int, np.ndarray]], *, columns: int | None = None,
                       title: str = "") -> np.ndarray:
    """A BGR grid of ``(photo, age_days, image)`` thumbnails (square, any size), labelled
    ``#photo  age_days d  years y``."""
    n = len(faces)
    size = thumbnail_size(n)
    cols = columns or max(1, min(n, int(round(math.sqrt(n * 1.6))), 24))
    rows = max(1, math.ceil(n / cols))
    label_h = 16 if size >= 96 else 12
    font = 0.36 if size >= 96 else 0.28
    head = 28 if title else 0
    pad = 4
    sheet = np.full((head + rows * (size + label_h + pad) + pad, cols * (size + pad) + pad, 3), 24, np.uint8)
    if title:
        cv2.putText(sheet, title, (pad + 2, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (235, 235, 235), 1, cv2.LINE_AA)
    for k, (photo, age, image) in enumerate(faces):
        r, c = divmod(k, cols)
        y = head + pad + r * (size + label_h + pad)
        x = pad + c * (size + pad)
        thumb = image if image.shape[:2] == (size, size) else thumbnail(image, size)
        sheet[y:y + size, x:x + size] = thumb
        text = f"#{photo} {age}d {age / DAYS_PER_YEAR:.1f}y"
        cv2.putText(sheet, text, (x + 1, y + size + label_h - 4), cv2.FONT_HERSHEY_SIMPLEX, font, (235, 235, 235), 1,
                    cv2.LINE_AA)
    return sheet
