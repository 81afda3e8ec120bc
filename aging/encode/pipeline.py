"""The encode stage on disk: aligned photos -> latents, reconstructions and a per-photo log.

Input: a subject folder ``DATA/<subject>`` with ``aligned/<age_days>.png`` and ``manifest.csv``
(as written by ``aging fetch``; the manifest's ``kept`` rows are the photos), or a plain folder
of aligned images named ``<age_days>.png|jpg``. Photos are processed in age order.

Output (in the subject folder, or ``out``)::

    latents/<age_days>.npy   float32 (num_ws, w_dim), the W+ latent (whatever the space)
    recon/<age_days>.png     the reconstruction at the working resolution
    z/<age_days>.npy         float32 (z_dim,), only for --space z (to warm-start a resumed run)
    encode.jsonl             one JSON line per photo: age_days, losses, psnr, steps, seconds, ...

Every file is written to a temporary name and renamed. A photo is finished when its latent
exists (written after its reconstruction), so a re-run skips finished photos and a killed run
loses at most the batch in flight. ``encode.jsonl`` is appended once per batch (one ``write``);
if a run is killed between a batch's latents and its log lines, those photos have no line.

Several processes (``torchrun --nproc-per-node N -m aging encode ...``) split the age-ordered
photos into N contiguous shares, one per rank (``RANK``/``WORLD_SIZE``); each rank writes only
the files of its own photos, and a rank's warm start never crosses into another's share, so the
result does not depend on timing. Shares are computed over all photos (finished or not), so a
resumed run gives every rank the same share again.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from aging.errors import AgingError

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
LOG_NAME = "encode.jsonl"
CHART_NAME = "encode.png"
OPTIONS_NAME = "encode.options.json"
MANIFEST_NAME = "manifest.csv"  # written by aging fetch


class EncodeError(AgingError, ValueError):
    """Bad input of the encode stage (one line; names the file)."""


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
    """Photos of a subject folder (``aligned/`` + ``manifest.csv``) or of a plain folder, in age order.

    A subject folder written by ``aging fetch`` is read through its ``manifest.csv``: the rows of
    status ``kept``, in manifest (video) order, each with its ``file``; aligned images that the
    manifest does not keep (for example photos excluded since) are ignored. Without a manifest,
    every ``<age_days>.png|jpg`` of ``folder/aligned`` (or of ``folder``) is a photo.

    Raises
    ------
    EncodeError
        No such folder, no photos, an image whose name is not an age in days, two images of one
        age, a manifest that cannot be read or names a missing file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EncodeError(f"{folder}: no such folder")
    out = Path(out) if out is not None else folder
    manifest = folder / MANIFEST_NAME
    if manifest.is_file():
        ages, paths = _kept_from_manifest(manifest)
        return PhotoSet(source=folder / "aligned", out=out, ages=ages, paths=paths)
    src = folder / "aligned" if (folder / "aligned").is_dir() else folder
    found: dict[int, Path] = {}
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.suffix.lower() not in IMAGE_EXTS or p.name.startswith("."):
            continue
        if not p.stem.isdigit():
            raise EncodeError(f"{p}: image name is not an age in days (expected e.g. 7300.png)")
        age = int(p.stem)
        if age in found:
            raise EncodeError(f"{p}: a second photo of age {age} days (also {found[age].name})")
        found[age] = p
    if not found:
        raise EncodeError(f"{src}: no photos (expected aligned images named <age_days>.png or .jpg)")
    ages = sorted(found)
    return PhotoSet(source=src, out=out, ages=ages, paths=[found[a] for a in ages])


