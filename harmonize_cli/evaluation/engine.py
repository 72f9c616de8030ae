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

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from .. import console
from ..errors import UsageError
from .metrics import FG_RATIO_RANGES, METRIC_NAMES, MetricSums, fg_ratio, fg_ratio_bins, image_metrics

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXELS_PER_IMAGE_AT_256 = 256 * 256


# ----------------------------------------------------------------------------------------- result
@dataclass
class EvalResult:
    """The tables of one model: ``by_subset`` (every subset and "All") and ``by_fg_ratio``.

    Each row is ``{"N", "MSE", "fMSE", "PSNR"}`` (``by_subset`` rows add ``"ms_per_image"``);
    values are None where a row has no images.
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

    def summary(self) -> Dict[str, Optional[float]]:
        """``{"MSE", "fMSE", "PSNR"}`` over every image ("All")."""
        row = self.by_subset.get("All", {})
        return {name: row.get(name) for name in METRIC_NAMES}

    @property
    def n_images(self) -> int:
        return int(self.by_subset.get("All", {}).get("N", 0))

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
def pad_divisor(model) -> int:
    """The multiple that native-size inputs are padded to.

    The reference pads to ``2 ** (depth + 1)`` for networks with a ``depth`` (DIH, iDIH, S2AM, ...)
    and does not pad backboned networks; we keep that and also honour the model's own
    ``size_divisor`` (the least multiple it can run at), so backboned networks run at any size.
    """
    reference = 2 ** (int(model.depth) + 1) if isinstance(getattr(model, "depth", None), int) else 1
    own = int(getattr(model, "size_divisor", 1) or 1)
    return math.lcm(reference, own)


def _padding(size: int, divisor: int):
    pad = (divisor - size % divisor) % divisor
    return pad // 2, pad - pad // 2


def _model_output(output):
    if isinstance(output, dict):
        output = output.get("images", next(iter(output.values())))
    return output


def _model_device(model) -> Optional[torch.device]:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


def _model_label(model, fallback: str) -> str:
    return str(getattr(model, "arch_name", None) or fallback)


class _SafeDataset(torch.utils.data.Dataset):
    """Wraps a dataset so that one unreadable sample is reported instead of ending the run."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except Exception as exc:  # reported per image; the run goes on
            record = _record_of(self.dataset, index)
            return {"error": f"{type(exc).__name__}: {exc}", "index": index, **record}


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

    def __init__(self, model, device, label, weights):
        self.model = model
        self.label = label
        self.weights = weights
        self.modes = [(module, module.training) for module in model.modules()]
        self.original_device = _model_device(model)
        self.moved = self.original_device is not None and self.original_device != device
        if self.moved:
            model.to(device)
        model.eval()
        self.divisor = pad_divisor(model)
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
def evaluate(models_or_model, dataset, *, batch_size: Optional[int] = None, device=None, flip_tta: bool = False,
             psnr_peak: Optional[float] = None, workers: Optional[int] = None, save_predictions=None,
             progress: bool = True, resize: Optional[str] = None, subsets: Optional[Sequence[str]] = None,
             labels: Optional[Sequence[str]] = None, weights: Optional[Sequence[Optional[str]]] = None):
    """Evaluate one model (returns an :class:`EvalResult`) or several (a list, one pass over the data).

    ``models_or_model``: an ``nn.Module`` (``forward(image, mask)`` on ImageNet-normalised input),
    a list of them, or a dict ``{label: module}``.
    ``dataset``: a ``HarmonizationDataset`` (samples with ``image``, ``mask``, ``target_255`` or
    ``target``, ``subset``, ``name``), or a path, opened as its test split with ``resize``
    (default ``fixed256``) and ``subsets``.
    ``psnr_peak``: None for each target's maximum (the reference), or a fixed peak such as 255.
    ``save_predictions``: a folder; predictions are written as PNG (``<subset>/<stem>.png``, one
    sub-folder per model when there are several).
    The models' train/eval modes and devices are restored afterwards.
    """
    import torch.nn as nn

    single = isinstance(models_or_model, nn.Module)
    if single:
        named = [(labels[0] if labels else _model_label(models_or_model, "model"), models_or_model)]
    elif isinstance(models_or_model, dict):
        named = list(models_or_model.items())
    else:
        models = list(models_or_model)
        names = list(labels) if labels else [_model_label(model, f"model{i + 1}") for i, model in enumerate(models)]
        named = list(zip(names, models))
    if not named:
        raise UsageError("no model to evaluate", "pass --model NAME or --weights FILE")
    weights = list(weights) if weights else [getattr(model, "weights_source", None) for _, model in named]
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}")

    if isinstance(dataset, (str, os.PathLike)):
        dataset = open_test_set(dataset, resize=resize or "fixed256", subsets=subsets)
    if resize is None:
        resize = dataset_resize(dataset)
    if len(dataset) == 0:
        raise UsageError("the dataset has no test images", "check the test lists of the dataset")

    if device is None:
        found = _model_device(named[0][1])
        device = found if found is not None and found.type != "cpu" else None
    if not isinstance(device, torch.device):
        from ..device import resolve_device

        device = resolve_device(device)
    if batch_size is None:
        batch_size = default_batch_size(device)

    prepared = [_Prepared(model, device, label, weight) for (label, model), weight in zip(named, weights)]
    save_root = Path(save_predictions) if save_predictions else None
    try:
        with torch.no_grad():
            skipped, seconds = _run(prepared, dataset, device, batch_size, flip_tta, psnr_peak, workers,
                                    save_root, progress)
    finally:
        for item in prepared:
            item.restore()

    subset_order = list(getattr(dataset, "subset_names", None) or [])
    results = [_result(item, subset_order, resize, psnr_peak, flip_tta, skipped, device, seconds)
               for item in prepared]
    return results[0] if single else results


