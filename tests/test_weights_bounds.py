"""The weights guard (harmonize_cli.zoo.bounds, through zoo.checkpoints.safe_load) and bounded
downloads: what a weights file may cost and hold, checked before and right after loading.

Every file here is made by the test: zip bombs (tests/bombs.py), legacy checkpoints, stride-0
views, safetensors written byte by byte from the format's specification, a FIFO, ``/dev/zero``,
and HTTP servers on 127.0.0.1 that never stop sending or send one byte at a time.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bombs import write_checkpoint_bomb
from test_apply import save_pair

from harmonize_cli import zoo
from harmonize_cli.errors import DownloadError, WeightsError
from harmonize_cli.zoo.checkpoints import safe_load


@pytest.fixture(scope="module")
def idih_state():
    torch.manual_seed(0)
    return zoo.create_model("idih").state_dict()


def _save(state, path):
    torch.save(state, path)
    return path


def _no_torch_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)


# ------------------------------------------------------------------------------ sizes before loading
def test_a_zip_bomb_is_refused_from_its_directory_before_torch_load(tmp_path, monkeypatch):
    bomb = write_checkpoint_bomb(tmp_path / "bomb.pth", unpacked_bytes=64 << 20)  # 66 KB on disk
    assert bomb.stat().st_size < 100_000
    monkeypatch.setenv("HARMONIZE_MAX_WEIGHTS_MB", "32")
    _no_torch_load(monkeypatch)
    with pytest.raises(WeightsError) as info:
        safe_load(bomb)
    text = str(info.value)
    assert "\n" not in text and str(bomb) in text and "unpacks to 64.0 MiB" in text
    assert "over the limit of 32.0 MiB" in text and "HARMONIZE_MAX_WEIGHTS_MB" in text


def test_the_default_limit_is_one_gib_and_admits_genuine_checkpoints(tmp_path, idih_state):
    from harmonize_cli.zoo import bounds

    assert bounds.MAX_WEIGHTS_BYTES == 1 << 30 and bounds.max_weights_bytes() == 1 << 30
    loaded = safe_load(_save(idih_state, tmp_path / "ok.pth"))
    assert set(loaded) == set(idih_state)


def test_a_legacy_checkpoint_is_bounded_by_its_file_size(tmp_path, monkeypatch):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(1 << 18)}, path, _use_new_zipfile_serialization=False)  # 1 MiB of floats
    monkeypatch.setenv("HARMONIZE_MAX_WEIGHTS_MB", "0.5")
    _no_torch_load(monkeypatch)
    with pytest.raises(WeightsError, match=r"legacy.pth is 1.0 MiB, over the limit of 0.5 MiB"):
        safe_load(path)


def test_tensors_declaring_more_than_the_limit_are_refused_before_use(tmp_path):
    # one float viewed 300 million times (stride 0): 16 bytes on disk, 1.2 GB for whoever touches it
    view = torch.zeros(4).as_strided((300_000_000,), (0,))
    path = _save({"weight": view}, tmp_path / "strided.pth")
    with pytest.raises(WeightsError) as info:
        safe_load(path)
    assert "declare 1.12 GiB" in str(info.value) and "'weight'" in str(info.value)


def test_the_limit_can_be_raised_and_is_checked(monkeypatch, tmp_path):
    from harmonize_cli.zoo import bounds

    monkeypatch.setenv("HARMONIZE_MAX_WEIGHTS_MB", "4096")
    assert bounds.max_weights_bytes() == 4 << 30
    monkeypatch.setenv("HARMONIZE_MAX_WEIGHTS_MB", "lots")
    with pytest.raises(WeightsError, match="HARMONIZE_MAX_WEIGHTS_MB='lots' is not a positive number"):
        bounds.max_weights_bytes()


# ------------------------------------------------------------------------------ files that are not files
@pytest.mark.timeout(30)
def test_a_fifo_as_weights_is_refused_without_blocking(tmp_path, run_cli):
    fifo = tmp_path / "weights.pth"
    os.mkfifo(fifo)
    composite, mask = save_pair(tmp_path, "a.png")
    code, _, err = run_cli("apply", composite, mask, "-o", tmp_path / "o.png", "--weights", fifo)
    assert code == 1 and "Traceback" not in err
    assert f"weights {fifo} is a FIFO (named pipe), not a checkpoint file" in " ".join(err.split())


@pytest.mark.timeout(30)
def test_dev_zero_and_a_pipe_are_named_for_what_they_are(tmp_path):
    with pytest.raises(WeightsError, match="/dev/zero is a character device, not a checkpoint file"):
        safe_load("/dev/zero")
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(WeightsError, match="is a FIFO"):
            safe_load(f"/proc/self/fd/{read_end}")
    finally:
        os.close(read_end)
        os.close(write_end)
    with pytest.raises(WeightsError, match="is a folder"):
        safe_load(tmp_path)


# ------------------------------------------------------------------------------ safetensors
_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}


def _write_safetensors(state, path, metadata=None):
    """The format by its specification: u64 little-endian header length, JSON header, raw bytes."""
    header, blobs, offset = {}, [], 0
    for name, tensor in state.items():
        raw = tensor.contiguous().numpy().tobytes()
        header[name] = {"dtype": _ST_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def test_a_safetensors_file_is_loaded_as_the_same_weights(tmp_path, idih_state, run_cli):
    path = _write_safetensors(idih_state, tmp_path / "idih.safetensors", metadata={"format": "pt"})
    loaded = safe_load(path)
    assert set(loaded) == set(idih_state)
    for key, value in idih_state.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key
    assert zoo.detect_arch(loaded) == "idih"
    composite, mask = save_pair(tmp_path, "a.png")
    code, _, err = run_cli("apply", composite, mask, "-o", tmp_path / "st.png", "--weights", path)
    assert code == 0, err
    code, _, err = run_cli("apply", composite, mask, "-o", tmp_path / "pth.png",
                           "--weights", _save(idih_state, tmp_path / "idih.pth"))
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "st.png")), np.asarray(Image.open(tmp_path / "pth.png")))


def test_a_damaged_safetensors_file_is_one_line(tmp_path):
    good = _write_safetensors({"w": torch.arange(6, dtype=torch.float32)}, tmp_path / "w.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-4])
    with pytest.raises(WeightsError, match=r"cut.safetensors is a damaged safetensors file \(tensor 'w' declares"):
        safe_load(cut)


# ------------------------------------------------------------------------------ values and dtypes
@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "infinite")])
def test_non_finite_weights_are_refused_when_loaded(tmp_path, idih_state, run_cli, value, word):
    state = dict(idih_state)
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 4)
    state[key] = state[key].clone()
    state[key].view(-1)[3] = value
    path = _save(state, tmp_path / "diverged.pth")
    with pytest.raises(WeightsError) as info:
        zoo.load_weights(zoo.create_model("idih"), path)
    assert f"tensor {key!r} holds {word} values" in str(info.value) and str(path) in str(info.value)
    composite, mask = save_pair(tmp_path, "a.png")
    code, _, err = run_cli("apply", composite, mask, "-o", tmp_path / "o.png", "--weights", path)
    assert code == 1 and len(err.strip().splitlines()) == 1 and word in err and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("dtype", [torch.int64, torch.complex64])
def test_weights_of_a_non_floating_dtype_are_refused(tmp_path, idih_state, dtype):
    state = dict(idih_state)
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 4)
    state[key] = (state[key] * 100).to(dtype)
    path = _save(state, tmp_path / "typed.pth")
    name = str(dtype).replace("torch.", "")
    with pytest.raises(WeightsError, match=f"tensor '{key}' is {name}"):
        zoo.load_weights(zoo.create_model("idih"), path)
    with pytest.raises(WeightsError, match=f"is {name}"):
        zoo.resolve(weights=path)  # the meta-device fast path too
    with pytest.raises(WeightsError, match=f"is {name}"):
        zoo.load_weights(zoo.create_model("idih"), state)  # a state dict in memory


# ------------------------------------------------------------------------------ downloads
class _Server:
    """An HTTP server on 127.0.0.1 whose answers the test decides: ``endless`` (no length, zeros
    forever), ``drip`` (announces 1000 bytes, sends one every ``interval`` s), ``steady`` (400 kB at
    about 400 kB/s: slow, but a working connection)."""

    def __init__(self, interval=1.0):
        import http.server

        server = self
        self.interval = interval
        self.stop = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802 (http.server API)
                self.send_response(200)
                try:
                    if "steady" in self.path:
                        self.send_header("Content-Length", str(400_000))
                        self.end_headers()
                        for _ in range(20):
                            time.sleep(0.05)
                            self.wfile.write(bytes(20_000))
                            self.wfile.flush()
                    elif "endless" in self.path:
                        self.end_headers()
                        chunk = bytes(1 << 16)
                        while not server.stop.is_set():
                            self.wfile.write(chunk)
                    else:
                        self.send_header("Content-Length", "1000")
                        self.end_headers()
                        for _ in range(1000):
                            if server.stop.wait(server.interval):
                                return
                            self.wfile.write(b"\0")
                            self.wfile.flush()
                except OSError:
                    pass  # the client went away: that is the point

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def hostile_server():
    server = _Server()
    yield server
    server.close()


def _parts(folder: Path):
    return [p for p in folder.rglob("*") if p.name.endswith(".part")] if folder.exists() else []


def test_a_downloaded_zip_bomb_is_refused_by_the_same_guard_and_not_cached(http_server, tmp_path, monkeypatch,
                                                                           isolated_home):
    handler, base = http_server
    handler.files["bomb.pth"] = write_checkpoint_bomb(tmp_path / "bomb.pth", unpacked_bytes=64 << 20).read_bytes()
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    monkeypatch.setenv("HARMONIZE_MAX_WEIGHTS_MB", "32")
    _no_torch_load(monkeypatch)
    with pytest.raises(DownloadError) as info:
        zoo.read_checkpoint(f"{base}/bomb.pth")
    assert "unpacks to 64.0 MiB" in str(info.value) and "nothing was cached" in str(info.value)
    assert not [p for p in Path(isolated_home).rglob("*") if p.is_file() and "bomb" in p.name]


@pytest.mark.timeout(60)
def test_an_endless_body_stops_at_the_documented_maximum(hostile_server, monkeypatch, isolated_home):
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    monkeypatch.setenv("HARMONIZE_MAX_WEIGHTS_MB", "2")
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        zoo.read_checkpoint(f"{hostile_server.base}/endless/model.pth")  # a URL given as weights
    assert time.monotonic() - started < 20
    assert f"more than {2 << 20} bytes, the limit for a weights file" in str(info.value)
    assert _parts(Path(isolated_home)) == [] and not list(Path(isolated_home).rglob("*model.pth"))


@pytest.mark.timeout(60)
def test_past_the_first_use_deadline_a_slow_but_steady_download_goes_on_and_a_drip_stops(hostile_server, tmp_path):
    from harmonize_cli.zoo.download import download_file

    # 400 kB at ~400 kB/s take ~1 s: past a 0.3 s deadline, on pace for 100 kB/s, so it completes
    done = download_file(f"{hostile_server.base}/steady/w.bin", tmp_path / "w.bin", deadline=0.3, min_rate=100_000)
    assert done.stat().st_size == 400_000
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"no complete answer within 0.3 s \(\d+ bytes in \d+ s, under 100 kB/s\)"):
        download_file(f"{hostile_server.base}/drip/w2.bin", tmp_path / "w2.bin", deadline=0.3, min_rate=100_000)
    assert time.monotonic() - started < 0.3 + 1.0 + 3  # the deadline, one drip interval, slack
    assert not (tmp_path / "w2.bin").exists() and _parts(tmp_path) == []
    with pytest.raises(DownloadError, match="no complete answer within 0.3 s"):  # without min_rate: a hard bound
        download_file(f"{hostile_server.base}/steady/w3.bin", tmp_path / "w3.bin", deadline=0.3)


@pytest.mark.timeout(60)
def test_a_slow_drip_first_use_download_falls_back_at_the_deadline(hostile_server, monkeypatch, run_cli, tmp_path,
                                                                   isolated_home):
    import importlib

    resolve = importlib.import_module("harmonize_cli.zoo.resolve")  # the module, not zoo.resolve()
    monkeypatch.setenv("HARMONIZE_WEIGHTS_MIRROR", hostile_server.base + "/drip")
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    monkeypatch.setattr(resolve, "FIRST_USE_DEADLINE", 2.0, raising=False)  # 10 s in use; short for the test
    composite, mask = save_pair(tmp_path, "a.png")
    started = time.monotonic()
    code, out, err = run_cli("apply", composite, mask, "-o", tmp_path / "o.png")
    elapsed = time.monotonic() - started
    assert code == 0, err
    text = " ".join((out + err).split())
    assert f"Using the training-free {resolve.FALLBACK_MODEL}" in text and "no complete answer within 2 s" in text
    assert elapsed < 2.0 + 1.0 + 8, elapsed  # the deadline, one drip interval, and the run itself
    assert (tmp_path / "o.png").is_file() and _parts(Path(isolated_home)) == []
