"""What a training run is made of (:class:`RunParts`), built once before its first epoch, and the
state a resumed run restores into it; the loop (:mod:`.loop`) runs the epochs over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..errors import UsageError
from . import distributed
from .checkpoint import CheckpointSaver, set_rng_state
from .config import TrainConfig
from .model_and_data import build_model, open_datasets
from .runtime import make_grad_scaler, resolve_amp
from .seeding import SeededEpochDataset
from .step import build_loss, build_optimizer, build_scheduler

__all__ = ["RunParts", "EpochTotals", "ResumePoint", "build_parts", "restore_parts"]


@dataclass
class RunParts:
    """What the epochs of one run work with, built once by :func:`build_parts`."""

    device: torch.device
    model: torch.nn.Module  # the plain module (checkpoints, validation)
    loss_fn: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    amp_dtype: Optional[torch.dtype]
    use_scaler: bool
    train_set: Any
    val_set: Any
    sampler: Any
    seeded: SeededEpochDataset
    local_batch: int
    global_batch: int
    steps_per_epoch: int
    channels_last: bool
    train_model: Any = None  # the model as trained: DDP-wrapped and / or compiled (set by _start)
    saver: Optional[CheckpointSaver] = None
    backbone_weights: Optional[dict] = None  # where the backbone's ImageNet weights came from


@dataclass
class EpochTotals:
    """The running totals of one epoch (carried over from a checkpoint when resumed inside it)."""

    skip: int
    step: int
    loss_sum: float
    samples: int
    seconds_before: float
    lr: float
    stopped: bool = False
    train_seconds: float = 0.0

    def partial(self) -> dict:
        return {"loss_sum": self.loss_sum, "samples": self.samples,
                "seconds": self.seconds_before + self.train_seconds}


def build_parts(config: TrainConfig, env: distributed.DistEnv, device, verdict: dict, *, with_validation: bool,
                resuming: bool) -> RunParts:
    """Data, model, loss, optimizer, schedule and scaler of a run (nothing written yet); ``verdict``
    is what the preflight resolved (the dataset, the backbone's and VGG's weights, ``--init``)."""
    cuda = device.type == "cuda"
    train_set, val_set = open_datasets(config, verdict["data"], with_validation=with_validation)
    local_batch = distributed.local_batch_size(config.batch_size, env)
    sampler = distributed.make_sampler(len(train_set), env, config.seed)
    steps_available = len(sampler) // local_batch
    if steps_available < 1:
        raise UsageError(f"{len(train_set)} training samples make no batch of {config.batch_size}"
                         + (f" over {env.world_size} processes" if env.is_distributed else ""),
                         "use a smaller --batch-size")
    steps_per_epoch = min(steps_available, config.steps_per_epoch) if config.steps_per_epoch else steps_available

    model, backbone_weights = build_model(config, verdict.get("backbone"), resuming=resuming,
                                          init_path=(verdict.get("init") or {}).get("path"))
    model.to(device)
    if cuda and config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    amp_dtype, use_scaler = resolve_amp(config.amp, device)
    return RunParts(
        device=device, model=model, loss_fn=build_loss(config, verdict.get("vgg"), device), optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config), scaler=make_grad_scaler(device, use_scaler),
        amp_dtype=amp_dtype, use_scaler=use_scaler, train_set=train_set, val_set=val_set, sampler=sampler,
        seeded=SeededEpochDataset(train_set, config.seed), local_batch=local_batch,
        global_batch=local_batch * env.world_size, steps_per_epoch=steps_per_epoch,
        channels_last=cuda and config.channels_last, backbone_weights=backbone_weights,
    )


@dataclass
class ResumePoint:
    """Where a resumed run goes on: its epoch and step, the epoch's partial totals, the run's
    metrics and best epoch so far."""

    epoch: int
    step: int
    partial: dict
    metrics: list
    best: Optional[dict]


def restore_parts(parts: RunParts, checkpoint: dict, env: distributed.DistEnv) -> ResumePoint:
    """Load a resumable checkpoint into ``parts`` (weights, optimizer, schedule, scaler; inside an
    epoch the random state of this process too)."""
    from ..zoo.bounds import check_dtypes

    check_dtypes(checkpoint["model"], parts.model.state_dict(), "the checkpoint to resume")
    parts.model.load_state_dict(checkpoint["model"], strict=True)
    meta = checkpoint.get("meta") or {}
    parts.backbone_weights = meta.get("backbone_weights")
    parts.optimizer.load_state_dict(checkpoint["optimizer"])
    parts.scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint.get("scaler") and parts.scaler.is_enabled():
        parts.scaler.load_state_dict(checkpoint["scaler"])
    epoch, step = int(checkpoint["epoch"]), int(checkpoint.get("step") or 0)
    if step:
        per_rank = checkpoint.get("rng_per_rank") or []
        if env.world_size == 1:
            set_rng_state(checkpoint.get("rng"))
        elif len(per_rank) == env.world_size:
            set_rng_state(per_rank[env.rank])
    return ResumePoint(epoch, step, dict(checkpoint.get("partial") or {}),
                       list(checkpoint.get("metrics") or []), checkpoint.get("best"))