def _run(prepared, dataset, device, batch_size, flip_tta, psnr_peak, workers, save_root, show_progress):
    n_samples = len(dataset)
    if workers is None:
        workers = _default_workers(n_samples, batch_size, device)
    loader_options = {"batch_size": batch_size, "shuffle": False, "num_workers": int(workers),
                      "collate_fn": _collate, "pin_memory": device.type == "cuda"}
    if workers > 0:
        loader_options["prefetch_factor"] = 4
        loader_options["persistent_workers"] = False
    loader = torch.utils.data.DataLoader(_SafeDataset(dataset), **loader_options)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
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
                        skipped.append({key: sample[key] for key in ("subset", "name", "error")})
                        console.warn(f"skipped {sample['subset']}/{sample['name']}: {sample['error']}")
                    else:
                        good.append(sample)
                for group in _groups(good, batch_size):
                    _evaluate_group(prepared, group, device, mean, std, flip_tta, psnr_peak, save_root, writer,
                                    pending)
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


def _evaluate_group(prepared, group, device, mean, std, flip_tta, psnr_peak, save_root, writer, pending):
    image = _stack(group, "image", device)
    mask = _stack(group, "mask", device)
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if "target_255" in group[0]:
        target = _stack(group, "target_255", device)
    else:
        target = (_stack(group, "target", device) * std + mean) * 255.0
    ratios = fg_ratio(mask)
    for item in prepared:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        pred = predict(item.model, image, mask, mean, std, divisor=item.divisor, flip_tta=flip_tta)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        item.seconds += elapsed
        values = {name: tensor.tolist() for name, tensor in image_metrics(pred, target, mask, psnr_peak).items()}
        per_image_seconds = elapsed / len(group)
        for position, sample in enumerate(group):
            row = {name: values[name][position] for name in METRIC_NAMES}
            subset = str(sample.get("subset", "test"))
            item.sums.setdefault(subset, MetricSums()).add(row, per_image_seconds)
            for bin_name in fg_ratio_bins(ratios[position]):
                item.fg_sums[bin_name].add(row, per_image_seconds)
            item.per_image.append({"subset": subset, "name": str(sample.get("name", "")),
                                   "fg_ratio": ratios[position], **row,
                                   "ms": 1000.0 * per_image_seconds})
        if save_root is not None:
            folder = save_root / _safe_name(item.label) if len(prepared) > 1 else save_root
            images = pred.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            for position, sample in enumerate(group):
                path = folder / _safe_name(str(sample.get("subset", "test"))) / (
                    Path(str(sample.get("name", sample.get("index", position)))).stem + ".png")
                pending.append(writer.submit(_save_png, path, images[position]))


