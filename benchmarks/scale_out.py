"""`harmonize apply` and `harmonize eval` in one process and with N torchrun ranks: wall time,
images per second, and whether the outputs are the same.

Synthetic inputs (apply: JPEG composites of mixed sizes with box masks; eval: the miniature
iHarmony4 set of tests/minidata.py) are written to a temporary folder; each configuration runs
the CLI in a fresh process (1 rank: `python -m harmonize_cli`; N ranks: `python -m
torch.distributed.run --nproc-per-node N -m harmonize_cli`), timed from outside, so interpreter
and torch start-up and the process-group rendezvous are included; the command's own processing
time is read from its report where it has one. On the CPU every rank gets cores // N threads
(the one-process run keeps its default).

    python benchmarks/scale_out.py --ranks 1 2                      # CPU
    python benchmarks/scale_out.py --ranks 1 2 4 8 --device cuda --images 400 --json scale.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def make_inputs(root: Path, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    composites, masks = root / "composites", root / "masks"
    composites.mkdir(parents=True)
    masks.mkdir()
    sizes = [(768, 1024), (1536, 2048), (480, 640), (1080, 1920)]
    for index in range(count):
        height, width = sizes[index % len(sizes)]
        small = rng.integers(0, 256, (height // 32, width // 32, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
        image.save(composites / f"p{index:04d}.jpg", quality=92)
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4: 3 * height // 4, width // 3: 2 * width // 3] = 255
        Image.fromarray(mask).save(masks / f"p{index:04d}.png")
    return composites, masks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(ranks: int, args):
    if ranks == 1:
        return [sys.executable, "-m", "harmonize_cli", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-addr",
            "127.0.0.1", "--master-port", str(free_port()), "-m", "harmonize_cli", *args]


def timed(ranks: int, args, env):
    started = time.perf_counter()
    done = subprocess.run(command(ranks, [str(a) for a in args]), capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{ranks} rank(s) failed:\n{done.stderr[-3000:]}")
    return seconds


def digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(folder.glob("*.jpg")):
        sha.update(path.name.encode() + path.read_bytes())
    return sha.hexdigest()[:16]


def max_pixel_difference(first: Path, second: Path) -> int:
    """The largest difference of any decoded output pixel between two runs (0: the same pictures)."""
    worst = 0
    for path in sorted(first.glob("*.jpg")):
        a = np.asarray(Image.open(path), dtype=np.int16)
        b = np.asarray(Image.open(second / path.name), dtype=np.int16)
        worst = max(worst, int(np.abs(a - b).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--images", type=int, default=24, help="composites for apply")
    parser.add_argument("--model", default="lab-transfer",
                        help="lab-transfer, composite, or an architecture (run with random weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-test", type=int, default=12, help="test images per subset for eval")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               HARMONIZE_OFFLINE="1", HARMONIZE_DEVICE=options.device)
    env.setdefault("HARMONIZE_HOME", tempfile.mkdtemp())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        composites, masks = make_inputs(tmp / "in", options.images)
        sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
        from minidata import make_mini_iharmony

        data = make_mini_iharmony(tmp / "iH", n_train=1, n_test=options.eval_test, size=(256, 256), seed=1)
        model = ["--model", options.model]
        if options.model not in ("lab-transfer", "composite"):  # a network: random weights (speed only)
            import torch

            from harmonize_cli import zoo

            weights = tmp / "random.pth"
            torch.save(zoo.create_model(options.model).state_dict(), weights)
            model = ["--weights", weights]
        for ranks in options.ranks:
            out = tmp / f"apply{ranks}"
            seconds = timed(ranks, ["apply", composites, masks, "-o", out, *model, "-q"], env)
            report = json.loads((out / "harmonize.json").read_text())
            rows.append({"command": "apply", "ranks": ranks, "images": options.images, "wall_s": round(seconds, 2),
                         "images_per_s": round(options.images / seconds, 2),
                         "report_seconds": report["summary"]["seconds"], "outputs": digest(out)})
            results = tmp / f"eval{ranks}.json"
            seconds = timed(ranks, ["eval", "--data", data, *model, "-o", results, "-q"], env)
            document = json.loads(results.read_text())
            rows.append({"command": "eval", "ranks": ranks, "images": document["n_images"],
                         "wall_s": round(seconds, 2), "images_per_s": round(document["n_images"] / seconds, 2),
                         "All_MSE": document["by_subset"]["All"]["MSE"]})
            for row in rows[-2:]:
                print(json.dumps(row), flush=True)
            if ranks != options.ranks[0]:
                rows[-2]["max_pixel_difference"] = max_pixel_difference(tmp / f"apply{options.ranks[0]}", out)
        same_outputs = len({row["outputs"] for row in rows if row["command"] == "apply"}) == 1
        mses = [row["All_MSE"] for row in rows if row["command"] == "eval"]
        same_tables = len(set(mses)) == 1
        worst_pixel = max([row.get("max_pixel_difference", 0) for row in rows] + [0])
        relative = max(abs(m - mses[0]) for m in mses) / max(abs(mses[0]), 1e-12)
    # bit-exact on the CPU (batch 1); on a GPU a rank's batches hold other images than one process's
    # and cuDNN may pick other kernels for them: last-bit differences are allowed, nothing more
    print(f"apply outputs identical across rank counts: {same_outputs} (max pixel difference {worst_pixel}); "
          f"eval All MSE identical: {same_tables} (relative difference {relative:.1e})")
    if options.json:
        options.json.write_text(json.dumps({"rows": rows, "same_outputs": same_outputs, "same_tables": same_tables,
                                            "max_pixel_difference": worst_pixel, "all_mse_relative_difference": relative,
                                            "cores": os.cpu_count(), "device": options.device}, indent=2))
    if worst_pixel > 1 or relative > 1e-5:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
