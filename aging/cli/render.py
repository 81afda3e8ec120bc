"""CLI of the render stage: ``render`` (aging videos), ``mix`` (style mixing), ``morph``.

Each verb takes its options as ``**options``: the generator options all three share become a
:class:`GeneratorOptions` (:func:`pop_generator_options`), the rest the verb's own options
dataclass; the verb's body is then a few named steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path

import click

from aging.cli.common import AGE, FRAME_AGES, MAX_FRAMES, Command, FiniteFloat
from aging.devices import DEVICE_HELP, DeviceError, check_device_name
from aging.render.video import DecodeOptions
from aging.score.options import ScoreOptions

GENERATOR_HELP = "Generator: a checkpoint path (.pkl or the project's format) or a registry name (aging weights list)."

SIZE = click.IntRange(8, 4096)
FPS = FiniteFloat(min=0, min_open=True, max=240)


def _device(ctx, param, value: str) -> str:
    try:
        return check_device_name(value, option="")
    except DeviceError as exc:
        raise click.BadParameter(str(exc).strip()) from None


def _formats(ctx, param, text: str) -> list[str]:
    out = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in out if f not in ("gif", "mp4")]
    if bad or not out:
        raise click.BadParameter(f"formats are gif and/or mp4, got {text!r}")
    return out


# ---------------------------------------------------------------------------------------------
# The options every decoding verb shares


def generator_options(f):
    """Options shared by every command that decodes latents (read by :func:`pop_generator_options`)."""
    opts = [
        click.option("--generator", "-g", required=True, metavar="PATH|NAME", help=GENERATOR_HELP),
        click.option("--device", default="auto", show_default=True, callback=_device, help=DEVICE_HELP),
        click.option("--batch", default=DecodeOptions.batch, show_default=True, type=click.IntRange(1, 1024),
                     help="Latents decoded per generator call."),
        click.option("--fp16", is_flag=True, help="Half precision on CUDA (faster; tiny differences)."),
        click.option("--noise-mode", type=click.Choice(["const", "random", "none"]),
                     default=DecodeOptions.noise_mode, show_default=True,
                     help="Per-pixel noise of the synthesis network."),
        click.option("--size", default=256, show_default=True, type=SIZE, help="Frame size (px) of each face."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@dataclass(frozen=True)
class GeneratorOptions:
    """Which generator, on which device, and how latents are decoded."""

    generator: str  # a checkpoint path or a registry name
    device: str  # auto, cpu, cuda or cuda:N
    decode: DecodeOptions

    def load(self):
        """The generator, or one line naming it (missing, unsafe or unknown file; no CUDA)."""
        from aging.devices import resolve_device
        from aging.errors import AgingError
        from aging.render.video import RenderError
        from aging.stylegan import load_generator

        device = resolve_device(self.device)
        try:
            return load_generator(self.generator, device=device)
        except AgingError:
            raise
        except OSError as exc:
            raise RenderError(f"{self.generator}: cannot read the generator ({exc.strerror or exc})") from None


def pop_generator_options(options: dict) -> GeneratorOptions:
    """Take the :func:`generator_options` out of a verb's ``options``; the verb's own remain."""
    decode = DecodeOptions(**{f.name: options.pop(f.name) for f in fields(DecodeOptions)})
    return GeneratorOptions(options.pop("generator"), options.pop("device"), decode)


# ---------------------------------------------------------------------------------------------
# aging render


@dataclass(frozen=True)
class RenderOptions:
    """``aging render``'s own options (defaults: the click options below)."""

    model_dir: Path | None  # a run directory of `aging train`
    direction: Path | None  # or a direction .npy (a published one: (18, 512), (512,), (1, 512)) ...
    rate: float | None  # ... moved along at this many latent units per year
    source: Path | None  # the latent to age (with --model)
    start_age: int | None  # its age in days (None: from its <age_days>.npy name)
    ages: list[int] | None  # target ages in days (with --model)
    latents_dir: Path | None  # instead of a model: a subject's encoded latents
    subject: Path | None  # the subject whose real photos go beside the generated faces
    fps: float
    formats: list[str]
    no_caption: bool
    out: Path
    quiet: bool
    score: bool = False  # score each generated face against the subject's photos (aging score)