def predict(model, image, mask, mean=None, std=None, *, divisor: int = 1, flip_tta: bool = False):
    """The reference predictor on a batch: pad, (flip), forward, average, de-normalise, clamp.

    ``image``: N x 3 x H x W ImageNet-normalised; ``mask``: N x 1 x H x W in [0, 1].
    Returns N x 3 x H x W on the 0..255 scale, clamped, not rounded.
    """
    if mean is None:
        mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(1, 3, 1, 1)
    if std is None:
        std = torch.tensor(IMAGENET_STD, device=image.device).view(1, 3, 1, 1)
    height, width = image.shape[-2:]
    top, bottom = _padding(height, divisor)
    left, right = _padding(width, divisor)
    padded = top or bottom or left or right
    if padded:
        # the reference pads the 0..255 image with zeros before normalising: black, not zero
        black = (-mean / std).to(image.dtype)
        canvas = black.expand(image.shape[0], 3, height + top + bottom, width + left + right).clone()
        canvas[:, :, top:top + height, left:left + width] = image
        image = canvas
        mask = torch.nn.functional.pad(mask, (left, right, top, bottom), value=0.0)
    count = image.shape[0]
    if flip_tta:
        image = torch.cat((image, torch.flip(image, dims=(3,))), dim=0)
        mask = torch.cat((mask, torch.flip(mask, dims=(3,))), dim=0)
    output = _model_output(model(image, mask))
    if flip_tta:
        output = 0.5 * (output[:count] + torch.flip(output[count:], dims=(3,)))
    if padded:
        output = output[:, :, top:top + height, left:left + width]
    return ((output.float() * std + mean) * 255.0).clamp(0.0, 255.0)


def _safe_name(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in text).strip("._")
    return cleaned or "model"


def _save_png(path: Path, array) -> None:
    from PIL import Image

    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _result(item: _Prepared, subset_order, resize, psnr_peak, flip_tta, skipped, device, seconds) -> EvalResult:
    order = [name for name in subset_order if name in item.sums] + [
        name for name in item.sums if name not in subset_order]
    by_subset = {name: item.sums[name].means() for name in order}
    total = MetricSums()
    for name in order:
        total.merge(item.sums[name])
    by_subset["All"] = total.means()
    by_fg_ratio = {name: item.fg_sums[name].means(with_time=False) for name in FG_RATIO_RANGES}
    arch = getattr(item.model, "arch_name", None) or item.label
    return EvalResult(model=str(arch), weights=item.weights, resize=resize, psnr_peak=psnr_peak, flip_tta=flip_tta,
                      by_subset=by_subset, by_fg_ratio=by_fg_ratio, per_image=item.per_image, skipped=list(skipped),
                      device=str(device), seconds=seconds, label=item.label)


# ------------------------------------------------------------------------------------ datasets
def dataset_resize(dataset) -> Optional[str]:
    """The resize strategy of a dataset's transform (``fixed256``, ``limit1024``, ``none``), if known."""
    transform = getattr(dataset, "transform", None)
    kind = type(transform).__name__
    if kind == "Resize" and getattr(transform, "size", None):
        height, width = transform.size
        return f"fixed{height}" if height == width else f"fixed{height}x{width}"
    if kind == "LimitLongestSide":
        return f"limit{transform.max_side}"
    if kind == "NoResize":
        return "none"
    value = getattr(dataset, "resize", None)
    return value if isinstance(value, str) else None


def open_test_set(source, *, resize: str = "fixed256", subsets: Optional[Sequence[str]] = None):
    """The test split of a dataset (HDF5 file or folder tree) with the evaluation transform.

    Raises a UsageError for a dataset without a test split and for a requested subset with no
    test images.
    """
    from ..data import HarmonizationDataset, eval_transform

    transform = eval_transform(resize)  # validates the name
    path = Path(source)
    if not path.exists():
        raise UsageError(f"dataset {source} does not exist",
                         "pass --data FILE.h5|DIR (the iHarmony4 folder or a file packed by `harmonize prepare`)")
    subsets = list(subsets) if subsets else None
    dataset = HarmonizationDataset(path, split="test", subsets=subsets, transform=transform, keep_raw=True)
    check_test_set(dataset, source, subsets)
    return dataset


