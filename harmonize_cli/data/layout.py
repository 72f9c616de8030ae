"""Reading the iHarmony4 folder layout: subset folders, list files and the name mapping.

::

    <root>/
      <Subset>/                       (HCOCO, HAdobe5k, HFlickr, Hday2night, or any name)
        composite_images/  <real>_<maskid>_<k>.jpg
        masks/             <real>_<maskid>.png
        real_images/       <real>.jpg
        <Subset>_train.txt <Subset>_test.txt     (composite file names, one per line)

Name mapping (the reference's): mask = everything before the last ``_`` + ``.png``;
real = everything before the first ``_`` + ``.jpg``. Only *names* are split, never paths, so
roots with underscores or spaces work. Pitfalls handled here: ``\\r\\n`` line ends, blank
lines, a UTF-8 byte-order mark, list lines that carry a ``Subset/composite_images/`` prefix,
and (for custom datasets) real images whose stem itself contains ``_`` or that are not
``.jpg`` files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..choices import IHARMONY4_SUBSETS  # noqa: F401  (re-exported: the dataset API names it)
from ..errors import HarmonizeError

SPLITS = ("train", "test")
COMPOSITES_DIR = "composite_images"
MASKS_DIR = "masks"
REALS_DIR = "real_images"

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp", ".tif", ".tiff", ".webp")
_MASK_EXTENSIONS = (".png", ".PNG", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")


class DatasetError(HarmonizeError):
    """The dataset on disk is missing something or cannot be read (names the path)."""


@dataclass(frozen=True)
class SampleRef:
    """One composite of a list file, with the paths its mask and real image map to."""

    subset: str
    split: str
    name: str  # composite file name as listed
    composite: Path
    mask: Path
    real: Path
    clip: str = ""  # video datasets (HYouTube layout): the clip, ``<video>/<object>``
    frame: int = -1  # video datasets: the frame's position in its clip (0, 1, ...)


# ---------------------------------------------------------------------------- name mapping
def mask_name(composite_name: str) -> str:
    """``a0001_1_3.jpg`` -> ``a0001_1.png`` (everything before the last underscore)."""
    parts = composite_name.split("_")
    if len(parts) < 2:
        raise ValueError(f"composite name {composite_name!r} has no '_<k>' suffix")
    return "_".join(parts[:-1]) + ".png"


def real_name(composite_name: str) -> str:
    """``a0001_1_3.jpg`` -> ``a0001.jpg`` (everything before the first underscore)."""
    return composite_name.split("_")[0] + ".jpg"


def _stem_candidates(composite_name: str) -> list[str]:
    parts = composite_name.split("_")
    stems = [parts[0]]
    if len(parts) >= 3:  # custom names like my_photo_<maskid>_<k>.jpg
        longer = "_".join(parts[:-2])
        if longer not in stems:
            stems.append(longer)
    return stems


def resolve_real(subset_dir: Path, composite_name: str) -> Path:
    """The real image of a composite: the reference mapping first, then tolerant fallbacks.

    Returns the reference path (``<first part>.jpg``) when nothing exists, so that problems
    name the file the reference would have opened.
    """
    folder = subset_dir / REALS_DIR
    default = folder / real_name(composite_name)
    if default.is_file():
        return default
    for stem in _stem_candidates(composite_name):
        for extension in _IMAGE_EXTENSIONS:
            candidate = folder / (stem + extension)
            if candidate.is_file():
                return candidate
    return default


def resolve_mask(subset_dir: Path, composite_name: str) -> Path:
    folder = subset_dir / MASKS_DIR
    default = folder / mask_name(composite_name)
    if default.is_file():
        return default
    stem = default.stem
    for extension in _MASK_EXTENSIONS:
        candidate = folder / (stem + extension)
        if candidate.is_file():
            return candidate
    return default


# ---------------------------------------------------------------------------- list files
def read_list(path) -> list[str]:
    """Composite names of a list file: CRLF/LF/CR line ends, blank lines and BOM tolerated.

    A line such as ``HAdobe5k/composite_images/a0001_1_1.jpg`` (the root-level IHD lists'
    style) is reduced to its file name.
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    names = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        names.append(line.replace("\\", "/").rsplit("/", 1)[-1])
    return names


def list_file(subset_dir: Path, split: str) -> Path:
    """The list file of ``split`` inside ``subset_dir``.

    Prefers ``<Subset>_<split>.txt``; otherwise the single file matching ``*<split>.txt``
    (the reference's rule), case-insensitively.
    """
    subset_dir = Path(subset_dir)
    preferred = subset_dir / f"{subset_dir.name}_{split}.txt"
    if preferred.is_file():
        return preferred
    candidates = sorted(
        p for p in subset_dir.glob("*.txt") if p.is_file() and p.stem.lower().endswith(split.lower())
    )
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(
            f"no {split} list file in {subset_dir}",
            f"expected {preferred.name} (one composite file name per line)",
        )
    names = ", ".join(p.name for p in candidates)
    raise DatasetError(f"several {split} list files in {subset_dir}: {names}", f"keep only {preferred.name}")


# ---------------------------------------------------------------------------- subsets
def is_subset_dir(path: Path) -> bool:
    return path.is_dir() and (path / COMPOSITES_DIR).is_dir()


def find_subsets(root) -> list[str]:
    """Names of the subset folders under ``root`` (folders holding ``composite_images/``).

    The four iHarmony4 subsets come first in their usual order, then others alphabetically.
    A root that is itself a subset folder yields its own name.
    """
    root = Path(root)
    if is_subset_dir(root):
        return [root.name]
    # a hidden folder (".Synthetic.partial-x" of an interrupted synth, ".git") is never a subset
    found = (sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and is_subset_dir(p))
             if root.is_dir() else [])
    order = {name.lower(): i for i, name in enumerate(IHARMONY4_SUBSETS)}
    return sorted(found, key=lambda name: (order.get(name.lower(), len(order)), name))


