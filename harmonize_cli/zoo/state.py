"""The state layer: what a checkpoint file and a state dict are, without any table of the zoo.

Reading a checkpoint safely (:func:`safe_load`: ``weights_only=True`` only, bounded by
:mod:`~harmonize_cli.zoo.bounds`, ``.safetensors`` recognised from its header), saying what a
file is when it is not a checkpoint (:func:`describe_file`), taking the model's tensors out of any
supported layout (:func:`extract_state_dict`), the metadata ``harmonize train`` stores, a state
dict's layout fingerprint and a file's sha256. Imports nothing of the zoo above
:mod:`.bounds` and :mod:`.safetensors_io`; torch is imported when a function needs it.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Mapping

from ..errors import WeightsError
from .bounds import check_file, check_tensors, special_file_kind
from .safetensors_io import is_safetensors, read_safetensors

CHUNK = 1 << 20


def safe_load(path, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with one-line errors: an empty, truncated or foreign
    file, or one that holds Python objects a safe load refuses (those could run code).

    Guarded before and after (:mod:`~harmonize_cli.zoo.bounds`): a path that is not a regular
    file, or an archive that would unpack to more than the weights limit, is refused before
    anything is read; tensors that declare more than that limit, are complex, or hold NaN or
    infinite values are refused before anyone uses them. A ``.safetensors`` file (recognised
    from its header, whatever its name) is read as one.
    """
    import torch

    path = Path(path)
    size = check_file(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
    if is_safetensors(head, size):
        obj = read_safetensors(path)
        if map_location not in (None, "cpu"):
            obj = {key: value.to(map_location) for key, value in obj.items()}
        check_tensors(obj, path)
        return obj
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc) or "Unsupported global" in str(exc):
            raise WeightsError(
                f"{path} holds Python objects besides tensors ({_first_line(exc, 'refused by the safe loader')}); "
                "loading it could run code, so it is refused",
                "re-save it as a plain state dict where it was made: torch.save(model.state_dict(), 'model.pth')",
            ) from None
        raise WeightsError(f"cannot read weights {path}: {describe_file(path)}",
                           "the file is truncated or not a PyTorch checkpoint; download it again") from None
    except Exception as exc:
        raise WeightsError(f"cannot read weights {path}: {describe_file(path)} ({type(exc).__name__})",
                           "the file is truncated or not a PyTorch checkpoint; download it again") from None
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict",
                           "save the model with torch.save(model.state_dict(), path)")
    check_tensors(obj, path)
    return obj


def describe_file(path) -> str:
    """What a file that should be a checkpoint actually is, in a few words (a FIFO or device is
    named from ``stat``, never opened)."""
    path = Path(path)
    try:
        info = path.stat()
        kind = special_file_kind(info.st_mode)
        if kind is not None:
            return f"{kind}, not a checkpoint file"
        size = info.st_size
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if size == 0:
        return "an empty file (0 bytes)"
    if is_safetensors(head, size):
        return f"a damaged safetensors file of {size} bytes"
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in lowered:
        return f"an HTML page of {size} bytes, not a checkpoint"
    if lowered.startswith((b"{", b"[")):
        return f"a JSON or text document of {size} bytes, not a checkpoint"
    if head.startswith(b"PK"):
        return f"a damaged or incomplete checkpoint archive of {size} bytes"
    return f"{size} bytes that are not a PyTorch checkpoint"


def _first_line(exc: BaseException, default: str) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported global" in line:
            return line[:160]
    return lines[0][:160] if lines else default


def extract_state_dict(checkpoint: Mapping):
    """The model's tensors from any supported checkpoint layout, with DDP prefixes removed."""
    import torch

    state = checkpoint
    for key in ("model", "state_dict", "model_state_dict", "net"):
        inner = checkpoint.get(key) if isinstance(checkpoint, Mapping) else None
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            state = inner
            break
    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise WeightsError("the checkpoint holds no tensors", "is this a model checkpoint?")
    if all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module."):]: value for key, value in tensors.items()}
    return tensors


def checkpoint_metadata(checkpoint: Mapping) -> dict:
    """Metadata stored by ``harmonize train`` (architecture name, epoch, ...), if any."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    return dict(meta) if isinstance(meta, Mapping) else {}


def layout_fingerprint(state_dict: Mapping) -> str:
    """sha256 (hex) of the sorted ``key=shape`` pairs of a state dict (or of a key -> shape map)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key]
        shape = tuple(value.shape) if hasattr(value, "shape") else tuple(value)
        digest.update(f"{key}={','.join(map(str, shape))};".encode())
    return digest.hexdigest()


def sha256_of(path, chunk_size: int = CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
