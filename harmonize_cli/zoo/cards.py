"""What the zoo says about one name, as a user types it: the weights a name stands for (a
released checkpoint, a backbone, or an architecture that has released weights), its size, and
its model card (``harmonize zoo info``).

>>> from harmonize_cli.zoo.cards import find_weights, model_card
>>> find_weights("idih-hrnet-w18s").name          # an architecture -> its released weights
'hrnet18s_idih256'
>>> model_card("hrnet18s_idih256")["architecture"]["name"]
'idih-hrnet-w18s'
"""

from __future__ import annotations

from typing import Optional

from ..errors import UsageError
from .facts import ArchSpec, PretrainedWeights
from .hub import cache_path, cached
from .registry import did_you_mean, get_arch
from .released import list_weights, weights_for_arch

__all__ = ["did_you_mean", "find_weights", "model_card", "size_of", "size_text"]

FLOAT32_BYTES = 4


def find_weights(name: str) -> PretrainedWeights:
    """The weights ``name`` stands for: a released checkpoint or backbone by its name or file
    name, or an architecture (our name or its reference name) that has released weights. An
    unknown name is a UsageError suggesting the closest; an architecture without released
    weights says so."""
    key = str(name).strip()
    stem = key[:-4] if key.endswith(".pth") else key
    for weights in list_weights():
        if stem in (weights.name, weights.filename[:-4]):
            return weights
    try:
        spec = get_arch(key)
    except UsageError:
        raise UsageError(f"unknown pretrained weights or model {name!r}", did_you_mean(key)) from None
    released = weights_for_arch(spec.name)
    if released is None:
        what = "is training-free: it needs no weights" if not spec.needs_weights else "has no released weights"
        raise UsageError(f"{spec.name} {what}", "see `harmonize zoo list` for the architectures that have some"
                         if spec.needs_weights else "use it directly, e.g. --model " + spec.name)
    return released


def size_of(weights: PretrainedWeights) -> tuple:
    """``(bytes, exact)``: the cached file's size, else the float32 size of the architecture's
    parameters (about what the download weighs; None when unknown)."""
    path = cached(weights)
    if path is not None:
        return path.stat().st_size, True
    try:
        spec = get_arch(weights.arch)
    except UsageError:  # a backbone: not an architecture of the zoo
        return None, False
    return (spec.num_params * FLOAT32_BYTES if spec.num_params else None), False


def size_text(weights: PretrainedWeights) -> str:
    """``"51 MB"`` for a cached file, ``"~51 MB"`` estimated, ``"?"`` unknown."""
    size, exact = size_of(weights)
    if size is None:
        return "?"
    return f"{'' if exact else '~'}{size / 1e6:.0f} MB"


def model_card(name: str) -> dict:
    """Everything the zoo knows about ``name`` (an architecture, its reference name, released
    weights or a backbone) as a plain dict: architecture, weights (source, licence, size, sha256
    when pinned, preprocessing, published metrics, cached or not)."""
    key = str(name).strip()
    spec: Optional[ArchSpec] = None
    weights: Optional[PretrainedWeights] = None
    try:
        spec = get_arch(key)
    except UsageError:
        try:
            weights = find_weights(key)
        except UsageError:
            raise UsageError(f"unknown model or weights {name!r}", did_you_mean(key)) from None
        try:
            spec = get_arch(weights.arch)
        except UsageError:
            spec = None  # a backbone
    if weights is None and spec is not None:
        weights = weights_for_arch(spec.name)
    card = {"name": key, "architecture": _arch_card(spec) if spec is not None else None,
            "weights": _weights_card(weights) if weights is not None else None}
    if spec is not None and weights is None:
        card["weights_note"] = ("training-free: no weights needed" if not spec.needs_weights else
                                "no released weights: train them with `harmonize train`")
    return card


def _arch_card(spec: ArchSpec) -> dict:
    return {
        "name": spec.name,
        "reference_name": spec.reference_name,
        "family": spec.family,
        "description": spec.description,
        "input_size": spec.input_size,
        "full_resolution": spec.full_resolution,
        "num_params": spec.num_params,
        "backbone": spec.backbone,
        "normalization": {key: list(values) for key, values in spec.normalization.items()},
        "paper": spec.paper,
    }


def _weights_card(weights: PretrainedWeights) -> dict:
    path = cached(weights)
    size, exact = size_of(weights)
    return {
        "name": weights.name,
        "kind": weights.kind,
        "file": weights.filename,
        "url": weights.url,
        "source": weights.source,
        "licence": weights.licence or None,
        "size_bytes": size,
        "size_exact": exact,
        "sha256": weights.sha256,
        "hash_prefix": weights.hash_prefix,
        "preprocessing": weights.preprocessing,
        "metrics": weights.metrics,
        "note": weights.note or None,
        "cached": path is not None,
        "cache_path": str(cache_path(weights)),
    }
