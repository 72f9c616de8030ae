"""`harmonize prepare` against hostile inputs and environments: image bombs, test-only data,
an unwritable settings folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from bombs import write_png_bomb
from minidata import make_mini_iharmony

from harmonize_cli import settings
from harmonize_cli.cli import main
from harmonize_cli.data import HarmonizationDataset
from harmonize_cli.data.layout import DatasetError
from harmonize_cli.data.pack import pack_dataset, report_path_for

REPO = Path(__file__).resolve().parents[1]

_MEASURED = """
import json, resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux: the largest descendant
print(json.dumps({"code": run.returncode, "stdout": run.stdout, "stderr": run.stderr, "peak_kib": peak}))
"""


def _run_cli(args) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def _measured(args) -> dict:
    """Run the CLI in a fresh process tree; return its exit code, output and peak RSS."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-c", _MEASURED, sys.executable, "-m", "harmonize_cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=True)
    return json.loads(done.stdout)


# ---------------------------------------------------------------------------- image bombs
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units differ")
@pytest.mark.timeout(300)
def test_an_image_bomb_is_refused_from_its_header_and_the_run_goes_on(tmp_path):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=3, n_test=2)
    folder = root / "HFlickr"
    write_png_bomb(folder / "composite_images" / "f555_1_1.jpg")  # a PNG in a .jpg: Pillow reads content
    write_png_bomb(folder / "masks" / "f555_1.png")
    write_png_bomb(folder / "real_images" / "f555.jpg")
    with open(folder / "HFlickr_train.txt", "a") as listing:
        listing.write("f555_1_1.jpg\n")
    out = tmp_path / "bombed.h5"

    result = _measured(["-q", "prepare", "--root", str(root), "-o", str(out), "--workers", "2"])

    assert result["code"] == 0, result["stderr"]
    assert "Traceback" not in result["stderr"] and "MemoryError" not in result["stderr"]
    assert result["peak_kib"] < 1024 * 1024, f"peak RSS {result['peak_kib'] / 1024:.0f} MiB"  # 784 MP decoded: > 2 GB
    report = json.loads(report_path_for(out).read_text())
    assert report["counts"] == {"HFlickr": {"train": 3, "test": 2}}  # the rest was packed
    assert report["skipped"] == 1
    reasons = {Path(p["file"]).name: p["reason"] for p in report["problems"]}
    assert set(reasons) == {"f555_1_1.jpg", "f555_1.png", "f555.jpg"}
    assert reasons["f555_1_1.jpg"] == (
        "composite too large: 28000x28000 pixels (784 MP), over --max-pixels (200 MP)"
    )
    assert all("\n" not in reason for reason in reasons.values())


def test_max_pixels_option_refuses_only_the_larger_files(tmp_path, capsys):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr", "HAdobe5k"), n_train=2, n_test=1)
    out = tmp_path / "o.h5"
    # HFlickr images are 48x64 = 3072 pixels, HAdobe5k 96x128 = 12288: a limit in between
    code = _run_cli(["prepare", "--root", str(root), "-o", str(out), "--workers", "0", "--max-pixels", "5000"])
    assert code == 0
    summary = " ".join(capsys.readouterr().out.split())
    report = json.loads(report_path_for(out).read_text())
    assert report["counts"] == {"HFlickr": {"train": 2, "test": 1}}
    assert report["skipped"] == 3 and report["max_pixels"] == 5000
    assert all("over --max-pixels (0.005 MP)" in p["reason"] for p in report["problems"])
    assert "too large: 128x96 pixels" in summary  # the summary lists the problems
    # the limit is part of the fingerprint: raising it rebuilds with everything
    assert not pack_dataset(root, output=out, workers=0).up_to_date
    assert pack_dataset(root, output=out, workers=0).samples == 6


