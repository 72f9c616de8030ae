"""The apply pipeline: decoding and encoding in threads, overlapped with batched inference.

:func:`run_pipeline` streams tasks through a :class:`~harmonize_cli.apply.Harmonizer`'s three
stages (``prepare`` in decoder threads, ``predict`` on this thread in batches, ``finish`` + save in
encoder threads) with a bound on the full-resolution pixels in flight.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable, Iterable, Optional

DEFAULT_PIXEL_BUDGET = 48_000_000


def run_pipeline(harmonizer, tasks: Iterable, load: Callable, save: Callable, on_result: Callable,
                 workers: int = 2, pixel_budget: int = DEFAULT_PIXEL_BUDGET,
                 size_of: Optional[Callable] = None) -> None:
    """Harmonize a stream of tasks with decoding and encoding overlapped with inference.

    ``load(task) -> (image, mask, context)`` runs in worker threads; ``save(task, result, job)``
    too; ``on_result(task, error_or_None, seconds, job)`` is called on this thread once per task.
    At most ``pixel_budget`` full-resolution pixels are in flight (``size_of(task)`` gives a
    task's pixel count before decoding; a single larger image is still admitted alone).
    """
    workers = max(1, int(workers))
    tasks = iter(tasks)
    decoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harmonize-decode")
    encoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harmonize-encode")
    decoding = {}  # future -> (task, pixels)
    encoding = {}  # future -> (task, job, pixels)
    ready = deque()  # (task, job, pixels)
    state = {"used": 0, "exhausted": False, "next": None}
    max_ready = harmonizer.batch_size * 2 + workers

    def load_and_prepare(task):
        started = time.perf_counter()
        image, mask, context = load(task)
        job = harmonizer.prepare(image, mask, context)
        job.seconds = time.perf_counter() - started
        return job

    def finish_and_save(task, job):
        before, started = job.seconds, time.perf_counter()
        result = harmonizer.finish(job)
        save(task, result, job)
        job.seconds = before + time.perf_counter() - started
        return job

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
                run_batch()
                continue
            if not decoding and not encoding and not ready:
                admit()
                if not decoding and state["exhausted"] and state["next"] is None:
                    break
                continue
            wait(list(decoding) + list(encoding), return_when=FIRST_COMPLETED)
    finally:
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


