"""A miniature dataset in exact iHarmony4 layout, generated on the fly for tests.

>>> from minidata import make_mini_iharmony
>>> root = make_mini_iharmony(tmp_path / "iHarmony4")          # 4 subsets, 4 train + 3 test each
>>> manifest = load_manifest(root)                              # what is in it, what is broken

Images have real structure: a smooth background (the real image) and a foreground region in
which the composite is colour-shifted. Composite and real are identical *outside* the mask
and clearly different inside it, even after JPEG coding: images are stored as JPEG with 4:4:4
chroma (no subsampling) and the mask is made of whole 8x8 blocks, and JPEG codes each 8x8
block independently. Masks are binary (0/255).

Every subset uses its real naming style (``c21070_1396052_1.jpg``, ``a3630_1_3.jpg``,
``f2508_1_1.jpg``, ``d1048-20120628-200951_1_3.jpg``); other subset names get ``x<n>_1_<k>``.
Always present, because real copies have them: a CRLF list file (HCOCO_train), a trailing
blank line (HFlickr_test), 3-channel masks (HAdobe5k), several masks per real image (HCOCO)
and several composites per mask (HAdobe5k, Hday2night). HAdobe5k images are ``adobe_scale``
times larger than the others, so a small ``max_side`` resizes only them.

``pitfalls=True`` adds broken samples on top of the regular ones (regular counts unchanged):
a composite whose real image is missing (HFlickr train), a truncated JPEG composite (HCOCO
train), and a composite whose size differs from its mask and real image (HAdobe5k test).
``load_manifest(root)`` returns the expectations (written to ``<root>/minidata.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SUBSETS = ("HCOCO", "HAdobe5k", "HFlickr", "Hday2night")
MANIFEST = "minidata.json"
BLOCK = 8


def _names(subset: str, split: str, count: int) -> list[tuple[str, str, str]]:
    """``(composite, mask, real)`` file names in the subset's naming style."""
    base = 100 if split == "train" else 900  # train and test never share a real image
    out = []
    for j in range(count):
        if subset == "HCOCO":  # two masks per real image, one composite per mask
            real = f"c{base + j // 2}"
            mask = f"{real}_{1396052 + j}"
            comp = f"{mask}_1"
        elif subset == "HAdobe5k":  # one mask per real, several composites per mask
            real = f"a{base + j // 2:04d}"
            mask = f"{real}_1"
            comp = f"{mask}_{j % 2 + 1}"
        elif subset == "HFlickr":
            real = f"f{base + j}"
            mask = f"{real}_1"
            comp = f"{mask}_1"
        elif subset == "Hday2night":  # hyphens in the real stem, k up to 13
            real = f"d{base + j // 2}-20120628-200951"
            mask = f"{real}_1"
            comp = f"{mask}_{(j % 2) * 12 + 1}"
        else:
            real = f"x{base + j // 2}"
            mask = f"{real}_1"
            comp = f"{mask}_{j % 2 + 1}"
        out.append((comp + ".jpg", mask + ".png", real + ".jpg"))
    return out


