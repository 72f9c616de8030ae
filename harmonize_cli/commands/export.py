"""`harmonize export`: a training checkpoint -> the plain state dict that the reference code loads."""

from __future__ import annotations

from pathlib import Path

import click

from .. import console
from ..atomic import check_writable
from ..outputs import Inputs, check_replaceable, starts_with

CHECKPOINT_SIGNATURES = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive; the legacy pickle

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
    Inputs().file(source, "checkpoint").check(output, "-o")
    if output.exists() and not force:
        raise UsageError(f"{output} already exists", "pass --force to replace it")
    check_replaceable(output, starts_with(*CHECKPOINT_SIGNATURES), "a PyTorch checkpoint (--force replaces only those)")
    check_writable(output.parent)

    def check(written, meta):  # before the rename: a file that fails it never appears at -o
        if not no_check:
            meta["arch"] = _check(written, output, meta.get("arch"))

    meta = export_state_dict(source, output, check=check)
    arch = meta.get("arch")
    epoch = f", epoch {meta['epoch']}" if meta.get("epoch") is not None else ""
    console.info(f"Wrote {output}: {arch or 'model'}{epoch}, {meta['tensors']} tensors (reference layout)")


def _check(path, output, meta_arch):
    """Load the exported file strictly into a fresh model of its architecture (as apply/eval would)."""
    from .. import zoo
    from ..errors import HarmonizeError

    try:
        return zoo.resolve(meta_arch or "auto", weights=str(path)).name
    except HarmonizeError as exc:
        raise type(exc)(exc.message.replace(str(path), str(output)) + f"; nothing was written to {output}",
                        exc.hint) from None
