"""Batch-norm folding for inference: the blocks say what folds, one walker folds it.

A BatchNorm that directly follows a convolution is, in eval mode, an affine map per channel with
constant coefficients, so it can be folded into the convolution's weights and bias. Two places
hold such pairs:

- consecutive children of an ``nn.Sequential`` (``conv, norm``, or ``conv, Sequential(norm, ...)``
  as the OCR head names them): found by the walker, nothing to declare;
- attributes of a block whose ``forward`` computes ``norm(conv(x))`` with nothing between: the
  block declares them in ``batchnorm_folds``, a tuple of ``(conv name, norm name)`` (a class
  attribute, or an instance attribute where the layout depends on the configuration, as in
  :class:`~harmonize_cli.models.resnet.ResNetBackbone`). A declared name the block does not have is
  an error, never a pair quietly left unfolded.

A network whose rewritten copy is tested for parity says so with ``inference_rewrites = True``
(:func:`harmonize_cli.inference_opt.optimizable` reads it).
"""

from __future__ import annotations

from typing import Iterator, Tuple

import torch
from torch import nn

__all__ = ["fold_batchnorm", "declared_folds", "FOLDS_ATTRIBUTE"]

FOLDS_ATTRIBUTE = "batchnorm_folds"
_CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


def declared_folds(module: nn.Module) -> Iterator[Tuple[str, nn.Module, str, nn.Module]]:
    """The ``(conv name, conv, norm name, norm)`` pairs ``module`` declares; a declared name that
    is not one of its attributes raises ``AttributeError`` naming the block."""
    for conv_name, norm_name in getattr(module, FOLDS_ATTRIBUTE, ()):
        for name in (conv_name, norm_name):
            if not hasattr(module, name):
                raise AttributeError(f"{type(module).__name__} declares {(conv_name, norm_name)} in "
                                     f"{FOLDS_ATTRIBUTE} but has no attribute {name!r}")
        yield conv_name, getattr(module, conv_name), norm_name, getattr(module, norm_name)


def _foldable(conv, norm) -> bool:
    return (isinstance(conv, _CONVOLUTIONS) and isinstance(norm, nn.BatchNorm2d) and not norm.training
            and norm.track_running_stats and norm.running_mean is not None
            and conv.out_channels == norm.num_features)


@torch.no_grad()
def _fold_pair(conv, norm) -> None:
    """Fold ``norm(conv(x))`` into ``conv``: its weight and bias become new parameters (the old
    tensors are never written, so a copy that shares them with another network leaves it as it is)."""
    scale = norm.running_var.double().add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight.double()
    shift = -norm.running_mean.double() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.double()
    weight = conv.weight.double()
    if isinstance(conv, nn.ConvTranspose2d):  # in x out/groups x kh x kw
        groups = conv.groups
        in_per_group = weight.shape[0] // groups
        grouped = weight.view(groups, in_per_group, -1, *weight.shape[2:])
        grouped = grouped * scale.view(groups, 1, -1, 1, 1)
        weight = grouped.view_as(weight)
    else:  # out x in/groups x kh x kw
        weight = weight * scale.view(-1, 1, 1, 1)
    bias = conv.bias.double() * scale + shift if conv.bias is not None else shift
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=conv.weight.requires_grad)


def _fold_sequential(module: nn.Sequential) -> int:
    folded = 0
    children = list(module._modules.items())
    for (_, first), (second_name, second) in zip(children, children[1:]):
        if _foldable(first, second):
            _fold_pair(first, second)
            module._modules[second_name] = nn.Identity()
            folded += 1
        elif isinstance(second, nn.Sequential) and len(second) and _foldable(first, second[0]):
            _fold_pair(first, second[0])  # conv -> Sequential(norm, relu): the OCR layout
            second._modules[next(iter(second._modules))] = nn.Identity()
            folded += 1
    return folded


def fold_batchnorm(network: nn.Module) -> int:
    """Fold, in place, each eval-mode ``BatchNorm2d`` that directly follows a convolution (in a
    ``Sequential``, or as a pair a block declares in ``batchnorm_folds``) into that convolution;
    the norm becomes ``nn.Identity``. Returns how many were folded."""
    folded = 0
    for module in list(network.modules()):
        if isinstance(module, nn.Sequential):
            folded += _fold_sequential(module)
        for _conv_name, conv, norm_name, norm in list(declared_folds(module)):
            if _foldable(conv, norm):
                _fold_pair(conv, norm)
                setattr(module, norm_name, nn.Identity())
                folded += 1
    return folded
