"""The one error base of the toolkit.

Every error caused by the user's input (a missing or damaged file, a wrong option, a latent of
the wrong shape, ...) is an :class:`AgingError`: the CLI prints its message as one line and exits
with status 1. Any other exception is a bug and keeps its traceback.

Each stage subclasses it (``LatentDatasetError``, ``ModelError``, ``EncodeError``, ...); the
stage classes also derive from the builtin they used to be (``ValueError``, ``RuntimeError``)
so that library callers who catch those keep working.
"""

from __future__ import annotations


class AgingError(Exception):
    """Bad input of any stage; the message is one line that names the file or option."""


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (its class name when it has none)."""
    msg = str(exc).strip() or type(exc).__name__
    return msg.splitlines()[0]


class FileFormatError(AgingError, ValueError):
    """A file that exists but cannot be used: unreadable, wrong type, shape, dtype or values."""
