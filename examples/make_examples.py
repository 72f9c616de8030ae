"""Rebuild examples/ (composites, masks, a cut-out object, a background) from photos that ship with
scikit-image.

    python examples/make_examples.py

Every composite is made the iHarmony4 way: either a real object of a photo whose colour and
tone are changed (the photo itself is then the ground truth), or an object cut from one photo and
pasted into another. Masks are rough shapes drawn by hand (coordinates below) snapped to
SLIC superpixel boundaries, so that they follow the object's edges. The cut-out object for
`harmonize paste` (examples/objects/cup.png) is the cup, saucer and spoon of the coffee photo,
outlined by two ellipses fitted to the photo's edges and a hand-placed polygon, drawn with 4x
supersampling for an antialiased (soft) alpha. The output is deterministic.
Sources and licences: examples/README.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import color, data, segmentation

HERE = Path(__file__).resolve().parent
COMPOSITES = HERE / "composites"
MASKS = HERE / "masks"
OBJECTS = HERE / "objects"
BACKGROUNDS = HERE / "backgrounds"
CLIP = HERE / "clip"


def rough_mask(shape, ellipses=(), polygons=()):
    """A hand-drawn mask: union of ellipses (cx, cy, rx, ry) and polygons [(x, y), ...]."""
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for cx, cy, rx, ry in ellipses:
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    for polygon in polygons:
        draw.polygon(polygon, fill=255)
    return np.asarray(canvas) > 127


def snap(image, rough, segments=500, compactness=12.0, keep=0.5):
    """Superpixels that lie mostly inside the rough mask."""
    labels = segmentation.slic(image, n_segments=segments, compactness=compactness, start_label=0)
    inside = np.bincount(labels.ravel(), weights=rough.ravel().astype(float), minlength=labels.max() + 1)
    total = np.bincount(labels.ravel(), minlength=labels.max() + 1)
    chosen = inside / np.maximum(total, 1) >= keep
    return chosen[labels]


def lab_shift(image, mask, dl=0.0, da=0.0, db=0.0, contrast=1.0):
    """Move the masked region's Lab values: lightness offset and contrast, chroma offsets."""
    lab = color.rgb2lab(image)
    region = lab[mask]
    mean_l = region[:, 0].mean()
    region[:, 0] = (region[:, 0] - mean_l) * contrast + mean_l + dl
    region[:, 1] += da
    region[:, 2] += db
    lab[mask] = region
    shifted = (np.clip(color.lab2rgb(lab), 0, 1) * 255).round().astype(np.uint8)
    out = image.copy()
    out[mask] = shifted[mask]
    return out


def rgb_curve(image, mask, gains=(1.0, 1.0, 1.0), gamma=1.0):
    """Per-channel gains and a gamma inside the mask (a retouching-style change)."""
    values = image.astype(np.float32) / 255.0
    changed = np.clip((values ** gamma) * np.asarray(gains, dtype=np.float32), 0, 1)
    out = image.copy()
    out[mask] = (changed[mask] * 255).round().astype(np.uint8)
    return out


def save(name, composite, mask_name, mask, fmt="JPEG"):
    COMPOSITES.mkdir(exist_ok=True)
    MASKS.mkdir(exist_ok=True)
    options = {"quality": 90, "subsampling": 0} if fmt == "JPEG" else {"optimize": True}
    Image.fromarray(composite).save(COMPOSITES / name, format=fmt, **options)
    Image.fromarray((mask * 255).astype(np.uint8)).save(MASKS / mask_name, optimize=True)


def shrink(image, width):
    height = round(image.shape[0] * width / image.shape[1])
    return np.asarray(Image.fromarray(image).resize((width, height), Image.LANCZOS))


def ellipse_outline(cx, cy, a, b, theta, points=720):
    """The outline of a rotated ellipse (centre, half-axes, angle in radians) as [(x, y), ...]."""
    angles = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    x = cx + a * np.cos(angles) * np.cos(theta) - b * np.sin(angles) * np.sin(theta)
    y = cy + a * np.cos(angles) * np.sin(theta) + b * np.sin(angles) * np.cos(theta)
    return list(zip(x, y))


