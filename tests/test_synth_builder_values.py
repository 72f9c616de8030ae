"""synth/builder.py on tiny photos (6 x 8), against values computed here: the composites of a
seed (the photo's numpy stream [seed, 1, crc32(name)] drawn again in the test, the style
cycle, the blend by hand), the manifest field by field, the split, the file names, bytes and
permissions, the change floor and its redraws, and every error message. Fast: the file
tools/mutation.sh runs for synth/builder."""

from __future__ import annotations

import io
import json
import os
import stat
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab

from harmonize_cli import __version__
from harmonize_cli.errors import UsageError
from harmonize_cli.synth import builder
from harmonize_cli.synth import styles as style_lib
from harmonize_cli.synth.builder import SynthError, synthesize

H, W = 6, 8
SUB = "Synthetic"


def _photo(index):
    """Every pixel different, channels different; a different photo per index."""
    y, x = np.mgrid[0:H, 0:W]
    channels = [40 + 9 * x + 13 * y + 7 * index, 200 - 11 * x - 5 * y - 3 * index, 90 + 17 * ((x + y + index) % 5)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def _mask(index):
    """255 in a block, a soft ring of 127 / 128 / 64 (127 is not foreground), one pixel of 1, 0 elsewhere."""
    mask = np.zeros((H, W), np.uint8)
    mask[1:5, 2 + index % 2: 6 + index % 2] = 64
    mask[2:4, 3 + index % 2: 5 + index % 2] = 255
    mask[1, 2 + index % 2] = 127
    mask[4, 5 + index % 2] = 128
    mask[5, 0] = 1  # a trace of the object: blended (1/255), never foreground
    return mask


def make(root: Path, names=("a", "b", "c"), fmt="png"):
    photos, masks = root / "photos", root / "masks"
    photos.mkdir(parents=True)
    masks.mkdir()
    for i, name in enumerate(names):
        Image.fromarray(_photo(i)).save(photos / f"{name}.{fmt}")
        Image.fromarray(_mask(i)).save(masks / f"{name}.png")
    return photos, masks


def _split(names, fraction, seed):
    """The split by photo, by hand: round half up, at least 1 and at most n - 1 test photos, the
    first of numpy's permutation seeded [seed, 0] over the sorted names."""
    ordered = sorted(names)
    n_test = min(len(names) - 1, max(1, int(np.floor(len(names) * fraction + 0.5))))
    order = np.random.default_rng([seed, 0]).permutation(len(names))
    return {name: "test" if name in {ordered[i] for i in order[:n_test]} else "train" for name in ordered}


def _blend(real, mask, changed):
    inside = mask > 0
    alpha = mask[inside][:, None] / 255.0
    out = real.copy()
    out[inside] = np.clip(np.round((real[inside] / 255.0 * (1 - alpha) + changed * alpha) * 255), 0, 255)
    return out


def _fg_mse(composite, real, mask):
    fg = mask >= 128
    return float(np.mean((composite[fg].astype(float) - real[fg].astype(float)) ** 2))


def expected_composites(names, styles, per_image, seed, floor, stats, split):
    """name -> [(style, params, composite, mse, draws) or None]: the builder's draws redone here."""
    out = {}
    for i, name in enumerate(names):
        real, mask = _photo(i), _mask(i)
        rng = np.random.default_rng([seed, 1, zlib.crc32(name.encode("utf-8"))])
        start = int(rng.integers(len(styles)))
        same_split = [n for n in sorted(names) if n != name and split[n] == split[name]]
        sources = same_split or [n for n in sorted(names) if n != name]
        pixels = real[mask > 0] / 255.0
        made = []
        for k in range(per_image):
            style = styles[(start + k) % len(styles)]
            result = None
            for draw in range(1, 11):
                params = style_lib.draw_params(style, rng)
                source_stats = None
                if style == "color":
                    params["source"] = sources[int(rng.integers(len(sources)))]
                    source_stats = stats[params["source"]]
                changed = style_lib.apply_style(style, pixels, {k_: v for k_, v in params.items() if k_ != "source"},
                                                stats[name], source_stats)
                composite = _blend(real, mask, changed)
                mse = _fg_mse(composite, real, mask)
                if mse >= floor:
                    result = (style, params, composite, mse, draw)
                    break
            made.append(result)
        out[name] = made
    return out


def _lab(i):
    fg = _mask(i) >= 128
    lab = rgb2lab(_photo(i)[fg][None] / 255.0)[0]
    return lab.mean(0), lab.std(0)


def _png(array, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, **options)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- small helpers
def test_compose_and_foreground_mse_by_hand():
    real = np.full((1, 5, 3), 100, np.uint8)
    mask = np.array([[0, 1, 127, 128, 255]], np.uint8)
    composite = builder.compose(real, mask, np.full((4, 3), 0.8))
    # 100 + (204 - 100) m / 255: m = 1 -> 100.4 -> 100; 127 -> 151.8 -> 152; 128 -> 152.2 -> 152; 255 -> 204
    assert composite[0, :, 1].tolist() == [100, 100, 152, 152, 204] and composite.dtype == np.uint8
    assert real[0, 1, 0] == 100  # the input is not changed
    over = builder.compose(np.full((1, 2, 3), 250, np.uint8), np.array([[255, 255]], np.uint8),
                           np.array([[1.2, -0.5, 0.999]] * 2))
    assert over[0, 0].tolist() == [255, 0, 255]  # clipped, 254.7 rounds to 255
    half = builder.compose(np.full((1, 1, 3), 0, np.uint8), np.array([[255]], np.uint8), np.array([[0.5 / 255] * 3]))
    assert half[0, 0].tolist() == [0, 0, 0]  # 0.5 rounds to even: numpy's round, as documented nowhere else
    # foreground: mask >= 128, all channels: diffs (52, 52, 52) at 128, (104,)*3 at 255 -> (3 * 52^2 + 3 * 104^2) / 6
    assert builder.foreground_mse(composite, real, mask) == pytest.approx((52**2 + 104**2) / 2)
    assert builder.foreground_mse(composite, real, np.zeros((1, 5), np.uint8)) == 0.0
    assert isinstance(builder.foreground_mse(composite, real, mask), float)
    small = np.array([[[0, 0, 0]]], np.uint8)
    assert builder.foreground_mse(small, np.array([[[255, 255, 255]]], np.uint8), np.array([[128]])) == 255.0**2


def test_split_photos_by_hand():
    names = [f"p{i}" for i in range(10)]
    for fraction, seed, n_test in ((0.25, 3, 3), (0.1, 0, 1), (0.01, 5, 1), (0.99, 2, 9), (0.3, 1, 3), (0.15, 4, 2)):
        split = builder.split_photos(list(reversed(names)), fraction, seed)
        assert split == _split(names, fraction, seed)
        assert list(split) == sorted(names) and list(split.values()).count("test") == n_test
    assert builder.split_photos(["x", "y", "z", "w", "v"], 0.3, 7) == _split(["x", "y", "z", "w", "v"], 0.3, 7)
    assert list(builder.split_photos(["a", "b", "c", "d", "e"], 0.3, 7).values()).count("test") == 2  # 1.5 -> 2
    assert builder.split_photos(["a", "b"], 0.5, 9) == _split(["a", "b"], 0.5, 9)


def test_photo_rng_is_seed_stream_one_and_the_names_crc():
    expected = np.random.default_rng([12, 1, zlib.crc32("photo-é".encode("utf-8"))]).integers(0, 1000, 5)
    assert builder.photo_rng(12, "photo-é").integers(0, 1000, 5).tolist() == expected.tolist()


def test_report_totals_and_error_report():
    report = builder.SynthReport(output=Path("o"), subset=SUB, subset_dir=Path("o") / SUB)
    assert report.photos == {"train": 0, "test": 0} and report.composites == {"train": 0, "test": 0}
    assert report.styles == {} and report.redraws == 0 and report.skipped == [] and report.seed == 0
    assert report.manifest is None and report.seconds == 0.0
    report.composites = {"train": 4, "test": 3}
    assert report.total_composites == 7
    error = SynthError("m", "h", report)
    assert error.report is report and error.message == "m" and error.hint == "h"
    assert SynthError("m").report is None and SynthError("m").hint is None
    assert builder.SynthReport(Path("o"), SUB, Path("o")).photos is not report.photos


# ---------------------------------------------------------------------------- one whole dataset
@pytest.mark.parametrize("styles, per_image, seed", [(("retouch", "illumination", "color"), 2, 4),
                                                     (("color",), 1, 0), (("illumination", "retouch"), 3, 11)])
def test_the_dataset_equals_the_draws_redone_by_hand(tmp_path, styles, per_image, seed):
    names = ("a", "b", "c", "d")
    photos, masks = make(tmp_path, names)
    calls = []
    report = synthesize(photos, masks, tmp_path / "out", per_image=per_image, styles=",".join(styles), seed=seed,
                        test_fraction=0.3, min_fg_mse=30.0, on_progress=lambda *a: calls.append(a))
    subset = tmp_path / "out" / SUB
    split = _split(names, 0.3, seed)
    manifest = json.loads((subset / "synth_manifest.json").read_text())
    stats = {}
    for i, name in enumerate(names):
        record = manifest["photos"][i]
        mean, std = _lab(i)
        np.testing.assert_allclose(record["lab_mean"], mean, atol=2e-3)
        np.testing.assert_allclose(record["lab_std"], std, atol=2e-3)
        assert record["lab_mean"] == [round(v, 4) for v in record["lab_mean"]]
        assert record["lab_std"] == [round(v, 4) for v in record["lab_std"]]
        stats[name] = (np.array(record["lab_mean"]), np.array(record["lab_std"]))
        assert record == {
            "name": name, "source": str(photos / f"{name}.png"), "mask": str(masks / f"{name}.png"),
            "split": split[name], "size": [W, H], "foreground_pixels": 5, "real": f"real_images/{name}.png",
            "mask_file": f"masks/{name}_1.png", "lab_mean": record["lab_mean"], "lab_std": record["lab_std"],
        }
        assert (subset / "real_images" / f"{name}.png").read_bytes() == (photos / f"{name}.png").read_bytes()
        assert np.array_equal(np.asarray(Image.open(subset / "masks" / f"{name}_1.png")), _mask(i))
    expected = expected_composites(names, styles, per_image, seed, 30.0, stats, split)
    records = iter(manifest["composites"])
    counts = {"train": 0, "test": 0}
    by_style, redraws = {}, 0
    for i, name in enumerate(names):
        for k, made in enumerate(expected[name], 1):
            assert made is not None
            style, params, composite, mse, draws = made
            record = next(records)
            assert record == {"file": f"composite_images/{name}_1_{k}.png", "photo": name, "split": split[name],
                              "style": style, "params": params, "fg_mse": round(mse, 3), "draws": draws}
            written = (subset / record["file"]).read_bytes()
            assert written == _png(composite, format="PNG", compress_level=1)
            counts[split[name]] += 1
            by_style[style] = by_style.get(style, 0) + 1
            redraws += draws - 1
    assert next(records, None) is None
    assert report.composites == counts and report.styles == by_style and report.redraws == redraws
    assert report.photos == {part: list(split.values()).count(part) for part in ("train", "test")}
    for part in ("train", "test"):
        listed = (subset / f"{SUB}_{part}.txt").read_text()
        assert listed == "".join(f"{n}_1_{k}.png\n" for n in names if split[n] == part
                                 for k in range(1, per_image + 1))
    assert calls == [("check", 0, 4), ("check", 1, 4), ("check", 2, 4), ("check", 3, 4), ("check", 4, 4),
                     ("synth", 0, 4), ("synth", 1, 4), ("synth", 2, 4), ("synth", 3, 4), ("synth", 4, 4)]
    assert manifest == {
        "format": "harmonize-synth", "format_version": 1, "harmonize_version": __version__, "subset": SUB,
        "images": str(photos), "masks": str(masks), "seed": seed, "per_image": per_image, "styles": list(styles),
        "test_fraction": 0.3, "min_fg_mse": 30.0, "max_draws": 10, "jpeg_quality": None,
        "ranges": json.loads(json.dumps(style_lib.RANGES)),
        "counts": {"photos": report.photos, "composites": counts, "styles": dict(sorted(by_style.items())),
                   "redraws": redraws, "skipped": 0},
        "photos": manifest["photos"], "composites": manifest["composites"], "skipped": [],
    }
    text = (subset / "synth_manifest.json").read_text()
    assert text == json.dumps(manifest, indent=1) + "\n"
    assert report.output == tmp_path / "out" and report.subset == SUB and report.subset_dir == subset
    assert report.manifest == subset / "synth_manifest.json" and report.seed == seed and report.skipped == []
    assert 0.0 < report.seconds < 120.0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [SUB]
    assert sorted(p.name for p in subset.iterdir()) == sorted(
        ["composite_images", "masks", "real_images", f"{SUB}_train.txt", f"{SUB}_test.txt", "synth_manifest.json"])


def test_colour_sources_come_from_the_same_split_or_else_any_other_photo(tmp_path):
    """Four photos, one of them test: a train photo's colours come from another train photo; the
    test photo, alone in its split, takes them from any other photo. Two photos: each the other."""
    names = ("a", "b", "c", "d")
    photos, masks = make(tmp_path, names)
    synthesize(photos, masks, tmp_path / "out", per_image=4, styles="color", seed=3, min_fg_mse=1.0, test_fraction=0.3)
    split = _split(names, 0.3, 3)
    manifest = json.loads((tmp_path / "out" / SUB / "synth_manifest.json").read_text())
    pairs = [(c["photo"], c["params"]["source"]) for c in manifest["composites"]]
    assert len(pairs) == 16 and all(source != photo for photo, source in pairs)
    assert all(split[source] == "train" for photo, source in pairs if split[photo] == "train")
    (test_photo,) = [n for n in names if split[n] == "test"]
    assert {source for photo, source in pairs if photo == test_photo} <= set(names) - {test_photo}
    two = tmp_path / "two"
    photos, masks = make(two, ("a", "b"))
    synthesize(photos, masks, two / "out", per_image=2, styles="color", seed=1, min_fg_mse=1.0)
    manifest = json.loads((two / "out" / SUB / "synth_manifest.json").read_text())
    assert [(c["photo"], c["params"]["source"]) for c in manifest["composites"]] == [("a", "b")] * 2 + [("b", "a")] * 2


def test_the_floor_is_inclusive_and_a_change_below_it_is_redrawn_then_skipped(tmp_path):
    names = ("a", "b", "c")
    photos, masks = make(tmp_path, names)
    split = _split(names, 0.1, 2)
    stats = {n: (np.array(_lab(i)[0]), np.array(_lab(i)[1])) for i, n in enumerate(names)}
    first = expected_composites(names, ("retouch",), 1, 2, 0.0, stats, split)
    floor = min(first[n][0][3] for n in names)  # exactly the smallest first change: every first draw is kept
    report = synthesize(photos, masks, tmp_path / "exact", per_image=1, styles="retouch", seed=2, min_fg_mse=floor)
    records = json.loads((tmp_path / "exact" / SUB / "synth_manifest.json").read_text())["composites"]
    assert [(r["draws"], r["params"]) for r in records] == [(1, first[n][0][1]) for n in names]
    assert report.redraws == 0
    notices = []
    report = synthesize(photos, masks, tmp_path / "high", per_image=2, styles="retouch", seed=2, min_fg_mse=1000.0,
                        on_notice=notices.append)
    expected = expected_composites(names, ("retouch",), 2, 2, 1000.0, stats, split)
    skipped = [(f"composite_images/{n}_1_{k}.png") for n in names for k, m in enumerate(expected[n], 1) if m is None]
    made = [m for n in names for m in expected[n] if m is not None]
    assert skipped and made and any(m[4] > 1 for m in made)
    reason = ("the foreground change stayed below --min-fg-mse 1000 after 10 draws "
              "(retouch; is the object very dark, bright or flat?)")
    assert [(s.file, s.reason) for s in report.skipped] == [(f, reason) for f in skipped]
    assert notices == [f"skipped {f}: {reason}" for f in skipped]
    assert report.redraws == sum(m[4] - 1 for m in made)
    assert report.styles == {"retouch": len(made)}
    manifest = json.loads((tmp_path / "high" / SUB / "synth_manifest.json").read_text())
    assert manifest["skipped"] == [{"file": f, "reason": reason} for f in skipped]
    assert manifest["counts"]["skipped"] == len(skipped) and manifest["min_fg_mse"] == 1000.0
    assert not any((tmp_path / "high" / SUB / f).exists() for f in skipped)


def test_jpeg_composites_bytes_and_reals_copied_or_converted(tmp_path):
    names = ("a", "b", "c")
    photos, masks = make(tmp_path, names)
    Image.fromarray(_photo(1)).save(photos / "b.png")
    (photos / "b.png").rename(photos / "b.PNG")  # an upper-case suffix: still copied as .png
    Image.fromarray(_photo(2)).save(photos / "c.bmp")  # not read by the dataset reader: written as PNG
    (photos / "c.png").unlink()
    report = synthesize(photos, masks, tmp_path / "out", per_image=1, styles="illumination", seed=5,
                        jpeg_quality="77", min_fg_mse=5.0)
    subset = tmp_path / "out" / SUB
    assert (subset / "real_images" / "b.png").read_bytes() == (photos / "b.PNG").read_bytes()
    assert (subset / "real_images" / "c.png").read_bytes() != (photos / "c.bmp").read_bytes()
    assert np.array_equal(np.asarray(Image.open(subset / "real_images" / "c.png")), _photo(2))
    assert (subset / "real_images" / "c.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((subset / "synth_manifest.json").read_text())
    assert manifest["jpeg_quality"] == 77 and report.total_composites == 3
    names_out = ("a", "b", "c")
    stats = {n: (np.array(p["lab_mean"]), np.array(p["lab_std"])) for n, p in zip(names_out, manifest["photos"])}
    for i, record in enumerate(manifest["composites"]):
        assert record["file"] == f"composite_images/{names_out[i]}_1_1.jpg"
        expected = _photo(i).copy()
        rng = np.random.default_rng([5, 1, zlib.crc32(names_out[i].encode())])
        rng.integers(1)
        params = style_lib.draw_params("illumination", rng)
        assert record["params"] == params and record["draws"] == 1
        changed = style_lib.apply_style("illumination", expected[_mask(i) > 0] / 255.0, params)
        expected = _blend(_photo(i), _mask(i), changed)
        assert (subset / record["file"]).read_bytes() == _png(expected, format="JPEG", quality=77, subsampling=0)
    assert [r["real"] for r in manifest["photos"]] == ["real_images/a.png", "real_images/b.png", "real_images/c.png"]
    assert stats  # the stats came from the manifest
    jpg = tmp_path / "jpg"
    photos, masks = make(jpg, ("x", "y"), fmt="jpeg")
    synthesize(photos, masks, jpg / "out", per_image=1, seed=0, min_fg_mse=1.0)
    assert (jpg / "out" / SUB / "real_images" / "x.jpg").read_bytes() == (photos / "x.jpeg").read_bytes()


def test_alpha_masks_and_the_manifest_names_them(tmp_path):
    """cut0 has no mask file (its alpha channel is the mask): recorded as "alpha"; cut1's mask file
    wins over its alpha channel and is recorded by path."""
    photos, masks = tmp_path / "cutouts", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    for i in range(2):
        Image.fromarray(np.dstack([_photo(i), _mask(i)]), "RGBA").save(photos / f"cut{i}.png")
    Image.fromarray(_mask(1)).save(masks / "cut1.png")
    report = synthesize(photos, masks, tmp_path / "out", per_image=1, seed=0, min_fg_mse=1.0)
    manifest = json.loads((tmp_path / "out" / SUB / "synth_manifest.json").read_text())
    assert [p["mask"] for p in manifest["photos"]] == ["alpha", str(masks / "cut1.png")]
    assert report.total_composites == 2
    real = tmp_path / "out" / SUB / "real_images" / "cut0.png"  # RGBA: the dataset reads RGB, so it is rewritten
    assert np.array_equal(np.asarray(Image.open(real)), _photo(0))
    report = synthesize(photos, None, tmp_path / "out2", per_image=1, seed=0, min_fg_mse=1.0)
    manifest = json.loads((tmp_path / "out2" / SUB / "synth_manifest.json").read_text())
    assert manifest["masks"] is None and [p["mask"] for p in manifest["photos"]] == ["alpha", "alpha"]


# ---------------------------------------------------------------------------- skipping and failing
def _with_bad(tmp_path):
    photos, masks = make(tmp_path, ("a", "b", "c"))
    Image.fromarray(_photo(3)).save(photos / "nomask.png")  # no mask file, no alpha
    return photos, masks


def test_bad_photos_are_skipped_with_notices_and_strict_fails_naming_the_first(tmp_path):
    photos, masks = _with_bad(tmp_path)
    notices = []
    report = synthesize(photos, masks, tmp_path / "out", per_image=1, seed=0, min_fg_mse=1.0, on_notice=notices.append)
    reason = f"no mask found (looked for nomask.*, nomask_mask.* in {masks}); no alpha channel"
    assert [(s.file, s.reason) for s in report.skipped] == [(str(photos / "nomask.png"), reason)]
    assert notices == [f"skipped {photos / 'nomask.png'}: {reason}"]
    assert report.photos["train"] + report.photos["test"] == 3
    with pytest.raises(SynthError) as info:
        synthesize(photos, masks, tmp_path / "strict", per_image=1, seed=0, min_fg_mse=1.0, strict=True)
    assert info.value.message == f"1 photo(s) would be skipped (first: {photos / 'nomask.png'}: {reason})"
    assert info.value.hint == "fix them or drop --strict; nothing was written"
    assert info.value.report.skipped[0].reason == reason
    assert not (tmp_path / "strict").exists()
    photos, masks = make(tmp_path / "s2", ("a", "b", "c"))  # seed 2, floor 1000: c_1_1 stays below it
    with pytest.raises(SynthError) as info:
        synthesize(photos, masks, tmp_path / "strict2", per_image=2, styles="retouch", seed=2, min_fg_mse=1000.0,
                   strict=True)
    assert info.value.message == ("1 composite(s) would be skipped (first: composite_images/c_1_1.png: the foreground "
                                  "change stayed below --min-fg-mse 1000 after 10 draws (retouch; is the object very "
                                  "dark, bright or flat?))")
    assert info.value.hint == "fix them or drop --strict; nothing was written"
    assert sorted(p.name for p in (tmp_path / "strict2").iterdir()) == []  # the staging folder is gone


def test_a_photo_with_two_masks_is_skipped_with_a_notice(tmp_path):
    photos, masks = make(tmp_path, ("a", "b", "c"))
    Image.fromarray(_mask(2)).save(masks / "c.jpg")  # c.png and c.jpg: never guessed
    notices = []
    report = synthesize(photos, masks, tmp_path / "out", per_image=1, seed=0, min_fg_mse=1.0, on_notice=notices.append)
    (skipped,) = report.skipped
    assert skipped.file == str(photos / "c.png") and skipped.reason.startswith("ambiguous mask")
    assert "c.jpg, c.png" in skipped.reason
    assert notices == [f"skipped {photos / 'c.png'}: {skipped.reason}"]


def test_too_few_usable_photos(tmp_path):
    photos, masks = make(tmp_path, ("a",))
    Image.fromarray(_photo(3)).save(photos / "nomask.png")
    with pytest.raises(SynthError) as info:
        synthesize(photos, masks, tmp_path / "out", seed=0)
    assert info.value.message == f"1 usable photo(s) in {photos}: the split by photo needs at least two"
    assert info.value.hint == "add photos with masks (see the skipped files above)"
    assert info.value.report.skipped[0].file == str(photos / "nomask.png")
    (photos / "nomask.png").unlink()
    with pytest.raises(SynthError) as info:
        synthesize(photos, masks, tmp_path / "out", seed=0)
    assert info.value.hint == "add photos with masks"
    assert not (tmp_path / "out").exists()


def test_no_test_or_no_train_composites_is_an_error_and_leaves_nothing(tmp_path):
    names = ("a", "b")
    photos, masks = make(tmp_path, names)
    with pytest.raises(SynthError) as info:
        synthesize(photos, masks, tmp_path / "out", per_image=1, seed=0, min_fg_mse=1e9)
    assert info.value.message == "no train composites were made"
    assert info.value.hint == "add photos or lower --min-fg-mse"
    assert isinstance(info.value.report, builder.SynthReport) and info.value.report.photos == {"train": 1, "test": 1}
    assert list((tmp_path / "out").iterdir()) == []
    seed = next(s for s in range(50) if _split(names, 0.1, s)["b"] == "test")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(photos / "b.png")  # black: gains cannot change it
    with pytest.raises(SynthError) as info:
        synthesize(photos, masks, tmp_path / "out", per_image=1, styles="retouch", seed=seed, min_fg_mse=20.0)
    assert info.value.message == "no test composites were made"


def test_a_photo_that_fails_in_the_second_pass_is_skipped(tmp_path, monkeypatch):
    photos, masks = make(tmp_path, ("a", "b", "c"))
    real_load, seen = builder.inputs.load, []

    def load(photo):
        seen.append(photo.name)
        if photo.name == "b" and seen.count("b") == 2:
            raise builder.BadPhoto(photo.source, "changed on disk")
        return real_load(photo)

    monkeypatch.setattr(builder.inputs, "load", load)
    calls, notices = [], []
    report = synthesize(photos, masks, tmp_path / "out", per_image=1, seed=0, min_fg_mse=1.0, test_fraction=0.4,
                        on_progress=lambda *a: calls.append(a), on_notice=notices.append)
    assert [(s.file, s.reason) for s in report.skipped] == [(str(photos / "b.png"), "changed on disk")]
    assert notices == [f"skipped {photos / 'b.png'}: changed on disk"]
    assert calls[-4:] == [("synth", 0, 3), ("synth", 1, 3), ("synth", 2, 3), ("synth", 3, 3)]
    assert not list((tmp_path / "out" / SUB / "real_images").glob("b.*"))
    assert report.photos["train"] + report.photos["test"] == 2


# ---------------------------------------------------------------------------- options
@pytest.mark.parametrize("options, message", [
    ({"per_image": 0}, "--per-image must be 1 or more, got 0"),
    ({"styles": "sepia"}, "--styles: unknown style 'sepia' (choose from color, retouch, illumination)"),
    ({"test_fraction": 0.0}, "--test-fraction must be between 0 and 1 (exclusive), got 0.0"),
    ({"test_fraction": 1}, "--test-fraction must be between 0 and 1 (exclusive), got 1"),
    ({"jpeg_quality": 0}, "--jpeg-quality must be 1 to 100, got 0"),
    ({"jpeg_quality": 101}, "--jpeg-quality must be 1 to 100, got 101"),
    ({"min_fg_mse": -0.5}, "--min-fg-mse must be 0 or more, got -0.5"),
    ({"seed": -1}, "--seed must be 0 or more, got -1"),
    ({"subset": " "}, "bad subset name ''"), ({"subset": "."}, "bad subset name '.'"),
    ({"subset": ".."}, "bad subset name '..'"), ({"subset": ".hidden"}, "bad subset name '.hidden'"),
    ({"subset": "a/b"}, "bad subset name 'a/b'"), ({"subset": "a\\b"}, "bad subset name 'a\\\\b'"),
    ({"subset": "c:d"}, "bad subset name 'c:d'"),
])
def test_option_errors_are_usage_errors_with_exact_messages(tmp_path, options, message):
    photos, masks = make(tmp_path, ("a", "b"))
    with pytest.raises(UsageError) as info:
        synthesize(photos, masks, tmp_path / "out", **{"seed": 0, **options})
    assert info.value.message == message
    if "subset" in options:
        assert info.value.hint == "use a plain folder name such as Synthetic"
    elif "seed" in options:
        assert info.value.hint is None
    assert not (tmp_path / "out").exists()


def test_boundary_options_are_accepted(tmp_path):
    photos, masks = make(tmp_path, ("a", "b"))
    for i, options in enumerate(({"per_image": 1, "jpeg_quality": 1, "min_fg_mse": 0.0, "seed": 0},
                                 {"per_image": 1, "jpeg_quality": 100, "styles": ["Colour", "light", "colour"],
                                  "subset": " XMine ", "test_fraction": 0.999})):
        report = synthesize(photos, masks, tmp_path / f"o{i}", **options)
        assert report.total_composites == 2
    manifest = json.loads((tmp_path / "o1" / "XMine" / "synth_manifest.json").read_text())
    assert manifest["styles"] == ["color", "illumination"] and manifest["subset"] == "XMine"
    assert manifest["min_fg_mse"] == 100.0 and manifest["per_image"] == 1


def test_defaults(tmp_path, monkeypatch):
    photos, masks = make(tmp_path, ("a", "b", "c"))
    bits = []
    monkeypatch.setattr(builder.secrets, "randbits", lambda n: bits.append(n) or 987654)
    report = synthesize(photos, masks, tmp_path / "out", min_fg_mse=1.0)
    assert bits == [32] and report.seed == 987654
    manifest = json.loads((tmp_path / "out" / SUB / "synth_manifest.json").read_text())
    assert manifest["per_image"] == 5 and manifest["styles"] == ["color", "retouch", "illumination"]
    assert manifest["test_fraction"] == 0.1 and manifest["seed"] == 987654 and manifest["jpeg_quality"] is None
    assert report.composites == {"train": 10, "test": 5}
    assert (builder.DEFAULT_SUBSET, builder.DEFAULT_PER_IMAGE, builder.DEFAULT_TEST_FRACTION, builder.MIN_FG_MSE,
            builder.MAX_DRAWS, builder.MANIFEST_NAME, builder.MASK_ID) == (
        "Synthetic", 5, 0.1, 100.0, 10, "synth_manifest.json", 1)


# ---------------------------------------------------------------------------- where it writes
def test_output_folder_checks_and_messages(tmp_path):
    photos, masks = make(tmp_path, ("a", "b"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError) as info:
        synthesize(photos, masks, tmp_path / "file", seed=0)
    assert (info.value.message, info.value.hint) == (f"-o {tmp_path / 'file'} is a file", "give a folder for the dataset")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / SUB).write_text("x")
    with pytest.raises(UsageError) as info:
        synthesize(photos, masks, tmp_path / "o", seed=0)
    assert (info.value.message, info.value.hint) == (f"{tmp_path / 'o' / SUB} exists and is not a folder",
                                                     "choose another -o or --subset")
    (tmp_path / "o" / SUB).unlink()
    (tmp_path / "o" / SUB).mkdir()  # an empty folder is used as it is
    report = synthesize(photos, masks, tmp_path / "o", per_image=1, seed=0, min_fg_mse=1.0)
    assert report.total_composites == 2
    with pytest.raises(UsageError) as info:
        synthesize(photos, masks, tmp_path / "o", per_image=1, seed=0, min_fg_mse=1.0)
    assert (info.value.message, info.value.hint) == (
        f"{tmp_path / 'o' / SUB} already exists", "pass --overwrite to replace it, or choose another -o or --subset")
    mine = tmp_path / "mine" / SUB
    mine.mkdir(parents=True)
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(UsageError) as info:
        synthesize(photos, masks, tmp_path / "mine", seed=0, overwrite=True)
    assert info.value.message == (f"--overwrite: {mine} was not written by `harmonize synth` (no synth_manifest.json); "
                                  "nothing in it was deleted")
    assert info.value.hint == "choose another -o or --subset" and (mine / "keep.txt").read_text() == "mine"
    inner = tmp_path / "o" / SUB / "masks"
    with pytest.raises(UsageError) as info:
        synthesize(photos, inner, tmp_path / "o", seed=0, overwrite=True)
    assert info.value.message == f"--overwrite would delete the input folder {inner} (it is inside {tmp_path / 'o' / SUB})"
    assert info.value.hint == "write the dataset somewhere else"
    nested = synthesize(photos, masks, tmp_path / "new" / "deep", per_image=1, seed=0, min_fg_mse=1.0)
    assert nested.subset_dir == tmp_path / "new" / "deep" / SUB and nested.subset_dir.is_dir()


def test_overwrite_replaces_the_whole_subset_and_a_failed_swap_keeps_the_old_one(tmp_path, monkeypatch):
    photos, masks = make(tmp_path, ("a", "b"))
    out = tmp_path / "out"
    synthesize(photos, masks, out, per_image=2, seed=0, min_fg_mse=1.0)
    (out / SUB / "stale.txt").write_text("old")
    seen = []
    synthesize(photos, masks, out, per_image=1, seed=1, min_fg_mse=1.0, overwrite=True,
               on_progress=lambda phase, done, total: seen.append(sorted(p.name for p in out.iterdir())))
    assert not (out / SUB / "stale.txt").exists() and sorted(p.name for p in out.iterdir()) == [SUB]
    staged = [n for names in seen for n in names if n != SUB]
    assert staged and all(n.startswith(f".{SUB}.partial-") for n in staged)
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real_rename = Path.rename

    def rename(self, target):
        if self.name.startswith(f".{SUB}.partial-"):
            raise OSError(28, "No space left on device")
        if self.name == SUB:  # the old subset is moved aside beside it, under a hidden name
            assert Path(target).name.startswith(f".{SUB}.old-") and Path(target).parent == out
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="No space"):
        synthesize(photos, masks, out, per_image=2, seed=2, min_fg_mse=1.0, overwrite=True)
    monkeypatch.undo()
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == [SUB]
    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="No space"):  # a first dataset: nothing to put back, the error itself
        synthesize(photos, masks, tmp_path / "first", per_image=1, seed=2, min_fg_mse=1.0)
    monkeypatch.undo()
    assert list((tmp_path / "first").iterdir()) == []


