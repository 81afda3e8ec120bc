"""Download a video with yt-dlp's Python API (never a subprocess), cached in the subject's folder.

The video lands in ``<folder>/video.<ext>``; ``<folder>/.fetch/source.json`` records where it came
from (URL, id, title, format, size, sha256). A second call with the same URL finds that record and
the file and downloads nothing. yt-dlp writes to ``*.part`` and renames the finished file, so an
interrupted download never looks finished.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from aging.fetch.files import read_json, write_json_atomic
from aging.errors import AgingError

MAX_HEIGHT = 1080
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class DownloadError(AgingError, RuntimeError):
    """A video that cannot be downloaded (unavailable, private, 404, no network, ...)."""


@dataclass(frozen=True)
class Source:
    path: Path
    url: str
    downloaded: bool     # True when this call downloaded it, False when it was cached / local


def source_record(folder: Path) -> Path:
    return folder / ".fetch" / "source.json"


def cached_download(url: str, folder: str | Path) -> Path | None:
    """The cached video for ``url`` in ``folder``, or None."""
    folder = Path(folder)
    rec = read_json(source_record(folder))
    if not isinstance(rec, dict) or rec.get("url") != url or not rec.get("file"):
        return None
    path = folder / rec["file"]
    return path if path.is_file() else None


def download(url: str, folder: str | Path, *, progress: bool = True, max_height: int = MAX_HEIGHT) -> Source:
    """Download the best video stream of ``url`` up to ``max_height`` lines into
    ``folder/video.<ext>``, or reuse the cached file. Raises :class:`DownloadError`."""
    import yt_dlp
    from tqdm import tqdm

    folder = Path(folder)
    cached = cached_download(url, folder)
    if cached is not None:
        return Source(path=cached, url=url, downloaded=False)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    log = _Logger()
    bar: list = []

    def hook(d: dict) -> None:
        status = d.get("status")
        if status == "downloading":
            if not bar:
                bar.append(tqdm(desc="download", unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                                disable=None if progress else True))
            total = d.get("total_bytes") or d.get("total_bytes_estimate")
            if total and bar[0].total != int(total):
                bar[0].total = int(total)
            done = d.get("downloaded_bytes")
            if done is not None:
                bar[0].update(int(done) - bar[0].n)
        elif status in ("finished", "error") and bar:
            bar.pop().close()

    opts = {
        "format": f"bv*[height<=?{max_height}]/b[height<=?{max_height}]/bv*/b",
        # same resolution: prefer H.264, which every OpenCV build decodes
        "format_sort": [f"res:{max_height}", "vcodec:h264", "ext:mp4"],
        "outtmpl": {"default": "video.%(ext)s"},
        "paths": {"home": str(folder), "temp": str(folder)},
        "noplaylist": True,
        "overwrites": True,
        "retries": 3,
        "fragment_retries": 3,
        "socket_timeout": 30,
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "logger": log,
        "progress_hooks": [hook],
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=True)
            info = ydl.sanitize_info(info) if info else None
    except yt_dlp.utils.DownloadError as exc:
        raise DownloadError(f"cannot download {url}: {_clean(str(exc))}") from None
    except Exception as exc:  # yt-dlp raises a few plain errors (network, file system)
        raise DownloadError(f"cannot download {url}: {_clean(str(exc)) or type(exc).__name__}") from None
    finally:
        while bar:
            bar.pop().close()
        if created and not any(folder.iterdir()):
            folder.rmdir()   # leave no empty subject folder behind a failed download
    if not info:
        raise DownloadError(f"cannot download {url}: {log.last_error or 'no video found'}")
    if info.get("_type") == "playlist":
        raise DownloadError(f"{url} is a playlist; give the URL of one video")
    files = [d.get("filepath") for d in info.get("requested_downloads") or [] if d.get("filepath")]
    path = Path(files[0]) if files else None
    if path is None or not path.is_file():
        raise DownloadError(f"cannot download {url}: yt-dlp reported no file")
    for old in folder.glob("video.*"):   # a video cached for a former URL
        if old != path and not old.name.endswith((".part", ".ytdl")):
            old.unlink()
    write_json_atomic(source_record(folder), {
        "url": url, "file": path.name, "id": info.get("id"), "title": info.get("title"),
        "uploader": info.get("uploader"), "duration": info.get("duration"), "format_id": info.get("format_id"),
        "width": info.get("width"), "height": info.get("height"), "fps": info.get("fps"),
        "vcodec": info.get("vcodec"), "bytes": path.stat().st_size, "sha256": sha256(path),
        "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return Source(path=path, url=url, downloaded=True)


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _clean(msg: str) -> str:
    """yt-dlp's message on one line, without colours, 'ERROR:' and the Python cause."""
    msg = _ANSI.sub("", msg).strip().splitlines()[0] if msg.strip() else ""
    msg = re.sub(r"^ERROR:\s*", "", msg)
    msg = re.sub(r"\s*\(caused by .*\)$", "", msg)
    return msg.strip()


class _Logger:
    """Receives yt-dlp's messages instead of the terminal; keeps the errors."""

    def __init__(self):
        self.last_error = ""
        self.warnings: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.warnings.append(_clean(msg))

    def error(self, msg: str) -> None:
        self.last_error = _clean(msg)
