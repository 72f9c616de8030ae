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
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from .. import console
from ..data.transforms import denormalize
from ..errors import HarmonizeError, UsageError
from ..inference import normalization_of, pad_divisor, predict
from ..inference_opt import optimize_for_inference
from .loading import load_models
from .metrics import METRIC_NAMES, check_psnr_peak, fg_ratio, image_metrics
from .results import EvalResult, ModelSums, merge_results, psnr_peak_label, result_from_records
from .testset import dataset_resize, open_test_set
from .video_metrics import error_or_none, foreground_mean_error

PIXELS_PER_IMAGE_AT_256 = 256 * 256

# the tables (results.py) and the models of --model/--weights (loading.py), importable from here as before
__all__ = ["EvalResult", "evaluate", "load_models", "merge_results", "psnr_peak_label", "result_from_records",
           "default_batch_size"]


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


class _Prepared(ModelSums):
    """A model moved to the evaluation device in eval mode, with its sums; ``restore()`` undoes both."""

    def __init__(self, entry: "_Entry", device):
        super().__init__(entry.arch, entry.weights, entry.label)
        model = entry.network
        self.model = model
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
    results = [item.result(subset_order, resize, psnr_peak, flip_tta, skipped, device, seconds)
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
    context = console.progress("img") if show_progress else nullcontext()
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
            item.add(subset, ratios[position], row, per_image_seconds)
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