def check_test_set(dataset, source, subsets=None) -> None:
    """Errors for a test split without images and for a requested subset without test images;
    a notice for subsets of the data that have no test images and for unreadable samples."""
    counts: Dict[str, int] = {}
    for subset, _ in getattr(dataset, "records", []):
        counts[subset] = counts.get(subset, 0) + 1
    if len(dataset) == 0:
        raise UsageError(f"{source} has no test images",
                         "evaluation needs the <Subset>_test.txt lists (or a packed file with a test split)")
    if subsets:
        empty = [name for name in subsets if not any(name.lower() == have.lower() for have in counts)]
        if empty:
            raise UsageError(f"subset {', '.join(empty)} of {source} has no test images",
                             f"subsets with test images: {', '.join(counts)}")
    else:
        available = getattr(getattr(dataset, "_source", None), "subsets", None) or []
        empty = [name for name in available if name not in counts]
        if empty:
            console.warn(f"subset {', '.join(empty)} of {source} has no test images; "
                         "\"All\" covers the other subsets only.")
    missing = int(getattr(dataset, "missing", 0) or 0)
    if missing:
        console.warn(f"{missing} test sample(s) of {source} left out: a composite, mask or real image is missing.")


# -------------------------------------------------------------------------------------- models
def load_models(names: Sequence[str] = (), weights: Sequence[str] = ()):
    """Build the models named by ``--model`` and ``--weights``; returns ``[(label, model, weights)]``.

    - ``--model`` alone: baselines need no weights; a network gets its released checkpoint.
    - ``--weights`` alone: the architecture of each checkpoint is detected.
    - both: baselines stand alone and each network ``--model`` takes one ``--weights``, in order;
      a checkpoint of another architecture than its ``--model`` is an error naming both.
    """
    from .. import zoo
    from ..errors import WeightsError

    names, weights = list(names), [str(w) for w in weights]
    specs = [zoo.get_arch(name) for name in names]  # unknown names: UsageError with suggestions
    networks = [spec for spec in specs if spec.needs_weights]
    pairs = []
    if not weights:
        for spec in specs:
            if not spec.needs_weights:
                pairs.append((spec, None))
                continue
            released = zoo.weights_for_arch(spec.name)
            if released is None:
                raise UsageError(f"{spec.name} has no released weights",
                                 f"pass --weights FILE.pth trained as {spec.name}")
            pairs.append((spec, released.name))
    elif not networks:
        pairs = [(spec, None) for spec in specs] + [(None, path) for path in weights]
    elif len(networks) == len(weights):
        queue = list(weights)
        pairs = [(spec, queue.pop(0) if spec.needs_weights else None) for spec in specs]
    else:
        raise UsageError(f"{len(networks)} network --model and {len(weights)} --weights do not pair up",
                         "give one --weights per --model that needs weights (baselines need none), "
                         "or omit --model to detect each checkpoint's architecture")

    loaded = []
    for spec, source in pairs:
        if source is None:
            loaded.append((spec.name, zoo.create_model(spec.name), None))
            continue
        from ..zoo.checkpoints import fits

        checkpoint, where = zoo.read_checkpoint(source)  # unreadable: WeightsError
        state = zoo.extract_state_dict(checkpoint)
        if spec is None:
            arch = zoo.detect_arch(checkpoint)
        else:
            arch = spec.name
            if not fits(arch, state):
                looks_like = next((other.name for other in zoo.ARCHITECTURES
                                   if other.needs_weights and fits(other.name, state)), None)
                if looks_like is not None:
                    kind = looks_like
                else:
                    from ..zoo.checkpoints import rank_architectures

                    score, looks_like = rank_architectures(state)[0]
                    kind = f"no known architecture (closest {looks_like}, {score:.0%})"
                raise WeightsError(f"--weights {source} is a checkpoint of {kind}, but --model is {arch}",
                                   f"drop --model to evaluate it as {looks_like}, or pass weights of {arch}")
        model = zoo.create_model(arch, init=False)
        zoo.load_weights(model, state)
        model.weights_source = source
        model.eval()
        label = arch if spec is not None and source == getattr(zoo.weights_for_arch(arch), "name", None) \
            else f"{arch} ({Path(source).name})"
        loaded.append((label, model, where if Path(str(source)).exists() else source))
    seen: Dict[str, int] = {}
    unique = []
    for label, model, source in loaded:
        seen[label] = seen.get(label, 0) + 1
        unique.append((label if seen[label] == 1 else f"{label} #{seen[label]}", model, source))
    return unique
