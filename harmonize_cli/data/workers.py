"""A small process pool for the packer whose shutdown can never hang.

``multiprocessing.Pool`` shares one task queue between its workers, guarded by a lock. A
worker that dies holding that lock (a signal at the wrong moment) makes ``terminate()`` wait
forever, and one blocked writing a large result into a full pipe makes ``join()`` wait
forever. This pool shares nothing between workers:

- each worker has its own pipe to the parent and at most two tasks in flight, and at most
  two per worker are sent and not yet handed on, so memory in flight stays bounded while
  results are returned in order;
- workers ignore SIGINT and SIGTERM (:func:`harmonize_cli.interrupts.ignore_in_worker`): the
  parent alone decides when the run ends, and stops them with SIGKILL and bounded joins;
- a worker whose parent is gone (even by SIGKILL) notices within a second and exits;
- every wait in the parent has a timeout and calls :func:`harmonize_cli.interrupts.check`,
  so a signal that was swallowed somewhere still stops the run.

``workers`` 0 or 1 runs every task in the calling process (no pool at all).
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
from collections import deque

from .. import interrupts
from ..errors import HarmonizeError

IN_FLIGHT = 2  # tasks sent to one worker and not yet answered
POLL_SECONDS = 0.2
JOIN_SECONDS = 3.0

_live_pools: set = set()


class WorkerError(HarmonizeError):
    """A worker process died (killed for memory, for instance)."""


def _worker_main(conn, parent_pid, inherited):
    """The loop of one worker: receive ``(key, function, chunk, args)``, send ``(key, ok, result)``."""
    interrupts.ignore_in_worker()
    for other in inherited:  # forked copies of the other pipe ends: holding them would hide EOF
        try:
            other.close()
        except OSError:
            pass
    try:
        while True:
            if not conn.poll(1.0):
                if os.getppid() != parent_pid:
                    break  # orphaned: the parent was killed
                continue
            task = conn.recv()
            if task is None:
                break
            key, function, chunk, args = task
            try:
                reply = (key, True, function(chunk, *args))
            except Exception:
                reply = (key, False, traceback.format_exc(limit=8))
            conn.send(reply)
    except BaseException:  # EOF, a broken pipe, anything: the parent handles the consequences
        pass
    finally:
        os._exit(0)  # no atexit handlers, no flushing of inherited buffers, no traceback


class _Worker:
    __slots__ = ("process", "conn", "in_flight")

    def __init__(self, process, conn):
        self.process = process
        self.conn = conn
        self.in_flight = deque()


class WorkerPool:
    """Ordered ``map`` over chunks on ``workers`` processes (or in-process for 0 or 1).

    >>> with WorkerPool(4) as pool:
    ...     for chunk, result in pool.map(function, chunks, extra_arg):
    ...         ...
    """

    def __init__(self, workers: int):
        self.workers = max(1, int(workers or 1))
        self._pool: list[_Worker] = []
        if self.workers > 1:
            try:
                self._start()
            except BaseException:  # e.g. a signal raised once the workers are recorded
                self.close(ok=False)
                raise

    # ------------------------------------------------------------------ lifecycle
    def _start(self):
        import multiprocessing
        from multiprocessing.connection import Pipe

        # fork is cheap and safe here (no output file is open yet and nothing is printed in
        # the children); elsewhere (macOS, Windows) fork is unsafe or missing: spawn
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        context = multiprocessing.get_context(method)
        _register_atexit()
        # a signal to the parent now is raised once every started worker is recorded; one to
        # a child before it ignores signals waits (blocked) and is then discarded
        with interrupts.deferred(), interrupts.blocked_while_starting_workers():
            pipes = [Pipe(duplex=True) for _ in range(self.workers)]
            ends = [end for pair in pipes for end in pair]
            _live_pools.add(self)
            try:
                for parent, child in pipes:
                    inherited = [end for end in ends if end is not child] if method == "fork" else []
                    process = context.Process(
                        target=_worker_main, args=(child, os.getpid(), inherited), daemon=True
                    )
                    process.start()
                    child.close()
                    self._pool.append(_Worker(process, parent))
            except BaseException:
                self.close(ok=False)
                for parent, child in pipes:
                    parent.close()
                    child.close()
                raise

    def close(self, ok: bool = True) -> None:
        """Stop the workers: politely after success, SIGKILL otherwise; never waits unbounded."""
        pool, self._pool = self._pool, []
        _live_pools.discard(self)
        if ok:
            for worker in pool:
                try:
                    worker.conn.send(None)
                except (OSError, ValueError):
                    pass
            for worker in pool:
                worker.process.join(JOIN_SECONDS)
        for worker in pool:
            if worker.process.exitcode is None:
                worker.process.kill()
        for worker in pool:
            worker.process.join(JOIN_SECONDS)
            worker.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(ok=exc_type is None)

    # ------------------------------------------------------------------ work
    def map(self, function, chunks, *args):
        """Yield ``(chunk, function(chunk, *args))`` in the order of ``chunks``."""
        if not self._pool:
            for chunk in chunks:
                interrupts.check()
                yield chunk, function(chunk, *args)
            return
        from multiprocessing.connection import wait

        pending = iter(enumerate(chunks))
        sent = {}  # key -> chunk
        done = {}  # key -> result, waiting for its turn
        next_key = 0
        exhausted = False
        limit = IN_FLIGHT * len(self._pool)
        while True:
            interrupts.check()
            if not exhausted:
                for worker in self._pool:
                    # `sent` holds every chunk not yet yielded, answered or not: bounding it
                    # bounds the results waiting behind a slow one too
                    while len(worker.in_flight) < IN_FLIGHT and len(sent) < limit:
                        item = next(pending, None)
                        if item is None:
                            exhausted = True
                            break
                        key, chunk = item
                        sent[key] = chunk
                        worker.conn.send((key, function, chunk, args))
                        worker.in_flight.append(key)
                    if exhausted:
                        break
            while next_key in done:
                yield sent.pop(next_key), done.pop(next_key)
                next_key += 1
            if exhausted and not sent:
                return
            busy = {worker.conn: worker for worker in self._pool if worker.in_flight}
            ready = wait(list(busy), timeout=POLL_SECONDS)
            if not ready:
                for worker in busy.values():
                    if worker.process.exitcode is not None and not worker.conn.poll(0):
                        _died(worker)  # dead without an EOF (another process holds its pipe)
            for conn in ready:
                worker = busy[conn]
                try:
                    key, ok, result = conn.recv()
                except (EOFError, OSError):
                    _died(worker)
                worker.in_flight.remove(key)
                if not ok:
                    raise RuntimeError(f"a worker failed (a bug; please report it):\n{result}")
                done[key] = result


def _died(worker):
    interrupts.check()  # a signal to the whole process group is not a worker failure
    worker.process.join(0.5)
    raise WorkerError(
        f"a worker process ended unexpectedly (exit code {worker.process.exitcode})",
        "out of memory? try fewer --workers",
    )


def _kill_leftovers():
    """Last resort: never leave workers behind (they ignore SIGTERM, which multiprocessing sends)."""
    for pool in list(_live_pools):
        pool.close(ok=False)


def _register_atexit():
    # after `import multiprocessing`: atexit runs last-registered first, so this kills any
    # leftover worker before multiprocessing's own exit hook would wait for it
    if not _registered:
        atexit.register(_kill_leftovers)
        _registered.append(True)


_registered: list = []