def _kept_from_manifest(manifest: Path) -> tuple[list[int], list[Path]]:
    """``(ages, paths)`` of the ``kept`` rows of an ``aging fetch`` manifest, in its order."""
    import csv

    ages: list[int] = []
    paths: list[Path] = []
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"age_days", "status", "file"} - set(reader.fieldnames or [])
            if missing:
                raise EncodeError(f"{manifest}: not an aging fetch manifest (no column {sorted(missing)[0]!r})")
            for line, row in enumerate(reader, start=2):
                if row["status"] != "kept":
                    continue
                try:
                    age = int(row["age_days"])
                except (TypeError, ValueError):
                    raise EncodeError(f"{manifest}:{line}: kept row without an age in days") from None
                if ages and age <= ages[-1]:
                    raise EncodeError(f"{manifest}:{line}: ages must increase down the manifest "
                                      f"({age} after {ages[-1]})")
                path = manifest.parent / (row["file"] or f"aligned/{age}.png")
                if not path.is_file():
                    raise EncodeError(f"{path}: listed as kept in {manifest.name} but missing "
                                      "(run aging fetch again to rebuild it)")
                ages.append(age)
                paths.append(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EncodeError(f"{manifest}: unreadable manifest ({exc.__class__.__name__}: {exc})") from None
    if not ages:
        raise EncodeError(f"{manifest}: no kept photos to encode")
    return ages, paths


def check_photo(path: Path, min_size: int) -> int:
    """Check that ``path`` is a readable square image of at least ``min_size`` px; return its size."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            size = im.size
            im.verify()  # PNG: chunk CRCs and structure, without decoding the pixels
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
        raise EncodeError(f"{path}: unreadable image ({exc.__class__.__name__}: {exc})") from None
    w, h = size
    if w != h:
        raise EncodeError(f"{path}: image is {w}x{h} px, expected a square aligned face")
    if w < min_size:
        raise EncodeError(f"{path}: image is {w}x{h} px, smaller than the working resolution {min_size} px "
                          "(use a smaller --resolution)")
    return w


def read_photo(path: Path, resolution: int) -> np.ndarray:
    """Decode an aligned photo as RGB, area-resized to ``resolution`` px: uint8 ``[r, r, 3]``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size[0] != im.size[1]:
                raise EncodeError(f"{path}: image is {im.size[0]}x{im.size[1]} px, expected a square aligned face")
            if im.size[0] != resolution:
                im = im.resize((resolution, resolution), Image.Resampling.BOX)
            return np.asarray(im, dtype=np.uint8).copy()
    except EncodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise EncodeError(f"{path}: unreadable image ({exc.__class__.__name__}: {exc})") from None


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
# Atomic files


def _atomic_write(path: Path, write: Callable[[object], None], *, binary: bool = True) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_png_atomic(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    _atomic_write(path, lambda fh: Image.fromarray(image).save(fh, format="PNG"))


def write_json_atomic(path: Path, obj) -> None:
    _atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=2, default=str) + "\n"), binary=False)


def append_lines(path: Path, lines: list[str]) -> None:
    """Append whole lines with one ``write`` call (O_APPEND), then flush to disk."""
    data = "".join(line.rstrip("\n") + "\n" for line in lines).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_log(path: Path) -> dict[int, dict]:
    """Records of ``encode.jsonl`` by age (the last line of an age wins; torn lines are skipped)."""
    out = {}
    if Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            try:
                rec = json.loads(line)
                out[int(rec["age_days"])] = rec
            except (ValueError, KeyError, TypeError):
                continue
    return out


def encode_report(out: Path) -> dict | None:
    """What :func:`aging.render.charts.plot_encode` draws, from ``out``'s finished photos:
    ``ages``, ``psnr``, ``init`` (from ``encode.jsonl``) and ``steps`` (RMS W+ step from the
    previous finished photo; NaN for the first). None when no photo is finished."""
    log = read_log(Path(out) / LOG_NAME)
    ages = [a for a in sorted(log) if (Path(out) / "latents" / f"{a}.npy").is_file()]
    if not ages:
        return None
    steps = [float("nan")]
    prev = np.load(Path(out) / "latents" / f"{ages[0]}.npy", allow_pickle=False)
    for a in ages[1:]:
        cur = np.load(Path(out) / "latents" / f"{a}.npy", allow_pickle=False)
        steps.append(float(np.sqrt(np.mean(np.square(cur - prev)))) if cur.shape == prev.shape else float("nan"))
        prev = cur
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


