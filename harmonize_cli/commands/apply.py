"""`harmonize apply`: harmonize a folder (or a file) of composites with their masks.

A thin layer over :class:`harmonize_cli.Harmonizer`, :mod:`harmonize_cli.apply.pairing` and
:mod:`harmonize_cli.apply.imageio`: it pairs files, decides what to skip, streams the work through
``Harmonizer.process`` and writes ``OUT/harmonize.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import click

from .. import __version__, console
from ..choices import OUTPUT_FORMATS, RESOLUTION_STRATEGIES

REPORT_NAME = "harmonize.json"
COMPARISON_DIR = "comparison"

EPILOG = """Examples:

\b
  harmonize apply examples/composites examples/masks -o harmonized/
  harmonize apply photo.jpg photo_mask.png -o out/ --ext png
  harmonize apply data/composites data/masks -o out/ --recursive --weights run/best.pth --batch-size 16

\b
Masks are found by the same relative stem (photo.jpg -> photo.png), the iHarmony4 name
(x_1_2.jpg -> x_1.png) or <stem>_mask.<ext>, in that order. Exit code 0 when every image
succeeded, 1 when some failed (all listed at the end and in OUT/harmonize.json), 2 for usage
errors.
"""


@dataclass
class Entry:
    """One composite's line in the report."""

    composite: Path
    mask: Optional[Path]
    output: Optional[Path]
    rule: Optional[str] = None
    status: str = "pending"  # done, skipped, failed (interrupted if Ctrl-C came first)
    reason: Optional[str] = None
    seconds: float = 0.0
    notes: list = field(default_factory=list)

    def as_dict(self):
        return {
            "composite": str(self.composite),
            "mask": str(self.mask) if self.mask else None,
            "output": str(self.output) if self.output else None,
            "rule": self.rule,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 4),
            **({"notes": self.notes} if self.notes else {}),
        }


