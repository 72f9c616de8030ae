"""HRNetV2 with an object-contextual representation (OCR) head, as used for harmonization.

HRNetV2 keeps four parallel branches at 1/4, 1/8, 1/16 and 1/32 of the input resolution
(widths ``w, 2w, 4w, 8w``) and repeatedly exchanges information between them. Its four outputs can
be returned as a list, or upsampled to 1/4 and concatenated (``15 * w`` channels). The OCR head then
refines the concatenated map: soft regions given by the foreground/background mask pool "object"
descriptors, and every pixel attends over them.

"Small" networks (HRNetV2-W18-small-v2) use two residual blocks per branch and (1, 3, 2) modules in
stages 2-4; full ones use four blocks and (1, 4, 3) modules.

Parameter names match the authors' HRNet code (``transition1.1.0.0.weight``,
``stage3.2.fuse_layers.2.0.1.1.weight`` ...) so HRNet-Image-Classification checkpoints and the
harmonization checkpoints load by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import BasicBlock, Bottleneck, make_res_layer


def _resize_bilinear(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _conv_bn(in_channels, out_channels, kernel_size, stride, norm_layer, relu):
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                  padding=kernel_size // 2, bias=False),
        norm_layer(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """One exchange unit: residual blocks on each branch, then all-to-all fusion.

    ``fuse_layers[i][j]`` brings branch ``j`` to branch ``i``: a 1x1 conv + BN (followed by
    bilinear upsampling) when ``j`` is coarser, a chain of stride-2 3x3 convs when ``j`` is finer,
    and nothing (``None``) on the diagonal.
    """

    def __init__(self, in_channels, channels, num_blocks, block=BasicBlock, norm_layer=nn.BatchNorm2d):
        super().__init__()
        if not len(in_channels) == len(channels) == len(num_blocks):
            raise ValueError("in_channels, channels and num_blocks must have one entry per branch")
        self.num_branches = len(channels)
        branches = []
        self.out_channels = []
        for branch_in, branch_ch, branch_blocks in zip(in_channels, channels, num_blocks):
            layer, out = make_res_layer(block, branch_in, branch_ch, branch_blocks, norm_layer=norm_layer)
            branches.append(layer)
            self.out_channels.append(out)
        self.branches = nn.ModuleList(branches)
        self.fuse_layers = self._build_fusion(norm_layer) if self.num_branches > 1 else None
        self.relu = nn.ReLU(inplace=True)

    def _build_fusion(self, norm_layer):
        ch = self.out_channels
        rows = []
        for target in range(self.num_branches):
            row = []
            for source in range(self.num_branches):
                if source > target:
                    row.append(_conv_bn(ch[source], ch[target], 1, 1, norm_layer, relu=False))
                elif source == target:
                    row.append(None)
                else:
                    steps = target - source
                    chain = [
                        _conv_bn(ch[source], ch[source], 3, 2, norm_layer, relu=True)
                        for _ in range(steps - 1)
                    ]
                    chain.append(_conv_bn(ch[source], ch[target], 3, 2, norm_layer, relu=False))
                    row.append(nn.Sequential(*chain))
            rows.append(nn.ModuleList(row))
        return nn.ModuleList(rows)

    def forward(self, inputs):
        xs = [branch(x) for branch, x in zip(self.branches, inputs)]
        if self.fuse_layers is None:
            return xs
        fused = []
        for target, row in enumerate(self.fuse_layers):
            # The summation order (branch 0 first, then 1, 2, ...) is kept for bit-level parity.
            acc = xs[0] if target == 0 else row[0](xs[0])
            for source in range(1, self.num_branches):
                if source == target:
                    acc = acc + xs[source]
                elif source > target:
                    acc = acc + _resize_bilinear(row[source](xs[source]), xs[target].shape[-2:])
                else:
                    acc = acc + row[source](xs[source])
            fused.append(self.relu(acc))
        return fused


def _transition(prev_channels, next_channels, norm_layer):
    """Adapts the previous stage's branches to the next stage and spawns the new, coarser branch.

    Existing branches get a 3x3 conv only when their width changes (``None`` otherwise); each new
    branch is derived from the coarsest previous one with stride-2 convolutions.
    """
    layers = []
    for index, out_ch in enumerate(next_channels):
        if index < len(prev_channels):
            in_ch = prev_channels[index]
            layers.append(_conv_bn(in_ch, out_ch, 3, 1, norm_layer, relu=True) if in_ch != out_ch else None)
        else:
            extra = index + 1 - len(prev_channels)
            in_ch = prev_channels[-1]
            chain = []
            for step in range(extra):
                step_out = out_ch if step == extra - 1 else in_ch
                chain.append(_conv_bn(in_ch, step_out, 3, 2, norm_layer, relu=True))
            layers.append(nn.Sequential(*chain))
    return nn.ModuleList(layers)


def _apply_transition(transition, features):
    outputs = []
    for index, layer in enumerate(transition):
        if index < len(features):
            outputs.append(features[index] if layer is None else layer(features[index]))
        else:
            outputs.append(layer(features[-1]))
    return outputs


class SpatialGather(nn.Module):
    """Soft-region pooling: one ``C``-dim descriptor per region, weighted by softmax over pixels.

    ``feats``: N x C x H x W, ``probs``: N x K x H x W -> N x C x K x 1.
    """

    def forward(self, feats, probs):
        weights = torch.softmax(probs.flatten(2), dim=2)            # N x K x HW
        pixels = feats.flatten(2).permute(0, 2, 1)                   # N x HW x C
        regions = torch.matmul(weights, pixels)                      # N x K x C
        return regions.permute(0, 2, 1).unsqueeze(3).contiguous()    # N x C x K x 1


def _proj(in_channels, out_channels, norm_layer):
    # conv -> (norm, relu) grouped in a nested Sequential, as the checkpoints name them
    return [nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.Sequential(norm_layer(out_channels), nn.ReLU(inplace=True))]


class ObjectAttention(nn.Module):
    """Pixel-to-region attention: queries from pixels, keys/values from the region descriptors."""

    def __init__(self, in_channels, key_channels, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(*_proj(in_channels, key_channels, norm_layer),
                                     *_proj(key_channels, key_channels, norm_layer))
        self.f_object = nn.Sequential(*_proj(in_channels, key_channels, norm_layer),
                                      *_proj(key_channels, key_channels, norm_layer))
        self.f_down = nn.Sequential(*_proj(in_channels, key_channels, norm_layer))
        self.f_up = nn.Sequential(*_proj(key_channels, in_channels, norm_layer))

    def forward(self, x, regions):
        n, _, h, w = x.shape
        query = self.f_pixel(x).reshape(n, self.key_channels, -1).permute(0, 2, 1)    # N x HW x Ck
        key = self.f_object(regions).reshape(n, self.key_channels, -1)                 # N x Ck x K
        value = self.f_down(regions).reshape(n, self.key_channels, -1).permute(0, 2, 1)  # N x K x Ck
        affinity = torch.softmax((self.key_channels ** -0.5) * torch.matmul(query, key), dim=-1)
        context = torch.matmul(affinity, value).permute(0, 2, 1).contiguous()
        return self.f_up(context.view(n, self.key_channels, h, w))


class SpatialOCR(nn.Module):
    """Concatenates the attended context with the input and fuses them with 1x1 conv + BN + ReLU."""

    def __init__(self, in_channels, key_channels, out_channels, dropout=0.05, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.object_context_block = ObjectAttention(in_channels, key_channels, norm_layer)
        self.conv_bn_dropout = nn.Sequential(*_proj(2 * in_channels, out_channels, norm_layer),
                                             nn.Dropout2d(dropout))

    def forward(self, feats, regions):
        context = self.object_context_block(feats, regions)
        return self.conv_bn_dropout(torch.cat((context, feats), dim=1))


class HighResolutionNet(nn.Module):
    """HRNetV2-W``width`` (optionally "small") with an optional OCR head of width ``ocr_width``.

    ``forward(x, mask, additional_features)`` returns a 1-tuple: the OCR features
    (``2 * ocr_width`` channels at 1/4) when ``ocr_width > 0``, else the concatenated HRNet map.
    ``mask`` holds the soft regions for OCR (``num_classes`` channels, any resolution).
    """

    batchnorm_folds = (("conv1", "bn1"), ("conv2", "bn2"))  # the stem, folded for inference (models/fusion.py)

    def __init__(self, width, num_classes, ocr_width=256, small=False, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.width = width
        self.ocr_width = ocr_width
        self.ocr_on = ocr_width > 0
        self.num_classes = num_classes
        blocks = 2 if small else 4
        modules_per_stage = (1, 3, 2) if small else (1, 4, 3)

        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = norm_layer(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)

        self.layer1, stem_out = make_res_layer(Bottleneck, 64, 64, blocks, norm_layer=norm_layer)

        prev = [stem_out]
        for stage, num_modules in zip((2, 3, 4), modules_per_stage):
            channels = [width * 2 ** i for i in range(stage)]
            setattr(self, f"transition{stage - 1}", _transition(prev, channels, norm_layer))
            units = []
            in_channels = channels
            for _ in range(num_modules):
                unit = HighResolutionModule(in_channels, channels, [blocks] * stage, BasicBlock, norm_layer)
                units.append(unit)
                in_channels = unit.out_channels
            setattr(self, f"stage{stage}", nn.Sequential(*units))
            prev = in_channels
        self.hrnet_channels = list(prev)

        if self.ocr_on:
            mid = 2 * ocr_width
            self.conv3x3_ocr = nn.Sequential(
                nn.Conv2d(sum(prev), mid, 3, stride=1, padding=1),
                norm_layer(mid),
                nn.ReLU(inplace=True),
            )
            self.ocr_gather_head = SpatialGather()
            self.ocr_distri_head = SpatialOCR(mid, ocr_width, mid, dropout=0.05, norm_layer=norm_layer)

    def stem(self, x, additional_features=None):
        x = self.relu(self.bn1(self.conv1(x)))
        if additional_features is not None:
            x = x + additional_features
        return self.relu(self.bn2(self.conv2(x)))

    def branch_features(self, x, additional_features=None):
        """The four HRNet outputs, finest first."""
        feats = [self.layer1(self.stem(x, additional_features))]
        feats = self.stage2(_apply_transition(self.transition1, feats))
        feats = self.stage3(_apply_transition(self.transition2, feats))
        return self.stage4(_apply_transition(self.transition3, feats))

    @staticmethod
    def concat_branches(feats):
        size = feats[0].shape[-2:]
        return torch.cat([feats[0]] + [_resize_bilinear(f, size) for f in feats[1:]], dim=1)

    def forward(self, x, mask=None, additional_features=None):
        feats = self.concat_branches(self.branch_features(x, additional_features))
        if not self.ocr_on:
            return (feats,)
        feats = self.conv3x3_ocr(feats)
        regions = self.ocr_gather_head(feats, _resize_bilinear(mask, feats.shape[-2:]))
        return (self.ocr_distri_head(feats, regions),)
