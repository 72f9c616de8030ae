"""Where harmonize keeps its files, and the few settings it remembers between runs.

Two places, following the XDG base directories:

- **settings** (the dataset ``harmonize prepare`` packed last): ``config.json`` in
  ``$XDG_CONFIG_HOME/harmonize`` (default ``~/.config/harmonize``). Settings are not a cache:
  wiping a cache must not lose them.
- **cache** (downloaded weights, ``weights/``): ``$HARMONIZE_HOME`` (default
  ``~/.cache/harmonize``). Anything there can be deleted; it is downloaded again.

Version 0.1.0 and earlier kept ``config.json`` in the cache folder. The first time settings are
read and no settings file exists yet, that old file is copied to the new place; the old file
is left untouched (older versions may still read it) and is ignored from then on.

Remembering is a convenience: when the settings folder cannot be written (read-only, or a
file in its place), :func:`save_setting` raises :class:`SettingsError` (one line), which
``harmonize prepare`` shows as a warning.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import atomic_write_text
from .errors import HarmonizeError, UsageError

SETTINGS_FILE = "config.json"


class SettingsError(HarmonizeError):
    """The settings file cannot be written (the message names it and the reason)."""


def home() -> Path:
    """The harmonize cache folder (``$HARMONIZE_HOME`` or ``~/.cache/harmonize``)."""
    configured = os.environ.get("HARMONIZE_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "harmonize"


def weights_dir() -> Path:
    return home() / "weights"


def config_dir() -> Path:
    """The settings folder: ``$XDG_CONFIG_HOME/harmonize``, default ``~/.config/harmonize``.

    Like the XDG specification says, an empty or relative ``XDG_CONFIG_HOME`` is ignored.
    """
    configured = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(configured).expanduser() if configured else None
    if base is None or not base.is_absolute():
        base = Path.home() / ".config"
    return base / "harmonize"


def config_path() -> Path:
    """The settings file (``config_dir() / "config.json"``)."""
    return config_dir() / SETTINGS_FILE


def legacy_config_path() -> Path:
    """Where version 0.1.0 and earlier kept the settings (in the cache folder)."""
    return home() / SETTINGS_FILE


# what each remembered setting must be; a value of another kind (an edited or damaged file) is
# ignored with one warning instead of reaching the commands
_SETTING_CHECKS = {"dataset": lambda value: isinstance(value, str) and value.strip() != "" and "\0" not in value}


def _valid_setting(key, value) -> bool:
    check = _SETTING_CHECKS.get(key)
    return check is None or check(value)  # unknown keys are kept: newer versions may write them


def _read(path: Path) -> dict | None:
    from .jsonstore import read_entries

    return read_entries(path, _valid_setting, "setting(s)",
                        "run `harmonize prepare` again to remember a dataset, or fix the file")


def load_settings() -> dict:
    """The remembered settings (``{}`` when none); migrates the old file once (see above)."""
    path = config_path()
    if path.exists():
        return _read(path) or {}
    legacy = _read(legacy_config_path())
    if not legacy:
        return {}
    try:
        _write(path, legacy)
    except SettingsError:
        pass  # read-only settings folder: keep using the old file's values
    return legacy


def _write(path: Path, settings: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(
            f"cannot write the settings file {path} ({reason})",
            "set XDG_CONFIG_HOME to a writable folder",
        ) from None


def save_setting(key: str, value) -> None:
    settings = load_settings()
    settings[key] = value
    _write(config_path(), settings)


def remember_dataset(path) -> None:
    """Record ``path`` as the default dataset for ``train`` and ``eval`` (SettingsError if it cannot)."""
    save_setting("dataset", str(Path(path).resolve()))


def default_dataset(explicit=None) -> Path:
    """The dataset to use: ``--data``, else ``$HARMONIZE_DATA``, else the last packed one.

    Raises a UsageError that says how to get one when none is known.
    """
    return dataset_and_origin(explicit)[0]


def dataset_and_origin(explicit=None, option: str = "--data"):
    """``(the dataset to use, where that choice came from)``, as :func:`default_dataset` picks it;
    the origin is what a command's header prints: ``"--data"``, ``"$HARMONIZE_DATA"`` or
    ``"the default set by `harmonize prepare` in <settings file>"``."""
    if explicit:
        return Path(explicit), option
    from_env = os.environ.get("HARMONIZE_DATA")
    if from_env:
        return Path(from_env), "$HARMONIZE_DATA"
    remembered = load_settings().get("dataset")
    if remembered:
        where = config_path() if config_path().exists() else legacy_config_path()
        return Path(remembered), f"the default set by `harmonize prepare` in {where}; --data overrides it"
    raise UsageError(
        "no dataset given and none packed yet",
        "run `harmonize prepare --root iHarmony4` first, or pass --data FILE.h5|DIR",
    )
