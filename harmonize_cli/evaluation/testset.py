"""The test split the evaluation runs on: opening it with the protocol's resize and checking it."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

from .. import console
from ..errors import UsageError


def dataset_resize(dataset) -> Optional[str]:
    """The resize strategy of a dataset's transform (``fixed256``, ``limit1024``, ``none``), if known."""
    transform = getattr(dataset, "transform", None)
    kind = type(transform).__name__
    if kind == "Resize" and getattr(transform, "size", None):
        height, width = transform.size
        return f"fixed{height}" if height == width else f"fixed{height}x{width}"
    if kind == "LimitLongestSide":
        return f"limit{transform.max_side}"
    if kind == "NoResize":
        return "none"
    value = getattr(dataset, "resize", None)
    return value if isinstance(value, str) else None


def open_test_set(source, *, resize: str = "fixed256", subsets: Optional[Sequence[str]] = None):
    """The test split of a dataset (HDF5 file or folder tree) with the evaluation transform.

    Raises a UsageError for a dataset without a test split and for a requested subset with no
    test images.
    """
    from ..data import HarmonizationDataset, eval_transform

    transform = eval_transform(resize)  # validates the name
    path = Path(source)
    if not path.exists():
        raise UsageError(f"dataset {source} does not exist",
                         "pass --data FILE.h5|DIR (the iHarmony4 folder or a file packed by `harmonize prepare`)")
    subsets = list(subsets) if subsets else None
    dataset = HarmonizationDataset(path, split="test", subsets=subsets, transform=transform, keep_raw=True)
    check_test_set(dataset, source, subsets)
    return dataset


def check_test_set(dataset, source, subsets=None) -> None:
    """Errors for a test split without images and for a requested subset without test images;
    a notice for subsets of the data that have no test images and for unreadable samples."""
    counts: Dict[str, int] = {}
    for subset, _ in getattr(dataset, "records", []):
        counts[subset] = counts.get(subset, 0) + 1
    if len(dataset) == 0:
        raise UsageError(f"{source} has no test images",
                         "evaluation needs the <Subset>_test.txt lists (or a packed file with a test split)")
    if subsets:
        empty = [name for name in subsets if not any(name.lower() == have.lower() for have in counts)]
        if empty:
            raise UsageError(f"subset {', '.join(empty)} of {source} has no test images",
                             f"subsets with test images: {', '.join(counts)}")
    else:
        available = getattr(getattr(dataset, "_source", None), "subsets", None) or []
        empty = [name for name in available if name not in counts]
        if empty:
            console.warn(f"subset {', '.join(empty)} of {source} has no test images; "
                         "\"All\" covers the other subsets only.")
    missing = int(getattr(dataset, "missing", 0) or 0)
    if missing:
        console.warn(f"{missing} test sample(s) of {source} left out: a composite, mask or real image is missing.")


