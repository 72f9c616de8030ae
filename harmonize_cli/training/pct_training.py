"""What training a PCT-Net needs beyond the other networks: its objective (with the VGG16 feature
network of the contrastive term), its full-resolution training set, and its unused parameters.

* :func:`build_pct_objective`: :class:`PCTObjective`, the authors' weighted loss
  (:class:`.pct_losses.PCTLoss`) called as ``objective(outputs, batch)`` on our batch keys; the
  VGG16 ImageNet weights come from ``harmonize zoo download vgg16`` (torchvision's
  ``vgg16-397923af.pth``, also found in torch's hub cache) or ``--vgg-weights FILE``. Only
  ``features.0`` .. ``features.21`` (up to relu4_3) are read, so a file holding only those works.
* :func:`full_resolution_train_set`: the training split through ``RandomCropNoResize``
  (:mod:`harmonize_cli.data.fullres`), normalised with the network's own normalisation.
* :func:`freeze_unused`: PCTNet-CNN keeps the iS2AM decoder's ``to_rgb`` (it is in the released
  checkpoints) but never uses it; frozen, it stays out of the optimizer and out of DDP's gradient
  reduction (the authors run DDP with ``find_unused_parameters=True``: the same updates).
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import torch
from torch import nn

from ..errors import WeightsError
from .pct_losses import VGG16_STYLE_LAYERS, PCTLoss, vgg16_style_extractor

# torchvision's vgg16 "D" configuration up to relu4_3: channels, "M" for a 2 x 2 max-pool
_VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)


class VGG16Features(nn.Module):
    """``torchvision.models.vgg16().features[:23]`` with the same module indices (so the
    ``features.N.weight`` / ``bias`` names of torchvision's checkpoint load unchanged)."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for item in _VGG16_LAYERS:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        assert len(self.features) == VGG16_STYLE_LAYERS


def load_vgg16_features(path) -> nn.Module:
    """The frozen relu4_3 feature extractor with the ImageNet weights of ``path`` (a torchvision
    VGG16 checkpoint; its classifier is ignored). A file that is not one: one WeightsError line."""
    from ..zoo.state import extract_state_dict, safe_load

    network = VGG16Features()
    state = extract_state_dict(safe_load(path))
    wanted = network.state_dict()
    missing = [key for key in wanted if key not in state]
    wrong = [key for key in wanted if key in state and tuple(state[key].shape) != tuple(wanted[key].shape)]
    if missing or wrong:
        what = f"lacks {missing[0]}" if missing else f"has {wrong[0]} of shape {tuple(state[wrong[0]].shape)}"
        raise WeightsError(f"{path} is not a torchvision VGG16 checkpoint (it {what})",
                           "pass torchvision's vgg16-397923af.pth, or run `harmonize zoo download vgg16`")
    network.load_state_dict({key: state[key] for key in wanted})
    return vgg16_style_extractor(network)


class PCTObjective(nn.Module):
    """``objective(outputs, batch) -> total loss``: :class:`PCTLoss` on our batch keys (``image``,
    ``mask``, ``target`` at the network's size; ``target_fullres``, ``mask_fullres`` lists).
    ``last_parts`` holds the three unweighted terms of the last call.

    The negatives' random choices (which other images lend their colours, the tone curves' random
    starts) are drawn from a generator seeded from torch's global generator at each call, so a
    seeded run draws the same negatives when it is resumed (that generator is in the checkpoint).
    """

    def __init__(self, feature_extractor: nn.Module, min_area: float):
        super().__init__()
        self.loss = PCTLoss(feature_extractor, min_area=min_area)
        self.last_parts: dict = {}

    def forward(self, outputs: Mapping, batch: Mapping) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        self.loss.contrastive.generator = np.random.default_rng(seed)
        total, self.last_parts = self.loss(outputs, {
            "images": batch["image"], "masks": batch["mask"], "target_images": batch["target"],
            "target_images_fullres": batch["target_fullres"], "masks_fullres": batch["mask_fullres"],
        })
        return total


def build_pct_objective(config, vgg_path, device: Optional[torch.device] = None) -> PCTObjective:
    """The objective of a resolved PCT configuration (``config.min_area``: FN-MSE's A_min at full
    resolution, 1000) with the VGG16 features of ``vgg_path``, on ``device``."""
    if vgg_path is None:
        raise WeightsError("PCT-Net's loss needs the VGG16 ImageNet weights",
                           "run `harmonize zoo download vgg16` or pass --vgg-weights FILE")
    objective = PCTObjective(load_vgg16_features(vgg_path), config.min_area)
    return objective.to(device) if device is not None else objective


def full_resolution_train_set(train_set, config):
    """``train_set`` (a HarmonizationDataset) as full-resolution crops and the network's view of
    them (``config.crop`` px), normalised with the network's normalisation."""
    from ..data.fullres import FullResolutionCrops, RandomCropNoResize
    from ..zoo import get_arch

    transform = RandomCropNoResize(config.crop_ratio, config.crop, max_side=config.fullres_max_side or None)
    return FullResolutionCrops(train_set, transform, get_arch(config.arch).normalization)


def freeze_unused(model: nn.Module) -> nn.Module:
    """Freezes the parameters a PCT-Net never uses (PCTNet-CNN's ``decoder.to_rgb``)."""
    unused = getattr(getattr(model, "decoder", None), "to_rgb", None)
    if isinstance(unused, nn.Module):
        unused.requires_grad_(False)
    return model
