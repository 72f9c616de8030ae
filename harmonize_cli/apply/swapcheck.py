"""Are COMPOSITES and MASKS the wrong way round? A cheap look before any work.

``harmonize apply masks/ composites/ -o out/`` pairs by name just as well as the right order, and
would "harmonize" every mask with a ghost of its photo. A mask that is a colour photo (three
channels that differ, many levels) or a composite that is a single-channel binary image is almost
surely such a swap: :func:`check_not_swapped` looks at small decoded thumbnails (a JPEG is decoded
at 1/8 scale through Pillow's ``draft``) of the first few pairs and raises a one-line
:class:`~harmonize_cli.errors.UsageError` (exit 2) naming the files. ``--allow-odd-masks``
(``swap_check=False``) skips it for the rare real case.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from ..errors import UsageError
from ..limits import DEFAULT_MAX_PIXELS, open_image

SAMPLE_PAIRS = 3  # pairs looked at
THUMBNAIL_SIDE = 96  # pixels on the longer side of what is looked at
PHOTO_LEVELS = 48  # a colour mask has few levels; a photo has many more than this
COLOUR_SHARE = 0.05  # share of pixels whose channels differ clearly: a colour image
BINARY_SHARE = 0.97  # share of pixels near black or white: a binary mask (JPEG-tolerant)
FORCE_OPTION = "--allow-odd-masks"


def thumbnail(path, max_pixels=DEFAULT_MAX_PIXELS) -> Optional[np.ndarray]:
    """A small decoded view of ``path`` (H x W x C uint8, nearest-neighbour so that no new levels
    appear), or None when it cannot be read (the run reports that file later, in its place)."""
    from PIL import Image

    try:
        with open_image(path, max_pixels) as image:
            image.draft("RGB" if image.mode in ("RGB", "CMYK", "YCbCr") else image.mode,
                        (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            if image.mode not in ("1", "L", "LA", "RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
            scale = THUMBNAIL_SIDE / max(image.size)
            if scale < 1:
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image = image.resize(size, Image.NEAREST)
            values = np.asarray(image.convert("L") if image.mode == "1" else image)
    except Exception:  # noqa: BLE001 - a bad file is the run's business, not this check's
        return None
    return values[..., None] if values.ndim == 2 else values


def looks_like_photo(pixels: np.ndarray) -> bool:
    """Three colour channels that differ (not a gray mask saved as RGB) with many levels."""
    if pixels.shape[2] < 3:
        return False
    rgb = pixels[..., :3].astype(np.int16)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    if np.mean(spread > 24) < COLOUR_SHARE:
        return False
    luma = (rgb @ np.array([77, 150, 29], dtype=np.int32)) >> 8
    return len(np.unique(luma)) > PHOTO_LEVELS


def looks_like_binary_mask(pixels: np.ndarray) -> bool:
    """One channel (gray, optionally with alpha), nearly every pixel near black or white, both present."""
    if pixels.shape[2] not in (1, 2):
        return False
    gray = pixels[..., 0]
    dark, light = gray <= 16, gray >= 239
    return bool(np.mean(dark | light) >= BINARY_SHARE and dark.any() and light.any())


def swap_problem(composite, mask, max_pixels=DEFAULT_MAX_PIXELS) -> Optional[str]:
    """Why this pair looks swapped, or None."""
    mask_pixels = thumbnail(mask, max_pixels)
    if mask_pixels is not None and looks_like_photo(mask_pixels):
        return f"the mask {mask} is a colour photo"
    composite_pixels = thumbnail(composite, max_pixels)
    if composite_pixels is not None and looks_like_binary_mask(composite_pixels):
        return f"the composite {composite} is a single-channel black-and-white image"
    return None


def check_not_swapped(pairs: Iterable, *, max_pixels=DEFAULT_MAX_PIXELS, sample: int = SAMPLE_PAIRS,
                      usage: str = "harmonize apply COMPOSITES MASKS -o OUT") -> None:
    """Raise a UsageError when the first ``sample`` paired composites all look swapped with their masks.

    ``pairs``: (composite, mask) paths (a pair without a mask is passed over). ``usage``: how the
    command is called the right way round, for the hint.
    """
    looked, problems = 0, []
    for composite, mask in pairs:
        if mask is None:
            continue
        looked += 1
        problem = swap_problem(composite, mask, max_pixels)
        if problem is None:
            return
        problems.append(problem)
        if looked >= sample:
            break
    if problems:
        raise UsageError(f"the images and the masks look swapped: {problems[0]}",
                         f"give the images first ({usage}), or pass {FORCE_OPTION} if these really are "
                         f"your inputs")
