"""Residual blocks and the dilated (output stride 8) ResNet used as the DeepLab encoder.

The layout follows the "v1b" ResNet family (stride on the 3x3 convolution, plain 7x7 stem for
ResNet-18/34, three-conv "deep stem" for the v1s variants). With ``dilated=True`` the last two
stages keep the resolution of the second stage and grow their dilation instead (2 and 4), so the
deepest features come out at 1/8 of the input.

Parameter names (``conv1``, ``bn1``, ``layerK.i.conv1``, ``layerK.0.downsample.0`` ...) are the
torchvision / gluon ones, so ImageNet classification checkpoints load by name (minus ``fc``).
"""

from __future__ import annotations

from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (``expansion`` = 1).

    ``dilation`` applies to the first convolution, ``previous_dilation`` to the second one,
    which is how the dilated ResNet switches dilation rates between stages.
    """

    expansion = 1
    batchnorm_folds = (("conv1", "bn1"), ("conv2", "bn2"))  # folded for inference (models/fusion.py)

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None,
                 previous_dilation=1, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=previous_dilation,
                               dilation=previous_dilation, bias=False)
        self.bn2 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided / dilated) -> 1x1 expand, with a residual (``expansion`` = 4)."""

    expansion = 4
    batchnorm_folds = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))  # folded for inference

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None,
                 previous_dilation=1, norm_layer=nn.BatchNorm2d):
        super().__init__()
        del previous_dilation  # only the 3x3 convolution is dilated in a bottleneck
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def make_res_layer(block, inplanes, planes, num_blocks, stride=1, dilation=1, norm_layer=nn.BatchNorm2d):
    """A stage of ``num_blocks`` residual blocks; returns ``(nn.Sequential, out_channels)``.

    The first block carries the stride and, for dilated stages, uses half the stage dilation on
    its first convolution (1 for a dilation-2 stage, 2 for a dilation-4 stage).
    """
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out_channels, 1, stride=stride, bias=False),
            norm_layer(out_channels),
        )
    if dilation in (1, 2):
        first_dilation = 1
    elif dilation == 4:
        first_dilation = 2
    else:
        raise ValueError(f"unsupported dilation {dilation} (expected 1, 2 or 4)")
    blocks = [block(inplanes, planes, stride, dilation=first_dilation, downsample=downsample,
                    previous_dilation=dilation, norm_layer=norm_layer)]
    for _ in range(1, num_blocks):
        blocks.append(block(out_channels, planes, dilation=dilation, previous_dilation=dilation,
                            norm_layer=norm_layer))
    return nn.Sequential(*blocks), out_channels


# name -> (block, blocks per stage, deep stem, stem width)
RESNET_SPECS = {
    "resnet34": (BasicBlock, (3, 4, 6, 3), False, 32),
    "resnet50": (Bottleneck, (3, 4, 6, 3), True, 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), True, 64),
    "resnet152": (Bottleneck, (3, 8, 36, 3), True, 64),
}


class ResNetBackbone(nn.Module):
    """ResNet feature extractor returning the outputs of the four stages ``(c1, c2, c3, c4)``.

    ``mask_features`` (optional) are added to the stem activations before the max pooling; this is
    where the harmonization model injects the encoded foreground mask.
    """

    batchnorm_folds = (("conv1", "bn1"),)  # the plain stem, folded for inference (models/fusion.py)

    def __init__(self, backbone="resnet34", dilated=True, norm_layer=nn.BatchNorm2d):
        super().__init__()
        if backbone not in RESNET_SPECS:
            raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(RESNET_SPECS)}")
        block, layers, deep_stem, stem_width = RESNET_SPECS[backbone]
        self.name = backbone

        if deep_stem:
            stem_channels = 2 * stem_width
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, stem_width, 3, stride=2, padding=1, bias=False),
                norm_layer(stem_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, stem_width, 3, stride=1, padding=1, bias=False),
                norm_layer(stem_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, stem_channels, 3, stride=1, padding=1, bias=False),
            )
            self.batchnorm_folds = ()  # conv1 is no convolution: bn1 stays (the Sequential folds inside)
        else:
            stem_channels = 64
            self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        late_strides = (1, 1) if dilated else (2, 2)
        late_dilations = (2, 4) if dilated else (1, 1)
        channels = stem_channels
        self.layer1, channels = make_res_layer(block, channels, 64, layers[0], norm_layer=norm_layer)
        self.layer2, channels = make_res_layer(block, channels, 128, layers[1], stride=2, norm_layer=norm_layer)
        self.layer3, channels = make_res_layer(block, channels, 256, layers[2], stride=late_strides[0],
                                               dilation=late_dilations[0], norm_layer=norm_layer)
        self.layer4, channels = make_res_layer(block, channels, 512, layers[3], stride=late_strides[1],
                                               dilation=late_dilations[1], norm_layer=norm_layer)
        self.stage_channels = [64 * block.expansion * 2 ** i for i in range(4)]

    def forward(self, x, mask_features=None):
        x = self.relu(self.bn1(self.conv1(x)))
        if mask_features is not None:
            x = x + mask_features
        x = self.maxpool(x)
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return c1, c2, c3, c4