def _background(rng, height, width) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    fy, fx, phase = rng.uniform(0.03, 0.12), rng.uniform(0.03, 0.12), rng.uniform(0, 6.28, size=3)
    base = rng.uniform(70, 180, size=3)
    channels = [
        base[c] + 50 * np.sin(fx * x * (c + 1) / 2 + phase[c]) * np.cos(fy * y + phase[(c + 1) % 3])
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def _mask(rng, height, width) -> np.ndarray:
    """A blob made of whole 8x8 blocks, covering roughly 10-35 % of the image."""
    bh, bw = max(1, -(-height // BLOCK)), max(1, -(-width // BLOCK))
    cy, cx = rng.uniform(0.3, 0.7) * bh, rng.uniform(0.3, 0.7) * bw
    ry, rx = rng.uniform(0.2, 0.35) * bh + 0.6, rng.uniform(0.2, 0.35) * bw + 0.6
    by, bx = np.mgrid[0:bh, 0:bw].astype(np.float32) + 0.5
    blocks = ((by - cy) / ry) ** 2 + ((bx - cx) / rx) ** 2 <= 1.0
    if not blocks.any():
        blocks[int(cy), int(cx)] = True
    full = np.kron(blocks, np.ones((BLOCK, BLOCK), dtype=bool))[:height, :width]
    return np.where(full, 255, 0).astype(np.uint8)


def _shift(real: np.ndarray, mask: np.ndarray, rng) -> np.ndarray:
    gain = rng.uniform(0.6, 0.8, size=3) if rng.random() < 0.5 else rng.uniform(1.2, 1.4, size=3)
    offset = rng.uniform(-40, 40, size=3)
    shifted = np.clip(real.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    return np.where(mask[:, :, None] > 0, shifted, real)


def _save_jpeg(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="JPEG", quality=95, subsampling=0)


def _write_list(path: Path, names, crlf=False, trailing_blank=False) -> None:
    newline = "\r\n" if crlf else "\n"
    text = newline.join(names) + newline
    if trailing_blank:
        text += newline
    path.write_bytes(text.encode("utf-8"))


def make_mini_iharmony(
    root,
    subsets=SUBSETS,
    n_train: int = 4,
    n_test: int = 3,
    size=(48, 64),
    pitfalls: bool = False,
    seed: int = 0,
    adobe_scale: int = 2,
) -> Path:
    """Write a miniature dataset in iHarmony4 layout under ``root`` and return ``root``.

    ``size = (height, width)`` of the images (HAdobe5k: times ``adobe_scale``). ``n_train`` /
    ``n_test`` regular samples per subset and split; ``pitfalls`` adds the broken ones.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    manifest = {"subsets": list(subsets), "counts": {}, "broken": [], "samples": {}}
    for subset in subsets:
        folder = root / subset
        for sub in ("composite_images", "masks", "real_images"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        scale = adobe_scale if subset == "HAdobe5k" else 1
        height, width = size[0] * scale, size[1] * scale
        manifest["counts"][subset] = {}
        for split, count in (("train", n_train), ("test", n_test)):
            listed = []
            reals, masks = {}, {}
            for comp, mask_name, real_name in _names(subset, split, count):
                if real_name not in reals:
                    reals[real_name] = _background(rng, height, width)
                    _save_jpeg(reals[real_name], folder / "real_images" / real_name)
                if mask_name not in masks:
                    masks[mask_name] = _mask(rng, height, width)
                    mask_image = masks[mask_name]
                    if subset == "HAdobe5k":  # 3-channel masks
                        mask_image = np.repeat(mask_image[:, :, None], 3, axis=2)
                    Image.fromarray(mask_image).save(folder / "masks" / mask_name)
                composite = _shift(reals[real_name], masks[mask_name], rng)
                _save_jpeg(composite, folder / "composite_images" / comp)
                listed.append(comp)
                manifest["samples"].setdefault(subset, {}).setdefault(split, []).append(
                    {"composite": comp, "mask": mask_name, "real": real_name, "size": [height, width]}
                )
            manifest["counts"][subset][split] = len(listed)
            if pitfalls:
                listed += _add_broken(folder, subset, split, rng, height, width, manifest)
            _write_list(
                folder / f"{subset}_{split}.txt",
                listed,
                crlf=(subset == "HCOCO" and split == "train"),
                trailing_blank=(subset == "HFlickr" and split == "test"),
            )
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return root


def _add_broken(folder: Path, subset: str, split: str, rng, height: int, width: int, manifest) -> list[str]:
    """Broken samples for one (subset, split); returns the composite names to list."""
    real = _background(rng, height, width)
    mask = _mask(rng, height, width)
    composite = _shift(real, mask, rng)
    if subset == "HFlickr" and split == "train":  # the real image is missing
        name = "f7777_1_1.jpg"
        Image.fromarray(mask).save(folder / "masks" / "f7777_1.png")
        _save_jpeg(composite, folder / "composite_images" / name)
        bad = folder / "real_images" / "f7777.jpg"
        manifest["broken"].append({"subset": subset, "split": split, "sample": name, "file": str(bad), "reason": "missing"})
        return [name]
    if subset == "HCOCO" and split == "train":  # a truncated JPEG (header readable, data not)
        name = "c7777_5550001_1.jpg"
        _save_jpeg(real, folder / "real_images" / "c7777.jpg")
        Image.fromarray(mask).save(folder / "masks" / "c7777_5550001.png")
        path = folder / "composite_images" / name
        _save_jpeg(composite, path)
        data = path.read_bytes()
        scan = data.index(b"\xff\xda")  # start of the entropy-coded data: keep the headers
        path.write_bytes(data[: scan + (len(data) - scan) // 2])
        manifest["broken"].append({"subset": subset, "split": split, "sample": name, "file": str(path), "reason": "unreadable"})
        return [name]
    if subset == "HAdobe5k" and split == "test":  # composite size differs from mask and real
        name = "a7777_1_1.jpg"
        _save_jpeg(real, folder / "real_images" / "a7777.jpg")
        Image.fromarray(mask).save(folder / "masks" / "a7777_1.png")
        path = folder / "composite_images" / name
        _save_jpeg(composite[: height - BLOCK], path)
        manifest["broken"].append({"subset": subset, "split": split, "sample": name, "file": str(path), "reason": "size mismatch"})
        return [name]
    return []


def load_manifest(root) -> dict:
    """What :func:`make_mini_iharmony` wrote: subsets, regular counts, broken samples."""
    return json.loads((Path(root) / MANIFEST).read_text())
