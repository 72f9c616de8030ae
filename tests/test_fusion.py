"""Batch-norm folding (harmonize_cli/models/fusion.py): the blocks' declared pairs exist, and the
walker folds every norm that follows a convolution in each registered architecture.

The networks are built on the meta device without initialisation (shapes only, no values): the
counts depend on the layout alone, and building all of them stays fast.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

import pytest
import torch
from torch import nn

import harmonize_cli.models
from harmonize_cli import zoo
from harmonize_cli.inference_opt import optimizable
from harmonize_cli.models.fusion import FOLDS_ATTRIBUTE, declared_folds, fold_batchnorm
from harmonize_cli.models.resnet import BasicBlock


def _build(name):
    with torch.device("meta"):
        return zoo.create_model(name, init=False).eval()


@functools.lru_cache(maxsize=None)
def _layout(name):
    """A network built once for the tests that only read it (the folding test builds its own)."""
    return _build(name)


# ---------------------------------------------------------------------------- hand-derived counts
# Every BatchNorm2d of these networks directly follows a convolution, so all fold and none is left.
# The counts come from the architectures' definitions (models/*.py, the registry's configurations):


def _dih(depth, batchnorm_from):
    """ConvEncoder: blocks batchnorm_from..depth-1 carry a norm; DeconvDecoder: all depth blocks."""
    return (depth - batchnorm_from) + depth


def _s2am(depth, batchnorm_from, attend_from):
    """UNetEncoder: 2 per down block from batchnorm_from; UNetDecoder: 2 per up block (depth - 1
    of them), and 2 in the attention's learning block of up blocks attend_from..depth-2."""
    return 2 * (depth - batchnorm_from) + 2 * (depth - 1) + 2 * (depth - 1 - attend_from)


def _hrnet(small):
    """HighResolutionNet with the OCR head.

    stem 2 (declared: conv1/bn1, conv2/bn2); layer1: Bottlenecks x 3 (declared) + downsample 1;
    transition1 2, transition2 1, transition3 1; a module of a stage with b branches holds
    2 x blocks x b (BasicBlocks, declared) + its fusion: 1 per coarser source, (target - source)
    per finer one: 2 (b=2), 3 + 4 = 7 (b=3), 6 + 10 = 16 (b=4); OCR: conv3x3_ocr 1, f_pixel 2,
    f_object 2, f_down 1, f_up 1, conv_bn_dropout 1 = 8."""
    blocks, (m2, m3, m4) = (2, (1, 3, 2)) if small else (4, (1, 4, 3))
    stages = m2 * (4 * blocks + 2) + m3 * (6 * blocks + 7) + m4 * (8 * blocks + 16)
    return 2 + (3 * blocks + 1) + (2 + 1 + 1) + stages + 8


PYRAMID = 1 + 4  # MaxPoolDownSize: the 1x1 reduce block and 4 levels
# ResNet-34 (dilated): stem 1 (declared), 16 BasicBlocks x 2 (declared), downsample in layers 2-4: 3;
# DeepLabV3+: head 2 separable convs, skip projection 1, ASPP 4 branches + image pooling + projection
DEEPLAB_R34 = (1 + 16 * 2 + 3) + (2 + 1 + 6)

EXPECTED = {
    "dih": _dih(7, 0),
    "dih-512": _dih(8, 0),
    "idih": _dih(7, 2),
    "idih-512": _dih(8, 2),
    "isedih": _dih(7, 2),
    "isedih-512": _dih(8, 2),
    "s2am": _s2am(4, 2, 2),
    "is2am": _s2am(4, 2, 2),
    "is2am-512": _s2am(6, 2, 3),
    "idih-hrnet-w18s": _hrnet(small=True) + _dih(7, 2),
    "idih-hrnet-w18s-v2p": _hrnet(small=True) + PYRAMID + _dih(7, 2),
    "idih-hrnet-w18": _hrnet(small=False) + _dih(7, 2),
    "idih-hrnet-w18-v2p": _hrnet(small=False) + PYRAMID + _dih(7, 2),
    "idih-hrnet-w32": _hrnet(small=False) + _dih(7, 2),
    "idih-deeplab-r34": DEEPLAB_R34 + _dih(7, 2),
    "idih-hrnet-w18-512": _hrnet(small=False) + _dih(8, 2),
    "isedih-hrnet-w18-512": _hrnet(small=False) + _dih(8, 2),
    "is2am-hrnet-w18s": _hrnet(small=True) + _s2am(4, 2, 2),
    "is2am-hrnet-w18": _hrnet(small=False) + _s2am(4, 2, 2),
    "is2am-hrnet-w32": _hrnet(small=False) + _s2am(4, 2, 2),
    "idih-hrnet-w18s-nomask": _hrnet(small=True) + _dih(7, 2),
}


def _norms(network):
    return sum(isinstance(module, nn.BatchNorm2d) for module in network.modules())


def test_the_counts_cover_every_optimizable_architecture():
    assert _hrnet(small=True) == 152 and _hrnet(small=False) == 313  # the arithmetic, once by hand
    assert {name for name in zoo.arch_names() if optimizable(_layout(name))} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_walker_folds_every_norm_that_follows_a_convolution(name):
    network = _build(name)
    assert _norms(network) == EXPECTED[name]
    assert fold_batchnorm(network) == EXPECTED[name]
    assert _norms(network) == 0


# ---------------------------------------------------------------------------- the declarations
def _declaring_classes():
    classes = set()
    for info in pkgutil.iter_modules(harmonize_cli.models.__path__):
        module = importlib.import_module(f"harmonize_cli.models.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, nn.Module) and FOLDS_ATTRIBUTE in vars(value):
                classes.add(value)
    return classes


def test_every_declared_pair_names_a_convolution_and_its_norm():
    """In every registered architecture, each pair a block declares exists and is (convolution,
    BatchNorm2d); every declaring class of harmonize_cli.models is met in at least one of them."""
    met = set()
    for name in zoo.arch_names():
        for module in _layout(name).modules():
            for conv_name, conv, norm_name, norm in declared_folds(module):
                assert isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)), (name, type(module).__name__, conv_name)
                assert isinstance(norm, nn.BatchNorm2d), (name, type(module).__name__, norm_name)
                met.add(type(module))
    declaring = _declaring_classes()
    assert declaring >= {BasicBlock} and declaring <= met


class _Renamed(BasicBlock):
    """A BasicBlock whose second norm was renamed without updating its declaration."""

    def __init__(self):
        super().__init__(4, 4)
        self.norm2 = self.bn2
        del self.bn2


def test_a_declared_name_the_block_lacks_is_an_error_not_a_silent_skip():
    with pytest.raises(AttributeError, match=r"_Renamed declares \('conv2', 'bn2'\).*no attribute 'bn2'"):
        fold_batchnorm(nn.Sequential(_Renamed()).eval())