def encode_photos(G, photos: PhotoSet, *, loss, steps: int, steps_after_first: int, batch: int, space: str,
                  init: str, lr: float, heads: str = "best", chain_length: int | None = None,
                  min_chain: int | None = None,
                  lr_after_first: float = 0.05, smooth: float = 0.0, mean_reg: float = 0.0, clip: float = 3.0,
                  fp16: bool = False, seed: int = 0, rank: int = 0, world: int = 1, progress: bool = True,
                  on_batch: Callable[[list[int]], None] | None = None,
                  echo: Callable[[str], None] | None = None) -> dict:
    """Encode this rank's share of ``photos`` that have no latent yet; write their files.

    Parameters
    ----------
    G : Generator
    photos : PhotoSet
    loss : ImageLoss
        Its working resolution is the size photos are read at.
    steps, steps_after_first, batch, space, init, heads, chain_length, min_chain, lr, lr_after_first, smooth,
    mean_reg, clip, fp16, seed
        See :func:`aging.encode.projector.project_sequence` and :func:`~.projector.project`
        (``min_chain`` None: ``DEFAULT_MIN_CHAIN``).
    rank, world : int
        This process's share of the photos (see :func:`shard`).
    progress : bool
        Show a progress bar (only where output is a terminal).
    on_batch : callable(ages), optional
        Called after a batch's files are written.
    echo : callable(str), optional
        Where notices go (batch size halved, ...).

    Returns
    -------
    dict
        ``encoded``, ``skipped``, ``seconds``, ``photos_per_s``, ``mean_total`` (mean final loss of
        the photos encoded now), ``batch`` (final batch size), ``share`` ([start, stop)).
    """
    from tqdm.auto import tqdm

    from aging.encode.projector import DEFAULT_MIN_CHAIN, plan_chains, project_sequence, w_stats
    from aging.synthetic import save_npy_atomic

    echo = echo or (lambda msg: None)
    out = photos.out
    lat_dir, rec_dir, z_dir = out / "latents", out / "recon", out / "z"
    lat_dir.mkdir(parents=True, exist_ok=True)
    rec_dir.mkdir(parents=True, exist_ok=True)
    if space == "z":
        z_dir.mkdir(parents=True, exist_ok=True)
    a, b = shard(len(photos), rank, world)
    done = [(lat_dir / f"{age}.npy").is_file() for age in photos.ages]
    todo = [i for i in range(a, b) if not done[i]]
    summary = dict(encoded=0, skipped=(b - a) - len(todo), seconds=0.0, photos_per_s=0.0, mean_total=None,
                   batch=batch, share=[a, b])
    if not todo:
        return summary
    res = loss.resolution
    for i in todo:  # fail before any work on a bad photo
        check_photo(photos.paths[i], res)

    w_std = w_stats(G)[1]
    # The share's chains are planned over all its photos (finished or not), so a resumed run
    # continues every chain from its last finished photo, in the same batches.
    chains, starts, offsets = [], [], []
    min_chain = DEFAULT_MIN_CHAIN if min_chain is None else min_chain
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
            ages = [photos.ages[i] for i in idx]
            _write_batch(ages, [photos.paths[i] for i in idx], proj, out=out, space=space, rank=rank,
                         save_npy=save_npy_atomic)
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
        if not zp.is_file():
            return None  # finished in another space: no z to start from
        z = np.load(zp, allow_pickle=False)
        if z.shape != (G.z_dim,):
            raise EncodeError(f"{zp}: z has shape {z.shape}, expected ({G.z_dim},)")
        return torch.from_numpy(z.astype(np.float32))
    path = lat_dir / f"{age}.npy"
    try:
        ws = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise EncodeError(f"{path}: unreadable latent ({exc.__class__.__name__}: {exc})") from None
    if ws.shape != (G.num_ws, G.w_dim) or not np.all(np.isfinite(ws)):
        raise EncodeError(f"{path}: latent of shape {ws.shape} does not fit the generator's W+ "
                          f"({G.num_ws}, {G.w_dim}) or is not finite (delete it to re-encode)")
    ws = torch.from_numpy(ws.astype(np.float32))
    if space == "w" and bool((ws == ws[:1]).all()):
        return ws[0].clone()  # exactly the w it was made from
    return from_ws(ws.unsqueeze(0), space)[0]


def _write_batch(ages: list[int], paths: list[Path], proj, *, out: Path, space: str, rank: int, save_npy) -> None:
    """Reconstructions, (z), latents, then the log lines of one batch."""
    recon = to_uint8(proj.images)
    ws = proj.ws.cpu().numpy().astype(np.float32)  # [n, num_ws, w_dim]
    lat = proj.latents.cpu().numpy().astype(np.float32)
    n = len(ages)
    init = proj.info.get("init")
    inits = list(init) if isinstance(init, (list, tuple)) else [init] * n
    for k, age in enumerate(ages):
        save_png_atomic(out / "recon" / f"{age}.png", recon[k])
        if space == "z":
            save_npy(out / "z" / f"{age}.npy", lat[k])
        save_npy(out / "latents" / f"{age}.npy", ws[k])
    lines = []
    for k, age in enumerate(ages):
        rec = dict(age_days=int(age), photo=paths[k].name,
                   losses={name: float(v[k]) for name, v in proj.losses.items()},
                   psnr=round(float(proj.info["psnr"][k]), 3),
                   steps=int(proj.steps), seconds=round(proj.seconds / n, 4), batch=n,
                   init=inits[k], space=space, rank=rank)
        lines.append(json.dumps(rec))
    append_lines(out / LOG_NAME, lines)
