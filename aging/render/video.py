"""Latents -> frames -> GIF / MP4.

Frames are produced batch by batch from the generator and written as they come: the MP4 is
streamed to ffmpeg (imageio-ffmpeg) and the GIF is written frame by frame, so a long video
never holds its frames in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aging import io
from aging.errors import AgingError, FileFormatError


class RenderError(AgingError, ValueError):
    """Bad render input: latent shape, missing photos, output format."""


@dataclass(frozen=True)
class DecodeOptions:
    """How :func:`decode` turns latents into frames; the single source of these defaults (the
    render verbs read theirs from here)."""

    batch: int = 8  # latents per generator call
    size: int | None = None  # frame size in px (None: the generator's resolution)
    noise_mode: str = "const"  # the synthesis network's per-pixel noise: const, random or none
    fp16: bool = False  # half precision on CUDA (faster; tiny differences)


# ---------------------------------------------------------------------------------------------
# Generator -> frames
# ---------------------------------------------------------------------------------------------


def check_ws(ws: np.ndarray, G, what: str = "latent") -> np.ndarray:
    """Accept ``[num_ws, w_dim]``, ``[w_dim]`` (W, broadcast) or a batch ``[N, num_ws, w_dim]``;
    return ``[N, num_ws, w_dim]`` float32, or raise a one-line :class:`RenderError`."""
    ws = np.asarray(ws, dtype=np.float32)
    want = (G.num_ws, G.w_dim)
    if ws.shape == (G.w_dim,):
        ws = np.broadcast_to(ws, want)
    if ws.shape == want:
        ws = ws[None]
    if ws.ndim != 3 or ws.shape[1:] != want:
        raise RenderError(f"{what}: wrong latent shape {tuple(ws.shape)}; the generator takes {want} "
                          f"(W+, num_ws x w_dim) or ({G.w_dim},) (W)")
    if not np.all(np.isfinite(ws)):
        raise RenderError(f"{what}: latent contains NaN or inf")
    return np.ascontiguousarray(ws)


def load_latent(path: str | Path, G) -> np.ndarray:
    """Load one latent ``.npy`` for ``G`` -> ``[num_ws, w_dim]`` (a missing, unreadable or
    mis-shaped file, or an ``.npz`` archive, is a one-line error naming it)."""
    path = Path(path)
    try:
        arr = io.read_latent(path)
    except FileFormatError as exc:
        raise RenderError(str(exc)) from None
    ws = check_ws(arr, G, str(path))
    if len(ws) != 1:
        raise RenderError(f"{path}: holds {len(ws)} latents, expected one")
    return ws[0]


def decode(G, ws: np.ndarray, options: DecodeOptions = DecodeOptions(), *, quiet: bool = True,
           desc: str = "decode") -> Iterator[np.ndarray]:
    """Yield one ``[size, size, 3]`` uint8 frame per latent of ``ws [N, num_ws, w_dim]``, decoded
    ``options.batch`` at a time (a progress bar unless ``quiet``)."""
    import torch
    import torch.nn.functional as F

    from aging.progress import progress_bar
    from aging.stylegan import to_uint8

    ws = check_ws(ws, G)
    size = options.size
    device = next(G.parameters()).device
    with progress_bar(total=len(ws), desc=desc, unit="frame", quiet=quiet) as bar:
        for i in range(0, len(ws), options.batch):
            # no_grad per batch, never across a yield: a generator suspended inside it would leave
            # gradients off for its caller until it is resumed or closed
            with torch.no_grad():
                w = torch.from_numpy(ws[i:i + options.batch]).to(device)
                img = G.synthesis(w, noise_mode=options.noise_mode, fp16=options.fp16)  # [B, 3, R, R]
                if size is not None and size != img.shape[-1]:
                    img = F.interpolate(img.float(), size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=size < img.shape[-1])
                frames = to_uint8(img)
            yield from frames
            bar.update(len(w))


# ---------------------------------------------------------------------------------------------
# Frame composition
# ---------------------------------------------------------------------------------------------


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def caption(frame: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in a dark band at the bottom of ``frame [H, W, 3]`` (new array)."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    band = max(12, h // 12)
    im = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, h - band, w, h], fill=(0, 0, 0))
    draw.text((w // 2, h - band // 2), text, fill=(255, 255, 255), font=_font(int(band * 0.8)), anchor="mm")
    return np.asarray(im)


def side_by_side(*frames: np.ndarray, gap: int = 4) -> np.ndarray:
    """Frames of one height next to each other, separated by a black gap."""
    h = frames[0].shape[0]
    parts = []
    for k, f in enumerate(frames):
        if f.shape[0] != h:
            raise RenderError("side_by_side: frames of different heights")
        if k:
            parts.append(np.zeros((h, gap, 3), np.uint8))
        parts.append(f)
    return np.concatenate(parts, axis=1)


def real_and_generated(real: np.ndarray, generated: np.ndarray, real_text: str, generated_text: str, *,
                       captions: bool = True) -> np.ndarray:
    """The frame of an aging video: the real face beside the generated one, each captioned."""
    if captions:
        real, generated = caption(real, real_text), caption(generated, generated_text)
    return side_by_side(real, generated)


def nearest(ages: np.ndarray, query: Iterable[int]) -> np.ndarray:
    """Index of the age in sorted ``ages`` nearest to each query age."""
    ages = np.asarray(ages, dtype=np.int64)
    q = np.asarray(list(query), dtype=np.int64)
    i = np.clip(np.searchsorted(ages, q), 1, len(ages) - 1) if len(ages) > 1 else np.zeros(len(q), int)
    if len(ages) > 1:
        left = ages[i - 1]
        i = np.where(np.abs(q - left) <= np.abs(ages[i] - q), i - 1, i)
    return i


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


class GifStream:
    """A GIF written frame by frame: nothing but the file handle is kept between frames.

    Each frame is quantised to its own 256-colour palette and LZW-encoded by Pillow as a
    one-frame GIF; its image block (descriptor + compressed data) is copied into the output
    with that palette as a local colour table, after a graphic-control block with the frame
    delay (GIF89a). So memory does not grow with the number of frames.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], *, fps: float, loop: int = 0):
        self.fh = open(path, "wb")
        h, w = size
        self.delay = max(1, int(round(100.0 / fps)))  # centiseconds
        self.fh.write(b"GIF89a" + w.to_bytes(2, "little") + h.to_bytes(2, "little") + bytes([0x70, 0, 0]))
        # NETSCAPE2.0 application extension: loop count (0 = forever)
        self.fh.write(b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + int(loop).to_bytes(2, "little") + b"\x00")

    def write(self, frame: np.ndarray) -> None:
        import io as _stdio

        from PIL import Image

        im = Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        buf = _stdio.BytesIO()
        im.save(buf, format="GIF")
        table, block = _split_single_gif(buf.getvalue())
        size_bits = max(0, (len(table) // 3).bit_length() - 2)  # table holds 2 ** (size_bits + 1) colours
        # graphic control extension: no disposal (1), no transparency, the delay
        self.fh.write(b"\x21\xf9\x04" + bytes([0x04]) + self.delay.to_bytes(2, "little") + b"\x00\x00")
        desc, data = block[:10], block[10:]
        packed = (desc[9] & 0x40) | 0x80 | size_bits  # keep interlace; local table of the frame's size
        self.fh.write(desc[:9] + bytes([packed]) + table + data)

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.write(b"\x3b")
            self.fh.close()


def _split_single_gif(data: bytes) -> tuple[bytes, bytes]:
    """(global colour table, image block from its descriptor to its last data sub-block) of a
    one-frame GIF as Pillow writes it."""
    if data[:3] != b"GIF":
        raise RenderError("internal: not a GIF")
    packed = data[10]
    pos = 13
    table = b""
    if packed & 0x80:
        n = 3 * 2 ** ((packed & 0x07) + 1)
        table, pos = data[pos:pos + n], pos + n
    while pos < len(data):
        tag = data[pos]
        if tag == 0x21:  # extension: label, then sub-blocks
            pos += 2
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        elif tag == 0x2C:  # image descriptor
            start = pos
            dpacked = data[pos + 9]
            pos += 10
            if dpacked & 0x80:  # a local table: use it instead of the global one
                n = 3 * 2 ** ((dpacked & 0x07) + 1)
                table, pos = data[pos:pos + n], pos + n
            head = data[start:start + 10]
            body_start = pos
            pos += 1  # LZW minimum code size
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
            if not table:
                raise RenderError("internal: GIF frame without a colour table")
            return table, head + data[body_start:pos]
        else:
            break
    raise RenderError("internal: no image in GIF data")


class VideoWriter:
    """Write frames to ``path.gif`` and/or ``path.mp4`` as they come (context manager).

    Both stream: the MP4 (H.264, yuv420p) to ffmpeg through imageio-ffmpeg, the GIF through
    :class:`GifStream`, so a long or large video never sits in memory. Both are written to
    hidden temporaries (:func:`aging.io.atomic_path`) and renamed over the outputs at the end,
    so an interrupted render leaves the previous files as they were and no partial file.
    """

    def __init__(self, path: str | Path, *, fps: float = 10.0, formats: Sequence[str] = ("gif", "mp4"),
                 loop: int = 0):
        path = Path(path)  # strip only a known suffix: "fig3.1_x.gif" -> "fig3.1_x", not "fig3"
        self.base = path.with_suffix("") if path.suffix.lower() in (".gif", ".mp4") else path
        self.fps = float(fps)
        self.formats = tuple(formats)
        bad = [f for f in self.formats if f not in ("gif", "mp4")]
        if bad or not self.formats:
            raise RenderError(f"unknown output format {bad[0] if bad else '(none)'} (use gif, mp4)")
        self.loop = loop
        self.count = 0
        self._gif = None
        self._mp4 = None
        self._size = None
        self.paths = {f: self.base.with_name(f"{self.base.name}.{f}") for f in self.formats}
        self._tmp: dict[str, Path] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        self.base.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            self._tmp = {f: stack.enter_context(io.atomic_path(p)) for f, p in self.paths.items()}
            self._stack = stack.pop_all()
        return self

    def write(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self._size is None:
            self._size = frame.shape[:2]
            if "mp4" in self.formats:
                import imageio_ffmpeg

                h, w = self._size
                self._mp4 = imageio_ffmpeg.write_frames(
                    str(self._tmp["mp4"]), (w, h), fps=self.fps, codec="libx264", pix_fmt_out="yuv420p",
                    macro_block_size=2, quality=7, ffmpeg_log_level="error",
                    output_params=["-movflags", "+faststart"])
                self._mp4.send(None)
            if "gif" in self.formats:
                self._gif = GifStream(self._tmp["gif"], self._size, fps=self.fps, loop=self.loop)
        elif frame.shape[:2] != self._size:
            raise RenderError(f"frame {self.count}: size {frame.shape[:2]} differs from {self._size}")
        if self._mp4 is not None:
            self._mp4.send(frame if frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0 else _even(frame))
        if self._gif is not None:
            self._gif.write(frame)
        self.count += 1

    def __exit__(self, exc_type, exc, tb):
        try:
            if self._mp4 is not None:
                self._mp4.close()
            if self._gif is not None:
                self._gif.close()
            if exc_type is None and self.count == 0:
                raise RenderError("no frames to write")
        except BaseException as err:  # the temporaries are removed, the outputs left as they were
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        # renames every temporary over its output on success; removes them on an error
        return self._stack.__exit__(exc_type, exc, tb)


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
