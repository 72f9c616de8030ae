"""Side by side with the reference implementation's loops, in one run: same weights, same photos.

    python benchmarks/vs_reference.py                           # everything, best of 3
    python benchmarks/vs_reference.py --parts forward --repeat 5
    python benchmarks/vs_reference.py --archs idih --photos 8 --eval-images 40 --json vs.json

Three parts, each for iDIH and iDIH + HRNetV2-W18-small-v2 (random weights, saved once as a plain
state dict; the speed does not depend on their values):

forward
    The network at 256 x 256, batch 1 and batch 8: the plain module (what the reference runs) vs
    the copy our predictor runs (``harmonize_cli.inference_opt.optimize_for_inference``), measured
    alternately in this process, best of ``--repeat`` rounds; the largest output difference is
    printed too.
apply
    ``--photos`` JPEG photos of 1.5-4K (photo-like: scikit-image sample pictures upscaled, with
    sensor-like noise; an object mask per photo, recoloured inside) through, each as a fresh
    process timed from start to exit (interpreter start-up and ``import torch`` included on both
    sides): the reference's loop written with this project's dependencies
    (``benchmarks/reference_loops.py``: decode with Pillow, resize the whole photo to 256 with
    OpenCV ``INTER_LINEAR`` semantics, predict at batch 1 with the plain network, resize the whole
    prediction back to full size, blend nothing, encode JPEG quality 85, one file after another) and ``harmonize apply --weights W --quality 85`` with
    ``--resolution fixed`` and ``auto`` (the same JPEG settings, so encoders are not compared).
eval
    ``--eval-images`` test composites of 480 x 640 in iHarmony4 folder layout: the reference's
    evaluation loop (decode composite, mask and real image with Pillow, resize to 256, batch 1,
    de-normalise, clamp, MSE / fMSE / PSNR) vs ``harmonize eval --data DIR --weights W`` at
    fixed256; both as fresh processes, and both tables' "All" MSE are printed as a check.

Runs of the two sides alternate and the best of ``--repeat`` is kept (other jobs on a shared
machine only ever slow a run down); the load average is printed before and after. The reference's
loops run with torch's default threads (all cores) and with one thread (``--reference-threads``):
on a loaded machine OpenMP threads waiting for each other slow the default many times over, so
the faster of the two counts, which is the conservative figure. Ratios are reference time / our
time (above 1: we are faster). ``--before DIR`` also measures the package in DIR (a checkout of
an earlier commit) as "before", in the same run.
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

ROOT = Path(__file__).resolve().parents[1]


def spawner_loop() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        started = time.perf_counter()
        process = subprocess.Popen(request["command"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env=request["env"], cwd=request["cwd"])
        stderr = process.stderr.read().decode(errors="replace")  # never blocks the child on a full pipe
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        print(json.dumps({"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024.0,
                          "cpu_seconds": usage.ru_utime + usage.ru_stime,
                          "code": os.waitstatus_to_exitcode(status), "stderr": stderr[-2000:]}), flush=True)


if __name__ == "__main__" and sys.argv[1:] == ["--spawner"]:
    spawner_loop()  # before numpy: the measured processes are forked from this small process
    sys.exit(0)

import numpy as np

sys.path.insert(0, str(ROOT))  # this checkout's package, whatever else is installed
REFERENCE = [sys.executable, str(ROOT / "benchmarks" / "reference_loops.py")]  # the reference's loops
ARCHS = ("idih", "idih-hrnet-w18s")
LABELS = {"idih": "iDIH", "idih-hrnet-w18s": "HRNet18s-iDIH"}
# (width, height) of the generated photos: 1.5-4K, landscape and portrait, 4:3, 3:2 and 16:9
PHOTO_SIZES = [(1680, 1120), (4096, 2304), (2048, 1536), (3000, 2000), (1536, 2048), (2560, 1440),
               (4000, 3000), (1920, 1280), (2304, 3072), (3264, 2448)]


# ----------------------------------------------------------------------------------------- inputs

def _sample_pictures():
    from skimage import data

    pictures = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry"):
        try:
            picture = getattr(data, name)()
        except Exception:  # a sample that needs a download: skip it
            continue
        if picture.ndim == 3 and picture.shape[2] == 3:
            pictures.append(picture)
    return pictures


def make_photos(folder: Path, count: int, seed: int = 0, sizes=PHOTO_SIZES):
    """``count`` composites (JPEG quality 92) and masks (PNG) of 1.5-4K (``sizes``); returns
    (composites, masks)."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    composites, masks = folder / "composites", folder / "masks"
    composites.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    pictures = _sample_pictures()
    for index in range(count):
        width, height = sizes[index % len(sizes)]
        picture = Image.fromarray(pictures[index % len(pictures)]).resize((width, height), Image.BICUBIC)
        noise = rng.normal(0.0, 4.0, (height, width, 1)).astype(np.float32)
        image = np.clip(np.asarray(picture, dtype=np.float32) + noise, 0, 255)
        mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(mask)
        cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
        rx, ry = rng.uniform(0.1, 0.25) * width, rng.uniform(0.1, 0.3) * height
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        draw.rectangle((cx - 0.3 * rx, cy, cx + 0.3 * rx, min(height - 1, cy + 1.6 * ry)), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(2))  # a soft edge, like a real cut-out
        weight = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
        shifted = np.clip(image * rng.uniform(0.75, 1.25, 3) + rng.uniform(-20, 20, 3), 0, 255)
        image = image + weight * (shifted - image)
        Image.fromarray(np.round(image).astype(np.uint8)).save(composites / f"photo{index:02d}.jpg", quality=92)
        mask.save(masks / f"photo{index:02d}.png")
    return composites, masks


