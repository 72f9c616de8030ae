"""Issue 22, "Data lost": no command writes over what it reads, deletes what it did not write, or
leaves a partial file behind (SIGTERM as Ctrl-C, killed saves, long names).

The guards: ``harmonize_cli.outputs`` (an output is never an input, never inside an input tree,
never a file the command did not write), ``training.rundir`` (a run folder is a run folder),
``atomic`` (temporary names within NAME_MAX, stale parts of dead processes) and
``interrupts`` (one signal mechanism, SIGTERM exits 143).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harmonize_cli.errors import UsageError, WeightsError
from harmonize_cli.outputs import Inputs, check_replaceable, starts_with

REPO = Path(__file__).resolve().parents[1]
HARD_TIMEOUT = 60.0


def _dead_pid() -> int:
    """The id of a process that has ended (a leftover of a killed run)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _one_line(err: str) -> str:
    """The one error line of a run (progress bars and notices aside), never a traceback."""
    lines = [line for line in err.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err and "Exception ignored" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------ the guard
def test_inputs_catch_the_same_file_by_path_symlink_hard_link_and_tree(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"w")
    (tmp_path / "link.pth").symlink_to(weights)
    os.link(weights, tmp_path / "hard.pth")
    inputs = Inputs().file(weights, "--weights").tree(data, "--data")
    for path in (weights, tmp_path / "link.pth", tmp_path / "hard.pth", tmp_path / "." / "w.pth"):
        with pytest.raises(UsageError, match="is the input --weights"):
            inputs.check(path, "--csv")
    for path in (data, data / "sub" / "new.json", data / "sub" / ".." / "x.md"):
        with pytest.raises(UsageError, match="inside the input folder"):
            inputs.check(path)
    (tmp_path / "copy.pth").write_bytes(b"w")  # same bytes, another file: no clash
    for path in (tmp_path / "copy.pth", tmp_path / "data2" / "x.json", tmp_path / "new.json"):
        inputs.check(path)


def test_only_a_file_the_command_wrote_is_replaced(tmp_path):
    ours, theirs, empty = tmp_path / "ours.md", tmp_path / "theirs.md", tmp_path / "empty.md"
    ours.write_text("# Evaluation\n...")
    theirs.write_text("my notes")
    empty.write_bytes(b"")
    produced = starts_with(b"# Evaluation")
    check_replaceable(ours, produced, "eval's Markdown")
    check_replaceable(empty, produced, "eval's Markdown")  # nothing to lose
    check_replaceable(tmp_path / "new.md", produced, "eval's Markdown")
    with pytest.raises(UsageError, match="theirs.md exists and is not eval's Markdown"):
        check_replaceable(theirs, produced, "eval's Markdown", "--markdown")


# ------------------------------------------------------------------------------------------ item 1: eval
@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from minidata import make_mini_iharmony

    from harmonize_cli.data.pack import pack_dataset

    root = make_mini_iharmony(tmp_path_factory.mktemp("evdata") / "ih", subsets=("HFlickr",), n_train=1, n_test=2)
    return pack_dataset(root, output=root.parent / "evin.h5", workers=0).output, root


def test_eval_never_writes_over_its_inputs(packed, tmp_path, run_cli):
    """`eval -o evin.h5` turned the dataset into JSON, `--csv w.pth` the checkpoint into CSV,
    `--markdown HFlickr_train.txt` replaced a list file; all with exit 0."""
    data, root = packed
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"PK\x03\x04 a checkpoint")
    list_file = root / "HFlickr" / "HFlickr_train.txt"
    (tmp_path / "data_link.h5").symlink_to(data)
    os.link(data, tmp_path / "data_hard.h5")
    attempts = [
        (["--data", data, "--model", "lab-transfer", "-o", data], data),
        (["--data", data, "--model", "lab-transfer", "-o", tmp_path / "data_link.h5"], data),
        (["--data", data, "--model", "lab-transfer", "-o", tmp_path / "data_hard.h5"], data),
        (["--data", data, "--model", "lab-transfer", "--weights", weights, "--csv", weights], weights),
        (["--data", data, "--model", "lab-transfer", "--markdown", list_file], list_file),
        (["--data", root, "--model", "lab-transfer", "-o", root / "HFlickr" / "results.json"], None),
    ]
    for args, victim in attempts:
        before = victim.read_bytes() if victim else None
        code, out, err = run_cli("eval", "--workers", "0", *args)
        assert code == 2 and out == "", (args, err)
        line = _one_line(err)
        assert "Error:" in line and ("input" in line or "not a --markdown file written" in line), line
        if victim:
            assert victim.read_bytes() == before
    assert not (root / "HFlickr" / "results.json").exists()


