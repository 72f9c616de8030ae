"""The training loop: the paper's recipe, resumable, mixed precision, multi-GPU through torchrun.

What one epoch does (every process under torchrun, rank 0 alone for files and validation):

1. the sampler is set to the epoch; in a seeded run the random generators are re-seeded from
   (seed, epoch) and every sample's augmentation from (seed, epoch, sample), so an epoch is a
   function of the seed and the state at its start: a resumed run repeats an uninterrupted one
   (:mod:`.seeding`);
2. each step (:func:`.step.train_step`): forward under autocast (bf16, or fp16 with a GradScaler),
   the loss in float32, backward, Adam step; the loss and the stop / non-finite flags are summed
   over processes, so every process stops at the same step;
3. MultiStepLR steps, the model is validated with the shared evaluation engine
   (:func:`harmonize_cli.evaluation.evaluate`), and ``last.pth`` / ``best.pth`` / snapshots and
   a ``metrics.jsonl`` line are written (:mod:`.runlog`).

SIGINT / SIGTERM: the current step finishes, ``last.pth`` is written with the position inside
the epoch, and :class:`TrainingInterrupted` says how to resume. A non-finite loss raises
:class:`TrainingError` before anything is saved, so the last good checkpoint stays as it was.
"""

from __future__ import annotations

import functools
import math
import signal
import time
import warnings
from pathlib import Path
from typing import Optional

import torch

from .. import console
from ..errors import HarmonizeError
from . import distributed
from .checkpoint import CheckpointSaver, build_checkpoint, rng_state
from .config import TrainConfig
from .outcome import TrainingError, TrainingInterrupted, TrainResult
from .parts import EpochTotals, RunParts, build_parts, restore_parts
from .preflight import check_backbone, check_vgg, preflight
from .runlog import (RunLog, append_metrics, best_text, log_epoch, open_tensorboard, rewrite_metrics, save_grid,
                     start_lines, write_curves)
from .rundir import CONFIG_FILE, LOG_FILE, clear_run_files, is_run_folder, mark_run, resume_command
from .runtime import StopFlag
from .seeding import (apply_determinism, derive_seed, determinism_flags, epoch_loader, restore_determinism_flags,
                      seed_everything)
from .step import batch_to, train_step


