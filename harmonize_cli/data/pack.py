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

The file layout is documented in ``docs/datasets.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__, interrupts
from ..limits import DEFAULT_MAX_PIXELS
from ..atomic import part_path
from ..outputs import check_replaceable, starts_with
from . import hyoutube, imageio, layout
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
    relative,
    remove_stale_parts,
    write_samples,
    write_table,
    writing,
)
from .packreport import (
    PackReport,
    Problem,
    Problems,
    fail_strict,
    fill_up_to_date,
    listing_notes,
    report_path_for,
    size_problem,
    write_report,
)
from .packjobs import _pack_chunk, _probe_chunk
from .workers import WorkerPool

DEFAULT_NAME = "iharmony4.h5"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
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


def written_by_prepare(path) -> bool:
    """An earlier pack: a file with the pack's attributes, or an HDF5 file too damaged to open."""
    if read_attrs(path) is not None:
        return True
    import h5py

    if not starts_with(HDF5_SIGNATURE)(path):
        return False
    try:
        with h5py.File(path, "r"):
            return False  # a readable HDF5 file of someone else's
    except (OSError, ValueError):
        return True


def default_output(root) -> Path:
    """``<root>/iharmony4.h5``, or ``<root>/hyoutube.h5`` for a video dataset in HYouTube layout."""
    return Path(root) / (hyoutube.DEFAULT_NAME if hyoutube.is_root(root) else DEFAULT_NAME)


