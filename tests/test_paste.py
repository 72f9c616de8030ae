"""`harmonize paste` and harmonize_cli.apply.paste: placement, scaling, cropping, blending, the CLI.

The object is a disc with an antialiased (soft) edge on an 18 x 18 box, orange where it is
opaque and pure blue under its transparent pixels (which must never show). Expected values are
computed here from the test's own arrays and hand-derived positions.
"""

from pathlib import Path

import numpy as np
import pytest
from clitools import run_main as run
from PIL import Image

from harmonize_cli.errors import HarmonizeError, UsageError
from harmonize_cli.apply.paste import compose, parse_coordinate, parse_point, paste

ROOT = Path(__file__).resolve().parents[1]
ORANGE = (240, 120, 20)
BLUE = (0, 0, 255)


def disc(size=20, radius=9.0):
    """RGBA uint8: a disc of ``radius`` centred in a ``size`` box, edge antialiased over one pixel.
    Its alpha is non-zero on rows/columns 1..18 of a 20 box, so the cut-out is 18 x 18."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    distance = np.hypot(yy - size / 2, xx - size / 2)
    alpha = np.clip(radius + 0.5 - distance, 0.0, 1.0)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = np.where(alpha[..., None] > 0, ORANGE, BLUE)
    rgba[..., 3] = np.round(alpha * 255).astype(np.uint8)
    return rgba


def backdrop(height=48, width=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([0.2 + 0.5 * xx, 0.3 + 0.4 * yy, 0.6 - 0.3 * xx], axis=2)
    return (np.clip(base + 0.04 * rng.standard_normal((height, width, 3)), 0, 1) * 255).astype(np.uint8)


def cut(rgba):
    """The object's tight box (what paste places): rows/columns where alpha > 0."""
    rows = np.flatnonzero(rgba[..., 3].any(axis=1))
    cols = np.flatnonzero(rgba[..., 3].any(axis=0))
    return rgba[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def centroid(mask):
    """Alpha-weighted centre in continuous coordinates (pixel i covers [i, i + 1))."""
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    total = mask.sum()
    return (xx * mask).sum() / total + 0.5, (yy * mask).sum() / total + 0.5


def expected_blend(background, rgba, left, top, shift=(0, 0, 0)):
    """background * (1 - a) + (object + shift) * a, computed independently of the code under test."""
    out = background.astype(np.float64)
    h, w = rgba.shape[:2]
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    colour = np.clip(rgba[..., :3].astype(np.float64) + np.asarray(shift, np.float64), 0, 255)
    window = out[top:top + h, left:left + w]
    out[top:top + h, left:left + w] = window * (1 - a) + colour * a
    return np.round(out)


class ShiftHarmonizer:
    """Follows Harmonizer's contract (result = composite + mask * (prediction - composite)), its
    prediction being the composite shifted by a constant colour; records what it was given."""

    def __init__(self, shift=(12, -30, 8), noise_outside=False):
        self.shift = np.asarray(shift, np.float64)
        self.noise_outside = noise_outside
        self.calls = []

    def __call__(self, image, mask):
        self.calls.append((image.copy(), mask.copy()))
        prediction = np.clip(image + self.shift, 0, 255)
        out = np.round(image + mask[..., None] * (prediction - image))
        if self.noise_outside:  # a sloppy harmonizer: paste must still keep the background exactly
            out[mask == 0] += 3
        return np.clip(out, 0, 255).astype(np.uint8)


def one_line_error(err):
    lines = [line for line in err.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("Error:")


@pytest.fixture
def files(tmp_path):
    Image.fromarray(disc()).save(tmp_path / "disc.png")
    Image.fromarray(backdrop()).save(tmp_path / "bg.png")
    return tmp_path


# ------------------------------------------------------------------------------ parsing

def test_coordinates_are_pixels_fractions_or_percentages():
    assert parse_coordinate("120") == (120.0, False)
    assert parse_coordinate("-30") == (-30.0, False)
    assert parse_coordinate("0.5") == (0.5, True)
    assert parse_coordinate("1.0") == (1.0, True)
    assert parse_coordinate("1") == (1.0, False)
    assert parse_coordinate("120.5") == (120.5, False)
    assert parse_coordinate("25%") == (0.25, True)
    assert parse_point((0.5, 10)) == ((0.5, True), (10.0, False))
    for bad in ("a,b", "1,2,3", "12", "nan,3", ""):
        with pytest.raises(UsageError):
            parse_point(bad)


# ---------------------------------------------------------------------------- placement

@pytest.mark.parametrize("at, centre", [("30,20", (30, 20)), ("0.25,0.75", (16, 36)), ((0.5, 0.5), (32, 24)),
                                        ("50%,25%", (32, 12))])
def test_centre_anchor_puts_the_alpha_centroid_at_the_point(at, centre):
    composite, mask, placement = compose(disc(), backdrop(), at=at)
    assert composite.shape == (48, 64, 3) and mask.shape == (48, 64)
    assert (placement.width, placement.height) == (18, 18)
    assert centroid(mask) == pytest.approx(centre, abs=1e-4)
    # the unscaled object lands pixel for pixel: left = centre - 9
    left, top = centre[0] - 9, centre[1] - 9
    assert np.array_equal(mask[top:top + 18, left:left + 18] * 255, cut(disc())[..., 3].astype(np.float32))
    assert mask.sum() * 255 == pytest.approx(float(disc()[..., 3].sum()), rel=1e-6)


def test_bottom_anchor_puts_the_bottom_middle_at_the_point():
    _, mask, placement = compose(disc(), backdrop(), at="32,40", anchor="bottom")
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows[-1] == 39 and rows[0] == 22  # bottom edge at y = 40, 18 rows tall
    assert (placement.left, placement.top, placement.cropped) == (23, 22, False)
    assert centroid(mask)[0] == pytest.approx(32, abs=1e-4)
    _, mask, _ = compose(disc(), backdrop(), at="0.5,1.0", anchor="bottom")
    assert np.flatnonzero(mask.any(axis=1))[-1] == 47  # standing on the bottom border


def test_cropped_at_the_borders_and_an_object_entirely_outside_is_an_error():
    obj = cut(disc())
    _, mask, placement = compose(disc(), backdrop(), at="0,0")
    assert placement.cropped and placement.visible == (0, 0, 9, 9)
    assert np.array_equal(mask[:9, :9] * 255, obj[9:, 9:, 3].astype(np.float32))
    assert not mask[9:].any() and not mask[:, 9:].any()
    _, mask, _ = compose(disc(), backdrop(), at="1.0,0.5")  # right border: the left half shows
    assert np.array_equal(mask[15:33, 55:] * 255, obj[:, :9, 3].astype(np.float32))
    for at in ("-9,20", "73,20", "30,-40", "0.5,100"):
        with pytest.raises(UsageError, match="entirely outside"):
            compose(disc(), backdrop(), at=at)


# ------------------------------------------------------------------------------ scaling

def test_scale_height_and_default_size():
    _, mask, placement = compose(disc(), backdrop(), scale=2)
    assert (placement.width, placement.height) == (36, 36)
    box = np.argwhere(mask > 0)
    assert box.max(0) - box.min(0) + 1 == pytest.approx((36, 36), abs=1)
    assert centroid(mask) == pytest.approx((32, 24), abs=0.05)
    assert mask.sum() == pytest.approx(4 * disc()[..., 3].sum() / 255, rel=0.02)  # area x 4
    _, _, placement = compose(disc(), backdrop(), height=9)
    assert (placement.width, placement.height) == (9, 9)
    _, _, placement = compose(disc(), backdrop(), height="0.5")  # half the 48-pixel background
    assert (placement.width, placement.height) == (24, 24)
    big = np.zeros((50, 100, 4), np.uint8)
    big[..., :3], big[..., 3] = ORANGE, 255
    _, mask, placement = compose(big, backdrop())  # 100 x 50 onto 64 x 48: shrunk to fit, aspect kept
    assert (placement.width, placement.height) == (64, 32) and not placement.cropped
    assert mask[8:40].min() == 1.0 and not mask[:8].any() and not mask[40:].any()
    with pytest.raises(UsageError):
        compose(disc(), backdrop(), scale=2, height=9)


@pytest.mark.parametrize("scale", [0.45, 2.6])
def test_resampling_uses_premultiplied_alpha_no_dark_or_blue_fringe(scale):
    # The transparent pixels are blue: straight (non-premultiplied) resampling bleeds blue into the
    # edge; premultiplied resampling keeps every visible pixel orange.
    composed = compose(disc(), np.zeros((80, 80, 3), np.uint8), scale=scale)
    visible = composed.mask[composed.box()] > 0
    colours = composed.layer[visible]
    assert visible.sum() > 20
    assert np.abs(colours - np.asarray(ORANGE, np.float32)).max() < 3.0
    soft = (composed.mask > 0) & (composed.mask < 1)
    assert soft.sum() >= 8  # the soft edge survives resizing


# ------------------------------------------------------------------------------ blending

def test_background_is_bit_exact_where_alpha_is_zero_and_soft_edges_blend():
    background = backdrop()
    harmonizer = ShiftHarmonizer(noise_outside=True)
    result, composite, mask = paste(harmonizer, disc(), background, at="30,20", return_composite=True)
    image, given_mask = harmonizer.calls[0]
    assert np.array_equal(image, composite) and np.array_equal(given_mask, mask)  # the alpha is the mask
    assert result.dtype == np.uint8 and result.shape == background.shape
    outside = mask == 0
    assert np.array_equal(result[outside], background[outside])
    assert np.array_equal(composite, expected_blend(background, cut(disc()), 21, 11))
    expected = expected_blend(background, cut(disc()), 21, 11, harmonizer.shift)
    soft = (mask > 0) & (mask < 1)
    assert soft.sum() >= 30
    assert np.abs(result.astype(int) - expected).max() <= 1  # rounding of the composite, at most
    assert np.abs(result[soft].astype(int) - expected[soft]).mean() < 0.5


def test_background_alpha_is_kept_and_the_object_laid_over_it():
    background = np.dstack([backdrop(), np.full((48, 64), 100, np.uint8)])
    result = paste(ShiftHarmonizer(), disc(), background, at="30,20")
    assert result.shape == (48, 64, 4)
    alpha = result[..., 3].astype(int)
    assert alpha[0, 0] == 100 and alpha[20, 30] == 255
    a = compose(disc(), background, at="30,20").mask
    edge = (a > 0) & (a < 1)
    assert np.abs(alpha[edge] - np.round(255 * a[edge] + 100 * (1 - a[edge]))).max() <= 0


# ------------------------------------------------------------------------------ the Python API

def test_harmonizer_paste_method(files):
    from harmonize_cli import Harmonizer

    harmonizer = Harmonizer(model="composite", quiet=True)  # returns the composite unchanged
    background = backdrop()
    result = harmonizer.paste(files / "disc.png", files / "bg.png", at=(0.5, 0.5))
    assert np.array_equal(result, expected_blend(background, cut(disc()), 23, 15))
    result, composite, mask = harmonizer.paste(disc(), background, at="10,10", scale=1, return_composite=True)
    assert np.array_equal(result, composite) and mask.shape == (48, 64)
    rgb = disc()[..., :3]
    result = harmonizer.paste(rgb, background, mask=disc()[..., 3], at="30,20")  # an image plus a mask
    assert np.array_equal(result, expected_blend(background, cut(disc()), 21, 11))


# --------------------------------------------------------------------------------- the CLI

def test_cli_single_object_exact_blend_and_save_composite(files, capsys):
    out = files / "out" / "result.png"
    code, _, err = run(capsys, "paste", files / "disc.png", files / "bg.png", "-o", out, "--at", "0.25,0.5",
                       "--model", "composite", "--save-composite")
    assert code == 0, err
    expected = expected_blend(backdrop(), cut(disc()), 7, 15)
    result = np.asarray(Image.open(out))
    assert result.shape == (48, 64, 3) and np.array_equal(result, expected)
    composite = np.asarray(Image.open(files / "out" / "result_composite.png"))
    mask = Image.open(files / "out" / "result_mask.png")
    assert mask.mode == "L" and np.array_equal(composite, expected)
    expected_mask = np.zeros((48, 64), np.uint8)
    expected_mask[15:33, 7:25] = cut(disc())[..., 3]
    assert np.array_equal(np.asarray(mask), expected_mask)


def test_cli_lab_transfer_keeps_the_background_and_changes_the_object(files, capsys):
    out = files / "r.png"
    code, _, err = run(capsys, "paste", files / "disc.png", files / "bg.png", "-o", out, "--model", "lab-transfer",
                       "--at", "30,20", "--scale", "1.5")
    assert code == 0, err
    result = np.asarray(Image.open(out)).astype(int)
    mask = compose(disc(), backdrop(), at="30,20", scale=1.5).mask
    assert np.array_equal(result[mask == 0], backdrop()[mask == 0])
    assert np.abs(result[mask == 1] - np.asarray(ORANGE)).mean() > 10  # harmonized, not just pasted


def test_cli_skips_existing_outputs_unless_overwrite(files, capsys):
    out = files / "r.png"
    args = ["paste", files / "disc.png", files / "bg.png", "-o", out, "--model", "composite"]
    assert run(capsys, *args, "--at", "20,20")[0] == 0
    first = out.read_bytes()
    code, _, err = run(capsys, *args, "--at", "40,20")
    assert code == 0 and "skipped" in err and out.read_bytes() == first
    code, _, err = run(capsys, *args, "--at", "40,20", "--overwrite")
    assert code == 0 and out.read_bytes() != first
    assert np.array_equal(np.asarray(Image.open(out)), expected_blend(backdrop(), cut(disc()), 31, 11))


def test_cli_folder_of_objects_keeps_going_past_a_bad_one(files, capsys):
    objects = files / "objects"
    objects.mkdir()
    Image.fromarray(disc()).save(objects / "a.png")
    Image.fromarray(cut(disc())).resize((30, 30)).save(objects / "b.png")
    Image.fromarray(disc()[..., :3]).save(objects / "c_no_alpha.jpg")
    (objects / "notes.txt").write_text("not an image")
    out = files / "pasted"
    code, _, err = run(capsys, "paste", objects, files / "bg.png", "-o", out, "--model", "composite",
                       "--at", "0.5,0.9", "--anchor", "bottom", "--ext", "png", "--save-composite")
    assert code == 1
    assert sorted(path.name for path in out.iterdir()) == ["a.png", "a_composite.png", "a_mask.png", "b.png",
                                                           "b_composite.png", "b_mask.png"]
    assert "c_no_alpha.jpg" in err and "no alpha" in err and "1 of 3 objects failed" in err
    for name, height in (("a", 18), ("b", 30)):
        assert np.asarray(Image.open(out / f"{name}.png")).shape == (48, 64, 3)
        rows = np.flatnonzero(np.asarray(Image.open(out / f"{name}_mask.png")).any(axis=1))
        # bottom edge at round(0.9 * 48 = 43.2) = 43: the last row is 42
        assert rows[-1] == 42 and rows[-1] - rows[0] + 1 == height
    code, _, err = run(capsys, "paste", objects, files / "bg.png", "-o", out, "--model", "composite")
    assert code == 1 and "2 existing output(s) skipped" in err


def test_cli_mask_for_an_object_without_alpha(files, capsys):
    Image.fromarray(disc()[..., :3]).save(files / "photo.png")
    Image.fromarray(disc()[..., 3]).save(files / "photo_mask.png")
    out = files / "r.png"
    code, _, err = run(capsys, "paste", files / "photo.png", files / "bg.png", "--mask", files / "photo_mask.png",
                       "-o", out, "--model", "composite", "--at", "30,20")
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(out)), expected_blend(backdrop(), cut(disc()), 21, 11))


