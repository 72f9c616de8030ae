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
  shrunk with Lanczos (PIL's, which is antialiased);
- every file is opened through :mod:`harmonize_cli.limits`: its header size is checked against
  ``max_pixels`` before anything is decoded (:class:`~harmonize_cli.limits.ImageTooLargeError`),
  and Pillow's process-wide limit is left as it is;
- a JPEG over ``DRAFT_ABOVE_PIXELS`` that is to be shrunk is decoded at a reduced DCT scale
  (Pillow's ``draft``: 1/2, 1/4 or 1/8, never below twice the stored size) before the Lanczos
  step, so a 150 MP photo never occupies 450 MB; smaller images (all of iHarmony4) are decoded
  in full, so their pixels stay those of the reference's resize.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from ..limits import DEFAULT_MAX_PIXELS, ImageTooLargeError, UnsupportedImageError, open_image

JPEG_QUALITY = 90  # the reference re-encodes resized copies at this quality
DRAFT_ABOVE_PIXELS = 50_000_000  # JPEGs larger than this are decoded at a reduced scale when shrunk

__all__ = ["DecodeError", "ImageTooLargeError", "probe", "decode_image", "decode_mask", "decode_capped"]


class DecodeError(Exception):
    """A file that exists but cannot be read as an image (message says why)."""


def require_regular_file(path) -> None:
    """Raise DecodeError unless ``path`` is a regular file (following links): opening a named
    pipe (FIFO) or a device would block forever or never end. FileNotFoundError when missing."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise DecodeError(f"not a regular file: {kind}")


def read_bytes(path) -> bytes:
    require_regular_file(path)
    with open(path, "rb") as handle:
        return handle.read()


def _open(source, max_pixels=DEFAULT_MAX_PIXELS) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        require_regular_file(source)  # a FIFO would block the open forever
    try:
        return open_image(source, max_pixels)
    except (FileNotFoundError, ImageTooLargeError):
        raise
    except UnsupportedImageError as exc:
        raise DecodeError(exc.reason) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a readable image ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # PIL puts the file name in some messages; keep the reason short and path-free
    return text.split(" '")[0] if "cannot identify image file" in text else text


def probe(source, max_pixels=DEFAULT_MAX_PIXELS) -> tuple[tuple[int, int], str]:
    """``((height, width), format)`` from the file header only (cheap; no pixel decoding).

    Raises ImageTooLargeError above ``max_pixels`` (0: no limit), DecodeError for a file that
    is not an image.
    """
    image = _open(source, max_pixels)
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


def _decode(image: Image.Image) -> Image.Image:
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DecodeError(f"cannot decode image data ({_reason(exc)})") from None
    return _to_uint8(image)


def _rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def _mask_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("L", "1"):
        image = image.convert("L") if image.mode == "1" else image
        return np.asarray(image)
    if image.mode == "LA":
        return np.asarray(image.getchannel(0))
    if image.mode != "RGB":
        image = image.convert("RGB")
    # OpenCV reads BGR; the reference takes channel 0 of that, i.e. blue.
    return np.ascontiguousarray(np.asarray(image)[:, :, 2])


def decode_image(source, max_pixels=DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file (path or bytes) to ``H x W x 3`` uint8 RGB."""
    with _open(source, max_pixels) as image:
        return _rgb_array(_decode(image))


def decode_mask(source, max_pixels=DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a mask file (path or bytes) to ``H x W`` uint8, reading it like the reference does."""
    with _open(source, max_pixels) as image:
        return _mask_array(_decode(image))


def decode_capped(source, mask: bool = False, max_side: int = 0, max_pixels=DEFAULT_MAX_PIXELS):
    """Decode an image (or a mask) at its stored size, the long side capped at ``max_side``.

    Returns ``(array, (height, width))``: the array at ``capped_size(height, width, max_side)``
    and the size its header declares. The header is checked against ``max_pixels`` first; a
    large JPEG is decoded at a reduced scale before the Lanczos step (see the module notes).
    """
    with _open(source, max_pixels) as image:
        width, height = (int(v) for v in image.size)
        stored = capped_size(height, width, max_side)
        if stored != (height, width) and width * height > DRAFT_ABOVE_PIXELS and image.format == "JPEG":
            image.draft(image.mode, (2 * stored[1], 2 * stored[0]))  # never below 2x the target
        decoded = _decode(image)
        array = _mask_array(decoded) if mask else _rgb_array(decoded)
    return resize_lanczos(array, stored), (height, width)


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
