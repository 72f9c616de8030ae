"""The evaluation engine: the reference protocol, batched and overlapped with data decoding.

>>> from harmonize_cli import zoo
>>> from harmonize_cli.data import HarmonizationDataset, eval_transform
>>> from harmonize_cli.evaluation import evaluate
>>> model = zoo.create_model("idih", weights="idih256.pth")
>>> dataset = HarmonizationDataset("iharmony4.h5", split="test", transform=eval_transform("fixed256"),
...                                keep_raw=True)
>>> result = evaluate(model, dataset, batch_size=32)
>>> result.summary()                      # {"MSE": .., "fMSE": .., "PSNR": ..} over All
>>> result.by_subset["HCOCO"]["PSNR"], result.by_fg_ratio["0-5%"]["fMSE"]

Protocol (the reference evaluation's, see docs/evaluation.md): the network sees the normalised
composite and the soft mask; its output is de-normalised to 0..255 and clamped (not rounded);
MSE, fMSE and PSNR are computed per image against the real image on the 0..255 scale and
averaged over images; "All" is the mean over every test image; foreground-ratio ranges include
both ends.

Speed: a DataLoader decodes samples in worker processes while the model runs. Samples of equal
size (every sample at ``fixed256``) are stacked into one forward pass of up to ``batch_size``
images; at native sizes (``limit1024``, ``none``) images of different sizes go one by one, each
zero-padded (in pixel space, centred) to the model's size divisor and cropped back afterwards.
Horizontal-flip TTA runs the flipped copies in the same pass and averages the two predictions
before de-normalisation and clamping, as the reference does.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from .. import console
from ..data.transforms import denormalize
from ..errors import HarmonizeError, UsageError
from ..inference import normalization_of, pad_divisor, predict
from ..inference_opt import optimize_for_inference
from .metrics import (
    FG_RATIO_RANGES,
    METRIC_NAMES,
    MetricSums,
    check_psnr_peak,
    fg_ratio,
    fg_ratio_bins,
    image_metrics,
)
from .testset import dataset_resize, open_test_set
from .video_metrics import clip_table, error_or_none, foreground_mean_error

PIXELS_PER_IMAGE_AT_256 = 256 * 256


# ----------------------------------------------------------------------------------------- result
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


# --------------------------------------------------------------------------------------- helpers
def _model_device(model) -> Optional[torch.device]:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


class _SafeDataset(torch.utils.data.Dataset):
    """Wraps a dataset so that one unreadable sample is reported instead of ending the run; every
    sample carries its ``index`` in the whole test set (``indices``: this process's share of it)."""

    def __init__(self, dataset, indices: Optional[Sequence[int]] = None):
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, position):
        index = self.indices[position]
        try:
            sample = self.dataset[index]
        except Exception as exc:  # reported per image; the run goes on
            record = _record_of(self.dataset, index)
            return {"error": f"{type(exc).__name__}: {exc}", "index": index, **record}
        return {**sample, "index": index} if isinstance(sample, dict) else sample


def _record_of(dataset, index) -> dict:
    records = getattr(dataset, "records", None)
    try:
        subset, name = records[index]
        return {"subset": subset, "name": name}
    except Exception:
        return {"subset": "?", "name": str(index)}


def _collate(samples):
    return samples


def default_batch_size(device) -> int:
    """Images per forward pass: 16 on accelerators; 1 on the CPU, where batching 256-px images
    measured slower (benchmarks/eval_throughput.py, docs/benchmarks.md)."""
    return 1 if device.type == "cpu" else 16


