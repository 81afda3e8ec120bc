"""``aging evaluate``: many age models on one dataset (an experiment), or a subject's linearity."""

from __future__ import annotations

from pathlib import Path

import click

from aging.cli.common import Command, quiet_option, write_options


@click.command(cls=Command)
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--experiment", default=None, metavar="FILE|NAME",
              help="Experiment TOML, or the name of a bundled one (demo, study) or of one in ./configs/experiments.")
@click.option("--linearity", is_flag=True, help="Linearity analysis of one subject instead.")
@click.option("--subject", default=None, help="Subject for --linearity [default: the first].")
@click.option("--anchors", default=None, metavar="I,J",
              help="Photo indices of the two anchors for --linearity (negative from the end) [default: 0,-1].")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: runs/<experiment name> or runs/linearity].")
@click.option("--force", is_flag=True, help="Recompute runs that are already finished.")
@quiet_option
def evaluate(data, experiment, linearity, subject, anchors, out, force, quiet):
    """Compare many age models on one dataset, or analyse how linear a subject's latents are.

    An experiment writes one folder per run (as `aging train` does), a comparison table
    (comparison.md, comparison.csv) and charts (comparison.png, error_vs_age_<split>_<pairs>.png).
    Finished runs are reused on re-runs; a run that cannot apply to the dataset (an external
    split of one subject, more components than the latents have) is skipped, and the comparison
    says why.

    \b
    Examples:
      aging evaluate data/synth --experiment study -o runs/study
      aging evaluate data/synth --experiment my_experiment.toml
      aging evaluate data/synth --linearity --subject subject00 --anchors 0,-1
    """
    from aging.latents import LatentDataset

    if bool(experiment) == bool(linearity):
        raise click.UsageError("give exactly one of --experiment FILE and --linearity")
    if not linearity and (subject is not None or anchors is not None):
        raise click.UsageError("--subject and --anchors apply only to --linearity")
    if linearity:
        ds = LatentDataset.load(data)
        write_linearity(ds, subject, anchors or "0,-1", out or Path("runs") / "linearity")
        return
    from aging.experiments import load_experiment, run_experiment

    exp = load_experiment(experiment)  # a bad file fails before the dataset is read
    ds = LatentDataset.load(data)
    out = out or Path("runs") / exp.name
    rows = run_experiment(ds, exp, out, progress=not quiet, force=force, echo=click.echo)
    write_options(out, {"data": str(data), "experiment": str(exp.path)})
    skipped = sum(1 for r in rows if r["skipped"])
    click.echo(f"wrote {out}/comparison.md, comparison.csv, comparison.png and error_vs_age_*.png"
               + (f" ({skipped} of {len(rows)} runs skipped: see comparison.md)" if skipped else ""))


def write_linearity(ds, subject: str | None, anchors: str, out: Path) -> None:
    """``linearity_<subject>.{csv,png}`` in ``out``: distances of a subject's latents from the
    line through two anchor photos (``anchors``: ``"I,J"``)."""
    import numpy as np

    from aging.latents import LatentDatasetError
    from aging.render.charts import plot_linearity
    from aging.scoring import check_anchors, linearity

    try:
        i, j = (int(x) for x in anchors.split(","))
    except ValueError:
        raise click.UsageError(f"--anchors must be two photo indices like 0,-1, got {anchors!r}") from None
    try:
        k = ds.index_of(subject) if subject is not None else 0
    except LatentDatasetError as exc:
        raise click.UsageError(f"--subject: {exc}") from None
    s = ds.subjects[k]
    try:
        check_anchors((i, j), len(s), s.name)
        res = linearity(ds, k, (i, j))
    except LatentDatasetError as exc:
        raise click.UsageError(f"--anchors {anchors}: {exc}") from None
    from aging import io

    io.write_csv(out / f"linearity_{res['subject']}.csv",
                 [{"age_days": int(a), "distance": float(d)} for a, d in zip(res["ages"], res["distances"])],
                 only_if_changed=True)
    png = plot_linearity(res, out / f"linearity_{res['subject']}.png")
    mid = res["distances"][1:-1]
    click.echo(f"{res['subject']}: {len(res['ages'])} photos, anchors {res['anchors']}; distance from the "
               f"anchor line: median {float(np.median(mid)) if len(mid) else 0:.4f}, max {float(res['distances'].max()):.4f}")
    click.echo(f"wrote {png}")


COMMANDS = [evaluate]
