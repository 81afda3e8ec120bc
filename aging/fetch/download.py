"""The source video of a subject: downloaded with yt-dlp's Python API (never a subprocess) and
cached in the subject's folder, or a local file used in place.

A download lands in ``<folder>/video.<ext>``; ``<folder>/.fetch/source.json`` records where it
came from (URL, id, title, format) and what it is (size, sha256, and the file's modification time
when the sha256 was last checked). A later call with the same URL downloads nothing when the file
is still what the record says: same size, and same modification time or else the same sha256 (so
an untouched file is not re-hashed on every run). A damaged cached file is downloaded again.
yt-dlp writes to ``*.part`` and renames the finished file, so an interrupted download never looks
finished.

Both kinds of source are identified by content (:attr:`Source.identity`: sha256 and size), so the
work made from a video survives moving or copying it, and is redone when its bytes change.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from aging import io
from aging.errors import AgingError
from aging.io import sha256_file
from aging.progress import progress_bar

MAX_HEIGHT = 1080
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class DownloadError(AgingError, RuntimeError):
    """A video that cannot be downloaded (unavailable, private, 404, no network, ...)."""


@dataclass
class Source:
    path: Path
    url: str
    downloaded: bool     # True when this call downloaded it, False when it was cached / local
    sha256: str = ""
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    record: dict | None = None   # for a local video: the record to save once the video proved usable

    @property
    def identity(self) -> dict:
        """What the work made from this video depends on: its content."""
        return {"sha256": self.sha256, "bytes": self.bytes}


def source_record(folder: Path) -> Path:
    return folder / ".fetch" / "source.json"


def _read_record(folder: Path) -> dict | None:
    rec = io.read_json(source_record(folder), default=None)
    return rec if isinstance(rec, dict) else None


def verify(path: Path, rec: dict) -> tuple[bool, str]:
    """Is ``path`` the file ``rec`` describes (``bytes``, ``sha256``)? ``(ok, why not)``.

    The sha256 is recomputed only when the modification time differs from the one recorded when it
    was last checked; a file that passes then gets that time recorded (``rec`` is updated)."""
    try:
        st = path.stat()
    except OSError:
        return False, "missing"
    if st.st_size != rec.get("bytes"):
        return False, f"{st.st_size} bytes, expected {rec.get('bytes')}"
    if st.st_mtime_ns == rec.get("mtime_ns"):
        return True, ""
    if sha256_file(path) != rec.get("sha256"):
        return False, "its sha256 differs from the downloaded file's"
    rec["mtime_ns"] = st.st_mtime_ns
    return True, ""


def cached_download(url: str, folder: str | Path, warnings: list[str] | None = None) -> Source | None:
    """The cached, verified video for ``url`` in ``folder``, or None (a damaged one is reported in
    ``warnings``)."""
    folder = Path(folder)
    rec = _read_record(folder)
    if rec is None or rec.get("url") != url or not isinstance(rec.get("file"), str) \
            or Path(rec["file"]).name != rec["file"] or not isinstance(rec.get("sha256"), str):
        return None
    path = folder / rec["file"]
    if not path.exists():
        return None
    checked = rec.get("mtime_ns")
    ok, why = verify(path, rec)
    if not ok:
        if warnings is not None:
            warnings.append(f"the cached download {path} is damaged ({why}); downloading it again")
        return None
    if rec.get("mtime_ns") != checked:
        io.write_json(source_record(folder), rec)   # checked now: not hashed again while untouched
    return Source(path=path, url=url, downloaded=False, sha256=rec["sha256"], bytes=rec["bytes"])


def local_source(path: Path, folder: Path, url: str) -> Source:
    """A local video used in place, identified by content. Its sha256 is cached in the subject's
    ``source.json`` by path, size and modification time; the caller saves :attr:`Source.record`
    (when not None) once the video proved usable, so a failing video leaves no folder behind."""
    path = Path(path).resolve()
    st = path.stat()
    rec = _read_record(folder)
    stat = {"file": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    if rec is not None and rec.get("local") is True and all(rec.get(k) == v for k, v in stat.items()) \
            and isinstance(rec.get("sha256"), str) and rec.get("url") == url:
        return Source(path=path, url=url, downloaded=False, sha256=rec["sha256"], bytes=st.st_size)
    new = {"url": url, "local": True, **stat, "sha256": sha256_file(path)}
    return Source(path=path, url=url, downloaded=False, sha256=new["sha256"], bytes=st.st_size, record=new)


def download_video(url: str, folder: str | Path, *, progress: bool = True, max_height: int = MAX_HEIGHT) -> Source:
    """Download the best video stream of ``url`` up to ``max_height`` lines into
    ``folder/video.<ext>``, or reuse the cached file when it is intact. Raises
    :class:`DownloadError`."""
    folder = Path(folder).resolve()   # yt-dlp reports absolute paths; compare like with like
    warnings: list[str] = []
    cached = cached_download(url, folder, warnings)
    if cached is not None:
        return cached
    info = _run_ytdlp(url, folder, progress=progress, max_height=max_height, damaged=bool(warnings))
    path = _downloaded_file(url, folder, info)
    for old in folder.glob("video.*"):   # a video cached for a former URL
        if old.resolve() != path and io.is_data_name(old.name):
            io.remove(old)
    rec = _download_record(url, path, info)
    io.write_json(source_record(folder), rec)
    return Source(path=path, url=url, downloaded=True, sha256=rec["sha256"], bytes=rec["bytes"], warnings=warnings)


def _run_ytdlp(url: str, folder: Path, *, progress: bool, max_height: int, damaged: bool) -> dict:
    """yt-dlp's download of ``url`` into ``folder``: its sanitised info about one video. A failed
    download leaves no folder it made; ``damaged`` (a cached copy was damaged) is said in the error."""
    import yt_dlp

    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    log = _Logger()
    hook = _ProgressHook(quiet=not progress)
    try:
        with yt_dlp.YoutubeDL(_ytdlp_options(folder, max_height, log, hook)) as ydl:
            info = ydl.extract_info(url, download=True)
            info = ydl.sanitize_info(info) if info else None
    except Exception as exc:  # yt-dlp's DownloadError, and a few plain errors (network, file system)
        why = _clean(str(exc)) or type(exc).__name__
        also = " (and the cached copy is damaged)" if damaged else ""
        raise DownloadError(f"cannot download {url}: {why}{also}") from None
    finally:
        hook.close()
        if created and not any(folder.iterdir()):
            folder.rmdir()   # leave no empty subject folder behind a failed download
    if not info:
        raise DownloadError(f"cannot download {url}: {log.last_error or 'no video found'}")
    if info.get("_type") == "playlist":
        raise DownloadError(f"{url} is a playlist; give the URL of one video")
    return info


def _ytdlp_options(folder: Path, max_height: int, logger: _Logger, hook: _ProgressHook) -> dict:
    return {
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
        "logger": logger,
        "progress_hooks": [hook],
    }


def _downloaded_file(url: str, folder: Path, info: dict) -> Path:
    """The file yt-dlp says it wrote: it exists, and lies in ``folder``."""
    files = [d.get("filepath") for d in info.get("requested_downloads") or [] if d.get("filepath")]
    path = (folder / files[0]).resolve() if files else None   # (absolute stays absolute)
    if path is None or not path.is_file():
        raise DownloadError(f"cannot download {url}: yt-dlp reported no file")
    if path.parent != folder:
        raise DownloadError(f"cannot download {url}: yt-dlp wrote {path}, outside {folder}")
    return path


def _download_record(url: str, path: Path, info: dict) -> dict:
    """``source.json`` of a download: where it came from (yt-dlp's info) and what it is."""
    st = path.stat()
    return {
        "url": url, "file": path.name, "id": info.get("id"), "title": info.get("title"),
        "uploader": info.get("uploader"), "duration": info.get("duration"), "format_id": info.get("format_id"),
        "width": info.get("width"), "height": info.get("height"), "fps": info.get("fps"),
        "vcodec": info.get("vcodec"), "bytes": st.st_size, "sha256": sha256_file(path), "mtime_ns": st.st_mtime_ns,
        "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class _ProgressHook:
    """yt-dlp's progress hook, shown as one progress bar (the total may be unknown or estimated)."""

    def __init__(self, *, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def __call__(self, d: dict) -> None:
        status = d.get("status")
        if status == "downloading":
            if self.bar is None:
                self.bar = progress_bar(quiet=self.quiet, desc="download", unit="B", unit_scale=True,
                                        unit_divisor=1024)
            total = d.get("total_bytes") or d.get("total_bytes_estimate")
            if total and self.bar.total != int(total):
                self.bar.total = int(total)
            done = d.get("downloaded_bytes")
            if done is not None:
                self.bar.update(int(done) - self.bar.n)
        elif status in ("finished", "error"):
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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
