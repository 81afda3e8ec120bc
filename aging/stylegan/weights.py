"""Well-known public StyleGAN2 checkpoints: registry, cache, verified resumable downloads.

Nothing here downloads implicitly: :func:`resolve_generator` only finds files (a path, or a
registry name already in the cache) and tells the user to run ``aging weights download NAME``
otherwise. :func:`download_weights` writes to ``<file>.part``, resumes it with an HTTP ``Range``
request after an interruption, checks the size and the sha256 (when known), and only then renames
it to its final name, so the cache never holds a half-written or corrupt checkpoint. The ``.part``
file is the download's own temporary (it must survive a kill to be resumed, which rules out
:func:`aging.io.atomic_path`'s throw-away temporaries); it is fsync'ed before the rename, and
every reader of :mod:`aging.io` ignores ``*.part`` files.

The cache directory is ``$AGING_CACHE`` (default ``~/.cache/aging``); checkpoints go to its
``weights/`` folder. Only the standard library is used (urllib), plus a progress bar from
:mod:`aging.progress`.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from aging import io as aio
from aging.errors import AgingError
from aging.io import sha256_file
from aging.progress import progress_bar

CACHE_ENV = "AGING_CACHE"
USER_AGENT = "aging-weights/0.1 (+urllib)"
CHUNK = 1 << 20


class WeightsError(AgingError):
    """A checkpoint name or path cannot be resolved, or a download failed (one-line message)."""


@dataclass(frozen=True)
class KnownWeights:
    """One public checkpoint.

    Attributes
    ----------
    name : str
        Short name used on the command line (``aging weights download NAME``).
    url : str
    filename : str
        Name of the file in the cache.
    description : str
    size : int or None
        Exact size in bytes, None when not known (then the server's Content-Length is used).
    sha256 : str or None
        Expected sha256, None when not known (the download then prints the one it got).
    """

    name: str
    url: str
    filename: str
    description: str
    size: int | None = None
    sha256: str | None = None


# sha256 and sizes are recorded only when known for certain; None means "not verified".
REGISTRY: dict[str, KnownWeights] = {w.name: w for w in (
    KnownWeights(
        name="stylegan2-ffhq-1024",
        url="https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
            "stylegan2-ffhq-1024x1024.pkl",
        filename="stylegan2-ffhq-1024x1024.pkl",
        description="StyleGAN2 config-f, FFHQ 1024 px (NVIDIA, NGC)",
    ),
    KnownWeights(
        name="stylegan2-ada-ffhq",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
        filename="stylegan2-ada-ffhq.pkl",
        description="StyleGAN2-ADA PyTorch release, FFHQ 1024 px",
    ),
    KnownWeights(
        name="stylegan2-ada-ffhq-256",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
            "ffhq-res256-mirror-paper256-noaug.pkl",
        filename="stylegan2-ada-ffhq-res256-mirror-paper256-noaug.pkl",
        description="StyleGAN2-ADA, FFHQ 256 px (paper256 config; small, good for CPU work)",
    ),
    KnownWeights(
        # NVIDIA's original StyleGAN (v1, TensorFlow pickle), the URL of its official README. The
        # host (Google Drive) often refuses downloads over quota: a local path always works.
        name="stylegan1-ffhq-1024",
        url="https://drive.google.com/uc?id=1MEGjdvVpUsu1jB4zrXZN7Y4kBBOzizDQ",
        filename="karras2019stylegan-ffhq-1024x1024.pkl",
        description="StyleGAN v1, FFHQ 1024 px (NVIDIA, TensorFlow pickle; the study's generator)",
    ),
)}


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache root: ``override``, else ``$AGING_CACHE``, else ``~/.cache/aging``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "aging"


def weights_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where checkpoints are stored: ``<cache>/weights``."""
    return cache_dir(cache) / "weights"


def cached_path(name: str, cache: str | os.PathLike | None = None) -> Path:
    """Path a registry checkpoint has (or will have) in the cache."""
    return weights_dir(cache) / REGISTRY[name].filename


def is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower())


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(str(text)).scheme in ("http", "https")


def resolve_generator(path_or_name: str | os.PathLike, *, cache: str | os.PathLike | None = None) -> Path:
    """Local path of a generator checkpoint given as a path or a registry name.

    Raises
    ------
    WeightsError
        For a registry name not downloaded yet (telling the user the command to run), a URL,
        or a path that does not exist and is no registry name.
    """
    text = os.fspath(path_or_name)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if text in REGISTRY:
        cached = cached_path(text, cache)
        if cached.is_file():
            return cached
        raise WeightsError(f"{text}: not downloaded yet; run `aging weights download {text}` "
                           f"(cache: {weights_dir(cache)})")
    if _is_url(text):
        raise WeightsError(f"{text}: URLs are not downloaded implicitly; run `aging weights download {text}`")
    raise WeightsError(f"{text}: no such file, and not a known checkpoint name "
                       f"(known: {', '.join(REGISTRY)}; see `aging weights list`)")


class _RetryableError(Exception):
    pass


