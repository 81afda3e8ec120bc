"""CLI of the image-space evaluation: ``score`` (generated faces against real photos).

The defaults of the options are those of :class:`~aging.score.options.ScoreOptions`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from aging.cli.common import Command, FiniteFloat, quiet_option
from aging.score.options import ScoreOptions

DEFAULTS = ScoreOptions()


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def summary_line(s: dict) -> str:
    """The summary of a scoring as one line."""
    line = (f"{s['pairs']} pairs: face found in {_fmt(s['face_rate'], '.0%')}, same person in "
            f"{_fmt(s['same_person_rate'], '.0%')} (distance under {s['threshold']:g}), mean identity distance "
            f"{_fmt(s['mean_identity_distance'])}")
    if s.get("age_mae_generated") is not None or s.get("age_mae_real") is not None:
        line += (f"; apparent-age error {_fmt(s['age_mae_generated'], '.1f')} y generated, "
                 f"{_fmt(s['age_mae_real'], '.1f')} y real")
    return line


@click.command(cls=Command)
@click.argument("real", type=click.Path(path_type=Path), metavar="REAL")
@click.argument("generated", type=click.Path(path_type=Path), metavar="GENERATED")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder: scores.csv, scores.json, scores.png.")
@click.option("--source", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The photo the generated faces were aged from [default: the earliest real photo].")
@click.option("--threshold", type=FiniteFloat(min=0, min_open=True), default=DEFAULTS.threshold,
              show_default=True, help="Descriptor distance under which two faces are the same person (dlib's 0.6).")
@click.option("--no-ages", "ages", is_flag=True, flag_value=False, default=True, show_default=False,
              help="Do not estimate apparent ages (identity only).")
@click.option("--detect-size", type=click.IntRange(64, 4096), default=DEFAULTS.detect_size, show_default=True,
              metavar="PX", help="Faces are detected on copies at most this large.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache of what the real photos show [default: $AGING_CACHE/faces].")
@click.option("--workers", type=click.IntRange(1, 64), default=DEFAULTS.workers, show_default=True,
              help="Processes that analyse the generated images.")
@quiet_option
def score(real: Path, generated: Path, out: Path, **options):
    """Score generated faces: the same person as the real photos? the age they should look?

    REAL and GENERATED are folders of <age_days>.png|jpg (a subject folder of aging fetch is
    read through its manifest). Each generated image is paired with the real photo nearest in
    age: dlib's face descriptor distance to it and to the source photo (same person under 0.6),
    whether a face is found at all, and the apparent age of both (the estimator's error on the
    real photos is its yardstick). Writes OUT/scores.csv, OUT/scores.json and OUT/scores.png; a
    re-run with the same images and options writes nothing.

    \b
    Examples:
      aging score data/anna runs/offset/anna_frames -o runs/offset/anna_scores
      aging score data/anna generated/ --source data/anna/aligned/7300.png -o scores/ --no-ages
    """
    from aging.score.pipeline import NO_AGES_NOTE, score_folders

    t0 = time.perf_counter()
    result = score_folders(real, generated, out, ScoreOptions(**options))
    if result.skipped:
        click.echo(f"nothing to do: {out} already holds the scores of these images")
        return
    if result.summary.get("note") == NO_AGES_NOTE:
        click.echo(f"note: {NO_AGES_NOTE}", err=True)
    click.echo(f"{summary_line(result.summary)}; wrote {out / 'scores.csv'}, scores.json, scores.png "
               f"in {time.perf_counter() - t0:.1f} s")


COMMANDS = [score]
