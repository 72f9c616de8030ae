"""Weight initialisation used by the reference training recipes.

Every recipe calls the reference's ``XavierGluon(rnd_type='gaussian', magnitude=2.0)`` on the whole
model (before loading the ImageNet backbone weights):

* normalisation layers (batch / instance / group norm): weight = 1, bias = 0;
* any other module with a ``weight``: weight ~ N(0, s) with s = sqrt(magnitude / ((fan_in + fan_out) / 2)),
  where fan_in = size(1) * receptive field and fan_out = size(0) * receptive field; its ``bias`` = 0.

Modules are visited in the same (post-)order as ``nn.Module.apply``, with the same torch RNG calls, so
the draws are identical to the reference's for the same seed and the same module layout.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_NORM_TYPES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm,
)


def _is_norm(module):
    return isinstance(module, _NORM_TYPES) or "BatchNorm" in type(module).__name__


def _xavier_scale(tensor, magnitude, factor_type):
    if tensor.dim() < 2:
        raise ValueError(f"cannot compute fans for a tensor of shape {tuple(tensor.shape)}")
    receptive = math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1
    fan_in = tensor.shape[1] * receptive
    fan_out = tensor.shape[0] * receptive
    factor = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}[factor_type]
    return math.sqrt(magnitude / factor)


@torch.no_grad()
def init_weights(model: nn.Module, magnitude: float = 2.0, rnd_type: str = "gaussian",
                 factor_type: str = "avg", reinit_fixed_buffers: bool = True) -> nn.Module:
    """Initialise ``model`` in place like the reference recipes; returns ``model``.

    The reference initialiser touches any module attribute called ``weight`` that is not None, which
    includes the fixed Gaussian-blur kernel buffer of the S2AM attention block. That is reproduced by
    default; pass ``reinit_fixed_buffers=False`` to keep such non-parameter ``weight`` buffers intact.
    """
    if rnd_type not in ("gaussian", "uniform"):
        raise ValueError(f"unknown rnd_type {rnd_type!r}")
    if factor_type not in ("avg", "in", "out"):
        raise ValueError(f"unknown factor_type {factor_type!r}")
    visited = set()

    def visit(module):
        if id(module) in visited:
            return
        visited.add(id(module))
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        if _is_norm(module):
            if weight is not None:
                weight.fill_(1.0)
            if bias is not None:
                bias.zero_()
            return
        if isinstance(weight, torch.Tensor) and (reinit_fixed_buffers or isinstance(weight, nn.Parameter)):
            scale = _xavier_scale(weight, float(magnitude), factor_type)
            if rnd_type == "gaussian":
                nn.init.normal_(weight, 0.0, scale)
            else:
                nn.init.uniform_(weight, -scale, scale)
        if isinstance(bias, torch.Tensor):
            bias.zero_()

    model.apply(visit)
    return model


@torch.no_grad()
def init_pctnet(model: nn.Module, gain: float = 0.02, **_ignored) -> nn.Module:
    """PCT-Net's initialisation (its authors' training scripts): every convolution and linear
    layer N(0, gain) with zero bias, BatchNorm2d weights N(1, gain) with zero bias; the rest
    (LayerNorm, attention projections held as plain parameters) keeps PyTorch's defaults."""
    for module in model.modules():
        name = type(module).__name__
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and ("Conv" in name or "Linear" in name):
            nn.init.normal_(weight, 0.0, gain)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif "BatchNorm2d" in name:
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return model


def initializer_for(spec):
    """The initialisation function of an architecture, as its authors' training script applies it:
    N(0, 0.02) for PCTNet-ViT (``models/PCTNet_ViT.py``), XavierGluon (:func:`init_weights`) for
    every other network, PCTNet-CNN included (``models/PCTNet_CNN.py``)."""
    return init_pctnet if spec.family == "pctnet" and spec.reference_name == "ViT_pct" else init_weights
