"""The per-file work of the packer, run in worker processes: probe a header, decode and shrink.

Both never raise for bad data: a problem comes back as a short reason for the report.
"""

from __future__ import annotations

import numpy as np

from ..limits import ImageTooLargeError
from . import imageio


def _probe_one(path: str, max_pixels: int):
    try:
        size, fmt = imageio.probe(path, max_pixels)
        return size, fmt, None
    except FileNotFoundError:
        return None, None, "missing"
    except ImageTooLargeError as exc:
        return None, None, exc.reason
    except imageio.DecodeError as exc:
        return None, None, str(exc)
    except OSError as exc:
        return None, None, f"cannot read file ({exc.strerror or exc})"


def _probe_chunk(paths, max_pixels):
    return [_probe_one(p, max_pixels) for p in paths]


def _pack_one(item, store_pixels: bool, store_encoded: bool, max_side: int, max_pixels: int):
    """Decode, check, resize and encode one file. Returns a dict (never raises for bad data)."""
    kind, index, path, size, stored = item
    failed = {"kind": kind, "index": index}
    try:
        data = imageio.read_bytes(path)
        array, header_size = imageio.decode_capped(data, kind == "mask", max_side, max_pixels)
    except FileNotFoundError:
        return {**failed, "error": "missing (disappeared during packing)"}
    except ImageTooLargeError as exc:
        return {**failed, "error": exc.reason}
    except imageio.DecodeError as exc:
        return {**failed, "error": str(exc)}
    except OSError as exc:
        return {**failed, "error": f"cannot read file ({exc.strerror or exc})"}
    except MemoryError:
        return {**failed, "error": "out of memory while decoding (lower --max-pixels or --workers)"}
    if tuple(header_size) != tuple(size):
        got = f"{header_size[0]}x{header_size[1]}"
        return {**failed, "error": f"size {got} differs from the scan (file changed during packing)"}
    if tuple(array.shape[:2]) != tuple(stored):
        return {**failed, "error": f"decoded to {array.shape[0]}x{array.shape[1]}, not {stored[0]}x{stored[1]}"}
    resized = tuple(stored) != tuple(size)
    result = {**failed, "error": None}
    if kind == "mask":
        result["fg_ratio"] = float(np.count_nonzero(array > 127)) / max(1, array.size)
    if store_pixels:
        result["pixels"] = np.ascontiguousarray(array)
    if store_encoded:
        if resized:
            fmt = "png" if kind == "mask" else "jpeg"
            result["encoded"], result["format"] = imageio.encode(array, fmt), fmt
        else:
            result["encoded"], result["format"] = data, None  # original bytes, untouched
    return result


def _pack_chunk(items, store_pixels, store_encoded, max_side, max_pixels):
    return [_pack_one(item, store_pixels, store_encoded, max_side, max_pixels) for item in items]
