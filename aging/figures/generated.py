"""The figures that show faces: Fig 1 and the aging videos of Figs 3.1/3.2 and 5.1/5.2.

* Fig 1 (``fig01_rows.png``): one subject at equal age intervals, three rows: (a) its real photos
  (``--photos``: the aligned photos; otherwise its decoded latents), (b) the Fig 15 direction
  model's prediction from the first photo, (c) linear interpolation of the first and last photo's
  latents. With a generator the rows are decoded faces; without one, the latent distance (RMS
  per component) of each row to the real photo's latent at each age, so Fig 1 always exists.
* Figs 3.1/3.2 (``fig3-1_3-2_interpolation.{gif,mp4}``) and 5.1/5.2
  (``fig5-1_5-2_best_model.{gif,mp4}``), with a generator only: real | generated at every photo
  age, for two-point interpolation and for the best model of the models table (lowest test MSE
  on the internal split), predicted from the first photo. Each video has a completion record
  (``<name>.json``): unchanged inputs are not re-rendered, so a re-run writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aging import io
from aging.ages import format_age
from aging.errors import AgingError, one_line
from aging.figures.common import Figure, FiguresError, FiguresOptions

FIG1 = "fig01_rows.png"
# no dot inside the names: VideoWriter takes the text after the last dot for a suffix
VIDEOS = {"interpolation": ("fig3-1_3-2_interpolation", "3.1/3.2"), "best": ("fig5-1_5-2_best_model", "5.1/5.2")}
FPS = 10.0
MAX_SIZE = 256  # decoded faces are at most this many pixels wide
GAP = 4  # px between the faces of Fig 1


@dataclass
class Decoder:
    """A loaded generator, the digest of its weights, the face size and the real photos (or None)."""

    G: object
    digest: str
    size: int
    photos: object = None  # aging.photos.SubjectPhotos

    def frames(self, ws: np.ndarray):
        from aging.render.video import DecodeOptions, decode

        return decode(self.G, ws, DecodeOptions(size=self.size))


def load_decoder(ds, opts: FiguresOptions) -> Decoder | None:
    """The generator of ``--generator`` checked against the latents (and ``--photos``), or None;
    every problem is one line naming the option."""
    if opts.generator is None:
        if opts.photos is not None:
            raise FiguresError("--photos needs --generator (the photos are shown beside decoded faces)")
        return None
    from aging.stylegan import load_generator
    from aging.stylegan.checkpoints import state_digest

    try:
        G = load_generator(opts.generator, device="auto")
    except AgingError as exc:
        raise FiguresError(f"--generator: {one_line(exc)}") from None
    except OSError as exc:
        raise FiguresError(f"--generator {opts.generator}: cannot read it ({exc.strerror or exc})") from None
    want = (G.num_ws, G.w_dim)
    if tuple(ds.latent_shape) != want:
        raise FiguresError(f"--generator {opts.generator}: its W+ {want} does not fit the latents of shape "
                           f"{tuple(ds.latent_shape)}")
    return Decoder(G, state_digest(G), min(MAX_SIZE, G.img_resolution), _photos(opts.photos))


def _photos(folder):
    if folder is None:
        return None
    from aging.photos import PhotoError, subject_photos

    try:
        return subject_photos(folder)
    except PhotoError as exc:
        raise FiguresError(f"--photos: {exc}") from None


def pick_subject(ds, opts: FiguresOptions):
    """``--subject``, else the subject named like the ``--photos`` folder, else the first."""
    names = [s.name for s in ds.subjects]
    if opts.subject is not None and opts.subject in names:
        return ds.subjects[names.index(opts.subject)]
    if opts.photos is not None and Path(opts.photos).name in names:
        return ds.subjects[names.index(Path(opts.photos).name)]
    return ds.subjects[0]


def two_point(latents: np.ndarray, ages: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Linear interpolation (and extrapolation) of the first and last latent at ``targets``."""
    span = float(ages[-1] - ages[0]) or 1.0
    t = ((np.asarray(targets, np.float64) - ages[0]) / span).reshape((-1,) + (1,) * (latents.ndim - 1))
    return (latents[0] + t * (latents[-1] - latents[0])).astype(np.float32)


