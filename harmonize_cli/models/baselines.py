"""Training-free baselines with the same interface as the networks: ``forward(image, mask)``.

Inputs and outputs are ImageNet-normalised N x 3 x H x W tensors; ``mask`` is N x 1 x H x W in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from ..choices import IMAGENET_MEAN, IMAGENET_STD

# sRGB (D65) <-> XYZ
_RGB_TO_XYZ = torch.tensor([
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
])
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])
_EPS = 6.0 / 29.0


class _Baseline(nn.Module):
    size_divisor = 1
    input_size = None  # any size: runs at native resolution

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)


class CompositeBaseline(_Baseline):
    """Returns the composite unchanged: the "Composite" row of published tables."""

    def forward(self, image, mask):
        return image.clone()


def rgb_to_lab(rgb):
    """sRGB in [0, 1] (N x 3 x H x W) to CIE Lab (D65)."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,njhw->nihw", _RGB_TO_XYZ.to(rgb), linear) / _WHITE.to(rgb).view(1, 3, 1, 1)
    f = torch.where(xyz > _EPS ** 3, xyz.clamp_min(1e-12) ** (1.0 / 3.0), xyz / (3 * _EPS ** 2) + 4.0 / 29.0)
    return torch.stack((116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])), dim=1)


def lab_to_rgb(lab):
    """CIE Lab (D65) to sRGB in [0, 1] (clamped)."""
    fy = (lab[:, 0] + 16.0) / 116.0
    f = torch.stack((fy + lab[:, 1] / 500.0, fy, fy - lab[:, 2] / 200.0), dim=1)
    xyz = torch.where(f > _EPS, f ** 3, 3 * _EPS ** 2 * (f - 4.0 / 29.0)) * _WHITE.to(lab).view(1, 3, 1, 1)
    linear = torch.einsum("ij,njhw->nihw", torch.linalg.inv(_RGB_TO_XYZ).to(lab), xyz).clamp(0.0, 1.0)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0.0, 1.0)


def _weighted_stats(values, weights):
    total = weights.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    mean = (values * weights).sum(dim=(2, 3), keepdim=True) / total
    var = (((values - mean) ** 2) * weights).sum(dim=(2, 3), keepdim=True) / total
    return mean, var.clamp_min(0).sqrt(), total


class LabTransfer(_Baseline):
    """Reinhard-style colour transfer in Lab: the foreground's per-channel mean and standard
    deviation are moved to those of the background, inside the mask only."""

    def __init__(self, min_std: float = 1e-3):
        super().__init__()
        self.min_std = min_std

    def forward(self, image, mask):
        rgb = (image * self.std + self.mean).clamp(0.0, 1.0)
        lab = rgb_to_lab(rgb.float())
        mask = mask.float().clamp(0.0, 1.0)
        fg_mean, fg_std, fg_area = _weighted_stats(lab, mask)
        bg_mean, bg_std, bg_area = _weighted_stats(lab, 1.0 - mask)
        scale = bg_std / fg_std.clamp_min(self.min_std)
        moved = (lab - fg_mean) * scale + bg_mean
        moved_rgb = lab_to_rgb(moved)
        valid = ((fg_area > 1.0) & (bg_area > 1.0)).to(rgb)
        blended = rgb + valid * mask * (moved_rgb - rgb)
        return ((blended - self.mean) / self.std).to(image.dtype)
