"""The HDF5 side of a packed dataset: format constants, table writers and checks, disk space.

The layout is documented in ``docs/datasets.md``; :mod:`harmonize_cli.data.pack` drives the
writing and :mod:`harmonize_cli.data.dataset` reads it back.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import HarmonizeError
from ..outputs import starts_with
from . import imageio
from .layout import DatasetError

FORMAT = "harmonize-iharmony4"
FORMAT_VERSION = 1
KINDS = ("composite", "real", "mask")

ENCODED_CHUNK = 1 << 20
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def relative(root: Path, path: Path) -> str:
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


def _file_size_limit() -> int | None:
    """The process's file size limit (``ulimit -f``, RLIMIT_FSIZE) in bytes; None: unlimited."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (ImportError, OSError, ValueError, AttributeError):
        return None
    return None if soft == resource.RLIM_INFINITY or soft < 0 else int(soft)


def _amount(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size / 1024:.0f} KiB"


def check_disk_space(output: Path, plan, storage) -> None:
    need = estimate_bytes(plan, storage)
    limit = _file_size_limit()
    if limit is not None and need > limit:
        raise DatasetError(
            f"{output} would be about {_amount(need)}, over this process's file size limit "
            f"of {_amount(limit)} (ulimit -f)",
            "raise the limit (ulimit -f unlimited) or pack fewer subsets",
        )
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


@contextmanager
def writing(tmp: Path, output: Path):
    """``h5py.File(tmp, "w")``, closed and flushed to disk at the end; a write that fails (a full
    disk, ``ulimit -f``, a quota, an I/O error), there or while closing, is one
    :class:`DatasetError` naming ``output``. A file whose writes failed is closed without writing
    anything more (HDF5 would otherwise retry its flush at exit and may crash the process); the
    caller removes ``tmp``."""
    import h5py

    try:
        handle = h5py.File(tmp, "w")
    except (OSError, RuntimeError) as exc:
        raise _write_error(output, exc) from None
    try:
        yield handle
    except BaseException as exc:
        _discard(handle)
        if isinstance(exc, (OSError, RuntimeError)) and not isinstance(exc, HarmonizeError):
            raise _write_error(output, exc) from None
        raise
    try:
        handle.close()
        with open(tmp, "rb+") as raw:
            os.fsync(raw.fileno())
    except (OSError, RuntimeError) as exc:
        _discard(handle)
        raise _write_error(output, exc) from None


def _discard(handle) -> None:
    """Close an HDF5 file without writing to it again: its descriptor is pointed at /dev/null first."""
    try:
        if handle.id.valid:
            descriptor = handle.id.get_vfd_handle()
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, int(descriptor))
            finally:
                os.close(null)
    except Exception:  # noqa: BLE001 - best effort; the close below is what matters
        pass
    try:
        handle.close()
    except Exception:  # noqa: BLE001
        pass


def _write_error(output: Path, exc: BaseException) -> DatasetError:
    text = str(exc)
    found = re.search(r"error message = '([^']+)'", text)
    number = getattr(exc, "errno", None)
    reason = found.group(1) if found else (os.strerror(number) if isinstance(number, int) else
                                           (text.splitlines()[0][:160] if text else type(exc).__name__))
    return DatasetError(
        f"cannot write {output}: {reason}",
        "free disk space (or raise the file size limit, ulimit -f) or choose another location with -o; "
        "no partial file is left",
    )


def append_encoded(state, row, result):
    data = np.frombuffer(result["encoded"], dtype=np.uint8)
    dataset, end = state["data"], state["end"]
    need = end + data.size
    if need > dataset.shape[0]:
        dataset.resize((max(need, int(dataset.shape[0] * 1.5) + ENCODED_CHUNK),))
    dataset[end:need] = data
    state["offset"][row] = end
    state["length"][row] = data.size
    state["end"] = need
    if result["format"]:
        state["format"][row] = result["format"]


def write_table(group, root, info, store_pixels, encoded):
    import h5py

    strings = h5py.string_dtype()
    names = [relative(root, Path(p)) for p in info["paths"]]
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


