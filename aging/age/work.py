"""The work folder: one photo's aligned face, latent and reconstruction, kept for re-runs.

``WORK/<photo stem>-<key>/`` where the key digests what the latent depends on: the photo's
content, its age, the chosen face, the generator's weights (and so its resolution) and the
encoder's settings. A re-run with other ages, another model or a direction finds the folder
finished and goes straight to rendering::

    aligned/<age_days>.png        the FFHQ-aligned face at the generator's resolution
    face.json                     its record: key, photo, face number and box, FFHQ square
    latents/<age_days>.npy        float32 (num_ws, w_dim)         (aging encode's layout and files)
    recon/<age_days>.png          the reconstruction
    encode.jsonl, encode.options.json
    encoded.json                  completion record (key + output sizes), written last

The encoder is called through its public entry point, :func:`aging.encode.pipeline.encode_photos`,
on the folder as a plain folder of ``<age_days>.png`` photos.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from aging import io
from aging.age.options import AgeError, EncodeSettings
from aging.age.photo import PickedFace, align

KEY_LENGTH = 12  # hex digits of the key in the folder name


@dataclass(frozen=True)
class WorkItem:
    """What the work folder is for: the photo (by content), its age, the face, the generator."""

    photo: Path
    photo_sha256: str
    age_days: int
    face: PickedFace
    generator: str  # as given (path or registry name): recorded, not digested
    generator_sha256: str  # digested
    size: int  # the generator's resolution: the aligned face's size


def check_loss(enc: EncodeSettings) -> Path | None:
    """Check ``--loss`` (and find the VGG16 weights a perceptual loss needs) before any work; the
    weight file, or None."""
    from aging.encode.losses import needs_vgg, parse_loss
    from aging.encode.vgg import find_weights

    try:
        terms = parse_loss(enc.loss)
    except ValueError as exc:
        raise AgeError(f"--loss {enc.loss}: {exc}") from None
    return find_weights(enc.vgg_weights) if needs_vgg(terms) else None  # VGGWeightsError: one line


def work_key(item: WorkItem, enc: EncodeSettings, resolution: int) -> str:
    """The digest that names a work folder."""
    settings = {**asdict(enc), "vgg_weights": str(enc.vgg_weights) if enc.vgg_weights else None,
                "resolution": resolution}
    return io.digest({"photo": item.photo_sha256, "age_days": item.age_days, "face": item.face.record(),
                      "generator": item.generator_sha256, "size": item.size, "encode": settings})


@dataclass
class WorkFolder:
    """A work folder and its key; :meth:`prepare` and :meth:`encode` fill it."""

    path: Path
    key: str
    item: WorkItem

    @classmethod
    def make(cls, root: Path, item: WorkItem, enc: EncodeSettings) -> "WorkFolder":
        from aging.encode.losses import working_resolution

        try:
            resolution = working_resolution(item.size, enc.resolution)
        except ValueError as exc:
            raise AgeError(f"--resolution: {exc}") from None
        key = work_key(item, enc, resolution)
        return cls(Path(root) / f"{item.photo.stem}-{key[:KEY_LENGTH]}", key, item)

    @property
    def aligned(self) -> Path:
        return self.path / "aligned" / f"{self.item.age_days}.png"

    @property
    def latent_path(self) -> Path:
        return self.path / "latents" / f"{self.item.age_days}.npy"

    @property
    def recon(self) -> Path:
        return self.path / "recon" / f"{self.item.age_days}.png"

    @property
    def finished(self) -> bool:
        """True when the latent was made for this key and its files are whole."""
        return io.is_finished(self.path / "encoded.json", self.key)

    def prepare(self, rgb: np.ndarray) -> bool:
        """Write the aligned face (and ``face.json``) unless there for this key. True when written."""
        record = self.path / "face.json"
        if io.is_finished(record, self.key):
            return False
        io.save_image(self.aligned, align(rgb, self.item.face, self.item.size))
        io.write_record(record, self.key, [self.aligned.relative_to(self.path)], photo=str(self.item.photo),
                        photo_sha256=self.item.photo_sha256, age_days=self.item.age_days, size=self.item.size,
                        generator=self.item.generator, **self.item.face.record())
        return True

    def encode(self, G, enc: EncodeSettings, vgg_path: Path | None, *, progress: bool = True,
               echo: Callable[[str], None] | None = None) -> dict:
        """Encode the aligned face (the encoder skips it when its latent is finished); then write
        ``encoded.json``. Returns the encoder's summary."""
        from aging.encode.pipeline import RunRecord, encode_photos, find_photos

        loss = _loss(G, enc, vgg_path)
        photos = find_photos(self.aligned.parent, self.path)
        record = RunRecord(generator=self.item.generator, vgg_weights=str(vgg_path) if vgg_path else None)
        summary = encode_photos(G, photos, loss=loss, options=enc.sequence_options(), record=record,
                                progress=progress, echo=echo)
        outputs = [p.relative_to(self.path) for p in (self.latent_path, self.recon)]
        io.write_record(self.path / "encoded.json", self.key, outputs,
                        encoded=summary["encoded"], mean_total=summary.get("mean_total"))
        return summary

    def latent(self, G) -> np.ndarray:
        """The face's W+ latent ``[num_ws, w_dim]`` (checked against ``G``)."""
        return io.read_latent(self.latent_path, (G.num_ws, G.w_dim))


def _loss(G, enc: EncodeSettings, vgg_path: Path | None):
    """The encoder's loss at its working resolution (with VGG16 for perceptual terms)."""
    from aging.encode.losses import ImageLoss, working_resolution
    from aging.encode.vgg import load_vgg16

    device = str(G.w_avg.device)
    vgg = load_vgg16(vgg_path, device=device) if vgg_path is not None else None
    return ImageLoss(enc.loss, resolution=working_resolution(G.img_resolution, enc.resolution), vgg=vgg,
                     amp=enc.fp16)
