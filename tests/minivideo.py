"""A miniature video-harmonization set in HYouTube's layout, made from real photos with a moving crop.

>>> from minivideo import make_mini_hyoutube
>>> root = make_mini_hyoutube(tmp_path / "HYouTube")      # 3 test clips + 1 train clip
>>> manifest = load_manifest(root)                         # clips, splits, frames, colour changes

Each *video* is a window of ``size`` pixels moving across one of scikit-image's photos
(``astronaut``, ``chelsea``, ``coffee``) by a few pixels per frame: the real frames. Each
*object* is an ellipse fixed in the photo, so in the frames it moves with the content (the
mask moves with the crop). A clip's composite frames are its real frames with the
foreground's colour changed by one per-clip gain (per channel) and gamma::

    composite = round(clip(255 * gain * (real / 255) ** gamma, 0, 255))   inside the mask

and the real frame outside it, so the real frames (the answer) are known. Frame files are
named like HYouTube's (``00000, 00005, ...``, every fifth source frame); a video with two
objects shares its real frames between two clips, as in HYouTube. ``ext`` chooses the frame
format (``jpg`` as HYouTube, quality 95; ``png`` lossless); masks are PNG (0/255).

The layout::

    real_videos/<video>/<frame>.jpg
    foreground_mask/<video>/<object>/<frame>.png
    synthetic_composite_videos/<video>/<object>/<frame>.jpg
    train_list.txt  test_list.txt     "real_videos/<v> foreground_mask/<v>/<o> synthetic_composite_videos/<v>/<o>"
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

MANIFEST = "minivideo.json"

# video -> (photo, start (y, x), step per frame (dy, dx), frames, split)
VIDEOS = {
    "v0001aaaa": ("astronaut", (60, 150), (3, 4), 5, "test"),
    "v0002bbbb": ("chelsea", (80, 120), (-2, 5), 4, "test"),
    "v0003cccc": ("coffee", (100, 200), (4, -3), 3, "train"),
}
# (video, object) -> (ellipse centre in the photo (y, x), radii (ry, rx), gain per channel, gamma)
OBJECTS = {
    ("v0001aaaa", "object_0"): ((95, 190), (14, 11), (1.25, 0.9, 0.8), 0.85),
    ("v0001aaaa", "object_1"): ((78, 172), (9, 13), (0.8, 1.0, 1.2), 1.2),
    ("v0002bbbb", "object_0"): ((110, 170), (12, 16), (0.9, 1.15, 1.0), 1.1),
    ("v0003cccc", "object_0"): ((130, 225), (13, 12), (1.1, 1.1, 0.85), 0.9),
}


def _photo(name: str) -> np.ndarray:
    from skimage import data

    return np.asarray(getattr(data, name)()[:, :, :3], dtype=np.uint8)


def _ellipse(shape, centre, radii) -> np.ndarray:
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return ((ys - centre[0]) / radii[0]) ** 2 + ((xs - centre[1]) / radii[1]) ** 2 <= 1.0


def recolour(real: np.ndarray, mask: np.ndarray, gain, gamma: float) -> np.ndarray:
    """The composite of a real frame: gain and gamma on the foreground (mask > 127), rounded."""
    changed = 255.0 * np.asarray(gain, dtype=np.float64) * (real.astype(np.float64) / 255.0) ** gamma
    changed = np.clip(np.round(changed), 0, 255).astype(np.uint8)
    return np.where((mask > 127)[:, :, None], changed, real)


def _save(array, path: Path, ext: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if ext == "jpg":
        image.save(path, quality=95, subsampling=0)
    else:
        image.save(path)


def make_mini_hyoutube(root, size=(40, 56), ext: str = "jpg", list_names=("train_list.txt", "test_list.txt")) -> Path:
    """Write the set under ``root`` and its manifest (``minivideo.json``); returns ``root``."""
    root = Path(root)
    height, width = size
    photos = {}
    lines = {"train": [], "test": []}
    manifest = {"size": [height, width], "ext": ext, "clips": {}}
    for video, (photo_name, start, step, frames, split) in VIDEOS.items():
        photo = photos.setdefault(photo_name, _photo(photo_name))
        boxes = [(start[0] + step[0] * t, start[1] + step[1] * t) for t in range(frames)]
        names = [f"{5 * t:05d}" for t in range(frames)]
        reals = [photo[y : y + height, x : x + width] for y, x in boxes]
        for name, real in zip(names, reals):
            _save(real, root / "real_videos" / video / f"{name}.{ext}", ext)
        for (owner, obj), (centre, radii, gain, gamma) in OBJECTS.items():
            if owner != video:
                continue
            clip = f"{video}/{obj}"
            inside = _ellipse(photo.shape[:2], centre, radii)
            for (y, x), name, real in zip(boxes, names, reals):
                mask = np.where(inside[y : y + height, x : x + width], 255, 0).astype(np.uint8)
                assert mask.any(), f"{clip} frame {name}: the object left the frame"
                _save(mask, root / "foreground_mask" / clip / f"{name}.png", "png")
                _save(recolour(real, mask, gain, gamma), root / "synthetic_composite_videos" / clip / f"{name}.{ext}",
                      ext)
            lines[split].append(f"real_videos/{video} foreground_mask/{clip} synthetic_composite_videos/{clip}")
            manifest["clips"][clip] = {"split": split, "frames": names, "video": video, "gain": list(gain),
                                       "gamma": gamma}
    for split, name in zip(("train", "test"), list_names):
        (root / name).write_text("\n".join(lines[split]) + "\n")
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return root


def make_clip_set(root, clips: int = 8, frames: int = 20, size=(180, 320), ext: str = "jpg", seed: int = 0) -> Path:
    """A larger set for benchmarks: ``clips`` test clips of ``frames`` frames, drawn with ``seed``.

    Same construction as :func:`make_mini_hyoutube` (a window moving across a photo, an
    elliptical object fixed in the photo, a per-clip gain and gamma), with random starts,
    steps, objects and colour changes; one object per video. Writes ``test_list.txt`` and
    the manifest.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    height, width = size
    names = [f"{5 * t:05d}" for t in range(frames)]
    lines, manifest = [], {"size": [height, width], "ext": ext, "clips": {}}
    photos = {name: _photo(name) for name in ("astronaut", "chelsea", "coffee")}
    for index in range(clips):
        photo_name = ("astronaut", "chelsea", "coffee")[index % 3]
        photo = photos[photo_name]
        step = rng.integers(-2, 3, size=2)
        span = np.abs(step) * (frames - 1)
        room = np.array(photo.shape[:2]) - np.array(size) - span
        if (room < 1).any():
            raise ValueError(f"{size} frames moving {frames - 1} steps do not fit {photo_name}")
        start = rng.integers(0, room) + np.where(step < 0, span, 0)
        boxes = [tuple(start + step * t) for t in range(frames)]
        middle = boxes[frames // 2]
        centre = (middle[0] + height // 2, middle[1] + width // 2)
        radii = (height // 4 - span[0] // 2 - 1, width // 4 - span[1] // 2 - 1)
        gain, gamma = rng.uniform(0.75, 1.25, size=3), float(rng.uniform(0.8, 1.25))
        video, clip = f"v{index:04d}", f"v{index:04d}/object_0"
        inside = _ellipse(photo.shape[:2], centre, radii)
        for (y, x), name in zip(boxes, names):
            real = photo[y : y + height, x : x + width]
            mask = np.where(inside[y : y + height, x : x + width], 255, 0).astype(np.uint8)
            _save(real, root / "real_videos" / video / f"{name}.{ext}", ext)
            _save(mask, root / "foreground_mask" / clip / f"{name}.png", "png")
            _save(recolour(real, mask, gain, gamma), root / "synthetic_composite_videos" / clip / f"{name}.{ext}", ext)
        lines.append(f"real_videos/{video} foreground_mask/{clip} synthetic_composite_videos/{clip}")
        manifest["clips"][clip] = {"split": "test", "frames": names, "video": video, "gain": gain.tolist(),
                                   "gamma": gamma}
    (root / "test_list.txt").write_text("\n".join(lines) + "\n")
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return root


def load_manifest(root) -> dict:
    return json.loads((Path(root) / MANIFEST).read_text())
