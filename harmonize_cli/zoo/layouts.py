"""The layouts layer: which architecture a state dict is, and why it does not fit another.

A layout is a state dict's (key -> shape) pairs. :func:`fits` compares a state dict with an
architecture's layout (from the recorded fingerprint when it agrees, else by building the layout
on the meta device), :func:`rank_architectures` scores every architecture, :func:`match_architecture`
names the one a checkpoint is, :func:`describe_mismatch` and :func:`check_fits` turn a mismatch
into one line. Reads the registry (:mod:`.registry`, :mod:`.fingerprints`); knows nothing of files
or downloads.
"""

from __future__ import annotations

import functools
from typing import Mapping

from ..errors import WeightsError
from . import fingerprints
from .registry import ARCHITECTURES, get_arch
from .state import checkpoint_metadata, extract_state_dict, layout_fingerprint


@functools.lru_cache(maxsize=None)
def layout_of(arch_name: str):
    """The (key -> shape) layout of an architecture's state dict, built on the meta device."""
    return get_arch(arch_name).layout()


def _layout(state_dict):
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def rank_architectures(state_dict):
    """Architectures ordered by how well their layout matches the state dict: (score, name)."""
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
    recorded = fingerprints.LAYOUT_FINGERPRINTS.get(arch_name)  # read now: the table may be replaced
    if recorded is not None and layout_fingerprint(state_dict) == recorded:
        return True
    expected = layout_of(arch_name)
    return len(expected) == len(state_dict) and all(
        expected.get(key) == tuple(value.shape) for key, value in state_dict.items()
    )


def match_architecture(checkpoint: Mapping) -> str:
    """Our name of the architecture whose layout equals a checkpoint's (a state dict or any layout
    :func:`~harmonize_cli.zoo.state.extract_state_dict` reads); WeightsError if none.

    The architecture recorded by ``harmonize train`` (``meta.arch``) wins when its layout agrees;
    otherwise architectures are tried in registry order and the first exact match wins. The
    layouts are recognised from their recorded fingerprints (:mod:`~harmonize_cli.zoo.fingerprints`)
    first, so no model is built for a known layout.
    """
    meta_arch = checkpoint_metadata(checkpoint).get("arch")
    tensors = extract_state_dict(checkpoint)
    candidates = [spec for spec in ARCHITECTURES if spec.needs_weights]
    if meta_arch:
        try:
            recorded = get_arch(meta_arch)
            candidates.insert(0, recorded)
        except Exception:  # an architecture this version does not know
            pass
    known = fingerprints.matching_architectures(tensors)
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


def arch_of(model_state) -> str:
    """Our name of the architecture whose layout a model's state dict has (else its class name)."""
    for spec in ARCHITECTURES:
        if spec.needs_weights and fits(spec.name, model_state):
            return spec.name
    return "this model"


def check_fits(arch: str, checkpoint, label) -> None:
    """A checkpoint of another architecture than the one asked for: one error naming both."""
    state = extract_state_dict(checkpoint)
    if fits(arch, state):
        return
    looks_like = next((other.name for other in ARCHITECTURES if other.needs_weights and fits(other.name, state)),
                      None)
    if looks_like is not None:
        kind = looks_like
    else:
        score, looks_like = rank_architectures(state)[0]
        kind = f"no known architecture (closest {looks_like}, {score:.0%} of tensors agree)"
    raise WeightsError(f"{label} is a checkpoint of {kind}, but the model asked for is {arch}",
                       f"drop --model (--arch for train) to use it as {looks_like}, or pass weights of {arch}")
