"""``aging fetch`` for one video: download -> cut + de-duplicate -> find faces -> ages -> align.

Writes, under ``<out>/<subject>/``::

    video.<ext>              the downloaded video (local videos are used in place)
    aligned/<age_days>.png   one FFHQ-aligned face per kept photo
    manifest.csv             one row per distinct item (see aging.fetch.manifest)
    contact_sheet.jpg        all kept faces, labelled with photo number and age
    fetch.options.json       the options of the fetch (:class:`FetchOptions`, with the video's own
                             de-dup and stabilisation settings) and the video's config fields
    .fetch/                  bookkeeping: source.json (the video: URL or path, size, sha256),
                             scan.json (cut + faces), state.json (what each aligned file and the
                             contact sheet were made from)

Finished work is known from content: the scan is reused while the video's bytes (sha256) and
the cut/detection settings are the same; an aligned file is rewritten only when the frame or crop
it comes from changed (or the file is gone or has another size); files of photos that are no
longer kept are removed; the manifest, the contact sheet, the options and the bookkeeping are
rewritten only when their content changes, so a re-run of a finished fetch writes nothing. A
cached download is verified (size, sha256) before use and downloaded again when damaged. A video
that cannot be read or shows no face fails before anything of its subject is removed or
rewritten. Every file is written atomically (:mod:`aging.io`); temporaries a killed run left are
removed by the next.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from aging import io
from aging.errors import AgingError, FileFormatError
from aging.fetch.align import (FACE_TOO_SMALL, MULTI_FACE, Face, ModelsError, Quad, add_landmarks, align_face,
                               check_faces, detect_faces, ffhq_quad, keypoints, stabilise)
from aging.fetch.config import VideoConfig, VideoConfigError
from aging.fetch.contact_sheet import make_contact_sheet, thumbnail, thumbnail_size
from aging.fetch.download import DownloadError, Source, download_video, local_source, source_record
from aging.fetch.frames import Run, VideoError, VideoInfo, cut, decimate, frame_range, iter_frames, open_video, prefetch
from aging.fetch.manifest import DECIMATED, EXCLUDED, KEPT, ManifestRow, write_manifest
from aging.fetch.options import FetchOptions, options_record
from aging.progress import progress_bar

SCAN_VERSION = 3      # 2: videos identified by sha256, not by name and time; 3: face descriptors
REFERENCE_SAMPLES = 64  # single-face photos per video whose descriptors make the subject's reference
ALIGN_VERSION = 1
OPTIONS_NAME = "fetch.options.json"


class FetchError(AgingError, RuntimeError):
    """A video that could not be fetched; the message names the video."""


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
    wrote_options: bool = False      # fetch.options.json written (new or changed options)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def did_work(self) -> bool:
        return any((self.aligned, self.removed, self.downloaded, self.scanned, self.wrote_manifest, self.wrote_sheet,
                    self.wrote_options))


@dataclass
class _Job:
    """One video being fetched: what every step needs."""

    cfg: VideoConfig
    folder: Path                     # <out>/<subject>, absolute
    opt: FetchOptions                # FetchOptions.for_video(cfg)
    progress: bool
    log: Callable[[str], None]
    warnings: list[str] = field(default_factory=list)

    @property
    def cache(self) -> Path:
        return self.folder / ".fetch"


# ---------------------------------------------------------------------------------------------


def fetch_video(cfg: VideoConfig, out_root: str | Path, *, options: FetchOptions = FetchOptions(),
                progress: bool = True, log: Callable[[str], None] | None = None) -> FetchResult:
    """Run the whole fetch for one video. Raises :class:`FetchError` (message names the video)."""
    t0 = time.perf_counter()
    # the root is resolved once: yt-dlp reports absolute paths, and a relative root must mean the
    # same folder wherever it is compared
    job = _Job(cfg=cfg, folder=Path(out_root).resolve() / cfg.subject, opt=options.for_video(cfg),
               progress=progress, log=log or (lambda s: None))
    try:
        res = _fetch(job)
    except OSError as exc:  # disk full, permissions, ...
        where = f"{exc.filename}: " if exc.filename else ""
        raise FetchError(f"video {cfg.name!r}: {where}{exc.strerror or exc}") from None
    except (DownloadError, VideoError, VideoConfigError, ModelsError) as exc:
        msg = str(exc)
        raise FetchError(msg if msg.startswith(f"video {cfg.name!r}") or ": video " in msg
                         else f"video {cfg.name!r}: {msg}") from None
    res.seconds = time.perf_counter() - t0
    return res


def _fetch(job: _Job) -> FetchResult:
    """The steps of a fetch, in order; nothing of the subject's folder changes before the video
    proved usable (read, faces found, ages given)."""
    _remove_leftovers(job.folder)
    src = _source(job)
    scan, scanned = _scan(job, src)
    rows, shapes = catalog(scan["items"], job.cfg, job.opt, fps=scan["fps"],
                           frame_shape=(scan["height"], scan["width"]))
    # the video and its ages proved usable: from here on the subject's folder may change
    if src.record is not None:
        io.write_json(source_record(job.folder), src.record)
    if scanned:
        io.write_json(job.cache / "scan.json", scan)
    recipes = _recipes(job, rows, shapes, src.identity)
    state = io.read_json(job.cache / "state.json", default=None)
    state = state if isinstance(state, dict) else {}
    thumbs, removed = _update_aligned(job, src.path, rows, recipes, state)
    wrote_manifest = write_manifest(job.folder / "manifest.csv", rows)
    wrote_sheet = _update_contact_sheet(job, rows, recipes, thumbs, state)
    wrote_options = io.write_json(job.folder / OPTIONS_NAME, options_record(job.opt, job.cfg), only_if_changed=True)
    io.write_json(job.cache / "state.json", state, only_if_changed=True)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return FetchResult(name=job.cfg.name, subject=job.cfg.subject, folder=job.folder, video=src.path, counts=counts,
                       items=len(rows), photos=sum(r.photo is not None for r in rows), aligned=len(thumbs),
                       removed=removed, downloaded=src.downloaded, scanned=scanned, wrote_manifest=wrote_manifest,
                       wrote_sheet=wrote_sheet, wrote_options=wrote_options, warnings=job.warnings)


def _source(job: _Job) -> Source:
    """The video of the job: a local file used in place, or the (verified) cached or new download."""
    cfg = job.cfg
    if cfg.is_local:
        path = cfg.local_path()
        if not path.is_file():
            raise FetchError(f"video {cfg.name!r}: {path}: no such video file")
        src = local_source(path, job.folder, cfg.url)
    else:
        job.log(f"{cfg.name}: downloading {cfg.url} (unless cached)")
        src = download_video(cfg.url, job.folder, progress=job.progress)
    job.warnings.extend(src.warnings)
    return src


def _scan(job: _Job, src: Source) -> tuple[dict, bool]:
    """The video cut into its distinct items, with their faces: ``(scan, True)`` when scanned now,
    ``(scan, False)`` when the cached scan was made from the same bytes and settings. Fails for a
    video with no frame or no face in the selected time range."""
    cfg, opt, video = job.cfg, job.opt, src.path
    key = {"version": SCAN_VERSION, "video": src.identity, "start_time": cfg.start_time,
           "end_time": cfg.end_time, "cutoff": opt.cutoff, "tolerance": opt.tolerance,
           "detect_size": opt.detect_size}
    scan = io.read_json(job.cache / "scan.json", default=None)
    scanned = not (isinstance(scan, dict) and scan.get("key") == key)
    if scanned:
        _probe(video)   # a clear error for an unreadable file before any work
        job.log(f"{cfg.name}: cutting {video.name} into photos and finding faces")
        scan = {"key": key, **scan_video(video, cfg, opt, progress=job.progress)}
    items = scan["items"]
    if not items:
        raise FetchError(f"video {cfg.name!r}: {video}: no frames in the selected time range")
    if not any(it["faces"] for it in items):
        raise FetchError(f"video {cfg.name!r}: {video}: no face found in any of its {len(items)} distinct photos"
                         f"{' between start_time and end_time' if cfg.start_time or cfg.end_time else ''}")
    return scan, scanned


def _recipes(job: _Job, rows: list[ManifestRow], shapes: dict[int, np.ndarray], video: dict) -> dict[int, dict]:
    """What each kept photo's aligned file is made from: ``age -> {frame, quad, size, video,
    version}``. Sets the kept rows' ``file`` (and notes a stabilisation that moved the crop)."""
    kps = _keypoints(job, rows, shapes)
    recipes = {}
    for r in rows:
        if r.status == KEPT:
            quad = ffhq_quad(kps[r.index])
            recipes[r.age_days] = {"frame": r.frame, "quad": [round(v, 3) for v in quad.as_list()],
                                   "size": job.opt.size, "video": video, "version": ALIGN_VERSION}
            r.file = f"aligned/{r.age_days}.png"
    return recipes


