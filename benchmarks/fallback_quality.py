"""Does the training-free offline default do harm? Foreground error against known originals.

The rule (issue 24): the offline default must lower the foreground error (fMSE against the
original photo) on average **and** worsen no composite by more than 5 % against leaving it
untouched. Composites with known originals, all offline:

* **The shipped examples** (examples/, made by examples/make_examples.py): astronaut, coffee,
  rocket and chelsea are photos of scikit-image whose object was re-coloured, so the photo (shrunk
  as make_examples.py does) is the ground truth. ``cup_at_launch`` is a real paste with no
  original, so it has no row.
* **Synthetic iHarmony4-style composites** from scikit-image photos (astronaut, chelsea, coffee,
  rocket, motorcycle_left, shrunk to 384 px wide): an object-like mask (neighbouring SLIC
  superpixels, 5-30 % of the image, as in benchmarks/apply_resolution.py) whose pixels get one to
  three of: per-channel gain (0.7-1.3), per-channel gamma (0.7-1.4), per-channel offset
  (+-0.08), saturation (0.5-1.6), all seeded. As iHarmony4 drops pairs whose change is too small
  to see, a draw whose fMSE is below ``--min-fmse`` (100) is drawn again.

Every model runs the way ``harmonize apply`` runs it (``Harmonizer``, ``--resolution auto``, CPU);
fMSE is the mean of squared 0-255 differences over the mask's pixels and channels, at full size.

    python benchmarks/fallback_quality.py                       # the table in docs/apply.md
    python benchmarks/fallback_quality.py --per-photo 8 --seed 1  # a second, unseen draw
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "examples")]
from apply_resolution import object_mask, photo  # noqa: E402  (the benchmark next door)
from make_examples import shrink  # noqa: E402  (how the examples were sized)

EXAMPLES = ROOT / "examples"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")
CHANGES = ("gain", "gamma", "offset", "saturation")
LUMA = np.array([0.2126, 0.7152, 0.0722])
RULE = 1.05  # no composite may get more than 5 % worse


def shipped_examples():
    """(name, composite, mask, original) for the examples whose original is known."""
    known = {  # composite, mask, the original as make_examples.py sized it
        "astronaut": ("astronaut.jpg", "astronaut.png", lambda: shrink(data.astronaut(), 448)),
        "coffee": ("coffee_1_1.jpg", "coffee_1.png", lambda: shrink(data.coffee(), 480)),
        "rocket": ("rocket.jpg", "rocket_mask.png", lambda: shrink(data.rocket(), 480)),
        "chelsea": ("chelsea.png", "chelsea.png", lambda: shrink(data.chelsea(), 360)),
    }
    cases = []
    for name, (composite, mask, original) in known.items():
        rgb = np.asarray(Image.open(EXAMPLES / "composites" / composite).convert("RGB"))
        region = np.asarray(Image.open(EXAMPLES / "masks" / mask).convert("L")) > 127
        cases.append((f"example {name}", rgb, region, original()))
    return cases


def perturb(original, mask, rng):
    """Change the masked pixels by one to three of gain, gamma, offset and saturation (uint8 in/out)."""
    values = original.astype(np.float64) / 255.0
    kinds = rng.choice(CHANGES, size=int(rng.integers(1, 4)), replace=False)
    for kind in kinds:
        if kind == "gain":
            values = values * rng.uniform(0.7, 1.3, 3)
        elif kind == "gamma":
            values = np.clip(values, 0.0, 1.0) ** rng.uniform(0.7, 1.4, 3)
        elif kind == "offset":
            values = values + rng.uniform(-0.08, 0.08, 3)
        else:
            luma = (values @ LUMA)[..., None]
            values = luma + (values - luma) * rng.uniform(0.5, 1.6)
    out = original.copy()
    out[mask] = (np.clip(values[mask], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out, "+".join(sorted(kinds))


def synthetic(per_photo=6, seed=0, min_fmse=100.0):
    """(name, composite, mask, original) drawn from the photos, seeded."""
    rng = np.random.default_rng(seed)
    cases = []
    for name in PHOTOS:
        original = shrink(photo(name), 384)
        for index in range(per_photo):
            for _ in range(20):
                mask = object_mask(original, rng)
                composite, kinds = perturb(original, mask, rng)
                if fmse(composite, original, mask) >= min_fmse:
                    break
            cases.append((f"{name}-{index} ({kinds})", composite, mask, original))
    return cases


def fmse(result, original, mask):
    """Mean squared 0-255 difference over the mask's pixels and channels."""
    difference = result.astype(np.float64) - original.astype(np.float64)
    return float((difference[mask] ** 2).mean())


def evaluate(models, cases):
    """{model: [fMSE per case]}, plus the untouched composite under "composite"."""
    from harmonize_cli import Harmonizer

    results = {"composite": [fmse(composite, original, mask) for _, composite, mask, original in cases]}
    for model in models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            harmonizer = Harmonizer(model=model, device="cpu")
        results[model] = [fmse(harmonizer(composite, mask.astype(np.float32)), original, mask)
                          for _, composite, mask, original in cases]
    return results


def table(names, results, models):
    base = np.array(results["composite"])
    lines = ["| composite | untouched | " + " | ".join(models) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in models) + " |"]
    for index, name in enumerate(names):
        cells = [f"{results[model][index]:.1f} ({results[model][index] / base[index]:.2f}x)" for model in models]
        lines.append(f"| {name} | {base[index]:.1f} | " + " | ".join(cells) + " |")
    means = [f"**{np.mean(results[model]):.1f}**" for model in models]
    lines.append(f"| **mean** | **{base.mean():.1f}** | " + " | ".join(means) + " |")
    worst = [f"{max(np.array(results[model]) / base):.3f}x" for model in models]
    lines.append("| worst ratio to untouched | 1.000x | " + " | ".join(worst) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lab-transfer,boundary-gain")
    parser.add_argument("--per-photo", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-fmse", type=float, default=100.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    models = [name for name in args.models.split(",") if name]
    started = time.perf_counter()
    cases = shipped_examples() + synthetic(args.per_photo, args.seed, args.min_fmse)
    results = evaluate(models, cases)
    names = [case[0] for case in cases]
    print(table(names, results, models))
    base = np.array(results["composite"])
    for model in models:
        ratios = np.array(results[model]) / base
        meets = np.mean(results[model]) < base.mean() and ratios.max() <= RULE
        print(f"{model}: mean fMSE {np.mean(results[model]):.1f} (untouched {base.mean():.1f}), worst ratio "
              f"{ratios.max():.3f}, {int((ratios > RULE).sum())} of {len(ratios)} worse by > 5 %: "
              f"{'meets' if meets else 'fails'} the rule")
    print(f"{len(cases)} composites in {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"cases": names, "results": results}, indent=1))


if __name__ == "__main__":
    main()
