"""The ``aging`` command-line interface: one click group, one module per verb (or group of verbs):
fetch, encode, synth, train, evaluate, demo, weights, render (render, mix, morph).

At import time a verb's module imports click and the light modules its options take their
defaults from (options objects, the model registry); heavy libraries (torch, sklearn,
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
        from aging.cli.common import usage_line, user_error
        from aging.errors import AgingError

        try:
            return super().invoke(ctx)
        except AgingError as exc:
            raise user_error(exc) from None
        except click.UsageError as exc:  # a verb's bad option value: one line too, exit status 2
            raise usage_line(exc) from None


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
      aging age       one photo -> aging GIF/MP4 (detect, align, encode, render)
      aging mix       style mixing of two faces;  aging morph: morph between two faces
      aging weights   list / download / convert StyleGAN2 checkpoints
      aging score     generated faces vs real photos: same person? apparent age?
    \b
    Offline, on synthetic latents:
      aging synth data/synth --subjects 3 --photos 200
      aging demo
    """


def _register() -> None:
    from aging.cli import demo, encode, evaluate, fetch, figures, render, synth, train, weights
    from aging.cli import age

    for module in (fetch, encode, synth, train, evaluate, demo, figures, weights, render, age):
        for cmd in module.COMMANDS:
            main.add_command(cmd)
    from aging.cli import score  # image-space evaluation

    main.add_command(score.score)


_register()
