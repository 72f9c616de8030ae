"""What ``harmonize export`` does, as a library function: :func:`export_checkpoint`.

>>> from harmonize_cli.training.export import export_checkpoint
>>> meta = export_checkpoint("runs/hrnet18s", "hrnet18s_idih256.pth")
>>> meta["arch"], meta["tensors"], meta["source"]

A run folder (its ``best.pth``, else ``last.pth``) or a checkpoint file becomes the plain state
dict with the reference key names (:func:`.checkpoint.export_state_dict`), written atomically;
by default the written file is loaded strictly into a fresh model of its architecture before it
is renamed into place, so a file that fails never appears at ``output``.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import check_writable
from ..errors import HarmonizeError, UsageError
from ..outputs import Inputs, check_replaceable, starts_with
from .checkpoint import BEST, LAST, export_state_dict

CHECKPOINT_SIGNATURES = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive; the legacy pickle


def export_checkpoint(checkpoint, output, *, force: bool = False, verify: bool = True) -> dict:
    """Write the model weights of ``checkpoint`` (a file, or a run folder: its best.pth, else
    last.pth) to ``output`` as a plain state dict. ``force`` replaces an existing output (only a
    PyTorch checkpoint); ``verify`` loads the result into a fresh model first. Returns the
    checkpoint's metadata (``arch``, ``epoch``, ``tensors``) and ``source``, the file read."""
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

    def check(written, meta):  # before the rename: a file that fails it never appears at output
        if verify:
            meta["arch"] = _load_strictly(written, output, meta.get("arch"))

    meta = export_state_dict(source, output, check=check)
    meta["source"] = str(source)
    return meta


def _load_strictly(path, output, meta_arch):
    """Load the exported file strictly into a fresh model of its architecture (as apply/eval would)."""
    from .. import zoo

    try:
        return zoo.resolve(meta_arch or "auto", weights=str(path)).name
    except HarmonizeError as exc:
        raise type(exc)(exc.message.replace(str(path), str(output)) + f"; nothing was written to {output}",
                        exc.hint) from None
