"""One photo -> aging video: the steps of ``aging age`` after the generator is loaded.

:func:`age_photo` takes a checked :class:`AgeJob` (the photo read upright and its face picked,
:mod:`aging.age.photo`), the generator and a fitted age model, and

1. fills the work folder (:mod:`aging.age.work`): the aligned face and its latent, encoded only
   when the folder is not finished for the same photo, face, generator and encoder settings;
2. predicts the latents at the target ages (``model.predict(latent, age, ages)``);
3. decodes them and writes the video (:class:`aging.render.video.VideoWriter`): real | generated
   with captions (the real face at its own age), or with ``paste_back`` the whole photo with the
   generated face in place; then the JSON sidecar ``OUT.json``.

Per-frame hooks: each :data:`FrameHook` is called with every :class:`AgedFrame` (the generated
face and the real aligned face, same size) before the frame is composed; a dict it returns is
recorded for that frame in the sidecar's ``per_frame`` list (e.g. an identity distance to the
input photo).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from aging import io
from aging.age.options import WORK_NAME, AgeError, AgeOptions, EncodeSettings, output_formats
from aging.age.photo import PickedFace
from aging.age.work import WorkFolder, WorkItem


@dataclass(frozen=True)
class AgedFrame:
    """What a frame hook sees: the frame's index and age, the generated face and the real
    (aligned input) face, both ``[S, S, 3]`` uint8 of one size."""

    index: int
    age_days: int
    face: np.ndarray
    real: np.ndarray


FrameHook = Callable[[AgedFrame], "dict | None"]


@dataclass
class AgeJob:
    """A checked ``aging age`` request: the photo (read upright) with its chosen face, the ages,
    the output, and the settings of each stage."""

    photo: Path
    rgb: np.ndarray  # [H, W, 3] uint8, upright
    face: PickedFace
    age_days: int  # the photo's age
    ages: np.ndarray  # [T] target ages in days
    out: Path  # OUT.gif / OUT.mp4 / OUT (both)
    generator: str  # as given
    model_name: str  # the --model folder or --direction file, for messages
    model_info: dict = field(default_factory=dict)  # how the ages were made, for the sidecar (model, direction, rate)
    options: AgeOptions = field(default_factory=AgeOptions)
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    decode: object = None  # aging.render.video.DecodeOptions (None: the defaults)
    vgg_path: Path | None = None

    @property
    def work_root(self) -> Path:
        return self.options.work if self.options.work is not None else self.out.parent / WORK_NAME


def check_writable(out: Path, work: Path | None) -> None:
    """One line, before any work, when the output or the work folder cannot be written."""
    output_formats(out)
    if out.is_dir():
        raise AgeError(f"-o {out}: a folder; give a file name (OUT.gif, OUT.mp4 or OUT)")
    for what, folder in (("-o", out.parent), ("--work", work if work is not None else out.parent / WORK_NAME)):
        folder = Path(os.path.abspath(folder))
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise AgeError(f"{what} {folder}: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise AgeError(f"{what} {folder}: cannot write in {existing} (permission denied)")


def fill_work_folder(job: AgeJob, G, *, echo: Callable[[str], None]) -> WorkFolder:
    """The work folder of ``job`` with its aligned face and latent, encoded only when needed."""
    from aging.stylegan.checkpoints import state_digest

    item = WorkItem(photo=job.photo, photo_sha256=io.sha256_file(job.photo), age_days=job.age_days, face=job.face,
                    generator=job.generator, generator_sha256=state_digest(G), size=int(G.img_resolution))
    work = WorkFolder.make(job.work_root, item, job.encode)
    if work.finished:
        echo(f"reusing the encoded face in {work.path}")
        return work
    work.prepare(job.rgb)
    echo(f"face {job.face.number} of {job.face.count}: aligned at {item.size} px; encoding it "
         f"({job.encode.steps} steps) into {work.path}")
    work.encode(G, job.encode, job.vgg_path, progress=not job.options.quiet, echo=echo)
    return work


def check_model(model, G, name: str) -> tuple[int, int]:
    """The generator's W+ shape, or one line when the model's latents have another shape."""
    want = (int(G.num_ws), int(G.w_dim))
    have = tuple(int(v) for v in getattr(model, "latent_shape_", ()))
    if have != want:
        raise AgeError(f"{name}: model latents {have} do not fit the generator's W+ {want}")
    return want


def predict_latents(model, latent: np.ndarray, job: AgeJob, G) -> np.ndarray:
    """The model's W+ latents ``[T, num_ws, w_dim]`` at ``job.ages`` from the photo's latent."""
    want = check_model(model, G, job.model_name)
    ws = np.asarray(model.predict(latent, job.age_days, job.ages), dtype=np.float32)
    if ws.shape != (len(job.ages), *want) or not np.all(np.isfinite(ws)):
        raise AgeError(f"{job.model_name}: the predicted latents are not finite or not of shape "
                       f"({len(job.ages)}, {want[0]}, {want[1]})")
    return ws


def write_video(job: AgeJob, G, ws: np.ndarray, aligned: np.ndarray, hooks: Sequence[FrameHook] = ()):
    """Decode ``ws`` and write the frames (see the module docstring); ``(writer, per_frame)``,
    the closed :class:`~aging.render.video.VideoWriter` and the hooks' records."""
    import cv2

    from aging.ages import format_age
    from aging.age.paste import PasteBack
    from aging.render.video import DecodeOptions, VideoWriter, caption, decode, real_and_generated

    o = job.options
    dec = job.decode or DecodeOptions(size=256)
    if o.paste_back:  # the face at the generator's resolution, warped into the whole photo
        dec = DecodeOptions(batch=dec.batch, size=None, noise_mode=dec.noise_mode, fp16=dec.fp16)
        paste = PasteBack(job.rgb, job.face.quad, int(G.img_resolution), feather=o.feather)
    size = dec.size or int(G.img_resolution)
    real = aligned if aligned.shape[0] == size else cv2.resize(aligned, (size, size), interpolation=cv2.INTER_AREA)
    real_text = f"real {format_age(job.age_days)}"
    per_frame = []
    with VideoWriter(job.out, fps=o.fps, formats=output_formats(job.out)) as writer:
        for k, face in enumerate(decode(G, ws, dec, quiet=o.quiet, desc="age")):
            age = int(job.ages[k])
            values = {}
            for hook in hooks:
                values.update(hook(AgedFrame(k, age, face, real)) or {})
            if hooks:
                per_frame.append({"age_days": age, **values})
            text = f"generated {format_age(age)}"
            if o.paste_back:
                frame = paste(face)
                writer.write(caption(frame, text) if o.captions else frame)
            else:
                writer.write(real_and_generated(real, face, real_text, text, captions=o.captions))
    return writer, per_frame


