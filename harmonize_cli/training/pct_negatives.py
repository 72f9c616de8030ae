"""Negative samples for PCT-Net's contrastive regularisation, as the authors build them.

For each composite in a batch, ``k - 1`` negatives re-colour its *real* image's foreground with the
colour statistics of other images of the batch (Lab space: a linear Monge-Kantorovich transfer of
the chrominance, and a fitted arctan tone curve for the luminance); the composite itself is the
first negative. Everything follows the authors' ``SCS_CR_loss.create_negative_samples`` and
``color_transfer.py``, including their conventions:

* the real image is de-normalised with the ImageNet mean/std whatever the model's normalisation,
  raised to the power 2.2, converted to Lab (sRGB, D65, as kornia does), and its L channel is
  stretched from its 5th/95th percentile to [0, 100];
* covariances are floored element-wise at ``7.5 * I`` before the transfer;
* the tone curve is fitted on 32 histogram quantiles; the authors use SciPy's Nelder-Mead from a
  random start, we use our own bounded Nelder-Mead (same coefficients and tolerances), so the fitted
  curve is the same minimum up to the optimiser's tolerance;
* negatives go back through Lab -> RGB (clipped), the power 1 / 2.2, and are normalised with mean
  0.5 / std 0.5 before their foreground is pasted on the real image's background.

Deviation: de-normalised values are clamped at 0 before the power 2.2 (a rounding error below 0
would otherwise give NaN).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from ..choices import IMAGENET_MEAN, IMAGENET_STD
GAMMA = 2.2
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423),
               (0.212671, 0.715160, 0.072169),
               (0.019334, 0.119193, 0.950227))
_XYZ_TO_RGB = ((3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
               (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
               (0.0556466391351772, -0.2040413383665112, 1.0573110696453443))


def _mix(matrix, image):
    """3 x 3 colour matrix applied to the channel dimension (-3) of ``image``."""
    c0, c1, c2 = image[..., 0, :, :], image[..., 1, :, :], image[..., 2, :, :]
    return torch.stack([row[0] * c0 + row[1] * c1 + row[2] * c2 for row in matrix], dim=-3)


def rgb_to_lab(image: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] (..., 3, H, W) -> CIE Lab (D65), the formulas of kornia's ``rgb_to_lab``."""
    linear = torch.where(image > 0.04045, torch.pow((image + 0.055) / 1.055, 2.4), image / 12.92)
    xyz = _mix(_RGB_TO_XYZ, linear)
    xyz = xyz / torch.tensor(_WHITE_D65, dtype=xyz.dtype, device=xyz.device).view(3, 1, 1)
    threshold = 0.008856
    f = torch.where(xyz > threshold, torch.pow(xyz.clamp(min=threshold), 1 / 3.0), 7.787 * xyz + 4.0 / 29.0)
    fx, fy, fz = f[..., 0, :, :], f[..., 1, :, :], f[..., 2, :, :]
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-3)


