"""PCT-Net's pixel-wise colour transform and its memory-bounded full-resolution application.

PCT-Net (Guerreiro, Nakazawa, Stenger, CVPR 2023) predicts, at 256 x 256, a map of 12 parameters per
pixel: an affine RGB transform ``y = M x + b`` with ``M`` (3 x 3, row-major in channels 0-8) and
``b`` (channels 9-11). As in the authors' code the transform is applied to the image *in the
network's normalised space*, the result is clamped to [0, 1] and normalised again with the model's
mean/std. At full resolution the map is upsampled with PyTorch's bicubic kernel
(``align_corners=False``) to the photo's size.

:func:`apply_full_resolution` does the full-resolution step in horizontal strips inside a bounding
box, so a 24-MP photo never needs its 12-channel parameter map at once: bicubic upsampling is
separable, so the upsampled map restricted to rows ``r0:r1`` and columns ``c0:c1`` is
``Wy[r0:r1] @ P @ Wx[c0:c1].T`` with the interpolation matrices of :func:`bicubic_matrix`, which use
the same source positions and weights as ``F.interpolate(mode="bicubic")`` on the whole map.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

PARAMS_PER_PIXEL = 12  # 3 x 3 matrix + 3 offsets (the released "linear", affine configurations)
_CUBIC_A = -0.75  # PyTorch's bicubic kernel constant


def _normalisation(mean, std, like: torch.Tensor):
    mean_t = torch.as_tensor(mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
    return mean_t, std_t


def affine_color_transform(image: torch.Tensor, params: torch.Tensor, mean, std,
                           clamp: bool = True, affine: bool = True) -> torch.Tensor:
    """Applies the per-pixel ``y = M x (+ b)`` of ``params`` (N x 9|12 x H x W) to ``image``
    (N x 3 x H x W, normalised), clamps to [0, 1] (``clamp``) and normalises with ``mean``/``std``."""
    if params.shape[1] < 9 + (3 if affine else 0):
        raise ValueError(f"expected at least {9 + 3 * affine} parameter channels, got {params.shape[1]}")
    matrix = params[:, :9].unflatten(1, (3, 3))  # N x 3 (out) x 3 (in) x H x W
    output = (matrix[:, :, 0] * image[:, 0:1] + matrix[:, :, 1] * image[:, 1:2]
              + matrix[:, :, 2] * image[:, 2:3])
    if affine:
        output = output + params[:, 9:12]
    if clamp:
        output = output.clamp(0.0, 1.0)
    mean_t, std_t = _normalisation(mean, std, output)
    return (output - mean_t) / std_t


def bicubic_matrix(in_size: int, out_size: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The out_size x in_size matrix of ``F.interpolate(mode="bicubic", align_corners=False)`` along
    one axis: source index ``(i + 0.5) * in / out - 0.5``, kernel a = -0.75, border taps clamped.

    Positions and weights are rounded to float32 as PyTorch's float32 kernel rounds them, so the
    sampling matches it to rounding (exact float64 positions differ from it by up to ~1e-5 pixel
    on large maps, which moves the weights by ~2e-5).
    """
    f32 = torch.float32
    scale = (torch.tensor(in_size, dtype=f32) / out_size).double()
    # PyTorch evaluates scale * (i + 0.5) - 0.5 as one fused multiply-add in float32: exact in
    # float64 (a float32 scale times a short i + 0.5), then a single rounding to float32.
    source = (scale * (torch.arange(out_size, dtype=torch.float64) + 0.5) - 0.5).to(f32)
    base = torch.floor(source)
    t = source - base
    a = torch.tensor(_CUBIC_A, dtype=f32)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = torch.stack((far(t + 1), near(t), near(1 - t), far(2 - t)), dim=1)
    taps = base.long()[:, None] + torch.arange(-1, 3)[None, :]
    taps = taps.clamp_(0, in_size - 1)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    matrix.scatter_add_(1, taps, weights.double())
    return matrix.to(dtype=dtype, device=device)


def _band(rows: torch.Tensor) -> Tuple[int, int]:
    """(first, last + 1) of the columns of ``rows`` that hold a nonzero weight."""
    nonzero = torch.nonzero(rows.abs().sum(dim=0)).flatten()
    if nonzero.numel() == 0:
        return 0, 1
    return int(nonzero[0]), int(nonzero[-1]) + 1


def upsample_bicubic_region(lowres: torch.Tensor, size: Tuple[int, int], rows: Tuple[int, int],
                            cols: Tuple[int, int]) -> torch.Tensor:
    """Rows ``rows`` and columns ``cols`` (half-open) of ``F.interpolate(lowres, size, "bicubic")``,
    computed without the rest of the upsampled map."""
    height, width = size
    wy = bicubic_matrix(lowres.shape[-2], height, lowres.dtype, lowres.device)[rows[0]:rows[1]]
    wx = bicubic_matrix(lowres.shape[-1], width, lowres.dtype, lowres.device)[cols[0]:cols[1]]
    lo, hi = _band(wy)
    columns_done = torch.matmul(lowres[..., lo:hi, :], wx.t())
    return torch.matmul(wy[:, lo:hi], columns_done)


