"""Shared click helpers: option types, error handling, run bookkeeping."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from aging.ages import parse_age, parse_age_range


class AgeType(click.ParamType):
    """One age: ``7300`` (days) or ``20y`` (years)."""

    name = "age"

    def convert(self, value, param, ctx):
        try:
            return parse_age(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class AgeRangeType(click.ParamType):
    """An age range ``20y:60y:1y``, a list ``20y,30y`` or one age."""

    name = "ages"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return parse_age_range(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


AGE = AgeType()
AGE_RANGE = AgeRangeType()


def user_error(exc: BaseException) -> click.ClickException:
    """Turn an expected error (bad file, bad shape, ...) into a one-line ClickException."""
    msg = str(exc).strip() or exc.__class__.__name__
    return click.ClickException(msg.splitlines()[0])


def write_options(out_dir: Path, options: dict) -> None:
    """Record the options a run was made with (``options.json``) beside its outputs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = {k: (v.tolist() if hasattr(v, "tolist") else str(v) if isinstance(v, Path) else v)
             for k, v in options.items()}
    clean["argv"] = sys.argv[1:]
    (out_dir / "options.json").write_text(json.dumps(clean, indent=2, default=str) + "\n")


def echo_error(exc: BaseException) -> None:
    """Report an error that does not stop the command (one line on stderr)."""
    click.echo(f"error: {user_error(exc).message}", err=True)
