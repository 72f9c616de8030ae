"""Shared test set-up: every test runs with its own empty HARMONIZE_HOME and no network."""

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("harmonize_home")
    monkeypatch.setenv("HARMONIZE_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg_config")))  # remembered settings
    monkeypatch.setenv("HARMONIZE_OFFLINE", "1")
    for variable in ("HARMONIZE_DATA", "HARMONIZE_DEVICE", "HARMONIZE_WEIGHTS_MIRROR"):
        monkeypatch.delenv(variable, raising=False)
    return home


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def idih_checkpoint(tmp_path_factory):
    """A randomly initialised iDIH saved as a plain state dict (the reference checkpoint layout)."""
    import torch

    from harmonize_cli import zoo

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "my_idih.pth"
    torch.save(zoo.create_model("idih").state_dict(), path)
    return path
