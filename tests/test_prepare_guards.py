"""prepare's tracebacks and hangs (issue 22, items 14-15 and the list-file weak spots).

- a full disk or a file size limit (``ulimit -f``) while packing: one line, exit 1, no ``.part``
  left, no traceback and no crash (h5py's close used to raise, then the process segfaulted);
- a named pipe (FIFO) among the images is a problem of its sample, not a hang;
- a list line that names no usable composite is a problem of that line, not the end of the run;
- duplicate list lines and composites listed for both train and test are said in the report.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from minidata import make_mini_iharmony

REPO = Path(__file__).resolve().parents[1]

# the CLI in a fresh process with a file size limit; argv[1]: the limit in bytes, argv[2]: "1" to
# switch off the size check made before packing (to reach a write that fails mid-run)
_LIMITED = """
import resource, sys
limit, mid_run = int(sys.argv[1]), sys.argv[2] == "1"
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
if mid_run:
    import harmonize_cli.data.pack as pack
    pack.check_disk_space = lambda *args: None
from harmonize_cli.cli import main
main(sys.argv[3:])
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _limited(limit, mid_run, *args):
    command = [sys.executable, "-c", _LIMITED, str(limit), "1" if mid_run else "0", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=120)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part") or p.suffix == ".h5")


@pytest.mark.parametrize("mid_run", [False, True], ids=["before-work", "mid-run"])
@pytest.mark.parametrize("workers", [0, 2])
def test_a_file_size_limit_is_one_line_and_leaves_nothing(tmp_path, mid_run, workers):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=6, n_test=2)
    out = tmp_path / "out"
    out.mkdir()
    done = _limited(20_000, mid_run, "-q", "prepare", "--root", root, "-o", out / "d.h5", "--workers", workers)
    assert done.returncode == 1, (done.returncode, done.stderr)  # not -11 (SIGSEGV) nor -25 (SIGXFSZ)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    if mid_run:
        assert lines[0].startswith(f"Error: cannot write {out / 'd.h5'}: File too large")
    else:
        assert "file size limit" in lines[0] and "ulimit -f" in lines[0]
    assert _leftovers(out) == []


def test_a_named_pipe_among_the_images_is_a_problem_not_a_hang(tmp_path):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=3, n_test=2)
    folder = root / "HFlickr"
    name = (folder / "HFlickr_train.txt").read_text().split()[0]
    (folder / "composite_images" / name).unlink()
    os.mkfifo(folder / "composite_images" / name)
    out = tmp_path / "d.h5"
    done = subprocess.run([sys.executable, "-m", "harmonize_cli", "-q", "prepare", "--root", str(root), "-o",
                           str(out), "--workers", "0"], capture_output=True, text=True, env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "d.report.json").read_text())
    assert report["counts"] == {"HFlickr": {"train": 2, "test": 2}}
    [problem] = report["problems"]
    assert problem["file"].endswith(name) and "named pipe (FIFO)" in problem["reason"]


def test_a_bad_list_line_is_a_problem_of_that_line(tmp_path, run_cli):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=3, n_test=2)
    with open(root / "HFlickr" / "HFlickr_train.txt", "a") as listing:
        listing.write("holiday.jpg\n")
    out = tmp_path / "d.h5"
    code, shown, err = run_cli("prepare", "--root", root, "-o", out, "--workers", "0")
    assert code == 0, err
    report = json.loads((tmp_path / "d.report.json").read_text())
    assert report["counts"] == {"HFlickr": {"train": 3, "test": 2}} and report["skipped"] == 1
    [problem] = report["problems"]
    assert problem["file"].endswith("HFlickr_train.txt") and "'holiday.jpg'" in problem["reason"]
    assert "holiday.jpg" in shown  # in the summary
    code, _, err = run_cli("prepare", "--root", root, "-o", tmp_path / "s.h5", "--workers", "0", "--strict")
    assert code == 1 and "holiday.jpg" in err and not (tmp_path / "s.h5").exists()


def test_duplicate_lines_and_test_images_listed_for_training_are_reported(tmp_path, run_cli):
    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=3, n_test=2)
    folder = root / "HFlickr"
    train = (folder / "HFlickr_train.txt").read_text().split()
    test = (folder / "HFlickr_test.txt").read_text().split()
    with open(folder / "HFlickr_train.txt", "a") as listing:
        listing.write("\n".join([train[0], train[0], train[1], *test]) + "\n")
    code, shown, err = run_cli("prepare", "--root", root, "-o", tmp_path / "d.h5", "--workers", "0")
    assert code == 0, err
    notes = json.loads((tmp_path / "d.report.json").read_text())["notes"]
    assert notes == [
        f"HFlickr: 3 duplicate line(s) in the train list, packed as often as listed "
        f"(first: {train[0]}, {train[0]}, {train[1]})",
        f"HFlickr: 2 composite(s) listed for both train and test: test images are trained on "
        f"(first: {test[0]}, {test[1]})",
    ]
    assert "duplicate line" in shown and "listed for both train and test" in shown
