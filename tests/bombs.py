"""Tiny files that declare huge images, written without ever holding the pixels in memory."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path, width: int = 28000, height: int = 28000) -> Path:
    """A valid 1-bit greyscale PNG of ``width x height`` black pixels (about 95 KB for 28000^2).

    Built by hand, one zlib stream over the scanlines, so that writing it takes a few
    megabytes of memory however large it is.
    """
    path = Path(path)
    row = b"\x00" + bytes((width + 7) // 8)  # filter type 0, then the packed bits
    compressor = zlib.compressobj(9)
    pieces = []
    batch = 256
    for start in range(0, height, batch):
        pieces.append(compressor.compress(row * min(batch, height - start)))
    pieces.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(pieces)) + _chunk(b"IEND", b"")
    )
    return path