@dataclass
class Frames:
    """What the frames of a render show, checked before the generator loads."""

    ages: object  # [T] int days, one per frame
    model: object = None  # the fitted age model (--model) ...
    start_age: int | None = None  # ... and the source latent's age
    subject: object = None  # or the encoded subject (--latents)


def _load_model(model_dir: Path):
    """A saved age model, or one line naming it (missing, damaged, unknown format)."""
    import zipfile
    import zlib

    from aging.models import load_model
    from aging.render.video import RenderError

    try:
        return load_model(model_dir)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        from aging.errors import AgingError

        if isinstance(exc, AgingError):  # ModelError: already one line naming the file
            raise
        raise RenderError(f"{model_dir}: cannot load the model ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'damaged file'})") from None


def plan_frames(o: RenderOptions) -> Frames:
    """The frame ages and what they are decoded from; every cheap check, in the order a user
    fixes them, before the generator is loaded."""
    import numpy as np

    from aging import io
    from aging.render.video import RenderError

    if sum(x is not None for x in (o.model_dir, o.direction, o.latents_dir)) != 1:
        raise click.UsageError("give one of --model or --direction (with --source and --ages) or --latents")
    if (o.direction is None) != (o.rate is None):
        raise click.UsageError("--direction and --rate go together (--rate: latent units per year along it)")
    if o.latents_dir is not None:
        from aging.latents import load_subject

        subj = load_subject(o.latents_dir)
        if len(subj) > MAX_FRAMES:
            raise RenderError(f"{o.latents_dir}: {len(subj)} latents; a video takes at most {MAX_FRAMES} frames")
        return Frames(ages=subj.ages, subject=subj)
    if o.source is None or o.ages is None:
        what = "--model" if o.model_dir is not None else "--direction"
        raise click.UsageError(f"{what} needs --source LATENT.npy and --ages START:STOP:STEP")
    start_age = o.start_age
    if start_age is None:
        if not o.source.stem.isdigit():
            raise click.UsageError(f"--start-age is needed (the --source file name {o.source.name} is not "
                                   "<age_days>.npy)")
        start_age = int(o.source.stem)
    model = _load_model(o.model_dir) if o.model_dir is not None else io.read_latent(o.direction)
    io.read_latent(o.source)  # a missing, damaged or .npz file: one line naming it
    return Frames(ages=np.asarray(o.ages, dtype=np.int64), model=model, start_age=start_age)


def frame_latents(o: RenderOptions, frames: Frames, G):
    """W+ latents ``[T, num_ws, w_dim]`` of the frames: the model's predictions from the source,
    or the subject's own; each checked against the generator."""
    import numpy as np

    from aging.render.video import RenderError, load_latent

    want = (G.num_ws, G.w_dim)
    if o.direction is not None:
        frames.model = direction_model(frames.model, o.rate, want, o.direction)
    if frames.model is not None:
        if tuple(frames.model.latent_shape_) != want:
            raise RenderError(f"{o.model_dir}: model latents {tuple(frames.model.latent_shape_)} do not fit the "
                              f"generator's W+ {want}")
        ws = frames.model.predict(load_latent(o.source, G), frames.start_age, frames.ages)
    else:
        ws = frames.subject.latents
        if ws.shape[1:] != want:
            raise RenderError(f"{o.latents_dir}: latents of shape {ws.shape[1:]} do not fit the "
                              f"generator's W+ {want}")
    if not np.all(np.isfinite(ws)):
        raise RenderError("the predicted latents contain NaN or inf")
    return ws