def subset_dir(root, subset: str) -> Path:
    root = Path(root)
    if is_subset_dir(root) and root.name == subset:
        return root
    return root / subset


def _everything(subsets) -> bool:
    return subsets is None or subsets == "" or subsets == []


def match_subsets(available, subsets, unknown) -> list[str]:
    """The subsets ``subsets`` chooses among ``available`` (names matched case-insensitively), in
    ``available``'s order, each once. ``subsets`` may be None, "" or [] (all), a list, or a
    comma-separated string; a name that matches none raises ``unknown(name)`` (an exception)."""
    if _everything(subsets):
        return list(available)
    if isinstance(subsets, str):
        subsets = [s for s in (part.strip() for part in subsets.split(",")) if s]
    by_lower = {name.lower(): name for name in available}
    chosen = []
    for name in subsets:
        match = by_lower.get(str(name).lower())
        if match is None:
            raise unknown(name)
        if match not in chosen:
            chosen.append(match)
    return [name for name in available if name in chosen]  # canonical order, whatever was typed


def resolve_subsets(root, subsets=None) -> list[str]:
    """Validate a subset selection (names matched case-insensitively) against ``root``.

    ``subsets`` may be None (all found), a list, or a comma-separated string.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"dataset root not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset root is not a folder: {root}")
    available = find_subsets(root)
    if not available and _everything(subsets):
        raise DatasetError(
            f"no subset folders in {root}",
            "expected folders like HCOCO/ holding composite_images/, masks/, real_images/",
        )
    return match_subsets(available, subsets, lambda name: _no_subset_folder(root, name, available))


def _no_subset_folder(root: Path, name, available) -> DatasetError:
    path = root / name
    if path.is_dir():
        return DatasetError(f"subset folder has no {COMPOSITES_DIR}/: {path}")
    hint = f"available: {', '.join(available)}" if available else "no subset folders found"
    return DatasetError(f"subset folder not found: {path}", hint)


@dataclass(frozen=True)
class BadLine:
    """A list-file line that names no usable composite (e.g. without the ``_<k>`` suffix)."""

    listing: Path
    subset: str
    split: str
    name: str
    reason: str


def scan(root, subsets=None, splits=SPLITS, bad_lines: list | None = None) -> list[SampleRef]:
    """Every sample of the chosen subsets and splits, in list-file order.

    Raises DatasetError (naming the path) for a missing subset folder or list file and for an
    empty split. File existence is *not* checked here (see :func:`missing_files`). A line whose
    name cannot be mapped to a mask is an error too, unless ``bad_lines`` is given: then it is
    appended there as a :class:`BadLine` and the scan goes on.
    """
    root = Path(root)
    if isinstance(splits, str):
        splits = (splits,)
    refs: list[SampleRef] = []
    for subset in resolve_subsets(root, subsets):
        folder = subset_dir(root, subset)
        for split in splits:
            listing = list_file(folder, split)
            names = read_list(listing)
            if not names:
                raise DatasetError(f"empty {split} split: {listing} lists no images")
            for name in names:
                try:
                    mask = resolve_mask(folder, name)
                except ValueError as exc:
                    if bad_lines is None:
                        raise DatasetError(f"bad line in {listing}: {exc}") from None
                    bad_lines.append(BadLine(listing, subset, split, name, str(exc)))
                    continue
                refs.append(
                    SampleRef(
                        subset=subset,
                        split=split,
                        name=name,
                        composite=folder / COMPOSITES_DIR / name,
                        mask=mask,
                        real=resolve_real(folder, name),
                    )
                )
    return refs


def scan_available(root, subsets=None, splits=SPLITS, bad_lines: list | None = None
                   ) -> tuple[list[SampleRef], list[str]]:
    """Like :func:`scan`, but a split whose list file is missing or empty is left out.

    Returns ``(refs, notes)``: one note per split left out (evaluation sets often have only a
    test list). A subset with none of the chosen splits is still an error (naming the list
    file expected), and so is a folder with several list files for one split. ``bad_lines``:
    see :func:`scan`.
    """
    root = Path(root)
    if isinstance(splits, str):
        splits = (splits,)
    refs: list[SampleRef] = []
    notes: list[str] = []
    for subset in resolve_subsets(root, subsets):
        folder = subset_dir(root, subset)
        found, absent = [], []
        for split in splits:
            try:
                listing = list_file(folder, split)
            except DatasetError as exc:
                if not exc.message.startswith(f"no {split} list file"):
                    raise
                absent.append((split, f"no {split} list file ({folder.name}_{split}.txt)"))
                continue
            if not read_list(listing):
                absent.append((split, f"{listing.name} lists no images"))
                continue
            found.append(split)
        if not found:
            wanted = " or ".join(f"{folder.name}_{split}.txt" for split in splits)
            raise DatasetError(
                f"no images to pack in {folder}: " + "; ".join(reason for _, reason in absent),
                f"expected {wanted} (one composite file name per line)",
            )
        for split, reason in absent:
            notes.append(f"{subset}: {reason}; its {split} split is left out")
        refs.extend(scan(root, [subset], splits=found, bad_lines=bad_lines))
    return refs, notes


def missing_files(ref: SampleRef) -> list[tuple[Path, str]]:
    """``(path, reason)`` for each file of ``ref`` that does not exist."""
    problems = []
    for path, role in ((ref.composite, "composite"), (ref.mask, "mask"), (ref.real, "real image")):
        if not path.is_file():
            problems.append((path, f"missing {role}"))
    return problems
