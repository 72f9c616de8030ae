"""Reading ``.safetensors`` files: an 8-byte little-endian header length, a JSON header naming
each tensor's dtype, shape and byte range, then the raw bytes. Nothing in the format can run
code; this reader needs neither the ``safetensors`` package nor a copy of the whole file.

>>> state = read_safetensors("model.safetensors")   # {name: torch.Tensor}
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ..errors import WeightsError

HEADER_LIMIT = 100 << 20  # the format's own limit on the JSON header
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}

__all__ = ["is_safetensors", "read_safetensors"]


def is_safetensors(head: bytes, size: int) -> bool:
    """True when the first bytes of a file of ``size`` bytes look like a safetensors header."""
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= min(HEADER_LIMIT, size - 8) and head[8:9] == b"{"


def _damaged(path, what: str) -> WeightsError:
    return WeightsError(f"{path} is a damaged safetensors file ({what})", "download or export it again")


def read_safetensors(path) -> dict:
    """The tensors of a safetensors file, each read into its own buffer (byte ranges checked
    against the file and the dtype x shape they declare, before reading)."""
    import torch

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise _damaged(path, "shorter than its header")
        (length,) = struct.unpack("<Q", head)
        if not 2 <= length <= min(HEADER_LIMIT, size - 8):
            raise _damaged(path, f"a header of {length} bytes in a file of {size}")
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError):
            raise _damaged(path, "its header is not JSON") from None
        if not isinstance(header, dict):
            raise _damaged(path, "its header is not a table of tensors")
        header.pop("__metadata__", None)
        data_start = 8 + length
        plan = []
        for name, entry in header.items():
            try:
                dtype = getattr(torch, _DTYPES[entry["dtype"]])
                shape = [int(v) for v in entry["shape"]]
                begin, end = (int(v) for v in entry["data_offsets"])
            except KeyError:
                raise _damaged(path, f"tensor {name!r} has the unknown dtype {entry.get('dtype')!r}"
                               if isinstance(entry, dict) and "dtype" in entry else
                               f"tensor {name!r} lacks dtype, shape or data_offsets") from None
            except (TypeError, ValueError, AttributeError):
                raise _damaged(path, f"tensor {name!r} has a malformed entry") from None
            count = 1
            for dim in shape:
                if dim < 0:
                    raise _damaged(path, f"tensor {name!r} has a negative dimension")
                count *= dim
            nbytes = count * torch.empty((), dtype=dtype).element_size()
            if not 0 <= begin <= end <= size - data_start or end - begin != nbytes:
                raise _damaged(path, f"tensor {name!r} declares {nbytes} bytes at [{begin}, {end}) "
                                     f"of {size - data_start}")
            plan.append((begin, name, dtype, shape, nbytes))
        state = {}
        for begin, name, dtype, shape, nbytes in sorted(plan, key=lambda item: item[0]):
            buffer = bytearray(nbytes)
            handle.seek(data_start + begin)
            if handle.readinto(buffer) != nbytes:
                raise _damaged(path, f"tensor {name!r} is cut short")
            tensor = torch.frombuffer(buffer, dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
            state[name] = tensor.reshape(shape)
    return state
