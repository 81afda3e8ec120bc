"""The photo: read it upright, find its faces, pick one, cut its FFHQ square.

Detection, landmarks and the crop are fetch's (:mod:`aging.fetch.align`): dlib's HOG detector,
68 landmarks refined on an upright view, and the FFHQ square of the eyes and mouth corners.
Images are RGB uint8 here; :mod:`aging.fetch.align` works in BGR (OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aging import io
from aging.age.options import AgeError


@dataclass
class PickedFace:
    """The chosen face: its number (1-based, from the left), how many faces the photo shows, its
    detection box and its FFHQ square (photo pixels)."""

    number: int
    count: int
    box: tuple[float, float, float, float]
    quad: object  # aging.fetch.align.Quad

    def record(self) -> dict:
        return {"face": self.number, "faces": self.count, "box": [round(float(v), 2) for v in self.box],
                "quad": self.quad.as_list()}


def read_photo(path: Path) -> np.ndarray:
    """The photo as RGB uint8 ``[H, W, 3]``, turned as its EXIF orientation says; a missing file
    or one that is not an image is one line naming it."""
    path = Path(path)
    if not path.exists():
        raise AgeError(f"{path}: no such photo")
    if path.is_dir():
        raise AgeError(f"{path}: a folder, not a photo")
    return io.read_image(path, upright=True)  # FileFormatError: one line naming the file


def pick_face(rgb: np.ndarray, number: int | None = None, *, where: str = "photo") -> PickedFace:
    """Find the faces of ``rgb`` and the FFHQ square of one: face ``number`` (1-based, counted
    from the left), or the largest. No face, or a number beyond the faces found, is one line."""
    import cv2

    from aging.fetch.align import add_landmarks, detect_faces, ffhq_quad, keypoints

    faces = detect_faces(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), landmarks=False)
    if not faces:
        raise AgeError(f"{where}: no face found")
    by_x = sorted(faces, key=lambda f: f.box[0] + f.box[2])
    if number is None:
        face = faces[0]  # detect_faces: largest first
    elif not 1 <= number <= len(faces):
        raise AgeError(f"--face {number}: {where} shows {len(faces)} face{'s' if len(faces) != 1 else ''} "
                       f"(numbered 1-{len(faces)} from the left)")
    else:
        face = by_x[number - 1]
    add_landmarks(rgb, face)
    return PickedFace(number=by_x.index(face) + 1, count=len(faces), box=tuple(face.box),
                      quad=ffhq_quad(keypoints(face.landmarks)))


def align(rgb: np.ndarray, face: PickedFace, size: int) -> np.ndarray:
    """The face's FFHQ square, ``[size, size, 3]`` RGB uint8 (fetch's crop and padding)."""
    import cv2

    from aging.fetch.align import align_face

    try:
        bgr = align_face(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), face.quad, size)
    except ValueError as exc:
        raise AgeError(f"face {face.number}: cannot be aligned ({exc})") from None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
