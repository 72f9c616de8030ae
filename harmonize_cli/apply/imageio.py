"""Reading composites and masks, writing results: every format, mode and bit depth `apply` accepts.

Composites come out as 8-bit RGB plus, when the file has one, an 8-bit alpha channel; EXIF
orientation is applied. Masks are read by :mod:`.maskio` (float32 arrays in [0, 1]). Results are written
atomically (a temporary file beside the target, then a rename), with the input's ICC profile and
EXIF (orientation reset, since the pixels are already upright).

>>> image = read_image("composite.jpg")          # ImageData: .rgb, .alpha, .gray, .format, ...
>>> write_image("out.png", result, like=image)   # atomic
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..atomic import atomic_write_bytes
from ..limits import DEFAULT_MAX_PIXELS, UnsupportedImageError, open_image
from ..errors import HarmonizeError
from ..readback import check_image_file
from ..warncapture import collected

# suffix -> Pillow format name
IMAGE_EXTENSIONS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF",
}
OUTPUT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
LOSSLESS_FORMATS = {"PNG", "BMP", "TIFF"}  # plus WebP written with quality 100
_HAS_ALPHA = {"PNG", "WEBP", "TIFF", "BMP"}
_ORIENTATION = 0x0112
# a TIFF directory's tags that describe the photo, not its pixel layout (what is kept of it as EXIF):
# ImageDescription, Make, Model, XResolution, YResolution, ResolutionUnit, Software, DateTime,
# Artist, HostComputer, Copyright
_TIFF_DESCRIPTIVE_TAGS = {270, 271, 272, 282, 283, 296, 305, 306, 315, 316, 33432}
_EXIF_SUB_IFDS = {0x8769, 0x8825}  # the EXIF and GPS sub-directories



class InputError(HarmonizeError, ValueError):
    """An input image or mask that cannot be used (corrupt, unsupported, mismatched)."""


def is_image_file(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


@dataclass
class ImageData:
    """A decoded composite: upright 8-bit RGB pixels plus what is needed to write it back alike."""

    rgb: Optional[np.ndarray]  # H x W x 3 uint8 (None: read_image(as_decoded=True), see ``pil_rgb``)
    alpha: Optional[np.ndarray] = None  # H x W uint8, or None
    gray: bool = False  # the source had one colour channel
    format: Optional[str] = None  # Pillow format of the source file
    mode: str = "RGB"  # Pillow mode of the source
    bit_depth: int = 8
    icc_profile: Optional[bytes] = None
    exif: Optional[bytes] = None  # with the orientation tag removed
    # the decoded RGB Pillow image, kept until the network's view is made from it (no copy back
    # into Pillow for the resize); :meth:`Harmonizer.prepare` drops it. With ``as_decoded`` it is
    # the only copy of the pixels (``rgb`` is None): apply converts just the mask's box to an
    # array and pastes its result back into this image, which it then encodes
    pil_rgb: Optional[object] = field(default=None, repr=False, compare=False)

    @property
    def size(self):
        """(width, height), like Pillow."""
        if self.rgb is None:
            return self.pil_rgb.size
        return self.rgb.shape[1], self.rgb.shape[0]

    def pixels(self) -> np.ndarray:
        """``rgb``, converted from ``pil_rgb`` (once) when it was left out."""
        if self.rgb is None:
            self.rgb = np.asarray(self.pil_rgb)
        return self.rgb


# --------------------------------------------------------------------------------------- decoding

def _open(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Decode an image file, refusing it from its header when it has more than ``max_pixels``
    (:mod:`harmonize_cli.limits`; 0: no limit) so that an image bomb is never decoded."""
    from PIL import ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with collected() as caught:  # this thread's warnings only: files are decoded in a pool
            image = open_image(path, max_pixels)
            _read_whole(image, path)
            image.load()
            fmt = image.format
            upright = _upright(image, ImageOps)
            upright.format = fmt
        upright.open_warnings = list(getattr(image, "open_warnings", [])) + caught.messages()
        return upright
    except UnsupportedImageError as exc:
        raise InputError(f"{path}: {exc.reason}") from None
    except UnidentifiedImageError as exc:
        raise InputError(f"{path}: not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: cannot decode ({str(exc).splitlines()[0][:160] or type(exc).__name__})") from exc


DECODE_BLOCK_LIMIT = 1 << 26  # bytes read per decoder call at most (64 MiB)


