"""The training loop: the paper's recipe, resumable, mixed precision, multi-GPU through torchrun.

>>> from harmonize_cli.training import TrainConfig, train
>>> result = train(TrainConfig(arch="idih", data="iharmony4.h5", out="runs/idih"))
>>> result.best            # {"epoch": .., "MSE": ..}

What one epoch does (every process under torchrun, rank 0 alone for files and validation):

1. the sampler is set to the epoch; in a seeded run the random generators are re-seeded from
   (seed, epoch) and every sample's augmentation from (seed, epoch, sample), so an epoch is a
   function of the seed and the state at its start: a resumed run repeats an uninterrupted one;
2. each step: forward under autocast (bf16, or fp16 with a GradScaler), FN-MSE in float32,
   backward, Adam step; the loss and the stop / non-finite flags are summed over processes, so
   every process stops at the same step;
3. MultiStepLR steps, the model is validated with the shared evaluation engine
   (:func:`harmonize_cli.evaluation.evaluate`), and ``last.pth`` / ``best.pth`` / snapshots and
   a ``metrics.jsonl`` line are written.

SIGINT / SIGTERM: the current step finishes, ``last.pth`` is written with the position inside
the epoch, and :class:`TrainingInterrupted` says how to resume. A non-finite loss raises
:class:`TrainingError` before anything is saved, so the last good checkpoint stays as it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import __version__, console
from ..atomic import atomic_path, atomic_write_text
from ..errors import DownloadError, HarmonizeError, UsageError
from . import distributed
from .checkpoint import (
    BEST,
    LAST,
    CheckpointSaver,
    build_checkpoint,
    is_resumable,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from .config import TrainConfig

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
IMAGES_DIR = "images"
TB_DIR = "tb"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, LOG_FILE, LAST, BEST)


class TrainingError(HarmonizeError):
    """Training cannot go on (a non-finite loss, a failing data loader, ...)."""


class TrainingInterrupted(HarmonizeError):
    """SIGINT / SIGTERM: a resumable checkpoint was written. Exit code 128 + signal number."""

    def __init__(self, message, hint=None, signum=signal.SIGINT, checkpoint=None):
        super().__init__(message, hint)
        self.exit_code = 128 + int(signum)
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    metrics: list = field(default_factory=list)
    best: Optional[dict] = None
    config: Optional[TrainConfig] = None


# ================================================================================ entry points
def train(config: Optional[TrainConfig] = None, *, resume=None, overwrite: bool = False,
          trainer_cls=None, **overrides) -> TrainResult:
    """Train a model; returns a :class:`TrainResult` (rank 0 holds the metrics).

    ``config``: a :class:`TrainConfig` (e.g. from ``--config``); ``overrides``: fields to replace
    (``None`` values ignored). ``resume``: True for ``OUT/last.pth`` or a checkpoint path; the
    run's own configuration is used then, with ``overrides`` applied (epochs, workers, ...).
    ``overwrite``: replace the files of an existing run in ``out``. Without a seed, one is drawn
    (and recorded in ``config.toml``); ``deterministic`` additionally makes the kernels deterministic.
    """
    env = distributed.detect()
    checkpoint = None
    if resume:
        if config is not None:
            raise UsageError("--config cannot be combined with --resume",
                             "a resumed run uses the configuration saved in its checkpoint; pass options to change it")
        path = _resume_path(resume, overrides.get("out"))
        checkpoint = load_checkpoint(path)
        if not is_resumable(checkpoint):
            raise UsageError(f"{path} holds weights but no training state", "resume from RUN/last.pth")
        saved = TrainConfig.from_dict(checkpoint["config"], f"{path} (config)")
        if overrides.get("arch") and overrides["arch"] != saved.arch:
            from ..zoo import get_arch

            if get_arch(overrides["arch"]).name != get_arch(saved.arch).name:
                raise UsageError(f"the run trains {saved.arch}, not {overrides['arch']}",
                                 "drop --arch, or start a new run with another --out")
        overrides = dict(overrides)
        overrides["out"] = str(overrides.get("out") or Path(path).parent)
        config = saved.updated(**overrides)
    else:
        config = (config or TrainConfig()).updated(**overrides)
    if config.seed is None:
        config = config.updated(seed=random.SystemRandom().randrange(1 << 31))
    config = config.resolved()
    trainer = (trainer_cls or Trainer)(config, env=env, checkpoint=checkpoint, overwrite=overwrite)
    return trainer.run()


def _resume_path(resume, out) -> Path:
    if resume is True or resume == "" or resume == "last":
        if not out:
            raise UsageError("--resume without a checkpoint needs the run folder",
                             "pass --out RUN (its last.pth is used) or --resume RUN/last.pth")
        return Path(out) / LAST
    path = Path(resume)
    return path / LAST if path.is_dir() else path


def default_run_dir(arch: str) -> Path:
    return Path("runs") / f"{arch}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def resume_command(run_dir: Path) -> str:
    return f"harmonize train --resume --out {run_dir}"


# ================================================================================ helpers
def derive_seed(*parts) -> int:
    """A 63-bit seed from any tuple of values (stable across processes and Python runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)  # also every CUDA device


