"""The apply pipeline: decoding and encoding in threads, overlapped with batched inference.

:func:`run_pipeline` streams tasks through a :class:`~harmonize_cli.apply.Harmonizer`'s three
stages (``prepare`` in decoder threads, ``predict`` on this thread in batches, ``finish_image`` + save
in encoder threads) with a bound on the full-resolution pixels in flight.
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
# apply's photos read as decoded (``read_image(as_decoded=True)``) hold about half the memory per
# pixel (Pillow's 4 bytes and the 8-bit mask, no full-size arrays): twice the pixels fit in the
# same memory (21 photos of 1.7-4K: peak 1.10 GB against 1.18 GB at 48 megapixels before), and
# the prefetch then decodes until the model is ready instead of idling half of that time
DECODED_PIXEL_BUDGET = 2 * DEFAULT_PIXEL_BUDGET


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


class Prefetch:
    """Decodes the first tasks on one thread while the model loads (``import torch`` and reading
    the weights keep one core busy for about 1.6 s on the 2-core VM, during which the other core
    would idle): ``load(task)`` for tasks in order while their pixels (``size_of``) fit in
    ``pixel_budget``. The pipeline then takes each decoded task instead of decoding it again
    (:meth:`take`); a task it never takes is dropped by :meth:`close`. Loading has no side
    effects, so a run that stops before the pipeline starts loses nothing."""

    def __init__(self, tasks: Iterable, load: Callable, size_of: Optional[Callable] = None,
                 pixel_budget: int = DEFAULT_PIXEL_BUDGET):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harmonize-prefetch")
        self._futures = {}  # id(task) -> future of (loaded, seconds)
        used = 0
        for task in tasks:
            pixels = _pixels(size_of, task)
            if used and used + pixels > pixel_budget:
                break
            used += pixels
            self._futures[id(task)] = self._pool.submit(_timed, load, task)

    def take(self, task):
        """The future of ``task``'s ``(load(task), seconds)``, or None when it was not prefetched."""
        return self._futures.pop(id(task), None)

    def close(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _timed(function, *args):
    started = time.perf_counter()
    return function(*args), time.perf_counter() - started


def _pixels(size_of: Optional[Callable], task) -> int:
    """A task's pixel count from ``size_of`` (0 when unknown or unreadable: the decode reports it)."""
    if size_of is None:
        return 0
    try:
        return int(size_of(task) or 0)
    except Exception:
        return 0


class _Pipeline:
    """The state of one :func:`run_pipeline` run: tasks decoding, ready for the network, encoding."""

    def __init__(self, harmonizer, tasks: Iterable, load: Callable, save: Callable, on_result: Callable,
                 workers: int, pixel_budget: int, size_of: Optional[Callable], shared_pool: bool,
                 io_beside_network: Optional[int], prefetched: Optional[Prefetch]):
        self.harmonizer, self.load, self.save, self.on_result = harmonizer, load, save, on_result
        self.tasks, self.size_of, self.pixel_budget, self.prefetched = iter(tasks), size_of, pixel_budget, prefetched
        workers = max(1, int(workers))
        self.decoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harmonize-decode")
        self.encoders = self.decoders if shared_pool else ThreadPoolExecutor(max_workers=workers,
                                                                             thread_name_prefix="harmonize-encode")
        self.decoding = {}  # future -> (task, pixels)
        self.encoding = {}  # future -> (task, job, pixels)
        self.writing = {}  # future -> (task, job, pixels): the writes ``save`` returned, on their own threads
        self.writers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="harmonize-write")  # threads start lazily
        self.ready = deque()  # (task, job, pixels)
        self.used, self.exhausted, self.next = 0, False, None  # pixels in flight; the task waiting for room
        self.max_ready = harmonizer.batch_size * 2 + workers
        self.gate = CoreGate(workers, io_beside_network) if io_beside_network is not None else None

    # ------------------------------------------------------------------------ worker threads

    def _io_job(self):
        return self.gate.io_job() if self.gate is not None else nullcontext()

    def load_and_prepare(self, task):
        with self._io_job():
            started = time.perf_counter()
            early = self.prefetched.take(task) if self.prefetched is not None else None
            if early is not None:  # decoded while the model loaded: its own time, not the wait for it
                (image, mask, context), decoding = early.result()
                started = time.perf_counter() - decoding
            else:
                image, mask, context = self.load(task)
            job = self.harmonizer.prepare(image, mask, context)
            job.seconds = time.perf_counter() - started
            return job

    def finish_and_save(self, task, job):
        """Finish and encode; returns the future of the write ``save`` handed back, started at
        once on a writer thread (None: ``save`` wrote already)."""
        with self._io_job():
            before, started = job.seconds, time.perf_counter()
            result = self.harmonizer.finish_image(job)  # a Pillow image for apply's files
            write = self.save(task, result, job)
            job.seconds = before + time.perf_counter() - started
        return self.writers.submit(self.write, job, write) if callable(write) else None

    @staticmethod
    def write(job, write):
        """A result's write, outside the core gate: it mostly waits for the disk (fsync)."""
        started = time.perf_counter()
        try:
            write()
        finally:
            job.seconds += time.perf_counter() - started

    # ---------------------------------------------------------------------------- this thread

    def network_busy(self, busy: bool) -> None:
        if self.gate is not None:
            self.gate.set_network_busy(busy)

    def admit(self) -> None:
        """Start decoding tasks while fewer than ``max_ready`` wait and their pixels fit the budget."""
        while not self.exhausted and len(self.decoding) + len(self.ready) < self.max_ready:
            if self.next is None:
                try:
                    task = next(self.tasks)
                except StopIteration:
                    self.exhausted = True
                    return
                self.next = (task, _pixels(self.size_of, task))
            task, pixels = self.next
            if self.used and self.used + pixels > self.pixel_budget:
                return  # wait for encodes to free memory
            self.next = None
            self.used += pixels
            self.decoding[self.decoders.submit(self.load_and_prepare, task)] = (task, pixels)

    def collect(self) -> None:
        """Move finished decodes to ``ready`` and report finished encodes (and failures)."""
        for future in [future for future in self._in_flight() if future.done()]:
            if future in self.decoding:
                task, pixels = self.decoding.pop(future)
                error = future.exception()
                if error is not None:
                    self.used -= pixels
                    self.on_result(task, error, 0.0, None)
                else:
                    self.ready.append((task, future.result(), pixels))
            elif future in self.encoding:
                task, job, pixels = self.encoding.pop(future)
                writing = None if future.exception() is not None else future.result()
                if writing is not None:
                    self.writing[writing] = (task, job, pixels)
                    continue
                self.used -= pixels
                self.on_result(task, future.exception(), job.seconds, job)
            else:
                task, job, pixels = self.writing.pop(future)
                self.used -= pixels
                self.on_result(task, future.exception(), job.seconds, job)

    def _in_flight(self) -> list:
        return list(self.decoding) + list(self.encoding) + list(self.writing)

    def run_batch(self) -> None:
        """One forward pass over up to ``batch_size`` ready jobs; their encodes start."""
        harmonizer = self.harmonizer
        batch = [self.ready.popleft() for _ in range(min(harmonizer.batch_size, len(self.ready)))]
        _predict_or_mark(harmonizer, [job for _, job, _ in batch])
        for task, job, pixels in batch:
            if isinstance(job.prediction, Exception):
                self.used -= pixels
                self.on_result(task, job.prediction, job.seconds, job)
                continue
            self.encoding[self.encoders.submit(self.finish_and_save, task, job)] = (task, job, pixels)

    def run(self) -> None:
        batch_size = self.harmonizer.batch_size
        while True:
            self.admit()
            self.collect()
            if len(self.ready) >= batch_size or (self.ready and not self.decoding):
                self.network_busy(True)
                self.run_batch()
                self.network_busy(len(self.ready) >= batch_size)  # it runs again at once: keep the cores
                continue
            self.network_busy(False)
            if not self.decoding and not self.encoding and not self.writing and not self.ready:
                self.admit()
                if not self.decoding and self.exhausted and self.next is None:
                    break
                continue
            wait(self._in_flight(), return_when=FIRST_COMPLETED)

    def close(self) -> None:
        """Stop the pools; results that were being written when the run stopped (Ctrl-C) are on
        disk now: report them as what they are, so the report says exactly what is there."""
        self.network_busy(False)  # jobs waiting at the gate may go on (and end) before the pools shut down
        for future in self._in_flight():
            future.cancel()
        if self.prefetched is not None:
            self.prefetched.close()
        self.decoders.shutdown(wait=True, cancel_futures=True)
        self.encoders.shutdown(wait=True, cancel_futures=True)
        self.writers.shutdown(wait=True, cancel_futures=True)  # writes not started yet are dropped
        for future, (task, job, pixels) in list(self.encoding.items()):
            if future.done() and not future.cancelled():
                del self.encoding[future]
                writing = None if future.exception() is not None else future.result()
                if writing is None:  # failed, or wrote itself
                    self.on_result(task, future.exception(), job.seconds, job)
                else:
                    self.writing[writing] = (task, job, pixels)
        for future, (task, job, _pixels) in list(self.writing.items()):
            if future.done() and not future.cancelled():  # a write that ran is on disk (or failed)
                del self.writing[future]
                self.on_result(task, future.exception(), job.seconds, job)