def _read_whole(image, path) -> None:
    """Let Pillow hand the decoder the whole file in one call instead of 64 KiB blocks: the
    decoder releases the GIL for each call, and a thread decoding beside busy Python threads
    (``import torch``, the pipeline) waited for the GIL between blocks."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return
    image.decodermaxblock = max(getattr(image, "decodermaxblock", 65536), min(size, DECODE_BLOCK_LIMIT))


def _upright(image, ImageOps):
    """The image turned upright by its EXIF orientation; without one, the image itself (no copy
    of a photo that is already upright)."""
    try:
        ImageOps.exif_transpose(image, in_place=True)  # Pillow >= 9.4
        return image
    except TypeError:
        return ImageOps.exif_transpose(image)


def _scale_to_uint8(array: np.ndarray, bit_depth: Optional[int] = None) -> np.ndarray:
    """Any integer or float pixel array to uint8 (16-bit: round(x / 257); float: [0, 1])."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        return np.round(np.clip(np.nan_to_num(array.astype(np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)
    if bit_depth is None:
        bit_depth = 8 if array.size == 0 or array.max() <= 255 else 16
    if bit_depth <= 8:
        return np.clip(array, 0, 255).astype(np.uint8)
    return np.round(np.clip(array, 0, 65535).astype(np.float32) / 257.0).astype(np.uint8)


