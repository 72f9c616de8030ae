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
import signal
import sys
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_write_text
from . import imageio, layout
from .layout import DatasetError

FORMAT = "harmonize-iharmony4"
FORMAT_VERSION = 1
DEFAULT_NAME = "iharmony4.h5"
STORAGES = ("pixels", "encoded", "both")
KINDS = ("composite", "real", "mask")

_ENCODED_CHUNK = 1 << 20


@dataclass
class Problem:
    """One bad file: what is wrong, and which samples it removed."""

    file: str
    reason: str
    subset: str
    split: str
    samples: list = field(default_factory=list)


@dataclass
class PackReport:
    """What ``pack_dataset`` did (also written as JSON beside the output)."""

    output: Path
    report_path: Path | None = None
    complete: bool = False
    up_to_date: bool = False  # True: the output was already current and nothing was done
    storage: str = "pixels"
    max_side: int = 1024
    subsets: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # subset -> split -> samples packed
    problems: list = field(default_factory=list)  # list[Problem]
    skipped: int = 0  # samples left out because of problems
    resized: int = 0  # samples whose images were shrunk to max_side
    bytes_on_disk: int = 0
    seconds: float = 0.0

    @property
    def samples(self) -> int:
        return sum(n for splits in self.counts.values() for n in splits.values())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["output"] = str(self.output)
        data["report_path"] = str(self.report_path) if self.report_path else None
        data["samples"] = self.samples
        return data


def default_output(root) -> Path:
    return Path(root) / DEFAULT_NAME


def report_path_for(output) -> Path:
    output = Path(output)
    return output.with_name(output.stem + ".report.json")


# ============================================================================ workers
def _init_worker():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C


def _probe_one(path: str):
    try:
        size, fmt = imageio.probe(path)
        return size, fmt, None
    except FileNotFoundError:
        return None, None, "missing"
    except imageio.DecodeError as exc:
        return None, None, str(exc)
    except OSError as exc:
        return None, None, f"cannot read file ({exc.strerror or exc})"


def _probe_chunk(paths):
    return [_probe_one(p) for p in paths]


def _pack_one(item, store_pixels: bool, store_encoded: bool):
    """Decode, check, resize and encode one file. Returns a dict (never raises for bad data)."""
    kind, index, path, size, stored = item
    try:
        data = imageio.read_bytes(path)
        array = imageio.decode_mask(data) if kind == "mask" else imageio.decode_image(data)
    except FileNotFoundError:
        return {"kind": kind, "index": index, "error": "missing (disappeared during packing)"}
    except imageio.DecodeError as exc:
        return {"kind": kind, "index": index, "error": str(exc)}
    except OSError as exc:
        return {"kind": kind, "index": index, "error": f"cannot read file ({exc.strerror or exc})"}
    if tuple(array.shape[:2]) != tuple(size):
        got = f"{array.shape[0]}x{array.shape[1]}"
        return {"kind": kind, "index": index, "error": f"decoded size {got} differs from header"}
    resized = tuple(stored) != tuple(size)
    if resized:
        array = imageio.resize_lanczos(array, stored)
    result = {"kind": kind, "index": index, "error": None}
    if kind == "mask":
        result["fg_ratio"] = float(np.count_nonzero(array > 127)) / max(1, array.size)
    if store_pixels:
        result["pixels"] = np.ascontiguousarray(array)
    if store_encoded:
        if resized:
            fmt = "png" if kind == "mask" else "jpeg"
            result["encoded"], result["format"] = imageio.encode(array, fmt), fmt
        else:
            result["encoded"], result["format"] = data, None  # original bytes, untouched
    return result


def _pack_chunk(items, store_pixels, store_encoded):
    return [_pack_one(item, store_pixels, store_encoded) for item in items]


class _Runner:
    """Ordered map over chunks, in-process or on a process pool, with a bounded window."""

    def __init__(self, workers: int):
        self.workers = max(1, int(workers or 1))
        self.pool = None
        if self.workers > 1:
            import multiprocessing

            # fork is cheap and safe here (the pool starts before the output file is opened);
            # elsewhere (macOS, Windows) fork is unsafe or missing: spawn
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            context = multiprocessing.get_context(method)
            self.pool = context.Pool(self.workers, initializer=_init_worker)

    def map(self, function, chunks, *args):
        if self.pool is None:
            for chunk in chunks:
                yield function(chunk, *args)
            return
        window = deque()
        limit = 2 * self.workers  # bounds the decoded pixels waiting for the writer
        for chunk in chunks:
            window.append(self.pool.apply_async(function, (chunk, *args)))
            if len(window) >= limit:
                yield window.popleft().get()
        while window:
            yield window.popleft().get()

    def close(self, ok: bool):
        if self.pool is not None:
            if ok:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
            self.pool = None


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
            rel = _relative(root, path)
            digest.update(f"{rel}\0{seen[key]}\0".encode())
    return digest.hexdigest()


