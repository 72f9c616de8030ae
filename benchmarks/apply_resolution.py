"""Does ``--resolution auto`` lose anything against ``fixed`` at 256, and does it win at full size?

An honest, small, offline experiment (no iHarmony4 and no released weights are needed):

* **Data.** Real photos that ship with scikit-image (astronaut, chelsea, coffee, rocket; public
  domain / CC0) are the ground truth. For each photo, ``--per-photo`` object-like masks (unions of
  neighbouring SLIC superpixels, 5-30 % of the image) are drawn, and the region's colour and tone
  are changed the iHarmony4 way: Lab statistics moved to those of a region of another photo
  (HCOCO-style colour transfer), per-channel curves (gain and gamma), lightness/contrast/tint
  offsets, or a lighting gradient across the object (a spatially varying change). The shipped
  photos are small (451x300 to 640x427), so they are also **upscaled 4x with Lanczos** to
  1804x1200 .. 2560x1708 ("large"); upscaled photos carry the original photo's detail, not a real
  camera's finest detail, which is said in the results.
* **256-px predictors.** ``oracle``: the ground truth resized to 256 x 256, a perfect 256-px network
  (isolates what each strategy loses on the way back to full size); ``lab-transfer``: the
  training-free baseline; ``idih-quick``: an iDIH trained here on CPU for a few minutes
  (``train`` below) on synthetic composites from *other* photos (motorcycle_left/right,
  hubble_deep_field, retina, immunohistochemistry).
* **Metrics.** MSE, PSNR and fMSE (MSE inside the mask) in 0-255 units, against the ground truth,
  (a) "at 256": the output and the ground truth both resized to 256 x 256 with the same
  antialiased filter, (b) "full": at the composite's own resolution.

Rerun::

    python benchmarks/apply_resolution.py train --out /tmp/idih_quick.pth --iterations 600
    python benchmarks/apply_resolution.py eval --weights /tmp/idih_quick.pth --per-photo 4 --json results.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import color, data, segmentation

from harmonize_cli import Harmonizer, zoo
from harmonize_cli.apply.resolution import (
    compose_auto,
    compose_fixed,
    compose_native,
    fit_correction,
    resize_mask,
    resize_rgb,
)

TEST_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
TRAIN_PHOTOS = ("motorcycle_left", "motorcycle_right", "hubble_deep_field", "retina", "immunohistochemistry")
SHIFTS = ("transfer", "curves", "tone", "gradient")


def photo(name):
    if name == "motorcycle_left":
        return data.stereo_motorcycle()[0]
    if name == "motorcycle_right":
        return data.stereo_motorcycle()[1]
    return getattr(data, name)()


# ------------------------------------------------------------------------------ composites

def object_mask(image, rng, low=0.05, high=0.30, segments=150):
    """A random object-like region: neighbouring SLIC superpixels grown from a random seed."""
    labels = segmentation.slic(image, n_segments=segments, compactness=10, start_label=0)
    count = labels.max() + 1
    pairs = np.concatenate([
        np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
        np.stack([labels[:-1].ravel(), labels[1:].ravel()], 1),
    ])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    neighbours = [set() for _ in range(count)]
    for a, b in np.unique(pairs, axis=0):
        neighbours[a].add(b)
        neighbours[b].add(a)
    area = np.bincount(labels.ravel(), minlength=count) / labels.size
    target = rng.uniform(low, high)
    chosen = {int(rng.integers(count))}
    frontier = set(neighbours[next(iter(chosen))])
    while sum(area[list(chosen)]) < target and frontier:
        pick = int(rng.choice(sorted(frontier)))
        chosen.add(pick)
        frontier |= neighbours[pick]
        frontier -= chosen
    return np.isin(labels, list(chosen))


def _lab_stats(lab, mask):
    region = lab[mask]
    return region.mean(0), region.std(0) + 1e-3


def apply_shift(gt, mask, kind, rng, reference=None):
    """Change the colour and tone of ``gt`` inside ``mask`` (uint8 in, uint8 out)."""
    values = gt.astype(np.float32) / 255.0
    if kind == "transfer":
        lab = color.rgb2lab(values)
        ref_lab = color.rgb2lab(reference[0].astype(np.float32) / 255.0)
        mean, std = _lab_stats(lab, mask)
        ref_mean, ref_std = _lab_stats(ref_lab, reference[1])
        strength = rng.uniform(0.6, 1.0)
        moved = (lab - mean) / std * (std + strength * (ref_std - std)) + mean + strength * (ref_mean - mean)
        changed = color.lab2rgb(moved)
    elif kind == "curves":
        gains = rng.uniform(0.7, 1.3, 3)
        gammas = rng.uniform(0.7, 1.4, 3)
        changed = np.clip(values, 0, 1) ** gammas * gains + rng.uniform(-0.05, 0.05, 3)
    elif kind == "tone":
        lab = color.rgb2lab(values)
        mean_l = lab[mask][:, 0].mean()
        lab[..., 0] = (lab[..., 0] - mean_l) * rng.uniform(0.7, 1.3) + mean_l + rng.uniform(-15, 15)
        lab[..., 1] += rng.uniform(-12, 12)
        lab[..., 2] += rng.uniform(-12, 12)
        changed = color.lab2rgb(lab)
    elif kind == "gradient":
        height, width = mask.shape
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        ys, xs = np.nonzero(mask)
        t = (xx - xs.mean()) * math.cos(angle) + (yy - ys.mean()) * math.sin(angle)
        extent = np.abs(t[mask]).max() + 1e-3
        gain = 1.0 + rng.uniform(0.2, 0.35) * (t / extent)
        tint = rng.uniform(0.85, 1.15, 3)
        changed = values * gain[..., None] * tint
    else:
        raise ValueError(kind)
    out = gt.copy()
    out[mask] = (np.clip(changed[mask], 0, 1) * 255.0 + 0.5).astype(np.uint8)
    return out


def upscale(image, factor, resample=Image.LANCZOS):
    if factor == 1:
        return image
    height, width = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((width * factor, height * factor), resample))


def test_set(per_photo, scales, seed=0):
    """Composites (name, scale, composite, mask, gt) made from the test photos."""
    rng = np.random.default_rng(seed)
    photos = {name: photo(name) for name in TEST_PHOTOS}
    items = []
    for name in TEST_PHOTOS:
        gt_small = photos[name]
        for index in range(per_photo):
            mask_small = object_mask(gt_small, rng)
            kind = SHIFTS[index % len(SHIFTS)]
            other = TEST_PHOTOS[(TEST_PHOTOS.index(name) + 1 + index) % len(TEST_PHOTOS)]
            reference = (photos[other], object_mask(photos[other], rng))
            seed_shift = int(rng.integers(1 << 31))
            for scale in scales:
                gt = upscale(gt_small, scale)
                mask_img = Image.fromarray(mask_small.astype(np.uint8) * 255)
                mask = np.asarray(mask_img.resize((gt.shape[1], gt.shape[0]), Image.BILINEAR)) > 127
                ref = (reference[0], reference[1])
                composite = apply_shift(gt, mask, kind, np.random.default_rng(seed_shift), ref)
                items.append((f"{name}-{index}-{kind}", scale, composite, mask.astype(np.float32), gt))
    return items


# ---------------------------------------------------------------------------------- training

def _limit(image, side=640):
    scale = side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def training_pool(size, count, rng):
    """``count`` synthetic 256 x 256 (composite, mask, gt) triplets from the training photos."""
    photos = [_limit(photo(name)) for name in TRAIN_PHOTOS]
    small = [_limit(image, 256) for image in photos]
    references = [(image, object_mask(image, rng, segments=60)) for image in small for _ in range(6)]
    composites, masks, targets = [], [], []
    while len(composites) < count:
        source = photos[int(rng.integers(len(photos)))]
        short = min(source.shape[:2])
        crop = int(rng.integers(min(short, size), short + 1))
        top = int(rng.integers(0, source.shape[0] - crop + 1))
        left = int(rng.integers(0, source.shape[1] - crop + 1))
        gt = np.asarray(Image.fromarray(source[top:top + crop, left:left + crop]).resize((size, size), Image.BILINEAR))
        mask = object_mask(gt, rng, segments=60)
        reference = references[int(rng.integers(len(references)))]
        composite = apply_shift(gt, mask, SHIFTS[int(rng.integers(len(SHIFTS)))], rng, reference)
        composites.append(composite)
        masks.append(mask)
        targets.append(gt)
    return np.stack(composites), np.stack(masks), np.stack(targets)


def train(args):
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    started = time.time()
    composites, masks, targets = training_pool(256, args.pool, rng)
    print(f"pool of {len(composites)} composites in {time.time() - started:.0f} s", flush=True)
    model = zoo.create_model("idih")
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, args.iterations)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for step in range(1, args.iterations + 1):
        pick = rng.integers(0, len(composites), args.batch_size)
        flip = rng.random() < 0.5
        image = torch.from_numpy(composites[pick]).permute(0, 3, 1, 2).float() / 255.0
        target = torch.from_numpy(targets[pick]).permute(0, 3, 1, 2).float() / 255.0
        mask = torch.from_numpy(masks[pick]).float().unsqueeze(1)
        if flip:
            image, target, mask = image.flip(3), target.flip(3), mask.flip(3)
        output = model((image - mean) / std, mask)
        loss = (((output - (target - mean) / std) ** 2).sum(dim=(1, 2, 3))
                / (3 * mask.sum(dim=(1, 2, 3)).clamp_min(100.0))).mean()  # FN-MSE
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 25 == 0 or step == 1:
            print(f"step {step}/{args.iterations} loss {loss.item():.4f} ({time.time() - started:.0f} s)", flush=True)
        if step % 100 == 0 or step == args.iterations:
            torch.save(model.state_dict(), args.out)
    print(f"saved {args.out}")


# -------------------------------------------------------------------------------- evaluation

def metrics(output, gt, mask):
    diff = (output.astype(np.float64) - gt.astype(np.float64)) ** 2
    mse = diff.mean()
    fmse = diff[mask > 0.5].mean() if (mask > 0.5).any() else 0.0
    psnr = 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))
    return mse, psnr, fmse


def at_256(image):
    return (resize_rgb(image, (256, 256)).transpose(1, 2, 0) * 255.0).round().astype(np.uint8)


VARIANTS = {
    "fixed": None,
    "auto": {"degree": 2, "residual": True},
    "auto: colour map only": {"degree": 2, "residual": False},
    "auto: residual only": {"degree": 0, "residual": True},
}


def evaluate(args):
    torch.set_num_threads(args.threads)
    scales = tuple(int(s) for s in args.scales.split(","))
    started = time.time()
    items = test_set(args.per_photo, scales, seed=args.seed)
    print(f"{len(items)} composites ({args.per_photo} per photo, scales {scales}) in {time.time() - started:.0f} s",
          flush=True)
    predictors = {"oracle": None, "lab-transfer": Harmonizer("lab-transfer", device="cpu", quiet=True)}
    if args.weights:
        predictors["idih-quick"] = Harmonizer("idih", weights=args.weights, device="cpu", quiet=True)
    rows = {}
    for name, scale, composite, mask, gt in items:
        gt_256 = at_256(gt)
        mask_256 = resize_mask(mask, (256, 256))
        for predictor, harmonizer in predictors.items():
            low_input = resize_rgb(composite, (256, 256))
            low_mask = resize_mask(mask, (256, 256))
            if harmonizer is None:
                prediction = resize_rgb(gt, (256, 256))
            else:
                prediction = harmonizer._forward(low_input[None], low_mask[None])[0]
            outputs = {"composite": composite}
            for variant, options in VARIANTS.items():
                tic = time.perf_counter()
                if options is None:
                    outputs[variant] = compose_fixed(composite, mask, prediction)
                else:
                    correction = fit_correction(low_input, prediction, low_mask, **options)
                    outputs[variant] = compose_auto(composite, mask, correction)
                rows.setdefault((predictor, scale, variant, "seconds"), []).append(time.perf_counter() - tic)
            if harmonizer is not None and scale == 1:
                job = harmonizer.prepare(composite, mask)
                harmonizer.resolution = "native"
                harmonizer._prepare_native(job)
                harmonizer.predict([job])
                outputs["native"] = compose_native(composite, mask, job.prediction)
                harmonizer.resolution = "auto"
            for variant, output in outputs.items():
                if variant == "composite" and predictor != "oracle":
                    continue  # the input itself: one row is enough
                for where, (out, truth, m) in {"256": (at_256(output), gt_256, mask_256),
                                               "full": (output, gt, mask)}.items():
                    mse, psnr, fmse = metrics(out, truth, m)
                    for metric, value in (("MSE", mse), ("PSNR", psnr), ("fMSE", fmse)):
                        key = ("(input)" if variant == "composite" else predictor, scale, variant)
                        rows.setdefault(key + (f"{where} {metric}",), []).append(value)
        print(f"{name} x{scale} done ({time.time() - started:.0f} s)", flush=True)
    summary = {}
    for (predictor, scale, variant, metric), values in rows.items():
        summary.setdefault(f"{predictor} | x{scale} | {variant}", {})[metric] = float(np.mean(values))
    sizes = sorted({f"{c.shape[1]}x{c.shape[0]}" for _, _, c, _, _ in items}, key=lambda s: int(s.split("x")[0]))
    report = {"composites": len(items), "per_photo": args.per_photo, "scales": scales, "sizes": sizes,
              "seed": args.seed, "weights": args.weights, "results": summary}
    print_table(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def print_table(summary):
    header = ("predictor | scale | strategy", "256 MSE", "256 PSNR", "256 fMSE", "full MSE", "full PSNR",
              "full fMSE", "s/img")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for key, values in summary.items():
        cells = [values.get(m) for m in ("256 MSE", "256 PSNR", "256 fMSE", "full MSE", "full PSNR", "full fMSE",
                                         "seconds")]
        print(f"| {key} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in cells) + " |")


def main():
    warnings.filterwarnings("ignore", message="Conversion from CIE-LAB")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the quick iDIH on synthetic composites of the training photos")
    t.add_argument("--out", required=True)
    t.add_argument("--iterations", type=int, default=600)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--pool", type=int, default=800)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval", help="compare the strategies on the test composites")
    e.add_argument("--weights", default=None, help="the quick iDIH from `train` (optional)")
    e.add_argument("--per-photo", type=int, default=4)
    e.add_argument("--scales", default="1,4")
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--json", default=None)
    args = parser.parse_args()
    (train if args.command == "train" else evaluate)(args)


if __name__ == "__main__":
    main()
