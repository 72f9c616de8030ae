"""Reading the small JSON files harmonize keeps for itself (the settings file, the weights cache's
manifest) when they may have been edited or damaged: each entry is checked when the file is read,
and a bad one is treated as absent, with one warning per file and process, never a traceback.

>>> entries = read_entries(path, valid=lambda key, value: isinstance(value, str),
...                        what="setting(s)", fix="run harmonize prepare again to set it")
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable, Optional

__all__ = ["read_object", "read_entries"]

_WARNED: set = set()
_LOCK = threading.Lock()


def read_object(path) -> Optional[dict]:
    """The JSON object in ``path``; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None


def read_entries(path, valid: Callable[[str, object], bool], what: str, fix: str) -> Optional[dict]:
    """The entries of the JSON object in ``path`` for which ``valid(key, value)`` holds (None when
    there is no readable object). The others are left out, with one warning naming the file,
    the first keys left out and ``fix``."""
    data = read_object(path)
    if data is None:
        return None
    bad = []
    for key, value in data.items():
        try:
            ok = bool(valid(key, value))
        except Exception:  # noqa: BLE001 - a checker that trips over a value has found a bad one
            ok = False
        if not ok:
            bad.append(key)
    if bad:
        _warn_once(path, f"warning: {path}: {len(bad)} damaged {what} ignored "
                         f"({', '.join(repr(k) for k in bad[:3])}{', ...' if len(bad) > 3 else ''}); {fix}")
    return {key: value for key, value in data.items() if key not in bad}


def _warn_once(path, message: str) -> None:
    from . import console

    key = (str(path), message)
    with _LOCK:
        if key in _WARNED:
            return
        _WARNED.add(key)
    console.warn(message)
