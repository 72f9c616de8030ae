"""Where the pretrained weights used to live, kept so that ``from harmonize_cli.zoo.pretrained
import ...`` goes on working. Nothing in the zoo imports this module: the names live in their
layers (docs/architecture.md, "The zoo in layers"):

- :mod:`.facts`: :class:`PretrainedWeights`;
- :mod:`.released`: the weights table (``HARMONIZATION_WEIGHTS``, ``BACKBONE_WEIGHTS``, the default
  marked on it), :func:`list_weights`, :func:`weights_for_arch`;
- :mod:`.registry`: :func:`get_weights` (a name as typed, with "did you mean");
- :mod:`.hub`: the cache (:func:`cache_path`, :func:`cached`), :func:`offline`, :func:`source_url`,
  :func:`fetch`, :func:`fetch_url`.
"""

from __future__ import annotations

from .facts import PretrainedWeights
from .hub import cache_path, cached, fetch, fetch_url, offline, source_url
from .registry import get_weights
from .released import BACKBONE_WEIGHTS, HARMONIZATION_WEIGHTS, default_weights, list_weights, weights_for_arch

__all__ = ["BACKBONE_WEIGHTS", "HARMONIZATION_WEIGHTS", "PretrainedWeights", "cache_path", "cached",
           "default_weights", "fetch", "fetch_url", "get_weights", "list_weights", "offline", "source_url",
           "weights_for_arch"]