@click.command(epilog=EPILOG)
@click.argument("composites", type=click.Path(path_type=Path))
@click.argument("masks", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Output folder (results keep the composites' relative paths and stems).")
@click.option("--model", default="auto", show_default=True,
              help="Architecture (see `harmonize zoo list`), or auto: that of --weights, else the best "
                   "released checkpoint in the cache, else the training-free lab-transfer.")
@click.option("--weights", default=None, help="Checkpoint file, URL or released name; alone, its architecture is detected.")
@click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images per forward pass at the network size.")
@click.option("--resolution", type=click.Choice(RESOLUTION_STRATEGIES), default="auto", show_default=True,
              help="auto: network at its training size, correction carried to full resolution; "
                   "fixed: resize, run, resize back (reference); native: full size, padded.")
@click.option("--ext", type=click.Choice(OUTPUT_FORMATS), default="same", show_default=True,
              help="Output format (same: that of the input).")
@click.option("--quality", default=95, show_default=True, type=click.IntRange(1, 100),
              help="JPEG/WebP quality (WebP at 100 is lossless).")
@click.option("--recursive", is_flag=True, help="Walk COMPOSITES and MASKS as trees.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them).")
@click.option("--flip-tta", is_flag=True, help="Average with the horizontally flipped prediction.")
@click.option("--comparison", is_flag=True, help=f"Also write composite | result to OUT/{COMPARISON_DIR}/.")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Decoding/encoding threads (default: up to 4).")
def apply(composites, masks, out, model, weights, device, batch_size, resolution, ext, quality, recursive,
          overwrite, flip_tta, comparison, workers):
    """Harmonize COMPOSITES (a folder or a file) with their MASKS (a folder or a file) into OUT.

    Inputs are never modified; every output is written atomically; background pixels (mask 0) are
    copied bit for bit (exactly so in PNG, TIFF, BMP and WebP at --quality 100).
    """
    from ..apply.imageio import format_for, output_suffix
    from ..errors import HarmonizeError
    from ..apply.harmonizer import Harmonizer
    from ..apply.pairing import find_pairs, output_path

    started = time.perf_counter()
    entries = _plan(composites, masks, out, recursive, ext, overwrite, comparison, find_pairs, output_path,
                    output_suffix)
    harmonizer = Harmonizer(model=model, weights=weights, device=device, resolution=resolution,
                            batch_size=batch_size, flip_tta=flip_tta)
    info = harmonizer.describe()
    console.debug(f"model {info['model']} on {info['device']}, weights {info['weights'] or '-'}, "
                  f"resolution {resolution}, batch {batch_size}")
    todo = [entry for entry in entries if entry.status == "pending"]
    options = {"composites": str(composites), "masks": str(masks), "out": str(out), "model": model,
               "weights": weights, "device": device, "batch_size": batch_size, "resolution": resolution,
               "ext": ext, "quality": quality, "recursive": recursive, "overwrite": overwrite,
               "flip_tta": flip_tta, "comparison": comparison}

    def load(entry):
        from ..apply.imageio import read_image, read_mask

        decoded = read_image(entry.composite)
        return decoded, read_mask(entry.mask), decoded  # the context keeps ICC profile and EXIF

    def save(entry, result, job):
        from ..apply.imageio import side_by_side, write_image

        rgb, alpha = result[..., :3], (result[..., 3] if result.shape[2] == 4 else None)
        fmt = format_for(entry.output)
        if alpha is not None and fmt == "JPEG":
            entry.notes.append("alpha channel dropped: JPEG has none (use --ext png or webp)")
        like = _like(job)
        write_image(entry.output, rgb, alpha, like=like, quality=quality, fmt=fmt)
        if comparison:
            target = _comparison_path(out, entry)
            write_image(target, side_by_side(job.rgb, rgb), None, gray=False, quality=min(quality, 90), fmt="JPEG")

    def size_of(entry):
        from PIL import Image

        with Image.open(entry.composite) as image:
            return image.size[0] * image.size[1]

    interrupted = False
    try:
        if todo:
            with console.progress("img") as bar:
                task = bar.add_task("Harmonizing", total=len(todo))

                def on_result(entry, error, seconds, job):
                    entry.seconds = seconds
                    if error is None:
                        entry.status = "done"
                    else:
                        entry.status, entry.reason = "failed", _reason(error)
                    bar.advance(task)

                harmonizer.process(todo, load, save, on_result, workers=workers or min(4, os.cpu_count() or 1),
                                   size_of=size_of)
    except KeyboardInterrupt:
        interrupted = True
        for entry in entries:
            if entry.status == "pending":
                entry.status, entry.reason = "interrupted", "stopped by Ctrl-C before this file"
        raise
    finally:
        elapsed = time.perf_counter() - started
        _write_report(out, entries, info, options, elapsed, interrupted)
    _summarise(entries, out, elapsed)
    failed = [entry for entry in entries if entry.status == "failed"]
    if failed:
        raise HarmonizeError(f"{len(failed)} of {len(entries)} composites failed",
                             f"listed above and in {out / REPORT_NAME}")


def _like(job):
    from ..apply.imageio import ImageData

    return ImageData(rgb=job.rgb, alpha=job.alpha, gray=job.gray,
                     icc_profile=getattr(job.context, "icc_profile", None), exif=getattr(job.context, "exif", None))


def _comparison_path(out: Path, entry: Entry) -> Path:
    relative = Path(entry.output).relative_to(out)
    return out / COMPARISON_DIR / relative.with_suffix(".jpg")


def _reason(error: BaseException) -> str:
    from ..errors import HarmonizeError

    if isinstance(error, HarmonizeError):
        return str(error)
    if isinstance(error, MemoryError):
        return "out of memory (try --batch-size 1 or --resolution auto)"
    text = str(error).splitlines()[0][:200] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _plan(composites, masks, out, recursive, ext, overwrite, comparison, find_pairs, output_path, output_suffix):
    """Pair the inputs, place the outputs, refuse unsafe OUT folders, mark skips and problems."""
    from ..errors import UsageError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT {out} exists and is not a folder", "give a folder for the results")
    for source, label in ((composites, "COMPOSITES"), (masks, "MASKS")):
        if Path(source).is_dir() and _same_path(source, out):
            raise UsageError(f"OUT {out} is the {label} folder", "write the results to a separate folder")
    pairs = find_pairs(composites, masks, recursive=recursive, exclude=[out])
    if not pairs:
        raise UsageError(f"no images found in {composites}",
                         "supported: .jpg .jpeg .png .webp .bmp .tif .tiff" + ("" if recursive else
                                                                              "; use --recursive for subfolders"))
    inputs = {_key(pair.composite) for pair in pairs} | {_key(pair.mask) for pair in pairs if pair.mask}
    entries, claimed = [], {}
    for pair in pairs:
        target = output_path(out, pair.relative, output_suffix(pair.composite, ext)) if pair.ok else None
        entry = Entry(pair.composite, pair.mask, target, pair.rule)
        entries.append(entry)
        if not pair.ok:
            entry.status, entry.reason = "failed", pair.problem
            continue
        if _key(target) in inputs:
            raise UsageError(f"writing {target} would overwrite an input",
                             "choose an OUT folder that holds no composites or masks")
        claims = [target] + ([_comparison_path(out, entry)] if comparison else [])
        clash = next((claimed[_key(path)] for path in claims if _key(path) in claimed), None)
        if clash is not None:
            entry.status = "failed"
            entry.reason = f"output {target.name} would also be written for {clash.composite}; use --ext same"
            continue
        for path in claims:
            claimed[_key(path)] = entry
        if target.exists() and not overwrite:
            entry.status, entry.reason = "skipped", "output exists (use --overwrite to replace it)"
    return entries


def _key(path) -> str:
    return os.path.normcase(os.path.realpath(path))


def _same_path(a, b) -> bool:
    return _key(a) == _key(b)


def _write_report(out: Path, entries, info, options, elapsed, interrupted) -> None:
    from ..atomic import atomic_write_text

    counts = {status: sum(entry.status == status for entry in entries)
              for status in ("done", "skipped", "failed", "interrupted")}
    report = {
        "harmonize_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": info["model"],
        "weights": info["weights"],
        "weights_sha256": info["weights_sha256"],
        "device": info["device"],
        "network_size": info["network_size"],
        "notice": info["notice"],
        "options": options,
        "summary": {**counts, "total": len(entries), "seconds": round(elapsed, 3), "stopped": interrupted},
        "files": [entry.as_dict() for entry in entries],
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / REPORT_NAME, json.dumps(report, indent=2) + "\n")


def _summarise(entries, out: Path, elapsed: float) -> None:
    from rich.markup import escape

    done = [entry for entry in entries if entry.status == "done"]
    skipped = [entry for entry in entries if entry.status == "skipped"]
    failed = [entry for entry in entries if entry.status == "failed"]
    rate = len(done) / elapsed if elapsed > 0 else 0.0
    for entry in failed:
        console.err_console.print(f"[red]failed[/red] {escape(str(entry.composite))}: {escape(entry.reason or '')}",
                                  soft_wrap=True)
    if skipped:
        _say(f"{len(skipped)} existing output(s) skipped (use --overwrite to replace them)")
    for entry in entries:
        for note in entry.notes:
            _say(f"{entry.composite}: {note}", style="yellow")
    _say(f"{len(done)} harmonized, {len(skipped)} skipped, {len(failed)} failed in {elapsed:.1f} s "
         f"({rate:.2f} img/s) -> {out} (report: {out / REPORT_NAME})")


def _say(message: str, style=None) -> None:
    """One status line on stderr, never wrapped (hidden by --quiet)."""
    if not console.is_quiet():
        console.err_console.print(message, style=style, soft_wrap=True, markup=False, highlight=False)
