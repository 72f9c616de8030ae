"""Training with the paper's recipe: ``harmonize train`` as a library.

>>> from harmonize_cli.training import TrainConfig, train
>>> config = TrainConfig(arch="idih-hrnet-w18s", data="iharmony4.h5", out="runs/hrnet")
>>> result = train(config)                        # or train(resume=True, out="runs/hrnet")
>>> result.best, result.metrics[-1]["val"]

Pieces: :mod:`.config` (TrainConfig, the per-architecture recipes, TOML), :mod:`.checkpoint`
(atomic, resumable checkpoints; :func:`export_state_dict`), :mod:`.trainer` (the loop) and
:mod:`.distributed` (torchrun / DDP helpers).
"""

from __future__ import annotations

from .config import Recipe, TrainConfig, recipe_for

__all__ = [
    "Recipe", "TrainConfig", "recipe_for", "train", "Trainer", "TrainResult", "TrainingError",
    "TrainingInterrupted", "export_state_dict", "load_checkpoint",
]


def __getattr__(name):  # the loop imports torch: load it on first use
    import importlib

    if name in ("train", "Trainer", "TrainResult", "TrainingError", "TrainingInterrupted"):
        return getattr(importlib.import_module(f"{__name__}.trainer"), name)
    if name in ("export_state_dict", "load_checkpoint"):
        return getattr(importlib.import_module(f"{__name__}.checkpoint"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
