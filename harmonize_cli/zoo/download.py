"""Downloading files into the cache: atomic (temp file, then rename), verified, with a progress bar."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from .. import console, interrupts
from ..atomic import atomic_path, remove_stale_parts
from ..errors import DownloadError, HarmonizeError

CHUNK = 1 << 20


def sha256_of(path, chunk_size: int = CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, target, sha256: Optional[str] = None, hash_prefix: Optional[str] = None,
                  timeout: float = 30.0, label: Optional[str] = None,
                  verify: Optional[Callable[[Path, str], None]] = None) -> Path:
    """Download ``url`` to ``target`` atomically and verify it.

    A short read (fewer bytes than the server announced), a wrong ``sha256``, a ``hash_prefix``
    that does not start the file's sha256, or a ``verify(temp_path, sha256)`` that raises, raise
    :class:`DownloadError`; the target then does not exist. The error names the URL and the path
    where the file can be placed by hand. ``timeout`` bounds the connection and each read.
    """
    target = Path(target)
    manual = f"download it by hand from {url} and save it as {target}"
    remove_stale_parts(target)  # what a killed download left
    try:
        with interrupts.handled(), atomic_path(target) as tmp:  # SIGTERM as Ctrl-C: no .part is left
            _fetch(url, tmp, timeout, label or target.name)
            digest = sha256_of(tmp)
            if sha256 and digest != sha256.lower():
                raise DownloadError(f"{url}: sha256 {digest[:12]}... differs from the expected {sha256[:12]}...",
                                    f"the file is damaged or not the one expected; {manual}")
            if hash_prefix and not digest.startswith(hash_prefix.lower()):
                raise DownloadError(f"{url}: sha256 {digest[:12]}... does not start with {hash_prefix}",
                                    f"the file is damaged or not the one expected; {manual}")
            if verify is not None:
                try:
                    verify(tmp, digest)
                except HarmonizeError as exc:
                    raise DownloadError(f"{url} sent {_what_arrived(exc, tmp)}; nothing was cached",
                                        manual) from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"while downloading {label or target.name}; nothing was cached") from None
    except DownloadError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"could not download {url}: {reason}", manual) from exc
    return target


def _what_arrived(error, path: Path) -> str:
    """'an HTML page of 84 bytes, not a checkpoint' and the like, for a file that failed its check."""
    from .checkpoints import describe_file

    described = describe_file(path)
    if "not a PyTorch checkpoint" in described or "not a checkpoint" in described or "empty" in described:
        return described
    return f"a file that failed verification: {error.message}"


def _fetch(url: str, destination: Path, timeout: float, label: str) -> None:
    if "://" not in url:  # a local file path acts as a mirror too
        shutil.copyfile(url, destination)
        return
    request = urllib.request.Request(url, headers={"User-Agent": "harmonize"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(destination, "wb") as out:
        announced = response.headers.get("Content-Length")
        total = int(announced) if announced and announced.isdigit() else None
        received = 0
        with console.progress("MB") as bar:
            task = bar.add_task(f"download {label}", total=(total / CHUNK) if total else None)
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.advance(task, len(chunk) / CHUNK)
        out.flush()
        os.fsync(out.fileno())
    if total is not None and received != total:
        raise DownloadError(f"{url}: received {received} of {total} bytes (truncated)",
                            f"try again, or download it by hand and save it as {destination}")
