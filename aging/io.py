"""Every file the toolkit writes or reads goes through this module.

Writes are atomic: the data goes to a temporary file in the target's folder whose name starts
with a dot and holds ``.tmp`` (``.7300.3f9a1c.tmp.npy``), is flushed and fsync'ed, gets the usual
permissions (``0666 & ~umask``, unlike ``mkstemp``'s 0600), and is renamed over the target. A
reader therefore sees the old file or the new one, never half of one, and a killed process leaves
at most a hidden temporary that every reader here ignores (:func:`is_data_name`).

Reads validate and name the file in every error (:class:`~aging.errors.FileFormatError`, one
line): latents (shape, dtype, finite values, integer age names), images (mode and bit depth:
16-bit and palette images are converted correctly), JSON, TOML (UTF-8, types checked against a
schema).

Finished work is known from content: a stage writes, after all its outputs, a *completion record*
holding a digest of its inputs and options and the size of every output
(:func:`write_record`); :func:`is_finished` accepts it only when the digest matches and every
output is still there with its size.

Fault injection for the tests: with ``AGING_KILL_AT_WRITE=N`` in the environment the process
kills itself (SIGKILL) right after the N-th atomic write of the run has been renamed into place;
``AGING_KILL_AT_WRITE=N-`` kills it with the N-th write's temporary file complete but not yet
renamed. The kill tests use it to stop every verb at chosen points.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io as _io
import json
import math
import os
import re
import secrets
import signal
import threading
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aging.errors import FileFormatError

TMP_TAG = ".tmp"
_AGE_NAME = re.compile(r"^[0-9]+$")
_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.[0-9a-f]{8}\.tmp(\.[^.]+)?$")  # as temporary_name() makes them

# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


def is_data_name(name: str) -> bool:
    """False for hidden files, temporaries and partial downloads, which no reader takes for data."""
    return not (name.startswith(".") or name.startswith("~") or name.endswith((".part", ".ytdl", ".tmp"))
                or f"{TMP_TAG}." in name)


def temporary_stem(name: str) -> str | None:
    """The stem of the file a temporary of :func:`temporary_name` was to become, else None."""
    m = _TEMPORARY.match(name)
    return m.group("stem") if m else None


def remove_temporaries(folder: str | Path, stems: Iterable[str] | None = None) -> list[Path]:
    """Remove the temporaries a killed writer left in ``folder`` (only those meant for one of
    ``stems`` when given: processes writing other files of the folder keep theirs). Nothing but
    names that :func:`temporary_name` makes is touched. Returns what was removed."""
    folder = Path(folder)
    wanted = None if stems is None else {str(s) for s in stems}
    gone = []
    if folder.is_dir():
        for p in folder.iterdir():
            stem = temporary_stem(p.name)
            if stem is not None and (wanted is None or stem in wanted) and p.is_file() and remove(p):
                gone.append(p)
    return gone


def data_files(folder: str | Path, suffixes: Iterable[str]) -> list[Path]:
    """The regular files of ``folder`` with one of ``suffixes`` (case-insensitive), sorted by name,
    without hidden files and temporaries."""
    folder = Path(folder)
    suffixes = tuple(s.lower() for s in suffixes)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if is_data_name(p.name) and p.suffix.lower() in suffixes and p.is_file())


def age_from_name(path: str | Path) -> int:
    """The age in days a file is named after: ``7300.npy`` -> 7300.

    Only plain decimal digits count: ``9_207.npy``, ``-5.npy``, ``+3.npy`` and ``7.3e3.npy`` are
    refused (Python's ``int`` would read the first two as 9207 and -5).
    """
    path = Path(path)
    stem = path.stem
    if not _AGE_NAME.match(stem):
        raise FileFormatError(f"{path}: file name is not an age in days (expected digits only, e.g. "
                              f"7300{path.suffix or '.npy'})")
    return int(stem)


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------

_writes = 0
_writes_lock = threading.Lock()


def _kill_point(stage: str) -> None:
    """Fault injection (see the module docstring); a no-op unless ``AGING_KILL_AT_WRITE`` is set."""
    spec = os.environ.get("AGING_KILL_AT_WRITE")
    if not spec:
        return
    before = spec.endswith("-")
    try:
        n = int(spec.rstrip("-"))
    except ValueError:
        return
    if (stage == "before" and before and _writes + 1 == n) or (stage == "after" and not before and _writes == n):
        os.kill(os.getpid(), signal.SIGKILL)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask is process-wide, so reading it is not thread-safe


def temporary_name(path: str | Path) -> Path:
    """A fresh hidden temporary beside ``path`` that keeps its suffix (libraries that pick a format
    from the extension still do): ``dir/.7300.3f9a1c.tmp.npy``."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}{TMP_TAG}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to (by any library); on success it
    is fsync'ed and renamed over ``path``; on any error it is removed and ``path`` is untouched."""
    global _writes
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: the writer produced no file")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)
        with _writes_lock:  # writers in threads (fetch aligns faces in two) count one by one
            _kill_point("before")
            os.replace(tmp, path)
            _writes += 1
            _kill_point("after")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems refuse it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kw) -> Iterator[Any]:
    """``with atomic_open(p, "w") as fh: ...``: a file object whose content replaces ``path`` when
    the block ends without an error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    if mode == "w":
        kw.setdefault("encoding", "utf-8")
        kw.setdefault("newline", "")
    with atomic_path(path) as tmp:
        with open(tmp, mode.replace("w", "x"), **kw) as fh:
            yield fh
            fh.flush()


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_if_changed(path: str | Path, data: bytes | str) -> bool:
    """Write ``data`` atomically unless ``path`` already holds exactly it; True when written."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if Path(path).read_bytes() == data:
            return False
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        pass
    write_bytes(path, data)
    return True


