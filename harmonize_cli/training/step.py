"""The optimisation of ``harmonize train``: the loss, the optimizer with its parameter groups, the
learning-rate schedule and one training step. The trainer calls exactly these functions, and the
tests check them against one step of the reference's training loop (``shared/parity/train_step``).

>>> loss_fn, optimizer = build_loss(config), build_optimizer(model, config)
>>> loss, prediction = train_step(model, batch_to(batch, device), loss_fn, optimizer)
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .config import TrainConfig
from .losses import get_loss


def build_loss(config: TrainConfig) -> Callable:
    """``loss(prediction, target, mask)`` of a resolved configuration (FN-MSE with A_min, or MSE)."""
    return get_loss(config.loss, config.min_area)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (``config.betas``, ``config.eps``, no weight decay) over the model's parameter groups:
    one group per learning-rate multiplier (backbone x0.1), each with ``lr_mult`` recorded."""
    from ..models.backboned import optimizer_param_groups

    groups = optimizer_param_groups(model, config.lr)
    return torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """MultiStepLR: the learning rate times ``config.gamma`` at each of ``config.milestones``."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=config.gamma)


def batch_to(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    """The batch's image, target and mask on ``device`` (image and mask channels-last if asked)."""
    non_blocking = device.type == "cuda"
    moved = {key: batch[key].to(device, non_blocking=non_blocking) for key in ("image", "target", "mask")}
    if channels_last:
        for key in ("image", "mask"):
            moved[key] = moved[key].contiguous(memory_format=torch.channels_last)
    return moved


def train_step(model, batch: dict, loss_fn: Callable, optimizer: torch.optim.Optimizer, *, scaler=None,
               amp_dtype: Optional[torch.dtype] = None):
    """One step: forward (under autocast when ``amp_dtype`` is set), the loss in float32, backward
    (through ``scaler`` when given), the optimizer step. Returns ``(loss, prediction)``."""
    image, target, mask = batch["image"], batch["target"], batch["mask"]
    with torch.autocast(device_type=image.device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        prediction = model(image, mask)
    loss = loss_fn(prediction.float(), target, mask)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss, prediction