def test_cleanup_failures_never_hide_the_result_or_the_error(tmp_path, monkeypatch):
    """Deleting the replaced subset, or the staging folder after an error, may fail (an I/O error
    here): the run still ends done, and the error that stopped a run is the one raised."""
    photos, masks = make(tmp_path, ("a", "b"))
    out = tmp_path / "out"
    synthesize(photos, masks, out, per_image=1, seed=0, min_fg_mse=1.0)

    def rmtree(path, ignore_errors=False, onerror=None):
        if not ignore_errors:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(builder.shutil, "rmtree", rmtree)
    report = synthesize(photos, masks, out, per_image=2, seed=1, min_fg_mse=1.0, overwrite=True)
    assert report.total_composites == 4 and len(list((out / SUB / "composite_images").iterdir())) == 4
    with pytest.raises(SynthError, match="no train composites were made"):
        synthesize(photos, masks, tmp_path / "o2", per_image=1, seed=0, min_fg_mse=1e9)


def test_permissions_follow_the_umask(tmp_path):
    photos, masks = make(tmp_path, ("a", "b"))
    old = os.umask(0o002)  # group-writable: 0o775 / 0o664 (not the usual 0o755 / 0o644)
    try:
        synthesize(photos, masks, tmp_path / "out", per_image=1, seed=0, min_fg_mse=1.0)
    finally:
        os.umask(old)
    subset = tmp_path / "out" / SUB
    assert stat.S_IMODE(subset.stat().st_mode) == 0o775
    assert stat.S_IMODE((subset / "masks").stat().st_mode) == 0o775
    assert stat.S_IMODE((subset / "masks" / "a_1.png").stat().st_mode) == 0o664
    assert stat.S_IMODE((subset / "synth_manifest.json").stat().st_mode) == 0o664
