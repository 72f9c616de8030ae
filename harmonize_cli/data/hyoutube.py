"""Reading the HYouTube video-harmonization layout: clips of composite frames, masks and real frames.

HYouTube (Lu et al., *Deep Video Harmonization with Color Mapping Consistency*, IJCAI 2022;
the CO2Net repository ``bcmi/Video-Harmonization-Dataset-HYouTube``) is laid out as::

    <root>/
      real_videos/<video>/<frame>.jpg                           the real (target) frames
      foreground_mask/<video>/<object>/<frame>.png              one mask per frame and object
      synthetic_composite_videos/<video>/<object>/<frame>.jpg   the composite frames
      train_list.txt  test_list.txt                             one clip per line

A list line names the three folders of one clip, real first::

    real_videos/cce03c2a9b foreground_mask/cce03c2a9b/object_0 synthetic_composite_videos/cce03c2a9b/object_0

A *clip* is one object of one video (``cce03c2a9b/object_0``); its frames are the image files
of its composite folder in natural order (``00000.jpg, 00005.jpg, ...``; ``2.jpg`` before
``10.jpg``), and a frame's mask and real frame have the same stem in their folders. The
position of a frame in that order is its ``frame`` index (0, 1, ...).

Tolerated, because copies and custom sets have them: list files named ``train.txt`` /
``test.txt`` (the dataset page's names), ``\\r\\n`` line ends, blank lines, a byte-order mark,
backslashes, and a line with only the composite folder (``synthetic_composite_videos/v/o`` or
``v/o``), from which the mask and real folders are derived. A clip folder that is missing or
holds no frames is reported as a problem for that clip; a missing mask or real frame is a
problem for its frame (the packer reports both and goes on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .layout import _IMAGE_EXTENSIONS, _MASK_EXTENSIONS, SPLITS, DatasetError, SampleRef, read_list

SUBSET = "HYouTube"
DEFAULT_NAME = "hyoutube.h5"
LAYOUT = "hyoutube"
REALS_DIR = "real_videos"
MASKS_DIR = "foreground_mask"
COMPOSITES_DIR = "synthetic_composite_videos"

_FRAME_EXTENSIONS = {ext.lower() for ext in _IMAGE_EXTENSIONS}


@dataclass(frozen=True)
class ClipProblem:
    """A clip that yields no frames (its composite folder is missing or empty)."""

    path: Path
    reason: str
    subset: str
    split: str
    name: str  # the clip id, as a sample name for the problem report


def is_root(path) -> bool:
    """True for a folder in HYouTube layout (it holds ``synthetic_composite_videos/``)."""
    path = Path(path)
    return path.is_dir() and (path / COMPOSITES_DIR).is_dir()


def frame_key(name: str):
    """Natural order of frame file names: ``2.jpg`` before ``10.jpg``; zero-padded names as usual."""
    stem = Path(name).stem
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.findall(r"\d+|\D+", stem)), name


def list_file(root: Path, split: str) -> Path | None:
    """``<split>_list.txt`` (the CO2Net repository's name) or ``<split>.txt`` (the dataset page's)."""
    for name in (f"{split}_list.txt", f"{split}.txt"):
        path = Path(root) / name
        if path.is_file():
            return path
    return None


def _clean(part: str) -> str:
    return part.replace("\\", "/").strip("/")


def _clip_folders(root: Path, line: str, listing: Path, number: int):
    """``(clip id, real folder, mask folder, composite folder)`` of one list line."""
    parts = [_clean(part) for part in line.split()]
    if len(parts) == 3:
        real, mask, composite = parts
    elif len(parts) == 1:
        clip = parts[0]
        if clip.startswith(COMPOSITES_DIR + "/"):
            clip = clip[len(COMPOSITES_DIR) + 1 :]
        pieces = clip.split("/")
        if len(pieces) != 2:
            raise DatasetError(
                f"bad line {number} in {listing}: {line!r}",
                f"expected '{REALS_DIR}/<video> {MASKS_DIR}/<video>/<object> {COMPOSITES_DIR}/<video>/<object>'",
            )
        real, mask, composite = f"{REALS_DIR}/{pieces[0]}", f"{MASKS_DIR}/{clip}", f"{COMPOSITES_DIR}/{clip}"
    else:
        raise DatasetError(
            f"bad line {number} in {listing}: {line!r} has {len(parts)} fields",
            "expected three folders (real, mask, composite) or one composite folder per line",
        )
    prefix = COMPOSITES_DIR + "/"
    clip = composite[len(prefix) :] if composite.startswith(prefix) else composite
    return clip, root / real, root / mask, root / composite


def _find(folder: Path, stem: str, preferred: str, extensions) -> Path:
    default = folder / (stem + preferred)
    if default.is_file():
        return default
    for extension in extensions:
        candidate = folder / (stem + extension)
        if candidate.is_file():
            return candidate
    return default


def _frames(folder: Path) -> list[str]:
    names = [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _FRAME_EXTENSIONS]
    return sorted(names, key=frame_key)


def _read_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.splitlines()


def scan_split(root, split: str, listing: Path):
    """The frames of every clip listed in ``listing``: ``(refs, clip problems)``, in list order."""
    root = Path(root)
    refs: list[SampleRef] = []
    problems: list[ClipProblem] = []
    seen = set()
    for number, line in enumerate(_read_lines(listing), start=1):
        if not line.strip():
            continue
        clip, real_dir, mask_dir, composite_dir = _clip_folders(root, line.strip(), listing, number)
        if clip in seen:  # a clip listed twice is packed once
            continue
        seen.add(clip)
        if not composite_dir.is_dir():
            problems.append(ClipProblem(composite_dir, "missing clip folder", SUBSET, split, clip))
            continue
        names = _frames(composite_dir)
        if not names:
            problems.append(ClipProblem(composite_dir, "clip folder holds no frames", SUBSET, split, clip))
            continue
        for index, name in enumerate(names):
            stem = Path(name).stem
            refs.append(
                SampleRef(
                    subset=SUBSET,
                    split=split,
                    name=f"{clip}/{name}",
                    composite=composite_dir / name,
                    mask=_find(mask_dir, stem, ".png", _MASK_EXTENSIONS),
                    real=_find(real_dir, stem, ".jpg", _IMAGE_EXTENSIONS),
                    clip=clip,
                    frame=index,
                )
            )
    return refs, problems


def resolve_subsets(root, subsets=None) -> list[str]:
    """A HYouTube root is one subset, ``HYouTube``; any other ``--subsets`` is an error."""
    if subsets is None or subsets == "" or subsets == []:
        return [SUBSET]
    if isinstance(subsets, str):
        subsets = [s for s in (part.strip() for part in subsets.split(",")) if s]
    other = [name for name in subsets if str(name).lower() != SUBSET.lower()]
    if other:
        raise DatasetError(
            f"{root} is a video dataset in HYouTube layout with one subset, {SUBSET}; not {', '.join(other)}",
            "leave out --subsets",
        )
    return [SUBSET]


def scan_available(root, splits=SPLITS):
    """Like :func:`harmonize_cli.data.layout.scan_available` for a HYouTube root.

    Returns ``(refs, notes, clip_problems)``. A split without a list file, or with an empty
    one, is left out with a note; no list file for any chosen split is an error.
    """
    root = Path(root)
    if isinstance(splits, str):
        splits = (splits,)
    refs: list[SampleRef] = []
    notes: list[str] = []
    problems: list[ClipProblem] = []
    found = 0
    for split in splits:
        listing = list_file(root, split)
        if listing is None:
            notes.append(f"{SUBSET}: no {split} list file ({split}_list.txt); its {split} split is left out")
            continue
        if not read_list(listing):
            notes.append(f"{SUBSET}: {listing.name} lists no clips; its {split} split is left out")
            continue
        found += 1
        split_refs, split_problems = scan_split(root, split, listing)
        refs.extend(split_refs)
        problems.extend(split_problems)
    if not found:
        wanted = " or ".join(f"{split}_list.txt" for split in splits)
        raise DatasetError(
            f"no clips to pack in {root}: no usable list file",
            f"expected {wanted} (one clip per line: real, mask and composite folder)",
        )
    return refs, notes, problems