def _keypoints(job: _Job, rows: list[ManifestRow], shapes: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """FFHQ key points of every usable face (``index -> [4, 2]``), stabilised over the sequence
    unless the options or the video turn it off."""
    usable = [r.index for r in rows if r.index in shapes]
    if not job.opt.stabilise or len(usable) < 2:
        return {i: keypoints(shapes[i]) for i in usable}
    st = stabilise([shapes[i] for i in usable], window=job.opt.window)
    kps = dict(zip(usable, st.keypoints))
    for i, shift, n_out in zip(usable, st.shift, st.outliers):
        row = rows[i]
        if row.status == KEPT and shift > 0.01 * ffhq_quad(kps[i]).size:
            row.reason = f"stabilised: {n_out} landmarks corrected, key points moved {shift:.1f} px"
    return kps


def _update_aligned(job: _Job, video: Path, rows: list[ManifestRow], recipes: dict[int, dict],
                    state: dict) -> tuple[dict[int, np.ndarray], int]:
    """Bring ``aligned/`` in line with ``recipes``: remove the files of photos no longer kept,
    write the faces whose recipe changed (or whose file is gone), and record what each file is
    made from in ``state``. A face that cannot be aligned is excluded (its row says why).
    Returns the thumbnails of the faces written, by age, and the number of files removed."""
    done = _done(state, job.folder)
    removed = 0
    for f in io.data_files(job.folder / "aligned", [".png"]):
        if f.stem.isdigit() and int(f.stem) not in recipes:
            removed += io.remove(f)
    done = {a: v for a, v in done.items() if a in recipes}
    sizes = {a: v for a, v in (state.get("aligned_bytes") or {}).items() if a.isdigit() and int(a) in done}
    kept = [r for r in rows if r.status == KEPT]
    todo = [r for r in kept if done.get(r.age_days) != recipes[r.age_days]]
    thumbs: dict[int, np.ndarray] = {}
    failed: set[int] = set()
    if todo:
        job.log(f"{job.cfg.name}: aligning {len(todo)} faces at {job.opt.size} px")
        faces = [(r, _quad(recipes[r.age_days]["quad"])) for r in todo]
        for r, thumb in align_photos(video, faces, job.folder, job.cfg, job.opt,
                                     thumb_size=thumbnail_size(len(kept)), progress=job.progress):
            if thumb is None:
                failed.add(r.age_days)
                continue
            thumbs[r.age_days] = thumb
            done[r.age_days] = recipes[r.age_days]
            sizes[str(r.age_days)] = (job.folder / r.file).stat().st_size
    missing = [r for r in todo if r.age_days not in thumbs]
    if missing:
        removed += _exclude_unaligned(job, missing, failed, recipes)
        for r in missing:
            done.pop(r.age_days, None)
    state["aligned"] = {str(a): v for a, v in sorted(done.items())}
    state["aligned_bytes"] = {str(a): sizes[str(a)] for a in sorted(done)}
    return thumbs, removed


def _exclude_unaligned(job: _Job, missing: list[ManifestRow], failed: set[int], recipes: dict[int, dict]) -> int:
    """Faces that could not be aligned (``failed``: the crop left the frame; the others: the frame
    did not decode again) become ``excluded``: a warning, their row's reason, their former file
    removed and their recipe dropped. Returns the number of files removed."""
    numbers = ", ".join(str(r.photo) for r in missing)
    job.warnings.append(f"{len(missing)} faces could not be aligned (photos {numbers})")
    removed = 0
    for r in missing:
        removed += io.remove(job.folder / r.file)   # made from another frame or crop before
        r.status, r.file = EXCLUDED, ""
        r.reason = ("the face square lies outside the frame" if r.age_days in failed
                    else "the frame could not be decoded again")
        recipes.pop(r.age_days, None)
    return removed


def _update_contact_sheet(job: _Job, rows: list[ManifestRow], recipes: dict[int, dict],
                          thumbs: dict[int, np.ndarray], state: dict) -> bool:
    """Write ``contact_sheet.jpg`` unless it already shows exactly these kept faces (removed when
    none is kept); record it in ``state``. True when the sheet was written or removed."""
    path = job.folder / "contact_sheet.jpg"
    kept = [r for r in rows if r.status == KEPT]
    if not kept:
        job.warnings.append(f"no photo was kept (see {job.folder / 'manifest.csv'})")
        state.pop("contact_sheet", None)
        return io.remove(path)
    key = io.digest([[r.photo, r.age_days, recipes[r.age_days]] for r in kept])
    rec = state.get("contact_sheet")
    if isinstance(rec, dict) and rec.get("key") == key and _size(path) == rec.get("bytes"):
        return False
    tsize = thumbnail_size(len(kept))
    faces = []
    for r in kept:
        img = thumbs.get(r.age_days)
        if img is None or img.shape[0] != tsize:
            img = _read_thumbnail(job.folder / r.file, tsize)
        faces.append((r.photo, r.age_days, img))
    n_photos = sum(r.photo is not None for r in rows)
    sheet = make_contact_sheet(faces, title=f"{job.cfg.subject}: {len(kept)} kept of {n_photos} photos")
    ok, buf = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise FetchError(f"video {job.cfg.name!r}: cannot encode the contact sheet")
    io.write_bytes(path, buf.tobytes())
    state["contact_sheet"] = {"key": key, "bytes": len(buf)}
    return True


def _read_thumbnail(path: Path, size: int) -> np.ndarray:
    """The BGR thumbnail of an aligned face written before (black when it cannot be read)."""
    try:
        rgb = io.read_image(path)
    except FileFormatError:
        return np.zeros((size, size, 3), np.uint8)
    return thumbnail(np.ascontiguousarray(rgb[:, :, ::-1]), size)


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


def _quad(values: list[float]) -> Quad:
    """A recipe's ``quad`` (centre x, y, half-axis x, y) as a :class:`Quad`."""
    return Quad(center=np.array(values[:2]), x=np.array(values[2:]))


def _remove_leftovers(folder: Path) -> None:
    """Remove the temporaries of writes a killed run never finished (hidden ``*.tmp*`` files)."""
    for d in (folder, folder / ".fetch", folder / "aligned"):
        io.remove_temporaries(d)


# ---------------------------------------------------------------------------------------------


def scan_video(video: Path, cfg: VideoConfig, opt: FetchOptions, *, progress: bool = True) -> dict:
    """One streaming pass: distinct photos (runs of frames, :func:`aging.fetch.frames.cut`) and
    the faces on each one's best frame.

    Returns ``{"fps", "width", "height", "frames", "items": [...]}``; each item holds its frame
    range, best frame, sharpness, face boxes and the largest face's landmarks.
    """
    info = _probe(video)
    first, stop = frame_range(info, cfg.start_time, cfg.end_time)
    expected = (min(stop, info.num_frames) if stop is not None else info.num_frames) - first
    seen = {"frames": 0, "shape": (info.height, info.width)}
    items = []
    spacing = max(1, expected // REFERENCE_SAMPLES)   # frames between the photos that make the reference
    sampled: set[int] = set()
    with progress_bar(total=max(expected, 0) or None, desc=f"{cfg.name}: frames", unit="fr",
                      quiet=not progress) as bar:
        frames = _counted(prefetch(iter_frames(video, start_time=cfg.start_time, end_time=cfg.end_time)), seen, bar)
        for run, best in cut(frames, cutoff=opt.cutoff, tolerance=opt.tolerance):
            items.append(_scan_item(run, best, opt.detect_size, sample=run.frame // spacing not in sampled))
            if len(items[-1]["faces"]) == 1:
                sampled.add(run.frame // spacing)
    decoded, shape = seen["frames"], seen["shape"]
    if decoded == 0:
        raise VideoError(f"{video}: no frame could be decoded (corrupt video, or start_time past its end)")
    if expected > 0 and decoded < 0.9 * expected:
        # a damaged file: cutting what decodes would give wrong ages and drop faces made before
        raise VideoError(f"{video}: decoding stopped after {decoded} of {expected} frames (truncated or damaged "
                         f"video; if it is whole, set end_time)")
    return {"fps": info.fps, "width": int(shape[1]), "height": int(shape[0]), "frames": decoded, "items": items}


def _counted(frames, seen: dict, bar):
    """Pass ``(index, frame)`` pairs on, counting them in ``seen`` (with the last frame's shape)
    and on the progress bar."""
    for index, frame in frames:
        seen["frames"] += 1
        seen["shape"] = frame.shape[:2]
        bar.update(1)
        yield index, frame


def _scan_item(run: Run, frame: np.ndarray, detect_size: int, *, sample: bool = False) -> dict:
    """One distinct photo as the scan records it: its frames and the faces on its best frame.

    Where there are several faces, each gets its landmarks and identity descriptor (catalog keeps
    the one that matches the subject); a single face gets its descriptor when ``sample`` (the
    photos whose median descriptor is the subject's reference)."""
    faces = detect_faces(frame, detect_size=detect_size)
    described = _describe(frame, faces) if len(faces) > 1 or (faces and sample) else [None] * len(faces)
    return {
        "first_frame": run.first_frame, "last_frame": run.last_frame, "frame": run.frame,
        "sharpness": round(run.sharpness, 3),
        "faces": [{"box": [round(v, 2) for v in f.box], "score": round(f.score, 4),
                   **({} if d is None or k == 0 else {"landmarks": f.landmarks.round(2).tolist()}),
                   **({} if d is None else {"descriptor": [round(float(v), 5) for v in d]})}
                  for k, (f, d) in enumerate(zip(faces, described))],
        "landmarks": faces[0].landmarks.round(2).tolist() if faces else None,
    }


def _describe(frame: np.ndarray, faces: list[Face]) -> list[np.ndarray]:
    """The identity descriptor of each face of a BGR frame (landmarks added where missing)."""
    from aging.score.faces import descriptor_at

    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    out = []
    for f in faces:
        if f.landmarks is None:
            add_landmarks(rgb, f)
        out.append(descriptor_at(rgb, f.landmarks))
    return out


def catalog(items: list[dict], cfg: VideoConfig, opt: FetchOptions, *, fps: float, frame_shape: tuple[int, int]
            ) -> tuple[list[ManifestRow], dict[int, np.ndarray]]:
    """Statuses, photo numbers and ages of the scanned items; landmarks of the usable faces
    (``index -> [68, 2]``: every photo that passed the checks, whether kept, decimated or excluded).

    Items without a face are not photos and take no age; every other item is photo ``k`` (video
    order) with age ``cfg.ages(n)[k]``, also when a check rejects it (it keeps its age slot).
    Photos :func:`aging.fetch.frames.decimate` drops are ``decimated``; photos listed in
    ``cfg.exclude`` are ``excluded``."""
    found = [_scanned_faces(it) for it in items]
    matches = match_subject(items, found, opt, frame_shape)
    widths = [fs[0].width for fs in found if fs]
    median_width = float(np.median(widths)) if widths else 0.0
    ages = cfg.ages(len(widths))
    kept_by_decimation = decimate(list(range(len(widths))), cfg.decimate)
    rows: list[ManifestRow] = []
    shapes: dict[int, np.ndarray] = {}
    photo = 0
    for index, (it, faces) in enumerate(zip(items, found)):
        row = ManifestRow(index=index, photo=None, age_days=None, status="", reason="",
                          time_s=it["first_frame"] / fps, first_frame=it["first_frame"], last_frame=it["last_frame"],
                          frame=it["frame"])
        if faces:
            row.photo, row.age_days = photo, ages[photo]
            photo += 1
        row.status, row.reason = _face_status(faces, frame_shape, opt, median_width)
        if index in matches:   # several faces: the subject's is kept, or none of them is the subject
            matched, why = matches[index]
            if not matched:
                row.status, row.reason = MULTI_FACE, why
            elif row.status == "ok":
                row.reason = why
        if row.status == "ok":
            shapes[index] = faces[0].landmarks
            if not kept_by_decimation[row.photo]:
                row.status, row.reason = DECIMATED, f"decimate = {cfg.decimate}"
            elif row.photo in cfg.exclude:
                row.status, row.reason = EXCLUDED, "listed in exclude"
            else:
                row.status = KEPT
        rows.append(row)
    return rows, shapes


def _scanned_faces(item: dict) -> list[Face]:
    """The faces a scan recorded for an item, largest first, with their landmarks where it has them."""
    faces = [Face(box=tuple(f["box"]), score=f["score"],
                  landmarks=np.asarray(f["landmarks"], dtype=np.float64) if f.get("landmarks") else None)
             for f in item["faces"]]
    if faces and item["landmarks"] is not None:
        faces[0].landmarks = np.asarray(item["landmarks"], dtype=np.float64)
    return faces


def subject_reference(items: list[dict], found: list[list[Face]], opt: FetchOptions,
                      frame_shape: tuple[int, int]) -> np.ndarray | None:
    """The subject's identity: the median descriptor of the clean single-face photos the scan
    described (None when there are none)."""
    descs = [it["faces"][0]["descriptor"] for it, faces in zip(items, found)
             if len(faces) == 1 and "descriptor" in it["faces"][0]
             and check_faces(faces, frame_shape, min_face_px=opt.min_face_px, similar=opt.similar_faces)[0] == "ok"]
    return np.median(np.asarray(descs, dtype=np.float64), axis=0) if descs else None


def match_subject(items: list[dict], found: list[list[Face]], opt: FetchOptions,
                  frame_shape: tuple[int, int]) -> dict[int, tuple[bool, str]]:
    """Photos with several faces of similar size: ``index -> (True, why)`` where one face matches
    the subject (``found[index]`` becomes that face alone), ``(False, why)`` where none does.
    Without a reference (no clean single-face photo described) nothing changes."""
    from aging.score.faces import SAME_PERSON, distance

    ref = subject_reference(items, found, opt, frame_shape)
    out: dict[int, tuple[bool, str]] = {}
    for index, (it, faces) in enumerate(zip(items, found)):
        if ref is None or len(faces) < 2 or check_faces(faces, frame_shape, similar=opt.similar_faces,
                                                        min_face_px=0.0)[0] != MULTI_FACE:
            continue
        dists = [distance(f.get("descriptor"), ref) for f in it["faces"]]
        best = min((k for k, d in enumerate(dists) if d is not None), key=lambda k: dists[k], default=None)
        if best is None or faces[best].landmarks is None:
            continue
        if dists[best] < SAME_PERSON:
            found[index] = [faces[best]]
            out[index] = (True, f"{len(faces)} faces: kept the one that matches the subject "
                                f"(descriptor distance {dists[best]:.2f})")
        else:
            out[index] = (False, f"{len(faces)} faces, none matches the subject (nearest descriptor distance "
                                 f"{dists[best]:.2f}, same person under {SAME_PERSON:g})")
    return out


def _face_status(faces: list[Face], frame_shape: tuple[int, int], opt: FetchOptions,
                 median_width: float) -> tuple[str, str]:
    """``("ok", "")`` or the fault of an item's faces (:func:`aging.fetch.align.check_faces`, and
    a face much smaller than the video's median)."""
    status, reason = check_faces(faces, frame_shape, min_face_px=opt.min_face_px, similar=opt.similar_faces)
    if status == "ok" and faces[0].width < opt.min_face_fraction * median_width:
        return FACE_TOO_SMALL, (f"face {faces[0].width:.0f} px wide, under {opt.min_face_fraction:g} x the video's "
                                f"median ({median_width:.0f} px)")
    return status, reason


def align_photos(video: Path, faces: list[tuple[ManifestRow, Quad]], folder: Path, cfg: VideoConfig,
                 opt: FetchOptions, *, thumb_size: int, progress: bool = True):
    """Second streaming pass: decode only the frames of ``faces`` (rows and their FFHQ squares),
    align and encode them in worker threads, and write ``folder/<row.file>`` atomically, one file
    at a time in frame order. Yields ``(row, thumbnail)`` as each face is written (thumbnail None:
    the square lies outside the frame, nothing written)."""
    by_frame: dict[int, list[tuple[ManifestRow, Quad]]] = {}
    for r, quad in faces:
        by_frame.setdefault(r.frame, []).append((r, quad))
    last = max(by_frame)
    workers = max(1, opt.workers)

    def render(frame: np.ndarray, r: ManifestRow, quad: Quad) -> tuple[ManifestRow, bytes | None, np.ndarray | None]:
        try:
            face = align_face(frame, quad, opt.size)
        except ValueError:
            return r, None, None
        ok, buf = cv2.imencode(".png", face, [cv2.IMWRITE_PNG_COMPRESSION, opt.png_compression])
        if not ok:
            raise FetchError(f"video {cfg.name!r}: cannot encode a PNG")
        return r, buf.tobytes(), thumbnail(face, thumb_size)

    def write(done) -> tuple[ManifestRow, np.ndarray | None]:
        r, png, thumb = done.result()
        if png is not None:
            io.write_bytes(folder / r.file, png)
        bar.update(1)
        return r, thumb

    pending = []
    frames = prefetch(iter_frames(video, start_time=cfg.start_time, end_time=cfg.end_time,
                                  wanted=lambda i: i in by_frame))
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            progress_bar(total=len(faces), desc=f"{cfg.name}: align", unit="face", quiet=not progress) as bar:
        for index, frame in frames:
            if frame is not None:
                pending += [pool.submit(render, frame, r, quad) for r, quad in by_frame[index]]
            while len(pending) > 2 * workers or (pending and pending[0].done()):
                yield write(pending.pop(0))
            if index >= last:
                break
        for done in pending:
            yield write(done)


def _probe(video: Path) -> VideoInfo:
    """Open and close the video: its properties, or a :class:`VideoError` for an unreadable file."""
    cap, info = open_video(video)
    cap.release()
    return info
