"""Helpers of the bad-input and kill suites: run the CLI as a user would, and see what it left.

* :func:`cli` runs ``aging ARGS`` in-process (click's runner) from a chosen working directory, so
  relative paths and the default output folders are exercised as a user's shell would.
* :func:`run_aging` runs it in a subprocess; ``kill_at=N`` makes it SIGKILL itself right after
  its N-th atomic write (``"N-"``: with the N-th temporary written but not renamed), see
  :mod:`aging.io`.
* :func:`snapshot` records every file under a folder (size, mtime, inode), so a test can assert
  that a re-run wrote nothing and that a failed command lost nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


@contextlib.contextmanager
def working_dir(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def cli(args: list[str], cwd: Path | None = None, env: dict | None = None) -> Outcome:
    """``aging ARGS`` in-process from ``cwd``; an exception that click did not turn into an exit
    code (a bug, a traceback for the user) is kept in ``exception``."""
    from aging.cli import main

    runner = CliRunner()
    with working_dir(cwd or Path.cwd()):
        res = runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)
    exc = res.exception if res.exception is not None and not isinstance(res.exception, SystemExit) else None
    return Outcome(res.exit_code, res.stdout, res.stderr, exc)


def run_aging(args: list[str], cwd: Path, *, kill_at: int | str | None = None, timeout: float = 600,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m aging ARGS`` in a subprocess (``returncode`` -9 when ``kill_at`` fired)."""
    e = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
         "OMP_NUM_THREADS": "1", **(env or {})}
    e.pop("AGING_KILL_AT_WRITE", None)
    if kill_at is not None:
        e["AGING_KILL_AT_WRITE"] = str(kill_at)
    return subprocess.run([sys.executable, "-m", "aging", *[str(a) for a in args]], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


def assert_user_error(out: Outcome, *needles: str) -> None:
    """A user error as the design promises: non-zero exit, no traceback, one line on stderr that
    contains every needle (a file name, an option, ...)."""
    assert out.exception is None, f"a bug, not a user error: {out.exception!r}\n{out.stderr}"
    assert out.exit_code != 0, f"exit 0 for bad input\nstdout: {out.stdout}\nstderr: {out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.error_lines
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{out.stderr}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in the error line: {lines[0]!r}"


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``folder`` (hidden ones too): relative path -> (size, mtime_ns, inode)."""
    out = {}
    folder = Path(folder)
    if not folder.exists():
        return out
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def contents(folder: Path, skip=lambda rel: False) -> dict[str, bytes]:
    """Every non-hidden file under ``folder``: relative path -> bytes (``skip(rel)`` leaves some out)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_file() and not any(part.startswith(".") for part in Path(rel).parts) and not skip(rel):
            out[rel] = p.read_bytes()
    return out


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporaries a killed writer left (hidden ``*.tmp*`` files)."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob(".*") if ".tmp" in p.name)
