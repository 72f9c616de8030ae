"""Remembered settings live in the config folder (XDG), weights in the cache; the old file migrates once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harmonize_cli import settings


def test_settings_go_to_xdg_config_home_and_weights_to_harmonize_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("HARMONIZE_HOME", str(tmp_path / "cache"))
    assert settings.config_path() == tmp_path / "cfg" / "harmonize" / "config.json"
    assert settings.weights_dir() == tmp_path / "cache" / "weights"
    settings.remember_dataset(tmp_path / "data.h5")
    stored = json.loads((tmp_path / "cfg" / "harmonize" / "config.json").read_text())
    assert stored == {"dataset": str((tmp_path / "data.h5").resolve())}
    assert not (tmp_path / "cache" / "config.json").exists()


@pytest.mark.parametrize("xdg", [None, "", "relative/dir"])
def test_without_a_usable_xdg_config_home_settings_go_to_dot_config(tmp_path, monkeypatch, xdg):
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)  # the XDG spec: empty or relative means unset
    assert settings.config_path() == Path(tmp_path) / ".config" / "harmonize" / "config.json"


def test_the_old_settings_file_migrates_once_and_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("HARMONIZE_HOME", str(tmp_path / "cache"))
    legacy = tmp_path / "cache" / "config.json"
    legacy.parent.mkdir()
    legacy.write_text(json.dumps({"dataset": "/data/old.h5", "other": 1}))
    before = legacy.read_bytes()

    assert settings.default_dataset() == Path("/data/old.h5")
    new = tmp_path / "cfg" / "harmonize" / "config.json"
    assert json.loads(new.read_text()) == {"dataset": "/data/old.h5", "other": 1}
    assert legacy.read_bytes() == before  # older versions may still read it

    legacy.write_text(json.dumps({"dataset": "/data/changed-by-an-old-version.h5"}))
    assert settings.default_dataset() == Path("/data/old.h5")  # migrated once: the new file wins
    settings.remember_dataset(tmp_path / "newer.h5")
    assert settings.default_dataset() == (tmp_path / "newer.h5").resolve()


def test_migration_into_an_unwritable_place_still_reads_the_old_file(tmp_path, monkeypatch):
    blocker = tmp_path / "cfg"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))
    monkeypatch.setenv("HARMONIZE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "config.json").write_text(json.dumps({"dataset": "/data/old.h5"}))
    assert settings.default_dataset() == Path("/data/old.h5")
    with pytest.raises(settings.SettingsError) as info:
        settings.remember_dataset(tmp_path / "x.h5")
    assert str(blocker / "harmonize" / "config.json") in str(info.value) and "\n" not in str(info.value)


def test_a_damaged_settings_file_reads_as_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    path = tmp_path / "cfg" / "harmonize" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text("[1, 2")
    assert settings.load_settings() == {}
    settings.remember_dataset(tmp_path / "d.h5")  # and is replaced by a good one
    assert json.loads(path.read_text()) == {"dataset": str((tmp_path / "d.h5").resolve())}
