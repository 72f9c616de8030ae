"""What a weights file may cost, checked before it is loaded, and what its tensors may hold.

The one guard between a file handed to harmonize and ``torch.load`` (every entry point reads
weights through :func:`~harmonize_cli.zoo.checkpoints.safe_load`, and downloads are verified
through it too):

- the path is a regular file (a FIFO would block the read forever; ``/dev/zero`` never ends);
- what loading it can allocate is bounded *before* anything is read: a zip checkpoint by the
  sum of its entries' declared uncompressed sizes (``zipfile.infolist``: nothing is
  extracted), so a 1.4 MB deflated archive that unpacks to 2 GB is refused from its
  directory; a legacy (non-zip) or safetensors file by its size;
- after loading, before any tensor is touched: the sizes the tensors declare (a view with
  stride 0 over one number can declare gigabytes), complex dtypes (no network has them) and
  NaN or infinite values, named by their key.

The limit is :func:`max_weights_bytes`: ``MAX_WEIGHTS_BYTES`` (1 GiB, about ten times the
largest released harmonization checkpoint), or ``$HARMONIZE_MAX_WEIGHTS_MB``.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path
from typing import Iterator, Mapping

from ..errors import WeightsError

MAX_WEIGHTS_BYTES = 1 << 30
_ENV_LIMIT = "HARMONIZE_MAX_WEIGHTS_MB"
_RAISE_HINT = f"if the file is genuine, raise the limit with {_ENV_LIMIT}"

__all__ = ["MAX_WEIGHTS_BYTES", "max_weights_bytes", "check_file", "check_tensors", "special_file_kind"]


def max_weights_bytes() -> int:
    """The most bytes a weights file may unpack to: ``$HARMONIZE_MAX_WEIGHTS_MB`` or 1 GiB."""
    text = os.environ.get(_ENV_LIMIT, "").strip()
    if not text:
        return MAX_WEIGHTS_BYTES
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise WeightsError(f"{_ENV_LIMIT}={text!r} is not a positive number of megabytes",
                           f"set it like {_ENV_LIMIT}=4096, or unset it for the default of 1024")
    return int(value * (1 << 20))


def _size(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= (1 << 30) else f"{n / (1 << 20):.1f} MiB"


_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def special_file_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` is when it is not a regular file ("a FIFO (named pipe)"), else None."""
    for test, kind in _SPECIAL:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_file(path, limit: int | None = None) -> int:
    """Refuse, in one line, a path that is not a regular file or that could unpack to more than
    ``limit`` bytes (default :func:`max_weights_bytes`). Returns the file's size. Opens nothing
    that could block: the kind comes from ``stat``, the zip directory is read only from a
    regular file."""
    path = Path(path)
    limit = max_weights_bytes() if limit is None else int(limit)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist",
                           "give a path to a .pth file, a URL, or a name from `harmonize zoo list`") from None
    except OSError as exc:
        raise WeightsError(f"cannot read weights {path}: {exc.strerror or exc}") from None
    kind = special_file_kind(info.st_mode)
    if kind == "a folder":
        raise WeightsError(f"weights {path} is a folder, not a checkpoint file", "give the .pth file inside it")
    if kind is not None:
        raise WeightsError(f"weights {path} is {kind}, not a checkpoint file",
                           "save the checkpoint to a file and pass its path")
    if info.st_size > limit:  # a legacy or safetensors file holds its tensors as they are
        raise WeightsError(f"weights {path} is {_size(info.st_size)}, over the limit of {_size(limit)} "
                           "for a checkpoint", _RAISE_HINT)
    unpacked = _unpacked_size(path)
    if unpacked is not None and unpacked > limit:
        raise WeightsError(f"weights {path} unpacks to {_size(unpacked)} ({_size(info.st_size)} on disk), "
                           f"over the limit of {_size(limit)} for a checkpoint; refused before extracting "
                           "anything", _RAISE_HINT)
    return info.st_size


def _unpacked_size(path: Path) -> int | None:
    """The sum of a zip archive's declared uncompressed entry sizes (None: not a zip archive)."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            return sum(max(0, entry.file_size) for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None  # damaged: torch.load's own error is described by the caller


def _tensors(obj, prefix: str = "") -> Iterator[tuple[str, object]]:
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix or "<tensor>", obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}[{index}]")


def check_tensors(obj, label, limit: int | None = None) -> None:
    """Refuse a loaded checkpoint whose tensors declare more than ``limit`` bytes together, have a
    complex dtype, or hold NaN or infinite values; one line naming ``label`` and the first key."""
    import torch

    limit = max_weights_bytes() if limit is None else int(limit)
    tensors = list(_tensors(obj))
    declared = 0
    for key, tensor in tensors:
        declared += tensor.numel() * tensor.element_size()
        if declared > limit:
            raise WeightsError(f"{label}: its tensors declare {_size(declared)} or more (first past the limit: "
                               f"{key!r}, shape {tuple(tensor.shape)}), over the limit of {_size(limit)}",
                               _RAISE_HINT)
    for key, tensor in tensors:
        if tensor.is_complex():
            raise WeightsError(f"{label}: tensor {key!r} is {str(tensor.dtype).replace('torch.', '')}; "
                               "no network here has complex weights", "pass the checkpoint the model was saved as")
        if tensor.is_floating_point() and tensor.numel() and not _all_finite(tensor):
            bad = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
            raise WeightsError(f"{label}: tensor {key!r} holds {bad} values; these weights would give "
                               "NaN or black images", "use a checkpoint saved before training diverged")


def _all_finite(tensor) -> bool:
    """``torch.isfinite(tensor).all()``, through numpy where it can (single-threaded: 20 ms for
    HRNet18s-iDIH's 12.8 M weights, where torch's per-tensor kernels took 0.2-3 s on a busy
    2-core machine)."""
    import numpy as np
    import torch

    if tensor.device.type == "cpu" and tensor.dtype in (torch.float16, torch.float32, torch.float64):
        return bool(np.isfinite(tensor.detach().numpy()).all())
    return bool(torch.isfinite(tensor).all())


def check_dtypes(state: Mapping, model_state: Mapping, label) -> None:
    """Refuse a tensor that is not floating point where the model's is (int64 weights would be
    cast silently and change every result)."""
    for key, value in state.items():
        expected = model_state.get(key)
        if expected is None or not expected.is_floating_point():
            continue
        if not value.is_floating_point():
            raise WeightsError(f"{label}: tensor {key!r} is {str(value.dtype).replace('torch.', '')} where the "
                               f"network expects floating point ({str(expected.dtype).replace('torch.', '')})",
                               "these are not the network's weights; pass the checkpoint it was saved as")
