"""Foreground-aware harmonization models: a base encoder-decoder fed with semantic backbone features.

The backbone (HRNetV2 + OCR, or DeepLabV3+ on ResNet-34) sees the composite image; the binary mask
enters it through a strided 3x3 convolution whose output, scaled by a learned scalar, is added to the
backbone's first activations (``mask_fusion='sum'``). The backbone features are then merged into the
base model's encoder (``mode``: 'cat', 'catc' or 'sum') from encoder block 2 on (block 3 when the
backbone runs on a half-size image).

``forward(image, mask)`` returns the harmonized image tensor (normalised space).

Training helpers mirroring the reference recipes: :func:`lr_multipliers` /
:func:`optimizer_param_groups` (backbone at 0.1x the learning rate, OCR head and everything else at
1x) and :func:`load_pretrained_backbone` (ImageNet classification checkpoints). Weight
initialisation lives in :mod:`harmonize_cli.models.initialization`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBlock
from .deeplab import DeepLabV3Plus
from .dih import DeepImageHarmonization
from .hrnet import HighResolutionNet
from .ssam import SSAMImageHarmonization

BASE_MODELS = {
    "DeepImageHarmonization": DeepImageHarmonization,
    "SSAMImageHarmonization": SSAMImageHarmonization,
}


def _resolve_base_config(base_config, base_kwargs):
    """Returns (class, params) from ``{'model': name-or-class, 'params': {...}}`` without mutating it."""
    if not isinstance(base_config, Mapping) or "model" not in base_config:
        raise ValueError("base_config must be a mapping with 'model' and 'params'")
    model = base_config["model"]
    if isinstance(model, str):
        if model not in BASE_MODELS:
            raise ValueError(f"unknown base model {model!r}; expected one of {sorted(BASE_MODELS)}")
        model = BASE_MODELS[model]
    params = dict(base_config.get("params", {}))
    params.update(base_kwargs)
    if "depth" not in params:
        raise ValueError("base_config['params'] must define 'depth'")
    return model, params


class ScaleLayer(nn.Module):
    """Multiplies the input by ``|scale * lr_mult|``; ``scale`` starts at ``init_value / lr_mult``."""

    def __init__(self, init_value=1.0, lr_mult=1.0):
        super().__init__()
        self.lr_mult = lr_mult
        self.scale = nn.Parameter(torch.full((1,), init_value / lr_mult, dtype=torch.float32))

    def forward(self, x):
        return x * torch.abs(self.scale * self.lr_mult)


class SimpleInputFusion(nn.Module):
    """``mask_fusion='rgb'``: maps image + mask (4 channels) back to 3 channels with two 1x1 convs."""

    def __init__(self, add_ch=1, rgb_ch=3, ch=8, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.fusion_conv = nn.Sequential(
            nn.Conv2d(add_ch + rgb_ch, ch, 1),
            nn.LeakyReLU(negative_slope=0.2),
            norm_layer(ch),
            nn.Conv2d(ch, rgb_ch, 1),
        )

    def forward(self, image, extra):
        return self.fusion_conv(torch.cat((image, extra), dim=1))


class MaxPoolDownSize(nn.Module):
    """Turns one feature map into a ``depth``-level pyramid (the "v2p" models).

    A 1x1 ConvBlock reduces the channels; level ``i`` is a 3x3 ConvBlock applied to the reduced map
    max-pooled ``i`` times by 2.
    """

    def __init__(self, in_channels, mid_channels, out_channels, depth):
        super().__init__()
        self.depth = depth
        self.reduce_conv = ConvBlock(in_channels, mid_channels, kernel_size=1, stride=1, padding=0)
        self.convs = nn.ModuleList(
            ConvBlock(mid_channels, out_channels, kernel_size=3, stride=1, padding=1) for _ in range(depth)
        )
        self.pool2d = nn.MaxPool2d(kernel_size=2)

    def forward(self, x):
        reduced = self.reduce_conv(x)
        outputs = []
        for level, conv in enumerate(self.convs):
            if level:
                reduced = self.pool2d(reduced)
            outputs.append(conv(reduced))
        return outputs


class HRNetBackbone(nn.Module):
    """HRNetV2 (+ OCR) wrapper producing the list of feature maps handed to the base model."""

    def __init__(self, cat_outputs=True, pyramid_channels=256, pyramid_depth=4,
                 width=18, ocr=64, small=True, lr_mult=0.1):
        super().__init__()
        self.cat_outputs = cat_outputs
        self.ocr_on = ocr > 0 and cat_outputs
        self.pyramid_on = pyramid_channels > 0 and cat_outputs
        self.lr_mult = lr_mult

        self.hrnet = HighResolutionNet(width, 2, ocr_width=ocr, small=small)

        branch_channels = [width * 2 ** i for i in range(4)]
        if self.pyramid_on:
            self.output_channels = [pyramid_channels] * 4
        elif self.ocr_on:
            self.output_channels = [2 * ocr]
        elif cat_outputs:
            self.output_channels = [sum(branch_channels)]
        else:
            self.output_channels = branch_channels

        if self.pyramid_on:
            pyramid_in = 2 * ocr if self.ocr_on else sum(branch_channels)
            self.downsize = MaxPoolDownSize(pyramid_in, pyramid_channels, pyramid_channels, pyramid_depth)

    # Ordered (module prefix, multiplier) rules; a later matching rule wins.
    def lr_rules(self):
        rules = [("hrnet", self.lr_mult)]
        if self.ocr_on:
            rules += [("hrnet.ocr_distri_head", 1.0), ("hrnet.ocr_gather_head", 1.0),
                      ("hrnet.conv3x3_ocr", 1.0)]
        return rules

    def forward(self, image, mask, mask_features):
        if not self.cat_outputs:
            return list(self.hrnet.branch_features(image, mask_features))
        outputs = list(self.hrnet(image, mask, mask_features))
        if self.pyramid_on:
            outputs = self.downsize(outputs[0])
        return outputs


class DeepLabBackbone(nn.Module):
    """DeepLabV3+ wrapper producing the list of feature maps handed to the base model."""

    def __init__(self, pyramid_channels=256, deeplab_ch=256, backbone="resnet34", backbone_lr_mult=0.1):
        super().__init__()
        self.pyramid_on = pyramid_channels > 0
        self.lr_mult = backbone_lr_mult
        self.output_channels = [pyramid_channels] * 4 if self.pyramid_on else [deeplab_ch]
        self.deeplab = DeepLabV3Plus(backbone=backbone, ch=deeplab_ch, project_dropout=0.2,
                                     norm_layer=nn.BatchNorm2d, backbone_norm_layer=nn.BatchNorm2d)
        if self.pyramid_on:
            self.downsize = MaxPoolDownSize(deeplab_ch, pyramid_channels, pyramid_channels, 4)

    def lr_rules(self):
        return [("deeplab.backbone", self.lr_mult)]

    def forward(self, image, mask, mask_features):
        outputs = list(self.deeplab(image, mask_features))
        if self.pyramid_on:
            outputs = self.downsize(outputs[0])
        return outputs


class BackbonedHarmonizationModel(nn.Module):
    """Base harmonization model + semantic backbone (see the module docstring)."""

    inference_rewrites = True  # inference_opt may fold and retype it: parity tested (tests/test_inference_opt.py)
    backbone_stride = 32

    def __init__(self, model, backbone, downsize_backbone_input=False, mask_fusion="sum",
                 backbone_conv1_channels=64):
        super().__init__()
        self.downsize_backbone_input = downsize_backbone_input
        self.mask_fusion = mask_fusion
        self.backbone = backbone
        self.model = model
        if mask_fusion == "rgb":
            self.fusion = SimpleInputFusion()
        elif mask_fusion == "sum":
            self.mask_conv = nn.Sequential(
                nn.Conv2d(1, backbone_conv1_channels, kernel_size=3, stride=2, padding=1, bias=True),
                ScaleLayer(init_value=0.1, lr_mult=1),
            )

    @property
    def size_divisor(self) -> int:
        backbone_divisor = self.backbone_stride * (2 if self.downsize_backbone_input else 1)
        return math.lcm(int(self.model.size_divisor), backbone_divisor)

    def backbone_features(self, image, mask):
        backbone_image = image
        backbone_mask = torch.cat((mask, 1.0 - mask), dim=1)
        if self.downsize_backbone_input:
            backbone_image = F.interpolate(backbone_image, scale_factor=0.5, mode="bilinear", align_corners=True)
            backbone_mask = F.interpolate(backbone_mask, size=backbone_image.shape[-2:], mode="bilinear",
                                          align_corners=True)
        if self.mask_fusion == "rgb":
            backbone_image = self.fusion(backbone_image, backbone_mask[:, :1])
        mask_features = self.mask_conv(backbone_mask[:, :1]) if self.mask_fusion == "sum" else None
        return self.backbone(backbone_image, backbone_mask, mask_features)

    def forward(self, image, mask):
        return self.model(image, mask, self.backbone_features(image, mask))


class HRNetIHModel(BackbonedHarmonizationModel):
    """Base model (iDIH, iS2AM ...) supported by HRNetV2 features.

    Parameters follow the reference: ``downsize_hrnet_input`` runs HRNet on a half-size image;
    ``mask_fusion`` is 'sum', 'rgb' or anything else for no mask input to the backbone; ``lr_mult``
    scales the backbone learning rate (the OCR head keeps 1.0); ``cat_hrnet_outputs`` concatenates
    the four HRNet outputs (else they are fed separately to four encoder blocks); ``pyramid_channels``
    > 0 turns the (OCR) output into a 4-level pyramid; ``ocr`` is the OCR key width (output ``2 * ocr``
    channels; <= 0 disables it); ``width`` / ``small`` select the HRNet variant; ``mode`` is the
    feature merging mode; ``base_kwargs`` override the base model parameters.
    """

    backbone_stride = 32

    def __init__(self, base_config, downsize_hrnet_input=False, mask_fusion="sum",
                 lr_mult=0.1, cat_hrnet_outputs=True, pyramid_channels=-1,
                 ocr=64, width=18, small=True, mode="cat", **base_kwargs):
        base_class, params = _resolve_base_config(base_config, base_kwargs)
        depth = params["depth"]
        backbone = HRNetBackbone(
            cat_outputs=cat_hrnet_outputs,
            pyramid_channels=pyramid_channels,
            pyramid_depth=min(depth - 3 if downsize_hrnet_input else depth - 2, 4),
            width=width, ocr=ocr, small=small, lr_mult=lr_mult,
        )
        params.update(backbone_from=3 if downsize_hrnet_input else 2,
                      backbone_channels=list(backbone.output_channels), backbone_mode=mode)
        super().__init__(base_class(**params), backbone, downsize_hrnet_input, mask_fusion)


class DeepLabIHModel(BackbonedHarmonizationModel):
    """Base model supported by DeepLabV3+ (dilated ResNet) features.

    The backbone runs on a half-size image when the base model is deeper than 7 (512 px models).
    ``deeplab_ch`` is the DeepLab output width; the other parameters are as in :class:`HRNetIHModel`.
    """

    backbone_stride = 8

    def __init__(self, base_config, mask_fusion="sum", deeplab_backbone="resnet34", lr_mult=0.1,
                 pyramid_channels=-1, deeplab_ch=256, mode="cat", **base_kwargs):
        base_class, params = _resolve_base_config(base_config, base_kwargs)
        backbone = DeepLabBackbone(pyramid_channels, deeplab_ch, deeplab_backbone, lr_mult)
        downsize_input = params["depth"] > 7
        params.update(backbone_from=3 if downsize_input else 2,
                      backbone_channels=list(backbone.output_channels), backbone_mode=mode)
        super().__init__(base_class(**params), backbone, downsize_input, mask_fusion)


# --------------------------------------------------------------------------------------------------
# training helpers


def _matches(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def lr_multipliers(model: nn.Module) -> dict[str, float]:
    """Learning-rate multiplier of every parameter of ``model`` (by ``named_parameters`` name).

    As in the reference: all HRNet / ResNet backbone weights get the model's ``lr_mult`` (0.1 by
    default); the HRNet OCR head (``conv3x3_ocr``, ``ocr_distri_head``) is reset to 1.0 when OCR is
    used; the DeepLab ASPP/decoder, the pyramid, the mask-fusion conv + scale and the base model use
    1.0. Models without a backbone get 1.0 everywhere.
    """
    rules = []
    backbone = getattr(model, "backbone", None)
    if backbone is not None and hasattr(backbone, "lr_rules"):
        rules = [(f"backbone.{prefix}", mult) for prefix, mult in backbone.lr_rules()]
    result = {}
    for name, _ in model.named_parameters():
        mult = 1.0
        for prefix, rule_mult in rules:
            if _matches(name, prefix):
                mult = float(rule_mult)
        result[name] = mult
    return result


def optimizer_param_groups(model: nn.Module, lr: float) -> list[dict]:
    """Parameter groups for a ``torch.optim`` optimizer applying :func:`lr_multipliers`.

    Parameters sharing a multiplier share a group (same update as the reference's one-group-per-
    parameter construction). Frozen parameters (``requires_grad=False``) are left out.
    """
    multipliers = lr_multipliers(model)
    groups: dict[float, list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(multipliers[name], []).append(param)
    return [{"params": params, "lr": lr * mult, "lr_mult": mult} for mult, params in groups.items()]


def _unwrap_checkpoint(state_dict):
    if isinstance(state_dict, (str, os.PathLike)):
        from ..zoo.state import safe_load

        state_dict = safe_load(state_dict)  # bounded, weights_only, finite
    if not isinstance(state_dict, Mapping):
        raise TypeError("expected a state dict (mapping of names to tensors) or a checkpoint path")
    inner = state_dict.get("state_dict")
    return inner if isinstance(inner, Mapping) else state_dict


def _hrnet_key(key):
    # HRNet-Image-Classification naming -> ours, the same rewrite the reference applies
    return key.replace("last_layer", "aux_head").replace("model.", "")


def load_pretrained_backbone(model: nn.Module, state_dict) -> tuple[int, list[str]]:
    """Loads ImageNet classification weights into the backbone of a backboned model.

    ``state_dict`` is a mapping (or a path to one) in the layout the weights were published in:

    * :class:`HRNetIHModel`: HRNet-Image-Classification checkpoints (``hrnetv2_w18_small_v2``,
      ``hrnetv2_w18``, ``hrnetv2_w32``). Keys are rewritten like the reference does (``model.``
      prefix dropped, ``last_layer`` -> ``aux_head``) and matched against ``model.backbone.hrnet``;
      the classification head (``incre_modules``, ``downsamp_modules``, ``final_layer``,
      ``classifier``) has no counterpart and is skipped.
    * :class:`DeepLabIHModel`: a torchvision (or gluon/timm v1b) ResNet state dict, matched by name
      against ``model.backbone.deeplab.backbone``; ``fc.*`` is skipped.

    Tensors that are absent from the checkpoint (e.g. ``num_batches_tracked`` or the OCR head) keep
    their current values. Returns ``(number of tensors loaded, checkpoint keys skipped)``; raises
    ``ValueError`` if a matching key has a different shape.
    """
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, HRNetBackbone):
        target, rename = backbone.hrnet, _hrnet_key
    elif isinstance(backbone, DeepLabBackbone):
        target, rename = backbone.deeplab.backbone, (lambda key: key)
    else:
        raise TypeError(f"{type(model).__name__} has no pretrainable backbone")

    own = target.state_dict()
    update, skipped = {}, []
    for key, value in _unwrap_checkpoint(state_dict).items():
        name = rename(key)
        if name not in own:
            skipped.append(key)
            continue
        if tuple(own[name].shape) != tuple(value.shape):
            raise ValueError(f"shape mismatch for {key!r} -> {name!r}: checkpoint {tuple(value.shape)}, "
                             f"model {tuple(own[name].shape)}")
        update[name] = value
    own.update(update)
    target.load_state_dict(own, strict=True)
    return len(update), skipped
