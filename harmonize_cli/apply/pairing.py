"""Which mask belongs to which composite: explicit rules, never a guess.

For a composite ``<dir>/<stem>.<ext>`` (``<dir>`` relative to COMPOSITES), the mask is looked up
in MASKS under the same relative ``<dir>``, by these rules in order; the first rule that finds
any file decides:

1. the same stem with any image extension: ``photo.jpg`` -> ``photo.png``;
2. the iHarmony4 naming, the stem without its last ``_`` part: ``x_1_2.jpg`` -> ``x_1.png``;
3. ``<stem>_mask`` with any image extension: ``photo.jpg`` -> ``photo_mask.png``.

``mask_pattern`` (``--mask-pattern``) replaces the three rules by one: the mask's file name is the
pattern with ``{stem}`` replaced by the composite's stem (``'{stem}-mask.png'``,
``'mask_{stem}.png'``; a pattern ending in ``.*`` accepts any image extension).

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
STEM = "{stem}"


def check_mask_pattern(pattern: str) -> str:
    """``pattern`` if it is a usable ``--mask-pattern`` (one ``{stem}``, a file name, no other
    braces), else a UsageError with an example."""
    text = str(pattern)
    rest = text.replace(STEM, "", 1)
    hint = "e.g. --mask-pattern '{stem}-mask.png', or 'mask_{stem}.*' for any image extension"
    if STEM not in text:
        raise UsageError(f"--mask-pattern {text!r} has no {STEM}", hint)
    if "{" in rest or "}" in rest or "/" in text or "\\" in text:
        raise UsageError(f"--mask-pattern {text!r} must be a file name with one {STEM} and nothing else in braces",
                         hint)
    return text


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

    def __init__(self, root: Path, recursive: bool = False, exclude: Iterable[Path] = (),
                 pattern: Optional[str] = None):
        self.root = Path(root)
        self.pattern = None if pattern is None else check_mask_pattern(pattern)
        self.by_stem: Dict[Tuple[str, str], List[Path]] = {}
        self.names: List[str] = []  # every mask file's relative path, sorted (for messages)
        for path, rel in list_images(self.root, recursive, exclude):
            key = (str(rel.parent), rel.stem)
            self.by_stem.setdefault(key, []).append(path)
            self.names.append(str(rel))

    def lookup(self, folder: str, stem: str, composite: Path) -> List[Path]:
        return [path for path in self.by_stem.get((folder, stem), []) if not _same_file(path, composite)]

    def find(self, composite: Path, relative: PurePosixPath):
        """(mask, rule, problem) for one composite."""
        folder, stem = str(relative.parent), relative.stem
        if self.pattern is not None:
            return self._find_by_pattern(composite, folder, stem)
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

    def _find_by_pattern(self, composite: Path, folder: str, stem: str):
        name = self.pattern.replace(STEM, stem)
        rule = f"--mask-pattern {self.pattern}"
        if name.endswith(".*"):
            matches = self.lookup(folder, name[:-2], composite)
        else:
            matches = [path for path in self.lookup(folder, PurePosixPath(name).stem, composite) if path.name == name]
        if len(matches) == 1:
            return matches[0], rule, None
        if matches:
            return None, rule, f"ambiguous mask ({rule}): {', '.join(sorted(path.name for path in matches))}"
        where = self.root / folder if folder not in ("", ".") else self.root
        return None, None, f"no mask found (looked for {name} in {where})"


def suggest_pattern(stems: Iterable[str], mask_names: Iterable[str]) -> Optional[str]:
    """A ``--mask-pattern`` that pairs most of the composites' ``stems`` with ``mask_names`` (file
    names), or None: the most common way a mask's name contains a composite's stem."""
    from collections import Counter

    stems = [stem for stem in list(stems)[:500] if stem]
    names = [PurePosixPath(name).name for name in list(mask_names)[:500]]
    votes: Counter = Counter()
    for stem in stems:
        seen = set()
        for name in names:
            if stem in name and name != stem:
                candidate = name.replace(stem, STEM, 1)
                if candidate not in seen and candidate.count(STEM) == 1 and "{" not in candidate.replace(STEM, ""):
                    seen.add(candidate)
                    votes[candidate] += 1
    if not votes:
        return None
    pattern, count = votes.most_common(1)[0]
    return pattern if count * 2 >= len(stems) else None


def unpaired_message(composites: Path, masks: Path, index: "MaskIndex") -> str:
    """One line for "no composite found its mask": what MASKS holds and, when one fits, the
    ``--mask-pattern`` that would pair them."""
    shown = index.names[:5]
    more = len(index.names) - len(shown)
    held = (", ".join(shown) + (f" and {more} more" if more > 0 else "")) if shown else "no image files"
    if composites.is_file():
        return f"{composites} has no mask in {masks}, which holds {held}"
    return f"no composite in {composites} has a mask in {masks}, which holds {held}"


def unpaired_hint(index: "MaskIndex", stems: List[str]) -> str:
    pattern = suggest_pattern(stems, index.names)
    if pattern is not None and index.pattern != pattern:
        return f"try --mask-pattern '{pattern}'"
    return ("name each mask after its composite (photo.jpg -> photo.png or photo_mask.png), "
            "or pass --mask-pattern '{stem}-mask.png'")


def find_pairs(composites, masks, recursive: bool = False, exclude: Iterable[Path] = (),
               mask_pattern: Optional[str] = None, require_some: bool = False) -> List[Pair]:
    """Pair every composite under COMPOSITES with its mask in MASKS (folders or single files).

    ``mask_pattern``: see the module docstring. ``require_some``: when MASKS is a folder and no
    composite finds a mask there, raise a UsageError that lists what MASKS holds (and suggests a
    ``--mask-pattern`` when one would pair them) instead of returning only unpaired pairs."""
    composites, masks = Path(composites), Path(masks)
    exclude = list(exclude)
    if mask_pattern is not None:
        check_mask_pattern(mask_pattern)
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
        index = MaskIndex(masks, False, exclude, mask_pattern)
        mask, rule, problem = index.find(composites, relative)
        pairs = [Pair(composites, relative, mask, rule, problem)]
        _require_some(pairs, composites, masks, index, require_some)
        return pairs

    if masks.is_file():
        raise UsageError(f"COMPOSITES {composites} is a folder but MASKS {masks} is a file",
                         "give a folder of masks named after the composites")
    images = list_images(composites, recursive, exclude)
    index = MaskIndex(masks, recursive, exclude, mask_pattern)
    overlap = _same_file(composites, masks) or (recursive and (_inside(composites.resolve(), masks.resolve())
                                                            or _inside(masks.resolve(), composites.resolve())))
    if overlap:
        images = [(path, rel) for path, rel in images if not rel.stem.endswith("_mask")]
    pairs = [Pair(path, rel, *index.find(path, rel)) for path, rel in images]
    if overlap:
        pairs = _drop_masks_listed_as_composites(pairs)
    _require_some(pairs, composites, masks, index, require_some)
    return pairs


def _require_some(pairs: List[Pair], composites: Path, masks: Path, index: MaskIndex, require_some: bool) -> None:
    if require_some and pairs and not any(pair.ok or pair.rule is not None for pair in pairs):
        stems = [pair.relative.stem for pair in pairs]
        raise UsageError(unpaired_message(composites, masks, index), unpaired_hint(index, stems))


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
