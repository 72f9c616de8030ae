"""DIH and iDIH: the encoder-decoder of Deep Image Harmonization without the FC bottleneck.

``image_fusion=True`` adds the learned blending mask of iDIH
(output = I * M + D_rgb * (1 - M)); ``attend_from`` adds masked channel attention (iSEDIH).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBlock, EncoderStages, MaskedChannelAttention, blend_with_attention


class ConvEncoder(EncoderStages, nn.Module):
    def __init__(self, depth, ch, norm_layer, batchnorm_from, max_channels,
                 backbone_from=-1, backbone_channels=None, backbone_mode=""):
        super().__init__()
        self.depth = depth
        self._init_stages(norm_layer, batchnorm_from, backbone_from, backbone_channels, backbone_mode)
        self.block0 = ConvBlock(4, ch, norm_layer=self._norm_at(0))
        self.block1 = ConvBlock(ch, ch, norm_layer=self._norm_at(1))
        self.blocks_channels = [ch, ch]

        self.blocks_connected = nn.ModuleDict()
        self.connectors = nn.ModuleDict()
        out_channels = ch
        for index in range(2, depth):
            in_channels = out_channels
            if index % 2 == 0:
                out_channels = min(2 * out_channels, max_channels)
            in_channels = self._connect(index, in_channels)
            self.blocks_connected[f"block{index}"] = ConvBlock(
                in_channels, out_channels, norm_layer=self._norm_at(index), padding=int(index < depth - 1)
            )
            self.blocks_channels.append(out_channels)

    def forward(self, x, backbone_features=None):
        pending = list(backbone_features or [])
        outputs = [self.block0(x)]
        outputs.append(self.block1(outputs[-1]))
        for index in range(2, self.depth):
            current = self._merge(index, outputs[-1], pending)
            outputs.append(self.blocks_connected[f"block{index}"](current))
        return outputs[::-1]


class SEDeconvBlock(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=4, stride=2, padding=1,
                 norm_layer=nn.BatchNorm2d, activation=nn.ELU, with_se=False):
        super().__init__()
        self.with_se = with_se
        self.block = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
            norm_layer(out_channels) if norm_layer is not None else nn.Identity(),
            activation(),
        )
        if with_se:
            self.se = MaskedChannelAttention(out_channels)

    def forward(self, x, mask=None):
        out = self.block(x)
        return self.se(out, mask) if self.with_se else out


class DeconvDecoder(nn.Module):
    def __init__(self, depth, encoder_blocks_channels, norm_layer, attend_from=-1, image_fusion=False):
        super().__init__()
        self.image_fusion = image_fusion
        skip_channels = list(encoder_blocks_channels)
        in_channels = skip_channels.pop()
        self.deconv_blocks = nn.ModuleList()
        out_channels = in_channels
        for index in range(depth):
            out_channels = skip_channels.pop() if skip_channels else in_channels // 2
            self.deconv_blocks.append(SEDeconvBlock(
                in_channels, out_channels, norm_layer=norm_layer,
                padding=0 if index == 0 else 1, with_se=0 <= attend_from <= index,
            ))
            in_channels = out_channels
        if image_fusion:
            self.conv_attention = nn.Conv2d(out_channels, 1, kernel_size=1)
        self.to_rgb = nn.Conv2d(out_channels, 3, kernel_size=1)

    def forward(self, encoder_outputs, image, mask=None):
        output = encoder_outputs[0]
        for block, skip in zip(self.deconv_blocks[:-1], encoder_outputs[1:]):
            output = block(output, mask) + skip
        output = self.deconv_blocks[-1](output, mask)
        if self.image_fusion:
            return blend_with_attention(self.conv_attention, self.to_rgb, output, image)
        return self.to_rgb(output)


class DeepImageHarmonization(nn.Module):
    """DIH / iDIH / iSEDIH. ``forward(image, mask)`` returns the harmonized image tensor."""

    inference_rewrites = True  # inference_opt may fold and retype it: parity tested (tests/test_inference_opt.py)

    def __init__(self, depth, norm_layer=nn.BatchNorm2d, batchnorm_from=0, attend_from=-1,
                 image_fusion=False, ch=64, max_channels=512,
                 backbone_from=-1, backbone_channels=None, backbone_mode=""):
        super().__init__()
        self.depth = depth
        self.encoder = ConvEncoder(depth, ch, norm_layer, batchnorm_from, max_channels,
                                   backbone_from, backbone_channels, backbone_mode)
        self.decoder = DeconvDecoder(depth, self.encoder.blocks_channels, norm_layer, attend_from, image_fusion)

    @property
    def size_divisor(self) -> int:
        """Inputs whose sides are multiples of this run (the reference pads to ``2 ** (depth + 1)``;
        the unpadded last encoder block needs an even feature map of at least 2 pixels)."""
        return 2 ** (self.depth + 1)

    def forward(self, image, mask, backbone_features=None):
        features = self.encoder(torch.cat((image, mask), dim=1), backbone_features)
        return self.decoder(features, image, mask)
