"""CLI of the one-photo wing: ``aging age`` (a photo -> an aging GIF/MP4).

The verb checks its inputs in the order a user fixes them (options, output, loss, model, photo
and face) before the generator loads, then hands a :class:`~aging.age.pipeline.AgeJob` to
:func:`aging.age.pipeline.age_photo`. The generator options, the model loader and the direction
model are ``aging render``'s (:mod:`aging.cli.render`).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from aging.age.options import AgeOptions, EncodeSettings
from aging.cli.common import AGE, FRAME_AGES, MAX_FRAMES, Command, FiniteFloat, pop_fields, quiet_option
from aging.cli.render import FPS, generator_options

AGE_OPTIONS, ENCODE = AgeOptions(), EncodeSettings()  # the defaults


@click.command(cls=Command)
@click.argument("photo", type=click.Path(path_type=Path))
@click.option("--age", "age_days", type=AGE, required=True, help="Age of the person in the photo (25y or days).")
@click.option("--ages", type=FRAME_AGES, required=True, metavar="START:STOP:STEP",
              help=f"Target ages, e.g. 25y:70y:1y, or a list 30y,50y,70y (at most {MAX_FRAMES} frames).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="A run directory of `aging train` (model.json) whose latents fit the generator.")
@click.option("--direction", type=click.Path(path_type=Path), default=None, metavar="FILE.npy",
              help="Instead of --model: an age direction (Puzer's (18, 512) age.npy, a (512,) boundary, ...).")
@click.option("--rate", type=FiniteFloat(), default=None, metavar="R",
              help=f"With --direction: latent units per year along the unit direction [default: {AGE_OPTIONS.rate}].")
@click.option("--face", type=click.IntRange(min=1), default=None, metavar="K",
              help="With several faces: the K-th from the left [default: the largest].")
@click.option("--paste-back", is_flag=True, help="Frames show the whole photo with the generated face pasted in.")
@click.option("--feather", type=FiniteFloat(min=0, max=0.5), default=AGE_OPTIONS.feather, show_default=True,
              help="--paste-back: soft edge of the face mask, a fraction of the face square.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Work folder (aligned face, latent, reconstruction; reused by re-runs) "
                   "[default: aging-work/ beside the output].")
@click.option("--steps", type=click.IntRange(min=1), default=ENCODE.steps, show_default=True,
              help="Encoder: Adam steps.")
@click.option("--loss", default=ENCODE.loss, show_default=True, metavar="TERMS",
              help="Encoder loss: lpips-vgg, vgg, mse, or a sum like 0.5*mse+lpips-vgg.")
@click.option("--vgg-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="torchvision-format vgg16 state dict [default: $AGING_CACHE/vgg16.pth].")
@click.option("--resolution", type=click.IntRange(min=1), default=None, metavar="PX",
              help="Encoder: working resolution of the loss [default: 256, or the generator's if smaller].")
@click.option("--seed", type=click.IntRange(min=0), default=ENCODE.seed, show_default=True)
@generator_options
@click.option("--fps", default=AGE_OPTIONS.fps, show_default=True, type=FPS)
@click.option("--no-caption", is_flag=True, help="No age captions on the frames.")
@click.option("--score", is_flag=True, help="Score each generated face against the photo: identity distance "
                                           "(dlib, same person under 0.6) and apparent age; into OUT.json.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="OUT.gif, OUT.mp4, or OUT without suffix for both; OUT.json beside.")
@quiet_option
def age(photo: Path, **options):
    """Age the face of one photo: detect, align, encode, then render its aging video.

    The photo (any size, JPEG or PNG, EXIF orientation honoured) is searched for faces; the
    largest (or --face K) is aligned like aging fetch does, at the generator's resolution, and
    encoded like aging encode does. The aligned face, its latent and its reconstruction stay in
    the work folder, so a re-run with other ages, another model or a direction only renders.
    Frames show real | generated (the real face at its own age), or with --paste-back the whole
    photo with the generated face in place.

    \b
    Examples:
      aging age photo.jpg --age 25y -g G.pkl --model runs/offset --ages 25y:70y:1y -o me.gif
      aging age photo.jpg --age 25y -g G.pkl --direction age.npy --ages 20y:60y:2y -o me.mp4
      aging age group.png --face 2 --age 40y -g G.pkl --model runs/offset --ages 40y:80y:2y --paste-back -o out
    """
    from aging.age.pipeline import age_photo
    from aging.cli.render import pop_generator_options

    gen = pop_generator_options(options)
    t0 = time.perf_counter()
    job, make_model = _checked_job(photo, options, gen)
    hooks = [_photo_identity()] if job.options.score else []
    G = gen.load()
    model = make_model(G)
    sidecar = age_photo(job, G, model, hooks=hooks, echo=click.echo)
    ages = sidecar["ages_days"]
    click.echo(f"wrote {sidecar['frames']} frames ({ages[0]}..{ages[-1]} days) to {', '.join(sidecar['outputs'])} "
               f"in {time.perf_counter() - t0:.1f} s")
    if "score" in sidecar:
        click.echo(_score_line(sidecar["score"]))


def _photo_identity():
    """The ``--score`` hook, its face models loaded now (a missing model is one line before any work)."""
    from aging.age.scoring import PhotoIdentity
    from aging.score.faces import dlib_models

    dlib_models()
    return PhotoIdentity()


def _score_line(s: dict) -> str:
    """One line of the ``--score`` summary."""
    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    text = (f"score: faces found in {fmt(s['face_rate'], '.0%')} of frames, same person in "
            f"{fmt(s['same_person_rate'], '.0%')} (mean identity distance {fmt(s['mean_identity_distance'], '.3f')})")
    if not s["source_face_found"]:
        text += "; no face found in the aligned photo itself"
    if s["age_mae_generated"] is not None:
        text += f", apparent age off by {s['age_mae_generated']:.1f} y on average"
    return text


def _checked_job(photo: Path, options: dict, gen):
    """Every check that needs no generator, in the order a user fixes them; the job and a function
    ``G -> age model`` (checked against ``G``)."""
    from aging import io
    from aging.age.photo import pick_face, read_photo
    from aging.age.pipeline import AgeJob, check_model, check_writable
    from aging.age.work import check_loss
    from aging.cli.render import _load_model, direction_model

    model_dir, direction, rate = options.pop("model_dir"), options.pop("direction"), options.pop("rate")
    if (model_dir is None) == (direction is None):
        raise click.UsageError("give one of --model RUN or --direction FILE.npy")
    if rate is not None and direction is None:
        raise click.UsageError("--rate goes with --direction (latent units per year along it)")
    enc = EncodeSettings(fp16=gen.decode.fp16, **pop_fields(options, EncodeSettings))
    opts = AgeOptions(captions=not options.pop("no_caption"), **pop_fields(options, AgeOptions))
    out, age_days, ages = options.pop("out"), options.pop("age_days"), options.pop("ages")
    check_writable(out, opts.work)
    vgg_path = check_loss(enc)
    if model_dir is not None:
        loaded = _load_model(model_dir)
        name, info = str(model_dir), {"model": str(model_dir)}
    else:
        raw = io.read_latent(direction)  # missing, damaged or .npz: one line naming it
        rate = opts.rate if rate is None else rate
        name, info = str(direction), {"direction": str(direction), "rate_per_year": rate}
    rgb = read_photo(photo)
    face = pick_face(rgb, opts.face, where=str(photo))

    def make_model(G):
        model = loaded if model_dir is not None else direction_model(raw, rate, (G.num_ws, G.w_dim), direction)
        check_model(model, G, name)
        return model

    assert not options, f"options not used: {sorted(options)}"
    job = AgeJob(photo=photo, rgb=rgb, face=face, age_days=age_days, ages=ages, out=out, generator=str(gen.generator),
                 model_name=name, model_info=info, options=opts, encode=enc, decode=gen.decode, vgg_path=vgg_path)
    return job, make_model


COMMANDS = [age]
