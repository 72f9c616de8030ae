"""Training losses, in the normalised image space as the reference computes them."""

from __future__ import annotations

import torch


def fn_mse(prediction, target, mask, min_area: float = 100.0):
    """Foreground-normalised MSE (FN-MSE): per image, the sum of squared errors over pixels and
    channels divided by channels x max(min_area, mask area); averaged over the batch."""
    squared = (prediction - target).pow(2).sum(dim=(1, 2, 3))
    area = mask.sum(dim=(1, 2, 3)).clamp_min(min_area)
    return (squared / (prediction.shape[1] * area)).mean()


def mse(prediction, target, mask=None):
    """Plain mean squared error over every pixel and channel."""
    return torch.mean((prediction - target) ** 2)


def get_loss(name: str, min_area: float = 100.0):
    key = name.lower()
    if key == "fn-mse":
        return lambda prediction, target, mask: fn_mse(prediction, target, mask, min_area)
    if key == "mse":
        return mse
    from ..errors import UsageError

    raise UsageError(f"unknown loss {name!r}", "use fn-mse or mse")
