"""Reading masks: every mode, bit depth and layout `apply` accepts, as float32 H x W in [0, 1].

>>> mask = read_mask("mask.png")           # a file (EXIF orientation applied)
>>> mask = mask_to_array(pil_image_or_array)

Accepted: L, 1, RGB (first channel), RGBA / LA (alpha; the first channel when the alpha is
constant), P, 16-bit and float masks; 0/1 and 0/255 values; soft values are kept. Decoding goes
through :mod:`.imageio`'s bounded opener (the pixel limit is checked before decoding).
"""

from __future__ import annotations

from pathlib import Path

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
    peak = int(values.max()) if values.size else 0
    if peak <= 1:
        return values.astype(np.float32)
    if peak <= 255 and not (sixteen_bit or values.dtype == np.uint16):
        return np.divide(values, np.float32(255.0), dtype=np.float32)  # one pass
    return np.clip(np.divide(values, np.float32(65535.0), dtype=np.float32), 0.0, 1.0)


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


def read_mask(path, max_pixels=DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a mask file (EXIF orientation applied) to float32 H x W in [0, 1]."""
    try:
        return _pil_mask(_open(path, max_pixels))
    except InputError as exc:
        if str(path) in exc.message:
            raise
        raise InputError(f"{path}: {exc.message}", exc.hint) from None
