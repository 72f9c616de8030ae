"""Device selection (device.py): explicit, HARMONIZE_DEVICE, unknown and unavailable devices."""

from __future__ import annotations

import pytest
import torch

from harmonize_cli.device import resolve_device
from harmonize_cli.errors import UsageError


def test_device_selection(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    monkeypatch.delenv("HARMONIZE_DEVICE", raising=False)
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        assert resolve_device(None).type == expected
    monkeypatch.setenv("HARMONIZE_DEVICE", "cpu")
    assert resolve_device(None).type == "cpu"
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda")
