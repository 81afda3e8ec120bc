"""The encode stage: aligned photos -> StyleGAN2 latents, by batched optimisation.

* :mod:`~aging.encode.projector`: :func:`project` (one batch of photos) and
  :func:`project_sequence` (an age-ordered sequence as chains optimised side by side, each
  photo warm-started from its predecessor); pure functions with keyword-only hyper-parameters.
* :mod:`~aging.encode.losses`: pixel MSE, VGG16 perceptual and LPIPS-style distances at a
  working resolution (:class:`ImageLoss`).
* :mod:`~aging.encode.vgg`: our own VGG16 ``features`` that loads torchvision-format weights.
* :mod:`~aging.encode.pipeline`: files (photos in, latents / reconstructions / log out),
  resuming, sharding across ``torchrun`` ranks.

torch is imported on first use of a torch-based name.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Projection": "aging.encode.projector",
    "project": "aging.encode.projector",
    "project_sequence": "aging.encode.projector",
    "plan_chains": "aging.encode.projector",
    "w_stats": "aging.encode.projector",
    "ImageLoss": "aging.encode.losses",
    "parse_loss": "aging.encode.losses",
    "VGG16Features": "aging.encode.vgg",
    "VGGWeightsError": "aging.encode.vgg",
    "load_vgg16": "aging.encode.vgg",
    "EncodeError": "aging.encode.pipeline",
    "encode_photos": "aging.encode.pipeline",
    "find_photos": "aging.encode.pipeline",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aging.encode' has no attribute {name!r}")
