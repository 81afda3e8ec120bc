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
import math
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aging import io
from aging.ages import DAYS_PER_YEAR
from aging.errors import AgingError
from aging.latents import LatentDataset, Subject

REFERENCE_AGE_DAYS = int(20 * DAYS_PER_YEAR)  # trajectories are measured from age 20
TREND_SPAN_DAYS = 5 * DAYS_PER_YEAR  # ``trend`` is the change over five years
RECORD = "synth.json"  # the completion record of a written dataset (written last)
MAX_VALUES = 100_000_000  # subjects x photos x latent size: beyond this, memory runs out


class SynthError(AgingError, ValueError):
    """A synthetic dataset that cannot be made or written (the message names the option or folder)."""


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


def check_config(cfg: SynthConfig) -> None:
    """Refuse a configuration that cannot give a dataset (one line naming the setting)."""
    if cfg.subjects < 1 or cfg.photos < 2:
        raise SynthError("need at least one subject (--subjects) and two photos per subject (--photos)")
    if not cfg.shape or any(int(n) < 1 for n in cfg.shape):
        raise SynthError(f"--shape: every size must be positive, got {tuple(cfg.shape)}")
    values = cfg.subjects * cfg.photos * math.prod(int(n) for n in cfg.shape)
    if values > MAX_VALUES:
        raise SynthError(f"--subjects x --photos x --shape = {values:,} latent values; at most "
                         f"{MAX_VALUES:,} fit in memory")
    for name in ("noise", "trend", "curvature", "rate_spread", "age_fraction"):
        if not math.isfinite(getattr(cfg, name)):
            raise SynthError(f"{name} must be a finite number, got {getattr(cfg, name)}")
    if cfg.noise < 0:
        raise SynthError(f"noise must not be negative, got {cfg.noise}")
    if not 0 < cfg.age_fraction <= 1:
        raise SynthError(f"age fraction must be in (0, 1], got {cfg.age_fraction}")
    if cfg.seed < 0:
        raise SynthError(f"seed must not be negative, got {cfg.seed}")


def generate(cfg: SynthConfig) -> tuple[LatentDataset, dict]:
    """Draw a dataset from ``cfg``. Returns the dataset (with ``clean`` latents) and the truth."""
    check_config(cfg)
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
    for rel, array in _dataset_files(ds):
        io.save_npy(out / rel, array)
    if truth is not None:
        io.save_npz(out / "truth.npz", **truth)
    return out


def _dataset_files(ds: LatentDataset):
    """``(relative path, latent)`` of every file of a dataset on disk."""
    for s in ds.subjects:
        for age, lat in zip(s.ages, s.latents):
            yield f"{s.name}/{int(age)}.npy", lat


# ---------------------------------------------------------------------------------------------
# The `aging synth` stage: a whole dataset, or none
# ---------------------------------------------------------------------------------------------


def record_key(cfg: SynthConfig) -> str:
    """The fingerprint of the dataset ``cfg`` gives (the data is a pure function of it)."""
    return io.digest({"format": "aging-synth/1", "config": asdict(cfg)})


def is_synthesized(out: str | Path, cfg: SynthConfig) -> bool:
    """True when ``out`` holds the complete dataset of ``cfg`` (its record matches, no file lost)."""
    return io.is_finished(Path(out) / RECORD, record_key(cfg))


def synthesize(cfg: SynthConfig, out: str | Path, *, force: bool = False) -> tuple[LatentDataset, dict] | None:
    """Generate the dataset of ``cfg`` and write it to ``out`` as a whole.

    Returns ``None`` (and writes nothing) when ``out`` already holds exactly this dataset, unless
    ``force``. The dataset is written into a hidden folder beside ``out`` (record last) and then
    swapped in, so ``out`` never mixes an old dataset with a new one and a killed run leaves the
    old one whole. A non-empty ``out`` is replaced only with ``force``, and only when everything in
    it is part of a latent dataset (subject folders of ``.npy`` files, ``truth.npz``, the record).
    """
    check_config(cfg)
    out = Path(out)
    if out.name in ("", ".", ".."):
        raise SynthError(f"{out}: give the dataset's own folder (e.g. data/synth), not {str(out)!r}")
    if out.is_symlink():
        raise SynthError(f"{out}: is a link; give the folder it points to")
    if out.exists() and not out.is_dir():
        raise SynthError(f"{out}: is a file, not a folder")
    if not force and is_synthesized(out, cfg):
        return None
    _remove_stale_temporaries(out)
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise SynthError(f"{out}: already exists and is not empty (use --force to replace it)")
        foreign = _not_a_dataset(out)
        if foreign is not None:
            raise SynthError(f"{out}: holds {foreign}, which is not part of a latent dataset; not replacing "
                             f"it, even with --force")
    ds, truth = generate(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    old = None
    try:
        write_dataset(ds, truth, tmp)
        files = [rel for rel, _ in _dataset_files(ds)] + ["truth.npz"]
        io.write_record(tmp / RECORD, record_key(cfg), files, config=asdict(cfg))  # last
        if out.exists():
            old = out.parent / f".{out.name}.{secrets.token_hex(4)}.old.tmp"
            os.rename(out, old)
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    ds.root = out
    return ds, truth


def _remove_stale_temporaries(out: Path) -> None:
    """Hidden folders a killed ``synthesize(..., out)`` left beside ``out``."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.[0-9a-f]{{8}}(\.old)?\.tmp$")
    if out.parent.is_dir():
        for p in out.parent.iterdir():
            if pattern.match(p.name) and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)


def _not_a_dataset(out: Path) -> str | None:
    """The first entry of ``out`` that is not part of a latent dataset, or None."""
    def latents_only(folder: Path) -> str | None:
        for p in sorted(folder.iterdir()):
            if not io.is_data_name(p.name):
                continue
            if p.is_dir() and not p.is_symlink() and p.name == "latents" and folder.parent == out:
                bad = latents_only(p)
                if bad:
                    return bad
            elif not (p.is_file() and p.suffix.lower() == ".npy"):
                return str(p)
        return None

    for p in sorted(out.iterdir()):
        if not io.is_data_name(p.name):
            continue
        if p.is_dir() and not p.is_symlink():
            bad = latents_only(p)
            if bad:
                return bad
        elif not (p.is_file() and p.name in ("truth.npz", RECORD)):
            return str(p)
    return None
