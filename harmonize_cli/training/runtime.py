"""What a run needs from the machine it runs on: the mixed-precision choice (``--amp``), the
GradScaler, and the SIGINT / SIGTERM handlers that stop the loop after the current step."""

from __future__ import annotations

import signal

import torch

from .. import console, interrupts


def resolve_amp(requested: str, device: torch.device):
    """(autocast dtype or None, use a GradScaler) for ``--amp`` on ``device``."""
    if requested == "off":
        return None, False
    if requested == "auto":
        if device.type != "cuda":
            return None, False
        return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
    if requested == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            console.warn("this GPU has no bf16 support: using fp16 with a GradScaler")
            return torch.float16, True
        return torch.bfloat16, False
    return torch.float16, True  # fp16


def make_grad_scaler(device: torch.device, enabled: bool):
    """A GradScaler for ``device`` (``torch.amp`` since torch 2.3, ``torch.cuda.amp`` before)."""
    try:
        return torch.amp.GradScaler(device.type, enabled=enabled)
    except (AttributeError, TypeError):  # older torch
        return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")


def amp_text(amp_dtype, use_scaler: bool) -> str:
    if amp_dtype is None:
        return "off (float32)"
    return str(amp_dtype).replace("torch.", "") + (" + GradScaler" if use_scaler else "")


class StopFlag(interrupts.StopRequest):
    """SIGINT / SIGTERM ask the loop to stop after the current step (a second Ctrl-C abandons at
    once): :class:`harmonize_cli.interrupts.StopRequest`, announced on the main process."""

    def __init__(self, announce: bool):
        super().__init__(announce=_announce if announce else None)


def _announce(signum) -> None:
    name = signal.Signals(signum).name
    console.warn(f"{name} received: stopping after the current step "
                 "(a resumable checkpoint will be saved; Ctrl-C again to abandon)")
