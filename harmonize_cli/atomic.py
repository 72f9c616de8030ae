"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written file, and an interrupted write leaves the old file intact.
The file gets the permissions a plain ``open(target, "w")`` would give it (0666 less the
process umask), not the private 0600 of a temporary file.
"""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


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
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target, data: bytes, check=None) -> None:
    """Write ``data`` atomically. ``check(tmp)``, when given, runs on the complete temporary file
    before the rename; an exception from it leaves the target as it was (e.g.
    :func:`harmonize_cli.readback.check_image_file`)."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if check is not None:
            check(tmp)


def atomic_write_text(target, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def check_writable(folder) -> None:
    """Fail before any work, in one line, when files cannot be created in ``folder`` (created if
    missing): a read-only folder, a file in its place, a full disk."""
    from .errors import HarmonizeError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".harmonize-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise HarmonizeError(f"cannot write into {folder}: {exc.strerror or exc}",
                             "choose a writable output location") from None
