"""CLI of the encode stage: ``encode`` (aligned photos -> W+ latents).

The defaults of the options are those of :class:`~aging.encode.options.ProjectOptions` and
:class:`~aging.encode.options.SequenceOptions` (the command builds one from them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import click

from aging.cli.common import FiniteFloat, user_error
from aging.devices import DEVICE_HELP
from aging.encode.options import HEADS, INITS, OPTIMIZERS, SPACES, ProjectOptions, SequenceOptions

PROJECT, SEQUENCE = ProjectOptions(), SequenceOptions()  # the defaults


@click.command()
@click.argument("data", type=click.Path(path_type=Path), metavar="DATA/<subject>|FOLDER")
@click.option("--generator", "-g", required=True, metavar="PATH|NAME",
              help="Generator: a checkpoint path (.pkl or the project's format) or a downloaded registry name.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="Where latents/, recon/ and encode.jsonl go [default: DATA].")
@click.option("--steps", type=click.IntRange(min=1), default=PROJECT.steps, show_default=True,
              help="Adam steps (at most, with --patience) of photos started from the mean (and of the chains' "
                   "first photos).")
@click.option("--steps-after-first", type=click.IntRange(min=1), default=SEQUENCE.steps_after_first,
              show_default=True, help="Steps (at most, with --patience) of a photo started from the previous photo's "
                                     "latent (--init previous).")
@click.option("--batch", type=click.IntRange(min=1), default=SEQUENCE.batch, show_default=True,
              help="Photos optimised together; with --init previous, the number of chains (halved on CUDA OOM).")
@click.option("--space", type=click.Choice(SPACES), default=PROJECT.space, show_default=True,
              help="wplus: one w per layer; w: one w; z: mapping input with stochastic clipping.")
@click.option("--init", type=click.Choice(INITS), default=SEQUENCE.init, show_default=True,
              help="interpolate: keys (--key-every), each from the one before (the first from the average w), then "
                   "the photos between them from their interpolation; previous: --batch chains, each photo from "
                   "its predecessor's latent; mean: every photo from the average w.")
@click.option("--key-every", type=click.IntRange(min=1), default=SEQUENCE.key_every, show_default=True, metavar="N",
              help="--init interpolate: every N-th photo (and the last) is a key.")
@click.option("--steps-key", type=click.IntRange(min=1), default=SEQUENCE.steps_key, show_default=True, metavar="N",
              help="--init interpolate: steps of a key started from the key before it (--key-optimizer adam: at "
                   "--lr-after-first).")
@click.option("--steps-fill", type=click.IntRange(min=1), default=SEQUENCE.steps_fill, show_default=True,
              metavar="N", help="--init interpolate: steps of a photo between two keys.")
@click.option("--lr-fill", type=FiniteFloat(min=0, min_open=True), default=SEQUENCE.lr_fill, show_default=True,
              help="--init interpolate: peak learning rate of a photo between two keys.")
@click.option("--key-optimizer", type=click.Choice(OPTIMIZERS), default=SEQUENCE.key_optimizer, show_default=True,
              help="--init interpolate: how a key is optimised: L-BFGS (--steps-key: its loss evaluations; photo by "
                   "photo, float32) or Adam (space z: always Adam).")
@click.option("--smooth-key", type=FiniteFloat(min=0), default=SEQUENCE.smooth_key, show_default=True,
              metavar="WEIGHT", help="--init interpolate: temporal smoothness of a key, toward the key before it "
                                     "(as --smooth).")
@click.option("--polish-first", type=click.IntRange(min=0), default=SEQUENCE.polish_first, show_default=True,
              metavar="N", help="--init interpolate: after the first key's --steps Adam steps, N L-BFGS loss "
                                "evaluations from its result (0: none; space z: none). Every later photo "
                                "descends from it.")
@click.option("--keep-best/--last", "keep_best", default=PROJECT.keep_best, show_default=True,
              help="Each photo ends at the latent of the lowest loss seen (its start included), or at the last.")
@click.option("--heads", type=click.Choice(HEADS), default=SEQUENCE.heads, show_default=True,
              help="--init previous, the chains' first photos: each from the nearest chain's first photo already "
                   "encoded (nearest: level by level, small jumps where chains meet), from the first photo's latent "
                   "(root), from the average w (mean: each as good as an independent encoding, one batch), or root "
                   "and mean, keeping the lower loss (best).")
@click.option("--steps-near", type=click.IntRange(min=1), default=SEQUENCE.steps_near, show_default=True,
              metavar="N", help="--heads nearest: steps of a chain's first photo started from the nearest one done.")
@click.option("--extrapolate", type=FiniteFloat(min=0), default=SEQUENCE.extrapolate, show_default=True,
              metavar="F", help="A warm start (--init previous: a photo; interpolate: a key) goes on from its "
                                "predecessor by F times the last step (0: the predecessor's latent).")
@click.option("--patience", type=click.IntRange(min=0), default=PROJECT.patience, show_default=True, metavar="N",
              help="A photo has converged when its loss has not improved by --tol in N steps; its learning rate "
                   "then decays over --cooldown steps and it stops (0: every photo runs all its steps).")
@click.option("--tol", type=FiniteFloat(min=0), default=PROJECT.tol, show_default=True,
              help="Relative improvement of the loss that counts for --patience.")
@click.option("--cooldown", type=click.IntRange(min=0), default=PROJECT.cooldown, show_default=True, metavar="N",
              help="Steps of learning-rate decay between a photo's convergence and its stop.")
@click.option("--chain-length", type=click.IntRange(min=0), default=SEQUENCE.chain_length or 0, show_default=True,
              metavar="N", help="--init previous: at most N photos per chain (more chains than --batch, each first "
                                "photo from scratch: slower, closer to the losses of independent encodings); 0: "
                                "--batch chains.")
@click.option("--min-chain", type=click.IntRange(min=1), default=SEQUENCE.min_chain, show_default=True, metavar="N",
              help="--init previous: fewer chains than --batch where they would have fewer than N photos (a chain's "
                   "first photo costs a full --steps projection, two with --heads best).")
@click.option("--loss", "loss_spec", default="lpips-vgg", show_default=True, metavar="TERMS",
              help="lpips-vgg, vgg, mse, or a weighted sum like mse+lpips-vgg or 0.5*mse+vgg.")
@click.option("--vgg-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="torchvision-format vgg16 state dict [default: $AGING_CACHE/vgg16.pth].")
@click.option("--resolution", type=click.IntRange(min=1), default=None, metavar="PX",
              help="Working resolution of the losses [default: 256, or the generator's if smaller].")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=PROJECT.lr, show_default=True,
              help="Peak learning rate (w: in units of the std of w).")
@click.option("--lr-after-first", type=FiniteFloat(min=0, min_open=True), default=SEQUENCE.lr_after_first,
              show_default=True, help="Peak learning rate of warm-started photos (small: they start close).")
@click.option("--smooth", type=FiniteFloat(min=0), default=PROJECT.smooth, show_default=True, metavar="WEIGHT",
              help="Temporal smoothness: squared W+ step from the previous photo's latent.")
@click.option("--mean-reg", type=FiniteFloat(min=0), default=PROJECT.mean_reg, show_default=True, metavar="WEIGHT",
              help="Pull every W+ layer toward the photo's mean w.")
@click.option("--clip", type=FiniteFloat(min=0, min_open=True), default=PROJECT.clip, show_default=True,
              help="z space: stochastic clipping bound k.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--fp16", "--amp", "fp16", is_flag=True, help="Mixed precision on CUDA (synthesis and VGG16).")
@click.option("--seed", type=click.IntRange(min=0), default=SEQUENCE.seed, show_default=True)
@click.option("--identity/--no-identity", default=SEQUENCE.identity, show_default=True,
              help="Log each reconstruction's dlib identity distance to its photo (same person under 0.6) "
                   "in encode.jsonl.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def encode(data, **values):
    """Project a subject's aligned photos into the generator's latent space.

    Reads the photos that DATA/<subject>/manifest.csv keeps (aligned/<age_days>.png, as
    written by aging fetch), or every <age_days>.png|jpg of a plain folder, in age order, and
    writes latents/<age_days>.npy (float32, num_ws x w_dim), recon/<age_days>.png and one
    line per photo in encode.jsonl. Finished photos (latent valid, reconstruction and log line
    there) are skipped, so an interrupted run is continued by running the same command again;
    a run with nothing to do writes nothing. encode.options.json records the options of every
    run that encoded photos, under the key each of their encode.jsonl lines carries.

    \b
    Examples:
      aging encode data/anna -g stylegan2-ffhq-1024
      aging encode data/anna -g G.pkl --vgg-weights vgg16-397923af.pth --fp16 --smooth 0.01
      aging encode my_photos/ -g G.pkl --loss mse --init mean --batch 1 --last -o runs/study_encode
      aging encode data/anna -g G.pkl --key-every 4 --steps-fill 60    # more keys, longer fills
      torchrun --nproc-per-node 4 -m aging encode data/anna -g G.pkl --fp16    # 4 GPUs, one share each
    \f
    ``values``: the options by name; those of ProjectOptions and SequenceOptions make the run's
    SequenceOptions, the others (inputs, loss, device, -q) stay.
    """
    import sys

    import torch

    from aging.encode.pipeline import RunRecord, encode_photos
    from aging.errors import AgingError

    values["chain_length"] = values["chain_length"] or None  # 0: no limit
    run = _setup(data, values)  # the options that are not SequenceOptions' stay in values
    record = RunRecord(generator=str(values["generator"]), vgg_weights=str(run.vgg_path) if run.vgg_path else None,
                       argv=tuple(sys.argv[1:]))
    torch.manual_seed(run.options.seed)
    t0 = time.perf_counter()
    try:
        summary = encode_photos(run.G, run.photos, loss=run.loss, options=run.options, dist=(run.rank, run.world),
                                record=record, progress=not values["quiet"], echo=lambda msg: click.echo(msg, err=True))
    except AgingError as exc:
        raise user_error(exc) from None
    except OSError as exc:  # the output folder cannot be written (permissions, disk full): say where
        if exc.filename is None:
            raise
        raise click.ClickException(f"{exc.filename}: cannot write ({exc.strerror or exc})") from None
    _report(summary, run, values["loss_spec"], time.perf_counter() - t0)


class _Run(NamedTuple):
    """What a checked command line gives the run."""

    options: SequenceOptions
    photos: object  # PhotoSet
    G: object  # Generator
    loss: object  # ImageLoss
    vgg_path: Path | None
    rank: int
    world: int


def _setup(data: Path, values: dict) -> _Run:
    """Check the command line and load the generator and the loss, the cheapest mistakes first;
    every mistake one line (the SequenceOptions' fields are taken out of ``values``)."""
    from aging.devices import resolve_device
    from aging.encode.losses import needs_vgg, parse_loss
    from aging.encode.options import from_values
    from aging.encode.pipeline import dist_env, find_photos
    from aging.encode.vgg import find_weights
    from aging.errors import AgingError

    try:
        terms = parse_loss(values["loss_spec"])
    except ValueError as exc:
        raise click.ClickException(f"--loss: {exc}") from None
    out = values["out"]
    if out is not None and out.exists() and not out.is_dir():
        raise click.ClickException(f"--out {out}: not a folder")
    try:
        options = from_values(values)
        rank, world, local_rank = dist_env()
        photos = find_photos(data, out)
        vgg_path = find_weights(values["vgg_weights"]) if needs_vgg(terms) else None
        device = resolve_device(values["device"], local_rank=local_rank if world > 1 else None)
        G, loss = _load(values, terms, vgg_path, device, options.project.fp16)
    except AgingError as exc:
        raise user_error(exc) from None
    if options.project.fp16 and not device.startswith("cuda"):
        click.echo("note: --fp16 has no effect on the CPU", err=True)
    return _Run(options, photos, G, loss, vgg_path, rank, world)


def _load(values: dict, terms: dict, vgg_path: Path | None, device: str, fp16: bool):
    """The generator and the loss (at the working resolution, with VGG16 for perceptual terms)."""
    from aging.encode.losses import ImageLoss, working_resolution
    from aging.encode.vgg import load_vgg16
    from aging.stylegan import load_generator

    G = load_generator(values["generator"], device=device)  # CheckpointError, WeightsError: one line naming the file
    try:
        res = working_resolution(G.img_resolution, values["resolution"])
    except ValueError as exc:
        raise click.ClickException(f"--resolution: {exc}") from None
    vgg = load_vgg16(vgg_path, device=device) if vgg_path is not None else None
    try:
        return G, ImageLoss(terms, resolution=res, vgg=vgg, amp=fp16)
    except ValueError as exc:
        raise click.ClickException(f"--loss {values['loss_spec']}: {exc}") from None


def _report(summary: dict, run: _Run, loss_spec: str, seconds: float) -> None:
    """The chart (rank 0, when photos were encoded) and the one-line summary."""
    photos = run.photos
    who = f"rank {run.rank}/{run.world}: " if run.world > 1 else ""
    chart = None
    if run.rank == 0 and summary["encoded"]:  # other ranks may still be running: the chart shows what is done
        from aging.encode.pipeline import CHART_NAME, encode_report
        from aging.render.charts import plot_encode

        report = encode_report(photos.out)
        if report is not None:
            chart = plot_encode(report["ages"], report["psnr"], report["steps"], report["init"],
                                photos.out / CHART_NAME, title=f"aging encode {photos.out.name}")
    a, b = summary["share"]
    if summary["encoded"] == 0:
        click.echo(f"{who}nothing to do: all {b - a} photos of {photos.source} already have latents in "
                   f"{photos.out / 'latents'}")
        return
    click.echo(f"{who}encoded {summary['encoded']} photo{'s' if summary['encoded'] != 1 else ''} "
               f"({summary['skipped']} already done) in {seconds:.1f} s ({summary['photos_per_s']:.3g} photos/s, "
               f"final batch {summary['batch']}); mean final {loss_spec} loss {summary['mean_total']:.4g}; "
               + (f"mean identity distance {summary['mean_identity_distance']:.3f}; "
                  if summary.get("mean_identity_distance") is not None else "")
               + f"wrote {photos.out / 'latents'}" + (f" and {chart}" if chart else ""))


COMMANDS = [encode]
