"""Synthetic "photo a day" latent datasets with known ground truth.

The generative model mirrors what the study's real W+ latents look like (see DESIGN.md,
"What the real data says"):

* each subject has an identity latent (for 2-D shapes such as W+ ``(18, 512)``: one ``w``
  repeated over the layers plus small per-layer deviations);
* a shared age trajectory lives in a known subset of components (``age_components``): mostly
  linear in age, with optional curvature, at a subject-specific rate;
* every photo adds independent noise whose scale differs from component to component. The age
  components are planted among the steadiest ones (smallest noise), which is what the study's
  ``linear`` component selection relies on.

With the defaults a per-subject linear age trend explains a few percent of the within-subject
latent variance and the photo-to-photo residuals are uncorrelated, as in the real data.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aging.ages import DAYS_PER_YEAR
from aging.latents import LatentDataset, Subject

REFERENCE_AGE_DAYS = int(20 * DAYS_PER_YEAR)  # trajectories are measured from age 20
TREND_SPAN_DAYS = 5 * DAYS_PER_YEAR  # ``trend`` is the change over five years


@dataclass
class SynthConfig:
    subjects: int = 3
    photos: int = 200
    shape: tuple[int, ...] = (18, 512)
    seed: int = 0
    noise: float = 0.5  # typical per-photo noise std of a component
    trend: float = 1.0  # change of an age component over five years (in units of its direction)
    age_fraction: float = 0.1  # fraction of components that carry age
    curvature: float = 0.1  # quadratic term, relative to the linear one over five years
    rate_spread: float = 0.2  # std of the subject-specific aging rate (mean 1)
    days_per_photo: tuple[float, float] = (8.0, 12.0)  # per subject, drawn uniformly
    start_age_years: tuple[float, float] = (18.0, 30.0)


def generate(cfg: SynthConfig) -> tuple[LatentDataset, dict]:
    """Draw a dataset from ``cfg``. Returns the dataset (with ``clean`` latents) and the truth."""
    rng = np.random.default_rng(cfg.seed)
    shape = tuple(int(s) for s in cfg.shape)
    dim = int(np.prod(shape))
    n_age = max(1, int(round(cfg.age_fraction * dim)))

    age_components = np.sort(rng.choice(dim, size=n_age, replace=False))
    is_age = np.zeros(dim, bool)
    is_age[age_components] = True
    # noise scale per component: age components are the steadiest
    noise_scale = cfg.noise * np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=dim))
    noise_scale[is_age] = cfg.noise * rng.uniform(0.15, 0.35, size=n_age)

    direction = np.zeros(dim)
    direction[is_age] = rng.standard_normal(n_age)  # per-component trend over five years
    curve_direction = np.zeros(dim)
    curve_direction[is_age] = rng.standard_normal(n_age)

    subjects, truth = [], {}
    for k in range(cfg.subjects):
        name = f"subject{k:02d}"
        if len(shape) == 2:
            base = rng.standard_normal(shape[1])
            identity = (base[None, :] + 0.3 * rng.standard_normal(shape)).reshape(-1)
        else:
            identity = rng.standard_normal(dim)
        rate = 1.0 + cfg.rate_spread * rng.standard_normal()
        step = rng.uniform(*cfg.days_per_photo)
        start = rng.uniform(*cfg.start_age_years) * DAYS_PER_YEAR
        ages = np.round(start + step * np.arange(cfg.photos)).astype(np.int64)
        u = (ages - REFERENCE_AGE_DAYS) / TREND_SPAN_DAYS  # [n] five-year units from age 20
        clean = identity[None, :] + rate * cfg.trend * (
            u[:, None] * direction[None, :] + cfg.curvature * (u**2)[:, None] * curve_direction[None, :]
        )  # [n, D]
        noisy = clean + rng.standard_normal(clean.shape) * noise_scale[None, :]
        subjects.append(
            Subject(
                name=name,
                ages=ages,
                latents=noisy.reshape((cfg.photos,) + shape).astype(np.float32),
                clean=clean.reshape((cfg.photos,) + shape).astype(np.float32),
            )
        )
        truth[f"clean/{name}"] = clean.reshape((cfg.photos,) + shape).astype(np.float32)
        truth[f"ages/{name}"] = ages
        truth[f"identity/{name}"] = identity.reshape(shape).astype(np.float32)
        truth[f"rate/{name}"] = np.float64(rate)

    norm = np.linalg.norm(direction)
    truth["direction"] = (direction / norm).reshape(shape).astype(np.float32)  # unit age direction
    truth["age_components"] = age_components.astype(np.int64)  # flat indices
    truth["noise_scale"] = noise_scale.reshape(shape).astype(np.float32)
    cfg_json = asdict(cfg)
    truth["config"] = np.array(json.dumps(cfg_json))
    ds = LatentDataset(subjects, truth=truth)
    return ds, truth


def write_dataset(ds: LatentDataset, truth: dict | None, out: str | Path) -> Path:
    """Write ``out/<subject>/<age_days>.npy`` (+ ``truth.npz``), each file atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for s in ds.subjects:
        folder = out / s.name
        folder.mkdir(exist_ok=True)
        for age, lat in zip(s.ages, s.latents):
            save_npy_atomic(folder / f"{int(age)}.npy", lat)
    if truth is not None:
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".truth.", suffix=".npz")
        os.close(fd)
        np.savez(tmp, **truth)
        os.replace(tmp, out / "truth.npz")
    return out


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
