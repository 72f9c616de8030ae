"""Device choice in one place: ``--device``, else ``$HARMONIZE_DEVICE``, else CUDA, MPS, CPU."""

from __future__ import annotations

import os

from .errors import UsageError

USABLE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(requested=None):
    """Return a ``torch.device``.

    ``requested`` may be None/"auto", "cpu", "cuda", "cuda:1" or "mps".
    """
    import torch

    name = requested or os.environ.get("HARMONIZE_DEVICE") or "auto"
    name = str(name).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"unknown device {name!r}", "use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type not in USABLE_TYPES:  # "meta" holds no data: every image would fail
        raise UsageError(f"device {name!r} cannot run the models", "use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} requested but CUDA is not available", "use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"device {name!r} requested but MPS is not available", "use --device cpu")
    return device