def test_eval_replaces_its_own_earlier_results(packed, tmp_path, run_cli):
    data, _ = packed
    outputs = ["-o", tmp_path / "r.json", "--markdown", tmp_path / "r.md", "--csv", tmp_path / "r.csv"]
    for _ in range(2):  # the second run replaces what the first wrote
        code, _, err = run_cli("-q", "eval", "--data", data, "--model", "lab-transfer", "--workers", "0", *outputs)
        assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["model"] == "lab-transfer"


# ------------------------------------------------------------------------------------------ item 3: train
def test_train_overwrite_refuses_a_folder_that_is_not_a_run(mini_iharmony, tmp_path, run_cli):
    """`train --overwrite` deleted images/holiday/*.jpg, tb/notes.txt and the user's config.toml."""
    folder = tmp_path / "mine"
    (folder / "images" / "holiday").mkdir(parents=True)
    (folder / "tb").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "images" / "holiday" / "a.jpg")
    (folder / "tb" / "notes.txt").write_text("notes")
    (folder / "config.toml").write_text("mine = true\n")
    before = sorted((p.relative_to(folder), p.read_bytes()) for p in folder.rglob("*") if p.is_file())
    code, _, err = run_cli("train", "--arch", "idih", "--no-pretrained", "--data", mini_iharmony, "--out", folder,
                           "--overwrite", "--epochs", "1", "--workers", "0")
    assert code == 2
    line = _one_line(err)
    assert "is not a run folder" in line and str(folder) in line
    assert sorted((p.relative_to(folder), p.read_bytes()) for p in folder.rglob("*") if p.is_file()) == before


def test_clear_run_files_removes_only_what_a_run_writes(tmp_path):
    from harmonize_cli.training.rundir import check_output, clear_run_files, mark_run

    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    (run / "tb").mkdir()
    written = ["config.toml", "metrics.jsonl", "train.log", "last.pth", "best.pth", "epoch_010.pth",
               "images/epoch001_step0000003.png", "tb/events.out.tfevents.1.host.2.0"]
    for name in written:
        (run / name).write_bytes(b"run")
    users = ["notes.txt", "images/holiday.jpg", "tb/notes.txt", "epoch_notes.pth"]
    for name in users:
        (run / name).write_bytes(b"mine")
    with pytest.raises(UsageError, match="is not a run folder"):
        clear_run_files(run)  # no marker: nothing is touched
    assert all((run / name).exists() for name in written)
    with pytest.raises(UsageError, match="is not a run folder"):
        check_output(run, resuming=False, overwrite=True)
    mark_run(run)
    assert check_output(run, resuming=False, overwrite=True) is None
    clear_run_files(run)
    assert not any((run / name).exists() for name in written)
    assert all((run / name).read_bytes() == b"mine" for name in users)


