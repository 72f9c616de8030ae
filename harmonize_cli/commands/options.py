"""Options that several commands share, defined once (same names, help and choices everywhere)."""

from __future__ import annotations

import click

from ..choices import RESOLUTION_STRATEGIES
from ..completion import complete_models, complete_weights


def model_options(function):
    """``--model``, ``--weights``, ``--device`` and ``--resolution``, as apply and paste take them."""
    decorators = [
        click.option("--model", shell_complete=complete_models, default="auto", show_default=True,
                     help="Architecture (see `harmonize zoo list`), or auto: that of --weights, else the best "
                          "released checkpoint in the cache (downloaded on first use), else the training-free "
                          "boundary-gain."),
        click.option("--weights", shell_complete=complete_weights, default=None,
                     help="Checkpoint file, URL or released name; alone, its architecture is detected."),
        click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps."),
        click.option("--resolution", type=click.Choice(RESOLUTION_STRATEGIES), default="auto", show_default=True,
                     help="auto: network at its training size, correction carried to full resolution (PCT-Net: "
                          "its own full-resolution path); fixed: resize, run, resize back (reference); native: "
                          "full size, padded."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def quality_option(function):
    return click.option("--quality", default=95, show_default=True, type=click.IntRange(1, 100),
                        help="JPEG/WebP quality (WebP at 100 is lossless).")(function)


def overwrite_option(function):
    return click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them).")(function)
