"""The Python API of ``harmonize apply``: one object that harmonizes images of any size.

>>> from harmonize_cli import Harmonizer
>>> h = Harmonizer()                      # model="auto": best cached checkpoint, else lab-transfer
>>> result = h(image, mask)               # numpy arrays or PIL images -> uint8 H x W x 3 (or x 4)
>>> results = h.harmonize_batch(images, masks)

``image``: H x W x 3 (or x 4 with alpha, or H x W gray) uint8 / uint16 / float in [0, 1], or a
PIL image of any mode (or a file path, read with EXIF orientation). ``mask``: H x W with 0/1,
0/255 or soft values (or a PIL image / path). The result has the input's size; where the mask is
0 it equals the input exactly; an alpha channel is carried over unchanged.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from . import console
from .apply_io import InputError, image_to_arrays, mask_to_array
from .errors import UsageError
from .resolution import (
    check_strategy,
    compose_auto,
    compose_fixed,
    compose_native,
    fit_correction,
    mask_bbox,
    resize_mask,
    resize_rgb,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 256  # network size for models that run at any size (the baselines)
FALLBACK_MODEL = "lab-transfer"
RECOMMENDED_WEIGHTS = "hrnet18s_idih256"


def fallback_notice() -> str:
    return (f"No neural weights found locally: using the training-free {FALLBACK_MODEL} baseline. "
            f"For the neural model run `harmonize zoo download {RECOMMENDED_WEIGHTS}` or pass --weights FILE.")


def sha256_of(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Job:
    """One image on its way through the harmonizer (see :meth:`Harmonizer.prepare`)."""

    rgb: np.ndarray  # H x W x 3 uint8
    mask: np.ndarray  # H x W float32 in [0, 1]
    alpha: Optional[np.ndarray] = None
    gray: bool = False
    bbox: Optional[tuple] = None  # of mask > 0; None: nothing to do
    net_image: Optional[np.ndarray] = None  # 3 x h x w float32 [0, 1], what the network sees
    net_mask: Optional[np.ndarray] = None  # h x w
    pad: tuple = (0, 0, 0, 0)  # native: (top, bottom, left, right)
    prediction: Optional[np.ndarray] = None  # 3 x h x w float32 [0, 1]
    seconds: float = 0.0  # time spent on this job (prepare + its share of inference + finish)
    context: Any = None  # caller data (the CLI keeps file names and metadata here)

    @property
    def size(self):
        return self.rgb.shape[1], self.rgb.shape[0]


class Harmonizer:
    """Harmonize composites of any size with a model of the zoo.

    model: an architecture name, or "auto" (the best released checkpoint in the local cache, the
        checkpoint given as ``weights`` with its architecture detected, else ``lab-transfer``).
    weights: a checkpoint (path, URL, registry name or state dict); default: the released one
        for ``model`` (downloaded on first use unless ``HARMONIZE_OFFLINE`` is set).
    device: "cpu", "cuda", "cuda:1", "mps" or None/"auto" (CUDA when available).
    resolution: "auto" (network at its training size, correction carried to full resolution),
        "fixed" (reference: resize, run, resize back) or "native" (full size, padded).
    batch_size: images per forward pass at the network size.
    flip_tta: average the prediction with that of the horizontally flipped input.
    """

    def __init__(self, model: str = "auto", weights=None, device=None, resolution: str = "auto",
                 batch_size: int = 8, flip_tta: bool = False, quiet: bool = False):
        import torch

        from .device import resolve_device

        if int(batch_size) < 1:
            raise UsageError("batch size must be at least 1")
        self.resolution = check_strategy(resolution)
        self.batch_size = int(batch_size)
        self.flip_tta = bool(flip_tta)
        self.device = resolve_device(device)
        self.notice: Optional[str] = None
        self.weights_path: Optional[str] = None
        self._weights_sha256: Optional[str] = None
        self.model_name, network, self.weights_path = self._load(model, weights)
        self.network = network.to(self.device).eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        from . import zoo

        spec = zoo.get_arch(self.model_name)
        self.needs_weights = spec.needs_weights
        self.input_size = int(spec.input_size or getattr(network, "input_size", None) or DEFAULT_SIZE)
        self.size_divisor = int(getattr(network, "size_divisor", 1) or 1)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        self._lock = threading.Lock()  # one forward pass at a time
        if self.notice and not quiet and not console.is_quiet():
            console.err_console.print(self.notice, style="yellow", soft_wrap=True, markup=False)  # one line

    # ----------------------------------------------------------------------------- model choice

    def _load(self, model, weights):
        from . import zoo

        name = str(model or "auto").strip()
        if weights is not None and not isinstance(weights, (str, os.PathLike, Mapping)):
            raise UsageError(f"weights must be a path, URL, name or state dict, not {type(weights).__name__}")
        checkpoint, label = (None, None)
        if weights is not None:
            checkpoint, label = zoo.read_checkpoint(weights)
        if name.lower() == "auto":
            if checkpoint is not None:
                arch = _detect_arch(checkpoint)
                return arch, self._build(arch, checkpoint, label), _path_or_none(label)
            for released in sorted(zoo.HARMONIZATION_WEIGHTS, key=_released_rank):
                path = zoo.cached(released)
                if path is None:
                    continue
                try:
                    network = self._build(released.arch, str(path), str(path))
                except Exception as exc:  # a model family not available in this build, a bad file
                    console.debug(f"skipping cached {released.name}: {exc}")
                    continue
                return released.arch, network, str(path)
            self.notice = fallback_notice()
            return FALLBACK_MODEL, zoo.create_model(FALLBACK_MODEL), None
        spec = zoo.get_arch(name)
        if not spec.needs_weights:
            if checkpoint is not None:
                raise UsageError(f"{spec.name} is training-free and takes no weights", "drop --weights")
            return spec.name, zoo.create_model(spec.name), None
        if checkpoint is None:
            released = zoo.weights_for_arch(spec.name)
            if released is None:
                from .errors import WeightsError

                raise WeightsError(f"{spec.name} has no released weights",
                                   "pass --weights FILE (a checkpoint from `harmonize train`)")
            path = zoo.fetch(released)
            return spec.name, self._build(spec.name, str(path), str(path)), str(path)
        return spec.name, self._build(spec.name, checkpoint, label), _path_or_none(label)

    @staticmethod
    def _build(arch, weights, label):
        from . import zoo

        network = zoo.create_model(arch, weights=weights)
        network.weights_source = label
        return network

    @property
    def weights_sha256(self) -> Optional[str]:
        if self._weights_sha256 is None and self.weights_path and Path(self.weights_path).is_file():
            self._weights_sha256 = sha256_of(self.weights_path)
        return self._weights_sha256

    def describe(self) -> dict:
        """What runs: model, weights file and its sha256, device and options (for reports)."""
        return {
            "model": self.model_name,
            "weights": self.weights_path,
            "weights_sha256": self.weights_sha256,
            "device": str(self.device),
            "resolution": self.resolution,
            "network_size": self.input_size,
            "batch_size": self.batch_size,
            "flip_tta": self.flip_tta,
            "notice": self.notice,
        }

    # ------------------------------------------------------------------------------ public API

    def __call__(self, image, mask) -> np.ndarray:
        """Harmonize one composite; returns uint8 H x W x 3 (H x W x 4 when the input has alpha)."""
        return self.harmonize_batch([image], [mask])[0]

    def harmonize(self, image, mask) -> np.ndarray:
        return self(image, mask)

    def harmonize_batch(self, images: Sequence, masks: Sequence) -> List[np.ndarray]:
        """Harmonize several composites, ``batch_size`` at a time at the network size."""
        images, masks = list(images), list(masks)
        if len(images) != len(masks):
            raise UsageError(f"{len(images)} images but {len(masks)} masks")
        results = []
        for start in range(0, len(images), self.batch_size):
            jobs = [self.prepare(image, mask) for image, mask in
                    zip(images[start:start + self.batch_size], masks[start:start + self.batch_size])]
            self.predict(jobs)
            results.extend(self.finish(job) for job in jobs)
        return results

    def paste(self, object, background, at=None, anchor="center", scale=None, height=None, mask=None,
              return_composite=False):
        """Paste a cut-out (RGBA, or any image with ``mask``) onto ``background`` and harmonize it;
        see :func:`harmonize_cli.paste.paste`. Returns the result, or (result, composite, mask)."""
        from harmonize_cli.paste import paste

        return paste(self, object, background, at=at, anchor=anchor, scale=scale, height=height, mask=mask,
                     return_composite=return_composite)

    # ------------------------------------------------------------------------------- stages

    def prepare(self, image, mask, context=None) -> Job:
        """Decode and check the inputs and build the network's view (thread-safe, CPU)."""
        started = time.perf_counter()
        rgb, alpha, gray = image_to_arrays(image)
        mask_values = mask_to_array(mask)
        if mask_values.shape != rgb.shape[:2]:
            raise InputError(f"mask is {mask_values.shape[1]}x{mask_values.shape[0]} but the image is "
                             f"{rgb.shape[1]}x{rgb.shape[0]}", "masks must have the composite's size")
        job = Job(rgb=rgb, mask=mask_values, alpha=alpha, gray=gray, bbox=mask_bbox(mask_values), context=context)
        if job.bbox is not None:
            if self.resolution == "native":
                self._prepare_native(job)
            else:
                size = (self.input_size, self.input_size)
                job.net_image = resize_rgb(rgb, size)
                job.net_mask = resize_mask(mask_values, size)
        job.seconds += time.perf_counter() - started
        return job

    def _prepare_native(self, job: Job) -> None:
        height, width = job.mask.shape
        divisor = self.size_divisor
        # A multiple of the divisor, and never below the training size: the deepest layers of
        # the encoder-decoders need at least that much input.
        smallest = math.ceil(self.input_size / divisor) * divisor
        pad_h = max(smallest, math.ceil(height / divisor) * divisor) - height
        pad_w = max(smallest, math.ceil(width / divisor) * divisor) - width
        top, left = pad_h // 2, pad_w // 2
        job.pad = (top, pad_h - top, left, pad_w - left)
        image = np.zeros((3, height + pad_h, width + pad_w), dtype=np.float32)  # zero padding, as the reference
        image[:, top:top + height, left:left + width] = job.rgb.transpose(2, 0, 1) / np.float32(255.0)
        mask = np.zeros((height + pad_h, width + pad_w), dtype=np.float32)
        mask[top:top + height, left:left + width] = job.mask
        job.net_image, job.net_mask = image, mask

    def predict(self, jobs: Sequence[Job]) -> None:
        """Run the network on the jobs' views (batched when they have the same size)."""
        pending = [job for job in jobs if job.bbox is not None]
        groups = {}
        for job in pending:
            groups.setdefault(job.net_image.shape, []).append(job)
        for group in groups.values():
            started = time.perf_counter()
            outputs = self._forward(np.stack([job.net_image for job in group]),
                                    np.stack([job.net_mask for job in group]))
            share = (time.perf_counter() - started) / len(group)
            for job, output in zip(group, outputs):
                top, bottom, left, right = job.pad
                height, width = output.shape[1:]
                job.prediction = output[:, top:height - bottom, left:width - right]
                job.seconds += share

    def _forward(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        import torch

        with self._lock, torch.inference_mode():
            image = torch.from_numpy(images).to(self.device, non_blocking=True)
            mask = torch.from_numpy(masks).to(self.device, non_blocking=True).unsqueeze(1)
            normalised = (image - self._mean) / self._std
            count = normalised.shape[0]
            if self.flip_tta:
                normalised = torch.cat((normalised, normalised.flip(3)))
                mask = torch.cat((mask, mask.flip(3)))
            output = self.network(normalised, mask)
            if isinstance(output, Mapping):
                output = output["images"]
            if self.flip_tta:
                output = 0.5 * (output[:count] + output[count:].flip(3))
            output = (output.float() * self._std + self._mean).clamp_(0.0, 1.0)
            return output.cpu().numpy()

    def finish(self, job: Job) -> np.ndarray:
        """Carry the prediction to full resolution and blend it in (thread-safe, CPU)."""
        started = time.perf_counter()
        if job.bbox is None:
            result = job.rgb.copy()
        elif self.resolution == "native":
            result = compose_native(job.rgb, job.mask, job.prediction, job.bbox)
        elif self.resolution == "fixed":
            result = compose_fixed(job.rgb, job.mask, job.prediction, job.bbox)
        else:
            correction = fit_correction(job.net_image, job.prediction, job.net_mask)
            result = compose_auto(job.rgb, job.mask, correction, job.bbox)
        if job.alpha is not None:
            result = np.concatenate((result, job.alpha[..., None]), axis=2)
        job.seconds += time.perf_counter() - started
        job.net_image = job.net_mask = job.prediction = None  # free memory early
        return result

    # ------------------------------------------------------------------------------ pipeline

    def process(self, tasks: Iterable, load: Callable, save: Callable, on_result: Callable,
                workers: int = 2, pixel_budget: int = 48_000_000, size_of: Optional[Callable] = None) -> None:
        """Harmonize a stream of tasks with decoding and encoding overlapped with inference.

        ``load(task) -> (image, mask, context)`` runs in worker threads; ``save(task, result, job)``
        too; ``on_result(task, error_or_None, seconds, job)`` is called on this thread once per task.
        At most ``pixel_budget`` full-resolution pixels are in flight (``size_of(task)`` gives a
        task's pixel count before decoding; a single larger image is still admitted alone).
        """
        workers = max(1, int(workers))
        tasks = iter(tasks)
        decoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harmonize-decode")
        encoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harmonize-encode")
        decoding = {}  # future -> (task, pixels)
        encoding = {}  # future -> (task, job, pixels)
        ready = deque()  # (task, job, pixels)
        state = {"used": 0, "exhausted": False, "next": None}
        max_ready = self.batch_size * 2 + workers

        def load_and_prepare(task):
            started = time.perf_counter()
            image, mask, context = load(task)
            job = self.prepare(image, mask, context)
            job.seconds = time.perf_counter() - started
            return job

        def finish_and_save(task, job):
            before, started = job.seconds, time.perf_counter()
            result = self.finish(job)
            save(task, result, job)
            job.seconds = before + time.perf_counter() - started
            return job

        def admit():
            while not state["exhausted"] and len(decoding) + len(ready) < max_ready:
                if state["next"] is None:
                    try:
                        task = next(tasks)
                    except StopIteration:
                        state["exhausted"] = True
                        return
                    pixels = 0
                    if size_of is not None:
                        try:
                            pixels = int(size_of(task) or 0)
                        except Exception:
                            pixels = 0
                    state["next"] = (task, pixels)
                task, pixels = state["next"]
                if state["used"] and state["used"] + pixels > pixel_budget:
                    return  # wait for encodes to free memory
                state["next"] = None
                state["used"] += pixels
                decoding[decoders.submit(load_and_prepare, task)] = (task, pixels)

        def collect(done):
            for future in done:
                if future in decoding:
                    task, pixels = decoding.pop(future)
                    error = future.exception()
                    if error is not None:
                        state["used"] -= pixels
                        on_result(task, error, 0.0, None)
                    else:
                        ready.append((task, future.result(), pixels))
                elif future in encoding:
                    task, job, pixels = encoding.pop(future)
                    state["used"] -= pixels
                    error = future.exception()
                    on_result(task, error, job.seconds, job)

        def run_batch():
            batch = [ready.popleft() for _ in range(min(self.batch_size, len(ready)))]
            jobs = [job for _, job, _ in batch]
            try:
                self.predict(jobs)
            except Exception as exc:
                if len(jobs) == 1:
                    jobs[0].prediction = exc
                else:
                    for job in jobs:  # out of memory or one bad input: retry one at a time
                        try:
                            self.predict([job])
                        except Exception as single:  # noqa: PERF203
                            job.prediction = single
            for task, job, pixels in batch:
                if isinstance(job.prediction, Exception):
                    state["used"] -= pixels
                    on_result(task, job.prediction, job.seconds, job)
                    continue
                encoding[encoders.submit(finish_and_save, task, job)] = (task, job, pixels)

        try:
            while True:
                admit()
                collect([future for future in list(decoding) + list(encoding) if future.done()])
                if len(ready) >= self.batch_size or (ready and not decoding):
                    run_batch()
                    continue
                if not decoding and not encoding and not ready:
                    admit()
                    if not decoding and state["exhausted"] and state["next"] is None:
                        break
                    continue
                wait(list(decoding) + list(encoding), return_when=FIRST_COMPLETED)
        finally:
            for future in list(decoding) + list(encoding):
                future.cancel()
            decoders.shutdown(wait=True, cancel_futures=True)
            encoders.shutdown(wait=True, cancel_futures=True)


def _detect_arch(checkpoint) -> str:
    """The checkpoint's architecture: the first exact layout match (cheap for the small models),
    else the zoo's full ranking (which explains a mismatch)."""
    from . import zoo
    from .zoo.checkpoints import layout_of

    meta_arch = zoo.checkpoint_metadata(checkpoint).get("arch")
    try:
        state = zoo.extract_state_dict(checkpoint)
        given = {key: tuple(value.shape) for key, value in state.items()}
        names = ([meta_arch] if meta_arch else []) + zoo.arch_names(include_baselines=False)
        for name in names:
            try:
                if layout_of(zoo.get_arch(name).name) == given:
                    return zoo.get_arch(name).name
            except Exception:  # an architecture that cannot be built here
                continue
    except Exception:
        pass
    return zoo.detect_arch(checkpoint)


def _path_or_none(label) -> Optional[str]:
    if label is None or str(label).startswith("<"):
        return None
    return str(label)


def _released_rank(weights) -> float:
    """Lower is better: the released checkpoint's MSE on all of iHarmony4."""
    mse = weights.metrics.get("All", {}).get("MSE")
    return float(mse) if mse is not None else math.inf