def _default_workers(n_samples: int, batch_size: int, device) -> int:
    if n_samples <= batch_size:
        return 0
    cores = os.cpu_count() or 1
    if device.type == "cpu":  # decoding workers compete with the forward pass for the same cores
        return min(4, cores // 4)
    return max(0, min(4, cores - 1))


class _Prepared:
    """A model moved to the evaluation device in eval mode; ``restore()`` undoes both."""

    def __init__(self, entry: "_Entry", device):
        model = entry.network
        self.model = model
        self.label = entry.label
        self.arch = entry.arch
        self.weights = entry.weights
        self.normalization = entry.normalization
        self.low_size = entry.low_size
        self.modes = [(module, module.training) for module in model.modules()]
        self.original_device = _model_device(model)
        self.moved = self.original_device is not None and self.original_device != device
        if self.moved:
            model.to(device)
        model.eval()
        self.divisor = pad_divisor(model)
        # what the forward passes run: the same function, faster (batch norms folded; on the CPU a
        # vectorised ELU and channels-last weights); the caller's model is not changed
        self.runner = optimize_for_inference(model, device)
        self.sums: Dict[str, MetricSums] = {}
        self.fg_sums = {name: MetricSums() for name in FG_RATIO_RANGES}
        self.per_image: List[dict] = []
        self.seconds = 0.0

    def restore(self):
        for module, mode in self.modes:
            module.training = mode
        if self.moved:
            self.model.to(self.original_device)


# ------------------------------------------------------------------------------------ the engine
@dataclass
class _Entry:
    label: str
    network: object
    arch: str
    weights: Optional[str]
    normalization: dict
    low_size: Optional[int] = None  # full-resolution networks (PCT-Net): the size of their low-res view


def _entries(models_or_model, labels, weights):
    """(single, [_Entry]) from a model, a list of models or a {label: model} dict."""
    import torch.nn as nn

    from ..zoo import ResolvedModel

    single = isinstance(models_or_model, (nn.Module, ResolvedModel))
    if single:
        items = [(labels[0] if labels else None, models_or_model)]
    elif isinstance(models_or_model, dict):
        items = list(models_or_model.items())
    else:
        models = list(models_or_model)
        items = list(zip(list(labels) if labels else [None] * len(models), models))
    if not items:
        raise UsageError("no model to evaluate", "pass --model NAME or --weights FILE")
    given = list(weights) if weights else [None] * len(items)
    entries = []
    for position, ((label, model), weight) in enumerate(zip(items, given)):
        if isinstance(model, ResolvedModel):
            entries.append(_Entry(label or model.label, model.network, model.name,
                                  weight if weight is not None else model.source, dict(model.normalization),
                                  model.input_size if model.spec.full_resolution else None))
        else:
            name = label or ("model" if single else f"model{position + 1}")
            entries.append(_Entry(name, model, name, weight, dict(normalization_of(model))))
    return single, entries


def evaluate(models_or_model, dataset, *, batch_size: Optional[int] = None, device=None, flip_tta: bool = False,
             psnr_peak: Optional[float] = None, workers: Optional[int] = None, save_predictions=None,
             progress: bool = True, resize: Optional[str] = None, subsets: Optional[Sequence[str]] = None,
             labels: Optional[Sequence[str]] = None, weights: Optional[Sequence[Optional[str]]] = None,
             shard=None):
    """Evaluate one model (returns an :class:`EvalResult`) or several (a list, one pass over the data).

    ``models_or_model``: a :class:`~harmonize_cli.zoo.ResolvedModel` (what ``zoo.resolve`` returns)
    or an ``nn.Module`` (``forward(image, mask)`` on its normalised input), a list of them, or a
    dict ``{label: model}``.
    ``dataset``: a ``HarmonizationDataset`` (samples with ``image``, ``mask``, ``target_255`` or
    ``target``, ``subset``, ``name``), or a path, opened as its test split with ``resize``
    (default ``fixed256``) and ``subsets``.
    ``psnr_peak``: None for each target's maximum (the reference), or a fixed peak such as 255.
    ``save_predictions``: a folder; predictions are written as PNG (``<subset>/<stem>.png``, one
    sub-folder per model when there are several).
    ``shard``: a :class:`~harmonize_cli.sharding.Launch` (or ``(K, N)``): evaluate only share K of
    N of the test set; the result holds that share's images (tables and ``per_image``, each record
    with its ``index`` in the whole set); :func:`merge_results` makes the tables of the whole set.
    The models' train/eval modes and devices are restored afterwards.
    """
    single, entries = _entries(models_or_model, labels, weights)
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}")
    try:
        psnr_peak = check_psnr_peak(psnr_peak)
    except ValueError as exc:
        raise UsageError(str(exc), "pass a positive number such as 255, or None for each target's maximum") from None

    if isinstance(dataset, (str, os.PathLike)):
        dataset = open_test_set(dataset, resize=resize or "fixed256", subsets=subsets)
    if resize is None:
        resize = dataset_resize(dataset)
    if len(dataset) == 0:
        raise UsageError("the dataset has no test images", "check the test lists of the dataset")

    if device is None:
        found = _model_device(entries[0].network)
        device = found if found is not None and found.type != "cpu" else None
    if not isinstance(device, torch.device):
        from ..device import resolve_device

        device = resolve_device(device)
    if batch_size is None:
        batch_size = default_batch_size(device)

    indices = None
    if shard is not None:
        from ..sharding import Launch, share_of

        launch = shard if isinstance(shard, Launch) else Launch(int(shard[0]), int(shard[1]), launcher="shard")
        indices = share_of([1] * len(dataset), launch)  # equal sizes at fixed256: every N-th image
    prepared = [_Prepared(entry, device) for entry in entries]
    save_root = Path(save_predictions) if save_predictions else None
    try:
        with torch.no_grad():
            skipped, seconds = _run(prepared, dataset, device, batch_size, flip_tta, psnr_peak, workers,
                                    save_root, progress, indices)
    finally:
        for item in prepared:
            item.restore()

    if skipped and len(skipped) >= len(dataset):
        first = skipped[0]
        raise HarmonizeError(
            f"none of the {len(dataset)} test image(s) could be read; first: "
            f"{first['subset']}/{first['name']}: {first['error']}",
            "the dataset file is damaged: rebuild it with harmonize prepare --root SOURCE -o FILE --force")
    subset_order = list(getattr(dataset, "subset_names", None) or [])
    results = [_result(item, subset_order, resize, psnr_peak, flip_tta, skipped, device, seconds)
               for item in prepared]
    return results[0] if single else results


