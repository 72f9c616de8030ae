"""``harmonize train`` as a function: the configuration of a new, configured or resumed run,
then one :class:`~harmonize_cli.training.loop.Trainer` run.

>>> from harmonize_cli.training import TrainConfig, train
>>> result = train(TrainConfig(arch="idih", data="iharmony4.h5", out="runs/idih"))
>>> result.best            # {"epoch": .., "MSE": ..}
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from . import distributed
from .checkpoint import is_resumable, load_checkpoint
from .config import TrainConfig
from .loop import Trainer
from .outcome import TrainResult
from .rundir import resume_path


def train(config: Optional[TrainConfig] = None, *, resume=None, overwrite: bool = False,
          trainer_cls=None, **overrides) -> TrainResult:
    """Train a model; returns a :class:`TrainResult` (rank 0 holds the metrics).

    ``config``: a :class:`TrainConfig` (e.g. from ``--config``); ``overrides``: fields to replace
    (``None`` values ignored). ``resume``: True for ``OUT/last.pth`` or a checkpoint path; the
    run's own configuration is used then, with ``overrides`` applied (epochs, workers, ...).
    ``overwrite``: replace the files of an existing run in ``out``. Without a seed, one is drawn
    (and recorded in ``config.toml``); ``deterministic`` additionally makes the kernels deterministic.
    """
    env = distributed.detect()
    checkpoint = None
    if resume:
        if config is not None:
            raise UsageError("--config cannot be combined with --resume",
                             "a resumed run uses the configuration saved in its checkpoint; pass options to change it")
        config, checkpoint = _resumed_config(resume, overrides)
    else:
        config = (config or TrainConfig()).updated(**overrides)
    if config.seed is None:
        config = config.updated(seed=random.SystemRandom().randrange(1 << 31))
    config = config.resolved()
    trainer = (trainer_cls or Trainer)(config, env=env, checkpoint=checkpoint, overwrite=overwrite)
    return trainer.run()


def _resumed_config(resume, overrides: dict):
    """(the checkpoint's configuration with ``overrides`` applied, the checkpoint)."""
    path = resume_path(resume, overrides.get("out"))
    checkpoint = load_checkpoint(path)
    if not is_resumable(checkpoint):
        raise UsageError(f"{path} holds weights but no training state", "resume from RUN/last.pth")
    saved = TrainConfig.from_dict(checkpoint["config"], f"{path} (config)")
    if overrides.get("arch") and overrides["arch"] != saved.arch:
        from ..zoo import get_arch

        if get_arch(overrides["arch"]).name != get_arch(saved.arch).name:
            raise UsageError(f"the run trains {saved.arch}, not {overrides['arch']}",
                             "drop --arch, or start a new run with another --out")
    overrides = dict(overrides)
    overrides["out"] = str(overrides.get("out") or Path(path).parent)
    return saved.updated(**overrides), checkpoint
