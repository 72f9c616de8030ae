"""Downloading files into the cache: atomic (temp file, then rename), verified, with a progress bar."""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from .. import console, interrupts
from ..atomic import atomic_path, remove_stale_parts
from ..errors import DownloadError, HarmonizeError
from .bounds import check_file, max_weights_bytes
from .state import CHUNK, describe_file, sha256_of

__all__ = ["CHUNK", "download_file", "sha256_of"]

def download_file(url: str, target, sha256: Optional[str] = None, hash_prefix: Optional[str] = None,
                  timeout: float = 30.0, label: Optional[str] = None,
                  verify: Optional[Callable[[Path, str], None]] = None,
                  deadline: Optional[float] = None, max_bytes: Optional[int] = None,
                  min_rate: Optional[float] = None) -> Path:
    """Download ``url`` to ``target`` atomically and verify it.

    A short read (fewer bytes than the server announced), a wrong ``sha256``, a ``hash_prefix``
    that does not start the file's sha256, or a ``verify(temp_path, sha256)`` that raises, raise
    :class:`DownloadError`; the target then does not exist. The error names the URL and the path
    where the file can be placed by hand. ``timeout`` bounds the connection and each read;
    ``deadline`` (seconds) bounds the whole download, however slowly the server drips; with
    ``min_rate`` (bytes/s) it is a grace period instead: past it the download goes on only while
    its average rate stays at or above ``min_rate``, so a slow-drip server is dropped at the
    deadline while an ordinary slow connection finishes.
    The body is capped at ``max_bytes`` (default: the weights limit,
    :func:`~harmonize_cli.zoo.bounds.max_weights_bytes`) and at the length the server announced:
    an endless body stops there.
    """
    target = Path(target)
    manual = f"download it by hand from {url} and save it as {target}"
    remove_stale_parts(target)  # what a killed download left
    try:
        with interrupts.handled(), atomic_path(target) as tmp:  # SIGTERM as Ctrl-C: no .part is left
            _fetch(url, tmp, timeout, label or target.name, max_bytes, deadline, manual, min_rate)
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
    described = describe_file(path)
    if "not a PyTorch checkpoint" in described or "not a checkpoint" in described or "empty" in described:
        return described
    return f"a file that failed verification: {error.message}"


def _fetch(url: str, destination: Path, timeout: float, label: str, max_bytes: Optional[int] = None,
           deadline: Optional[float] = None, manual: str = "", min_rate: Optional[float] = None) -> None:
    cap = max_weights_bytes() if max_bytes is None else int(max_bytes)
    if "://" not in url:  # a local file path acts as a mirror too
        check_file(url, cap)  # a FIFO or /dev/zero as a mirror would never end
        shutil.copyfile(url, destination)
        return
    started = time.monotonic()
    received = 0

    def remaining(default):
        """Seconds the next wait may take; raises once the deadline (with ``min_rate``: the pace) is missed."""
        if deadline is None:
            return default
        elapsed = time.monotonic() - started
        due = deadline if min_rate is None else max(deadline, received / min_rate)  # bytes buy time
        if due - elapsed > 1e-3:
            return min(default, due - elapsed)
        if min_rate is None:
            raise DownloadError(f"{url}: no complete answer within {deadline:g} s",
                                f"the server is too slow; {manual}")
        raise DownloadError(f"{url}: no complete answer within {deadline:g} s ({received} bytes in "
                            f"{elapsed:.0f} s, under {min_rate / 1000:g} kB/s)", f"the server is too slow; {manual}")

    request = urllib.request.Request(url, headers={"User-Agent": "harmonize"})
    try:
        response_cm = urllib.request.urlopen(request, timeout=remaining(timeout))
    except (socket.timeout, TimeoutError, urllib.error.URLError):
        remaining(timeout)  # past the deadline: say so
        raise
    with response_cm as response, open(destination, "wb") as out:
        announced = response.headers.get("Content-Length")
        total = int(announced) if announced and announced.isdigit() else None
        if total is not None and total > cap:
            raise DownloadError(f"{url}: the server announces {total} bytes, over the limit of {cap} for a "
                                "weights file", "check the URL; raise HARMONIZE_MAX_WEIGHTS_MB if it is genuine")
        limit = cap if total is None else total
        sock = _socket_of(response)
        with console.progress("MB") as bar:
            task = bar.add_task(f"download {label}", total=(total / CHUNK) if total else None)
            while True:
                if sock is not None:
                    sock.settimeout(remaining(timeout))
                try:
                    chunk = response.read1(CHUNK)  # returns what arrived: a slow drip cannot hold it
                except (socket.timeout, TimeoutError):
                    remaining(timeout)  # past the deadline: say so
                    raise
                if not chunk:
                    break
                received += len(chunk)
                if received > limit:
                    what = f"more than the {total} bytes it announced" if total is not None else \
                        f"more than {cap} bytes, the limit for a weights file"
                    raise DownloadError(f"{url}: the server sent {what}; stopped there", f"check the URL, or {manual}")
                out.write(chunk)
                bar.advance(task, len(chunk) / CHUNK)
                remaining(timeout)
        out.flush()
        os.fsync(out.fileno())
    if total is not None and received != total:
        raise DownloadError(f"{url}: received {received} of {total} bytes (truncated)", f"try again, or {manual}")


def _socket_of(response):
    """The socket under an ``http.client`` response, to shorten its timeout as the deadline nears
    (None where the standard library keeps it elsewhere: the deadline is then checked per read)."""
    raw = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if hasattr(sock, "settimeout") else None
