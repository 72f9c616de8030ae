"""Apply near its floor (issue 28): the first images decode while the model loads and are never
decoded again, writes wait for the disk on threads of their own and a task is reported only once
its file is written, and nothing imports torch before the model is asked for."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
from PIL import Image

from harmonize_cli.apply.pipeline import Prefetch, run_pipeline


class CountingHarmonizer:
    """Stages that do nothing but record what they were given."""

    batch_size = 1

    def prepare(self, image, mask, context):
        return SimpleNamespace(seconds=0.0, prediction=None, loaded=image)

    def predict(self, jobs):
        for job in jobs:
            job.prediction = 1

    def finish_image(self, job):
        return job.loaded


def test_prefetched_tasks_are_decoded_once_and_the_rest_by_the_pipeline():
    loads, lock = [], threading.Lock()

    def load(task):
        with lock:
            loads.append((task, threading.current_thread().name))
        return f"pixels of {task}", None, None

    prefetch = Prefetch(range(10), load, size_of=lambda task: 100, pixel_budget=300)  # the first 3 fit
    saved = []
    run_pipeline(CountingHarmonizer(), range(10), load, save=lambda task, result, job: saved.append((task, result)),
                 on_result=lambda task, error, seconds, job: None, workers=2, prefetched=prefetch)
    assert sorted(task for task, _ in loads) == list(range(10))  # each task decoded exactly once
    early = sorted(task for task, thread in loads if thread.startswith("harmonize-prefetch"))
    assert early == [0, 1, 2]
    assert sorted(saved) == [(task, f"pixels of {task}") for task in range(10)]


def test_prefetch_takes_only_what_its_pixel_budget_allows_and_close_drops_the_rest():
    started = threading.Event()
    release = threading.Event()

    def load(task):
        started.set()
        release.wait(5)
        return task, None, None

    prefetch = Prefetch(["a", "b", "c"], load, size_of=lambda task: 60, pixel_budget=100)  # "a" alone fits
    assert started.wait(5)
    assert prefetch.take("b") is None and prefetch.take("c") is None
    release.set()
    future = prefetch.take("a")
    assert future.result(5)[0] == ("a", None, None)
    prefetch.close()


def test_a_task_is_reported_only_after_the_write_save_returned_has_run_on_a_writer_thread():
    written, reported_after_write, threads = set(), [], []

    def save(task, result, job):
        def write():
            threads.append(threading.current_thread().name)
            time.sleep(0.02)  # the disk
            written.add(task)
        return write

    def on_result(task, error, seconds, job):
        assert error is None
        reported_after_write.append(task in written)

    run_pipeline(CountingHarmonizer(), range(6), lambda task: (task, None, None), save, on_result, workers=2,
                 shared_pool=True, io_beside_network=1)
    assert reported_after_write == [True] * 6
    assert all(name.startswith("harmonize-write") for name in threads)


def test_a_failed_write_is_reported_as_that_task_failing():
    def save(task, result, job):
        def write():
            if task == 2:
                raise OSError(28, "No space left on device")
        return write

    errors = {}
    run_pipeline(CountingHarmonizer(), range(4), lambda task: (task, None, None), save,
                 lambda task, error, seconds, job: errors.__setitem__(task, error), workers=2)
    assert [task for task, error in sorted(errors.items()) if error is not None] == [2]
    assert "No space left" in str(errors[2])


def test_apply_decodes_each_composite_and_mask_once(tmp_path, monkeypatch):
    import harmonize_cli.apply.batch as batch

    (tmp_path / "c").mkdir()
    (tmp_path / "m").mkdir()
    rng = np.random.default_rng(0)
    for index in range(5):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "c" / f"p{index}.png")
        mask = np.zeros((48, 64), np.uint8)
        mask[10:30, 20:40] = 255
        Image.fromarray(mask).save(tmp_path / "m" / f"p{index}.png")
    calls = []
    read_image, read_mask = batch.read_image, batch.read_mask
    monkeypatch.setattr(batch, "read_image", lambda path, *a, **k: calls.append(("image", path.name)) or read_image(path, *a, **k))
    monkeypatch.setattr(batch, "read_mask", lambda path, *a, **k: calls.append(("mask", path.name)) or read_mask(path, *a, **k))
    report = batch.harmonize_folder(tmp_path / "c", tmp_path / "m", tmp_path / "out", model="lab-transfer",
                                    device="cpu")
    assert report.counts["done"] == 5
    assert sorted(calls) == sorted([(kind, f"p{index}.png") for index in range(5) for kind in ("image", "mask")])


def test_reading_the_launch_of_a_plain_process_does_not_import_torch():
    code = ("import os, sys; os.environ.pop('WORLD_SIZE', None)\n"
            "from harmonize_cli.sharding import detect_launch\n"
            "launch = detect_launch()\n"
            "print(launch.world_size, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "False"], out.stderr
