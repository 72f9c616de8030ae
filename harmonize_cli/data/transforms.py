"""Joint transforms for (composite, real, mask) triples, as in the reference implementation.

A transform is called with a *reader* (see :class:`SampleReader`) rather than with decoded
arrays, so that it can ask for only the region it needs: with a packed HDF5 file a random
crop reads just the crop's rows, and nothing is decoded at all.

Every transform returns ``{"image", "target", "mask"}``: image and target are ``3 x H x W``
float32 tensors on the 0..255 scale (integer values: resized images are rounded like
OpenCV's uint8 output), the mask is ``1 x H x W`` float32 in [0, 1] (resized bilinearly, so
soft at the edges, never rounded). The dataset then applies the ImageNet normalisation.

>>> t = train_transform(256)        # RandomResizedCrop(256, scale 0.5-1, ratio 3/4-4/3) + h-flip
>>> t = eval_transform("fixed256")  # the protocol's Fixed256 resize (also "limit1024", "none")
"""

from __future__ import annotations

import math
import random as _random

import numpy as np
import torch
import torch.nn.functional as F

from ..choices import EVAL_RESIZES as EVAL_STRATEGIES
from ..choices import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EVAL_STRATEGIES",
    "SampleReader",
    "Transform",
    "RandomResizedCropFlip",
    "Resize",
    "LimitLongestSide",
    "NoResize",
    "train_transform",
    "eval_transform",
    "resize_linear",
    "resize_linear_uint8",
    "normalize",
    "denormalize",
]


class SampleReader:
    """What a transform receives: the stored size and region reads of the three images.

    ``read(key, box)`` with key ``"composite"``, ``"real"`` or ``"mask"`` and
    ``box = (top, left, height, width)`` (None: the whole image) returns a numpy array,
    ``H x W x 3`` uint8 for images and ``H x W`` uint8 (0..255) for the mask.
    """

    size: tuple  # (height, width)

    def read(self, key: str, box=None) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


def crop_box(array, box):
    """``array`` cropped to ``box`` = (top, left, height, width); the whole array when ``box`` is None."""
    if box is None:
        return array
    top, left, height, width = box
    return array[top : top + height, left : left + width]


class ArrayReader(SampleReader):
    """A reader over arrays already in memory (handy for tests and for ``harmonize apply``)."""

    def __init__(self, composite, real, mask):
        self._arrays = {"composite": np.asarray(composite), "real": np.asarray(real), "mask": np.asarray(mask)}
        if self._arrays["mask"].ndim == 3:
            self._arrays["mask"] = self._arrays["mask"][:, :, 0]
        self.size = tuple(self._arrays["composite"].shape[:2])

    def read(self, key, box=None):
        return crop_box(self._arrays[key], box)


# ---------------------------------------------------------------------------- resizing
def _to_chw_float(array, copy=True) -> torch.Tensor:
    """``H x W (x C)`` numpy/tensor -> ``1 x C x H x W`` float32 tensor (new memory if ``copy``)."""
    if isinstance(array, np.ndarray):
        if not (array.flags.c_contiguous and array.flags.writeable):
            array = np.array(array, order="C")  # one copy of just this region
        tensor = torch.from_numpy(array)
    else:
        tensor = array
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(-1)
    # a new tensor by default: callers may modify the result in place
    return tensor.permute(2, 0, 1).unsqueeze(0).to(torch.float32, copy=copy)


def resize_linear(array, size) -> torch.Tensor:
    """Bilinear resize with OpenCV ``INTER_LINEAR`` semantics, returned as ``C x H x W`` float32.

    ``array`` is ``H x W x C`` or ``H x W`` (numpy or tensor, any numeric dtype);
    ``size = (height, width)``. Semantics: pixel centres at half-integers, i.e. the source
    coordinate of output pixel ``x`` is ``(x + 0.5) * in / out - 0.5``, clamped at 0 below and
    to the last pixel above; two-tap linear weights; *no* antialiasing when shrinking. The
    result is not rounded (see :func:`round_pixels`).
    """
    height, width = int(size[0]), int(size[1])
    if tuple(array.shape[:2]) == (height, width):
        return _to_chw_float(array)[0]
    tensor = _to_chw_float(array, copy=False)  # interpolate writes new memory anyway
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False, antialias=False)[0]