class SeededEpochDataset(torch.utils.data.Dataset):
    """Gives every sample its own random stream, derived from (seed, epoch, index).

    The sampler yields ``(epoch, index)`` pairs; the augmentation of a sample therefore does not
    depend on the worker that loads it, on the number of workers, nor on which samples were
    loaded before it (a resumed epoch skips the first steps and still draws the same crops).
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        sample_seed = derive_seed(self.seed, "sample", int(epoch), int(index))
        in_main = torch.utils.data.get_worker_info() is None
        if in_main:  # keep the main process's generators (dropout) untouched
            saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        try:
            seed_everything(sample_seed) if not in_main else _seed_cpu(sample_seed)
            sample = self.dataset[int(index)]
        finally:
            if in_main:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])
        return {"image": sample["image"], "target": sample["target"], "mask": sample["mask"]}


def _seed_cpu(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.random.default_generator.manual_seed(seed)


def _determinism_flags():
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)


def _restore_determinism_flags(flags) -> None:
    """Leave the process as the run found it (the library may be called from a notebook)."""
    enabled, warn_only, cudnn_deterministic, cudnn_benchmark = flags
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.deterministic = cudnn_deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark


def _worker_init(_worker_id):
    # Ctrl-C reaches the whole process group: the main process handles it and stops cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def resolve_amp(requested: str, device: torch.device):
    """(autocast dtype or None, use a GradScaler) for ``--amp`` on ``device``."""
    if requested == "off":
        return None, False
    if requested == "auto":
        if device.type != "cuda":
            return None, False
        return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
    if requested == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            console.warn("this GPU has no bf16 support: using fp16 with a GradScaler")
            return torch.float16, True
        return torch.bfloat16, False
    return torch.float16, True  # fp16


def make_grad_scaler(device: torch.device, enabled: bool):
    """A GradScaler for ``device`` (``torch.amp`` since torch 2.3, ``torch.cuda.amp`` before)."""
    try:
        return torch.amp.GradScaler(device.type, enabled=enabled)
    except (AttributeError, TypeError):  # older torch
        return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")


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


class _StopFlag:
    """SIGINT / SIGTERM handlers that ask the loop to stop after the current step."""

    def __init__(self, announce: bool):
        self.signum = None
        self.announce = announce
        self.previous = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except (ValueError, OSError):  # pragma: no cover - not the main thread / unsupported
                pass
        return self

    def restore(self):
        for signum, handler in self.previous.items():
            try:
                signal.signal(signum, handler)
            except (ValueError, OSError):  # pragma: no cover
                pass
        self.previous = {}

    def _handle(self, signum, _frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C abandons at once
        self.signum = signum
        if self.announce:
            name = signal.Signals(signum).name
            console.warn(f"{name} received: stopping after the current step "
                         "(a resumable checkpoint will be saved; Ctrl-C again to abandon)")

    @property
    def requested(self) -> bool:
        return self.signum is not None


def _collate(samples):
    return {key: torch.stack([s[key] for s in samples]) for key in ("image", "target", "mask")}


def _present(requested, available):
    by_lower = {name.lower(): name for name in available}
    chosen = [by_lower[s.lower()] for s in requested if s.lower() in by_lower]
    missing = [s for s in requested if s.lower() not in by_lower]
    return chosen, missing


# ================================================================================ the trainer
class Trainer:
    """One training run. Use :func:`train` unless you need the pieces (tests, notebooks)."""

    def __init__(self, config: TrainConfig, *, env: Optional[distributed.DistEnv] = None,
                 checkpoint: Optional[dict] = None, overwrite: bool = False):
        self.config = config
        self.env = env or distributed.DistEnv()
        self.resume_checkpoint = checkpoint
        self.overwrite = overwrite
        self.is_main = self.env.is_main
        self.log = RunLog(None)
        self.tb = None
        self.stop = _StopFlag(announce=self.is_main)
        self.metrics: list = []
        self.best: Optional[dict] = None
        self.run_dir: Optional[Path] = None
        self.backbone_weights: Optional[dict] = None  # where the backbone's ImageNet weights came from

    @property
    def spec(self):
        from .. import zoo

        return zoo.get_arch(self.config.arch)

    # ------------------------------------------------------------------ preflight
    def _preflight(self) -> dict:
        """Every check that can fail before training: output, data, backbone weights.

        Runs on rank 0 (files) and returns what the run needs; raises a HarmonizeError with the fix.
        """
        config = self.config
        from ..settings import default_dataset
        from ..zoo import get_arch

        spec = get_arch(config.arch)
        run_dir = Path(config.out) if config.out else default_run_dir(spec.name)
        info = {"run_dir": str(run_dir), "seed": config.seed}
        if self.is_main:
            self._check_output(run_dir)
        data = default_dataset(config.data)
        if not Path(data).exists():
            raise UsageError(f"dataset {data} does not exist",
                             "run `harmonize prepare --root iHarmony4` first, or pass --data FILE.h5|DIR")
        info["data"] = str(data)
        info["backbone"] = self._check_backbone(spec)
        return info

    def _check_output(self, run_dir: Path) -> None:
        existing = run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir()))
        if run_dir.exists() and not run_dir.is_dir():
            raise UsageError(f"--out {run_dir} is a file", "choose a folder for the run")
        if existing and self.resume_checkpoint is None:
            if not self.overwrite:
                raise UsageError(f"run folder {run_dir} already exists",
                                 f"continue it with `{resume_command(run_dir)}`, start over with --overwrite, "
                                 "or choose another --out")
        created = not run_dir.exists()
        self._created_run_dir = run_dir if created else None
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"cannot write to the run folder {run_dir}: {exc.strerror or exc}",
                             "choose a writable --out") from None

    def _check_backbone(self, spec):
        config = self.config
        if not spec.backbone or self.resume_checkpoint is not None:
            return None  # a resumed run takes every weight from its checkpoint
        if config.backbone_weights:
            path = Path(config.backbone_weights).expanduser()
            if not path.is_file():
                raise UsageError(f"--backbone-weights {path} does not exist",
                                 f"pass the ImageNet checkpoint of {spec.backbone}, "
                                 f"run `harmonize zoo download {spec.backbone}`, or use --no-pretrained")
            return str(path)
        if not config.pretrained_backbone:
            return None
        from ..zoo import fetch

        try:
            return str(fetch(spec.backbone))
        except DownloadError as exc:
            raise UsageError(
                f"the ImageNet weights of the {spec.backbone} backbone of {spec.name} are missing ({exc.message})",
                f"run `harmonize zoo download {spec.backbone}`"
                + (f" or {exc.hint}" if exc.hint else "")
                + ", pass --backbone-weights PATH, or train from scratch with --no-pretrained",
            ) from None

    def _cleanup_failed_preflight(self) -> None:
        """A failed check leaves no trace: remove the run folder if the checks created it (empty)."""
        created = getattr(self, "_created_run_dir", None)
        if created is not None:
            try:
                created.rmdir()
            except OSError:
                pass

    def _clear_run_files(self, run_dir: Path) -> None:
        """``--overwrite``: remove what an earlier run wrote (only the files this tool creates)."""
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        for path in run_dir.glob("epoch_*.pth"):
            path.unlink()
        for name in (IMAGES_DIR, TB_DIR):
            if (run_dir / name).is_dir():
                shutil.rmtree(run_dir / name)

    # ------------------------------------------------------------------ data
    def _datasets(self, data: str):
        """The training set and (rank 0) the validation set: the configured subsets that the data has."""
        from ..data import HarmonizationDataset, eval_transform, train_transform
        from ..errors import HarmonizeError as _Err

        config = self.config

        def open_split(split, requested, transform, **options):
            everything = HarmonizationDataset(data, split=split, transform=transform, **options)
            chosen, missing = _present(requested, everything.subset_names)
            if chosen and set(chosen) != set(everything.subset_names):  # opened once when all are wanted
                return HarmonizationDataset(data, split=split, subsets=chosen, transform=transform,
                                            **options), missing, everything.subset_names
            return (everything if chosen else None), missing, everything.subset_names

        try:
            train_set, missing, available = open_split("train", config.train_subsets, train_transform(config.crop),
                                                       keep_background_prob=config.keep_background_prob)
        except _Err as exc:
            raise UsageError(f"no training data in {data}: {exc.message}",
                             exc.hint or "run `harmonize prepare --root iHarmony4` and pass its output with --data")
        if train_set is None:
            raise UsageError(f"{data} has none of the training subsets {', '.join(config.train_subsets)}",
                             f"it holds {', '.join(available)}; set train_subsets accordingly")
        if missing and self.is_main:
            console.warn(f"training subsets not in the data, skipped: {', '.join(missing)}")
        val_set = None
        if self.is_main and config.val_subsets and config.val_every:
            try:
                val_set, val_missing, _ = open_split("test", config.val_subsets, eval_transform(config.val_resize),
                                                     keep_background_prob=-1, keep_raw=True)
            except _Err:
                val_missing = list(config.val_subsets)
            if val_missing:
                console.warn(f"validation subsets without test images in the data, skipped: {', '.join(val_missing)}")
            if val_set is None:
                console.warn("no validation data: best.pth follows the lowest training loss")
        return train_set, val_set

    # ------------------------------------------------------------------ model
    def _model(self, backbone_path):
        from .. import zoo
        from ..models.initialization import init_weights

        config = self.config
        spec = zoo.get_arch(config.arch)
        torch.manual_seed(derive_seed(config.seed, "init"))
        model = zoo.create_model(spec.name, init=False)
        init_weights(model, magnitude=config.init_magnitude)
        self.backbone_weights = None
        if spec.backbone and backbone_path and self.resume_checkpoint is None:
            self.backbone_weights = zoo.load_backbone_weights(model, spec, backbone_path)
        elif spec.backbone:
            self.backbone_weights = {"source": None, "loaded": 0, "note": "trained from scratch (--no-pretrained)"}
        return model

    # ------------------------------------------------------------------ run
    def run(self) -> TrainResult:
        config = self.config
        env = self.env
        from ..device import resolve_device

        device = resolve_device(config.device)
        device = distributed.init(env, device)
        saved_flags = _determinism_flags()
        try:
            return self._checked_run(device)
        finally:
            self.stop.restore()
            self.log.close()
            if self.tb is not None:
                self.tb.close()
            _restore_determinism_flags(saved_flags)
            distributed.cleanup()

    def _checked_run(self, device) -> TrainResult:
        config = self.config
        env = self.env
        # Preflight on rank 0 first (before anything heavy), then share the verdict.
        verdict = None
        if self.is_main:
            try:
                verdict = {"ok": True, **self._preflight()}
            except HarmonizeError as exc:
                verdict = {"ok": False, "error": exc}
                self._cleanup_failed_preflight()
        if env.is_distributed:
            shared = distributed.broadcast_object(
                {k: (str(v) if k == "error" else v) for k, v in verdict.items()} if verdict else None)
            if not self.is_main:
                verdict = shared
        if not verdict["ok"]:
            if self.is_main:
                raise verdict["error"]
            raise TrainingError("stopped: rank 0 failed its checks")
        if not self.is_main:  # the backbone path may differ between nodes: resolve locally
            from ..zoo import get_arch

            self.config = config = config.updated(seed=verdict["seed"])  # one seed for all processes
            verdict["backbone"] = self._check_backbone(get_arch(config.arch))
        # record what was resolved (the dataset `prepare` remembered, the default run folder)
        self.config = config = config.updated(data=verdict["data"], out=verdict["run_dir"])
        self.run_dir = run_dir = Path(verdict["run_dir"])
        if env.is_distributed and not self.is_main:
            console.set_verbosity(console.QUIET)
        return self._run(device, verdict, run_dir)

    def _run(self, device, verdict, run_dir: Path) -> TrainResult:
        config = self.config
        env = self.env
        is_main = self.is_main
        cuda = device.type == "cuda"

        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        elif cuda:
            torch.backends.cudnn.benchmark = True
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = not config.deterministic
            torch.backends.cudnn.allow_tf32 = not config.deterministic

        train_set, val_set = self._datasets(verdict["data"])
        local_batch = distributed.local_batch_size(config.batch_size, env)
        steps_available = len(distributed.make_sampler(len(train_set), env, config.seed)) // local_batch
        if steps_available < 1:
            raise UsageError(f"{len(train_set)} training samples make no batch of {config.batch_size}"
                             + (f" over {env.world_size} processes" if env.is_distributed else ""),
                             "use a smaller --batch-size")
        steps_per_epoch = min(steps_available, config.steps_per_epoch) if config.steps_per_epoch else steps_available

        model = self._model(verdict.get("backbone"))
        raw_model = model
        model.to(device)
        if cuda and config.channels_last:
            model.to(memory_format=torch.channels_last)

        from ..losses import get_loss
        from ..models.backboned import optimizer_param_groups

        loss_fn = get_loss(config.loss, config.min_area)
        groups = optimizer_param_groups(raw_model, config.lr)
        optimizer = torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones),
                                                         gamma=config.gamma)
        amp_dtype, use_scaler = resolve_amp(config.amp, device)
        scaler = make_grad_scaler(device, use_scaler)

        start_epoch, start_step, partial = 0, 0, {}
        if self.resume_checkpoint is not None:
            start_epoch, start_step, partial = self._restore(raw_model, optimizer, scheduler, scaler)
        elif is_main and run_dir.exists() and self.overwrite:
            self._clear_run_files(run_dir)

        model = distributed.wrap_model(model, env, device, sync_bn=config.sync_bn)
        train_model = torch.compile(model) if config.compile else model

        saver = CheckpointSaver(run_dir, config.snapshot_every)
        if is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save(run_dir / CONFIG_FILE)
            self.log = RunLog(run_dir / LOG_FILE)
            self._rewrite_metrics(run_dir)
            self._open_tensorboard(run_dir)
            self._log_start(device, amp_dtype, use_scaler, train_set, val_set, local_batch, steps_per_epoch,
                            raw_model, groups, start_epoch, start_step)
        self.stop.install()

        sampler = distributed.make_sampler(len(train_set), env, config.seed)
        seeded = SeededEpochDataset(train_set, config.seed)
        channels_last = cuda and config.channels_last
        global_batch = local_batch * env.world_size

        for epoch in range(start_epoch, config.epochs):
            skip = start_step if epoch == start_epoch else 0
            carried = partial if epoch == start_epoch else {}
            if skip == 0:
                rank_seed = derive_seed(config.seed, "epoch", epoch, env.rank)
                seed_everything(rank_seed)
            sampler.set_epoch(epoch)
            order = list(sampler)[: steps_per_epoch * local_batch]
            keys = [(epoch, index) for index in order[skip * local_batch:]]
            loader = torch.utils.data.DataLoader(
                seeded, batch_size=local_batch, sampler=keys, num_workers=config.workers,
                collate_fn=_collate, pin_memory=cuda, drop_last=True,
                worker_init_fn=_worker_init if config.workers else None,
                generator=torch.Generator().manual_seed(derive_seed(config.seed, "loader", epoch)),
                persistent_workers=False, **({"prefetch_factor": 4} if config.workers else {}),
            )
            train_model.train()
            loss_sum = float(carried.get("loss_sum", 0.0))
            samples = int(carried.get("samples", 0))
            seconds_before = float(carried.get("seconds", 0.0))
            lr_now = max(group["lr"] for group in optimizer.param_groups)
            started = time.perf_counter()
            step = skip
            loop_stop = False
            epoch_label = f"epoch {epoch + 1}/{config.epochs}"
            with console.progress("step", transient=False) as bar:
                task = bar.add_task(epoch_label, total=steps_per_epoch, completed=skip) if is_main else None
                iterator = iter(loader)
                while step < steps_per_epoch:
                    try:
                        batch = next(iterator)
                    except StopIteration:
                        break
                    except Exception as exc:
                        if self.stop.requested:
                            loop_stop = True
                            break  # a worker died from the same signal: stop at the last finished step
                        raise TrainingError(f"loading training data failed at epoch {epoch + 1}, step {step + 1}: "
                                            f"{type(exc).__name__}: {exc}") from exc
                    image = batch["image"].to(device, non_blocking=cuda)
                    target = batch["target"].to(device, non_blocking=cuda)
                    mask = batch["mask"].to(device, non_blocking=cuda)
                    if channels_last:
                        image = image.contiguous(memory_format=torch.channels_last)
                        mask = mask.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32,
                                        enabled=amp_dtype is not None):
                        prediction = train_model(image, mask)
                    loss = self._loss(loss_fn, prediction.float(), target, mask)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    self.on_step_end(epoch, step + 1)

                    flags = torch.stack([loss.detach().float() * image.shape[0],
                                         (~torch.isfinite(loss.detach())).float(),
                                         torch.tensor(float(self.stop.requested), device=loss.device)])
                    flags = distributed.all_reduce_sum(flags.double()).cpu().tolist()
                    batch_loss_sum, nonfinite, stop_votes = flags
                    step += 1
                    if nonfinite:
                        self._nonfinite(epoch, step, lr_now, saver)
                    loss_sum += batch_loss_sum
                    samples += global_batch
                    if is_main:
                        elapsed = time.perf_counter() - started
                        rate = (step - skip) * global_batch / max(elapsed, 1e-9)
                        bar.update(task, advance=1, status=f"loss {loss_sum / samples:.4f}  {rate:.1f} samples/s")
                        global_step = epoch * steps_per_epoch + step
                        if self.tb is not None and config.log_every and global_step % config.log_every == 0:
                            self.tb.add_scalar("train/loss", batch_loss_sum / global_batch, global_step)
                            self.tb.add_scalar("train/lr", lr_now, global_step)
                        if config.image_every and global_step % config.image_every == 0:
                            self._save_grid(run_dir, epoch, global_step, image, mask, prediction, target)
                    if stop_votes:
                        loop_stop = True
                        break
            train_seconds = time.perf_counter() - started
            # every process takes the same branch: the votes were summed over processes
            if (loop_stop or self._any_stop()) and step < steps_per_epoch:
                self._interrupted(saver, raw_model, optimizer, scheduler, scaler, epoch, step,
                                  {"loss_sum": loss_sum, "samples": samples,
                                   "seconds": seconds_before + train_seconds})
            self._end_epoch(epoch, step, loss_sum, samples, lr_now, seconds_before + train_seconds,
                            (step - skip) * global_batch / max(train_seconds, 1e-9),
                            raw_model, optimizer, scheduler, scaler, saver, val_set, device)
            if self._any_stop():
                self._interrupted(saver, raw_model, optimizer, scheduler, scaler, epoch + 1, 0, {},
                                  already_saved=True)
        if is_main:
            self.log.write(f"finished {config.epochs} epochs; best: {self.best}")
            console.info(f"Finished: {run_dir} (best validation MSE {self._best_text()})")
        return TrainResult(run_dir, config.epochs, list(self.metrics), self.best, config)

    # ------------------------------------------------------------------ hooks (tests subclass these)
    def on_step_end(self, epoch: int, step: int) -> None:
        """Called after every optimisation step, before the processes share their stop flags
        (epoch 0-based, step 1-based)."""

    def _loss(self, loss_fn, prediction, target, mask):
        return loss_fn(prediction, target, mask)

    # ------------------------------------------------------------------ pieces
    def _any_stop(self) -> bool:
        if not self.env.is_distributed:
            return self.stop.requested
        flag = torch.tensor([float(self.stop.requested)], dtype=torch.float64)
        if torch.distributed.get_backend() == "nccl":
            flag = flag.cuda()
        return bool(distributed.all_reduce_sum(flag).item())

    def _restore(self, raw_model, optimizer, scheduler, scaler):
        checkpoint = self.resume_checkpoint
        raw_model.load_state_dict(checkpoint["model"], strict=True)
        meta = checkpoint.get("meta") or {}
        self.backbone_weights = meta.get("backbone_weights")
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(checkpoint["scaler"])
        self.metrics = list(checkpoint.get("metrics") or [])
        self.best = checkpoint.get("best")
        epoch, step = int(checkpoint["epoch"]), int(checkpoint.get("step") or 0)
        if step:
            per_rank = checkpoint.get("rng_per_rank") or []
            if self.env.world_size == 1:
                set_rng_state(checkpoint.get("rng"))
            elif len(per_rank) == self.env.world_size:
                set_rng_state(per_rank[self.env.rank])
        if epoch >= self.config.epochs and self.is_main:
            console.warn(f"the run already finished {epoch} epochs; raise --epochs to train longer")
        return epoch, step, dict(checkpoint.get("partial") or {})

    def _checkpoint(self, raw_model, optimizer, scheduler, scaler, epoch, step=0, partial=None):
        return build_checkpoint(model=raw_model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                epoch=epoch, step=step, partial=partial, config=self.config.to_dict(),
                                metrics=self.metrics, best=self.best,
                                extra_meta={"world_size": self.env.world_size, "arch": self.spec.name,
                                            "input_size": self.spec.input_size,
                                            "backbone_weights": self.backbone_weights})

    def _end_epoch(self, epoch, steps, loss_sum, samples, lr, train_seconds, rate, raw_model, optimizer,
                   scheduler, scaler, saver, val_set, device):
        config = self.config
        with warnings.catch_warnings():
            # a GradScaler skips the steps whose fp16 gradients overflowed; torch then warns that
            # the scheduler stepped "before optimizer.step()": expected, and harmless here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
            scheduler.step()
        epoch_number = epoch + 1
        validate = val_set is not None and (epoch_number % config.val_every == 0 or epoch_number == config.epochs)
        record = None
        if self.is_main:
            val_started = time.perf_counter()
            val = self._validate(raw_model, val_set, device) if validate else None
            train_loss = loss_sum / max(samples, 1)
            score = val["MSE"] if val else (None if val_set is not None else train_loss)
            is_best = score is not None and math.isfinite(score) and (
                self.best is None or score < self.best["score"])
            if is_best:
                self.best = {"epoch": epoch_number, "score": score, "MSE": val["MSE"] if val else None,
                             "by": "val MSE" if val else "train loss"}
            record = {
                "epoch": epoch_number, "lr": lr, "train_loss": train_loss, "val": val,
                "seconds": round(train_seconds + (time.perf_counter() - val_started), 3),
                "samples_per_s": round(rate, 3), "steps": steps, "samples": samples, "best": bool(is_best),
            }
            self.metrics.append(record)
            checkpoint = self._checkpoint(raw_model, optimizer, scheduler, scaler, epoch_number)
            written = saver.save_epoch(checkpoint, epoch_number, is_best)
            self._append_metrics(record)
            val_text = (f"val MSE {val['MSE']:.2f} fMSE {val['fMSE']:.2f} PSNR {val['PSNR']:.2f}"
                        if val else "no validation")
            line = (f"epoch {epoch_number}/{config.epochs}: train loss {train_loss:.5f}, {val_text}, "
                    f"lr {lr:.2e}, {rate:.1f} samples/s, {record['seconds']:.1f} s"
                    + (" (best)" if is_best else ""))
            self.log.write(line + "; saved " + ", ".join(p.name for p in written))
            console.info(line)
            if self.tb is not None:
                self.tb.add_scalar("epoch/train_loss", train_loss, epoch_number)
                self.tb.add_scalar("epoch/lr", lr, epoch_number)
                for key, value in (val or {}).items():
                    if value is not None:
                        self.tb.add_scalar(f"val/{key}", value, epoch_number)
                self.tb.flush()
        distributed.barrier()

    def _validate(self, raw_model, val_set, device) -> dict:
        from ..evaluation import evaluate

        result = evaluate(raw_model, val_set, batch_size=self.config.val_batch_size, device=device,
                          progress=not console.is_quiet(), workers=self.config.workers, resize=self.config.val_resize)
        return {key: (float(value) if value is not None else None) for key, value in result.summary().items()}

    def _nonfinite(self, epoch, step, lr, saver):
        last = saver.last
        kept = (f"the last good checkpoint {last} is kept (epoch {self.metrics[-1]['epoch']})"
                if self.metrics and last.exists() else "no checkpoint was written")
        message = (f"the training loss became NaN or infinite at epoch {epoch + 1}, step {step} (lr {lr:.2e}); "
                   f"training stopped and {kept}")
        hint = ("lower --lr, try --amp off (or bf16 instead of fp16), check the data; "
                f"then `{resume_command(self.run_dir)}` continues from the last good checkpoint")
        if self.is_main:
            self.log.write(f"ERROR: {message} ({hint})")
        raise TrainingError(message, hint)

    def _interrupted(self, saver, raw_model, optimizer, scheduler, scaler, epoch, step, partial,
                     already_saved=False):
        signum = self.stop.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        path = saver.last
        if not already_saved:
            # every process's random state, so that a resumed epoch continues each stream (dropout)
            per_rank = distributed.all_gather_object(rng_state()) if self.env.is_distributed else None
            if self.is_main:
                checkpoint = self._checkpoint(raw_model, optimizer, scheduler, scaler, epoch, step, partial)
                if per_rank is not None:
                    checkpoint["rng_per_rank"] = per_rank
                saver.save_interrupted(checkpoint)
        distributed.barrier()
        where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
        message = f"stopped by {name} at {where}; saved a resumable checkpoint {path}"
        if self.is_main:
            self.log.write(message)
        raise TrainingInterrupted(message, f"resume with: {resume_command(self.run_dir)}", signum=signum,
                                  checkpoint=path)

    # ------------------------------------------------------------------ files
    def _append_metrics(self, record: dict) -> None:
        with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _rewrite_metrics(self, run_dir: Path) -> None:
        """The checkpoint's history is authoritative (a crash between two writes cannot duplicate lines)."""
        text = "".join(json.dumps(record) + "\n" for record in self.metrics)
        atomic_write_text(run_dir / METRICS_FILE, text)

    def _open_tensorboard(self, run_dir: Path) -> None:
        if not self.config.tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: optional
            console.debug("tensorboard is not installed: no TensorBoard events")
            return
        self.tb = SummaryWriter(log_dir=str(run_dir / TB_DIR))

    def _save_grid(self, run_dir, epoch, global_step, image, mask, prediction, target) -> None:
        from PIL import Image

        from ..data import denormalize

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
        path = run_dir / IMAGES_DIR / f"epoch{epoch + 1:03d}_step{global_step:07d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(np.ascontiguousarray(grid)).save(tmp, format="PNG")

    def _best_text(self) -> str:
        if not self.best:
            return "n/a"
        if self.best.get("MSE") is not None:
            return f"{self.best['MSE']:.2f} at epoch {self.best['epoch']}"
        return f"n/a (lowest train loss at epoch {self.best['epoch']})"

    def _log_start(self, device, amp_dtype, use_scaler, train_set, val_set, local_batch, steps_per_epoch,
                   raw_model, groups, start_epoch, start_step) -> None:
        config = self.config
        amp_text = "off (float32)" if amp_dtype is None else (
            f"{str(amp_dtype).replace('torch.', '')}" + (" + GradScaler" if use_scaler else ""))
        backbone = self.backbone_weights
        lines = [
            f"harmonize {__version__}, torch {torch.__version__}",
            f"run folder: {self.run_dir}",
            f"architecture: {config.arch}; backbone weights: {json.dumps(backbone) if backbone else 'none'}",
            f"device: {device}, processes: {self.env.world_size}, mixed precision: {amp_text}, "
            f"compile: {config.compile}, deterministic: {config.deterministic} (seed {config.seed})",
            f"train: {len(train_set)} samples of {', '.join(train_set.subset_names)}; batch {config.batch_size} "
            f"({local_batch} per process), {steps_per_epoch} steps per epoch, crop {config.crop}",
            "validation: " + (f"{len(val_set)} test images of {', '.join(val_set.subset_names)} at {config.val_resize}"
                               if val_set is not None else "none"),
            f"optimiser: Adam lr {config.lr:g} betas {tuple(config.betas)} eps {config.eps:g}; "
            f"lr multipliers {sorted({g['lr_mult'] for g in groups})}; MultiStepLR {list(config.milestones)} "
            f"x{config.gamma:g}; {config.epochs} epochs; loss {config.loss} (A_min {config.min_area:g})",
        ]
        if self.resume_checkpoint is not None:
            lines.insert(0, f"resumed at epoch {start_epoch + 1}" + (f", step {start_step}" if start_step else ""))
        for line in lines:
            self.log.write(line)
        console.info(f"Training {config.arch} in {self.run_dir} ({device}, {amp_text}, "
                     f"{len(train_set)} samples, {steps_per_epoch} steps/epoch)")
        if self.resume_checkpoint is not None:
            console.info(lines[0].capitalize())
