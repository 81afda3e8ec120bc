"""Options of the fetch stage: the single source of its defaults (no OpenCV or dlib needed).

:class:`FetchOptions` is frozen: vary it with :func:`dataclasses.replace`. The CLI reads its
defaults from it, and ``data/<subject>/fetch.options.json`` records its ``asdict`` (as
:meth:`FetchOptions.for_video` makes it for the video) beside the video's config fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from aging.fetch.config import VideoConfig


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

    def for_video(self, cfg: VideoConfig) -> FetchOptions:
        """The options a video is fetched with: its own ``cutoff``/``tolerance`` where it gives
        them, and stabilised only when both the options and the video say so."""
        return replace(self, cutoff=self.cutoff if cfg.cutoff is None else cfg.cutoff,
                       tolerance=self.tolerance if cfg.tolerance is None else cfg.tolerance,
                       stabilise=bool(self.stabilise and cfg.stabilise))


def options_record(options: FetchOptions, cfg: VideoConfig) -> dict:
    """What ``fetch.options.json`` holds: the ``options`` the video ``cfg`` ran with (made by
    :meth:`FetchOptions.for_video`) and its config fields that shape the outputs."""
    return {"options": asdict(options),
            "video": {"name": cfg.name, "url": cfg.url, "start_age_days": cfg.start_age_days,
                      "days_per_photo": cfg.days_per_photo, "end_age_days": cfg.end_age_days,
                      "start_time": cfg.start_time, "end_time": cfg.end_time, "decimate": cfg.decimate,
                      "exclude": cfg.exclude.as_list(), "stabilise": cfg.stabilise}}
