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
from pathlib import Path

import torch

from . import layout
from .layout import DatasetError
from .sources import open_source
from .transforms import _SCALE, _SHIFT, NoResize, SampleReader, Transform, normalize

__all__ = ["HarmonizationDataset", "open_source"]


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