def direction_model(direction, rate_per_year: float, latent_shape, path: Path):
    """The ``direction`` age model for a given direction (any published shape, made unit norm) and
    rate, without training: ``latent(t) = start + (t - t_start) / 1 year * rate * d``."""
    import numpy as np

    from aging.ages import DAYS_PER_YEAR
    from aging.models.direction import AgeDirection, broadcast_direction
    from aging.render.video import RenderError

    d = broadcast_direction(direction, latent_shape, where=str(path))
    norm = np.linalg.norm(d)
    if norm == 0:
        raise RenderError(f"{path}: the direction is zero")
    model = AgeDirection(direction=str(path))
    model.latent_shape_ = tuple(latent_shape)
    model.direction_ = (d / norm).astype(np.float32)
    model.scale_ = np.float64(rate_per_year / DAYS_PER_YEAR)
    return model


def real_photos(subject: Path):
    """The subject's aligned photos (its manifest's kept ones), or one line naming the folder."""
    from aging.photos import PhotoError, subject_photos
    from aging.render.video import RenderError

    try:
        return subject_photos(subject)
    except PhotoError as exc:
        raise RenderError(f"{exc} (--subject needs the subject's aligned photos)") from None


def write_render(o: RenderOptions, gen: GeneratorOptions, G, ws, ages, photos, scores=None):
    """Decode ``ws`` and write the video: each frame captioned with its age, beside the real photo
    nearest in age when there are ``photos``; each generated face scored by ``scores``
    (:class:`aging.score.pipeline.FrameScores`) when given. Returns the closed writer."""
    from aging.ages import format_age
    from aging.photos import read_photo
    from aging.render.video import VideoWriter, caption, decode, nearest, side_by_side

    real_idx = nearest(photos.ages, ages) if photos is not None else None
    label = "generated" if photos is not None else "age"
    with VideoWriter(o.out, fps=o.fps, formats=o.formats) as writer:
        for k, frame in enumerate(decode(G, ws, gen.decode, quiet=o.quiet, desc="render")):
            if scores is not None:
                scores.add(int(ages[k]), frame)
            if not o.no_caption:
                frame = caption(frame, f"{label} {format_age(ages[k])}")
            if real_idx is not None:
                real = read_photo(photos.paths[real_idx[k]], gen.decode.size)
                if not o.no_caption:
                    real = caption(real, f"real {format_age(photos.ages[real_idx[k]])}")
                frame = side_by_side(real, frame)
            writer.write(frame)
    return writer


def frame_scores(photos):
    """A :class:`~aging.score.pipeline.FrameScores` for ``--score`` (its models load here, before
    the generator)."""
    from aging.score.faces import dlib_models
    from aging.score.pipeline import FrameScores

    scores = FrameScores(photos, ScoreOptions(quiet=True))
    dlib_models()  # a missing dlib model fails now, in one line
    return scores


def score_summary(scores, photos, start_age: int | None) -> dict:
    """``OUT.json``'s ``score``: the summary of ``aging score`` for the rendered frames; the source
    photo is the real one nearest the source latent's age (the earliest for ``--latents``)."""
    from aging.score.pairing import nearest_real

    source = photos.paths[int(nearest_real(photos.ages, [start_age])[0])] if start_age is not None else None
    return scores.summary(source)


@click.command(cls=Command)
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="A run directory of `aging train` (model.json).")
@click.option("--direction", type=click.Path(path_type=Path), default=None, metavar="FILE.npy",
              help="Instead of a model: an age direction (Puzer's (18, 512) age.npy, an InterFaceGAN "
                   "(512,) or (1, 512) boundary, ...), with --rate.")
@click.option("--rate", type=FiniteFloat(), default=None, metavar="R",
              help="With --direction: latent units per year along the (unit) direction.")
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="Latent .npy of the face to age, e.g. DATA/<subject>/latents/7300.npy.")
@click.option("--start-age", type=AGE, default=None,
              help="Age of the source photo (7300 or 20y) [default: from a <age_days>.npy file name].")
@click.option("--ages", type=FRAME_AGES, default=None, metavar="START:STOP:STEP",
              help=f"Target ages, e.g. 20y:60y:1y, or a list 20y,30y,40y (at most {MAX_FRAMES} frames).")
