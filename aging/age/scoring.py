"""``aging age --score``: is each generated face still the person of the photo, and how old does it look?

A frame hook (:data:`aging.age.pipeline.FrameHook`) built on :class:`aging.score.faces.FaceScorer`:
the input photo's aligned face is described once; every generated face gets its identity
distance to it (dlib's 128-D descriptor; under :data:`~aging.score.faces.SAME_PERSON`, 0.6, reads
as the same person) and, with the optional estimator (``aging[eval]``), its apparent age beside
the frame's target age. A generated face in which no face is found counts as a failure.
"""

from __future__ import annotations

import numpy as np

from aging.ages import DAYS_PER_YEAR


class PhotoIdentity:
    """Per-frame identity and apparent age against the input photo; :meth:`summary` for the sidecar."""

    def __init__(self, scorer=None, threshold: float | None = None):
        from aging.score.faces import SAME_PERSON, FaceScorer

        self.scorer = scorer if scorer is not None else FaceScorer()
        self.threshold = SAME_PERSON if threshold is None else float(threshold)
        self.source = None  # FaceScore of the aligned input face, set on the first frame
        self.rows: list[dict] = []

    def __call__(self, frame) -> dict:
        from aging.score.faces import distance

        if self.source is None:
            self.source = self.scorer.analyse(frame.real)
        got = self.scorer.analyse(frame.face)
        d = distance(got.descriptor, self.source.descriptor)
        row = {"face_found": got.found, "identity_distance": None if d is None else round(d, 4),
               "same_person": None if d is None else bool(d < self.threshold),
               "age_target_years": round(frame.age_days / DAYS_PER_YEAR, 2),
               "age_generated_years": None if got.age_years is None else round(float(got.age_years), 2)}
        self.rows.append(row)
        return row

    def summary(self) -> dict:
        """Face rate, same-person rate (a frame without a face counts as not the same person),
        mean identity distance and the apparent-age error against the target ages."""
        n = len(self.rows)
        dists = [r["identity_distance"] for r in self.rows if r["identity_distance"] is not None]
        errors = [abs(r["age_generated_years"] - r["age_target_years"]) for r in self.rows
                  if r["age_generated_years"] is not None]
        source_found = self.source is not None and self.source.found
        return {"frames": n, "threshold": self.threshold, "source_face_found": source_found,
                "source_age_years": None if not source_found or self.source.age_years is None
                else round(float(self.source.age_years), 2),
                "face_rate": sum(r["face_found"] for r in self.rows) / n if n else None,
                "same_person_rate": sum(bool(r["same_person"]) for r in self.rows) / n if n else None,
                "mean_identity_distance": float(np.mean(dists)) if dists else None,
                "age_mae_generated": float(np.mean(errors)) if errors else None}
