"""Reading checkpoints of every kind and matching them to architectures.

Accepted: reference checkpoints (plain state dicts), checkpoints written by ``harmonize train``
(a dict with ``model`` plus metadata), ``{"state_dict": ...}`` wrappers, DDP ``module.`` prefixes,
file paths, URLs and registry names of released weights.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Mapping

from ..errors import WeightsError


def read_checkpoint(source, map_location="cpu"):
    """Load a checkpoint from a path, URL, registry name or mapping; returns (object, label).

    Files are read with ``weights_only=True`` only: nothing in a checkpoint can execute.
    """
    if isinstance(source, Mapping):
        return source, "<state dict>"
    text = str(source)
    if "://" in text:
        from .pretrained import fetch_url

        path = fetch_url(text)
    else:
        path = Path(text).expanduser()
        if not path.exists():
            from ..errors import UsageError
            from . import pretrained

            try:
                released = pretrained.get_weights(text)
            except UsageError:
                from ..errors import MissingWeightsError

                raise MissingWeightsError(f"weights file {text} does not exist",
                                   "give a path to a .pth file, a URL, or a name from `harmonize zoo list`") from None
            path = pretrained.fetch(released)  # a failed download names the URL and where to put the file
    return safe_load(path, map_location), str(path)


def safe_load(path, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with one-line errors: an empty, truncated or foreign
    file, or one that holds Python objects a safe load refuses (those could run code).

    Guarded before and after (:mod:`~harmonize_cli.zoo.bounds`): a path that is not a regular
    file, or an archive that would unpack to more than the weights limit, is refused before
    anything is read; tensors that declare more than that limit, are complex, or hold NaN or
    infinite values are refused before anyone uses them. A ``.safetensors`` file (recognised
    from its header, whatever its name) is read as one.
    """
    import pickle

    import torch

    from .bounds import check_file, check_tensors
    from .safetensors_io import is_safetensors, read_safetensors

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
    from .bounds import special_file_kind
    from .safetensors_io import is_safetensors

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


@functools.lru_cache(maxsize=None)
def layout_of(arch_name: str):
    """The (key -> shape) layout of an architecture's state dict, built on the meta device."""
    import torch

    from .registry import get_arch

    with torch.device("meta"):
        model = get_arch(arch_name).build()
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _layout(state_dict):
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def rank_architectures(state_dict):
    """Architectures ordered by how well their layout matches the state dict: (score, name)."""
    from .registry import ARCHITECTURES

    given = _layout(state_dict)
    ranked = []
    for spec in ARCHITECTURES:
        if not spec.needs_weights:
            continue
        expected = layout_of(spec.name)
        same = sum(1 for key, shape in given.items() if expected.get(key) == shape)
        score = same / max(len(given), len(expected))
        ranked.append((score, spec.name))
    ranked.sort(key=lambda item: -item[0])
    return ranked


def fits(arch_name: str, state_dict) -> bool:
    """True when the state dict has exactly the architecture's keys and shapes (from the recorded
    layout fingerprint when it agrees, else by building the architecture's layout)."""
    from .fingerprints import LAYOUT_FINGERPRINTS, layout_fingerprint

    recorded = LAYOUT_FINGERPRINTS.get(arch_name)
    if recorded is not None and layout_fingerprint(state_dict) == recorded:
        return True
    expected = layout_of(arch_name)
    return len(expected) == len(state_dict) and all(
        expected.get(key) == tuple(value.shape) for key, value in state_dict.items()
    )


def detect_arch(state_dict) -> str:
    """Our name of the architecture whose layout equals the state dict's; WeightsError if none.

    Accepts a state dict, any checkpoint layout that :func:`extract_state_dict` reads, or a path,
    URL or registry name. The architecture recorded by ``harmonize train`` (``meta.arch``) wins
    when its layout agrees; otherwise architectures are tried in registry order and the first
    exact match wins. The layouts are recognised from their recorded fingerprints
    (:mod:`~harmonize_cli.zoo.fingerprints`) first, so no model is built for a known layout.
    """
    from .fingerprints import matching_architectures
    from .registry import ARCHITECTURES, get_arch

    if not isinstance(state_dict, Mapping) or not any(hasattr(v, "shape") for v in state_dict.values()):
        state_dict, _ = read_checkpoint(state_dict)
    meta_arch = checkpoint_metadata(state_dict).get("arch")
    tensors = extract_state_dict(state_dict)
    candidates = [spec for spec in ARCHITECTURES if spec.needs_weights]
    if meta_arch:
        try:
            recorded = get_arch(meta_arch)
            candidates.insert(0, recorded)
        except Exception:  # an architecture this version does not know
            pass
    known = matching_architectures(tensors)
    for spec in candidates:  # the recorded architecture first, then registry order
        if spec.name in known:
            return spec.name
    for spec in candidates:
        if fits(spec.name, tensors):
            return spec.name
    score, name = rank_architectures(tensors)[0]
    raise WeightsError(
        f"the checkpoint matches no architecture exactly (closest: {name}, {score:.0%} of tensors agree)",
        "pass --model with the architecture it was trained as",
    )


def describe_mismatch(model_arch: str, state_dict, model_state) -> str:
    expected = {key: tuple(v.shape) for key, v in model_state.items()}
    given = _layout(state_dict)
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    wrong_shape = [key for key in expected if key in given and given[key] != expected[key]]
    score, looks_like = rank_architectures(state_dict)[0]
    parts = [f"the weights do not fit {model_arch}: they look like {looks_like} ({score:.0%} of tensors agree)"]
    if missing:
        parts.append(f"{len(missing)} missing keys, first {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, first {unexpected[0]!r}")
    if wrong_shape:
        key = wrong_shape[0]
        parts.append(f"{len(wrong_shape)} shape mismatches, first {key!r} {given[key]} vs {expected[key]}")
    return "; ".join(parts)
