"""`harmonize synth`: styles, layout accepted by prepare and the dataset, exact backgrounds,
split by photo, reproducibility, the change floor, bad inputs, alpha masks, overwrite, CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab

from harmonize_cli.cli import main
from harmonize_cli.data import imageio, layout
from harmonize_cli.data.dataset import HarmonizationDataset
from harmonize_cli.data.pack import pack_dataset
from harmonize_cli.errors import UsageError
from harmonize_cli.synth import SynthError, synthesize
from harmonize_cli.synth import styles as style_lib
from harmonize_cli.synth.builder import split_photos
from harmonize_cli.synth.colour import rgb_to_lab

H, W = 48, 64
FLOOR = 100.0
SUBSET_DIR = "Synthetic"


# ---------------------------------------------------------------------------- generated photos
def _photo(rng, index: int) -> np.ndarray:
    """A textured photo: smooth colour waves plus noise (so every channel has spread)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    base = rng.uniform(70, 170, size=3)
    waves = [base[c] + 45 * np.sin(x / (5 + c) + index) * np.cos(y / (7 - c) + 0.5 * c) for c in range(3)]
    noisy = np.stack(waves, axis=-1) + rng.normal(0, 8, size=(H, W, 3))
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _mask(index: int) -> np.ndarray:
    """An ellipse of 255 with a soft (128) ring, different per photo; the rest 0."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    d = ((y - 20 - index % 3 * 3) / 14) ** 2 + ((x - 30 - index % 4 * 2) / 18) ** 2
    return np.where(d <= 1.0, 255, np.where(d <= 1.3, 128, 0)).astype(np.uint8)


def make_photos(folder: Path, count: int = 6, seed: int = 0, names=None, fmt="png"):
    """``count`` photos in ``folder/photos`` and masks in ``folder/masks``; returns both folders."""
    rng = np.random.default_rng(seed)
    photos, masks = folder / "photos", folder / "masks"
    photos.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    names = names or [f"photo_{i} x" for i in range(count)]  # '_' and ' ' in names on purpose
    for i, name in enumerate(names):
        Image.fromarray(_photo(rng, i)).save(photos / f"{name}.{fmt}")
        Image.fromarray(_mask(i)).save(masks / f"{name}.png")
    return photos, masks


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Six photos, three composites each, seed 0, written once for the read-only checks."""
    root = tmp_path_factory.mktemp("synth")
    photos, masks = make_photos(root)
    report = synthesize(photos, masks, root / "out", per_image=3, seed=0)
    return root, photos, masks, report


def _manifest(root: Path) -> dict:
    return json.loads((root / SUBSET_DIR / "synth_manifest.json").read_text())


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _fg_mse(composite, real, mask) -> float:
    fg = mask >= 128
    return float(((composite[fg].astype(float) - real[fg].astype(float)) ** 2).mean())


def _run_cli(args, capsys=None):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    return exit_info.value.code


# ---------------------------------------------------------------------------- colour and styles
def test_lab_conversion_known_values_and_skimage():
    # textbook CIE L*a*b* (D65) values
    np.testing.assert_allclose(rgb_to_lab([0.5, 0.5, 0.5]), [53.389, 0, 0], atol=0.01)
    np.testing.assert_allclose(rgb_to_lab([1.0, 1.0, 1.0]), [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(rgb_to_lab([1.0, 0.0, 0.0]), [53.24, 80.09, 67.20], atol=0.02)
    pixels = np.random.default_rng(1).uniform(0, 1, size=(500, 3))
    np.testing.assert_allclose(rgb_to_lab(pixels), rgb2lab(pixels[None])[0], atol=1e-3)  # skimage rounds 6/29
    from harmonize_cli.synth.colour import lab_to_rgb

    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(pixels)), pixels, atol=1e-6)


