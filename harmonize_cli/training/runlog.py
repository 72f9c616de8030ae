"""What a run reports while it trains: ``train.log`` (human-readable), ``metrics.jsonl`` (one JSON
object per epoch), TensorBoard scalars (when TensorBoard is installed; else ``curves.png``) and
PNG image grids with titled columns."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import __version__, console
from ..atomic import atomic_path, atomic_write_text
from .rundir import CURVES_FILE, IMAGES_DIR, METRICS_FILE, TB_DIR
from .runtime import amp_text

GRID_COLUMNS = ("composite", "mask", "prediction", "target")
TENSORBOARD_MISSING = ("tensorboard = true, but TensorBoard is not installed: no TensorBoard events "
                       "(pip install tensorboard, or --no-tensorboard to silence this)")
# TensorBoard's absence is said on the console once per machine (this marker in the cache folder
# remembers it); every run's train.log still says it.
TENSORBOARD_NOTED = "tensorboard-missing.noted"


class RunLog:
    """The human-readable ``train.log`` (appended to, flushed every line)."""

    def __init__(self, path: Optional[Path]):
        self.path = path
        self.handle = open(path, "a", encoding="utf-8") if path else None

    def write(self, message: str) -> None:
        if self.handle is None:
            return
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        for line in str(message).splitlines() or [""]:
            self.handle.write(f"{stamp}  {line}\n")
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def append_metrics(run_dir: Path, record: dict) -> None:
    """One epoch's record as a line of ``metrics.jsonl`` (flushed to disk)."""
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, allow_nan=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def rewrite_metrics(run_dir: Path, records: list) -> None:
    """The checkpoint's history is authoritative (a crash between two writes cannot duplicate lines)."""
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(record) + "\n" for record in records))


def open_tensorboard(run_dir: Path, log: Optional[RunLog] = None):
    """A SummaryWriter writing to ``RUN/tb``, or None (with one visible notice) without TensorBoard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        if _first_time(TENSORBOARD_NOTED):
            console.warn(TENSORBOARD_MISSING + "; said once on this machine, train.log says it every run")
        else:
            console.debug(TENSORBOARD_MISSING)
        if log is not None:
            log.write(TENSORBOARD_MISSING)
        return None
    return SummaryWriter(log_dir=str(run_dir / TB_DIR))


def _first_time(marker: str) -> bool:
    """True the first time ``marker`` is asked for on this machine (a file in the cache folder
    records it); when the cache folder cannot be written, every time (the notice is never lost)."""
    from ..settings import home

    path = home() / marker
    if path.exists():
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("noted\n")
    except OSError:
        pass
    return True


def log_epoch(tb, epoch_number: int, train_loss: float, lr: float, val: Optional[dict]) -> None:
    """An epoch's scalars in TensorBoard (nothing without a writer)."""
    if tb is None:
        return
    tb.add_scalar("epoch/train_loss", train_loss, epoch_number)
    tb.add_scalar("epoch/lr", lr, epoch_number)
    for key, value in (val or {}).items():
        if value is not None:
            tb.add_scalar(f"val/{key}", value, epoch_number)
    tb.flush()


