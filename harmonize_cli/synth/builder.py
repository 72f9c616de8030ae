"""Building a training set in iHarmony4 layout from one's own photos (the API behind ``harmonize synth``).

>>> from harmonize_cli.synth import synthesize
>>> report = synthesize("photos/", "masks/", "dataset/", per_image=5, seed=0)
>>> report.composites, report.skipped

Output (one subset folder, ``Synthetic`` by default)::

    dataset/Synthetic/
      composite_images/  <photo>_1_<k>.png    k = 1..per_image (.jpg with jpeg_quality)
      masks/             <photo>_1.png        8-bit grey, 255 = object
      real_images/       <photo>.jpg|.png     the photo itself (copied when the dataset reader
                                              decodes the file to the same pixels, else PNG)
      Synthetic_train.txt  Synthetic_test.txt composite names; the split is by photo
      synth_manifest.json                     every composite's style, parameters and change

How a composite is made: the style (:mod:`.styles`) changes the pixels under the mask
(mask > 0), the result is blended with the photo by the mask (soft edges stay soft), and every
pixel outside the mask is the photo's, bit for bit. If the foreground changed too little to
learn from (foreground MSE below ``min_fg_mse``, on 0..255 values over pixels with mask >= 128),
new parameters are drawn, up to :data:`MAX_DRAWS` times; a composite that still changes too
little (an object that is black, say) is skipped and reported.

Randomness: the split comes from ``seed`` alone; each photo's composites from ``seed`` and the
photo's output name, so a photo's composites do not depend on which other photos are present
(except the colour sources of the ``color`` style). Same inputs and seed: identical bytes.

The dataset is built in a hidden folder beside the target and renamed into place at the end,
so an interrupted run leaves no half-written dataset; an existing subset folder is replaced
only with ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__, interrupts
from ..atomic import atomic_path, current_umask, atomic_write_text
from ..data import layout
from ..errors import HarmonizeError, UsageError
from ..outputs import inside
from . import inputs
from . import styles as style_lib
from .colour import lab_stats
from .inputs import BadPhoto, Photo, Skipped

DEFAULT_SUBSET = "Synthetic"
DEFAULT_PER_IMAGE = 5
DEFAULT_TEST_FRACTION = 0.1
MIN_FG_MSE = 100.0  # foreground MSE floor (0..255 values): an RMS change of 10 grey levels
MAX_DRAWS = 10
MANIFEST_NAME = "synth_manifest.json"
FORMAT = "harmonize-synth"
FORMAT_VERSION = 1
MASK_ID = 1
_SPLIT_STREAM, _PHOTO_STREAM = 0, 1


class SynthError(HarmonizeError):
    """The dataset could not be built (with ``strict``: something would have been skipped)."""

    def __init__(self, message, hint=None, report=None):
        super().__init__(message, hint)
        self.report = report


@dataclass
class SynthReport:
    """What :func:`synthesize` did (the manifest holds the details)."""

    output: Path
    subset: str
    subset_dir: Path
    manifest: Path | None = None
    seed: int = 0
    photos: dict = field(default_factory=lambda: {"train": 0, "test": 0})
    composites: dict = field(default_factory=lambda: {"train": 0, "test": 0})
    styles: dict = field(default_factory=dict)  # style -> composites
    redraws: int = 0  # extra draws because a change fell below the floor
    skipped: list = field(default_factory=list)  # list[Skipped]
    seconds: float = 0.0

    @property
    def total_composites(self) -> int:
        return sum(self.composites.values())


# ---------------------------------------------------------------------------- helpers
def foreground_mse(composite: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared difference (0..255 values, all channels) over the pixels with mask >= 128."""
    foreground = mask >= inputs.FOREGROUND_LEVEL
    diff = composite[foreground].astype(np.float64) - real[foreground].astype(np.float64)
    return float(np.mean(diff**2)) if diff.size else 0.0


def compose(real: np.ndarray, mask: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """The composite: ``changed`` (sRGB in [0, 1], one row per pixel with mask > 0) blended
    into ``real`` by the mask; pixels with mask 0 are copied from ``real`` untouched."""
    inside = mask > 0
    alpha = (mask[inside].astype(np.float64) / 255.0)[:, None]
    original = real[inside].astype(np.float64) / 255.0
    blended = original * (1.0 - alpha) + np.asarray(changed, dtype=np.float64) * alpha
    composite = real.copy()
    composite[inside] = np.clip(np.round(blended * 255.0), 0, 255).astype(np.uint8)
    return composite


def split_photos(names: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """name -> "train" / "test": ``round(n * test_fraction)`` test photos (at least one, at most
    n - 1), chosen by a permutation seeded with ``seed`` over the sorted names."""
    ordered = sorted(names)
    count = len(ordered)
    n_test = min(count - 1, max(1, int(np.floor(count * test_fraction + 0.5))))
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(count)
    test = {ordered[i] for i in order[:n_test]}
    return {name: ("test" if name in test else "train") for name in ordered}


def photo_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, _PHOTO_STREAM, zlib.crc32(name.encode("utf-8"))])