def soft_alpha(shape, polygons, supersample=4):
    """Union of polygons drawn at ``supersample`` x the resolution and averaged down: an alpha
    (uint8) whose edges are antialiased, as the cut-outs of background-removal tools are."""
    height, width = shape
    canvas = Image.new("L", (width * supersample, height * supersample), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        draw.polygon([(x * supersample, y * supersample) for x, y in polygon], fill=255)
    return np.asarray(canvas.resize((width, height), Image.BOX))


def cut_out_cup(width=240):
    """The cup, saucer and spoon of the coffee photo (600 x 400) as an RGBA cut-out ``width`` wide.

    The saucer's rim and the cup's rim are ellipses fitted (RANSAC on Canny edges, rounded here)
    to the photo; the tip of the spoon's handle, which sticks out above the saucer, is a polygon.
    """
    coffee = data.coffee()
    alpha = soft_alpha(coffee.shape[:2], [
        ellipse_outline(276.0, 222.0, 201.3, 160.7, 0.1685),  # the saucer
        ellipse_outline(289.6, 111.5, 116.9, 93.7, 0.085),  # the cup's rim (the cup below is on the saucer)
        [(399, 76), (402, 69), (412, 65.5), (421, 68), (422.5, 74), (419, 90), (414, 108), (405, 112)],  # spoon
    ])
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    rgba = np.dstack([coffee, alpha])[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    image = Image.fromarray(rgba, "RGBA")
    height = round(image.height * width / image.width)
    return image.resize((width, height), Image.LANCZOS)  # Pillow resizes RGBA premultiplied


def main():
    # 1. astronaut (NASA, public domain): the face and hair turned cold and dark.
    astronaut = shrink(data.astronaut(), 448)
    head = snap(astronaut, rough_mask(astronaut.shape, ellipses=[(197, 62, 60, 50), (195, 110, 44, 56)]),
                keep=0.6)
    save("astronaut.jpg", lab_shift(astronaut, head, dl=-12, da=-10, db=-18), "astronaut.png", head)

    # 2. coffee (CC0, Rachel Michetti): cup and saucer recoloured (iHarmony4 file names).
    coffee = shrink(data.coffee(), 480)
    cup = snap(coffee, rough_mask(coffee.shape, ellipses=[(221, 183, 165, 125), (230, 92, 94, 78)],
                                  polygons=[[(262, 60), (340, 52), (325, 250), (275, 262)]]),
               segments=1200, compactness=20.0)
    save("coffee_1_1.jpg", lab_shift(coffee, cup, dl=8, da=-30, db=-22, contrast=0.9), "coffee_1.png", cup)

    # 3. rocket (SpaceX, public domain): the rocket lit as in daylight (<stem>_mask naming).
    rocket = shrink(data.rocket(), 480)
    scale = 480 / 640
    body = [(x * scale, y * scale) for x, y in [(309, 170), (322, 126), (335, 170), (337, 405), (307, 405)]]
    vehicle = snap(rocket, rough_mask(rocket.shape, polygons=[body]), segments=900, compactness=8.0)
    save("rocket.jpg", rgb_curve(rocket, vehicle, gains=(1.25, 1.1, 0.8), gamma=0.8), "rocket_mask.png", vehicle)

    # 4. chelsea (CC0, Stefan van der Walt): the cat's face darkened with a magenta cast (a PNG).
    cat = shrink(data.chelsea(), 360)
    face = snap(cat, rough_mask(cat.shape, ellipses=[(190, 130, 120, 95)]))
    save("chelsea.png", rgb_curve(cat, face, gains=(0.95, 0.72, 0.9), gamma=1.25), "chelsea.png", face, fmt="PNG")

    # 5. the coffee cup (CC0) pasted into the rocket photo (public domain) at dusk.
    small_cup = shrink(coffee, 150)
    small_mask = np.asarray(Image.fromarray((cup * 255).astype(np.uint8)).resize(
        (small_cup.shape[1], small_cup.shape[0]), Image.LANCZOS)) > 127
    scene = rocket.copy()
    top, left = scene.shape[0] - small_cup.shape[0] - 6, 40
    window = scene[top:top + small_cup.shape[0], left:left + small_cup.shape[1]]
    window[small_mask] = small_cup[small_mask]
    pasted = np.zeros(scene.shape[:2], dtype=bool)
    pasted[top:top + small_cup.shape[0], left:left + small_cup.shape[1]] = small_mask
    save("cup_at_launch.jpg", scene, "cup_at_launch.png", pasted)

    # 6. for `harmonize paste`: the cup cut out (CC0) and the untouched launch photo (public domain).
    OBJECTS.mkdir(exist_ok=True)
    BACKGROUNDS.mkdir(exist_ok=True)
    cut_out_cup().save(OBJECTS / "cup.png", optimize=True)
    Image.fromarray(rocket).save(BACKGROUNDS / "launch.jpg", quality=90, subsampling=0)


def make_clip(frames=12, size=(192, 144), step=6):
    """examples/clip: a slow pan across the rocket composite (a folder of JPEG frames) and its mask
    frames (PNG), for `harmonize video` without a video file (and without PyAV)."""
    composite = Image.open(COMPOSITES / "rocket.jpg").convert("RGB")
    mask = Image.open(MASKS / "rocket_mask.png").convert("L")
    scale = (size[1] + step * frames) / composite.height
    width = round(composite.width * scale)
    composite = composite.resize((width, round(composite.height * scale)), Image.LANCZOS)
    mask = mask.resize(composite.size, Image.BILINEAR)
    for sub in ("frames", "masks"):
        (CLIP / sub).mkdir(parents=True, exist_ok=True)
    left = (composite.width - size[0]) // 2 - step * frames // 2
    for index in range(frames):
        box = (left + step * index, step * index // 2, left + step * index + size[0], step * index // 2 + size[1])
        composite.crop(box).save(CLIP / "frames" / f"{index:03d}.jpg", quality=90)
        mask.crop(box).point(lambda v: 255 if v > 127 else 0).save(CLIP / "masks" / f"{index:03d}.png")


if __name__ == "__main__":
    main()
    make_clip()
