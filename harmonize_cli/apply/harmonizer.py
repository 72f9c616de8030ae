"""The Python API of ``harmonize apply``: one object that harmonizes images of any size.

>>> from harmonize_cli import Harmonizer
>>> h = Harmonizer()                      # model="auto": best cached checkpoint, else boundary-gain
>>> result = h(image, mask)               # numpy arrays or PIL images -> uint8 H x W x 3 (or x 4)
>>> results = h.harmonize_batch(images, masks)

``image``: H x W x 3 (or x 4 with alpha, or H x W gray) uint8 / uint16 / float in [0, 1], or a
PIL image of any mode (or a file path, read with EXIF orientation). ``mask``: H x W with 0/1,
0/255 or soft values (or a PIL image / path). The result has the input's size; where the mask is
0 it equals the input exactly; an alpha channel is carried over unchanged.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence

import numpy as np

from ..errors import UsageError
from .imageio import ImageData, InputError, image_to_arrays, read_image
from .maskio import DecodedMask, mask_to_array, read_mask
from .resolution import (
    auto_box,
    check_strategy,
    fit_correction,
    fixed_box,
    mask_bbox,
    native_box,
    pct_box,
    resize_mask,
    resize_pil_rgb,
    resize_rgb,
)

DEFAULT_SIZE = 256  # network size for models that run at any size (the baselines)


def check_precision(precision: str, device) -> str:
    """``precision`` when the device can run it: float32 and bf16 anywhere, fp16 on GPUs only."""
    from ..inference_opt import PRECISIONS

    precision = str(precision or "float32").lower()
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and getattr(device, "type", str(device)) == "cpu":
        raise UsageError("--precision fp16 runs on a GPU only", "use --precision bf16 on the CPU")
    return precision


def host_batch(arrays: Sequence[np.ndarray], device):
    """The arrays stacked into one float32 tensor on the host: on CUDA straight into page-locked
    (pinned) memory, from which the copy to the GPU is asynchronous (``non_blocking``) and needs no
    staging copy; elsewhere an ordinary tensor over the stacked array."""
    import torch

    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available():
        batch = torch.empty((len(arrays), *arrays[0].shape), dtype=torch.float32, pin_memory=True)
        np.stack(arrays, out=batch.numpy())
        return batch
    return torch.from_numpy(np.stack(arrays).astype(np.float32, copy=False))


def default_batch_size(device) -> int:
    """Images per forward pass: 1 on the CPU, where a batch of 8 measured slower per image
    (docs/benchmarks.md, "Against the reference"), 8 on accelerators, where batching keeps them busy."""
    return 1 if getattr(device, "type", str(device)) == "cpu" else 8


@dataclass
class Job:
    """One image on its way through the harmonizer (see :meth:`Harmonizer.prepare`)."""

    rgb: Optional[np.ndarray]  # H x W x 3 uint8 (None: only ``source`` holds the pixels)
    mask: Optional[np.ndarray]  # H x W float32 in [0, 1] (None: only its box was read, ``box_mask``)
    alpha: Optional[np.ndarray] = None
    gray: bool = False
    bbox: Optional[tuple] = None  # (y0, y1, x0, x1) of mask > 0; None: nothing to do
    box_rgb: Optional[np.ndarray] = None  # the input's pixels in ``bbox`` (h x w x 3 uint8)
    box_mask: Optional[np.ndarray] = None  # the mask in ``bbox`` (h x w float32)
    # a photo read with read_image(as_decoded=True): its decoded Pillow image, into which the
    # result's box is pasted (the whole photo is never converted to an array and back)
    source: Any = None
    net_image: Optional[np.ndarray] = None  # 3 x h x w float32 [0, 1], what the network sees
    net_mask: Optional[np.ndarray] = None  # h x w
    prediction: Optional[np.ndarray] = None  # 3 x h x w float32 [0, 1]
    maps: Optional[tuple] = None  # PCT-Net: (1 x 12 x h x w parameters, 1 x 1 x h x w attention or None)
    correction: Any = None  # auto: the fitted colour correction (see :meth:`Harmonizer.fit`)
    seconds: float = 0.0  # time spent on this job (prepare + its share of inference + finish)
    context: Any = None  # caller data (the CLI keeps file names and metadata here)

    @property
    def size(self):
        """(width, height) of the input."""
        if self.rgb is None:
            return self.source.size
        return self.rgb.shape[1], self.rgb.shape[0]


def _check_sizes(mask_shape, image_shape) -> None:
    if tuple(mask_shape) != tuple(image_shape):
        raise InputError(f"mask is {mask_shape[1]}x{mask_shape[0]} but the image is {image_shape[1]}x{image_shape[0]}",
                         "masks must have the composite's size")


class Harmonizer:
    """Harmonize composites of any size with a model of the zoo.

    model: an architecture name, or "auto" (the best released checkpoint in the local cache, the
        checkpoint given as ``weights`` with its architecture detected, else the training-free
        ``boundary-gain``).
    weights: a checkpoint (path, URL, registry name or state dict); default: the released one
        for ``model`` (downloaded on first use unless ``HARMONIZE_OFFLINE`` is set).
    device: "cpu", "cuda", "cuda:1", "mps" or None/"auto" (CUDA when available).
    resolution: "auto" (network at its training size, correction carried to full resolution),
        "fixed" (reference: resize, run, resize back) or "native" (full size, padded).
    batch_size: images per forward pass at the network size (default: 1 on the CPU, where a batch
        is slower per image, 8 on a GPU).
    flip_tta: average the prediction with that of the horizontally flipped input.
    precision: the network's forward pass in "float32" (default), "bf16" (about 1.5x faster on CPUs
        with AVX-512 BF16; results differ by up to about 2 grey levels, docs/benchmarks.md) or
        "fp16" (GPUs only); the paper's networks only.
    """

    def __init__(self, model: str = "auto", weights=None, device=None, resolution: str = "auto",
                 batch_size: Optional[int] = None, flip_tta: bool = False, quiet: bool = False,
                 precision: str = "float32"):
        from ..device import resolve_device
        from ..inference_opt import optimizable, optimize_for_inference, with_precision
        from ..zoo import resolve

        if batch_size is not None and int(batch_size) < 1:
            raise UsageError("batch size must be at least 1")
        self.resolution = check_strategy(resolution)
        self.flip_tta = bool(flip_tta)
        self.device = resolve_device(device)
        self.precision = check_precision(precision, self.device)
        self.batch_size = int(batch_size) if batch_size is not None else default_batch_size(self.device)
        self.model = resolve(model, weights)  # what runs: spec, network, weights source, sha256
        self.network = self.model.network.to(self.device).eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        # what the forward passes run: the same function, batch norms folded (and on the CPU a
        # vectorised ELU, channels-last weights); the resolved network itself stays as it is
        if self.precision != "float32" and not optimizable(self.network):
            raise UsageError(f"--precision {self.precision} is for the paper's networks (DIH, iDIH, S2AM and their "
                             f"backboned versions), not {self.model.name}", "leave --precision at float32")
        self.runner = with_precision(optimize_for_inference(self.network, self.device), self.precision)
        self.input_size = int(self.model.input_size or DEFAULT_SIZE)
        self.divisor = self.model.divisor
        # PCT-Net carries its 256-px prediction to full resolution itself (``auto``)
        self.own_full_resolution = bool(self.model.spec.full_resolution) and self.resolution == "auto"
        self._lock = threading.Lock()  # one forward pass at a time
        if self.notice and not quiet:
            warnings.warn(self.notice, UserWarning, stacklevel=2)  # the CLI prints it as one line instead

    def __repr__(self) -> str:
        weights = self.weights_path or ("none" if not self.needs_weights else "in memory")
        return (f"Harmonizer(model={self.model_name!r}, weights={weights!r}, device={str(self.device)!r}, "
                f"resolution={self.resolution!r}, batch_size={self.batch_size}, flip_tta={self.flip_tta}"
                + (f", precision={self.precision!r})" if self.precision != "float32" else ")"))

    # ----------------------------------------------------------------------------- model facts

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def needs_weights(self) -> bool:
        return self.model.spec.needs_weights

    @property
    def weights_path(self) -> Optional[str]:
        return None if self.model.path is None else str(self.model.path)

    @property
    def weights_sha256(self) -> Optional[str]:
        return self.model.sha256

    @property
    def notice(self) -> Optional[str]:
        return self.model.notice

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
            "precision": self.precision,
            "notice": self.notice,
            "fallback": self.model_name if self.model.fallback else None,
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
        see :func:`harmonize_cli.apply.paste.paste`. Returns the result, or (result, composite, mask)."""
        from .paste import paste

        return paste(self, object, background, at=at, anchor=anchor, scale=scale, height=height, mask=mask,
                     return_composite=return_composite)

    # ------------------------------------------------------------------------------- stages

    def prepare(self, image, mask, context=None) -> Job:
        """Decode and check the inputs and build the network's view (thread-safe, CPU)."""
        started = time.perf_counter()
        if isinstance(image, (str, Path)):  # files are read as apply reads them: the same results
            image = read_image(image, as_decoded=True)
        if isinstance(mask, (str, Path)):
            mask = read_mask(mask, as_decoded=True)
        if isinstance(image, ImageData) and image.rgb is None:
            job = self._prepare_decoded(image, mask, context)
        else:
            job = self._prepare_arrays(image, mask, context)
        job.seconds += time.perf_counter() - started
        return job

    def _prepare_arrays(self, image, mask, context) -> Job:
        decoded = getattr(image, "pil_rgb", None)  # read_image's Pillow image: the view is made from it
        if decoded is not None:
            image.pil_rgb = None  # not kept beyond this view
        rgb, alpha, gray = image_to_arrays(image)
        mask_values = mask_to_array(mask)
        _check_sizes(mask_values.shape, rgb.shape[:2])
        job = Job(rgb=rgb, mask=mask_values, alpha=alpha, gray=gray, bbox=mask_bbox(mask_values), context=context)
        if job.bbox is not None:
            y0, y1, x0, x1 = job.bbox
            job.box_rgb, job.box_mask = rgb[y0:y1, x0:x1], mask_values[y0:y1, x0:x1]
            if self.resolution == "native":
                self._prepare_native(job)
            else:
                size = (self.input_size, self.input_size)
                job.net_image = resize_rgb(rgb, size) if decoded is None else resize_pil_rgb(decoded, size)
                job.net_mask = mask.view(size) if isinstance(mask, DecodedMask) else resize_mask(mask_values, size)
        return job

    def _prepare_decoded(self, image: ImageData, mask, context) -> Job:
        """A photo read with ``read_image(as_decoded=True)`` (the mask read with ``as_decoded``
        too, or any mask): only the mask's box becomes arrays; the job takes the Pillow image."""
        source, image.pil_rgb = image.pil_rgb, None
        if source is None:
            raise UsageError("this ImageData's pixels went to an earlier job (read_image(..., as_decoded=True) "
                             "hands the decoded image over once)", "read the file again, or without as_decoded")
        decoded_mask = isinstance(mask, DecodedMask)
        if not decoded_mask:
            mask = mask_to_array(mask)
        _check_sizes(mask.shape, (source.size[1], source.size[0]))
        bbox = mask.bbox() if decoded_mask else mask_bbox(mask)
        job = Job(rgb=None, mask=None, bbox=bbox, source=source, context=context)
        if bbox is None:
            return job
        y0, y1, x0, x1 = bbox
        if self.resolution == "native":  # the network sees the whole photo
            job.rgb, job.mask = np.asarray(source), mask.floats() if decoded_mask else mask
            job.box_rgb, job.box_mask = job.rgb[y0:y1, x0:x1], job.mask[y0:y1, x0:x1]
            self._prepare_native(job)
            return job
        job.box_rgb = np.asarray(source.crop((x0, y0, x1, y1)))
        job.box_mask = mask.region(bbox) if decoded_mask else mask[y0:y1, x0:x1]
        size = (self.input_size, self.input_size)
        job.net_image = resize_pil_rgb(source, size)
        job.net_mask = mask.view(size) if decoded_mask else resize_mask(mask, size)
        return job

    @staticmethod
    def _prepare_native(job: Job) -> None:
        # full size; inference.predict pads to the network's divisor and crops back
        job.net_image = job.rgb.transpose(2, 0, 1) / np.float32(255.0)
        job.net_mask = job.mask

    def predict(self, jobs: Sequence[Job]) -> None:
        """Run the network on the jobs' views (batched when they have the same size)."""
        pending = [job for job in jobs if job.bbox is not None]
        groups = {}
        for job in pending:
            groups.setdefault(job.net_image.shape, []).append(job)
        for group in groups.values():
            started = time.perf_counter()
            images = host_batch([job.net_image for job in group], self.device)
            masks = host_batch([job.net_mask for job in group], self.device)
            if self.own_full_resolution:
                outputs = [None] * len(group)
                for job, maps in zip(group, self._forward_maps(images, masks)):
                    job.maps = maps
            else:
                outputs = self._forward(images, masks)
            share = (time.perf_counter() - started) / len(group)
            for job, output in zip(group, outputs):
                job.prediction = output
                job.seconds += share

    def _forward(self, images, masks) -> np.ndarray:
        import torch

        from ..inference import predict

        with self._lock, torch.inference_mode():
            image = torch.as_tensor(images).to(self.device, non_blocking=True)  # pinned on CUDA: asynchronous
            mask = torch.as_tensor(masks).to(self.device, non_blocking=True).unsqueeze(1)
            output = predict(self.runner, image, mask, normalization=self.model.normalization,
                             divisor=self.divisor, flip_tta=self.flip_tta, peak=1.0, weights=self._weights_label())
            return output.cpu().numpy()

    def _forward_maps(self, images, masks) -> list:
        """PCT-Net: the per-pixel transform maps at the network size (flip TTA averages them)."""
        import torch

        from ..inference import normalise, require_finite

        with self._lock, torch.inference_mode():
            image = torch.as_tensor(images).to(self.device, non_blocking=True)
            mask = torch.as_tensor(masks).to(self.device, non_blocking=True).unsqueeze(1)
            normalised = normalise(image, self.model.normalization, peak=1.0)
            outputs = self.network(normalised, mask)
            params = require_finite(outputs["params"], self._weights_label())
            attention = outputs["attention"] if self.network.use_attn else None
            if self.flip_tta:
                flipped = self.network(normalised.flip(3), mask.flip(3))
                params = 0.5 * (params + require_finite(flipped["params"], self._weights_label()).flip(3))
                if attention is not None:
                    attention = 0.5 * (attention + flipped["attention"].flip(3))
            params, attention = params.float().cpu(), None if attention is None else attention.float().cpu()
        return [(params[i:i + 1], None if attention is None else attention[i:i + 1]) for i in range(len(images))]

    def _weights_label(self) -> str:
        """The weights as an error names them: their file, else the model's label."""
        return self.weights_path or self.model.label

    def fit(self, job: Job) -> None:
        """``auto`` (not PCT-Net): fit the job's colour correction from its prediction now, so that
        a caller can inspect or change it (video smooths it over time) before :meth:`finish`."""
        if (job.bbox is not None and job.maps is None and job.correction is None and job.prediction is not None
                and self.resolution == "auto"):
            job.correction = fit_correction(job.net_image, job.prediction, job.net_mask)

    def finish(self, job: Job) -> np.ndarray:
        """Carry the prediction to full resolution and blend it in (thread-safe, CPU)."""
        result = self.finish_image(job)
        return result if isinstance(result, np.ndarray) else np.array(result)

    def finish_image(self, job: Job):
        """:meth:`finish`; for a photo read with ``read_image(as_decoded=True)`` the result is its
        decoded Pillow image with the result's box pasted in (nothing else of it is converted)."""
        started = time.perf_counter()
        box = self._compose_box(job)
        if job.source is not None:
            result, job.source = job.source, None
            if box is not None:
                from PIL import Image

                result.paste(Image.fromarray(box), (job.bbox[2], job.bbox[0]))
        else:
            result = job.rgb.copy()
            if box is not None:
                y0, y1, x0, x1 = job.bbox
                result[y0:y1, x0:x1] = box
            if job.alpha is not None:
                result = np.concatenate((result, job.alpha[..., None]), axis=2)
        job.seconds += time.perf_counter() - started
        job.net_image = job.net_mask = job.prediction = job.maps = job.correction = None  # free memory early
        job.box_rgb = job.box_mask = None
        return result

    def _compose_box(self, job: Job) -> Optional[np.ndarray]:
        """The result inside the mask's box (None: nothing to do)."""
        if job.bbox is None:
            return None
        size = (job.size[1], job.size[0])
        if job.maps is not None:
            params, attention = job.maps
            return pct_box(job.box_rgb, job.box_mask, params, attention, self.model.normalization, job.bbox, size,
                           clamp=self.network.clamp, affine=self.network.affine)
        if self.resolution == "native":
            return native_box(job.box_rgb, job.box_mask, job.prediction, job.bbox)
        if self.resolution == "fixed":
            return fixed_box(job.box_rgb, job.box_mask, job.prediction, job.bbox, size)
        self.fit(job)
        return auto_box(job.box_rgb, job.box_mask, job.correction, job.bbox, size)

    # ------------------------------------------------------------------------------ pipeline

    def process(self, tasks: Iterable, load, save, on_result, workers: int = 2, pixel_budget: Optional[int] = None,
                size_of=None, shared_pool: bool = False, io_beside_network: Optional[int] = None,
                prefetched=None) -> None:
        """Stream tasks through this harmonizer with decoding and encoding overlapped with inference
        (see :func:`harmonize_cli.apply.pipeline.run_pipeline`)."""
        from .pipeline import DEFAULT_PIXEL_BUDGET, run_pipeline

        run_pipeline(self, tasks, load, save, on_result, workers=workers,
                     pixel_budget=DEFAULT_PIXEL_BUDGET if pixel_budget is None else pixel_budget, size_of=size_of,
                     shared_pool=shared_pool, io_beside_network=io_beside_network, prefetched=prefetched)