def to_jsonable(obj):
    """The one JSON sanitiser: numpy scalars and arrays, paths, tuples, sets, dataclasses; non-finite
    floats become ``None`` (JSON has no NaN)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        seq = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in seq]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)


def dumps_json(obj, *, indent: int | None = 2) -> str:
    return json.dumps(to_jsonable(obj), indent=indent, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | Path, obj, *, only_if_changed: bool = False) -> bool:
    """Write ``obj`` as JSON (sorted keys, 2-space indent) atomically; True when written."""
    text = dumps_json(obj)
    if only_if_changed:
        return write_if_changed(path, text)
    write_text(path, text)
    return True


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)


def save_npz(path: str | Path, **arrays) -> None:
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def save_image(path: str | Path, image: np.ndarray, **params) -> None:
    """Save a uint8 ``[H, W, 3]`` RGB (or ``[H, W]`` grey) array; the format follows the suffix."""
    from PIL import Image

    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF"}.get(path.suffix.lower(), "PNG")
    with atomic_open(path, "wb") as fh:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(fh, format=fmt, **params)


def write_csv(path: str | Path, rows: list[dict], fieldnames: list[str] | None = None, *,
              only_if_changed: bool = False) -> bool:
    """Rows of dicts as CSV (header from the first row unless ``fieldnames``), atomically; with
    ``only_if_changed`` not when the file already holds exactly this table. True when written."""
    buf = _io.StringIO(newline="")
    names = fieldnames or (list(rows[0].keys()) if rows else [])
    if names:
        w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        w.writeheader()
        w.writerows({k: to_jsonable(v) if not isinstance(v, str) else v for k, v in r.items()} for r in rows)
    if only_if_changed:
        return write_if_changed(path, buf.getvalue())
    write_text(path, buf.getvalue())
    return True


def append_lines(path: str | Path, lines: list[str]) -> None:
    """Append whole lines with one ``write`` (O_APPEND) and fsync: a log, not a replaced file. A
    reader must skip a torn last line (:func:`read_jsonl` does)."""
    data = "".join(line.rstrip("\n") + "\n" for line in lines).encode("utf-8")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: str | Path) -> bool:
    """Remove a file if it is there; True when it was."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------------------------------
