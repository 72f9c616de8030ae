"""``HarmonizationDataset``: samples from a packed HDF5 file or straight from a folder tree.

>>> from harmonize_cli.data import HarmonizationDataset, train_transform
>>> ds = HarmonizationDataset("iHarmony4/iharmony4.h5", split="train", transform=train_transform(256))
>>> s = ds[0]; s["image"].shape, s["mask"].shape, s["subset"], s["name"]

Both sources give identical samples for the same data (the folder reader applies the same
``max_side`` Lanczos cap as ``harmonize prepare``). The HDF5 source is the fast one: pixel
heaps are memory-mapped and a random crop reads only the rows it needs.

Multi-process safety: nothing unpicklable lives on the dataset. HDF5 handles and memory maps
are opened lazily, per process (a worker that inherits a handle from its parent by fork
reopens its own), so the dataset works with any number of DataLoader workers and with
``DistributedSampler`` (the length and order never depend on the process).
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import numpy as np
import torch

from . import hyoutube, imageio, layout
from .layout import DatasetError
from .pack import FORMAT, FORMAT_VERSION, KINDS
from .packfile import check_layout, check_tables, damaged, is_complete, require_entries
from .transforms import _SCALE, _SHIFT, NoResize, SampleReader, Transform, crop_box, normalize

__all__ = ["HarmonizationDataset", "open_source"]


def _match_subsets(available, subsets, where):
    if subsets is None or subsets == "" or subsets == []:
        return list(available)
    if isinstance(subsets, str):
        subsets = [s.strip() for s in subsets.split(",") if s.strip()]
    by_lower = {name.lower(): name for name in available}
    chosen = []
    for name in subsets:
        match = by_lower.get(str(name).lower())
        if match is None:
            raise DatasetError(f"subset {name!r} is not in {where}", f"available: {', '.join(available)}")
        if match not in chosen:
            chosen.append(match)
    return [name for name in available if name in chosen]


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
        self.subsets = _match_subsets(available, subsets, self.path)
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


# ============================================================================ dataset
class HarmonizationDataset(torch.utils.data.Dataset):
    """Composite / real / mask samples for training and evaluation.

    Args:
        source: a ``.h5`` file made by ``harmonize prepare`` or a folder in iHarmony4 layout.
        split: ``"train"`` or ``"test"``.
        subsets: subset names to keep (list or comma-separated; case-insensitive); None: all.
        transform: a joint transform (see ``transforms``); None keeps the native size.
        keep_background_prob: re-draw a random crop that lost the foreground, except with
            this probability; negative disables it. Default 0.05 for train, -1 for test.
        keep_raw: also return ``"image_255"`` and ``"target_255"`` (``3xHxW`` float32, 0..255,
            after resizing, before normalisation).
        max_side: for folder sources only: cap the long side like ``prepare`` (default 1024,
            0 = native). A packed file already carries its own cap.
        uint8_images: return ``image`` and ``target`` as uint8 0..255 tensors, not normalised
            (lossless: resized images are rounded anyway). A quarter of the bytes to move
            from DataLoader workers; normalise on the device with
            ``harmonize_cli.data.normalize(batch["image"].float())``.

    Each sample is a dict: ``image`` and ``target`` (``3xHxW`` float32, ImageNet-normalised
    composite and real image), ``mask`` (``1xHxW`` float32 in [0, 1]), ``subset``, ``name``
    and ``index``; for a video dataset (HYouTube layout, ``is_video``) also ``clip``
    (``<video>/<object>``) and ``frame`` (its position in the clip).
    """

    def __init__(
        self,
        source,
        split="train",
        subsets=None,
        transform=None,
        keep_background_prob=None,
        keep_raw=False,
        max_side=1024,
        uint8_images=False,
    ):
        if split not in layout.SPLITS:
            raise DatasetError(f"unknown split {split!r}", "use 'train' or 'test'")
        self.source = Path(source).expanduser()
        self.split = split
        self._source = open_source(self.source, split, subsets, max_side)
        if len(self._source) == 0:
            packed = getattr(self._source, "packed_splits", layout.SPLITS)
            if split not in packed:
                raise DatasetError(
                    f"{self.source} has no {split} split (it was packed with --splits {','.join(packed)})",
                    f"pack the {split} split too: harmonize prepare --root SOURCE --splits train,test",
                )
            raise DatasetError(
                f"no {split} samples in {self.source} for subsets {', '.join(self._source.subsets)}"
            )
        self.transform = transform if transform is not None else NoResize()
        self._pass_kbp = _accepts_keep_background(self.transform)
        self._owns_outputs = isinstance(self.transform, Transform)
        if keep_background_prob is None:
            keep_background_prob = 0.05 if split == "train" else -1.0
        self.keep_background_prob = float(keep_background_prob)
        self.keep_raw = bool(keep_raw)
        self.uint8_images = bool(uint8_images)
        self.records = list(zip(self._source.sample_subset.tolist(), self._source.sample_name.tolist()))
        clips = getattr(self._source, "sample_clip", None)
        # video datasets: (clip, frame index) of every sample, else None
        self.frames = (list(zip(clips.tolist(), self._source.sample_frame.tolist())) if clips is not None
                       else None)
        present = set(self._source.sample_subset.tolist())
        self.subset_names = [name for name in self._source.subsets if name in present]

    # ------------------------------------------------------------------ info
    @property
    def kind(self) -> str:
        """``"hdf5"`` or ``"folder"``."""
        return self._source.kind

    @property
    def is_video(self) -> bool:
        """True for a video dataset (HYouTube layout): samples are frames of clips."""
        return self.frames is not None

    @property
    def missing(self) -> int:
        """Samples of a folder source left out because a file is missing (0 for HDF5)."""
        return getattr(self._source, "missing", 0)

    def subset_indices(self, subset) -> list:
        """Indices of the samples of one subset (e.g. for per-subset evaluation)."""
        return [i for i, (name, _) in enumerate(self.records) if name == subset]

    def info(self, index) -> dict:
        """Stored size, original size and (HDF5) foreground ratio of a sample (video sets: its clip
        and frame index), without decoding."""
        index = int(index)
        subset, name = self.records[index]
        out = {"subset": subset, "name": name, "split": self.split}
        if self.frames is not None:
            out["clip"], out["frame"] = self.frames[index]
        if self.kind == "hdf5":
            out["size"] = tuple(int(v) for v in self._source.size[index])
            out["original_size"] = tuple(int(v) for v in self._source.original_size[index])
            out["fg_ratio"] = float(self._source.fg_ratio[index])
        return out

    def __len__(self):
        return len(self.records)

    def __repr__(self):
        return (
            f"HarmonizationDataset({str(self.source)!r}, split={self.split!r}, "
            f"subsets={self.subset_names}, samples={len(self)}, transform={self.transform!r})"
        )

    # ------------------------------------------------------------------ samples
    def reader(self, index) -> SampleReader:
        """The raw reader of a sample (stored size, region reads), for custom pipelines."""
        return self._source.reader(int(index))

    def __getitem__(self, index):
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range (dataset of {len(self)})")
        reader = self._source.reader(index)
        if self._pass_kbp:
            out = self.transform(reader, keep_background_prob=self.keep_background_prob)
        else:
            out = self.transform(reader)
        subset, name = self.records[index]
        if self.uint8_images:
            image, target = out["image"].to(torch.uint8), out["target"].to(torch.uint8)
        elif self.keep_raw or not self._owns_outputs:
            image, target = normalize(out["image"]), normalize(out["target"])
        else:  # our transforms return fresh tensors: normalise in place, no new allocation
            image, target = _normalize_(out["image"]), _normalize_(out["target"])
        sample = {
            "image": image,
            "target": target,
            "mask": out["mask"],
            "subset": subset,
            "name": name,
            "index": index,
        }
        if self.frames is not None:
            sample["clip"], sample["frame"] = self.frames[index]
        if self.keep_raw:
            sample["image_255"] = out["image"]
            sample["target_255"] = out["target"]
        return sample

    def close(self):
        """Close this process's file handle (it reopens on the next access)."""
        self._source.close()


def _normalize_(image_255: torch.Tensor) -> torch.Tensor:
    if image_255.dtype != torch.float32 or not image_255.is_contiguous():
        return normalize(image_255)
    return image_255.mul_(_SCALE).add_(_SHIFT)


def _accepts_keep_background(transform) -> bool:
    try:
        parameters = inspect.signature(transform).parameters
    except (TypeError, ValueError):
        return True
    return "keep_background_prob" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
