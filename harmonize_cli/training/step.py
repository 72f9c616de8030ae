"""The optimisation of ``harmonize train``: the loss, the optimizer with its parameter groups, the
learning-rate schedule and one training step. The trainer calls exactly these functions, and the
tests check them against one step of the reference's training loop (``shared/parity/train_step``).

Full-resolution networks (PCT-Net) take the same path: their batches also hold ``image_fullres``,
``target_fullres`` and ``mask_fullres`` (lists: crops of different sizes), :func:`train_step` passes
the full-resolution images to the network and the whole output to their objective
(:class:`.pct_training.PCTObjective`, ``loss(outputs, batch)``).

>>> loss_fn, optimizer = build_loss(config), build_optimizer(model, config)
>>> loss, prediction = train_step(model, batch_to(batch, device), loss_fn, optimizer)
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .config import TrainConfig
from .losses import get_loss


def build_loss(config: TrainConfig, vgg_weights=None, device: Optional[torch.device] = None) -> Callable:
    """``loss(prediction, target, mask)`` of a resolved configuration (FN-MSE with A_min, or MSE);
    for loss ``pct``, ``loss(outputs, batch)`` with the VGG16 features of ``vgg_weights`` on ``device``."""
    if config.loss == "pct":
        from .pct_training import build_pct_objective

        return build_pct_objective(config, vgg_weights, device)
    return get_loss(config.loss, config.min_area)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (``config.betas``, ``config.eps``, no weight decay) over the model's parameter groups:
    one group per learning-rate multiplier (backbone x0.1), each with ``lr_mult`` recorded."""
    from ..models.backboned import optimizer_param_groups

    groups = optimizer_param_groups(model, config.lr)
    return torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)


class ConstantThenLinear:
    """The learning-rate factor after ``epoch`` epochs: 1 until ``constant``, then falling linearly
    to 0 at ``total`` (0 afterwards). With (50, 100) it is PCT-Net's ``SequentialLR([ConstantLR(1),
    LinearLR(1, 0, total_iters=50)], milestones=[50])``, computed directly (no accumulated rounding)."""

    def __init__(self, constant: int, total: int):
        self.constant, self.total = int(constant), int(total)

    def __call__(self, epoch: int) -> float:
        if epoch < self.constant:
            return 1.0
        return max(0.0, 1.0 - (epoch - self.constant) / max(self.total - self.constant, 1))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """``multistep``: MultiStepLR, the learning rate times ``config.gamma`` at each of
    ``config.milestones``; ``constant-linear``: constant until ``milestones[0]``, then linear to 0
    at ``config.epochs`` (:class:`ConstantThenLinear`; no milestone: constant throughout)."""
    if config.schedule == "constant-linear":
        start = config.milestones[0] if config.milestones else config.epochs
        return torch.optim.lr_scheduler.LambdaLR(optimizer, ConstantThenLinear(start, config.epochs))
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=config.gamma)


FULLRES_KEYS = ("image_fullres", "target_fullres", "mask_fullres")


def batch_to(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    """The batch's image, target and mask on ``device`` (image and mask channels-last if asked),
    and the full-resolution lists when the batch has them."""
    non_blocking = device.type == "cuda"
    moved = {key: batch[key].to(device, non_blocking=non_blocking) for key in ("image", "target", "mask")}
    for key in FULLRES_KEYS:
        if key in batch:
            moved[key] = [item.to(device, non_blocking=non_blocking) for item in batch[key]]
    if channels_last:
        for key in ("image", "mask"):
            moved[key] = moved[key].contiguous(memory_format=torch.channels_last)
    return moved


def train_step(model, batch: dict, loss_fn: Callable, optimizer: torch.optim.Optimizer, *, scaler=None,
               amp_dtype: Optional[torch.dtype] = None):
    """One step: forward (under autocast when ``amp_dtype`` is set), the loss in float32, backward
    (through ``scaler`` when given), the optimizer step. Returns ``(loss, prediction)``
    (full-resolution networks: their output at the network's size)."""
    image, target, mask = batch["image"], batch["target"], batch["mask"]
    fullres = "image_fullres" in batch
    with torch.autocast(device_type=image.device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        if fullres:
            outputs = model(image, mask, image_fullres=batch["image_fullres"], mask_fullres=batch["mask_fullres"])
        else:
            prediction = model(image, mask)
    if fullres:
        outputs = {key: _as_float(value) for key, value in outputs.items()}
        loss, prediction = loss_fn(outputs, batch), outputs["images"]
    else:
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


def _as_float(value):
    if torch.is_tensor(value):
        return value.float()
    return [item.float() for item in value]
