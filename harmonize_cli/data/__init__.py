"""Datasets for deep image harmonization: iHarmony4 layout, HDF5 packing, transforms.

>>> from harmonize_cli.data import HarmonizationDataset, train_transform, eval_transform
>>> train = HarmonizationDataset("iHarmony4/iharmony4.h5", "train", transform=train_transform(256))
>>> test = HarmonizationDataset("iHarmony4/iharmony4.h5", "test", transform=eval_transform("fixed256"))

Packing (what ``harmonize prepare`` runs): :func:`pack_dataset`. Submodules import torch
only where needed (``layout``, ``pack`` and ``imageio`` do not).
"""

from __future__ import annotations

from ..lazy import lazy_exports

__all__ = [
    "HarmonizationDataset",
    "train_transform",
    "eval_transform",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EVAL_STRATEGIES",
    "normalize",
    "denormalize",
    "pack_dataset",
    "PackReport",
    "DatasetError",
]

_LAZY = {
    "HarmonizationDataset": "dataset",
    "train_transform": "transforms",
    "eval_transform": "transforms",
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "EVAL_STRATEGIES": "transforms",
    "normalize": "transforms",
    "denormalize": "transforms",
    "pack_dataset": "pack",
    "PackReport": "pack",
    "DatasetError": "layout",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)  # `harmonize prepare` must not pay for torch
