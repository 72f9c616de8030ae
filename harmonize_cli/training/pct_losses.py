"""PCT-Net's training objective, as the authors' ``models/PCTNet_*.py`` and ``iharm/model/losses.py``
define it (all terms in the model's normalised image space):

    loss = 1.0  * FN-MSE(images_fullres, targets_fullres, masks_fullres; A_min = 1000)
         + 0.01 * (SS-CR + CS-CR)(images, targets, masks, composites)      at 256 px
         + 0.1  * mean Sobel magnitude of the 256-px parameter map

* FN-MSE: per image, the squared error summed over pixels and channels divided by
  channels x max(mask area, 1000); averaged over the batch (full-res crops may differ in size).
* Style contrastive regularisation on VGG16 ``features[:23]`` (up to relu4_3; the module is passed
  in, ImageNet weights in training): with f = E(pred * m), f+ = E(target * m), f-_j = E(negative_j * m)
  and b+ = E(target * (1 - m)), and D the mean absolute difference over the batch,
  SS-CR = D(f, f+) / (D(f, f+) + sum_j D(f, f-_j) + 1e-8) and the same on Gram products with b+
  (CS-CR). ``k = min(5, N - 1)`` negatives (:func:`.pct_negatives.create_negative_samples`). As in
  the authors' code the negatives' distances enter the denominator as constants (no gradient), and
  the "Gram" product is ``f.view(C, -1).T @ b.view(C, -1)`` (HW x HW).
* Smoothness: kornia's ``sobel`` (3 x 3 Sobel kernels divided by 8, replicate padding,
  sqrt(gx^2 + gy^2 + 1e-6)) averaged over every element.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .losses import fn_mse
from .pct_negatives import create_negative_samples

PIXEL_WEIGHT = 1.0
CONTRASTIVE_WEIGHT = 0.01
SMOOTHNESS_WEIGHT = 0.1
FULLRES_MIN_AREA = 1000.0
NEGATIVES = 5
VGG16_STYLE_LAYERS = 23  # vgg16().features[:23] ends with relu4_3

TensorOrList = Union[torch.Tensor, Sequence[torch.Tensor]]


def fn_mse_fullres(predictions: TensorOrList, targets: TensorOrList, masks: TensorOrList,
                   min_area: float = FULLRES_MIN_AREA) -> torch.Tensor:
    """FN-MSE over a batch tensor or over lists of 1 x C x H x W (or C x H x W) images of any sizes."""
    if torch.is_tensor(predictions):
        return fn_mse(predictions, targets, masks[:, :1], min_area)
    per_image = []
    for prediction, target, mask in zip(predictions, targets, masks):
        if prediction.dim() == 3:
            prediction, target, mask = prediction[None], target[None], mask[None]
        per_image.append(fn_mse(prediction, target.to(prediction.device), mask[:, :1].to(prediction.device), min_area))
    return torch.stack(per_image).mean()


def sobel_magnitude(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-channel Sobel gradient magnitude of N x C x H x W (kornia's ``sobel``, normalised kernels)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device) / 8
    kernels = torch.stack((kx, kx.t()))[:, None]  # 2 x 1 x 3 x 3
    batch, channels, height, width = x.shape
    padded = F.pad(x.reshape(batch * channels, 1, height, width), (1, 1, 1, 1), mode="replicate")
    gradients = F.conv2d(padded, kernels).view(batch, channels, 2, height, width)
    return torch.sqrt(gradients[:, :, 0] ** 2 + gradients[:, :, 1] ** 2 + eps)


def param_smoothness(params: torch.Tensor) -> torch.Tensor:
    return sobel_magnitude(params).mean()


def gram(features: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The authors' per-image product ``f.view(C, -1).T @ b.view(C, -1)``: N x HW x HW."""
    return torch.matmul(features.flatten(2).transpose(1, 2), background.flatten(2))


