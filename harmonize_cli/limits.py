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

The format is decided from the file's first bytes, not its name nor Pillow's plugin list:
only PNG, JPEG (and MPO), TIFF, BMP and WebP are opened, the formats whose ``Image.open``
reads a header and decodes nothing. Anything else is refused before Pillow sees it
(:class:`UnsupportedImageError`): an ICO "icon", for one, decodes the whole PNG it wraps
inside ``Image.open``, so a 1 MB ``.png`` that is really an ICO around a 20000 x 20000 PNG
would cost gigabytes before any size check could run.

Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``: a warning above 89 MP, an error above
179 MP) is a process-wide setting and stays on as a second wall. harmonize never changes it
at import: the header is read with Pillow's warning silenced locally, and only when
``max_pixels`` is above Pillow's error threshold is that global raised, to exactly our limit
(never removed, unless ``max_pixels`` is 0), for the duration of one ``Image.open`` call
(under a lock) and restored right after.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .errors import HarmonizeError
from .warncapture import collected

DEFAULT_MAX_PIXELS = 200_000_000

__all__ = ["DEFAULT_MAX_PIXELS", "ImageTooLargeError", "UnsupportedImageError", "check_pixels", "image_size",
           "open_image", "describe", "sniff_format"]

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


class UnsupportedImageError(HarmonizeError, ValueError):
    """A file whose first bytes are not one of the formats harmonize opens (nothing was decoded)."""

    def __init__(self, name, reason: str):
        self.name = str(name)
        self._reason = reason
        super().__init__(f"{self.name}: {reason}", "convert it to PNG or JPEG")

    @property
    def reason(self) -> str:
        """The message without the file name (for per-file reports)."""
        return self._reason


ACCEPTED_FORMATS_TEXT = "PNG, JPEG, TIFF, BMP and WebP"
_SNIFF_BYTES = 16
_FOREIGN = (  # formats recognised only to name them in the refusal
    (b"\x00\x00\x01\x00", "an ICO icon file (opening one decodes it in full)"),
    (b"\x00\x00\x02\x00", "a CUR cursor file"),
    (b"GIF8", "a GIF file"),
    (b"%PDF", "a PDF document"),
    (b"8BPS", "a Photoshop file"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 file"),
    (b"\xffO\xffQ", "a JPEG 2000 codestream"),
    (b"icns", "an Apple icon file"),
)


def sniff_format(head: bytes) -> str | None:
    """The Pillow format id of an accepted image from its first bytes (16 are enough), else None.

    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n...")
    'PNG'
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _refusal(head: bytes) -> str:
    """Why a file with these first bytes is not opened, in a few words."""
    for magic, what in _FOREIGN:
        if head.startswith(magic):
            return f"{what}, which harmonize does not read (it reads {ACCEPTED_FORMATS_TEXT})"
    if not head:
        return "an empty file (0 bytes), not an image"
    return f"not a {ACCEPTED_FORMATS_TEXT.replace(' and ', ' or ')} image (judged by its first bytes)"


def _check_format(source, name: str) -> list[str]:
    """The Pillow formats ``Image.open`` may try for ``source`` (the file position is kept)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    else:
        start = source.tell()
        head = source.read(_SNIFF_BYTES)
        source.seek(start)
    fmt = sniff_format(head)
    if fmt is None:
        raise UnsupportedImageError(name, _refusal(head))
    return ["JPEG", "MPO"] if fmt == "JPEG" else [fmt]  # Pillow names multi-picture JPEGs MPO


def _open_header(source, formats, pillow_max):
    """``Image.open`` (header only) restricted to ``formats``, with Pillow's process-wide guard
    set to ``pillow_max`` for this call (``False``: left as it is)."""
    from PIL import Image

    with collected() as caught:  # this thread's warnings only (apply opens files in a pool)
        if pillow_max is False:
            image = Image.open(source, formats=formats)
        else:
            with _PIL_GLOBAL_LOCK:
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = pillow_max
                try:
                    image = Image.open(source, formats=formats)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
    # Pillow's warnings while reading the header ("Corrupt EXIF data", ...) never reach the
    # terminal raw: they travel with the image for the caller to report once per file
    image.open_warnings = caught.messages(skip=(Image.DecompressionBombWarning,))
    return image


def _pillow_guard_for(limit) -> int | None | bool:
    """Pillow's ``MAX_IMAGE_PIXELS`` for one open: unchanged (False) when its error threshold
    (twice the value) is at or above ``limit``; else raised so that it errors just above
    ``limit``; None (off) only when the limit is off."""
    from PIL import Image

    pil_max = Image.MAX_IMAGE_PIXELS
    if pil_max is None:
        return False
    if limit is None:
        return None
    return False if 2 * pil_max >= limit else (limit + 1) // 2


def open_image(source, max_pixels=DEFAULT_MAX_PIXELS):
    """Open an image lazily (header only) and refuse it when it has more than ``max_pixels``.

    ``source``: a path or a binary file object. The format is decided from the first bytes:
    PNG, JPEG, TIFF, BMP and WebP are opened; anything else raises
    :class:`UnsupportedImageError` before Pillow reads it. Returns Pillow's (unloaded) image:
    call ``draft()`` / ``load()`` on it; use it as a context manager to close the file. Raises
    :class:`ImageTooLargeError` (a ``HarmonizeError``, one line naming the file and
    ``--max-pixels``); Pillow's own exceptions (``FileNotFoundError``,
    ``UnidentifiedImageError``, ``OSError``) pass through for the caller to word.
    ``max_pixels`` 0 disables the check (and Pillow's guard, for this call only). Warnings
    Pillow gave while reading the header (a damaged EXIF block, ...) are not shown: they are in
    the image's ``open_warnings`` (a list of one-line strings).
    """
    from PIL import Image

    limit = _resolve(max_pixels)
    name = _name_of(source)
    formats = _check_format(source, name)
    start = source.tell() if hasattr(source, "tell") else None
    try:
        image = _open_header(source, formats, _pillow_guard_for(limit))
    except Image.DecompressionBombError:
        # Pillow's guard refused first (its threshold is never below ours): read the real size
        # for the message; the format is one whose open reads a header only
        if start is not None:
            source.seek(start)
        image = _open_header(source, formats, None)
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
