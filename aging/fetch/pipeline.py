"""``aging fetch`` for one video: download -> cut + de-duplicate -> find faces -> ages -> align.

Writes, under ``<out>/<subject>/``::

    video.<ext>              the downloaded video (local videos are used in place)
    aligned/<age_days>.png   one FFHQ-aligned face per kept photo
    manifest.csv             one row per distinct item (see aging.fetch.manifest)
    contact_sheet.jpg        all kept faces, labelled with photo number and age
    .fetch/                  bookkeeping: source.json (the video: URL or path, size, sha256),
                             scan.json (cut + faces), state.json (the options and config of the
                             run, and what each aligned file and the contact sheet were made from)

Finished work is known from content: the scan is reused while the video's bytes (sha256) and
the cut/detection settings are the same; an aligned file is rewritten only when the frame or crop
it comes from changed (or the file is gone or has another size); files of photos that are no
longer kept are removed; the manifest, the contact sheet and the bookkeeping are rewritten only
when their content changes, so a re-run of a finished fetch writes nothing. A cached download is
verified (size, sha256) before use and downloaded again when damaged. A video that cannot be read
or shows no face fails before anything of its subject is removed or rewritten. Every file is
written atomically (:mod:`aging.io`); temporaries a killed run left are removed by the next.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from aging import io
from aging.config import VideoConfig, VideoConfigError
from aging.errors import AgingError
from aging.fetch import align as A
from aging.fetch.contact_sheet import make_contact_sheet, thumbnail, thumbnail_size
from aging.fetch.download import DownloadError, Source, download, local_source, source_record
from aging.fetch.frames import (Deduplicator, VideoError, VideoInfo, frame_range, iter_frames, open_video,
                                prefetch)
from aging.fetch.manifest import DECIMATED, EXCLUDED, KEPT, ManifestRow, write_manifest

SCAN_VERSION = 2      # 2: videos identified by sha256, not by name and time
ALIGN_VERSION = 1


class FetchError(AgingError, RuntimeError):
    """A video that could not be fetched; the message names the video."""


@dataclass(frozen=True)
class FetchOptions:
    """Settings of a fetch (the CLI exposes ``size`` and ``stabilise``)."""

    size: int = 1024                 # output edge of the aligned faces (px)
    stabilise: bool = True           # stabilise the alignment over the sequence
    cutoff: float = 0.15             # de-dup: fraction of changed pixels that starts a new photo
    tolerance: float = 5.0           # de-dup: grey-level change that counts a pixel as changed
    detect_size: int = 640           # face detection on frames shrunk to this longer side
    min_face_px: float = 64.0        # smaller face boxes (frame px) are face_too_small
    min_face_fraction: float = 0.5   # ... and so are faces below this fraction of the video's median
    similar_faces: float = 0.6       # a second face this large (x the largest) makes multi_face
    window: int = 7                  # stabilisation: neighbouring photos on each side
    png_compression: int = 1         # 0-9, speed vs size of the PNGs
    workers: int = 2                 # threads that align and write faces


@dataclass
class FetchResult:
    name: str
    subject: str
    folder: Path
    video: Path
    counts: dict[str, int]           # status -> number of items
    items: int                       # distinct items in the video
    photos: int                      # items with a face (they take ages)
    aligned: int                     # faces written by this run
    removed: int                     # aligned files removed by this run
    downloaded: bool
    scanned: bool                    # False when the previous scan was reused
    wrote_manifest: bool
    wrote_sheet: bool
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def did_work(self) -> bool:
        return any((self.aligned, self.removed, self.downloaded, self.scanned, self.wrote_manifest, self.wrote_sheet))


# ---------------------------------------------------------------------------------------------


def fetch_video(cfg: VideoConfig, out_root: str | Path, *, options: FetchOptions = FetchOptions(),
                progress: bool = True, log: Callable[[str], None] | None = None) -> FetchResult:
    """Run the whole fetch for one video. Raises :class:`FetchError` (message names the video)."""
    t0 = time.perf_counter()
    try:
        # resolved once: yt-dlp reports absolute paths, and a relative root must mean the same
        # folder wherever it is compared
        return _fetch(cfg, Path(out_root).resolve(), options, progress, log or (lambda s: None), t0)
    except OSError as exc:  # disk full, permissions, ...
        where = f"{exc.filename}: " if exc.filename else ""
        raise FetchError(f"video {cfg.name!r}: {where}{exc.strerror or exc}") from None
    except (DownloadError, VideoError, VideoConfigError, A.ModelsError) as exc:
        msg = str(exc)
        raise FetchError(msg if msg.startswith(f"video {cfg.name!r}") or ": video " in msg
                         else f"video {cfg.name!r}: {msg}") from None


def _fetch(cfg: VideoConfig, out_root: Path, opt: FetchOptions, progress: bool, log, t0: float) -> FetchResult:
    folder = out_root / cfg.subject
    cache = folder / ".fetch"
    opt = replace(opt, cutoff=opt.cutoff if cfg.cutoff is None else cfg.cutoff,
                  tolerance=opt.tolerance if cfg.tolerance is None else cfg.tolerance)
    warnings: list[str] = []
    _remove_leftovers(folder)

    # 1. the video, identified by content
    src = _source(cfg, folder, progress, log)
    video = src.path
    warnings.extend(src.warnings)

    # 2.-3. cut, de-duplicate, find faces (cached)
    key = {"version": SCAN_VERSION, "video": src.identity, "start_time": cfg.start_time,
           "end_time": cfg.end_time, "cutoff": opt.cutoff, "tolerance": opt.tolerance,
           "detect_size": opt.detect_size}
    scan = io.read_json(cache / "scan.json", default=None)
    scanned = not (isinstance(scan, dict) and scan.get("key") == key)
    if scanned:
        _probe(video)   # a clear error for an unreadable file before any work
        log(f"{cfg.name}: cutting {video.name} into photos and finding faces")
        scan = {"key": key, **scan_video(video, cfg, opt, progress=progress)}
    items = scan["items"]
    warnings.extend(scan.get("warnings", []))
    if not items:
        raise FetchError(f"video {cfg.name!r}: {video}: no frames in the selected time range")
    if not any(it["faces"] for it in items):
        raise FetchError(f"video {cfg.name!r}: {video}: no face found in any of its {len(items)} distinct photos"
                         f"{' between start_time and end_time' if cfg.start_time or cfg.end_time else ''}")

    # 4. statuses, photos and ages
    rows, shapes = catalog(items, cfg, opt, fps=scan["fps"], frame_shape=(scan["height"], scan["width"]))
    photos = [r for r in rows if r.photo is not None]

    # the video and its ages proved usable: from here on the subject's folder may change
    if src.record is not None:
        io.write_json(source_record(folder), src.record)
    if scanned:
        io.write_json(cache / "scan.json", scan)

    # 5. alignment: stabilised key points over every photo with a usable face
    usable = [r.index for r in rows if r.index in shapes]
    if cfg.stabilise and opt.stabilise and len(usable) > 1:
        st = A.stabilise([shapes[i] for i in usable], window=opt.window)
        kps = dict(zip(usable, st.keypoints))
        for i, shift, n_out in zip(usable, st.shift, st.outliers):
            row = rows[i]
            if row.status == KEPT and shift > 0.01 * A.ffhq_quad(kps[i]).size:
                row.reason = f"stabilised: {n_out} landmarks corrected, key points moved {shift:.1f} px"
    else:
        kps = {i: A.keypoints(shapes[i]) for i in usable}
    kept = [r for r in rows if r.status == KEPT]
    recipes = {}
    for r in kept:
        quad = A.ffhq_quad(kps[r.index])
        recipes[r.age_days] = {"frame": r.frame, "quad": [round(v, 3) for v in quad.as_list()], "size": opt.size,
                               "video": key["video"], "version": ALIGN_VERSION}
        r.file = f"aligned/{r.age_days}.png"

    state = io.read_json(cache / "state.json", default=None)
    state = state if isinstance(state, dict) else {}
    done = _done(state, folder)
    aligned_dir = folder / "aligned"
    todo = [r for r in kept if done.get(r.age_days) != recipes[r.age_days]]
    removed = 0
    for f in io.data_files(aligned_dir, [".png"]):
        if f.stem.isdigit() and int(f.stem) not in recipes:
            removed += io.remove(f)
    done = {a: v for a, v in done.items() if a in recipes}
    thumbs: dict[int, np.ndarray] = {}
    sizes = {a: v for a, v in (state.get("aligned_bytes") or {}).items() if a.isdigit() and int(a) in done}
    if todo:
        log(f"{cfg.name}: aligning {len(todo)} faces at {opt.size} px")
        tsize = thumbnail_size(len(kept))
        failed = set()
        for r, thumb in align_photos(video, todo, {r.age_days: recipes[r.age_days]["quad"] for r in todo}, folder,
                                     opt, tsize, cfg, progress=progress):
            if thumb is None:
                failed.add(r.age_days)
                continue
            thumbs[r.age_days] = thumb
            done[r.age_days] = recipes[r.age_days]
            sizes[str(r.age_days)] = (folder / r.file).stat().st_size
        missing = [r for r in todo if r.age_days not in thumbs]
        if missing:
            numbers = ", ".join(str(r.photo) for r in missing)
            warnings.append(f"{len(missing)} faces could not be aligned (photos {numbers})")
            for r in missing:
                removed += io.remove(folder / r.file)   # made from another frame or crop before
                r.status, r.file = EXCLUDED, ""
                r.reason = ("the face square lies outside the frame" if r.age_days in failed
                            else "the frame could not be decoded again")
                recipes.pop(r.age_days, None)
                done.pop(r.age_days, None)
    state["aligned"] = {str(a): v for a, v in sorted(done.items())}
    state["aligned_bytes"] = {str(a): sizes[str(a)] for a in sorted(done)}

    # 6. manifest and contact sheet
    wrote_manifest = write_manifest(folder / "manifest.csv", rows)
    kept = [r for r in rows if r.status == KEPT]
    if not kept:
        warnings.append(f"no photo was kept (see {folder / 'manifest.csv'})")
    sheet_path = folder / "contact_sheet.jpg"
    sheet_key = io.digest([[r.photo, r.age_days, recipes[r.age_days]] for r in kept])
    sheet_rec = state.get("contact_sheet")
    wrote_sheet = False
    if kept and not (isinstance(sheet_rec, dict) and sheet_rec.get("key") == sheet_key
                     and _size(sheet_path) == sheet_rec.get("bytes")):
        tsize = thumbnail_size(len(kept))
        faces = []
        for r in kept:
            img = thumbs.get(r.age_days)
            if img is None or img.shape[0] != tsize:
                img = cv2.imread(str(folder / r.file), cv2.IMREAD_COLOR)
                img = thumbnail(img, tsize) if img is not None else np.zeros((tsize, tsize, 3), np.uint8)
            faces.append((r.photo, r.age_days, img))
        sheet = make_contact_sheet(faces, title=f"{cfg.subject}: {len(kept)} kept of {len(photos)} photos")
        ok, buf = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, 88])
        if not ok:
            raise FetchError(f"video {cfg.name!r}: cannot encode the contact sheet")
        io.write_bytes(sheet_path, buf.tobytes())
        state["contact_sheet"] = {"key": sheet_key, "bytes": len(buf)}
        wrote_sheet = True
    elif not kept:
        wrote_sheet = io.remove(sheet_path)
        state.pop("contact_sheet", None)
    state["options"] = {**asdict(opt), "stabilise": bool(cfg.stabilise and opt.stabilise)}
    state["config"] = {"name": cfg.name, "url": cfg.url, "start_age_days": cfg.start_age_days,
                       "days_per_photo": cfg.days_per_photo, "end_age_days": cfg.end_age_days,
                       "start_time": cfg.start_time, "end_time": cfg.end_time, "decimate": cfg.decimate,
                       "exclude": cfg.exclude.as_list(), "stabilise": cfg.stabilise}
    io.write_json(cache / "state.json", state, only_if_changed=True)

    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return FetchResult(name=cfg.name, subject=cfg.subject, folder=folder, video=video, counts=counts, items=len(rows),
                       photos=len(photos), aligned=len(thumbs), removed=removed, downloaded=src.downloaded,
                       scanned=scanned, wrote_manifest=wrote_manifest, wrote_sheet=wrote_sheet, warnings=warnings,
                       seconds=time.perf_counter() - t0)


def _source(cfg: VideoConfig, folder: Path, progress: bool, log) -> Source:
    """The video of ``cfg``: a local file used in place, or the (verified) cached or new download."""
    if cfg.is_local:
        path = cfg.local_path()
        if not path.is_file():
            raise FetchError(f"video {cfg.name!r}: {path}: no such video file")
        return local_source(path, folder, cfg.url)
    log(f"{cfg.name}: downloading {cfg.url} (unless cached)")
    return download(cfg.url, folder, progress=progress)


def _done(state: dict, folder: Path) -> dict[int, dict]:
    """Aligned files a former run finished: ``age -> recipe`` for files still there with the size
    they were written with."""
    aligned = state.get("aligned") if isinstance(state.get("aligned"), dict) else {}
    sizes = state.get("aligned_bytes") if isinstance(state.get("aligned_bytes"), dict) else {}
    return {int(a): recipe for a, recipe in aligned.items()
            if a.isdigit() and sizes.get(a) is not None and _size(folder / "aligned" / f"{a}.png") == sizes[a]}


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _remove_leftovers(folder: Path) -> None:
    """Remove the temporaries of writes a killed run never finished (hidden ``*.tmp*`` files)."""
    for d in (folder, folder / ".fetch", folder / "aligned"):
        io.remove_temporaries(d)


# ---------------------------------------------------------------------------------------------


def scan_video(video: Path, cfg: VideoConfig, opt: FetchOptions, *, progress: bool = True) -> dict:
    """One streaming pass: distinct photos (runs of frames) and the faces on each one's best frame.

    Returns ``{"fps", "width", "height", "frames", "items": [...], "warnings": [...]}``; each item
    holds its frame range, best frame, sharpness, face boxes and the largest face's landmarks.
    """
    from tqdm import tqdm

    warnings: list[str] = []
    info = _probe(video)
    first, stop = frame_range(info, cfg.start_time, cfg.end_time)
    expected = (min(stop, info.num_frames) if stop is not None else info.num_frames) - first
    dedup = Deduplicator(cutoff=opt.cutoff, tolerance=opt.tolerance)
    items: list[dict] = []
    decoded = 0
    shape = (info.height, info.width)

    def finish(done) -> None:
        run, frame = done
        faces = A.detect_faces(frame, detect_size=opt.detect_size)
        items.append({
            "first_frame": run.first_frame, "last_frame": run.last_frame, "frame": run.frame,
            "sharpness": round(run.sharpness, 3),
            "faces": [{"box": [round(v, 2) for v in f.box], "score": round(f.score, 4)} for f in faces],
            "landmarks": faces[0].landmarks.round(2).tolist() if faces else None,
        })

    with tqdm(total=max(expected, 0) or None, desc=f"{cfg.name}: frames", unit="fr", leave=False,
              disable=None if progress else True) as bar:
        for index, frame in prefetch(iter_frames(video, start_time=cfg.start_time, end_time=cfg.end_time)):
            shape = frame.shape[:2]
            decoded += 1
            done = dedup.push(index, frame)
            if done is not None:
                finish(done)
            bar.update(1)
        last = dedup.finish()
        if last is not None:
            finish(last)
    if decoded == 0:
        raise VideoError(f"{video}: no frame could be decoded (corrupt video, or start_time past its end)")
    if expected > 0 and decoded < 0.9 * expected:
        # a damaged file: cutting what decodes would give wrong ages and drop faces made before
        raise VideoError(f"{video}: decoding stopped after {decoded} of {expected} frames (truncated or damaged "
                         f"video; if it is whole, set end_time)")
    return {"fps": info.fps, "width": int(shape[1]), "height": int(shape[0]), "frames": decoded,
            "items": items, "warnings": list(warnings)}


def catalog(items: list[dict], cfg: VideoConfig, opt: FetchOptions, *, fps: float, frame_shape: tuple[int, int]
            ) -> tuple[list[ManifestRow], dict[int, np.ndarray]]:
    """Statuses, photo numbers and ages of the scanned items; landmarks of the usable faces
    (``index -> [68, 2]``: every photo that passed the checks, whether kept, decimated or excluded).

    Items without a face are not photos and take no age; every other item is photo ``k`` (video
    order) with age ``cfg.ages(n)[k]``, also when a check rejects it (it keeps its age slot)."""
    found = []
    for it in items:
        faces = [A.Face(box=tuple(f["box"]), score=f["score"]) for f in it["faces"]]
        if faces and it["landmarks"] is not None:
            faces[0].landmarks = np.asarray(it["landmarks"], dtype=np.float64)
        found.append(faces)
    widths = [fs[0].width for fs in found if fs]
    median_width = float(np.median(widths)) if widths else 0.0
    ages = cfg.ages(len(widths))
    rows: list[ManifestRow] = []
    shapes: dict[int, np.ndarray] = {}
    photo = 0
    for index, (it, faces) in enumerate(zip(items, found)):
        row = ManifestRow(index=index, photo=None, age_days=None, status="", reason="",
                          time_s=it["first_frame"] / fps, first_frame=it["first_frame"], last_frame=it["last_frame"],
                          frame=it["frame"])
        status, reason = A.check_faces(faces, frame_shape, min_face_px=opt.min_face_px, similar=opt.similar_faces)
        if status == "ok" and faces[0].width < opt.min_face_fraction * median_width:
            status = A.FACE_TOO_SMALL
            reason = (f"face {faces[0].width:.0f} px wide, under {opt.min_face_fraction:g} x the video's median "
                      f"({median_width:.0f} px)")
        if faces:
            row.photo, row.age_days = photo, ages[photo]
            photo += 1
        if status == "ok":
            shapes[index] = faces[0].landmarks
            if row.photo % cfg.decimate:
                status, reason = DECIMATED, f"decimate = {cfg.decimate}"
            elif row.photo in cfg.exclude:
                status, reason = EXCLUDED, "listed in exclude"
            else:
                status = KEPT
        row.status, row.reason = status, reason
        rows.append(row)
    return rows, shapes


def align_photos(video: Path, rows: list[ManifestRow], quads: dict[int, list[float]], folder: Path,
                 opt: FetchOptions, thumb_size: int, cfg: VideoConfig, *, progress: bool = True):
    """Second streaming pass: decode only the frames of ``rows``, align them in worker threads and
    write ``aligned/<age>.png`` atomically. Yields ``(row, thumbnail)`` as each face is written."""
    from tqdm import tqdm

    by_frame: dict[int, list[ManifestRow]] = {}
    for r in rows:
        by_frame.setdefault(r.frame, []).append(r)
    last = max(by_frame)

    def job(frame: np.ndarray, r: ManifestRow) -> tuple[ManifestRow, np.ndarray | None]:
        c = quads[r.age_days]
        try:
            face = A.align_face(frame, A.Quad(center=np.array(c[:2]), x=np.array(c[2:])), opt.size)
        except ValueError:
            return r, None
        ok, buf = cv2.imencode(".png", face, [cv2.IMWRITE_PNG_COMPRESSION, opt.png_compression])
        if not ok:
            raise FetchError(f"video {cfg.name!r}: cannot encode a PNG")
        io.write_bytes(folder / r.file, buf.tobytes())
        return r, thumbnail(face, thumb_size)

    pending = []
    with ThreadPoolExecutor(max_workers=max(1, opt.workers)) as pool, \
            tqdm(total=len(rows), desc=f"{cfg.name}: align", unit="face", leave=False,
                 disable=None if progress else True) as bar:
        for index, frame in prefetch(iter_frames(video, start_time=cfg.start_time, end_time=cfg.end_time,
                                                 wanted=lambda i: i in by_frame)):
            if frame is not None:
                for r in by_frame[index]:
                    pending.append(pool.submit(job, frame, r))
            while len(pending) > 2 * max(1, opt.workers) or (pending and pending[0].done()):
                out = pending.pop(0).result()
                bar.update(1)
                yield out
            if index >= last:
                break
        for fut in pending:
            out = fut.result()
            bar.update(1)
            yield out


def _probe(video: Path) -> VideoInfo:
    """Open and close the video: its properties, or a :class:`VideoError` for an unreadable file."""
    cap, info = open_video(video)
    cap.release()
    return info
