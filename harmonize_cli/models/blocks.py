"""Building blocks shared by the harmonization networks.

Module and attribute names follow the reference implementation's state-dict layout
(``block.0.weight`` and so on) so that released checkpoints load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _norm_or_identity(norm_layer, channels):
    return norm_layer(channels) if norm_layer is not None else nn.Identity()


class ConvBlock(nn.Module):
    """Conv -> optional norm -> activation (DIH uses 4x4 stride-2 convs with ELU)."""

    def __init__(self, in_channels, out_channels, kernel_size=4, stride=2, padding=1,
                 norm_layer=nn.BatchNorm2d, activation=nn.ELU, bias=True):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias),
            _norm_or_identity(norm_layer, out_channels),
            activation(),
        )

    def forward(self, x):
        return self.block(x)


class GlobalPooledDescriptor(nn.Module):
    """Masked max pooling inside and outside the mask plus global average pooling."""

    def forward(self, x, mask):
        flat = x.flatten(2)
        mask_flat = mask.flatten(2)
        inside = (flat * mask_flat).amax(dim=2)
        outside = (flat * (1.0 - mask_flat)).amax(dim=2)
        return torch.cat((inside, outside, flat.mean(dim=2)), dim=1)


class MaskedChannelAttention(nn.Module):
    """Squeeze-and-excitation gate driven by foreground/background statistics (iSEDIH)."""

    def __init__(self, in_channels):
        super().__init__()
        hidden = max(in_channels // 16, 8)
        self.pooling = GlobalPooledDescriptor()
        self.attention_transform = nn.Sequential(
            nn.Linear(3 * in_channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, in_channels),
            nn.Sigmoid(),
        )

    def forward(self, x, mask):
        # The reference always resamples the mask (align_corners=True), which is the identity
        # when the sizes already agree.
        mask = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=True)
        weights = self.attention_transform(self.pooling(x, mask))
        return x * weights[..., None, None]


class ChannelAttention(nn.Module):
    """Channel gate from global average and max pooling (used by S2AM)."""

    def __init__(self, in_channels):
        super().__init__()
        hidden = max(in_channels // 16, 8)
        self.attention_transform = nn.Sequential(
            nn.Linear(2 * in_channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, in_channels),
            nn.Sigmoid(),
        )

    def forward(self, x):
        pooled = torch.cat((x.mean(dim=(2, 3)), x.amax(dim=(2, 3))), dim=1)
        return x * self.attention_transform(pooled)[..., None, None]


class GaussianBlur(nn.Module):
    """Fixed depthwise Gaussian filter; the kernel is a buffer named ``weight``."""

    def __init__(self, channels, kernel_size, sigma, padding=0):
        super().__init__()
        coords = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2.0
        profile = torch.exp(-(coords / sigma) ** 2 / 2) / (sigma * math.sqrt(2 * math.pi))
        kernel = profile[:, None] * profile[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.expand(channels, 1, kernel_size, kernel_size).clone())
        self.groups = channels
        self.padding = padding

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=self.padding, groups=self.groups)


class FeaturesConnector(nn.Module):
    """Merges backbone features into an encoder stage: 'cat', 'catc' (cat + 1x1 conv) or 'sum'."""

    def __init__(self, mode, in_channels, feature_channels, out_channels):
        super().__init__()
        self.mode = mode if feature_channels else ""
        if self.mode == "catc":
            self.reduce_conv = nn.Conv2d(in_channels + feature_channels, out_channels, kernel_size=1)
        elif self.mode == "sum":
            self.reduce_conv = nn.Conv2d(feature_channels, out_channels, kernel_size=1)
        self.output_channels = in_channels + feature_channels if self.mode == "cat" else out_channels

    def forward(self, x, features):
        if self.mode == "cat":
            return torch.cat((x, features), dim=1)
        if self.mode == "catc":
            return self.reduce_conv(torch.cat((x, features), dim=1))
        if self.mode == "sum":
            return x + self.reduce_conv(features)
        return x

    def extra_repr(self):
        return self.mode


class EncoderStages:
    """Bookkeeping shared by the DIH and U-Net encoders: from which block batch norm is used,
    and which blocks receive backbone features (through a :class:`FeaturesConnector`).

    Call :meth:`_init_stages` before creating any block; create ``self.blocks_connected`` and
    ``self.connectors`` (ModuleDicts) after ``block0``/``block1`` so the state-dict order stays the
    reference's.
    """

    def _init_stages(self, norm_layer, batchnorm_from, backbone_from, backbone_channels, backbone_mode):
        self._norm_layer = norm_layer
        self._batchnorm_from = batchnorm_from
        self._backbone_from = backbone_from
        self._backbone_mode = backbone_mode
        self._pending_backbone = list(backbone_channels or [])

    def _norm_at(self, index):
        """The norm layer of block ``index``: from block ``batchnorm_from`` on (never when negative)."""
        return self._norm_layer if 0 <= self._batchnorm_from <= index else None

    def _connect(self, index, in_channels):
        """Adds the connector of block ``index`` if backbone features enter there; returns the
        block's input channels."""
        if 0 <= self._backbone_from <= index and self._pending_backbone:
            connector = FeaturesConnector(self._backbone_mode, in_channels, self._pending_backbone.pop(0), in_channels)
            self.connectors[f"connector{index}"] = connector
            return connector.output_channels
        return in_channels

    def _merge(self, index, current, pending_features):
        """Feeds the next backbone feature map into block ``index``'s input, if it has a connector."""
        name = f"connector{index}"
        if name in self.connectors:
            return self.connectors[name](current, pending_features.pop(0))
        return current


def blend_with_attention(conv_attention, to_rgb, features, image):
    """Image fusion of the improved models: M = sigmoid(3 * conv(f)); I * M + D_rgb * (1 - M)."""
    attention = torch.sigmoid(3.0 * conv_attention(features))
    return attention * image + (1.0 - attention) * to_rgb(features)