def write_samples(handle, keep, plan, fg_ratio, resized_flags):
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
    if any(ref.clip for ref, *_ in keep):  # a video dataset: the clip and position of every frame
        group.create_dataset("clip", data=np.array([r.clip for r, *_ in keep], dtype=object), dtype=strings)
        group.create_dataset("frame", data=np.array([r.frame for r, *_ in keep], dtype=np.int32))


# ---------------------------------------------------------------------------- temporary files
def remove_stale_parts(output: Path) -> list[Path]:
    """The ``.part`` files of ``output`` left by killed runs (this process's own included)."""
    from ..atomic import remove_stale_parts as remove

    return remove(output, include_own=True)


# ---------------------------------------------------------------------------- reading checks
_SAMPLE_COLUMNS = [f"samples/{name}" for name in ("subset", "split", "name", *KINDS, "size", "original_size", "fg_ratio")]
_TABLE_COLUMNS = {True: ("shape", "offset", "pixels"), False: ("shape", "encoded_offset", "encoded_length", "encoded")}


# what the writer stores; anything else in a file is refused when it is opened
HEAP_NAMES = ("pixels", "encoded")
MAX_TABLE_ROWS = 10_000_000  # iHarmony4 has 73 146 samples
MAX_CHUNK_BYTES = 64 << 20  # one HDF5 chunk is decompressed whole to read any byte of it
_INTEGER_COLUMNS = ("shape", "original_size", "offset", "encoded_offset", "encoded_length",
                    "composite", "real", "mask", "size")


def is_complete(value) -> bool:
    """True only for a true boolean ``complete`` attribute (the string "False" is not complete)."""
    return isinstance(value, (bool, np.bool_)) and bool(value)


def check_layout(handle) -> None:
    """Before any table is read: every dataset stored inside this file (no external or virtual
    storage), heaps of bytes (uint8, one dimension), tables of the writer's dtypes and of bounded
    length, chunks small enough to decompress. Raises DatasetError for foreign storage,
    ValueError (reported as damage) for the rest."""
    import h5py

    problems = []

    def visit(name, item):
        if not isinstance(item, h5py.Dataset) or problems:
            return
        if item.external or item.is_virtual:
            where = "external files" if item.external else "other files (a virtual dataset)"
            problems.append(DatasetError(
                f"{handle.filename}: '{name}' keeps its data in {where}; harmonize reads only data stored "
                "inside the packed file", "pack the dataset again with `harmonize prepare`"))
            return
        leaf = name.rsplit("/", 1)[-1]
        if item.chunks is not None and int(np.prod(item.chunks)) * item.dtype.itemsize > MAX_CHUNK_BYTES:
            problems.append(ValueError(f"'{name}' is stored in chunks over {MAX_CHUNK_BYTES >> 20} MiB"))
        elif leaf in HEAP_NAMES:
            if item.dtype != np.uint8 or item.ndim != 1:
                problems.append(ValueError(f"'{name}' is {item.dtype} of {item.ndim} dimensions where "
                                           "harmonize writes bytes (uint8, one dimension)"))
        elif item.ndim > 2 or (item.ndim and item.shape[0] > MAX_TABLE_ROWS):
            problems.append(ValueError(f"'{name}' declares a table of shape {item.shape}, over "
                                       f"{MAX_TABLE_ROWS} rows"))
        elif leaf in _INTEGER_COLUMNS and item.dtype.kind not in "iu":
            problems.append(ValueError(f"'{name}' is {item.dtype} where harmonize writes integers"))
        elif leaf == "fg_ratio" and item.dtype.kind != "f":
            problems.append(ValueError(f"'{name}' is {item.dtype} where harmonize writes floats"))

    handle.visititems(visit)
    if problems:
        raise problems[0]


def require_entries(handle) -> bool:
    """Raise KeyError naming the first missing dataset; return whether pixels are stored."""
    has_pixels = f"{KINDS[0]}/pixels" in handle
    names = _SAMPLE_COLUMNS + [f"{kind}/{name}" for kind in KINDS for name in _TABLE_COLUMNS[has_pixels]]
    for name in names:
        if name not in handle:
            raise KeyError(f"'{name}'")
    return has_pixels


