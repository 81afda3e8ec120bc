"""The encode stage on disk: aligned photos -> latents, reconstructions and a per-photo log.

Input: a subject folder ``DATA/<subject>`` with ``aligned/<age_days>.png`` and ``manifest.csv``
(as written by ``aging fetch``; the manifest's ``kept`` rows are the photos), or a plain folder
of aligned images named ``<age_days>.png|jpg`` (digits only). Photos are processed in age order.
The stage's own outputs (``encode.png``, hidden temporaries) are never read back as photos.

Output (in the subject folder, or ``out``)::

    latents/<age_days>.npy   float32 (num_ws, w_dim), the W+ latent (whatever the space)
    recon/<age_days>.png     the reconstruction at the working resolution
    z/<age_days>.npy         float32 (z_dim,), only for --space z (to warm-start a resumed run)
    encode.jsonl             one JSON line per encoded photo: age_days, losses, psnr, steps,
                             seconds, ..., and ``options``: the key of the options that made it
    encode.options.json      {"format": "aging.encode.options/1", "runs": {KEY: {"options": {...},
                             "argv": [...]}}}: one entry per set of options that encoded photos

Every file goes through :mod:`aging.io` (atomic writes; validating reads). A batch writes its
reconstructions, (z), latents, then its log lines (one ``write``). A photo is *finished* when its
latent reads back valid (finite, float, the generator's ``(num_ws, w_dim)``), its reconstruction
exists and ``encode.jsonl`` has its line, whatever the options it was made with; any other photo
is encoded again (a damaged latent, or outputs a killed run left without their log
line, are said so in one line). Runs are deterministic and a resumed run repeats the batches of an
uninterrupted one, so a killed and resumed run gives the same latents bit for bit. Temporaries a
killed run left beside the photos' outputs are removed.

Options: the options that make latents (hyper-parameters, loss, resolution, seed, the generator's
weights digest, device, ...) are digested into a 16-hex-digit *key*
(:func:`aging.io.digest`); a run that encodes photos adds its entry to ``encode.options.json``
before its first files, unless the key is there already, and every log line carries the key. So
the options of each latent are those of its (last) log line's key, a run that changes options
adds an entry instead of overwriting the record, and a run with nothing to do writes nothing.

Several processes (``torchrun --nproc-per-node N -m aging encode ...``) split the age-ordered
photos into N contiguous shares, one per rank (``RANK``/``WORLD_SIZE``); each rank writes only
the files of its own photos, and a rank's warm start never crosses into another's share, so the
result does not depend on timing. Shares are computed over all photos (finished or not), so a
resumed run gives every rank the same share again.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from aging import io as aio
from aging.errors import AgingError, FileFormatError
from aging.photos import PhotoError, read_photo, subject_photos

LOG_NAME = "encode.jsonl"
CHART_NAME = "encode.png"
OPTIONS_NAME = "encode.options.json"
OPTIONS_FORMAT = "aging.encode.options/1"
OUTPUT_NAMES = frozenset({CHART_NAME})  # image files this stage writes beside the photos of a plain folder
KEY_LENGTH = 16  # hex digits of an options key


class EncodeError(AgingError, ValueError):
    """Bad input of the encode stage (one line; names the file or option)."""


# ---------------------------------------------------------------------------------------------
# Photos


@dataclass
class PhotoSet:
    """A subject's aligned photos in age order."""

    source: Path  # folder the images are read from
    out: Path  # folder latents/, recon/ and encode.jsonl are written to
    ages: list[int]  # days, strictly increasing
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.ages)


