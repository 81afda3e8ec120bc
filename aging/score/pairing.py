"""Generated faces paired with the real photo nearest in age: the rows of ``scores.csv`` and the
summary of ``scores.json``.

A generated image without a face is a failure that counts: it lowers ``face_rate`` and, having
no distance, is not "the same person" in ``same_person_rate``. A pair whose *real* photo shows no
face measures nothing about the generator and is left out of that rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aging.ages import DAYS_PER_YEAR
from aging.score.faces import FaceScore, distance

CSV_COLUMNS = ["age_days", "generated_file", "real_file", "real_age_days", "face_found", "identity_distance",
               "same_person", "source_distance", "age_real", "age_generated"]


@dataclass(frozen=True)
class Scored:
    """One image and what it shows."""

    age_days: int
    file: str  # as written in scores.csv (relative to its folder)
    face: FaceScore


def nearest_real(real_ages, ages) -> np.ndarray:
    """For each of ``ages``, the index of the nearest of the sorted ``real_ages`` (the younger one
    on a tie)."""
    real = np.asarray(real_ages, dtype=np.int64)
    query = np.asarray(ages, dtype=np.int64)
    right = np.clip(np.searchsorted(real, query), 0, len(real) - 1)
    left = np.clip(right - 1, 0, len(real) - 1)
    return np.where(np.abs(query - real[left]) <= np.abs(real[right] - query), left, right)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def score_rows(generated: list[Scored], paired: list[Scored], source: Scored, *,
               threshold: float) -> list[dict]:
    """One ``scores.csv`` row per generated image (``paired[k]``: the real photo of ``generated[k]``);
    None where a value could not be computed (no face)."""
    rows = []
    for gen, real in zip(generated, paired):
        d = distance(gen.face.descriptor, real.face.descriptor)
        rows.append({
            "age_days": gen.age_days, "generated_file": gen.file, "real_file": real.file,
            "real_age_days": real.age_days, "face_found": gen.face.found, "identity_distance": _rounded(d, 4),
            "same_person": None if d is None else d < threshold,
            "source_distance": _rounded(distance(gen.face.descriptor, source.face.descriptor), 4),
            "age_real": real.face.age_years, "age_generated": gen.face.age_years,
        })
    return rows


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return round(float(np.mean(vals)), 4) if vals else None


def summarise(rows: list[dict], paired: list[Scored], source: Scored, *, threshold: float) -> dict:
    """The ``scores.json`` summary of the rows: rates, mean distance, the age estimator's mean
    absolute error on the generated faces (against their target age) and on the real photos
    (against their own age: the estimator's yardstick)."""
    n = len(rows)
    measurable = [r for r, real in zip(rows, paired) if real.face.found]
    same = sum(bool(r["same_person"]) for r in measurable)
    return {
        "pairs": n,
        "face_rate": round(sum(r["face_found"] for r in rows) / n, 4) if n else None,
        "same_person_rate": round(same / len(measurable), 4) if measurable else None,
        "mean_identity_distance": _mean(r["identity_distance"] for r in rows),
        "mean_source_distance": _mean(r["source_distance"] for r in rows),
        "age_mae_generated": _mean(None if r["age_generated"] is None
                                   else abs(r["age_generated"] - r["age_days"] / DAYS_PER_YEAR) for r in rows),
        "age_mae_real": _mean(None if r["age_real"] is None
                              else abs(r["age_real"] - r["real_age_days"] / DAYS_PER_YEAR) for r in rows),
        "real_face_rate": round(len(measurable) / n, 4) if n else None,
        "threshold": threshold,
        "source": {"file": source.file, "age_days": source.age_days, "face_found": source.face.found},
    }
