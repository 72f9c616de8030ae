"""Where the checkpoint functions used to live, kept so that ``from harmonize_cli.zoo.checkpoints
import ...`` goes on working. Nothing in the zoo imports this module: the functions live in their
layers (docs/architecture.md, "The zoo in layers"):

- :mod:`.state`: :func:`safe_load`, :func:`describe_file`, :func:`extract_state_dict`,
  :func:`checkpoint_metadata`;
- :mod:`.layouts`: :func:`layout_of`, :func:`fits`, :func:`rank_architectures`,
  :func:`describe_mismatch`;
- :mod:`.builder`: :func:`read_checkpoint`, :func:`detect_arch`.
"""

from __future__ import annotations

from .builder import detect_arch, read_checkpoint
from .layouts import describe_mismatch, fits, layout_of, rank_architectures
from .state import checkpoint_metadata, describe_file, extract_state_dict, safe_load

__all__ = ["checkpoint_metadata", "describe_file", "describe_mismatch", "detect_arch", "extract_state_dict", "fits",
           "layout_of", "rank_architectures", "read_checkpoint", "safe_load"]
