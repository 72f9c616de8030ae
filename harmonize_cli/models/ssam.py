"""S2AM and iS2AM: a U-Net with spatial-separated attention modules in the decoder."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ChannelAttention, ConvBlock, EncoderStages, GaussianBlur, blend_with_attention

_relu = partial(nn.ReLU, inplace=True)


class UNetDoubleConv(nn.Module):
    def __init__(self, in_channels, out_channels, norm_layer, activation, padding):
        super().__init__()
        self.block = nn.Sequential(
            ConvBlock(in_channels, out_channels, kernel_size=3, stride=1, padding=padding,
                      norm_layer=norm_layer, activation=activation),
            ConvBlock(out_channels, out_channels, kernel_size=3, stride=1, padding=padding,
                      norm_layer=norm_layer, activation=activation),
        )

    def forward(self, x):
        return self.block(x)


class UNetDownBlock(nn.Module):
    """Double conv; returns (features for the skip connection, pooled input of the next block)."""

    def __init__(self, in_channels, out_channels, norm_layer, activation, pool, padding):
        super().__init__()
        self.convs = UNetDoubleConv(in_channels, out_channels, norm_layer, activation, padding)
        self.pooling = nn.MaxPool2d(2, 2) if pool else nn.Identity()

    def forward(self, x):
        features = self.convs(x)
        return features, self.pooling(features)


class UNetEncoder(EncoderStages, nn.Module):
    def __init__(self, depth, ch, norm_layer, batchnorm_from, max_channels,
                 backbone_from=-1, backbone_channels=None, backbone_mode=""):
        super().__init__()
        self.depth = depth
        self._init_stages(norm_layer, batchnorm_from, backbone_from, backbone_channels, backbone_mode)
        self.block0 = UNetDownBlock(4, ch, self._norm_at(0), _relu, pool=True, padding=1)
        out_channels = min(2 * ch, max_channels)
        self.block1 = UNetDownBlock(ch, out_channels, self._norm_at(1), _relu, pool=True, padding=1)
        self.block_channels = [ch, out_channels]

        self.blocks_connected = nn.ModuleDict()
        self.connectors = nn.ModuleDict()
        for index in range(2, depth):
            in_channels, out_channels = out_channels, min(2 * out_channels, max_channels)
            in_channels = self._connect(index, in_channels)
            self.blocks_connected[f"block{index}"] = UNetDownBlock(
                in_channels, out_channels, self._norm_at(index), _relu, pool=index < depth - 1, padding=1
            )
            self.block_channels.append(out_channels)

    def forward(self, x, backbone_features=None):
        pending = list(backbone_features or [])
        outputs = []
        features, current = self.block0(x)
        outputs.append(features)
        features, current = self.block1(current)
        outputs.append(features)
        for index in range(2, self.depth):
            current = self._merge(index, current, pending)
            features, current = self.blocks_connected[f"block{index}"](current)
            outputs.append(features)
        return outputs[::-1]


class SpatialSeparatedAttention(nn.Module):
    """S2AM: separate channel gates for background, foreground and mix, blended by a blurred mask."""

    def __init__(self, in_channels, norm_layer, activation, mid_k=2.0):
        super().__init__()
        self.background_gate = ChannelAttention(in_channels)
        self.foreground_gate = ChannelAttention(in_channels)
        self.mix_gate = ChannelAttention(in_channels)
        mid_channels = int(mid_k * in_channels)
        self.learning_block = nn.Sequential(
            ConvBlock(in_channels, mid_channels, kernel_size=3, stride=1, padding=1,
                      norm_layer=norm_layer, activation=activation, bias=False),
            ConvBlock(mid_channels, in_channels, kernel_size=3, stride=1, padding=1,
                      norm_layer=norm_layer, activation=activation, bias=False),
        )
        self.mask_blurring = GaussianBlur(1, 7, 1, padding=3)

    def forward(self, x, mask):
        mask = self.mask_blurring(F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=True))
        background = self.background_gate(x)
        foreground = self.learning_block(self.foreground_gate(x))
        mix = self.mix_gate(x)
        return mask * (foreground + mix) + (1 - mask) * background


class UNetUpBlock(nn.Module):
    def __init__(self, in_channels_decoder, in_channels_encoder, out_channels,
                 norm_layer, activation, padding, attention_layer=None):
        super().__init__()
        self.upconv = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            ConvBlock(in_channels_decoder, out_channels, kernel_size=3, stride=1, padding=1,
                      norm_layer=None, activation=activation),
        )
        self.convs = UNetDoubleConv(in_channels_encoder + out_channels, out_channels, norm_layer, activation, padding)
        self.attention = (
            attention_layer(in_channels_encoder + out_channels, norm_layer, activation)
            if attention_layer is not None else None
        )

    def forward(self, x, encoder_out, mask=None):
        merged = torch.cat((encoder_out, self.upconv(x)), dim=1)
        if self.attention is not None:
            merged = self.attention(merged, mask)
        return self.convs(merged)


class UNetDecoder(nn.Module):
    def __init__(self, depth, encoder_blocks_channels, norm_layer, attention_layer=None,
                 attend_from=3, image_fusion=False):
        super().__init__()
        self.image_fusion = image_fusion
        skip_channels = list(encoder_blocks_channels)
        in_channels = skip_channels.pop()
        out_channels = in_channels
        self.up_blocks = nn.ModuleList()
        for index in range(depth - 1):  # the deepest encoder block does not pool
            out_channels = skip_channels.pop() if skip_channels else in_channels // 2
            self.up_blocks.append(UNetUpBlock(
                in_channels, out_channels, out_channels, norm_layer=norm_layer, activation=_relu, padding=1,
                attention_layer=attention_layer if 0 <= attend_from <= index else None,
            ))
            in_channels = out_channels
        if image_fusion:
            self.conv_attention = nn.Conv2d(out_channels, 1, kernel_size=1)
        self.to_rgb = nn.Conv2d(out_channels, 3, kernel_size=1)

    def forward(self, encoder_outputs, image, mask):
        output = encoder_outputs[0]
        for block, skip in zip(self.up_blocks, encoder_outputs[1:]):
            output = block(output, skip, mask)
        if self.image_fusion:
            return blend_with_attention(self.conv_attention, self.to_rgb, output, image)
        return self.to_rgb(output)


class SSAMImageHarmonization(nn.Module):
    """S2AM / iS2AM. ``forward(image, mask)`` returns the harmonized image tensor."""

    inference_rewrites = True  # inference_opt may fold and retype it: parity tested (tests/test_inference_opt.py)

    def __init__(self, depth, norm_layer=nn.BatchNorm2d, batchnorm_from=2, attend_from=3, attention_mid_k=2.0,
                 image_fusion=False, ch=64, max_channels=512,
                 backbone_from=-1, backbone_channels=None, backbone_mode=""):
        super().__init__()
        self.depth = depth
        self.encoder = UNetEncoder(depth, ch, norm_layer, batchnorm_from, max_channels,
                                   backbone_from, backbone_channels, backbone_mode)
        self.decoder = UNetDecoder(
            depth, self.encoder.block_channels, norm_layer,
            attention_layer=partial(SpatialSeparatedAttention, mid_k=attention_mid_k),
            attend_from=attend_from, image_fusion=image_fusion,
        )

    @property
    def size_divisor(self) -> int:
        return 2 ** (self.depth - 1)

    def forward(self, image, mask, backbone_features=None):
        features = self.encoder(torch.cat((image, mask), dim=1), backbone_features)
        return self.decoder(features, image, mask)