def _check_bbox(bbox, height, width) -> Tuple[int, int, int, int]:
    if bbox is None:
        return 0, height, 0, width
    y0, y1, x0, x1 = (int(v) for v in bbox)
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise ValueError(f"bounding box {bbox} (y0, y1, x0, x1) does not fit a {height} x {width} image")
    return y0, y1, x0, x1


@torch.no_grad()
def apply_full_resolution(params_lowres: torch.Tensor, image_fullres: torch.Tensor,
                          mask_fullres: Optional[torch.Tensor] = None,
                          bbox: Optional[Sequence[int]] = None, *,
                          mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), clamp: bool = True,
                          affine: bool = True, attention_lowres: Optional[torch.Tensor] = None,
                          strip_rows: int = 256, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """PCT-Net's full-resolution output, computed strip by strip inside ``bbox``.

    ``params_lowres``: 1 x 12 x h x w (the model's ``"params"``); ``image_fullres``: 1 x 3 x H x W in
    the model's normalised space; ``mask_fullres``: 1 x 1 x H x W, used for the blend unless
    ``attention_lowres`` (1 x 1 x h x w, the CNN model's ``"attention"``) is given, which is then
    upsampled like the parameters and used instead. ``bbox`` = (y0, y1, x0, x1) half-open, as
    :func:`harmonize_cli.resolution.mask_bbox` returns (None: the whole image).

    Inside the box the result equals the one-shot reference computation (upsample everything,
    transform, blend); outside it the input is returned unchanged (callers composite with the mask).
    The result is written into ``out`` (default: a copy of ``image_fullres``; passing
    ``out=image_fullres`` works in place). Peak extra memory is about
    ``12 * strip_rows * box_width`` floats plus a ``12 * h * box_width`` intermediate.
    """
    if image_fullres.dim() != 4 or image_fullres.shape[0] != 1 or params_lowres.shape[0] != 1:
        raise ValueError("apply_full_resolution takes one image at a time (batch size 1)")
    if attention_lowres is None and mask_fullres is None:
        raise ValueError("pass mask_fullres (mask blend) or attention_lowres (attention blend)")
    if strip_rows < 1:
        raise ValueError(f"strip_rows must be positive, got {strip_rows}")
    if out is None:
        out = image_fullres.clone()
    channels = params_lowres.shape[1]
    for (top, bottom, x0, x1), strip_maps in upsampled_strips(
            params_lowres, image_fullres.shape[-2:], bbox, attention_lowres, strip_rows, image_fullres.dtype):
        image = image_fullres[..., top:bottom, x0:x1]
        transformed = affine_color_transform(image, strip_maps, mean, std, clamp=clamp, affine=affine)
        if attention_lowres is None:
            blend = mask_fullres[..., top:bottom, x0:x1].to(image.dtype)
        else:
            blend = strip_maps[:, channels:]
        out[..., top:bottom, x0:x1] = transformed * blend + image * (1 - blend)
    return out


def upsampled_strips(params_lowres: torch.Tensor, size: Tuple[int, int], bbox=None,
                     attention_lowres: Optional[torch.Tensor] = None, strip_rows: int = 256, dtype=None):
    """Yield ``((top, bottom, x0, x1), maps)`` for horizontal strips of ``bbox``: the bicubic
    upsampling of ``params_lowres`` (and ``attention_lowres``, appended as the last channel) to
    ``size``, restricted to the strip, with exactly the sampling of the one-shot upsample."""
    height, width = size
    y0, y1, x0, x1 = _check_bbox(bbox, height, width)
    maps = params_lowres if attention_lowres is None else torch.cat((params_lowres, attention_lowres), dim=1)
    maps = maps.to(dtype or maps.dtype)
    wy = bicubic_matrix(maps.shape[-2], height, maps.dtype, maps.device)
    wx = bicubic_matrix(maps.shape[-1], width, maps.dtype, maps.device)[x0:x1]
    columns_done = torch.matmul(maps, wx.t())  # 1 x C x h x box_width
    for top in range(y0, y1, strip_rows):
        bottom = min(top + strip_rows, y1)
        rows = wy[top:bottom]
        lo, hi = _band(rows)
        yield (top, bottom, x0, x1), torch.matmul(rows[:, lo:hi], columns_done[..., lo:hi, :])


def upsample_params(params: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """The reference's one-shot upsampling of a low-resolution map (bicubic, align_corners=False)."""
    return F.interpolate(params, size=tuple(size), mode="bicubic")

