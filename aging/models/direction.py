"""``direction``: move along one age direction, ``latent(t) = start + (t - t_start) * scale * d``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aging.errors import FileFormatError
from aging.io import read_latent
from aging.models.base import AgeModel, ModelError, Param, check_array, register


def pooled_slope(pairs) -> np.ndarray:
    """Within-subject least-squares slope of the latents against age (per day), pooled: ``[D]``."""
    ds = pairs.dataset
    num, den = np.zeros(ds.dim), 0.0
    for seq in pairs.sequences():
        if len(seq) < 2:
            continue
        a = ds.ages[seq].astype(np.float64)
        a = a - a.mean()
        x = ds.latents_flat[seq].astype(np.float64)
        num += a @ (x - x.mean(0))
        den += float(a @ a)
    if den == 0:
        raise ModelError("model direction: no training subject has two photos of different ages")
    return num / den


def broadcast_direction(d: np.ndarray, latent_shape, *, where: str = "direction") -> np.ndarray:
    """A direction as published -> a flat float64 vector of the latent's size ``[prod(latent_shape)]``.

    Accepted shapes: the latent's own (e.g. ``(18, 512)``, Puzer's ``age.npy``), flat of the
    same size, and, for W+ latents ``(num_ws, w_dim)``, one W vector ``(w_dim,)`` or
    ``(1, w_dim)`` (InterFaceGAN's boundaries), repeated on every W+ row.

    Raises
    ------
    ModelError
        Any other shape, naming ``where``, the direction's shape and the latents'.
    """
    shape = tuple(int(v) for v in latent_shape)
    dim = int(np.prod(shape))
    d = np.asarray(d)
    if d.shape == shape or (d.ndim == 1 and d.size == dim) or (d.ndim == 2 and d.shape == (1, dim)):
        return d.reshape(-1).astype(np.float64)
    if len(shape) == 2 and d.shape in ((shape[1],), (1, shape[1])):
        return np.tile(d.reshape(1, -1).astype(np.float64), (shape[0], 1)).reshape(-1)  # W -> every W+ row
    raise ModelError(f"{where}: direction shape {d.shape} does not match latents {shape} "
                     f"(accepted: {shape}, ({dim},)" + (f", ({shape[1]},) or (1, {shape[1]})" if len(shape) == 2
                                                         else "") + ")")


@register
class AgeDirection(AgeModel):
    """One direction ``d`` (unit norm) and a scale fitted by least squares on the training pairs.

    Parameters
    ----------
    direction : str or None
        Path of a ``.npy`` direction, e.g. a published age direction: the latent's shape
        (Puzer's ``(18, 512)``), flat, or one W vector ``(512,)`` / ``(1, 512)`` (InterFaceGAN's
        boundaries) repeated on every W+ row (see :func:`broadcast_direction`); float64 is read
        as is and made unit norm. ``None`` learns ``d`` as the pooled within-subject slope.
    """

    name = "direction"
    _state_arrays = ("direction_", "scale_")
    _params = {"direction": Param("path", none=True)}

    def __init__(self, direction=None):
        self.direction = direction

    def _load_direction(self, dim: int, shape) -> np.ndarray:
        path = Path(self.direction)
        if not path.is_file():
            raise ModelError(f"{path}: no such direction file (model direction, parameter direction)")
        try:
            d = read_latent(path)  # readable, floating, finite
        except FileFormatError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            raise ModelError(f"{path}: not a usable direction file (model direction): {reason}") from None
        d = broadcast_direction(d, shape, where=str(path))
        if np.linalg.norm(d) == 0:
            raise ModelError(f"{path}: direction is zero")
        return d

    def fit(self, pairs, *, progress=False):
        self._begin_fit(pairs)
        ds = pairs.dataset
        if self.direction is None:
            d = pooled_slope(pairs)
        else:
            d = self._load_direction(ds.dim, ds.latent_shape)
        norm = np.linalg.norm(d)
        if norm == 0:
            raise ModelError("model direction: the learned direction is zero (no training subject's "
                             "latents change with age)")
        d = d / norm
        q = ds.latents_flat.astype(np.float64) @ d  # [N] projection of every photo
        dt = (ds.ages[pairs.target] - ds.ages[pairs.start]).astype(np.float64)
        dq = q[pairs.target] - q[pairs.start]
        self.direction_ = d.astype(np.float32)  # [D]
        self.scale_ = np.float64(dt @ dq / max(dt @ dt, 1e-300))  # latent units per day along d
        return self

    def _check_state(self):
        dim = int(np.prod(self.latent_shape_))
        return check_array(self, "direction_", (dim,)) or check_array(self, "scale_", ())

    def _predict_flat(self, start, start_age, target_ages):
        dt = (target_ages - start_age)[:, None]
        return start[None, :].astype(np.float64) + dt * float(self.scale_) * self.direction_[None, :]
