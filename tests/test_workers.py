"""The packer's process pool: ordered results, bounded memory, and a shutdown that cannot hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harmonize_cli.data.workers import WorkerError, WorkerPool

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based pool, /proc")


def _scaled(chunk, factor):
    time.sleep(0.002 * (chunk[0] % 7))  # uneven durations: answers arrive out of order
    return [x * factor for x in chunk]


def _big(chunk):
    return bytes(50 << 20)  # 50 MB: far more than a pipe buffer holds


def _fails(chunk):
    raise ValueError(f"bad chunk {chunk}")


def _sleeps(chunk):
    time.sleep(60)


def _naps(chunk):
    time.sleep(0.5)
    return chunk


def test_results_come_back_in_order_and_the_pool_is_reusable():
    chunks = [list(range(i, i + 3)) for i in range(0, 90, 3)]
    with WorkerPool(3) as pool:
        first = list(pool.map(_scaled, chunks, 2))
        second = list(pool.map(_scaled, chunks[:4], 10))
    assert [chunk for chunk, _ in first] == chunks
    assert [result for _, result in first] == [[x * 2 for x in chunk] for chunk in chunks]
    assert second[3] == ([9, 10, 11], [90, 100, 110])


def test_zero_or_one_worker_runs_in_this_process():
    pool = WorkerPool(0)
    assert list(pool.map(_scaled, [[1], [2]], 3)) == [([1], [3]), ([2], [6])]
    assert not pool._pool
    pool.close()


def test_close_never_waits_on_workers_blocked_on_a_full_pipe():
    pool = WorkerPool(2)
    results = pool.map(_big, [[i] for i in range(8)])
    next(results)  # both workers now block writing 50 MB answers nobody reads
    processes = [worker.process for worker in pool._pool]
    started = time.monotonic()
    pool.close(ok=False)
    assert time.monotonic() - started < 5
    assert all(process.exitcode is not None for process in processes)


def test_a_worker_that_dies_is_one_line_not_a_hang():
    pool = WorkerPool(2)
    results = pool.map(_sleeps, [[1], [2]])
    victim = pool._pool[0].process
    os.kill(victim.pid, signal.SIGKILL)  # e.g. the kernel's out-of-memory killer
    with pytest.raises(WorkerError, match="a worker process ended unexpectedly .*fewer --workers"):
        next(results)
    pool.close(ok=False)


def test_a_bug_in_a_task_is_reported_with_its_traceback():
    with pytest.raises(RuntimeError, match="(?s)a worker failed.*ValueError: bad chunk"):
        with WorkerPool(2) as pool:
            list(pool.map(_fails, [[1], [2]]))


def test_workers_ignore_sigint_and_sigterm_the_parent_decides():
    with WorkerPool(2) as pool:
        for worker in pool._pool:
            os.kill(worker.process.pid, signal.SIGINT)
            os.kill(worker.process.pid, signal.SIGTERM)
        assert list(pool.map(_scaled, [[1], [2], [3]], 1)) == [([1], [1]), ([2], [2]), ([3], [3])]


_ORPHANING = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from harmonize_cli.data.workers import WorkerPool
from test_workers import _naps
pool = WorkerPool(2)
results = pool.map(_naps, [[1], [2], [3], [4], [5]])
next(results)
print(" ".join(str(worker.process.pid) for worker in pool._pool), flush=True)
os.kill(os.getpid(), 9)  # the parent dies without any cleanup
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in status)
    except OSError:
        return False


@pytest.mark.timeout(60)
def test_workers_of_a_killed_parent_exit_by_themselves():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", _ORPHANING, str(Path(__file__).parent)], capture_output=True, text=True, env=env
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10  # busy in a task, they notice when it ends (the pipe breaks)
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = [pid for pid in pids if _running(pid)]
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers
