"""Temporal smoothing of the per-frame correction, reset at scene cuts.

A per-frame image model jumps a little from frame to frame; on video that reads as flicker. What
is smoothed here is the *correction*, never the pixels:

- ``--resolution auto`` (every model but PCT-Net): the colour mapping fitted inside the mask
  (:class:`~harmonize_cli.apply.resolution.ColourMap`). Each frame's mapping is fitted to an
  exponential moving average (EMA) of the target: the network's prediction, mixed with what the
  previous smoothed mapping makes of this frame's own colours. Averaging the polynomials'
  coefficients instead measured worse: a mapping fitted on last second's colours extrapolates
  badly to colours that have come into view since (6 levels off on an exact oracle, against
  0.2 this way; docs/video.md).
- PCT-Net: its per-pixel parameter maps. Their mask-weighted mean (12 numbers, the global part of
  the transform) is smoothed; each pixel keeps its deviation from the mean of its own frame.

Neither is tied to a position in the frame, so the smoothing follows the object when it moves.
The EMA is causal (no frame is held back: streaming, bounded memory) with the current frame's
weight ``weight`` (docs/video.md measures the choice). It restarts at a scene cut
(:class:`SceneCuts`), after a frame without foreground and when the first frame is seen.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..apply.resolution import Correction, fit_correction

TEMPORAL_MODES = ("ema", "none")
DEFAULT_WEIGHT = 0.3  # of the current frame in the moving average
DEFAULT_CUT_THRESHOLD = 0.3  # histogram distance (0..1) between consecutive frames that starts a new shot
THUMBNAIL = 64  # pixels on the long side of the frames compared for cuts


def thumbnail(rgb: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """A small view of the frame by striding (no filtering: only its colour histogram is used)."""
    step = max(1, max(rgb.shape[:2]) // size)
    return np.ascontiguousarray(rgb[::step, ::step])


def colour_histogram(small: np.ndarray, bins: int = 4) -> np.ndarray:
    """Joint RGB histogram with ``bins`` levels per channel, normalised to sum 1."""
    levels = (small.reshape(-1, 3).astype(np.int32) * bins) >> 8
    codes = (levels[:, 0] * bins + levels[:, 1]) * bins + levels[:, 2]
    counts = np.bincount(codes, minlength=bins ** 3).astype(np.float64)
    return counts / max(1.0, counts.sum())


class SceneCuts:
    """Scene cut detection from consecutive frames: the total-variation distance between their
    joint colour histograms (0: same colours, 1: none in common) above ``threshold``. A pan, a
    moving object or a lighting change moves a few tenths of the mass at most between two frames;
    a cut to another shot moves most of it (docs/video.md, "Scene cuts")."""

    def __init__(self, threshold: float = DEFAULT_CUT_THRESHOLD):
        self.threshold = float(threshold)
        self.previous: Optional[np.ndarray] = None

    def distance(self, histogram: np.ndarray) -> float:
        return 1.0 if self.previous is None else 0.5 * float(np.abs(histogram - self.previous).sum())

    def is_cut(self, histogram: np.ndarray) -> bool:
        """True when the frame with this histogram starts a new shot (not for the first frame)."""
        first = self.previous is None
        distance = self.distance(histogram)
        self.previous = histogram
        return not first and distance > self.threshold


class Smoother:
    """The EMA of a frame's correction (``mode`` "none": the frame's own, unchanged)."""

    def __init__(self, mode: str = "ema", weight: float = DEFAULT_WEIGHT):
        if mode not in TEMPORAL_MODES:
            raise ValueError(f"temporal mode {mode!r}: expected one of {', '.join(TEMPORAL_MODES)}")
        if not 0.0 < float(weight) <= 1.0:
            raise ValueError(f"the EMA weight must be in (0, 1], got {weight}")
        self.mode, self.weight = mode, float(weight)
        self.colour_map = None  # auto: the last smoothed mapping
        self.pct_mean: Optional[torch.Tensor] = None  # PCT-Net: the smoothed mean parameters

    def reset(self) -> None:
        self.colour_map = self.pct_mean = None

    def correction(self, low_input: np.ndarray, prediction: np.ndarray, low_mask: np.ndarray) -> Correction:
        """``auto``: the frame's correction fitted to the moving average of its target (network's
        view: ``low_input`` and ``prediction`` 3 x h x w in [0, 1], ``low_mask`` h x w).

        The target of a foreground pixel is ``weight`` x the prediction + (1 - weight) x what the
        previous smoothed mapping makes of the pixel's colour, where the previous frame's
        foreground had that colour (within one cell of a 16-level RGB grid); a colour new to the
        foreground takes the prediction alone, since a mapping fitted on other colours only
        extrapolates there."""
        if self.mode != "none" and self.colour_map is not None:
            source = torch.from_numpy(np.ascontiguousarray(low_input, dtype=np.float32))
            pixels = source.reshape(3, -1).T
            previous = self.colour_map.apply(pixels).T.reshape(source.shape)
            known = torch.from_numpy(self.known[_colour_cells(low_input).reshape(-1)]).reshape(1, *source.shape[1:])
            target = torch.nan_to_num(torch.from_numpy(np.array(prediction, dtype=np.float32)), nan=0.0)
            prediction = target.lerp_(previous, known * (1.0 - self.weight)).numpy()
        correction = fit_correction(low_input, prediction, low_mask)
        if self.mode != "none":
            self.colour_map = correction.colour_map
            self.known = _known_colours(low_input, low_mask)
        return correction

    def pct_maps(self, params: torch.Tensor, low_mask: np.ndarray) -> torch.Tensor:
        """PCT-Net: ``params`` (1 x C x h x w) with their mask-weighted mean averaged over time
        (``low_mask``: h x w, the mask at the maps' size)."""
        weight = torch.from_numpy(np.ascontiguousarray(low_mask, dtype=np.float32))
        if weight.shape != params.shape[2:]:
            weight = torch.nn.functional.interpolate(weight[None, None], size=params.shape[2:], mode="bilinear",
                                                     align_corners=False)[0, 0]
        total = weight.sum().clamp_min(1e-6)
        mean = (params[0] * weight).sum(dim=(1, 2)) / total  # C
        if self.mode == "none":
            return params
        if self.pct_mean is None or self.pct_mean.shape != mean.shape:
            self.pct_mean = mean
        else:
            self.pct_mean = self.pct_mean.lerp(mean, self.weight)
        return params + (self.pct_mean - mean).view(1, -1, 1, 1)


CELLS = 16  # levels per channel of the grid that records which colours a foreground had


def _colour_cells(planar: np.ndarray) -> np.ndarray:
    """The grid cell of every pixel of a 3 x h x w image in [0, 1] (h x w int)."""
    levels = np.clip((planar * CELLS).astype(np.int32), 0, CELLS - 1)
    return (levels[0] * CELLS + levels[1]) * CELLS + levels[2]


def _known_colours(planar: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A float32 flag per grid cell: 1 where the foreground (mask > 0.5) has a colour within one
    cell of it."""
    seen = np.zeros((CELLS,) * 3, dtype=bool)
    cells = np.unique(_colour_cells(planar)[mask > 0.5])
    seen.reshape(-1)[cells] = True
    for axis in range(3):  # dilate by one cell along each axis: a 3 x 3 x 3 neighbourhood in all
        seen = _dilate(seen, axis)
    return seen.reshape(-1).astype(np.float32)


def _dilate(grid: np.ndarray, axis: int) -> np.ndarray:
    out = grid.copy()
    moved = np.moveaxis(out, axis, 0)
    source = np.moveaxis(grid, axis, 0)
    moved[1:] |= source[:-1]
    moved[:-1] |= source[1:]
    return out
