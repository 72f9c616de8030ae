"""`harmonize export`: a training checkpoint -> the plain state dict that the reference code loads."""

from __future__ import annotations

from pathlib import Path

import click

from .. import console
from ..atomic import check_writable

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
    from ..errors import UsageError
    from ..training.checkpoint import BEST, LAST, export_state_dict

    source = Path(checkpoint)
    if source.is_dir():
        source = source / BEST if (source / BEST).is_file() else source / LAST
        if not source.is_file():
            raise UsageError(f"{checkpoint} holds neither {BEST} nor {LAST}", "pass a checkpoint file")
    output = Path(output)
    if output.exists() and not force:
        raise UsageError(f"{output} already exists", "pass --force to replace it")
    if output.resolve() == source.resolve():
        raise UsageError("the output would replace the checkpoint itself", "choose another -o")
    check_writable(output.parent)
    meta = export_state_dict(source, output)
    arch = meta.get("arch")
    if not no_check:
        arch = _check(output, arch)
    epoch = f", epoch {meta['epoch']}" if meta.get("epoch") is not None else ""
    console.info(f"Wrote {output}: {arch or 'model'}{epoch}, {meta['tensors']} tensors (reference layout)")


def _check(path, arch):
    """Load the exported file strictly into a fresh model of its architecture (as apply/eval would)."""
    from .. import zoo

    return zoo.resolve(arch or "auto", weights=str(path)).name
