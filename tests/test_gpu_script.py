"""tools/gpu_check.sh and its throughput matrix (benchmarks/gpu_matrix.py) stay runnable without a
GPU: the script parses, the matrix covers the precisions and compilation each device can run, and
(slow) the script's --dry-run runs the matrix in its tiny CPU mode end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_the_gpu_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "tools" / "gpu_check.sh")]).returncode == 0


def test_the_matrix_covers_half_precision_and_compile_on_cuda_and_what_the_cpu_runs():
    from gpu_matrix import matrix

    cuda = matrix(torch.device("cuda"), tiny=False)
    assert {precision for precision, _, _ in cuda} == {"float32", "bf16", "fp16"}
    assert len(cuda) == 12 and {(cl, compiled) for _, cl, compiled in cuda} == {(a, b) for a in (0, 1) for b in (0, 1)}
    cpu = matrix(torch.device("cpu"), tiny=True)
    assert sorted(cpu) == [("bf16", False, False), ("bf16", True, False), ("float32", False, False),
                           ("float32", True, False)]


@pytest.mark.slow
def test_the_dry_run_measures_the_tiny_matrix_on_the_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    done = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), "--dry-run"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "matrix.json").read_text())
    assert result["device"] == "cpu" and not result["failures"] and not result["skipped"]
    assert len(result["rows"]) == 4
    assert all(row["eval images/s"] > 0 and row["train samples/s"] > 0 for row in result["rows"])
    assert sum("apply tiny photos/s" in row for row in result["rows"]) == 2
