"""What ``harmonize paste`` does, as a library function: :func:`paste_folder` and :func:`paste_file`.

>>> from harmonize_cli.apply.paste_batch import paste_folder
>>> report = paste_folder("cutouts/", "street.jpg", "pasted/", at="0.5,0.9", anchor="bottom")
>>> report.counts, [(task.source.name, task.status) for task in report.tasks]

Each object (an image with alpha, or any image with its mask) is placed on the background
(:mod:`.paste`), harmonized by a :class:`~harmonize_cli.apply.Harmonizer` (the same model choice
as ``harmonize apply``), blended back and written atomically. Outputs are planned before any
work: one that would replace an input is a UsageError, an existing one is skipped unless
``overwrite``, two objects that would write the same file fail. In a folder a bad object is a
failure of its own (recorded with its reason, the others go on); :func:`paste_file` raises.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from .. import console
from ..errors import UsageError, failure_reason
from ..outputs import Inputs, real_key, same_file
from .batch import local_weights_file, make_harmonizer
from .imageio import IMAGE_EXTENSIONS, OUTPUT_EXTENSIONS, is_image_file, read_image, write_image
from .outcome import StatusCounts
from .paste import compose, harmonize_composed, parse_height, parse_point, placement_warning
from .swapcheck import check_not_swapped

STATUSES = ("done", "skipped", "failed")


@dataclass
class PasteTask:
    """One object to paste, and what became of it."""

    source: Path
    mask: Optional[Path]
    output: Path
    status: str = "pending"  # done, skipped, failed
    reason: Optional[str] = None
    placement: Optional[object] = None  # the :class:`.paste.Placement` once done
    warning: Optional[str] = None  # e.g. the object was cropped at the border

    @property
    def where(self) -> str:
        """``"18x18 at 23,15, scale 0.5, cropped at the border"`` once placed, else ``""``."""
        placement = self.placement
        if placement is None:
            return ""
        text = f"{placement.width}x{placement.height} at {placement.left},{placement.top}"
        if placement.scale != 1.0:
            text += f", scale {placement.scale:.3g}"
        return text + (", cropped at the border" if placement.cropped else "")


@dataclass
class PasteReport(StatusCounts):
    """The outcome of :func:`paste_folder` / :func:`paste_file`: one :class:`PasteTask` per object;
    ``counts`` by status and the ``failed`` tasks."""

    out: Path
    tasks: List[PasteTask]
    seconds: float = 0.0
    model: dict = field(default_factory=dict)  # Harmonizer.describe(); empty when nothing was pasted

    STATUSES = STATUSES

    @property
    def items(self) -> List[PasteTask]:
        return self.tasks


@dataclass
class _Paste:
    """What pasting one object needs besides the object."""

    backdrop: object  # the background's ImageData
    options: dict  # at, anchor, scale, height
    harmonizer: Callable[[], object]  # built on first use
    save_composite: bool
    quality: int
    on_warning: Optional[Callable[[str], None]]


def paste_folder(objects, background, out, *, at=None, anchor: str = "center", scale=None, height=None,
                 mask=None, model: str = "auto", weights=None, device=None, resolution: str = "auto",
                 save_composite: bool = False, ext: Optional[str] = None, quality: int = 95,
                 overwrite: bool = False, swap_check: bool = True, harmonizer=None,
                 on_start: Optional[Callable[[int], None]] = None,
                 on_done: Optional[Callable[[PasteTask], None]] = None,
                 on_warning: Optional[Callable[[str], None]] = None) -> PasteReport:
    """Paste every image of the folder ``objects`` onto ``background``, one result each in the
    folder ``out`` (``<stem>.<ext>``, png by default).

    ``at``, ``anchor``, ``scale``, ``height``: where and how large (:func:`.paste.compose`; the
    strings of ``--at`` and ``--height`` are accepted). ``mask``: a folder of masks found by stem,
    for objects without alpha. ``save_composite``: also ``<stem>_composite.png`` and
    ``<stem>_mask.png``. ``harmonizer``: an existing :class:`~harmonize_cli.apply.Harmonizer` or any
    ``f(image, mask) -> image`` (else one is built from ``model``, ``weights``,
    ``device``, ``resolution`` before the first object: a model problem stops everything).
    ``swap_check``: refuse masks that look like photos (UsageError). ``on_start(n_to_do)``,
    ``on_done(task)`` report progress; ``on_warning(line)`` gets each placement warning (also kept
    in ``task.warning``). Usage problems raise a UsageError before any work; a bad object is
    recorded as failed, with its reason, and the others go on.
    """
    objects, out = Path(objects), Path(out)
    _check_options(at, scale, height)
    tasks = plan_paste(objects, mask, out, background, folder=True, ext=ext, save_composite=save_composite,
                       overwrite=overwrite, weights=weights)
    return _paste_all(tasks, out, background, mask, True, at, anchor, scale, height, model, weights, device,
                      resolution, save_composite, quality, swap_check, harmonizer, on_start, on_done, on_warning)


def paste_file(obj, background, output, *, at=None, anchor: str = "center", scale=None, height=None, mask=None,
               model: str = "auto", weights=None, device=None, resolution: str = "auto",
               save_composite: bool = False, quality: int = 95, overwrite: bool = False, swap_check: bool = True,
               harmonizer=None, on_warning: Optional[Callable[[str], None]] = None,
               ext: Optional[str] = None) -> PasteReport:
    """Paste the object file ``obj`` onto ``background`` into ``output``: a file (its suffix sets
    the format) or a folder (``<stem>.png`` inside). Options as :func:`paste_folder`, ``mask`` the
    object's mask file; ``ext`` is for folders only (a UsageError here, as for ``paste --ext``).
    An existing output is skipped unless ``overwrite``; any problem with the object, the model
    or the write raises (the report holds the one task when it is done or skipped).
    """
    _check_options(at, scale, height)
    tasks = plan_paste(obj, mask, output, background, folder=False, ext=ext, save_composite=save_composite,
                       overwrite=overwrite, weights=weights)
    return _paste_all(tasks, Path(output), background, mask, False, at, anchor, scale, height, model, weights, device,
                      resolution, save_composite, quality, swap_check, harmonizer, None, None, on_warning)


def _check_options(at, scale, height) -> None:
    """Usage errors before any file is read."""
    if scale is not None and height is not None:
        raise UsageError("--scale and --height exclude each other", "give one of them")
    if at is not None:
        parse_point(at)
    if height is not None:
        parse_height(height)


def _paste_all(tasks, out, background, mask, folder, at, anchor, scale, height, model, weights, device, resolution,
               save_composite, quality, swap_check, harmonizer, on_start, on_done, on_warning) -> PasteReport:
    if mask is not None and swap_check:
        check_not_swapped([(task.source, task.mask) for task in tasks],
                          usage="harmonize paste OBJECT BACKGROUND --mask MASK -o OUT")
    backdrop = read_image(background)
    report = PasteReport(out=out, tasks=tasks)
    state = {"harmonizer": harmonizer}

    def get_harmonizer():
        if state["harmonizer"] is None:
            state["harmonizer"] = make_harmonizer(model, weights, device, resolution)
        describe = getattr(state["harmonizer"], "describe", None)  # any f(image, mask) -> image will do
        if not report.model and describe is not None:
            report.model = info = describe()
            console.debug(f"model {info['model']} on {info['device']}, weights {info['weights'] or '-'}, "
                          f"resolution {resolution}")
        return state["harmonizer"]

    run = _Paste(backdrop, {"at": at, "anchor": anchor, "scale": scale, "height": height}, get_harmonizer,
                 save_composite, quality, on_warning)
    started = time.perf_counter()
    todo = [task for task in tasks if task.status == "pending"]
    try:
        if not folder:
            for task in todo:
                _paste_one(task, run)  # errors propagate: one object, one clear error
            return report
        if todo:
            get_harmonizer()  # a model or weights problem stops everything, before the first object
        if on_start is not None:
            on_start(len(todo))
        for task in todo:
            try:
                _paste_one(task, run)
            except Exception as exc:  # one bad object must not stop the others  # noqa: BLE001
                task.status, task.reason = "failed", failure_reason(exc)
            if on_done is not None:
                on_done(task)
        return report
    finally:
        report.seconds = time.perf_counter() - started


def _paste_one(task: PasteTask, run: _Paste) -> None:
    """Compose, harmonize, blend and write one object (errors propagate)."""
    composed = compose(task.source, run.backdrop, mask=task.mask, name=str(task.source), **run.options)
    task.warning = placement_warning(composed.placement, run.options["at"], str(task.source))
    if task.warning and run.on_warning is not None:
        run.on_warning(task.warning)
    result = harmonize_composed(run.harmonizer(), composed)
    like = replace(run.backdrop, gray=False)
    alpha = result[..., 3] if result.shape[2] == 4 else None
    write_image(task.output, result[..., :3], alpha, like=like, quality=run.quality)
    if run.save_composite:
        composite_path, mask_path = side_files(task.output)
        write_image(composite_path, composed.composite, composed.background_alpha, like=like, fmt="PNG")
        mask_values = np.round(composed.mask * 255.0).astype(np.uint8)
        write_image(mask_path, np.repeat(mask_values[..., None], 3, axis=2), gray=True, fmt="PNG")
    task.status, task.placement = "done", composed.placement


def side_files(output: Path):
    """``--save-composite``: the composite and the mask written beside ``output``."""
    return output.with_name(output.stem + "_composite.png"), output.with_name(output.stem + "_mask.png")


def plan_paste(source: Path, mask, out: Path, background, *, folder: bool, ext=None, save_composite: bool = False,
               overwrite: bool = False, weights=None) -> List[PasteTask]:
    """The objects, their masks and outputs; refuse outputs that would replace an input, mark
    existing outputs skipped and clashing ones failed."""
    source, background = Path(source), Path(background)
    mask = None if mask is None else Path(mask)
    tasks = _folder_tasks(source, mask, Path(out), ext) if folder else [_file_task(source, mask, out, ext)]
    inputs = Inputs().file(background, "BACKGROUND").file(source, "OBJECT").file(mask, "--mask")
    inputs.file(local_weights_file(weights), "--weights")
    for task in tasks:
        inputs.file(task.source, "object").file(task.mask, "mask")
    claimed = {}
    for task in tasks:
        paths = [task.output, *(side_files(task.output) if save_composite else ())]
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


def _folder_tasks(source: Path, mask, out: Path, ext) -> List[PasteTask]:
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
    tasks = [PasteTask(path, None, out / (path.stem + suffix)) for path in sources]
    if mask is not None:
        for task in tasks:
            task.mask, task.reason = _mask_by_stem(mask, task.source.stem)
            if task.mask is None:
                task.status = "failed"
    return tasks


def _file_task(source: Path, mask, out, ext) -> PasteTask:
    """``out``: a file, or a folder (existing, or a name ending with a separator)."""
    text, out = str(out), Path(out)
    if ext is not None:
        raise UsageError("--ext is for a folder of objects", "for one OBJECT the suffix of -o sets the format")
    if mask is not None and mask.is_dir():
        raise UsageError(f"--mask {mask} is a folder but OBJECT is a file", "give the object's mask file")
    if out.is_dir() or text.endswith(("/", os.sep)):
        target = out / (source.stem + ".png")
    elif out.suffix.lower() in IMAGE_EXTENSIONS:
        target = out
    else:
        raise UsageError(f"-o {out}: unknown image suffix {out.suffix!r}",
                         "end it with .png, .jpg, .webp, .tif or .bmp (or give a folder)")
    return PasteTask(source, mask, target)


def _mask_by_stem(folder: Path, stem: str):
    found = sorted(path for path in folder.iterdir() if path.is_file() and is_image_file(path) and path.stem == stem)
    if len(found) == 1:
        return found[0], None
    if not found:
        return None, f"no mask named {stem}.* in {folder}"
    return None, f"several masks named {stem}.* in {folder}: " + ", ".join(path.name for path in found)
