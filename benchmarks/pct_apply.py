"""PCT-Net on the CPU: `harmonize apply --model pctnet-cnn|pctnet-vit` at 256 px and 2K, and the
peak memory of one 24-MP photo (6000 x 4000) in `--resolution auto` (the model's own strip-wise
full-resolution path).

Each configuration runs `harmonize apply` in a fresh process on synthetic JPEG composites
(photo-like colour fields, an elliptical object, recoloured) with randomly initialised weights
(the speed does not depend on their values). Reported: seconds per image from the command's own
timing in OUT/harmonize.json (model loading excluded: the processing time) and the process's peak
resident memory (ru_maxrss, torch included). With --repeat N the fastest run is kept.

    python benchmarks/pct_apply.py --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apply_throughput import make_inputs  # noqa: E402  (the same synthetic photos)

SIZES = {"256 px": (256, 256, 8), "2K (2048x1365)": (2048, 1365, 4), "24 MP (6000x4000)": (6000, 4000, 1)}

_MEASURED = """
import json, resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"code": run.returncode, "stderr": run.stderr[-2000:],
                  "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def weights_for(arch: str, folder: Path) -> Path:
    import torch

    from harmonize_cli import zoo

    torch.manual_seed(0)
    path = folder / f"{arch}.pth"
    torch.save(zoo.create_model(arch).state_dict(), path)
    return path


def run_apply(composites, masks, out, weights, resolution):
    command = [sys.executable, "-c", _MEASURED, sys.executable, "-m", "harmonize_cli", "-q", "apply",
               str(composites), str(masks), "-o", str(out), "--weights", str(weights),
               "--resolution", resolution, "--device", "cpu", "--overwrite"]
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    if result["code"] != 0:
        raise SystemExit(f"apply failed: {result['stderr']}")
    report = json.loads((Path(out) / "harmonize.json").read_text())
    done = report["summary"]["done"]
    seconds = sum(entry["seconds"] for entry in report["files"]) / max(1, done)
    return seconds, result["peak_mib"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--archs", default="pctnet-cnn,pctnet-vit")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for arch in args.archs.split(","):
            weights = weights_for(arch, tmp)
            for label, (width, height, count) in SIZES.items():
                composites, masks = make_inputs(tmp / f"in-{width}", width, height, count)
                best = None
                for _ in range(args.repeat):
                    seconds, peak = run_apply(composites, masks, tmp / "out", weights, "auto")
                    best = (seconds, peak) if best is None or seconds < best[0] else best
                rows.append({"arch": arch, "input": label, "seconds_per_image": round(best[0], 3),
                             "peak_mib": round(best[1])})
                print(f"{arch:11s} {label:18s} {best[0]:7.3f} s/image   peak {best[1]:6.0f} MiB", flush=True)
    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg()[0], "rows": rows}
    print(json.dumps(info))
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
