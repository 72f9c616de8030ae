"""The builder: networks from the registry, and checkpoints (a path, URL, released name or state
dict) loaded into them. What ``zoo.create_model`` and ``zoo.load_weights`` are.

Above the hub (a released name or URL is fetched, verified) and the layouts (a mismatch is one
line naming both architectures); below :mod:`.resolve`, which adds the ``auto`` policy and what
a model is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from .. import console
from ..device import resolve_device
from ..errors import MissingWeightsError, UsageError, WeightsError
from .bounds import check_dtypes
from .facts import ArchSpec
from .hub import cached, fetch, fetch_url
from .layouts import arch_of, describe_mismatch, match_architecture
from .registry import ARCHITECTURES, get_arch, get_weights
from .released import weights_for_arch
from .state import extract_state_dict, safe_load

__all__ = ["checked_state", "create_model", "detect_arch", "list_models", "load_backbone_weights", "load_weights",
           "read_checkpoint", "same_dtypes_and_device"]


def read_checkpoint(source, map_location="cpu"):
    """Load a checkpoint from a path, URL, registry name or mapping; returns (object, label).

    Files are read with ``weights_only=True`` only: nothing in a checkpoint can execute.
    """
    if isinstance(source, Mapping):
        return source, "<state dict>"
    text = str(source)
    if "://" in text:
        path = fetch_url(text)
    else:
        path = Path(text).expanduser()
        if not path.exists():
            try:
                released = get_weights(text)
            except UsageError:
                raise MissingWeightsError(
                    f"weights file {text} does not exist",
                    "give a path to a .pth file, a URL, or a name from `harmonize zoo list`") from None
            path = fetch(released)  # a failed download names the URL and where to put the file
    return safe_load(path, map_location), str(path)


def detect_arch(state_dict) -> str:
    """Our name of the architecture whose layout equals the checkpoint's; WeightsError if none.

    Accepts a state dict, any checkpoint layout that :func:`extract_state_dict` reads, or a path,
    URL or registry name. The architecture recorded by ``harmonize train`` (``meta.arch``) wins
    when its layout agrees; otherwise architectures are tried in registry order and the first
    exact match wins (:func:`~harmonize_cli.zoo.layouts.match_architecture`).
    """
    if not isinstance(state_dict, Mapping) or not any(hasattr(v, "shape") for v in state_dict.values()):
        state_dict, _ = read_checkpoint(state_dict)
    return match_architecture(state_dict)


def list_models(include_baselines: bool = True):
    """Every architecture with its aliases and metadata, as plain dicts."""
    rows = []
    for spec in ARCHITECTURES:
        if not include_baselines and not spec.needs_weights:
            continue
        weights = weights_for_arch(spec.name)
        rows.append({
            "name": spec.name,
            "aliases": list(spec.aliases),
            "family": spec.family,
            "input_size": spec.input_size,
            "num_params": spec.num_params,
            "backbone": spec.backbone,
            "description": spec.description,
            "paper": spec.paper,
            "pretrained": None if weights is None else {
                "name": weights.name, "url": weights.url, "metrics": weights.metrics,
                "preprocessing": weights.preprocessing, "cached": cached(weights) is not None,
            },
        })
    return rows


def create_model(name: str, *, weights=None, pretrained: bool = False, pretrained_backbone: bool = False,
                 backbone_weights=None, init: bool = True, device=None, eval_mode: Optional[bool] = None):
    """Build an architecture by our name or its reference alias (a plain ``nn.Module``).

    ``weights``: a checkpoint to load (path, URL, registry name or state dict).
    ``pretrained``: load the released reference checkpoint of this architecture (downloaded once).
    ``pretrained_backbone`` / ``backbone_weights``: load ImageNet weights into the backbone (training).
    ``init``: apply the reference initialisation to layers that get no weights.
    The model is put in eval mode when weights are loaded (unless ``eval_mode`` says otherwise).
    To know where weights came from, use :func:`resolve`, which returns the network with that
    information.
    """
    spec = get_arch(name)
    model = spec.build()
    if pretrained and weights is None:
        released = weights_for_arch(spec.name)
        if released is None:
            raise WeightsError(f"no released checkpoint for {spec.name}",
                               "train one with `harmonize train` or pass --weights")
        weights = released.name
    if init and spec.needs_weights and weights is None:
        from ..models.initialization import initializer_for  # torch: imported on first use, not by `--help`

        initializer_for(spec)(model)
    if spec.backbone and (pretrained_backbone or backbone_weights is not None) and weights is None:
        load_backbone_weights(model, spec, backbone_weights)
    if weights is not None:
        load_weights(model, weights, arch=spec.name, eval_mode=False)  # the mode is decided below
    if eval_mode if eval_mode is not None else weights is not None:
        model.eval()
    if device is not None:
        model.to(resolve_device(device))
    return model


def load_backbone_weights(model, spec: ArchSpec, source=None):
    """Load ImageNet weights into the backbone (classifier heads ignored).

    Returns ``{"source", "loaded", "ignored"}``: where they came from and how many tensors."""
    from ..models.backboned import load_pretrained_backbone  # torch: imported on first use

    path = source if source is not None else fetch(spec.backbone)
    checkpoint, label = read_checkpoint(path)
    state = extract_state_dict(checkpoint)
    loaded, skipped = load_pretrained_backbone(model, state)
    console.info(f"Backbone {spec.backbone}: loaded {loaded} tensors from {label} ({len(skipped)} ignored)")
    return {"source": label, "loaded": loaded, "ignored": len(skipped)}


def _match_scalar_shapes(state, model_state):
    """Older PyTorch saved 0-d buffers (``num_batches_tracked``) with shape (1,): accept them."""
    fixed = dict(state)
    for key, value in state.items():
        expected = model_state.get(key)
        if expected is not None and expected.dim() == 0 and value.shape == (1,):
            fixed[key] = value.reshape(())
    return fixed


def load_weights(model, source, strict: bool = True, *, arch: Optional[str] = None, label: Optional[str] = None,
                 owned: Optional[bool] = None, eval_mode: bool = True):
    """Load a checkpoint into ``model`` and return it, in eval mode like ``create_model(weights=...)``
    (``eval_mode=False`` keeps the model's mode, e.g. to fine-tune): reference state dicts, our
    training checkpoints, DDP prefixes, paths, URLs and registry names. A mismatch raises one clear
    WeightsError naming ``arch`` (default: the model's class) and what the weights look like.
    ``owned``: the tensors may become the model's own (default: when ``source`` is read here, not
    a state dict passed in)."""
    checkpoint, read_label = read_checkpoint(source)
    model_state = model.state_dict()
    state = checked_state(checkpoint, model_state, strict=strict, arch=arch, label=label or read_label)
    # Tensors just read from a file are the model's own: take them as they are (no copy into
    # freshly allocated parameters, whose first touch costs ~0.3 s for 50 MB on a small VM). A
    # state dict passed in memory is copied, so the caller's tensors never change with the model.
    if owned is None:
        owned = not isinstance(source, Mapping)
    assign = bool(owned) and same_dtypes_and_device(state, model_state)
    model.load_state_dict(state, strict=strict, assign=assign)
    if eval_mode:
        model.eval()  # batch norms use their running statistics: any batch size, batch 1 included
    return model


def checked_state(checkpoint, model_state, *, strict: bool = True, arch: Optional[str] = None, label=None):
    """The state dict of a checkpoint as it goes into a model whose state dict is ``model_state``
    (0-d buffers matched); with ``strict``, a layout mismatch is one WeightsError naming ``arch``;
    a tensor that is not floating point where the model's is (int64, complex) is one WeightsError."""
    state = _match_scalar_shapes(extract_state_dict(checkpoint), model_state)
    check_dtypes(state, model_state, label)
    if strict:
        same_keys = set(state) == set(model_state)
        same_shapes = same_keys and all(tuple(state[k].shape) == tuple(model_state[k].shape) for k in state)
        if not same_shapes:
            raise WeightsError(f"{label}: {describe_mismatch(arch or arch_of(model_state), state, model_state)}",
                               "pick the matching --model, or omit it to detect the architecture")
    return state


def same_dtypes_and_device(state, model_state) -> bool:
    return all(key in model_state and value.dtype == model_state[key].dtype
               and (value.device == model_state[key].device or model_state[key].is_meta)
               for key, value in state.items())
