"""The apply wing: harmonize composites of any size, one at a time or folders of them.

- :class:`Harmonizer` (``harmonizer.py``): the single-image and batch Python API.
- ``resolution.py``: how a 256-px prediction reaches full resolution (auto, fixed, native).
- ``imageio.py``: reading composites, writing results (every format apply accepts).
- ``maskio.py``: reading masks (every mode and bit depth) as float32 in [0, 1].
- ``pairing.py``: which mask belongs to which composite, where each output goes.
"""

from ..lazy import lazy_exports

__all__ = ["Harmonizer"]

_LAZY = {"Harmonizer": "harmonizer"}  # lazy: importing the package must not import torch
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