def _run(prepared, dataset, device, batch_size, flip_tta, psnr_peak, workers, save_root, show_progress,
         indices=None):
    safe = _SafeDataset(dataset, indices)
    n_samples = len(safe)
    if workers is None:
        workers = _default_workers(n_samples, batch_size, device)
    loader_options = {"batch_size": batch_size, "shuffle": False, "num_workers": int(workers),
                      "collate_fn": _collate, "pin_memory": device.type == "cuda"}
    if workers > 0:
        loader_options["prefetch_factor"] = 4
        loader_options["persistent_workers"] = False
    loader = torch.utils.data.DataLoader(safe, **loader_options)
    skipped: List[dict] = []
    writer = ThreadPoolExecutor(max_workers=2) if save_root is not None else None
    pending = []
    started = time.perf_counter()
    context = console.progress("img") if show_progress else _nullcontext()
    try:
        with context as bar:
            task = bar.add_task("eval", total=n_samples) if bar is not None else None
            for samples in loader:
                good = []
                for sample in samples:
                    if "error" in sample:
                        skipped.append({key: sample[key] for key in ("index", "subset", "name", "error")})
                        console.warn(f"skipped {sample['subset']}/{sample['name']}: {sample['error']}")
                    else:
                        good.append(sample)
                for group in _groups(good, batch_size):
                    _evaluate_group(prepared, group, device, flip_tta, psnr_peak, save_root, writer, pending)
                if bar is not None:
                    bar.advance(task, len(samples))
                    first = prepared[0]
                    done = sum(s.count for s in first.sums.values())
                    if done:
                        running = sum(s.sums["MSE"] for s in first.sums.values()) / done
                        bar.update(task, status=f"MSE {running:.2f}")
    finally:
        if writer is not None:
            for future in pending:
                future.result()
            writer.shutdown()
    if skipped:
        console.warn(f"{len(skipped)} test image(s) could not be read and were left out of the tables.")
    return skipped, time.perf_counter() - started


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _groups(samples, batch_size):
    """Consecutive samples of equal size, at most ``batch_size`` images of 256 x 256 pixels per pass."""
    budget = batch_size * PIXELS_PER_IMAGE_AT_256
    group, group_size = [], None
    for sample in samples:
        size = tuple(sample["image"].shape[-2:])
        pixels = size[0] * size[1]
        full = group and (size != group_size or (len(group) + 1) * pixels > max(budget, pixels))
        if full:
            yield group
            group = []
        group.append(sample)
        group_size = size
    if group:
        yield group


