"""``aging figures``: the study's figures, tables and a report from a latent dataset."""

from __future__ import annotations

from pathlib import Path

import click

from aging.cli.common import Command, pop_fields, quiet_option
from aging.figures.common import FiguresOptions

DEFAULTS = FiguresOptions()


@click.command(cls=Command)
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("figures"),
              help="Output folder.")
@click.option("--full", is_flag=True, help="The whole MLP grid of Fig 14 (486 networks) instead of a quick sub-grid.")
@click.option("--direction", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Fig 15: an age direction (.npy, (512,), (1, 512) or the latent shape) [default: learned].")
@click.option("--subject", default=None, help="Fig 3.3's subject [default: the first].")
@click.option("--anchors", default="0,-1", metavar="I,J", help="Fig 3.3's anchor photos (negative from the end).")
@click.option("--mlp-epochs", type=click.IntRange(1, 10_000), default=DEFAULTS.mlp_epochs,
              help="At most this many epochs per MLP (early stopping); fewer for a quick look.")
@click.option("--mlp-pairs", type=click.IntRange(1, 1_000_000), default=DEFAULTS.mlp_pairs,
              help="Random pairs each MLP is trained on (the study: 6100).")
@click.option("--generator", "-g", default=None, metavar="PATH|NAME",
              help="A generator whose W+ fits the latents: Fig 1 as faces and the aging videos of Figs 3.1/3.2 "
                   "and 5.1/5.2 (a checkpoint path or a registry name, see aging weights list).")
@click.option("--photos", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="With --generator: the subject's aligned photos as the real faces [default: its decoded latents].")
@click.option("--fig1-ages", type=click.IntRange(2, 50), default=DEFAULTS.fig1_ages,
              help="Fig 1's columns: the subject's photos nearest to this many equal age intervals.")
@quiet_option
def figures(data, out, anchors, quiet, **options):
    """Reproduce the study's figures (3.3, 8-12, 14, 15), its tables and a report.

    Writes OUT/fig*.png, OUT/tables/{offset,mlp,models}.{csv,md}, OUT/report.{md,html,json} and
    the runs they come from (OUT/runs/). Finished runs are reused and unchanged files are not
    rewritten: a re-run with nothing changed writes nothing. Fig 1 shows faces with --generator
    (the latent distances without); --generator also writes the real | generated aging videos of
    Figs 3.1/3.2 (interpolation) and 5.1/5.2 (best model) as GIF and MP4.

    \b
    Examples:
      aging figures data/synth -o figures
      aging figures data/latents -o figures --full --direction age.npy
      aging figures data/latents -o figures -g G.pkl --photos data/anna
    """
    from aging.figures import make_figures
    from aging.latents import LatentDataset

    try:
        i, j = (int(x) for x in anchors.split(","))
    except ValueError:
        raise click.UsageError(f"--anchors must be two photo indices like 0,-1, got {anchors!r}") from None
    for key in ("direction", "photos"):
        if options[key] is not None:
            options[key] = str(options[key])
    opts = FiguresOptions(anchors=(i, j), **pop_fields(options, FiguresOptions))
    ds = LatentDataset.load(data)
    flags = "".join([" --full" if opts.full else "", f" --anchors {anchors}" if anchors != "0,-1" else ""]
                    + [f" --{k.replace('_', '-')} {getattr(opts, k)}" for k in ("direction", "subject", "mlp_epochs",
                                                                                 "mlp_pairs", "generator",
                                                                                 "photos", "fig1_ages")
                       if getattr(opts, k) != getattr(DEFAULTS, k)])
    report = make_figures(ds, out, opts, command=f"aging figures {data} -o {out}{flags}", progress=not quiet,
                          echo=None if quiet else click.echo)
    nf = report["noise_floor"]["overall"]
    click.echo(f"noise floor {nf:.4g} MSE per component" if nf is not None else "noise floor: too few photos")
    click.echo(f"wrote {len(report['figures'])} figures, {len(report['tables'])} tables and {out}/report.html")


COMMANDS = [figures]
