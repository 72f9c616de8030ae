"""Splitting `apply` and `eval` across processes: torchrun / srun ranks, or independent ``--shard K/N``.

>>> from harmonize_cli.sharding import detect_launch, balanced_shares
>>> launch = detect_launch()                  # rank 0 of 1 unless torchrun or srun started us
>>> balanced_shares([4_000_000, 10, 10, 3_000_000], 2)    # pixels per input
[[0], [1, 2, 3]]

Every process computes the same plan from the same inputs, so no plan travels between them:
:func:`balanced_shares` assigns items greedily, the largest first, to the share with the fewest
pixels so far (longest-processing-time), ties broken by the item's position; each share lists its
items in their original order. Shares never overlap and together cover every item.

Under torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, read by
:func:`harmonize_cli.training.distributed.detect`) or srun (``SLURM_PROCID``, ``SLURM_NTASKS``,
``SLURM_LOCALID``, with ``MASTER_ADDR`` and ``MASTER_PORT`` set by the job script) the processes
join one gloo process group (:func:`join_group`; the collectives only carry small reports, so
gloo serves GPU ranks too) whose collectives time out after ``HARMONIZE_DIST_TIMEOUT`` seconds
(default 1800): a rank that died never leaves the others waiting for ever.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from .errors import UsageError

DEFAULT_TIMEOUT_S = 1800.0
TIMEOUT_ENV = "HARMONIZE_DIST_TIMEOUT"
FAIL_RANK_ENV = "HARMONIZE_TEST_FAIL_RANK"  # tests only: this rank raises after planning


@dataclass(frozen=True)
class Launch:
    """This process's place in a job: ``rank`` of ``world_size`` (``local_rank`` of
    ``local_world_size`` on its node). ``grouped``: the processes share a process group (torchrun,
    srun); False for one process and for independent ``--shard K/N`` processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launcher: str = "single"  # single, torchrun, srun, shard

    @property
    def grouped(self) -> bool:
        return self.launcher in ("torchrun", "srun") and self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    def label(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


def _int_env(env, *names) -> Optional[int]:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            try:
                return int(str(value).split("(")[0].split(",")[0])
            except ValueError:
                return None
    return None


def detect_launch(env=None) -> Launch:
    """The launch this process belongs to: torchrun's variables first, then Slurm's (srun)."""
    env = os.environ if env is None else env
    if env is os.environ and env.get("WORLD_SIZE") not in (None, ""):  # torchrun's (imports torch)
        from .training.distributed import detect

        found = detect()
        rank, world, local = found.rank, found.world_size, found.local_rank
    else:  # a given mapping (tests): the same rules
        world, rank = _int_env(env, "WORLD_SIZE") or 1, _int_env(env, "RANK") or 0
        local = _int_env(env, "LOCAL_RANK")
        local = rank if local is None else local
    if world > 1:
        local_world = _int_env(env, "LOCAL_WORLD_SIZE") or world
        return Launch(rank, world, local, local_world, "torchrun")
    tasks = _int_env(env, "SLURM_NTASKS")
    if tasks and tasks > 1:
        rank = _int_env(env, "SLURM_PROCID") or 0
        local = _int_env(env, "SLURM_LOCALID") or 0
        local_world = _int_env(env, "SLURM_NTASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
        if not env.get("MASTER_ADDR") or not env.get("MASTER_PORT"):
            raise UsageError(f"srun started {tasks} tasks but MASTER_ADDR / MASTER_PORT are not set",
                             "export them in the job script (docs/scaling.md), or use --shard K/N per task")
        return Launch(rank, tasks, local, local_world or tasks, "srun")
    return Launch()


def parse_shard(text: str) -> Tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N``; a UsageError otherwise."""
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r} is not K/N", "e.g. --shard 0/4 for the first of 4 shares") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: K must be 0..N-1 and N at least 1", f"e.g. --shard 0/{max(count, 2)}")
    return index, count


def shard_launch(shard: Optional[str]) -> Launch:
    """The launch of a command: ``--shard K/N`` (independent processes), else torchrun / srun / one."""
    launch = detect_launch()
    if shard is None:
        return launch
    if launch.grouped:
        raise UsageError("--shard and torchrun/srun exclude each other",
                         "under torchrun or srun every rank takes its share already: drop --shard")
    index, count = parse_shard(shard)
    return Launch(index, count, 0, 1, "shard")


def balanced_shares(sizes: Sequence[int], count: int) -> List[List[int]]:
    """Item positions per share: largest first onto the lightest share (ties: lower share, earlier
    item), each share in the items' original order. Deterministic: every process gets the same."""
    count = max(1, int(count))
    shares: List[List[int]] = [[] for _ in range(count)]
    loads = [(0, share) for share in range(count)]  # (pixels so far, share)
    order = sorted(range(len(sizes)), key=lambda position: (-int(sizes[position] or 0), position))
    for position in order:
        load, share = heapq.heappop(loads)
        shares[share].append(position)
        heapq.heappush(loads, (load + max(1, int(sizes[position] or 0)), share))
    return [sorted(share) for share in shares]


def share_of(sizes: Sequence[int], launch: Launch) -> List[int]:
    """The positions this process owns."""
    if not launch.sharded:
        return list(range(len(sizes)))
    return balanced_shares(sizes, launch.world_size)[launch.rank]


def header_pixels(path) -> int:
    """Width x height from the file header (0 when it cannot be read: the file is reported later)."""
    from .limits import image_size

    try:
        width, height = image_size(path)
        return int(width) * int(height)
    except Exception:
        return 0


def rank_cores(launch: Launch, cores: Optional[int] = None) -> int:
    """CPU cores for one rank: the node's cores split between its ranks (at least 1)."""
    from .apply.pipeline import available_cores

    cores = cores or available_cores()
    return max(1, cores // max(1, launch.local_world_size)) if launch.grouped else cores


def rank_device(launch: Launch, device):
    """``cuda:LOCAL_RANK`` for a CUDA device under torchrun / srun; any other device unchanged."""
    import torch

    from .device import resolve_device

    device = device if isinstance(device, torch.device) else resolve_device(device)
    if launch.grouped and device.type == "cuda":
        count = torch.cuda.device_count()
        device = torch.device("cuda", launch.local_rank % max(1, count))
        torch.cuda.set_device(device)
    return device


def timeout_seconds() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        raise UsageError(f"{TIMEOUT_ENV}={os.environ.get(TIMEOUT_ENV)!r} is not a number of seconds",
                         f"e.g. {TIMEOUT_ENV}=600") from None
    return value if value > 0 else DEFAULT_TIMEOUT_S


def join_group(launch: Launch) -> None:
    """Join the job's gloo process group (a no-op unless grouped); collectives time out."""
    if not launch.grouped:
        return
    import torch

    from .training import distributed

    if launch.launcher == "srun":  # torch's env:// reads these
        os.environ.setdefault("RANK", str(launch.rank))
        os.environ.setdefault("WORLD_SIZE", str(launch.world_size))
        os.environ.setdefault("LOCAL_RANK", str(launch.local_rank))
    distributed.init(distributed.DistEnv(launch.rank, launch.local_rank, launch.world_size),
                     torch.device("cpu"), timeout_minutes=timeout_seconds() / 60.0)


def leave_group() -> None:
    from .training import distributed

    distributed.cleanup()


def gather(value, launch: Launch) -> list:
    """Every rank's ``value``, in rank order (``[value]`` when not grouped); waits for all ranks."""
    if not launch.grouped:
        return [value]
    from .training import distributed

    if not distributed.is_initialized():
        raise RuntimeError("gather() before join_group(): the ranks would not see each other")
    return distributed.all_gather_object(value)


def test_failure_hook(launch: Launch) -> None:
    """Tests only: ``HARMONIZE_TEST_FAIL_RANK=R`` makes rank R raise (a dying rank)."""
    wanted = os.environ.get(FAIL_RANK_ENV)
    if wanted is not None and wanted.strip() == str(launch.rank) and launch.sharded:
        raise RuntimeError(f"{FAIL_RANK_ENV}: {launch.label()} fails on purpose")


class JobCounter:
    """Items finished by every rank of a grouped job, counted in the job's store (torchrun's
    TCPStore): each rank adds what it finishes; rank 0 reads the total for its progress bar."""

    KEY = "harmonize/finished"

    def __init__(self, launch: Launch):
        self.store = None
        if launch.grouped:
            try:
                from torch.distributed import distributed_c10d

                self.store = distributed_c10d._get_default_store()
            except Exception:  # pragma: no cover - an older torch: rank 0 counts its own share
                self.store = None

    @property
    def shared(self) -> bool:
        return self.store is not None

    def add(self, count: int = 1) -> int:
        if self.store is None:
            return 0
        try:
            return int(self.store.add(self.KEY, int(count)))
        except Exception:  # the store went away (a rank died): the job ends anyway
            return 0

    def value(self) -> int:
        return self.add(0)


def poll_into(counter: JobCounter, update: Callable[[int], None], stop, interval: float = 0.25) -> None:
    """Call ``update(total)`` with the job's count until ``stop`` (a threading.Event) is set."""
    while not stop.wait(interval):
        update(counter.value())
    update(counter.value())


class rank_errors:
    """Errors of one rank of a grouped job, said once and named: a usage error (every rank meets
    the same one) is printed by rank 0 alone; any other error is one line naming the rank, exit 1
    (torchrun then stops the other ranks and exits non-zero)."""

    def __init__(self, launch: Launch):
        self.launch = launch

    def __enter__(self):
        return self

    def __exit__(self, kind, error, _traceback):
        import click

        from .errors import HarmonizeError

        if error is None or not self.launch.sharded or isinstance(error, (KeyboardInterrupt, click.exceptions.Exit)):
            return False
        if isinstance(error, UsageError):
            if self.launch.grouped and not self.launch.is_main:
                raise click.exceptions.Exit(error.exit_code)
            return False
        if isinstance(error, HarmonizeError):
            if str(error).startswith(self.launch.label()):
                return False
            raise HarmonizeError(f"{self.launch.label()}: {error}") from error
        if isinstance(error, Exception):
            text = str(error).splitlines()[0][:300] if str(error) else ""
            raise HarmonizeError(f"{self.launch.label()}: {type(error).__name__}: {text}".rstrip(": ")) from error
        return False


class joined:
    """``with joined(launch):`` the job's process group for the block (nothing unless grouped)."""

    def __init__(self, launch: Launch):
        self.launch = launch

    def __enter__(self):
        join_group(self.launch)
        return self

    def __exit__(self, *exc):
        if self.launch.grouped:
            leave_group()
        return False
