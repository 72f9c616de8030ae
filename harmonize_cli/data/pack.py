"""Packing a dataset in iHarmony4 layout into one HDF5 file (the API behind ``harmonize prepare``).

>>> from harmonize_cli.data.pack import pack_dataset
>>> report = pack_dataset("iHarmony4")            # writes iHarmony4/iharmony4.h5
>>> report.counts["HCOCO"]["train"], len(report.problems)

How it works, in two passes over the files:

1. *scan*: read the list files, map every composite to its mask and real image, check that
   each file exists, parse each header (size) and check that the three sizes agree. This is
   cheap and finds most problems before any heavy work (``strict`` fails here).
2. *pack*: decode every file that is still needed (reals and masks once, even when shared
   by several composites), cap the long side with Lanczos, and write the pixels (and/or the
   encoded bytes) into the heaps of a temporary file beside the output. A file that fails to
   decode drops the samples that use it. The sample table and ``complete=True`` are written
   last, then the temporary file is renamed over the output.

Pass 1 lives in :mod:`harmonize_cli.data.packscan` (returning a ``Scan``), the plan of the
heaps in :mod:`harmonize_cli.data.packplan` (a ``HeapPlan``); pass 2 is here (a ``Written``).
The file layout is documented in ``docs/datasets.md``.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__, interrupts
from ..limits import DEFAULT_MAX_PIXELS
from ..atomic import part_path
from ..outputs import check_replaceable, starts_with
from . import hyoutube, layout
from .layout import DatasetError
from .packfile import (
    ENCODED_CHUNK,
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    append_encoded,
    check_disk_space,
    estimate_bytes,
    is_complete,
    read_attrs,
    remove_stale_parts,
    write_samples,
    write_table,
    writing,
    written_by_prepare,
)
from .packreport import (
    PackReport,
    Problem,
    Problems,
    fail_strict,
    fill_up_to_date,
    report_path_for,
    write_report,
)
from .packjobs import _pack_chunk
from .packplan import HeapPlan, plan_heaps
from .packscan import Scan, Sources, chunks, find_sources, scan_files
from .workers import WorkerPool

DEFAULT_NAME = "iharmony4.h5"
STORAGES = ("pixels", "encoded", "both")

__all__ = [
    "pack_dataset",
    "PackReport",
    "Problem",
    "default_output",
    "report_path_for",
    "read_attrs",
    "estimate_bytes",
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
]


def default_output(root) -> Path:
    """``<root>/iharmony4.h5``, or ``<root>/hyoutube.h5`` for a video dataset in HYouTube layout."""
    return Path(root) / (hyoutube.DEFAULT_NAME if hyoutube.is_root(root) else DEFAULT_NAME)


# ============================================================================ the options
@dataclass
class PackRequest:
    """The checked options of one pack."""

    root: Path
    output: Path
    storage: str
    max_side: int
    max_pixels: int
    splits: list
    strict: bool
    workers: int
    video: bool

    @property
    def report_path(self) -> Path:
        return report_path_for(self.output)

    @property
    def store_pixels(self) -> bool:
        return self.storage in ("pixels", "both")

    @property
    def store_encoded(self) -> bool:
        return self.storage in ("encoded", "both")


def _resolve_splits(splits) -> list:
    if splits is None or splits == "" or splits == []:
        return list(layout.SPLITS)
    if isinstance(splits, str):
        splits = [part.strip() for part in splits.split(",") if part.strip()]
    chosen = []
    for name in splits:
        if name not in layout.SPLITS:
            raise DatasetError(f"unknown split {name!r}", f"use {' and/or '.join(layout.SPLITS)}, e.g. --splits test")
        if name not in chosen:
            chosen.append(name)
    return [name for name in layout.SPLITS if name in chosen]


def _resolve_workers(workers) -> int:
    if workers is None:
        return max(1, min(8, os.cpu_count() or 1))
    return max(0, int(workers))


def _check_request(root, output, storage, max_side, max_pixels, splits, strict, workers) -> PackRequest:
    root = Path(root).expanduser()
    if storage not in STORAGES:
        raise DatasetError(f"unknown storage {storage!r}", f"use one of {', '.join(STORAGES)}")
    max_side = int(max_side or 0)
    if max_side < 0:
        raise DatasetError(f"--max-side must be >= 0, got {max_side}")
    max_pixels = int(DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    if max_pixels < 0:
        raise DatasetError(f"--max-pixels must be >= 0, got {max_pixels}")
    splits = _resolve_splits(splits)
    video = hyoutube.is_root(root)
    output = Path(output).expanduser() if output else default_output(root)
    if output.exists() and output.is_dir():
        output = output / (hyoutube.DEFAULT_NAME if video else DEFAULT_NAME)
    return PackRequest(root, output, storage, max_side, max_pixels, splits, strict, workers, video)


def _up_to_date(request: PackRequest, sources: Sources, force: bool, notice) -> dict | None:
    """The attributes of an output that needs no rebuilding; None when it must be (re)built."""
    # --force replaces an earlier pack, never a file of the user's (an image, a list file, ...)
    output = request.output
    check_replaceable(output, written_by_prepare, "a dataset packed by harmonize (--force replaces only those)")
    check_replaceable(request.report_path, starts_with(b"{"), "a report written by `harmonize prepare`")
    if not output.exists():
        return None
    attrs = read_attrs(output)
    if attrs is not None and not force and is_complete(attrs.get("complete")) and attrs.get("fingerprint") == sources.fingerprint:
        return attrs
    if attrs is not None and attrs.get("fingerprint") != sources.fingerprint:
        notice(f"{output} is out of date (sources or options changed); rebuilding")
    return None


def _make_room(output: Path, notice) -> None:
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"cannot create {output.parent} ({exc.strerror or exc})", "choose another location with -o"
        ) from None
    if not os.access(output.parent, os.W_OK):
        raise DatasetError(f"cannot write to {output.parent}", "choose another location with -o")
    for part in remove_stale_parts(output):
        notice(f"removed {part.name}, left by an interrupted run")


def _fail_unusable(report: PackReport, problems: Problems, request: PackRequest, listed: int, started: float):
    """Every sample had a bad file: the report says which, and the pack stops."""
    report.problems = problems.list()
    report.skipped = listed
    write_report(report, request.report_path, started)
    raise DatasetError(f"no usable samples under {request.root}", f"all {listed} were bad; see {request.report_path}")


# ============================================================================ pass 2: write
@dataclass
class Written:
    """What pass 2 wrote."""

    counts: dict  # subset -> split -> samples packed
    skipped: int  # listed samples left out
    resized: int  # samples stored smaller than their files

    def fill(self, report: PackReport, problems: Problems) -> None:
        report.counts = self.counts
        report.problems = problems.list()
        report.skipped = self.skipped
        report.resized = self.resized


def _create_heaps(handle, plan: HeapPlan, request: PackRequest):
    """The pixel heaps and encoded-bytes stores of every kind, in a file marked incomplete."""
    handle.attrs["format"] = FORMAT
    handle.attrs["format_version"] = FORMAT_VERSION
    handle.attrs["complete"] = False
    heaps, encoded = {}, {}
    for kind in KINDS:
        group = handle.create_group(kind)
        info = plan.kinds[kind]
        if request.store_pixels:
            # contiguous and uncompressed, so readers can memory-map it: gzip would
            # shrink masks ~50x but costs ~0.6 ms per training sample (20 %)
            heaps[kind] = group.create_dataset("pixels", shape=(info["total"],), dtype=np.uint8)
        if request.store_encoded:
            encoded[kind] = {
                "data": group.create_dataset(
                    "encoded", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(ENCODED_CHUNK,)
                ),
                "end": 0,
                "offset": np.zeros(len(info["paths"]), dtype=np.int64),
                "length": np.zeros(len(info["paths"]), dtype=np.int64),
                "format": list(info["formats"]),
            }
    return heaps, encoded


def _decode_into(heaps, encoded, plan: HeapPlan, request: PackRequest, runner, progress):
    """Decode every planned file (in ``runner``'s workers) into the heaps.

    Returns the decoding errors ((kind, row) -> reason) and every mask's foreground ratio."""
    decode_errors = {}
    fg_ratio = np.zeros(len(plan.kinds["mask"]["paths"]), dtype=np.float32)
    items = plan.items()
    # Small chunks keep the workers evenly busy and the memory in flight bounded
    # (at most 2 x workers chunks of 8 decoded images).
    chunk_size = max(1, min(8, len(items) // (4 * max(1, request.workers))))
    done = 0
    progress("pack", 0, len(items))
    jobs = runner.map(
        _pack_chunk, chunks(items, chunk_size), request.store_pixels, request.store_encoded,
        request.max_side, request.max_pixels,
    )
    for _chunk, results in jobs:
        for result in results:
            kind, row = result["kind"], result["index"]
            if result["error"]:
                decode_errors[(kind, row)] = result["error"]
                continue
            info = plan.kinds[kind]
            if kind == "mask":
                fg_ratio[row] = result["fg_ratio"]
            if request.store_pixels:
                pixels = result["pixels"].reshape(-1)
                start = int(info["offsets"][row])
                heaps[kind][start : start + pixels.size] = pixels
            if request.store_encoded:
                append_encoded(encoded[kind], row, result)
        done += len(results)
        progress("pack", done, len(items))
    return decode_errors, fg_ratio


def _drop_failed(valid, plan: HeapPlan, decode_errors: dict, problems: Problems) -> list:
    """The samples whose three files decoded: (ref, composite row, real row, mask row)."""
    rows = {kind: {row for (k, row) in decode_errors if k == kind} for kind in KINDS}
    keep = []
    for ref, (c_row, r_row, m_row) in zip(valid, plan.sample_rows):
        bad = False
        for kind, row, path, role in (
            ("composite", c_row, ref.composite, "composite"),
            ("real", r_row, ref.real, "real image"),
            ("mask", m_row, ref.mask, "mask"),
        ):
            if row in rows[kind]:
                error = decode_errors[(kind, row)]
                reason = f"{role} {error}" if error.startswith("too large") else f"unreadable {role}: {error}"
                problems.add(path, reason, ref)
                bad = True
        if not bad:
            keep.append((ref, c_row, r_row, m_row))
    return keep


def _write_tables(handle, request: PackRequest, sources: Sources, plan: HeapPlan, keep, fg_ratio, encoded) -> Written:
    """The tables, the samples and the attributes; ``complete=True`` last."""
    for kind in KINDS:
        write_table(handle[kind], request.root, plan.kinds[kind], request.store_pixels, encoded.get(kind))

    counts: dict = {}
    for ref, *_ in keep:
        counts.setdefault(ref.subset, {}).setdefault(ref.split, 0)
        counts[ref.subset][ref.split] += 1
    composites = plan.kinds["composite"]
    resized_flags = np.array([tuple(composites["stored"][c]) != tuple(composites["original"][c]) for _, c, _, _ in keep])
    write_samples(handle, keep, plan.kinds, fg_ratio, resized_flags)

    written = Written(counts, sources.listed - len(keep), int(resized_flags.sum()))
    handle.attrs.update(
        {
            "harmonize_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source_root": str(request.root.resolve()),
            "subsets": json.dumps(sources.chosen),
            "splits": json.dumps(list(request.splits)),
            "storage": request.storage,
            "max_side": request.max_side,
            "max_pixels": request.max_pixels,
            "notes": json.dumps(sources.notes),
            "resize_filter": "lanczos (PIL)",
            "layout": hyoutube.LAYOUT if request.video else "iharmony4",
            "counts": json.dumps(counts),
            "skipped": written.skipped,
            "resized": written.resized,
            "fingerprint": sources.fingerprint,
        }
    )
    handle.attrs["complete"] = True  # last: a file without it is never read
    return written


def write_pack(tmp: Path, request, sources, scan: Scan, plan, runner, problems, on_strict, progress) -> Written:
    """Pass 2: decode every planned file into ``tmp``; samples with a file that fails to decode
    are dropped (``on_strict()`` first, which raises under ``--strict``). ``tmp`` is closed and
    flushed to disk by ``writing``; a failed write is one line."""
    with writing(tmp, request.output) as handle:
        heaps, encoded = _create_heaps(handle, plan, request)
        decode_errors, fg_ratio = _decode_into(heaps, encoded, plan, request, runner, progress)
        keep = _drop_failed(scan.valid, plan, decode_errors, problems)
        on_strict()
        if not keep:
            raise DatasetError(f"no usable samples under {request.root}", "every sample had a bad file")
        return _write_tables(handle, request, sources, plan, keep, fg_ratio, encoded)


# ============================================================================ the API
def pack_dataset(
    root,
    output=None,
    subsets=None,
    max_side: int = 1024,
    workers=None,
    strict: bool = False,
    force: bool = False,
    storage: str = "pixels",
    on_progress=None,
    on_notice=None,
    splits=layout.SPLITS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PackReport:
    """Pack the dataset under ``root`` (iHarmony4 or HYouTube layout) into one HDF5 file.

    Args:
        root: dataset root holding subset folders (or a single subset folder), or a video
            dataset in HYouTube layout (:mod:`harmonize_cli.data.hyoutube`): then every frame
            is a sample, with its clip and frame index (``samples/clip``, ``samples/frame``).
        output: HDF5 file to write (default ``<root>/iharmony4.h5``, ``<root>/hyoutube.h5``
            for a video dataset).
        subsets: subset names (list or comma-separated string; default: every subset folder).
        max_side: shrink images whose long side exceeds this (Lanczos); 0 keeps all sizes.
        workers: processes decoding in parallel (default ``min(8, cpus)``; 0 or 1: in-process).
        strict: any problem is fatal (DatasetError) instead of skipping the bad samples.
        force: rebuild even when the output is up to date, and overwrite a file that is not
            a harmonize dataset.
        storage: ``"pixels"`` (decoded uint8 arrays: fast reads, large file), ``"encoded"``
            (original file bytes, resized images re-encoded as JPEG q90 / PNG: compact, reads
            as slow as the folder tree) or ``"both"``.
        on_progress: ``callback(phase, done, total)`` with phase ``"scan"`` or ``"pack"``.
        on_notice: ``callback(message)`` for informational messages.
        splits: the splits to pack (list or comma-separated; default both). A subset whose list
            file for one of them is missing or empty is packed without it (``report.notes``
            says so); a subset with none of them is an error.
        max_pixels: files whose header declares more pixels are refused (a problem for that
            file; nothing is decoded). 0: no limit. See :mod:`harmonize_cli.limits`.

    Returns a :class:`PackReport`. The source tree is never modified; the output appears only
    when complete (temporary file, then rename). A ``KeyboardInterrupt`` (or a signal handled
    by :mod:`harmonize_cli.interrupts`) at any point stops the workers and removes the
    temporary file.
    """
    started = time.perf_counter()
    request = _check_request(root, output, storage, max_side, max_pixels, splits, strict, _resolve_workers(workers))
    notice = on_notice or (lambda message: None)
    progress = on_progress or (lambda phase, done, total: None)

    sources = find_sources(request.root, subsets, request.splits, request.max_side, request.storage, request.max_pixels)
    for note in sources.notes:
        notice(note)
    report = PackReport(
        output=request.output,
        storage=request.storage,
        max_side=request.max_side,
        max_pixels=request.max_pixels,
        subsets=list(sources.chosen),
        splits=list(request.splits),
        notes=list(sources.notes),
    )
    attrs = _up_to_date(request, sources, force, notice)
    if attrs is not None:
        fill_up_to_date(report, attrs, sources.notes, started)
        return report
    _make_room(request.output, notice)

    problems = sources.problems()

    def on_strict():
        if request.strict and len(problems):
            fail_strict(report, problems, request.report_path, started)

    ok = False
    tmp = part_path(request.output)
    runner = None
    try:
        runner = WorkerPool(request.workers)
        scan = scan_files(sources.refs, runner, request.max_pixels, problems, progress)
        on_strict()
        if not scan.valid:
            _fail_unusable(report, problems, request, sources.listed, started)
        plan = plan_heaps(scan.valid, scan.probed, request.max_side)
        check_disk_space(request.output, plan.kinds, request.storage)
        written = write_pack(tmp, request, sources, scan, plan, runner, problems, on_strict, progress)
        interrupts.check()  # a signal swallowed on the way must not publish the file
        os.replace(tmp, request.output)
        ok = True
    finally:
        if runner is not None:
            runner.close(ok)
        if not ok:
            with suppress(OSError):
                tmp.unlink()

    written.fill(report, problems)
    report.complete = True
    report.bytes_on_disk = request.output.stat().st_size
    write_report(report, request.report_path, started)
    return report
