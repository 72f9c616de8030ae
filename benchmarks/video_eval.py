"""Video evaluation on a HYouTube-layout set: packing and evaluation speed, and what the flicker reads.

    python benchmarks/video_eval.py --clips 8 --frames 20 --json video_eval.json

Builds a test set in HYouTube's layout from scikit-image's photos (tests/minivideo.py:
``make_clip_set``, a window moving across a photo, an object moving with the content, a
per-clip gain and gamma on the foreground; 180 x 320 JPEG frames by default), then

1. packs it with ``pack_dataset`` (frames/s, best of ``--repeat``);
2. evaluates the ``composite`` and ``lab-transfer`` baselines at fixed256 (frames/s of the
   whole pass; the overall MSE, fMSE, PSNR and foreground flicker);
3. calibrates the flicker: an oracle that returns the real frame with a random per-frame gain
   ``1 + sigma * N(0, 1)`` on the foreground, for several sigma; the flicker should grow
   linearly with sigma, close to ``E|g' - g| * mean foreground level = 2 sigma / sqrt(pi) * L``
   (the gains of two frames differ by ``sigma * sqrt(2) * N(0, 1)``);
4. times the extra work of the temporal figure per frame (the foreground-mean colour error)
   against the image metrics, on a batch of 256 x 256 frames.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def _best(repeat, work):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def _oracle_flicker(dataset, sigmas, seed):
    """Flicker and fMSE of the real frames with a random per-frame foreground gain, per sigma."""
    from harmonize_cli.evaluation.metrics import fmse
    from harmonize_cli.evaluation.video_metrics import foreground_flicker

    clips = {}
    for index in range(len(dataset)):
        sample = dataset[index]
        clips.setdefault(sample["clip"], []).append((sample["frame"], sample["target_255"], sample["mask"]))
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        changes, pairs, fmses, levels = 0.0, 0, [], []
        for frames in clips.values():
            frames.sort(key=lambda item: item[0])
            target = torch.stack([f[1] for f in frames])
            mask = torch.stack([f[2] for f in frames])
            gain = 1 + sigma * torch.randn(len(frames), 1, 1, 1, generator=generator)
            pred = (target * (1 + (gain - 1) * mask)).clamp(0, 255)
            value = foreground_flicker(pred, target, mask)
            count = len(frames) - 1
            changes += (value or 0.0) * count
            pairs += count
            fmses += fmse(pred, target, mask).tolist()
            levels += ((mask * target).sum(dim=(2, 3)) / mask.sum(dim=(2, 3))).mean(dim=1).tolist()
        level = sum(levels) / len(levels)
        rows.append({"sigma": sigma, "flicker": changes / pairs, "expected": 2 * sigma / math.sqrt(math.pi) * level,
                     "fMSE": sum(fmses) / len(fmses), "mean_foreground_level": level})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--workers", type=int, default=0, help="prepare's and eval's worker processes")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    from minivideo import make_clip_set

    from harmonize_cli import zoo
    from harmonize_cli.data import HarmonizationDataset, eval_transform
    from harmonize_cli.data.pack import pack_dataset
    from harmonize_cli.evaluation import evaluate
    from harmonize_cli.evaluation.metrics import image_metrics
    from harmonize_cli.evaluation.video_metrics import foreground_mean_error

    torch.manual_seed(args.seed)
    figures = {"clips": args.clips, "frames_per_clip": args.frames, "size": [args.height, args.width],
               "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as folder:
        root = make_clip_set(Path(folder) / "HYouTube", clips=args.clips, frames=args.frames,
                             size=(args.height, args.width), seed=args.seed)
        frames = args.clips * args.frames
        output = Path(folder) / "hyoutube.h5"
        seconds, _ = _best(args.repeat, lambda: pack_dataset(root, output=output, workers=args.workers,
                                                             splits="test", force=True))
        figures["prepare_frames_per_s"] = frames / seconds
        print(f"prepare: {frames} frames in {seconds:.2f} s ({frames / seconds:.0f} frames/s)")

        dataset = HarmonizationDataset(output, split="test", transform=eval_transform("fixed256"), keep_raw=True)
        for name in ("composite", "lab-transfer"):
            model = zoo.resolve(name, None)
            seconds, result = _best(args.repeat, lambda: evaluate(model, dataset, workers=args.workers,
                                                                  progress=False, device="cpu"))
            overall = result.by_clip["All"]
            figures[name] = {"frames_per_s": frames / seconds, **{k: overall[k] for k in ("MSE", "fMSE", "PSNR",
                                                                                           "flicker")}}
            print(f"eval {name}: {frames / seconds:.1f} frames/s; MSE {overall['MSE']:.2f}, fMSE "
                  f"{overall['fMSE']:.2f}, PSNR {overall['PSNR']:.2f}, flicker {overall['flicker']:.3f}")

        rows = _oracle_flicker(dataset, (0.0, 0.01, 0.02, 0.04), args.seed)
        figures["oracle_gain_jitter"] = rows
        for row in rows:
            print(f"oracle, foreground gain jitter sigma {row['sigma']:.2f}: flicker {row['flicker']:.3f} "
                  f"(2 sigma L / sqrt(pi) = {row['expected']:.3f}), fMSE {row['fMSE']:.2f}")

    batch = 16
    pred, target = torch.rand(batch, 3, 256, 256) * 255, torch.rand(batch, 3, 256, 256) * 255
    mask = (torch.rand(batch, 1, 256, 256) > 0.7).float()
    image_seconds, _ = _best(max(3, args.repeat), lambda: image_metrics(pred, target, mask))
    extra_seconds, _ = _best(max(3, args.repeat), lambda: foreground_mean_error(pred, target, mask))
    figures["ms_per_frame_image_metrics"] = 1000 * image_seconds / batch
    figures["ms_per_frame_foreground_error"] = 1000 * extra_seconds / batch
    print(f"per 256x256 frame: image metrics {1000 * image_seconds / batch:.2f} ms, foreground-mean error "
          f"{1000 * extra_seconds / batch:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
