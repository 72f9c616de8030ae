"""``harmonize apply`` against its floor, in one run: how far the command is from the least work it
must do, and where the rest goes.

    python benchmarks/apply_floor.py                   # floor, apply fixed / auto, reference loop, profile
    python benchmarks/apply_floor.py --archs idih --parts none --repeat 5
    python benchmarks/apply_floor.py --before OLD_CHECKOUT --json floor.json   # and an earlier commit's apply

The photos are ``benchmarks/vs_reference.py``'s 21 JPEG photos of 1.5-4K (scikit-image samples
upscaled, sensor-like noise, a soft object mask each, recoloured inside) and its random weights
(the parity fixtures' rule). Every measurement is a fresh process timed from start to exit, started
from a small helper process (vs_reference's spawner); the kinds alternate round by round and the
best of ``--repeat`` is kept (other jobs on a shared machine only ever slow a run down).

floor
    What no apply can avoid, on one thread: the interpreter start-up and ``import torch``, one
    decode of each composite and of each mask with Pillow, and one JPEG encode (quality 85, the
    same settings as apply's) of each result written to a file. Also reported alone: the start-up
    (``python -c "import torch"``). Both end with ``gc.freeze()``, as ``harmonize``'s console
    script does (Python's exit then skips a garbage collection over torch's objects: 0.3 s), so
    that the floor stays the least any apply must do.
apply
    ``harmonize apply COMPOSITES MASKS -o OUT --weights W --quality 85 --resolution fixed|auto``;
    the ratio apply / floor is printed (target: 1.3 or less). ``--before DIR`` measures the package
    in DIR too, in the same rounds, and says whether both wrote the same bytes.
reference
    The reference implementation's loop (``benchmarks/reference_loops.py``: decode, resize the whole
    photo to 256, predict at batch 1 with the plain network, resize back, encode), at torch's
    default threads and at one thread, the faster counting; ratio reference / apply (above 1: apply
    is faster).
profile
    One ``apply`` of each strategy run in-process by this script (``--profile-run``) with every
    stage wrapped by a timer: start-up (imports, the model, planning), then per stage the seconds
    spent on each thread (decode, mask, the network's views, the network, back to full
    resolution, encode + write), the main thread's waits and the report. A separate
    ``python -X importtime`` run lists the imports above 20 ms before the first image.

The load average is printed before and after: read the ratios (measured within one run), not the
absolute figures, on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FLOOR_SCRIPT = r"""
import sys
import torch
torch.set_num_threads(1)
from PIL import Image
for line in open(sys.argv[1], encoding="utf-8").read().splitlines():
    composite, mask, out = line.split("\t")
    image = Image.open(composite)
    image.load()
    if image.mode != "RGB":
        image = image.convert("RGB")
    Image.open(mask).load()
    image.save(out, "JPEG", quality=85, subsampling=2, optimize=False)
