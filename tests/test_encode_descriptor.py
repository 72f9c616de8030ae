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


def test_a_jpeg_exif_block_too_long_for_its_marker_is_dropped_with_the_profile():
    """JPEG holds at most 65533 bytes of EXIF (Pillow raises ValueError): the result is encoded
    again without the EXIF and the ICC profile (either may have been the cause)."""
    data = imageio.encode_image(_photo(), fmt="JPEG", quality=90, exif=b"Exif\x00\x00" + b"\x00" * 70000,
                                icc_profile=b"a profile")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.size == (64, 48) and "exif" not in decoded.info and "icc_profile" not in decoded.info


@pytest.mark.parametrize("given, second", [({}, None),
                                           ({"exif": b"E"}, {"compress_level": 3}),
                                           ({"icc_profile": b"P"}, {"compress_level": 3}),
                                           ({"exif": b"E", "icc_profile": b"P"}, {"compress_level": 3})])
def test_a_failed_encode_is_retried_without_exif_and_profile_only_when_it_had_them(given, second, monkeypatch):
    calls = []

    def failing_once(image, fmt, options):
        calls.append(dict(options))
        if len(calls) == 1:
            raise OSError("encoder error -2")
        return b"encoded " + fmt.encode()

    monkeypatch.setattr(imageio, "_saved", failing_once)
    if second is None:  # nothing to drop: the error is the caller's
        with pytest.raises(OSError, match="encoder error -2"):
            imageio.encode_image(_photo(), fmt="PNG")
        assert calls == [{"compress_level": 3}]
        return
    assert imageio.encode_image(_photo(), fmt="PNG", exif=given.get("exif"),
                                icc_profile=given.get("icc_profile")) == b"encoded PNG"
    assert calls == [dict(given, compress_level=3), second]


def test_the_scratch_file_is_a_memfd_closed_on_exec():
    """On Linux the encode goes to a memfd named for us (so /proc shows who holds it), not
    inherited by child processes."""
    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        pytest.skip("no memfd_create on this platform")
    handle = imageio._scratch_file()
    try:
        assert os.readlink(f"/proc/self/fd/{handle.fileno()}").startswith("/memfd:harmonize-encode")
        assert not os.get_inheritable(handle.fileno())
        assert handle.mode == "rb+" and handle.write(b"abc") == 3 and handle.seek(0) == 0 and handle.read() == b"abc"
    finally:
        handle.close()
