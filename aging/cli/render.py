"""CLI of the render stage: ``render`` (aging videos), ``mix`` (style mixing), ``morph``."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from aging.cli.common import AGE, FRAME_AGES, MAX_FRAMES, Command, FiniteFloat

GENERATOR_HELP = "Generator: a checkpoint path (.pkl or the project's format) or a registry name (aging weights list)."
_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")

SIZE = click.IntRange(8, 4096)
FPS = FiniteFloat(min=0, min_open=True, max=240)


def _device(ctx, param, value: str) -> str:
    if not _DEVICE.match(value):
        raise click.BadParameter(f"{value!r} is not a device (use auto, cpu, cuda or cuda:N)")
    return value


def generator_options(f):
    """Options shared by every command that decodes latents."""
    opts = [
        click.option("--generator", "-g", required=True, metavar="PATH|NAME", help=GENERATOR_HELP),
        click.option("--device", default="auto", show_default=True, callback=_device,
                     help="cpu, cuda, cuda:N or auto."),
        click.option("--batch", default=8, show_default=True, type=click.IntRange(1, 1024),
                     help="Latents decoded per generator call."),
        click.option("--fp16", is_flag=True, help="Half precision on CUDA (faster; tiny differences)."),
        click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const",
                     show_default=True, help="Per-pixel noise of the synthesis network."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _load_G(generator: str, device: str):
    """The generator, or one line naming it (missing, unsafe or unknown file; no CUDA)."""
    import torch

    from aging.errors import AgingError
    from aging.render.video import RenderError
    from aging.stylegan import load_generator

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RenderError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    try:
        return load_generator(generator, device=device)
    except AgingError:
        raise
    except OSError as exc:
        raise RenderError(f"{generator}: cannot read the generator ({exc.strerror or exc})") from None


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


def _formats(ctx, param, text: str) -> list[str]:
    out = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in out if f not in ("gif", "mp4")]
    if bad or not out:
        raise click.BadParameter(f"formats are gif and/or mp4, got {text!r}")
    return out


@click.command(cls=Command)
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="A run directory of `aging train` (model.json).")
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
@click.option("--size", default=256, show_default=True, type=SIZE, help="Frame size (px) of each face.")
@click.option("--fps", default=10.0, show_default=True, type=FPS)
@click.option("--format", "formats", default="gif,mp4", show_default=True, callback=_formats,
              help="gif, mp4 or both.")
@click.option("--no-caption", is_flag=True, help="No age caption on the frames.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file; OUT.gif and/or OUT.mp4 are written.")
@click.option("-q", "--quiet", is_flag=True)
def render(model_dir, source, start_age, ages, latents_dir, subject, generator, device, batch, fp16, noise_mode,
           size, fps, formats, no_caption, out, quiet):
    """Decode latents into an aging video (GIF and MP4), real and generated side by side.

    \b
    Examples:
      aging render --model runs/offset -g stylegan2-ffhq-1024 --source data/anna/latents/7300.npy \\
                   --ages 20y:60y:1y -o runs/offset/anna.gif
      aging render --model runs/offset -g G.pkl --source me.npy --start-age 25y --ages 25y:70y:1y \\
                   --subject data/anna -o anna.gif
      aging render --latents data/anna -g G.pkl --subject data/anna -o anna_recon.mp4   # reconstruction video
    """
    import numpy as np

    from aging import io
    from aging.ages import format_age
    from aging.render.video import RenderError, VideoWriter, caption, decode, load_latent, nearest
    from aging.render.video import read_photo, side_by_side, subject_photos

    if bool(model_dir) == bool(latents_dir):
        raise click.UsageError("give either --model (with --source and --ages) or --latents")
    t0 = time.perf_counter()
    # everything cheap is checked before the generator is loaded
    if model_dir is not None:
        if source is None or ages is None:
            raise click.UsageError("--model needs --source LATENT.npy and --ages START:STOP:STEP")
        if start_age is None:
            if not source.stem.isdigit():
                raise click.UsageError(f"--start-age is needed (the --source file name {source.name} is not "
                                       "<age_days>.npy)")
            start_age = int(source.stem)
        model = _load_model(model_dir)
        io.read_latent(source)  # a missing, damaged or .npz file: one line naming it
        frame_ages = np.asarray(ages, dtype=np.int64)
    else:
        from aging.latents import load_subject

        subj = load_subject(latents_dir)
        if len(subj) > MAX_FRAMES:
            raise RenderError(f"{latents_dir}: {len(subj)} latents; a video takes at most {MAX_FRAMES} frames")
        frame_ages = subj.ages
    if subject is not None:
        real_ages, real_paths = subject_photos(subject)
    G = _load_G(generator, device)
    if model_dir is not None:
        if tuple(model.latent_shape_) != (G.num_ws, G.w_dim):
            raise RenderError(f"{model_dir}: model latents {tuple(model.latent_shape_)} do not fit the "
                              f"generator's W+ ({G.num_ws}, {G.w_dim})")
        start = load_latent(source, G)
        ws = model.predict(start, start_age, frame_ages)  # [T, num_ws, w_dim]
    else:
        if subj.latents.shape[1:] != (G.num_ws, G.w_dim):
            raise RenderError(f"{latents_dir}: latents of shape {subj.latents.shape[1:]} do not fit the "
                              f"generator's W+ ({G.num_ws}, {G.w_dim})")
        ws = subj.latents
    if not np.all(np.isfinite(ws)):
        raise RenderError("the predicted latents contain NaN or inf")
    real_idx = nearest(real_ages, frame_ages) if subject is not None else None
    with VideoWriter(out, fps=fps, formats=formats) as writer:
        frames = decode(G, ws, batch=batch, size=size, noise_mode=noise_mode, fp16=fp16, progress=not quiet,
                        desc="render")
        for k, frame in enumerate(frames):
            if not no_caption:
                frame = caption(frame, f"{'generated' if subject is not None else 'age'} {format_age(frame_ages[k])}")
            if real_idx is not None:
                real = read_photo(real_paths[real_idx[k]], size)
                if not no_caption:
                    real = caption(real, f"real {format_age(real_ages[real_idx[k]])}")
                frame = side_by_side(real, frame)
            writer.write(frame)
    info = {"frames": writer.count, "ages_days": [int(a) for a in frame_ages], "generator": str(generator),
            "model": str(model_dir) if model_dir else None, "source": str(source) if source else None,
            "latents": str(latents_dir) if latents_dir else None, "subject": str(subject) if subject else None}
    io.write_json(Path(out).with_suffix(".json"), info)
    paths = ", ".join(str(p) for p in writer.paths.values())
    click.echo(f"wrote {writer.count} frames ({frame_ages[0]}..{frame_ages[-1]} days) to {paths} "
               f"in {time.perf_counter() - t0:.1f} s")


@click.command(cls=Command)
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--layers", default="high", show_default=True, metavar="RANGE|PRESET",
              help="W+ layers taken from TARGET: 8:18, 1,3,5, or top/high/mid/alternating.")
@click.option("--grid", "as_grid", is_flag=True, help="One row over every preset instead of --layers.")
@generator_options
@click.option("--size", default=256, show_default=True, type=SIZE)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output PNG.")
def mix(source, target, layers, as_grid, generator, device, batch, fp16, noise_mode, size, out):
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

    if not source.exists():
        raise click.UsageError(f"SOURCE {source}: no such latent file")
    if not target.exists():
        raise click.UsageError(f"TARGET {target}: no such latent file or folder")
    G = _load_G(generator, device)
    src = load_latent(source, G)
    tgt, n = load_target(target, G)
    try:
        sets = layer_presets(G.num_ws) if as_grid else {layers: parse_layers(layers, G.num_ws)}
    except RenderError as exc:
        raise click.UsageError(f"--layers: {exc}") from None
    ws = np.stack([src, tgt] + [mix_ws(src, tgt, ls) for ls in sets.values()])
    labels = ["source", "target" if n == 1 else f"mean of {n}"] + [f"{k}" for k in sets]
    frames = [caption(f, lab) for f, lab in zip(decode(G, ws, batch=batch, size=size, noise_mode=noise_mode,
                                                       fp16=fp16), labels)]
    io.save_image(out, side_by_side(*frames))
    click.echo(f"wrote {out} ({', '.join(labels)})")


@click.command(cls=Command)
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--frames", default=60, show_default=True, type=click.IntRange(2, MAX_FRAMES),
              help="Frames from A to B (both included).")
@click.option("--space", type=click.Choice(["w", "z"]), default="w", show_default=True,
              help="w: A, B are W/W+ latents (linear); z: they are z vectors (spherical, then mapped).")
@click.option("--bounce", is_flag=True, help="Go back from B to A (a seamless loop).")
@generator_options
@click.option("--size", default=256, show_default=True, type=SIZE)
@click.option("--fps", default=20.0, show_default=True, type=FPS)
@click.option("--format", "formats", default="gif", show_default=True, callback=_formats,
              help="gif, mp4 or both.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("-q", "--quiet", is_flag=True)
def morph(a, b, frames, space, bounce, generator, device, batch, fp16, noise_mode, size, fps, formats, out, quiet):
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

    ends = [io.read_latent(p) for p in (a, b)]  # missing, damaged or .npz: one line naming the file
    G = _load_G(generator, device)
    ws = morph_ws(G, ends[0], ends[1], frames, space, names=(str(a), str(b)))
    if bounce:
        ws = np.concatenate([ws, ws[-2:0:-1]])
    with VideoWriter(out, fps=fps, formats=formats) as writer:
        for frame in decode(G, ws, batch=batch, size=size, noise_mode=noise_mode, fp16=fp16,
                            progress=not quiet, desc="morph"):
            writer.write(frame)
    click.echo(f"wrote {writer.count} frames to {', '.join(str(p) for p in writer.paths.values())}")


COMMANDS = [render, mix, morph]
