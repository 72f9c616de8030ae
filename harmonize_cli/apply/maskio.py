"""Reading masks: every mode, bit depth and layout `apply` accepts, as float32 H x W in [0, 1].

>>> mask = read_mask("mask.png")           # a file (EXIF orientation applied)
>>> mask = mask_to_array(pil_image_or_array)
>>> decoded = read_mask("mask.png", as_decoded=True)   # an 8-bit mask stays as decoded (DecodedMask)

Accepted: L, 1, RGB (first channel), RGBA / LA (alpha; the first channel when the alpha is
constant), P, 16-bit and float masks; 0/1 and 0/255 values; soft values are kept. Decoding goes
through :mod:`.imageio`'s bounded opener (the pixel limit is checked before decoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np

from ..limits import DEFAULT_MAX_PIXELS
from .imageio import InputError, _open


def _normalise_mask(values: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """Integer or float mask values to float32 in [0, 1]; 0/1 integer masks are recognised."""
    if values.dtype == bool:
        return values.astype(np.float32)
    if np.issubdtype(values.dtype, np.floating):
        values = np.asarray(values, dtype=np.float32)  # no copy when it is float32 already
        if values.size:
            low, high = values.min(), values.max()  # NaN and inf show up in these: no extra pass
            if not np.isfinite(low + high):
                _check_finite(values)
            if low >= 0.0 and high <= 1.0:
                return values  # already a mask in [0, 1] (read_mask's output): taken as it is
        return np.clip(values, 0.0, 1.0)
    if values.dtype.kind == "i" and values.size and values.min() < 0:
        values = np.maximum(values, 0)  # below 0 is background, as in [0, 1] (signed arrays only: one more pass)
    peak = int(values.max()) if values.size else 0
    if peak <= 1 or (peak <= 255 and not (sixteen_bit or values.dtype == np.uint16)):
        return _scaled_8_bit(values, peak)
    return np.clip(np.divide(values, np.float32(65535.0), dtype=np.float32), 0.0, 1.0)


def _scaled_8_bit(values: np.ndarray, peak: int) -> np.ndarray:
    """Mask values of at most 255 to float32 in [0, 1]: a 0/1 mask (``peak`` <= 1) as it is, else
    divided by 255 in one pass."""
    if peak <= 1:
        return values.astype(np.float32)
    return np.divide(values, np.float32(255.0), dtype=np.float32)


def _pick_mask_channel(values: np.ndarray) -> np.ndarray:
    """H x W x C mask array -> H x W: 1 channel as is; 2 or 4 channels: alpha unless it is constant
    (then the first channel); 3 channels: the first channel."""
    if values.ndim == 2:
        return values
    channels = values.shape[2]
    if channels in (2, 4):
        alpha = values[..., channels - 1]
        if alpha.size and alpha.min() != alpha.max():
            return alpha
    return values[..., 0]


def mask_to_array(mask) -> np.ndarray:
    """A mask (path, numpy array or Pillow image) as float32 H x W in [0, 1].

    Accepted: L, 1, RGB (first channel), RGBA / LA (alpha; the first channel when the alpha is
    constant), P, 16-bit and float masks; 0/1 and 0/255 values; soft values are kept.
    """
    if isinstance(mask, (str, Path)):
        return read_mask(mask)
    if isinstance(mask, DecodedMask):
        return mask.floats()
    if hasattr(mask, "mode") and hasattr(mask, "getbands"):
        return _pil_mask(mask)
    values = np.asarray(mask)
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    if values.ndim not in (2, 3) or (values.ndim == 3 and values.shape[2] not in (2, 3, 4)):
        raise InputError(f"mask array has shape {values.shape}", "expected H x W (or H x W x C)")
    return np.ascontiguousarray(_normalise_mask(_pick_mask_channel(values)))


def _pil_mask(image) -> np.ndarray:
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("L", "I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image)
        if mode == "F":
            _check_finite(values)
            peak = float(values.max()) if values.size else 0.0
            values = values / (1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0)
        return np.ascontiguousarray(_normalise_mask(values, sixteen_bit=mode.startswith("I;16")))
    if mode in ("LA", "La"):
        values = np.asarray(image.convert("LA"))
    elif mode in ("RGBA", "RGBa"):
        values = np.asarray(image.convert("RGBA"))
    else:
        values = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(_normalise_mask(_pick_mask_channel(values)))


def _check_finite(values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise InputError(f"mask has {bad} NaN or infinite value(s)",
                         "save the mask with finite values (0..1, 0..255 or 0..65535)")


@dataclass
class DecodedMask:
    """An 8-bit mask kept as Pillow decoded it (mode L), read on demand: the box of its nonzero
    pixels, that box as float32 in [0, 1], the network's low-resolution view. Apply's masks are
    mostly background, and converting the whole mask to float32 cost more than decoding it
    (docs/benchmarks.md, "Apply against its floor"); :meth:`floats` is exactly
    :func:`mask_to_array`'s result when the whole mask is needed."""

    image: Any  # Pillow image, mode "L"
    peak: int  # 1: a 0/1 mask (1 is the foreground), else 255

    @classmethod
    def of(cls, image) -> "DecodedMask":
        return cls(image, 1 if image.getextrema()[1] <= 1 else 255)

    @property
    def shape(self) -> Tuple[int, int]:
        return self.image.size[1], self.image.size[0]

    def bbox(self) -> Optional[Tuple[int, int, int, int]]:
        """(y0, y1, x0, x1) of the nonzero pixels; None when there are none."""
        box = self.image.getbbox()
        return None if box is None else (box[1], box[3], box[0], box[2])

    def region(self, bbox) -> np.ndarray:
        """float32 h x w in [0, 1] of the box (y0, y1, x0, x1)."""
        y0, y1, x0, x1 = bbox
        return self._scaled(np.asarray(self.image.crop((x0, y0, x1, y1))))

    def floats(self) -> np.ndarray:
        """The whole mask as float32 H x W in [0, 1]."""
        return self._scaled(np.asarray(self.image))

    def view(self, size: Tuple[int, int]) -> np.ndarray:
        """The network's view: float32 (height, width) = ``size`` in [0, 1], resized like the
        composite's view (antialiased bilinear, reducing gap 3) and in the same 8-bit steps.
        Resizing the mask as float32 took 6x as long (the whole mask converted, then Pillow's
        float path) and differs from this by less than one 8-bit step (0.72/255 measured on the
        benchmark's photos)."""
        from PIL import Image

        height, width = size
        image = self.image if self.peak == 255 else self.image.point(lambda value: value * 255)
        small = image.resize((width, height), Image.BILINEAR, reducing_gap=3.0)
        return np.divide(np.asarray(small), np.float32(255.0), dtype=np.float32)

    def _scaled(self, values: np.ndarray) -> np.ndarray:
        return _scaled_8_bit(values, self.peak)


def read_mask(path, max_pixels=DEFAULT_MAX_PIXELS, as_decoded: bool = False):
    """Decode a mask file (EXIF orientation applied) to float32 H x W in [0, 1]; with
    ``as_decoded``, an 8-bit single-channel mask comes back as a :class:`DecodedMask` instead
    (any other mask still as the array)."""
    try:
        image = _open(path, max_pixels)
        if as_decoded and image.mode == "L":
            return DecodedMask.of(image)
        return _pil_mask(image)
    except InputError as exc:
        if str(path) in exc.message:
            raise
        raise InputError(f"{path}: {exc.message}", exc.hint) from None
