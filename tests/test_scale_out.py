"""apply and eval across processes: torchrun ranks (gloo on the CPU) and independent --shard K/N runs.

The references are a one-process run of the same command (the issue's definition of right: the
same bytes, the same report, the same tables) and hand-computed shares and means.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clitools import run_main
from PIL import Image

from harmonize_cli.errors import HarmonizeError, UsageError
from harmonize_cli.sharding import Launch, balanced_shares, detect_launch, parse_shard

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("--model", "lab-transfer", "--model", "composite")


# ----------------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env["HARMONIZE_DEVICE"] = "cpu"
    env["HARMONIZE_DIST_TIMEOUT"] = "60"
    env.update(extra or {})
    return env


def single_process(*args):
    """``harmonize ARGS`` in a process of its own with one intra-op thread, as each rank has here
    (2 cores, 2 ranks): CPU reductions split by thread count can differ in their last bits."""
    command = [sys.executable, "-m", "harmonize_cli", *[str(arg) for arg in args]]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=_env())


def torchrun(*args, env_extra=None, timeout=180):
    """``python -m torch.distributed.run --nproc-per-node 2 -m harmonize_cli ARGS`` with gloo on the CPU."""
    env = _env(env_extra)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "-m", "harmonize_cli", *[str(arg) for arg in args]]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    return done, time.monotonic() - started


def make_inputs(folder: Path):
    """Six composites of different sizes (one large, five small) with box masks, and one broken file."""
    rng = np.random.default_rng(7)
    (folder / "c").mkdir(parents=True)
    (folder / "m").mkdir()
    sizes = {"a.png": (40, 56), "b.jpg": (48, 32), "big.png": (160, 200), "c.png": (24, 24), "d.jpg": (40, 40),
             "e.png": (32, 64)}
    for name, (height, width) in sizes.items():
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / "c" / name, quality=95)
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
        Image.fromarray(mask).save(folder / "m" / (Path(name).stem + ".png"))
    (folder / "c" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(folder / "m" / "broken.png")
    return folder / "c", folder / "m"


def report(out, name="harmonize.json"):
    return json.loads((Path(out) / name).read_text())


def outputs(out):
    return {path.name: path.read_bytes() for path in Path(out).iterdir() if path.suffix in (".png", ".jpg")}


def tables(path):
    """The evaluation JSON without the timings (wall clock differs between runs)."""
    data = json.loads(Path(path).read_text())
    data = data if isinstance(data, list) else [data]  # one model: one document
    for result in data:
        result.pop("seconds"), result.pop("device")
        for row in result["by_subset"].values():
            row.pop("ms_per_image")
        for record in result.get("per_image", []):
            record.pop("ms")
    return data


# ------------------------------------------------------------------------------ the plan
def test_shares_balance_pixels_not_counts_and_cover_every_input_once():
    # one 8K photo (33 MP) and eight 1 MP ones: by count each share gets 4-5 inputs; by pixels the
    # big photo is a share of its own
    sizes = [1_000_000] * 4 + [33_000_000] + [1_000_000] * 4
    assert balanced_shares(sizes, 2) == [[4], [0, 1, 2, 3, 5, 6, 7, 8]]
    # hand-run of longest-processing-time: 4M -> 0; 3M -> 1; then the two small ones onto share 1 (lighter)
    assert balanced_shares([4_000_000, 10, 10, 3_000_000], 2) == [[0], [1, 2, 3]]
    # equal sizes (eval at fixed256): every N-th item
    assert balanced_shares([5] * 7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 10_000_000, 101).tolist()
    for count in (1, 2, 3, 8):
        shares = balanced_shares(sizes, count)
        assert sorted(i for share in shares for i in share) == list(range(101))  # each once
        assert all(share == sorted(share) for share in shares)
        loads = [sum(sizes[i] for i in share) for share in shares]
        assert max(loads) - min(loads) <= max(sizes)  # LPT's bound: at most one item apart
        assert balanced_shares(sizes, count) == shares  # deterministic


def test_launch_from_torchrun_and_slurm_variables():
    assert detect_launch({}) == Launch()
    torch_env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert detect_launch(torch_env) == Launch(3, 8, 1, 4, "torchrun")
    slurm = {"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "2",
             "MASTER_ADDR": "node1", "MASTER_PORT": "29500"}
    launch = detect_launch(slurm)
    assert launch == Launch(2, 4, 0, 2, "srun") and launch.grouped
    with pytest.raises(UsageError, match="MASTER_ADDR"):
        detect_launch({k: v for k, v in slurm.items() if not k.startswith("MASTER")})
    assert detect_launch({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) == Launch()


@pytest.mark.parametrize("text", ["2/2", "-1/2", "1", "a/b", "0/0"])
def test_bad_shard_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)


def test_cpu_ranks_split_the_cores():
    from harmonize_cli.sharding import rank_cores

    assert rank_cores(Launch(0, 4, 0, 2, "torchrun"), cores=16) == 8
    assert rank_cores(Launch(0, 8, 5, 8, "torchrun"), cores=4) == 1
    assert rank_cores(Launch(), cores=16) == 16


# ---------------------------------------------------------------------------------- apply
def test_apply_shards_merge_into_the_one_process_report(tmp_path, capsys):
    composites, masks = make_inputs(tmp_path / "in")
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    assert run_main(capsys, "apply", composites, masks, "-o", one, "-q")[0] == 1  # broken.png fails
    assert run_main(capsys, "apply", composites, masks, "-o", sharded, "--shard", "1/2", "-q")[0] == 1
    code, _, err = run_main(capsys, "apply", "--merge-reports", sharded)
    assert code == 1 and "missing harmonize.0-of-2.json" in err and "--shard 0/2" in err
    part = report(sharded, "harmonize.1-of-2.json")
    assert part["shard"]["count"] == 2 and part["shard"]["total"] == 7
    assert run_main(capsys, "apply", composites, masks, "-o", sharded, "--shard", "0/2", "-q")[0] in (0, 1)
    assert run_main(capsys, "apply", "--merge-reports", sharded)[0] == 0
    first, second = (report(sharded, f"harmonize.{k}-of-2.json")["shard"]["positions"] for k in (0, 1))
    assert sorted(first + second) == list(range(7)) and not set(first) & set(second)
    # by pixels: big.png (160 x 200) outweighs the five others together, so it is share 0 alone
    assert [Path(f["composite"]).name for f in report(sharded, "harmonize.0-of-2.json")["files"]] == ["big.png"]
    single, merged = report(one), report(sharded)
    strip = lambda files: [{k: v for k, v in f.items() if k not in ("seconds", "output")} for f in files]  # noqa: E731
    assert strip(merged["files"]) == strip(single["files"])
    assert [Path(f["output"]).name for f in merged["files"] if f["output"]] == \
        [Path(f["output"]).name for f in single["files"] if f["output"]]
    assert {k: merged["summary"][k] for k in ("done", "failed", "total")} == {"done": 6, "failed": 1, "total": 7}
    assert outputs(one) == outputs(sharded)


def test_merge_refuses_overlapping_shares(tmp_path, capsys):
    composites, masks = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    for k in (0, 1):
        run_main(capsys, "apply", composites, masks, "-o", out, "--shard", f"{k}/2", "-q")
    part = report(out, "harmonize.1-of-2.json")
    part["shard"]["positions"][0] = report(out, "harmonize.0-of-2.json")["shard"]["positions"][0]
    (out / "harmonize.1-of-2.json").write_text(json.dumps(part))
    code, _, err = run_main(capsys, "apply", "--merge-reports", out)
    assert code == 1 and "in two shards" in err and not (out / "harmonize.json").exists()


def test_torchrun_two_ranks_apply_same_bytes_one_report_resume_and_a_bad_file(tmp_path, capsys):
    composites, masks = make_inputs(tmp_path / "in")
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_main(capsys, "apply", composites, masks, "-o", one, "-q")[0] == 1
    two.mkdir()
    shutil.copy(one / "c.png", two / "c.png")  # an earlier, interrupted run left one result: it is skipped
    done, _ = torchrun("apply", composites, masks, "-o", two)
    assert done.returncode == 1, done.stderr[-3000:]  # broken.png failed on its rank; every other file is done
    assert done.stderr.count("failed broken.png") + done.stderr.count(f"failed {composites / 'broken.png'}") == 1
    assert re.search(r"5 harmonized[^,]*, 1 skipped, 1 failed", done.stderr), done.stderr[-3000:]
    merged, single = report(two), report(one)
    assert merged["ranks"] == 2
    assert [f["composite"] for f in merged["files"]] == [f["composite"] for f in single["files"]]  # each once, in order
    assert [f["status"] for f in merged["files"]] == [
        "skipped" if f["composite"].endswith("c.png") else f["status"] for f in single["files"]]
    assert outputs(one) == outputs(two)  # byte-identical
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # no part reports left


def test_torchrun_a_rank_that_raises_ends_the_job_nonzero_naming_it(tmp_path):
    composites, masks = make_inputs(tmp_path / "in")
    done, seconds = torchrun("apply", composites, masks, "-o", tmp_path / "out",
                             env_extra={"HARMONIZE_TEST_FAIL_RANK": "1"}, timeout=150)
    assert done.returncode != 0
    assert "rank 1 of 2: RuntimeError" in done.stderr, done.stderr[-3000:]
    assert seconds < 120


# ----------------------------------------------------------------------------------- eval
def test_eval_shards_merge_into_the_one_process_tables(mini_iharmony, tmp_path, capsys):
    one, s0, s1, merged = (tmp_path / name for name in ("one.json", "s0.json", "s1.json", "merged.json"))
    models = ("--model", "composite")  # the fastest model: the test is about the split and the sums
    assert run_main(capsys, "eval", "--data", mini_iharmony, *models, "-o", one, "--per-image", "-q")[0] == 0
    for k, path in ((0, s0), (1, s1)):
        assert run_main(capsys, "eval", "--data", mini_iharmony, *models, "--shard", f"{k}/2", "-o", path, "-q")[0] == 0
    code, _, err = run_main(capsys, "eval", "--merge-shards", s1, "-o", merged)
    assert code == 1 and "shard 0/2 missing" in err
    assert run_main(capsys, "eval", "--merge-shards", s1, "--merge-shards", s0, "-o", merged, "--per-image", "-q")[0] == 0
    single, sharded = tables(one), tables(merged)
    assert sharded == single
    # independent of the engine's sums: All is the plain mean of the 12 per-image values
    records = single[0]["per_image"]
    assert [r["index"] for r in records] == list(range(12))
    assert single[0]["by_subset"]["All"]["N"] == 12
    assert single[0]["by_subset"]["All"]["MSE"] == pytest.approx(sum(r["MSE"] for r in records) / 12, rel=1e-12)


def test_merge_results_sorts_records_before_summing():
    """Floating-point sums depend on their order: the merge must add in test-set order."""
    from harmonize_cli.evaluation.engine import EvalResult, merge_results

    values = [1e16, 1.0, -1e16, 1.0]  # in order: ((1e16 + 1) - 1e16) + 1 = 1.0; rank-wise order gives 2.0 or 0.0
    records = [{"index": i, "subset": "S", "name": str(i), "fg_ratio": 0.5, "MSE": v, "fMSE": v, "PSNR": v, "ms": 1.0}
               for i, v in enumerate(values)]

    def part(rows):
        return [EvalResult("m", None, "fixed256", None, False, {}, {}, per_image=rows, label="m")]

    one = merge_results([part(records)], ["S"])[0]
    sharded = merge_results([part(records[1::2]), part(records[0::2])], ["S"])[0]
    assert one.by_subset["S"]["MSE"] == (((1e16 + 1.0) - 1e16) + 1.0) / 4
    assert sharded.by_subset == one.by_subset and sharded.by_fg_ratio == one.by_fg_ratio
    assert [r["index"] for r in sharded.per_image] == [0, 1, 2, 3]


@pytest.mark.slow
def test_torchrun_two_ranks_eval_equal_tables_and_predictions(mini_iharmony, tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    reference = single_process("eval", "--data", mini_iharmony, *MODELS, "-o", one, "--per-image",
                               "--save-predictions", tmp_path / "p1", "-q")
    assert reference.returncode == 0, reference.stderr
    done, _ = torchrun("eval", "--data", mini_iharmony, *MODELS, "-o", two, "--per-image",
                       "--save-predictions", tmp_path / "p2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert tables(two) == tables(one)
    assert done.stderr.count("Wrote") == 1  # rank 0 alone writes and speaks
    first = {p.relative_to(tmp_path / "p1"): p.read_bytes() for p in (tmp_path / "p1").rglob("*.png")}
    second = {p.relative_to(tmp_path / "p2"): p.read_bytes() for p in (tmp_path / "p2").rglob("*.png")}
    assert len(first) == 24 and first == second


def test_shard_errors_are_usage_errors(tmp_path, capsys, mini_iharmony):
    code, _, err = run_main(capsys, "eval", "--data", mini_iharmony, *MODELS, "--shard", "0/2")
    assert code == 2 and "-o FILE.json" in err
    code, _, err = run_main(capsys, "apply", "--merge-reports", tmp_path)
    assert code == 2 and "no harmonize.K-of-N.json" in err
    code, _, err = run_main(capsys, "apply", "x", "y", "-o", tmp_path / "o", "--shard", "3/2")
    assert code == 2 and "--shard" in err
    assert issubclass(UsageError, HarmonizeError)
