"""The one image-size limit of harmonize, checked from the file header before any decoding.

A small file can hold a huge image: a 95 KB 1-bit PNG of 28000 x 28000 pixels decodes to
784 million pixels (2.4 GB as RGB, more while converting). Every command that decodes user
files checks the size in the header first and refuses anything above ``max_pixels``:

>>> from harmonize_cli.limits import open_image, DEFAULT_MAX_PIXELS
>>> with open_image("photo.jpg", max_pixels=DEFAULT_MAX_PIXELS) as image:   # lazy: nothing decoded
...     image.draft("RGB", (1024, 1024))                                      # optional: JPEG decodes smaller
...     image.load()

``DEFAULT_MAX_PIXELS`` (200 million, e.g. 16000 x 12500) is far above any real dataset photo
(iHarmony4's largest are about 6000 x 4000 = 24 MP) and keeps one decoded RGB image under
about 0.6 GB. Commands expose it as ``--max-pixels``; ``0`` disables the check.

Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``: a warning above 89 MP, an error above
179 MP) is a process-wide setting. harmonize never changes it at import: the header is read
with Pillow's warning silenced locally, and only when ``max_pixels`` is above Pillow's error
threshold is that global lifted for the duration of one ``Image.open`` call (under a lock)
and restored right after.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

from .errors import HarmonizeError

DEFAULT_MAX_PIXELS = 200_000_000

__all__ = ["DEFAULT_MAX_PIXELS", "ImageTooLargeError", "check_pixels", "image_size", "open_image", "describe"]

_PIL_GLOBAL_LOCK = threading.Lock()


class ImageTooLargeError(HarmonizeError):
    """An image whose header declares more pixels than the limit (nothing was decoded)."""

    def __init__(self, name, width: int, height: int, max_pixels: int):
        self.name = str(name)
        self.width, self.height, self.max_pixels = int(width), int(height), int(max_pixels)
        super().__init__(
            f"{self.name}: {describe(self.width, self.height)}, over the limit of {_megapixels(self.max_pixels)}",
            "raise --max-pixels if the image is genuine; 0 disables the limit",
        )

    @property
    def reason(self) -> str:
        """The message without the file name (for per-file reports)."""
        return f"too large: {describe(self.width, self.height)}, over --max-pixels ({_megapixels(self.max_pixels)})"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} MP" if pixels >= 10_000_000 else f"{pixels / 1e6:.2g} MP"


def describe(width: int, height: int) -> str:
    """``"28000x28000 pixels (784 MP)"``."""
    return f"{int(width)}x{int(height)} pixels ({_megapixels(int(width) * int(height))})"


def _resolve(max_pixels) -> int | None:
    if max_pixels is None:
        return DEFAULT_MAX_PIXELS
    max_pixels = int(max_pixels)
    if max_pixels < 0:
        raise ValueError(f"max_pixels must be >= 0, got {max_pixels}")
    return max_pixels or None  # 0: no limit


def check_pixels(name, width: int, height: int, max_pixels=DEFAULT_MAX_PIXELS) -> None:
    """Raise :class:`ImageTooLargeError` when ``width * height`` exceeds the limit (0: no limit)."""
    limit = _resolve(max_pixels)
    if limit is not None and int(width) * int(height) > limit:
        raise ImageTooLargeError(name, width, height, limit)


def _name_of(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(Path(source))
    return str(getattr(source, "name", None) or "<image data>")


def _open_header(source, lift_pillow_guard: bool):
    """``Image.open`` (header only), with Pillow's process-wide guard lifted for this call if asked."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if not lift_pillow_guard:
            return Image.open(source)
        with _PIL_GLOBAL_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(source)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def open_image(source, max_pixels=DEFAULT_MAX_PIXELS):
    """Open an image lazily (header only) and refuse it when it has more than ``max_pixels``.

    ``source``: a path or a binary file object. Returns Pillow's (unloaded) image: call
    ``draft()`` / ``load()`` on it; use it as a context manager to close the file. Raises
    :class:`ImageTooLargeError` (a ``HarmonizeError``, one line naming the file and
    ``--max-pixels``); Pillow's own exceptions (``FileNotFoundError``,
    ``UnidentifiedImageError``, ``OSError``) pass through for the caller to word.
    ``max_pixels`` 0 disables the check (and Pillow's guard, for this call only).
    """
    from PIL import Image

    limit = _resolve(max_pixels)
    name = _name_of(source)
    pil_max = Image.MAX_IMAGE_PIXELS
    # Pillow raises above 2 x its global; below our limit that must not happen
    lift = pil_max is not None and (limit is None or limit > 2 * pil_max)
    start = source.tell() if hasattr(source, "tell") else None
    try:
        image = _open_header(source, lift)
    except Image.DecompressionBombError:
        # Pillow's guard (lowered by someone else since) refused first: read the real size
        if start is not None:
            source.seek(start)
        image = _open_header(source, True)
    width, height = image.size
    try:
        check_pixels(name, width, height, limit or 0)
    except ImageTooLargeError:
        image.close()
        raise
    return image


def image_size(source, max_pixels=0) -> tuple[int, int]:
    """``(width, height)`` from the header only; with ``max_pixels`` > 0, also checked."""
    with open_image(source, max_pixels=max_pixels) as image:
        return tuple(int(v) for v in image.size)
