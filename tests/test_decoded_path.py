"""Apply's photos stay as Pillow decoded them (issue 28): only the mask's box becomes arrays, the
mask's view is made in 8-bit steps, and the result is pasted back into the decoded image, which is
what gets encoded. Expected values are written out by hand."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from harmonize_cli.apply import harmonizer as harmonizer_module
from harmonize_cli.apply.harmonizer import Harmonizer
from harmonize_cli.apply.imageio import ImageData, InputError, encode_for_writing, read_image, to_pil
from harmonize_cli.apply.maskio import DecodedMask, mask_to_array, read_mask
from harmonize_cli.apply.pipeline import DECODED_PIXEL_BUDGET, DEFAULT_PIXEL_BUDGET
from harmonize_cli.apply.resolution import compose_auto, compose_fixed, compose_native, compose_pct
from harmonize_cli.limits import ImageTooLargeError


def _mask_image(values) -> Image.Image:
    return Image.fromarray(np.asarray(values, dtype=np.uint8), "L")


# ----------------------------------------------------------------------------------- DecodedMask

def test_decoded_mask_box_region_and_peak_by_hand():
    values = np.zeros((5, 7), np.uint8)
    values[1:4, 2:6] = [[0, 51, 255, 0], [102, 0, 0, 0], [0, 0, 0, 204]]  # nonzero rows 1..3, columns 2..5
    mask = DecodedMask.of(_mask_image(values))
    assert mask.peak == 255 and mask.shape == (5, 7)
    assert mask.bbox() == (1, 4, 2, 6)
    region = mask.region((1, 4, 2, 6))
    assert region.dtype == np.float32
    assert np.array_equal(region, np.float32([[0, 0.2, 1, 0], [0.4, 0, 0, 0], [0, 0, 0, 0.8]]))
    assert np.array_equal(mask.region((2, 3, 0, 3)), np.float32([[0, 0, 0.4]]))  # any box, not only its own
    assert np.array_equal(mask.floats(), values.astype(np.float32) / np.float32(255))


def test_a_zero_one_mask_counts_1_as_the_foreground():
    values = np.zeros((4, 6), np.uint8)
    values[1:3, 3:5] = 1
    mask = DecodedMask.of(_mask_image(values))
    assert mask.peak == 1
    assert mask.bbox() == (1, 3, 3, 5)
    assert np.array_equal(mask.region((1, 3, 3, 5)), np.ones((2, 2), np.float32))
    assert np.array_equal(mask.floats(), values.astype(np.float32))
    empty = DecodedMask.of(_mask_image(np.zeros((3, 3))))
    assert empty.bbox() is None and empty.peak == 1


@pytest.mark.parametrize("foreground", [255, 1])
def test_the_mask_view_by_hand(foreground):
    """Left half foreground, right half background, 8 x 8 to 2 x 2 (a factor of 4: no reduce step
    under a reducing gap of 3). Pillow's antialiased bilinear is a triangle filter of half-width 4
    input pixels: output column 0 is centred at x = 2, input pixel centres 0.5 .. 5.5 are within
    reach, weights 1 - |c - 2| / 4 = .625 .875 .875 .625 .375 .125 (sum 3.5), the foreground's
    3.0: 3 / 3.5 * 255 = 218.6 -> 219; column 1 mirrors it: 36.4 -> 36. A 0/1 mask is scaled to
    0/255 first and gives the same view."""
    values = np.zeros((8, 8), np.uint8)
    values[:, :4] = foreground
    view = DecodedMask.of(_mask_image(values)).view((2, 2))
    assert view.dtype == np.float32
    assert np.array_equal(view, np.float32([[219, 36], [219, 36]]) / np.float32(255))
    flat = DecodedMask.of(_mask_image(np.full((9, 12), 100))).view((3, 2))  # (height, width)
    assert flat.shape == (3, 2) and np.array_equal(flat, np.full((3, 2), np.float32(100) / np.float32(255)))


def test_the_mask_view_is_in_8_bit_steps_within_one_step_of_the_exact_mean():
    """A 12 x 12 soft ramp to 1 x 1: the exact mean of all pixels (by hand: the ramp's mean),
    met within one 8-bit step, and the value is a multiple of 1/255."""
    ramp = np.tile(np.arange(0, 240, 20, dtype=np.uint8), (12, 1))  # 0, 20, ..., 220
    view = DecodedMask.of(_mask_image(ramp)).view((1, 1))
    assert abs(float(view[0, 0]) - 110 / 255) <= 1 / 255
    assert float(view[0, 0]) * 255 == pytest.approx(round(float(view[0, 0]) * 255), abs=1e-4)


def test_read_mask_as_decoded_keeps_8_bit_single_channel_masks_only(tmp_path):
    values = np.zeros((6, 8), np.uint8)
    values[2:4, 1:3] = 255
    _mask_image(values).save(tmp_path / "l.png")
    Image.fromarray(np.stack([values] * 3, axis=2)).save(tmp_path / "rgb.png")
    Image.fromarray(values.astype(np.uint16) * 257).save(tmp_path / "16.png")
    decoded = read_mask(tmp_path / "l.png", as_decoded=True)
    assert isinstance(decoded, DecodedMask) and decoded.bbox() == (2, 4, 1, 3)
    assert np.array_equal(mask_to_array(decoded), values / np.float32(255))
    for other in ("rgb.png", "16.png"):
        array = read_mask(tmp_path / other, as_decoded=True)
        assert isinstance(array, np.ndarray) and np.array_equal(array, values / np.float32(255))
    assert isinstance(read_mask(tmp_path / "l.png"), np.ndarray)  # the default is unchanged


def test_the_peak_is_1_only_for_masks_whose_largest_value_is_1():
    """A mask whose largest value is 2 is a soft 0..255 mask (2/255), not a 0/1 one; every reading
    of a 0/1 mask is float32 (like mask_to_array's)."""
    two = DecodedMask.of(_mask_image([[0, 2], [1, 0]]))
    assert two.peak == 255
    assert np.array_equal(two.floats(), np.float32([[0, 2], [1, 0]]) / np.float32(255))
    ones = DecodedMask.of(_mask_image([[0, 1], [1, 1]]))
    assert ones.peak == 1
    for values in (ones.floats(), ones.region((0, 2, 1, 2)), ones.view((1, 1))):
        assert values.dtype == np.float32
    assert np.array_equal(ones.region((0, 2, 1, 2)), np.float32([[1], [1]]))


def test_the_mask_view_reduces_first_under_a_reducing_gap_of_3():
    """24 x 12, left half 255, to 2 x 1 (a factor of 12): Pillow first box-reduces by
    int(12 / 3) = 4 to 6 x 3 columns 255 255 255 0 0 0, then filters by a factor of 3: output
    column 0 is centred at 1.5, input centres 0.5 .. 4.5 within reach, weights 1 - |c - 1.5| / 3 =
    2/3 1 2/3 1/3 0 (sum 8/3), the foreground's 7/3: 7/8 * 255 = 223.1 -> 223; column 1 mirrors:
    31.9 -> 32. (Without the reduce step, or a gap of 4 (reduce by 3), the same filter gives 219
    and 36: the test tells them apart.)"""
    values = np.zeros((12, 24), np.uint8)
    values[:, :12] = 255
    view = DecodedMask.of(_mask_image(values)).view((1, 2))
    assert np.array_equal(view, np.float32([[223, 32]]) / np.float32(255))


def test_read_mask_as_decoded_keeps_the_pixel_limit_and_names_the_file(tmp_path):
    _mask_image(np.zeros((4, 4))).save(tmp_path / "m.png")
    assert isinstance(read_mask(tmp_path / "m.png", 16, as_decoded=True), DecodedMask)  # 16 pixels: at the limit
    with pytest.raises(ImageTooLargeError) as refused:
        read_mask(tmp_path / "m.png", 15, as_decoded=True)  # refused from the header
    assert refused.value.message == f"{tmp_path / 'm.png'}: 4x4 pixels (1.6e-05 MP), over the limit of 1.5e-05 MP"
    values = np.zeros((3, 4), np.float32)
    values[1, 2], values[0, 0] = np.nan, np.inf
    Image.fromarray(values, "F").save(tmp_path / "nan.tif")
    for as_decoded in (True, False):  # a message without the file's name gets it in front, the hint kept
        with pytest.raises(InputError) as bad:
            read_mask(tmp_path / "nan.tif", as_decoded=as_decoded)
        assert bad.value.message == f"{tmp_path / 'nan.tif'}: mask has 2 NaN or infinite value(s)"
        assert bad.value.hint == "save the mask with finite values (0..1, 0..255 or 0..65535)"


# ----------------------------------------------------------------------------------- read_image

def test_read_image_as_decoded_keeps_the_pillow_image_and_its_metadata_only(tmp_path):
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 3
    Image.fromarray(rgb).save(tmp_path / "a.png", icc_profile=b"profile bytes", pnginfo=None)
    decoded = read_image(tmp_path / "a.png", as_decoded=True)
    assert decoded.rgb is None and decoded.pil_rgb.mode == "RGB" and decoded.size == (5, 4)
    assert decoded.icc_profile == b"profile bytes"
    assert decoded.pil_rgb.info == {}  # encodes like a new image: no profile or comment carried by Pillow itself
    assert np.array_equal(decoded.pixels(), rgb) and decoded.rgb is decoded.pixels()  # converted once
    rgba = np.concatenate((rgb, np.full((4, 5, 1), 128, np.uint8)), axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    with_alpha = read_image(tmp_path / "b.png", as_decoded=True)  # not RGB: arrays as before
    assert np.array_equal(with_alpha.rgb, rgb) and np.array_equal(with_alpha.alpha, np.full((4, 5), 128))


def test_a_pillow_result_is_encoded_as_it_is(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    assert to_pil(image) is image
    assert np.array_equal(np.asarray(to_pil(image, gray=True)), np.asarray(image.convert("L")))
    path = encode_for_writing(tmp_path / "r.png", image)()
    assert np.array_equal(np.asarray(Image.open(path)), rgb)


def test_image_data_size_is_width_then_height_either_way():
    assert ImageData(rgb=np.zeros((4, 5, 3), np.uint8)).size == (5, 4)
    assert ImageData(rgb=None, pil_rgb=Image.new("RGB", (7, 3))).size == (7, 3)


def test_read_image_as_decoded_carries_format_mode_and_exif(tmp_path):
    exif = Image.Exif()
    exif[271], exif[0x0112] = "Maker", 1  # Make, and an orientation (dropped: the pixels are upright)
    Image.new("RGB", (5, 3), (10, 20, 30)).save(tmp_path / "e.png", exif=exif.tobytes())
    decoded = read_image(tmp_path / "e.png", as_decoded=True)
    assert (decoded.format, decoded.mode, decoded.bit_depth, decoded.gray, decoded.alpha) == ("PNG", "RGB", 8, False,
                                                                                            None)
    carried = Image.Exif()
    carried.load(decoded.exif)
    assert dict(carried) == {271: "Maker"}
    arrays = read_image(tmp_path / "e.png")  # the default: arrays, and the RGB image kept beside them
    assert arrays.pil_rgb is not None and arrays.pil_rgb.mode == "RGB" and arrays.exif == decoded.exif
    assert np.array_equal(arrays.rgb, np.full((3, 5, 3), (10, 20, 30), np.uint8))
    Image.new("L", (5, 3), 40).save(tmp_path / "g.png")
    gray = read_image(tmp_path / "g.png", as_decoded=True)  # not RGB: arrays, no RGB image kept
    assert gray.pil_rgb is None and gray.gray and np.array_equal(gray.rgb, np.full((3, 5, 3), 40, np.uint8))


def test_read_image_keeps_the_source_format_mode_depth_and_profile_and_the_pixel_limit(tmp_path):
    values = np.array([[0, 257 * 100], [65535, 257]], np.uint16)  # 16-bit gray: round(x / 257) in 8 bits
    Image.fromarray(values).save(tmp_path / "g.png", icc_profile=b"gray profile")
    image = read_image(tmp_path / "g.png")
    assert (image.format, image.mode, image.bit_depth, image.gray) == ("PNG", "I;16", 16, True)
    assert image.icc_profile == b"gray profile" and image.pil_rgb is None
    assert np.array_equal(image.rgb, np.repeat(np.array([[0, 100], [255, 1]], np.uint8)[..., None], 3, axis=2))
    Image.new("RGB", (4, 4)).save(tmp_path / "c.png")
    for as_decoded in (False, True):
        assert read_image(tmp_path / "c.png", 16, as_decoded=as_decoded).size == (4, 4)
        with pytest.raises(ImageTooLargeError):
            read_image(tmp_path / "c.png", 15, as_decoded=as_decoded)  # refused from the header

def test_a_pillow_result_with_an_alpha_channel_is_merged_or_dropped_by_format():
    rgb = np.random.default_rng(2).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    alpha = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    png = to_pil(Image.fromarray(rgb), alpha, fmt="PNG")
    assert png.mode == "RGBA" and np.array_equal(np.asarray(png), np.dstack((rgb, alpha)))
    jpeg = to_pil(Image.fromarray(rgb), alpha, fmt="JPEG")  # JPEG has no alpha
    assert jpeg.mode == "RGB" and np.array_equal(np.asarray(jpeg), rgb)


# ------------------------------------------------------------------------------------ Harmonizer

def _photo_files(tmp_path, foreground=255):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mask = np.zeros((40, 56), np.uint8)
    mask[9:30, 14:41] = foreground
    mask[12:20, 20:30] = foreground // 2  # soft inside
    Image.fromarray(rgb).save(tmp_path / "c.png")
    _mask_image(mask).save(tmp_path / "m.png")
    return rgb, mask


@pytest.mark.parametrize("resolution", ["fixed", "auto"])
def test_only_the_box_becomes_arrays_and_the_result_is_pasted_into_the_decoded_image(tmp_path, idih_checkpoint,
                                                                                    resolution):
    rgb, mask = _photo_files(tmp_path)
    harmonizer = Harmonizer(weights=str(idih_checkpoint), device="cpu", resolution=resolution)
    image = read_image(tmp_path / "c.png", as_decoded=True)
    decoded = image.pil_rgb
    job = harmonizer.prepare(image, read_mask(tmp_path / "m.png", as_decoded=True))
    assert job.rgb is None and job.mask is None and job.source is decoded and image.pil_rgb is None
    assert job.bbox == (9, 30, 14, 41) and job.size == (56, 40)
    assert np.array_equal(job.box_rgb, rgb[9:30, 14:41])
    assert np.array_equal(job.box_mask, mask[9:30, 14:41] / np.float32(255))
    harmonizer.predict([job])
    prediction, correction = job.prediction.copy(), None
    if resolution == "auto":
        harmonizer.fit(job)
        correction = job.correction
    result = harmonizer.finish_image(job)
    assert result is decoded  # pasted in place: the photo was never converted as a whole
    out = np.asarray(result)
    outside = np.ones(mask.shape, bool)
    outside[9:30, 14:41] = False
    assert np.array_equal(out[outside], rgb[outside])  # background bit for bit
    floats = mask / np.float32(255)
    expected = (compose_fixed(rgb, floats, prediction) if resolution == "fixed"
                else compose_auto(rgb, floats, correction))  # both pinned by hand in test_resolution_values
    assert np.array_equal(out, expected)
    assert not np.array_equal(out[9:30, 14:41], rgb[9:30, 14:41])  # the network did change the box


def test_file_paths_give_exactly_what_apply_writes(tmp_path, idih_checkpoint, run_cli):
    (tmp_path / "c").mkdir()
    (tmp_path / "m").mkdir()
    rgb, _ = _photo_files(tmp_path)
    (tmp_path / "c.png").rename(tmp_path / "c" / "a.png")
    (tmp_path / "m.png").rename(tmp_path / "m" / "a.png")
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--weights",
                           idih_checkpoint, "--resolution", "fixed", "-q")
    assert code == 0, err
    written = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    harmonizer = Harmonizer(weights=str(idih_checkpoint), device="cpu", resolution="fixed")
    ours = harmonizer(tmp_path / "c" / "a.png", tmp_path / "m" / "a.png")
    assert isinstance(ours, np.ndarray) and ours.flags.writeable
    assert np.array_equal(ours, written)
    assert np.array_equal(written[:9], rgb[:9])


def test_arrays_in_arrays_out_and_inputs_untouched(idih_checkpoint):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    mask = np.zeros((24, 32), np.float32)
    mask[4:12, 6:20] = 1.0
    harmonizer = Harmonizer(weights=str(idih_checkpoint), device="cpu", resolution="fixed")
    result = harmonizer(image, mask)
    assert isinstance(result, np.ndarray) and np.array_equal(np.asarray(image), rgb)  # the caller's image kept
    data = ImageData(rgb=rgb.copy())
    assert np.array_equal(harmonizer(data, mask), result)


def test_decoded_photos_get_twice_the_pixel_budget():
    from harmonize_cli.apply import batch

    assert DECODED_PIXEL_BUDGET == 2 * DEFAULT_PIXEL_BUDGET == 96_000_000
    assert batch._pixel_budget(comparison=False) == DECODED_PIXEL_BUDGET
    assert batch._pixel_budget(comparison=True) == DEFAULT_PIXEL_BUDGET  # the whole composite is kept


def test_a_decoded_image_is_handed_over_once_and_a_second_use_is_one_clear_error(tmp_path, idih_checkpoint):
    from harmonize_cli.errors import UsageError

    _photo_files(tmp_path)
    harmonizer = Harmonizer(weights=str(idih_checkpoint), device="cpu", resolution="fixed")
    image = read_image(tmp_path / "c.png", as_decoded=True)
    harmonizer.prepare(image, read_mask(tmp_path / "m.png", as_decoded=True))
    with pytest.raises(UsageError, match="earlier job") as caught:
        harmonizer.prepare(image, read_mask(tmp_path / "m.png", as_decoded=True))
    assert "read the file again" in caught.value.hint
    assert str(caught.value) == ("this ImageData's pixels went to an earlier job (read_image(..., as_decoded=True) hands "
                                 "the decoded image over once) (read the file again, or without as_decoded)")


# ------------------------------------------------------------- Harmonizer's stages, every input kind
# "lab-transfer" (no network, no weights) stands in for a model: these tests pin what prepare and
# finish hand on, not what a network predicts.

def _lab(resolution="fixed"):
    return Harmonizer("lab-transfer", device="cpu", resolution=resolution)


def _pillow_view(image, size=256):
    """A network view made with Pillow directly: antialiased bilinear, reducing gap 3, / 255."""
    small = image.resize((size, size), Image.BILINEAR, reducing_gap=3.0)
    values = np.asarray(small, dtype=np.float32)
    return values.transpose(2, 0, 1) / np.float32(255) if values.ndim == 3 else values / np.float32(255)


def test_a_mask_of_another_size_names_both_sizes():
    """Width x height of each, in that order (a 5 x 3 mask for a 6 x 4 image), and the fix; for
    arrays and for a decoded photo alike."""
    image = np.zeros((4, 6, 3), np.uint8)
    mask = np.ones((3, 5), np.float32)
    for given in (image, ImageData(rgb=None, pil_rgb=Image.fromarray(image))):
        with pytest.raises(InputError) as caught:
            _lab().prepare(given, mask)
        assert str(caught.value) == "mask is 5x3 but the image is 6x4 (masks must have the composite's size)"
        assert caught.value.hint == "masks must have the composite's size"


def test_file_paths_are_read_as_decoded_photos_and_the_context_is_kept(tmp_path):
    rgb, mask = _photo_files(tmp_path)
    job = _lab().prepare(tmp_path / "c.png", tmp_path / "m.png", context="c.png's row")
    assert job.rgb is None and job.mask is None and isinstance(job.source, Image.Image)
    assert job.size == (56, 40) and job.bbox == (9, 30, 14, 41) and job.context == "c.png's row"
    assert np.array_equal(job.box_rgb, rgb[9:30, 14:41]) and np.array_equal(job.box_mask, mask[9:30, 14:41] / np.float32(255))
    arrays = _lab().prepare(rgb, mask, context=("arrays", 1))
    assert arrays.context == ("arrays", 1) and arrays.source is None and np.array_equal(arrays.rgb, rgb)


def test_gray_inputs_are_marked_gray():
    mask = np.ones((4, 6), np.float32)
    assert _lab().prepare(np.full((4, 6), 90, np.uint8), mask).gray is True
    assert _lab().prepare(np.full((4, 6, 3), 90, np.uint8), mask).gray is False


def test_a_read_images_view_is_made_from_its_pillow_image_which_is_then_dropped(tmp_path, monkeypatch):
    """read_image without as_decoded keeps the decoded Pillow image beside the array: the network's
    view is resized from it (no array copied back into Pillow), and the job does not keep it."""
    rgb, mask = _photo_files(tmp_path)
    image = read_image(tmp_path / "c.png")
    assert image.rgb is not None and image.pil_rgb is not None

    def no_copy_back(*args):
        raise AssertionError("the array was copied back into Pillow for the view")

    monkeypatch.setattr(harmonizer_module, "resize_rgb", no_copy_back)
    job = _lab().prepare(image, mask)
    assert image.pil_rgb is None
    assert np.array_equal(job.net_image, _pillow_view(Image.fromarray(rgb)))


@pytest.mark.parametrize("image_kind", ["array", "decoded"])
def test_a_decoded_mask_gives_its_8_bit_view(tmp_path, image_kind):
    """A mask read with as_decoded: the network sees its view in 8-bit steps (Pillow's resize of
    the 8-bit mask, / 255), not the float mask resized, whatever the image's kind."""
    rgb, mask = _photo_files(tmp_path)
    image = rgb if image_kind == "array" else read_image(tmp_path / "c.png", as_decoded=True)
    job = _lab().prepare(image, read_mask(tmp_path / "m.png", as_decoded=True))
    expected = _pillow_view(Image.fromarray(mask, "L"))
    assert job.net_mask.dtype == np.float32 and np.array_equal(job.net_mask, expected)
    floats = np.asarray(Image.fromarray(mask / np.float32(255), "F").resize((256, 256), Image.BILINEAR, reducing_gap=3.0))
    assert np.abs(floats - expected).max() > 1e-4  # the float mask resized is another view


@pytest.mark.parametrize("resolution", ["fixed", "native"])
def test_a_decoded_photo_with_an_array_mask(tmp_path, resolution):
    """A decoded photo and a soft float mask (not a DecodedMask): the box and its mask by hand, the
    view of the float mask (Pillow's float resize); native gets the whole photo and mask as
    arrays, its view is the photo / 255. The result is pasted into the decoded image."""
    rgb, mask = _photo_files(tmp_path)
    floats = mask / np.float32(255)
    harmonizer = _lab(resolution)
    image = read_image(tmp_path / "c.png", as_decoded=True)
    decoded = image.pil_rgb
    job = harmonizer.prepare(image, floats)
    assert job.bbox == (9, 30, 14, 41) and job.source is decoded
    assert np.array_equal(job.box_rgb, rgb[9:30, 14:41]) and np.array_equal(job.box_mask, floats[9:30, 14:41])
    if resolution == "native":
        assert np.array_equal(job.rgb, rgb) and job.mask is floats
        assert np.array_equal(job.net_image, rgb.transpose(2, 0, 1) / np.float32(255)) and job.net_mask is floats
    else:
        assert job.rgb is None and job.mask is None
        view = np.asarray(Image.fromarray(floats, "F").resize((256, 256), Image.BILINEAR, reducing_gap=3.0))
        assert np.array_equal(job.net_mask, np.clip(view, 0, 1))
    harmonizer.predict([job])
    prediction = job.prediction.copy()
    result = harmonizer.finish_image(job)
    assert result is decoded
    expected = compose_native(rgb, floats, prediction) if resolution == "native" else compose_fixed(rgb, floats, prediction)
    assert np.array_equal(np.asarray(result), expected) and not np.array_equal(expected, rgb)


@pytest.mark.parametrize("mask_kind", ["decoded", "array"])
def test_native_on_a_decoded_photo_converts_the_whole_photo(tmp_path, mask_kind):
    rgb, mask = _photo_files(tmp_path)
    floats = mask / np.float32(255)
    harmonizer = _lab("native")
    image = read_image(tmp_path / "c.png", as_decoded=True)
    given = read_mask(tmp_path / "m.png", as_decoded=True) if mask_kind == "decoded" else floats
    job = harmonizer.prepare(image, given)
    assert np.array_equal(job.rgb, rgb) and job.mask.dtype == np.float32 and np.array_equal(job.mask, floats)
    assert np.array_equal(job.box_rgb, rgb[9:30, 14:41]) and np.array_equal(job.box_mask, floats[9:30, 14:41])
    assert np.array_equal(job.net_image, rgb.transpose(2, 0, 1) / np.float32(255)) and np.array_equal(job.net_mask, floats)
    harmonizer.predict([job])
    prediction = job.prediction.copy()
    assert prediction.shape == (3, 40, 56)
    assert np.array_equal(harmonizer.finish(job), compose_native(rgb, floats, prediction))


def test_the_jobs_seconds_add_up_and_finish_frees_its_arrays():
    """prepare's time is the job's first; finish adds its own to what the job had (here 100 s set
    by hand), and drops every intermediate array."""
    rgb = np.random.default_rng(2).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    mask = np.zeros((20, 24), np.float32)
    mask[5:15, 4:20] = 1.0
    harmonizer = _lab("auto")
    started = time.perf_counter()
    job = harmonizer.prepare(rgb, mask)
    assert 0 < job.seconds <= time.perf_counter() - started
    harmonizer.predict([job])
    job.seconds = 100.0
    started = time.perf_counter()
    harmonizer.finish(job)
    assert 100.0 < job.seconds <= 100.0 + time.perf_counter() - started
    for name in ("net_image", "net_mask", "prediction", "maps", "correction", "box_rgb", "box_mask"):
        assert getattr(job, name) is None, name


def test_finish_returns_an_array_result_as_it_is(monkeypatch):
    harmonizer = _lab()
    job = harmonizer.prepare(np.zeros((4, 6, 3), np.uint8), np.zeros((4, 6), np.float32))
    made = np.full((4, 6, 3), 9, np.uint8)
    monkeypatch.setattr(harmonizer, "finish_image", lambda job_: made)
    assert harmonizer.finish(job) is made  # not copied again
    pillow = Image.fromarray(made)
    monkeypatch.setattr(harmonizer, "finish_image", lambda job_: pillow)
    out = harmonizer.finish(job)
    assert isinstance(out, np.ndarray) and out.flags.writeable and np.array_equal(out, made)


@pytest.mark.parametrize("clamp, affine", [(True, False), (False, True)])
def test_pct_maps_are_composed_with_the_networks_options(clamp, affine):
    """A job with PCT-Net's maps (set by hand: no network runs) is composed by PCT-Net's own path
    with the network's clamp and affine options, its attention map and the model's normalisation
    (compose_pct is pinned in closed form in test_resolution_values.py)."""
    generator = torch.Generator().manual_seed(5)
    rgb = torch.randint(0, 256, (9, 11, 3), generator=generator).numpy().astype(np.uint8)
    mask = np.zeros((9, 11), np.float32)
    mask[2:8, 3:9] = np.tile([1.0, 0.5, 0.25, 1.0, 0.75, 1.0], (6, 1))
    params = torch.zeros(1, 12, 3, 4)
    params[:, :9] = (0.2 * torch.eye(3)).reshape(1, 9, 1, 1) + 0.05 * torch.randn(1, 9, 3, 4, generator=generator)
    params[:, 9:12] = torch.tensor([0.5, 0.9, 0.1]).view(1, 3, 1, 1) + 0.1 * torch.randn(1, 3, 3, 4, generator=generator)
    attention = torch.tensor([[0.9, 0.2, 0.6, 1.0], [0.1, 0.8, 0.4, 0.7], [0.5, 0.3, 1.0, 0.0]]).view(1, 1, 3, 4)
    harmonizer = _lab("auto")
    harmonizer.network = SimpleNamespace(clamp=clamp, affine=affine)
    job = harmonizer.prepare(rgb, mask)
    job.maps = (params, attention)
    normalization = harmonizer.model.normalization
    expected = compose_pct(rgb, mask, params, attention, normalization, clamp=clamp, affine=affine)
    assert np.array_equal(harmonizer.finish(job), expected)
    for other in ({"clamp": clamp, "affine": affine, "attention": None}, {"clamp": not clamp, "affine": affine},
                  {"clamp": clamp, "affine": not affine}):
        options = {"attention": attention, **other}
        assert not np.array_equal(compose_pct(rgb, mask, params, options.pop("attention"), normalization, **options),
                                  expected), other  # each of them matters here


def test_the_pipeline_load_is_decoded_unless_comparison_and_keeps_the_pixel_limit(tmp_path):
    """batch._loading: the load the prefetch and the pipeline share (decoded photo and mask, or
    arrays with --comparison) and its pixel budget; the pixel limit reaches both reads."""
    from harmonize_cli.apply import batch
    from harmonize_cli.limits import ImageTooLargeError

    rgb, mask = _photo_files(tmp_path)  # 56 x 40 = 2240 pixels each
    entry = SimpleNamespace(composite=tmp_path / "c.png", mask=tmp_path / "m.png")
    load, budget = batch._loading(10_000, comparison=False)
    image, decoded_mask, context = load(entry)
    assert image.rgb is None and np.array_equal(np.asarray(image.pil_rgb), rgb) and context is image
    assert isinstance(decoded_mask, DecodedMask) and np.array_equal(np.asarray(decoded_mask.image), mask)
    assert budget == DECODED_PIXEL_BUDGET
    load, budget = batch._loading(10_000, comparison=True)
    image, array_mask, _ = load(entry)
    assert np.array_equal(image.rgb, rgb) and np.array_equal(array_mask, mask / np.float32(255))
    assert budget == DEFAULT_PIXEL_BUDGET
    assert batch._load(entry)[0].rgb is None  # decoded by default
    load, _ = batch._loading(2000, comparison=False)
    with pytest.raises(ImageTooLargeError, match="c.png"):
        load(entry)  # the composite is over the limit
    Image.fromarray(rgb[:10, :10]).save(tmp_path / "small.png")
    with pytest.raises(ImageTooLargeError, match="m.png"):  # the composite fits, the mask does not
        load(SimpleNamespace(composite=tmp_path / "small.png", mask=tmp_path / "m.png"))
