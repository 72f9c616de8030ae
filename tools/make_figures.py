"""Draw docs/images/examples_grid.jpg: the shipped examples before and after, from what ships.

    python tools/make_figures.py                       # the offline default (boundary-gain)
    python tools/make_figures.py --model auto          # a cached network if there is one (no download)

One row per example in examples/composites: composite | harmonized | original photo (rebuilt from
scikit-image as examples/make_examples.py made it; ``cup_at_launch`` is a real paste and has
none), the columns titled. It runs offline: ``HARMONIZE_OFFLINE`` is set for the run, so ``auto``
uses a cached network or the training-free fallback, never a download.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

TILE_WIDTH = 240
GAP = 6
OUTPUT = ROOT / "docs" / "images" / "examples_grid.jpg"


def examples():
    """(composite name, composite, mask, original or None), in examples/composites order."""
    from fallback_quality import EXAMPLES, shipped_examples

    known = {name.split(" ", 1)[1]: (composite, mask, original)
             for name, composite, mask, original in shipped_examples()}
    rows = []
    for path in sorted((EXAMPLES / "composites").iterdir()):
        stem = path.stem.split("_1_")[0]  # coffee_1_1 -> coffee
        if stem in known:
            rows.append((path.name, *known[stem]))
        else:  # a real paste: no original
            mask = np.asarray(Image.open(EXAMPLES / "masks" / f"{path.stem}.png").convert("L")) > 127
            rows.append((path.name, np.asarray(Image.open(path).convert("RGB")), mask, None))
    return rows


def tile(image, height=None):
    width = TILE_WIDTH
    height = height or round(image.shape[0] * width / image.shape[1])
    return np.asarray(Image.fromarray(image).resize((width, height), Image.LANCZOS))


def missing_tile(height, text="no original (a real paste)"):
    from harmonize_cli.labels import font

    canvas = Image.new("RGB", (TILE_WIDTH, height), (236, 236, 236))
    draw = ImageDraw.Draw(canvas)
    face = font(13)
    width = draw.textlength(text, font=face)
    draw.text(((TILE_WIDTH - width) / 2, height / 2 - 7), text, fill=(90, 90, 90), font=face)
    return np.asarray(canvas)


def grid(rows, harmonizer):
    """The rows stacked (GAP apart, white), three columns of TILE_WIDTH."""
    lines = []
    for _, composite, mask, original in rows:
        result = harmonizer(composite, mask.astype(np.float32))
        first = tile(composite)
        height = first.shape[0]
        third = tile(original, height) if original is not None else missing_tile(height)
        line = np.full((height, 3 * TILE_WIDTH + 2 * GAP, 3), 255, np.uint8)
        for index, part in enumerate((first, tile(result, height), third)):
            line[:, index * (TILE_WIDTH + GAP): index * (TILE_WIDTH + GAP) + TILE_WIDTH] = part
        lines.append(line)
        lines.append(np.full((GAP, line.shape[1], 3), 255, np.uint8))
    return np.concatenate(lines[:-1], axis=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="boundary-gain", help="a zoo name, or auto (cached network, else fallback)")
    parser.add_argument("--weights", default=None, help="a local checkpoint file")
    parser.add_argument("-o", "--out", type=Path, default=OUTPUT)
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args(argv)
    os.environ["HARMONIZE_OFFLINE"] = "1"  # from what ships: never a download
    from harmonize_cli import Harmonizer
    from harmonize_cli.atomic import atomic_path
    from harmonize_cli.labels import label_columns

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        harmonizer = Harmonizer(model=args.model, weights=args.weights, device="cpu")
    picture = label_columns(grid(examples(), harmonizer),
                            ["composite", f"harmonized ({harmonizer.model_name})", "original photo"],
                            column_width=TILE_WIDTH, gap=GAP, size=14)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        Image.fromarray(picture).save(tmp, format="JPEG", quality=args.quality, optimize=True)
    print(f"{args.out}: {picture.shape[1]} x {picture.shape[0]}, {args.out.stat().st_size / 1024:.0f} KB, "
          f"model {harmonizer.model_name}")


if __name__ == "__main__":
    main()
