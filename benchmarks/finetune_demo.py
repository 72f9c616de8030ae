"""Fine-tuning on one's own photos, end to end on the CPU: synth -> prepare -> train --init -> eval.

The released checkpoints cannot be downloaded on the build machine, so the demonstration starts
from a stand-in: an iS2AM (the cheapest network to train on a CPU, at 128-px crops) trained here on composites of one kind (colour transfer and retouching,
"the domain it was trained on"), then fine-tuned with `harmonize train --init` on another kind
(illumination changes, "your domain"), and evaluated on the held-out photos of "your domain"
before and after. The photos are scikit-image's bundled sample images (public domain / CC0) with
elliptical object masks. Every step is a `harmonize` command, printed as it runs.

    python benchmarks/finetune_demo.py --work /tmp/finetune_demo
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "hubble_deep_field",
          "retina", "colorwheel", "stereo_motorcycle", "lily", "skin", "eagle", "clock", "brick", "grass")


def make_photos(folder: Path, seed: int = 0) -> None:
    import skimage.data as data

    (folder / "photos").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        try:
            image = getattr(data, name)()
        except Exception:  # a sample this scikit-image lacks
            continue
        if isinstance(image, tuple):
            image = image[0]
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        image = image[..., :3]
        if image.dtype != np.uint8:
            image = (255 * (image.astype(np.float64) / max(1e-9, float(image.max())))).astype(np.uint8)
        photo = Image.fromarray(image)
        photo.thumbnail((384, 384))
        width, height = photo.size
        mask = Image.new("L", photo.size, 0)
        cx, cy = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
        rx, ry = rng.uniform(0.15, 0.3) * width, rng.uniform(0.15, 0.3) * height
        ImageDraw.Draw(mask).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        photo.save(folder / "photos" / f"{name}.png")
        mask.save(folder / "masks" / f"{name}.png")


def harmonize(*args) -> None:
    command = ["harmonize", *[str(a) for a in args]]
    print("$ " + shlex.join(command), flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harmonize_cli", *command[1:]], check=True)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--arch", default="is2am", help="the network (is2am: the cheapest to train on a CPU)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the stand-in base model")
    parser.add_argument("--finetune-epochs", type=int, default=10)
    args = parser.parse_args(argv)
    work = args.work
    make_photos(work)
    harmonize("synth", "--images", work / "photos", "--masks", work / "masks", "-o", work / "general",
              "--styles", "color,retouch", "--per-image", 10, "--test-fraction", 0.25, "--seed", 1, "--subset",
              "General", "--overwrite", "-q")
    harmonize("synth", "--images", work / "photos", "--masks", work / "masks", "-o", work / "mine",
              "--styles", "illumination", "--per-image", 10, "--test-fraction", 0.25, "--seed", 2, "--subset",
              "Mine", "--overwrite", "-q")
    harmonize("prepare", "--root", work / "general", "-o", work / "general.h5", "--force", "-q")
    harmonize("prepare", "--root", work / "mine", "-o", work / "mine.h5", "--force", "-q")
    common = ["--batch-size", 8, "--crop", 128, "--workers", 1, "--seed", 0, "--image-every", 0,
              "--no-tensorboard", "--val-every", 0, "--overwrite", "-q"]
    harmonize("train", "--arch", args.arch, "--data", work / "general.h5", "--out", work / "base",
              "--epochs", args.epochs, "--milestones", max(1, args.epochs - 5), *common)
    harmonize("train", "--init", work / "base" / "last.pth", "--data", work / "mine.h5", "--out", work / "tuned",
              "--epochs", args.finetune_epochs, "--milestones", max(1, args.finetune_epochs - 2), *common)
    results = work / "before_after.json"
    harmonize("eval", "--data", work / "mine.h5", "--model", "composite", "--model", "lab-transfer",
              "--weights", work / "base" / "last.pth", "--weights", work / "tuned" / "last.pth",
              "--workers", 0, "-o", results, "--markdown", work / "before_after.md")
    rows = json.loads(results.read_text())
    print(json.dumps([{"model": row["model"], "weights": row["weights"], **row["by_subset"]["All"]}
                      for row in rows], indent=2))


if __name__ == "__main__":
    main()
