"""One photo in, aging video out (``aging age``): a composing wing, like :mod:`aging.figures`.

It strings the existing stages together for a single photo, in this order:

* :mod:`~aging.age.photo`: read the photo (any size, JPEG/PNG, EXIF orientation honoured), find
  its faces (dlib, through :mod:`aging.fetch.align`), pick one (the largest, or ``--face K``) and
  cut its FFHQ square at the generator's resolution (fetch's recipe);
* :mod:`~aging.age.work`: the work folder keyed by the photo's content, the face, the generator's
  weights and the encoder's options, holding the aligned face, its latent and reconstruction
  (encoded by :func:`aging.encode.pipeline.encode_photos`), so a re-run with other ages or another
  model goes straight to rendering;
* :mod:`~aging.age.paste`: the generated face warped back into the original photo (the inverse of
  the alignment, with a feathered mask);
* :mod:`~aging.age.pipeline`: the age model's (or a direction's) latents at the target ages,
  decoded (:mod:`aging.render.video`) into real | generated frames, or whole photos with
  ``--paste-back``, written as GIF and/or MP4 with a JSON sidecar; per-frame hooks
  (:data:`~aging.age.pipeline.FrameHook`) add their values to the sidecar.

Import names from the submodules; importing this package imports nothing heavy.
"""
