"""From a network that works at 256 x 256 to a harmonized photo of any size.

Three strategies (``--resolution``):

``fixed``
    The reference behaviour: the composite is resized to the network's training size, harmonized,
    and the prediction is resized back; the foreground of the result is that upsampled prediction
    (blurry on large photos), the background is the input's.
``native``
    The full-size composite, padded to the network's size divisor, goes through the network.
    Memory and time grow with the photo; the network sees objects at scales it was not trained on.
``auto`` (default)
    The network runs at its training size, as in ``fixed``; the *correction* it made is then
    carried to the full-resolution pixels in two parts: (1) a smooth colour mapping (a quadratic
    polynomial in RGB) fitted, by weighted least squares inside the mask, from the low-resolution
    input to the prediction, applied to every full-resolution foreground pixel; (2) what that
    mapping does not explain (spatially varying changes) as a low-resolution residual, upsampled
    with normalised (mask-weighted) bilinear interpolation so that background values do not leak
    into the foreground edge. The full-resolution texture is kept; memory stays bounded because
    the full-resolution work is done in strips inside the mask's bounding box.

In every strategy the result is ``input + mask * (harmonized - input)`` with the full-resolution
(soft) mask, and pixels where the mask is 0 are copied from the input bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch

from ..choices import RESOLUTION_STRATEGIES, check_choice

# Pixels processed at once at full resolution by ``fixed``, ``native`` and ``auto``: a strip's
# float32 planes (the ``auto`` colour map's nine features are 9 MB) then stay in the caches;
# 2^20 pixels took 2.6x as long for ``auto`` and 1.3x for ``fixed`` on a 4.3-megapixel mask box
# (docs/benchmarks.md, "Apply against its floor"), with the same bytes out.
STRIP_PIXELS = 1 << 18
# PCT-Net's strips (its upsampling works strip by strip): unchanged.
PCT_STRIP_PIXELS = 1 << 20


def check_strategy(name: str) -> str:
    return check_choice(name or "auto", RESOLUTION_STRATEGIES, "resolution strategy")


def mask_bbox(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of the pixels where ``mask > 0``; None when the mask is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


# ------------------------------------------------------------------------------ low-res views

def resize_rgb(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of uint8 H x W x 3 to ``size`` = (height, width), float32 [0, 1]
    channels-first (3 x h x w)."""
    from PIL import Image

    return resize_pil_rgb(Image.fromarray(rgb), size)


def resize_pil_rgb(image, size: Tuple[int, int]) -> np.ndarray:
    """:func:`resize_rgb` of an RGB Pillow image (the decoded photo itself: no copy into Pillow)."""
    from PIL import Image

    height, width = size
    small = image.resize((width, height), Image.BILINEAR, reducing_gap=3.0)
    return np.asarray(small, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)


