"""DeepLabV3+ on a dilated ResNet, the semantic backbone of the "DeepLab" harmonization models.

ASPP (1x1 branch, three atrous 3x3 branches with rates 12/24/36 and image pooling) runs on the
stride-8 ResNet output; the result is upsampled to the stride-4 features of the first stage,
concatenated with their 32-channel projection and refined by two depthwise-separable convolutions.
The output has ``ch`` channels at 1/4 of the input resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import ResNetBackbone


def _resize_bilinear(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 -> pointwise 1x1 -> norm -> ReLU (no biases)."""

    def __init__(self, in_channels, out_channels, dw_kernel=3, dw_padding=1, dw_stride=1,
                 norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, dw_kernel, stride=dw_stride, padding=dw_padding,
                      groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            norm_layer(out_channels) if norm_layer is not None else nn.Identity(),
            nn.ReLU(),
        )

    def forward(self, x):
        return self.body(x)


class DeepLabHead(nn.Module):
    def __init__(self, in_channels, mid_channels, out_channels, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.block = nn.Sequential(
            SeparableConv2d(in_channels, mid_channels, norm_layer=norm_layer),
            SeparableConv2d(mid_channels, mid_channels, norm_layer=norm_layer),
            nn.Conv2d(mid_channels, out_channels, 1),
        )

    def forward(self, x):
        return self.block(x)


class SkipProjection(nn.Module):
    def __init__(self, in_channels, out_channels, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.skip_project = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            norm_layer(out_channels),
            nn.ReLU(),
        )

    def forward(self, x):
        return self.skip_project(x)


def _aspp_branch(in_channels, out_channels, rate, norm_layer):
    if rate == 1:
        conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
    else:
        conv = nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False)
    return nn.Sequential(conv, norm_layer(out_channels), nn.ReLU())


class ImagePooling(nn.Module):
    """Global average pooling branch of ASPP, broadcast back to the input size."""

    def __init__(self, in_channels, out_channels, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.gap = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            norm_layer(out_channels),
            nn.ReLU(),
        )

    def forward(self, x):
        return _resize_bilinear(self.gap(x), x.shape[-2:])


class ASPP(nn.Module):
    def __init__(self, in_channels, atrous_rates=(12, 24, 36), out_channels=256,
                 project_dropout=0.5, norm_layer=nn.BatchNorm2d):
        super().__init__()
        branches = [_aspp_branch(in_channels, out_channels, 1, norm_layer)]
        branches += [_aspp_branch(in_channels, out_channels, rate, norm_layer) for rate in atrous_rates]
        branches.append(ImagePooling(in_channels, out_channels, norm_layer))
        # The attribute name (with its spelling) is part of the checkpoint layout.
        self.concurent = nn.ModuleList(branches)
        project = [
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            norm_layer(out_channels),
            nn.ReLU(),
        ]
        if project_dropout > 0:
            project.append(nn.Dropout(project_dropout))
        self.project = nn.Sequential(*project)

    def forward(self, x):
        return self.project(torch.cat([branch(x) for branch in self.concurent], dim=1))


class DeepLabV3Plus(nn.Module):
    """``forward(x, mask_features)`` returns a 1-tuple with the ``ch``-channel stride-4 features."""

    def __init__(self, backbone="resnet50", norm_layer=nn.BatchNorm2d, backbone_norm_layer=None,
                 ch=256, project_dropout=0.5):
        super().__init__()
        backbone_norm_layer = backbone_norm_layer or norm_layer
        self.backbone_name = backbone
        self.ch = ch
        self.backbone = ResNetBackbone(backbone, dilated=True, norm_layer=backbone_norm_layer)
        skip_in, aspp_in = self.backbone.stage_channels[0], self.backbone.stage_channels[3]
        skip_ch = 32
        self.head = DeepLabHead(ch + skip_ch, ch, ch, norm_layer=norm_layer)
        self.skip_project = SkipProjection(skip_in, skip_ch, norm_layer=norm_layer)
        self.aspp = ASPP(aspp_in, (12, 24, 36), ch, project_dropout=project_dropout, norm_layer=norm_layer)

    def forward(self, x, mask_features=None):
        c1, _, _, c4 = self.backbone(x, mask_features)
        skip = self.skip_project(c1)
        x = _resize_bilinear(self.aspp(c4), skip.shape[-2:])
        return (self.head(torch.cat((x, skip), dim=1)),)
