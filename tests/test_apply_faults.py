"""apply's everyday and hostile cases: file-to-file, -q/-v anywhere, honest rates, unwritable and
odd outputs, non-finite masks, interruption reports, permissions (#11, #13)."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import numpy as np
import pytest
from PIL import Image

from test_apply import photo, save_pair


def _report(out):
    return json.loads((out / "harmonize.json").read_text())


def test_file_in_file_out(tmp_path, run_cli):
    composite, mask = save_pair(tmp_path, "rocket.jpg")
    code, _, err = run_cli("apply", composite, mask, "-o", tmp_path / "out.png", "--model", "lab-transfer")
    assert code == 0, err
    result = tmp_path / "out.png"
    assert result.is_file() and Image.open(result).format == "PNG" and Image.open(result).size == (56, 40)
    assert not (tmp_path / "harmonize.json").exists()
    before = result.stat().st_mtime_ns
    code, _, err = run_cli("apply", composite, mask, "-o", result, "--model", "lab-transfer")
    assert code == 0 and "skipped" in err and result.stat().st_mtime_ns == before
    code, _, err = run_cli("apply", composite, mask, "-o", tmp_path / "q.webp", "--model", "lab-transfer", "-q")
    assert code == 0 and err == "" and Image.open(tmp_path / "q.webp").format == "WEBP"


def test_a_file_output_for_a_folder_input_is_a_usage_error(tmp_path, run_cli):
    save_pair(tmp_path, "a.png")
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out.png")
    assert code == 2 and "names a file" in err and "folder" in err
    assert not (tmp_path / "out.png").exists()


def test_quiet_and_verbose_after_any_subcommand(run_cli, tmp_path):
    save_pair(tmp_path, "a.png")
    code, out, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "-q")
    assert code == 0 and out == "" and err == ""
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "o2", "--model",
                           "lab-transfer", "-v")
    assert code == 0 and "model lab-transfer on cpu" in err
    for argv in (("zoo", "list", "-q"), ("eval", "--help"), ("prepare", "-q", "--help"), ("export", "-v", "--help")):
        assert run_cli(*argv)[0] == 0, argv


def test_the_rate_is_images_finished_per_wall_second_everywhere():
    from rich.progress import Progress

    from harmonize_cli.apply.batch import BatchReport, Entry
    from harmonize_cli.console import _RateColumn

    with Progress() as bar:
        task_id = bar.add_task("x", total=20)
        bar.advance(task_id, 10)  # a burst: 10 images at once
        task = bar.tasks[0]
        task.start_time = bar.get_time() - 4.0  # ... after 4 s of work
        assert str(_RateColumn("img").render(task)) == "2.50 img/s"
    entries = [Entry(f"{i}.png", None, None, status="done") for i in range(10)]
    report = BatchReport(out=None, entries=entries, model={}, options={}, seconds=9.0, processing_seconds=4.0)
    assert report.images_per_second == pytest.approx(2.5)


def test_unwritable_output_is_one_line_before_any_work(tmp_path, run_cli):
    save_pair(tmp_path, "a.png")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", blocker / "out")
    assert code == 1 and "cannot write into" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_report_that_cannot_be_written_still_shows_the_summary(tmp_path, run_cli, monkeypatch):
    import harmonize_cli.apply.batch as batch

    save_pair(tmp_path, "a.png")

    def disk_full(target, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batch, "atomic_write_text", disk_full)
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out")
    assert code == 1 and "1 harmonized" in err and "cannot write the report" in err and "No space" in err
    assert "Traceback" not in err and (tmp_path / "out" / "a.png").is_file()


def test_outputs_that_are_folders_are_errors(tmp_path, run_cli):
    save_pair(tmp_path, "a.png")
    save_pair(tmp_path, "b.png")
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out")
    assert code == 1 and "is a folder" in err
    files = {Path_name(entry["composite"]): entry for entry in _report(tmp_path / "out")["files"]}
    assert files["a.png"]["status"] == "failed" and files["b.png"]["status"] == "done"
    (tmp_path / "out2" / "harmonize.json").mkdir(parents=True)
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out2")
    assert code == 2 and "harmonize.json is a folder" in err
    assert not (tmp_path / "out2" / "a.png").exists()


def Path_name(text):  # noqa: N802
    return os.path.basename(text)


def test_non_finite_masks_are_refused(tmp_path, run_cli):
    composite, _ = save_pair(tmp_path, "a.png")
    values = np.zeros((40, 56), dtype=np.float32)
    values[10:30, 20:40] = 1.0
    values[0, 0] = np.nan
    values[1, 1] = np.inf
    (tmp_path / "m" / "a.png").unlink()
    Image.fromarray(values, mode="F").save(tmp_path / "m" / "a.tif")
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out")
    assert code == 1 and "2 NaN or infinite value(s)" in err and "a.tif" in err
    assert _report(tmp_path / "out")["files"][0]["status"] == "failed"


def test_an_interrupted_report_says_exactly_what_is_on_disk(tmp_path, run_cli, monkeypatch):
    import harmonize_cli.apply.batch as batch
    from harmonize_cli.apply.harmonizer import Harmonizer

    for index in range(4):
        save_pair(tmp_path, f"x{index}.png")
    writing = threading.Event()
    original_write, original_predict = batch.encode_for_writing, Harmonizer.predict

    def slow_write(*args, **kwargs):
        write = original_write(*args, **kwargs)  # encoded now; written by the pipeline's writer thread

        def slowly():
            writing.set()
            time.sleep(0.4)  # the first result is still being written when Ctrl-C comes
            return write()

        return slowly

    calls = {"n": 0}

    def interrupt_second_batch(self, jobs):
        calls["n"] += 1
        if calls["n"] == 2:
            assert writing.wait(5)
            raise KeyboardInterrupt
        return original_predict(self, jobs)

    monkeypatch.setattr(batch, "encode_for_writing", slow_write)
    monkeypatch.setattr(Harmonizer, "predict", interrupt_second_batch)
    code, _, _ = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--batch-size", "1",
                         "--workers", "2")
    assert code == 130
    report = _report(tmp_path / "out")
    assert report["summary"]["stopped"] is True
    on_disk = {entry["composite"] for entry in report["files"] if os.path.exists(entry["output"])}
    done = {entry["composite"] for entry in report["files"] if entry["status"] == "done"}
    assert done == on_disk and len(done) >= 1


def test_results_and_reports_get_the_umask_permissions(tmp_path, run_cli):
    save_pair(tmp_path, "a.png")
    old = os.umask(0o022)
    try:
        code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--comparison")
    finally:
        os.umask(old)
    assert code == 0, err
    for path in (tmp_path / "out" / "a.png", tmp_path / "out" / "harmonize.json",
                 tmp_path / "out" / "comparison" / "a.jpg"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert photo() is not None


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="ru_maxrss units differ")
@pytest.mark.timeout(300)
def test_an_image_bomb_is_refused_in_one_line_and_the_batch_goes_on(tmp_path):
    import subprocess
    import sys

    from bombs import write_png_bomb

    save_pair(tmp_path, "good.png")
    write_png_bomb(tmp_path / "c" / "bomb.png")
    write_png_bomb(tmp_path / "m" / "bomb.png")
    measured = (
        "import json, resource, subprocess, sys\n"
        "run = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps({'code': run.returncode, 'stderr': run.stderr,\n"
        "                  'peak_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    command = [sys.executable, "-c", measured, sys.executable, "-m", "harmonize_cli", "apply", str(tmp_path / "c"),
               str(tmp_path / "m"), "-o", str(tmp_path / "out"), "--model", "lab-transfer"]
    result = json.loads(subprocess.run(command, capture_output=True, text=True, timeout=280, check=True).stdout)
    assert result["code"] == 1, result["stderr"]
    assert result["peak_kib"] < 1024 * 1024, result  # nothing near the 784 MP the header declares
    files = {os.path.basename(entry["composite"]): entry for entry in _report(tmp_path / "out")["files"]}
    assert files["good.png"]["status"] == "done"
    assert files["bomb.png"]["status"] == "failed" and "28000x28000" in files["bomb.png"]["reason"]
    assert "--max-pixels" in result["stderr"] and "Traceback" not in result["stderr"]


def test_eval_and_export_outputs_that_cannot_be_written_fail_first(tmp_path, run_cli, mini_iharmony,
                                                                   idih_checkpoint):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, out, err = run_cli("eval", "--data", mini_iharmony, "--model", "composite", "--workers", "0",
                             "-o", blocker / "results.json")
    assert code == 1 and "cannot write into" in err and "Traceback" not in err
    assert out == ""  # failed before the work and the tables
    code, _, err = run_cli("eval", "--data", mini_iharmony, "--model", "composite", "--markdown",
                           blocker / "t.md")
    assert code == 1 and "cannot write into" in err
    code, _, err = run_cli("export", idih_checkpoint, "-o", blocker / "model.pth")
    assert code == 1 and "cannot write into" in err and "Traceback" not in err
