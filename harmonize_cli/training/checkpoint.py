"""Training checkpoints: atomic ``last.pth`` / ``best.pth`` / snapshots, and resumable state.

A checkpoint is a plain dict (loadable with ``torch.load(..., weights_only=True)``)::

    model       the model's state dict with the reference key names (no DDP / compile prefixes)
    optimizer   optimizer.state_dict()
    scheduler   lr_scheduler.state_dict()
    scaler      GradScaler.state_dict() (fp16 mixed precision), else None
    epoch       number of finished epochs
    step        optimisation steps already done in the next epoch (> 0 after an interruption)
    partial     running totals of that unfinished epoch (loss sum, samples, seconds)
    rng         python / numpy / torch / cuda random states
    rng_per_rank  (interrupted multi-process runs) every process's random states
    config      the resolved TrainConfig as a dict
    metrics     the list of per-epoch records (what metrics.jsonl holds)
    best        {"epoch": .., "MSE": ..} of the best validation so far
    version     harmonize version that wrote it
    meta        {"arch", "version", "epoch", "input_size", "backbone_weights", "torch", ...}

``zoo.load_weights`` / ``harmonize apply --weights`` read the ``model`` entry directly, and
``harmonize export`` turns it into the plain state dict that the reference code loads.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import __version__
from ..atomic import atomic_write_with
from ..errors import HarmonizeError, WeightsError

LAST, BEST = "last.pth", "best.pth"
FORMAT = "harmonize-train-1"


def snapshot_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pth"


def unwrap_model(model):
    """The plain module behind DDP / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(model, "module"):
            model = model.module
        else:
            return model


def model_state_dict(model) -> dict:
    """The state dict with reference key names, tensors on the CPU, contiguous (channels_last undone)."""
    return {key: value.detach().cpu().contiguous().clone() for key, value in unwrap_model(model).state_dict().items()}


# ---------------------------------------------------------------------------------------------- RNG


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }
    return state


def set_rng_state(state: Optional[dict]) -> None:
    if not state:
        return
    if state.get("python") is not None:
        python_state = state["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    if state.get("numpy") is not None:
        numpy_state = state["numpy"]
        np.random.set_state((numpy_state["bit_generator"], numpy_state["key"].numpy().astype(np.uint32),
                             int(numpy_state["pos"]), int(numpy_state["has_gauss"]), float(numpy_state["gauss"])))
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
        else:
            torch.cuda.set_rng_state(cuda_states[0].cpu())


def _numpy_state() -> dict:
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


# ---------------------------------------------------------------------------------------------- build / save / load


def build_checkpoint(*, model, optimizer=None, scheduler=None, scaler=None, epoch: int, step: int = 0,
                     partial: Optional[dict] = None, config: Optional[dict] = None, metrics=None,
                     best: Optional[dict] = None, extra_meta: Optional[dict] = None) -> dict:
    raw = unwrap_model(model)
    meta = {
        "format": FORMAT,
        "arch": type(raw).__name__,  # callers pass the zoo name in extra_meta
        "input_size": None,
        "version": __version__,
        "torch": str(torch.__version__),
        "epoch": int(epoch),
        "step": int(step),
        "backbone_weights": None,
    }
    meta.update(extra_meta or {})
    return {
        "model": model_state_dict(raw),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch),
        "step": int(step),
        "partial": dict(partial or {}),
        "rng": rng_state(),
        "config": dict(config or {}),
        "metrics": list(metrics or []),
        "best": dict(best) if best else None,
        "version": __version__,
        "meta": meta,
    }


def save_checkpoint(checkpoint: dict, path) -> Path:
    """Write atomically: a reader (or a crash) never sees a half-written file."""
    path = Path(path)
    atomic_write_with(path, lambda handle: torch.save(checkpoint, handle))
    return path


def load_checkpoint(path) -> dict:
    """Read a training checkpoint written by :func:`save_checkpoint` (resumable state included)."""
    path = Path(path)
    if not path.is_file():
        from ..errors import MissingWeightsError

        raise MissingWeightsError(f"checkpoint {path} does not exist",
                             "give the run folder with --out, or the checkpoint with --resume PATH")
    from ..zoo.checkpoints import safe_load

    checkpoint = safe_load(path)  # weights_only=True: nothing in the file can execute
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise WeightsError(f"{path} is not a training checkpoint (no 'model' entry)",
                           "resume from RUN/last.pth written by `harmonize train`")
    return checkpoint


def is_resumable(checkpoint: dict) -> bool:
    return all(checkpoint.get(key) is not None for key in ("optimizer", "scheduler", "config", "epoch"))


class CheckpointSaver:
    """Writes ``last.pth`` (every epoch and on interruption), ``best.pth`` (lowest validation MSE) and
    ``epoch_NNN.pth`` snapshots every ``snapshot_every`` epochs into ``run_dir``."""

    def __init__(self, run_dir, snapshot_every: int = 10):
        self.run_dir = Path(run_dir)
        self.snapshot_every = int(snapshot_every or 0)

    @property
    def last(self) -> Path:
        return self.run_dir / LAST

    @property
    def best(self) -> Path:
        return self.run_dir / BEST

    def save_epoch(self, checkpoint: dict, epoch: int, is_best: bool) -> list:
        written = [save_checkpoint(checkpoint, self.last)]
        if is_best:
            written.append(save_checkpoint(checkpoint, self.best))
        if self.snapshot_every and epoch % self.snapshot_every == 0:
            written.append(save_checkpoint(checkpoint, self.run_dir / snapshot_name(epoch)))
        return written

    def save_interrupted(self, checkpoint: dict) -> Path:
        return save_checkpoint(checkpoint, self.last)


def export_state_dict(source, output, check=None) -> dict:
    """Write the plain model state dict (reference key names) of a checkpoint to ``output``.

    The result is what ``torch.save(model.state_dict(), path)`` gives in the reference code, so its
    ``load_weights`` / ``load_state_dict`` take it unchanged. Returns the checkpoint's metadata.
    ``check(temporary_path, meta)`` runs on the written file before it is renamed to ``output``:
    when it raises, ``output`` is not created (nor an earlier one replaced).
    """
    from ..zoo import checkpoint_metadata, extract_state_dict, read_checkpoint

    checkpoint, _label = read_checkpoint(source)
    state = extract_state_dict(checkpoint)
    state = {key: value.detach().cpu().contiguous() for key, value in state.items()}
    meta = checkpoint_metadata(checkpoint)
    meta["tensors"] = len(state)
    atomic_write_with(output, lambda handle: torch.save(state, handle),
                      check=None if check is None else (lambda tmp: check(tmp, meta)))
    return meta