import gc
gc.freeze()  # as harmonize's console script does: the exit's collection over torch is avoidable
"""

STARTUP_SCRIPT = "import torch\nimport gc\ngc.freeze()"


def _load_line() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _floor_list(composites: Path, masks: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"{composite}\t{masks / (composite.stem + '.png')}\t{out / composite.name}"
             for composite in sorted(composites.glob("*.jpg"))]
    listing = out.parent / "floor.tsv"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def _apply_command(composites, masks, out, weights, resolution, extra=()):
    return [sys.executable, "-m", "harmonize_cli", "-q", "apply", str(composites), str(masks), "-o", str(out),
            "--weights", str(weights), "--resolution", resolution, "--quality", "85", "--overwrite", *extra]


def measure(args, vs, composites, masks, tmp):
    """Best whole-process seconds of every kind, kinds alternating round by round."""
    env = vs._environment()
    variants = {"": env}
    if args.before is not None:
        variants["before "] = vs._environment(args.before.resolve())
    listing = _floor_list(composites, masks, tmp / "floor-out")
    kinds = {"start-up": ([sys.executable, "-c", STARTUP_SCRIPT], env),
             "floor": ([sys.executable, "-c", FLOOR_SCRIPT, str(listing)], env)}
    archs = args.archs.split(",")
    for arch in archs:
        weights = tmp / f"{arch}.pth"
        for prefix, variant_env in variants.items():
            for resolution in ("fixed", "auto"):
                kinds[(arch, prefix + resolution)] = (_apply_command(
                    composites, masks, tmp / f"out-{arch}-{prefix.strip()}{resolution}", weights, resolution,
                    args.apply_args.split() if not prefix else ()), variant_env)
        if "reference" in args.parts:
            for threads in (0, 1):
                kinds[(arch, f"reference-{threads}")] = (vs.REFERENCE + [
                    "apply", arch, str(weights), str(composites), str(masks), str(tmp / "ref"),
                    "--threads", str(threads)], env)
    best = {kind: float("inf") for kind in kinds}
    for round_number in range(args.repeat):
        for kind, (command, kind_env) in kinds.items():
            seconds, _ = vs.timed_process(command, kind_env)
            best[kind] = min(best[kind], seconds)
            cpu = vs.SPAWNER.last.get("cpu_seconds", float("inf"))
            best[("cpu", kind)] = min(best.get(("cpu", kind), float("inf")), cpu)
        print(f"round {round_number + 1}/{args.repeat} done (load {_load_line()})", flush=True)
    return best


def report(best, archs, photos) -> list:
    floor = best["floor"]
    print(f"\nstart-up (python + import torch): {best['start-up']:.2f} s")
    print(f"floor (start-up + decode {photos} composites and masks + encode {photos} JPEGs, one thread): "
          f"{floor:.2f} s (work {floor - best['start-up']:.2f} s), CPU {best[('cpu', 'floor')]:.2f} s")
    rows = []
    for arch in archs:
        label = LABELS.get(arch, arch)
        reference = min((best.get((arch, f"reference-{threads}"), float("inf")) for threads in (0, 1)))
        for resolution in ("before fixed", "before auto", "fixed", "auto"):
            seconds = best.get((arch, resolution))
            if seconds is None:
                continue
            row = {"arch": arch, "resolution": resolution, "apply_s": seconds, "floor_s": floor,
                   "floor_ratio": seconds / floor, "above_floor_s": seconds - floor}
            row["cpu_s"] = best[("cpu", (arch, resolution))]
            line = (f"apply {resolution:12s} {label}: {seconds:.2f} s = {row['floor_ratio']:.2f}x the floor "
                    f"(+{row['above_floor_s']:.2f} s), CPU {row['cpu_s']:.2f} s")
            if reference != float("inf"):
                row["reference_s"], row["reference_ratio"] = reference, reference / seconds
                line += f"; reference loop {reference:.2f} s = {row['reference_ratio']:.2f}x apply"
            rows.append(row)
            print(line)
    return rows


LABELS = {"idih": "iDIH", "idih-hrnet-w18s": "HRNet18s-iDIH"}


def _check_outputs(tmp: Path, archs, before: bool) -> None:
    """With --before: whether the two checkouts wrote the same bytes (``fixed`` must)."""
    if not before:
        return
    for arch in archs:
        for resolution in ("fixed", "auto"):
            ours, theirs = tmp / f"out-{arch}-{resolution}", tmp / f"out-{arch}-before{resolution}"
            names = sorted(path.name for path in ours.glob("*.jpg"))
            same = sum((ours / name).read_bytes() == (theirs / name).read_bytes() for name in names)
            print(f"outputs {LABELS.get(arch, arch)} {resolution}: {same} of {len(names)} files byte-identical "
                  "to --before's")


# ------------------------------------------------------------------------------------ profiling

STAGES = (  # (module, attribute, label): the functions wrapped by a timer in the profiled run (no torch import)
    ("harmonize_cli.apply.batch", "read_image", "decode composite"),
    ("harmonize_cli.apply.batch", "read_mask", "decode mask"),
    ("harmonize_cli.apply.batch", "write_image", "encode + write"),  # before the write was split off
    ("harmonize_cli.apply.batch", "encode_for_writing", "encode"),
    ("harmonize_cli.apply.imageio", "atomic_write_bytes", "write (temp file, fsync, read-back, rename)"),
    ("harmonize_cli.apply.batch", "make_harmonizer", "model (import torch, resolve, load, optimise)"),
    ("harmonize_cli.apply.batch", "plan_outputs", "planning (pairs, swap check)"),
    ("harmonize_cli.apply.batch.BatchReport", "write", "report"),
    ("harmonize_cli.apply.pipeline", "wait", "main thread waiting"),
)
MODEL_STAGES = (  # wrapped once the model is loaded (their module imports torch)
    ("harmonize_cli.apply.harmonizer.Harmonizer", "prepare", "prepare (arrays, 256-px views)"),
    ("harmonize_cli.apply.harmonizer.Harmonizer", "predict", "network"),
    ("harmonize_cli.apply.harmonizer.Harmonizer", "finish_image", "back to full resolution"),
)


def _resolve(dotted):
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ImportError(dotted)


def profile_run(argv) -> int:
    """In-process apply with timed stages; prints one JSON line (seconds from this process's start)."""
    import threading

    born = time.time() - _process_age()
    clock = time.perf_counter
    origin = clock() - (time.time() - born)  # perf_counter value at the process's start
    marks = {"interpreter start-up": clock() - origin}
    started = clock()
    from harmonize_cli import cli

    marks["import harmonize_cli (cli)"] = clock() - started
    events = []
    lock = threading.Lock()

    def wrap(function, label):
        def timed(*args, **kwargs):
            begin, cpu = clock(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                end, cpu = clock(), time.thread_time() - cpu
                with lock:
                    events.append((label, threading.current_thread().name, begin - origin, end - origin, cpu))
        return timed

    def patch(stages):
        for dotted, attribute, label in stages:
            try:
                owner = _resolve(dotted)
            except ImportError:
                continue
            if hasattr(owner, attribute):
                setattr(owner, attribute, wrap(getattr(owner, attribute), label))

    started = clock()
    patch(STAGES)
    marks["import the apply modules"] = clock() - started
    import harmonize_cli.apply.batch as batch

    make_harmonizer = batch.make_harmonizer

    def make_and_patch(*args, **kwargs):
        harmonizer = make_harmonizer(*args, **kwargs)
        patch(MODEL_STAGES)
        return harmonizer

    batch.make_harmonizer = make_and_patch
    try:
        code = cli._run(argv)  # the console script's body, without its sys.exit
    finally:
        ended = clock() - origin
        print("PROFILE " + json.dumps({"marks": marks, "events": events, "end": ended}), flush=True)
    return code


def _process_age() -> float:
    """Seconds since this process started (Linux: /proc), 0 where unknown."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = float(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start)
    except (OSError, ValueError, IndexError):
        return 0.0


def summarise_profile(data, label) -> dict:
    events = data["events"]
    totals, threads, cpu = {}, {}, {}
    for stage, thread, begin, end, thread_cpu in events:
        totals[stage] = totals.get(stage, 0.0) + end - begin
        cpu[stage] = cpu.get(stage, 0.0) + thread_cpu
        threads.setdefault(thread, 0.0)
        if stage not in ("main thread waiting",) and thread != "MainThread":
            threads[thread] += end - begin
    images = [event for event in events if event[0] in ("decode composite", "encode + write") or
              event[0].startswith("write")]
    first = min((event[2] for event in images), default=0.0)
    last = max((event[3] for event in images), default=0.0)
    print(f"\nprofile {label}: process {data['end']:.2f} s (from its start to the end of the command)")
    for mark, seconds in data["marks"].items():
        print(f"  {mark:40s} {seconds:6.2f} s")
    print(f"  first image decoded from {first:.2f} s, last result written at {last:.2f} s "
          f"(images in flight for {last - first:.2f} s)")
    print("  stage seconds summed over threads: wall, and the calling thread's CPU time:")
    for stage, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"    {stage:40s} {seconds:6.2f} s  CPU {cpu[stage]:6.2f} s")
    busy = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in sorted(threads.items()) if seconds)
    print(f"  I/O threads busy: {busy}")
    return {"label": label, "process_s": data["end"], "marks": data["marks"], "stages_s": totals, "stages_cpu_s": cpu,
            "first_image_s": first, "last_write_s": last}


def run_profiles(args, vs, composites, masks, tmp) -> list:
    import subprocess

    env = vs._environment()
    summaries = []
    arch = args.archs.split(",")[0]
    for resolution in ("fixed", "auto"):
        out = tmp / f"profile-{resolution}"
        command = [sys.executable, str(HERE / "apply_floor.py"), "--profile-run", "-q", "apply", str(composites),
                   str(masks), "-o", str(out), "--weights", str(tmp / f"{arch}.pth"), "--resolution", resolution,
                   "--quality", "85", "--overwrite", *args.apply_args.split()]
        started = time.perf_counter()
        finished = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        line = next((line for line in finished.stdout.splitlines() if line.startswith("PROFILE ")), None)
        if finished.returncode != 0 or line is None:
            raise RuntimeError(f"the profiled run failed: {finished.stderr[-2000:]}")
        summary = summarise_profile(json.loads(line[len("PROFILE "):]), f"{LABELS.get(arch, arch)} {resolution}")
        summary["wall_s"] = wall
        print(f"  whole process seen from outside (timers on): {wall:.2f} s")
        summaries.append(summary)
    importtime = subprocess.run([sys.executable, "-X", "importtime", *_apply_command(
        composites, masks, tmp / "importtime", tmp / f"{arch}.pth", "fixed")[1:]], env=env, cwd=ROOT,
        capture_output=True, text=True)
    heavy = []
    for line in importtime.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        try:
            micros = int(cumulative)
        except ValueError:
            continue
        depth = (len(name) - len(name.lstrip())) // 2
        if micros >= 20000 and depth <= 1:
            heavy.append((name.strip(), micros / 1e6))
    print("\nimports of `harmonize apply` over 20 ms (top level, cumulative):")
    for name, seconds in heavy:
        print(f"  {name:40s} {seconds:6.3f} s")
    flagged = [name for name, _ in heavy if name.split(".")[0] in ("torchvision", "skimage", "scipy", "cv2")]
    print("  torchvision / scikit-image / scipy / cv2 imported: " + (", ".join(flagged) if flagged else "none"))
    return summaries


# ------------------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="idih,idih-hrnet-w18s")
    parser.add_argument("--parts", default="reference,profile",
                        help="besides the floor and apply (always measured): reference (the reference's loop), "
                             "profile (timed stages and imports)")
    parser.add_argument("--photos", type=int, default=21)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best of each kind is kept")
    parser.add_argument("--apply-args", default="", help="extra options for every apply run, e.g. '--precision bf16'")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="also measure apply from the package in DIR (a checkout of an earlier commit)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    import vs_reference as vs  # noqa: E402  (its photos, weights, spawner and reference loop)

    vs.SPAWNER = vs.Spawner()  # first, while this process is small
    system = {"python": platform.python_version(), "cpus": os.cpu_count(), "processor": vs._cpu_name(),
              "machine": platform.machine()}
    load_before = os.getloadavg()
    print(f"{system}\nload average before: {_load_line()}", flush=True)
    results = {"system": system, "load_before": load_before, "photos": args.photos, "repeat": args.repeat}
    try:
        with tempfile.TemporaryDirectory(prefix="harmonize-floor-") as tmp:
            tmp = Path(tmp)
            composites, masks = vs.make_photos(tmp / "photos", args.photos)
            for arch in args.archs.split(","):
                vs.save_weights(arch, tmp / f"{arch}.pth")
            print(f"{args.photos} photos and the weights written (load {_load_line()})", flush=True)
            best = measure(args, vs, composites, masks, tmp)
            results["best_s"] = {str(key): value for key, value in best.items()}
            results["rows"] = report(best, args.archs.split(","), args.photos)
            _check_outputs(tmp, args.archs.split(","), args.before is not None)
            if "profile" in args.parts:
                results["profiles"] = run_profiles(args, vs, composites, masks, tmp)
    finally:
        vs.SPAWNER.close()
    results["load_after"] = os.getloadavg()
    print(f"\nload average after: {_load_line()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--profile-run"]:  # the package from PYTHONPATH (run_profiles sets it)
        sys.exit(profile_run(sys.argv[2:]))
    sys.exit(main())
