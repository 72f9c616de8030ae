"""`harmonize export`: a training checkpoint -> the plain state dict that the reference code loads.

A thin layer over :func:`harmonize_cli.training.export.export_checkpoint`."""

from __future__ import annotations

import click

from .. import console

EPILOG = """Examples:

\b
  harmonize export runs/hrnet18s/best.pth -o hrnet18s_idih256.pth
  harmonize export runs/hrnet18s -o model.pth        best.pth of the run (else last.pth)

The output is `torch.save(model.state_dict())` with the reference key names: the reference's
load_weights / model.load_state_dict take it unchanged, and so do `harmonize apply --weights` and
`harmonize eval --weights`.
"""


@click.command("export", epilog=EPILOG)
@click.argument("checkpoint", type=click.Path(exists=True), metavar="RUN/best.pth|RUN")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), metavar="FILE.pth",
              help="Where to write the state dict.")
@click.option("--force", "-f", is_flag=True, help="Replace an existing output file.")
@click.option("--no-check", is_flag=True, help="Skip loading the result into a fresh model (strict) as a check.")
def export(checkpoint, output, force, no_check):
    """Write the model weights of a training checkpoint as a plain state dict (reference layout)."""
    from ..training.export import export_checkpoint

    meta = export_checkpoint(checkpoint, output, force=force, verify=not no_check)
    arch = meta.get("arch")
    epoch = f", epoch {meta['epoch']}" if meta.get("epoch") is not None else ""
    console.info(f"Wrote {output}: {arch or 'model'}{epoch}, {meta['tensors']} tensors (reference layout)")
