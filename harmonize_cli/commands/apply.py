"""`harmonize apply`: harmonize a folder (or a file) of composites with their masks.

A thin layer over :func:`harmonize_cli.apply.batch.harmonize_folder` (pairing, output planning,
the pipeline, the report): it parses the options, shows the progress bar and prints the summary.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import click

from .. import console, interrupts
from ..apply.batch import COMPARISON_DIR
from ..choices import OUTPUT_FORMATS
from ..limits import DEFAULT_MAX_PIXELS
from .options import model_options, overwrite_option, quality_option

EPILOG = """Examples:

\b
  harmonize apply examples/composites examples/masks -o harmonized/
  harmonize apply photo.jpg photo_mask.png -o harmonized.png
  harmonize apply photo.jpg photo_mask.png -o out/ --ext png
  harmonize apply data/composites data/masks -o out/ --recursive --weights run/best.pth --batch-size 16

\b
Masks are found by the same relative stem (photo.jpg -> photo.png), the iHarmony4 name
(x_1_2.jpg -> x_1.png) or <stem>_mask.<ext>, in that order. Exit code 0 when every image
succeeded, 1 when some failed (all listed at the end and in OUT/harmonize.json), 2 for usage
errors.
"""


@click.command(epilog=EPILOG)
@click.argument("composites", type=click.Path(path_type=Path))
@click.argument("masks", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Output folder (results keep the composites' relative paths and stems); for a single "
                   "COMPOSITES file, an output file name such as out.png (format from its extension).")
@model_options
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Images per forward pass at the network size (default: 1 on the CPU, where it is faster; "
                   "8 on a GPU).")
@click.option("--ext", type=click.Choice(OUTPUT_FORMATS), default="same", show_default=True,
              help="Output format (same: that of the input).")
@quality_option
@click.option("--recursive", is_flag=True, help="Walk COMPOSITES and MASKS as trees.")
@overwrite_option
@click.option("--flip-tta", is_flag=True, help="Average with the horizontally flipped prediction.")
@click.option("--comparison", is_flag=True, help=f"Also write composite | result to OUT/{COMPARISON_DIR}/.")
@click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True, type=click.IntRange(min=0),
              help="Refuse images (and masks) with more pixels than this, from their header, before decoding "
                   "(image bombs); 0: no limit.")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Decoding and encoding threads (default: up to 4 each with a GPU; on the CPU one pool of half the "
                   "cores plus one, the other half running the network).")
@click.option("--allow-odd-masks", is_flag=True,
              help="Run even when MASKS look like colour photos or COMPOSITES like black-and-white masks "
                   "(by default refused as swapped arguments, exit 2).")
def apply(composites, masks, out, model, weights, device, batch_size, resolution, ext, quality, recursive,
          overwrite, flip_tta, comparison, max_pixels, workers, allow_odd_masks):
    """Harmonize COMPOSITES (a folder or a file) with their MASKS (a folder or a file) into OUT.

    Inputs are never modified; every output is written atomically; background pixels (mask 0) are
    copied bit for bit (exactly so in PNG, TIFF, BMP and WebP at --quality 100).
    """
    caught = None
    try:
        with interrupts.handled() as caught:  # SIGTERM as Ctrl-C: the report is written, exit 143
            _apply(composites, masks, out, model, weights, device, batch_size, resolution, ext, quality, recursive,
                   overwrite, flip_tta, comparison, max_pixels, workers, allow_odd_masks)
    except KeyboardInterrupt:
        raise interrupts.Interrupted(getattr(caught, "signum", None) or signal.SIGINT,
                                     "interrupted ({signal}); finished results are kept, no partial file is left "
                                     "(see harmonize.json)") from None


def _apply(composites, masks, out, model, weights, device, batch_size, resolution, ext, quality, recursive,
           overwrite, flip_tta, comparison, max_pixels, workers, allow_odd_masks):
    from ..apply.batch import harmonize_file, harmonize_folder
    from ..errors import HarmonizeError, UsageError

    if composites.is_file() and _names_a_file(out):
        report = harmonize_file(composites, masks, out, model=model, weights=weights, device=device,
                                resolution=resolution, quality=quality, overwrite=overwrite, flip_tta=flip_tta,
                                max_pixels=max_pixels, swap_check=not allow_odd_masks)
        _summarise(report, single=True)
        if report.failed:
            raise HarmonizeError(f"{report.failed[0].composite}: {report.failed[0].reason}")
        return
    if composites.is_dir() and _names_a_file(out):
        raise UsageError(f"-o {out} names a file but COMPOSITES {composites} is a folder",
                         "give a folder for -o (results keep the composites' names)")
    state = {}

    def on_start(total):
        state["bar"] = stack.enter_context(console.progress("img"))
        state["task"] = state["bar"].add_task("Harmonizing", total=total)

    def on_done(entry):
        state["bar"].advance(state["task"])

    with contextlib.ExitStack() as stack:
        report = harmonize_folder(composites, masks, out, model=model, weights=weights, device=device,
                                  resolution=resolution, batch_size=batch_size, ext=ext, quality=quality,
                                  recursive=recursive, overwrite=overwrite, flip_tta=flip_tta, comparison=comparison,
                                  workers=workers, on_start=on_start, on_done=on_done, max_pixels=max_pixels,
                                  swap_check=not allow_odd_masks)
    _summarise(report)
    if report.report_error is not None:
        raise report.report_error
    if report.failed:
        raise HarmonizeError(f"{len(report.failed)} of {len(report.entries)} composites failed",
                             f"listed above and in {report.report_path}")


def _names_a_file(out: Path) -> bool:
    """-o names an output file (not a folder): it has an image extension, is no existing folder
    and does not end with a path separator."""
    from ..apply.imageio import IMAGE_EXTENSIONS

    text = str(out)
    return (out.suffix.lower() in IMAGE_EXTENSIONS and not out.is_dir()
            and not text.endswith(("/", os.sep)))


def _summarise(report, single: bool = False) -> None:
    from rich.markup import escape

    entries, out, elapsed = report.entries, report.out, report.seconds
    done = [entry for entry in entries if entry.status == "done"]
    skipped = [entry for entry in entries if entry.status == "skipped"]
    failed = report.failed
    rate = report.images_per_second
    if single:
        entry = entries[0]
        if entry.status == "done":
            fallback = report.model.get("fallback")
            how = f" by the training-free {fallback} fallback" if fallback else ""
            _say(f"{entry.composite} -> {entry.output}{how} in {elapsed:.1f} s")
        elif entry.status == "skipped":
            _say(f"{entry.output} exists: skipped (use --overwrite to replace it)")
        return
    for entry in failed:
        console.err_console.print(f"[red]failed[/red] {escape(str(entry.composite))}: {escape(entry.reason or '')}",
                                  soft_wrap=True)
    if skipped:
        _say(f"{len(skipped)} existing output(s) skipped (use --overwrite to replace them)")
    for entry in entries:
        for note in entry.notes:
            _say(f"{entry.composite}: {note}", style="yellow")
    fallback = report.model.get("fallback")
    how = f" by the training-free {fallback} fallback (no network weights)" if fallback else ""
    _say(f"{len(done)} harmonized{how}, {len(skipped)} skipped, {len(failed)} failed in {elapsed:.1f} s "
         f"({rate:.2f} img/s while processing) -> {out} (report: {report.report_path})")


def _say(message: str, style=None) -> None:
    """One status line on stderr, never wrapped (hidden by --quiet)."""
    if not console.is_quiet():
        console.err_console.print(message, style=style, soft_wrap=True, markup=False, highlight=False)