def find_photos(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> PhotoSet:
    """The photos of a subject folder or a plain folder, in age order (see :mod:`aging.photos`);
    this stage's own outputs (``encode.png``) are never photos.

    Raises
    ------
    EncodeError
        As :func:`aging.photos.subject_photos` (no such folder, no photos, a name that is not an
        age in days, a manifest that cannot be read or names a missing file).
    """
    try:
        found = subject_photos(folder, skip_names=OUTPUT_NAMES)
    except PhotoError as exc:
        raise EncodeError(str(exc)) from None
    return PhotoSet(source=found.source, out=Path(out) if out is not None else Path(folder),
                    ages=found.ages, paths=found.paths)


def check_photo(path: Path, min_size: int) -> int:
    """Decode ``path`` (:func:`aging.io.read_image`): a square image of at least ``min_size`` px;
    return its size. Raises a one-line :class:`~aging.errors.FileFormatError` or :class:`EncodeError`."""
    image = aio.read_image(path, square=True)
    size = image.shape[0]
    if size < min_size:
        raise EncodeError(f"{path}: image is {size}x{size} px, smaller than the working resolution {min_size} px "
                          "(use a smaller --resolution)")
    return size


class PhotoTargets:
    """Lazy targets for :func:`~aging.encode.projector.project_sequence`: ``targets[indices]`` (a
    list of indices or a slice) reads those photos and returns a float tensor ``[j - i, 3, r, r]`` in ``[-1, 1]``."""

    def __init__(self, paths: list[Path], resolution: int):
        self.paths = list(paths)
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        import torch

        if isinstance(index, slice):
            paths = self.paths[index]
        else:
            paths = [self.paths[i] for i in index]
        arrays = [read_photo(p, self.resolution) for p in paths]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()  # [n, 3, r, r]
        return x / 127.5 - 1


def to_uint8(images) -> np.ndarray:
    """``[N, 3, H, W]`` tensor in ``[-1, 1]`` -> uint8 ``[N, H, W, 3]``."""
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5  # [N, 3, H, W]
    return x.round().byte().permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------------------------------------
# The log, the options record, finished photos


def read_log(path: Path) -> dict[int, dict]:
    """Records of ``encode.jsonl`` by age (the last line of an age wins; torn lines are skipped)."""
    out = {}
    for rec in aio.read_jsonl(path):
        age = rec.get("age_days")
        if isinstance(age, int) and not isinstance(age, bool) and age >= 0:
            out[age] = rec
    return out


def options_key(options: dict) -> str:
    """The key of a set of options (:func:`aging.io.digest`, first :data:`KEY_LENGTH` hex digits)."""
    return aio.digest(options)[:KEY_LENGTH]


def read_options(out: Path) -> dict[str, dict]:
    """The runs of ``out/encode.options.json`` (key -> {"options", "argv"}); {} when there is none.

    A file of an older version (one flat dict of options) is returned as the run ``"legacy"``.
    """
    path = Path(out) / OPTIONS_NAME
    if not path.exists():
        return {}
    data = aio.read_json(path, what="encode options record")
    if isinstance(data, dict) and data.get("format") == OPTIONS_FORMAT and isinstance(data.get("runs"), dict):
        return dict(data["runs"])
    if isinstance(data, dict) and "format" not in data:
        return {"legacy": {"options": data, "argv": data.get("argv")}}
    raise EncodeError(f"{path}: not an encode options record (move it away to start a new one)")


def record_options(out: Path, options: dict, argv: list[str] | None = None) -> str:
    """Add ``options`` to ``out/encode.options.json`` unless its key is there; return the key."""
    key = options_key(options)
    runs = read_options(out)
    if key not in runs:
        runs[key] = {"options": options, "argv": argv}
        aio.write_json(Path(out) / OPTIONS_NAME, {"format": OPTIONS_FORMAT, "runs": runs})
    return key


def finished_photos(G, photos: PhotoSet, indices, *, echo: Callable[[str], None]) -> dict[int, bool]:
    """``{index: finished}`` for ``indices`` of ``photos`` (see the module docstring).

    A latent (or z) that exists but does not read back valid is reported in one line per file;
    photos whose latent is there without a reconstruction or a log line (a killed run), in one
    line for all.
    """
    out = photos.out
    log = read_log(out / LOG_NAME)
    done: dict[int, bool] = {}
    orphans: list[int] = []
    for i in indices:
        age = photos.ages[i]
        lat = out / "latents" / f"{age}.npy"
        if not lat.exists():
            done[i] = False
            continue
        try:
            aio.read_latent(lat, (G.num_ws, G.w_dim))
            ok = True
        except FileFormatError as exc:
            echo(f"{str(exc).splitlines()[0]}; encoding {photos.paths[i].name} again")
            ok = False
        if ok and (not (out / "recon" / f"{age}.png").is_file() or age not in log):
            orphans.append(age)
            ok = False
        done[i] = ok
    if orphans:
        n = len(orphans)
        echo(f"{out}: {n} photo{'s' if n != 1 else ''} without a reconstruction or a line in {LOG_NAME} "
             f"(an interrupted run?): {', '.join(map(str, orphans[:8]))}{', ...' if n > 8 else ''}; "
             f"encoding {'them' if n != 1 else 'it'} again")
    return done


def remove_temporaries(out: Path, ages, *, shared: bool) -> list[Path]:
    """Remove the hidden temporaries a killed run left for the photos of ``ages`` (in latents/,
    recon/, z/) and, with ``shared`` (no other rank may be writing), of the stage's own files."""
    gone = []
    for sub in ("latents", "recon", "z"):
        gone += aio.remove_temporaries(Path(out) / sub, stems=[str(a) for a in ages])
    if shared:
        gone += aio.remove_temporaries(out, stems=[Path(n).stem for n in (CHART_NAME, OPTIONS_NAME)])
    return gone


def encode_report(out: Path) -> dict | None:
    """What :func:`aging.render.charts.plot_encode` draws, from ``out``'s finished photos:
    ``ages``, ``psnr``, ``init`` (from ``encode.jsonl``) and ``steps`` (RMS W+ step from the
    previous finished photo; NaN for the first). None when no photo is finished."""
    log = read_log(Path(out) / LOG_NAME)
    ages, latents = [], []
    for a in sorted(log):
        try:
            latents.append(aio.read_latent(Path(out) / "latents" / f"{a}.npy"))
        except FileFormatError:
            continue
        ages.append(a)
    if not ages:
        return None
    steps = [float("nan")]
    for prev, cur in zip(latents, latents[1:]):
        steps.append(float(np.sqrt(np.mean(np.square(cur - prev)))) if cur.shape == prev.shape else float("nan"))
    return dict(ages=np.array(ages), psnr=np.array([log[a].get("psnr", np.nan) for a in ages], dtype=float),
                init=[str(log[a].get("init")) for a in ages], steps=np.array(steps))


# ---------------------------------------------------------------------------------------------
# Sharding


def dist_env(environ=None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment variables (default 0, 1, 0)."""
    env = os.environ if environ is None else environ

    def get(name):
        value = env.get(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise EncodeError(f"environment variable {name}={value!r} is not an integer") from None

    local = get("LOCAL_RANK")
    rank = get("RANK")
    world = get("WORLD_SIZE")
    if rank is None:
        rank = local if local is not None else 0
        if world is None:
            world = get("LOCAL_WORLD_SIZE")
    world = 1 if world is None else world
    local = rank if local is None else local
    if world < 1 or not 0 <= rank < world:
        raise EncodeError(f"bad rank {rank} for world size {world}")
    return rank, world, local


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous share ``[start, stop)`` of ``n`` items for ``rank`` of ``world`` (sizes differ by <= 1)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


# ---------------------------------------------------------------------------------------------
# The stage


def check_options(**values) -> None:
    """Each value must be a finite number within its bounds (:data:`OPTION_BOUNDS`); raises an
    :class:`EncodeError` naming the option."""
    for name, value in values.items():
        low, strict = OPTION_BOUNDS[name]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and (value > low if strict else value >= low)
        if not ok:
            raise EncodeError(f"{name} must be a finite number {'>' if strict else '>='} {low}, got {value!r}")


# name -> (lower bound, strictly above); the CLI's options have the same bounds
OPTION_BOUNDS = {"steps": (1, False), "steps_after_first": (1, False), "batch": (1, False),
                 "min_chain": (1, False), "lr": (0, True), "lr_after_first": (0, True), "smooth": (0, False),
                 "mean_reg": (0, False), "clip": (0, True), "seed": (0, False)}


def encode_photos(G, photos: PhotoSet, *, loss, steps: int, steps_after_first: int, batch: int, space: str,
                  init: str, lr: float, heads: str = "best", chain_length: int | None = None,
                  min_chain: int | None = None,
                  lr_after_first: float = 0.05, smooth: float = 0.0, mean_reg: float = 0.0, clip: float = 3.0,
                  fp16: bool = False, seed: int = 0, rank: int = 0, world: int = 1, progress: bool = True,
                  record: dict | None = None, argv: list[str] | None = None,
                  on_batch: Callable[[list[int]], None] | None = None,
                  echo: Callable[[str], None] | None = None) -> dict:
    """Encode this rank's share of ``photos`` that are not finished; write their files.

    Parameters
    ----------
    G : Generator
    photos : PhotoSet
    loss : ImageLoss
        Its working resolution is the size photos are read at.
    steps, steps_after_first, batch, space, init, heads, chain_length, min_chain, lr, lr_after_first, smooth,
    mean_reg, clip, fp16, seed
        See :func:`aging.encode.projector.project_sequence` and :func:`~.projector.project`
        (``min_chain`` None: ``DEFAULT_MIN_CHAIN``). Numbers must be finite and in range
        (:data:`OPTION_BOUNDS`).
    rank, world : int
        This process's share of the photos (see :func:`shard`).
    progress : bool
        Show a progress bar (only where output is a terminal).
    record : dict, optional
        Further options recorded (and digested) with these, e.g. the generator's path, the device.
    argv : list of str, optional
        The command line, recorded beside a new entry of ``encode.options.json`` (not digested).
    on_batch : callable(ages), optional
        Called after a batch's files are written.
    echo : callable(str), optional
        Where notices go (batch size halved, photos encoded again, ...).

    Returns
    -------
    dict
        ``encoded``, ``skipped``, ``seconds``, ``photos_per_s``, ``mean_total`` (mean final loss of
        the photos encoded now), ``batch`` (final batch size), ``share`` ([start, stop)),
        ``options`` (the options key of this run; None when nothing was encoded).

    Raises
    ------
    AgingError
        A bad option, photo or options record, or a batch whose loss is not finite (its photos
        are named; nothing of that batch is written). Files of earlier batches stay finished.
    """
    import torch
    from tqdm.auto import tqdm

    from aging.encode.projector import DEFAULT_MIN_CHAIN, plan_chains, project_sequence, space_shape, w_stats

    min_chain = DEFAULT_MIN_CHAIN if min_chain is None else min_chain
    check_options(steps=steps, steps_after_first=steps_after_first, batch=batch, min_chain=min_chain, lr=lr,
                  lr_after_first=lr_after_first, smooth=smooth, mean_reg=mean_reg, clip=clip, seed=seed)
    if chain_length is not None and chain_length < 1:
        raise EncodeError(f"chain_length must be None or >= 1, got {chain_length!r}")
    space_shape(G, space)  # a known space
    echo = echo or (lambda msg: None)
    out = photos.out
    lat_dir, rec_dir, z_dir = out / "latents", out / "recon", out / "z"
    a, b = shard(len(photos), rank, world)
    remove_temporaries(out, photos.ages[a:b], shared=world == 1)
    state_of = finished_photos(G, photos, range(a, b), echo=echo)
    done = [state_of.get(i, True) for i in range(len(photos))]  # other ranks' photos: not ours to judge
    todo = [i for i in range(a, b) if not done[i]]
    summary = dict(encoded=0, skipped=(b - a) - len(todo), seconds=0.0, photos_per_s=0.0, mean_total=None,
                   batch=batch, share=[a, b], options=None)
    if not todo:
        return summary
    res = loss.resolution
    for i in todo:  # fail before any work on a bad photo or a damaged options record
        check_photo(photos.paths[i], res)
    read_options(out)

    from aging.stylegan.checkpoints import state_digest

    options = dict(steps=steps, steps_after_first=steps_after_first, batch=batch, space=space, init=init,
                   heads=heads, chain_length=chain_length, min_chain=min_chain, loss=dict(loss.terms),
                   resolution=res, lr=lr, lr_after_first=lr_after_first, smooth=smooth, mean_reg=mean_reg,
                   clip=clip, fp16=fp16, seed=seed, world_size=world, generator_sha256=state_digest(G),
                   **(record or {}))
    key = options_key(options)
    for d in (lat_dir, rec_dir) + ((z_dir,) if space == "z" else ()):
        d.mkdir(parents=True, exist_ok=True)

    w_std = w_stats(G)[1]
    # The share's chains are planned over all its photos (finished or not), so a resumed run
    # continues every chain from its last finished photo, in the same batches.
    chains, starts, offsets = [], [], []
    for chain in plan_chains(b - a, batch, chain_length, min_chain):
        chain = [a + k for k in chain]
        for pos, i in enumerate(chain):
            if done[i]:
                continue
            if chains and chains[-1][-1] == i - 1 and pos > 0:
                chains[-1].append(i)
                continue
            start = None
            if init == "previous" and pos > 0:  # the finished photo just before, same chain
                start = _load_start(G, photos.ages[i - 1], space, lat_dir, z_dir)
            chains.append([i])
            starts.append(start)
            offsets.append(pos if init == "previous" else 0)

    root = None  # heads "root"/"best": the first head's latent, from which the other heads start (see project_sequence)
    if (init == "previous" and heads != "mean" and done[a]
            and any(c[0] != a and starts[k] is None for k, c in enumerate(chains))):
        root = _load_start(G, photos.ages[a], space, lat_dir, z_dir)

    t_start = time.perf_counter()
    totals: list[float] = []
    state = dict(batch=batch)
    desc = f"encode {photos.out.name}" + (f" [rank {rank}]" if world > 1 else "")
    bar = tqdm(total=len(todo), unit="photo", desc=desc,
               disable=True if (not progress or rank != 0) else None, dynamic_ncols=True)

    def on_oom(old, new):
        state["batch"] = new
        echo(f"CUDA out of memory at batch {old}: continuing with batch {new}")

    def callback(step, per_photo, _every=25):
        if not bar.disable and (step + 1) % _every == 0:
            bar.set_postfix(step=step + 1, loss=f"{per_photo.mean().item():.4g}", refresh=True)

    try:
        seq = project_sequence(G, PhotoTargets(photos.paths, res), loss=loss, batch=batch, init=init, heads=heads,
                               steps=steps, steps_after_first=steps_after_first, space=space, chains=chains,
                               starts=starts, root=root, offsets=offsets, keys=photos.ages, seed=seed, lr=lr,
                               lr_after_first=lr_after_first, smooth=smooth, mean_reg=mean_reg, clip=clip, fp16=fp16,
                               w_std=w_std, on_oom=on_oom, callback=callback)
        for idx, proj in seq:
            bad = ~(torch.isfinite(proj.losses["total"]) & torch.isfinite(proj.ws.flatten(1)).all(1)
                    & torch.isfinite(proj.latents.flatten(1)).all(1)).cpu()
            if bool(bad.any()):
                names = [photos.paths[i].name for i, b_ in zip(idx, bad.tolist()) if b_]
                raise EncodeError(f"{photos.source}: the loss is not finite (NaN or inf) for {', '.join(names)}; "
                                  "stopped without writing their latents (try a smaller --lr or --lr-after-first)")
            if summary["options"] is None:
                summary["options"] = record_options(out, options, argv)
            ages = [photos.ages[i] for i in idx]
            _write_batch(ages, [photos.paths[i] for i in idx], proj, out=out, space=space, rank=rank, key=key)
            totals.extend(float(v) for v in proj.losses["total"].cpu())
            bar.update(len(idx))
            bar.set_postfix(loss=f"{float(proj.losses['total'].mean()):.4g}", refresh=False)
            summary["encoded"] += len(idx)
            if on_batch is not None:
                on_batch(ages)
    finally:
        bar.close()
        summary["seconds"] = time.perf_counter() - t_start
        summary["batch"] = state["batch"]
        if summary["encoded"]:
            summary["photos_per_s"] = summary["encoded"] / max(summary["seconds"], 1e-9)
            summary["mean_total"] = float(np.mean(totals))
    return summary


def _load_start(G, age: int, space: str, lat_dir: Path, z_dir: Path):
    """The latent (in ``space``) of the finished photo of ``age``, to warm-start the photos after it."""
    import torch

    from aging.encode.projector import from_ws

    if space == "z":
        zp = z_dir / f"{age}.npy"
        if not zp.exists():
            return None  # finished in another space: no z to start from
        return torch.from_numpy(aio.read_latent(zp, (G.z_dim,)))  # a damaged z: one line naming it
    ws = torch.from_numpy(aio.read_latent(lat_dir / f"{age}.npy", (G.num_ws, G.w_dim)))
    if space == "w" and bool((ws == ws[:1]).all()):
        return ws[0].clone()  # exactly the w it was made from
    return from_ws(ws.unsqueeze(0), space)[0]


def _write_batch(ages: list[int], paths: list[Path], proj, *, out: Path, space: str, rank: int, key: str) -> None:
    """Reconstructions, (z), latents, then the log lines of one batch (each line with the options key)."""
    recon = to_uint8(proj.images)
    ws = proj.ws.cpu().numpy().astype(np.float32)  # [n, num_ws, w_dim]
    lat = proj.latents.cpu().numpy().astype(np.float32)
    n = len(ages)
    init = proj.info.get("init")
    inits = list(init) if isinstance(init, (list, tuple)) else [init] * n
    for k, age in enumerate(ages):
        aio.save_image(out / "recon" / f"{age}.png", recon[k])
    if space == "z":
        for k, age in enumerate(ages):
            aio.save_npy(out / "z" / f"{age}.npy", lat[k])
    for k, age in enumerate(ages):
        aio.save_npy(out / "latents" / f"{age}.npy", ws[k])
    lines = []
    for k, age in enumerate(ages):
        rec = dict(age_days=int(age), photo=paths[k].name,
                   losses={name: float(v[k]) for name, v in proj.losses.items()},
                   psnr=round(float(proj.info["psnr"][k]), 3),
                   steps=int(proj.steps), seconds=round(proj.seconds / n, 4), batch=n,
                   init=inits[k], space=space, rank=rank, options=key)
        lines.append(json.dumps(aio.to_jsonable(rec), allow_nan=False))  # an infinite PSNR (exact match): null
    aio.append_lines(out / LOG_NAME, lines)
