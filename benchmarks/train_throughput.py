"""Samples per second and peak memory of one training step of `harmonize train`.

The step is the trainer's own (``harmonize_cli.training.step``): forward under autocast (``--amp``:
on CUDA bf16 where supported, else fp16 + GradScaler; off on CPU), FN-MSE in float32, backward,
Adam with the recipe's parameter groups (backbone lr x0.1), channels_last on CUDA. Each step is timed on its own (the loss is read
back, so the GPU has finished); the median and the best step are reported (other load on a shared
machine only ever slows a step down). Inputs are random 256 x 256 batches, so data
loading is excluded (see ``benchmarks/data_throughput.py`` for that side). Each architecture runs
in a fresh process so that its peak memory is its own: peak resident memory (CPU) or
``torch.cuda.max_memory_allocated`` (GPU).

    python benchmarks/train_throughput.py                                   # CPU: idih, idih-hrnet-w18s
    python benchmarks/train_throughput.py --device cuda --steps 50 --json train_gpu.json
    python benchmarks/train_throughput.py --device cuda --compile --amp bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

DEFAULT_ARCHS = ("idih", "idih-hrnet-w18s")


def measure(arch: str, batch: int, size: int, steps: int, warmup: int, device_name: str, amp: str,
            compile_model: bool) -> dict:
    import torch

    from harmonize_cli import zoo
    from harmonize_cli.device import resolve_device
    from harmonize_cli.training import TrainConfig
    from harmonize_cli.training.runtime import make_grad_scaler, resolve_amp
    from harmonize_cli.training.step import build_loss, build_optimizer, train_step

    device = resolve_device(device_name)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = zoo.create_model(arch).to(device).train()  # random init: speed does not depend on values
    if cuda:
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    config = TrainConfig(arch=arch).resolved()  # the paper's recipe: loss, Adam, parameter groups
    loss_fn = build_loss(config)
    optimizer = build_optimizer(model, config)
    amp_dtype, use_scaler = resolve_amp(amp, device)
    scaler = make_grad_scaler(device, use_scaler)
    step_model = torch.compile(model) if compile_model else model

    generator = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, size, size, generator=generator)
    target = image + 0.1 * torch.randn(batch, 3, size, size, generator=generator)
    mask = (torch.rand(batch, 1, size, size, generator=generator) > 0.7).float()
    image, target, mask = (t.to(device) for t in (image, target, mask))
    if cuda:
        image = image.contiguous(memory_format=torch.channels_last)
        mask = mask.contiguous(memory_format=torch.channels_last)

    inputs = {"image": image, "target": target, "mask": mask}

    def step():  # the trainer's own step
        loss, _ = train_step(step_model, inputs, loss_fn, optimizer, scaler=scaler, amp_dtype=amp_dtype)
        return loss

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step().item()  # waits for the GPU
        times.append(time.perf_counter() - started)
    times.sort()
    median = times[len(times) // 2]
    if cuda:
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
        peak_kind = "GPU max_memory_allocated"
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        peak_kind = "peak RSS of the process"
    return {
        "arch": arch, "batch": batch, "size": size, "steps": steps, "warmup": warmup,
        "device": torch.cuda.get_device_name(device) if cuda else f"CPU ({os.cpu_count()} cores, "
                                                                 f"{torch.get_num_threads()} threads)",
        "amp": "off" if amp_dtype is None else str(amp_dtype).replace("torch.", "") + (" + GradScaler" if use_scaler else ""),
        "compile": compile_model, "seconds_per_step": median, "best_seconds_per_step": times[0],
        "samples_per_s": batch / median, "best_samples_per_s": batch / times[0],
        "peak_memory_mib": round(peak_mib, 1), "peak_memory_kind": peak_kind,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "torch": str(torch.__version__), "python": platform.python_version(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default=",".join(DEFAULT_ARCHS), help="comma-separated architectures")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one architecture, print JSON
    args = parser.parse_args(argv)

    if args.one:
        result = measure(args.one, args.batch_size, args.size, args.steps, args.warmup, args.device, args.amp,
                         args.compile)
        print("RESULT " + json.dumps(result))
        return

    results = []
    for arch in [a.strip() for a in args.archs.split(",") if a.strip()]:
        command = [sys.executable, os.path.abspath(__file__), "--one", arch, "--batch-size", str(args.batch_size),
                   "--size", str(args.size), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--device", args.device, "--amp", args.amp] + (["--compile"] if args.compile else [])
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"{arch}: the measurement failed")
        result = json.loads(lines[-1][len("RESULT "):])
        results.append(result)
        print(f"{arch:18s} {result['samples_per_s']:8.2f} samples/s (best step {result['best_samples_per_s']:.2f})  "
              f"{result['seconds_per_step']:7.3f} s/step  "
              f"peak {result['peak_memory_mib']:8.1f} MiB ({result['peak_memory_kind']})  "
              f"batch {result['batch']} at {result['size']}, {result['device']}, amp {result['amp']}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
