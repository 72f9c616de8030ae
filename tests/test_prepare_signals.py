"""`harmonize prepare` under SIGTERM / SIGINT at many moments: it always ends, cleanly and fast.

Each run is a real subprocess. The signal is sent a chosen delay after the command has
installed its handler (seen in /proc/PID/status, so Python's start-up is not measured), at
fractions of an uninterrupted run spread from the scan to the end. Every run is bounded by a
hard timeout: a hang fails the test instead of blocking it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from minidata import make_mini_iharmony

REPO = Path(__file__).resolve().parents[1]
HARD_TIMEOUT = 20.0  # seconds a signalled run may take before it counts as a hang

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """About 0.5 s of packing work on an idle machine: long enough to land signals mid-way."""
    root = tmp_path_factory.mktemp("signals") / "ds"
    return make_mini_iharmony(root, subsets=("HCOCO", "HFlickr"), n_train=20, n_test=4, size=(240, 320))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _handler_installed(pid: int, signum: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False


def _start(root, out, workers):
    command = [sys.executable, "-m", "harmonize_cli", "-q", "prepare", "--root", str(root), "-o", str(out)]
    command += ["--workers", str(workers), "--force"]
    process = subprocess.Popen(
        command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + HARD_TIMEOUT
    while not _handler_installed(process.pid, signal.SIGTERM):
        if process.poll() is not None or time.monotonic() > deadline:
            _kill_group(process)
            pytest.fail(f"prepare ended or stalled before handling signals: {process.stderr.read().decode()}")
        time.sleep(0.002)
    return process


def _kill_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _clean(out: Path):
    for path in out.parent.glob(f"*{out.stem}*"):
        path.unlink()


def _work_seconds(root, out, workers) -> float:
    """How long an uninterrupted run takes once its handler is installed."""
    _clean(out)
    process = _start(root, out, workers)
    started = time.monotonic()
    assert process.wait(timeout=60) == 0, process.stderr.read().decode()
    return time.monotonic() - started


def _interrupt(root, out, workers, signum, delay, whole_group):
    """One run signalled ``delay`` s after start-up; returns None when it finished first."""
    _clean(out)
    process = _start(root, out, workers)
    time.sleep(delay)
    if process.poll() is not None:
        assert process.returncode == 0, process.stderr.read().decode()
        return None
    published = out.exists()  # the output is renamed into place only when complete
    (os.killpg if whole_group else os.kill)(process.pid, signum)  # group: like Ctrl-C in a terminal
    sent = time.monotonic()
    try:
        code = process.wait(timeout=HARD_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        pytest.fail(f"prepare (workers={workers}) hung after {signal.Signals(signum).name} at {delay:.3f} s")
    took = time.monotonic() - sent
    stderr = process.stderr.read().decode()
    deadline = time.monotonic() + 3
    while _group_alive(process.pid) and time.monotonic() < deadline:  # workers must be gone too
        time.sleep(0.02)
    leftover = _group_alive(process.pid)
    if leftover:
        os.killpg(process.pid, signal.SIGKILL)
    return {"code": code, "stderr": stderr, "took": took, "leftover": leftover, "published": published}


def _check(outcome, out: Path, signum: int, label: str):
    code, stderr = outcome["code"], outcome["stderr"]
    lines = stderr.strip().splitlines()
    parts = list(out.parent.glob(".*.part"))
    assert not parts, f"{label}: temporary file left: {parts}"
    assert not outcome["leftover"], f"{label}: worker processes outlived prepare"
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, f"{label}:\n{stderr}"
    assert outcome["took"] < 10, f"{label}: took {outcome['took']:.1f} s to stop"
    if code in (0, -signum) and outcome["published"]:
        # the signal came after the work was done, once the command had returned (Python's
        # shutdown): nothing to clean up. Before the output existed this is never allowed:
        # a swallowed signal must not end as a success.
        assert not lines, f"{label}: {stderr}"
        with h5py.File(out, "r") as handle:
            assert bool(handle.attrs["complete"])
        return
    assert code == 128 + signum, f"{label}: exit code {code}\n{stderr}"
    assert len(lines) == 1, f"{label}: stderr is not one line:\n{stderr}"
    assert "interrupted" in lines[0] and signal.Signals(signum).name in lines[0], f"{label}: {lines[0]}"
    if out.exists():  # interrupted after the rename: what is there is complete
        with h5py.File(out, "r") as handle:
            assert bool(handle.attrs["complete"])


def _run_points(dataset, tmp_path, cases):
    out = tmp_path / "out" / "signalled.h5"
    out.parent.mkdir()
    durations = {workers: _work_seconds(dataset, out, workers) for workers in {case[0] for case in cases}}
    hits = 0
    for workers, signum, fraction, whole_group in cases:
        delay = fraction * durations[workers]
        label = f"workers={workers} {signal.Signals(signum).name} at {delay:.3f} s ({fraction:.0%})"
        label += " to the group" if whole_group else ""
        outcome = _interrupt(dataset, out, workers, signum, delay, whole_group)
        if outcome is None:
            continue  # this run was faster than the measured one: it finished before the signal
        _check(outcome, out, signum, label)
        hits += 1
    assert hits >= len(cases) // 2, f"only {hits} of {len(cases)} runs were interrupted"


FRACTIONS = (0.0, 0.03, 0.08, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95)


@pytest.mark.timeout(240)
def test_sigterm_and_sigint_at_twelve_points_always_end_cleanly(dataset, tmp_path):
    cases = []
    for i, fraction in enumerate(FRACTIONS):
        workers = (0, 2)[(i // 2) % 2]
        signum = (signal.SIGTERM, signal.SIGINT)[i % 2]
        cases.append((workers, signum, fraction, i % 3 == 0))
    _run_points(dataset, tmp_path, cases)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_signal_worker_count_and_point(dataset, tmp_path):
    cases = [
        (workers, signum, fraction, whole_group)
        for workers in (0, 1, 2)
        for signum in (signal.SIGTERM, signal.SIGINT)
        for fraction in FRACTIONS[::2] + (1.05,)
        for whole_group in ((False, True) if signum == signal.SIGINT else (False,))
    ]
    _run_points(dataset, tmp_path, cases)
