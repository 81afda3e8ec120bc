"""Options of ``aging age``: the single source of their defaults (no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aging.encode.options import ProjectOptions, SequenceOptions
from aging.errors import AgingError

FORMATS = {".gif": ("gif",), ".mp4": ("mp4",), "": ("gif", "mp4")}  # by the suffix of -o
WORK_NAME = "aging-work"  # the default work folder, beside the output


class AgeError(AgingError, ValueError):
    """Bad input of ``aging age`` (one line naming the photo, file or option)."""


@dataclass(frozen=True)
class EncodeSettings:
    """How the aligned face is encoded: the encoder's own defaults, except where given."""

    steps: int = ProjectOptions.steps  # Adam steps from the average w
    loss: str = "lpips-vgg"  # as aging encode --loss
    vgg_weights: Path | None = None  # torchvision-format vgg16 state dict (perceptual losses)
    resolution: int | None = None  # working resolution of the loss (None: the encoder's default)
    seed: int = SequenceOptions.seed
    fp16: bool = False  # mixed precision on CUDA

    def sequence_options(self) -> SequenceOptions:
        """The encoder's :class:`SequenceOptions` for one photo."""
        return SequenceOptions(project=ProjectOptions(steps=self.steps, fp16=self.fp16), seed=self.seed)


@dataclass(frozen=True)
class AgeOptions:
    """``aging age``'s own options (the face, the work folder, the video)."""

    face: int | None = None  # 1-based, faces numbered from the left; None: the largest face
    rate: float = 0.5  # --direction: latent units per year along the unit direction
    paste_back: bool = False  # frames: the whole photo with the generated face in place
    feather: float = 0.08  # --paste-back: width of the mask's soft edge, a fraction of the face square
    fps: float = 10.0
    captions: bool = True
    work: Path | None = None  # the work folder (None: aging-work/ beside the output)
    score: bool = False  # identity distance and apparent age of each generated face (aging.age.scoring)
    quiet: bool = False


def output_formats(out: Path) -> tuple[str, ...]:
    """``gif`` and/or ``mp4`` by the suffix of ``out`` (none: both), or one line."""
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise AgeError(f"-o {out}: the output is a .gif or .mp4 file (or a name without suffix for both)")
    return fmt