# ------------------------------------------------------------------------------------------ item 4: export
def test_a_failed_export_writes_nothing(idih_checkpoint, tmp_path, run_cli):
    """An idih state dict plus one extra key: 'matches no architecture', exit 1, yet a 33 MB file
    was written and the rerun said 'already exists'."""
    state = torch.load(idih_checkpoint, map_location="cpu", weights_only=True)
    state["extra.weight"] = torch.zeros(3)
    source = tmp_path / "odd.pth"
    torch.save(state, source)
    out = tmp_path / "model.pth"
    for _ in range(2):  # the rerun fails the same way, not with "already exists"
        code, _, err = run_cli("export", source, "-o", out)
        assert code == 1 and "already exists" not in err, err
        assert "nothing was written" in _one_line(err)
        assert not out.exists() and not list(tmp_path.glob(".*.part"))
    out.write_bytes(b"PK\x03\x04 an earlier export")  # --force keeps it when the new one fails
    assert run_cli("export", source, "-o", out, "--force")[0] == 1
    assert out.read_bytes() == b"PK\x03\x04 an earlier export"


def test_export_never_replaces_its_source_or_a_file_that_is_not_a_checkpoint(idih_checkpoint, tmp_path, run_cli):
    os.link(idih_checkpoint, tmp_path / "hard.pth")
    code, _, err = run_cli("export", idih_checkpoint, "-o", tmp_path / "hard.pth", "--force")
    assert code == 2 and "is the input checkpoint" in _one_line(err)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    code, _, err = run_cli("export", idih_checkpoint, "-o", notes, "--force")
    assert code == 2 and "not a PyTorch checkpoint" in _one_line(err) and notes.read_text() == "mine"


# ------------------------------------------------------------------------------------------ item 5: URL cache
def test_a_url_cached_checkpoint_changed_on_disk_is_refused(http_server, monkeypatch):
    import io

    from harmonize_cli.zoo.pretrained import fetch_url

    handler, base = http_server
    buffer = io.BytesIO()
    torch.save({"conv.weight": torch.ones(2, 2)}, buffer)
    handler.files["w.pth"] = buffer.getvalue()
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    path = fetch_url(f"{base}/w.pth")
    assert fetch_url(f"{base}/w.pth") == path and handler.hits == ["w.pth"]  # cached, verified once
    tampered = io.BytesIO()
    torch.save({"conv.weight": torch.full((2, 2), 7.0)}, tampered)
    path.write_bytes(tampered.getvalue())
    with pytest.raises(WeightsError, match="changed on disk since it was verified") as caught:
        fetch_url(f"{base}/w.pth")
    assert f"delete {path}" in str(caught.value) and handler.hits == ["w.pth"]


def test_a_hand_placed_url_file_is_verified_before_use(http_server, monkeypatch, tmp_path):
    import hashlib

    from harmonize_cli import settings
    from harmonize_cli.zoo.pretrained import fetch_url

    handler, base = http_server
    handler.files["w.pth"] = b"unused"
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    path = settings.weights_dir() / "urls"
    path.mkdir(parents=True)
    url = f"{base}/w.pth"
    placed = path / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-w.pth"
    placed.write_bytes(b"<html>not a checkpoint</html>")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint|not a checkpoint"):
        fetch_url(url)
    assert handler.hits == []


# ------------------------------------------------------------------------------------------ SIGTERM
_DRIVER = textwrap.dedent("""
    import sys, time, pathlib, importlib
    ready, module, attribute, after = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    owner = importlib.import_module(module)
    *path, attribute = attribute.split(".")
    for name in path:
        owner = getattr(owner, name)
    original = getattr(owner, attribute)
    calls = []

    def stall(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            ready.touch()
            time.sleep(120)
        return original(*args, **kwargs)

    setattr(owner, attribute, stall)
    from harmonize_cli.cli import main
    main(sys.argv[5:])
""")


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _sigterm_when_stalled(tmp_path, module, attribute, after, argv, env=None):
    """Run the CLI with ``module.attribute`` stalling after ``after`` calls; SIGTERM it there."""
    ready = tmp_path / "stalled"
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    process = subprocess.Popen([sys.executable, str(driver), str(ready), module, attribute, str(after),
                                *map(str, argv)], env=env or _env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    return _sigterm_once(process, ready.exists, "never reached the stall")


def _sigterm_once(process, ready, not_ready: str):
    """SIGTERM ``process`` once ``ready()`` holds; its exit code and stderr (bounded waits)."""
    deadline = time.monotonic() + HARD_TIMEOUT
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{not_ready}: {process.stderr.read().decode()}")
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=HARD_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("hung after SIGTERM")
    return code, process.stderr.read().decode()


def _pairs(folder: Path, count: int):
    rng = np.random.default_rng(0)
    (folder / "c").mkdir(parents=True)
    (folder / "m").mkdir()
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / "c" / f"x{index}.png")
        mask = np.zeros((24, 32), np.uint8)
        mask[6:18, 8:24] = 255
        Image.fromarray(mask).save(folder / "m" / f"x{index}.png")


