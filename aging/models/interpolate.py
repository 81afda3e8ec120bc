"""``interp``: two-point linear interpolation / extrapolation between photos at two ages."""

from __future__ import annotations

import numpy as np

from aging.models.base import AgeModel, ModelError, Param, check_array, check_indices, register
from aging.models.components import SELECTIONS, select_components


@register
class TwoPointInterpolation(AgeModel):
    """Move the start latent along the line through two anchor photos of the training subjects.

    For each training subject the anchors are the photos nearest to ages ``t1`` and ``t2``
    (default: its youngest and its oldest visible photo); with ``k > 1`` each anchor is the mean
    of the ``k`` photos nearest to that age. The per-day velocity
    ``(anchor2 - anchor1) / (age2 - age1)`` is averaged over subjects, and
    ``predict`` returns ``start + (t - t_start) * velocity``. With one subject and ``k = 1`` this
    reproduces the anchor latents exactly at the anchor ages: the study's interpolation.

    Parameters
    ----------
    t1, t2 : int or None
        Anchor ages in days (``None``: each subject's first / last visible photo).
    k : int
        Photos averaged at each anchor.
    select, dims : component subset that moves (``None``: all components), as for ``offset``.
    """

    name = "interp"
    _state_arrays = ("velocity_", "comps_")
    _params = {
        "t1": Param("int", low=0, none=True),
        "t2": Param("int", low=0, none=True),
        "k": Param("int", low=1),
        "select": Param("choice", choices=SELECTIONS + ("all",), none=True),
        "dims": Param("int", low=1, none=True),
    }

    def __init__(self, t1=None, t2=None, k=1, select=None, dims=None):
        self.t1 = t1
        self.t2 = t2
        self.k = k
        self.select = select
        self.dims = dims

    def fit(self, pairs, *, progress=False):
        self._begin_fit(pairs)
        ds = pairs.dataset
        k = int(self.k)
        velocities = []
        for seq in pairs.sequences():
            if len(seq) < 2:
                continue
            ages = ds.ages[seq]
            ends = []
            for t, default in ((self.t1, ages[0]), (self.t2, ages[-1])):
                target = default if t is None else int(t)
                nearest = np.argsort(np.abs(ages - target), kind="stable")[: min(k, len(seq))]
                ends.append((ds.latents_flat[seq[nearest]].astype(np.float64).mean(0), ages[nearest].mean()))
            (l1, a1), (l2, a2) = ends
            if a2 == a1:
                continue
            velocities.append((l2 - l1) / (a2 - a1))
        if not velocities:
            raise ModelError("model interp: no training subject has two distinct anchor ages "
                             f"(t1={self.t1}, t2={self.t2}, k={self.k}; each anchor is the mean of the k "
                             f"photos nearest to its age: use a smaller k, other anchor ages, or more photos)")
        try:
            comps = select_components(pairs, self.select, self.dims)
        except ValueError as exc:
            raise ModelError(f"model interp: {exc}") from None
        velocity = np.zeros(ds.dim)
        velocity[comps] = np.mean(velocities, axis=0)[comps]
        self.velocity_ = velocity  # [D] per day, float64
        self.comps_ = comps.astype(np.int64)
        return self

    def _check_state(self):
        dim = int(np.prod(self.latent_shape_))
        return check_array(self, "velocity_", (dim,)) or check_indices(self, "comps_", dim)

    def _predict_flat(self, start, start_age, target_ages):
        dt = (target_ages - start_age)[:, None]  # [T, 1]
        return start[None, :].astype(np.float64) + dt * self.velocity_[None, :]
