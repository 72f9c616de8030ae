"""How a training run ends: a :class:`TrainResult`, or one of two errors that the CLI turns into
an exit code (:class:`TrainingError`: 1; :class:`TrainingInterrupted`: 128 + the signal number)."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import HarmonizeError
from .config import TrainConfig


class TrainingError(HarmonizeError):
    """Training cannot go on (a non-finite loss, a failing data loader, ...)."""


class TrainingInterrupted(HarmonizeError):
    """SIGINT / SIGTERM: a resumable checkpoint was written. Exit code 128 + signal number."""

    def __init__(self, message, hint=None, signum=signal.SIGINT, checkpoint=None):
        super().__init__(message, hint)
        self.exit_code = 128 + int(signum)
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    metrics: list = field(default_factory=list)
    best: Optional[dict] = None
    config: Optional[TrainConfig] = None