def _pil_to_arrays(image):
    """(rgb uint8 H x W x 3, alpha uint8 H x W or None, gray, bit depth) of a Pillow image."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image)
        depth = 16 if (mode != "I" or (values.size and values.max() > 255)) else 8
        gray = _scale_to_uint8(values.astype(np.int64), depth)
        return np.repeat(gray[..., None], 3, axis=2), None, True, depth
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        peak = float(values.max()) if values.size else 0.0
        scale = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0
        gray = _scale_to_uint8(values / scale)
        return np.repeat(gray[..., None], 3, axis=2), None, True, 32
    if mode in ("1", "L"):
        gray = np.asarray(image.convert("L"))
        return np.repeat(gray[..., None], 3, axis=2), None, True, 8
    if mode in ("LA", "La"):
        values = np.asarray(image.convert("LA"))
        return np.repeat(values[..., :1], 3, axis=2), np.ascontiguousarray(values[..., 1]), True, 8
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode in ("RGBA", "RGBa"):
        values = np.asarray(image.convert("RGBA"))
        return np.ascontiguousarray(values[..., :3]), np.ascontiguousarray(values[..., 3]), False, 8
    return np.asarray(image if mode == "RGB" else image.convert("RGB")), None, False, 8


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS, as_decoded: bool = False) -> ImageData:
    """Decode a composite: EXIF orientation applied; any mode and bit depth to 8-bit RGB (+ alpha).
    A file over ``max_pixels`` (from its header; 0: no limit) is refused before decoding.
    ``as_decoded``: an RGB image is not converted to an array (``rgb`` is None, ``pil_rgb`` holds
    the pixels, its ``info`` cleared so that it encodes like a new image)."""
    image = _open(path, max_pixels)
    source_mode = image.mode
    icc_profile, exif = image.info.get("icc_profile"), _readable_exif(image, path)
    if as_decoded and image.mode == "RGB":
        image.info = {}
        return ImageData(rgb=None, format=image.format, mode=source_mode, icc_profile=icc_profile, exif=exif,
                         pil_rgb=image)
    rgb, alpha, gray, depth = _pil_to_arrays(image)
    return ImageData(rgb=np.ascontiguousarray(rgb), alpha=alpha, gray=gray, format=image.format, mode=source_mode,
                     bit_depth=depth, icc_profile=icc_profile, exif=exif,
                     pil_rgb=image if image.mode == "RGB" else None)


def _exif_of(image) -> Optional[bytes]:
    """The EXIF block to carry over to the result, orientation removed; None without one.

    Only EXIF is carried: a TIFF's ``getexif()`` is the file's own image directory (size, bit
    depth, photometric, strips), which written back as ``exif=`` contradicts the result's pixels
    and makes it unreadable; of a TIFF only the descriptive tags and the EXIF/GPS sub-directories
    are kept. Unreadable EXIF is dropped, not fatal.
    """
    from PIL import Image

    try:
        exif_data = image.getexif()
        if not len(exif_data):
            return None
        if image.format == "TIFF":
            kept = Image.Exif()
            for tag in _TIFF_DESCRIPTIVE_TAGS & set(exif_data):
                kept[tag] = exif_data[tag]
            for tag in _EXIF_SUB_IFDS & set(exif_data):
                sub = exif_data.get_ifd(tag)
                if sub:
                    kept[tag] = dict(sub)
            exif_data = kept
        exif_data.pop(_ORIENTATION, None)
        return exif_data.tobytes() if len(exif_data) else None
    except Exception:  # unreadable EXIF is dropped, not fatal
        return None


def _readable_exif(image, path) -> Optional[bytes]:
    """:func:`_exif_of` the image, with Pillow's warnings about the file ("Corrupt EXIF data",
    ...) kept from the terminal: they are one -v line for the file, and a damaged EXIF block is
    not copied to the result."""
    from .. import console

    with collected() as caught:
        exif = _exif_of(image)
    notes = list(getattr(image, "open_warnings", [])) + caught.messages()
    if not notes:
        return exif
    damaged_exif = any("exif" in note.lower() for note in notes)
    console.debug(f"{path}: {notes[0][:160]}" + ("; its EXIF data is not copied to the result" if damaged_exif else ""))
    return None if damaged_exif else exif


def image_to_arrays(image):
    """A numpy array or Pillow image to (rgb uint8 H x W x 3, alpha or None, gray).

    Arrays: H x W (gray), H x W x 1, H x W x 2 (gray + alpha), H x W x 3 (RGB), H x W x 4 (RGBA);
    uint8, uint16 (16-bit), bool, or float in [0, 1]. Pillow images: any mode, taken as they are
    (no EXIF rotation; :func:`read_image` applies it for files).
    """
    if isinstance(image, (str, Path)):
        data = read_image(image)
        return data.rgb, data.alpha, data.gray
    if isinstance(image, ImageData):
        return image.pixels(), image.alpha, image.gray
    if hasattr(image, "mode") and hasattr(image, "getbands"):
        rgb, alpha, gray, _ = _pil_to_arrays(image)
        return np.ascontiguousarray(rgb), alpha, gray
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"image array has shape {array.shape}",
                         "pass H x W x C (channels last), e.g. tensor.permute(1, 2, 0).numpy()")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"image array has shape {array.shape}", "expected H x W, H x W x 3 or H x W x 4")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError("image is empty")
    depth = None
    if np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8:
        depth = 16 if array.dtype.itemsize >= 2 and array.size and array.max() > 255 else 8
    pixels = _scale_to_uint8(array, depth)
    channels = pixels.shape[2]
    if channels <= 2:
        rgb = np.repeat(pixels[..., :1], 3, axis=2)
        alpha = np.ascontiguousarray(pixels[..., 1]) if channels == 2 else None
        return rgb, alpha, True
    alpha = np.ascontiguousarray(pixels[..., 3]) if channels == 4 else None
    return np.ascontiguousarray(pixels[..., :3]), alpha, False


# --------------------------------------------------------------------------------------- encoding

def output_suffix(input_path, ext: str = "same") -> str:
    """The output file suffix for ``--ext`` (``same`` keeps the input's suffix)."""
    if ext in (None, "same"):
        return Path(input_path).suffix
    try:
        return OUTPUT_EXTENSIONS[ext.lower().lstrip(".")]
    except KeyError:
        raise InputError(f"unknown output format {ext!r}", "use same, png, jpg or webp") from None


def format_for(path) -> str:
    suffix = Path(path).suffix.lower()
    try:
        return IMAGE_EXTENSIONS[suffix]
    except KeyError:
        raise InputError(f"{path}: unknown image suffix {suffix!r}") from None


def is_lossless(fmt: str, quality: int) -> bool:
    return fmt in LOSSLESS_FORMATS or (fmt == "WEBP" and quality >= 100)


def to_pil(rgb: np.ndarray, alpha: Optional[np.ndarray] = None, gray: bool = False, fmt: str = "PNG"):
    """Arrays to a Pillow image in a mode the format can store (alpha dropped for JPEG); ``rgb``
    may be a Pillow RGB image already (apply's result pasted into the decoded composite)."""
    from PIL import Image

    if isinstance(rgb, Image.Image):
        if gray or alpha is not None:
            rgb = np.asarray(rgb)
        else:
            return rgb
    keep_alpha = alpha is not None and fmt in _HAS_ALPHA
    if gray:
        image = Image.fromarray(np.ascontiguousarray(rgb)).convert("L")  # exact for gray pixels
        if keep_alpha:
            if fmt in ("PNG", "TIFF"):
                return Image.merge("LA", (image, Image.fromarray(alpha)))
            image = image.convert("RGB")
        else:
            return image
    else:
        image = Image.fromarray(np.ascontiguousarray(rgb))
    if keep_alpha:
        image = image.convert("RGB")
        image.putalpha(Image.fromarray(alpha))
    return image


def encode_image(rgb, alpha=None, *, gray=False, fmt="PNG", quality=95, icc_profile=None, exif=None,
                 png_compress_level=3) -> bytes:
    """Encode a result to bytes in ``fmt`` (JPEG/WebP at ``quality``; WebP lossless at 100)."""
    image = to_pil(rgb, alpha, gray, fmt)
    options = {}
    if icc_profile and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["icc_profile"] = icc_profile
    if exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=int(quality), subsampling=0 if quality >= 90 else 2, optimize=False)
    elif fmt == "WEBP":
        options.update(quality=int(min(quality, 100)), lossless=quality >= 100, method=4)
        if quality >= 100:
            options["exact"] = True  # keep the colour of transparent pixels too
    elif fmt == "PNG":
        options.update(compress_level=png_compress_level)
    elif fmt == "TIFF":
        options.update(compression="tiff_lzw")
    try:
        return _saved(image, fmt, options)
    except (OSError, ValueError, TypeError):
        if "exif" not in options and "icc_profile" not in options:
            raise
        options.pop("exif", None)  # a malformed EXIF block must not cost the result
        options.pop("icc_profile", None)
        return _saved(image, fmt, options)


