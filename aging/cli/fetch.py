"""CLI of the data stage: ``aging fetch``."""

from __future__ import annotations

from pathlib import Path

import click

from aging.cli.common import Command, echo_error, user_error
from aging.fetch.options import FetchOptions


# paths are checked by the command (one line naming the file), not by click's usage block
@click.command(cls=Command)
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              default=Path("configs/videos.toml"), show_default=True, metavar="FILE",
              help="Videos file (TOML, [[video]] tables).")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("data"), metavar="DIR",
              show_default=True, help="Output root; each video writes OUT/<subject>/.")
@click.option("--size", type=click.IntRange(64, 4096), default=FetchOptions.size, show_default=True, metavar="PX",
              help="Edge of the aligned faces (1024 for the FFHQ generator).")
@click.option("--no-stabilise", is_flag=True, help="Align every photo from its own landmarks only.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or progress messages.")
def fetch(names, config_path, out, size, no_stabilise, quiet):
    """Download "photo a day" videos and turn them into aligned, age-labelled faces.

    For each video of the config (or only those NAMEd): download it (cached in
    OUT/<subject>/video.<ext>; local paths are used in place), cut it into its distinct photos,
    drop frames without a face (title cards, credits), give every photo its age, check and align
    the faces (FFHQ crop), and write OUT/<subject>/aligned/<age_days>.png, manifest.csv (every
    photo with its status and reason), contact_sheet.jpg and fetch.options.json (the options and
    the video's settings it ran with). Re-running redoes only what changed,
    e.g. after adding photo numbers to a video's `exclude` list; a re-run with nothing to do
    writes nothing. A video that fails (bad entry in the config, unreadable video, no face) is
    reported on one line and the others are still processed; the exit status is then 1.

    \b
    Examples:
      aging fetch                                  # every video of configs/videos.toml
      aging fetch hugo --size 512                  # one video, smaller faces
      aging fetch --config my_videos.toml -o data/mine --no-stabilise -q
    """
    from aging.fetch.config import ConfigError, load_videos

    try:
        videos, errors = load_videos(config_path)
    except ConfigError as exc:
        raise user_error(exc) from None
    known = [v.name for v in videos] + [e.name for e in errors]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.ClickException(f"{config_path}: no video named {unknown[0]!r} (known: {', '.join(known)})")
    if out.exists() and not out.is_dir():
        raise click.ClickException(f"-o/--out: {out} is a file, expected a folder")
    if names:
        videos = [v for v in videos if v.name in names]
        errors = [e for e in errors if e.name in names]
    for err in errors:
        echo_error(err)
    options = FetchOptions(size=size, stabilise=not no_stabilise)
    failed = [e.name for e in errors] + _fetch_each(videos, out, options, config_path, quiet)
    if failed:
        # the summary goes with the results (stdout): stderr holds exactly one line per failure
        click.echo(f"{len(failed)} of {len(videos) + len(errors)} videos failed: {', '.join(failed)}")
        click.get_current_context().exit(1)


def _fetch_each(videos, out: Path, options: FetchOptions, config_path: Path, quiet: bool) -> list[str]:
    """Fetch each video, one summary line each (stdout) or one error line (stderr); the names of
    the videos that failed."""
    import time

    from aging.fetch.pipeline import FetchError, fetch_video

    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    failed: list[str] = []
    for cfg in videos:
        if cfg.check:
            click.echo(f"note: video {cfg.name!r}: {', '.join(cfg.check)} still marked to be checked in "
                       f"{config_path}", err=True)
        t0 = time.perf_counter()
        try:
            res = fetch_video(cfg, out, options=options, progress=not quiet, log=log)
        except FetchError as exc:   # one line per failed video; the others still run
            echo_error(exc)
            failed.append(cfg.name)
            continue
        for w in res.warnings:
            click.echo(f"warning: video {cfg.name!r}: {w}", err=True)
        c = res.counts
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k != "kept")
        work = (f"{res.aligned} faces aligned, {res.removed} removed" if res.did_work
                else "up to date, nothing to do")
        click.echo(f"{cfg.name}: {res.items} items, {res.photos} photos, {c.get('kept', 0)} kept"
                   f"{' (' + rejected + ')' if rejected else ''}; {work}; {time.perf_counter() - t0:.1f} s "
                   f"-> {res.folder}/")
    return failed


COMMANDS = [fetch]
