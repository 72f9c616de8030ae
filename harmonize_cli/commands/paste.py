"""`harmonize paste`: paste a cut-out object (or a folder of them) onto a background and harmonize it.

A thin layer over :func:`harmonize_cli.apply.paste_batch.paste_file` and
:func:`~harmonize_cli.apply.paste_batch.paste_folder` (output planning, the per-object loop, the
report; placement and blending in :mod:`harmonize_cli.apply.paste`): it parses the options,
shows the progress bar and prints the summary.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from .. import console, interrupts
from ..apply.paste import ANCHORS
from ..choices import OUTPUT_FORMATS
from .options import model_options, overwrite_option, quality_option
from .reporting import print_failures, say

EPILOG = """Examples:

\b
  harmonize paste examples/objects/cup.png examples/backgrounds/launch.jpg -o cup_at_launch.png \\
      --at 0.25,0.97 --anchor bottom --height 0.3
  harmonize paste cutouts/ street.jpg -o pasted/ --at 0.5,0.9 --anchor bottom --save-composite
  harmonize paste photo.jpg room.jpg --mask photo_mask.png -o out.png --scale 0.5

\b
--at X,Y is in background pixels (320,400), fractions (0.5,0.8) or percentages (50%,80%);
the default is the centre. Without --scale or --height the object keeps its size when it fits,
else it is shrunk to fit. Exit code 0 when every object was pasted (existing outputs are
skipped), 1 when some failed (each listed at the end), 2 for usage errors.
"""


@click.command(epilog=EPILOG)
@click.argument("object_path", metavar="OBJECT", type=click.Path(path_type=Path))
@click.argument("background", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="The result file for one OBJECT (its suffix sets the format); a folder when OBJECT is one.")
@click.option("--at", default=None, metavar="X,Y",
              help="Where the anchor goes: pixels, fractions (0.5,0.8) or percentages. Default: the centre.")
@click.option("--anchor", type=click.Choice(ANCHORS), default="center", show_default=True,
              help="The object's point placed at --at: its centre, or the middle of its bottom edge.")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Resize the object by this factor.")
@click.option("--height", default=None, metavar="H",
              help="Resize the object to this height: pixels (240) or a fraction of the background's (0.3).")
@click.option("--mask", "mask", default=None, type=click.Path(path_type=Path),
              help="The object's mask when it has no alpha (a folder of masks, by stem, for a folder OBJECT).")
@model_options
@click.option("--save-composite", is_flag=True,
              help="Also write <result stem>_composite.png and <result stem>_mask.png beside the result.")
@click.option("--ext", type=click.Choice([fmt for fmt in OUTPUT_FORMATS if fmt != "same"]), default=None,
              help="Format of the results in a folder OUT (default png).")
@quality_option
@overwrite_option
@click.option("--allow-odd-masks", is_flag=True,
              help="Run even when --mask looks like a colour photo or OBJECT like a black-and-white mask "
                   "(by default refused as swapped arguments, exit 2).")
def paste(object_path, background, out, at, anchor, scale, height, mask, model, weights, device, resolution,
          save_composite, ext, quality, overwrite, allow_odd_masks):
    """Paste the cut-out OBJECT onto BACKGROUND and harmonize it into OUT.

    OBJECT is an image with transparency (a PNG from any background-removal tool), or any image
    with --mask; it may be a folder of them (one result each in the folder OUT). The background is
    kept bit for bit wherever the object is fully transparent, and soft edges stay soft.
    """
    options = dict(at=at, anchor=anchor, scale=scale, height=height, mask=mask, model=model, weights=weights,
                   device=device, resolution=resolution, save_composite=save_composite, quality=quality,
                   overwrite=overwrite, swap_check=not allow_odd_masks, on_warning=console.warn)
    with interrupts.stopping("interrupted ({signal}); finished results are kept, no partial file is left"):
        _paste(object_path, background, out, ext, options)


def _paste(object_path, background, out, ext, options):
    from ..apply.paste_batch import paste_file, paste_folder
    from ..errors import HarmonizeError

    if not object_path.is_dir():
        report = paste_file(object_path, background, out, ext=ext, **options)
        task = report.tasks[0]
        if task.status == "done":
            say(f"{task.source} -> {task.output} ({task.where})")
        elif task.status == "skipped":
            say(f"{task.output} exists, skipped (use --overwrite to replace it)")
        return
    state = {}

    def on_start(total):
        state["bar"] = stack.enter_context(console.progress("img"))
        state["task"] = state["bar"].add_task("Pasting", total=total)

    def on_done(task):
        state["bar"].advance(state["task"])

    with contextlib.ExitStack() as stack:
        report = paste_folder(object_path, background, out, ext=ext, on_start=on_start, on_done=on_done, **options)
    print_failures((task.source, task.reason) for task in report.failed)
    counts = report.counts
    if counts["skipped"]:
        say(f"{counts['skipped']} existing output(s) skipped (use --overwrite to replace them)")
    say(f"{counts['done']} pasted, {counts['skipped']} skipped, {counts['failed']} failed in {report.seconds:.1f} s "
        f"-> {out}")
    if report.failed:
        raise HarmonizeError(f"{len(report.failed)} of {len(report.tasks)} objects failed", "listed above")
