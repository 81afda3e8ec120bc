"""Faces: dlib detection and 68 landmarks, checks with reasons, FFHQ alignment, stabilisation.

The FFHQ alignment (the crop that StyleGAN's FFHQ generator was trained on) is defined by four
key points: the centres of the two eyes (means of landmarks 36-41 and 42-47) and the mouth corners
(48, 54). With ``e2e`` the vector from the left to the right eye and ``e2m`` the vector from the
eyes' midpoint to the mouth's midpoint, the crop is the square with centre
``eye_mid + 0.1 * e2m``, half-axis ``x`` along ``e2e - rot90(e2m)`` of length
``max(2.0 * |e2e|, 1.8 * |e2m|)``, and ``y = rot90(x)``. The square is cut out of the frame
(shrunk first when it is much larger than the output), areas outside the frame are filled with a
reflection that fades into a blurred copy and then the frame's median colour, and the square is
resampled to ``size x size`` pixels.

Conventions: pixel centres at integer coordinates, x right, y down; images are BGR uint8 (OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from aging.score.faces import FaceModelError, face_detector, landmark_predictor

# face checks: statuses written to the manifest
NO_FACE = "no_face"
MULTI_FACE = "multi_face"
FACE_TOO_SMALL = "face_too_small"
LANDMARKS_IMPLAUSIBLE = "landmarks_implausible"
FACE_CROPPED = "face_cropped"
FAULTS = (MULTI_FACE, FACE_TOO_SMALL, LANDMARKS_IMPLAUSIBLE, FACE_CROPPED)

LEFT_EYE = slice(36, 42)     # left in the image
RIGHT_EYE = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT, NOSE_TIP = 48, 54, 30
INNER = np.arange(17, 68)    # brows, nose, eyes, mouth: the points stabilisation fits (not the jaw)


# dlib's models are found and loaded once per process by the shared face module (scoring uses the
# same detector and landmark predictor); its error is fetch's models error.
ModelsError = FaceModelError


def load_models():
    """``(detector, predictor)``: dlib's HOG face detector and 68-landmark shape predictor (cached)."""
    return face_detector(), landmark_predictor()


