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


def _png_bytes(width: int, height: int, colour: bool) -> bytes:
    """A PNG of black pixels (8-bit RGB when ``colour``, else 1-bit grey), compressed row by row."""
    row = b"\x00" + bytes(width * 3 if colour else (width + 7) // 8)
    compressor = zlib.compressobj(9)
    pieces = []
    batch = max(1, (1 << 24) // len(row))  # about 16 MB of scanlines at a time
    for start in range(0, height, batch):
        pieces.append(compressor.compress(row * min(batch, height - start)))
    pieces.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8 if colour else 1, 2 if colour else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(pieces)) + _chunk(b"IEND", b"")


def write_ico_bomb(path, width: int = 20000, height: int = 20000) -> Path:
    """An ICO "icon" wrapping one 8-bit RGB PNG of ``width x height`` (about 1.2 MB for 20000^2).

    Saved under any name (``.png`` in the audit): Pillow recognises the ICO from its bytes and
    its ``Image.open`` decodes the wrapped PNG in full (1.2 GB for 20000^2) before anyone can
    look at a size. The directory entry claims 256 x 256, as icons do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = _png_bytes(width, height, colour=True)
    header = struct.pack("<HHH", 0, 1, 1)  # reserved, type 1 (icon), one image
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 6 + 16)  # 0 means 256
    path.write_bytes(header + entry + png)
    return path


_MEASURED = """
import json, resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux: the largest descendant
print(json.dumps({"code": run.returncode, "stdout": run.stdout, "stderr": run.stderr, "peak_kib": peak}))
"""


def measured_cli(*args, timeout: float = 300) -> dict:
    """Run ``python -m harmonize_cli ARGS`` in a fresh process tree (this checkout's code first on
    the path): its exit code, stdout, stderr and the peak resident memory of its largest process
    (``peak_kib``; Linux units)."""
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-c", _MEASURED, sys.executable, "-m", "harmonize_cli", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=True)
    return json.loads(done.stdout)


def _zip_entry(name: bytes, method: int, crc: int, compressed_size: int, size: int, offset: int):
    """(local header, central directory record) of one zip entry (no zip64: under 4 GiB)."""
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, compressed_size, size,
                        len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, compressed_size,
                          size, len(name), 0, 0, 0, 0, 0, offset) + name
    return local, central


def write_checkpoint_bomb(path, unpacked_bytes: int = 1536 << 20) -> Path:
    """A PyTorch zip checkpoint ``{"weight": float32 zeros}`` whose one storage is deflated: a few
    MB on disk, ``unpacked_bytes`` (default 1.5 GiB) once ``torch.load`` inflates it.

    The deflate stream is one 16 MiB block of zeros compressed once and repeated (each ends with
    a full flush, so it stands alone): writing it takes well under a second.
    """
    path = Path(path)
    block = 1 << 24
    count = max(1, unpacked_bytes // block)
    size = count * block
    numel = size // 4
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush(zlib.Z_FINISH)
    crc = 0
    zeros = bytes(block)
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    prefix = path.stem.encode()
    pickled = (b"\x80\x02}q\x00X\x06\x00\x00\x00weightq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00"
               b"\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06J"
               + struct.pack("<i", numel) + b"tq\x07QK\x00J" + struct.pack("<i", numel)
               + b"\x85q\x08K\x01\x85q\t\x89ccollections\nOrderedDict\nq\n)Rq\x0btq\x0cRq\rs.")
    small = [(b"data.pkl", pickled), (b".format_version", b"1"), (b"byteorder", b"little"), (b"version", b"3\n")]
    centrals = []
    offset = 0
    with open(path, "wb") as out:
        for name, data in small:
            local, central = _zip_entry(prefix + b"/" + name, 0, zlib.crc32(data), len(data), len(data), offset)
            out.write(local + data)
            centrals.append(central)
            offset += len(local) + len(data)
        compressed = len(segment) * count + len(tail)
        local, central = _zip_entry(prefix + b"/data/0", 8, crc, compressed, size, offset)
        out.write(local)
        for _ in range(count):
            out.write(segment)
        out.write(tail)
        centrals.append(central)
        offset += len(local) + compressed
        directory = b"".join(centrals)
        out.write(directory)
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(centrals), len(centrals), len(directory),
                              offset, 0))
    return path


def inflate_packed_shapes(path, side: int = 20000) -> Path:
    """Turn a packed dataset (``harmonize prepare``, pixel storage) into a bomb in place: every
    table declares ``side x side`` images, and each pixel heap is replaced by one long enough
    for them but with no data stored (HDF5 allocates contiguous storage only when written, and
    reads the unwritten bytes as zeros): the file stays a few KB."""
    import h5py
    import numpy as np

    path = Path(path)
    with h5py.File(path, "r+") as handle:
        for kind in ("composite", "real", "mask"):
            group = handle[kind]
            channels = 1 if kind == "mask" else 3
            rows = group["shape"].shape[0]
            group["shape"][...] = np.tile(np.array([side, side, channels], np.int32), (rows, 1))
            group["offset"][...] = np.arange(rows, dtype=np.int64) * side * side * channels
            del group["pixels"]
            group.create_dataset("pixels", shape=(rows * side * side * channels,), dtype=np.uint8)
        samples = handle["samples"]
        samples["size"][...] = side
        samples["original_size"][...] = side
    return path
