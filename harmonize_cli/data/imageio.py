"""Decoding, size capping and encoding of dataset images, shared by the packer and the datasets.

Everything here works on numpy arrays: images are ``H x W x 3`` uint8 RGB, masks ``H x W``
uint8 (0..255). The packer and the folder reader use the *same* functions, so a sample read
from a folder tree and from the packed HDF5 file has identical pixels.

Conventions (matching the reference implementation where it matters):

- images are converted to RGB (alpha dropped, grey replicated, 16-bit scaled down); no EXIF
  rotation is applied: pixels are used as they are stored;
- a 3-channel mask is read through its first channel *in OpenCV's BGR order* (that is the
  blue channel), because the reference reads masks with ``cv2.imread(...)[:, :, 0]``; for the
  usual grey-as-RGB masks every channel is the same;
- the cap on the long side uses the reference's size rule: the long side becomes exactly
  ``max_side`` and the short side ``round(short * max_side / long)``; images and masks are
  shrunk with Lanczos (PIL's, which is antialiased).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # HAdobe5k has legitimately huge images (up to ~6000 px)

JPEG_QUALITY = 90  # the reference re-encodes resized copies at this quality


class DecodeError(Exception):
    """A file that exists but cannot be read as an image (message says why)."""


def read_bytes(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _open(source) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    try:
        return Image.open(source)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a readable image ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # PIL puts the file name in some messages; keep the reason short and path-free
    return text.split(" '")[0] if "cannot identify image file" in text else text


def probe(source) -> tuple[tuple[int, int], str]:
    """``((height, width), format)`` from the file header only (cheap; no pixel decoding)."""
    image = _open(source)
    try:
        width, height = image.size
        return (int(height), int(width)), (image.format or "").lower()
    finally:
        image.close()


def _to_uint8(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.int64)
        return Image.fromarray(np.clip(array >> 8, 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
    return image


def _load(source) -> Image.Image:
    image = _open(source)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"cannot decode image data ({_reason(exc)})") from None
    return _to_uint8(image)


def decode_image(source) -> np.ndarray:
    """Decode an image file (path or bytes) to ``H x W x 3`` uint8 RGB."""
    image = _load(source)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def decode_mask(source) -> np.ndarray:
    """Decode a mask file (path or bytes) to ``H x W`` uint8, reading it like the reference does."""
    image = _load(source)
    if image.mode in ("L", "1"):
        image = image.convert("L") if image.mode == "1" else image
        return np.asarray(image)
    if image.mode == "LA":
        return np.asarray(image.getchannel(0))
    if image.mode != "RGB":
        image = image.convert("RGB")
    # OpenCV reads BGR; the reference takes channel 0 of that, i.e. blue.
    return np.ascontiguousarray(np.asarray(image)[:, :, 2])


def capped_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The stored size of an image: unchanged unless its long side exceeds ``max_side``.

    ``max_side`` 0 or None keeps every size. Rounding follows the reference's resize script.
    """
    if not max_side or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    if height > width:
        return max_side, max(1, int(round(scale * width)))
    return max(1, int(round(scale * height))), max_side


def resize_lanczos(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Shrink an ``H x W x 3`` or ``H x W`` uint8 array to ``size = (height, width)`` with Lanczos."""
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    image = Image.fromarray(array)
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))


def encode(array: np.ndarray, fmt: str) -> bytes:
    """Encode ``array`` as ``"jpeg"`` (quality 90, like the reference's resized copy) or ``"png"``."""
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def file_state(path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a file, or None when it is missing (used to detect changes)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def is_file(path) -> bool:
    return Path(path).is_file()
