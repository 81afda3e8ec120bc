"""Cut a "photo a day" video into its distinct photos, streaming (never the whole video in memory).

A photo of a time-lapse is held for several video frames. Consecutive frames belong to the same
photo while the fraction of pixels that changed by more than ``tolerance`` grey levels stays under
``cutoff`` (the study's L0 comparison, made robust to compression noise by comparing small,
area-averaged grey images instead of raw pixels). Each run of frames keeps its sharpest frame
(variance of the Laplacian), so a photo is taken from its cleanest encoded frame.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from aging.errors import AgingError

COMPARE_WIDTH = 320  # width (px) of the grey images that are compared


class VideoError(AgingError, RuntimeError):
    """A video that cannot be opened or decoded."""


@dataclass
class Run:
    """One distinct photo: frames ``first_frame..last_frame`` (inclusive), best frame ``frame``."""

    first_frame: int
    last_frame: int
    frame: int           # index of the sharpest frame of the run
    sharpness: float     # variance of the Laplacian of that frame (small grey image)

    @property
    def length(self) -> int:
        return self.last_frame - self.first_frame + 1


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    num_frames: int      # as reported by the container (may be approximate)
    width: int
    height: int


def _quiet_decoder() -> None:
    """Keep FFmpeg's and OpenCV's own complaints about a bad file off the terminal (our error says
    it in one line). ``OPENCV_FFMPEG_LOGLEVEL`` set by the user wins."""
    global _QUIET
    if not _QUIET:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")   # AV_LOG_QUIET
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:  # pragma: no cover - older OpenCV builds
            pass
        _QUIET = True


_QUIET = False


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video with OpenCV; :class:`VideoError` with a clear message when it cannot."""
    _quiet_decoder()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise VideoError(f"{path}: cannot open the video (not a video file, or corrupt)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 25.0
    info = VideoInfo(path=path, fps=fps, num_frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                     width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if info.width <= 0 or info.height <= 0:
        cap.release()
        raise VideoError(f"{path}: cannot open the video (no video stream)")
    return cap, info


def frame_range(info: VideoInfo, start_time: float | None, end_time: float | None) -> tuple[int, int | None]:
    """Frames ``[first, stop)`` covering ``start_time..end_time`` seconds (``stop`` None: to the end)."""
    first = int(np.ceil(start_time * info.fps - 1e-6)) if start_time else 0
    stop = int(np.floor(end_time * info.fps + 1e-6)) if end_time is not None else None
    return first, stop


def iter_frames(path: str | Path, *, start_time: float | None = None, end_time: float | None = None,
                wanted: Callable[[int], bool] | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield ``(index, frame)`` for every frame of the range, decoding sequentially.

    ``frame`` is a BGR ``[H, W, 3]`` uint8 array, or ``None`` for frames ``wanted`` rejects (those
    are decoded but not converted, which is cheaper). Frame indices count from the video's start,
    so two passes over the same file agree.
    """
    cap, info = open_video(path)
    first, stop = frame_range(info, start_time, end_time)
    try:
        index = 0
        while index < first:
            if not cap.grab():
                return
            index += 1
        while stop is None or index < stop:
            if wanted is None or wanted(index):
                ok, frame = cap.read()
                if not ok or frame is None:
                    return
                yield index, frame
            else:
                if not cap.grab():
                    return
                yield index, None
            index += 1
    finally:
        cap.release()


def prefetch(items: Iterable, depth: int = 4) -> Iterator:
    """Iterate over ``items`` in a background thread, up to ``depth`` items ahead.

    OpenCV decodes without holding the GIL, so decoding the next frames overlaps with the work on
    the current one. Errors of the producer are raised in the consumer; stopping early stops it.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            q.put((end, None))
        except BaseException as exc:  # handed to the consumer
            q.put((end, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="frames-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, tuple) and len(item) == 2 and item[0] is end:
                if item[1] is not None:
                    raise item[1]
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


def compare_image(frame: np.ndarray) -> np.ndarray:
    """Small, area-averaged grey image ``[h, COMPARE_WIDTH]`` uint8 used for comparisons."""
    h, w = frame.shape[:2]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    if w <= COMPARE_WIDTH:
        return grey
    return cv2.resize(grey, (COMPARE_WIDTH, max(1, round(h * COMPARE_WIDTH / w))), interpolation=cv2.INTER_AREA)


def changed_fraction(a: np.ndarray, b: np.ndarray, tolerance: float) -> float:
    """Fraction of pixels of two compare images that differ by more than ``tolerance`` grey levels."""
    diff = cv2.absdiff(a, b)
    _, mask = cv2.threshold(diff, tolerance, 255, cv2.THRESH_BINARY)
    return cv2.countNonZero(mask) / float(mask.size)


def sharpness(small: np.ndarray) -> float:
    """Variance of the Laplacian (higher = sharper)."""
    return float(cv2.Laplacian(small, cv2.CV_32F).var())


class Deduplicator:
    """Groups a stream of frames into runs of the same photo.

    Feed frames in order with :meth:`push`; it returns a finished :class:`Run` (and that run's best
    frame) when a frame starts a new photo. Call :meth:`finish` at the end for the last run.
    A frame starts a new run when, compared with the previous frame *or* with the run's first
    frame, more than ``cutoff`` of its pixels changed by more than ``tolerance`` grey levels (the
    second comparison stops a slow drift from chaining different photos together).
    """

    def __init__(self, *, cutoff: float = 0.15, tolerance: float = 5.0):
        self.cutoff = cutoff
        self.tolerance = tolerance
        self._run: Run | None = None
        self._best: np.ndarray | None = None
        self._prev: np.ndarray | None = None
        self._anchor: np.ndarray | None = None

    def push(self, index: int, frame: np.ndarray) -> tuple[Run, np.ndarray] | None:
        small = compare_image(frame)
        done = None
        if self._run is not None:
            new = (changed_fraction(small, self._prev, self.tolerance) > self.cutoff
                   or changed_fraction(small, self._anchor, self.tolerance) > self.cutoff)
            if new:
                done = (self._run, self._best)
                self._run = None
        sharp = sharpness(small)
        if self._run is None:
            self._run = Run(first_frame=index, last_frame=index, frame=index, sharpness=sharp)
            self._best = frame
            self._anchor = small
        else:
            self._run.last_frame = index
            if sharp > self._run.sharpness:
                self._run.frame, self._run.sharpness, self._best = index, sharp, frame
        self._prev = small
        return done

    def finish(self) -> tuple[Run, np.ndarray] | None:
        done = (self._run, self._best) if self._run is not None else None
        self._run = self._best = self._prev = self._anchor = None
        return done


def cut(frames: Iterable[tuple[int, np.ndarray]], *, cutoff: float = 0.15,
        tolerance: float = 5.0) -> Iterator[tuple[Run, np.ndarray]]:
    """Group ``(index, frame)`` pairs into runs; yields ``(run, best_frame)`` as each run ends."""
    dedup = Deduplicator(cutoff=cutoff, tolerance=tolerance)
    for index, frame in frames:
        done = dedup.push(index, frame)
        if done is not None:
            yield done
    last = dedup.finish()
    if last is not None:
        yield last


def decimate(indices: list[int], k: int) -> list[bool]:
    """Which of ``len(indices)`` photos a decimation by ``k`` keeps (every k-th, starting with 0)."""
    if k < 1:
        raise ValueError("decimate must be >= 1")
    return [i % k == 0 for i in indices]
