"""Memory bombs against every command that reads them: each is refused in one line, with a
non-zero exit, before its payload is decoded, and the whole process tree stays under 1.5 GB.

The bombs are small files made here (tests/bombs.py): an ICO icon wrapping a 20000 x 20000 PNG
saved as ``.png`` (1.2 MB; 1.2 GB decoded), a deflated checkpoint of 1.5 MB that unpacks to
1.5 GiB, and a packed dataset whose tables declare 20000 x 20000 images over an empty heap.
Each is run in a fresh process, its peak resident memory measured (``ru_maxrss``).
"""

from __future__ import annotations

import json
import sys

import h5py
import pytest

from bombs import inflate_packed_shapes, measured_cli, write_checkpoint_bomb, write_ico_bomb
from minidata import make_mini_iharmony
from test_apply import save_pair

LIMIT_KIB = int(1.5 * 1024 * 1024)  # 1.5 GiB

# each runs the CLI in fresh processes (~5-20 s on a busy 2-core machine): `-m slow` in CI; the
# fast in-process tests of each guard are in test_limits, test_weights_bounds, test_packfile_guards
pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units differ"),
              pytest.mark.timeout(300), pytest.mark.slow]


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_an_ico_bomb_named_png_is_refused_by_apply_from_its_first_bytes(tmp_path):
    save_pair(tmp_path, "good.png")
    save_pair(tmp_path, "bomb.png")  # a genuine mask ...
    write_ico_bomb(tmp_path / "c" / "bomb.png")  # ... and the composite replaced by the bomb
    result = measured_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--model", "lab-transfer")
    assert result["code"] == 1, result["stderr"]
    assert result["peak_kib"] < LIMIT_KIB, result["peak_kib"]
    report = json.loads((tmp_path / "out" / "harmonize.json").read_text())
    files = {entry["composite"].rsplit("/", 1)[-1]: entry for entry in report["files"]}
    assert files["good.png"]["status"] == "done"
    assert files["bomb.png"]["status"] == "failed" and "ICO" in files["bomb.png"]["reason"]
    assert "Traceback" not in result["stderr"]


def test_an_ico_bomb_in_a_dataset_is_one_problem_of_prepare(tmp_path):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=2, n_test=1)
    folder = root / "HFlickr"
    composite = sorted((folder / "composite_images").iterdir())[0]
    write_ico_bomb(composite)
    out = tmp_path / "packed.h5"
    result = measured_cli("prepare", "--root", root, "-o", out, "--workers", "0")
    assert result["peak_kib"] < LIMIT_KIB, result["peak_kib"]
    assert result["code"] == 0, result["stderr"]
    assert "ICO" in result["stdout"] + result["stderr"] and "Traceback" not in result["stderr"]
    with h5py.File(out, "r") as handle:
        assert len(handle["samples/name"]) == 2  # the other samples are packed


@pytest.mark.parametrize("command", ["apply", "export"])
def test_a_zip_bomb_checkpoint_is_refused_from_its_directory(tmp_path, command):
    bomb = write_checkpoint_bomb(tmp_path / "bomb.pth")  # 1.5 MB on disk, 1.5 GiB unpacked
    assert bomb.stat().st_size < 2 << 20
    if command == "apply":
        composite, mask = save_pair(tmp_path, "a.png")
        args = ("apply", composite, mask, "-o", tmp_path / "out.png", "--weights", bomb)
    else:
        args = ("export", bomb, "-o", tmp_path / "out.pth")
    result = measured_cli(*args)
    assert result["code"] == 1, result["stderr"]
    assert result["peak_kib"] < LIMIT_KIB, result["peak_kib"]
    line = _one_error_line(result["stderr"])
    assert str(bomb) in line and "unpacks to 1.50 GiB" in line and "HARMONIZE_MAX_WEIGHTS_MB" in line
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out.pth").exists()


def test_a_packed_file_declaring_huge_images_is_refused_when_eval_opens_it(tmp_path):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=1, n_test=2)
    packed = tmp_path / "bomb.h5"
    code = measured_cli("prepare", "--root", root, "-o", packed, "--workers", "0")["code"]
    assert code == 0
    inflate_packed_shapes(packed, side=20000)
    assert packed.stat().st_size < 4 << 20
    result = measured_cli("eval", "--data", packed, "--model", "lab-transfer", "--workers", "0")
    assert result["code"] == 1, result["stderr"]
    assert result["peak_kib"] < LIMIT_KIB, result["peak_kib"]
    line = _one_error_line(result["stderr"])
    assert str(packed) in line and "20000x20000" in line and "image limit" in line
    assert "MSE" not in result["stdout"]