def _relative(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def read_attrs(path) -> dict | None:
    """Root attributes of a packed file, or None when it is not one (or cannot be read)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            attrs = dict(handle.attrs)
    except (OSError, ValueError):
        return None
    if attrs.get("format") != FORMAT:
        return None
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_parts(output: Path) -> list[Path]:
    removed = []
    for part in output.parent.glob(f".{output.name}.*.part"):
        pid_text = part.name[len(output.name) + 2 : -len(".part")]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            try:
                part.unlink()
                removed.append(part)
            except OSError:
                pass
    return removed


def _resolve_workers(workers) -> int:
    if workers is None:
        return max(1, min(8, os.cpu_count() or 1))
    return max(0, int(workers))


class _Problems:
    """Problems keyed by (file, reason), each remembering the samples it removed."""

    def __init__(self, subsets=()):
        self._by_key: OrderedDict = OrderedDict()
        self._subsets = list(subsets)

    def add(self, file, reason, ref):
        key = (str(file), reason)
        problem = self._by_key.get(key)
        if problem is None:
            problem = self._by_key[key] = Problem(str(file), reason, ref.subset, ref.split)
        if ref.name not in problem.samples:
            problem.samples.append(ref.name)

    def __len__(self):
        return len(self._by_key)

    def list(self):
        """Sorted by subset (in the dataset's order), split and file."""
        order = {name: i for i, name in enumerate(self._subsets)}
        for problem in self._by_key.values():
            order.setdefault(problem.subset, len(order))
        splits = {name: i for i, name in enumerate(layout.SPLITS)}
        return sorted(
            self._by_key.values(), key=lambda p: (order[p.subset], splits.get(p.split, len(splits)), p.file)
        )


def _size_problem(ref, sizes):
    """The file whose size disagrees with the other two (the composite when all differ)."""
    comp, mask, real = sizes
    text = f"size mismatch: composite {comp[0]}x{comp[1]}, mask {mask[0]}x{mask[1]}, real {real[0]}x{real[1]}"
    if comp == real:
        return ref.mask, text
    if comp == mask:
        return ref.real, text
    return ref.composite, text


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
) -> PackReport:
    """Pack the dataset under ``root`` (iHarmony4 layout) into one HDF5 file.

    Args:
        root: dataset root holding subset folders (or a single subset folder).
        output: HDF5 file to write (default ``<root>/iharmony4.h5``).
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

    Returns a :class:`PackReport`. The source tree is never modified; the output appears only
    when complete (temporary file, then rename).
    """
    started = time.perf_counter()
    root = Path(root).expanduser()
    if storage not in STORAGES:
        raise DatasetError(f"unknown storage {storage!r}", f"use one of {', '.join(STORAGES)}")
    max_side = int(max_side or 0)
    if max_side < 0:
        raise DatasetError(f"--max-side must be >= 0, got {max_side}")
    output = Path(output).expanduser() if output else default_output(root)
    if output.exists() and output.is_dir():
        output = output / DEFAULT_NAME
    report_path = report_path_for(output)
    notice = on_notice or (lambda message: None)
    progress = on_progress or (lambda phase, done, total: None)

    chosen = layout.resolve_subsets(root, subsets)
    refs = layout.scan(root, chosen)
    options = {
        "format_version": FORMAT_VERSION,
        "max_side": max_side,
        "storage": storage,
        "subsets": chosen,
    }
    fingerprint = _fingerprint(root, refs, options)

    report = PackReport(output=output, storage=storage, max_side=max_side, subsets=list(chosen))

    if output.exists():
        attrs = read_attrs(output)
        if attrs is None and not force:
            raise DatasetError(
                f"{output} exists and is not a dataset packed by harmonize",
                "choose another -o, or pass --force to overwrite it",
            )
        if attrs is not None and not force and attrs.get("complete") and attrs.get("fingerprint") == fingerprint:
            report.up_to_date = True
            report.complete = True
            report.counts = json.loads(attrs.get("counts", "{}"))
            report.skipped = int(attrs.get("skipped", 0))
            report.resized = int(attrs.get("resized", 0))
            report.bytes_on_disk = output.stat().st_size
            report.report_path = report_path if report_path.exists() else None
            if report.report_path:
                try:
                    previous = json.loads(report_path.read_text())
                    report.problems = [Problem(**p) for p in previous.get("problems", [])]
                except (OSError, ValueError, TypeError):
                    pass
            report.seconds = time.perf_counter() - started
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

    for part in _remove_stale_parts(output):
        notice(f"removed {part.name}, left by an interrupted run")

    problems = _Problems(chosen)
    workers = _resolve_workers(workers)
    runner = _Runner(workers)
    ok = False
    tmp = output.parent / f".{output.name}.{os.getpid()}.part"
    try:
        # ---------------------------------------------------------------- pass 1: scan
        unique = list(OrderedDict.fromkeys(str(p) for ref in refs for p in (ref.composite, ref.mask, ref.real)))
        probed = {}
        done = 0
        progress("scan", 0, len(unique))
        for paths, results in zip(_chunks(unique, 256), runner.map(_probe_chunk, _chunks(unique, 256))):
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
                elif error:
                    problems.add(path, f"unreadable {role}: {error}", ref)
                    bad = True
                sizes.append(size)
            if not bad and not (sizes[0] == sizes[1] == sizes[2]):
                problems.add(*_size_problem(ref, sizes), ref)
                bad = True
            if not bad:
                valid.append(ref)

        if strict and len(problems):
            _fail_strict(report, problems, report_path, started)
        if not valid:
            report.problems = problems.list()
            report.skipped = len(refs)
            _write_report(report, report_path, started)
            raise DatasetError(f"no usable samples under {root}", f"all {len(refs)} were bad; see {report_path}")

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

        _check_disk_space(output, plan, storage)

        # ---------------------------------------------------------------- pass 2: pack
        import h5py

        store_pixels = storage in ("pixels", "both")
        store_encoded = storage in ("encoded", "both")
        decode_errors = {}  # (kind, row) -> reason
        fg_ratio = np.zeros(len(tables["mask"]), dtype=np.float32)
        with h5py.File(tmp, "w") as handle:
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
                            "encoded", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(_ENCODED_CHUNK,)
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
            for results in runner.map(_pack_chunk, _chunks(items, chunk_size), store_pixels, store_encoded):
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
                        _append_encoded(encoded[kind], row, result)
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
                        problems.add(path, f"unreadable {role}: {decode_errors[(kind, row)]}", ref)
                        bad = True
                if not bad:
                    keep.append((ref, c_row, r_row, m_row))
            if strict and len(problems):
                _fail_strict(report, problems, report_path, started)
            if not keep:
                raise DatasetError(f"no usable samples under {root}", "every sample had a bad file")

            for kind in KINDS:
                _write_table(handle[kind], root, plan[kind], store_pixels, encoded.get(kind))

            counts: dict = {}
            for ref, *_ in keep:
                counts.setdefault(ref.subset, {}).setdefault(ref.split, 0)
                counts[ref.subset][ref.split] += 1
            resized_flags = np.array(
                [tuple(plan["composite"]["stored"][c]) != tuple(plan["composite"]["original"][c]) for _, c, _, _ in keep]
            )
            _write_samples(handle, keep, plan, fg_ratio, resized_flags)

            report.counts = counts
            report.problems = problems.list()
            report.skipped = len(refs) - len(keep)
            report.resized = int(resized_flags.sum())
            handle.attrs.update(
                {
                    "harmonize_version": __version__,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "source_root": str(root.resolve()),
                    "subsets": json.dumps(chosen),
                    "splits": json.dumps(list(layout.SPLITS)),
                    "storage": storage,
                    "max_side": max_side,
                    "resize_filter": "lanczos (PIL)",
                    "counts": json.dumps(counts),
                    "skipped": report.skipped,
                    "resized": report.resized,
                    "fingerprint": fingerprint,
                }
            )
            handle.attrs["complete"] = True  # last: a file without it is never read
        with open(tmp, "rb+") as raw:
            os.fsync(raw.fileno())
        os.replace(tmp, output)
        ok = True
    finally:
        runner.close(ok)
        if not ok:
            try:
                tmp.unlink()
            except OSError:
                pass

    report.complete = True
    report.bytes_on_disk = output.stat().st_size
    _write_report(report, report_path, started)
    return report


def estimate_bytes(plan, storage) -> int:
    """Expected size of the output: pixel heaps and/or encoded bytes."""
    total = 0
    if storage in ("pixels", "both"):
        total += plan["composite"]["total"] + plan["real"]["total"] + plan["mask"]["total"]
    if storage in ("encoded", "both"):
        for kind in KINDS:
            info = plan[kind]
            for path, original, stored in zip(info["paths"], info["original"], info["stored"]):
                state = imageio.file_state(path)
                size = state[0] if state else 0
                shrink = (stored[0] * stored[1]) / max(1, original[0] * original[1])
                total += int(size * min(1.0, shrink))
    return total


def _check_disk_space(output: Path, plan, storage) -> None:
    import shutil

    need = estimate_bytes(plan, storage)
    try:
        free = shutil.disk_usage(output.parent).free
    except OSError:
        return
    if need > free * 0.98:
        gib = 1 << 30
        hint = "free some space or choose another disk with -o"
        if storage != "encoded":
            hint += "; --storage encoded is about as large as the source images (and slower to read)"
        raise DatasetError(
            f"not enough disk space for {output}: about {need / gib:.1f} GiB needed, {free / gib:.1f} GiB free",
            hint,
        )


def _fail_strict(report, problems, report_path, started):
    report.problems = problems.list()
    _write_report(report, report_path, started)
    first = report.problems[0]
    raise DatasetError(
        f"{len(report.problems)} problem(s) found with --strict; first: {first.file}: {first.reason}",
        f"full list in {report_path}; without --strict bad samples are skipped",
    )


def _write_report(report: PackReport, path: Path, started: float) -> None:
    report.seconds = time.perf_counter() - started
    report.report_path = path
    try:
        atomic_write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")
        os.chmod(path, 0o644)
    except OSError:
        report.report_path = None


def _append_encoded(state, row, result):
    data = np.frombuffer(result["encoded"], dtype=np.uint8)
    dataset, end = state["data"], state["end"]
    need = end + data.size
    if need > dataset.shape[0]:
        dataset.resize((max(need, int(dataset.shape[0] * 1.5) + _ENCODED_CHUNK),))
    dataset[end:need] = data
    state["offset"][row] = end
    state["length"][row] = data.size
    state["end"] = need
    if result["format"]:
        state["format"][row] = result["format"]


def _write_table(group, root, info, store_pixels, encoded):
    import h5py

    strings = h5py.string_dtype()
    names = [_relative(root, Path(p)) for p in info["paths"]]
    n = len(names)
    group.create_dataset("name", data=np.array(names, dtype=object), dtype=strings)
    shape = np.zeros((n, 3), dtype=np.int32)
    if n:
        shape[:, :2] = info["stored"]
        shape[:, 2] = info["channels"]
    group.create_dataset("shape", data=shape)
    group.create_dataset("original_size", data=info["original"].astype(np.int32).reshape(-1, 2))
    if store_pixels:
        group.create_dataset("offset", data=info["offsets"].astype(np.int64))
    if encoded is not None:
        encoded["data"].resize((encoded["end"],))
        group.create_dataset("encoded_offset", data=encoded["offset"])
        group.create_dataset("encoded_length", data=encoded["length"])
        group.create_dataset("encoded_format", data=np.array(encoded["format"], dtype=object), dtype=strings)


def _write_samples(handle, keep, plan, fg_ratio, resized_flags):
    import h5py

    strings = h5py.string_dtype()
    group = handle.create_group("samples")
    group.create_dataset("subset", data=np.array([r.subset for r, *_ in keep], dtype=object), dtype=strings)
    group.create_dataset("split", data=np.array([r.split for r, *_ in keep], dtype=object), dtype=strings)
    group.create_dataset("name", data=np.array([r.name for r, *_ in keep], dtype=object), dtype=strings)
    composite = np.array([c for _, c, _, _ in keep], dtype=np.int32)
    mask = np.array([m for _, _, _, m in keep], dtype=np.int32)
    group.create_dataset("composite", data=composite)
    group.create_dataset("real", data=np.array([r for _, _, r, _ in keep], dtype=np.int32))
    group.create_dataset("mask", data=mask)
    group.create_dataset("size", data=plan["composite"]["stored"][composite].astype(np.int32))
    group.create_dataset("original_size", data=plan["composite"]["original"][composite].astype(np.int32))
    group.create_dataset("resized", data=resized_flags.astype(bool))
    group.create_dataset("fg_ratio", data=fg_ratio[mask])
