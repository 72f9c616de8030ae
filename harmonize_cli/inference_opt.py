"""Inference-time rewrites of a network: the same function, computed faster.

:func:`optimize_for_inference` returns a copy of a network (the original is never touched) with

- every BatchNorm that directly follows a convolution folded into that convolution's weights and
  bias (eval mode only: the running statistics become constants), so the normalisation costs
  nothing at run time (:func:`harmonize_cli.models.fusion.fold_batchnorm`: the blocks declare
  their pairs);
- on the CPU, every ``nn.ELU`` replaced by :class:`FastELU`: PyTorch's CPU ELU evaluates
  ``expm1`` element by element (about 5 ms per 1M values on the 2-core VM, half of the iDIH
  forward pass), while ``exp`` is vectorised (0.3 ms); ``max(x, exp(min(x, 0)) - 1)`` is the
  same function to within ~1e-7;
- on the CPU, channels-last weights (the convolutions then run in oneDNN's native layout, the
  transposed ones without layout copies): with the two rewrites above it measured faster for
  every architecture of the paper (iDIH 19 -> 15 ms, HRNet18s-iDIH 78 -> 63 ms at batch 1);
- on the CPU, every ``nn.Conv2d`` computed by oneDNN (:class:`OneDNNConv2d`): PyTorch sends 1x1
  convolutions at batch 1 on one thread, and any convolution of an input under 20480 values, to
  its generic im2col kernel, which on channels-last tensors measured 1.7-2.3x slower than
  oneDNN on the 2-core VM (HRNet18s-iDIH at one thread, as ``apply`` runs it: 87 -> 79 ms).

The copy is cheap: it shares every tensor it does not change with the original (module objects
and parameter wrappers are new, the storage is not), so making it costs ~50 ms for HRNet18s-iDIH
instead of a deep copy of 40 MB.

Outputs stay within the parity tolerance (5e-4 on the reference fixtures,
``tests/test_inference_opt.py``). Apply and eval run the optimised copy; training (and its
validation) runs the network as it is.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from .models.fusion import fold_batchnorm

__all__ = ["FastELU", "OneDNNConv2d", "fold_batchnorm", "use_fast_elu", "optimizable", "optimize_for_inference",
           "PRECISIONS", "LowPrecision", "with_precision"]


class FastELU(nn.Module):
    """``ELU(alpha)`` computed from a vectorised ``exp``: ``max(x, alpha * (exp(min(x, 0)) - 1))``
    for ``alpha <= 1`` (where ``alpha * (e^x - 1) <= x`` for every x, so the maximum picks the
    right branch)."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"FastELU needs 0 < alpha <= 1, not {alpha}")
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        negative = torch.clamp(x, max=0.0).exp_().sub_(1.0)
        if self.alpha != 1.0:
            negative.mul_(self.alpha)
        return torch.maximum(x, negative, out=negative)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class OneDNNConv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes float32 CPU convolutions with oneDNN whatever their size (see the
    module doc); other devices, dtypes and padding modes take ``nn.Conv2d``'s own path. Only
    :func:`optimize_for_inference` makes these, by retyping the convolutions of its copy."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]):
        if (input.device.type == "cpu" and input.dtype == torch.float32 and weight.dtype == torch.float32
                and self.padding_mode == "zeros" and not isinstance(self.padding, str) and input.dim() == 4):
            return torch.ops.aten.mkldnn_convolution(input, weight, bias, list(self.padding), list(self.stride),
                                                     list(self.dilation), self.groups)
        return super()._conv_forward(input, weight, bias)


def use_onednn_convolutions(network: nn.Module) -> int:
    """Retype, in place, every plain ``nn.Conv2d`` of ``network`` to :class:`OneDNNConv2d` (the same
    parameters and state dict); returns the count, 0 where PyTorch has no oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return 0
    converted = 0
    for module in network.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = OneDNNConv2d
            converted += 1
    return converted


def use_fast_elu(network: nn.Module) -> int:
    """Replace, in place, every ``nn.ELU`` (alpha <= 1) by :class:`FastELU`; returns the count."""
    replaced = 0
    for module in list(network.modules()):
        for name, child in list(module._modules.items()):
            if type(child) is nn.ELU and 0.0 < child.alpha <= 1.0:
                module._modules[name] = FastELU(child.alpha)
                replaced += 1
    return replaced


def _sharing_copy(module: nn.Module) -> nn.Module:
    """A copy of the module tree with new module objects and parameter wrappers (no gradients)
    over the same tensor storage; buffers are shared until something replaces them."""
    clone = copy.copy(module)
    clone._parameters = {name: None if value is None else nn.Parameter(value.detach(), requires_grad=False)
                         for name, value in module._parameters.items()}
    clone._buffers = dict(module._buffers)
    clone._modules = {name: None if child is None else _sharing_copy(child) for name, child in module._modules.items()}
    for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_state_dict_hooks"):
        if hasattr(module, hooks):
            setattr(clone, hooks, copy.copy(getattr(module, hooks)))
    return clone


def optimizable(network: nn.Module) -> bool:
    """Whether the rewrites apply: networks that declare ``inference_rewrites = True`` (the paper's
    DIH / iDIH / S2AM, with or without an HRNet or DeepLab backbone), whose parity is tested; other
    networks (PCT-Net, the baselines) run as they are."""
    return bool(getattr(network, "inference_rewrites", False))


def optimize_for_inference(network: nn.Module, device: Optional[torch.device] = None) -> nn.Module:
    """A faster copy of ``network`` for inference on ``device`` (default: where it is); see the
    module doc. The copy is in eval mode without gradients; ``network`` itself is left unchanged.
    A network that is not :func:`optimizable` is returned as it is."""
    if not optimizable(network):
        return network
    if device is None:
        parameter = next(iter(network.parameters()), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
    fast = _sharing_copy(network).eval()
    fold_batchnorm(fast)
    if device.type == "cpu":
        use_fast_elu(fast)
        use_onednn_convolutions(fast)
        fast = fast.to(memory_format=torch.channels_last)
    return fast.to(device)


# ------------------------------------------------------------------------------------ precision

PRECISIONS = {"float32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class LowPrecision(nn.Module):
    """A network whose weights are in ``dtype`` (bf16 or fp16): its inputs are cast to that dtype on
    the way in; the predictor casts the output back to float32. Normalisation, padding, the flip
    average and de-normalisation stay in float32 (:func:`harmonize_cli.inference.predict`)."""

    def __init__(self, network: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.network, self.dtype = network, dtype
        for name in ("depth", "size_divisor", "input_normalization"):
            if hasattr(network, name):
                setattr(self, name, getattr(network, name))

    def forward(self, image: torch.Tensor, mask: torch.Tensor, *args, **kwargs):
        return self.network(image.to(self.dtype), mask.to(self.dtype), *args, **kwargs)


def with_precision(network: nn.Module, precision: str = "float32") -> nn.Module:
    """``network`` for forward passes in ``precision`` ("float32": itself; "bf16" / "fp16": a
    :class:`LowPrecision` over a copy with its weights in that dtype, sharing nothing the cast
    changes with ``network``). Measured on the CPU (docs/benchmarks.md, "bf16 on the CPU"): bf16
    weights are 1.5x faster than float32 for iDIH and HRNet18s-iDIH where the CPU has AVX-512 BF16,
    and the output moves by up to about 2 grey levels."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "float32":
        return network
    dtype = PRECISIONS[precision]
    return LowPrecision(_sharing_copy(network).eval().to(dtype), dtype)
