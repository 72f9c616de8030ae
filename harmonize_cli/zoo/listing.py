"""The whole zoo as data: every architecture, every released and backbone weights entry, the cache
(``harmonize zoo list --json``).

>>> from harmonize_cli.zoo.listing import zoo_listing
>>> data = zoo_listing()
>>> [w["name"] for w in data["weights"] if w["cached"]], data["cache"]
"""

from __future__ import annotations

from .. import settings
from .builder import list_models
from .cards import size_of
from .hub import cached
from .released import list_weights


def zoo_listing() -> dict:
    """``{"models": [...], "weights": [...], "cache": "<folder>"}``: the architectures as
    :func:`~harmonize_cli.zoo.builder.list_models` lists them; per weights entry its name, file, URL,
    architecture, kind, input size, published metrics, whether it is cached and its size in
    bytes (``size_exact``: False for an estimate from the parameter count)."""
    return {
        "models": list_models(),
        "weights": [_weights_entry(weights) for weights in list_weights()],
        "cache": str(settings.weights_dir()),
    }


def _weights_entry(weights) -> dict:
    size, exact = size_of(weights)
    return {"name": weights.name, "file": weights.filename, "url": weights.url, "arch": weights.arch,
            "kind": weights.kind, "input_size": weights.input_size, "metrics": weights.metrics,
            "cached": cached(weights) is not None, "size_bytes": size, "size_exact": exact}
