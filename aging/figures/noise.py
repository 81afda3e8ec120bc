"""The noise floor: how much of a latent's photo-to-photo change is per-photo encoding noise.

With independent noise ``e_t`` of variance ``s^2`` per component on a smooth trend, a step
between consecutive photos is ``trend step + e_{t+1} - e_t``, whose mean square is
``2 s^2 + (trend step)^2``. So ``s^2`` is half the mean squared step after removing the trend's
share, here each subject's linear age fit (per component). ``s^2`` is in the unit of every error
of the toolkit (MSE per latent component): no model can predict a photo better than it on average.
"""

from __future__ import annotations

import numpy as np

from aging.latents import LatentDataset


def subject_noise(ages: np.ndarray, latents: np.ndarray) -> tuple[float, int]:
    """``(s^2, steps)`` of one subject: half the mean squared detrended step ``[n, ...]`` -> float."""
    x = latents.reshape(len(latents), -1).astype(np.float64)  # [n, D]
    if len(x) < 3:
        return float("nan"), 0
    a = ages.astype(np.float64) - ages.mean()
    slope = a @ (x - x.mean(0)) / (a @ a)  # [D] per-day linear trend of each component
    steps = np.diff(x, axis=0) - np.diff(a)[:, None] * slope[None, :]  # [n - 1, D]
    return float(np.mean(steps**2) / 2.0), len(steps)


def noise_floor(ds: LatentDataset) -> dict:
    """``{"overall": s^2, "per_subject": {name: s^2}, "truth": known s^2 or None}``; the overall
    value weights each subject by its number of steps (None where no subject has 3 photos)."""
    per, total, count = {}, 0.0, 0
    for s in ds.subjects:
        var, n = subject_noise(s.ages, s.latents)
        per[s.name] = None if n == 0 else var
        if n:
            total += var * n
            count += n
    return {"overall": total / count if count else None, "per_subject": per, "truth": known_noise(ds),
            "method": "half the mean squared photo-to-photo step, less each subject's linear age trend"}


def known_noise(ds: LatentDataset) -> float | None:
    """The noise of a synthetic dataset (``truth.npz``: mean of ``noise_scale`` squared), else None."""
    truth = ds.truth or {}
    scale = truth.get("noise_scale")
    return None if scale is None else float(np.mean(np.asarray(scale, dtype=np.float64) ** 2))
