"""``harmonize synth``: training pairs (composite, mask, real) from one's own photos and masks.

>>> from harmonize_cli.synth import synthesize
>>> report = synthesize("photos/", "masks/", "dataset/", per_image=5, seed=0)

See :mod:`.builder` for the layout and :mod:`.styles` for the foreground changes (docs/synth.md).
"""

from .builder import MIN_FG_MSE, SynthError, SynthReport, synthesize
from .styles import RANGES, STYLES

__all__ = ["MIN_FG_MSE", "RANGES", "STYLES", "SynthError", "SynthReport", "synthesize"]
