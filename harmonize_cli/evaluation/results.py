"""What an evaluation returns: :class:`EvalResult` (the paper's tables of one model), the sums
they are made from (:class:`ModelSums`), and the merge of ``eval --shard K/N`` results.

The engine (:mod:`harmonize_cli.evaluation.engine`) adds each image to a model's sums; the
merge sums the per-image records of every share again, in test-set order, the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..errors import UsageError
from .metrics import FG_RATIO_RANGES, METRIC_NAMES, MetricSums, fg_ratio_bins
from .video_metrics import clip_table

__all__ = ["EvalResult", "ModelSums", "merge_results", "psnr_peak_label", "result_from_records"]


@dataclass
class EvalResult:
    """The tables of one model: ``by_subset`` (every subset and "All") and ``by_fg_ratio``.

    Each row is ``{"N", "MSE", "fMSE", "PSNR"}`` (``by_subset`` rows add ``"ms_per_image"``);
    values are None where a row has no images. On a video dataset (HYouTube layout) ``by_clip``
    holds one row per clip and an ``All`` row, with the foreground ``flicker``
    (:mod:`harmonize_cli.evaluation.video_metrics`); it is empty for image datasets.
    """

    model: str
    weights: Optional[str]
    resize: Optional[str]
    psnr_peak: Optional[float]  # None: each target's own maximum (the reference's PSNR)
    flip_tta: bool
    by_subset: Dict[str, dict]
    by_fg_ratio: Dict[str, dict]
    per_image: List[dict] = field(default_factory=list, repr=False)
    skipped: List[dict] = field(default_factory=list)
    device: str = "cpu"
    seconds: float = 0.0
    label: str = ""
    by_clip: Dict[str, dict] = field(default_factory=dict)

    def summary(self) -> Dict[str, Optional[float]]:
        """``{"MSE", "fMSE", "PSNR"}`` over every image ("All")."""
        row = self.by_subset.get("All", {})
        return {name: row.get(name) for name in METRIC_NAMES}

    @property
    def n_images(self) -> int:
        return int(self.by_subset.get("All", {}).get("N", 0))

    @property
    def is_video(self) -> bool:
        return bool(self.by_clip)

    @property
    def images_per_second(self) -> Optional[float]:
        return self.n_images / self.seconds if self.seconds > 0 else None

    @property
    def psnr_peak_label(self) -> str:
        return psnr_peak_label(self.psnr_peak)

    def to_dict(self, per_image: bool = False) -> dict:
        """The JSON document of docs/evaluation.md."""
        data = {
            "model": self.model,
            "weights": self.weights,
            "resize": self.resize,
            "psnr_peak": "target_max" if self.psnr_peak is None else self.psnr_peak,
            "flip_tta": self.flip_tta,
            "by_subset": {name: dict(row) for name, row in self.by_subset.items()},
            "by_fg_ratio": {name: dict(row) for name, row in self.by_fg_ratio.items()},
            "n_images": self.n_images,
            "seconds": round(self.seconds, 3),
            "device": self.device,
        }
        if self.by_clip:
            data["by_clip"] = {name: dict(row) for name, row in self.by_clip.items()}
        if self.skipped:
            data["skipped"] = list(self.skipped)
        if per_image:
            data["per_image"] = list(self.per_image)
        return data


def psnr_peak_label(peak: Optional[float]) -> str:
    if peak is None:
        return "PSNR peak: each target's maximum (reference)"
    return f"PSNR peak: fixed {peak:g}"


def merge_results(parts, subset_order: Sequence[str] = ()) -> List[EvalResult]:
    """The results of the whole test set from those of its shares: ``parts`` holds one list of
    :class:`EvalResult` per share (the same models in the same order). The per-image records are
    put back in test-set order (their ``index``) and the tables summed again in that order, so
    they equal those of one process; ``seconds`` is the slowest share's."""
    parts = [list(part) for part in parts]
    if not parts:
        raise UsageError("no shard results to merge")
    merged = []
    for position, first in enumerate(parts[0]):
        shares = [part[position] for part in parts]
        for other in shares[1:]:
            if (other.model, other.weights, other.label, other.resize, other.psnr_peak, other.flip_tta) != (
                    first.model, first.weights, first.label, first.resize, first.psnr_peak, first.flip_tta):
                raise UsageError(f"the shards evaluated different models or settings ({first.label} / {other.label})",
                                 "merge the shards of one run")
        records = sorted((record for share in shares for record in share.per_image), key=lambda r: r["index"])
        skipped = sorted((entry for share in shares for entry in share.skipped), key=lambda r: r.get("index", 0))
        merged.append(result_from_records(first, records, skipped, subset_order,
                                          max(share.seconds for share in shares)))
    return merged


def result_from_records(like: EvalResult, records, skipped, subset_order, seconds) -> EvalResult:
    """An :class:`EvalResult` with ``like``'s model and settings, its tables summed from ``records``
    (per-image rows, in the order given) exactly as :func:`~harmonize_cli.evaluation.evaluate` sums them."""
    item = ModelSums(like.model, like.weights, like.label)
    for record in records:
        row = {name: record[name] for name in METRIC_NAMES}
        item.add(record["subset"], record["fg_ratio"], row, float(record.get("ms", 0.0)) / 1000.0)
    item.per_image = list(records)
    return item.result(subset_order, like.resize, like.psnr_peak, like.flip_tta, skipped, like.device, seconds)


class ModelSums:
    """The running sums and per-image records of one model, and the :class:`EvalResult` they make."""

    def __init__(self, arch=None, weights: Optional[str] = None, label=None):
        self.arch, self.weights, self.label = arch, weights, label
        self.sums: Dict[str, MetricSums] = {}
        self.fg_sums = {name: MetricSums() for name in FG_RATIO_RANGES}
        self.per_image: List[dict] = []

    def add(self, subset: str, ratio: float, row: dict, seconds: float) -> None:
        """One image's metrics ``row`` into its subset's sums and its foreground-ratio ranges'."""
        self.sums.setdefault(subset, MetricSums()).add(row, seconds)
        for bin_name in fg_ratio_bins(ratio):
            self.fg_sums[bin_name].add(row, seconds)

    def result(self, subset_order, resize, psnr_peak, flip_tta, skipped, device, seconds) -> EvalResult:
        order = [name for name in subset_order if name in self.sums] + [
            name for name in self.sums if name not in subset_order]
        by_subset = {name: self.sums[name].means() for name in order}
        total = MetricSums()
        for name in order:
            total.merge(self.sums[name])
        by_subset["All"] = total.means()
        by_fg_ratio = {name: self.fg_sums[name].means(with_time=False) for name in FG_RATIO_RANGES}
        frames = [record for record in self.per_image if "clip" in record]
        return EvalResult(model=str(self.arch), weights=self.weights, resize=resize, psnr_peak=psnr_peak,
                          flip_tta=flip_tta, by_subset=by_subset, by_fg_ratio=by_fg_ratio, per_image=self.per_image,
                          skipped=list(skipped), device=str(device), seconds=seconds, label=self.label,
                          by_clip=clip_table(frames) if frames else {})