def fig1_rows(ds, s, runs: Path, opts: FiguresOptions) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The photo ages of Fig 1 (nearest to equal intervals) and each row's latents at them."""
    from aging.figures.direction import direction_config
    from aging.models import load_model
    from aging.render.video import nearest

    want = np.linspace(s.ages[0], s.ages[-1], min(opts.fig1_ages, len(s))).round().astype(np.int64)
    idx = np.unique(nearest(s.ages, want))
    ages = np.asarray(s.ages)[idx]
    model = load_model(runs / direction_config(ds, opts).name)
    return ages, {"real": s.latents[idx], "direction": model.predict(s.latents[0], s.ages[0], ages),
                  "interpolation": two_point(s.latents, s.ages, ages)}


def _real_frames(dec: Decoder, ages, latents):
    """The real side: the aligned photo nearest in age (with ``--photos``), else decoded latents."""
    if dec.photos is None:
        yield from ((f, a) for f, a in zip(dec.frames(latents), ages))
        return
    from aging.photos import read_photo
    from aging.render.video import nearest

    for i in nearest(dec.photos.ages, ages):
        yield read_photo(dec.photos.paths[i], dec.size), dec.photos.ages[i]


def fig1_image(dec: Decoder, ages, rows: dict[str, np.ndarray]) -> np.ndarray:
    """Three rows of captioned faces, one column per age."""
    from aging.render.video import caption, side_by_side

    grid = []
    for label, ws in rows.items():
        pairs = _real_frames(dec, ages, ws) if label == "real" else zip(dec.frames(ws), ages)
        grid.append(side_by_side(*[caption(f, f"{label[:6]} {format_age(a)}") for f, a in pairs], gap=GAP))
    sep = np.zeros((GAP, grid[0].shape[1], 3), np.uint8)
    return np.concatenate([part for row in grid for part in (row, sep)][:-1], axis=0)


def fig1_chart(ages, rows: dict[str, np.ndarray], path: Path) -> np.ndarray:
    """Without a generator: each row's RMS latent distance to the real latent, one column per age."""
    from aging.render.charts import _plt, _save

    real = rows["real"].reshape(len(ages), -1)
    dist = np.stack([np.sqrt(np.mean((r.reshape(len(ages), -1) - real) ** 2, axis=1)) for r in rows.values()])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 * len(ages) + 2.2, 2.8), dpi=100)
    ax.imshow(dist, cmap="viridis", aspect="auto")
    for (r, c), v in np.ndenumerate(dist):
        ax.text(c, r, f"{v:.3g}" if v > 1e-6 else "0", ha="center", va="center", fontsize=8,
                color="w" if v < dist.max() / 2 else "k")
    ax.set_xticks(range(len(ages)), [f"{format_age(a)}\n{int(a)} d" for a in ages], fontsize=8)
    ax.set_yticks(range(len(rows)), [f"({'abc'[k]}) {n}" for k, n in enumerate(rows)], fontsize=8)
    ax.set_title("Fig 1: RMS latent distance to the real photo's latent", fontsize=9)
    _save(fig, path)
    return dist


def make_fig1(ds, out: Path, runs: Path, opts: FiguresOptions, dec: Decoder | None) -> Figure:
    """Write Fig 1 (faces with a generator, latent distances without) and return its record."""
    s = pick_subject(ds, opts)
    ages, rows = fig1_rows(ds, s, runs, opts)
    if dec is not None:
        io.write_if_changed(out / FIG1, _png_bytes(fig1_image(dec, ages, rows)))
        shown = ("decoded faces (row a: " + ("the aligned photos of " + str(opts.photos) if dec.photos is not None
                                             else "the subject's decoded latents") + ")")
    else:
        fig1_chart(ages, rows, out / FIG1)
        shown = "the RMS latent distance per component of each row to the real photo's latent (no --generator)"
    caption = (f"Study Fig 1: a subject's real photos at equal age intervals (a) beside a direction vector's "
               f"prediction from the first photo (b) and linear interpolation of the first and last photo (c). "
               f"Here subject {s.name} at {len(ages)} photo ages {', '.join(format_age(a) for a in ages)} "
               f"(the photos nearest to equal intervals), as {shown}; (b) is the Fig 15 direction model "
               f"(fitted on its split's training pairs), (c) passes through the first and last photo exactly.")
    return Figure(FIG1, "1", caption)


