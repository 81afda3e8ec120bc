"""Shared click helpers: option types, error handling, run bookkeeping."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import click

from aging.ages import parse_age, parse_age_range

MAX_FRAMES = 10_000  # a video of more frames is a typing error (and would not fit in memory)


class AgeType(click.ParamType):
    """One age: ``7300`` (days) or ``20y`` (years)."""

    name = "age"

    def convert(self, value, param, ctx):
        try:
            return parse_age(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class AgeRangeType(click.ParamType):
    """An age range ``20y:60y:1y``, a list ``20y,30y`` or one age; at most ``max_count`` ages."""

    name = "ages"

    def __init__(self, max_count: int | None = None):
        self.max_count = max_count

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return parse_age_range(value, max_count=self.max_count)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class FiniteFloat(click.FloatRange):
    """A float option that must be finite (``nan``, ``inf`` refused), optionally within a range.

    click's own ``FloatRange`` lets ``nan`` through: every comparison with it is false."""

    name = "float"

    def convert(self, value, param, ctx):
        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(rv, param, ctx)

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()


AGE = AgeType()
FRAME_AGES = AgeRangeType(max_count=MAX_FRAMES)
SEED = click.IntRange(0, 2**32 - 1)
SUBJECTS = click.IntRange(1, 1000)
PHOTOS = click.IntRange(2, 100_000)

#: ``@quiet_option``: the ``-q/--quiet`` flag of a verb that shows progress bars
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")


def pop_fields(options: dict, cls) -> dict:
    """Remove from a verb's ``**options`` the entries named like a field of the dataclass ``cls``
    and return them (``cls(**pop_fields(options, cls))`` builds the verb's options object)."""
    return {f.name: options.pop(f.name) for f in dataclasses.fields(cls) if f.name in options}


class UsageLine(click.ClickException):
    """A usage error (bad option value, missing argument) shown as one line, exit status 2."""

    exit_code = 2


class Command(click.Command):
    """A verb whose usage errors are one line (``Error: Invalid value for '--fps': ...``) instead
    of click's usage block, as every other user error is: ``@click.command(cls=Command)``."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise usage_line(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise usage_line(exc) from None


def usage_line(exc: click.UsageError) -> UsageLine:
    msg = " ".join(exc.format_message().split())
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return UsageLine(msg + hint)


def user_error(exc: BaseException) -> click.ClickException:
    """Turn an expected error (bad file, bad shape, ...) into a one-line ClickException."""
    from aging.errors import one_line

    return click.ClickException(one_line(exc))


def write_options(out_dir: Path, options: dict) -> bool:
    """Record the options a run was made with (``options.json``) beside its outputs; the file is
    only rewritten when they changed (a no-op re-run writes nothing). True when written."""
    from aging import io

    return io.write_json(Path(out_dir) / "options.json", options, only_if_changed=True)


def echo_error(exc: BaseException) -> None:
    """Report an error that does not stop the command (one line on stderr)."""
    click.echo(f"error: {user_error(exc).message}", err=True)
