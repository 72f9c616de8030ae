"""The apply pipeline: decoding and encoding in threads, overlapped with batched inference.

:func:`run_pipeline` streams tasks through a :class:`~harmonize_cli.apply.Harmonizer`'s three
stages (``prepare`` in decoder threads, ``predict`` on this thread in batches, ``finish`` + save in
encoder threads) with a bound on the full-resolution pixels in flight.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

DEFAULT_PIXEL_BUDGET = 48_000_000


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadPlan:
    """Threads of an apply run: ``workers`` for decoding and encoding (one pool shared by both
    when ``shared``, else a pool each) and torch's intra-op threads (None: left as they are)."""

    workers: int
    torch_threads: Optional[int]
    shared: bool = False
    io_beside_network: Optional[int] = None  # I/O jobs that may start while the network runs


def plan_threads(device, workers: Optional[int] = None, cores: Optional[int] = None) -> ThreadPlan:
    """Threads for an apply run. On a GPU the forward passes run there: a pool of up to 4
    decoding and one of up to 4 encoding threads, torch untouched. On the CPU the forward pass and
    the full-resolution work share the cores, and torch's intra-op threads spinning beside busy
    decoding threads measured slower than either alone (a 46 ms forward pass took ~125 ms inside
    the old pipeline): half the cores go to torch, and one pool that decodes and encodes gets the
    rest plus one thread, because the forward pass waits for decoded images part of the time
    (2 cores: 1 torch thread, 2 I/O threads; 21 photos of 1.5-4K with iDIH, auto: 1.8 s, against
    2.6 s with 1 I/O thread and 2.0 s with a decoding and an encoding pool of 1 each; HRNet18s,
    whose forward pass dominates: 3.0 s against 2.7 s with 1 I/O thread). A :class:`CoreGate` then
    lets only ``cores - torch threads`` I/O jobs start while the network runs, so the forward pass
    keeps its core when it is the bottleneck (HRNet18s-iDIH, 21 photos, ``fixed``: 4.5 -> 4.2 s
    for the whole command) and both pools work while it waits (iDIH: unchanged). ``workers`` sets
    the I/O threads."""
    cores = cores or available_cores()
    if getattr(device, "type", str(device)) != "cpu":
        return ThreadPlan(workers or min(4, cores), None)
    torch_threads = max(1, cores // 2)
    return ThreadPlan(workers or cores - torch_threads + 1, torch_threads, shared=True,
                      io_beside_network=max(1, cores - torch_threads))


@contextmanager
def torch_threads(count: Optional[int]):
    """Run with ``count`` intra-op threads (None: unchanged), restored afterwards."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CoreGate:
    """Keeps the CPU's cores for the network while it runs: an I/O job (decode or encode) starts
    only while fewer than ``beside_network`` of them run if the network is busy, or fewer than
    ``idle`` otherwise. Jobs already running are never stopped. On 2 cores (1 torch thread, 2 I/O
    threads) the forward pass then has a core to itself whenever it has work, and both cores
    decode and encode while it waits for images."""

    def __init__(self, idle: int, beside_network: int):
        self.idle, self.beside_network = max(1, int(idle)), max(1, int(beside_network))
        self._condition = threading.Condition()
        self._running = 0
        self._network_busy = False

    def set_network_busy(self, busy: bool) -> None:
        with self._condition:
            if self._network_busy != busy:
                self._network_busy = busy
                self._condition.notify_all()

    @contextmanager
    def io_job(self):
        with self._condition:
            while self._running >= (self.beside_network if self._network_busy else self.idle):
                self._condition.wait()
            self._running += 1
        try:
            yield
        finally:
            with self._condition:
                self._running -= 1
                self._condition.notify_all()


def run_pipeline(harmonizer, tasks: Iterable, load: Callable, save: Callable, on_result: Callable,
                 workers: int = 2, pixel_budget: int = DEFAULT_PIXEL_BUDGET,
                 size_of: Optional[Callable] = None, shared_pool: bool = False,
                 io_beside_network: Optional[int] = None) -> None:
    """Harmonize a stream of tasks with decoding and encoding overlapped with inference.

    ``load(task) -> (image, mask, context)`` runs in worker threads; ``save(task, result, job)``
    too; ``on_result(task, error_or_None, seconds, job)`` is called on this thread once per task.
    At most ``pixel_budget`` full-resolution pixels are in flight (``size_of(task)`` gives a
    task's pixel count before decoding; a single larger image is still admitted alone).
    ``workers`` threads decode and as many encode, or, with ``shared_pool``, ``workers`` threads
    do both (the CPU plan: the other cores run the network). ``io_beside_network``: at most this
    many I/O jobs start while the network runs (:class:`CoreGate`; None: no limit).
    """
    workers = max(1, int(workers))
    tasks = iter(tasks)
    decoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harmonize-decode")
    encoders = decoders if shared_pool else ThreadPoolExecutor(max_workers=workers,
                                                               thread_name_prefix="harmonize-encode")
    decoding = {}  # future -> (task, pixels)
    encoding = {}  # future -> (task, job, pixels)
    ready = deque()  # (task, job, pixels)
    state = {"used": 0, "exhausted": False, "next": None}
    max_ready = harmonizer.batch_size * 2 + workers
    gate = CoreGate(workers, io_beside_network) if io_beside_network is not None else None
    io_job = gate.io_job if gate is not None else nullcontext

    def load_and_prepare(task):
        with io_job():
            started = time.perf_counter()
            image, mask, context = load(task)
            job = harmonizer.prepare(image, mask, context)
            job.seconds = time.perf_counter() - started
            return job

    def finish_and_save(task, job):
        with io_job():
            before, started = job.seconds, time.perf_counter()
            result = harmonizer.finish(job)
            save(task, result, job)
            job.seconds = before + time.perf_counter() - started
            return job

    def network_busy(busy: bool) -> None:
        if gate is not None:
            gate.set_network_busy(busy)

    def admit():
        while not state["exhausted"] and len(decoding) + len(ready) < max_ready:
            if state["next"] is None:
                try:
                    task = next(tasks)
                except StopIteration:
                    state["exhausted"] = True
                    return
                pixels = 0
                if size_of is not None:
                    try:
                        pixels = int(size_of(task) or 0)
                    except Exception:
                        pixels = 0
                state["next"] = (task, pixels)
            task, pixels = state["next"]
            if state["used"] and state["used"] + pixels > pixel_budget:
                return  # wait for encodes to free memory
            state["next"] = None
            state["used"] += pixels
            decoding[decoders.submit(load_and_prepare, task)] = (task, pixels)

    def collect(done):
        for future in done:
            if future in decoding:
                task, pixels = decoding.pop(future)
                error = future.exception()
                if error is not None:
                    state["used"] -= pixels
                    on_result(task, error, 0.0, None)
                else:
                    ready.append((task, future.result(), pixels))
            elif future in encoding:
                task, job, pixels = encoding.pop(future)
                state["used"] -= pixels
                error = future.exception()
                on_result(task, error, job.seconds, job)

    def run_batch():
        batch = [ready.popleft() for _ in range(min(harmonizer.batch_size, len(ready)))]
        jobs = [job for _, job, _ in batch]
        try:
            harmonizer.predict(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].prediction = exc
            else:
                for job in jobs:  # out of memory or one bad input: retry one at a time
                    try:
                        harmonizer.predict([job])
                    except Exception as single:  # noqa: PERF203
                        job.prediction = single
        for task, job, pixels in batch:
            if isinstance(job.prediction, Exception):
                state["used"] -= pixels
                on_result(task, job.prediction, job.seconds, job)
                continue
            encoding[encoders.submit(finish_and_save, task, job)] = (task, job, pixels)

    try:
        while True:
            admit()
            collect([future for future in list(decoding) + list(encoding) if future.done()])
            if len(ready) >= harmonizer.batch_size or (ready and not decoding):
                network_busy(True)
                run_batch()
                network_busy(len(ready) >= harmonizer.batch_size)  # it runs again at once: keep the cores
                continue
            network_busy(False)
            if not decoding and not encoding and not ready:
                admit()
                if not decoding and state["exhausted"] and state["next"] is None:
                    break
                continue
            wait(list(decoding) + list(encoding), return_when=FIRST_COMPLETED)
    finally:
        network_busy(False)  # jobs waiting at the gate may go on (and end) before the pools shut down
        for future in list(decoding) + list(encoding):
            future.cancel()
        decoders.shutdown(wait=True, cancel_futures=True)
        encoders.shutdown(wait=True, cancel_futures=True)
        # results that were being written when the run stopped (Ctrl-C) are on disk now: report
        # them as what they are, so the report says exactly what is there
        for future, (task, job, _pixels) in list(encoding.items()):
            if future.done() and not future.cancelled():
                del encoding[future]
                on_result(task, future.exception(), job.seconds, job)


