"""The models of ``harmonize eval --model/--weights``: names and checkpoints paired and resolved."""

from __future__ import annotations

from typing import Dict, Sequence

from ..errors import UsageError

__all__ = ["load_models"]


def load_models(names: Sequence[str] = (), weights: Sequence[str] = ()):
    """Resolve the models named by ``--model`` and ``--weights`` into a list of
    :class:`~harmonize_cli.zoo.ResolvedModel` (each with a unique ``label``).

    - ``--model`` alone: baselines need no weights; a network gets its released checkpoint.
    - ``--weights`` alone: the architecture of each checkpoint is detected.
    - both: baselines stand alone and each network ``--model`` takes one ``--weights``, in order;
      a checkpoint of another architecture than its ``--model`` is an error naming both.
    """
    from .. import zoo

    names, weights = list(names), [str(w) for w in weights]
    specs = [zoo.get_arch(name) for name in names]  # unknown names: UsageError with suggestions
    networks = [spec for spec in specs if spec.needs_weights]
    if not weights:
        pairs = [(spec.name, None) for spec in specs]
    elif not networks:
        pairs = [(spec.name, None) for spec in specs] + [("auto", path) for path in weights]
    elif len(networks) == len(weights):
        queue = list(weights)
        pairs = [(spec.name, queue.pop(0) if spec.needs_weights else None) for spec in specs]
    else:
        raise UsageError(f"{len(networks)} network --model and {len(weights)} --weights do not pair up",
                         "give one --weights per --model that needs weights (baselines need none), "
                         "or omit --model to detect each checkpoint's architecture")
    resolved = [zoo.resolve(name, source) for name, source in pairs]
    labels = [model.label for model in resolved]
    for model in resolved:  # two files of the same name (runs/a/best.pth, runs/b/best.pth): name the folder
        if labels.count(model.label) > 1 and model.path is not None:
            model.label = f"{model.name} ({model.path.parent.name}/{model.path.name})"
    seen: Dict[str, int] = {}
    for model in resolved:
        label = model.label
        seen[label] = seen.get(label, 0) + 1
        model.label = label if seen[label] == 1 else f"{label} #{seen[label]}"
    return resolved
