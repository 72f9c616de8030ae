"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written file, and an interrupted write leaves the old file intact.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target, suffix=None):
    """Yield a temporary path beside ``target``; on success it is renamed to ``target``.

    >>> with atomic_path("out.png") as tmp:
    ...     image.save(tmp, format="PNG")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=(suffix if suffix is not None else target.suffix) + ".part",
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target, data: bytes) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(target, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))
