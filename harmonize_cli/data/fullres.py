"""Training samples for full-resolution networks (PCT-Net): a random crop kept at its own size,
and the network's fixed-size view of that crop.

The authors' pipeline (``iharm/data/base.py:BaseHDatasetUpsample`` with ``RandomCropNoResize`` then
albumentations ``Resize(256, 256)``):

1. :class:`RandomCropNoResize` (``ratio`` 0.7): the crop's height is ``int(s_h * H)`` and its width
   ``int(s_w * W)`` with ``s_h``, ``s_w`` drawn independently and uniformly in ``[ratio, 1]`` (so
   the aspect ratio changes too); its corner is ``int((H - h + 1) * u)``, ``int((W - w + 1) * v)``
   with ``u``, ``v`` uniform in ``[0, 1)`` (albumentations' ``random_crop``). No flip, no resize.
   A crop whose mask sums to 1 or less is drawn again, except with ``keep_background_prob``.
2. The network's view: the crop resized to ``low_size`` (OpenCV bilinear; images rounded to
   integers as a uint8 resize is, the mask bilinear and soft).

Memory bound (ours): a crop whose long side exceeds ``max_side`` (default 1024, the cap that
``harmonize prepare`` applies to the stored images anyway) is shrunk to it, bilinearly, before it
is used at full resolution; the low-resolution view is always resized from the crop itself. With
data packed at ``--max-side 0`` (or HAdobe5k at its native 4-6 K pixels) this keeps one sample's
full-resolution tensors, and the network's activations on them, bounded.

:class:`FullResolutionCrops` wraps a :class:`~harmonize_cli.data.HarmonizationDataset` (it reads
the crop's rows only) and normalises every image with the *network's* input normalisation
(ImageNet for PCTNet-CNN, none for PCTNet-ViT). A sample::

    image, target       3 x low x low     the network's view (composite, real)
    mask                1 x low x low     in [0, 1]
    image_fullres, target_fullres   3 x h x w   the crop at full resolution (h, w vary per sample)
    mask_fullres        1 x h x w

The training collate (:func:`harmonize_cli.training.seeding.collate`) stacks the low-resolution
tensors and keeps the full-resolution ones as lists.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch

from .transforms import (Transform, _pair, _resize_mask, _to_chw_float, longest_side_size, resize_linear,
                         round_pixels)

FULLRES_KEYS = ("image_fullres", "target_fullres", "mask_fullres")
DEFAULT_MAX_SIDE = 1024


def crop_no_resize_box(height: int, width: int, ratio: float, draws) -> tuple:
    """``(top, left, crop_height, crop_width)`` of ``RandomCropNoResize`` for an ``height x width``
    image, from the four uniform draws ``(s_h, s_w, u, v)`` (``s`` in [ratio, 1], ``u``, ``v`` in [0, 1))."""
    scale_h, scale_w, start_h, start_w = draws
    crop_h = max(1, int(scale_h * height))
    crop_w = max(1, int(scale_w * width))
    top = int((height - crop_h + 1) * start_h)
    left = int((width - crop_w + 1) * start_w)
    return top, left, crop_h, crop_w


class RandomCropNoResize(Transform):
    """The full-resolution random crop and the network's view of it (see the module doc).

    Returns ``{"image", "target", "mask"}`` at ``low_size`` and ``{"image_fullres",
    "target_fullres", "mask_fullres"}`` at the crop's size (at most ``max_side`` on the long side),
    images on the 0..255 scale, masks in [0, 1].
    """

    def __init__(self, ratio: float = 0.7, low_size=256, max_side: Optional[int] = DEFAULT_MAX_SIDE,
                 max_redraws: int = 50, rng=None):
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"crop ratio must be in (0, 1], got {ratio}")
        self.ratio = float(ratio)
        self.low_size = _pair(low_size)
        self.max_side = int(max_side) if max_side else None
        self.max_redraws = max_redraws
        self._rng = rng

    def sample_box(self, height: int, width: int):
        rng = self.rng
        draws = (rng.uniform(self.ratio, 1.0), rng.uniform(self.ratio, 1.0), rng.random(), rng.random())
        return crop_no_resize_box(height, width, self.ratio, draws)

    def __call__(self, reader, keep_background_prob=-1.0):
        height, width = reader.size
        attempt = 0
        while True:
            box = self.sample_box(height, width)
            mask = reader.read("mask", box)
            if (keep_background_prob < 0 or self.rng.random() < keep_background_prob
                    or int(mask.sum()) > 255 or attempt >= self.max_redraws):  # mask/255 sums to more than 1
                break
            attempt += 1
        regions = {"image": reader.read("composite", box), "target": reader.read("real", box)}
        out = {}
        for name, region in regions.items():
            out[name] = round_pixels(resize_linear(region, self.low_size))
        out["mask"] = _resize_mask(mask, self.low_size)
        full_size = longest_side_size(box[2], box[3], self.max_side) if self.max_side else None
        for name, region in regions.items():
            out[name + "_fullres"] = (_to_chw_float(region)[0] if full_size is None
                                      else round_pixels(resize_linear(region, full_size)))
        out["mask_fullres"] = _resize_mask(mask, full_size)
        return out


def _normalise(image_255: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return image_255.mul_(1.0 / 255.0).sub_(mean).div_(std)


class FullResolutionCrops(torch.utils.data.Dataset):
    """A :class:`~harmonize_cli.data.HarmonizationDataset` seen through :class:`RandomCropNoResize`,
    normalised with ``normalization`` (``{"mean", "std"}``, the network's own)."""

    def __init__(self, dataset, transform: RandomCropNoResize, normalization: Mapping):
        self.dataset = dataset
        self.transform = transform
        self.normalization = {"mean": tuple(float(v) for v in normalization["mean"]),
                              "std": tuple(float(v) for v in normalization["std"])}

    @property
    def subset_names(self):
        return self.dataset.subset_names

    @property
    def keep_background_prob(self) -> float:
        return self.dataset.keep_background_prob

    def __len__(self):
        return len(self.dataset)

    def __repr__(self):
        return f"FullResolutionCrops({self.dataset!r}, {self.transform!r})"

    def __getitem__(self, index):
        index = int(index)
        out = self.transform(self.dataset.reader(index), keep_background_prob=self.keep_background_prob)
        mean = torch.tensor(self.normalization["mean"], dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.normalization["std"], dtype=torch.float32).view(3, 1, 1)
        for name in ("image", "target", "image_fullres", "target_fullres"):
            out[name] = _normalise(out[name].contiguous(), mean, std)
        subset, name = self.dataset.records[index]
        return {**out, "subset": subset, "name": name, "index": index}
