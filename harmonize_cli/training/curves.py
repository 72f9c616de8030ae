"""A run's curves as a picture (``RUN/curves.png``), drawn with Pillow: for machines without
TensorBoard (matplotlib is not a dependency).

One panel per series: the training loss per epoch and, when the run validates, the validation
MSE and fMSE per validated epoch. Each panel has its title, the value range on the y axis and the
epoch range on the x axis; values are joined by a line with a dot at each epoch, higher values
higher up (pixel rows grow downwards, so a falling loss is a line whose row grows).

>>> picture = draw_curves(records)      # records: metrics.jsonl's lines; H x W x 3 uint8, or None
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

PANEL = (420, 260)  # width, height of one panel
MARGIN = (64, 16, 16, 40)  # left, right, top (below the title), bottom
LINE = (31, 119, 180)
AXES = (90, 90, 90)
FONT_SIZE = 13


def series(records: Sequence[dict]) -> List[Tuple[str, List[Tuple[float, float]]]]:
    """(title, [(epoch, value), ...]) for the training loss and each validation metric present."""
    found = [("train loss", [(float(r["epoch"]), float(r["train_loss"])) for r in records
                             if _finite(r.get("train_loss"))])]
    for key in ("MSE", "fMSE"):
        points = [(float(r["epoch"]), float(r["val"][key])) for r in records
                  if isinstance(r.get("val"), dict) and _finite(r["val"].get(key))]
        if points:
            found.append((f"validation {key}", points))
    return [(title, points) for title, points in found if points]


def draw_curves(records: Sequence[dict]) -> Optional[np.ndarray]:
    """The panels side by side (H x W x 3 uint8), or None when no record has a finite value."""
    from PIL import Image

    panels = [_panel(title, points) for title, points in series(records)]
    if not panels:
        return None
    canvas = Image.new("RGB", (PANEL[0] * len(panels), PANEL[1]), "white")
    for index, panel in enumerate(panels):
        canvas.paste(panel, (index * PANEL[0], 0))
    return np.asarray(canvas)


def plot_box() -> Tuple[int, int, int, int]:
    """(left, top, right, bottom) of a panel's plotting area, in the panel's pixels (below its title)."""
    from ..labels import band_height

    left, right, top, bottom = MARGIN
    return left, band_height(FONT_SIZE) + top, PANEL[0] - right, PANEL[1] - bottom


def _panel(title: str, points: List[Tuple[float, float]]):
    from PIL import Image, ImageDraw

    from ..labels import band_height, font, label_columns

    band = band_height(FONT_SIZE)  # the title goes above the body
    body = Image.new("RGB", (PANEL[0], PANEL[1] - band), "white")
    draw = ImageDraw.Draw(body)
    face = font(FONT_SIZE)
    left, top, right, bottom = plot_box()
    top, bottom = top - band, bottom - band
    epochs = [epoch for epoch, _ in points]
    values = [value for _, value in points]
    low, high = min(values), max(values)
    if high - low < 1e-12 * max(1.0, abs(high)):
        low, high = low - 0.5 * max(abs(low), 1e-6), high + 0.5 * max(abs(high), 1e-6)
    first, last = min(epochs), max(epochs)
    span = max(last - first, 1e-9)

    def xy(epoch, value):
        x = left + (epoch - first) / span * (right - left) if last > first else (left + right) / 2
        return x, bottom - (value - low) / (high - low) * (bottom - top)

    draw.rectangle((left, top, right, bottom), outline=AXES)
    for value, y in ((high, top), (low, bottom)):
        text = _number(value)
        width = draw.textlength(text, font=face)
        draw.text((left - 6 - width, y - FONT_SIZE // 2), text, fill=AXES, font=face)
    for epoch, x in ((first, left), (last, right)):
        text = f"{epoch:g}"
        width = draw.textlength(text, font=face)
        draw.text((x - width / 2, bottom + 4), text, fill=AXES, font=face)
    draw.text(((left + right) / 2 - draw.textlength("epoch", font=face) / 2, bottom + 4 + FONT_SIZE),
              "epoch", fill=AXES, font=face)
    coords = [xy(epoch, value) for epoch, value in points]
    if len(coords) > 1:
        draw.line(coords, fill=LINE, width=2)
    for x, y in coords:
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=LINE)
    return Image.fromarray(label_columns(np.asarray(body), [title], column_width=PANEL[0], size=FONT_SIZE))


def _number(value: float) -> str:
    return f"{value:.4g}"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
