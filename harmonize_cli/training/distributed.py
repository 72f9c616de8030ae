"""Multi-process training through the standard engine (``torchrun``): DDP, samplers, rank-0 I/O.

``torchrun --nproc_per_node=N -m harmonize_cli train ...`` starts N processes with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`detect` reads them,
:func:`init` joins the process group (NCCL on GPUs, gloo on CPUs) and :func:`wrap_model` wraps the
model in DistributedDataParallel (optionally converting BatchNorm to SyncBatchNorm). Only rank 0
logs, validates and writes files; the others follow through barriers and collective flags.
"""

from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass

import torch

from .. import console


def _dist():
    import torch.distributed as dist

    return dist


def is_initialized() -> bool:
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect() -> DistEnv:
    """The process's place in a torchrun job (a single process when the variables are absent)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return DistEnv()
    if world <= 1:
        return DistEnv()
    return DistEnv(rank=rank, local_rank=local, world_size=world)


def init(env: DistEnv, device: torch.device, timeout_minutes: float = 30.0) -> torch.device:
    """Join the process group; returns this process's device (``cuda:LOCAL_RANK`` on GPUs)."""
    if not env.is_distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist = _dist()
    if not dist.is_initialized():
        kwargs = {"backend": backend, "init_method": "env://", "timeout": datetime.timedelta(minutes=timeout_minutes)}
        if backend == "nccl":
            kwargs["device_id"] = device
        try:
            dist.init_process_group(**kwargs)
        except TypeError:  # older torch without device_id
            kwargs.pop("device_id", None)
            dist.init_process_group(**kwargs)
    return device


def cleanup() -> None:
    if is_initialized():
        try:
            _dist().destroy_process_group()
        except Exception:  # pragma: no cover - best effort at exit
            pass


def barrier() -> None:
    if is_initialized():
        _dist().barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if is_initialized():
        dist = _dist()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value, src: int = 0):
    if not is_initialized():
        return value
    holder = [value]
    _dist().broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_object(value) -> list:
    """``[value of rank 0, value of rank 1, ...]`` on every process (``[value]`` alone)."""
    if not is_initialized():
        return [value]
    gathered = [None] * _dist().get_world_size()
    _dist().all_gather_object(gathered, value)
    return gathered


def wrap_model(model: torch.nn.Module, env: DistEnv, device: torch.device, sync_bn: bool = False):
    """DistributedDataParallel around ``model`` (already on ``device``); identity for one process."""
    if not env.is_distributed:
        if sync_bn:
            console.debug("--sync-bn has no effect in a single process")
        return model
    if sync_bn:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif env.is_main:
            console.warn("--sync-bn needs GPUs; BatchNorm statistics stay per process on the CPU")
    from torch.nn.parallel import DistributedDataParallel

    kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
    return DistributedDataParallel(model, **kwargs)  # buffers (BatchNorm statistics) follow rank 0


def local_batch_size(global_batch: int, env: DistEnv) -> int:
    """``--batch-size`` is the global batch (the recipe's 16 whatever the GPU count)."""
    from ..errors import UsageError

    if global_batch % env.world_size:
        raise UsageError(f"--batch-size {global_batch} does not divide among {env.world_size} processes",
                         f"use a multiple of {env.world_size}, e.g. {math.ceil(global_batch / env.world_size) * env.world_size}")
    return global_batch // env.world_size


def make_sampler(dataset_len: int, env: DistEnv, seed: int):
    """A shuffling sampler with ``set_epoch``: DistributedSampler under torchrun, else the same
    permutation rule (a generator seeded with seed + epoch) in one process."""
    if env.is_distributed:
        from torch.utils.data import DistributedSampler

        return DistributedSampler(range(dataset_len), num_replicas=env.world_size, rank=env.rank,
                                  shuffle=True, seed=seed, drop_last=False)
    return EpochShuffleSampler(dataset_len, seed)


class EpochShuffleSampler(torch.utils.data.Sampler):
    """Shuffles ``range(n)`` with ``torch.Generator().manual_seed(seed + epoch)``: every epoch's order
    is a function of (seed, epoch) alone, so a resumed run sees the same order."""

    def __init__(self, n: int, seed: int = 0):
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n