@dataclass
class Face:
    """A detected face: box ``(left, top, right, bottom)`` and detector score, in frame pixels."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None   # [68, 2] float64, frame pixels

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


def detect_faces(frame: np.ndarray, *, detect_size: int = 640, landmarks: bool = True,
                 refine: bool = True) -> list[Face]:
    """Faces in a BGR frame, largest first; landmarks for the largest one.

    Detection runs on a copy whose longer side is at most ``detect_size`` (HOG is slow on big
    frames; photo-a-day faces are large), with one upsampling retry when nothing is found.
    Landmarks are predicted on the full-resolution frame, then refined on an upright view of the
    face (:func:`refine_landmarks`).
    """
    detector, _ = load_models()
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    scale = min(1.0, detect_size / max(h, w))
    small = rgb if scale == 1.0 else cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    rects, scores, _ = detector.run(small, 0, 0.0)
    if len(rects) == 0:
        rects, scores, _ = detector.run(small, 1, 0.0)
    faces = [Face(box=(r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale),
                  score=float(s)) for r, s in zip(rects, scores)]
    faces.sort(key=lambda f: -f.width)
    if landmarks and faces:
        add_landmarks(rgb, faces[0], refine=refine)
    return faces


def add_landmarks(rgb: np.ndarray, face: Face, *, refine: bool = True) -> Face:
    """Set ``face.landmarks`` (``[68, 2]``, frame pixels) from an RGB frame; refined on an upright
    view unless ``refine`` is false (:func:`refine_landmarks`). Returns ``face``."""
    import dlib

    _, predictor = load_models()
    l, t, r, b = (int(round(v)) for v in face.box)
    shape = predictor(rgb, dlib.rectangle(l, t, r - 1, b - 1))
    face.landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    if refine:
        face.landmarks = refine_landmarks(rgb, face)
    return face


# box jitters (dx, dy as a fraction of the box, scale) of the refinement
_JITTER = ((0, 0, 1), (0.04, 0, 1), (-0.04, 0, 1), (0, 0.04, 1), (0, -0.04, 1), (0, 0, 0.94), (0, 0, 1.06))


def refine_landmarks(rgb: np.ndarray, face: Face) -> np.ndarray:
    """Landmarks predicted again on an upright, normalised view of the face.

    dlib's predictor depends on the face's rotation, its size in pixels and the exact detection
    box. The face is turned upright (eyes level, from the first landmarks) and resampled so its
    box is 200-400 px wide, the predictor runs on a few slightly shifted and scaled boxes, and the
    point-wise median is mapped back to the frame. This makes the landmarks (nearly) invariant to
    how the photo was rotated, scaled or shifted in the video.
    """
    import dlib

    _, predictor = load_models()
    kp = keypoints(face.landmarks)
    e2e = kp[1] - kp[0]
    angle = float(np.degrees(np.arctan2(e2e[1], e2e[0])))
    l, t, r, b = face.box
    cx, cy, w = (l + r) / 2, (t + b) / 2, max(r - l, 1.0)
    w0 = float(np.clip(w, 200, 400))
    c = int(2 * w0)
    m = cv2.getRotationMatrix2D((cx, cy), angle, w0 / w)
    m[:, 2] += [c / 2 - cx, c / 2 - cy]
    view = cv2.warpAffine(rgb, m, (c, c), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    runs = []
    for dx, dy, s in _JITTER:
        half = w0 * s / 2
        x0, y0 = c / 2 + dx * w0 - half, c / 2 + dy * w0 - half
        rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x0 + 2 * half)) - 1,
                              int(round(y0 + 2 * half)) - 1)
        runs.append([[p.x, p.y] for p in predictor(view, rect).parts()])
    pts = np.median(np.asarray(runs, dtype=np.float64), axis=0)
    return apply(cv2.invertAffineTransform(m), pts)


# ---------------------------------------------------------------------------------------------
# checks


def check_faces(faces: list[Face], frame_shape: tuple[int, ...], *, min_face_px: float = 64.0,
                similar: float = 0.6) -> tuple[str, str]:
    """``(status, reason)`` for one frame's detections: ``ok`` or a fault from :data:`FAULTS`
    (``no_face`` when there is none). Checks run in the order no face, several faces of similar
    size, face too small, face cut by the frame edge, implausible landmarks."""
    if not faces:
        return NO_FACE, "no face found"
    big = faces[0]
    similar_ones = [f for f in faces[1:] if f.width >= similar * big.width]
    if similar_ones:
        sizes = ", ".join(f"{f.width:.0f}" for f in [big, *similar_ones])
        return MULTI_FACE, f"{1 + len(similar_ones)} faces of similar size ({sizes} px)"
    if big.width < min_face_px:
        return FACE_TOO_SMALL, f"face {big.width:.0f} px wide (minimum {min_face_px:.0f} px)"
    cropped = face_cropped(big, frame_shape)
    if cropped:
        return FACE_CROPPED, cropped
    bad = implausible_landmarks(big.landmarks, big.box)
    if bad:
        return LANDMARKS_IMPLAUSIBLE, bad
    return "ok", ""


def face_cropped(face: Face, frame_shape: tuple[int, ...]) -> str:
    """Why the face is cut by the frame edge ('' when it is not): a landmark on or beyond the edge,
    or a face box that reaches more than 10 % of its width beyond it."""
    h, w = frame_shape[:2]
    margin = max(2.0, 0.01 * face.width)
    sides = []
    if face.landmarks is not None:
        x, y = face.landmarks[:, 0], face.landmarks[:, 1]
        for name, hit in (("left", x.min() < margin), ("top", y.min() < margin),
                          ("right", x.max() > w - 1 - margin), ("bottom", y.max() > h - 1 - margin)):
            if hit:
                sides.append(name)
    over = 0.1 * face.width
    l, t, r, b = face.box
    for name, hit in (("left", l < -over), ("top", t < -over), ("right", r > w + over), ("bottom", b > h + over)):
        if hit and name not in sides:
            sides.append(name)
    return f"face cut by the frame edge ({', '.join(sides)})" if sides else ""


def implausible_landmarks(points: np.ndarray | None, box) -> str:
    """Why a 68-point landmark set does not look like a frontal face ('' when it does)."""
    if points is None or points.shape != (68, 2) or not np.all(np.isfinite(points)):
        return "no landmarks"
    el, er, ml, mr = keypoints(points)
    e2e = er - el
    d = float(np.hypot(*e2e))
    bw = max(1.0, float(box[2] - box[0]))
    if not 0.2 <= d / bw <= 0.8:
        return f"eye distance {d / bw:.2f} x the face width (expected 0.2-0.8)"
    xh = e2e / d
    yh = np.array([-xh[1], xh[0]])
    roll = float(np.degrees(np.arctan2(e2e[1], e2e[0])))
    if abs(roll) > 45:
        return f"eyes tilted by {roll:.0f} degrees (expected within 45)"
    eye_mid, mouth_mid = (el + er) / 2, (ml + mr) / 2
    down = float((mouth_mid - eye_mid) @ yh) / d
    if not 0.6 <= down <= 1.8:
        return f"mouth {down:.2f} eye distances below the eyes (expected 0.6-1.8)"
    nose = float((points[NOSE_TIP] - eye_mid) @ yh) / d
    if not 0.1 * down <= nose <= 0.95 * down:
        return "nose tip not between the eyes and the mouth"
    across = float((points[NOSE_TIP] - el) @ xh) / d
    if not -0.25 <= across <= 1.25:
        return "nose tip far outside the eyes (face seen from the side)"
    mw = float(np.hypot(*(mr - ml))) / d
    if not 0.35 <= mw <= 1.4:
        return f"mouth {mw:.2f} eye distances wide (expected 0.35-1.4)"
    return ""


# ---------------------------------------------------------------------------------------------
# FFHQ crop


def keypoints(points: np.ndarray) -> np.ndarray:
    """``[4, 2]``: left eye centre, right eye centre, left and right mouth corner."""
    return np.stack([points[LEFT_EYE].mean(0), points[RIGHT_EYE].mean(0), points[MOUTH_LEFT], points[MOUTH_RIGHT]])


@dataclass(frozen=True)
class Quad:
    """The oriented square of an FFHQ crop: ``center`` and half-axis ``x`` (frame pixels)."""

    center: np.ndarray   # [2]
    x: np.ndarray        # [2]; y = rot90(x) = (-x[1], x[0]) points down the face

    @property
    def size(self) -> float:
        return 2.0 * float(np.hypot(*self.x))

    def corners(self) -> np.ndarray:
        """``[4, 2]``: top-left, bottom-left, bottom-right, top-right."""
        c, x = self.center, self.x
        y = np.array([-x[1], x[0]])
        return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])

    def as_list(self) -> list[float]:
        return [float(v) for v in (*self.center, *self.x)]


def ffhq_quad(kp: np.ndarray) -> Quad:
    """The FFHQ square for key points ``[4, 2]`` (eyes, mouth corners)."""
    el, er, ml, mr = np.asarray(kp, dtype=np.float64)
    eye_mid = (el + er) / 2
    e2e = er - el
    e2m = (ml + mr) / 2 - eye_mid
    x = e2e - np.array([-e2m[1], e2m[0]])
    x = x / np.hypot(*x) * max(2.0 * np.hypot(*e2e), 1.8 * np.hypot(*e2m))
    return Quad(center=eye_mid + 0.1 * e2m, x=x)


def alignment_matrix(quad: Quad, size: int) -> np.ndarray:
    """``[2, 3]`` similarity from frame pixels to output pixels: the quad's edges land on the
    output's edges (its corners at -0.5 and ``size - 0.5``)."""
    half = np.hypot(*quad.x)
    xh = quad.x / half
    yh = np.array([-xh[1], xh[0]])
    s = size / (2.0 * half)
    rot = np.stack([xh, yh]) * s                       # rows: output x, output y
    offset = (size - 1) / 2.0 - rot @ quad.center
    return np.hstack([rot, offset[:, None]])


