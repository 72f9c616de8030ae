"""What ``harmonize apply`` does, as a library function: :func:`harmonize_folder`.

>>> from harmonize_cli.apply.batch import harmonize_folder
>>> report = harmonize_folder("composites/", "masks/", "out/", model="auto")
>>> report.counts, [entry.status for entry in report.entries], report.report_path

It pairs composites with masks (:mod:`.pairing`), places every output, refuses unsafe OUT
folders, skips existing outputs unless ``overwrite``, streams the work through
:func:`.pipeline.run_pipeline` and writes ``OUT/harmonize.json``. Per-file failures are recorded,
never raised; usage problems (no images, OUT is an input folder) raise a UsageError.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from .. import __version__, console
from ..atomic import atomic_write_text, check_writable
from ..errors import HarmonizeError, UsageError, failure_reason
from ..limits import DEFAULT_MAX_PIXELS, image_size
from ..outputs import Inputs, real_key, same_file
from .outcome import APPLY_STATUSES, REPORT_NAME, StatusCounts
from .imageio import encode_for_writing, format_for, output_suffix, read_image, side_by_side
from .maskio import read_mask
from .pairing import find_pairs, output_path
from .swapcheck import check_not_swapped
from .pipeline import DECODED_PIXEL_BUDGET, DEFAULT_PIXEL_BUDGET, Prefetch, plan_threads, torch_threads
from .shards import place_parts, shard_report_name

COMPARISON_DIR = "comparison"
STATUSES = APPLY_STATUSES


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


@dataclass
class BatchReport(StatusCounts):
    """The outcome of :func:`harmonize_folder`: one :class:`Entry` per composite, and the run."""

    out: Path
    entries: List[Entry]
    model: dict  # Harmonizer.describe(): model, weights, sha256, device, ...
    options: dict
    seconds: float = 0.0  # the whole run: planning, loading the model, processing
    interrupted: bool = False
    processing_seconds: float = 0.0  # from the first image started to the last one written
    report_error: Optional[HarmonizeError] = None  # harmonize.json could not be written
    shard: Optional[dict] = None  # --shard K/N: {"index", "count", "positions", "total"}; the report is a part
    ranks: int = 1  # processes that shared the run (torchrun / srun), merged into this report

    STATUSES = STATUSES

    @property
    def items(self) -> List[Entry]:  # for counts and failed (StatusCounts)
        return self.entries

    @property
    def report_path(self) -> Path:
        if self.shard is not None:
            return self.out / shard_report_name(self.shard["index"], self.shard["count"])
        return self.out / REPORT_NAME

    @property
    def images_per_second(self) -> float:
        """Images finished per wall-clock second of processing (the progress bar's definition)."""
        done = self.counts["done"]
        return done / self.processing_seconds if self.processing_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "harmonize_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": self.model["model"],
            "weights": self.model["weights"],
            "weights_sha256": self.model["weights_sha256"],
            "device": self.model["device"],
            "network_size": self.model["network_size"],
            "notice": self.model["notice"],
            "fallback": self.model.get("fallback"),  # the training-free model ``auto`` ran, or None
            "options": self.options,
            "summary": {**self.counts, "total": len(self.entries), "seconds": round(self.seconds, 3),
                        "stopped": self.interrupted},
            "files": [entry.as_dict() for entry in self.entries],
            **({"ranks": self.ranks} if self.ranks > 1 else {}),
            **({"shard": self.shard} if self.shard is not None else {}),
        }

    def write(self) -> None:
        """Write ``OUT/harmonize.json`` atomically; a failure is one HarmonizeError line."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.report_path, json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise HarmonizeError(f"cannot write the report {self.report_path}: {exc.strerror or exc}",
                                 "the results that were written are listed above") from None


@dataclass
class _Run:
    """What one apply run needs besides its entries."""

    harmonizer: object
    quality: int = 95
    comparison: bool = False
    workers: Optional[int] = None
    on_start: Optional[Callable[[int], None]] = None
    on_done: Optional[Callable[[Entry], None]] = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    cores: Optional[int] = None  # CPU cores this process may use (a rank's part of the node's); None: all
    prefetched: Optional[Prefetch] = None  # the first images, decoded while the model loaded


def harmonize_folder(composites, masks, out, *, model: str = "auto", weights=None, device=None,
                     resolution: str = "auto", batch_size: Optional[int] = None, ext: str = "same", quality: int = 95,
                     recursive: bool = False, overwrite: bool = False, flip_tta: bool = False,
                     comparison: bool = False, workers: Optional[int] = None, harmonizer=None,
                     on_start: Optional[Callable[[int], None]] = None,
                     on_done: Optional[Callable[[Entry], None]] = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS, swap_check: bool = True,
                     mask_pattern: Optional[str] = None, launch=None, precision: str = "float32") -> BatchReport:
    """Harmonize COMPOSITES (a folder or a file) with their MASKS into the folder OUT.

    Returns the :class:`BatchReport` (also written to ``OUT/harmonize.json``, even when Ctrl-C
    stops the run, in which case KeyboardInterrupt is re-raised after the report is written).
    ``harmonizer``: an existing :class:`~harmonize_cli.apply.Harmonizer` (else one is built from
    ``model``, ``weights``, ``device``, ``resolution``, ``batch_size`` (None: 1 on the CPU, 8 on a
    GPU), ``flip_tta``).
    ``on_start(n_to_do)`` and ``on_done(entry)`` report progress. ``max_pixels``: images (and
    masks) over this many pixels are refused from their header, never decoded (0: no limit).
    ``swap_check``: refuse (UsageError) COMPOSITES and MASKS that look swapped (masks that are
    colour photos, composites that are black-and-white masks; :mod:`.swapcheck`); False forces them.
    ``mask_pattern``: how masks are named, e.g. ``"{stem}-mask.png"`` (default: the rules of
    :mod:`.pairing`). When no composite finds a mask, a UsageError lists what MASKS holds.
    ``precision``: the network's forward pass, "float32", "bf16" or "fp16" (see
    :class:`~harmonize_cli.apply.Harmonizer`).
    ``launch``: a :class:`~harmonize_cli.sharding.Launch` (None: one process). Under torchrun or
    srun each rank harmonizes its share (:func:`harmonize_cli.sharding.balanced_shares`, by pixels)
    and rank 0 writes the one ``harmonize.json`` (``on_start`` gets the whole job's count); with
    ``--shard K/N`` this process writes ``harmonize.K-of-N.json`` for :func:`merge_reports`.
    """
    from ..sharding import Launch, gather, header_pixels, rank_cores, rank_device, share_of, test_failure_hook

    started = time.perf_counter()
    out = Path(out)
    launch = launch or Launch()
    entries = plan_outputs(composites, masks, out, recursive=recursive, ext=ext, overwrite=overwrite,
                           comparison=comparison, swap_check=swap_check, max_pixels=max_pixels,
                           mask_pattern=mask_pattern, weights=weights)
    check_writable(out)
    positions = list(range(len(entries)))
    if launch.sharded:  # the same plan on every process: shares over all inputs, whatever is done already
        positions = share_of([header_pixels(entry.composite) for entry in entries], launch)
    test_failure_hook(launch)
    prefetched = None
    if harmonizer is None:
        if not launch.grouped:  # the first images decode on the idle core while torch and the model load
            pending = [entries[position] for position in positions if entries[position].status == "pending"]
            load, pixel_budget = _loading(max_pixels, comparison)
            prefetched = Prefetch(pending, load, _pixels_of, pixel_budget=pixel_budget)
        try:
            harmonizer = make_harmonizer(model, weights, rank_device(launch, device) if launch.grouped else device,
                                         resolution, batch_size, flip_tta, precision)
        except BaseException:
            if prefetched is not None:
                prefetched.close()
            raise
    options = {"composites": str(composites), "masks": str(masks), "out": str(out), "model": model,
               "weights": weights if weights is None or isinstance(weights, str) else str(weights),
               "device": device, "batch_size": harmonizer.batch_size, "resolution": resolution, "ext": ext,
               "quality": quality, "recursive": recursive, "overwrite": overwrite, "flip_tta": flip_tta,
               "comparison": comparison, "max_pixels": max_pixels, "swap_check": swap_check,
               **({"mask_pattern": mask_pattern} if mask_pattern is not None else {}),
               **({"precision": harmonizer.precision} if getattr(harmonizer, "precision", "float32") != "float32"
                  else {})}
    mine = [entries[position] for position in positions]
    report = BatchReport(out=out, entries=mine, model=harmonizer.describe(), options=options)
    my_share = {"index": launch.rank, "count": launch.world_size, "positions": positions, "total": len(entries)}
    if launch.launcher == "shard":
        report.shard = my_share
    run = _Run(harmonizer, quality, comparison, workers, on_start, on_done, max_pixels,
               cores=rank_cores(launch) if launch.grouped else None, prefetched=prefetched)
    if not launch.grouped:
        _run(report, run, started, write_report=True)
        return report
    # torchrun / srun: the job's count for rank 0's bar, then each rank its share, then rank 0 merges
    job_total = sum(gather(sum(entry.status == "pending" for entry in mine), launch))
    if on_start is not None and job_total:  # even when this rank's share is all done already
        on_start(job_total)
    run.on_start = None
    try:
        _run(report, run, started, write_report=False)
    except KeyboardInterrupt:  # no collective now (the others stop too): each rank keeps its part
        report.shard = my_share
        _write_quietly(report)
        raise
    parts = gather((positions, report.entries, report.processing_seconds), launch)
    merged = place_parts([(part_positions, part_entries) for part_positions, part_entries, _ in parts], len(entries),
                         names=[f"rank {number}" for number in range(len(parts))])
    report.entries, report.ranks = merged, launch.world_size
    report.processing_seconds = max(seconds for _, _, seconds in parts)
    report.seconds = time.perf_counter() - started
    if launch.is_main:
        _write_quietly(report)
    return report


def _write_quietly(report: BatchReport) -> None:
    try:
        report.write()
    except HarmonizeError as exc:  # a full disk: the results and the summary still count
        report.report_error = exc


def harmonize_file(composite, mask, output, *, model: str = "auto", weights=None, device=None,
                   resolution: str = "auto", quality: int = 95, overwrite: bool = False, flip_tta: bool = False,
                   harmonizer=None, max_pixels: int = DEFAULT_MAX_PIXELS, swap_check: bool = True,
                   mask_pattern: Optional[str] = None, precision: str = "float32") -> BatchReport:
    """Harmonize one composite into the file ``output`` (its format from the extension).

    ``mask``: the mask file, or a folder where it is found by the rules of :mod:`.pairing` (or
    ``mask_pattern``). An existing ``output`` is skipped unless ``overwrite``; no report file is
    written (the returned :class:`BatchReport` holds the one entry). ``swap_check``: as for
    :func:`harmonize_folder`.
    """
    from .imageio import IMAGE_EXTENSIONS

    started = time.perf_counter()
    composite, mask, output = Path(composite), Path(mask), Path(output)
    if output.suffix.lower() not in IMAGE_EXTENSIONS:
        raise UsageError(f"-o {output} has no image extension",
                         f"name the output file with one of {' '.join(sorted(set(IMAGE_EXTENSIONS)))}")
    if output.is_dir():
        raise UsageError(f"-o {output} is a folder", "give a file name, or a folder ending with /")
    inputs = Inputs().file(composite, "composite").file(mask, "mask").file(local_weights_file(weights), "--weights")
    if output in inputs:
        raise UsageError(f"writing {output} would overwrite an input ({inputs.clash(output)})",
                         "choose another output file")
    (pair,) = find_pairs(composite, mask, mask_pattern=mask_pattern, require_some=True)
    if not pair.ok:
        raise UsageError(f"{composite}: {pair.problem}")
    mask = pair.mask
    entry = Entry(composite, mask, output, pair.rule)
    if swap_check:
        check_not_swapped([(composite, mask)], max_pixels=max_pixels,
                          usage="harmonize apply COMPOSITE MASK -o OUT")
    if output.exists() and not overwrite:
        entry.status, entry.reason = "skipped", "output exists (use --overwrite to replace it)"
    check_writable(output.parent)
    harmonizer = harmonizer or make_harmonizer(model, weights, device, resolution, 1, flip_tta, precision)
    options = {"composites": str(composite), "masks": str(mask), "out": str(output), "model": model,
               "weights": weights if weights is None or isinstance(weights, str) else str(weights),
               "device": device, "resolution": resolution, "quality": quality, "overwrite": overwrite,
               "flip_tta": flip_tta, "max_pixels": max_pixels, "swap_check": swap_check}
    report = BatchReport(out=output.parent, entries=[entry], model=harmonizer.describe(), options=options)
    _run(report, _Run(harmonizer, quality, max_pixels=max_pixels), started, write_report=False)
    return report


def make_harmonizer(model="auto", weights=None, device=None, resolution="auto", batch_size=None, flip_tta=False,
                    precision="float32"):
    """A Harmonizer for the commands: its notice (e.g. the training-free fallback) printed as one line."""
    from .harmonizer import Harmonizer

    harmonizer = Harmonizer(model=model, weights=weights, device=device, resolution=resolution,
                            batch_size=batch_size, flip_tta=flip_tta, quiet=True, precision=precision)
    if harmonizer.notice:
        console.warn(harmonizer.notice)  # the CLI's one line; Python users get a warning instead
    return harmonizer


def _run(report: BatchReport, run: _Run, started: float, write_report: bool) -> None:
    """Stream the pending entries through the harmonizer; statuses, timings and the report."""
    harmonizer, entries = run.harmonizer, report.entries
    info = report.model
    console.debug(f"model {info['model']} on {info['device']}, weights {info['weights'] or '-'}, "
                  f"resolution {info['resolution']}, batch {info['batch_size']}")
    todo = [entry for entry in entries if entry.status == "pending"]

    def save(entry, result, job):
        """Encode the result (and the comparison); returns the writes, which the pipeline runs
        on a thread of their own (they mostly wait for the disk)."""
        if isinstance(result, np.ndarray):
            rgb, alpha = result[..., :3], (result[..., 3] if result.shape[2] == 4 else None)
        else:  # the decoded composite with the result pasted in (RGB)
            rgb, alpha = result, None
        fmt = format_for(entry.output)
        if alpha is not None and fmt == "JPEG":
            entry.notes.append("alpha channel dropped: JPEG has none (use --ext png or webp)")
        writes = [encode_for_writing(entry.output, rgb, alpha, like=_like(job), quality=run.quality, fmt=fmt)]
        if run.comparison:
            writes.append(encode_for_writing(_comparison_path(report.out, entry),
                                             comparison_image(job.rgb, rgb, info["model"]), None, gray=False,
                                             quality=min(run.quality, 90), fmt="JPEG"))
        return lambda: [write() for write in writes]

    def on_result(entry, error, seconds, job):
        entry.seconds = seconds
        if error is None:
            entry.status = "done"
        else:
            entry.status, entry.reason = "failed", _reason(error)
        if run.on_done is not None:
            run.on_done(entry)

    try:
        if todo:
            if run.on_start is not None:
                run.on_start(len(todo))
            processing = time.perf_counter()
            plan = plan_threads(harmonizer.device, run.workers, cores=run.cores)
            try:
                with torch_threads(plan.torch_threads):
                    load, pixel_budget = _loading(run.max_pixels, run.comparison)
                    harmonizer.process(todo, load, save, on_result, pixel_budget=pixel_budget,
                                       workers=plan.workers, size_of=_pixels_of, shared_pool=plan.shared,
                                       io_beside_network=plan.io_beside_network, prefetched=run.prefetched)
            finally:
                report.processing_seconds = time.perf_counter() - processing
    except KeyboardInterrupt:
        report.interrupted = True
        for entry in entries:
            if entry.status == "pending":
                entry.status, entry.reason = "interrupted", f"stopped by {_signal_name()} before this file"
        raise
    finally:
        if run.prefetched is not None:  # closed by the pipeline already, unless it never started
            run.prefetched.close()
        report.seconds = time.perf_counter() - started
        if write_report:
            _write_quietly(report)


def _signal_name() -> str:
    import signal

    from ..interrupts import pending

    signum = pending()
    return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"


def _load(entry, max_pixels=DEFAULT_MAX_PIXELS, as_decoded=True):
    """The pipeline's ``load``: the composite, its mask, and the composite again as the context
    (which keeps its ICC profile and EXIF for the result). ``as_decoded``: RGB photos and 8-bit
    masks stay as Pillow decoded them, and only the mask's box is converted (False when the whole
    composite is needed again: ``--comparison``)."""
    decoded = read_image(entry.composite, max_pixels, as_decoded=as_decoded)
    return decoded, read_mask(entry.mask, max_pixels, as_decoded=as_decoded), decoded


def _loading(max_pixels: int, comparison: bool):
    """The pipeline's ``load`` and its pixel budget: the prefetch must decode with the same two,
    since the pipeline takes its images instead of decoding them again."""
    return partial(_load, max_pixels=max_pixels, as_decoded=not comparison), _pixel_budget(comparison)


def _pixel_budget(comparison: bool) -> int:
    """Decoded pixels in flight: twice as many when photos stay as decoded (not ``--comparison``)."""
    return DEFAULT_PIXEL_BUDGET if comparison else DECODED_PIXEL_BUDGET


def _pixels_of(entry) -> int:
    width, height = image_size(entry.composite)  # the header only
    return width * height


def _like(job):
    from ..apply.imageio import ImageData

    return ImageData(rgb=job.rgb, alpha=job.alpha, gray=job.gray,
                     icc_profile=getattr(job.context, "icc_profile", None), exif=getattr(job.context, "exif", None))


def comparison_image(composite, result, model: str, gap: int = 8):
    """``--comparison``: composite | result side by side, each column titled."""
    from ..labels import label_columns

    return label_columns(side_by_side(composite, result, gap=gap), ["composite", f"harmonized ({model})"],
                         column_width=composite.shape[1], gap=gap)


def _comparison_path(out: Path, entry: Entry) -> Path:
    relative = Path(entry.output).relative_to(out)
    return out / COMPARISON_DIR / relative.with_suffix(".jpg")


def _reason(error: BaseException) -> str:
    return failure_reason(error, out_of_memory="out of memory (try --batch-size 1 or --resolution auto)")


def plan_outputs(composites, masks, out, *, recursive: bool = False, ext: str = "same", overwrite: bool = False,
                 comparison: bool = False, swap_check: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS, mask_pattern: Optional[str] = None,
                 weights=None) -> List[Entry]:
    """Pair the inputs, place the outputs, refuse unsafe OUT folders (and, with ``swap_check``,
    inputs that look swapped), mark skips and problems."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT {out} exists and is not a folder", "give a folder for the results")
    for source, label in ((composites, "COMPOSITES"), (masks, "MASKS")):
        if Path(source).is_dir() and same_file(source, out):
            raise UsageError(f"OUT {out} is the {label} folder", "write the results to a separate folder")
    if (out / REPORT_NAME).is_dir():
        raise UsageError(f"{out / REPORT_NAME} is a folder, where the report goes", "remove or rename that folder")
    pairs = find_pairs(composites, masks, recursive=recursive, exclude=[out], mask_pattern=mask_pattern,
                       require_some=True)
    if not pairs:
        raise UsageError(f"no images found in {composites}",
                         "supported: .jpg .jpeg .png .webp .bmp .tif .tiff" + ("" if recursive else
                                                                              "; use --recursive for subfolders"))
    if swap_check:
        check_not_swapped([(pair.composite, pair.mask) for pair in pairs if pair.ok], max_pixels=max_pixels)
    inputs = Inputs().file(local_weights_file(weights), "--weights")
    for pair in pairs:
        inputs.file(pair.composite, "composite").file(pair.mask, "mask")
    entries, claimed = [], {}
    for pair in pairs:
        target = output_path(out, pair.relative, output_suffix(pair.composite, ext)) if pair.ok else None
        entry = Entry(pair.composite, pair.mask, target, pair.rule)
        entries.append(entry)
        if not pair.ok:
            entry.status, entry.reason = "failed", pair.problem
            continue
        claims = [target] + ([_comparison_path(out, entry)] if comparison else [])
        hit = next((path for path in claims if path in inputs), None)
        if hit is not None:
            raise UsageError(f"writing {hit} would overwrite an input ({inputs.clash(hit)})",
                             "choose an OUT folder that holds no composites, masks or weights")
        clash = next((claimed[real_key(path)] for path in claims if real_key(path) in claimed), None)
        if clash is not None:
            entry.status = "failed"
            entry.reason = f"output {target.name} would also be written for {clash.composite}; use --ext same"
            continue
        for path in claims:
            claimed[real_key(path)] = entry
        if target.is_dir():
            entry.status, entry.reason = "failed", f"the output path {target} is a folder"
        elif target.exists() and not overwrite:
            entry.status, entry.reason = "skipped", "output exists (use --overwrite to replace it)"
    return entries


def local_weights_file(weights):
    """``--weights`` when it names a file here (not a released name, a URL or a state dict)."""
    if isinstance(weights, (str, os.PathLike)) and "://" not in str(weights) and Path(weights).is_file():
        return Path(weights)
    return None
