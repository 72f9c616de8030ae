"""Where the samples of a :class:`~harmonize_cli.data.HarmonizationDataset` come from: a packed
HDF5 file (pixel heaps memory-mapped per process, a crop reads only its rows) or a folder tree in
iHarmony4 / HYouTube layout (decoded with the same ``max_side`` cap as ``harmonize prepare``).

:func:`open_source` picks one; each source gives the sample table (subset, name, size, ...) and a
:class:`~harmonize_cli.data.transforms.SampleReader` per sample.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import hyoutube, imageio, layout
from .layout import DatasetError
from .packfile import FORMAT, FORMAT_VERSION, KINDS, check_layout, check_tables, damaged, is_complete, require_entries
from .transforms import SampleReader, crop_box

__all__ = ["open_source"]


# ============================================================================ HDF5 source
class _H5Reader(SampleReader):
    __slots__ = ("_source", "_rows", "size", "_cache")

    def __init__(self, source, rows, size):
        self._source = source
        self._rows = rows
        self.size = size
        self._cache = {}

    def read(self, key, box=None):
        kind = key if key in KINDS else {"image": "composite", "target": "real"}[key]
        row = self._rows[kind]
        if self._source.has_pixels:
            return self._source.read_pixels(kind, row, box)
        array = self._cache.get(kind)
        if array is None:
            array = self._cache[kind] = self._source.decode_encoded(kind, row)
        return crop_box(array, box)


class _H5Source:
    kind = "hdf5"

    def __init__(self, path: Path, split: str, subsets):
        import h5py

        self.path = Path(path)
        try:
            handle = h5py.File(self.path, "r")
        except OSError as exc:
            raise DatasetError(f"cannot open {self.path} as HDF5 ({exc})") from None
        with handle:
            try:
                self._read_metadata(handle, split, subsets)
            except DatasetError:
                raise
            except (KeyError, ValueError, TypeError, IndexError, OSError, AttributeError) as exc:
                raise damaged(self.path, handle, exc) from None
        self._state = None

    def _read_metadata(self, handle, split, subsets):
        """Attributes, the sample table of ``split`` and the row tables (raises on damage)."""
        attrs = handle.attrs
        if attrs.get("format") != FORMAT:
            raise DatasetError(
                f"{self.path} is not a dataset packed by `harmonize prepare`",
                f"if it was one, pack it again: harmonize prepare --root SOURCE -o {self.path} --force",
            )
        if int(attrs.get("format_version", 0)) > FORMAT_VERSION:
            raise DatasetError(
                f"{self.path} uses dataset format {attrs.get('format_version')}, newer than this harmonize",
                "upgrade harmonize",
            )
        if not is_complete(attrs.get("complete")):
            raise DatasetError(
                f"{self.path} is incomplete (an interrupted `harmonize prepare`)",
                "run `harmonize prepare` again",
            )
        check_layout(handle)  # before any table is read: dtypes, sizes, storage inside the file
        has_pixels = require_entries(handle)
        self.storage = str(attrs.get("storage", "pixels"))
        self.packed_splits = json.loads(attrs.get("splits", json.dumps(list(layout.SPLITS))))
        self.max_side = int(attrs.get("max_side", 0))
        available = json.loads(attrs.get("subsets", "[]"))
        samples = handle["samples"]
        subset_col = samples["subset"].asstr()[:]
        split_col = samples["split"].asstr()[:]
        if not available:
            available = list(dict.fromkeys(subset_col.tolist()))
        self.subsets = layout.match_subsets(
            available, subsets, lambda name: DatasetError(f"subset {name!r} is not in {self.path}",
                                                          f"available: {', '.join(available)}"))
        select = (split_col == split) & np.isin(subset_col, self.subsets)
        index = np.nonzero(select)[0]
        self.sample_subset = subset_col[index]
        self.sample_name = samples["name"].asstr()[:][index]
        self.rows = {kind: samples[kind][:][index].astype(np.int64) for kind in KINDS}
        self.size = samples["size"][:][index].astype(np.int64)
        self.original_size = samples["original_size"][:][index].astype(np.int64)
        self.fg_ratio = samples["fg_ratio"][:][index].astype(np.float32)
        if "clip" in samples:  # a video dataset (HYouTube layout): every sample is a frame of a clip
            self.sample_clip = samples["clip"].asstr()[:][index]
            self.sample_frame = samples["frame"][:][index].astype(np.int64)
        self.has_pixels = has_pixels
        self.tables = {}
        for kind in KINDS:
            group = handle[kind]
            table = {"shape": group["shape"][:].astype(np.int64)}
            if self.has_pixels:
                table["offset"] = group["offset"][:].astype(np.int64)
            else:
                table["encoded_offset"] = group["encoded_offset"][:].astype(np.int64)
                table["encoded_length"] = group["encoded_length"][:].astype(np.int64)
            self.tables[kind] = table
        check_tables(self, handle)

    def __len__(self):
        return len(self.sample_name)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_state"] = None  # never pickle an open handle or a memory map
        return state

    def _open(self):
        """Per-process handles: an h5py file, and memory maps of the contiguous heaps."""
        state = self._state
        if state is not None and state["pid"] == os.getpid():
            return state
        import h5py

        handle = h5py.File(self.path, "r", rdcc_nbytes=8 << 20)
        heaps = {}
        for kind in KINDS:
            name = "pixels" if self.has_pixels else "encoded"
            dataset = handle[kind][name]
            heap = dataset
            if dataset.chunks is None and dataset.compression is None and dataset.shape[0] > 0:
                offset = dataset.id.get_offset()
                if offset is not None:
                    heap = np.memmap(self.path, dtype=np.uint8, mode="r", offset=offset, shape=dataset.shape)
            heaps[kind] = heap
        self._state = state = {"pid": os.getpid(), "handle": handle, "heaps": heaps}
        return state

    def reader(self, i):
        rows = {kind: int(self.rows[kind][i]) for kind in KINDS}
        return _H5Reader(self, rows, (int(self.size[i][0]), int(self.size[i][1])))

    def read_pixels(self, kind, row, box):
        heap = self._open()["heaps"][kind]
        height, width, channels = (int(v) for v in self.tables[kind]["shape"][row])
        start = int(self.tables[kind]["offset"][row])
        if box is None:
            top, left, box_h, box_w = 0, 0, height, width
        else:
            top, left, box_h, box_w = box
        row_bytes = width * channels
        lines = np.asarray(heap[start + top * row_bytes : start + (top + box_h) * row_bytes])
        lines = lines.reshape(box_h, width, channels)
        if left or box_w != width:
            lines = lines[:, left : left + box_w]
        region = lines[:, :, 0] if channels == 1 else lines
        return np.array(region, order="C")  # the only copy: page cache -> this crop

    def decode_encoded(self, kind, row):
        heap = self._open()["heaps"][kind]
        start = int(self.tables[kind]["encoded_offset"][row])
        length = int(self.tables[kind]["encoded_length"][row])
        data = np.asarray(heap[start : start + length]).tobytes()
        array = imageio.decode_mask(data) if kind == "mask" else imageio.decode_image(data)
        expected = tuple(int(v) for v in self.tables[kind]["shape"][row][:2])
        if array.shape[:2] != expected:
            raise DatasetError(f"{self.path}: stored {kind} {row} decodes to a different size")
        return array

    def close(self):
        if self._state is not None and self._state["pid"] == os.getpid():
            self._state["handle"].close()
        self._state = None


# ============================================================================ folder source
class _FolderReader(SampleReader):
    __slots__ = ("_ref", "_max_side", "size", "_original", "_cache")

    def __init__(self, ref, max_side):
        self._ref = ref
        self._max_side = max_side
        try:
            self._original, _ = imageio.probe(ref.composite)
        except (imageio.DecodeError, OSError) as exc:
            raise DatasetError(f"cannot read {ref.composite}: {exc}") from None
        self.size = imageio.capped_size(*self._original, max_side)
        self._cache = {}

    def read(self, key, box=None):
        kind = key if key in KINDS else {"image": "composite", "target": "real"}[key]
        array = self._cache.get(kind)
        if array is None:
            path = getattr(self._ref, kind)
            try:
                array, header = imageio.decode_capped(path, kind == "mask", self._max_side)
            except (imageio.DecodeError, OSError) as exc:
                raise DatasetError(f"cannot read {path}: {exc}") from None
            if tuple(header) != tuple(self._original):
                raise DatasetError(
                    f"size mismatch in sample {self._ref.subset}/{self._ref.name}: {path} is "
                    f"{header[0]}x{header[1]}, the composite {self._original[0]}x{self._original[1]}"
                )
            self._cache[kind] = array
        return crop_box(array, box)


class _FolderSource:
    kind = "folder"

    def __init__(self, root: Path, split: str, subsets, max_side):
        self.path = Path(root)
        self.max_side = int(max_side or 0)
        if hyoutube.is_root(self.path):  # a video dataset: one subset, every frame a sample
            self.subsets = hyoutube.resolve_subsets(self.path, subsets)
            listing = hyoutube.list_file(self.path, split)
            refs = hyoutube.scan_split(self.path, split, listing)[0] if listing is not None else []
        else:
            self.subsets = layout.resolve_subsets(self.path, subsets)
            refs = layout.scan(self.path, self.subsets, splits=(split,))
        self.refs = [ref for ref in refs if not layout.missing_files(ref)]
        self.missing = len(refs) - len(self.refs)
        self.sample_subset = np.array([ref.subset for ref in self.refs], dtype=object)
        self.sample_name = np.array([ref.name for ref in self.refs], dtype=object)
        if any(ref.clip for ref in self.refs):
            self.sample_clip = np.array([ref.clip for ref in self.refs], dtype=object)
            self.sample_frame = np.array([ref.frame for ref in self.refs], dtype=np.int64)

    def __len__(self):
        return len(self.refs)

    def reader(self, i):
        return _FolderReader(self.refs[i], self.max_side)

    def close(self):
        pass


def open_source(source, split="train", subsets=None, max_side=1024):
    """The sample source behind a dataset path (HDF5 file or folder tree)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}", "pass a file made by `harmonize prepare` or a folder tree")
    if path.is_dir():
        return _FolderSource(path, split, subsets, max_side)
    return _H5Source(path, split, subsets)