def align_face(frame: np.ndarray, quad: Quad, size: int = 1024) -> np.ndarray:
    """Cut the FFHQ square ``quad`` out of a BGR frame as a ``[size, size, 3]`` uint8 image."""
    img = frame
    qsize = quad.size
    shrink = int(np.floor(qsize / size * 0.5))
    corners = quad.corners()
    lo = np.floor(corners.min(0)).astype(int)
    hi = np.ceil(corners.max(0)).astype(int) + 1
    border = max(int(round(qsize * 0.1)), 3)
    # only the part of the frame the crop can see (+ border) is processed
    x0, y0 = max(lo[0] - border, 0), max(lo[1] - border, 0)
    x1, y1 = min(hi[0] + border, img.shape[1]), min(hi[1] + border, img.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError("the face square lies outside the frame")
    img = img[y0:y1, x0:x1]
    offset = np.array([x0, y0], dtype=np.float64)
    scale = 1.0
    if shrink > 1:
        h, w = img.shape[:2]
        img = cv2.resize(img, (max(1, round(w / shrink)), max(1, round(h / shrink))), interpolation=cv2.INTER_AREA)
        scale = img.shape[1] / w
    # pad with a blurred reflection where the square leaves the frame
    lo_w = (lo - offset) * scale
    hi_w = (hi - offset) * scale
    h, w = img.shape[:2]
    bw = border * scale
    pad = [int(max(np.ceil(-lo_w[0] + bw), 0)), int(max(np.ceil(-lo_w[1] + bw), 0)),
           int(max(np.ceil(hi_w[0] - w + bw), 0)), int(max(np.ceil(hi_w[1] - h + bw), 0))]   # l, t, r, b
    if max(pad) > 0:
        img = _pad_blurred(img, pad, qsize * scale)
        offset = offset - np.array([pad[0], pad[1]]) / scale
    # frame -> working image: p_work = (p - offset) * scale; then the quad's similarity
    work_quad = Quad(center=(quad.center - offset) * scale, x=quad.x * scale)
    m = alignment_matrix(work_quad, size)
    if work_quad.size > size * 1.05:
        # downscaling by up to 2x: resample at the quad's own resolution, then area-average
        inter = int(np.ceil(work_quad.size))
        big = cv2.warpAffine(img, alignment_matrix(work_quad, inter), (inter, inter), flags=cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_REFLECT)
        out = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    else:
        out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return out


def _pad_blurred(img: np.ndarray, pad: list[int], qsize: float) -> np.ndarray:
    """Reflect-pad ``img`` by ``pad`` (left, top, right, bottom) and fade the new area into a
    blurred copy and then into the image's median colour, more so further from the frame."""
    l, t, r, b = pad
    h, w = img.shape[:2]
    # cv2's reflection needs pads narrower than the image; wider ones are tiled by index
    if max(l, r) < w and max(t, b) < h:
        out = cv2.copyMakeBorder(img, t, b, l, r, cv2.BORDER_REFLECT_101)
    else:
        out = _reflect_large(img, pad)
    f = out.astype(np.float32)
    ys = np.arange(out.shape[0], dtype=np.float32)
    xs = np.arange(out.shape[1], dtype=np.float32)
    # 0 inside the frame, rising to 1 at the outer edge of each padded side
    ramp_x = np.maximum(np.clip((l - xs) / max(l, 1), 0, 1), np.clip((xs - (l + w - 1)) / max(r, 1), 0, 1))
    ramp_y = np.maximum(np.clip((t - ys) / max(t, 1), 0, 1), np.clip((ys - (t + h - 1)) / max(b, 1), 0, 1))
    mask = np.maximum(ramp_x[None, :], ramp_y[:, None])[..., None]
    sigma = max(qsize * 0.02, 0.5)
    blurred = cv2.GaussianBlur(f, (0, 0), sigmaX=sigma, sigmaY=sigma)
    f += (blurred - f) * np.clip(mask * 3.0, 0.0, 1.0)
    median = np.median(img.reshape(-1, img.shape[2]), axis=0).astype(np.float32)
    f += (median - f) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def _reflect_large(img: np.ndarray, pad: list[int]) -> np.ndarray:
    """Reflection padding wider than the image (mirrored tiles, like numpy's ``reflect``)."""
    l, t, r, b = pad
    h, w = img.shape[:2]
    ys = _reflect_index(np.arange(-t, h + b), h)
    xs = _reflect_index(np.arange(-l, w + r), w)
    return img[ys][:, xs]


def _reflect_index(i: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.mod(i, period)
    return np.where(i < n, i, period - i)


# ---------------------------------------------------------------------------------------------
# stabilisation over a sequence

# groups of landmarks that fail together (a mis-fitted eye, an open mouth, ...)
GROUPS = {"brows": np.arange(17, 27), "nose": np.arange(27, 36), "eyes": np.arange(36, 48), "mouth": np.arange(48, 68)}


def similarity_fit(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares similarity ``[2, 3]`` (rotation, uniform scale, shift) mapping
    ``src [N, 2]`` onto ``dst [N, 2]``."""
    wts = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = wts.sum()
    if total <= 0:
        raise ValueError("no weight left to fit a similarity")
    ms = (wts[:, None] * src).sum(0) / total
    md = (wts[:, None] * dst).sum(0) / total
    s0, d0 = src - ms, dst - md
    # complex form: d = a * s with a = sum w conj(s) d / sum w |s|^2
    sc = s0[:, 0] + 1j * s0[:, 1]
    dc = d0[:, 0] + 1j * d0[:, 1]
    a = (wts * np.conj(sc) * dc).sum() / max((wts * np.abs(sc) ** 2).sum(), 1e-12)
    rot = np.array([[a.real, -a.imag], [a.imag, a.real]])
    return np.hstack([rot, (md - rot @ ms)[:, None]])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a ``[2, 3]`` affine map to points ``[N, 2]``."""
    return pts @ m[:, :2].T + m[:, 2]


def _subsets() -> list[np.ndarray]:
    """Landmark subsets the robust fit starts from: all inner points, each group left out, and
    each pair of groups."""
    names = list(GROUPS)
    subsets = [INNER]
    subsets += [np.concatenate([GROUPS[g] for g in names if g != out]) for out in names]
    subsets += [np.concatenate([GROUPS[a], GROUPS[b]]) for i, a in enumerate(names) for b in names[i + 1:]]
    return subsets


_SUBSETS = _subsets()


def robust_similarity_fit(src: np.ndarray, dst: np.ndarray, *, min_sigma: float,
                          iterations: int = 8, c: float = 4.0) -> np.ndarray:
    """Similarity mapping 68-point set ``src`` onto ``dst``, fitted on the inner points so that a
    group of wrong landmarks has no say: the start is the least-squares fit on the subset of
    landmark groups (all, all but one, pairs) with the smallest median residual; Tukey-weighted
    refits follow, with the residual scale from the median (at least ``min_sigma``)."""
    best, best_med = None, np.inf
    for idx in _SUBSETS:
        m = similarity_fit(src[idx], dst[idx])
        med = float(np.median(np.hypot(*(apply(m, src[INNER]) - dst[INNER]).T)))
        if med < best_med:
            best, best_med = m, med
    m = best
    for _ in range(iterations):
        res = np.hypot(*(apply(m, src[INNER]) - dst[INNER]).T)
        sigma = max(1.4826 * float(np.median(res)), min_sigma)
        u = res / (c * sigma)
        wts = np.where(u < 1, (1 - u ** 2) ** 2, 0.0)
        if wts.sum() < 4:
            break
        m = similarity_fit(src[INNER], dst[INNER], wts)
    return m


@dataclass
class Stabilised:
    """Result of :func:`stabilise`, per photo: key points, how far they moved, and how many inner
    landmarks disagreed with the neighbouring photos."""

    keypoints: list[np.ndarray]     # [4, 2] per photo
    shift: np.ndarray               # [N] largest key-point move (px)
    outliers: np.ndarray            # [N] number of inner landmarks replaced (fully or partly)
    sigma: float                    # landmark noise level of the sequence (canonical units)


def stabilise(shapes: list[np.ndarray], *, window: int = 7, keep: float = 2.5, replace: float = 5.0) -> Stabilised:
    """Stabilise the FFHQ key points of a sequence of photos of one person (``[68, 2]`` each).

    A time-lapse shows the same face in the same set-up, so the *shape* of the face (where eyes
    and mouth sit relative to brows and nose) changes slowly, while dlib's landmark sets wobble by
    a few pixels and sometimes by tens. For each photo:

    1. all sets are brought into one canonical frame (generalised Procrustes on the inner points);
    2. its reference shape is the point-wise median of the canonical sets of the photos within
       ``window`` positions (a set that is wrong on a few photos does not move the median);
    3. the reference is fitted onto the photo's own landmarks with a robust similarity (a group of
       wrong points has no say), which predicts every landmark from the rest of the face;
    4. with ``sigma`` the sequence's typical distance between landmarks and their prediction, a
       landmark within ``keep * sigma`` of its prediction stays as dlib found it, one beyond
       ``replace * sigma`` is replaced by the prediction, and one in between is blended;
    5. the key points (eye centres, mouth corners) are read off the corrected set.

    Position, size and rotation of each face stay its own (subjects move between photos); only
    landmarks that disagree with the face's own shape in neighbouring photos are corrected. With a
    single photo nothing changes.
    """
    n = len(shapes)
    pts = [np.asarray(s, dtype=np.float64) for s in shapes]
    own = [keypoints(p) for p in pts]
    if n < 2:
        return Stabilised(own, np.zeros(n), np.zeros(n, dtype=int), 0.0)
    # 1. canonical frame: iterate towards the median shape
    template = _normalise(pts[0])
    canon = [None] * n
    for _ in range(3):
        for i, p in enumerate(pts):
            canon[i] = apply(robust_similarity_fit(p, template, min_sigma=1e-3), p)
        template = _normalise(np.median(np.stack(canon), axis=0))
    stack = np.stack(canon)                                      # [N, 68, 2]
    # 2.-3. predictions and their distance to dlib's landmarks, in canonical units
    fitted, scale, res = [], np.zeros(n), []
    for i, p in enumerate(pts):
        lo, hi = max(0, i - window), min(n, i + window + 1)
        ref = np.median(stack[lo:hi], axis=0)                    # [68, 2]
        eye = float(np.hypot(*(own[i][1] - own[i][0])))
        m = robust_similarity_fit(ref, p, min_sigma=max(0.005 * eye, 0.25))
        fitted.append(apply(m, ref))
        scale[i] = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        res.append(np.hypot(*(p - fitted[i]).T) / scale[i])
    sigma = max(1.4826 * float(np.median(np.concatenate([r[INNER] for r in res]))), 1e-4)
    # 4.-5.
    out, shift, outliers = [], np.zeros(n), np.zeros(n, dtype=int)
    for i, p in enumerate(pts):
        w = np.clip((replace * sigma - res[i]) / ((replace - keep) * sigma), 0.0, 1.0)[:, None]   # 1 = keep
        corrected = w * p + (1 - w) * fitted[i]
        kp = keypoints(corrected)
        out.append(kp)
        shift[i] = float(np.max(np.hypot(*(kp - own[i]).T)))
        outliers[i] = int(np.sum(w[INNER, 0] < 1))
    return Stabilised(out, shift, outliers, sigma)


def _normalise(shape: np.ndarray) -> np.ndarray:
    """Centre the inner points on 0 and scale them to unit RMS radius."""
    c = shape[INNER].mean(0)
    r = np.sqrt(((shape[INNER] - c) ** 2).sum(1).mean())
    return (shape - c) / max(r, 1e-9)
