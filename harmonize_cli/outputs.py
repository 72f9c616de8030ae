"""The one guard of every command that writes: nothing it reads, nothing it did not write, is lost.

- :class:`Inputs` collects what a command reads (files and folder trees); :meth:`Inputs.check`
  refuses an output path that *is* one of them or lies inside one of the trees. Paths are
  compared by their resolved real path and, for existing files, by ``(st_dev, st_ino)``, so a
  symlink or a hard link to an input is caught too.
- :func:`check_replaceable` refuses to replace an existing file that the command did not
  produce (``--force`` / ``--overwrite`` replace an earlier result, never the user's data).

Both raise :class:`~harmonize_cli.errors.UsageError` (one line, exit 2) before any work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Optional

from .errors import UsageError

__all__ = ["Inputs", "check_replaceable", "file_identity", "inside", "real_key", "same_file", "starts_with"]


def real_key(path) -> str:
    """The resolved real path of ``path`` (symlinks followed, case folded where the OS does)."""
    return os.path.normcase(os.path.realpath(os.fspath(path)))


def file_identity(path) -> Optional[tuple]:
    """``(st_dev, st_ino)`` of an existing path (symlinks followed), else None."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    return (stat.st_dev, stat.st_ino)


def same_file(a, b) -> bool:
    """True when ``a`` and ``b`` name the same file: same real path, or the same inode (a hard link)."""
    if real_key(a) == real_key(b):
        return True
    identity = file_identity(a)
    return identity is not None and identity == file_identity(b)


def inside(path, folder) -> bool:
    """True when ``path`` (resolved) is ``folder`` (resolved) or lies below it."""
    child, parent = real_key(path), real_key(folder)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


class Inputs:
    """What one command reads: files, and folders whose whole tree is input.

    >>> inputs = Inputs().file(weights, "--weights").tree(data_dir, "--data")
    >>> inputs.check(output, "-o")      # UsageError when output would replace or enter an input
    """

    def __init__(self):
        self._keys = {}  # real path -> (label, path)
        self._ids = {}  # (st_dev, st_ino) -> (label, path)
        self._trees = []  # (label, path)

    def file(self, path, label: str = "input") -> "Inputs":
        if path is None:
            return self
        entry = (label, Path(path))
        self._keys.setdefault(real_key(path), entry)
        identity = file_identity(path)
        if identity is not None:
            self._ids.setdefault(identity, entry)
        return self

    def files(self, paths: Iterable, label: str = "input") -> "Inputs":
        for path in paths:
            self.file(path, label)
        return self

    def tree(self, path, label: str = "input folder") -> "Inputs":
        if path is not None and Path(path).is_dir():
            self._trees.append((label, Path(path)))
        else:
            self.file(path, label)
        return self

    def clash(self, output) -> Optional[str]:
        """Why writing ``output`` would touch an input (None when it would not)."""
        entry = self._keys.get(real_key(output))
        if entry is None:
            identity = file_identity(output)
            entry = self._ids.get(identity) if identity is not None else None
        if entry is not None:
            label, path = entry
            return f"is the input {path}" if label == "input" else f"is the input {label} {path}"
        for label, folder in self._trees:
            if inside(output, folder):
                return f"lies inside the input folder {folder} ({label})"
        return None

    def __contains__(self, output) -> bool:
        return self.clash(output) is not None

    def check(self, output, option: str = "-o", hint: Optional[str] = None) -> None:
        """Refuse ``output`` (one line, exit 2) when it is an input or lies inside an input folder."""
        if output is None or str(output) == "-":
            return
        why = self.clash(output)
        if why is not None:
            raise UsageError(f"{option} {output} {why}; writing it would destroy that input",
                             hint or f"choose another {option}")


def starts_with(*signatures: bytes) -> Callable[[Path], bool]:
    """A ``produced`` test for :func:`check_replaceable`: the file begins with one of ``signatures``
    (white space ignored on both sides, so indented JSON matches ``b'{"model":'``)."""

    def squeezed(data: bytes) -> bytes:
        return b"".join(data.split())

    wanted = [squeezed(signature) for signature in signatures]

    def test(path: Path) -> bool:
        with open(path, "rb") as handle:
            head = squeezed(handle.read(4096))
        return any(head.startswith(signature) for signature in wanted)

    return test


def check_replaceable(path, produced: Callable[[Path], bool], what: str, option: str = "-o") -> None:
    """Refuse (one line, exit 2) to replace an existing ``path`` that is not ``what`` this command
    writes: ``produced(path)`` tells. An empty file holds nothing to lose and may be replaced."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder", f"choose a file name for {option}")
    try:
        if path.stat().st_size == 0 or produced(path):
            return
    except OSError:
        pass  # unreadable: not known to be ours
    raise UsageError(f"{option} {path} exists and is not {what}; it is left untouched",
                     f"choose another {option}, or move that file away first")
