"""sRGB <-> linear light <-> CIE L*a*b* (D65), on float arrays whose last axis holds R, G, B.

Plain numpy, no clipping warnings: values in [0, 1] for RGB; L in [0, 100]. The constants are
the sRGB standard's (IEC 61966-2-1) and the CIE's, the same that scikit-image uses, so
``rgb_to_lab`` agrees with ``skimage.color.rgb2lab`` (the tests check it).
"""

from __future__ import annotations

import numpy as np

# linear sRGB -> XYZ (D65), and back
_RGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0

# Rec. 709 luma weights (on gamma-encoded values), used for saturation changes
LUMA = np.array([0.2126, 0.7152, 0.0722])


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float64)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((np.maximum(rgb, 0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.maximum(linear, 0.0031308) ** (1 / 2.4) - 0.055)


def _f(t: np.ndarray) -> np.ndarray:
    return np.where(t > _DELTA**3, np.cbrt(np.maximum(t, _DELTA**3)), t / (3 * _DELTA**2) + 4.0 / 29.0)


def _f_inverse(t: np.ndarray) -> np.ndarray:
    return np.where(t > _DELTA, t**3, 3 * _DELTA**2 * (t - 4.0 / 29.0))


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (``... x 3``) to L*a*b* (``... x 3``)."""
    xyz = srgb_to_linear(rgb) @ _RGB_TO_XYZ.T / _WHITE_D65
    fx, fy, fz = _f(xyz[..., 0]), _f(xyz[..., 1]), _f(xyz[..., 2])
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """L*a*b* (``... x 3``) to sRGB in [0, 1]; colours outside the sRGB gamut are clipped."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = fy - lab[..., 2] / 200.0
    xyz = np.stack([_f_inverse(fx), _f_inverse(fy), _f_inverse(fz)], axis=-1) * _WHITE_D65
    return linear_to_srgb(xyz @ _XYZ_TO_RGB.T)


def lab_stats(rgb_pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation in L*a*b* of ``N x 3`` sRGB pixels in [0, 1]."""
    lab = rgb_to_lab(np.asarray(rgb_pixels).reshape(-1, 3))
    return lab.mean(axis=0), lab.std(axis=0)