def _stack(group, key, device):
    # copy each (pinned, on CUDA) sample to the device asynchronously, then stack there
    tensors = [torch.as_tensor(sample[key]).to(device, non_blocking=True) for sample in group]
    return torch.stack(tensors).float()


def _evaluate_group(prepared, group, device, flip_tta, psnr_peak, save_root, writer, pending):
    # pixels on the 0..255 scale: what the reference normalises (datasets opened with keep_raw)
    image = _stack(group, "image_255", device) if "image_255" in group[0] else denormalize(
        _stack(group, "image", device))
    mask = _stack(group, "mask", device)
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if "target_255" in group[0]:
        target = _stack(group, "target_255", device)
    else:
        target = denormalize(_stack(group, "target", device))
    ratios = fg_ratio(mask)
    for item in prepared:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        pred = predict(item.runner, image, mask, normalization=item.normalization, divisor=item.divisor,
                       flip_tta=flip_tta, peak=255.0, low_size=item.low_size, weights=item.weights or item.label)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        item.seconds += elapsed
        values = {name: tensor.tolist() for name, tensor in image_metrics(pred, target, mask, psnr_peak).items()}
        video = "clip" in group[0]  # frames of clips: keep what the temporal figure needs
        errors = foreground_mean_error(pred, target, mask).tolist() if video else None
        per_image_seconds = elapsed / len(group)
        for position, sample in enumerate(group):
            row = {name: values[name][position] for name in METRIC_NAMES}
            subset = str(sample.get("subset", "test"))
            item.sums.setdefault(subset, MetricSums()).add(row, per_image_seconds)
            for bin_name in fg_ratio_bins(ratios[position]):
                item.fg_sums[bin_name].add(row, per_image_seconds)
            record = {"index": int(sample.get("index", len(item.per_image))), "subset": subset,
                      "name": str(sample.get("name", "")),
                      "fg_ratio": ratios[position], **row, "ms": 1000.0 * per_image_seconds}
            if video:
                record.update(clip=str(sample["clip"]), frame=int(sample["frame"]),
                              fg_error=error_or_none(errors[position]))
            item.per_image.append(record)
        if save_root is not None:
            folder = save_root / _safe_name(item.label) if len(prepared) > 1 else save_root
            images = pred.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            for position, sample in enumerate(group):
                path = folder / _safe_name(str(sample.get("subset", "test"))) / (
                    Path(str(sample.get("name", sample.get("index", position)))).stem + ".png")
                pending.append(writer.submit(_save_png, path, images[position]))


def _safe_name(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in text).strip("._")
    return cleaned or "model"


