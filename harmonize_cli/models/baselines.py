"""Training-free baselines with the same interface as the networks: ``forward(image, mask)``.

Inputs and outputs are ImageNet-normalised N x 3 x H x W tensors; ``mask`` is N x 1 x H x W in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


def srgb_to_linear(rgb):
    """sRGB in [0, 1] to linear light."""
    return torch.where(rgb > 0.04045, ((rgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def linear_to_srgb(linear):
    """Linear light to sRGB in [0, 1] (clamped)."""
    linear = linear.clamp(0.0, 1.0)
    return torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055,
                       12.92 * linear).clamp(0.0, 1.0)


def rgb_to_lab(rgb):
    """sRGB in [0, 1] (N x 3 x H x W) to CIE Lab (D65)."""
    linear = srgb_to_linear(rgb)
    xyz = torch.einsum("ij,njhw->nihw", _RGB_TO_XYZ.to(rgb), linear) / _WHITE.to(rgb).view(1, 3, 1, 1)
    f = torch.where(xyz > _EPS ** 3, xyz.clamp_min(1e-12) ** (1.0 / 3.0), xyz / (3 * _EPS ** 2) + 4.0 / 29.0)
    return torch.stack((116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])), dim=1)


def lab_to_rgb(lab):
    """CIE Lab (D65) to sRGB in [0, 1] (clamped)."""
    fy = (lab[:, 0] + 16.0) / 116.0
    f = torch.stack((fy + lab[:, 1] / 500.0, fy, fy - lab[:, 2] / 200.0), dim=1)
    xyz = torch.where(f > _EPS, f ** 3, 3 * _EPS ** 2 * (f - 4.0 / 29.0)) * _WHITE.to(lab).view(1, 3, 1, 1)
    return linear_to_srgb(torch.einsum("ij,njhw->nihw", torch.linalg.inv(_RGB_TO_XYZ).to(lab), xyz))


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


class BoundaryGain(_Baseline):
    """The offline default: the light the foreground lacks, read across the mask's edge, and only
    where every side of the object agrees.

    A re-coloured or pasted object differs from its surroundings most plainly where the two meet.
    For every pixel within ``window // 2`` pixels of the mask's edge, the mean linear-light colour
    of the nearby background is divided by that of the nearby foreground (local, masked averages):
    the log of that ratio is what would make the two sides meet there. The edge is cut into
    ``sectors`` angular sectors around the object's centre and each sector's median taken; per
    channel, the gain is the *smallest* of these in magnitude when all sectors agree in sign, and
    1 when they do not (a "minmod" limiter: a change of light shows on every side, a real edge
    between two materials does not). The gain is clipped to ``[1 / max_gain, max_gain]``, raised
    to ``strength`` and applied to the foreground in linear light, keeping its own colours and
    texture. Sectors with fewer than ``min_pixels`` edge pixels are left out; with none left the
    foreground stays as it is. Measured against :class:`LabTransfer` in
    ``benchmarks/fallback_quality.py`` (docs/apply.md, "The offline default").
    """

    def __init__(self, sectors: int = 6, window: int = 7, max_gain: float = 1.6, strength: float = 1.0,
                 min_pixels: int = 8):
        super().__init__()
        self.sectors, self.window, self.max_gain = sectors, window, max_gain
        self.strength, self.min_pixels = strength, min_pixels

    def _local_mean(self, values, weights):
        pool = F.avg_pool2d(torch.cat((values * weights, weights), dim=1), self.window, stride=1,
                            padding=self.window // 2, count_include_pad=False)
        return pool[:, :-1] / pool[:, -1:].clamp_min(1e-6), pool[:, -1:]

    def log_gains(self, linear, inside):
        """N x 3 per-channel log gains (linear light) read across the edge of ``inside`` (0/1)."""
        inner, inner_share = self._local_mean(linear, inside)
        outer, outer_share = self._local_mean(linear, 1.0 - inside)
        near_edge = (inner_share > 0.05) & (outer_share > 0.05)  # N x 1 x H x W: both sides in the window
        log_ratio = torch.log(outer + 0.01) - torch.log(inner + 0.01)
        height, width = inside.shape[2:]
        rows, cols = torch.meshgrid(torch.arange(height, device=linear.device, dtype=linear.dtype),
                                    torch.arange(width, device=linear.device, dtype=linear.dtype), indexing="ij")
        gains = torch.zeros(linear.shape[0], 3, dtype=linear.dtype, device=linear.device)
        for index in range(linear.shape[0]):
            edge, body = near_edge[index, 0], inside[index, 0] > 0.5
            if not body.any() or not edge.any():
                continue
            angle = torch.atan2(rows[edge] - rows[body].mean(), cols[edge] - cols[body].mean())
            sector = ((angle + math.pi) * (self.sectors / (2 * math.pi))).long().clamp(0, self.sectors - 1)
            ratios = log_ratio[index][:, edge]
            medians = [ratios[:, sector == k].median(dim=1).values for k in range(self.sectors)
                       if int((sector == k).sum()) >= self.min_pixels]
            if not medians:
                continue
            medians = torch.stack(medians)  # sectors x 3
            agree = (medians > 0).all(dim=0) | (medians < 0).all(dim=0)
            smallest = medians.gather(0, medians.abs().argmin(dim=0, keepdim=True))[0]
            gains[index] = torch.where(agree, smallest, torch.zeros_like(smallest))
        limit = math.log(self.max_gain)
        return gains.clamp(-limit, limit) * self.strength

    def forward(self, image, mask):
        rgb = (image * self.std + self.mean).clamp(0.0, 1.0).float()
        mask = mask.float().clamp(0.0, 1.0)
        linear = srgb_to_linear(rgb)
        gains = torch.exp(self.log_gains(linear, (mask > 0.5).to(linear))).view(-1, 3, 1, 1)
        blended = rgb + mask * (linear_to_srgb(linear * gains) - rgb)
        return ((blended - self.mean) / self.std).to(image.dtype)
