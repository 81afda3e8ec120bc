"""The generated face back in the original photo: the inverse of the FFHQ alignment, blended
through a feathered elliptical mask (the face and a little around it; hair and background stay
the photo's)."""

from __future__ import annotations

import numpy as np

# the mask: an ellipse over the face in the FFHQ square (fractions of its side)
CENTER = (0.5, 0.56)
HALF_AXES = (0.34, 0.42)


def face_mask(size: int, feather: float) -> np.ndarray:
    """``[size, size]`` float32 in [0, 1]: 1 on the face ellipse, 0 outside, with a soft edge of
    about ``feather * size`` px (Gaussian)."""
    import cv2

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    u = (xx / size - CENTER[0]) / HALF_AXES[0]
    v = (yy / size - CENTER[1]) / HALF_AXES[1]
    mask = (u * u + v * v <= 1.0).astype(np.float32)
    sigma = max(feather * size / 2.0, 0.5)
    return np.clip(cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma), 0.0, 1.0)


class PasteBack:
    """Paste aligned faces of one size into one photo: ``paste(face) -> [H, W, 3]`` uint8.

    The alignment maps photo pixels to face pixels (:func:`aging.fetch.align.alignment_matrix`);
    its inverse warps the face and the mask into the photo, once per face for the face and once
    for the mask.
    """

    def __init__(self, photo: np.ndarray, quad, face_size: int, *, feather: float = 0.08):
        import cv2

        from aging.fetch.align import alignment_matrix

        self.photo = np.asarray(photo, dtype=np.uint8)
        self.face_size = int(face_size)
        self.matrix = alignment_matrix(quad, self.face_size)  # [2, 3] photo px -> face px
        h, w = self.photo.shape[:2]
        mask = cv2.warpAffine(face_mask(self.face_size, feather), self.matrix, (w, h),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0.0)
        self.mask = mask[..., None]  # [H, W, 1]
        self._base = self.photo.astype(np.float32) * (1.0 - self.mask)

    def __call__(self, face: np.ndarray) -> np.ndarray:
        import cv2

        if face.shape[:2] != (self.face_size, self.face_size):
            face = cv2.resize(face, (self.face_size, self.face_size), interpolation=cv2.INTER_AREA)
        h, w = self.photo.shape[:2]
        warped = cv2.warpAffine(np.ascontiguousarray(face), self.matrix, (w, h),
                                flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        out = self._base + warped.astype(np.float32) * self.mask
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