def _fetch_once(url: str, part: Path, *, timeout: float, progress: bool) -> int | None:
    """One HTTP request appending to ``part`` (resuming with Range). Returns the total size if known."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is complete already (or longer than the file)
            total = _content_range_total(exc.headers.get("Content-Range"))
            if total == offset:
                return total
            part.unlink()
            raise _RetryableError(f"HTTP 416 for a partial download of {offset} bytes; restarting") from None
        if exc.code in (408, 429) or exc.code >= 500:
            raise _RetryableError(f"HTTP {exc.code} {exc.reason}") from None
        raise WeightsError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, HTTPException, OSError) as exc:
        raise _RetryableError(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None

    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        if status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _RetryableError(f"server resumed at byte {start}, expected {offset}; restarting")
            total = _content_range_total(resp.headers.get("Content-Range"))
            mode = "ab"
        else:  # 200: the whole file (server ignored Range or there was nothing to resume)
            offset = 0
            total = length
            mode = "wb"
        bar = progress_bar(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                           desc=part.name.removesuffix(".part"), quiet=not progress)
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except (HTTPException, OSError) as exc:  # connection dropped mid-way
                        raise _RetryableError(f"{type(exc).__name__} after {f.tell()} bytes") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got < total:
        raise _RetryableError(f"connection closed after {got} of {total} bytes")
    return total


def _content_range_start(header: str | None) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(header.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return None


def _content_range_total(header: str | None) -> int | None:
    try:
        total = header.rsplit("/", 1)[1]
        return None if total == "*" else int(total)
    except (AttributeError, IndexError, ValueError):
        return None


def download_weights(name_or_url: str, *, cache: str | os.PathLike | None = None, sha256: str | None = None,
                     retries: int = 3, timeout: float = 60.0, backoff: float = 2.0, progress: bool = True,
                     force: bool = False) -> Path:
    """Download a registry checkpoint (or any URL) into the cache; return its path.

    Parameters
    ----------
    name_or_url : str
        A :data:`REGISTRY` name or an ``http(s)://`` URL (cached under the URL's file name).
    cache : path-like, optional
        Cache root (default: :func:`cache_dir`).
    sha256 : str, optional
        Expected checksum (default: the registry's, if known).
    retries : int
        Further attempts after a network error or a 5xx answer, each resuming the ``.part``.
    timeout : float
        Seconds without data before an attempt fails.
    backoff : float
        Wait ``backoff * 2 ** attempt`` seconds between attempts.
    progress : bool
        Show a progress bar (only on a terminal).
    force : bool
        Download again even if the file is already in the cache.

    Raises
    ------
    WeightsError
        Unknown name, HTTP error (e.g. 404), too many failures, or a checksum/size mismatch (the
        bad file is deleted; nothing is left at the final path).
    """
    url, size, sha256, filename = _source(name_or_url, sha256)
    if not (isinstance(retries, int) and retries >= 0):
        raise WeightsError(f"retries must be a whole number >= 0, got {retries!r}")
    folder = weights_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / filename
    if final.is_file() and not force:
        if sha256 is None or sha256_file(final) == sha256:
            return final
        final.unlink()  # corrupt or replaced: fetch again
    part = folder / (filename + ".part")
    total = _fetch_with_retries(url, part, retries=retries, timeout=timeout, backoff=backoff, progress=progress)
    _verify(part, url, size=size if size is not None else total, sha256=sha256)
    _commit(part, final)
    return final


def _source(name_or_url: str, sha256: str | None) -> tuple[str, int | None, str | None, str]:
    """``(url, exact size or None, expected sha256 or None, file name)`` of a download."""
    if name_or_url in REGISTRY:
        entry = REGISTRY[name_or_url]
        url, size, filename = entry.url, entry.size, entry.filename
        sha256 = sha256 or entry.sha256
    elif _is_url(name_or_url):
        url, size = name_or_url, None
        filename = Path(urllib.parse.urlparse(name_or_url).path).name
        if not filename:
            raise WeightsError(f"{name_or_url}: cannot tell a file name from the URL")
    else:
        raise WeightsError(f"{name_or_url}: not a known checkpoint name (known: {', '.join(REGISTRY)}) "
                           "nor an http(s) URL")
    sha256 = sha256.lower() if sha256 else None
    if sha256 is not None and not is_sha256(sha256):
        raise WeightsError(f"sha256 {sha256!r}: expected 64 hexadecimal digits")
    return url, size, sha256, filename


def _fetch_with_retries(url: str, part: Path, *, retries: int, timeout: float, backoff: float,
                        progress: bool) -> int | None:
    """:func:`_fetch_once` until it completes, at most ``retries + 1`` times; the total size if known."""
    last = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            return _fetch_once(url, part, timeout=timeout, progress=progress)
        except _RetryableError as exc:
            last = exc
    raise WeightsError(f"{url}: download failed after {retries + 1} attempts ({last}); "
                       f"run the command again to resume from {part.name}")


def _verify(part: Path, url: str, *, size: int | None, sha256: str | None) -> None:
    """Check a finished ``part``'s size and checksum; a bad one is deleted. A web page instead of
    a checkpoint (a file host over its download quota answers with one) is refused too."""
    got = part.stat().st_size
    with open(part, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        part.unlink()
        raise WeightsError(f"{url}: the server sent a web page, not a checkpoint (a host over its download "
                           "quota does this); download the file in a browser and pass its local path")
    if size is not None and got != size:
        part.unlink()
        raise WeightsError(f"{url}: got {got} bytes, expected {size}; the partial file was deleted")
    if sha256 is not None:
        digest = sha256_file(part)
        if digest != sha256:
            part.unlink()
            raise WeightsError(f"{url}: sha256 mismatch (got {digest}, expected {sha256}); "
                               "the downloaded file was deleted")


def _commit(part: Path, final: Path) -> None:
    """Rename the verified ``part`` to ``final`` durably: its data and the folder's entry fsync'ed."""
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    os.replace(part, final)
    aio.fsync_dir(final.parent)
