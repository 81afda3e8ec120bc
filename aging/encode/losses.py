"""Reconstruction losses of the projector, per photo.

Every term compares generated images with target photos at one *working resolution* (default
256 px, or the generator's resolution if smaller); both are brought there by area averaging.
Images are ``[N, 3, H, W]`` in ``[-1, 1]``. Terms (combined with ``+``, optionally weighted
``2*mse+lpips-vgg``):

``mse``
    Mean squared pixel difference (in ``[-1, 1]`` units).
``vgg``
    Perceptual loss: mean squared difference of VGG16 activations (relu1_2 .. relu5_3),
    averaged over the five layers.
``lpips-vgg``
    LPIPS-style distance (Zhang et al., CVPR 2018) with uniform layer weights: the same VGG16
    activations, each unit-normalised across channels at every position, squared difference
    summed over channels, averaged over positions, summed over layers (0 for identical images,
    at most 20). The learned per-channel weights of LPIPS are not used (they are not part of
    a torchvision checkpoint).

Target features are computed once per batch (:meth:`ImageLoss.prepare`), not at every step.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

TERMS = ("mse", "vgg", "lpips-vgg")
PERCEPTUAL = ("vgg", "lpips-vgg")
DEFAULT_RESOLUTION = 256
MIN_VGG_RESOLUTION = 16  # relu5_3 sits after four 2x2 max-pools

_TERM_RE = re.compile(r"^\s*(?:([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*\*\s*)?([a-z0-9-]+)\s*$")


def parse_loss(spec: str) -> dict[str, float]:
    """``"lpips-vgg"``, ``"mse+vgg"``, ``"0.5*mse+lpips-vgg"`` -> ``{term: weight}``.

    Raises ``ValueError`` for an unknown term, a repeated term or a non-positive weight.
    """
    terms: dict[str, float] = {}
    for part in str(spec).lower().split("+"):
        m = _TERM_RE.match(part)
        if not m or m.group(2) not in TERMS:
            raise ValueError(f"unknown loss term {part.strip()!r} in {spec!r} (terms: {', '.join(TERMS)}; "
                             "combine with +, weight with *, e.g. 0.5*mse+lpips-vgg)")
        name, weight = m.group(2), float(m.group(1)) if m.group(1) else 1.0
        if name in terms:
            raise ValueError(f"loss term {name!r} given twice in {spec!r}")
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"loss weight of {name!r} must be positive, got {weight}")
        terms[name] = weight
    return terms


def needs_vgg(terms: dict[str, float]) -> bool:
    return any(t in PERCEPTUAL for t in terms)


def working_resolution(generator_resolution: int, requested: int | None = None) -> int:
    """The resolution losses are computed at: ``requested`` (default 256), at most the generator's."""
    if requested is None:
        return min(DEFAULT_RESOLUTION, int(generator_resolution))
    if requested < 1:
        raise ValueError(f"working resolution must be positive, got {requested}")
    if requested > generator_resolution:
        raise ValueError(f"working resolution {requested} px exceeds the generator's {generator_resolution} px")
    return int(requested)


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """``[N, C, H, W] -> [N, C, resolution, resolution]`` by area averaging (no-op when equal)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    if images.shape[-1] < resolution or images.shape[-2] < resolution:
        raise ValueError(f"cannot shrink {list(images.shape[-2:])} images to {resolution} px (too small)")
    return F.interpolate(images, size=(resolution, resolution), mode="area")


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio (dB) of ``[N, C, H, W]`` images in ``[-1, 1]``, per image ``[N]``."""
    mse = (a.float() - b.float()).square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def _unit_channels(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Normalise ``[N, C, H, W]`` features to unit length across channels at every position."""
    return f * torch.rsqrt(f.square().sum(dim=1, keepdim=True) + eps)


@dataclass
class PreparedTargets:
    """Targets at the working resolution and, for perceptual terms, their VGG16 features."""

    images: torch.Tensor  # [N, 3, r, r]
    features: list[torch.Tensor] | None  # raw VGG activations, one [N, C_k, H_k, W_k] per layer
    unit_features: list[torch.Tensor] | None  # the same, channel-normalised (lpips-vgg)

    def __len__(self) -> int:
        return self.images.shape[0]

    def narrow(self, start: int, length: int) -> "PreparedTargets":
        def cut(fs):
            return None if fs is None else [f.narrow(0, start, length) for f in fs]

        return PreparedTargets(self.images.narrow(0, start, length), cut(self.features), cut(self.unit_features))

    def select(self, index: torch.Tensor) -> "PreparedTargets":
        """The targets of photos ``index`` (a 1-D long tensor), in that order."""
        def pick(fs):
            return None if fs is None else [f.index_select(0, index) for f in fs]

        return PreparedTargets(self.images.index_select(0, index), pick(self.features), pick(self.unit_features))


class ImageLoss(nn.Module):
    """Weighted sum of reconstruction terms, per photo.

    Parameters
    ----------
    terms : dict or str
        ``{term: weight}`` or a spec for :func:`parse_loss`.
    resolution : int
        Working resolution (px).
    vgg : VGG16Features, optional
        Needed by the perceptual terms (see :func:`aging.encode.vgg.load_vgg16`).
    amp : bool
        On CUDA, run VGG16 under float16 autocast (features are compared in float32).
    """

    def __init__(self, terms: dict[str, float] | str, *, resolution: int = DEFAULT_RESOLUTION, vgg=None,
                 amp: bool = False):
        super().__init__()
        self.terms = parse_loss(terms) if isinstance(terms, str) else dict(terms)
        if not self.terms or any(t not in TERMS for t in self.terms):
            raise ValueError(f"loss terms must be among {TERMS}, got {list(self.terms)}")
        if needs_vgg(self.terms):
            if vgg is None:
                raise ValueError(f"loss {'+'.join(self.terms)} needs VGG16 weights")
            if resolution < MIN_VGG_RESOLUTION:
                raise ValueError(f"perceptual losses need a working resolution >= {MIN_VGG_RESOLUTION} px")
        self.resolution = int(resolution)
        self.vgg = vgg if needs_vgg(self.terms) else None
        self.amp = amp

    @property
    def names(self) -> list[str]:
        """Names of the per-photo values :meth:`forward` returns (terms, then ``"total"``)."""
        return [*self.terms, "total"]

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.amp and images.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                fs = self.vgg(images)
            return [f.float() for f in fs]
        return self.vgg(images)

    @torch.no_grad()
    def prepare(self, targets: torch.Tensor) -> PreparedTargets:
        """Targets ``[N, 3, H, W]`` (any square size >= the working resolution) -> :class:`PreparedTargets`."""
        if targets.ndim != 4 or targets.shape[1] != 3:
            raise ValueError(f"targets: expected shape [N, 3, H, W], got {list(targets.shape)}")
        images = resize(targets.float(), self.resolution)  # [N, 3, r, r]
        feats = unit = None
        if self.vgg is not None:
            feats = self._features(images)
            if "lpips-vgg" in self.terms:
                unit = [_unit_channels(f) for f in feats]
            if "vgg" not in self.terms:
                feats = None
        return PreparedTargets(images, feats, unit)

    def forward(self, images: torch.Tensor, targets: PreparedTargets) -> dict[str, torch.Tensor]:
        """Generated ``images [N, 3, R, R]`` vs prepared targets -> ``{name: [N]}`` incl. ``"total"``."""
        x = resize(images, self.resolution).float()  # [N, 3, r, r]
        if x.shape != targets.images.shape:
            raise ValueError(f"images {list(x.shape)} do not match targets {list(targets.images.shape)}")
        out: dict[str, torch.Tensor] = {}
        if "mse" in self.terms:
            out["mse"] = (x - targets.images).square().flatten(1).mean(1)
        if self.vgg is not None:
            fx = self._features(x)
            if "vgg" in self.terms:
                per_layer = [(a - b).square().flatten(1).mean(1) for a, b in zip(fx, targets.features)]
                out["vgg"] = torch.stack(per_layer).mean(0)
            if "lpips-vgg" in self.terms:
                per_layer = [(_unit_channels(a) - b).square().sum(1).flatten(1).mean(1)
                             for a, b in zip(fx, targets.unit_features)]
                out["lpips-vgg"] = torch.stack(per_layer).sum(0)
        out = {name: out[name] for name in self.terms}
        out["total"] = sum(self.terms[name] * v for name, v in out.items())
        return out
