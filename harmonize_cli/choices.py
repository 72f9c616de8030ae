"""Torch-free constants and parsers shared by the library and the CLI (each defined here once).

Click options take their choices from here, so ``--help`` and the library never disagree.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

# ImageNet normalisation: the input space of the paper's networks and of their backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_NORMALIZATION = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
IDENTITY_NORMALIZATION = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}

# How `apply` carries a network-size prediction to the photo's resolution.
RESOLUTION_STRATEGIES = ("auto", "fixed", "native")

# How `eval` (and training validation) sizes the test images: the reference protocol's three.
EVAL_RESIZES = ("fixed256", "limit1024", "none")

# The four subsets of iHarmony4, in the order of the paper's tables; "All" is every test image.
IHARMONY4_SUBSETS = ("HCOCO", "HAdobe5k", "HFlickr", "Hday2night")
ALL = "All"
TABLE_ROWS = IHARMONY4_SUBSETS + (ALL,)

# Output formats of `apply` (same: that of the input).
OUTPUT_FORMATS = ("same", "png", "jpg", "webp")


def parse_list(values: Optional[Iterable[str]]) -> List[str]:
    """Names given as repeated options and/or comma lists: ``("a,b", "c")`` -> ``["a", "b", "c"]``."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    names: List[str] = []
    for value in values:
        names += [part.strip() for part in str(value).split(",") if part.strip()]
    return names


def parse_ints(text: Optional[str]) -> List[int]:
    """``"160,175"`` -> ``[160, 175]``; empty or None -> ``[]``."""
    return [int(part) for part in (text or "").replace(" ", "").split(",") if part]


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """``value`` (case-insensitive) if it is one of ``choices``; else a UsageError listing them."""
    key = str(value).strip().lower()
    for choice in choices:
        if key == choice.lower():
            return choice
    from .errors import UsageError

    raise UsageError(f"unknown {what} {value!r}", f"use one of {', '.join(choices)}")
