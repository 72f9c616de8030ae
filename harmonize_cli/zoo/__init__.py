"""The model zoo: one registry shared by ``prepare``, ``train``, ``eval`` and ``apply``.

>>> from harmonize_cli import zoo
>>> [m["name"] for m in zoo.list_models()][:3]
['dih', 'dih-512', 'idih']
>>> model = zoo.create_model("idih-hrnet-w18s")          # or "hrnet18s_idih256"
>>> zoo.load_weights(model, "hrnet18s_idih256.pth")      # path, URL, name or state dict
>>> out = model(image, mask)                              # normalised image in, normalised image out
>>> zoo.detect_arch(torch.load("hrnet18s_idih256.pth"))  # 'idih-hrnet-w18s'

This module only re-exports. The zoo is built in layers, each importing only those below it
(docs/architecture.md, "The zoo in layers"): :mod:`.facts` (ArchSpec, PretrainedWeights) ->
:mod:`.state` (safe load, state dicts, hashes; with :mod:`.bounds`, :mod:`.safetensors_io`) ->
the registry (:mod:`.released` weights table -> :mod:`.published` numbers -> :mod:`.registry`
architectures -> :mod:`.fingerprints`) -> :mod:`.layouts` (fits, detection, mismatches) -> the hub
(:mod:`.download`, :mod:`.verify`, :mod:`.hub`) -> :mod:`.builder` (create_model, load_weights;
:mod:`.cards` beside it) -> :mod:`.resolve` (``auto``). :mod:`.checkpoints` and :mod:`.pretrained`
keep their old names importable.
"""

from __future__ import annotations

from .builder import (
    checked_state,
    create_model,
    detect_arch,
    list_models,
    load_backbone_weights,
    load_weights,
    read_checkpoint,
)
from .facts import ArchSpec, PretrainedWeights
from .hub import cached, fetch
from .registry import ARCHITECTURES, arch_names, get_arch, get_weights
from .released import BACKBONE_WEIGHTS, HARMONIZATION_WEIGHTS, default_weights, list_weights, weights_for_arch
from .resolve import ResolvedModel, resolve
from .state import checkpoint_metadata, extract_state_dict

__all__ = [
    "ARCHITECTURES", "ArchSpec", "BACKBONE_WEIGHTS", "HARMONIZATION_WEIGHTS", "PretrainedWeights",
    "arch_names", "cached", "checked_state", "checkpoint_metadata", "create_model", "default_weights", "detect_arch",
    "extract_state_dict", "fetch", "get_arch", "get_weights", "list_models", "list_weights", "load_backbone_weights",
    "load_weights", "read_checkpoint", "resolve", "ResolvedModel", "weights_for_arch",
]
