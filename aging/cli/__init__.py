"""The ``aging`` command-line interface: one click group, one module per stage.

Each stage module imports only click at import time; heavy libraries (torch, sklearn,
matplotlib, dlib, ...) are imported inside the command that needs them, so ``aging --help``
is instant.
"""

from __future__ import annotations

import click

from aging import __version__


class AgingGroup(click.Group):
    """The ``aging`` group: an :class:`~aging.errors.AgingError` raised by any verb (bad input) is
    printed as one line with exit status 1; any other exception is a bug and keeps its traceback."""

    def invoke(self, ctx):
        from aging.cli.common import usage_line
        from aging.errors import AgingError

        try:
            return super().invoke(ctx)
        except AgingError as exc:
            raise click.ClickException(one_line(exc)) from None
        except click.UsageError as exc:  # a verb's bad option value: one line too, exit status 2
            raise usage_line(exc) from None


def one_line(exc: BaseException) -> str:
    msg = str(exc).strip() or type(exc).__name__
    return msg.splitlines()[0]


@click.group(cls=AgingGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="aging")
def main():
    """Face aging in the latent space of a pretrained StyleGAN.

    \b
    Pipeline:
      aging fetch     videos -> aligned, age-labelled faces      (data/<subject>/aligned)
      aging encode    aligned faces -> W+ latents                (data/<subject>/latents)
      aging train     latent dataset -> age model + metrics      (runs/<name>)
      aging evaluate  experiments: many models, one comparison table and chart
      aging render    model + latent -> aging GIF/MP4 (real | generated)
      aging mix       style mixing of two faces;  aging morph: morph between two faces
      aging weights   list / download / convert StyleGAN2 checkpoints
    \b
    Offline, on synthetic latents:
      aging synth data/synth --subjects 3 --photos 200
      aging demo
    """


def _register() -> None:
    from aging.cli import encode, fetch, models, render, weights

    for module in (fetch, encode, models, weights, render):
        for cmd in module.COMMANDS:
            main.add_command(cmd)


_register()
