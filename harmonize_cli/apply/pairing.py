"""Which mask belongs to which composite: explicit rules, never a guess.

For a composite ``<dir>/<stem>.<ext>`` (``<dir>`` relative to COMPOSITES), the mask is looked up
in MASKS under the same relative ``<dir>``, by these rules in order; the first rule that finds
any file decides:

1. the same stem with any image extension: ``photo.jpg`` -> ``photo.png``;
2. the iHarmony4 naming, the stem without its last ``_`` part: ``x_1_2.jpg`` -> ``x_1.png``;
3. ``<stem>_mask`` with any image extension: ``photo.jpg`` -> ``photo_mask.png``.

A rule that finds two or more files (``photo.png`` and ``photo.jpg``) makes the composite
*ambiguous*; a composite for which no rule finds a file is *unpaired*. Both are reported and
skipped. When COMPOSITES and MASKS are the same folder, files used as masks, and files named
``*_mask.*``, are not treated as composites.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, List, Optional, Tuple

from .imageio import is_image_file
from ..errors import UsageError

RULES = ("same stem", "iHarmony4 name", "<stem>_mask")


@dataclass
class Pair:
    """A composite and its mask, or the reason it has none."""

    composite: Path
    relative: PurePosixPath  # the composite's path relative to COMPOSITES (its name for a file)
    mask: Optional[Path] = None
    rule: Optional[str] = None  # which rule found the mask ("given" for two files)
    problem: Optional[str] = None  # why there is no mask (unpaired, ambiguous, ...)

    @property
    def ok(self) -> bool:
        return self.mask is not None and self.problem is None


def _is_hidden(relative: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def list_images(root: Path, recursive: bool = False, exclude: Iterable[Path] = ()) -> List[Tuple[Path, PurePosixPath]]:
    """Image files under ``root`` as (path, relative path), sorted; hidden files and anything
    inside ``exclude`` folders (the output folder) are left out."""
    root = Path(root)
    excluded = [Path(os.path.abspath(folder)) for folder in exclude]
    found = []
    if recursive:
        for folder, dirs, files in os.walk(root):
            folder_path = Path(folder)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                             and not any(_inside(Path(os.path.abspath(folder_path / d)), ex) for ex in excluded))
            for name in files:
                path = folder_path / name
                if is_image_file(path) and not name.startswith("."):
                    found.append((path, PurePosixPath(path.relative_to(root).as_posix())))
    else:
        for path in root.iterdir():
            if path.is_file() and is_image_file(path) and not path.name.startswith("."):
                found.append((path, PurePosixPath(path.name)))
    found = [(path, rel) for path, rel in found if not _is_hidden(rel)]
    return sorted(found, key=lambda item: str(item[1]))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


class MaskIndex:
    """Mask files of a folder by (relative folder, stem)."""

    def __init__(self, root: Path, recursive: bool = False, exclude: Iterable[Path] = ()):
        self.root = Path(root)
        self.by_stem: Dict[Tuple[str, str], List[Path]] = {}
        for path, rel in list_images(self.root, recursive, exclude):
            key = (str(rel.parent), rel.stem)
            self.by_stem.setdefault(key, []).append(path)

    def lookup(self, folder: str, stem: str, composite: Path) -> List[Path]:
        return [path for path in self.by_stem.get((folder, stem), []) if not _same_file(path, composite)]

    def find(self, composite: Path, relative: PurePosixPath):
        """(mask, rule, problem) for one composite."""
        folder, stem = str(relative.parent), relative.stem
        candidates_by_rule = [(RULES[0], stem)]
        if "_" in stem.strip("_"):
            candidates_by_rule.append((RULES[1], stem.rsplit("_", 1)[0]))
        candidates_by_rule.append((RULES[2], f"{stem}_mask"))
        for rule, mask_stem in candidates_by_rule:
            matches = self.lookup(folder, mask_stem, composite)
            if len(matches) == 1:
                return matches[0], rule, None
            if len(matches) > 1:
                names = ", ".join(sorted(path.name for path in matches))
                return None, rule, f"ambiguous mask ({rule} rule): {names}"
        looked = ", ".join(f"{mask_stem}.*" for _, mask_stem in candidates_by_rule)
        where = self.root / folder if folder not in ("", ".") else self.root
        return None, None, f"no mask found (looked for {looked} in {where})"


def find_pairs(composites, masks, recursive: bool = False, exclude: Iterable[Path] = ()) -> List[Pair]:
    """Pair every composite under COMPOSITES with its mask in MASKS (folders or single files)."""
    composites, masks = Path(composites), Path(masks)
    exclude = list(exclude)
    if not composites.exists():
        raise UsageError(f"composites {composites} do not exist", "give an image file or a folder of images")
    if not masks.exists():
        raise UsageError(f"masks {masks} do not exist", "give a mask file or a folder of masks")

    if composites.is_file():
        if not is_image_file(composites):
            raise UsageError(f"{composites} is not an image file",
                             "supported: .jpg .jpeg .png .webp .bmp .tif .tiff")
        relative = PurePosixPath(composites.name)
        if masks.is_file():
            if _same_file(composites, masks):
                raise UsageError("the composite and the mask are the same file")
            return [Pair(composites, relative, masks, "given")]
        mask, rule, problem = MaskIndex(masks, False, exclude).find(composites, relative)
        return [Pair(composites, relative, mask, rule, problem)]

    if masks.is_file():
        raise UsageError(f"COMPOSITES {composites} is a folder but MASKS {masks} is a file",
                         "give a folder of masks named after the composites")
    images = list_images(composites, recursive, exclude)
    index = MaskIndex(masks, recursive, exclude)
    overlap = _same_file(composites, masks) or (recursive and (_inside(composites.resolve(), masks.resolve())
                                                            or _inside(masks.resolve(), composites.resolve())))
    if overlap:
        images = [(path, rel) for path, rel in images if not rel.stem.endswith("_mask")]
    pairs = [Pair(path, rel, *index.find(path, rel)) for path, rel in images]
    if overlap:
        pairs = _drop_masks_listed_as_composites(pairs)
    return pairs


def _drop_masks_listed_as_composites(pairs: List[Pair]) -> List[Pair]:
    """In a shared folder, a file that is some composite's mask is not a composite itself; two
    files that would be each other's mask are reported, not guessed."""
    key = lambda path: os.path.normcase(os.path.abspath(path))  # noqa: E731
    mask_of = {key(pair.mask): pair for pair in pairs if pair.ok}
    kept = []
    for pair in pairs:
        owner = mask_of.get(key(pair.composite))
        if owner is None:
            kept.append(pair)
            continue
        if pair.ok and key(pair.mask) == key(owner.composite):
            pair.problem = (f"{pair.composite.name} and {owner.composite.name} would be each other's mask; "
                            "keep masks in their own folder or name them <stem>_mask.png")
            pair.mask = None
            kept.append(pair)
    return kept


def output_path(out_dir: Path, relative: PurePosixPath, suffix: str) -> Path:
    """Where the result of a composite goes: the same relative path and stem under OUT."""
    return Path(out_dir) / Path(*relative.parent.parts) / f"{relative.stem}{suffix}"