def vgg16_style_extractor(vgg16: nn.Module) -> nn.Module:
    """``vgg16.features[:23]`` (relu4_3), frozen and in eval mode, from a torchvision VGG16."""
    extractor = vgg16.features[:VGG16_STYLE_LAYERS]
    extractor.requires_grad_(False)
    return extractor.eval()


def _contrast(anchor, positive, negatives):
    distance = F.l1_loss(anchor, positive)
    pushed = sum((F.l1_loss(anchor, negative).detach() for negative in negatives),
                 torch.zeros((), device=anchor.device))
    return distance / (distance + pushed + 1e-8)


class StyleContrastiveLoss(nn.Module):
    """SS-CR + CS-CR. ``feature_extractor``: e.g. :func:`vgg16_style_extractor` of a torchvision VGG16
    (any module mapping N x 3 x H x W to features works, which keeps tests free of downloads)."""

    def __init__(self, feature_extractor: nn.Module, k: int = NEGATIVES, seed: Optional[int] = None,
                 negatives_mean=None, negatives_std=None):
        super().__init__()
        self.extractor = feature_extractor
        self.k = k
        self.generator = np.random.default_rng(seed)
        self.negatives_kwargs = {key: value for key, value in
                                 (("mean", negatives_mean), ("std", negatives_std)) if value is not None}

    def negatives(self, targets, composites, masks):
        k = min(self.k, targets.shape[0] - 1)
        if k <= 1:  # only the composite (or, for a single image, nothing) to push away from
            return composites[:, None][:, :k]
        return create_negative_samples(targets, composites, masks, k, self.generator, **self.negatives_kwargs)

    def forward(self, predictions, targets, masks, composites, negatives: Optional[torch.Tensor] = None):
        if negatives is None:
            negatives = self.negatives(targets.detach(), composites.detach(), masks.detach())
        self.extractor.eval()
        features = self.extractor(predictions * masks)
        positive = self.extractor(targets * masks)
        pushed = [self.extractor(negatives[:, j] * masks) for j in range(negatives.shape[1])]
        background = self.extractor(targets * (1 - masks))
        self_style = _contrast(features, positive, pushed)
        consistent = _contrast(gram(features, background), gram(positive, background),
                               [gram(f, background) for f in pushed])
        return self_style + consistent


class PCTLoss(nn.Module):
    """The weighted sum; ``forward(outputs, batch)`` returns ``(total, {"pixel", "contrastive",
    "smooth"})``. ``outputs``: the model's dict (``images``, ``params``, ``images_fullres``);
    ``batch``: ``images`` (composites at 256), ``masks``, ``target_images``, ``masks_fullres``,
    ``target_images_fullres`` (tensors or lists for the full-resolution crops)."""

    def __init__(self, feature_extractor: nn.Module, pixel_weight: float = PIXEL_WEIGHT,
                 contrastive_weight: float = CONTRASTIVE_WEIGHT, smooth_weight: float = SMOOTHNESS_WEIGHT,
                 min_area: float = FULLRES_MIN_AREA, k: int = NEGATIVES, seed: Optional[int] = None):
        super().__init__()
        self.weights = {"pixel": pixel_weight, "contrastive": contrastive_weight, "smooth": smooth_weight}
        self.min_area = min_area
        self.contrastive = StyleContrastiveLoss(feature_extractor, k=k, seed=seed)

    def forward(self, outputs: Mapping, batch: Mapping):
        parts = {
            "pixel": fn_mse_fullres(outputs["images_fullres"], batch["target_images_fullres"],
                                    batch["masks_fullres"], self.min_area),
            "contrastive": self.contrastive(outputs["images"], batch["target_images"], batch["masks"],
                                            batch["images"]),
            "smooth": param_smoothness(outputs["params"]),
        }
        total = sum(self.weights[name] * value for name, value in parts.items())
        return total, {name: value.detach() for name, value in parts.items()}