def _check_subset_name(subset: str) -> str:
    subset = str(subset).strip()
    if not subset or subset in (".", "..") or subset.startswith(".") or any(c in subset for c in "/\\:"):
        raise UsageError(f"bad subset name {subset!r}", "use a plain folder name such as Synthetic")
    return subset


def _check_target(target: Path, overwrite: bool, inputs_: list[Path]) -> None:
    """``--overwrite`` replaces an earlier synth subset (it holds our manifest), never a folder of
    the user's nor one holding an input folder."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a folder", "choose another -o or --subset")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise UsageError(f"{target} already exists",
                             "pass --overwrite to replace it, or choose another -o or --subset")
        for folder in inputs_:
            if inside(folder, target):
                raise UsageError(f"--overwrite would delete the input folder {folder} (it is inside {target})",
                                 "write the dataset somewhere else")
        if not (target / MANIFEST_NAME).is_file():
            raise UsageError(f"--overwrite: {target} was not written by `harmonize synth` (no {MANIFEST_NAME}); "
                             "nothing in it was deleted", "choose another -o or --subset")


def _save_image(path: Path, array: np.ndarray, jpeg_quality=None) -> None:
    from PIL import Image

    image = Image.fromarray(array)
    with atomic_path(path) as tmp:
        if jpeg_quality is None:
            image.save(tmp, format="PNG", compress_level=1)  # fast; prepare repacks anyway
        else:
            image.save(tmp, format="JPEG", quality=int(jpeg_quality), subsampling=0)


def _copy_file(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _open_permissions(folder: Path) -> None:
    """The staging folder is private (0700, from mkdtemp); give the finished dataset the
    permissions of ordinary files and folders under the user's umask (usually 0644 / 0755)."""
    umask = current_umask()
    os.chmod(folder, 0o777 & ~umask)
    for path in folder.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _commit(staging: Path, target: Path) -> None:
    """Move the finished staging folder to ``target``, replacing what is there."""
    _open_permissions(staging)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        old.rmdir()
        target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)  # put the previous dataset back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------- the API
