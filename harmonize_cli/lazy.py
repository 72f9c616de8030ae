"""Lazy re-exports for the package faces (``__init__.py``): a name is imported from the module
that defines it on first use, so ``import harmonize_cli`` and ``harmonize --help`` load no torch.

>>> _LAZY = {"Harmonizer": "apply.harmonizer", "zoo": "zoo"}
>>> __getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

Each entry maps an exported name to the submodule (relative to the package) that defines it; an
entry whose name is the submodule itself (``"zoo": "zoo"``) exports the module.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Dict, Iterable, Tuple


def lazy_exports(package: str, table: Dict[str, str],
                 names: Iterable[str]) -> Tuple[Callable[[str], object], Callable[[], list]]:
    """The ``__getattr__`` and ``__dir__`` of a package face that re-exports ``table`` lazily."""
    listed = list(names)

    def __getattr__(name: str):
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{target}")
        return module if target == name else getattr(module, name)

    def __dir__() -> list:  # what the module holds, and what it exports without having loaded yet
        return sorted(set(vars(sys.modules[package])) | set(listed))

    return __getattr__, __dir__