def _png_bytes(image: np.ndarray) -> bytes:
    import io as _stdio

    from PIL import Image

    buf = _stdio.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def best_internal(models_table: dict) -> dict:
    """The row of the models table with the lowest test MSE on the internal split."""
    rows = [r for r in models_table["rows"] if r["split"] == "internal" and r["test_mse"] is not None]
    if not rows:
        raise FiguresError("Figs 5.1/5.2: no model ran on the internal split")
    return min(rows, key=lambda r: r["test_mse"])


def _video_frames(dec: Decoder, s, ws: np.ndarray):
    """(real face, its age, generated face, age) per photo age, from one decode stream: two
    interleaved :func:`~aging.render.video.decode` generators would leave torch's grad mode off
    (each holds ``no_grad`` across its yields and restores the state it found on exit)."""
    if dec.photos is not None:
        for (rf, ra), gf, age in zip(_real_frames(dec, s.ages, None), dec.frames(ws), s.ages):
            yield rf, ra, gf, age
        return
    both = dec.frames(np.stack([s.latents, ws], axis=1).reshape((-1,) + ws.shape[1:]))
    for age in s.ages:
        yield next(both), age, next(both), age


def write_video(dec: Decoder, out: Path, name: str, s, ws: np.ndarray) -> int:
    """``out/name.{gif,mp4}``: real | generated at each of ``s``'s photo ages, unless its record
    says these inputs made it already. Returns the number of frames."""
    from aging.render.video import VideoWriter, caption, side_by_side

    real = ([p.name for p in dec.photos.paths], [io.file_stat(p)["bytes"] for p in dec.photos.paths]) \
        if dec.photos is not None else io.sha256_arrays(s.latents)
    key = io.digest({"generator": dec.digest, "size": dec.size, "fps": FPS, "real": real,
                     "ws": io.sha256_arrays(ws, np.asarray(s.ages))})
    record = out / f"{name}.json"
    if io.is_finished(record, key):
        return len(s)
    with VideoWriter(out / f"{name}.gif", fps=FPS) as writer:
        for rf, ra, gf, age in _video_frames(dec, s, ws):
            writer.write(side_by_side(caption(rf, f"real {format_age(ra)}"), caption(gf, f"gen {format_age(age)}")))
    io.write_record(record, key, [f"{name}.gif", f"{name}.mp4"], frames=writer.count,
                    ages_days=[int(a) for a in s.ages])
    return writer.count


def make_videos(ds, out: Path, runs: Path, opts: FiguresOptions, dec: Decoder, models_table: dict) -> list[Figure]:
    """Figs 3.1/3.2 (interpolation) and 5.1/5.2 (best model): a GIF and an MP4 each."""
    from aging.models import load_model

    s = pick_subject(ds, opts)
    best = best_internal(models_table)
    ws = {"interpolation": two_point(s.latents, s.ages, s.ages),
          "best": load_model(runs / best["run"]).predict(s.latents[0], s.ages[0], s.ages)}
    what = {"interpolation": "two-point linear interpolation of its first and last photo's latents",
            "best": f"the best model of the models table, {best['model']} (run {best['run']}, lowest test MSE "
                    f"on the internal split: {best['test_mse']:.4g}), predicting every age from the first photo"}
    real = f"the aligned photo nearest in age from {opts.photos}" if dec.photos is not None else "its decoded latent"
    figures = []
    for key, (name, number) in VIDEOS.items():
        n = write_video(dec, out, name, s, ws[key])
        for ext in ("gif", "mp4"):
            figures.append(Figure(f"{name}.{ext}", number, (
                f"Study Fig {number}: a real | generated aging video. Here subject {s.name}, {n} frames at "
                f"{FPS:g} fps, one per photo age: left {real}, right {what[key]} ({ext.upper()}).")))
    return figures
