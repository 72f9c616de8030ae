"""Apply's photos stay as Pillow decoded them (issue 28): only the mask's box becomes arrays, the
mask's view is made in 8-bit steps, and the result is pasted back into the decoded image, which is
what gets encoded. Expected values are written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harmonize_cli.apply.harmonizer import Harmonizer
from harmonize_cli.apply.imageio import ImageData, encode_for_writing, read_image, to_pil
from harmonize_cli.apply.maskio import DecodedMask, mask_to_array, read_mask
from harmonize_cli.apply.pipeline import DECODED_PIXEL_BUDGET, DEFAULT_PIXEL_BUDGET
from harmonize_cli.apply.resolution import compose_auto, compose_fixed


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