def test_cli_bad_inputs_one_line_exit_1(files, capsys):
    Image.fromarray(disc()[..., :3]).save(files / "rgb.png")
    empty = disc()
    empty[..., 3] = 0
    Image.fromarray(empty).save(files / "empty.png")
    (files / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(files / "small_mask.png")
    cases = [
        (["rgb.png", "bg.png"], "has no alpha channel"),
        (["empty.png", "bg.png"], "empty"),
        (["broken.png", "bg.png"], "broken.png"),
        (["disc.png", "broken.png"], "broken.png"),
        (["disc.png", "missing.png"], "no such file"),
        (["rgb.png", "bg.png", "--mask", "small_mask.png"], "mask is 5x5"),
    ]
    for args, message in cases:
        paths = [files / arg if arg.endswith(".png") else arg for arg in args]
        code, _, err = run(capsys, "paste", *paths, "-o", files / "r.png", "--model", "composite")
        assert code == 1, (args, err)
        assert one_line_error(err) and message in err, (args, err)
    assert not (files / "r.png").exists()


def test_cli_usage_errors_exit_2(files, capsys):
    base = ["paste", files / "disc.png", files / "bg.png", "--model", "composite"]
    cases = [
        (["-o", files / "r.png", "--at", "-100,20"], "entirely outside"),
        (["-o", files / "r.png", "--at", "left,top"], "not a number"),
        (["-o", files / "r.png", "--scale", "2", "--height", "10"], "exclude each other"),
        (["-o", files / "r.png", "--height", "0"], "not positive"),
        (["-o", files / "r.txt"], "unknown image suffix"),
        (["-o", files / "bg.png", "--overwrite"], "would overwrite an input"),
        (["-o", files / "r.png", "--ext", "jpg"], "--ext"),
    ]
    for args, message in cases:
        code, _, err = run(capsys, *base, *args)
        assert code == 2, (args, err)
        assert one_line_error(err) and message in err, (args, err)
    code, _, err = run(capsys, *base, "-o", files / "r.png", "--scale", "-1")
    assert code == 2
    assert np.array_equal(np.asarray(Image.open(files / "bg.png")), backdrop())  # inputs untouched


def test_cli_help_and_the_example_object(tmp_path, capsys):
    code, out, _ = run(capsys, "paste", "--help")
    assert code == 0 and "Example" in out and "--save-composite" in out
    obj = ROOT / "examples" / "objects" / "cup.png"
    background = ROOT / "examples" / "backgrounds" / "launch.jpg"
    assert obj.stat().st_size < 200_000
    with Image.open(obj) as image:
        assert image.mode == "RGBA"
        alpha = np.asarray(image)[..., 3]
    assert ((alpha > 0) & (alpha < 255)).sum() > 100  # a cut-out with soft edges
    code, _, err = run(capsys, "paste", obj, background, "-o", tmp_path / "cup_at_launch.png", "--at", "0.25,0.97",
                       "--anchor", "bottom", "--height", "0.3", "--model", "lab-transfer")
    assert code == 0, err
    with Image.open(background) as image:
        assert Image.open(tmp_path / "cup_at_launch.png").size == image.size


def test_errors_are_harmonize_errors():
    with pytest.raises(HarmonizeError):
        compose(disc()[..., :3], backdrop())


@pytest.mark.parametrize("scale", [0.6, 1.7])
def test_a_scaled_object_cropped_at_a_border_is_the_visible_part_of_the_whole(scale):
    whole = compose(disc(), backdrop(), at="32,24", scale=scale)
    x0, y0 = whole.placement.visible[:2]
    for at, shift in (("3,24", (-29, 0)), ("32,2", (0, -22)), ("60,45", (28, 21))):
        part = compose(disc(), backdrop(), at=at, scale=scale)
        assert part.placement.cropped
        px0, py0, px1, py1 = part.placement.visible
        # the same object pixels, moved by `shift`
        window = part.mask[py0:py1, px0:px1]
        source = whole.mask[py0 - shift[1]:py1 - shift[1], px0 - shift[0]:px1 - shift[0]]
        assert np.allclose(window, source, atol=1e-6)
        assert np.allclose(part.layer, whole.layer[py0 - shift[1] - y0:py1 - shift[1] - y0,
                                                   px0 - shift[0] - x0:px1 - shift[0] - x0], atol=1e-3)


def test_a_huge_scale_costs_only_the_visible_part():
    composed = compose(disc(), backdrop(), scale=5000, at="0.5,0.5")  # a 90000-pixel-wide object
    assert (composed.placement.width, composed.placement.height) == (90000, 90000)
    assert composed.mask.min() == 1.0 and composed.layer.shape == (48, 64, 3)


# ------------------------------------------------------------------ a placement mostly outside
def test_visible_fraction_is_the_share_of_the_box_on_the_background():
    from harmonize_cli.apply.paste import place, placement_warning

    corner = place((100, 60), (200, 200), at=(0, 0))  # centred on the corner: a quarter of the box
    assert (corner.left, corner.top, corner.visible) == (-50, -30, (0, 0, 50, 30))
    assert corner.visible_fraction == pytest.approx(0.25)
    assert placement_warning(corner, at=(0, 0)) is not None
    assert place((100, 60), (200, 200)).visible_fraction == 1.0 and placement_warning(place((100, 60), (200, 200))) is None
    half = place((100, 60), (200, 200), at=(200, 100))  # half of it beyond the right edge: no warning
    assert half.visible_fraction == pytest.approx(0.5) and placement_warning(half) is None


def test_cli_warns_when_most_of_the_object_lands_outside(tmp_path, capsys):
    """`--at 1.5,2` (meant as fractions) is read as pixels: the object lands mostly outside the
    background, and the user is told so and how fractions are written."""
    obj, bg = tmp_path / "disc.png", tmp_path / "bg.png"
    Image.fromarray(disc()).save(obj)
    Image.fromarray(backdrop()).save(bg)
    code, _, err = run(capsys, "paste", obj, bg, "-o", tmp_path / "out.png", "--at", "1.5,2", "--model", "composite")
    assert code == 0, err
    line = " ".join(err.split())
    assert "of the object lands on the background" in line and "read as pixels" in line and "0.5,0.8" in line
    code, _, err = run(capsys, "paste", obj, bg, "-o", tmp_path / "in.png", "--at", "0.5,0.5", "--model", "composite")
    assert code == 0 and "lands on the background" not in err
