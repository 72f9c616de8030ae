"""Pretrained weights: the reference checkpoints and the ImageNet backbones, with metadata.

Files are downloaded on first use into ``$HARMONIZE_HOME/weights`` (default
``~/.cache/harmonize/weights``). ``$HARMONIZE_WEIGHTS_MIRROR`` replaces the host part of every
URL (a folder or an http(s) base holding the same file names), for air-gapped sites and tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .. import console, settings
from ..choices import IMAGENET_NORMALIZATION, TABLE_ROWS
from ..errors import DownloadError, UsageError
from .download import download_file, sha256_of
from .verify import record, recorded, verify_file

_RELEASE = "https://github.com/saic-vul/image_harmonization/releases/download/v1.0/"
_IMAGENET_NORM = {key: list(values) for key, values in IMAGENET_NORMALIZATION.items()}
_PREPROCESS_256 = {"resize": "fixed256", "input_size": 256, "normalization": _IMAGENET_NORM}


@dataclass(frozen=True)
class PretrainedWeights:
    """A released checkpoint: where it comes from, what it is for, what it scores."""

    name: str
    filename: str
    url: str
    arch: str  # our architecture name
    kind: str = "harmonization"  # or "backbone"
    input_size: int = 256
    sha256: Optional[str] = None
    hash_prefix: Optional[str] = None
    preprocessing: dict = field(default_factory=lambda: dict(_PREPROCESS_256))
    metrics: dict = field(default_factory=dict)  # {"HCOCO": {"MSE":.., "PSNR":..}, ..., "All": {..}}
    source: str = ""
    note: str = ""
    licence: str = ""


def _metrics(*rows):
    return {subset: {"MSE": mse, "PSNR": psnr} for subset, (mse, psnr) in zip(TABLE_ROWS, rows) if mse is not None}


_REFERENCE_PAGE = "https://github.com/saic-vul/image_harmonization"

HARMONIZATION_WEIGHTS = [
    PretrainedWeights("idih256", "idih256.pth", _RELEASE + "idih256.pth", "idih", source=_REFERENCE_PAGE,
                      metrics=_metrics((19.58, 38.34), (30.84, 36.00), (84.74, 32.58), (50.05, 37.10), (30.70, 36.99))),
    PretrainedWeights("issam256", "issam256.pth", _RELEASE + "issam256.pth", "is2am", source=_REFERENCE_PAGE,
                      metrics=_metrics((16.48, 39.16), (22.60, 37.24), (69.67, 33.56), (40.59, 37.72), (24.65, 37.95))),
    PretrainedWeights("deeplab_idih256", "deeplab_idih256.pth", _RELEASE + "deeplab_idih256.pth", "idih-deeplab-r34",
                      source=_REFERENCE_PAGE,
                      metrics=_metrics((17.68, 38.97), (28.13, 36.33), (70.89, 33.25), (56.17, 37.25), (27.37, 37.53))),
    PretrainedWeights("hrnet18s_idih256", "hrnet18s_idih256.pth", _RELEASE + "hrnet18s_idih256.pth",
                      "idih-hrnet-w18s", source=_REFERENCE_PAGE,
                      metrics=_metrics((14.30, 39.52), (22.57, 37.18), (63.03, 33.70), (51.20, 37.69), (22.82, 38.15))),
    PretrainedWeights("hrnet18_idih256", "hrnet18_idih256.pth", _RELEASE + "hrnet18_idih256.pth", "idih-hrnet-w18",
                      source=_REFERENCE_PAGE,
                      metrics=_metrics((13.79, 39.62), (25.44, 36.91), (60.63, 33.88), (44.94, 37.74), (22.99, 38.16))),
    PretrainedWeights("hrnet18_v2p_idih256", "hrnet18_v2p_idih256.pth", _RELEASE + "hrnet18_v2p_idih256.pth",
                      "idih-hrnet-w18-v2p", source=_REFERENCE_PAGE,
                      metrics={"All": {"MSE": 23.10, "PSNR": 38.15}}),
    PretrainedWeights("hrnet32_idih256", "hrnet32_idih256.pth", _RELEASE + "hrnet32_idih256.pth", "idih-hrnet-w32",
                      source=_REFERENCE_PAGE,
                      metrics=_metrics((14.00, 39.71), (23.04, 37.13), (57.55, 34.06), (53.70, 37.70), (22.22, 38.29))),
]

_PCT_PAGE = "https://github.com/rakutentech/PCT-Net-Image-Harmonization"
_PCT_RAW = _PCT_PAGE + "/raw/main/pretrained_models/"
_PCT_NOTE = "metrics at full resolution (HAdobe5k capped at 1024 px), from the PCT-Net paper"
HARMONIZATION_WEIGHTS += [
    PretrainedWeights("PCTNet_ViT", "PCTNet_ViT.pth", _PCT_RAW + "PCTNet_ViT.pth", "pctnet-vit", source=_PCT_PAGE,
                      note=_PCT_NOTE, licence="MPL-2.0",
                      preprocessing={"resize": "full resolution (network at 256)", "input_size": 256,
                                     "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}},
                      metrics={"All": {"MSE": 18.84, "PSNR": 39.29, "fMSE": 237.49}}),
    PretrainedWeights("PCTNet_CNN", "PCTNet_CNN.pth", _PCT_RAW + "PCTNet_CNN.pth", "pctnet-cnn", source=_PCT_PAGE,
                      note=_PCT_NOTE, licence="MPL-2.0",
                      preprocessing={"resize": "full resolution (network at 256)", "input_size": 256,
                                     "normalization": _IMAGENET_NORM},
                      metrics={"All": {"MSE": 24.02, "PSNR": 38.30, "fMSE": 282.75}}),
]

_HRNET_PAGE = "https://github.com/HRNet/HRNet-Image-Classification"
_HRNET_NOTE = ("published on OneDrive by the HRNet authors; if the direct download fails, "
               "fetch it from the project page and place it in the cache")

BACKBONE_WEIGHTS = [
    PretrainedWeights("hrnetv2-w18-small-v2", "hrnet_w18_small_model_v2.pth",
                      "https://1drv.ms/u/s!Aus8VCZ_C_33gRmfdPR79WBS61Qn?e=HVZUi8", "hrnetv2-w18-small-v2",
                      kind="backbone", input_size=224, source=_HRNET_PAGE, note=_HRNET_NOTE,
                      preprocessing={"normalization": _IMAGENET_NORM},
                      metrics={"ImageNet": {"top1_error": 24.9, "top5_error": 7.6}}),
    PretrainedWeights("hrnetv2-w18", "hrnetv2_w18_imagenet_pretrained.pth",
                      "https://1drv.ms/u/s!Aus8VCZ_C_33cMkPimlmClRvmpw", "hrnetv2-w18",
                      kind="backbone", input_size=224, source=_HRNET_PAGE, note=_HRNET_NOTE,
                      preprocessing={"normalization": _IMAGENET_NORM},
                      metrics={"ImageNet": {"top1_error": 23.2, "top5_error": 6.6}}),
    PretrainedWeights("hrnetv2-w32", "hrnetv2_w32_imagenet_pretrained.pth",
                      "https://1drv.ms/u/s!Aus8VCZ_C_33dYBMemi9xOUFR0w", "hrnetv2-w32",
                      kind="backbone", input_size=224, source=_HRNET_PAGE, note=_HRNET_NOTE,
                      preprocessing={"normalization": _IMAGENET_NORM},
                      metrics={"ImageNet": {"top1_error": 21.5, "top5_error": 5.8}}),
    PretrainedWeights("resnet34", "resnet34-b627a593.pth", "https://download.pytorch.org/models/resnet34-b627a593.pth",
                      "resnet34", kind="backbone", input_size=224, hash_prefix="b627a593",
                      source="https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet34.html",
                      preprocessing={"normalization": _IMAGENET_NORM},
                      metrics={"ImageNet": {"acc@1": 73.314, "acc@5": 91.42}}),
    # not a backbone of a network: the feature network of PCT-Net's contrastive loss (training only)
    PretrainedWeights("vgg16", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                      "vgg16", kind="backbone", input_size=224, hash_prefix="397923af",
                      source="https://pytorch.org/vision/stable/models/generated/torchvision.models.vgg16.html",
                      note="the VGG16 features of PCT-Net's contrastive loss (harmonize train --arch pctnet-*)",
                      preprocessing={"normalization": _IMAGENET_NORM},
                      metrics={"ImageNet": {"acc@1": 71.592, "acc@5": 90.382}}),
]

_ALL = {weights.name: weights for weights in HARMONIZATION_WEIGHTS + BACKBONE_WEIGHTS}


def list_weights(kind: Optional[str] = None):
    return [w for w in _ALL.values() if kind is None or w.kind == kind]


def get_weights(name: str) -> PretrainedWeights:
    key = str(name).strip()
    if key.endswith(".pth"):
        key = key[:-4]
    for weights in _ALL.values():
        if key in (weights.name, weights.filename, weights.filename[:-4]):
            return weights
    from .cards import did_you_mean

    raise UsageError(f"unknown pretrained weights {name!r}", did_you_mean(key) + f" (choose one of: {', '.join(_ALL)})")


def weights_for_arch(arch_name: str) -> Optional[PretrainedWeights]:
    """The released harmonization checkpoint of an architecture, if there is one."""
    for weights in HARMONIZATION_WEIGHTS:
        if weights.arch == arch_name:
            return weights
    return None


def cache_path(weights: PretrainedWeights) -> Path:
    return settings.weights_dir() / weights.filename


def cached(weights: PretrainedWeights) -> Optional[Path]:
    """The cached file of ``weights`` if there is one (not yet verified: :func:`fetch` verifies)."""
    path = cache_path(weights)
    return path if path.is_file() else None


def source_url(weights: PretrainedWeights) -> str:
    mirror = os.environ.get("HARMONIZE_WEIGHTS_MIRROR")
    if mirror:
        return mirror.rstrip("/") + "/" + weights.filename
    return weights.url


def offline() -> bool:
    """True when ``$HARMONIZE_OFFLINE`` is set: nothing is downloaded."""
    return os.environ.get("HARMONIZE_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def fetch(name, force: bool = False, offline_mode: Optional[bool] = None, timeout: float = 30.0,
          deadline: Optional[float] = None, min_rate: Optional[float] = None) -> Path:
    """The local path of verified pretrained weights, downloading them on first use.

    A file is used only once it loads safely and fits its architecture (and its sha256, where
    known); the verified sha256 is kept in the cache's manifest, so a file changed on disk later
    is refused. ImageNet backbones are also looked up in torch's hub cache. Offline (default:
    ``$HARMONIZE_OFFLINE`` set) nothing is downloaded and the error names the URL and the path
    where the file can be placed by hand. ``timeout`` bounds the connection and each read,
    ``deadline`` (seconds, default none) the whole download, or with ``min_rate`` (bytes/s) the
    time after which a download slower than that on average is dropped; the body is capped at the weights
    limit (:func:`~harmonize_cli.zoo.bounds.max_weights_bytes`) and at its announced length.
    """
    weights = name if isinstance(name, PretrainedWeights) else get_weights(name)
    target = cache_path(weights)
    if not force:
        for candidate in (target, _torch_hub_file(weights)):
            if candidate is not None and candidate.is_file():
                return _verified(candidate, weights)
    url = source_url(weights)
    if offline_mode is None:
        offline_mode = offline()
    if offline_mode:
        raise DownloadError(f"weights {weights.name!r} are not in the cache and downloads are off (HARMONIZE_OFFLINE)",
                            f"download {url} and save it as {target}")
    _check_writable(target.parent)
    console.info(f"Downloading {weights.name} from {url}")

    def check(path, digest):
        verify_file(path, weights, sha256=digest)

    path = download_file(url, target, sha256=weights.sha256, hash_prefix=weights.hash_prefix,
                         label=weights.filename, timeout=timeout, verify=check, deadline=deadline,
                         min_rate=min_rate)
    record(path, sha256_of(path), url)
    return path


def _verified(path: Path, weights: PretrainedWeights) -> Path:
    if recorded(path) is None:  # placed by hand, or cached by an older version: verify once
        record(path, verify_file(path, weights), str(path))
    return path


def _torch_hub_file(weights: PretrainedWeights) -> Optional[Path]:
    """Where torch keeps this file if torchvision already downloaded it (``$TORCH_HOME`` aware)."""
    if weights.kind != "backbone" or not weights.url.startswith("https://download.pytorch.org/"):
        return None
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / weights.filename


def _check_writable(folder: Path) -> None:
    """The cache folder must be creatable and writable: one line otherwise."""
    from ..atomic import check_writable
    from ..errors import HarmonizeError

    try:
        check_writable(folder)
    except HarmonizeError as exc:
        raise DownloadError(f"cannot write the weights cache: {exc.message.split(': ', 1)[-1]} ({folder})",
                            "set HARMONIZE_HOME to a writable folder") from None


def fetch_url(url: str) -> Path:
    """A checkpoint given by URL, cached under a name derived from the whole URL (two URLs ending
    in the same file name never share a cache entry); downloaded once, loaded safely."""
    import hashlib

    name = Path(url.split("?")[0]).name or "weights.pth"
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    target = settings.weights_dir() / "urls" / f"{key}-{name}"
    if target.is_file():
        return _verified_url_file(target, url)
    if offline():
        raise DownloadError(f"{url} is not in the cache and downloads are off (HARMONIZE_OFFLINE)",
                            f"download it and pass the file, or save it as {target}")
    _check_writable(target.parent)

    def check(path, digest):
        from .checkpoints import extract_state_dict, safe_load

        extract_state_dict(safe_load(path))

    path = download_file(url, target, label=name, verify=check)
    record(path, sha256_of(path), url)
    return path


def _verified_url_file(path: Path, url: str) -> Path:
    """A cached URL download, used only while it matches the manifest's sha256 (like a released
    file); one placed by hand is checked once (safe load, a state dict) and recorded."""
    from ..errors import WeightsError
    from .checkpoints import extract_state_dict, safe_load

    redo = f"delete {path} to download {url} again"
    try:
        if recorded(path) is not None:
            return path
    except WeightsError as exc:
        raise WeightsError(exc.message, redo) from None
    try:
        extract_state_dict(safe_load(path))
    except WeightsError as exc:
        raise WeightsError(exc.message, redo) from None
    record(path, sha256_of(path), url)
    return path
