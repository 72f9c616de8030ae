"""Results are encoded into an in-memory file with a descriptor, not a BytesIO (issue 28): Pillow
holds the GIL for a whole encode into a Python buffer, which stalled the network's thread."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from harmonize_cli.apply import imageio


def _photo():
    return np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt, options", [("JPEG", {"quality": 85, "subsampling": 2, "optimize": False}),
                                          ("PNG", {"compress_level": 3}), ("WEBP", {"quality": 80})])
def test_encoding_goes_to_a_descriptor_and_gives_the_same_bytes(fmt, options, monkeypatch):
    image = Image.fromarray(_photo())
    expected = io.BytesIO()
    image.save(expected, format=fmt, **options)
    handles = []
    save = Image.Image.save

    def recording(self, fp, *args, **kwargs):
        handles.append((fp, fp.fileno()))  # raises for a BytesIO
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", recording)
    data = imageio._saved(image, fmt, dict(options))
    assert data == expected.getvalue()
    assert len(handles) == 1 and isinstance(handles[0][1], int)  # a real descriptor, not BytesIO
    assert handles[0][0].closed  # and closed after use


def test_without_memfd_an_unnamed_temporary_file_is_used(monkeypatch):
    def refused(*args):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "memfd_create", refused, raising=False)
    handle = imageio._scratch_file()
    try:
        assert isinstance(handle.fileno(), int) and not hasattr(handle, "getvalue")
    finally:
        handle.close()
    image = Image.fromarray(_photo())
    data = imageio.encode_image(_photo(), fmt="PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(image))


def test_a_malformed_exif_block_is_dropped_and_the_result_still_encoded():
    data = imageio.encode_image(_photo(), fmt="JPEG", quality=90, exif=b"not an exif block at all")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.size == (64, 48) and "exif" not in decoded.info