def resize_linear_uint8(array, size) -> torch.Tensor:
    """Fast bilinear resize of an ``H x W x 3`` uint8 image, returned as ``3 x H x W`` float32.

    Same geometry as :func:`resize_linear` (OpenCV ``INTER_LINEAR``, no antialiasing) but
    computed by torch's fixed-point uint8 kernel, about 2.5x faster than going through
    float32: the result differs from the exact one rounded by at most 1 level (on roughly a
    fifth of the pixels; mean shift below 0.2 level), as OpenCV's own uint8 kernel does.
    """
    if isinstance(array, np.ndarray):
        if not (array.flags.c_contiguous and array.flags.writeable):
            array = np.array(array, order="C")
        array = torch.from_numpy(array)
    tensor = array.permute(2, 0, 1).unsqueeze(0)  # a channels-last view: the fast kernel
    height, width = int(size[0]), int(size[1])
    if tuple(tensor.shape[-2:]) != (height, width):
        tensor = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False, antialias=False)
    return tensor[0].to(torch.float32)


def round_pixels(tensor: torch.Tensor) -> torch.Tensor:
    """Round to integers (half up) and clamp to 0..255, like a uint8 result of ``cv2.resize``."""
    return torch.floor_(tensor.add_(0.5)).clamp_(0.0, 255.0)


def _resize_triple(reader, box, size):
    """Read ``box`` of the three images and resize each to ``size`` (None: keep)."""
    out = {}
    for key, name in (("composite", "image"), ("real", "target")):
        region = reader.read(key, box)
        if size is None or tuple(region.shape[:2]) == tuple(size):
            out[name] = _to_chw_float(region)[0]
        else:
            out[name] = round_pixels(resize_linear(region, size))
    out["mask"] = _resize_mask(reader.read("mask", box), size)
    return out


def _resize_mask(region, size) -> torch.Tensor:
    if size is None or tuple(region.shape[:2]) == tuple(size):
        return _to_chw_float(region)[0].mul_(1.0 / 255.0)
    return resize_linear(region, size).mul_(1.0 / 255.0)  # linear: scaling after resizing is the same


_MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
_SCALE = 1.0 / (255.0 * _STD)
_SHIFT = -_MEAN / _STD