def _saved(image, fmt: str, options: dict) -> bytes:
    """The bytes of ``image.save(format=fmt, **options)``, encoded into an in-memory file with a
    descriptor (Linux's memfd; elsewhere an unnamed temporary file). Pillow's encoders write to a
    descriptor with the GIL released, but hold it for the whole encode when they write into a
    Python buffer (``io.BytesIO``): beside a thread encoding JPEGs into a BytesIO, a forward pass on
    another thread took 3.9 s instead of 79 ms (no slower beside the same encodes into a memfd;
    docs/benchmarks.md, "Apply against its floor")."""
    with _scratch_file() as handle:
        image.save(handle, format=fmt, **options)
        handle.seek(0)
        return handle.read()


def _scratch_file():
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        try:
            return open(memfd_create("harmonize-encode", getattr(os, "MFD_CLOEXEC", 0)), "w+b")
        except OSError:  # no memfd (an old kernel, a sandbox): a temporary file instead
            pass
    import tempfile

    return tempfile.TemporaryFile()


def write_image(target, rgb, alpha=None, *, like: Optional[ImageData] = None, gray=None, quality=95,
                fmt=None) -> Path:
    """Write a result atomically; the format comes from ``fmt`` or the target's suffix.

    ``like``: the decoded input, whose gray-ness, ICC profile and EXIF are carried over.
    The written file is read back (header: format and size) before it replaces ``target``
    (:mod:`harmonize_cli.readback`): a result that would not read back raises
    :class:`~harmonize_cli.readback.UnreadableOutputError` and leaves nothing.
    """
    return encode_for_writing(target, rgb, alpha, like=like, gray=gray, quality=quality, fmt=fmt)()


def encode_for_writing(target, rgb, alpha=None, *, like: Optional[ImageData] = None, gray=None, quality=95,
                       fmt=None) -> Callable[[], Path]:
    """:func:`write_image` in two steps: the encoding now (CPU work), and the returned function
    that writes the bytes (temporary file, fsync, read-back, rename: mostly waiting for the disk),
    which the apply pipeline runs on a thread that does not hold a core."""
    target = Path(target)
    fmt = fmt or format_for(target)
    if gray is None:
        gray = bool(like.gray) if like is not None else False
    data = encode_image(rgb, alpha, gray=gray, fmt=fmt, quality=quality,
                        icc_profile=like.icc_profile if like is not None else None,
                        exif=like.exif if like is not None else None)
    size = rgb.size if hasattr(rgb, "getbands") else (rgb.shape[1], rgb.shape[0])

    def write() -> Path:
        atomic_write_bytes(target, data, check=lambda tmp: check_image_file(tmp, size, fmt, name=target))
        return target

    return write


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    """Two H x W x 3 images next to each other with a white gap (for ``--comparison``)."""
    height = max(left.shape[0], right.shape[0])
    canvas = np.full((height, left.shape[1] + gap + right.shape[1], 3), 255, dtype=np.uint8)
    canvas[:left.shape[0], :left.shape[1]] = left
    canvas[:right.shape[0], left.shape[1] + gap:] = right
    return canvas