def _predict_or_mark(harmonizer, jobs) -> None:
    """``harmonizer.predict(jobs)``; when the batch fails, each job again alone (out of memory or
    one bad input), a job that still fails keeping its exception as its prediction."""
    try:
        harmonizer.predict(jobs)
    except Exception as exc:
        if len(jobs) == 1:
            jobs[0].prediction = exc
            return
        for job in jobs:
            try:
                harmonizer.predict([job])
            except Exception as single:  # noqa: PERF203
                job.prediction = single


def run_pipeline(harmonizer, tasks: Iterable, load: Callable, save: Callable, on_result: Callable,
                 workers: int = 2, pixel_budget: int = DEFAULT_PIXEL_BUDGET,
                 size_of: Optional[Callable] = None, shared_pool: bool = False,
                 io_beside_network: Optional[int] = None, prefetched: Optional[Prefetch] = None) -> None:
    """Harmonize a stream of tasks with decoding and encoding overlapped with inference.

    ``load(task) -> (image, mask, context)`` runs in worker threads; ``save(task, result, job)``
    too, and may return a function that finishes the save (the file writes: they mostly wait for
    the disk), which then runs on a writer thread outside the core gate; ``on_result(task, error_or_None, seconds, job)`` is called on this thread once per task.
    At most ``pixel_budget`` full-resolution pixels are in flight (``size_of(task)`` gives a
    task's pixel count before decoding; a single larger image is still admitted alone).
    ``workers`` threads decode and as many encode, or, with ``shared_pool``, ``workers`` threads
    do both (the CPU plan: the other cores run the network). ``io_beside_network``: at most this
    many I/O jobs start while the network runs (:class:`CoreGate`; None: no limit).
    ``prefetched``: a :class:`Prefetch` of the first tasks (decoded with the same ``load``
    while the model loaded); it is closed when the run ends.
    """
    pipeline = _Pipeline(harmonizer, tasks, load, save, on_result, workers, pixel_budget, size_of, shared_pool,
                         io_beside_network, prefetched)
    try:
        pipeline.run()
    finally:
        pipeline.close()