def normalize(image_255: torch.Tensor) -> torch.Tensor:
    """0..255 image -> ImageNet-normalised ((x/255 - mean) / std); works on ``3xHxW`` or ``Nx3xHxW``."""
    if image_255.device.type == "cpu":
        return torch.addcmul(_SHIFT, image_255, _SCALE)  # one pass, one allocation
    return torch.addcmul(_SHIFT.to(image_255.device), image_255, _SCALE.to(image_255.device))


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised -> 0..255 (not clamped, not rounded)."""
    return (image * _STD.to(image.device) + _MEAN.to(image.device)) * 255.0


# ---------------------------------------------------------------------------- transforms
class Transform:
    """Base class: ``transform(reader, keep_background_prob=-1.0) -> dict`` (see module doc)."""

    _rng = None  # a random.Random for reproducible draws; None: the module-level generator

    @property
    def rng(self):
        return self._rng if self._rng is not None else _random

    def __call__(self, reader: SampleReader, keep_background_prob: float = -1.0) -> dict:
        raise NotImplementedError

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def _pair(size):
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


class RandomResizedCropFlip(Transform):
    """The reference's training augmentation: RandomResizedCrop, then horizontal flip.

    Crop area uniform in ``scale`` of the image area, aspect ratio log-uniform in ``ratio``,
    10 tries then a centre crop (albumentations/torchvision rule); the crop is resized to
    ``size`` with OpenCV-style bilinear (the mask too, staying soft); flip with
    probability ``flip_prob``. The same crop and flip apply to composite, real and mask.

    With ``keep_background_prob >= 0`` a draw whose resized mask sums to 1 or less (the
    crop lost the foreground) is re-drawn, except with that probability (the reference's
    rule; after ``max_redraws`` it is accepted anyway, so empty masks cannot loop forever).

    Images are resized with torch's uint8 kernel (:func:`resize_linear_uint8`: within 1
    level of the exact result, 2.5x faster); ``exact=True`` uses the float path of the
    evaluation transforms instead. The mask is always resized in float32.
    """

    def __init__(
        self, size=256, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), flip_prob=0.5, max_redraws=50, exact=False, rng=None
    ):
        self.size = _pair(size)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.flip_prob = flip_prob
        self.max_redraws = max_redraws
        self.exact = bool(exact)
        self._rng = rng

    def sample_box(self, height: int, width: int):
        """``(top, left, crop_height, crop_width)`` for an image of the given size."""
        rng = self.rng
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = rng.uniform(*self.scale) * area
            aspect = math.exp(rng.uniform(*log_ratio))
            crop_w = int(round(math.sqrt(target_area * aspect)))
            crop_h = int(round(math.sqrt(target_area / aspect)))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = rng.randint(0, height - crop_h)
                left = rng.randint(0, width - crop_w)
                return top, left, crop_h, crop_w
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            crop_w = width
            crop_h = min(height, int(round(crop_w / min(self.ratio))))
        elif in_ratio > max(self.ratio):
            crop_h = height
            crop_w = min(width, int(round(crop_h * max(self.ratio))))
        else:
            crop_w, crop_h = width, height
        return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w

    def __call__(self, reader, keep_background_prob=-1.0):
        rng = self.rng
        height, width = reader.size
        attempt = 0
        while True:
            box = self.sample_box(height, width)
            flip = rng.random() < self.flip_prob
            mask = _resize_mask(reader.read("mask", box), self.size)
            if (
                keep_background_prob < 0
                or rng.random() < keep_background_prob
                or float(mask.sum()) > 1.0
                or attempt >= self.max_redraws
            ):
                break
            attempt += 1
        out = {}
        for key, name in (("composite", "image"), ("real", "target")):
            region = reader.read(key, box)
            if tuple(region.shape[:2]) == self.size:
                out[name] = _to_chw_float(region)[0]
            elif self.exact:
                out[name] = round_pixels(resize_linear(region, self.size))
            else:
                out[name] = resize_linear_uint8(region, self.size)
        out["mask"] = mask
        if flip:
            for name in out:
                out[name] = torch.flip(out[name], dims=(-1,))
        return out


class Resize(Transform):
    """Resize the whole image to a fixed size (``Fixed256``: OpenCV bilinear, mask too)."""

    def __init__(self, size=256):
        self.size = _pair(size)

    def __call__(self, reader, keep_background_prob=-1.0):
        return _resize_triple(reader, None, self.size)


def longest_side_size(height: int, width: int, max_side: int):
    """Size after shrinking so the long side is ``max_side`` (albumentations' rounding); None if no shrink."""
    longest = max(height, width)
    if longest <= max_side:
        return None
    scale = max_side / longest
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


class LimitLongestSide(Transform):
    """``LimitLongest1024``: shrink (bilinear) only when the long side exceeds ``max_side``."""

    def __init__(self, max_side=1024):
        self.max_side = int(max_side)

    def __call__(self, reader, keep_background_prob=-1.0):
        return _resize_triple(reader, None, longest_side_size(*reader.size, self.max_side))


class NoResize(Transform):
    """``None``: native size (the model pads; the metric uses the native image)."""

    def __call__(self, reader, keep_background_prob=-1.0):
        return _resize_triple(reader, None, None)


def train_transform(crop=256, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), flip_prob=0.5, exact=False) -> Transform:
    """The reference training augmentation at ``crop`` x ``crop`` (or ``(height, width)``)."""
    return RandomResizedCropFlip(crop, scale=scale, ratio=ratio, flip_prob=flip_prob, exact=exact)


def eval_transform(strategy="fixed256") -> Transform:
    """An evaluation resize strategy of the protocol: ``fixed256``, ``limit1024`` or ``none``.

    Names are case-insensitive and the reference's spellings (``Fixed256``,
    ``LimitLongest1024``, ``None``) are accepted, as are ``fixedN`` and ``limitN``.
    """
    name = str(strategy).strip().lower().replace("_", "").replace("-", "")
    if name in ("none", "native", "noresize"):
        return NoResize()
    if name.startswith("fixed") and name[5:].isdigit():
        return Resize(int(name[5:]))
    for prefix in ("limitlongest", "limit"):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return LimitLongestSide(int(name[len(prefix) :]))
    from ..errors import UsageError

    raise UsageError(f"unknown resize strategy {strategy!r}", f"use one of {', '.join(EVAL_STRATEGIES)}")
