"""Where a clip's masks come from: a mask video, a folder of mask frames, or one still mask.

:func:`open_masks` checks the source against the clip (frame count and size) before any frame is
decoded and returns a :class:`MaskSource` whose :meth:`~MaskSource.masks` yields one float32
H x W mask in [0, 1] per frame.

A mask *video* is usually lossy: its codec leaves values of a few levels where the mask should be
0 or 255. Values within ``SNAP`` (4 of 255) of either end are snapped to it, so the background
stays untouched and the foreground fully harmonized; masks from image files are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..apply.imageio import InputError, is_image_file
from ..apply.maskio import mask_to_array, read_mask
from ..errors import UsageError
from .reading import Clip, open_clip

SNAP = 4 / 255


@dataclass
class MaskSource:
    path: Path
    kind: str  # "video", "frames" or "still"
    clip: Optional[Clip] = None  # video / frames
    still: Optional[np.ndarray] = None  # still: the one mask

    def masks(self) -> Iterator[np.ndarray]:
        if self.kind == "still":
            while True:
                yield self.still
        if self.kind == "frames":
            for path in self.clip.files:
                yield _checked(path, read_mask(path, self.clip.max_pixels), self.clip)
            return
        for frame in self.clip.decode(gray=True):
            yield snap(mask_to_array(frame.rgb))


def open_masks(path, clip: Clip) -> MaskSource:
    """The masks for ``clip``; a usage error (exit 2) when their count or size differs."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"MASK {path} does not exist", "give a mask video, a folder of mask frames or one mask image")
    if path.is_file() and is_image_file(path):
        try:
            still = read_mask(path, clip.max_pixels)
        except InputError as exc:
            raise UsageError(exc.message, exc.hint) from None
        if still.shape != (clip.height, clip.width):
            raise UsageError(f"MASK {path} is {still.shape[1]}x{still.shape[0]} but the clip is "
                             f"{clip.width}x{clip.height}", "a still mask must have the frames' size")
        return MaskSource(path, "still", still=still)
    masks = open_clip(path, clip.rate, clip.max_pixels, role="MASK")
    if (masks.width, masks.height) != (clip.width, clip.height):
        raise UsageError(f"MASK {path} is {masks.width}x{masks.height} but {clip.path} is {clip.width}x{clip.height}",
                         "masks must have the frames' size")
    if masks.frames != clip.frames:
        raise UsageError(f"MASK {path} has {masks.frames} frames but {clip.path} has {clip.frames}",
                         "give one mask per frame (or one still mask for the whole clip)")
    return MaskSource(path, masks.kind, clip=masks)


def snap(mask: np.ndarray) -> np.ndarray:
    """Values within :data:`SNAP` of 0 or 1 set to it (in place; the codec's noise in a mask video)."""
    mask[mask <= SNAP] = 0.0
    mask[mask >= 1.0 - SNAP] = 1.0
    return mask


def _checked(path, mask: np.ndarray, clip: Clip) -> np.ndarray:
    if mask.shape != (clip.height, clip.width):
        raise InputError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, the clip {clip.width}x{clip.height}",
                         "every mask frame must have the frames' size")
    return mask