class Trainer:
    """One training run. Use :func:`harmonize_cli.training.train` unless you need the pieces."""

    def __init__(self, config: TrainConfig, *, env: Optional[distributed.DistEnv] = None,
                 checkpoint: Optional[dict] = None, overwrite: bool = False):
        self.config = config
        self.env = env or distributed.DistEnv()
        self.resume_checkpoint = checkpoint
        self.overwrite = overwrite
        self.is_main = self.env.is_main
        self.log = RunLog(None)
        self.tb = None
        self.stop = StopFlag(announce=self.is_main)
        self.metrics: list = []
        self.best: Optional[dict] = None
        self.run_dir: Optional[Path] = None
        self.data_origin: Optional[str] = None  # where the dataset choice came from (for the header)
        # where a fine-tuned run started (--init): recorded in every checkpoint's meta
        self.init_info: Optional[dict] = ((checkpoint or {}).get("meta") or {}).get("init")

    @property
    def resuming(self) -> bool:
        return self.resume_checkpoint is not None

    # ------------------------------------------------------------------ run
    def run(self) -> TrainResult:
        from ..device import resolve_device

        device = distributed.init(self.env, resolve_device(self.config.device))
        saved_flags = determinism_flags()
        try:
            return self._checked_run(device)
        finally:
            self.stop.restore()
            self.log.close()
            if self.tb is not None:
                self.tb.close()
            restore_determinism_flags(saved_flags)
            distributed.cleanup()

    def _checked_run(self, device) -> TrainResult:
        config, env = self.config, self.env
        # Preflight on rank 0 first (before anything heavy), then share the verdict.
        verdict = None
        if self.is_main:
            try:
                verdict = {"ok": True, **preflight(config, resuming=self.resuming, overwrite=self.overwrite)}
            except HarmonizeError as exc:
                verdict = {"ok": False, "error": exc}
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
            verdict["backbone"] = check_backbone(get_arch(config.arch), config, resuming=self.resuming)
            verdict["vgg"] = check_vgg(config)
        # record what was resolved (the dataset `prepare` remembered, the default run folder)
        self.config = config.updated(data=verdict["data"], out=verdict["run_dir"])
        self.data_origin = verdict.get("data_origin")
        self.run_dir = Path(verdict["run_dir"])
        if env.is_distributed and not self.is_main:
            console.set_verbosity(console.QUIET)
        return self._run(device, verdict)

    def _run(self, device, verdict) -> TrainResult:
        apply_determinism(self.config.deterministic, device.type == "cuda")
        parts = self._build(device, verdict)
        start_epoch, start_step, partial = self._start(parts)
        for epoch in range(start_epoch, self.config.epochs):
            first = epoch == start_epoch
            totals = self._train_epoch(parts, epoch, start_step if first else 0, partial if first else {})
            # every process takes the same branch: the votes were summed over processes
            if (totals.stopped or self._any_stop()) and totals.step < parts.steps_per_epoch:
                self._interrupted(parts, epoch, totals.step, totals.partial())
            self._end_epoch(parts, epoch, totals)
            if self._any_stop():
                self._interrupted(parts, epoch + 1, 0, {}, already_saved=True)
        if self.is_main:
            self.log.write(f"finished {self.config.epochs} epochs; best: {self.best}")
            console.info(f"Finished: {self.run_dir} (best validation MSE {best_text(self.best)})")
        return TrainResult(self.run_dir, self.config.epochs, list(self.metrics), self.best, self.config)

    # ------------------------------------------------------------------ set-up
    def _build(self, device, verdict) -> RunParts:
        """Data, model, loss, optimizer, schedule and scaler (nothing written yet)."""
        self.init_info = verdict.get("init") or self.init_info
        return build_parts(self.config, self.env, device, verdict, with_validation=self.is_main,
                           resuming=self.resuming)

    def _start(self, parts: RunParts):
        """Restore a resumed run (or clear an overwritten one), wrap the model, open the run files;
        returns (epoch, step, partial totals) to start from."""
        config, run_dir = self.config, self.run_dir
        start = (0, 0, {})
        if self.resuming:
            start = self._restore(parts)
        elif self.is_main and run_dir.exists() and self.overwrite and is_run_folder(run_dir):
            clear_run_files(run_dir)
        model = distributed.wrap_model(parts.model, self.env, parts.device, sync_bn=config.sync_bn)
        parts.train_model = torch.compile(model) if config.compile else model
        parts.saver = CheckpointSaver(run_dir, config.snapshot_every)
        if self.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            mark_run(run_dir)  # first: what follows is the run's, and --overwrite may remove it
            config.save(run_dir / CONFIG_FILE)
            self.log = RunLog(run_dir / LOG_FILE)
            rewrite_metrics(run_dir, self.metrics)
            lines, summary = start_lines(config, self.run_dir, parts, self.env.world_size,
                                         resumed_at=start[:2] if self.resuming else None,
                                         data_origin=self.data_origin)
            for line in lines:
                self.log.write(line)
            for line in summary.splitlines():
                console.info(line)
            if self.resuming:
                console.info(lines[0].capitalize())
            if config.tensorboard:
                self.tb = open_tensorboard(run_dir, self.log)
        self.stop.install()
        return start

    def _restore(self, parts: RunParts):
        point = restore_parts(parts, self.resume_checkpoint, self.env)
        self.metrics, self.best = point.metrics, point.best
        if point.epoch >= self.config.epochs and self.is_main:
            console.warn(f"the run already finished {point.epoch} epochs; raise --epochs to train longer")
        return point.epoch, point.step, point.partial

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self, parts: RunParts, epoch: int, skip: int, carried: dict) -> EpochTotals:
        config = self.config
        if skip == 0:
            seed_everything(derive_seed(config.seed, "epoch", epoch, self.env.rank))
        parts.sampler.set_epoch(epoch)
        order = list(parts.sampler)[: parts.steps_per_epoch * parts.local_batch]
        keys = [(epoch, index) for index in order[skip * parts.local_batch:]]
        loader = epoch_loader(parts.seeded, keys, batch_size=parts.local_batch, workers=config.workers,
                              seed=config.seed, epoch=epoch, pin_memory=parts.device.type == "cuda")
        parts.train_model.train()
        totals = EpochTotals(skip=skip, step=skip, loss_sum=float(carried.get("loss_sum", 0.0)),
                             samples=int(carried.get("samples", 0)),
                             seconds_before=float(carried.get("seconds", 0.0)),
                             lr=max(group["lr"] for group in parts.optimizer.param_groups))
        loss_fn = functools.partial(self._loss, parts.loss_fn)
        started = time.perf_counter()
        with console.progress("step", transient=False) as bar:
            task = (bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=parts.steps_per_epoch,
                                 completed=skip) if self.is_main else None)
            iterator = iter(loader)
            while totals.step < parts.steps_per_epoch:
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                except Exception as exc:
                    if self.stop.requested:
                        totals.stopped = True
                        break  # a worker died from the same signal: stop at the last finished step
                    raise TrainingError(f"loading training data failed at epoch {epoch + 1}, "
                                        f"step {totals.step + 1}: {type(exc).__name__}: {exc}") from exc
                batch = batch_to(batch, parts.device, parts.channels_last)
                loss, prediction = train_step(parts.train_model, batch, loss_fn, parts.optimizer,
                                              scaler=parts.scaler, amp_dtype=parts.amp_dtype)
                self.on_step_end(epoch, totals.step + 1)
                batch_loss_sum, nonfinite, stop_votes = self._share_step(loss, batch["image"].shape[0])
                totals.step += 1
                if nonfinite:
                    self._nonfinite(epoch, totals.step, totals.lr, parts.saver)
                totals.loss_sum += batch_loss_sum
                totals.samples += parts.global_batch
                if self.is_main:
                    self._report_step(parts, bar, task, epoch, totals, started, batch_loss_sum, batch, prediction)
                if stop_votes:
                    totals.stopped = True
                    break
        totals.train_seconds = time.perf_counter() - started
        return totals

    def _share_step(self, loss, batch_size: int):
        """(the batch's loss sum, non-finite, stop votes), summed over every process."""
        flags = torch.stack([loss.detach().float() * batch_size,
                             (~torch.isfinite(loss.detach())).float(),
                             torch.tensor(float(self.stop.requested), device=loss.device)])
        return distributed.all_reduce_sum(flags.double()).cpu().tolist()

    def _report_step(self, parts, bar, task, epoch, totals, started, batch_loss_sum, batch, prediction) -> None:
        """Progress bar, TensorBoard scalars and image grids of a finished step (rank 0)."""
        config = self.config
        elapsed = time.perf_counter() - started
        rate = (totals.step - totals.skip) * parts.global_batch / max(elapsed, 1e-9)
        bar.update(task, advance=1, status=f"loss {totals.loss_sum / totals.samples:.4f}  {rate:.1f} samples/s")
        global_step = epoch * parts.steps_per_epoch + totals.step
        if self.tb is not None and config.log_every and global_step % config.log_every == 0:
            self.tb.add_scalar("train/loss", batch_loss_sum / parts.global_batch, global_step)
            self.tb.add_scalar("train/lr", totals.lr, global_step)
        if config.image_every and global_step % config.image_every == 0:
            save_grid(self.run_dir, epoch, global_step, batch["image"], batch["mask"], prediction, batch["target"],
                      getattr(parts.model, "input_normalization", None))

    def _end_epoch(self, parts: RunParts, epoch: int, totals: EpochTotals) -> None:
        """Schedule step; on rank 0 validation, checkpoints, metrics and the epoch's log line."""
        with warnings.catch_warnings():
            # a GradScaler skips the steps whose fp16 gradients overflowed; torch then warns that
            # the scheduler stepped "before optimizer.step()": expected, and harmless here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
            parts.scheduler.step()
        if self.is_main:
            record = self._epoch_record(parts, epoch, totals)
            written = parts.saver.save_epoch(self._checkpoint(parts, record["epoch"]), record["epoch"],
                                             record["best"])
            append_metrics(self.run_dir, record)
            if self.tb is None:  # no TensorBoard: the curves as a picture beside metrics.jsonl
                write_curves(self.run_dir, self.metrics)
            self._log_epoch(record, written)
        distributed.barrier()

    def _epoch_record(self, parts: RunParts, epoch: int, totals: EpochTotals) -> dict:
        """Validates (when due), updates the best epoch and returns the epoch's metrics record."""
        config = self.config
        epoch_number = epoch + 1
        validate = parts.val_set is not None and (epoch_number % config.val_every == 0
                                                  or epoch_number == config.epochs)
        val_started = time.perf_counter()
        val = self._validate(parts.model, parts.val_set, parts.device) if validate else None
        train_loss = totals.loss_sum / max(totals.samples, 1)
        score = val["MSE"] if val else (None if parts.val_set is not None else train_loss)
        is_best = score is not None and math.isfinite(score) and (self.best is None or score < self.best["score"])
        if is_best:
            self.best = {"epoch": epoch_number, "score": score, "MSE": val["MSE"] if val else None,
                         "by": "val MSE" if val else "train loss"}
        rate = (totals.step - totals.skip) * parts.global_batch / max(totals.train_seconds, 1e-9)
        record = {
            "epoch": epoch_number, "lr": totals.lr, "train_loss": train_loss, "val": val,
            "seconds": round(totals.seconds_before + totals.train_seconds + (time.perf_counter() - val_started), 3),
            "samples_per_s": round(rate, 3), "steps": totals.step, "samples": totals.samples, "best": bool(is_best),
        }
        self.metrics.append(record)
        return record

    def _log_epoch(self, record: dict, written) -> None:
        val = record["val"]
        val_text = f"val MSE {val['MSE']:.2f} fMSE {val['fMSE']:.2f} PSNR {val['PSNR']:.2f}" if val else "no validation"
        line = (f"epoch {record['epoch']}/{self.config.epochs}: train loss {record['train_loss']:.5f}, {val_text}, "
                f"lr {record['lr']:.2e}, {record['samples_per_s']:.1f} samples/s, {record['seconds']:.1f} s"
                + (" (best)" if record["best"] else ""))
        self.log.write(line + "; saved " + ", ".join(p.name for p in written))
        console.info(line)
        log_epoch(self.tb, record["epoch"], record["train_loss"], record["lr"], val)

    def _validate(self, raw_model, val_set, device) -> dict:
        from ..evaluation import evaluate
        from ..zoo import ResolvedModel, get_arch

        model = ResolvedModel(get_arch(self.config.arch), raw_model)  # its normalisation; PCT-Net: its low_size
        result = evaluate(model, val_set, batch_size=self.config.val_batch_size, device=device,
                          progress=not console.is_quiet(), workers=self.config.workers, resize=self.config.val_resize)
        return {key: (float(value) if value is not None else None) for key, value in result.summary().items()}

    # ------------------------------------------------------------------ hooks (tests subclass these)
    def on_step_end(self, epoch: int, step: int) -> None:
        """Called after every optimisation step, before the processes share their stop flags
        (epoch 0-based, step 1-based)."""

    def _loss(self, loss_fn, *args):  # (prediction, target, mask); full-resolution networks: (outputs, batch)
        return loss_fn(*args)

    # ------------------------------------------------------------------ stops
    def _any_stop(self) -> bool:
        if not self.env.is_distributed:
            return self.stop.requested
        flag = torch.tensor([float(self.stop.requested)], dtype=torch.float64)
        if torch.distributed.get_backend() == "nccl":
            flag = flag.cuda()
        return bool(distributed.all_reduce_sum(flag).item())

    def _checkpoint(self, parts: RunParts, epoch, step=0, partial=None):
        from .. import zoo

        spec = zoo.get_arch(self.config.arch)
        return build_checkpoint(model=parts.model, optimizer=parts.optimizer, scheduler=parts.scheduler,
                                scaler=parts.scaler, epoch=epoch, step=step, partial=partial,
                                config=self.config.to_dict(), metrics=self.metrics, best=self.best,
                                extra_meta={"world_size": self.env.world_size, "arch": spec.name,
                                            "init": self.init_info,
                                            "input_size": spec.input_size,
                                            "backbone_weights": parts.backbone_weights})

    def _nonfinite(self, epoch, step, lr, saver):
        """Stops on a non-finite loss; the hint fits what is on disk (a last.pth to resume, or not)."""
        last = saver.last
        if last.exists():
            epoch_text = f" (epoch {self.metrics[-1]['epoch']})" if self.metrics else ""
            kept = f"the last good checkpoint {last} is kept{epoch_text}"
            hint = (f"`{resume_command(self.run_dir)}` continues from it (with fp16, try --amp bf16 or off); "
                    "or start over with a lower --lr and --overwrite; check the data")
        else:
            kept = "no checkpoint was written, so there is nothing to resume"
            hint = (f"rerun with a lower learning rate (--lr {self.config.lr / 10:g} instead of {self.config.lr:g}) "
                    f"and --overwrite (replaces the files of this failed start in {self.run_dir}); "
                    "with fp16 try --amp bf16 or off; check the data")
        message = (f"the training loss became NaN or infinite at epoch {epoch + 1}, step {step} (lr {lr:.2e}); "
                   f"training stopped and {kept}")
        if self.is_main:
            self.log.write(f"ERROR: {message} ({hint})")
        raise TrainingError(message, hint)

    def _interrupted(self, parts: RunParts, epoch, step, partial, already_saved=False):
        signum = self.stop.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        path = parts.saver.last
        if not already_saved:
            # every process's random state, so that a resumed epoch continues each stream (dropout)
            per_rank = distributed.all_gather_object(rng_state()) if self.env.is_distributed else None
            if self.is_main:
                checkpoint = self._checkpoint(parts, epoch, step, partial)
                if per_rank is not None:
                    checkpoint["rng_per_rank"] = per_rank
                parts.saver.save_interrupted(checkpoint)
        distributed.barrier()
        where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
        message = f"stopped by {name} at {where}; saved a resumable checkpoint {path}"
        if self.is_main:
            self.log.write(message)
        raise TrainingInterrupted(message, f"resume with: {resume_command(self.run_dir)}", signum=signum,
                                  checkpoint=path)
