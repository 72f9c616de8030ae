"""Where harmonize keeps its files, and the few settings it remembers between runs.

``$HARMONIZE_HOME`` (default ``~/.cache/harmonize``) holds the weights cache (``weights/``)
and ``config.json`` (for instance the dataset that ``harmonize prepare`` packed last).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import atomic_write_text
from .errors import UsageError


def home() -> Path:
    """The harmonize home folder (``$HARMONIZE_HOME`` or ``~/.cache/harmonize``)."""
    configured = os.environ.get("HARMONIZE_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "harmonize"


def weights_dir() -> Path:
    return home() / "weights"


def config_path() -> Path:
    return home() / "config.json"


def load_settings() -> dict:
    path = config_path()
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save_setting(key: str, value) -> None:
    settings = load_settings()
    settings[key] = value
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def remember_dataset(path) -> None:
    """Record ``path`` as the default dataset for ``train`` and ``eval``."""
    save_setting("dataset", str(Path(path).resolve()))


def default_dataset(explicit=None) -> Path:
    """The dataset to use: ``--data``, else ``$HARMONIZE_DATA``, else the last packed one.

    Raises a UsageError that says how to get one when none is known.
    """
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("HARMONIZE_DATA")
    if from_env:
        return Path(from_env)
    remembered = load_settings().get("dataset")
    if remembered:
        return Path(remembered)
    raise UsageError(
        "no dataset given and none packed yet",
        "run `harmonize prepare --root iHarmony4` first, or pass --data FILE.h5|DIR",
    )
