"""One function turns (model, weights) into a network: :func:`resolve`.

``apply``, ``eval``, ``export``, the :class:`~harmonize_cli.apply.Harmonizer` and the Python API
all call it, so a name or checkpoint means the same network everywhere, with the same errors.

>>> resolved = resolve("auto")                             # best cached release, else boundary-gain
>>> resolved = resolve(weights="runs/x/best.pth")          # architecture detected
>>> resolved = resolve("idih", weights="idih256.pth")      # a mismatch names both architectures
>>> resolved.network, resolved.name, resolved.source, resolved.sha256, resolved.normalization

What a model is (architecture, weights source, sha256, normalisation, padding) travels in the
:class:`ResolvedModel`; nothing is stamped on the ``nn.Module``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from .. import console
from ..device import resolve_device
from ..errors import HarmonizeError, UsageError, WeightsError
from .builder import checked_state, create_model, load_weights, read_checkpoint, same_dtypes_and_device
from .hub import cached, fetch, offline
from .layouts import check_fits, match_architecture
from .registry import by_quality, get_arch
from .released import default_weights, weights_for_arch
from .state import sha256_of

FALLBACK_MODEL = "boundary-gain"  # training-free; benchmarks/fallback_quality.py
RECOMMENDED_WEIGHTS = default_weights().name  # the table's default (zoo/released.py), downloaded on first use


FIRST_USE_TIMEOUT = 10.0  # seconds: an offline machine must fall back fast, never hang
FIRST_USE_DEADLINE = 10.0  # seconds after which a first-use download of `auto` must keep FIRST_USE_MIN_RATE
FIRST_USE_MIN_RATE = 200_000  # bytes/s on average: a slow-drip server is dropped at the deadline, while
                              # a slow but working connection still gets the 51 MB file (in at most ~4 min)


def fallback_notice(reason: str) -> str:
    return (f"Using the training-free {FALLBACK_MODEL} baseline: {reason}. For the paper's network run "
            f"`harmonize zoo download {RECOMMENDED_WEIGHTS}` or pass --weights FILE.")


@dataclass
class ResolvedModel:
    """A network ready to run, and what it is."""

    spec: "object"  # the zoo's ArchSpec
    network: "object"  # torch.nn.Module, in eval mode unless asked otherwise
    source: Optional[str] = None  # path, URL or registry name the weights came from; None: no weights
    path: Optional[Path] = None  # the local file of the weights, when there is one
    notice: Optional[str] = None  # a one-line note for the user (e.g. the training-free fallback)
    fallback: bool = False  # ``auto`` found no network and runs the training-free FALLBACK_MODEL
    _sha256: Optional[str] = field(default=None, repr=False)
    _label: Optional[str] = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def normalization(self):
        return self.spec.normalization

    @property
    def input_size(self) -> Optional[int]:
        return self.spec.input_size

    @property
    def divisor(self) -> int:
        from ..inference import pad_divisor  # torch: imported on first use

        return pad_divisor(self.network)

    @property
    def sha256(self) -> Optional[str]:
        if self._sha256 is None and self.path is not None and Path(self.path).is_file():
            self._sha256 = sha256_of(self.path)
        return self._sha256

    @property
    def label(self) -> str:
        """How tables name it: the architecture, plus the file when it is not the released one."""
        if self._label is not None:
            return self._label
        if self.source is None:
            return self.name
        released = weights_for_arch(self.name)
        if released is not None and self.source in (released.name, str(self.path or "")) and \
                self.path is not None and Path(self.path).name == released.filename:
            return self.name
        return f"{self.name} ({Path(str(self.source)).name})"

    @label.setter
    def label(self, value: str) -> None:
        self._label = value


def resolve(model: Optional[str] = "auto", weights=None, *, device=None, eval_mode: bool = True) -> ResolvedModel:
    """Build the network for ``model`` (a zoo name, a reference alias, or ``auto``) and ``weights``
    (a path, URL, released name or state dict).

    - ``auto`` + weights: the checkpoint's architecture is detected.
    - ``auto`` alone: the best verified released checkpoint in the local cache (``by_quality``),
      else the weights table's default (``hrnet18s_idih256``) downloaded now, else ``boundary-gain`` with a notice
      saying why (offline, or the download failed). A bad cached file is reported in one line.
    - a network name alone: its released checkpoint (downloaded on first use unless offline).
    - a name + weights: the checkpoint must have that architecture's layout; otherwise one
      :class:`WeightsError` names both.
    - a training-free baseline takes no weights.
    """
    name = str(model or "auto").strip()
    if weights is not None and not isinstance(weights, (str, os.PathLike, Mapping)):
        raise UsageError(f"weights must be a path, URL, name or state dict, not {type(weights).__name__}")
    if name.lower() == "auto":
        resolved = _resolve_auto(weights)
    else:
        resolved = _resolve_named(name, weights)
    if eval_mode:
        resolved.network.eval()
    if device is not None:
        resolved.network.to(resolve_device(device))
    return resolved


def _resolve_auto(weights) -> ResolvedModel:
    """``auto``: the checkpoint's own architecture; else the best verified release in the cache;
    else the recommended release, downloaded now; else the training-free fallback, saying why."""
    if weights is not None:
        checkpoint, label = read_checkpoint(weights)
        return _build(get_arch(match_architecture(checkpoint)), checkpoint, label)
    for released in by_quality():
        path = cached(released)
        if path is None:
            continue
        try:
            return _build_released(released, fetch(released))
        except HarmonizeError as exc:  # a bad cached file is never silent
            console.warn(f"cached {path.name} is unusable: {exc.message} "
                         f"(run `harmonize zoo download {released.name} --force`)")
    recommended = default_weights()
    if offline():
        reason = "no released weights are cached and downloads are off (HARMONIZE_OFFLINE)"
    else:
        try:
            return _build_released(recommended, fetch(recommended, timeout=FIRST_USE_TIMEOUT,
                                                      deadline=FIRST_USE_DEADLINE,
                                                      min_rate=FIRST_USE_MIN_RATE))
        except HarmonizeError as exc:
            reason = f"{recommended.name} could not be downloaded ({exc.message})"
    spec = get_arch(FALLBACK_MODEL)
    return ResolvedModel(spec=spec, network=create_model(spec.name), notice=fallback_notice(reason), fallback=True)


def _build_released(released, path) -> ResolvedModel:
    checkpoint, label = read_checkpoint(path)
    return _build(get_arch(released.arch), checkpoint, label)


def _resolve_named(name: str, weights) -> ResolvedModel:
    spec = get_arch(name)
    if not spec.needs_weights:
        if weights is not None:
            raise UsageError(f"{spec.name} is training-free and takes no weights", "drop --weights")
        return ResolvedModel(spec=spec, network=create_model(spec.name))
    if weights is None:
        released = weights_for_arch(spec.name)
        if released is None:
            raise WeightsError(f"{spec.name} has no released weights",
                               f"pass --weights FILE (a checkpoint trained as {spec.name} with `harmonize train`)")
        weights = fetch(released)
    checkpoint, label = read_checkpoint(weights)
    check_fits(spec.name, checkpoint, label)
    return _build(spec, checkpoint, label)


def _build(spec, checkpoint, label) -> ResolvedModel:
    # a checkpoint read from a file here is ours to hand over; a state dict passed in is copied
    owned = not str(label).startswith("<")
    network = _assembled(spec, checkpoint, label) if owned else None
    if network is None:
        network = create_model(spec.name, init=False)
        load_weights(network, checkpoint, arch=spec.name, label=label, owned=owned, eval_mode=False)
    path = Path(label) if owned and label is not None else None
    return ResolvedModel(spec=spec, network=network, source=None if path is None else str(label), path=path)


def _assembled(spec, checkpoint, label):
    """The network built on the meta device (no memory allocated, no initialisation run) and
    given the checkpoint's own tensors: ~40 ms less than building it for HRNet18s-iDIH. None when
    a tensor is left without a value (a non-persistent buffer, a dtype the checkpoint changes):
    the caller then builds it the ordinary way."""
    import torch  # the zoo is imported by `--help` and completion: torch only when a network is built

    with torch.device("meta"):
        network = spec.build()
    model_state = network.state_dict()
    state = checked_state(checkpoint, model_state, arch=spec.name, label=label)
    if not same_dtypes_and_device(state, model_state):
        return None  # e.g. float16 tensors: they are converted into an ordinary network
    network.load_state_dict(state, assign=True)  # the file's tensors become the network's own
    if _has_meta_tensors(network):
        return None
    return network


def _has_meta_tensors(network) -> bool:
    import torch

    for module in network.modules():
        tensors = list(module._parameters.values()) + list(module._buffers.values()) + list(vars(module).values())
        if any(isinstance(value, torch.Tensor) and value.is_meta for value in tensors):
            return True
    return False