def test_reinhard_moves_lab_statistics_to_the_source():
    rng = np.random.default_rng(2)
    target = np.clip(rng.normal([0.6, 0.45, 0.3], 0.06, size=(4000, 3)), 0, 1)  # an orange-ish object
    target_lab = rgb2lab(target[None])[0]
    t_mean, t_std = target_lab.mean(0), target_lab.std(0)
    s_mean, s_std = np.array([45.0, -5.0, -15.0]), np.array([6.0, 3.0, 4.0])  # a bluish region, in gamut

    full = rgb2lab(style_lib.reinhard_transfer(target, t_mean, t_std, s_mean, s_std, 1.0)[None])[0]
    np.testing.assert_allclose(full.mean(0), s_mean, atol=0.3)
    np.testing.assert_allclose(full.std(0), s_std, atol=0.3)

    partial = rgb2lab(style_lib.reinhard_transfer(target, t_mean, t_std, s_mean, s_std, 0.6)[None])[0]
    np.testing.assert_allclose(partial.mean(0), 0.4 * t_mean + 0.6 * s_mean, atol=0.3)
    np.testing.assert_allclose(partial.std(0), 0.4 * t_std + 0.6 * s_std, atol=0.3)


def test_retouch_and_illumination_hand_computed_values():
    grey = np.array([[0.5, 0.5, 0.5]])
    # +1 EV on mid-grey: sRGB 0.5 -> linear 0.21404 -> x2 -> sRGB 0.68584
    np.testing.assert_allclose(style_lib.retouch(grey, exposure_ev=1.0), [[0.68584] * 3], atol=1e-4)
    # the tone curve keeps 0, 1/2 and 1 and bends 1/4 to 0.25 - 0.5 / (2 pi) = 0.17042 for c = 0.5
    np.testing.assert_allclose(style_lib.tone_curve(np.array([0.0, 0.25, 0.5, 1.0]), 0.5),
                               [0.0, 0.17042, 0.5, 1.0], atol=1e-5)
    # saturation 0 leaves the Rec. 709 luma in every channel
    colour = np.array([[0.8, 0.4, 0.2]])
    luma = 0.2126 * 0.8 + 0.7152 * 0.4 + 0.0722 * 0.2
    np.testing.assert_allclose(style_lib.retouch(colour, saturation=0.0), [[luma] * 3], atol=1e-9)
    # -1 EV on white: linear 0.5 -> sRGB 0.73536
    np.testing.assert_allclose(style_lib.illumination(np.ones((1, 3)), "dimmer", -1.0, 0.0), [[0.73536] * 3],
                               atol=1e-4)
    # warmer by 0.2 at 0 EV on mid-grey: red x1.2 -> 0.54380, green stays, blue x0.8 -> 0.45072
    np.testing.assert_allclose(style_lib.illumination(grey, "warmer", 0.0, 0.2), [[0.54380, 0.5, 0.45072]],
                               atol=1e-4)
    np.testing.assert_allclose(style_lib.illumination(grey, "cooler", 0.0, 0.2), [[0.45072, 0.5, 0.54380]],
                               atol=1e-4)


def test_drawn_parameters_stay_in_their_documented_ranges():
    rng = np.random.default_rng(0)
    for _ in range(200):
        retouch = style_lib.draw_params("retouch", rng)
        for name, (low, high) in style_lib.RANGES["retouch"].items():
            assert low <= retouch[name] <= high
        light = style_lib.draw_params("illumination", rng)
        ranges = style_lib.RANGES["illumination"][light["kind"]]
        assert ranges["exposure_ev"][0] <= light["exposure_ev"] <= ranges["exposure_ev"][1]
        assert ranges["shift"][0] <= light["shift"] <= ranges["shift"][1]
        assert 0.6 <= style_lib.draw_params("color", rng)["strength"] <= 1.0
    assert style_lib.canonical_styles("colour, Retouch") == ("color", "retouch")
    with pytest.raises(ValueError, match="unknown style 'blur'"):
        style_lib.canonical_styles("color,blur")