def lab_to_rgb(image: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """CIE Lab (D65) -> sRGB, clipped to [0, 1] (kornia's ``lab_to_rgb``)."""
    lightness, a, b = image[..., 0, :, :], image[..., 1, :, :], image[..., 2, :, :]
    fy = (lightness + 16.0) / 116.0
    f = torch.stack((a / 500.0 + fy, fy, (fy - b / 200.0).clamp(min=0.0)), dim=-3)
    xyz = torch.where(f > 0.2068966, torch.pow(f, 3.0), (f - 4.0 / 29.0) / 7.787)
    xyz = xyz * torch.tensor(_WHITE_D65, dtype=xyz.dtype, device=xyz.device).view(3, 1, 1)
    linear = _mix(_XYZ_TO_RGB, xyz)
    threshold = 0.0031308
    rgb = torch.where(linear > threshold, 1.055 * torch.pow(linear.clamp(min=threshold), 1 / 2.4) - 0.055,
                      12.92 * linear)
    return rgb.clamp(0.0, 1.0) if clip else rgb


def stretch_luminance(lightness: torch.Tensor, cut: float = 0.05) -> torch.Tensor:
    """Clips L to the values at the ``cut`` and ``1 - cut`` ranks and rescales that range to [0, 100]."""
    flat = lightness.flatten()
    ordered = torch.sort(flat).values
    position = int(flat.numel() * cut)
    low, high = ordered[position], ordered[min(flat.numel() - position, flat.numel() - 1)]
    return (lightness.clamp(low, high) - low) / (high - low) * 100


def transfer_chrominance(image: torch.Tensor, source: torch.Tensor, floor: float = 7.5) -> torch.Tensor:
    """Linear Monge-Kantorovich colour transfer of 3 x H x W ``image`` to ``source``'s mean and
    covariance (covariances first floored element-wise at ``floor * I``)."""
    pixels, reference = image.reshape(3, -1), source.reshape(3, -1)
    mean_i, mean_s = pixels.mean(dim=1), reference.mean(dim=1)
    eye = floor * torch.eye(3, dtype=image.dtype, device=image.device)
    cov_i = torch.maximum(torch.cov(pixels), eye)
    cov_s = torch.maximum(torch.cov(reference), eye)
    values_i, vectors_i = torch.linalg.eigh(cov_i)
    root_i = torch.diag(torch.sqrt(values_i.clamp(min=0) + 1e-10))
    inner = root_i @ vectors_i.T @ cov_s @ vectors_i @ root_i
    values_c, vectors_c = torch.linalg.eigh(inner)
    root_c = torch.diag(torch.sqrt(values_c.clamp(min=0) + 1e-10))
    root_i_inv = torch.diag(1 / torch.diag(root_i))
    transfer = vectors_i @ root_i_inv @ vectors_c @ root_c @ vectors_c.T @ root_i_inv @ vectors_i.T
    return (transfer @ (pixels - mean_i[:, None]) + mean_s[:, None]).reshape(image.shape)


def histogram_quantiles(values: torch.Tensor, count: int, bins: int = 256) -> torch.Tensor:
    """The left bin edges (of a ``bins``-bin histogram) where the cumulative share first reaches
    1/count, 2/count, ..., 1."""
    low, high = values.min(), values.max()
    edges = torch.linspace(float(low), float(high), bins + 1, dtype=values.dtype, device=values.device)
    histogram = torch.histc(values, bins=bins, min=float(low), max=float(high))
    cumulative = torch.cumsum(histogram / histogram.sum(), 0)
    targets = torch.arange(1, count + 1, device=values.device) / count
    return edges[torch.searchsorted(cumulative, targets.to(cumulative.dtype))]


def tone_curve(params, lightness):
    """The authors' arctan tone curve: maps 0 -> 0 and 1 -> 1; ``params`` = (centre, width)."""
    centre, width = params[0], params[1]
    atan = torch.atan if torch.is_tensor(lightness) else np.arctan
    offset = atan(centre / width)
    return (offset + atan((lightness - centre) / width)) / (offset + atan((1 - centre) / width))


def nelder_mead(function: Callable[[np.ndarray], float], start: Sequence[float],
                bounds: Sequence[Tuple[float, float]], xatol: float = 1e-4, fatol: float = 1e-4,
                max_iterations: Optional[int] = None) -> np.ndarray:
    """Bounded Nelder-Mead (reflection 1, expansion 2, contraction 0.5, shrink 0.5; points clipped
    into ``bounds``; 5 % initial steps), stopping when the simplex spans less than ``xatol`` in x
    and ``fatol`` in f. Returns the best point."""
    lower, upper = np.array(bounds, dtype=float).T
    start = np.clip(np.asarray(start, dtype=float), lower, upper)
    dims = start.size
    max_iterations = max_iterations or 200 * dims
    simplex = [start]
    for axis in range(dims):
        point = start.copy()
        point[axis] = point[axis] * 1.05 if point[axis] != 0 else 0.00025
        point = np.where(point > upper, 2 * upper - point, point)  # step back inside
        simplex.append(np.clip(point, lower, upper))
    simplex = np.array(simplex)
    values = np.array([function(p) for p in simplex])
    for _ in range(max_iterations):
        order = np.argsort(values)
        simplex, values = simplex[order], values[order]
        if (np.max(np.abs(simplex[1:] - simplex[0])) <= xatol
                and np.max(np.abs(values[1:] - values[0])) <= fatol):
            break
        centroid, worst = simplex[:-1].mean(axis=0), simplex[-1].copy()

        def at(coefficient, centroid=centroid, worst=worst):
            point = np.clip(centroid + coefficient * (worst - centroid), lower, upper)
            return point, function(point)

        reflected, f_reflected = at(-1.0)
        if f_reflected < values[0]:
            expanded, f_expanded = at(-2.0)
            simplex[-1], values[-1] = (expanded, f_expanded) if f_expanded < f_reflected else (reflected, f_reflected)
        elif f_reflected < values[-2]:
            simplex[-1], values[-1] = reflected, f_reflected
        else:
            outside = f_reflected < values[-1]
            contracted, f_contracted = at(-0.5 if outside else 0.5)
            if (f_contracted <= f_reflected) if outside else (f_contracted < values[-1]):
                simplex[-1], values[-1] = contracted, f_contracted
            else:  # shrink towards the best point
                simplex[1:] = np.clip(simplex[0] + 0.5 * (simplex[1:] - simplex[0]), lower, upper)
                values[1:] = [function(p) for p in simplex[1:]]
    return simplex[int(np.argmin(values))]


def transfer_luminance(lightness: torch.Tensor, source: torch.Tensor, generator: np.random.Generator,
                       samples: int = 32, tau: float = 0.4) -> torch.Tensor:
    """Fits the tone curve that moves ``lightness``'s quantiles towards ``source``'s (by at least
    ``tau`` in the largest quantile) and applies it (H x W in, H x W out)."""
    scale = lightness.max()
    quantiles_i = histogram_quantiles(lightness / (scale + 1e-10), samples)
    quantiles_s = histogram_quantiles(source / (source.max() + 1e-10), samples)
    gap = torch.linalg.vector_norm(quantiles_s - quantiles_i, ord=math.inf)
    factor = tau / min(tau, float(gap)) if float(gap) > 0 else 1.0
    goal = (quantiles_i + (quantiles_s - quantiles_i) * factor).double().cpu().numpy()
    x = quantiles_i.double().cpu().numpy()
    best = nelder_mead(lambda p: float(np.sum((tone_curve(p, x) - goal) ** 2)),
                       generator.random(2), bounds=((0.0, 1.0), (1e-10, 1.0)))
    params = torch.tensor(best, dtype=lightness.dtype, device=lightness.device)
    return tone_curve(params, lightness / scale).clamp(min=0) * scale


@torch.no_grad()
def create_negative_samples(targets: torch.Tensor, composites: torch.Tensor, masks: torch.Tensor,
                            k: int, generator: Optional[np.random.Generator] = None,
                            mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """N x k x 3 x H x W negatives: the composite, then ``k - 1`` re-coloured real images (needs
    ``k - 1 <= N - 1``). ``targets``/``composites`` are in the model's normalised space."""
    count, channels, height, width = targets.shape
    if k < 1 or k - 1 > count - 1:
        raise ValueError(f"k={k} negatives need a batch of at least {k} images (got {count})")
    generator = generator if generator is not None else np.random.default_rng()
    mean_t = torch.tensor(mean, dtype=targets.dtype, device=targets.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=targets.dtype, device=targets.device).view(1, 3, 1, 1)
    lab = rgb_to_lab(torch.pow((targets * std_t + mean_t).clamp(min=0), GAMMA))
    for index in range(count):
        lab[index, 0] = stretch_luminance(lab[index, 0].clone())
    recoloured = torch.ones(count, k - 1, channels, height, width, dtype=targets.dtype, device=targets.device)
    for index in range(count):
        others = [i for i in range(count) if i != index]
        for slot, other in enumerate(generator.choice(others, k - 1, replace=False)):
            chroma = transfer_chrominance(lab[index], lab[other])
            lightness = transfer_luminance(lab[index, 0], lab[other, 0], generator)
            recoloured[index, slot] = torch.stack((lightness, chroma[1], chroma[2]))
    recoloured = (torch.pow(lab_to_rgb(recoloured), 1 / GAMMA) - 0.5) / 0.5
    pasted = (1 - masks[:, None]) * targets[:, None] + masks[:, None] * recoloured
    return torch.cat((composites[:, None], pasted), dim=1)
