"""Planning the heaps of a pack (``harmonize prepare``), between the scan and the write.

Every file used by a usable sample gets one row in its kind's table (a real image or mask
shared by several composites is stored once) and one place in its kind's pixel heap: the
size it is stored at (long side capped with ``max_side``), its channels and its offset.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from . import imageio
from .packfile import KINDS


@dataclass
class HeapPlan:
    """Where every file goes: its row in its kind's table, its place in the heap."""

    kinds: dict  # kind -> {"paths", "channels", "original", "stored", "offsets", "total", "formats"}
    sample_rows: list  # per usable sample: [composite row, real row, mask row]

    def items(self) -> list:
        """The decoding jobs of pass 2: (kind, row, path, original size, stored size)."""
        items = []
        for kind in ("real", "mask", "composite"):
            info = self.kinds[kind]
            for row, path in enumerate(info["paths"]):
                items.append((kind, row, path, tuple(info["original"][row]), tuple(info["stored"][row])))
        return items


def plan_heaps(valid, probed: dict, max_side: int) -> HeapPlan:
    """The plan for the samples ``valid`` whose files' headers are ``probed`` (path -> size, format)."""
    tables = {kind: OrderedDict() for kind in KINDS}  # path -> row
    sample_rows = []
    for ref in valid:
        rows = []
        for kind, path in zip(KINDS, (ref.composite, ref.real, ref.mask)):
            table = tables[kind]
            key = str(path)
            if key not in table:
                table[key] = len(table)
            rows.append(table[key])
        sample_rows.append(rows)

    kinds = {}
    for kind in KINDS:
        channels = 1 if kind == "mask" else 3
        paths = list(tables[kind])
        original = np.array([probed[p][0] for p in paths], dtype=np.int64).reshape(-1, 2)
        stored = np.array([imageio.capped_size(h, w, max_side) for h, w in original], dtype=np.int64).reshape(-1, 2)
        lengths = stored[:, 0] * stored[:, 1] * channels
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else lengths
        kinds[kind] = {
            "paths": paths,
            "channels": channels,
            "original": original,
            "stored": stored,
            "offsets": offsets,
            "total": int(lengths.sum()),
            "formats": [probed[p][1] for p in paths],
        }
    return HeapPlan(kinds, sample_rows)
