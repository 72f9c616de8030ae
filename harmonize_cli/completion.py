"""Shell completion of model and released-weights names (torch-free, so it answers fast).

Enable it once per shell, e.g. for bash: ``eval "$(_HARMONIZE_COMPLETE=bash_source harmonize)"``
(zsh: ``zsh_source``, fish: ``fish_source``); see README.
"""

from __future__ import annotations


def _items(names, incomplete: str):
    from click.shell_completion import CompletionItem

    lowered = incomplete.lower()
    return [CompletionItem(name) for name in names if name.lower().startswith(lowered)]


def model_names(include_auto: bool = True):
    from .zoo.registry import ARCHITECTURES

    names = ["auto"] if include_auto else []
    for spec in ARCHITECTURES:
        names.append(spec.name)
        names.extend(spec.aliases)
    return names


def complete_models(ctx, param, incomplete):
    """``--model``: ``auto``, every architecture and its reference alias."""
    return _items(model_names(), incomplete)


def complete_architectures(ctx, param, incomplete):
    """``--arch``: the architectures that can be trained."""
    from .zoo import get_arch

    return _items([name for name in model_names(include_auto=False) if get_arch(name).needs_weights], incomplete)


def complete_weights(ctx, param, incomplete):
    """``--weights`` / ``zoo download``: released names, then files."""
    from click.shell_completion import CompletionItem

    from .zoo.released import list_weights

    released = _items([weights.name for weights in list_weights()], incomplete)
    return released + [CompletionItem(incomplete, type="file")]


def complete_released(ctx, param, incomplete):
    from .zoo.released import list_weights

    return _items([weights.name for weights in list_weights()], incomplete)
