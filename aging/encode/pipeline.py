"""The encode stage on disk: aligned photos -> latents, reconstructions and a per-photo log.

Input: a subject folder ``DATA/<subject>`` with ``aligned/<age_days>.png`` and ``manifest.csv``
(as written by ``aging fetch``; the manifest's ``kept`` rows are the photos), or a plain folder
of aligned images named ``<age_days>.png|jpg`` (digits only). Photos are processed in age order.
The stage's own outputs (``encode.png``, hidden temporaries) are never read back as photos.

Output (in the subject folder, or ``out``)::

    latents/<age_days>.npy   float32 (num_ws, w_dim), the W+ latent (whatever the space)
    recon/<age_days>.png     the reconstruction at the working resolution
    z/<age_days>.npy         float32 (z_dim,), only for --space z (to warm-start a resumed run)
    encode.jsonl             one JSON line per encoded photo: age_days, losses, psnr, steps, identity_distance
                             (dlib, reconstruction to photo; null without a face) and recon_face_found,
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
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from aging import io as aio
from aging.encode.chains import plan_resume
from aging.encode.options import EncodeError, SequenceOptions, recorded
from aging.errors import FileFormatError
from aging.photos import PhotoError, read_photo, subject_photos
from aging.progress import progress_bar
from aging.stylegan import to_uint8

LOG_NAME = "encode.jsonl"
CHART_NAME = "encode.png"
OPTIONS_NAME = "encode.options.json"
OPTIONS_FORMAT = "aging.encode.options/1"
OUTPUT_NAMES = frozenset({CHART_NAME})  # image files this stage writes beside the photos of a plain folder
KEY_LENGTH = 16  # hex digits of an options key


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


@dataclass(frozen=True)
class RunRecord:
    """What ``encode.options.json`` holds beside the options: the inputs by name (digested with the
    options, so they are part of the key) and the command line (recorded, not digested)."""

    generator: str | None = None      # the generator as given (path or registry name)
    vgg_weights: str | None = None    # the VGG16 weights file, for a perceptual loss
    argv: tuple[str, ...] | None = None


def encode_photos(G, photos: PhotoSet, *, loss, options: SequenceOptions = SequenceOptions(),
                  dist: tuple[int, int] = (0, 1), record: RunRecord = RunRecord(), progress: bool = True,
                  echo: Callable[[str], None] | None = None) -> dict:
    """Encode this rank's share of ``photos`` that are not finished; write their files.

    Parameters
    ----------
    G : Generator
    photos : PhotoSet
    loss : ImageLoss
        Its working resolution is the size photos are read at.
    options : SequenceOptions
        See :func:`aging.encode.projector.project_sequence`; recorded (:func:`recorded`) with the
        loss, the resolution, the world size, the generator's weights digest, the device and
        ``record``.
    dist : (rank, world)
        This process among ``world`` (torchrun's, :func:`dist_env`): it encodes its share of the
        photos (:func:`shard`).
    record : RunRecord
        The inputs by name and the command line, for ``encode.options.json``.
    progress : bool
        Show a progress bar (only where stderr is a terminal, and only on rank 0).
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
        A bad photo or options record, or a batch whose loss is not finite (its photos are named;
        nothing of that batch is written). Files of earlier batches stay finished.
    """
    echo = echo or (lambda msg: None)
    rank, world = dist
    a, b = shard(len(photos), rank, world)
    remove_temporaries(photos.out, photos.ages[a:b], shared=world == 1)
    finished = finished_photos(G, photos, range(a, b), echo=echo)
    done = [finished[i] for i in range(a, b)]
    todo = [a + k for k, d in enumerate(done) if not d]
    writer = _BatchWriter(photos, options, dist)
    if todo:
        for i in todo:  # fail before any work on a bad photo or a damaged options record
            check_photo(photos.paths[i], loss.resolution)
        read_options(photos.out)
        writer.prepare(_recorded_options(G, loss, options, world, record), record.argv)
        space = options.project.space
        plan = plan_resume(done, options, lambda i: _load_start(G, photos.ages[i], space, photos.out), first=a,
                           keys=photos.ages)
        _encode(G, photos, loss=loss, plan=plan, writer=writer, progress=progress and rank == 0, echo=echo)
    return writer.summary(skipped=len(done) - len(todo), share=[a, b])


def _recorded_options(G, loss, options: SequenceOptions, world: int, record: RunRecord) -> dict:
    """The options digested into the run's key (see the module docstring)."""
    from aging.stylegan.checkpoints import state_digest

    return dict(recorded(options), loss=dict(loss.terms), resolution=loss.resolution, world_size=world,
                generator_sha256=state_digest(G), device=str(G.w_avg.device), generator=record.generator,
                vgg_weights=record.vgg_weights)


def _encode(G, photos: PhotoSet, *, loss, plan, writer: _BatchWriter, progress: bool, echo) -> None:
    """Project the photos of ``plan`` and write each batch as it comes (with a progress bar)."""
    from aging.encode.projector import project_sequence, w_stats

    desc = f"encode {photos.out.name}" + (f" [rank {writer.rank}]" if writer.world > 1 else "")
    bar = progress_bar(total=plan.photos, unit="photo", desc=desc, quiet=not progress)
    w_std = w_stats(G)[1]
    writer.t0 = time.perf_counter()

    def on_oom(old, new):
        writer.batch = new
        echo(f"CUDA out of memory at batch {old}: continuing with batch {new}")

    def callback(step, per_photo, _every=25):
        if not bar.disable and (step + 1) % _every == 0:
            bar.set_postfix(step=step + 1, loss=f"{per_photo.mean().item():.4g}", refresh=True)

    try:
        for idx, proj in project_sequence(G, PhotoTargets(photos.paths, loss.resolution), loss=loss,
                                          options=writer.options, plan=plan, w_std=w_std, on_oom=on_oom,
                                          callback=callback):
            writer.write(idx, proj)
            bar.update(len(idx))
            bar.set_postfix(loss=f"{float(proj.losses['total'].mean()):.4g}", refresh=False)
    finally:
        bar.close()


def _load_start(G, age: int, space: str, out: Path):
    """The latent (in ``space``) of the finished photo of ``age``, to warm-start the photos after it."""
    import torch

    from aging.encode.projector import from_ws

    if space == "z":
        zp = out / "z" / f"{age}.npy"
        if not zp.exists():
            return None  # finished in another space: no z to start from
        return torch.from_numpy(aio.read_latent(zp, (G.z_dim,)))  # a damaged z: one line naming it
    ws = torch.from_numpy(aio.read_latent(out / "latents" / f"{age}.npy", (G.num_ws, G.w_dim)))
    if space == "w" and bool((ws == ws[:1]).all()):
        return ws[0].clone()  # exactly the w it was made from
    return from_ws(ws.unsqueeze(0), space)[0]


class _BatchWriter:
    """The files of one run: each batch is checked (finite), the options recorded before the first
    batch's files, then its reconstructions, (z), latents and log lines written; counts kept."""

    def __init__(self, photos: PhotoSet, options: SequenceOptions, dist: tuple[int, int]):
        self.photos, self.options = photos, options
        self.rank, self.world = dist
        self.space = options.project.space
        self.batch = options.batch  # halved on CUDA out-of-memory
        self.totals: list[float] = []
        self.distances: list[float] = []  # identity distances of the reconstructions that show a face
        self.scorer = None  # aging.score.faces.FaceScorer, made on first use
        self.key = self.options_record = self.argv = None
        self.written_key = None
        self.t0 = time.perf_counter()

    def prepare(self, options_record: dict, argv) -> None:
        """Make the output folders; the options (and command line) to record with the first batch."""
        self.options_record, self.argv = options_record, None if argv is None else list(argv)
        self.key = options_key(options_record)
        out = self.photos.out
        for d in ("latents", "recon") + (("z",) if self.space == "z" else ()):
            (out / d).mkdir(parents=True, exist_ok=True)

    def write(self, idx: list[int], proj) -> None:
        import torch

        photos = self.photos
        bad = ~(torch.isfinite(proj.losses["total"]) & torch.isfinite(proj.ws.flatten(1)).all(1)
                & torch.isfinite(proj.latents.flatten(1)).all(1)).cpu()
        if bool(bad.any()):
            names = [photos.paths[i].name for i, b_ in zip(idx, bad.tolist()) if b_]
            raise EncodeError(f"{photos.source}: the loss is not finite (NaN or inf) for {', '.join(names)}; "
                              "stopped without writing their latents (try a smaller --lr or --lr-after-first)")
        if self.written_key is None:
            self.written_key = record_options(photos.out, self.options_record, self.argv)
        self._write_files([photos.ages[i] for i in idx], [photos.paths[i] for i in idx], proj)
        self.totals.extend(float(v) for v in proj.losses["total"].cpu())

    def _write_files(self, ages: list[int], paths: list[Path], proj) -> None:
        """Reconstructions, (z), latents, then the log lines of one batch (each line with the options key)."""
        out = self.photos.out
        recon = to_uint8(proj.images)
        ws = proj.ws.cpu().numpy().astype(np.float32)  # [n, num_ws, w_dim]
        lat = proj.latents.cpu().numpy().astype(np.float32)
        n = len(ages)
        init = proj.info.get("init")
        inits = list(init) if isinstance(init, (list, tuple)) else [init] * n
        for k, age in enumerate(ages):
            aio.save_image(out / "recon" / f"{age}.png", recon[k])
        if self.space == "z":
            for k, age in enumerate(ages):
                aio.save_npy(out / "z" / f"{age}.npy", lat[k])
        for k, age in enumerate(ages):
            aio.save_npy(out / "latents" / f"{age}.npy", ws[k])
        identity = self._identity(paths, recon) if self.options.identity else [{}] * n
        lines = []
        for k, age in enumerate(ages):
            rec = dict(age_days=int(age), photo=paths[k].name,
                       losses={name: float(v[k]) for name, v in proj.losses.items()},
                       psnr=round(float(proj.info["psnr"][k]), 3),
                       steps=int(proj.info["photo_steps"][k]), seconds=round(proj.seconds / n, 4), batch=n,
                       init=inits[k], space=self.space, rank=self.rank, options=self.key, **identity[k])
            lines.append(json.dumps(aio.to_jsonable(rec), allow_nan=False))  # an infinite PSNR (exact match): null
        aio.append_lines(out / LOG_NAME, lines)

    def _identity(self, paths: list[Path], recon: np.ndarray) -> list[dict]:
        """Per photo: whether its reconstruction shows a face and the dlib identity distance between
        them (same person under 0.6; None when either shows no face), a quality PSNR does not see."""
        from aging.score.faces import FaceScorer, distance

        if self.scorer is None:
            self.scorer = FaceScorer(ages=False)
        out = []
        for path, img in zip(paths, recon):
            got = self.scorer.analyse(img)
            d = distance(self.scorer.analyse(aio.read_image(path)).descriptor, got.descriptor)
            out.append(dict(recon_face_found=got.found, identity_distance=None if d is None else round(d, 4)))
            if d is not None:
                self.distances.append(d)
        return out

    def summary(self, *, skipped: int, share: list[int]) -> dict:
        """What :func:`encode_photos` returns."""
        encoded = len(self.totals)
        seconds = time.perf_counter() - self.t0 if encoded else 0.0
        return dict(encoded=encoded, skipped=skipped, seconds=seconds,
                    photos_per_s=encoded / max(seconds, 1e-9) if encoded else 0.0,
                    mean_total=float(np.mean(self.totals)) if encoded else None, batch=self.batch, share=share,
                    mean_identity_distance=float(np.mean(self.distances)) if self.distances else None,
                    options=self.written_key)
