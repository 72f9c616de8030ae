"""`harmonize video`: frames per second and peak memory, and how much the temporal smoothing steadies.

Two measurements, offline (no released weights needed):

``speed``
    A clip of a slow pan across a scikit-image photo (upscaled with Lanczos to the clip's size),
    with a moving elliptical mask video and an AAC track, encoded with libx264 at CRF 18; then
    ``harmonize video`` runs on it as a user would (a separate process, ``--model`` as given,
    default ``lab-transfer``, H.264 output at the default CRF 16, ``--temporal ema``). Reported:
    frames per second of the whole command (decode, network, full-resolution correction, encode,
    audio copy) and the process's peak resident memory.

``flicker``
    A synthetic clip from real photos (a pan over one photo, an object from another moving across
    it), whose composite has the object's colours cast (per-channel gains). The "network" is an
    oracle: the true frame at 256 px with the foreground scaled by a random per-frame gain
    (uniform within +-``--jitter``), the way a per-frame model jumps. Reported for
    ``--temporal none`` and the EMA at several weights: the foreground flicker of ``harmonize
    eval`` on video (docs/evaluation.md: the frame-to-frame change of the mean foreground error,
    in 0-255 levels) and the foreground MSE (fMSE) against the true frames. A second clip adds a steady lighting change (the true
    foreground brightens by ``--ramp`` over the clip) to show what the smoothing's lag costs.

Rerun::

    python benchmarks/video_throughput.py speed --size 1280x720 --frames 48
    python benchmarks/video_throughput.py speed --size 3840x2160 --frames 24
    python benchmarks/video_throughput.py flicker --frames 48
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------------ clips

def pan_frames(photo: str, count: int, width: int, height: int, step: int):
    """``count`` frames of ``width`` x ``height`` panning ``step`` px a frame across ``photo``."""
    from PIL import Image
    from skimage import data

    image = Image.fromarray(getattr(data, photo)()[..., :3])
    scale = max(height / image.height, (width + step * count) / image.width) * 1.05
    big = np.asarray(image.resize((int(image.width * scale) + 1, int(image.height * scale) + 1), Image.LANCZOS))
    top = (big.shape[0] - height) // 2
    for index in range(count):
        yield np.ascontiguousarray(big[top:top + height, step * index:step * index + width])


def ellipse_mask(width: int, height: int, index: int, count: int) -> np.ndarray:
    """An ellipse a third of the frame wide that crosses a quarter of it over the clip (0/1)."""
    y, x = np.mgrid[0:height, 0:width]
    cx = width * (0.35 + 0.25 * index / max(1, count - 1))
    return ((((x - cx) / (width / 6)) ** 2 + ((y - height / 2) / (height / 4)) ** 2) <= 1).astype(np.float32)


def encode(path: Path, frames, rate: int, audio_seconds: float = 0.0, crf: int = 18) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = None
        audio = container.add_stream("aac", rate=44100) if audio_seconds else None
        for index, rgb in enumerate(frames):
            if stream is None:
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            samples = (0.2 * np.sin(np.arange(int(44100 * audio_seconds)) * 0.06)).astype(np.float32)
            for start in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 44100, start, Fraction(1, 44100)
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)


# ------------------------------------------------------------------------------------ speed

def speed(args) -> None:
    width, height = (int(v) for v in args.size.lower().split("x"))
    rate = 30
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        started = time.perf_counter()
        encode(folder / "clip.mp4", pan_frames("astronaut", args.frames, width, height, max(1, width // 200)), rate,
               audio_seconds=args.frames / rate)
        masks = (np.repeat((ellipse_mask(width, height, i, args.frames) * 255).astype(np.uint8)[..., None], 3, 2)
                 for i in range(args.frames))
        encode(folder / "mask.mp4", masks, rate)
        print(f"clip: {args.frames} frames {width}x{height} made in {time.perf_counter() - started:.1f} s")
        command = [sys.executable, "-m", "harmonize_cli", "video", str(folder / "clip.mp4"), str(folder / "mask.mp4"),
                   "-o", str(folder / "out.mp4"), "--model", args.model, "--device", args.device, "-q"]
        if args.weights:
            command += ["--weights", args.weights]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HARMONIZE_OFFLINE": "1"}
        started = time.perf_counter()
        subprocess.run(command, check=True, env=env)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB (Linux)
        print(f"harmonize video --model {args.model} --device {args.device}: {args.frames / seconds:.2f} frames/s "
              f"({seconds:.1f} s for {args.frames} frames, process start and model load included), "
              f"peak RSS {peak:.0f} MiB")


# ---------------------------------------------------------------------------------- flicker

class JitteringOracle:
    """Builds the oracle ``Harmonizer``: the true frame, foreground scaled by a per-frame gain."""

    @staticmethod
    def create(truths, gains):
        from harmonize_cli.apply.harmonizer import Harmonizer
        from harmonize_cli.apply.resolution import resize_rgb

        class Oracle(Harmonizer):
            def predict(self, jobs):
                for job in jobs:
                    if job.bbox is not None:
                        truth = resize_rgb(truths[job.context.index], (self.input_size, self.input_size))
                        gain = 1.0 + (gains[job.context.index] - 1.0) * job.net_mask[None]
                        job.prediction = np.clip(truth * gain, 0.0, 1.0).astype(np.float32)

        return Oracle(model="composite", device="cpu", quiet=True)


def synthetic_clip(count: int, width: int, height: int, ramp: float):
    cast = np.array([0.65, 0.9, 0.85])
    truths, composites, masks = [], [], []
    for index, (background, obj) in enumerate(zip(pan_frames("astronaut", count, width, height, 2),
                                                  pan_frames("coffee", count, width, height, 1))):
        mask = ellipse_mask(width, height, index, count)
        inside = mask > 0
        light = 1.0 + ramp * index / max(1, count - 1)
        truth = background.copy()
        truth[inside] = np.clip(obj[inside] * 0.8 * light, 0, 255).round().astype(np.uint8)
        composite = truth.copy()
        composite[inside] = (obj[inside] * 0.8 * cast).round().astype(np.uint8)
        truths.append(truth)
        composites.append(composite)
        masks.append(mask)
    return truths, composites, masks


def flicker_and_fmse(folder: Path, truths, masks):
    """The foreground flicker of `harmonize eval` on video (docs/evaluation.md) and the mean fMSE."""
    import torch
    from PIL import Image

    from harmonize_cli.evaluation.video_metrics import foreground_flicker

    results = np.stack([np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))])
    planar = (lambda frames: torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).double())
    flicker = foreground_flicker(planar(results), planar(np.stack(truths)), torch.from_numpy(np.stack(masks))[:, None])
    errors = [((result.astype(np.float64) - truth)[mask > 0] ** 2).mean()
              for result, truth, mask in zip(results, truths, masks)]
    return float(flicker), float(np.mean(errors))


def flicker(args) -> None:
    from PIL import Image

    from harmonize_cli import harmonize_video

    width, height = 320, 240
    gains = 1.0 + np.random.default_rng(args.seed).uniform(-args.jitter, args.jitter, args.frames)
    print(f"{args.frames} frames {width}x{height}, per-frame foreground gain within +-{args.jitter:.0%} (seed {args.seed})")
    print("| clip | temporal | flicker | vs none | fMSE | vs none |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for label, ramp in (("steady light", 0.0), (f"light +{args.ramp:.0%} over the clip", args.ramp)):
        truths, composites, masks = synthetic_clip(args.frames, width, height, ramp)
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            for name, images in (("in", composites), ("masks", [(m * 255).astype(np.uint8) for m in masks])):
                (folder / name).mkdir()
                for index, image in enumerate(images):
                    Image.fromarray(image).save(folder / name / f"{index:04d}.png")
            baseline = None
            for temporal, weight in [("none", 1.0)] + [("ema", w) for w in args.weights]:
                out = folder / f"out-{temporal}-{int(weight * 100)}"
                harmonize_video(folder / "in", folder / "masks", out, harmonizer=JitteringOracle.create(truths, gains),
                                temporal=temporal, ema_weight=weight)
                value, fmse = flicker_and_fmse(out, truths, masks)
                baseline = baseline or (value, fmse)
                name = "none" if temporal == "none" else f"ema {weight}"
                print(f"| {label} | {name} | {value:.2f} | {value / baseline[0]:.3f}x | {fmse:.2f} | "
                      f"{fmse / baseline[1]:.3f}x |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("speed")
    one.add_argument("--size", default="1280x720")
    one.add_argument("--frames", type=int, default=48)
    one.add_argument("--model", default="lab-transfer")
    one.add_argument("--weights", default=None)
    one.add_argument("--device", default="cpu")
    two = sub.add_parser("flicker")
    two.add_argument("--frames", type=int, default=48)
    two.add_argument("--jitter", type=float, default=0.05)
    two.add_argument("--ramp", type=float, default=0.3)
    two.add_argument("--weights", type=float, nargs="+", default=[0.2, 0.3, 0.5])
    two.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    {"speed": speed, "flicker": flicker}[args.what](args)


if __name__ == "__main__":
    main()