# ---------------------------------------------------------------------------- the dataset
def test_layout_is_accepted_by_prepare_and_the_dataset(dataset):
    root, _, _, report = dataset
    out = root / "out"
    assert report.photos == {"train": 5, "test": 1}  # round(6 * 0.1) = 1 test photo
    assert report.composites == {"train": 15, "test": 3}
    assert report.skipped == []
    names = sorted(p.name for p in (out / SUBSET_DIR / "composite_images").iterdir())
    assert names[:3] == ["photo-0-x_1_1.png", "photo-0-x_1_2.png", "photo-0-x_1_3.png"]

    packed = pack_dataset(out, output=root / "synth.h5", workers=0)
    assert packed.counts == {SUBSET_DIR: {"train": 15, "test": 3}}
    assert packed.problems == []
    for source in (out, root / "synth.h5"):
        samples = HarmonizationDataset(source, split="train", keep_raw=True)
        assert len(samples) == 15
        sample = samples[0]
        assert tuple(sample["image"].shape) == (3, H, W) and tuple(sample["mask"].shape) == (1, H, W)
        assert sample["subset"] == SUBSET_DIR
        np.testing.assert_allclose(np.unique(sample["mask"].numpy()), [0.0, 128 / 255, 1.0], atol=1e-6)
        assert len(HarmonizationDataset(source, split="test")) == 3


def test_background_is_bit_exact_and_the_real_is_the_photo(dataset):
    root, _, masks, _ = dataset
    subset = root / "out" / SUBSET_DIR
    manifest = _manifest(root / "out")
    for refs in (layout.scan(root / "out", splits=("train", "test")),):
        assert len(refs) == 18
        for ref in refs:
            composite = imageio.decode_image(ref.composite)
            real = imageio.decode_image(ref.real)
            mask = imageio.decode_mask(ref.mask)
            background = mask == 0
            assert np.array_equal(composite[background], real[background]), ref.name
            assert _fg_mse(composite, real, mask) >= FLOOR, ref.name
    for record in manifest["photos"]:  # real and mask are the inputs' pixels
        source = Path(record["source"])
        assert np.array_equal(imageio.decode_image(subset / record["real"]), np.asarray(Image.open(source)))
        assert np.array_equal(imageio.decode_mask(subset / record["mask_file"]),
                              np.asarray(Image.open(masks / f"{source.stem}.png")))


def test_compose_blends_soft_edges_by_hand():
    """compose: real (1 - a) + changed a with a = mask / 255, rounded; mask 0 untouched.
    real 100, changed 0.8 (204): a = 64/255 -> 100 * 191/255 + 204 * 64/255 = 126.1 -> 126;
    a = 128/255 -> 152.2 -> 152; a = 255/255 -> 204."""
    from harmonize_cli.synth.builder import compose

    real = np.full((1, 4, 3), 100, np.uint8)
    mask = np.array([[0, 64, 128, 255]], np.uint8)
    composite = compose(real, mask, np.full((3, 3), 0.8))
    assert composite[0, :, 0].tolist() == [100, 126, 152, 204]
    assert np.array_equal(composite[..., 0], composite[..., 2])