def test_sigterm_stops_apply_like_ctrl_c(tmp_path):
    """SIGTERM left apply without harmonize.json, said nothing, and did not exit 143."""
    _pairs(tmp_path, 4)
    out = tmp_path / "out"
    code, err = _sigterm_when_stalled(tmp_path, "harmonize_cli.apply.harmonizer", "Harmonizer.predict", 1,
                                      ["apply", tmp_path / "c", tmp_path / "m", "-o", out, "--model", "lab-transfer",
                                       "--workers", "1"])
    assert code == 143, err
    assert "SIGTERM" in _one_line(err) and "harmonize.json" in err
    report = json.loads((out / "harmonize.json").read_text())
    assert report["summary"]["stopped"] is True
    statuses = {Path(entry["composite"]).name: entry["status"] for entry in report["files"]}
    assert "interrupted" in statuses.values()
    for name, status in statuses.items():  # the report says exactly what is on disk
        assert (out / name).exists() == (status == "done"), (name, status)
    assert not list(out.glob(".*.part"))


def test_sigterm_stops_synth_without_a_partial_folder(tmp_path):
    """SIGTERM left a hidden `.Synthetic.partial-*` folder that prepare then took for a subset."""
    photos = tmp_path / "photos"
    _pairs(photos, 3)
    out = tmp_path / "ds"
    code, err = _sigterm_when_stalled(tmp_path, "harmonize_cli.synth.builder", "_save_image", 2,
                                      ["synth", "--images", photos / "c", "--masks", photos / "m", "-o", out,
                                       "--seed", "0"])
    assert code == 143, err
    assert "SIGTERM" in _one_line(err)
    assert not out.exists() or list(out.iterdir()) == []


def test_sigterm_stops_eval_and_writes_nothing(packed, tmp_path):
    data, _ = packed
    code, err = _sigterm_when_stalled(tmp_path, "harmonize_cli.evaluation", "evaluate", 0,
                                      ["eval", "--data", data, "--model", "lab-transfer", "--workers", "0",
                                       "-o", tmp_path / "r.json"])
    assert code == 143, err
    assert "SIGTERM" in _one_line(err) and not (tmp_path / "r.json").exists()


class _Stalling(http.server.BaseHTTPRequestHandler):
    """Announces 8 MB, sends 1 MB, then waits (a server that stalls mid-download)."""

    release = threading.Event()

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(8 << 20))
        self.end_headers()
        self.wfile.write(b"\0" * (1 << 20))
        self.wfile.flush()
        self.release.wait(HARD_TIMEOUT)

    def log_message(self, *args):
        pass


def test_sigterm_during_a_download_leaves_no_part(tmp_path):
    """SIGTERM left a `.part` in the cache and said nothing."""
    _Stalling.release.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stalling)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    home = tmp_path / "home"
    env = _env(HARMONIZE_HOME=str(home), HARMONIZE_OFFLINE="0",
               HARMONIZE_WEIGHTS_MIRROR=f"http://127.0.0.1:{server.server_address[1]}")
    try:
        code, err = _sigterm_download(env, home)
    finally:
        _Stalling.release.set()
        server.shutdown()
        server.server_close()
    assert code == 143, err
    assert "SIGTERM" in _one_line(err) and "idih256" in err
    assert not [p for p in home.rglob("*") if p.name.endswith(".part")]


