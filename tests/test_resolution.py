"""The composition strategies of apply/resolution.py (fixed, native, auto) against straightforward
float64 implementations, and NaN predictions kept out of the pixels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from harmonize_cli.apply.resolution import (compose_auto, compose_fixed, compose_native, fit_correction, mask_bbox,
                                           resize_mask, resize_rgb)
from photos import soft_photo


def _blend(rgb, mask, harmonized_255):
    source = rgb.astype(np.float64)
    mixed = source + mask[..., None].astype(np.float64) * (np.clip(harmonized_255, 0, 255) - source)
    return np.where(mask[..., None] > 0, np.round(mixed), source).astype(np.uint8)


def _upsample(low, size):
    return F.interpolate(torch.from_numpy(low)[None].double(), size=size, mode="bilinear",
                         align_corners=False)[0].numpy()


def _check_close(ours, expected, mask):
    assert ours.shape == expected.shape and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1
    assert np.array_equal(ours[mask == 0], expected[mask == 0])


def test_fixed_is_the_upsampled_prediction_blended_in():
    rgb, mask, _, _, prediction = soft_photo()
    expected = _blend(rgb, mask, _upsample(prediction, mask.shape).transpose(1, 2, 0) * 255.0)
    _check_close(compose_fixed(rgb, mask, prediction), expected, mask)


def test_native_is_the_prediction_blended_in():
    rgb, mask, _, _, _ = soft_photo()
    full = np.clip(rgb.transpose(2, 0, 1) / 255.0 * 0.7 + 0.1, 0, 1).astype(np.float32)
    _check_close(compose_native(rgb, mask, full), _blend(rgb, mask, full.transpose(1, 2, 0) * 255.0), mask)


def test_auto_reproduces_an_affine_colour_change_exactly():
    """Closed form, without the product's fit: when the network's output is an affine colour
    change of its input (cross-channel mixing plus an offset), the polynomial map recovers it and
    the residual vanishes, so auto gives that change applied to every full-resolution pixel."""
    rng = np.random.default_rng(3)
    rgb = np.kron(rng.integers(20, 236, (30, 40, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # colours in 3-D
    yy, xx = np.mgrid[0:240, 0:320] / np.array([240.0, 320.0])[:, None, None]
    mask = np.clip(1.6 - ((yy - 0.5) / 0.4) ** 2 - ((xx - 0.5) / 0.4) ** 2, 0, 1).astype(np.float32)
    low, low_mask = resize_rgb(rgb, (64, 64)), resize_mask(mask, (64, 64))
    mixing = np.array([[0.7, 0.1, 0.0], [0.0, 0.8, 0.1], [0.05, 0.0, 0.75]])
    offset = np.array([0.05, 0.02, 0.1])
    prediction = (np.einsum("oc,chw->ohw", mixing, low.astype(np.float64)) + offset[:, None, None]).astype(np.float32)
    assert prediction.min() >= 0 and prediction.max() <= 1
    changed = (rgb.astype(np.float64) / 255.0 @ mixing.T + offset) * 255.0
    expected = _blend(rgb, mask, changed)
    for degree in (1, 2):
        ours = compose_auto(rgb, mask, fit_correction(low, prediction, low_mask, degree=degree), mask_bbox(mask))
        difference = np.abs(ours.astype(int) - expected.astype(int))
        assert difference.max() <= 2 and (difference > 1).mean() < 1e-3, degree  # the fit's ridge, float32
        assert np.array_equal(ours[mask == 0], expected[mask == 0])
    assert np.abs(expected.astype(int) - rgb.astype(int)).max() > 20  # a real change


def test_auto_is_the_colour_map_plus_the_normalised_residual():
    """The fused 0..255 planar computation equals the colour map applied in [0, 1] to every pixel
    plus the mask-weighted residual upsampled and normalised, in float64."""
    rgb, mask, low, low_mask, prediction = soft_photo()
    correction = fit_correction(low, prediction, low_mask)
    pixels = torch.from_numpy(rgb.reshape(-1, 3).astype(np.float32) / 255.0)
    mapped = correction.colour_map.apply(pixels).double().numpy().reshape(rgb.shape)
    numerator = _upsample(correction.residual_numerator.numpy(), mask.shape)
    weight = _upsample(correction.residual_weight.numpy(), mask.shape)
    residual = np.where(weight > 1e-4, numerator / np.maximum(weight, 1e-4), 0.0).transpose(1, 2, 0)
    assert np.abs(residual).max() > 0.01  # the residual really carries something here
    expected = _blend(rgb, mask, (mapped + residual) * 255.0)
    _check_close(compose_auto(rgb, mask, correction, mask_bbox(mask)), expected, mask)


def test_nan_predictions_never_reach_the_pixels():
    rgb, mask, low, low_mask, prediction = soft_photo()
    prediction[:, 10:20, 10:20] = np.nan
    for out in (compose_fixed(rgb, mask, prediction), compose_auto(rgb, mask, fit_correction(low, prediction, low_mask))):
        assert np.array_equal(out[mask == 0], rgb[mask == 0])


def test_resize_mask_is_antialiased_bilinear_by_hand():
    """8 -> 4 columns: Pillow's antialiased bilinear is a triangle of radius 2 source pixels around
    the output centre (1, 3, 5, 7), weights 0.75, 0.75, 0.25 at the border (sum 1.75) and 0.125,
    0.375, 0.375, 0.125 inside. Row 0 0 1 1 1 1 1 1 gives 0.25 / 1.75 = 1/7, then 0.875, 1, 1; a
    nearest or non-antialiased filter gives 0, 1, 1, 1 (a hard edge)."""
    row = np.array([0, 0, 1, 1, 1, 1, 1, 1], np.float32)
    small = resize_mask(np.tile(row, (8, 1)), (4, 4))
    assert small.dtype == np.float32 and small.shape == (4, 4)
    assert np.allclose(small, np.tile([1 / 7, 0.875, 1.0, 1.0], (4, 1)), atol=1e-6)
    assert np.allclose(resize_mask(np.tile(row, (8, 1)).T.copy(), (4, 4)), np.tile([1 / 7, 0.875, 1.0, 1.0], (4, 1)).T,
                       atol=1e-6)
    soft = np.array([0, 0, 0.5, 1, 1, 1, 1, 1], np.float32)  # (0.25 * 0.5) / 1.75; 0.375 * 0.5 + 0.5
    assert np.allclose(resize_mask(np.tile(soft, (2, 1)), (2, 4)), np.tile([0.5 / 7, 0.6875, 1.0, 1.0], (2, 1)),
                       atol=1e-6)
    assert np.array_equal(resize_mask(np.full((6, 6), 2.0, np.float32), (3, 3)), np.ones((3, 3), np.float32))  # clipped


def test_fixed_clamps_the_prediction_before_upsampling_by_hand():
    """A prediction outside [0, 1] is clamped at the network size, then upsampled: 1 x 2 -> 1 x 4
    samples the low row at -0.25 (edge), 0.25, 0.75, 1.25 (edge), i.e. weights (1, 0), (0.75, 0.25),
    (0.25, 0.75), (0, 1). Row [1.5, 0.4] -> [1, 0.4]: 255, 216.75, 140.25, 102; row [-0.5, 0.6] ->
    [0, 0.6]: 0, 38.25, 114.75, 153 (clamping only after upsampling would give 255, 255, 191, 102
    and 0, 0, 83, 153)."""
    rgb = np.full((1, 4, 3), 50, np.uint8)
    mask = np.ones((1, 4), np.float32)
    prediction = np.zeros((3, 1, 2), np.float32)
    prediction[0, 0] = [1.5, 0.4]
    prediction[1, 0] = [-0.5, 0.6]
    prediction[2, 0] = [np.nan, 0.2]  # NaN counts as 0: 0, 12.75, 38.25, 51
    out = compose_fixed(rgb, mask, prediction)
    assert out[0, :, 0].tolist() == [255, 217, 140, 102]
    assert out[0, :, 1].tolist() == [0, 38, 115, 153]
    assert out[0, :, 2].tolist() == [0, 13, 38, 51]
