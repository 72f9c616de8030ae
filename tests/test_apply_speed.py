"""The faster apply and eval give the results they gave before: apply and eval with the optimised
network against the plain one (within one grey level), and the CPU defaults (batch 1, threads within
the cores). The composition strategies themselves are tested in test_resolution.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harmonize_cli import Harmonizer, zoo
from photos import soft_photo


@pytest.fixture
def idih_with_statistics(idih_parity_checkpoint):
    """iDIH with the parity fixture's weights (non-trivial batch-norm statistics to fold)."""
    return idih_parity_checkpoint[1]


@pytest.mark.parametrize("resolution", ["fixed", "auto"])
def test_apply_with_the_optimised_network_is_unchanged(idih_with_statistics, resolution):
    rgb, mask, _, _, _ = soft_photo(280, 360, seed=1)
    fast = Harmonizer(weights=str(idih_with_statistics), resolution=resolution, device="cpu")
    plain = Harmonizer(weights=str(idih_with_statistics), resolution=resolution, device="cpu")
    plain.runner = plain.network  # the network as the reference runs it
    assert fast.runner is not fast.network
    ours, theirs = fast(rgb, mask), plain(rgb, mask)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert np.array_equal(ours[mask == 0], rgb[mask == 0])


def test_eval_with_the_optimised_network_is_unchanged(idih_with_statistics, monkeypatch, tmp_path):
    from minidata import make_mini_iharmony

    from harmonize_cli.evaluation import engine, evaluate

    root = make_mini_iharmony(tmp_path / "iH", subsets=("HCOCO",), n_train=1, n_test=3, size=(96, 128))
    model = zoo.resolve(weights=str(idih_with_statistics))
    fast = evaluate(model, root, progress=False, workers=0, save_predictions=tmp_path / "fast")
    monkeypatch.setattr(engine, "optimize_for_inference", lambda network, device: network)
    plain = evaluate(model, root, progress=False, workers=0, save_predictions=tmp_path / "plain")
    for name in ("MSE", "fMSE", "PSNR"):
        assert fast.summary()[name] == pytest.approx(plain.summary()[name], rel=1e-4)
    from PIL import Image

    for path in sorted((tmp_path / "fast").rglob("*.png")):
        ours = np.asarray(Image.open(path)).astype(int)
        theirs = np.asarray(Image.open(tmp_path / "plain" / path.relative_to(tmp_path / "fast"))).astype(int)
        assert np.abs(ours - theirs).max() <= 1


# ----------------------------------------------------------------------------------- CPU defaults

def test_batch_size_defaults_to_one_on_the_cpu_and_eight_on_accelerators():
    from harmonize_cli.apply.harmonizer import default_batch_size

    assert Harmonizer("lab-transfer", device="cpu").batch_size == 1
    assert Harmonizer("lab-transfer", device="cpu", batch_size=4).batch_size == 4
    assert default_batch_size(torch.device("cpu")) == 1
    assert default_batch_size(torch.device("cuda", 0)) == 8


def test_thread_plan_keeps_torch_and_io_threads_within_the_cores():
    from harmonize_cli.apply.pipeline import plan_threads

    cpu = torch.device("cpu")
    two = plan_threads(cpu, cores=2)
    assert (two.torch_threads, two.workers, two.shared) == (1, 2, True)  # one I/O pool, measured best
    assert two.io_beside_network == 1  # while the network runs, one I/O job: a core each
    assert (plan_threads(cpu, cores=1).torch_threads, plan_threads(cpu, cores=1).workers) == (1, 1)
    for cores in (4, 8, 16, 64):  # the network gets half the cores; no more threads than cores + 1
        plan = plan_threads(cpu, cores=cores)
        assert plan.shared and plan.torch_threads == cores // 2 and plan.torch_threads + plan.workers == cores + 1
    assert plan_threads(cpu, workers=3, cores=2).workers == 3  # --workers wins
    gpu = plan_threads(torch.device("cuda", 0), cores=16)
    assert (gpu.workers, gpu.torch_threads, gpu.shared) == (4, None, False)  # the GPU path keeps its pools
    assert gpu.io_beside_network is None  # and no gate: the network does not use the cores


def test_core_gate_lets_one_io_job_start_beside_the_busy_network():
    import threading

    from harmonize_cli.apply.pipeline import CoreGate

    gate = CoreGate(idle=2, beside_network=1)
    first_in, release_first, second_in = threading.Event(), threading.Event(), threading.Event()

    def job(entered, release=None):
        with gate.io_job():
            entered.set()
            if release is not None:
                release.wait(5)

    gate.set_network_busy(True)
    first = threading.Thread(target=job, args=(first_in, release_first))
    second = threading.Thread(target=job, args=(second_in,))
    first.start()
    assert first_in.wait(5)
    second.start()
    assert not second_in.wait(0.3)  # the network holds the other core
    gate.set_network_busy(False)
    assert second_in.wait(5)  # the network waits for images: both cores decode and encode
    release_first.set()
    first.join(5)
    second.join(5)
    third_in = threading.Event()
    gate.set_network_busy(True)
    job(third_in)  # alone beside the network: starts at once
    assert third_in.is_set()


def test_pipeline_starts_no_second_io_job_while_the_network_runs():
    """Slow fake stages: the decoder and encoder jobs that start while a forward pass runs find no
    other I/O job running (2 I/O threads, 1 allowed beside the network)."""
    import threading
    import time
    from types import SimpleNamespace

    from harmonize_cli.apply.pipeline import run_pipeline

    state = {"predicting": False, "running": 0, "violations": 0, "beside": 0}
    lock = threading.Lock()

    def io_stage(seconds):
        with lock:
            if state["predicting"]:
                state["beside"] += 1
                state["violations"] += state["running"] > 0
            state["running"] += 1
        time.sleep(seconds)
        with lock:
            state["running"] -= 1

    class SlowHarmonizer:
        batch_size = 1

        def prepare(self, image, mask, context):
            io_stage(0.05)
            return SimpleNamespace(seconds=0.0, prediction=None)

        def predict(self, jobs):
            state["predicting"] = True
            time.sleep(0.04)  # decoding and encoding are the bottleneck: the network often waits
            state["predicting"] = False
            for job in jobs:
                job.prediction = 1

        def finish_image(self, job):
            io_stage(0.05)
            return job

    done = []
    run_pipeline(SlowHarmonizer(), range(12), load=lambda task: (None, None, None), save=lambda *args: None,
                 on_result=lambda task, error, seconds, job: done.append((task, error)), workers=2,
                 shared_pool=True, io_beside_network=1)
    assert sorted(done) == [(task, None) for task in range(12)]
    assert state["beside"] > 0  # jobs did run beside the network
    assert state["violations"] == 0


def test_apply_restores_torch_threads(tmp_path):
    from PIL import Image

    from harmonize_cli.apply.batch import harmonize_folder

    (tmp_path / "c").mkdir()
    (tmp_path / "m").mkdir()
    rgb, mask, _, _, _ = soft_photo(64, 80)
    Image.fromarray(rgb).save(tmp_path / "c" / "a.jpg")
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "m" / "a.png")
    before = torch.get_num_threads()
    report = harmonize_folder(tmp_path / "c", tmp_path / "m", tmp_path / "out", model="lab-transfer", device="cpu")
    assert report.counts["done"] == 1 and report.options["batch_size"] == 1
    assert torch.get_num_threads() == before