def make_eval_set(folder: Path, count: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from minidata import make_mini_iharmony

    return make_mini_iharmony(folder, n_train=1, n_test=max(1, count // 4), size=(480, 640), adobe_scale=1)


def random_weights(arch: str) -> dict:
    """Weights by the parity fixtures' rule (shared/parity/README.md: realistic magnitudes and
    batch-norm statistics; the reference initialisation of an untrained HRNet gives outputs in the
    thousands, where float32 itself is off by units)."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from parity_utils import generate_weights

    from harmonize_cli import zoo

    with torch.device("meta"):
        layout = zoo.create_model(arch, init=False).state_dict()
    manifest = [(key, list(value.shape), str(value.dtype)) for key, value in layout.items()]
    return generate_weights(manifest, seed=0)[0]


def save_weights(arch: str, path: Path) -> None:
    import torch

    torch.save(random_weights(arch), path)


# ------------------------------------------------------------------------------------- measuring

class Spawner:
    """Starts the measured processes from a small helper process started first: a child forked from
    this (large) benchmark process would report this process's resident memory as its own peak
    (Linux keeps the high-water mark across exec)."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--spawner"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, command, env=None, cwd=ROOT):
        """(wall seconds from start to exit, peak RSS MiB) of a fresh process started in ``cwd``
        (``python -m`` puts the working directory first on the path: it picks the package)."""
        request = {"command": [str(part) for part in command], "env": env, "cwd": str(cwd)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        self.last = answer  # also the child's CPU seconds (user + system)
        if answer["code"] != 0:
            raise RuntimeError(f"{' '.join(map(str, command))} failed ({answer['code']}): {answer['stderr']}")
        return answer["seconds"], answer["peak_mib"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


SPAWNER = None


def timed_process(command, env=None):
    return SPAWNER.run(command, env, cwd=Path(env["PYTHONPATH"].split(os.pathsep)[0]) if env else ROOT)


def _environment(root: Path = ROOT):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("HARMONIZE_OFFLINE", "1")
    return env


def _ours(variants):
    """{label: environment} of the package copies measured as "ours" (this one, and --before)."""
    return {label: _environment(root) for label, root in variants.items()}


def bench_forward(arch: str, repeat: int):
    import torch

    from harmonize_cli import zoo
    from harmonize_cli.inference_opt import optimize_for_inference

    torch.manual_seed(0)
    plain = zoo.create_model(arch, weights=random_weights(arch))
    fast = optimize_for_inference(plain)
    rows = []
    for batch in (1, 8):
        image = torch.randn(batch, 3, 256, 256)
        mask = (torch.rand(batch, 1, 256, 256) > 0.7).float()
        best = {"reference": float("inf"), "ours": float("inf")}
        with torch.inference_mode():
            difference = (plain(image, mask) - fast(image, mask)).abs().max().item()
            for _ in range(repeat):
                for label, network in (("reference", plain), ("ours", fast)):
                    started = time.perf_counter()
                    network(image, mask)
                    best[label] = min(best[label], time.perf_counter() - started)
        rows.append({"arch": arch, "batch": batch, "reference_ms": 1000 * best["reference"] / batch,
                     "ours_ms": 1000 * best["ours"] / batch, "ratio": best["reference"] / best["ours"],
                     "max_abs_diff": difference})
    return rows


def bench_apply(arch: str, weights: Path, composites: Path, masks: Path, work: Path, repeat: int, variants,
                reference_threads):
    commands = {(f"reference-{threads}", None): (
        REFERENCE + ["apply", arch, str(weights), str(composites), str(masks), str(work / "ref"),
                     "--threads", str(threads)], _environment()) for threads in reference_threads}
    for variant, env in _ours(variants).items():
        for resolution in ("fixed", "auto"):
            commands[(variant, resolution)] = ([
                sys.executable, "-m", "harmonize_cli", "-q", "apply", str(composites), str(masks),
                "-o", str(work / f"{variant}-{resolution}"), "--weights", str(weights), "--resolution", resolution,
                "--quality", "85", "--overwrite"], env)
    best = {key: (float("inf"), 0.0) for key in commands}
    for _ in range(repeat):
        for key, (command, env) in commands.items():
            seconds, peak = timed_process(command, env)
            best[key] = (min(best[key][0], seconds), max(best[key][1], peak))
    references = {threads: best[(f"reference-{threads}", None)] for threads in reference_threads}
    reference = min(seconds for seconds, _ in references.values())
    return [{"arch": arch, "work": f"apply {resolution}", "variant": variant, "reference_s": reference,
             "reference_by_threads_s": {str(threads): value[0] for threads, value in references.items()},
             "ours_s": best[(variant, resolution)][0], "ratio": reference / best[(variant, resolution)][0],
             "peak_rss_mib": best[(variant, resolution)][1],
             "reference_peak_rss_mib": max(value[1] for value in references.values())}
            for variant in variants for resolution in ("fixed", "auto")]


def bench_memory(arch: str, weights: Path, composites: Path, masks: Path, work: Path):
    """Peak resident memory of whole processes on one photo: ours (fixed, auto) and the reference."""
    rows = {"reference": timed_process(REFERENCE + ["apply", arch, str(weights), str(composites), str(masks),
                                                    str(work / "ref")], _environment())}
    for resolution in ("fixed", "auto"):
        rows[resolution] = timed_process([sys.executable, "-m", "harmonize_cli", "-q", "apply", str(composites),
                                          str(masks), "-o", str(work / resolution), "--weights", str(weights),
                                          "--resolution", resolution, "--quality", "85", "--overwrite"],
                                         _environment())
    return [{"arch": arch, "work": f"one 24 MP photo, {label}", "seconds": seconds, "peak_rss_mib": peak}
            for label, (seconds, peak) in rows.items()]


def bench_eval(arch: str, weights: Path, data: Path, work: Path, repeat: int, variants, reference_threads):
    reference_json = work / "ref_eval.json"
    commands = {f"reference-{threads}": (REFERENCE + ["eval", arch, str(weights), str(data), str(reference_json),
                                                      "--threads", str(threads)], _environment())
                for threads in reference_threads}
    for variant, env in _ours(variants).items():
        commands[variant] = ([sys.executable, "-m", "harmonize_cli", "-q", "eval", "--data", str(data),
                              "--weights", str(weights), "--resize", "fixed256", "-o", str(work / f"{variant}.json")],
                             env)
    best = {label: float("inf") for label in commands}
    for _ in range(repeat):
        for label, (command, env) in commands.items():
            best[label] = min(best[label], timed_process(command, env)[0])
    reference = json.loads(reference_json.read_text())
    reference_s = min(best[f"reference-{threads}"] for threads in reference_threads)
    return [{"arch": arch, "work": "eval fixed256", "variant": variant, "reference_s": reference_s,
             "reference_by_threads_s": {str(threads): best[f"reference-{threads}"] for threads in reference_threads},
             "ours_s": best[variant], "ratio": reference_s / best[variant], "images": reference["N"],
             "reference_mse": reference["MSE"],
             "ours_mse": json.loads((work / f"{variant}.json").read_text())["by_subset"]["All"]["MSE"]}
            for variant in variants]


# ------------------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--parts", default="forward,apply,eval,memory",
                        help="forward, apply, eval and memory (peak RSS on one 6000x4000 photo)")
    parser.add_argument("--photos", type=int, default=21)
    parser.add_argument("--eval-images", type=int, default=136)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per measurement; the best is kept")
    parser.add_argument("--forward-repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="also measure the package in DIR (a checkout of an earlier commit) as \"before\"")
    parser.add_argument("--reference-threads", default="0,1",
                        help="torch threads of the reference's loops, each measured; the fastest counts "
                             "(0: torch's default, all cores; 1 avoids OpenMP stalls on a loaded machine)")
    args = parser.parse_args(argv)
    reference_threads = [int(value) for value in args.reference_threads.split(",")]

    global SPAWNER
    SPAWNER = Spawner()  # first, while this process is small
    import torch

    archs, parts = args.archs.split(","), set(args.parts.split(","))
    load_before = os.getloadavg()
    system = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "machine": platform.machine(), "processor": _cpu_name()}
    print(f"{system}\nload average before: {' '.join(f'{x:.2f}' for x in load_before)}", flush=True)
    results = {"forward": [], "apply": [], "eval": [], "memory": []}
    variants = {"after": ROOT} if args.before is None else {"before": args.before.resolve(), "after": ROOT}
    with tempfile.TemporaryDirectory(prefix="harmonize-vs-ref-") as tmp:
        tmp = Path(tmp)
        if "apply" in parts:
            started = time.time()
            composites, masks = make_photos(tmp / "photos", args.photos)
            print(f"{args.photos} photos written in {time.time() - started:.0f} s", flush=True)
        if "eval" in parts:
            data = make_eval_set(tmp / "iHarmony4", args.eval_images)
        if "memory" in parts:
            big = make_photos(tmp / "big", 1, seed=1, sizes=[(6000, 4000)])
        for arch in archs:
            weights = tmp / f"{arch}.pth"
            save_weights(arch, weights)
            if "forward" in parts:
                for row in bench_forward(arch, args.forward_repeat):
                    results["forward"].append(row)
                    print(f"forward {LABELS.get(arch, arch)} batch {row['batch']}: reference {row['reference_ms']:.1f} "
                          f"ms/image, ours {row['ours_ms']:.1f} ({row['ratio']:.2f}x), max |diff| "
                          f"{row['max_abs_diff']:.1e}", flush=True)
            if "apply" in parts:
                for row in bench_apply(arch, weights, composites, masks, tmp / "out", args.repeat, variants,
                                       reference_threads):
                    results["apply"].append(row)
                    print(f"{row['work']} {LABELS.get(arch, arch)} ({row['variant']}): reference {row['reference_s']:.2f} s, ours "
                          f"{row['ours_s']:.2f} s ({row['ratio']:.2f}x), peak RSS {row['peak_rss_mib']:.0f} MiB "
                          f"(reference {row['reference_peak_rss_mib']:.0f})", flush=True)
            if "eval" in parts:
                for row in bench_eval(arch, weights, data, tmp, args.repeat, variants, reference_threads):
                    results["eval"].append(row)
                    print(f"eval {LABELS.get(arch, arch)} ({row['variant']}, {row['images']} images): reference "
                          f"{row['reference_s']:.2f} s, ours {row['ours_s']:.2f} s ({row['ratio']:.2f}x); All MSE "
                          f"{row['reference_mse']:.2f} / {row['ours_mse']:.2f}", flush=True)
            if "memory" in parts:
                for row in bench_memory(arch, weights, *big, tmp / "big-out"):
                    results["memory"].append(row)
                    print(f"{row['work']} {LABELS.get(arch, arch)}: {row['seconds']:.2f} s, peak RSS "
                          f"{row['peak_rss_mib']:.0f} MiB", flush=True)
    SPAWNER.close()
    load_after = os.getloadavg()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load_after)}")
    _print_table(results)
    if args.json:
        args.json.write_text(json.dumps({"system": system, "load_before": load_before, "load_after": load_after,
                                         "photos": args.photos, "repeat": args.repeat, **results}, indent=2) + "\n")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _print_table(results) -> None:
    print("\n| work | model | variant | reference | ours | ratio |\n| --- | --- | --- | ---: | ---: | ---: |")
    for row in results["forward"]:
        print(f"| forward, batch {row['batch']} (per image) | {LABELS.get(row['arch'], row['arch'])} | after | "
              f"{row['reference_ms']:.1f} ms | {row['ours_ms']:.1f} ms | {row['ratio']:.2f} |")
    for row in results["apply"] + results["eval"]:
        print(f"| {row['work']} | {LABELS.get(row['arch'], row['arch'])} | {row['variant']} | "
              f"{row['reference_s']:.2f} s | {row['ours_s']:.2f} s | {row['ratio']:.2f} |")
    for row in results["memory"]:
        print(f"| {row['work']} | {LABELS.get(row['arch'], row['arch'])} | peak RSS {row['peak_rss_mib']:.0f} MiB "
              f"| {row['seconds']:.2f} s | | |")


if __name__ == "__main__":
    sys.exit(main())