# Validating reads
# ---------------------------------------------------------------------------------------------

_MISSING = object()


def _describe(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).splitlines()[0]


def read_text(path: str | Path, what: str = "file") -> str:
    """UTF-8 text of ``path`` or a one-line :class:`FileFormatError` naming it."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise FileFormatError(f"{path}: is a folder, expected a {what}") from None
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path}: not UTF-8 text (byte {exc.start}); save the {what} as UTF-8") from None
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read ({_describe(exc)})") from None


def read_json(path: str | Path, default=_MISSING, what: str = "JSON file"):
    """Parsed JSON of ``path``. With ``default`` given, a missing or damaged file (a cache) gives
    ``default``; without, it raises a one-line :class:`FileFormatError`."""
    try:
        text = read_text(path, what)
        return json.loads(text)
    except FileFormatError:
        if default is not _MISSING:
            return default
        raise
    except json.JSONDecodeError as exc:
        if default is not _MISSING:
            return default
        raise FileFormatError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """The JSON objects of a log, one per line; torn or foreign lines are skipped."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_toml(path: str | Path, schema: Mapping | None = None, what: str = "TOML file") -> dict:
    """Parsed TOML (UTF-8), its top-level keys checked against ``schema`` (see :func:`check_schema`)."""
    path = Path(path)
    text = read_text(path, what)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FileFormatError(f"{path}: not valid TOML ({_describe(exc)})") from None
    if schema is not None:
        check_schema(data, schema, str(path))
    return data


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
               list: "a list", dict: "a table"}


def check_schema(data: Mapping, schema: Mapping, where: str, *, allow_unknown: bool = False) -> None:
    """Check ``data``'s keys against ``schema`` ``{key: type or (types...)}``.

    ``float`` accepts integers too (TOML writes ``1`` for one); ``bool`` is never a number.
    Raises a :class:`FileFormatError` ``"<where>: key 'k' must be a number, got 'abc'"``.
    """
    if not isinstance(data, Mapping):
        raise FileFormatError(f"{where}: expected a table, got {_short(data)}")
    for key, value in data.items():
        if key not in schema:
            if allow_unknown:
                continue
            raise FileFormatError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(schema))})")
        types = schema[key] if isinstance(schema[key], tuple) else (schema[key],)
        if not _is_instance(value, types):
            want = " or ".join(_TYPE_NAMES.get(t, getattr(t, "__name__", str(t))) for t in types)
            raise FileFormatError(f"{where}: key {key!r} must be {want}, got {_short(value)}")


