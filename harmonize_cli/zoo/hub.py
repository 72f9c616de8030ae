"""The hub: the weights cache, the offline switch, the mirror, and fetching verified files.

Files are downloaded on first use into ``$HARMONIZE_HOME/weights`` (default
``~/.cache/harmonize/weights``). ``$HARMONIZE_WEIGHTS_MIRROR`` replaces the host part of every
URL (a folder or an http(s) base holding the same file names), for air-gapped sites and tests.
A file is used only once verified (:mod:`.verify`); its sha256 goes into the cache's manifest.
Above the registry (what to fetch) and the layouts (what a file must fit); below the builder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

from .. import console, settings
from ..atomic import check_writable
from ..errors import DownloadError, HarmonizeError, WeightsError
from .download import download_file
from .facts import BACKBONE, PretrainedWeights
from .registry import get_weights
from .state import extract_state_dict, safe_load, sha256_of
from .verify import record, recorded, verify_file

__all__ = ["cache_path", "cached", "fetch", "fetch_url", "offline", "source_url"]


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
    if weights.kind != BACKBONE or not weights.url.startswith("https://download.pytorch.org/"):
        return None
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / weights.filename


def _check_writable(folder: Path) -> None:
    """The cache folder must be creatable and writable: one line otherwise."""
    try:
        check_writable(folder)
    except HarmonizeError as exc:
        raise DownloadError(f"cannot write the weights cache: {exc.message.split(': ', 1)[-1]} ({folder})",
                            "set HARMONIZE_HOME to a writable folder") from None


def fetch_url(url: str) -> Path:
    """A checkpoint given by URL, cached under a name derived from the whole URL (two URLs ending
    in the same file name never share a cache entry); downloaded once, loaded safely."""
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
        extract_state_dict(safe_load(path))

    path = download_file(url, target, label=name, verify=check)
    record(path, sha256_of(path), url)
    return path


def _verified_url_file(path: Path, url: str) -> Path:
    """A cached URL download, used only while it matches the manifest's sha256 (like a released
    file); one placed by hand is checked once (safe load, a state dict) and recorded."""
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
