"""Progress bars: one helper, so that every bar honours ``--quiet`` and stays silent when stderr
is not a terminal (pipes, CI logs, tests)."""

from __future__ import annotations


def progress_bar(iterable=None, *, quiet: bool = False, **kw):
    """A tqdm bar on stderr; disabled with ``quiet`` and whenever stderr is not a terminal.

    Keyword arguments go to tqdm (``total``, ``desc``, ``unit``, ...); bars do not stay on the
    screen once done (``leave=False``) unless asked.
    """
    from tqdm.auto import tqdm

    kw.setdefault("leave", False)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=True if quiet else None, **kw)