def age_photo(job: AgeJob, G, model, *, hooks: Sequence[FrameHook] = (),
              echo: Callable[[str], None] | None = None) -> dict:
    """Run ``job`` with generator ``G`` and the fitted age ``model`` (anything with
    ``latent_shape_`` and ``predict(latent, start_age, ages)``); returns the sidecar's content,
    also written to ``OUT.json``."""
    echo = echo or (lambda msg: None)
    work = fill_work_folder(job, G, echo=echo)
    aligned = io.read_image(work.aligned)
    ws = predict_latents(model, work.latent(G), job, G)
    writer, per_frame = write_video(job, G, ws, aligned, hooks)
    sidecar = {"frames": writer.count, "ages_days": [int(a) for a in job.ages], "generator": job.generator,
               "photo": str(job.photo), "photo_age_days": job.age_days, **job.face.record(),
               "source": str(work.latent_path), "work": str(work.path), "paste_back": job.options.paste_back,
               **job.model_info, "outputs": [str(p) for p in writer.paths.values()]}
    if per_frame:
        sidecar["per_frame"] = per_frame
    for hook in hooks:
        if hasattr(hook, "summary"):
            sidecar.setdefault("score", {}).update(hook.summary())
    io.write_json(writer.base.with_name(f"{writer.base.name}.json"), sidecar)
    return sidecar
