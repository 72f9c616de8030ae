"""Finding the photos and their object masks for ``harmonize synth``, and checking them.

Photos are paired with mask files exactly as ``harmonize apply`` pairs composites with masks
(:mod:`harmonize_cli.apply.pairing`). A photo with no mask file (or when no mask folder is given) may
carry its mask in its alpha channel (RGBA / LA: the RGB holds the whole photo, the alpha marks
the object). A mask pixel is *foreground* when its value is at least 128 of 255.

Nothing here raises for a bad photo: each one becomes a :class:`Skipped` entry with the file and
the reason, and the run goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..apply.imageio import InputError, read_image
from ..apply.maskio import read_mask
from ..errors import UsageError
from ..apply.pairing import find_pairs, list_images

FOREGROUND_LEVEL = 128  # mask values >= this (of 255) are the object
ALPHA = "alpha"  # mask source of a photo whose mask is its alpha channel


@dataclass
class Skipped:
    """A photo (or one of its composites) left out, and why."""

    file: str
    reason: str


@dataclass
class Photo:
    """A usable photo: where it and its mask come from, and the output stem it gets."""

    source: Path
    mask_source: str  # a mask file's path, or "alpha"
    name: str = ""  # output stem: no '_', unique (case-insensitively)
    height: int = 0
    width: int = 0
    foreground_pixels: int = 0
    lab_mean: list = field(default_factory=list)  # L*a*b* of the foreground (mask >= 128)
    lab_std: list = field(default_factory=list)


@dataclass
class Loaded:
    """Decoded pixels of a photo: 8-bit RGB and the 8-bit mask."""

    rgb: np.ndarray
    mask: np.ndarray


def gather(images_dir, masks_dir=None, exclude=()) -> tuple[list[Photo], list[Skipped]]:
    """Photos under ``images_dir`` with their mask source, and the photos that have none."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        what = "does not exist" if not images_dir.exists() else "is not a folder"
        raise UsageError(f"--images {images_dir} {what}", "give the folder holding your photos")
    photos: list[Photo] = []
    skipped: list[Skipped] = []
    if masks_dir is None:
        for path, _ in list_images(images_dir, exclude=exclude):
            photos.append(Photo(path, ALPHA))
    else:
        masks_dir = Path(masks_dir)
        if not masks_dir.is_dir():
            what = "does not exist" if not masks_dir.exists() else "is not a folder"
            raise UsageError(f"--masks {masks_dir} {what}", "give the folder holding one mask per photo")
        for pair in find_pairs(images_dir, masks_dir, exclude=exclude):
            if pair.ok:
                photos.append(Photo(pair.composite, str(pair.mask)))
            elif pair.rule is None:  # no mask file at all: the alpha channel may hold it
                photos.append(Photo(pair.composite, ALPHA + ":" + (pair.problem or "no mask found")))
            else:  # ambiguous: never guessed
                skipped.append(Skipped(str(pair.composite), pair.problem or "no mask"))
    if not photos and not skipped:
        raise UsageError(f"no images in {images_dir}", "supported: .jpg .jpeg .png .webp .bmp .tif .tiff")
    return photos, skipped


class BadPhoto(Exception):
    """A photo or mask that cannot be used: ``file`` and ``reason``."""

    def __init__(self, file, reason: str):
        self.file, self.reason = str(file), reason
        super().__init__(f"{file}: {reason}")


def _decode(reader, path):
    try:
        return reader(path)
    except InputError as exc:
        reason = exc.message
        prefix = f"{path}: "
        raise BadPhoto(path, reason.removeprefix(prefix)) from None
    except OSError as exc:
        raise BadPhoto(path, f"cannot read file ({exc.strerror or exc})") from None


def load(photo: Photo) -> Loaded:
    """Decode a photo and its mask and check them; raises :class:`BadPhoto` naming the file."""
    image = _decode(read_image, photo.source)
    if photo.mask_source.startswith(ALPHA):
        mask_file = photo.source
        alpha = image.alpha
        if alpha is None or (alpha.size and int(alpha.min()) == 255):
            why = photo.mask_source.partition(":")[2]
            missing = "no alpha channel" if alpha is None else "its alpha channel is fully opaque"
            raise BadPhoto(photo.source, f"{why}; {missing}" if why else f"no mask: {missing}")
        mask = np.ascontiguousarray(alpha)
    else:
        mask_file = Path(photo.mask_source)
        mask = np.round(_decode(read_mask, mask_file) * 255.0).astype(np.uint8)
    height, width = image.rgb.shape[:2]
    if mask.shape != (height, width):
        raise BadPhoto(mask_file, f"mask is {mask.shape[1]}x{mask.shape[0]} but photo "
                                  f"{photo.source.name} is {width}x{height}")
    foreground = int(np.count_nonzero(mask >= FOREGROUND_LEVEL))
    if foreground == 0:
        raise BadPhoto(mask_file, f"mask has no foreground (no value >= {FOREGROUND_LEVEL} of 255; "
                                  "white marks the object)")
    if foreground == mask.size:
        raise BadPhoto(mask_file, "mask covers the whole photo (no background to harmonize with)")
    return Loaded(image.rgb, mask)


def describe(photo: Photo) -> str:
    """The mask source as the manifest records it: a path, or ``alpha``."""
    return ALPHA if photo.mask_source.startswith(ALPHA) else photo.mask_source


_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def assign_names(photos: list[Photo]) -> None:
    """Give every photo a unique output stem without ``_`` (the iHarmony4 name mapping splits on
    it) or other unsafe characters: ``my_photo 1.jpg`` -> ``my-photo-1``; clashes get ``-2``, ``-3``."""
    taken: set[str] = set()
    for photo in photos:
        base = _UNSAFE.sub("-", photo.source.stem).strip("-") or "photo"
        name, counter = base, 1
        while name.lower() in taken:
            counter += 1
            name = f"{base}-{counter}"
        taken.add(name.lower())
        photo.name = name


def same_pixels_when_read_as_dataset(path: Path, rgb: np.ndarray) -> bool:
    """Whether the dataset reader decodes ``path`` to exactly ``rgb`` (then the file can be copied
    as the real image). False for EXIF-rotated photos, 16-bit files, alpha channels, etc."""
    from ..data import imageio

    if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return False
    try:
        from PIL import Image

        with Image.open(path) as image:
            if image.mode not in ("RGB", "L"):
                return False
        decoded = imageio.decode_image(path)
    except (OSError, ValueError, imageio.DecodeError):
        return False
    return decoded.shape == rgb.shape and bool(np.array_equal(decoded, rgb))
