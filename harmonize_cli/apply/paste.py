"""From a cut-out object and a background to a harmonized photo: placement, compositing, blending.

>>> from harmonize_cli import Harmonizer
>>> from harmonize_cli.apply.paste import compose, paste
>>> composite, mask, placement = compose("cup.png", "room.jpg", at="0.5,0.9", anchor="bottom")
>>> result = paste(Harmonizer(), "cup.png", "room.jpg", at=(0.5, 0.9), anchor="bottom", height=0.3)

The object is cropped to the bounding box of its alpha, resized (premultiplied colour and alpha,
Lanczos when shrinking, bicubic when enlarging, so transparent pixels never darken the edges),
placed with its anchor point at ``at`` and cropped at the background's borders. The composite is
``background * (1 - a) + object * a`` and the harmonizer gets the alpha ``a`` as its mask. The
result is ``background * (1 - a) + harmonized_object * a``: every pixel where ``a`` is 0 is the
background's, bit for bit, and soft edges (hair, antialiased outlines) stay soft.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Optional, Tuple

import numpy as np

from ..errors import UsageError
from .imageio import InputError, image_to_arrays
from .maskio import mask_to_array

ANCHORS = ("center", "bottom")
MAX_OBJECT_SIDE = 1_000_000  # pixels: a resized object larger than this is a mistake

Coordinate = Tuple[float, bool]  # (value, is_fraction)


# ------------------------------------------------------------------------------------- parsing

def parse_coordinate(value, what: str = "coordinate") -> Coordinate:
    """One coordinate or length: ``(value, is_fraction)``.

    Text: ``"120"`` or ``"-30"`` (pixels), ``"0.5"`` (a fraction: a number with a decimal point
    from 0 to 1), ``"50%"`` (a percentage); any other number is in pixels. Python numbers: a float
    from 0 to 1 is a fraction, an int (or any other float) is in pixels.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("%"):
                return float(text[:-1]) / 100.0, True
            number = float(text)
        except ValueError:
            raise UsageError(f"{what} {value!r} is not a number",
                             "use pixels (120), a fraction (0.5) or a percentage (50%)") from None
        if not math.isfinite(number):
            raise UsageError(f"{what} {value!r} is not a finite number")
        return number, ("." in text and 0.0 <= number <= 1.0)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise UsageError(f"{what} {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise UsageError(f"{what} {value!r} is not a finite number")
    return number, (not isinstance(value, Integral) and 0.0 <= number <= 1.0)


def parse_point(at) -> Tuple[Coordinate, Coordinate]:
    """``"X,Y"`` (or a pair of numbers) as two coordinates; see :func:`parse_coordinate`."""
    parts = at.split(",") if isinstance(at, str) else list(at) if isinstance(at, (tuple, list)) else None
    if parts is None or len(parts) != 2:
        raise UsageError(f"--at {at!r} is not X,Y", "e.g. --at 320,400 (pixels) or --at 0.5,0.8 (fractions)")
    return parse_coordinate(parts[0], "--at X"), parse_coordinate(parts[1], "--at Y")


def parse_height(value) -> Coordinate:
    """``--height``: pixels (``240``) or a fraction of the background's height (``0.3``, ``30%``)."""
    coordinate = parse_coordinate(value, "--height")
    if not coordinate[0] > 0:
        raise UsageError(f"--height {value} is not positive", "e.g. --height 240 or --height 0.3")
    return coordinate


def _pixels(coordinate: Coordinate, extent: int) -> float:
    value, fraction = coordinate
    return value * extent if fraction else value


# ------------------------------------------------------------------------------- the cut-out

def cut_out(obj, mask=None, name: str = "object") -> Tuple[np.ndarray, np.ndarray]:
    """The object's colour (uint8 h x w x 3) and alpha (float32 h x w in [0, 1]), cropped to the
    bounding box of the alpha. ``mask`` (any mask ``apply`` accepts) replaces the object's alpha."""
    rgb, alpha, _ = image_to_arrays(obj)
    if mask is not None:
        values = mask_to_array(mask)
        if values.shape != rgb.shape[:2]:
            raise InputError(f"{name}: the mask is {values.shape[1]}x{values.shape[0]} but the object is "
                             f"{rgb.shape[1]}x{rgb.shape[0]}", "give a mask of the object's size")
    elif alpha is None:
        raise InputError(f"{name} has no alpha channel (transparency)",
                         "pass --mask MASK, or export the cut-out as a PNG with transparency")
    else:
        values = alpha.astype(np.float32) / np.float32(255.0)
    values = quantize_alpha(values)
    rows = np.flatnonzero(values.any(axis=1))
    if rows.size == 0:
        raise InputError(f"{name}: the {'mask' if mask is not None else 'alpha channel'} is empty "
                         "(fully transparent)", "the object must have some opaque pixels")
    cols = np.flatnonzero(values[rows[0]:rows[-1] + 1].any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return np.ascontiguousarray(rgb[box]), np.ascontiguousarray(values[box])


def quantize_alpha(alpha: np.ndarray) -> np.ndarray:
    """Alpha in steps of 1/255 (what an 8-bit mask file holds); below half a step it is 0."""
    return np.round(np.clip(alpha, 0.0, 1.0) * np.float32(255.0)) / np.float32(255.0)


def resize_object(rgb: np.ndarray, alpha: np.ndarray, size: Tuple[int, int],
                  window: Optional[Tuple[int, int, int, int]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Resize colour and alpha to ``size`` = (width, height) through premultiplied alpha.

    Colour is multiplied by alpha, both are resampled (Lanczos when shrinking, bicubic when
    enlarging), then divided again: the colour of transparent pixels, often black, cannot bleed
    into the edges as a dark fringe. ``window`` = (x0, y0, x1, y1) of the resized object: only
    that part is computed (the same pixels as resizing all, then cropping; a large object that
    mostly lies outside the background costs no more than its visible part). Returns float32
    colour in [0, 255] and quantized alpha.
    """
    from PIL import Image

    width, height = size
    x0, y0, x1, y1 = window if window is not None else (0, 0, width, height)
    if (width, height) == (alpha.shape[1], alpha.shape[0]):
        return rgb[y0:y1, x0:x1].astype(np.float32), alpha[y0:y1, x0:x1]
    method = Image.LANCZOS if width * height < alpha.size else Image.BICUBIC
    step_x, step_y = alpha.shape[1] / width, alpha.shape[0] / height
    source_box = (x0 * step_x, y0 * step_y, x1 * step_x, y1 * step_y)

    def resample(channel):
        image = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32))
        return np.asarray(image.resize((x1 - x0, y1 - y0), method, box=source_box), dtype=np.float32)

    premultiplied = rgb.astype(np.float32) * alpha[..., None]
    coverage = resample(alpha)
    colour = np.stack([resample(premultiplied[..., c]) for c in range(3)], axis=2)
    new_alpha = quantize_alpha(coverage)
    safe = np.maximum(coverage, np.float32(1e-6))[..., None]
    colour = np.where(new_alpha[..., None] > 0, np.clip(colour / safe, 0.0, 255.0), 0.0).astype(np.float32)
    return colour, new_alpha


def target_size(width: int, height: int, background_size: Tuple[int, int], scale=None,
                object_height=None) -> Tuple[int, int, float]:
    """(width, height, scale) of the resized object.

    ``scale``: a factor; ``object_height``: the object's height in pixels or as a fraction of the
    background's (see :func:`parse_coordinate`). Neither: the object keeps its size when it fits
    inside the background, else it is shrunk (aspect kept) until it does.
    """
    bg_width, bg_height = background_size
    if scale is not None and object_height is not None:
        raise UsageError("--scale and --height exclude each other", "give one of them")
    if object_height is not None:
        value = _pixels(parse_height(object_height), bg_height)
        factor = value / height
        new_height = max(1, round(value))
        new_width = max(1, round(width * factor))
    elif scale is not None:
        factor = float(scale)
        if not (math.isfinite(factor) and factor > 0):
            raise UsageError(f"--scale {scale} is not a positive number")
        new_width, new_height = max(1, round(width * factor)), max(1, round(height * factor))
    elif width <= bg_width and height <= bg_height:
        return width, height, 1.0
    else:
        factor = min(bg_width / width, bg_height / height)
        new_width = max(1, min(bg_width, math.floor(width * factor + 1e-9)))
        new_height = max(1, min(bg_height, math.floor(height * factor + 1e-9)))
    if max(new_width, new_height) > MAX_OBJECT_SIDE:
        raise UsageError(f"the resized object would be {new_width}x{new_height} pixels", "use a smaller --scale")
    return new_width, new_height, factor


# -------------------------------------------------------------------------------- placement

@dataclass(frozen=True)
class Placement:
    """Where the (resized) object lies on the background, in background pixels."""

    left: int  # of the object's box; may be negative (cropped at the border)
    top: int
    width: int  # of the resized object's box
    height: int
    scale: float
    visible: Tuple[int, int, int, int]  # (x0, y0, x1, y1): the part inside the background

    @property
    def cropped(self) -> bool:
        x0, y0, x1, y1 = self.visible
        return (x1 - x0, y1 - y0) != (self.width, self.height)

    @property
    def visible_fraction(self) -> float:
        """The share of the object's box that lands on the background (1.0: all of it)."""
        x0, y0, x1, y1 = self.visible
        return (x1 - x0) * (y1 - y0) / float(max(self.width * self.height, 1))

    def as_dict(self) -> dict:
        return {"left": self.left, "top": self.top, "width": self.width, "height": self.height,
                "scale": round(self.scale, 6), "visible": list(self.visible), "cropped": self.cropped,
                "visible_fraction": round(self.visible_fraction, 4)}


def place(size: Tuple[int, int], background_size: Tuple[int, int], at=None, anchor: str = "center",
          scale: float = 1.0, name: str = "object") -> Placement:
    """Put the anchor point of an object box of ``size`` = (w, h) at ``at`` (default: the centre
    of the background). ``anchor``: ``center`` (the box's centre) or ``bottom`` (the middle of its
    bottom edge). Coordinates are continuous: pixel (i, j) covers [i, i+1) x [j, j+1), so the
    fraction 0.5 is the exact middle. Raises when nothing of the object lands on the background."""
    width, height = size
    bg_width, bg_height = background_size
    anchor = str(anchor).lower()
    if anchor == "centre":
        anchor = "center"
    if anchor not in ANCHORS:
        raise UsageError(f"unknown anchor {anchor!r}", "use center or bottom")
    x_at, y_at = parse_point(at if at is not None else (0.5, 0.5))
    x = _pixels(x_at, bg_width)
    y = _pixels(y_at, bg_height)
    anchor_y = height / 2 if anchor == "center" else height
    left = math.floor(x - width / 2 + 0.5)
    top = math.floor(y - anchor_y + 0.5)
    visible = (max(left, 0), max(top, 0), min(left + width, bg_width), min(top + height, bg_height))
    if visible[0] >= visible[2] or visible[1] >= visible[3]:
        raise UsageError(f"{name} lands entirely outside the {bg_width}x{bg_height} background "
                         f"(its {width}x{height} box would start at {left},{top})",
                         "move --at inside the background, e.g. --at 0.5,0.5")
    return Placement(left, top, width, height, scale, visible)


MOSTLY_OUTSIDE = 0.5  # below this share of its box on the background, a placement is worth a warning


def placement_warning(placement: Placement, at=None, name: str = "object") -> Optional[str]:
    """One line when most of the object lands outside the background (None otherwise); when
    ``--at`` was read as small pixel values, it says how fractions are written."""
    if placement.visible_fraction >= MOSTLY_OUTSIDE:
        return None
    text = (f"{name}: only {placement.visible_fraction:.0%} of the object lands on the background "
            f"(its {placement.width}x{placement.height} box starts at {placement.left},{placement.top})")
    if at is not None:
        coordinates = parse_point(at)
        if any(not fraction and 0 < value < 10 for value, fraction in coordinates):
            text += (f"; --at {at if isinstance(at, str) else ','.join(map(str, at))} is read as pixels: "
                     "fractions lie between 0 and 1 (0.5,0.8) or use percentages (50%,80%)")
    return text


# ------------------------------------------------------------------------------- compositing

@dataclass
class Composed:
    """A composite ready for the harmonizer, and what is needed to blend its result back."""

    composite: np.ndarray  # H x W x 3 uint8: background * (1 - a) + object * a
    mask: np.ndarray  # H x W float32: the placed alpha a
    placement: Placement
    background: np.ndarray  # H x W x 3 uint8
    background_alpha: Optional[np.ndarray]  # H x W uint8 or None
    layer: np.ndarray  # the object's colour on the visible box, float32 [0, 255]

    def __iter__(self):  # composite, mask, placement = compose(...)
        return iter((self.composite, self.mask, self.placement))

    def box(self):
        x0, y0, x1, y1 = self.placement.visible
        return slice(y0, y1), slice(x0, x1)


def compose(obj, background, *, at=None, anchor: str = "center", scale=None, height=None, mask=None,
            name: str = "object") -> Composed:
    """Place a cut-out on a background: the composite and its mask (see the module docstring).

    ``obj``: an RGBA image (path, PIL image or array) or any image with ``mask``; ``background``:
    any image ``apply`` accepts. ``at``, ``anchor``: see :func:`place`; ``scale``, ``height``:
    see :func:`target_size`.
    """
    bg_rgb, bg_alpha, _ = image_to_arrays(background)
    rgb, alpha = cut_out(obj, mask, name)
    bg_height, bg_width = bg_rgb.shape[:2]
    width, height_px, factor = target_size(alpha.shape[1], alpha.shape[0], (bg_width, bg_height), scale, height)
    placement = place((width, height_px), (bg_width, bg_height), at, anchor, factor, name)
    x0, y0, x1, y1 = placement.visible
    window = (x0 - placement.left, y0 - placement.top, x1 - placement.left, y1 - placement.top)
    colour, coverage = resize_object(rgb, alpha, (width, height_px), window)  # cropped at the borders
    if not coverage.any():
        raise UsageError(f"{name}: only transparent pixels land on the background",
                         "move --at so that the object overlaps the background")
    full_mask = np.zeros((bg_height, bg_width), dtype=np.float32)
    full_mask[y0:y1, x0:x1] = coverage
    composite = bg_rgb.copy()
    a = coverage[..., None]
    mixed = bg_rgb[y0:y1, x0:x1].astype(np.float32) * (1.0 - a) + colour * a
    composite[y0:y1, x0:x1] = np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    return Composed(composite, full_mask, placement, bg_rgb, bg_alpha, colour)


def blend(composed: Composed, harmonized) -> np.ndarray:
    """``background * (1 - a) + harmonized_object * a``, uint8 (H x W x 4 when the background has
    alpha: the object is laid over it).

    The harmonizer already returns ``composite + a * (prediction - composite)``, so its change at a
    pixel is ``a`` times the harmonized object's change there; adding that change to the exact
    (unrounded) composite gives the blend above. Pixels where ``a`` is 0 are copied from the
    background whatever the harmonizer returned.
    """
    harmonized = np.asarray(harmonized)
    if harmonized.shape[:2] != composed.composite.shape[:2]:
        raise ValueError(f"harmonized image is {harmonized.shape[1]}x{harmonized.shape[0]}, "
                         f"the composite {composed.composite.shape[1]}x{composed.composite.shape[0]}")
    box = composed.box()
    a = composed.mask[box][..., None]
    background = composed.background[box].astype(np.float32)
    exact = background * (1.0 - a) + composed.layer * a
    change = harmonized[box][..., :3].astype(np.float32) - composed.composite[box].astype(np.float32)
    mixed = np.clip(np.round(exact + change), 0, 255).astype(np.uint8)
    result = composed.background.copy()
    result[box] = np.where(a > 0, mixed, composed.background[box])
    if composed.background_alpha is None:
        return result
    alpha = composed.background_alpha.copy()
    below = alpha[box].astype(np.float32)
    over = np.clip(np.round(255.0 * a[..., 0] + below * (1.0 - a[..., 0])), 0, 255).astype(np.uint8)
    alpha[box] = np.where(a[..., 0] > 0, over, alpha[box])
    return np.concatenate((result, alpha[..., None]), axis=2)


def harmonize_composed(harmonizer, composed: Composed) -> np.ndarray:
    """Run ``harmonizer(composite, mask)`` and blend its result back (see :func:`blend`)."""
    return blend(composed, harmonizer(composed.composite, composed.mask))


def paste(harmonizer, obj, background, *, at=None, anchor: str = "center", scale=None, height=None, mask=None,
          return_composite: bool = False, name: str = "object"):
    """Compose, harmonize and blend: the harmonized photo, uint8 H x W x 3 (x 4 when the background
    has alpha); with ``return_composite``, ``(result, composite, mask)``.

    ``harmonizer``: a :class:`harmonize_cli.Harmonizer` (or any ``f(image, mask) -> image``).
    """
    composed = compose(obj, background, at=at, anchor=anchor, scale=scale, height=height, mask=mask, name=name)
    result = harmonize_composed(harmonizer, composed)
    return (result, composed.composite, composed.mask) if return_composite else result
