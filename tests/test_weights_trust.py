"""Weights you can trust: safe loading everywhere, verified downloads, first-use download (#10)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harmonize_cli import Harmonizer, zoo
from harmonize_cli.errors import DownloadError, WeightsError


class _Payload:
    """Unpickling this creates a marker file: a stand-in for any code a checkpoint could run."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def evil(tmp_path, idih_checkpoint):
    marker = tmp_path / "PAYLOAD_RAN"
    _Payload.marker = marker
    state = dict(torch.load(idih_checkpoint, weights_only=True))
    state["extra"] = _Payload()
    path = tmp_path / "evil.pth"
    torch.save(state, path)
    assert not marker.exists()
    return path, marker


@pytest.fixture
def small_inputs(tmp_path):
    composites, masks = tmp_path / "composites", tmp_path / "masks"
    composites.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(composites / "a.png")
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[10:30, 20:40] = 255
    Image.fromarray(mask).save(masks / "a.png")
    return composites, masks


def _refused(code, err, marker):
    assert not marker.exists(), "the checkpoint's payload ran"
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "refused" in lines[0] and "Traceback" not in err, err


def test_payload_never_runs_in_the_python_api(evil):
    path, marker = evil
    with pytest.raises(WeightsError, match="refused"):
        zoo.load_weights(zoo.create_model("idih"), path)
    with pytest.raises(WeightsError, match="refused"):
        Harmonizer(weights=str(path))
    with pytest.raises(WeightsError, match="refused"):
        zoo.resolve("idih", weights=str(path))
    assert not marker.exists()


def test_payload_never_runs_in_any_command(evil, run_cli, small_inputs, mini_iharmony, tmp_path):
    path, marker = evil
    composites, masks = small_inputs
    _refused(*run_cli("apply", composites, masks, "-o", tmp_path / "out", "--weights", path)[::2], marker)
    _refused(*run_cli("eval", "--data", mini_iharmony, "--weights", path)[::2], marker)
    _refused(*run_cli("export", path, "-o", tmp_path / "exported.pth")[::2], marker)
    _refused(*run_cli("train", "--resume", path, "--out", tmp_path / "run")[::2], marker)


def test_payload_in_the_cache_is_reported_and_skipped_by_auto(evil, run_cli, small_inputs, tmp_path, isolated_home):
    path, marker = evil
    composites, masks = small_inputs
    cached = Path(isolated_home) / "weights" / "idih256.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    code, _, err = run_cli("apply", composites, masks, "-o", tmp_path / "out")
    assert not marker.exists() and code == 0, err
    warning = [line for line in err.splitlines() if "idih256.pth" in line]
    assert len(warning) == 1 and "refused" in warning[0] and "zoo download idih256 --force" in warning[0]
    report = json.loads((tmp_path / "out" / "harmonize.json").read_text())
    assert report["model"] == "boundary-gain"


@pytest.mark.parametrize("content, what", [(b"", "empty"), (b"PK\x03\x04broken", "damaged"),
                                           (b"<!DOCTYPE html><html>no</html>", "HTML page")])
