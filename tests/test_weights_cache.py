"""Downloads and the weights cache, against an HTTP server started here on 127.0.0.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harmonize_cli import zoo
from harmonize_cli.cli import cli
from harmonize_cli.errors import DownloadError
from harmonize_cli.zoo.download import download_file


@pytest.fixture
def server(http_server):
    return http_server


def _checkpoint_bytes(tmp_path, arch="idih"):
    path = tmp_path / "source.pth"
    torch.save(zoo.create_model(arch).state_dict(), path)
    return path.read_bytes()


def test_download_is_cached_and_atomic(server, tmp_path, monkeypatch, isolated_home):
    handler, base = server
    handler.files["idih256.pth"] = _checkpoint_bytes(tmp_path)
    monkeypatch.setenv("HARMONIZE_WEIGHTS_MIRROR", base)
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    path = zoo.fetch("idih256")
    assert path == Path(isolated_home) / "weights" / "idih256.pth"
    assert path.read_bytes() == handler.files["idih256.pth"]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]
    again = zoo.fetch("idih256.pth")
    assert again == path and handler.hits == ["idih256.pth"], "second call must use the cache"
    resolved = zoo.resolve("idih")  # the released checkpoint, from the cache
    assert resolved.path == path and resolved.source == str(path) and handler.hits == ["idih256.pth"]


def test_truncated_download_is_detected_and_leaves_nothing(server, tmp_path):
    handler, base = server
    handler.files["w.pth"] = b"x" * 5000
    handler.truncate.add("w.pth")
    target = tmp_path / "cache" / "w.pth"
    with pytest.raises(DownloadError, match="truncated|received"):
        download_file(f"{base}/w.pth", target)
    assert not target.exists()
    assert not list(target.parent.glob("*"))


def test_wrong_file_is_detected_by_its_hash(server, tmp_path, monkeypatch):
    handler, base = server
    handler.files["resnet34-b627a593.pth"] = b"not the torchvision file"
    monkeypatch.setenv("HARMONIZE_WEIGHTS_MIRROR", base)
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    with pytest.raises(DownloadError) as info:
        zoo.fetch("resnet34")
    assert "does not start with b627a593" in str(info.value)
    assert not zoo.cached(zoo.get_weights("resnet34"))
    good = b"some bytes"
    digest = hashlib.sha256(good).hexdigest()
    handler.files["ok.bin"] = good
    assert download_file(f"{base}/ok.bin", tmp_path / "ok.bin", sha256=digest).read_bytes() == good
    with pytest.raises(DownloadError, match="sha256"):
        download_file(f"{base}/ok.bin", tmp_path / "bad.bin", sha256="0" * 64)
    assert not (tmp_path / "bad.bin").exists()


def test_offline_and_failed_downloads_name_the_url_and_the_manual_path(server, isolated_home, monkeypatch):
    with pytest.raises(DownloadError) as info:
        zoo.fetch("hrnet18s_idih256")
    message = str(info.value)
    assert "releases/download/v1.0/hrnet18s_idih256.pth" in message
    assert str(Path(isolated_home) / "weights" / "hrnet18s_idih256.pth") in message
    with pytest.raises(DownloadError, match="releases/download/v1.0/idih256.pth"):
        zoo.load_weights(zoo.create_model("idih"), "idih256")  # a registry name, not cached, offline
    handler, base = server
    monkeypatch.setenv("HARMONIZE_WEIGHTS_MIRROR", base)
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    with pytest.raises(DownloadError) as info:
        zoo.fetch("idih256")  # the server has no such file: HTTP 404
    assert f"{base}/idih256.pth" in str(info.value) and "save it as" in str(info.value)


def test_weights_from_an_url_load_directly(server, tmp_path, monkeypatch):
    handler, base = server
    handler.files["mine.pth"] = _checkpoint_bytes(tmp_path, "is2am")
    with pytest.raises(DownloadError, match="downloads are off"):  # offline means offline
        zoo.create_model("is2am", weights=f"{base}/mine.pth")
    assert handler.hits == []
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    model = zoo.create_model("is2am", weights=f"{base}/mine.pth")
    assert not model.training
    assert zoo.detect_arch(f"{base}/mine.pth") == "is2am"
    assert handler.hits == ["mine.pth"], "the URL's file is cached after the first download"


def test_zoo_download_command(server, tmp_path, monkeypatch):
    handler, base = server
    handler.files["issam256.pth"] = _checkpoint_bytes(tmp_path, "is2am")
    monkeypatch.setenv("HARMONIZE_WEIGHTS_MIRROR", base)
    monkeypatch.delenv("HARMONIZE_OFFLINE")
    runner = CliRunner()
    result = runner.invoke(cli, ["zoo", "download", "issam256"])
    assert result.exit_code == 0, result.output
    listing = runner.invoke(cli, ["zoo", "list", "--json"])
    import json

    payload = json.loads(listing.output)
    cached = {w["name"]: w["cached"] for w in payload["weights"]}
    assert cached["issam256"] is True and cached["idih256"] is False
    failed = runner.invoke(cli, ["zoo", "download", "idih256"])
    assert failed.exit_code == 1
