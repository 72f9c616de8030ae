"""Training with the paper's recipe: ``harmonize train`` as a library.

>>> from harmonize_cli.training import TrainConfig, train
>>> config = TrainConfig(arch="idih-hrnet-w18s", data="iharmony4.h5", out="runs/hrnet")
>>> result = train(config)                        # or train(resume=True, out="runs/hrnet")
>>> result.best, result.metrics[-1]["val"]

Pieces, one job each:

- :mod:`.config`: TrainConfig; :mod:`.recipes`: the per-family recipes (one table); :mod:`.tomlio`: its TOML;
- :mod:`.launch`: :func:`train` (a new, configured or resumed run);
- :mod:`.loop`: the :class:`Trainer` and its epoch / step loop; :mod:`.parts`: what a run is built
  from (RunParts) and what a resumed run restores;
- :mod:`.step`: the loss, the optimizer, the schedule and one training step (what the loop calls);
- :mod:`.losses`: FN-MSE and MSE; :mod:`.pct_losses`, :mod:`.pct_negatives`, :mod:`.pct_training`:
  PCT-Net's objective (VGG16 contrastive, smoothness), its full-resolution training set;
- :mod:`.preflight` / :mod:`.model_and_data`: the checks before training; the datasets and the model;
- :mod:`.seeding`: derived seeds, per-sample random streams, determinism, the epoch's data loader;
- :mod:`.runtime`: mixed precision, the GradScaler, the SIGINT / SIGTERM stop flag;
- :mod:`.rundir` / :mod:`.runlog`: the run folder; train.log, metrics.jsonl, TensorBoard, images;
- :mod:`.checkpoint`: atomic, resumable checkpoints, :func:`export_state_dict`;
- :mod:`.distributed`: torchrun / DDP helpers; :mod:`.outcome`: TrainResult and the two errors.
"""

from __future__ import annotations

from ..lazy import lazy_exports
from .config import Recipe, TrainConfig, recipe_for

__all__ = [
    "Recipe", "TrainConfig", "recipe_for", "train", "Trainer", "TrainResult", "TrainingError",
    "TrainingInterrupted", "export_state_dict", "load_checkpoint",
]

_LAZY = {  # these import torch: load them on first use
    "train": "launch", "Trainer": "loop", "TrainResult": "outcome", "TrainingError": "outcome",
    "TrainingInterrupted": "outcome", "export_state_dict": "checkpoint", "load_checkpoint": "checkpoint",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