def test_bad_weights_files_are_one_line_and_exit_1(content, what, run_cli, small_inputs, mini_iharmony, tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    composites, masks = small_inputs
    for argv in (("apply", composites, masks, "-o", tmp_path / "out", "--weights", bad),
                 ("eval", "--data", mini_iharmony, "--weights", bad),
                 ("export", bad, "-o", tmp_path / "x.pth")):
        code, _, err = run_cli(*argv)
        assert code == 1 and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and what in err and str(bad) in err, err


def _mirror(monkeypatch, base):
    monkeypatch.setenv("HARMONIZE_WEIGHTS_MIRROR", base)
    monkeypatch.delenv("HARMONIZE_OFFLINE")


def test_an_html_page_is_never_cached(http_server, monkeypatch, run_cli, isolated_home):
    handler, base = http_server
    page = b"<!DOCTYPE html><html><body>Sign in to download</body></html>"
    handler.files["hrnet18s_idih256.pth"] = page
    _mirror(monkeypatch, base)
    code, out, err = run_cli("zoo", "download", "hrnet18s_idih256")
    assert code == 1 and "ok" not in out
    assert f"an HTML page of {len(page)} bytes" in err and f"{base}/hrnet18s_idih256.pth" in err
    weights = Path(isolated_home) / "weights"
    assert not weights.exists() or not [p for p in weights.iterdir() if p.name.endswith(".pth")]
    listing = json.loads(run_cli("zoo", "list", "--json")[1])
    assert {w["name"]: w["cached"] for w in listing["weights"]}["hrnet18s_idih256"] is False


def test_a_checkpoint_of_another_architecture_is_not_cached(http_server, monkeypatch, tmp_path, isolated_home):
    handler, base = http_server
    buffer = tmp_path / "idih.pth"
    torch.save(zoo.create_model("idih").state_dict(), buffer)
    handler.files["issam256.pth"] = buffer.read_bytes()  # served under is2am's name
    _mirror(monkeypatch, base)
    with pytest.raises(DownloadError, match="failed verification.*not a is2am checkpoint"):
        zoo.fetch("issam256")
    assert not (Path(isolated_home) / "weights" / "issam256.pth").exists()


def test_first_use_downloads_the_recommended_network_verifies_and_records_it(
        http_server, monkeypatch, run_cli, small_inputs, tmp_path, isolated_home):
    handler, base = http_server
    torch.manual_seed(0)
    source = tmp_path / "hrnet18s.pth"
    torch.save(zoo.create_model("idih-hrnet-w18s").state_dict(), source)
    payload = source.read_bytes()
    handler.files["hrnet18s_idih256.pth"] = payload
    _mirror(monkeypatch, base)
    composites, masks = small_inputs
    code, _, err = run_cli("apply", composites, masks, "-o", tmp_path / "out", "--resolution", "fixed")
    assert code == 0, err
    cached = Path(isolated_home) / "weights" / "hrnet18s_idih256.pth"
    assert handler.hits == ["hrnet18s_idih256.pth"] and cached.read_bytes() == payload
    report = json.loads((tmp_path / "out" / "harmonize.json").read_text())
    assert report["model"] == "idih-hrnet-w18s" and report["weights"] == str(cached)
    assert report["weights_sha256"] == hashlib.sha256(payload).hexdigest()
    manifest = json.loads((cached.parent / "manifest.json").read_text())
    assert manifest["hrnet18s_idih256.pth"]["sha256"] == hashlib.sha256(payload).hexdigest()
    # later runs use the verified file; a file changed on disk afterwards is refused, loudly
    assert zoo.fetch("hrnet18s_idih256") == cached and handler.hits == ["hrnet18s_idih256.pth"]
    data = bytearray(payload)
    data[-100] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="changed on disk"):
        zoo.fetch("hrnet18s_idih256")


def test_auto_falls_back_fast_and_says_why(http_server, monkeypatch):
    with pytest.warns(UserWarning, match="HARMONIZE_OFFLINE"):
        h = Harmonizer()  # HARMONIZE_OFFLINE is set by the test set-up
    assert h.model_name == "boundary-gain" and "HARMONIZE_OFFLINE" in h.notice
    handler, base = http_server
    _mirror(monkeypatch, base)  # the mirror has nothing: HTTP 404
    with pytest.warns(UserWarning, match="could not be downloaded"):
        h = Harmonizer()
    assert h.model_name == "boundary-gain" and "hrnet18s_idih256 could not be downloaded" in h.notice
    assert handler.hits == ["hrnet18s_idih256.pth"]


def test_url_weights_are_cached_by_their_whole_url(http_server, monkeypatch, tmp_path):
    handler, base = http_server
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    first, second = tmp_path / "1.pth", tmp_path / "2.pth"
    torch.manual_seed(1)
    torch.save(zoo.create_model("idih").state_dict(), first)
    torch.manual_seed(2)
    torch.save(zoo.create_model("idih").state_dict(), second)
    handler.files["a/idih256.pth"] = first.read_bytes()
    handler.files["b/idih256.pth"] = second.read_bytes()
    one = zoo.resolve(weights=f"{base}/a/idih256.pth")
    two = zoo.resolve(weights=f"{base}/b/idih256.pth")
    assert one.path != two.path and one.sha256 != two.sha256
    assert two.sha256 == hashlib.sha256(second.read_bytes()).hexdigest()


def test_backbones_are_found_in_torch_hub_cache(monkeypatch, tmp_path):
    from harmonize_cli.zoo.pretrained import PretrainedWeights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = PretrainedWeights("fake-r18", "fake-r18.pth", "https://download.pytorch.org/models/fake-r18.pth",
                                "fake-r18", kind="backbone")
    hub = tmp_path / "torch" / "hub" / "checkpoints" / "fake-r18.pth"
    hub.parent.mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3)}, hub)
    assert zoo.fetch(weights) == hub  # offline, yet found: no second download


def test_an_unwritable_cache_is_one_line(http_server, monkeypatch, run_cli, tmp_path):
    handler, base = http_server
    home = tmp_path / "home_is_a_file"
    home.write_text("not a folder")
    monkeypatch.setenv("HARMONIZE_HOME", str(home))
    _mirror(monkeypatch, base)
    code, _, err = run_cli("zoo", "download", "idih256")
    assert code == 1 and "cannot write the weights cache" in err and "Traceback" not in err


def test_zoo_download_exit_codes(run_cli):
    assert run_cli("zoo", "download", "idih256")[0] == 1  # offline
    assert run_cli("zoo", "download", "--all")[0] == 1
    assert run_cli("zoo", "download", "no-such-weights")[0] == 2