def _chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ============================================================================ helpers
def _fingerprint(root: Path, refs, options: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(options, sort_keys=True).encode())
    seen = {}
    for ref in refs:
        digest.update(f"{ref.subset}\0{ref.split}\0{ref.name}\0".encode())
        for path in (ref.composite, ref.mask, ref.real):
            key = str(path)
            if key not in seen:
                seen[key] = imageio.file_state(path)
            rel = relative(root, path)
            digest.update(f"{rel}\0{seen[key]}\0".encode())
    return digest.hexdigest()


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
    report_path = report_path_for(output)
    notice = on_notice or (lambda message: None)
    progress = on_progress or (lambda phase, done, total: None)

    bad_lines: list = []
    if video:
        chosen = hyoutube.resolve_subsets(root, subsets)
        refs, notes, clip_problems = hyoutube.scan_available(root, splits)
    else:
        chosen = layout.resolve_subsets(root, subsets)
        refs, notes = layout.scan_available(root, chosen, splits, bad_lines=bad_lines)
        clip_problems = []
    notes = notes + listing_notes(refs)
    for note in notes:
        notice(note)
    options = {
        "format_version": FORMAT_VERSION,
        "max_side": max_side,
        "storage": storage,
        "subsets": chosen,
    }
    # only when not the default, so that files packed before these options stay up to date
    if list(splits) != list(layout.SPLITS):
        options["splits"] = list(splits)
    if max_pixels != DEFAULT_MAX_PIXELS:
        options["max_pixels"] = max_pixels
    if video:
        options["layout"] = hyoutube.LAYOUT
    fingerprint = _fingerprint(root, refs, options)

    report = PackReport(
        output=output,
        storage=storage,
        max_side=max_side,
        max_pixels=max_pixels,
        subsets=list(chosen),
        splits=list(splits),
        notes=list(notes),
    )

    # --force replaces an earlier pack, never a file of the user's (an image, a list file, ...)
    check_replaceable(output, written_by_prepare, "a dataset packed by harmonize (--force replaces only those)")
    check_replaceable(report_path, starts_with(b"{"), "a report written by `harmonize prepare`")
    if output.exists():
        attrs = read_attrs(output)
        if attrs is not None and not force and is_complete(attrs.get("complete")) and attrs.get("fingerprint") == fingerprint:
            fill_up_to_date(report, attrs, notes, started)
            return report
        if attrs is not None and attrs.get("fingerprint") != fingerprint:
            notice(f"{output} is out of date (sources or options changed); rebuilding")

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

    problems = Problems(chosen)
    for line in bad_lines:  # a problem of that line; the rest is packed
        ref = layout.SampleRef(line.subset, line.split, line.name, line.listing, line.listing, line.listing)
        problems.add(line.listing, f"bad line {line.name!r}: {line.reason}", ref)
    for clip_problem in clip_problems:  # a listed clip without frames: reported, the others go on
        problems.add(clip_problem.path, clip_problem.reason, clip_problem)
    workers = _resolve_workers(workers)
    ok = False
    tmp = part_path(output)
    runner = None
    try:
        runner = WorkerPool(workers)
        # ---------------------------------------------------------------- pass 1: scan
        unique = list(OrderedDict.fromkeys(str(p) for ref in refs for p in (ref.composite, ref.mask, ref.real)))
        probed = {}
        done = 0
        progress("scan", 0, len(unique))
        for paths, results in runner.map(_probe_chunk, _chunks(unique, 64), max_pixels):
            probed.update(zip(paths, results))
            done += len(paths)
            progress("scan", done, len(unique))

        valid = []
        for ref in refs:
            bad = False
            sizes = []
            for path, role in ((ref.composite, "composite"), (ref.mask, "mask"), (ref.real, "real image")):
                size, _fmt, error = probed[str(path)]
                if error == "missing":
                    problems.add(path, f"missing {role}", ref)
                    bad = True
                elif error and error.startswith("too large"):
                    problems.add(path, f"{role} {error}", ref)
                    bad = True
                elif error:
                    problems.add(path, f"unreadable {role}: {error}", ref)
                    bad = True
                sizes.append(size)
            if not bad and not (sizes[0] == sizes[1] == sizes[2]):
                problems.add(*size_problem(ref, sizes), ref)
                bad = True
            if not bad:
                valid.append(ref)

        if strict and len(problems):
            fail_strict(report, problems, report_path, started)
        if not valid:
            report.problems = problems.list()
            report.skipped = len(refs) + len(bad_lines)
            write_report(report, report_path, started)
            raise DatasetError(f"no usable samples under {root}",
                               f"all {len(refs) + len(bad_lines)} were bad; see {report_path}")

        # ---------------------------------------------------------------- plan the heaps
        tables = {kind: OrderedDict() for kind in KINDS}  # path -> row
        sample_rows = []
        for ref in valid:
            rows = []
            for kind, path in zip(KINDS, (ref.composite, ref.real, ref.mask)):
                table = tables[kind]
                key = str(path)
                if key not in table:
                    table[key] = len(table)
                rows.append(table[key])
            sample_rows.append(rows)

        plan = {}
        for kind in KINDS:
            channels = 1 if kind == "mask" else 3
            paths = list(tables[kind])
            original = np.array([probed[p][0] for p in paths], dtype=np.int64).reshape(-1, 2)
            stored = np.array([imageio.capped_size(h, w, max_side) for h, w in original], dtype=np.int64).reshape(-1, 2)
            lengths = stored[:, 0] * stored[:, 1] * channels
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else lengths
            plan[kind] = {
                "paths": paths,
                "channels": channels,
                "original": original,
                "stored": stored,
                "offsets": offsets,
                "total": int(lengths.sum()),
                "formats": [probed[p][1] for p in paths],
            }

        check_disk_space(output, plan, storage)

        # ---------------------------------------------------------------- pass 2: pack
        store_pixels = storage in ("pixels", "both")
        store_encoded = storage in ("encoded", "both")
        decode_errors = {}  # (kind, row) -> reason
        fg_ratio = np.zeros(len(tables["mask"]), dtype=np.float32)
        with writing(tmp, output) as handle:
            handle.attrs["format"] = FORMAT
            handle.attrs["format_version"] = FORMAT_VERSION
            handle.attrs["complete"] = False
            heaps, encoded = {}, {}
            for kind in KINDS:
                group = handle.create_group(kind)
                info = plan[kind]
                if store_pixels:
                    # contiguous and uncompressed, so readers can memory-map it: gzip would
                    # shrink masks ~50x but costs ~0.6 ms per training sample (20 %)
                    heaps[kind] = group.create_dataset("pixels", shape=(info["total"],), dtype=np.uint8)
                if store_encoded:
                    encoded[kind] = {
                        "data": group.create_dataset(
                            "encoded", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(ENCODED_CHUNK,)
                        ),
                        "end": 0,
                        "offset": np.zeros(len(info["paths"]), dtype=np.int64),
                        "length": np.zeros(len(info["paths"]), dtype=np.int64),
                        "format": list(info["formats"]),
                    }

            items = []
            for kind in ("real", "mask", "composite"):
                info = plan[kind]
                for row, path in enumerate(info["paths"]):
                    items.append((kind, row, path, tuple(info["original"][row]), tuple(info["stored"][row])))
            # Small chunks keep the workers evenly busy and the memory in flight bounded
            # (at most 2 x workers chunks of 8 decoded images).
            chunk_size = max(1, min(8, len(items) // (4 * max(1, workers))))
            done = 0
            progress("pack", 0, len(items))
            jobs = runner.map(_pack_chunk, _chunks(items, chunk_size), store_pixels, store_encoded, max_side, max_pixels)
            for _chunk, results in jobs:
                for result in results:
                    kind, row = result["kind"], result["index"]
                    if result["error"]:
                        decode_errors[(kind, row)] = result["error"]
                        continue
                    info = plan[kind]
                    if kind == "mask":
                        fg_ratio[row] = result["fg_ratio"]
                    if store_pixels:
                        pixels = result["pixels"].reshape(-1)
                        start = int(info["offsets"][row])
                        heaps[kind][start : start + pixels.size] = pixels
                    if store_encoded:
                        append_encoded(encoded[kind], row, result)
                done += len(results)
                progress("pack", done, len(items))

            # samples whose files failed to decode are dropped now
            rows = {kind: {row for (k, row) in decode_errors if k == kind} for kind in KINDS}
            keep = []
            for ref, (c_row, r_row, m_row) in zip(valid, sample_rows):
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
            if strict and len(problems):
                fail_strict(report, problems, report_path, started)
            if not keep:
                raise DatasetError(f"no usable samples under {root}", "every sample had a bad file")

            for kind in KINDS:
                write_table(handle[kind], root, plan[kind], store_pixels, encoded.get(kind))

            counts: dict = {}
            for ref, *_ in keep:
                counts.setdefault(ref.subset, {}).setdefault(ref.split, 0)
                counts[ref.subset][ref.split] += 1
            resized_flags = np.array(
                [tuple(plan["composite"]["stored"][c]) != tuple(plan["composite"]["original"][c]) for _, c, _, _ in keep]
            )
            write_samples(handle, keep, plan, fg_ratio, resized_flags)

            report.counts = counts
            report.problems = problems.list()
            report.skipped = len(refs) + len(bad_lines) - len(keep)
            report.resized = int(resized_flags.sum())
            handle.attrs.update(
                {
                    "harmonize_version": __version__,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "source_root": str(root.resolve()),
                    "subsets": json.dumps(chosen),
                    "splits": json.dumps(list(splits)),
                    "storage": storage,
                    "max_side": max_side,
                    "max_pixels": max_pixels,
                    "notes": json.dumps(notes),
                    "resize_filter": "lanczos (PIL)",
                    "layout": hyoutube.LAYOUT if video else "iharmony4",
                    "counts": json.dumps(counts),
                    "skipped": report.skipped,
                    "resized": report.resized,
                    "fingerprint": fingerprint,
                }
            )
            handle.attrs["complete"] = True  # last: a file without it is never read
        # closed and flushed to disk by ``writing``; a failed write is one line, the .part removed
        interrupts.check()  # a signal swallowed on the way must not publish the file
        os.replace(tmp, output)
        ok = True
    finally:
        if runner is not None:
            runner.close(ok)
        if not ok:
            try:
                tmp.unlink()
            except OSError:
                pass

    report.complete = True
    report.bytes_on_disk = output.stat().st_size
    write_report(report, report_path, started)
    return report


