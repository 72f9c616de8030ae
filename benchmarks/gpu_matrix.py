"""Throughput on one device across precisions and compilation, in one process (for
``tools/gpu_check.sh`` on a lent GPU; ``--tiny`` runs the same code on the CPU in seconds).

    python benchmarks/gpu_matrix.py --device cuda --json "$OUT/matrix.json"   # <= --budget-s seconds
    python benchmarks/gpu_matrix.py --tiny                                     # CPU, tiny sizes: a smoke run

For iDIH and HRNet18s-iDIH (random weights):

eval
    Images/s of the predictor (``harmonize_cli.inference.predict`` on the optimised network) at
    256 x 256, batches of ``--batch``, for float32 / bf16 / fp16 (fp16 on GPUs only; the bf16 and
    fp16 copies of ``--precision``), channels-last off and on, ``torch.compile`` off and on.
train
    Samples/s of a training step (forward under autocast in the precision, FN-MSE, backward, Adam)
    at 256 x 256, batches of ``--batch``, the same matrix (float32 = autocast off; fp16 with a
    GradScaler).
apply
    Photos/s of ``harmonize_folder`` (decode, the network at 256, ``auto`` at full resolution,
    encode JPEG) on ``--photos-2k`` photos of 2048 x 1536 and ``--photos-4k`` of 3840 x 2160, in
    float32 and the half precisions.

Every configuration is timed after a warm-up (compilation excluded); a configuration that would
start after ``--budget-s`` seconds is recorded as skipped, so one run stays within its budget.
Thresholds (``--check``, the default on CUDA): apply at 2K >= 100 photos/s on an H100-class GPU
(H100 / H200 / B200 in the device name); exit code 1 when one is missed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

ARCHS = ("idih", "idih-hrnet-w18s")
THRESHOLDS = {"apply 2K photos/s": 100.0}
H100_CLASS = ("H100", "H200", "B200", "GH200")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, device, steps: int, warmup: int = 2) -> float:
    """Seconds per call of ``step()``, median-free: total of ``steps`` calls after ``warmup``."""
    for _ in range(warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - started) / steps


def _dtype(precision):
    from harmonize_cli.inference_opt import PRECISIONS

    return PRECISIONS[precision]


def bench_eval(arch, precision, channels_last, compiled, device, size, batch, steps) -> float:
    from harmonize_cli import zoo
    from harmonize_cli.inference import pad_divisor, predict
    from harmonize_cli.inference_opt import optimize_for_inference, with_precision

    network = zoo.create_model(arch).to(device).eval()
    runner = with_precision(optimize_for_inference(network, device), precision)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    runner = runner.to(memory_format=memory)
    if compiled:
        runner = torch.compile(runner)
    image = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=memory)
    mask = (torch.rand(batch, 1, size, size, device=device) > 0.7).float()
    divisor = pad_divisor(network)

    def step():
        with torch.inference_mode():
            predict(runner, image, mask, divisor=divisor, peak=1.0)

    return batch / _timed(step, device, steps)


def bench_train(arch, precision, channels_last, compiled, device, size, batch, steps) -> float:
    from harmonize_cli import zoo
    from harmonize_cli.training.losses import fn_mse

    network = zoo.create_model(arch).to(device).train()
    memory = torch.channels_last if channels_last else torch.contiguous_format
    network = network.to(memory_format=memory)
    model = torch.compile(network) if compiled else network
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    image = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory)
    target = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory)
    mask = torch.zeros(batch, 1, size, size, device=device)
    mask[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=_dtype(precision), enabled=precision != "float32"):
            output = model(image, mask)
        output = output["images"] if isinstance(output, dict) else output
        loss = fn_mse(output.float(), target, mask)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    return batch / _timed(step, device, steps)


def bench_apply(arch, precision, device, folders, weights, work: Path) -> dict:
    from harmonize_cli.apply.batch import harmonize_folder

    rates = {}
    for label, (composites, masks) in folders.items():
        harmonize_folder(composites, masks, work / "warm", weights=str(weights), device=str(device), precision=precision,
                         overwrite=True)  # warm-up: oneDNN / cuDNN plans, the page cache
        report = harmonize_folder(composites, masks, work / f"{arch}-{precision}-{label}", weights=str(weights),
                                  device=str(device), precision=precision, overwrite=True, quality=90)
        rates[f"apply {label} photos/s"] = report.counts["done"] / max(report.processing_seconds, 1e-9)
    return rates


def _photos(work: Path, tiny: bool, photos_2k: int, photos_4k: int):
    from apply_throughput import make_inputs

    if tiny:
        return {"tiny": make_inputs(work / "tiny", 256, 192, 2)}
    return {"2K": make_inputs(work / "2k", 2048, 1536, photos_2k), "4K": make_inputs(work / "4k", 3840, 2160, photos_4k)}


def matrix(device, tiny: bool):
    precisions = ["float32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    compiles = [False, True] if device.type == "cuda" else [False]  # Inductor on the CPU: minutes per net
    return [config for config in itertools.product(precisions, (False, True), compiles)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--tiny", action="store_true", help="CPU-sized smoke run: batch 2, 1 step, 2 small photos")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--photos-2k", type=int, default=64)
    parser.add_argument("--photos-4k", type=int, default=16)
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=None,
                        help="assert the thresholds (default: on CUDA, not --tiny)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    size, batch, steps = (256, 2, 1) if args.tiny else (256, args.batch, args.steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    started = time.perf_counter()
    rows, skipped = [], []
    print(f"device {name}, torch {torch.__version__}, budget {args.budget_s:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="harmonize-matrix-") as tmp:
        work = Path(tmp)
        folders = _photos(work, args.tiny, args.photos_2k, args.photos_4k)
        for arch in args.archs.split(","):
            from harmonize_cli import zoo

            weights = work / f"{arch}.pth"
            torch.save(zoo.create_model(arch).state_dict(), weights)
            for precision, channels_last, compiled in matrix(device, args.tiny):
                label = f"{arch} {precision} channels-last {'on' if channels_last else 'off'} " \
                        f"compile {'on' if compiled else 'off'}"
                if time.perf_counter() - started > args.budget_s:
                    skipped.append(label)
                    continue
                row = {"arch": arch, "precision": precision, "channels_last": channels_last, "compile": compiled,
                       "eval images/s": bench_eval(arch, precision, channels_last, compiled, device, size, batch, steps),
                       "train samples/s": bench_train(arch, precision, channels_last, compiled, device, size, batch,
                                                      steps)}
                if channels_last and not compiled:  # apply runs its own (channels-last) network copy
                    row.update(bench_apply(arch, precision, device, folders, weights, work))
                rows.append(row)
                print(label + ": " + ", ".join(f"{key} {value:.1f}" for key, value in row.items()
                                               if isinstance(value, float)), flush=True)
    failures = []
    check = args.check if args.check is not None else (device.type == "cuda" and not args.tiny)
    if check and any(marker in name for marker in H100_CLASS):
        for key, least in THRESHOLDS.items():
            best = max((row.get(key, 0.0) for row in rows), default=0.0)
            status = "ok" if best >= least else "MISSED"
            print(f"threshold {key} >= {least:g}: best {best:.1f} ({status})")
            if best < least:
                failures.append(key)
    elif check:
        print(f"thresholds not asserted: {name} is not H100-class")
    for label in skipped:
        print(f"skipped (budget): {label}")
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows,
                                         "skipped": skipped, "failures": failures, "load": os.getloadavg()},
                                        indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
