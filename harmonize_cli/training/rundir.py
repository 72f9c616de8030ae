"""The run folder: the files a run writes there, its default name, the command that resumes it,
and the checks around it (writable, not another run's unless ``--overwrite`` or ``--resume``)."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from .checkpoint import BEST, LAST

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
IMAGES_DIR = "images"
TB_DIR = "tb"
CURVES_FILE = "curves.png"  # loss and validation curves, drawn when TensorBoard is not there
RUN_FILES = (CONFIG_FILE, METRICS_FILE, LOG_FILE, LAST, BEST, CURVES_FILE)


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
    return created


def remove_if_created(created: Optional[Path]) -> None:
    """A failed check leaves no trace: remove the run folder if the checks created it (empty)."""
    if created is not None:
        try:
            created.rmdir()
        except OSError:
            pass


def clear_run_files(run_dir: Path) -> None:
    """``--overwrite``: remove what an earlier run wrote (only the files this tool creates)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for path in run_dir.glob("epoch_*.pth"):
        path.unlink()
    for name in (IMAGES_DIR, TB_DIR):
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)
