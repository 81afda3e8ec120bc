"""Face alignment: FFHQ geometry, invariance to how a photo sits in the frame, face checks with
reasons, and stabilisation over a sequence (on the fixture's real faces where dlib is needed)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from aging.fetch.align import (FACE_CROPPED, FACE_TOO_SMALL, LANDMARKS_IMPLAUSIBLE, MULTI_FACE, NO_FACE, Face, align_face,
                               alignment_matrix, apply, check_faces, detect_faces, ffhq_quad, keypoints, stabilise)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "faces").is_dir(), reason="../shared/fixtures absent")
BACKDROP = (26, 15, 14)
S = 256      # aligned size in these tests; pixel errors are reported at 1024 px (x 4)
CANVAS = 512


def similarity(scale, angle_deg, shift):
    a = np.radians(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, np.asarray(shift, float)[:, None]])


def compose(m2, m1):
    """m2 after m1 (2x3 affine maps)."""
    return (np.vstack([m2, [0, 0, 1]]) @ np.vstack([m1, [0, 0, 1]]))[:2]


# ---------------------------------------------------------------------------------------------
# geometry (no dlib)

KP = np.array([[380.0, 480.0], [640.0, 480.0], [410.0, 700.0], [610.0, 700.0]])


def test_ffhq_quad_of_a_level_face():
    q = ffhq_quad(KP)
    # eye midpoint (510, 480); eye-to-mouth (0, 220): centre 22 px below, half-size max(2 x 260, 1.8 x 220)
    assert np.allclose(q.center, [510, 502]) and np.allclose(q.x, [520, 0]) and q.size == 1040
    assert np.allclose(q.corners(), [[-10, -18], [-10, 1022], [1030, 1022], [1030, -18]])
    m = alignment_matrix(q, 1024)
    assert np.allclose(apply(m, q.corners()), [[-0.5, -0.5], [-0.5, 1023.5], [1023.5, 1023.5], [1023.5, -0.5]])


def test_alignment_is_equivariant_to_similarities():
    rng = np.random.default_rng(0)
    ref = apply(alignment_matrix(ffhq_quad(KP), S), KP)
    for _ in range(20):
        t = similarity(rng.uniform(0.3, 3), rng.uniform(-180, 180), rng.uniform(-500, 500, 2))
        kp = apply(t, KP)
        assert np.allclose(apply(alignment_matrix(ffhq_quad(kp), S), kp), ref, atol=1e-9)


def test_align_face_resamples_the_right_pixels_and_pads():
    # a frame with two marks at the "eyes", rotated and scaled, the square partly outside it
    frame = np.full((400, 600, 3), 90, np.uint8)
    t = similarity(0.45, 20, (150, -60))
    kp = apply(t, KP)
    for p in kp[:2]:
        cv2.circle(frame, tuple(int(round(v)) for v in p), 4, (255, 255, 255), -1)
    quad = ffhq_quad(kp)
    assert quad.corners()[:, 1].min() < 0                  # needs padding above the frame
    out = align_face(frame, quad, S)
    assert out.shape == (S, S, 3) and out.dtype == np.uint8
    for img, q, size in ((out, quad, S), (None, None, None)):
        if img is None:
            # large quads are shrunk first (here by 7) and still land in the same place
            big = cv2.resize(frame, (2400, 1600), interpolation=cv2.INTER_NEAREST)
            q, size = ffhq_quad(kp * 4 + 1.5), 128
            img = align_face(big, q, size)
            marks = kp[:2] * 4 + 1.5
        else:
            marks = kp[:2]
        for p in apply(alignment_matrix(q, size), marks):
            assert np.hypot(*(bright_centroid(img, p) - p)) < 0.5, "mark not where the alignment matrix says"
    # padded areas fade to the frame's median colour, not black
    assert out[:5].mean() > 60


def bright_centroid(img, near, r=6):
    """Centroid of the brightness above the background around ``near``."""
    x0, y0 = np.round(near).astype(int)
    patch = img[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1].mean(2) - 90
    w = np.clip(patch, 0, None)
    ys, xs = np.mgrid[-r:r + 1, -r:r + 1]
    return np.array([x0 + (w * xs).sum() / w.sum(), y0 + (w * ys).sum() / w.sum()])


def test_checks_of_detections_without_dlib():
    pts = np.tile([350.0, 350.0], (68, 1))
    pts[36:42] = [300, 300]
    pts[42:48] = [400, 300]
    pts[48], pts[54] = [320, 410], [380, 410]
    pts[30] = [350, 360]
    pts[:17] = np.column_stack([np.linspace(260, 440, 17), np.full(17, 420)])
    face = Face(box=(250, 230, 450, 450), score=1.0, landmarks=pts)
    assert check_faces([face], (720, 1280)) == ("ok", "")
    assert check_faces([], (720, 1280))[0] == NO_FACE
    small = Face(box=(0, 0, 40, 40), score=1.0, landmarks=pts)
    assert check_faces([small], (720, 1280), min_face_px=64)[0] == FACE_TOO_SMALL
    twin = Face(box=(700, 230, 880, 410), score=0.5)
    status, reason = check_faces([face, twin], (720, 1280))
    assert status == MULTI_FACE and "2 faces" in reason
    tiny_bystander = Face(box=(700, 230, 760, 290), score=0.5)
    assert check_faces([face, tiny_bystander], (720, 1280))[0] == "ok"
    upside = pts.copy()
    upside[48], upside[54] = [320, 200], [380, 200]
    status, reason = check_faces([Face(box=face.box, score=1.0, landmarks=upside)], (720, 1280))
    assert status == LANDMARKS_IMPLAUSIBLE and "mouth" in reason
    status, reason = check_faces([face], (421, 1280))      # jaw points on the bottom edge
    assert status == FACE_CROPPED and "bottom" in reason


# ---------------------------------------------------------------------------------------------
# dlib on the fixture's real faces


def fixture_faces():
    return [cv2.imread(str(p)) for p in sorted((FIXTURES / "faces").glob("*.jpg"))]


def place(face, scale, angle, shift, size=CANVAS):
    """Put an aligned photo into a frame; returns the frame and the photo -> frame map."""
    n = face.shape[0]
    m = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), angle, scale)
    m[:, 2] += [(size - 1) / 2 + shift[0] - (n - 1) / 2, (size - 1) / 2 + shift[1] - (n - 1) / 2]
    return cv2.warpAffine(face, m, (size, size), flags=cv2.INTER_CUBIC, borderValue=BACKDROP), m


@needs_fixtures
def test_eyes_land_in_the_same_place_whatever_the_rotation_scale_shift():
    faces = fixture_faces()
    rng = np.random.default_rng(3)
    errors = []
    for face in faces[::3]:
        frame0, m0 = place(face, 1.4, 0, (0, 0))
        f0 = detect_faces(frame0)
        assert check_faces(f0, frame0.shape)[0] == "ok"
        eyes0 = keypoints(f0[0].landmarks)[:2]
        where0 = apply(alignment_matrix(ffhq_quad(keypoints(f0[0].landmarks)), S), eyes0)
        for _ in range(3):
            frame1, m1 = place(face, rng.uniform(1.0, 1.8), rng.uniform(-25, 25), rng.uniform(-60, 60, 2))
            eyes1 = apply(compose(m1, cv2.invertAffineTransform(m0)), eyes0)   # the same eyes, moved
            f1 = detect_faces(frame1)
            assert check_faces(f1, frame1.shape)[0] == "ok"
            where1 = apply(alignment_matrix(ffhq_quad(keypoints(f1[0].landmarks)), S), eyes1)
            errors.append(np.hypot(*(where1 - where0).T) * 1024 / S)
    errors = np.array(errors)
    assert errors.mean() < 4.0 and errors.max() < 12.0, f"eye error at 1024 px: mean {errors.mean():.1f}, " \
                                                        f"max {errors.max():.1f}"


@needs_fixtures
def test_no_face_two_faces_and_a_cut_face_are_rejected_with_their_reason():
    faces = fixture_faces()
    rng = np.random.default_rng(0)
    empty = np.clip(np.full((360, 640, 3), BACKDROP, np.float32) + rng.normal(0, 3, (360, 640, 3)), 0, 255)
    assert check_faces(detect_faces(empty.astype(np.uint8)), empty.shape) == (NO_FACE, "no face found")

    two = np.full((360, 720, 3), BACKDROP, np.uint8)
    two[40:320, 40:320] = cv2.resize(faces[0], (280, 280))
    two[50:310, 420:680] = cv2.resize(faces[5], (260, 260))
    found = detect_faces(two)
    status, reason = check_faces(found, two.shape)
    assert len(found) == 2 and status == MULTI_FACE and "2 faces of similar size" in reason

    cut, _ = place(faces[2], 1.6, 0, (0, 120))    # the chin ~45 px below the frame's edge
    found = detect_faces(cut)
    status, reason = check_faces(found, cut.shape)
    assert status == FACE_CROPPED and "bottom" in reason


def psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


@needs_fixtures
def test_stabilisation_beats_single_photo_alignment_on_a_corrupted_sequence():
    """24 photos (the 12 fixture faces twice) under random transforms; 4 landmark sets corrupted
    the way dlib fails (one eye or the mouth off by a quarter of the eye distance). Quality is
    the PSNR of each aligned face against the original aligned photo it was made from."""
    faces = fixture_faces()
    rng = np.random.default_rng(1)
    frames, shapes = [], []
    for face in faces * 2:
        frame, _ = place(face, rng.uniform(1.0, 1.4), rng.uniform(-10, 10), rng.uniform(-30, 30, 2))
        found = detect_faces(frame)
        assert check_faces(found, frame.shape)[0] == "ok"
        frames.append(frame)
        shapes.append(found[0].landmarks.copy())
    corrupted = [3, 8, 15, 20]
    for i in corrupted:
        kp = keypoints(shapes[i])
        d = rng.normal(size=2)
        d *= 0.25 * np.hypot(*(kp[1] - kp[0])) / np.hypot(*d)
        if i % 2:
            shapes[i][36:42] += d           # one eye
        else:
            shapes[i][48:68] += 1.5 * d     # the mouth
    st = stabilise(shapes)
    plain = np.array([psnr(align_face(f, ffhq_quad(keypoints(s)), S), faces[i % 12])
                      for i, (f, s) in enumerate(zip(frames, shapes))])
    stable = np.array([psnr(align_face(f, ffhq_quad(kp), S), faces[i % 12])
                       for i, (f, kp) in enumerate(zip(frames, st.keypoints))])
    clean = [i for i in range(len(frames)) if i not in corrupted]
    assert stable.mean() > plain.mean() + 0.5, (plain.mean(), stable.mean())
    assert stable[corrupted].mean() > plain[corrupted].mean() + 4.0, (plain[corrupted], stable[corrupted])
    assert stable[clean].mean() > plain[clean].mean() - 0.5          # good photos are left (nearly) alone
    assert all(st.outliers[i] >= 6 for i in corrupted)
    # one photo alone: nothing to stabilise against
    assert np.allclose(stabilise(shapes[:1]).keypoints[0], keypoints(shapes[0]))


@needs_fixtures
@pytest.mark.skipif(not (FIXTURES / "others").is_dir(), reason="../shared/fixtures/others absent")
def test_several_faces_keep_the_subject_and_reject_strangers():
    """Issue 13: a photo with the subject beside a stranger keeps the subject's face (its
    landmarks, not the larger stranger's); a photo of two strangers stays multi_face."""
    from aging.fetch.config import parse_video
    from aging.fetch.frames import Run
    from aging.fetch.options import FetchOptions
    from aging.fetch.pipeline import _scan_item, catalog

    faces = fixture_faces()
    obama, biden = (cv2.imread(str(FIXTURES / "others" / n)) for n in ("obama_a.jpg", "biden.jpg"))

    def pair(left, right, lsize=250, rsize=270):
        frame = np.full((360, 720, 3), BACKDROP, np.uint8)
        frame[50:50 + lsize, 40:40 + lsize] = cv2.resize(left, (lsize, lsize))
        frame[45:45 + rsize, 420:420 + rsize] = cv2.resize(right, (rsize, rsize))
        return frame

    def crop(img):   # the face of an unaligned portrait
        f = detect_faces(img, landmarks=False)[0]
        l, t, r, b = (int(v) for v in f.box)
        pad = (r - l) // 2
        return cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)[t:b + 2 * pad, l:r + 2 * pad]

    def single(face):
        frame = np.full((360, 720, 3), BACKDROP, np.uint8)
        frame[40:320, 220:500] = cv2.resize(face, (280, 280))
        return frame

    frames = [single(f) for f in faces[:4]] + [pair(faces[6], crop(obama)), pair(crop(obama), crop(biden))]
    items = [_scan_item(Run(k, k, k, 1.0), f, 640, sample=True) for k, f in enumerate(frames)]
    cfg = parse_video({"name": "t", "url": "t.mp4", "start_age": 7000, "days_per_photo": 150})
    rows, shapes = catalog(items, cfg, FetchOptions(), fps=1.0, frame_shape=(360, 720))
    assert [r.status for r in rows[:4]] == ["kept"] * 4
    mixed, strangers = rows[4], rows[5]
    assert mixed.status == "kept" and "matches the subject" in mixed.reason, mixed
    assert shapes[4][:, 0].max() < 360   # the subject's landmarks: the left half of the frame
    assert strangers.status == MULTI_FACE and "none matches the subject" in strangers.reason, strangers
    assert strangers.age_days == 7000 + 5 * 150    # a rejected photo keeps its age slot
