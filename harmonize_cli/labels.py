"""Column titles on image grids: a white header band with one centred title per column.

Used by ``apply --comparison`` (composite | harmonized), the training grids (composite | mask |
prediction | target) and ``tools/make_figures.py``. Drawn with Pillow's own default font
(scalable from Pillow 10.1; the fixed bitmap font before), so no font file ships.

>>> labelled = label_columns(grid, ["composite", "harmonized"], column_width=w, gap=8)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

TEXT = (20, 20, 20)
BACKGROUND = 255


def font(size: int):
    """Pillow's default font at ``size`` pixels (its fixed bitmap font on Pillow < 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no size
        return ImageFont.load_default()


def font_size_for(column_width: int) -> int:
    return int(min(64, max(11, column_width // 20)))


def band_height(size: int) -> int:
    return size + 10


def label_columns(grid: np.ndarray, titles: Sequence[str], column_width: int, gap: int = 0,
                  size: int | None = None) -> np.ndarray:
    """``grid`` (H x W x 3 uint8) with a white band on top holding ``titles[i]`` centred over
    column ``i`` (columns ``column_width`` wide, ``gap`` apart). The image itself is unchanged
    below the band; titles too long for their column are shortened with an ellipsis."""
    from PIL import Image, ImageDraw

    size = size or font_size_for(column_width)
    band = band_height(size)
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + band), (BACKGROUND,) * 3)
    canvas.paste(Image.fromarray(np.ascontiguousarray(grid[..., :3])), (0, band))
    draw = ImageDraw.Draw(canvas)
    face = font(size)
    for index, title in enumerate(titles):
        text = _fit(draw, face, str(title), column_width - 4)
        left, _, right, _ = draw.textbbox((0, 0), text, font=face)
        x = index * (column_width + gap) + (column_width - (right - left)) // 2 - left
        draw.text((x, (band - size) // 2), text, fill=TEXT, font=face)
    return np.asarray(canvas)


def _fit(draw, face, text: str, width: int) -> str:
    def measure(value):
        left, _, right, _ = draw.textbbox((0, 0), value, font=face)
        return right - left

    if measure(text) <= width:
        return text
    while len(text) > 1 and measure(text + "...") > width:
        text = text[:-1]
    return text + "..."
