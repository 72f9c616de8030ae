"""mask_to_array and read_mask on tiny masks of every kind they accept: values by hand (the
mutation target of apply/maskio with test_decoded_path.py, which covers DecodedMask)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harmonize_cli.apply.imageio import InputError
from harmonize_cli.apply.maskio import mask_to_array, read_mask

f32 = np.float32


def _same(result, expected):
    """Exact float32 values (expected written as fractions of 255 or 65535, computed in float32)."""
    assert result.dtype == np.float32 and result.flags.c_contiguous
    assert result.shape == np.shape(expected)
    assert np.array_equal(result, np.asarray(expected, np.float32)), (result, expected)


# ---------------------------------------------------------------------------------------- arrays

def test_integer_masks_0_1_then_8_bit_then_16_bit_by_their_peak():
    _same(mask_to_array(np.array([[0, 1], [1, 0]], np.uint8)), [[0, 1], [1, 0]])  # 1 is the foreground
    _same(mask_to_array(np.array([[0, 2]], np.uint8)), [[0, f32(2) / f32(255)]])  # 2 is not: 8-bit
    _same(mask_to_array(np.array([[0, 128, 255]], np.uint8)), [[0, f32(128) / f32(255), 1]])
    _same(mask_to_array(np.array([[0, 200]], np.int32)), [[0, f32(200) / f32(255)]])  # any integer type up to 255
    _same(mask_to_array(np.array([[0, 200]], np.uint16)), [[0, f32(200) / f32(65535)]])  # uint16: always 16-bit
    _same(mask_to_array(np.array([[0, 256]], np.int32)), [[0, f32(256) / f32(65535)]])  # past 255: 16-bit
    _same(mask_to_array(np.array([[-5, 1000, 70000]], np.int64)), [[0, f32(1000) / f32(65535), 1]])  # clipped
    _same(mask_to_array(np.array([[True, False]])), [[1, 0]])
    _same(mask_to_array(np.zeros((0, 3), np.uint8)), np.zeros((0, 3)))  # empty: no peak to take


def test_16_bit_masks_of_0_and_1_are_0_1_masks_and_from_2_up_scale_by_65535():
    """uint16 arrays and I;16 images: a peak of 1 is a 0/1 mask like any other, a peak of 2 is
    already a 16-bit value (2 / 65535), never an 8-bit one."""
    _same(mask_to_array(np.array([[0, 1], [1, 0]], np.uint16)), [[0, 1], [1, 0]])
    _same(mask_to_array(Image.fromarray(np.array([[0, 1], [1, 0]], np.uint16))), [[0, 1], [1, 0]])
    _same(mask_to_array(np.array([[0, 2]], np.uint16)), [[0, f32(2) / f32(65535)]])
    _same(mask_to_array(Image.fromarray(np.array([[0, 2]], np.uint16))), [[0, f32(2) / f32(65535)]])


def test_negative_values_of_signed_integer_masks_are_background():
    """A mask array with -1 for "no object" (signed integers) was read as a negative weight
    (-1 / 255 or -1), which blends outside the object; below 0 now counts as 0 on every path."""
    _same(mask_to_array(np.array([[-1, 0, 1]], np.int8)), [[0, 0, 1]])
    _same(mask_to_array(np.array([[-5, 200]], np.int32)), [[0, f32(200) / f32(255)]])
    _same(mask_to_array(np.array([[-300, 1000]], np.int16)), [[0, f32(1000) / f32(65535)]])
    _same(mask_to_array(np.array([[-1, -2]], np.int64)), [[0, 0]])

def test_float_masks_are_clipped_to_0_1_and_a_0_1_float32_mask_is_taken_without_a_copy():
    _same(mask_to_array(np.array([[-0.5, 0.25]], np.float32)), [[0, 0.25]])
    _same(mask_to_array(np.array([[0.25, 1.5]], np.float32)), [[0.25, 1]])
    _same(mask_to_array(np.array([[-2.0, 3.0]], np.float32)), [[0, 1]])
    _same(mask_to_array(np.array([[0.0, 0.5, 1.0]], np.float64)), [[0, 0.5, 1]])  # float64 -> float32
    for values in ([[0.0, 0.5, 1.0]], [[0.25, 0.75]]):
        mask = np.array(values, np.float32)
        assert mask_to_array(mask) is mask  # read_mask's own output: no copy, no pass over it


def test_nan_or_infinite_values_are_refused_with_their_count():
    for values in ([[np.nan, 0.5, 0.25]], [[np.inf, 0.0, 0.5]], [[-np.inf, np.nan, 1.0]]):
        with pytest.raises(InputError) as bad:
            mask_to_array(np.array(values, np.float32))
        count = int(np.count_nonzero(~np.isfinite(values)))
        assert bad.value.message == f"mask has {count} NaN or infinite value(s)"
        assert bad.value.hint == "save the mask with finite values (0..1, 0..255 or 0..65535)"


def test_channels_last_arrays_alpha_unless_constant_else_the_first_channel():
    first = np.array([[10, 255]], np.uint8)
    other = np.array([[255, 0]], np.uint8)
    soft = np.array([[51, 204]], np.uint8)
    _same(mask_to_array(first[..., None]), [[f32(10) / f32(255), 1]])  # H x W x 1
    _same(mask_to_array(np.dstack((first, soft))), [[0.2, 0.8]])  # gray + alpha: the alpha
    _same(mask_to_array(np.dstack((first, np.full_like(first, 7)))), [[f32(10) / f32(255), 1]])  # constant alpha
    _same(mask_to_array(np.dstack((first, other, soft))), [[f32(10) / f32(255), 1]])  # RGB: the first channel
    _same(mask_to_array(np.dstack((first, other, other, soft))), [[0.2, 0.8]])  # RGBA: the alpha
    _same(mask_to_array(np.dstack((first, other, other, np.full_like(first, 255)))), [[f32(10) / f32(255), 1]])


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 0), (2, 3, 4, 1), (6,)])
def test_other_array_shapes_are_refused_naming_the_shape(shape):
    with pytest.raises(InputError) as bad:
        mask_to_array(np.zeros(shape, np.uint8))
    assert bad.value.message == f"mask array has shape {shape}"
    assert bad.value.hint == "expected H x W (or H x W x C)"


def test_an_array_like_with_a_mode_attribute_is_still_an_array():
    class Named:
        mode = "1"  # not a Pillow image: read as the array it gives, not as mode 1

        def __array__(self, dtype=None, copy=None):
            return np.array([[0, 255]], np.uint8)

    _same(mask_to_array(Named()), [[0, 1]])


# -------------------------------------------------------------------------------- Pillow images

def test_pillow_masks_of_every_mode_by_hand():
    _same(mask_to_array(Image.fromarray(np.array([[0, 255, 0]], np.uint8)).convert("1")), [[0, 1, 0]])
    _same(mask_to_array(Image.fromarray(np.array([[0, 1, 1]], np.uint8), "L")), [[0, 1, 1]])
    _same(mask_to_array(Image.fromarray(np.array([[0, 128, 255]], np.uint8), "L")), [[0, f32(128) / f32(255), 1]])
    for mode in ("I;16", "I;16L", "I;16B", "I;16N"):  # 16-bit: over 65535 even when the values are small
        raw = np.array([0, 200, 1000], ">u2" if mode == "I;16B" else "<u2" if mode != "I;16N" else "=u2")
        _same(mask_to_array(Image.frombytes(mode, (3, 1), raw.tobytes())),
              [[0, f32(200) / f32(65535), f32(1000) / f32(65535)]])
    big_endian = Image.frombytes("I;16B", (2, 1), np.array([0, 200], ">u2").tobytes())  # not numpy's uint16
    _same(mask_to_array(big_endian), [[0, f32(200) / f32(65535)]])
    _same(mask_to_array(Image.fromarray(np.array([[0, 1000]], np.int32))), [[0, f32(1000) / f32(65535)]])  # "I"
    _same(mask_to_array(Image.fromarray(np.array([[0, 200]], np.int32))), [[0, f32(200) / f32(255)]])


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.5], [0, 0.5]),  # peak <= 1: as it is
    ([0.0, 0.5, 1.0], [0, 0.5, 1]),
    ([0.0, 2.0], [0, 2 / 255]),  # peak <= 255: divided by 255
    ([0.0, 200.0, 255.0], [0, 200 / 255, 1]),
    ([0.0, 256.0], [0, 256 / 65535]),  # above: by 65535
    ([0.0, 1000.0], [0, 1000 / 65535]),  # (1000 / 65536 is 2.3e-7 away)
])
def test_float_images_by_their_peak(values, expected):
    result = mask_to_array(Image.fromarray(np.array([values], np.float32), "F"))
    assert result.dtype == np.float32 and result.shape == (1, len(values))
    assert np.allclose(result, [expected], rtol=0, atol=1e-7)


def test_an_empty_float_image_and_a_nan_in_one():
    assert mask_to_array(Image.new("F", (0, 3))).shape == (3, 0)
    with pytest.raises(InputError, match=r"^mask has 1 NaN or infinite value\(s\)"):
        mask_to_array(Image.fromarray(np.array([[0.0, np.nan]], np.float32), "F"))


def test_alpha_modes_palettes_and_other_modes():
    alpha = np.array([[128, 255]], np.uint8)
    la = Image.fromarray(np.dstack((np.array([[255, 0]], np.uint8), alpha)), "LA")
    _same(mask_to_array(la), [[f32(128) / f32(255), 1]])  # the alpha, not L (255, 0)
    premultiplied = Image.frombytes("La", (2, 1), bytes([100, 128, 0, 255]))
    _same(mask_to_array(premultiplied), [[f32(128) / f32(255), 1]])
    # constant alpha 128, premultiplied L 100: unpremultiplied to 100 * 255 / 128 = 199.2 -> 199
    _same(mask_to_array(Image.frombytes("La", (2, 1), bytes([100, 128, 0, 128]))), [[f32(199) / f32(255), 0]])
    rgba = np.array([[[255, 0, 0, 128], [0, 0, 0, 255]]], np.uint8)
    _same(mask_to_array(Image.fromarray(rgba, "RGBA")), [[f32(128) / f32(255), 1]])
    _same(mask_to_array(Image.frombytes("RGBa", (2, 1), rgba.tobytes())), [[f32(128) / f32(255), 1]])
    # constant alpha 128, premultiplied red 100: unpremultiplied to 100 * 255 / 128 = 199.2 -> 199
    constant = Image.frombytes("RGBa", (2, 1), bytes([100, 0, 0, 128, 0, 0, 0, 128]))
    _same(mask_to_array(constant), [[f32(199) / f32(255), 0]])
    palette = Image.new("P", (3, 1))
    palette.putpalette([255, 255, 255, 0, 0, 0, 51, 0, 0])
    palette.putdata([0, 1, 2])
    _same(mask_to_array(palette), [[1, 0, 0.2]])  # opaque: the colours' first channel
    palette.info["transparency"] = 0  # index 0 transparent: the alpha (0, 255, 255)
    _same(mask_to_array(palette), [[0, 1, 1]])
    _same(mask_to_array(palette.convert("PA")), [[0, 1, 1]])
    # CMYK (no K): red = 255 - cyan; the first channel of RGB, never K as an alpha
    cmyk = Image.frombytes("CMYK", (2, 1), bytes([0, 0, 0, 0, 200, 0, 0, 0]))
    _same(mask_to_array(cmyk), [[1, f32(55) / f32(255)]])


# ------------------------------------------------------------------------------------ read_mask

def test_paths_as_text_or_path_give_the_file_as_float32(tmp_path):
    Image.fromarray(np.array([[0, 51], [255, 0]], np.uint8), "L").save(tmp_path / "m.png")
    for path in (tmp_path / "m.png", str(tmp_path / "m.png")):
        _same(mask_to_array(path), [[0, 0.2], [1, 0]])
        _same(read_mask(path), [[0, 0.2], [1, 0]])


def test_read_mask_names_a_missing_file_once(tmp_path):
    for as_decoded in (False, True):
        with pytest.raises(InputError) as missing:
            read_mask(tmp_path / "none.png", as_decoded=as_decoded)
        assert missing.value.message == f"{tmp_path / 'none.png'}: no such file"