@click.option("--latents", "latents_dir", type=click.Path(path_type=Path), default=None,
              help="Instead of a model: decode this subject's encoded latents in age order.")
@click.option("--subject", type=click.Path(path_type=Path), default=None,
              help="Put the subject's real aligned photo nearest to each age beside the generated face.")
@generator_options
@click.option("--fps", default=10.0, show_default=True, type=FPS)
@click.option("--format", "formats", default="gif,mp4", show_default=True, callback=_formats,
              help="gif, mp4 or both.")
@click.option("--no-caption", is_flag=True, help="No age caption on the frames.")
@click.option("--score", is_flag=True, help="Score each generated face against the --subject photos (identity "
                                           "distance, apparent age, as aging score); the summary goes into OUT.json.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file; OUT.gif and/or OUT.mp4 are written.")
@click.option("-q", "--quiet", is_flag=True)
def render(**options):
    """Decode latents into an aging video (GIF and MP4), real and generated side by side.

    \b
    Examples:
      aging render --model runs/offset -g stylegan2-ffhq-1024 --source data/anna/latents/7300.npy \\
                   --ages 20y:60y:1y -o runs/offset/anna.gif
      aging render --model runs/offset -g G.pkl --source me.npy --start-age 25y --ages 25y:70y:1y \\
                   --subject data/anna -o anna.gif
      aging render --latents data/anna -g G.pkl --subject data/anna -o anna_recon.mp4   # reconstruction video
      aging render --direction age.npy --rate 0.5 -g G.pkl --source me.npy --start-age 25y --ages 25y:60y:1y -o me.gif
    """
    from aging import io

    gen = pop_generator_options(options)
    o = RenderOptions(**options)
    t0 = time.perf_counter()
    frames = plan_frames(o)
    if o.score and o.subject is None:
        raise click.UsageError("--score needs --subject (the real photos the frames are scored against)")
    photos = real_photos(o.subject) if o.subject is not None else None
    scores = frame_scores(photos) if o.score else None
    G = gen.load()
    writer = write_render(o, gen, G, frame_latents(o, frames, G), frames.ages, photos, scores)
    ages = [int(a) for a in frames.ages]
    io.write_json(writer.base.with_name(f"{writer.base.name}.json"), {
        "frames": writer.count, "ages_days": ages, "generator": str(gen.generator),
        "model": str(o.model_dir) if o.model_dir else None,
        "direction": str(o.direction) if o.direction else None, "rate_per_year": o.rate, "source": str(o.source) if o.source else None,
        "latents": str(o.latents_dir) if o.latents_dir else None, "subject": str(o.subject) if o.subject else None,
        **({"score": score_summary(scores, photos, frames.start_age)} if scores is not None else {})})
    paths = ", ".join(str(p) for p in writer.paths.values())
    click.echo(f"wrote {writer.count} frames ({ages[0]}..{ages[-1]} days) to {paths} "
               f"in {time.perf_counter() - t0:.1f} s")


# ---------------------------------------------------------------------------------------------
# aging mix


@dataclass(frozen=True)
class MixOptions:
    """``aging mix``'s own options."""

    source: Path  # the latent whose coarse layers are kept
    target: Path  # a latent, or a folder of latents (their mean)
    layers: str  # W+ layers taken from the target: a range, a list or a preset
    as_grid: bool  # one row over every preset instead
    out: Path


@click.command(cls=Command)
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--layers", default="high", show_default=True, metavar="RANGE|PRESET",
              help="W+ layers taken from TARGET: 8:18, 1,3,5, or top/high/mid/alternating.")
