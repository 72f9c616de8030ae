"""The composition strategies of apply/resolution.py (fixed, native, auto) against straightforward
float64 implementations, and NaN predictions kept out of the pixels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from harmonize_cli.apply.resolution import compose_auto, compose_fixed, compose_native, fit_correction, mask_bbox
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
