"""Settings, configurations and paths that used to reach the code unchecked (issue 22, items
16-18): each is one line and a non-zero exit before any work, never a traceback.

- ``train --crop`` below (or off) the network's size step and ``--batch-size 1`` with batch norms;
- ``config.toml`` values of the wrong type or out of range;
- a settings file of the wrong types, a path longer than the system allows;
- a damaged entry of the weights cache's manifest (treated as unverified, one warning).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_apply import save_pair

LONG = "/tmp/" + "a" * 5000


def _one_error_line(err):
    lines = [line for line in err.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------ train
@pytest.mark.parametrize("arch,options,expected", [
    ("idih", ["--crop", "128"], "--crop 128 does not fit idih: its inputs must be multiples of 256 pixels"),
    ("idih", ["--crop", "384"], "--crop 384 does not fit idih: its inputs must be multiples of 256 pixels"),
    ("idih-hrnet-w18s", ["--crop", "128"], "--crop 128 does not fit idih-hrnet-w18s"),
    ("is2am", ["--crop", "20"], "--crop 20 does not fit is2am: its inputs must be multiples of 8 pixels"),
    ("idih", ["--batch-size", "1"], "--batch-size 1 cannot train idih: its batch norms need at least 2"),
])
def test_train_options_the_network_cannot_run_are_usage_errors(arch, options, expected, tmp_path, run_cli):
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--arch", arch, "--no-pretrained", "--data", tmp_path / "none.h5",
                           "--out", run, *options)
    assert code == 2
    assert expected in _one_error_line(err)  # before the dataset is even looked at
    assert not run.exists()


@pytest.mark.parametrize("line,expected", [
    ("betas = [2.0, 5.0]", "betas must be two numbers in [0, 1), got [2.0, 5.0]"),
    ("eps = -1", "eps must be a positive number, got -1.0"),
    ("eps = nan", "eps must be a positive number, got nan"),
    ("init_magnitude = nan", "init_magnitude must be a positive number, got nan"),
    ("gamma = inf", "gamma must be in (0, 1], got inf"),
    ("min_area = -5", "--min-area must be a positive number of pixels, got -5.0"),
    ("keep_background_prob = 2", "keep_background_prob must be in [0, 1], got 2.0"),
    ("seed = -1", "--seed must be in 0 .. 2**63 - 1, got -1"),
    ('betas = ["a", 1]', "betas = ['a', 1] has the wrong type (expected a list of two numbers)"),
    ("milestones = [1.5]", "milestones = [1.5] has the wrong type (expected a list of epochs (integers))"),
    ("val_subsets = [5]", "val_subsets = [5] has the wrong type (expected a list of subset names)"),
])
def test_config_values_are_checked_when_the_file_is_read(line, expected, tmp_path, run_cli):
    config = tmp_path / "config.toml"
    config.write_text(f'arch = "is2am"\n{line}\n')
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--config", config, "--data", tmp_path / "none.h5", "--out", run)
    assert code == 2
    assert _one_error_line(err).startswith(f"Error: {config}: {expected}")
    assert not run.exists()


def test_the_api_checks_a_config_too():
    from harmonize_cli.errors import UsageError
    from harmonize_cli.training import TrainConfig

    with pytest.raises(UsageError, match="betas must be two numbers"):
        TrainConfig(arch="is2am", betas=[2.0, 5.0]).resolved()
    with pytest.raises(UsageError, match="--batch-size 1 cannot train is2am"):
        TrainConfig(arch="is2am", batch_size=1).resolved()


# ------------------------------------------------------------------------------ settings and paths
@pytest.mark.parametrize("value", [5, ["a"], "", None])
def test_a_setting_of_the_wrong_type_is_ignored_with_a_warning(value, isolated_home, run_cli, monkeypatch, tmp_path):
    import os

    folder = tmp_path / "xdg" / "harmonize"
    folder.mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (folder / "config.json").write_text(json.dumps({"dataset": value}))
    code, _, err = run_cli("eval", "--model", "composite")
    assert code == 2
    assert "no dataset given and none packed yet" in _one_error_line(err)
    if value is not None:
        assert f"{folder / 'config.json'}: 1 damaged setting(s) ignored ('dataset')" in err
    assert os.environ["XDG_CONFIG_HOME"] == str(tmp_path / "xdg")


@pytest.mark.parametrize("argv", [
    ["eval", "--model", "composite", "--data", LONG],
    ["prepare", "--root", LONG],
    ["apply", LONG, LONG, "-o", "{tmp}/out"],
    ["train", "--arch", "is2am", "--no-pretrained", "--out", "{tmp}/run", "--data", LONG],
], ids=["eval", "prepare", "apply", "train"])
def test_a_path_longer_than_the_system_allows_is_one_line(argv, tmp_path, run_cli):
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    code, _, err = run_cli(*argv)
    assert code == 2
    line = _one_error_line(err)
    assert "File name too long" in line and " characters)" in line and len(line) < 400
    assert not (tmp_path / "run").exists()  # train: no run folder left behind


def test_a_remembered_dataset_path_that_is_too_long_is_one_line(run_cli, monkeypatch, tmp_path):
    folder = tmp_path / "xdg" / "harmonize"
    folder.mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (folder / "config.json").write_text(json.dumps({"dataset": LONG}))
    code, _, err = run_cli("eval", "--model", "composite")
    assert code == 2 and "File name too long" in _one_error_line(err)


# ------------------------------------------------------------------------------- weights manifest
@pytest.mark.parametrize("entry", [
    {"sha256": 5, "size": "x"},
    {"sha256": "0" * 64, "size": -1, "mtime_ns": 0},
    "not an entry",
    {"size": 10, "mtime_ns": 1},
])
def test_a_damaged_manifest_entry_counts_as_unverified(entry, isolated_home, tmp_path, run_cli):
    """The default apply over a cache whose manifest was damaged: one warning, the file is verified
    again (and recorded properly), the result written."""
    from harmonize_cli import zoo

    weights = isolated_home / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(zoo.create_model("idih").state_dict(), weights / "idih256.pth")
    (weights / "manifest.json").write_text(json.dumps({"idih256.pth": entry}))
    composite, mask = save_pair(tmp_path, "a.png")
    code, _, err = run_cli("apply", composite, mask, "-o", tmp_path / "out.png")
    assert code == 0, err
    assert err.count("damaged weights manifest entr(ies) ignored ('idih256.pth')") == 1
    assert (tmp_path / "out.png").is_file()
    recorded = json.loads((weights / "manifest.json").read_text())["idih256.pth"]
    assert len(recorded["sha256"]) == 64 and recorded["size"] == (weights / "idih256.pth").stat().st_size
