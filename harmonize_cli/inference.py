"""THE predictor: normalise, pad, flip-TTA, run the network, de-normalise, clamp.

``apply`` (:class:`~harmonize_cli.apply.Harmonizer`), ``eval`` and training validation all call
:func:`predict`, so a checkpoint gives the same prediction for the same pixels everywhere.

>>> out = predict(network, image, mask, divisor=pad_divisor(network), flip_tta=True, peak=255.0)

Conventions (the reference evaluation's):

- ``image`` is N x 3 x H x W in pixel units ``[0, peak]`` (``peak`` 1.0 for 0..1 floats, 255.0
  for 0..255); ``mask`` is N x 1 x H x W in [0, 1].
- Sides that are not multiples of ``divisor`` are zero-padded in pixel space (black, as the
  reference pads before normalising), centred, and the prediction is cropped back.
- The network sees ``(image / peak - mean) / std`` with its own normalisation (ImageNet for the
  paper's networks); its ``images`` output is de-normalised to ``[0, peak]`` and clamped, not rounded.
- Flip TTA runs the mirrored copies in the same pass and averages the two predictions before
  de-normalisation.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

from .choices import IMAGENET_NORMALIZATION
from .errors import WeightsError


class NonFiniteOutputError(WeightsError):
    """The network produced NaN or infinite values (broken or overflowing weights): no result."""


def require_finite(output: torch.Tensor, weights=None) -> torch.Tensor:
    """``output`` itself when every value is finite; else :class:`NonFiniteOutputError` naming
    ``weights`` (the checkpoint, or whatever label the caller has). Every prediction passes here
    before it is de-normalised and clamped, which would turn NaN into black and inf into white."""
    finite = torch.isfinite(output)
    if not bool(finite.all()):
        bad = int(finite.numel() - finite.sum())
        source = f"the weights {weights}" if weights else "the network's weights"
        raise NonFiniteOutputError(
            f"the network's output has {bad} NaN or infinite value(s) of {finite.numel()}: "
            f"{source} are broken or overflow on this input",
            "retrain, re-export or re-download the checkpoint; no result was written from it")
    return output


def pad_divisor(network) -> int:
    """The multiple that inputs are padded to: ``2 ** (depth + 1)`` for networks with a ``depth``
    (DIH, iDIH, S2AM, ...: the reference's rule), combined with the network's own ``size_divisor``
    (the least multiple it can run at, so backboned networks run at any size)."""
    depth = getattr(network, "depth", None)
    reference = 2 ** (int(depth) + 1) if isinstance(depth, int) else 1
    own = int(getattr(network, "size_divisor", 1) or 1)
    return math.lcm(reference, own)


def padding(size: int, divisor: int) -> Tuple[int, int]:
    """(before, after) that make ``size`` a multiple of ``divisor``, centred."""
    pad = (divisor - size % divisor) % divisor
    return pad // 2, pad - pad // 2


def normalization_of(network, default: Optional[Mapping] = None) -> Mapping:
    """The input normalisation a network declares (``input_normalization``, e.g. PCT-Net's), else
    ImageNet's."""
    declared = getattr(network, "input_normalization", None)
    if isinstance(declared, Mapping):
        return declared
    return default if default is not None else IMAGENET_NORMALIZATION


def network_output(output):
    """The harmonized image of a network's output (a tensor, or a dict with ``images``)."""
    if isinstance(output, Mapping):
        return output["images"] if "images" in output else next(iter(output.values()))
    return output


def _statistics(normalization: Mapping, like: torch.Tensor):
    mean = torch.as_tensor(normalization["mean"], dtype=torch.float32, device=like.device).view(1, 3, 1, 1)
    std = torch.as_tensor(normalization["std"], dtype=torch.float32, device=like.device).view(1, 3, 1, 1)
    return mean, std


def normalise(image: torch.Tensor, normalization: Mapping, peak: float = 1.0) -> torch.Tensor:
    """Pixels in ``[0, peak]`` -> the network's input space ``(x / peak - mean) / std``."""
    mean, std = _statistics(normalization, image)
    return torch.addcmul(-mean / std, image.float(), 1.0 / (peak * std))


def predict(network, image: torch.Tensor, mask: torch.Tensor, *, normalization: Optional[Mapping] = None,
            divisor: int = 1, flip_tta: bool = False, peak: float = 1.0,
            low_size: Optional[int] = None, weights=None) -> torch.Tensor:
    """Harmonize a batch: returns N x 3 x H x W float32 in ``[0, peak]`` (see the module doc).

    ``low_size``: for networks that carry a low-resolution prediction to full resolution
    themselves (PCT-Net), the size of their low-resolution view: the network sees the image
    resized to ``low_size`` (bilinear; the mask nearest, as the reference's Resize) and returns its
    ``images_fullres`` at the input's size. Call it under ``torch.inference_mode()`` (or
    ``no_grad``); the network must be in eval mode.

    A network output with a NaN or infinite value raises :class:`NonFiniteOutputError` (naming
    ``weights``, the checkpoint's path or label) instead of becoming a black or white result.
    """
    if normalization is None:
        normalization = normalization_of(network)
    image = image.float()
    mask = mask.float()
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if low_size and tuple(image.shape[-2:]) != (low_size, low_size):
        return _predict_full_resolution(network, image, mask, normalization, low_size, flip_tta, peak, weights)
    height, width = image.shape[-2:]
    top, bottom = padding(height, divisor)
    left, right = padding(width, divisor)
    padded = bool(top or bottom or left or right)
    if padded:
        image = F.pad(image, (left, right, top, bottom), value=0.0)
        mask = F.pad(mask, (left, right, top, bottom), value=0.0)
    mean, std = _statistics(normalization, image)
    normalised = normalise(image, normalization, peak)
    count = normalised.shape[0]
    if flip_tta:
        normalised = torch.cat((normalised, normalised.flip(3)))
        mask = torch.cat((mask, mask.flip(3)))
    output = require_finite(network_output(network(normalised, mask)).float(), weights)
    if flip_tta:
        output = 0.5 * (output[:count] + output[count:].flip(3))
    if padded:
        output = output[:, :, top:top + height, left:left + width]
    return (output * std + mean).mul_(peak).clamp_(0.0, peak)


def _predict_full_resolution(network, image, mask, normalization, low_size, flip_tta, peak, weights):
    size = (low_size, low_size)
    low = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
    low_mask = F.interpolate(mask, size=size, mode="nearest")
    mean, std = _statistics(normalization, image)
    full, low = normalise(image, normalization, peak), normalise(low, normalization, peak)
    outputs = require_finite(network(low, low_mask, image_fullres=full, mask_fullres=mask)["images_fullres"].float(),
                             weights)
    if flip_tta:
        flipped = network(low.flip(3), low_mask.flip(3), image_fullres=full.flip(3), mask_fullres=mask.flip(3))
        outputs = 0.5 * (outputs + require_finite(flipped["images_fullres"].float(), weights).flip(3))
    return (outputs * std + mean).mul_(peak).clamp_(0.0, peak)
