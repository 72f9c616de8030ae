"""`harmonize paste`: paste a cut-out object (or a folder of them) onto a background and harmonize it.

A thin layer over :mod:`harmonize_cli.apply.paste` (placement, compositing, blending) and
:class:`harmonize_cli.Harmonizer` (the same model choice, weights, resolution and device as
`harmonize apply`); files are read and written with :mod:`harmonize_cli.apply.imageio`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import click
import numpy as np

from .. import console
from ..apply.paste import ANCHORS
from ..choices import OUTPUT_FORMATS
from .options import model_options, overwrite_option, quality_option

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


@dataclass
class Task:
    """One object to paste."""

    source: Path
    mask: Optional[Path]
    output: Path
    status: str = "pending"  # done, skipped, failed
    reason: Optional[str] = None
    placement: Optional[object] = None


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
    from ..apply.imageio import read_image
    from ..apply.paste import parse_height, parse_point
    from ..errors import HarmonizeError, UsageError

    if scale is not None and height is not None:
        raise UsageError("--scale and --height exclude each other", "give one of them")
    if at is not None:
        parse_point(at)  # usage errors before any file is read
    if height is not None:
        parse_height(height)
    folder = object_path.is_dir()
    tasks = _plan(object_path, mask, out, background, folder, ext, save_composite, overwrite, weights)
    if mask is not None and not allow_odd_masks:
        from ..apply.swapcheck import check_not_swapped

        check_not_swapped([(task.source, task.mask) for task in tasks],
                          usage="harmonize paste OBJECT BACKGROUND --mask MASK -o OUT")
    backdrop = read_image(background)
    options = {"at": at, "anchor": anchor, "scale": scale, "height": height}
    state = {"harmonizer": None}

    def harmonizer():
        if state["harmonizer"] is None:
            from ..apply.batch import make_harmonizer

            state["harmonizer"] = make_harmonizer(model, weights, device, resolution)
            info = state["harmonizer"].describe()
            console.debug(f"model {info['model']} on {info['device']}, weights {info['weights'] or '-'}, "
                          f"resolution {resolution}")
        return state["harmonizer"]

    started = time.perf_counter()
    todo = [task for task in tasks if task.status == "pending"]
    if not folder:
        for task in todo:
            _paste_one(task, backdrop, options, harmonizer, save_composite, quality)
            _say(f"{task.source} -> {task.output} ({_where(task.placement)})")
        for task in tasks:
            if task.status == "skipped":
                _say(f"{task.output} exists, skipped (use --overwrite to replace it)")
        return
    if todo:
        harmonizer()  # a model or weights problem stops everything, before the first object
    with console.progress("img") as bar:
        progress = bar.add_task("Pasting", total=len(todo))
        for task in todo:
            try:
                _paste_one(task, backdrop, options, harmonizer, save_composite, quality)
            except Exception as exc:  # one bad object must not stop the others  # noqa: BLE001
                task.status, task.reason = "failed", _reason(exc)
            bar.advance(progress)
    _summarise(tasks, out, time.perf_counter() - started)
    failed = [task for task in tasks if task.status == "failed"]
    if failed:
        raise HarmonizeError(f"{len(failed)} of {len(tasks)} objects failed", "listed above")


def _paste_one(task: Task, backdrop, options, harmonizer, save_composite: bool, quality: int) -> None:
    """Compose, harmonize, blend and write one object (errors propagate)."""
    from ..apply.imageio import write_image
    from ..apply.paste import compose, harmonize_composed, placement_warning

    composed = compose(task.source, backdrop, mask=task.mask, name=str(task.source), **options)
    warning = placement_warning(composed.placement, options["at"], str(task.source))
    if warning:
        console.warn(warning)
    result = harmonize_composed(harmonizer(), composed)
    like = replace(backdrop, gray=False)
    alpha = result[..., 3] if result.shape[2] == 4 else None
    write_image(task.output, result[..., :3], alpha, like=like, quality=quality)
    if save_composite:
        composite_path, mask_path = _side_files(task.output)
        write_image(composite_path, composed.composite, composed.background_alpha, like=like, fmt="PNG")
        mask_values = np.round(composed.mask * 255.0).astype(np.uint8)
        write_image(mask_path, np.repeat(mask_values[..., None], 3, axis=2), gray=True, fmt="PNG")
    task.status, task.placement = "done", composed.placement


def _side_files(output: Path):
    return output.with_name(output.stem + "_composite.png"), output.with_name(output.stem + "_mask.png")


def _plan(source: Path, mask, out: Path, background: Path, folder: bool, ext, save_composite: bool,
          overwrite: bool, weights=None):
    """The objects, their masks and outputs; refuse outputs that would replace an input."""
    from ..apply.batch import local_weights_file
    from ..apply.imageio import IMAGE_EXTENSIONS, OUTPUT_EXTENSIONS, is_image_file
    from ..errors import UsageError
    from ..outputs import Inputs, real_key, same_file

    if folder:
        if out.exists() and not out.is_dir():
            raise UsageError(f"OUT {out} is a file but OBJECT is a folder", "give a folder for the results")
        if same_file(out, source):
            raise UsageError(f"OUT {out} is the OBJECT folder", "write the results to a separate folder")
        if mask is not None and not mask.is_dir():
            raise UsageError(f"--mask {mask} is a file but OBJECT is a folder", "give a folder of masks (same stems)")
        sources = sorted(path for path in source.iterdir()
                         if path.is_file() and is_image_file(path) and not path.name.startswith("."))
        if not sources:
            raise UsageError(f"no images found in {source}", "supported: " + " ".join(sorted(IMAGE_EXTENSIONS)))
        suffix = OUTPUT_EXTENSIONS[ext or "png"]
        tasks = [Task(path, None, out / (path.stem + suffix)) for path in sources]
        if mask is not None:
            for task in tasks:
                task.mask, task.reason = _mask_by_stem(mask, task.source.stem)
                if task.mask is None:
                    task.status = "failed"
    else:
        if ext is not None:
            raise UsageError("--ext is for a folder of objects", "for one OBJECT the suffix of -o sets the format")
        if mask is not None and mask.is_dir():
            raise UsageError(f"--mask {mask} is a folder but OBJECT is a file", "give the object's mask file")
        if out.is_dir() or str(out).endswith(("/", os.sep)):
            target = out / (source.stem + ".png")
        elif out.suffix.lower() in IMAGE_EXTENSIONS:
            target = out
        else:
            raise UsageError(f"-o {out}: unknown image suffix {out.suffix!r}",
                             "end it with .png, .jpg, .webp, .tif or .bmp (or give a folder)")
        tasks = [Task(source, mask, target)]
    inputs = Inputs().file(background, "BACKGROUND").file(source, "OBJECT").file(mask, "--mask")
    inputs.file(local_weights_file(weights), "--weights")
    for task in tasks:
        inputs.file(task.source, "object").file(task.mask, "mask")
    claimed = {}
    for task in tasks:
        paths = [task.output, *(_side_files(task.output) if save_composite else ())]
        hit = next((path for path in paths if path in inputs), None)
        if hit is not None:
            raise UsageError(f"writing {hit} would overwrite an input ({inputs.clash(hit)})", "choose another -o")
        clash = next((claimed[real_key(path)] for path in paths if real_key(path) in claimed), None)
        if task.status == "pending" and clash is not None:
            task.status = "failed"
            task.reason = f"output {task.output.name} would also be written for {clash.source.name}"
            continue
        claimed.update({real_key(path): task for path in paths})
        if task.status == "pending" and task.output.exists() and not overwrite:
            task.status, task.reason = "skipped", "output exists (use --overwrite to replace it)"
    return tasks


def _mask_by_stem(folder: Path, stem: str):
    from ..apply.imageio import is_image_file

    found = sorted(path for path in folder.iterdir() if path.is_file() and is_image_file(path) and path.stem == stem)
    if len(found) == 1:
        return found[0], None
    if not found:
        return None, f"no mask named {stem}.* in {folder}"
    return None, f"several masks named {stem}.* in {folder}: " + ", ".join(path.name for path in found)


def _where(placement) -> str:
    if placement is None:
        return ""
    text = f"{placement.width}x{placement.height} at {placement.left},{placement.top}"
    if placement.scale != 1.0:
        text += f", scale {placement.scale:.3g}"
    return text + (", cropped at the border" if placement.cropped else "")


def _reason(error: BaseException) -> str:
    from ..errors import HarmonizeError

    if isinstance(error, HarmonizeError):
        return str(error)
    text = str(error).splitlines()[0][:200] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _summarise(tasks, out: Path, elapsed: float) -> None:
    from rich.markup import escape

    for task in tasks:
        if task.status == "failed":
            console.err_console.print(f"[red]failed[/red] {escape(str(task.source))}: {escape(task.reason or '')}",
                                      soft_wrap=True)
    counts = {status: sum(task.status == status for task in tasks) for status in ("done", "skipped", "failed")}
    if counts["skipped"]:
        _say(f"{counts['skipped']} existing output(s) skipped (use --overwrite to replace them)")
    _say(f"{counts['done']} pasted, {counts['skipped']} skipped, {counts['failed']} failed in {elapsed:.1f} s -> {out}")


def _say(message: str) -> None:
    """One status line on stderr, never wrapped (hidden by --quiet)."""
    if not console.is_quiet():
        console.err_console.print(message, soft_wrap=True, markup=False, highlight=False)
