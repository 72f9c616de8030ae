"""Video metrics: per-clip MSE, fMSE and PSNR, and a temporal-consistency figure without optical flow.

The per-frame metrics are the image ones (:mod:`harmonize_cli.evaluation.metrics`), computed on
every frame. A clip's value is the mean over its frames; the overall value is the mean over
every frame of every clip (as CO2Net's evaluation averages over all test frames), not the
mean of the clip means.

**Foreground flicker** (``flicker``, 0..255 levels, lower is steadier): how much the colour
error of the foreground changes from one frame to the next. For frame ``t`` with prediction
``P``, real frame ``R`` and soft mask ``M``, the foreground-mean colour error is, per channel
``c``::

    e_t[c] = sum(M * (P[c] - R[c])) / sum(M)

and the flicker of a clip is the mean, over its pairs of consecutive frames, of the change
``mean_c |e_{t+1}[c] - e_t[c]|``. The overall figure is the mean over every pair of every
clip. A constant colour cast (the same error in every frame) has flicker 0; a correction that
jumps by ``d`` levels in every channel from frame to frame has flicker ``d``. Because ``e_t``
is a mean over the object, it does not depend on where the object is, so a moving object
needs no motion compensation (no optical-flow network); what it measures is the temporal
instability of the correction's colour and tone, which is how per-frame harmonization
flickers. It does not see texture flicker inside the object that averages out over the mask.
Pairs are consecutive *positions* in the clip (frame indices ``t`` and ``t + 1``): when a frame
is missing (a bad file left out by ``prepare``), the pair across the gap is not counted;
a frame with an empty mask has no ``e_t`` and its pairs are not counted either.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from .metrics import METRIC_NAMES, _as_batch

FLICKER = "flicker"


def foreground_mean_error(pred, target, mask) -> torch.Tensor:
    """Per frame and channel: the mask-weighted mean of ``pred - target`` (``N x 3``, float64).

    Inputs as for the image metrics (``N x 3 x H x W`` on the 0..255 scale, ``N x 1 x H x W``
    masks in [0, 1]). A frame whose mask is empty gets NaN.
    """
    pred = _as_batch(pred, 3)
    target = _as_batch(target, 3).to(pred.device)
    mask = _as_batch(mask, 1).to(pred.device)
    if pred.shape != target.shape or mask.shape[0] != pred.shape[0] or mask.shape[2:] != pred.shape[2:]:
        raise ValueError(f"shapes differ: prediction {tuple(pred.shape)}, target {tuple(target.shape)}, "
                         f"mask {tuple(mask.shape)}")
    weight = mask.sum(dim=(1, 2, 3))
    error = (mask * (pred - target)).sum(dim=(2, 3)) / weight[:, None]
    error[weight <= 0] = float("nan")
    return error


def _change(first: Sequence[float], second: Sequence[float]) -> float:
    return sum(abs(b - a) for a, b in zip(first, second)) / len(first)


def flicker_sum(frames: Iterable[Tuple[int, Optional[Sequence[float]]]]) -> Tuple[float, int]:
    """``(sum of changes, number of pairs)`` of one clip from ``(frame index, e_t or None)`` items.

    The items may come in any order: they are put in frame order first. Only frames ``t`` and
    ``t + 1`` that both have an error (a non-empty mask) make a pair.
    """
    ordered = sorted(frames, key=lambda item: item[0])
    total, pairs = 0.0, 0
    for (index, error), (next_index, next_error) in zip(ordered, ordered[1:]):
        if next_index != index + 1 or error is None or next_error is None:
            continue
        total += _change(error, next_error)
        pairs += 1
    return total, pairs


def foreground_flicker(pred, target, mask) -> Optional[float]:
    """The flicker of one clip given as tensors in frame order (``T x 3 x H x W``, ``T x 1 x H x W``).

    None when the clip has no pair of consecutive frames with a foreground.
    """
    errors = foreground_mean_error(pred, target, mask).tolist()
    items = [(t, None if any(v != v for v in e) else e) for t, e in enumerate(errors)]
    total, pairs = flicker_sum(items)
    return total / pairs if pairs else None


def error_or_none(values: Sequence[float]) -> Optional[List[float]]:
    """A frame's ``e_t`` as a list, or None for an empty mask (NaN)."""
    values = [float(v) for v in values]
    return None if any(v != v for v in values) else values


def clip_table(frames: Sequence[dict]) -> Dict[str, dict]:
    """Per-clip rows and an ``All`` row from per-frame records.

    Each record has ``clip``, ``frame``, ``MSE``, ``fMSE``, ``PSNR`` and ``fg_error`` (``e_t`` or
    None). Rows: ``N`` (frames), ``MSE``, ``fMSE``, ``PSNR`` (means over the frames),
    ``flicker`` (mean over the pairs; None without pairs) and ``pairs``; ``All`` adds
    ``clips``. Clips keep the order in which they first appear.
    """
    by_clip: Dict[str, List[dict]] = {}
    for record in frames:
        by_clip.setdefault(str(record["clip"]), []).append(record)
    table: Dict[str, dict] = {}
    total_sums = {name: 0.0 for name in METRIC_NAMES}
    total_frames, total_change, total_pairs = 0, 0.0, 0
    for clip, records in by_clip.items():
        sums = {name: sum(float(r[name]) for r in records) for name in METRIC_NAMES}
        change, pairs = flicker_sum((int(r["frame"]), r.get("fg_error")) for r in records)
        table[clip] = {"N": len(records), **{name: sums[name] / len(records) for name in METRIC_NAMES},
                       FLICKER: change / pairs if pairs else None, "pairs": pairs}
        for name in METRIC_NAMES:
            total_sums[name] += sums[name]
        total_frames += len(records)
        total_change += change
        total_pairs += pairs
    table["All"] = {"N": total_frames, **{name: (total_sums[name] / total_frames if total_frames else None)
                                          for name in METRIC_NAMES},
                    FLICKER: total_change / total_pairs if total_pairs else None, "pairs": total_pairs,
                    "clips": len(by_clip)}
    return table