def test_soft_mask_edges_stay_soft_in_the_written_composites(tmp_path):
    """A flat photo changed by a per-pixel style: every changed pixel gets the same colour c (read
    at a mask-255 pixel), so a pixel of mask m must hold round(real (1 - m/255) + c m/255), by hand;
    a hard edge would put c (or the real) there."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(11)
    mask = _mask(0)
    mask[np.where(mask == 128)[0][::2], np.where(mask == 128)[1][::2]] = 64  # two soft levels
    for i in range(2):
        Image.fromarray(np.full((H, W, 3), rng.integers(90, 160, 3), np.uint8)).save(photos / f"flat{i}.png")
        Image.fromarray(mask).save(masks / f"flat{i}.png")
    synthesize(photos, masks, tmp_path / "out", per_image=2, styles=("retouch",), seed=3)
    refs = layout.scan(tmp_path / "out", splits=("train", "test"))
    assert len(refs) == 4
    for ref in refs:
        composite = imageio.decode_image(ref.composite).astype(np.float64)
        real = imageio.decode_image(ref.real).astype(np.float64)
        written = imageio.decode_mask(ref.mask)
        assert np.array_equal(written, mask)
        changed = composite[mask == 255][0]
        assert np.all(composite[mask == 255] == changed) and np.abs(changed - real[0, 0]).max() >= 10
        for level in (64, 128):
            alpha = level / 255.0
            expected = np.round(real[mask == level] * (1 - alpha) + changed * alpha)
            assert np.abs(composite[mask == level] - expected).max() <= 1.0, (ref.name, level)
        assert np.array_equal(composite[mask == 0], real[mask == 0])


def test_split_is_by_photo(tmp_path):
    photos, masks = make_photos(tmp_path, count=10)
    report = synthesize(photos, masks, tmp_path / "out", per_image=4, test_fraction=0.3, seed=5)
    assert report.photos == {"train": 7, "test": 3}  # 10 x 0.3
    subset = tmp_path / "out" / SUBSET_DIR
    reals = {}
    for part in ("train", "test"):
        names = layout.read_list(subset / f"{SUBSET_DIR}_{part}.txt")
        reals[part] = {layout.resolve_real(subset, name).name for name in names}
        assert len(names) == 4 * len(reals[part])  # every composite of a photo is in its photo's split
    assert len(reals["test"]) == 3 and len(reals["train"]) == 7
    assert not reals["train"] & reals["test"]
    manifest = _manifest(tmp_path / "out")
    split_of = {p["name"]: p["split"] for p in manifest["photos"]}
    for record in manifest["composites"]:
        assert record["split"] == split_of[record["photo"]]
        if record["style"] == "color":  # colours come from another photo of the same split
            assert record["params"]["source"] != record["photo"]
            assert split_of[record["params"]["source"]] == record["split"]


def test_split_sizes():
    names = [f"p{i}" for i in range(20)]
    assert list(split_photos(names, 0.1, 0).values()).count("test") == 2
    assert list(split_photos(names, 0.01, 0).values()).count("test") == 1  # at least one
    assert list(split_photos(names[:2], 0.9, 0).values()).count("test") == 1  # at least one train photo
    assert split_photos(names, 0.25, 3) == split_photos(list(reversed(names)), 0.25, 3)  # order-free


def test_same_seed_same_bytes_other_seed_other_composites(tmp_path):
    photos, masks = make_photos(tmp_path)
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        synthesize(photos, masks, tmp_path / name, per_image=2, seed=seed)
    first, second, other = (_files(tmp_path / name) for name in "abc")
    assert first == second
    composites = [key for key in first if "/composite_images/" in key]
    assert len(composites) == 12
    assert sum(first[key] != other.get(key) for key in composites) >= 10


@pytest.mark.parametrize("style", style_lib.STYLES)
def test_each_style_visibly_changes_the_foreground(tmp_path, style):
    photos, masks = make_photos(tmp_path, count=4)
    synthesize(photos, masks, tmp_path / "out", per_image=3, styles=[style], seed=1)
    subset = tmp_path / "out" / SUBSET_DIR
    manifest = _manifest(tmp_path / "out")
    assert {c["style"] for c in manifest["composites"]} == {style} and len(manifest["composites"]) == 12
    by_name = {p["name"]: p for p in manifest["photos"]}
    for record in manifest["composites"]:
        photo = by_name[record["photo"]]
        composite = imageio.decode_image(subset / record["file"])
        real = imageio.decode_image(subset / photo["real"])
        mask = imageio.decode_mask(subset / photo["mask_file"])
        assert _fg_mse(composite, real, mask) >= FLOOR
        assert record["fg_mse"] == pytest.approx(_fg_mse(composite, real, mask), abs=1e-3)
        if style == "color":  # the object's Lab mean moves (1 - strength) of the way to the source region's
            fg = mask == 255  # the soft ring (128) is only half changed
            source = by_name[record["params"]["source"]]
            source_mask = imageio.decode_mask(subset / source["mask_file"]) >= 128
            source_mean = rgb2lab(imageio.decode_image(subset / source["real"])[source_mask][None])[0].mean(0)
            before = rgb2lab(real[fg][None])[0].mean(0)
            after = rgb2lab(composite[fg][None])[0].mean(0)
            strength = record["params"]["strength"]
            ratio = np.linalg.norm(after - source_mean) / np.linalg.norm(before - source_mean)
            assert ratio == pytest.approx(1 - strength, abs=0.05)


def test_changes_below_the_floor_are_redrawn_or_reported(tmp_path):
    photos, masks = make_photos(tmp_path, count=3)
    black = np.zeros((H, W, 3), np.uint8)
    black[:, : W // 4] = 200  # a black object on a partly bright photo: gains cannot change it
    Image.fromarray(black).save(photos / "dark.png")
    object_mask = np.zeros((H, W), np.uint8)
    object_mask[10:30, 30:50] = 255
    Image.fromarray(object_mask).save(masks / "dark.png")

    report = synthesize(photos, masks, tmp_path / "out", per_image=4, styles="retouch,illumination", seed=2,
                        min_fg_mse=400.0)
    manifest = _manifest(tmp_path / "out")
    assert all(c["fg_mse"] >= 400.0 for c in manifest["composites"])
    assert report.redraws > 0 and any(c["draws"] > 1 for c in manifest["composites"])
    dark = [s for s in report.skipped if "dark_1_" in s.file]
    assert len(dark) == 4 and "below --min-fg-mse 400" in dark[0].reason
    assert not list((tmp_path / "out" / SUBSET_DIR / "composite_images").glob("dark_*"))
    with pytest.raises(SynthError, match="4 composite"):
        synthesize(photos, masks, tmp_path / "strict", per_image=4, styles="retouch,illumination", seed=2,
                   min_fg_mse=400.0, strict=True)
    assert not (tmp_path / "strict" / SUBSET_DIR).exists()


# ---------------------------------------------------------------------------- bad inputs
def _bad_inputs(tmp_path):
    photos, masks = make_photos(tmp_path, count=3)
    rng = np.random.default_rng(9)
    Image.fromarray(_photo(rng, 0)).save(photos / "nomask.png")
    Image.fromarray(_photo(rng, 1)).save(photos / "empty.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(masks / "empty.png")
    Image.fromarray(_photo(rng, 2)).save(photos / "small.png")
    Image.fromarray(_mask(0)[:32, :40]).save(masks / "small.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(_mask(0)).save(masks / "broken.png")
    Image.fromarray(_photo(rng, 3)).save(photos / "badmask.png")
    (masks / "badmask.png").write_bytes(b"some text, not a PNG")
    expected = {
        "nomask.png": "no mask found",
        "empty.png": "mask has no foreground",
        "small.png": "mask is 40x32 but photo small.png is 64x48",
        "broken.jpg": "cannot decode (Truncated File Read)",
        "badmask.png": "not a PNG, JPEG, TIFF, BMP or WebP image",
    }
    return photos, masks, expected


def test_bad_inputs_are_skipped_and_reported(tmp_path, capsys):
    photos, masks, expected = _bad_inputs(tmp_path)
    code = _run_cli(["synth", "--images", photos, "--masks", masks, "-o", tmp_path / "out", "--seed", 0,
                     "--per-image", 2])
    assert code == 0
    out = capsys.readouterr()
    assert "skipped: 5" in out.out
    manifest = _manifest(tmp_path / "out")
    skipped = {Path(s["file"]).name: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == set(expected)
    for name, reason in expected.items():
        assert reason in skipped[name], (name, skipped[name])
    assert Path(next(s["file"] for s in manifest["skipped"] if "small" in s["file"])).parent == masks
    assert manifest["counts"]["skipped"] == 5
    assert manifest["counts"]["photos"] == {"train": 2, "test": 1}
    assert "skipped" in out.err and "nomask.png" in out.err


def test_strict_exits_1_and_writes_nothing(tmp_path, capsys):
    photos, masks, _ = _bad_inputs(tmp_path)
    code = _run_cli(["synth", "--images", photos, "--masks", masks, "-o", tmp_path / "out", "--strict"])
    assert code == 1
    assert "5 photo(s) would be skipped" in capsys.readouterr().err
    assert not (tmp_path / "out" / SUBSET_DIR).exists()
    assert not (tmp_path / "out").exists()  # failed before anything was created


def test_masks_from_the_alpha_channel(tmp_path):
    rng = np.random.default_rng(4)
    photos = tmp_path / "cutouts"
    photos.mkdir()
    for i in range(3):
        rgba = np.dstack([_photo(rng, i), _mask(i)])
        Image.fromarray(rgba, "RGBA").save(photos / f"cut{i}.png")
    Image.fromarray(_photo(rng, 5)).save(photos / "plain.png")  # no alpha: no mask
    report = synthesize(photos, None, tmp_path / "out", per_image=1, seed=0)
    assert [Path(s.file).name for s in report.skipped] == ["plain.png"]
    assert "no alpha channel" in report.skipped[0].reason
    subset = tmp_path / "out" / SUBSET_DIR
    for i in range(3):
        source = np.asarray(Image.open(photos / f"cut{i}.png"))
        assert np.array_equal(imageio.decode_mask(subset / "masks" / f"cut{i}_1.png"), source[..., 3])
        assert np.array_equal(imageio.decode_image(subset / "real_images" / f"cut{i}.png"), source[..., :3])
    assert _manifest(tmp_path / "out")["photos"][0]["mask"] == "alpha"


def test_jpeg_composites(tmp_path):
    photos, masks = make_photos(tmp_path, count=3, fmt="jpg")
    synthesize(photos, masks, tmp_path / "out", per_image=2, seed=0, jpeg_quality=90)
    subset = tmp_path / "out" / SUBSET_DIR
    assert sorted(p.suffix for p in (subset / "composite_images").iterdir()) == [".jpg"] * 6
    for source in photos.iterdir():  # decodable JPEG photos are copied byte for byte
        stem = source.stem.replace("_", "-").replace(" ", "-")
        assert (subset / "real_images" / f"{stem}.jpg").read_bytes() == source.read_bytes()
    packed = pack_dataset(tmp_path / "out", output=tmp_path / "j.h5", workers=0)
    assert packed.counts == {SUBSET_DIR: {"train": 4, "test": 2}} and packed.problems == []


def test_never_overwrites_without_overwrite(tmp_path):
    photos, masks = make_photos(tmp_path, count=3)
    synthesize(photos, masks, tmp_path / "out", per_image=3, seed=0)
    before = _files(tmp_path / "out")
    with pytest.raises(UsageError, match="already exists"):
        synthesize(photos, masks, tmp_path / "out", per_image=2, seed=1)
    assert _files(tmp_path / "out") == before
    synthesize(photos, masks, tmp_path / "out", per_image=2, seed=1, overwrite=True)
    names = {p.name for p in (tmp_path / "out" / SUBSET_DIR / "composite_images").iterdir()}
    assert len(names) == 6 and not any(name.endswith("_3.png") for name in names)  # no stale files
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [SUBSET_DIR]  # no staging left
    umask = os.umask(0)
    os.umask(umask)
    subset = tmp_path / "out" / SUBSET_DIR
    assert stat.S_IMODE(subset.stat().st_mode) == 0o777 & ~umask  # not the temporary folder's 0700
    assert stat.S_IMODE((subset / "synth_manifest.json").stat().st_mode) == 0o666 & ~umask
    with pytest.raises(UsageError, match="would delete the input folder"):
        synthesize(tmp_path / "out" / SUBSET_DIR / "real_images", None, tmp_path / "out", overwrite=True)


def test_option_errors(tmp_path):
    photos, masks = make_photos(tmp_path, count=1)
    with pytest.raises(SynthError, match="needs at least two"):
        synthesize(photos, masks, tmp_path / "out", seed=0)
    with pytest.raises(UsageError, match="--styles"):
        synthesize(photos, masks, tmp_path / "out", styles="sepia")
    with pytest.raises(UsageError, match="bad subset name"):
        synthesize(photos, masks, tmp_path / "out", subset="../x")
    with pytest.raises(UsageError, match="does not exist"):
        synthesize(tmp_path / "nowhere", None, tmp_path / "out")


def test_cli_quiet_and_help(tmp_path, capsys):
    photos, masks = make_photos(tmp_path, count=3)
    assert _run_cli(["-q", "synth", "--images", photos, "--masks", masks, "-o", tmp_path / "out", "--seed", 0]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert _manifest(tmp_path / "out")["counts"]["composites"] == {"train": 10, "test": 5}
    assert _run_cli(["synth", "--help"]) == 0
    assert "harmonize synth --images photos/ --masks masks/" in capsys.readouterr().out
    assert _run_cli(["synth", "--images", photos, "--masks", masks, "-o", tmp_path / "out"]) == 2
    assert "already exists" in capsys.readouterr().err