def _sigterm_download(env, home):
    process = subprocess.Popen([sys.executable, "-m", "harmonize_cli", "zoo", "download", "idih256"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    return _sigterm_once(process, lambda: any(p.stat().st_size > 0 for p in home.rglob("*.part")),
                         "the download never started")


# ------------------------------------------------------------------------------------------ killed saves, long names
def test_stale_parts_of_dead_processes_are_removed_from_a_run_folder(tmp_path):
    """A SIGKILL during a checkpoint save left `.last.pth.*.part` that `--resume` never removed."""
    from harmonize_cli.training.rundir import remove_checkpoint_parts

    dead, alive = _dead_pid(), os.getpid()
    stale = [f".last.pth.{dead}.k2j4x9aa.pth.part", f".epoch_010.pth.{dead}.abcdefgh.pth.part"]
    kept = [f".best.pth.{alive}.zzzzzzzz.pth.part", "notes.part", ".last.pth.notapid.pth.part"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x" * 10)
    removed = remove_checkpoint_parts(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_a_killed_save_is_cleaned_before_a_run_starts(tmp_path, run_cli):
    """The run folder's checks (new run, --resume or --overwrite) remove the parts of dead saves,
    and the temporary names atomic_path gives are the ones they recognise."""
    from harmonize_cli.atomic import atomic_path
    from harmonize_cli.training.rundir import mark_run

    run = tmp_path / "run"
    run.mkdir()
    mark_run(run)
    with atomic_path(run / "last.pth") as tmp:  # a save, as a process that is gone left it
        tmp.write_bytes(b"x" * 100)
        stale = run / tmp.name.replace(f".{os.getpid()}.", f".{_dead_pid()}.")
        os.link(tmp, stale)
    assert stale.name.startswith(".last.pth.") and stale.name.endswith(".pth.part")
    code, _, err = run_cli("train", "--arch", "idih", "--no-pretrained", "--data", tmp_path / "missing.h5",
                           "--out", run, "--overwrite")
    assert code == 2 and "missing.h5 does not exist" in _one_line(err)
    assert not stale.exists()


def test_temporary_names_fit_in_name_max(tmp_path):
    """A 244-byte file name failed on the temporary name's length."""
    from harmonize_cli.atomic import atomic_path, atomic_write_bytes, remove_stale_parts

    for name in ("a" * 240 + ".png", "é" * 120 + ".jpg", "b" * 250 + ".x" + "y" * 3):
        assert len(name.encode()) <= 255
        target = tmp_path / name
        atomic_write_bytes(target, b"ok")
        assert target.read_bytes() == b"ok"
        with atomic_path(target) as tmp:
            assert len(tmp.name.encode()) <= 255
            (tmp.parent / tmp.name.replace(f".{os.getpid()}.", f".{_dead_pid()}.")).write_bytes(b"stale")
    assert sorted(p.name for p in remove_stale_parts(tmp_path / ("a" * 240 + ".png")))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".a")]


def test_apply_writes_a_result_with_a_244_byte_name(tmp_path, run_cli):
    stem = "p" * 240
    (tmp_path / "c").mkdir()
    (tmp_path / "m").mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "c" / f"{stem}.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(mask).save(tmp_path / "m" / f"{stem}.png")
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--model", "lab-transfer")
    assert code == 0, err
    assert (tmp_path / "out" / f"{stem}.png").is_file()


# ------------------------------------------------------------------------------------------ --device meta
def test_device_meta_is_refused_before_any_work(tmp_path, run_cli):
    """`--device meta` was accepted and every image then failed."""
    _pairs(tmp_path, 1)
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--device", "meta",
                           "--model", "lab-transfer")
    assert code == 2 and "meta" in _one_line(err)
    assert not (tmp_path / "out" / "x0.png").exists()