def resize_mask(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of a float mask to (height, width), values kept in [0, 1]."""
    from PIL import Image

    height, width = size
    small = Image.fromarray(np.asarray(mask, dtype=np.float32), mode="F").resize((width, height), Image.BILINEAR,
                                                                                 reducing_gap=3.0)
    return np.clip(np.asarray(small, dtype=np.float32), 0.0, 1.0)


# -------------------------------------------------------------------------- full-res sampling

def _taps(size_in: int, size_out: int, start: int, stop: int):
    """Linear-interpolation taps of output positions ``start..stop-1`` (``align_corners=False``,
    PyTorch's rule): (first source index, second source index, weight of the second)."""
    scale = size_in / size_out
    where = ((torch.arange(start, stop, dtype=torch.float64) + 0.5) * scale - 0.5).clamp_(min=0.0)
    first = where.floor().long().clamp_(max=size_in - 1)
    second = (first + 1).clamp_(max=size_in - 1)
    return first, second, (where - first).to(torch.float32)


class Upsampler:
    """Bilinear upsampling (``F.interpolate(mode="bilinear", align_corners=False)``) of a small
    C x h x w map to (H, W), one window at a time.

    The horizontal pass is done once, on the low-resolution rows and only for the window's
    columns (kept as h x C x width: each low-resolution row is one contiguous block); a window of
    rows then blends two of those rows per output row (two row gathers, which are block copies,
    and one lerp), so no work is spent outside the mask's box.
    """

    def __init__(self, low_res: torch.Tensor, out_size: Tuple[int, int]):
        self.out_size = out_size
        self.low_res = low_res.float()
        self.vertical = _taps(low_res.shape[1], out_size[0], 0, out_size[0])
        self._cols, self._rows_at_cols = None, None

    def _columns(self, cols: Tuple[int, int]) -> torch.Tensor:
        if self._cols != tuple(cols):
            first, second, weight = _taps(self.low_res.shape[2], self.out_size[1], cols[0], cols[1])
            left, right = self.low_res.index_select(2, first), self.low_res.index_select(2, second)
            rows = left.lerp_(right, weight).transpose(0, 1).contiguous()  # h x C x width
            self._rows_at_cols = rows.view(rows.shape[0], -1)
            self._cols = tuple(cols)
        return self._rows_at_cols

    def window(self, rows: Tuple[int, int], cols: Tuple[int, int]) -> torch.Tensor:
        """The window as C x rows x cols (a new tensor; a view of rows x C x cols memory)."""
        band = self._columns(cols)
        first, second, weight = (taps[rows[0]:rows[1]] for taps in self.vertical)
        top, bottom = band.index_select(0, first), band.index_select(0, second)
        mixed = top.lerp_(bottom, weight[:, None])
        return mixed.view(len(weight), self.low_res.shape[0], cols[1] - cols[0]).transpose(0, 1)


def _strips(height: int, width: int):
    """(top, bottom) rows of the strips of a box ``height`` x ``width``: about STRIP_PIXELS each."""
    step = max(1, STRIP_PIXELS // max(1, width))
    for top in range(0, height, step):
        yield top, min(height, top + step)


def strip_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over a strip of an image, copied only when it must be: decoded images are often
    read-only, and torch warns about (and must never write into) such arrays."""
    if not array.flags.c_contiguous or not array.flags.writeable:
        array = np.array(array, copy=True, order="C")
    return torch.from_numpy(array)


def _blend_into(out: np.ndarray, rgb: np.ndarray, mask: np.ndarray, top: int, bottom: int,
                harmonized: torch.Tensor, source: Optional[torch.Tensor] = None) -> None:
    """out[top:bottom] = input + mask * (harmonized - input), rounded, for rows of a box (``out``,
    ``rgb`` and ``mask`` are the box's arrays); where the mask is 0 the input is copied bit for bit.

    ``harmonized``: h x w x 3 float in [0, 1] (modified in place; NaN counts as 0); ``source``: the
    strip of the input as h x w x 3 float in [0, 255], if already converted."""
    target = torch.nan_to_num_(harmonized, nan=0.0).mul_(255.0).permute(2, 0, 1)
    _blend_255(out, rgb, mask, top, bottom, target, None if source is None else source.permute(2, 0, 1))


def _planar_source(rgb: np.ndarray, top: int, bottom: int) -> torch.Tensor:
    """Rows of the box's input as 3 x h x w float32 (0..255), contiguous."""
    strip = strip_tensor(rgb[top:bottom]).permute(2, 0, 1)
    return torch.empty(strip.shape, dtype=torch.float32).copy_(strip)


def _blend_255(out: np.ndarray, rgb: np.ndarray, mask: np.ndarray, top: int, bottom: int,
               target: torch.Tensor, source: Optional[torch.Tensor] = None) -> None:
    """:func:`_blend_into` for a *finite* 3 x h x w ``target`` in 0..255 units (modified in place):
    one pass per operation and no background select, because ``source + 0 * (target - source)``
    is the source exactly and a convex combination of two values in [0, 255] stays in it."""
    if source is None:
        source = _planar_source(rgb, top, bottom)
    weight = strip_tensor(mask[top:bottom])
    if weight.dtype != torch.float32:
        weight = weight.float()
    mixed = target.clamp_(0.0, 255.0).sub_(source).mul_(weight).add_(source).round_()
    out[top:bottom] = mixed.to(torch.uint8).permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- colour mapping

def _features(pixels: torch.Tensor, degree: int) -> torch.Tensor:
    """N x 3 colours -> N x k polynomial features (degree 1: r g b 1; degree 2 adds squares and
    products)."""
    ones = torch.ones_like(pixels[:, :1])
    if degree == 1:
        return torch.cat((pixels, ones), dim=1)
    r, g, b = pixels[:, 0:1], pixels[:, 1:2], pixels[:, 2:3]
    return torch.cat((pixels, r * r, g * g, b * b, r * g, r * b, g * b, ones), dim=1)


@dataclass
class ColourMap:
    """A polynomial colour mapping in RGB fitted inside the mask: ``apply`` maps N x 3 colours."""

    coefficients: torch.Tensor  # k x 3
    degree: int
    low: torch.Tensor  # per-channel range of the colours it was fitted on (extrapolation guard)
    high: torch.Tensor
    linear: torch.Tensor  # 4 x 3 affine fit, used beyond the fitted range
    _folded: Optional[tuple] = field(default=None, repr=False, compare=False)  # apply_255's coefficients

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        """Map N x 3 colours (float, [0, 1])."""
        inside = torch.maximum(torch.minimum(pixels, self.high), self.low)
        if self.degree == 1:
            mapped = torch.addmm(self.coefficients[3], inside, self.coefficients[:3])
        else:
            features = torch.empty((pixels.shape[0], 9), dtype=pixels.dtype)
            features[:, 0:3] = inside
            torch.mul(inside, inside, out=features[:, 3:6])
            torch.mul(inside[:, 0:2], inside[:, 1:3], out=features[:, 6:8])  # rg, gb
            torch.mul(inside[:, 0], inside[:, 2], out=features[:, 8])  # rb
            mapped = torch.addmm(self.coefficients[9], features, self.coefficients[_FEATURE_ORDER])
        overflow = pixels - inside  # colours outside the fitted range continue linearly
        return mapped.addmm_(overflow, self.linear[:3])

    def apply_255(self, pixels: torch.Tensor) -> torch.Tensor:
        """:meth:`apply` in 0..255 units on both sides, on planar colours (3 x N float, one row
        per channel: contiguous rows make every step one vectorised pass), with the scale folded
        into the coefficients: the clamped colours, their squares and products, and the overflow
        beyond the fitted range go through two small matrix products."""
        if self._folded is None:
            self._folded = self._coefficients_255()
        bias, weights, overflow, low, high = self._folded
        features = torch.empty((9 if self.degree == 2 else 3, pixels.shape[1]), dtype=pixels.dtype)
        inside = torch.clamp(pixels, low, high, out=features[0:3])
        if self.degree == 2:
            torch.mul(inside, inside, out=features[3:6])
            torch.mul(inside[0:2], inside[1:3], out=features[6:8])  # rg, gb
            torch.mul(inside[0], inside[2], out=features[8])  # rb
        return torch.addmm(bias, weights, features).addmm_(overflow, pixels)

    def _coefficients_255(self):
        # mapped_255 = 255 * poly(p) with p = x / 255: linear rows keep their value, products of
        # two colours are divided by 255, the constant is multiplied by 255; the overflow term
        # (x - inside) @ linear is split into x @ linear - inside @ linear
        linear = self.linear[:3]
        if self.degree == 1:
            weights = self.coefficients[:3] - linear
            bias = self.coefficients[3] * 255.0
        else:
            weights = self.coefficients[_FEATURE_ORDER].clone()
            weights[3:] /= 255.0
            weights[:3] -= linear
            bias = self.coefficients[9] * 255.0
        return (bias.view(3, 1), weights.T.contiguous(), linear.T.contiguous(), self.low.view(3, 1) * 255.0,
                self.high.view(3, 1) * 255.0)


# rows of the degree-2 coefficients (r g b r2 g2 b2 rg rb gb 1) in the order ``apply`` builds them
_FEATURE_ORDER = [0, 1, 2, 3, 4, 5, 6, 8, 7]


def _weighted_ridge(features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, prior: torch.Tensor,
                    strength: float) -> torch.Tensor:
    weighted = features * weights[:, None]
    gram = features.T @ weighted
    total = float(weights.sum())
    lam = strength * max(total, 1.0)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    rhs = weighted.T @ targets + lam * prior
    return torch.linalg.solve(gram + lam * eye, rhs)


def fit_colour_map(source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, degree: int = 2,
                   ridge: float = 1e-4) -> ColourMap:
    """Weighted least-squares fit of ``target ~ poly(source)`` (N x 3 each), regularised towards
    the identity so that a tiny or flat foreground gives a gentle mapping (degree 0: identity)."""
    source = source.double()
    target = target.double()
    weights = weights.double()
    linear_prior = torch.cat((torch.eye(3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)))
    if degree == 0:  # the identity: only the residual carries the correction
        identity = linear_prior.float()
        return ColourMap(identity, 1, torch.zeros(3), torch.ones(3), identity)
    linear = _weighted_ridge(_features(source, 1), target, weights, linear_prior, ridge)
    if degree == 1:
        coefficients = linear
    else:
        prior = torch.zeros(10, 3, dtype=torch.float64)
        prior[:3] = torch.eye(3, dtype=torch.float64)
        coefficients = _weighted_ridge(_features(source, 2), target, weights, prior, ridge)
    used = weights > 1e-3
    if used.any():
        low, high = source[used].amin(dim=0), source[used].amax(dim=0)
    else:
        low, high = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    if not all(bool(torch.isfinite(value).all()) for value in (coefficients, linear, low, high)):
        return fit_colour_map(source, target, weights, degree=0)  # NaN in, identity out: never NaN pixels
    return ColourMap(coefficients.float(), degree, low.float(), high.float(), linear.float())


# ------------------------------------------------------------------------------- strategies
#
# Each strategy has two forms: ``compose_*`` takes the whole input and mask and returns the whole
# result (a copy of the input with the mask's box replaced); ``*_box`` takes only the box's
# arrays (the input's and the mask's pixels inside ``bbox`` = (y0, y1, x0, x1) of an image of
# ``size`` = (H, W)) and returns the box of the result. Apply converts only the box of a decoded
# photo to arrays and pastes the result's box back (docs/benchmarks.md, "Apply against its floor").

def _compose(rgb: np.ndarray, mask: np.ndarray, bbox, compose_box) -> np.ndarray:
    """The whole-image form of a box function ``compose_box(rgb_box, mask_box, bbox)``."""
    out = rgb.copy()
    bbox = bbox if bbox is not None else mask_bbox(mask)
    if bbox is None:
        return out
    y0, y1, x0, x1 = bbox
    out[y0:y1, x0:x1] = compose_box(rgb[y0:y1, x0:x1], mask[y0:y1, x0:x1], bbox)
    return out


def compose_fixed(rgb: np.ndarray, mask: np.ndarray, prediction: np.ndarray, bbox=None) -> np.ndarray:
    """``fixed``: the low-resolution prediction (3 x h x w, [0, 1]) upsampled bilinearly to the
    input size and blended into the input with the full-resolution mask."""
    return _compose(rgb, mask, bbox, lambda rgb_box, mask_box, box: fixed_box(rgb_box, mask_box, prediction, box,
                                                                              mask.shape))


def fixed_box(rgb: np.ndarray, mask: np.ndarray, prediction: np.ndarray, bbox, size) -> np.ndarray:
    """:func:`compose_fixed` of the box ``bbox`` only (see the strategies' note)."""
    low = torch.from_numpy(np.array(prediction, dtype=np.float32))  # a copy: scaled in place
    upsampler = Upsampler(torch.nan_to_num_(low, nan=0.0).clamp_(0.0, 1.0).mul_(255.0), tuple(size))
    y0, _, x0, x1 = bbox
    out = np.empty_like(rgb)
    for top, bottom in _strips(*mask.shape):
        _blend_255(out, rgb, mask, top, bottom, upsampler.window((y0 + top, y0 + bottom), (x0, x1)))
    return out


def compose_native(rgb: np.ndarray, mask: np.ndarray, prediction: np.ndarray, bbox=None) -> np.ndarray:
    """``native``: the full-size prediction (3 x H x W, [0, 1]) blended into the input."""
    return _compose(rgb, mask, bbox, lambda rgb_box, mask_box, box: native_box(rgb_box, mask_box, prediction, box))


def native_box(rgb: np.ndarray, mask: np.ndarray, prediction: np.ndarray, bbox) -> np.ndarray:
    """:func:`compose_native` of the box ``bbox`` only (``prediction`` is still the whole image's)."""
    full = torch.from_numpy(np.ascontiguousarray(prediction, dtype=np.float32))
    y0, _, x0, x1 = bbox
    out = np.empty_like(rgb)
    for top, bottom in _strips(*mask.shape):
        target = torch.nan_to_num(full[:, y0 + top:y0 + bottom, x0:x1], nan=0.0).mul_(255.0)  # a copy
        _blend_255(out, rgb, mask, top, bottom, target)
    return out


@dataclass
class Correction:
    """What ``auto`` carries from low to full resolution."""

    colour_map: ColourMap
    residual_numerator: torch.Tensor  # 3 x h x w: (prediction - mapped input) * weight
    residual_weight: torch.Tensor  # 1 x h x w


def fit_correction(low_input: np.ndarray, prediction: np.ndarray, low_mask: np.ndarray, degree: int = 2,
                   residual: bool = True) -> Correction:
    """Fit the ``auto`` correction from the network's view: input, prediction (3 x h x w in
    [0, 1]) and mask (h x w)."""
    source = torch.from_numpy(np.ascontiguousarray(low_input, dtype=np.float32))
    target = torch.nan_to_num(torch.from_numpy(np.ascontiguousarray(prediction, dtype=np.float32)), nan=0.0)
    weight = torch.from_numpy(np.ascontiguousarray(low_mask, dtype=np.float32))
    # only the pixels inside the mask count (a pixel of weight 0 adds nothing to the fit and has no
    # residual): the fit and the residual over them alone cost a third of the whole view's
    inside = torch.nonzero(weight.reshape(-1) > 0).squeeze(1)
    pixels_in = source.reshape(3, -1).T[inside]
    pixels_out = target.reshape(3, -1).T[inside]
    pixel_weight = weight.reshape(-1)[inside]
    colour_map = fit_colour_map(pixels_in, pixels_out, pixel_weight, degree=degree)
    numerator = torch.zeros_like(source)
    if residual:
        leftover = (pixels_out - colour_map.apply(pixels_in)) * pixel_weight[:, None]
        numerator.view(3, -1)[:, inside] = leftover.T
    return Correction(colour_map, numerator, weight.unsqueeze(0).clone())


def compose_auto(rgb: np.ndarray, mask: np.ndarray, correction: Correction, bbox=None) -> np.ndarray:
    """``auto``: the colour mapping applied to every full-resolution foreground pixel, plus the
    upsampled (mask-normalised) low-resolution residual, blended into the input. Computed in
    0..255 units (scale folded into the coefficients), float32, strip by strip in the mask's box."""
    return _compose(rgb, mask, bbox, lambda rgb_box, mask_box, box: auto_box(rgb_box, mask_box, correction, box,
                                                                             mask.shape))


def auto_box(rgb: np.ndarray, mask: np.ndarray, correction: Correction, bbox, size) -> np.ndarray:
    """:func:`compose_auto` of the box ``bbox`` only (see the strategies' note)."""
    y0, _, x0, x1 = bbox
    upsampler = None
    if bool(correction.residual_numerator.abs().max() > 0):
        stacked = torch.cat((correction.residual_numerator * 255.0, correction.residual_weight))
        upsampler = Upsampler(stacked, tuple(size))
    out = np.empty_like(rgb)
    for top, bottom in _strips(*mask.shape):
        source = _planar_source(rgb, top, bottom)  # 3 x rows x cols
        mapped = correction.colour_map.apply_255(source.view(3, -1)).view(source.shape)
        if upsampler is not None:
            window = upsampler.window((y0 + top, y0 + bottom), (x0, x1))  # (3 + 1) x rows x cols
            numerator, denominator = window[:3], window[3:]
            mapped.add_(numerator.div_(denominator.clamp_min(1e-4)).mul_(denominator > 1e-4))
        _blend_255(out, rgb, mask, top, bottom, mapped, source)
    return out


def compose_pct(rgb: np.ndarray, mask: np.ndarray, params: torch.Tensor, attention: Optional[torch.Tensor],
                normalization, bbox=None, clamp: bool = True, affine: bool = True) -> np.ndarray:
    """PCT-Net's own full-resolution path: its 256-px map of per-pixel colour transforms, upsampled
    bicubically (the reference's sampling) and applied strip by strip inside the mask's box, then
    blended into the input with the mask (background bit-exact). ``params``: 1 x 12 x h x w;
    ``attention``: 1 x 1 x h x w (the CNN model's blend) or None (the ViT blends with the mask)."""
    return _compose(rgb, mask, bbox, lambda rgb_box, mask_box, box: pct_box(
        rgb_box, mask_box, params, attention, normalization, box, mask.shape, clamp=clamp, affine=affine))


def pct_box(rgb: np.ndarray, mask: np.ndarray, params: torch.Tensor, attention: Optional[torch.Tensor],
            normalization, bbox, size, clamp: bool = True, affine: bool = True) -> np.ndarray:
    """:func:`compose_pct` of the box ``bbox`` only (see the strategies' note)."""
    from ..models.pct_transform import affine_color_transform, upsampled_strips

    mean = torch.tensor(normalization["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(normalization["std"], dtype=torch.float32).view(1, 3, 1, 1)
    channels = params.shape[1]
    y0, _, x0, _ = bbox
    strip_rows = max(1, PCT_STRIP_PIXELS // max(1, bbox[3] - bbox[2]))
    out = np.empty_like(rgb)
    for (top, bottom, _, _), maps in upsampled_strips(params.float(), tuple(size), bbox, attention, strip_rows):
        top, bottom = top - y0, bottom - y0
        source = strip_tensor(rgb[top:bottom]).float()  # h x w x 3, 0..255
        image = ((source.permute(2, 0, 1)[None] / 255.0) - mean) / std
        transformed = affine_color_transform(image, maps[:, :channels], normalization["mean"], normalization["std"],
                                             clamp=clamp, affine=affine)
        if attention is None:
            blend = strip_tensor(mask[top:bottom]).float()[None, None]
        else:
            blend = maps[:, channels:]
        result = (transformed * blend + image * (1 - blend)) * std + mean  # the reference's full-res output
        _blend_into(out, rgb, mask, top, bottom, result[0].permute(1, 2, 0).contiguous(), source)
    return out