def damaged(path, handle, exc) -> DatasetError:
    """One line for a packed file whose metadata is missing or inconsistent."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    missing = re.search(r"object '([^']+)' doesn't exist", text)
    if missing:
        what = f"'{missing.group(1)}' is missing"
    elif isinstance(exc, KeyError):
        what = f"{text} is missing"
    else:
        what = text.splitlines()[0]
    try:
        source = handle.attrs.get("source_root")
        source = source.decode() if isinstance(source, bytes) else source
    except Exception:  # the attributes themselves may be unreadable
        source = None
    root = f"--root {source}" if source else "--root SOURCE"
    return DatasetError(
        f"{path} is damaged ({what})",
        f"pack it again: harmonize prepare {root} -o {path} --force",
    )


def _check_shapes(kind: str, shape: np.ndarray, max_pixels: int) -> None:
    """Stored images of at least one pixel, the writer's channels, at most ``max_pixels`` each."""
    if not len(shape):
        return
    if shape.ndim != 2 or shape.shape[1] != 3:
        raise ValueError(f"the {kind} shape table is not (rows, 3)")
    channels = 1 if kind == "mask" else 3
    if shape[:, :2].min() < 1 or (shape[:, 2] != channels).any():
        raise ValueError(f"the {kind} table declares an empty image or not {channels} channel(s)")
    pixels = shape[:, 0] * shape[:, 1]
    worst = int(np.argmax(pixels))
    if max_pixels and int(pixels[worst]) > max_pixels:
        from ..limits import describe

        height, width = int(shape[worst, 0]), int(shape[worst, 1])
        raise ValueError(f"{kind} image {worst} declares {describe(width, height)}, over the image limit of "
                         f"{max_pixels / 1e6:.0f} MP")


def _check_heap_storage(path, dataset) -> None:
    """A contiguous heap must lie inside the file (a memory map past its end would crash)."""
    if dataset.chunks is not None or not dataset.shape[0]:
        return
    offset = dataset.id.get_offset()
    if offset is None:
        raise ValueError(f"'{dataset.name}' has no data stored")
    if offset + dataset.shape[0] > os.path.getsize(path):
        raise ValueError(f"'{dataset.name}' ends past the end of the file (cut short?)")


def check_tables(source, handle, max_pixels: int | None = None) -> None:
    """Row indices inside their tables, heaps long enough and stored in the file, images no larger
    than the image limit (``max_pixels``, default :data:`~harmonize_cli.limits.DEFAULT_MAX_PIXELS`):
    a damaged or hostile file fails here, not mid-epoch nor after gigabytes."""
    from ..limits import DEFAULT_MAX_PIXELS

    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    n = len(source.sample_name)
    columns = [source.sample_subset, source.size, source.original_size, source.fg_ratio]
    columns += [source.rows[kind] for kind in KINDS]
    if any(len(column) != n for column in columns):
        raise ValueError("the sample table's columns differ in length")
    for kind in KINDS:
        table = source.tables[kind]
        rows = source.rows[kind]
        count = len(table["shape"])
        if n and (rows.min() < 0 or rows.max() >= count):
            raise ValueError(f"sample rows point outside the {kind} table")
        _check_shapes(kind, table["shape"], max_pixels)
        if source.has_pixels:
            shape = table["shape"]
            ends = table["offset"] + shape[:, 0] * shape[:, 1] * shape[:, 2]
            if len(table["offset"]) != count or (count and ends.max() > handle[kind]["pixels"].shape[0]):
                raise ValueError(f"the {kind} pixel table points past its heap")
            if count and table["offset"].min() < 0:
                raise ValueError(f"the {kind} pixel table has negative offsets")
            _check_heap_storage(source.path, handle[kind]["pixels"])
        else:
            ends = table["encoded_offset"] + table["encoded_length"]
            if len(table["encoded_offset"]) != count or (count and ends.max() > handle[kind]["encoded"].shape[0]):
                raise ValueError(f"the {kind} encoded table points past its heap")
            if count and min(table["encoded_offset"].min(), table["encoded_length"].min()) < 0:
                raise ValueError(f"the {kind} encoded table has negative offsets or lengths")
            _check_heap_storage(source.path, handle[kind]["encoded"])
