"""The run folder: the files a run writes there, its default name, the command that resumes it,
and the checks around it (writable, not another run's unless ``--overwrite`` or ``--resume``).

The guard "a run folder is a run folder": a run marks its folder (:data:`RUN_MARKER`, which lists
the names a run writes) before it writes anything else, and ``--overwrite`` starts over only in a
marked folder, removing only the files that match those names (:func:`clear_run_files`); any
other folder is refused in one line and nothing in it is touched."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from ..atomic import atomic_write_text, remove_stale_parts
from .checkpoint import BEST, LAST

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
IMAGES_DIR = "images"
TB_DIR = "tb"
CURVES_FILE = "curves.png"  # loss and validation curves, drawn when TensorBoard is not there
RUN_FILES = (CONFIG_FILE, METRICS_FILE, LOG_FILE, LAST, BEST, CURVES_FILE)
RUN_MARKER = ".harmonize-run.json"
RUN_FORMAT = "harmonize-run-1"
# what a run writes, as patterns relative to its folder (the marker lists them; nothing else is removed)
RUN_PATTERNS = RUN_FILES + ("epoch_[0-9][0-9][0-9]*.pth", f"{IMAGES_DIR}/epoch*_step*.png",
                            f"{TB_DIR}/events.out.tfevents.*")


def default_run_dir(arch: str) -> Path:
    return Path("runs") / f"{arch}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def resume_command(run_dir: Path) -> str:
    return f"harmonize train --resume --out {run_dir}"


def resume_path(resume, out) -> Path:
    """The checkpoint that ``--resume [PATH]`` names: ``OUT/last.pth`` alone, else PATH (or PATH/last.pth)."""
    if resume is True or resume == "" or resume == "last":
        if not out:
            raise UsageError("--resume without a checkpoint needs the run folder",
                             "pass --out RUN (its last.pth is used) or --resume RUN/last.pth")
        return Path(out) / LAST
    path = Path(resume)
    return path / LAST if path.is_dir() else path


def check_output(run_dir: Path, *, resuming: bool, overwrite: bool) -> Optional[Path]:
    """Refuse another run's folder (unless resuming or ``overwrite``) and an unwritable one.

    Creates the folder; returns it when this call created it (so a later failed check can remove
    it again, see :func:`remove_if_created`), else None.
    """
    existing = run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir()))
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} is a file", "choose a folder for the run")
    if existing and not resuming and not overwrite:
        raise UsageError(f"run folder {run_dir} already exists",
                         f"continue it with `{resume_command(run_dir)}`, start over with --overwrite, "
                         "or choose another --out")
    if existing and overwrite and not resuming and not is_run_folder(run_dir):
        raise UsageError(f"--overwrite: {run_dir} is not a run folder (no {RUN_MARKER}); nothing in it was deleted",
                         "choose another --out, or empty that folder yourself")
    created = run_dir if not run_dir.exists() else None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        remove_if_created(created)
        raise UsageError(f"cannot write to the run folder {run_dir}: {exc.strerror or exc}",
                         "choose a writable --out") from None
    remove_checkpoint_parts(run_dir)  # what saves killed mid-way (SIGKILL) left, new run or resumed
    return created


def remove_if_created(created: Optional[Path]) -> None:
    """A failed check leaves no trace: remove the run folder if the checks created it (empty)."""
    if created is not None:
        try:
            created.rmdir()
        except OSError:
            pass


def is_run_folder(run_dir: Path) -> bool:
    """True when ``run_dir`` carries the marker a run writes first (see :func:`mark_run`)."""
    try:
        marker = json.loads((Path(run_dir) / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == RUN_FORMAT


def mark_run(run_dir: Path) -> None:
    """Mark ``run_dir`` as a run folder, listing the names a run writes there."""
    from .. import __version__

    marker = {"format": RUN_FORMAT, "version": __version__, "files": list(RUN_PATTERNS)}
    atomic_write_text(Path(run_dir) / RUN_MARKER, json.dumps(marker, indent=1) + "\n")


def clear_run_files(run_dir: Path) -> list:
    """``--overwrite``: remove what an earlier run wrote, in a marked run folder only: the files
    matching :data:`RUN_PATTERNS` (a user's file, even in ``images/``, stays), the ``.part`` files
    of killed saves, and ``images/`` / ``tb/`` when that leaves them empty. Returns what it removed."""
    run_dir = Path(run_dir)
    if not is_run_folder(run_dir):
        raise UsageError(f"--overwrite: {run_dir} is not a run folder (no {RUN_MARKER}); nothing in it was deleted",
                         "choose another --out, or empty that folder yourself")
    removed = []
    for pattern in RUN_PATTERNS:
        for path in sorted(run_dir.glob(pattern)):
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(path)
    for folder in (IMAGES_DIR, TB_DIR):
        try:
            (run_dir / folder).rmdir()  # only when empty
        except OSError:
            pass
    return removed + remove_checkpoint_parts(run_dir)


def remove_checkpoint_parts(run_dir: Path) -> list:
    """The ``.last.pth.<pid>.*.part`` (and best, snapshots) of saves killed mid-way (SIGKILL,
    power loss): removed once their process is gone."""
    run_dir = Path(run_dir)
    names = {LAST, BEST, CONFIG_FILE, METRICS_FILE}
    try:
        names |= {name[1:].split(".pth.", 1)[0] + ".pth" for name in os.listdir(run_dir)
                  if name.startswith(".epoch_") and name.endswith(".part")}
    except OSError:
        return []
    removed = []
    for name in sorted(names):
        removed += remove_stale_parts(run_dir / name)
    return removed