# ---------------------------------------------------------------------------- test-only data
def test_a_subset_with_only_a_test_list_is_packed_with_a_note(tmp_path, capsys):
    root = make_mini_iharmony(tmp_path / "eval_set", subsets=("HCOCO", "HFlickr"), n_train=2, n_test=3)
    (root / "HFlickr" / "HFlickr_train.txt").unlink()
    (root / "HCOCO" / "HCOCO_train.txt").write_text("\n\n")  # an empty list is the same
    out = tmp_path / "eval.h5"
    assert _run_cli(["prepare", "--root", str(root), "-o", str(out), "--workers", "0"]) == 0
    summary = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal width
    assert "note: HFlickr: no train list file (HFlickr_train.txt); its train split is left out" in summary
    assert "note: HCOCO: HCOCO_train.txt lists no images; its train split is left out" in summary
    report = json.loads(report_path_for(out).read_text())
    assert report["counts"] == {"HCOCO": {"test": 3}, "HFlickr": {"test": 3}}
    assert len(report["notes"]) == 2
    assert len(HarmonizationDataset(out, "test")) == 6
    with pytest.raises(DatasetError, match="no train samples in .*eval.h5"):
        HarmonizationDataset(out, "train")


def test_splits_option_packs_only_what_is_asked(tmp_path):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=2, n_test=3)
    out = tmp_path / "test_only.h5"
    assert _run_cli(["-q", "prepare", "--root", str(root), "-o", str(out), "--workers", "0", "--splits", "test"]) == 0
    with h5py.File(out, "r") as handle:
        assert set(handle["samples/split"].asstr()[:]) == {"test"}
        assert json.loads(handle.attrs["splits"]) == ["test"]
    with pytest.raises(DatasetError) as info:
        HarmonizationDataset(out, "train")
    message = str(info.value)
    assert "has no train split (it was packed with --splits test)" in message and "--splits train,test" in message
    assert "\n" not in message
    # asking for a split that no subset has is an error naming the file it expected
    (root / "HFlickr" / "HFlickr_test.txt").unlink()
    with pytest.raises(DatasetError, match="no images to pack in .*HFlickr.*HFlickr_test.txt"):
        pack_dataset(root, output=tmp_path / "x.h5", splits="test", workers=0)
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        pack_dataset(root, output=tmp_path / "x.h5", splits="train,val", workers=0)


def test_training_on_a_file_without_a_train_split_is_one_clear_line(tmp_path, capsys):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=2, n_test=2)
    out = tmp_path / "test_only.h5"
    pack_dataset(root, output=out, splits="test", workers=0)
    code = _run_cli(["-q", "train", "--data", str(out), "--out", str(tmp_path / "run"), "--epochs", "1", "--no-pretrained"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "no training data in" in err and "--splits train,test" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- remembering
def test_a_file_in_place_of_harmonize_home_does_not_fail_prepare(tmp_path, monkeypatch, capsys):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=1, n_test=1)
    blocker = tmp_path / "home_is_a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HARMONIZE_HOME", str(blocker))
    assert _run_cli(["prepare", "--root", str(root), "--workers", "0"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert settings.default_dataset() == (root / "iharmony4.h5").resolve()  # settings live elsewhere now


def test_an_unwritable_settings_folder_is_a_warning_not_a_failure(tmp_path, monkeypatch, capsys):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=1, n_test=1)
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    (xdg / "harmonize").write_text("a file where the settings folder should be")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert _run_cli(["prepare", "--root", str(root), "--workers", "0"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1, err
    assert str(xdg / "harmonize" / "config.json") in warnings[0] and "--data" in warnings[0]
    assert "default dataset for train/eval" not in err
    assert (root / "iharmony4.h5").is_file()  # the dataset itself was written


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_a_read_only_settings_folder_is_a_warning_not_a_failure(tmp_path, monkeypatch, capsys):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=1, n_test=1)
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    xdg.chmod(0o500)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    try:
        assert _run_cli(["prepare", "--root", str(root), "--workers", "0"]) == 0
    finally:
        xdg.chmod(0o700)
    assert "cannot write the settings file" in capsys.readouterr().err