def _is_instance(value, types) -> bool:
    for t in types:
        if t is type(None) and value is None:
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t not in (int, float) and isinstance(value, t) and not (t is not bool and isinstance(value, bool)):
            return True
    return False


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_latent(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """One latent ``.npy`` as float32, checked: readable, floating point, finite, and of ``shape``
    when given. Errors are one :class:`FileFormatError` line naming the file."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such latent file") from None
    except IsADirectoryError:
        raise FileFormatError(f"{path}: is a folder, expected a latent .npy file") from None
    except Exception as exc:  # noqa: BLE001 - truncated, not .npy, pickled object arrays, ...
        raise FileFormatError(f"{path}: unreadable latent ({type(exc).__name__}: {_describe(exc)})") from None
    if not isinstance(arr, np.ndarray):
        raise FileFormatError(f"{path}: not a single array (an .npz archive?)")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) \
            or arr.dtype == np.bool_:
        raise FileFormatError(f"{path}: latent has dtype {arr.dtype}, expected floating point")
    if arr.size == 0:
        raise FileFormatError(f"{path}: empty latent (shape {arr.shape})")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise FileFormatError(f"{path}: latent has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise FileFormatError(f"{path}: latent contains NaN or inf")
    return arr


def read_npz(path: str | Path, what: str = "archive") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickles), or a one-line :class:`FileFormatError`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("not an .npz archive")
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such {what}") from None
    except Exception as exc:  # noqa: BLE001 - zip errors, truncation, pickles, ...
        raise FileFormatError(f"{path}: unreadable {what} ({type(exc).__name__}: {_describe(exc)})") from None


def read_image(path: str | Path, size: int | None = None, *, square: bool = False,
               upright: bool = False) -> np.ndarray:
    """An image as uint8 RGB ``[H, W, 3]``, area-resized (box filter) to ``size`` x ``size`` when given.

    ``upright``: turn the pixels as the file's EXIF orientation tag says (a phone photo stored
    sideways); aligned faces and frames written by this toolkit carry no such tag.

    16-bit images are scaled to 8 bits (not clipped: a clipped 16-bit PNG is almost white),
    palette and grey images are expanded, alpha is dropped (composited on black). Anything PIL
    cannot decode is a one-line :class:`FileFormatError`.
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            arr = _to_rgb8(_exif_upright(im) if upright else im, path)
    except FileFormatError:
        raise
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such image") from None
    except Exception as exc:  # noqa: BLE001 - truncated, not an image, decompression bomb, ...
        raise FileFormatError(f"{path}: unreadable image ({type(exc).__name__}: {_describe(exc)})") from None
    h, w = arr.shape[:2]
    if square and h != w:
        raise FileFormatError(f"{path}: image is {w}x{h} px, expected a square aligned face")
    if size is not None and (h, w) != (size, size):
        img = Image.fromarray(arr).resize((size, size), Image.Resampling.BOX)
        arr = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(arr)


def _exif_upright(im):
    """``im`` turned as its EXIF orientation says; as stored when the tag is absent or damaged."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: show the pixels as stored
        return im


def _to_rgb8(im, path: Path) -> np.ndarray:
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        peak = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        g = np.clip(np.round(a * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "F":
        raise FileFormatError(f"{path}: floating-point image (mode F) is not supported; save it as 8-bit RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        a = np.asarray(rgba).astype(np.float32)
        rgb = a[:, :, :3] * (a[:, :, 3:4] / 255.0)
        return np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    if mode in ("RGB", "L", "P", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    # 16-bit RGB (PIL opens it as RGB after reduction in recent versions) or anything else
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001
        raise FileFormatError(f"{path}: image mode {mode} is not supported ({Image.__name__})") from exc


# ---------------------------------------------------------------------------------------------
# Fingerprints and completion records
# ---------------------------------------------------------------------------------------------


def digest(obj) -> str:
    """sha256 (hex) of ``obj`` as canonical JSON: the fingerprint of options and small records."""
    return hashlib.sha256(json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))
                          .encode("utf-8")).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_arrays(*arrays: np.ndarray) -> str:
    """sha256 of the shapes, dtypes and bytes of arrays (the content of a loaded dataset)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def file_stat(path: str | Path) -> dict:
    """The cheap fingerprint of a file: size and modification time (ns)."""
    st = Path(path).stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_record(path: str | Path, key: str, outputs: Iterable[str | Path] = (), **extra) -> None:
    """Write a completion record: the ``key`` (a :func:`digest` of the inputs and options that
    matter) and the size of each output (paths relative to the record's folder). Write it last,
    after every output."""
    path = Path(path)
    files = {}
    for p in outputs:
        p = Path(p)
        full = p if p.is_absolute() else path.parent / p
        files[os.path.relpath(full, path.parent)] = full.stat().st_size
    write_json(path, {"key": key, "outputs": files, **extra})


def read_record(path: str | Path) -> dict | None:
    rec = read_json(path, default=None)
    return rec if isinstance(rec, dict) and isinstance(rec.get("key"), str) else None


def is_finished(path: str | Path, key: str) -> bool:
    """True when the record at ``path`` has ``key`` and each output it lists is there, same size."""
    path = Path(path)
    rec = read_record(path)
    if rec is None or rec["key"] != key or not isinstance(rec.get("outputs"), dict):
        return False
    for rel, size in rec["outputs"].items():
        try:
            if (path.parent / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True