def save_grid(run_dir: Path, epoch: int, global_step: int, image, mask, prediction, target,
              normalization=None) -> Path:
    """``images/epochEEE_stepSSSSSSS.png``: composite | mask | prediction | target, up to 4 rows,
    the columns titled (``normalization``: the network's input normalisation, default ImageNet's)."""
    from PIL import Image

    from ..choices import IMAGENET_NORMALIZATION
    from ..labels import label_columns

    norm = normalization or IMAGENET_NORMALIZATION
    mean = torch.tensor(norm["mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(norm["std"], dtype=torch.float32).view(3, 1, 1)

    def denormalize(tensor):
        return (tensor * std + mean) * 255.0

    rows = []
    with torch.no_grad():
        count = min(4, image.shape[0])
        for i in range(count):
            tiles = [denormalize(image[i].float().cpu()),
                     mask[i].float().cpu().expand(3, -1, -1) * 255.0,
                     denormalize(prediction[i].detach().float().cpu()),
                     denormalize(target[i].float().cpu())]
            rows.append(torch.cat(tiles, dim=2))
        grid = torch.cat(rows, dim=1).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    grid = label_columns(grid, GRID_COLUMNS, column_width=image.shape[-1])
    path = run_dir / IMAGES_DIR / f"epoch{epoch + 1:03d}_step{global_step:07d}.png"
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(grid)).save(tmp, format="PNG")
    return path


def write_curves(run_dir: Path, records: list) -> Optional[Path]:
    """``RUN/curves.png`` from the epochs' records (written when TensorBoard is not there)."""
    from PIL import Image

    from .curves import draw_curves

    picture = draw_curves(records)
    if picture is None:
        return None
    path = run_dir / CURVES_FILE
    with atomic_path(path) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return path


def best_text(best: Optional[dict]) -> str:
    if not best:
        return "n/a"
    if best.get("MSE") is not None:
        return f"{best['MSE']:.2f} at epoch {best['epoch']}"
    return f"n/a (lowest train loss at epoch {best['epoch']})"


def start_lines(config, run_dir: Path, parts, world_size: int, resumed_at=None, data_origin=None):
    """(the ``train.log`` lines that describe a starting run, the console summary: a line for the
    run and one naming the dataset and where that choice came from);
    ``resumed_at``: (epoch, step) where a resumed run goes on (the first line then says so)."""
    amp = amp_text(parts.amp_dtype, parts.use_scaler)
    backbone = parts.backbone_weights
    train_set, val_set = parts.train_set, parts.val_set
    multipliers = sorted({group["lr_mult"] for group in parts.optimizer.param_groups})
    lines = [
        f"harmonize {__version__}, torch {torch.__version__}",
        f"run folder: {run_dir}",
        f"dataset: {config.data}" + (f" ({data_origin})" if data_origin else ""),
        f"architecture: {config.arch}; backbone weights: {json.dumps(backbone) if backbone else 'none'}"
        + (f"; fine-tuning from {config.init}" if config.init else ""),
        f"device: {parts.device}, processes: {world_size}, mixed precision: {amp}, "
        f"compile: {config.compile}, deterministic: {config.deterministic} (seed {config.seed})",
        f"train: {len(train_set)} samples of {', '.join(train_set.subset_names)}; batch {config.batch_size} "
        f"({parts.local_batch} per process), {parts.steps_per_epoch} steps per epoch, crop {config.crop}"
        + (f" (view of full-resolution crops, ratio {config.crop_ratio:g}, long side at most "
           f"{config.fullres_max_side or 'unbounded'})" if config.crop_ratio is not None else ""),
        "validation: " + (f"{len(val_set)} test images of {', '.join(val_set.subset_names)} at {config.val_resize}"
                           if val_set is not None else "none"),
        f"optimiser: Adam lr {config.lr:g} betas {tuple(config.betas)} eps {config.eps:g}; "
        f"lr multipliers {multipliers}; " + (
            f"constant, then linear from epoch {(list(config.milestones) or [config.epochs])[0]} to 0 at {config.epochs}"
            if config.schedule == "constant-linear"
            else f"MultiStepLR {list(config.milestones)} x{config.gamma:g}")
        + f"; {config.epochs} epochs; loss {config.loss} (A_min {config.min_area:g})",
    ]
    if resumed_at is not None:
        epoch, step = resumed_at
        lines.insert(0, f"resumed at epoch {epoch + 1}" + (f", step {step}" if step else ""))
    summary = (f"Training {config.arch} in {run_dir} ({parts.device}, {amp}, "
               f"{len(train_set)} samples, {parts.steps_per_epoch} steps/epoch)\n"
               f"Dataset: {config.data}" + (f" ({data_origin})" if data_origin else ""))
    return lines, summary