def _save_png(path: Path, array) -> None:
    from PIL import Image

    from ..atomic import atomic_path
    from ..readback import check_image_file

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
        check_image_file(tmp, (array.shape[1], array.shape[0]), "PNG", name=path)


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
    (per-image rows, in the order given) exactly as :func:`evaluate` sums them."""
    item = _Sums()
    for record in records:
        row = {name: record[name] for name in METRIC_NAMES}
        seconds_each = float(record.get("ms", 0.0)) / 1000.0
        item.sums.setdefault(record["subset"], MetricSums()).add(row, seconds_each)
        for bin_name in fg_ratio_bins(record["fg_ratio"]):
            item.fg_sums[bin_name].add(row, seconds_each)
    item.per_image, item.arch, item.weights, item.label = list(records), like.model, like.weights, like.label
    return _result(item, subset_order, like.resize, like.psnr_peak, like.flip_tta, skipped, like.device, seconds)


class _Sums:
    """What :func:`_result` reads of a :class:`_Prepared`: the sums and records of one model."""

    def __init__(self):
        self.sums: Dict[str, MetricSums] = {}
        self.fg_sums = {name: MetricSums() for name in FG_RATIO_RANGES}
        self.per_image: List[dict] = []
        self.arch = self.weights = self.label = None


def _result(item: _Prepared, subset_order, resize, psnr_peak, flip_tta, skipped, device, seconds) -> EvalResult:
    order = [name for name in subset_order if name in item.sums] + [
        name for name in item.sums if name not in subset_order]
    by_subset = {name: item.sums[name].means() for name in order}
    total = MetricSums()
    for name in order:
        total.merge(item.sums[name])
    by_subset["All"] = total.means()
    by_fg_ratio = {name: item.fg_sums[name].means(with_time=False) for name in FG_RATIO_RANGES}
    frames = [record for record in item.per_image if "clip" in record]
    return EvalResult(model=str(item.arch), weights=item.weights, resize=resize, psnr_peak=psnr_peak, flip_tta=flip_tta,
                      by_subset=by_subset, by_fg_ratio=by_fg_ratio, per_image=item.per_image, skipped=list(skipped),
                      device=str(device), seconds=seconds, label=item.label,
                      by_clip=clip_table(frames) if frames else {})


# -------------------------------------------------------------------------------------- models
def load_models(names: Sequence[str] = (), weights: Sequence[str] = ()):
    """Resolve the models named by ``--model`` and ``--weights`` into a list of
    :class:`~harmonize_cli.zoo.ResolvedModel` (each with a unique ``label``).

    - ``--model`` alone: baselines need no weights; a network gets its released checkpoint.
    - ``--weights`` alone: the architecture of each checkpoint is detected.
    - both: baselines stand alone and each network ``--model`` takes one ``--weights``, in order;
      a checkpoint of another architecture than its ``--model`` is an error naming both.
    """
    from .. import zoo

    names, weights = list(names), [str(w) for w in weights]
    specs = [zoo.get_arch(name) for name in names]  # unknown names: UsageError with suggestions
    networks = [spec for spec in specs if spec.needs_weights]
    if not weights:
        pairs = [(spec.name, None) for spec in specs]
    elif not networks:
        pairs = [(spec.name, None) for spec in specs] + [("auto", path) for path in weights]
    elif len(networks) == len(weights):
        queue = list(weights)
        pairs = [(spec.name, queue.pop(0) if spec.needs_weights else None) for spec in specs]
    else:
        raise UsageError(f"{len(networks)} network --model and {len(weights)} --weights do not pair up",
                         "give one --weights per --model that needs weights (baselines need none), "
                         "or omit --model to detect each checkpoint's architecture")
    resolved = [zoo.resolve(name, source) for name, source in pairs]
    labels = [model.label for model in resolved]
    for model in resolved:  # two files of the same name (runs/a/best.pth, runs/b/best.pth): name the folder
        if labels.count(model.label) > 1 and model.path is not None:
            model.label = f"{model.name} ({model.path.parent.name}/{model.path.name})"
    seen: Dict[str, int] = {}
    for model in resolved:
        label = model.label
        seen[label] = seen.get(label, 0) + 1
        model.label = label if seen[label] == 1 else f"{label} #{seen[label]}"
    return resolved