@click.option("--grid", "as_grid", is_flag=True, help="One row over every preset instead of --layers.")
@generator_options
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output PNG.")
def mix(**options):
    """Style mixing: SOURCE's coarse layers, chosen finer layers from TARGET.

    TARGET is a latent .npy or a folder of latents, whose mean is used (e.g. a folder of old
    faces). Writes SOURCE | TARGET | mixed (or every preset with --grid) as one PNG.

    \b
    Examples:
      aging mix young.npy old.npy -g G.pkl --layers 8:18 -o mix.png
      aging mix young.npy data/old_faces/ -g G.pkl --grid -o mix_grid.png
    """
    import numpy as np

    from aging import io
    from aging.render.edits import layer_presets, load_target, mix as mix_ws, parse_layers
    from aging.render.video import RenderError, caption, decode, load_latent, side_by_side

    gen = pop_generator_options(options)
    o = MixOptions(**options)
    if not o.source.exists():
        raise click.UsageError(f"SOURCE {o.source}: no such latent file")
    if not o.target.exists():
        raise click.UsageError(f"TARGET {o.target}: no such latent file or folder")
    G = gen.load()
    src = load_latent(o.source, G)
    tgt, n = load_target(o.target, G)
    try:
        sets = layer_presets(G.num_ws) if o.as_grid else {o.layers: parse_layers(o.layers, G.num_ws)}
    except RenderError as exc:
        raise click.UsageError(f"--layers: {exc}") from None
    ws = np.stack([src, tgt] + [mix_ws(src, tgt, ls) for ls in sets.values()])
    labels = ["source", "target" if n == 1 else f"mean of {n}"] + [f"{k}" for k in sets]
    frames = [caption(f, lab) for f, lab in zip(decode(G, ws, gen.decode), labels)]
    io.save_image(o.out, side_by_side(*frames))
    click.echo(f"wrote {o.out} ({', '.join(labels)})")


# ---------------------------------------------------------------------------------------------
# aging morph


@dataclass(frozen=True)
class MorphOptions:
    """``aging morph``'s own options."""

    a: Path  # the first face's latent
    b: Path  # the last face's latent
    frames: int  # frames from A to B, both included
    space: str  # w: W/W+ latents, linear; z: z vectors, spherical then mapped
    bounce: bool  # back from B to A
    fps: float
    formats: list[str]
    out: Path
    quiet: bool


@click.command(cls=Command)
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--frames", default=60, show_default=True, type=click.IntRange(2, MAX_FRAMES),
              help="Frames from A to B (both included).")
@click.option("--space", type=click.Choice(["w", "z"]), default="w", show_default=True,
              help="w: A, B are W/W+ latents (linear); z: they are z vectors (spherical, then mapped).")
@click.option("--bounce", is_flag=True, help="Go back from B to A (a seamless loop).")
@generator_options
@click.option("--fps", default=20.0, show_default=True, type=FPS)
@click.option("--format", "formats", default="gif", show_default=True, callback=_formats,
              help="gif, mp4 or both.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("-q", "--quiet", is_flag=True)
def morph(**options):
    """Morph between two faces: interpolate their latents and decode each step.

    \b
    Examples:
      aging morph data/anna/latents/7300.npy data/bob/latents/9000.npy -g G.pkl --frames 60 -o morph.gif
      aging morph z1.npy z2.npy --space z -g G.pkl -o morph_z.gif
    """
    import numpy as np

    from aging import io
    from aging.render.edits import morph_ws
    from aging.render.video import VideoWriter, decode

    gen = pop_generator_options(options)
    o = MorphOptions(**options)
    ends = [io.read_latent(p) for p in (o.a, o.b)]  # missing, damaged or .npz: one line naming the file
    G = gen.load()
    ws = morph_ws(G, ends[0], ends[1], o.frames, o.space, names=(str(o.a), str(o.b)))
    if o.bounce:
        ws = np.concatenate([ws, ws[-2:0:-1]])
    with VideoWriter(o.out, fps=o.fps, formats=o.formats) as writer:
        for frame in decode(G, ws, gen.decode, quiet=o.quiet, desc="morph"):
            writer.write(frame)
    click.echo(f"wrote {writer.count} frames to {', '.join(str(p) for p in writer.paths.values())}")


COMMANDS = [render, mix, morph]
