"""bf16 on the CPU: the network's forward pass in bf16 against float32, its speed and what it
changes, for iDIH and HRNet18s-iDIH.

    python benchmarks/bf16_cpu.py                      # speed, parity fixtures, photos
    python benchmarks/bf16_cpu.py --repeat 20 --photos 21 --json bf16.json

speed
    The network apply and eval run (``optimize_for_inference``: folded batch norms, fast ELU,
    channels-last) at 256 x 256, batch 1, three ways: float32; under
    ``torch.autocast("cpu", torch.bfloat16)``; and a copy with bf16 weights and inputs
    (``harmonize_cli.inference_opt.with_precision``, what ``--precision bf16`` runs). At one torch
    thread (apply's CPU plan on 2 cores; the thread's own CPU time, which other jobs do not inflate)
    and at torch's default threads (wall time), best of ``--repeat``, the three interleaved.
fixtures
    The parity fixtures of ``shared/parity`` (``improved_dih256``, ``hrnet18s_idih256``: the
    reference's float32 outputs for weights drawn by its rule): the largest and the mean difference
    of each way's output to the fixture's, in 0-255 grey levels (normalised difference x std x 255).
photos
    ``examples/composites`` (5 real photos) and ``--photos`` of vs_reference's generated photos,
    through ``Harmonizer(..., precision=)`` with the fixtures' weights: the 256-px predictions and
    the final ``fixed`` / ``auto`` results of bf16 against float32, max and mean in grey levels
    (the mean over the mask's pixels).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

FIXTURES = {"idih": "improved_dih256", "idih-hrnet-w18s": "hrnet18s_idih256"}
LABELS = {"idih": "iDIH", "idih-hrnet-w18s": "HRNet18s-iDIH"}
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _ways(network):
    from harmonize_cli.inference_opt import optimize_for_inference, with_precision

    fast = optimize_for_inference(network)
    bf16 = with_precision(fast, "bf16")

    def autocast(image, mask):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fast(image, mask)

    return {"float32": fast, "autocast bf16": autocast, "bf16 weights": bf16}


def _best(ways, image, mask, repeat, threads):
    torch.set_num_threads(threads)
    clock = time.thread_time if threads == 1 else time.perf_counter
    best = {name: float("inf") for name in ways}
    with torch.inference_mode():
        for way in ways.values():
            way(image, mask)  # warm-up (oneDNN primitives)
        for _ in range(repeat):
            for name, way in ways.items():
                started = clock()
                way(image, mask)
                best[name] = min(best[name], clock() - started)
    return {name: 1000 * seconds for name, seconds in best.items()}


def bench_network(arch, repeat, default_threads):
    from parity_utils import generate_weights, load_fixture

    from harmonize_cli import zoo

    fixture = load_fixture(FIXTURES[arch])
    weights, _ = generate_weights(fixture["manifest"], fixture["seed"])
    network = zoo.create_model(FIXTURES[arch], weights=weights).eval()
    ways = _ways(network)
    image, mask = fixture["image"][:1].float(), fixture["mask"][:1].float()
    row = {"arch": arch, "ms_1_thread": _best(ways, image, mask, repeat, 1),
           f"ms_{default_threads}_threads": _best(ways, image, mask, repeat, default_threads), "fixture": {}}
    torch.set_num_threads(default_threads)
    with torch.inference_mode():
        for name, way in ways.items():
            output = way(fixture["image"].float(), fixture["mask"].float()).float()
            levels = ((output - fixture["expected"]) * STD * 255.0).abs()
            row["fixture"][name] = {"max_levels": float(levels.max()), "mean_levels": float(levels.mean())}
    return row, weights


def bench_photos(arch, weights, pairs, work: Path):
    from harmonize_cli import Harmonizer
    from harmonize_cli.apply.imageio import read_image
    from harmonize_cli.apply.maskio import read_mask

    path = work / f"{arch}.pth"
    torch.save(weights, path)
    rows = {}
    for resolution in ("fixed", "auto"):
        runs = {precision: Harmonizer(weights=str(path), device="cpu", resolution=resolution, precision=precision,
                                      quiet=True) for precision in ("float32", "bf16")}
        worst_prediction, worst, total, count, prediction_sum, prediction_count = 0.0, 0.0, 0.0, 0, 0.0, 0
        for composite, mask_path in pairs:
            image, mask = read_image(composite), read_mask(mask_path)
            jobs = {precision: harmonizer.prepare(image.rgb, mask) for precision, harmonizer in runs.items()}
            for precision, harmonizer in runs.items():
                harmonizer.predict([jobs[precision]])
            prediction = np.abs(jobs["bf16"].prediction - jobs["float32"].prediction) * 255.0
            worst_prediction = max(worst_prediction, float(prediction.max()))
            prediction_sum, prediction_count = prediction_sum + float(prediction.sum()), prediction_count + prediction.size
            results = {precision: harmonizer.finish(jobs[precision]).astype(np.int16)
                       for precision, harmonizer in runs.items()}
            difference = np.abs(results["bf16"] - results["float32"])
            inside = mask > 0
            worst = max(worst, float(difference.max()))
            total += float(difference[inside].sum())
            count += int(inside.sum()) * 3
        rows[resolution] = {"prediction_max_levels": worst_prediction,
                            "prediction_mean_levels": prediction_sum / max(1, prediction_count),
                            "result_max_levels": worst, "result_mean_levels_in_mask": total / max(1, count),
                            "photos": len(pairs)}
    return rows


def _pairs(work: Path, photos: int):
    from harmonize_cli.apply.pairing import find_pairs

    pairs = [(pair.composite, pair.mask) for pair in find_pairs(ROOT / "examples" / "composites",
                                                                ROOT / "examples" / "masks") if pair.ok]
    if photos:
        import vs_reference

        composites, masks = vs_reference.make_photos(work / "photos", photos)
        pairs += [(path, masks / (path.stem + ".png")) for path in sorted(composites.glob("*.jpg"))]
    return pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="idih,idih-hrnet-w18s")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--photos", type=int, default=8, help="generated photos besides examples/ (0: none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    default_threads = torch.get_num_threads()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, avx512_bf16: {'avx512_bf16' in flags}, "
          f"amx_bf16: {'amx_bf16' in flags}; load average {os.getloadavg()[0]:.2f}", flush=True)
    results = {"torch": torch.__version__, "avx512_bf16": "avx512_bf16" in flags, "load_before": os.getloadavg(),
               "rows": []}
    with tempfile.TemporaryDirectory(prefix="harmonize-bf16-") as tmp:
        work = Path(tmp)
        pairs = _pairs(work, args.photos)
        for arch in args.archs.split(","):
            row, weights = bench_network(arch, args.repeat, default_threads)
            row["photos"] = bench_photos(arch, weights, pairs, work)
            results["rows"].append(row)
            label = LABELS.get(arch, arch)
            for key in ("ms_1_thread", f"ms_{default_threads}_threads"):
                times = row[key]
                print(f"{label} forward, {key[3:].replace('_', ' ')}: " + ", ".join(
                    f"{name} {ms:.1f} ms ({times['float32'] / ms:.2f}x)" for name, ms in times.items()))
            for name, error in row["fixture"].items():
                print(f"{label} fixture, {name}: max {error['max_levels']:.2f} levels, mean {error['mean_levels']:.3f}")
            for resolution, error in row["photos"].items():
                print(f"{label} {error['photos']} photos, {resolution}, bf16 vs float32: prediction max "
                      f"{error['prediction_max_levels']:.2f} mean {error['prediction_mean_levels']:.3f} levels; "
                      f"result max {error['result_max_levels']:.0f}, mean in the mask "
                      f"{error['result_mean_levels_in_mask']:.3f}", flush=True)
    results["load_after"] = os.getloadavg()
    print(f"load average after: {results['load_after'][0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
