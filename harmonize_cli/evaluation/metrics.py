"""Per-image harmonization metrics on the 0..255 scale, exactly as the reference evaluation.

All functions take batched tensors (``N x 3 x H x W`` images on the 0..255 scale, ``N x 1 x H x W``
masks in [0, 1]) and return one value per image (a float64 tensor of length ``N``). A table cell is
the mean of these per-image values (see :class:`MetricSums`).

- MSE  = mean over pixels and channels of (pred - target)^2
- fMSE = sum(mask * (pred - target)^2) / (3 * sum(mask) + 1e-6)
- PSNR = 10 * log10(peak^2 / (MSE + 1e-6)), where peak is the target's own maximum
  (the reference's choice) or a fixed value such as 255 (``psnr_peak=255``)

Foreground ratio = (number of mask pixels > 0.5) / (H * W); the ranges of the paper's Table 2
include both ends, so an image at exactly 5 % or 15 % counts in both neighbouring ranges.
"""

from __future__ import annotations

import math

from typing import Dict, List, Optional

import torch

EPSILON = 1e-6
METRIC_NAMES = ("MSE", "fMSE", "PSNR")

# name -> (low, high), both inclusive, in the order of the paper's Table 2.
FG_RATIO_RANGES: Dict[str, tuple] = {
    "0-5%": (0.0, 0.05),
    "5-15%": (0.05, 0.15),
    "15-100%": (0.15, 1.0),
    "0-100%": (0.0, 1.0),
}


def _as_4d(tensor, channels: Optional[int] = None) -> torch.Tensor:
    """``tensor`` as ``N x C x H x W`` (an ``H x W`` mask or a ``C x H x W`` image gains the missing
    axes), its dtype and device kept; any other number of axes, or not ``channels`` channels, raises."""
    tensor = torch.as_tensor(tensor)
    if tensor.dim() == 2:  # H x W mask
        tensor = tensor[None, None]
    elif tensor.dim() == 3:  # C x H x W single image
        tensor = tensor[None]
    if tensor.dim() != 4:
        raise ValueError(f"expected an N x C x H x W tensor, got shape {tuple(tensor.shape)}")
    if channels is not None and tensor.shape[1] != channels:
        raise ValueError(f"expected {channels} channels, got shape {tuple(tensor.shape)}")
    return tensor


def _as_batch(tensor, channels: Optional[int] = None) -> torch.Tensor:
    """:func:`_as_4d` in float64."""
    return _as_4d(tensor, channels).double()


def _squared_error(pred, target):
    """``(pred - target) ** 2`` and the target, both float64 ``N x 3 x H x W`` on the prediction's device."""
    pred = _as_batch(pred, 3)
    target = _as_batch(target, 3)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    target = target.to(pred.device)
    return (pred - target) ** 2, target


def _per_image_mean(values: torch.Tensor) -> torch.Tensor:
    return values.mean(dim=(1, 2, 3))


def _fmse_of(squared: torch.Tensor, mask) -> torch.Tensor:
    mask = _as_batch(mask, 1).to(squared.device)
    if mask.shape[0] != squared.shape[0] or mask.shape[2:] != squared.shape[2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not fit images {tuple(squared.shape)}")
    weighted = (mask * squared).sum(dim=(1, 2, 3))
    return weighted / (squared.shape[1] * mask.sum(dim=(1, 2, 3)) + EPSILON)


def mse(pred, target) -> torch.Tensor:
    """Per-image mean squared error over pixels and channels (0..255 scale)."""
    squared, _ = _squared_error(pred, target)
    return _per_image_mean(squared)


def fmse(pred, target, mask) -> torch.Tensor:
    """Per-image foreground MSE: squared errors weighted by the (soft) mask, per channel and pixel."""
    squared, _ = _squared_error(pred, target)
    return _fmse_of(squared, mask)


def check_psnr_peak(peak) -> Optional[float]:
    """``peak`` as a float (None: each target's maximum); a non-finite or non-positive peak, which
    would make every PSNR NaN or meaningless, raises ``ValueError``."""
    if peak is None:
        return None
    value = float(peak)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"the PSNR peak must be a positive finite number, not {peak!r}")
    return value


def psnr(pred, target, peak: Optional[float] = None) -> torch.Tensor:
    """Per-image PSNR in dB; ``peak=None`` uses each target's own maximum (the reference's rule)."""
    squared, target_batch = _squared_error(pred, target)
    return psnr_from_mse(_per_image_mean(squared), target_batch, peak)


def psnr_from_mse(per_image_mse: torch.Tensor, target, peak: Optional[float] = None) -> torch.Tensor:
    """PSNR in dB from the per-image MSE; ``target`` gives each image's peak when ``peak`` is None."""
    if peak is None:
        peaks = _as_batch(target, 3).amax(dim=(1, 2, 3)).to(per_image_mse.device)
    else:
        peaks = torch.full_like(per_image_mse, float(peak))
    return 10.0 * torch.log10(peaks ** 2 / (per_image_mse + EPSILON))


def image_metrics(pred, target, mask, psnr_peak: Optional[float] = None) -> Dict[str, torch.Tensor]:
    """MSE, fMSE and PSNR of every image of a batch: ``{"MSE": (N,), "fMSE": (N,), "PSNR": (N,)}``."""
    squared, target_batch = _squared_error(pred, target)
    per_image_mse = _per_image_mean(squared)
    return {
        "MSE": per_image_mse,
        "fMSE": _fmse_of(squared, mask),
        "PSNR": psnr_from_mse(per_image_mse, target_batch, psnr_peak),
    }


def fg_ratio(mask, threshold: float = 0.5) -> List[float]:
    """Per-image foreground ratio: pixels with mask > 0.5 over all pixels (Python floats).

    ``mask``: ``N x 1 x H x W``, ``1 x H x W`` or ``H x W``; a mask of several channels raises."""
    mask = _as_4d(mask, 1)
    counts = (mask > threshold).flatten(1).sum(dim=1).tolist()
    pixels = mask.shape[2] * mask.shape[3]
    # integer count / integer area in double precision: exactly 5 % and 15 % compare equal to 0.05, 0.15
    return [int(count) / pixels for count in counts]


def fg_ratio_bins(ratio: float) -> List[str]:
    """The names of every range of :data:`FG_RATIO_RANGES` that holds ``ratio`` (ends inclusive)."""
    return [name for name, (low, high) in FG_RATIO_RANGES.items() if low <= ratio <= high]


class MetricSums:
    """Running sums of per-image values; ``means()`` gives a table row (None where N is 0)."""

    __slots__ = ("count", "sums", "seconds")

    def __init__(self):
        self.count = 0
        self.sums = {name: 0.0 for name in METRIC_NAMES}
        self.seconds = 0.0

    def add(self, values: Dict[str, float], seconds: float = 0.0) -> None:
        self.count += 1
        for name in METRIC_NAMES:
            self.sums[name] += float(values[name])
        self.seconds += float(seconds)

    def merge(self, other: "MetricSums") -> None:
        self.count += other.count
        for name in METRIC_NAMES:
            self.sums[name] += other.sums[name]
        self.seconds += other.seconds

    def means(self, with_time: bool = True) -> dict:
        row = {"N": self.count}
        for name in METRIC_NAMES:
            row[name] = self.sums[name] / self.count if self.count else None
        if with_time:
            row["ms_per_image"] = 1000.0 * self.seconds / self.count if self.count else None
        return row
