"""Test photos shared by the resolution and apply tests."""

from __future__ import annotations

import numpy as np

from harmonize_cli.apply.resolution import resize_mask, resize_rgb


def soft_photo(height=300, width=420, seed=0):
    """A textured photo, a soft elliptical mask (one full-width row, so strips span the box),
    the network's views and a prediction that changes colours non-linearly and unevenly."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200 + 30, yy / height * 180 + 40, (xx + yy) / (width + height) * 150 + 60], 2)
    rgb = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    ellipse = ((yy - 0.5 * height) / (0.3 * height)) ** 2 + ((xx - 0.45 * width) / (0.3 * width)) ** 2
    mask = np.clip(1.5 - ellipse, 0, 1).astype(np.float32)
    mask[int(0.5 * height), :] = 0.8
    low = resize_rgb(rgb, (64, 64))
    low_mask = resize_mask(mask, (64, 64))
    ramp = np.linspace(0.0, 0.15, 64, dtype=np.float32)[None, None, :]
    prediction = np.clip(0.85 * low ** 1.3 + 0.05 + ramp * np.array([1, -1, 0.5], np.float32)[:, None, None], 0, 1)
    return rgb, mask, low, low_mask, prediction.astype(np.float32)