def synthesize(
    images_dir,
    masks_dir,
    out_dir,
    per_image: int = DEFAULT_PER_IMAGE,
    styles=style_lib.STYLES,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed=None,
    jpeg_quality=None,
    strict: bool = False,
    subset: str = DEFAULT_SUBSET,
    overwrite: bool = False,
    min_fg_mse: float = MIN_FG_MSE,
    on_progress=None,
    on_notice=None,
) -> SynthReport:
    """Write ``per_image`` composites for every photo of ``images_dir`` (masks from ``masks_dir``
    or, when it is None or has no mask for a photo, the photo's alpha channel) into
    ``out_dir/<subset>/`` in iHarmony4 layout. Bad photos are skipped and listed in the report
    (``strict``: a :class:`SynthError` and nothing written). See the module docstring."""
    started = time.time()
    chosen_styles = _check_options(per_image, styles, test_fraction, jpeg_quality, min_fg_mse)
    subset = _check_subset_name(subset)
    seed = int(secrets.randbits(32)) if seed is None else int(seed)
    if seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {seed}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {out_dir} is a file", "give a folder for the dataset")
    target = out_dir / subset
    input_dirs = [Path(images_dir)] + ([Path(masks_dir)] if masks_dir is not None else [])
    _check_target(target, overwrite, input_dirs)
    progress = on_progress or (lambda phase, done, total: None)
    notice = on_notice or (lambda message: None)
    report = SynthReport(output=out_dir, subset=subset, subset_dir=target, seed=seed)

    # ---- pass 1: find and check every photo; foreground statistics for the colour style
    photos, report.skipped = inputs.gather(images_dir, masks_dir, exclude=[target])
    inputs.assign_names(photos)
    for item in report.skipped:
        notice(f"skipped {item.file}: {item.reason}")
    usable: list[Photo] = []
    progress("check", 0, len(photos))
    for done, photo in enumerate(photos, 1):
        try:
            loaded = inputs.load(photo)
        except BadPhoto as exc:
            _skip(report, exc.file, exc.reason, notice)
        else:
            photo.height, photo.width = loaded.mask.shape
            foreground = loaded.mask >= inputs.FOREGROUND_LEVEL
            photo.foreground_pixels = int(np.count_nonzero(foreground))
            mean, std = lab_stats(loaded.rgb[foreground].astype(np.float64) / 255.0)
            photo.lab_mean, photo.lab_std = [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]
            usable.append(photo)
        progress("check", done, len(photos))
    if strict and report.skipped:
        _fail_strict(report, "photo(s)")
    if len(usable) < 2:
        raise SynthError(f"{len(usable)} usable photo(s) in {images_dir}: the split by photo needs at least two",
                         "add photos with masks" + (" (see the skipped files above)" if report.skipped else ""),
                         report)

    # ---- pass 2: write the dataset into a staging folder, then move it into place
    split = split_photos([p.name for p in usable], test_fraction, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{subset}.partial-", dir=out_dir))
    try:
        records = _write_all(staging, usable, split, chosen_styles, per_image, seed, jpeg_quality,
                             min_fg_mse, report, progress, notice)
        if strict and report.skipped:
            _fail_strict(report, "composite(s)")
        for name in ("train", "test"):
            if report.composites[name] == 0:
                raise SynthError(f"no {name} composites were made", "add photos or lower --min-fg-mse", report)
        _write_lists(staging, subset, records["composites"])
        manifest = _manifest(report, records, images_dir, masks_dir, chosen_styles, per_image, test_fraction,
                             jpeg_quality, min_fg_mse)
        atomic_write_text(staging / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
        with interrupts.deferred():  # a signal waits until the old subset and the new one are swapped
            _commit(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.manifest = target / MANIFEST_NAME
    report.seconds = time.time() - started
    return report


def _check_options(per_image, chosen, test_fraction, jpeg_quality, min_fg_mse) -> tuple[str, ...]:
    if int(per_image) < 1:
        raise UsageError(f"--per-image must be 1 or more, got {per_image}")
    try:
        chosen = style_lib.canonical_styles(chosen)
    except ValueError as exc:
        raise UsageError(f"--styles: {exc}") from None
    if not 0.0 < float(test_fraction) < 1.0:
        raise UsageError(f"--test-fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if jpeg_quality is not None and not 1 <= int(jpeg_quality) <= 100:
        raise UsageError(f"--jpeg-quality must be 1 to 100, got {jpeg_quality}")
    if float(min_fg_mse) < 0:
        raise UsageError(f"--min-fg-mse must be 0 or more, got {min_fg_mse}")
    return chosen


def _skip(report: SynthReport, file, reason: str, notice) -> None:
    report.skipped.append(Skipped(str(file), reason))
    notice(f"skipped {file}: {reason}")


def _fail_strict(report: SynthReport, what: str) -> None:
    first = report.skipped[0]
    raise SynthError(f"{len(report.skipped)} {what} would be skipped (first: {first.file}: {first.reason})",
                     "fix them or drop --strict; nothing was written", report)


def _write_all(staging, usable, split, chosen_styles, per_image, seed, jpeg_quality, min_fg_mse,
               report, progress, notice) -> dict:
    folders = {name: staging / name for name in (layout.COMPOSITES_DIR, layout.MASKS_DIR, layout.REALS_DIR)}
    for folder in folders.values():
        folder.mkdir()
    by_name = {photo.name: photo for photo in usable}
    extension = ".png" if jpeg_quality is None else ".jpg"
    photo_records, composite_records = [], []
    progress("synth", 0, len(usable))
    for done, photo in enumerate(sorted(usable, key=lambda p: p.name), 1):
        try:
            loaded = inputs.load(photo)  # decoded again: only one photo in memory at a time
        except BadPhoto as exc:
            _skip(report, exc.file, exc.reason, notice)
            progress("synth", done, len(usable))
            continue
        part = split[photo.name]
        real_file = _write_real(photo, loaded, folders[layout.REALS_DIR])
        mask_file = f"{photo.name}_{MASK_ID}.png"
        _save_image(folders[layout.MASKS_DIR] / mask_file, loaded.mask)
        report.photos[part] += 1
        photo_records.append({
            "name": photo.name, "source": str(photo.source), "mask": inputs.describe(photo), "split": part,
            "size": [photo.width, photo.height], "foreground_pixels": photo.foreground_pixels,
            "real": f"{layout.REALS_DIR}/{real_file.name}", "mask_file": f"{layout.MASKS_DIR}/{mask_file}",
            "lab_mean": photo.lab_mean, "lab_std": photo.lab_std,
        })
        sources = [p for p in sorted(by_name) if p != photo.name and split[p] == part] or \
                  [p for p in sorted(by_name) if p != photo.name]
        rng = photo_rng(seed, photo.name)
        start = int(rng.integers(len(chosen_styles)))
        pixels = loaded.rgb[loaded.mask > 0].astype(np.float64) / 255.0
        for k in range(1, per_image + 1):
            style = chosen_styles[(start + k - 1) % len(chosen_styles)]
            name = f"{photo.name}_{MASK_ID}_{k}{extension}"
            made = _draw_composite(style, rng, loaded, pixels, photo, sources, by_name, min_fg_mse)
            if made is None:
                _skip(report, f"{layout.COMPOSITES_DIR}/{name}",
                      f"the foreground change stayed below --min-fg-mse {min_fg_mse:g} after {MAX_DRAWS} draws "
                      f"({style}; is the object very dark, bright or flat?)", notice)
                continue
            composite, params, mse, draws = made
            _save_image(folders[layout.COMPOSITES_DIR] / name, composite, jpeg_quality)
            report.composites[part] += 1
            report.styles[style] = report.styles.get(style, 0) + 1
            report.redraws += draws - 1
            composite_records.append({
                "file": f"{layout.COMPOSITES_DIR}/{name}", "photo": photo.name, "split": part, "style": style,
                "params": params, "fg_mse": round(mse, 3), "draws": draws,
            })
        progress("synth", done, len(usable))
    return {"photos": photo_records, "composites": composite_records}


def _draw_composite(style, rng, loaded, pixels, photo, sources, by_name, min_fg_mse):
    """(composite, params, fg MSE, draws) of the first draw whose change reaches the floor, or None."""
    target_stats = (np.array(photo.lab_mean), np.array(photo.lab_std))
    for draw in range(1, MAX_DRAWS + 1):
        params = style_lib.draw_params(style, rng)
        source_stats = None
        if style == "color":
            source = by_name[sources[int(rng.integers(len(sources)))]]
            params["source"] = source.name
            source_stats = (np.array(source.lab_mean), np.array(source.lab_std))
        style_params = {key: value for key, value in params.items() if key != "source"}
        changed = style_lib.apply_style(style, pixels, style_params, target_stats, source_stats)
        composite = compose(loaded.rgb, loaded.mask, changed)
        mse = foreground_mse(composite, loaded.rgb, loaded.mask)
        if mse >= min_fg_mse:
            return composite, params, mse, draw
    return None


def _write_real(photo: Photo, loaded, folder: Path) -> Path:
    """The photo as the real image: its own bytes when the dataset reader sees the same pixels."""
    if inputs.same_pixels_when_read_as_dataset(photo.source, loaded.rgb):
        suffix = ".png" if photo.source.suffix.lower() == ".png" else ".jpg"
        target = folder / f"{photo.name}{suffix}"
        _copy_file(photo.source, target)
    else:
        target = folder / f"{photo.name}.png"
        _save_image(target, loaded.rgb)
    return target


def _write_lists(staging: Path, subset: str, composites: list[dict]) -> None:
    for part in ("train", "test"):
        names = sorted(Path(record["file"]).name for record in composites if record["split"] == part)
        atomic_write_text(staging / f"{subset}_{part}.txt", "".join(f"{name}\n" for name in names))


def _manifest(report, records, images_dir, masks_dir, chosen_styles, per_image, test_fraction, jpeg_quality,
              min_fg_mse) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "harmonize_version": __version__,
        "subset": report.subset,
        "images": str(images_dir),
        "masks": None if masks_dir is None else str(masks_dir),
        "seed": report.seed,
        "per_image": int(per_image),
        "styles": list(chosen_styles),
        "test_fraction": float(test_fraction),
        "min_fg_mse": float(min_fg_mse),
        "max_draws": MAX_DRAWS,
        "jpeg_quality": None if jpeg_quality is None else int(jpeg_quality),
        "ranges": style_lib.RANGES,
        "counts": {"photos": dict(report.photos), "composites": dict(report.composites),
                   "styles": dict(sorted(report.styles.items())), "redraws": report.redraws,
                   "skipped": len(report.skipped)},
        "photos": records["photos"],
        "composites": records["composites"],
        "skipped": [asdict(item) for item in report.skipped],
    }
