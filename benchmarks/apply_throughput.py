"""Throughput and peak memory of `harmonize apply` on 1024 px and 4000 px inputs.

Synthetic JPEG composites (photo-like colour fields plus texture, an elliptical object mask
covering about a sixth of the picture, recoloured) are written to a temporary folder; each
configuration then runs `harmonize apply` in a fresh process. Reported: images per second over
the command's own timing in OUT/harmonize.json (pairing, model loading, decoding, inference,
full-resolution correction and encoding; interpreter start-up excluded) and the process's peak
resident memory (ru_maxrss, torch included). With --repeat N the fastest run is kept.

    python benchmarks/apply_throughput.py --repeat 2           # CPU, lab-transfer and iDIH
    python benchmarks/apply_throughput.py --device cuda --json bench.json

The iDIH weights are random (the speed does not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = {"1024 px": (1024, 683), "4000 px": (4000, 3000)}


def make_inputs(root: Path, width: int, height: int, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    composites, masks = root / "composites", root / "masks"
    composites.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    small = (max(8, width // 16), max(8, height // 16))
    for index in range(count):
        coarse = rng.random((small[1], small[0], 3)).astype(np.float32)
        base = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC))
        texture = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
        image = np.clip(base.astype(np.int16) + texture, 0, 255).astype(np.uint8)
        mask = Image.new("L", (width, height), 0)
        from PIL import ImageDraw

        draw = ImageDraw.Draw(mask)
        cx, cy = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
        draw.ellipse((cx - 0.25 * width, cy - 0.22 * height, cx + 0.25 * width, cy + 0.22 * height), fill=255)
        inside = np.asarray(mask) > 0
        image[inside] = np.clip(image[inside] * np.array([1.2, 0.9, 0.8]), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(composites / f"img{index:03d}.jpg", quality=92)
        mask.save(masks / f"img{index:03d}.png")
    return composites, masks


def run_apply(composites, masks, out, extra):
    """Run `harmonize apply` in a fresh process; returns (seconds from the report, peak RSS MiB)."""
    command = [sys.executable, "-m", "harmonize_cli", "-q", "apply", str(composites), str(masks), "-o", str(out),
               "--overwrite", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr}")
    report = json.loads((Path(out) / "harmonize.json").read_text())
    return report["summary"]["seconds"], report["summary"]["done"], usage.ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--count-1024", type=int, default=16)
    parser.add_argument("--count-4000", type=int, default=4)
    parser.add_argument("--models", default="lab-transfer,idih")
    parser.add_argument("--resolutions", default="auto,fixed")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration; the fastest is kept")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from harmonize_cli import zoo

    results = []
    with tempfile.TemporaryDirectory(prefix="harmonize-bench-") as tmp:
        tmp = Path(tmp)
        weights = tmp / "idih_random.pth"
        torch.save(zoo.create_model("idih").state_dict(), weights)
        counts = {"1024 px": args.count_1024, "4000 px": args.count_4000}
        for label, (width, height) in SIZES.items():
            started = time.time()
            composites, masks = make_inputs(tmp / label.replace(" ", ""), width, height, counts[label])
            print(f"{counts[label]} inputs of {width}x{height} written in {time.time() - started:.1f} s", flush=True)
            for model in args.models.split(","):
                for resolution in args.resolutions.split(","):
                    extra = ["--device", args.device, "--batch-size", str(args.batch_size), "--resolution", resolution]
                    extra += ["--weights", str(weights)] if model == "idih" else ["--model", model]
                    runs = [run_apply(composites, masks, tmp / "out", extra) for _ in range(args.repeat)]
                    seconds = min(run[0] for run in runs)  # other load only ever slows a run down
                    done = runs[0][1]
                    peak = max(run[2] for run in runs)
                    row = {"input": f"{label} ({width}x{height})", "model": model, "resolution": resolution,
                           "device": args.device, "images": done, "seconds": round(seconds, 2),
                           "images_per_s": round(done / seconds, 2), "peak_rss_mib": round(peak)}
                    results.append(row)
                    print(f"| {row['input']} | {model} | {resolution} | {row['images_per_s']:.2f} | "
                          f"{row['peak_rss_mib']} |", flush=True)
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "machine": platform.machine()}
    print("\n| input | model | resolution | images/s | peak RSS (MiB) |\n|---|---|---|---|---|")
    for row in results:
        print(f"| {row['input']} | {row['model']} | {row['resolution']} | {row['images_per_s']:.2f} | "
              f"{row['peak_rss_mib']} |")
    print(f"\n{info}")
    if args.json:
        Path(args.json).write_text(json.dumps({"system": info, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
