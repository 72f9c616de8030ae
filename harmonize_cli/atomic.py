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


NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows)
_PART = ".part"
_RANDOM = 8  # the characters tempfile.mkstemp adds
_PID = 10  # room for the process id (and its dot)


def _shortened(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    return text.encode("utf-8")[: max(limit, 0)].decode("utf-8", errors="ignore")


def part_prefix(target) -> str:
    """``.<name>.`` for the temporary files of ``target``: the name shortened so that every
    temporary name (prefix, process id, random part, suffix, ``.part``) fits in NAME_MAX bytes."""
    name = Path(target).name
    room = NAME_MAX - 2 - _PID - _RANDOM - 16 - len(_PART)  # 16: the longest suffix kept
    return f".{_shortened(name, room)}."


def part_suffix(target, suffix=None) -> str:
    suffix = Path(target).suffix if suffix is None else suffix
    return (suffix if len(suffix.encode("utf-8")) <= 16 else "") + _PART


def part_path(target) -> Path:
    """The fixed temporary name of ``target`` for this process: ``.<name>.<pid>.part``."""
    target = Path(target)
    return target.parent / f"{part_prefix(target)}{os.getpid()}{_PART}"


@contextmanager
def atomic_path(target, suffix=None):
    """Yield a temporary path beside ``target``; on success it is renamed to ``target``.

    The temporary name is ``.<name>.<pid>.<random><suffix>.part`` (within NAME_MAX), so that
    :func:`remove_stale_parts` can tell the leftovers of a killed process.

    >>> with atomic_path("out.png") as tmp:
    ...     image.save(tmp, format="PNG")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{part_prefix(target)}{os.getpid()}.",
                                    suffix=part_suffix(target, suffix), dir=target.parent)
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


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_parts(target, include_own: bool = False) -> list:
    """Remove the temporary files of ``target`` left by processes that are gone (SIGKILL, power
    loss): ``.<name>.<pid>[.<random><suffix>].part`` whose ``pid`` is not running. This process's
    own are kept unless ``include_own``. Returns the paths removed."""
    target = Path(target)
    prefix = part_prefix(target)
    removed = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_PART)):
            continue
        pid_text = name[len(prefix):-len(_PART)].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() and not include_own:
            continue
        if pid != os.getpid() and pid_alive(pid):
            continue
        part = target.parent / name
        try:
            if part.is_file() and not part.is_symlink():
                part.unlink()
                removed.append(part)
        except OSError:
            pass
    return removed


def atomic_write_with(target, write, check=None) -> None:
    """Write ``target`` atomically through ``write(handle)`` (a binary file open on a temporary
    file beside it, flushed and fsynced afterwards), e.g. ``lambda handle: torch.save(obj, handle)``.
    ``check(tmp)``, when given, runs on the complete temporary file before the rename; an
    exception from it (or from ``write``) leaves the target as it was."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if check is not None:
            check(tmp)


def atomic_write_bytes(target, data: bytes, check=None) -> None:
    """Write ``data`` atomically. ``check(tmp)``, when given, runs on the complete temporary file
    before the rename; an exception from it leaves the target as it was (e.g.
    :func:`harmonize_cli.readback.check_image_file`)."""
    atomic_write_with(target, lambda handle: handle.write(data), check)


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
