"""The zoo as a user sees it: `zoo list` at 80 columns, `zoo info` (the model card), `zoo download`
by an architecture's name, "did you mean" for typos, URLs never wrapped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clitools import run_main

from harmonize_cli import zoo

ROOT = Path(__file__).resolve().parents[1]


def harmonize(*args, columns=80, env=None):
    """The program in its own process, on a terminal of ``columns`` (rich reads $COLUMNS)."""
    environment = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "harmonize_cli", *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=120)


def test_zoo_list_at_80_columns_shows_every_name_whole_with_size_and_cached(isolated_home):
    done = harmonize("zoo", "list", columns=80)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    cells = {cell.strip() for line in lines for cell in line.replace("┃", "│").split("│")}
    names = [spec.name for spec in zoo.ARCHITECTURES] + [alias for spec in zoo.ARCHITECTURES for alias in spec.aliases]
    names += [weights.name for weights in zoo.list_weights()]
    missing = [name for name in names if name not in cells]  # each one whole in a cell: never cut, never wrapped
    assert not missing, missing
    released = next(line for line in lines if line.startswith("│ hrnet18s_idih256 "))
    # the size is the float32 parameters' (12,811,093 x 4 bytes = 51.2 MB) until the file is cached
    assert "~51 MB" in released and released.rstrip("│ ").endswith("no")
    header = next(line for line in lines if "All MSE / PSNR" in line)
    assert "size" in header and "cached" in header


def test_zoo_info_is_a_model_card(isolated_home, capsys):
    code, out, err = run_main(capsys, "zoo", "info", "hrnet18s_idih256", "--json")
    assert code == 0, err
    card = json.loads(out)
    arch, weights = card["architecture"], card["weights"]
    assert arch["name"] == "idih-hrnet-w18s" and arch["reference_name"] == "hrnet18s_idih256"
    assert arch["num_params"] == 12811093 and arch["input_size"] == 256
    assert arch["normalization"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert weights["url"].endswith("/hrnet18s_idih256.pth") and weights["source"].startswith("https://github.com/")
    assert weights["metrics"]["All"] == {"MSE": 22.82, "PSNR": 38.15}  # the authors' published table
    assert weights["cached"] is False and weights["size_bytes"] == 12811093 * 4 and not weights["size_exact"]
    assert "licence" in weights and "sha256" in weights and weights["preprocessing"]["input_size"] == 256
    code, out, _ = run_main(capsys, "zoo", "info", "idih-hrnet-w18s")  # the architecture's name: the same card
    text = " ".join(out.split())
    for expected in ("idih-hrnet-w18s", "12,811,093 parameters", "licence:", "sha256:", "preprocessing:",
                     "published All: MSE 22.82, PSNR 38.15", "cached: no"):
        assert expected in text, expected
    code, out, _ = run_main(capsys, "zoo", "info", "lab-transfer")
    assert code == 0 and "no weights needed" in out
    code, _, err = run_main(capsys, "zoo", "info", "hrnet18s_idh256")
    assert code == 2 and "did you mean hrnet18s_idih256" in err


def test_zoo_download_takes_an_architecture_name_and_never_wraps_the_url(tmp_path, monkeypatch, capsys):
    """`zoo download is2am` fetches the architecture's released weights (issam256); the line that
    names the source keeps the whole URL on one line even when it is longer than the terminal."""
    torch.manual_seed(0)
    mirror = tmp_path / ("a-mirror-folder-with-a-rather-long-name-" * 2) / "released"
    mirror.mkdir(parents=True)
    torch.save(zoo.create_model("is2am").state_dict(), mirror / "issam256.pth")
    monkeypatch.setenv("HARMONIZE_WEIGHTS_MIRROR", str(mirror))
    monkeypatch.setenv("HARMONIZE_OFFLINE", "0")
    code, _, err = run_main(capsys, "zoo", "download", "is2am")
    assert code == 0, err
    assert (zoo.cached(zoo.get_weights("issam256")) or Path()).is_file()
    source = str(mirror / "issam256.pth")
    assert len(source) > 80 and any(source in line for line in err.splitlines()), err
    code, _, err = run_main(capsys, "zoo", "download", "issam265")
    assert code == 2 and "did you mean issam256" in err
    code, _, err = run_main(capsys, "zoo", "download", "idih-512")
    assert code == 2 and "idih-512 has no released weights" in err


@pytest.mark.parametrize("argv,suggestion", [(["aply"], "apply"), (["zoo", "lst"], "list")])
def test_a_mistyped_subcommand_gets_did_you_mean(capsys, argv, suggestion):
    code, _, err = run_main(capsys, *argv)
    assert code == 2 and f"Did you mean '{suggestion}'?" in err
