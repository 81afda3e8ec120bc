"""The encode stage: aligned photos -> StyleGAN2 latents, by batched optimisation.

* :mod:`~aging.encode.options`: :class:`~.options.ProjectOptions` and :class:`~.options.SequenceOptions`, the stage's
  hyper-parameters and the single source of their defaults (no torch needed).
* :mod:`~aging.encode.projector`: :func:`~.projector.project` (one batch of photos) and
  :func:`~.projector.project_sequence` (an age-ordered sequence as chains optimised side by side, each
  photo warm-started from its predecessor); pure functions of their arguments.
* :mod:`~aging.encode.chains`: which photos form chains, and where a resumed run's chains start.
* :mod:`~aging.encode.losses`: pixel MSE, VGG16 perceptual and LPIPS-style distances at a
  working resolution (:class:`~.losses.ImageLoss`).
* :mod:`~aging.encode.vgg`: our own VGG16 ``features`` that loads torchvision-format weights.
* :mod:`~aging.encode.pipeline`: files (photos in, latents / reconstructions / log out),
  resuming, sharding across ``torchrun`` ranks.

Import names from the submodules; importing this package imports nothing else (torch included).
"""
