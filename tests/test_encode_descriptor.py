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


def test_without_memfd_create_at_all_an_unnamed_temporary_file_is_used(monkeypatch):
    monkeypatch.delattr(os, "memfd_create", raising=False)  # macOS, Windows
    handle = imageio._scratch_file()
    try:
        assert isinstance(handle.fileno(), int) and handle.write(b"abc") == 3
    finally:
        handle.close()


def _pillow_bytes(array, **options):
    """Pillow's own encoding with the options encode_image documents (the reference)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, **options)
    return buffer.getvalue()


def _gradient():
    return np.dstack([np.tile(np.arange(24, dtype=np.uint8) * 10, (16, 1))] * 3)  # compresses: levels differ


def test_encode_options_by_format():
    photo, gradient = _photo(), _gradient()
    assert imageio.encode_image(gradient) == _pillow_bytes(gradient, format="PNG", compress_level=3)  # the default
    assert imageio.encode_image(photo, fmt="JPEG") == _pillow_bytes(photo, format="JPEG", quality=95, subsampling=0)
    for quality, subsampling in ((90, 0), (89, 2), (75, 2)):  # 4:4:4 from quality 90 on, else 4:2:0
        assert imageio.encode_image(photo, fmt="JPEG", quality=quality) == _pillow_bytes(
            photo, format="JPEG", quality=quality, subsampling=subsampling, optimize=False), quality
    assert imageio.encode_image(photo, fmt="WEBP", quality=90) == _pillow_bytes(
        photo, format="WEBP", quality=90, lossless=False, method=4)
    lossless = imageio.encode_image(photo, fmt="WEBP", quality=100)
    assert imageio.encode_image(photo, fmt="WEBP", quality=150) == lossless  # above 100: lossless at 100
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(lossless))), photo)
    tiff = Image.open(io.BytesIO(imageio.encode_image(photo, fmt="TIFF")))
    assert tiff.tag_v2[259] == 5 and np.array_equal(np.asarray(tiff), photo)  # 5: LZW


def test_lossless_webp_keeps_the_colour_under_transparent_pixels():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[...] = (200, 100, 50)
    alpha = np.zeros((8, 8), np.uint8)
    alpha[:4] = 255
    decoded = Image.open(io.BytesIO(imageio.encode_image(rgb, alpha, fmt="WEBP", quality=100))).convert("RGBA")
    assert np.array_equal(np.asarray(decoded), np.dstack((rgb, alpha)))  # libwebp zeroes them unless exact


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_profile_and_exif_are_written_in_every_format_that_holds_them(fmt):
    exif = Image.Exif()
    exif[271] = "Maker"
    decoded = Image.open(io.BytesIO(imageio.encode_image(_photo(), fmt=fmt, icc_profile=b"a profile",
                                                         exif=exif.tobytes())))
    assert decoded.info.get("icc_profile") == b"a profile" and decoded.getexif().get(271) == "Maker"


def test_gray_results_with_alpha_by_format():
    gray = np.repeat(np.array([[0, 60], [120, 250]], np.uint8)[..., None], 3, axis=2)
    alpha = np.array([[255, 0], [128, 7]], np.uint8)
    for fmt in ("PNG", "TIFF"):
        image = imageio.to_pil(gray, alpha, gray=True, fmt=fmt)
        assert image.mode == "LA" and np.array_equal(np.asarray(image), np.dstack((gray[..., 0], alpha)))
    for fmt in ("WEBP", "BMP"):
        image = imageio.to_pil(gray, alpha, gray=True, fmt=fmt)
        assert image.mode == "RGBA" and np.array_equal(np.asarray(image), np.dstack((gray, alpha)))
    jpeg = imageio.to_pil(gray, alpha, gray=True, fmt="JPEG")
    assert jpeg.mode == "L" and np.array_equal(np.asarray(jpeg), gray[..., 0])
    default = imageio.to_pil(gray, alpha)  # PNG by default: the alpha kept
    assert default.mode == "RGBA" and np.array_equal(np.asarray(default), np.dstack((gray, alpha)))


def test_encode_for_writing_defaults_and_the_read_back_check(tmp_path, monkeypatch):
    checks = []
    real_check = imageio.check_image_file

    def recording(path, size, fmt, name=None):
        checks.append((size, fmt, name))
        return real_check(path, size, fmt, name=name)

    monkeypatch.setattr(imageio, "check_image_file", recording)
    photo = _photo()
    target = imageio.encode_for_writing(tmp_path / "r.jpg", photo)()
    assert target == tmp_path / "r.jpg"
    assert target.read_bytes() == _pillow_bytes(photo, format="JPEG", quality=95, subsampling=0)  # quality 95
    assert checks == [((64, 48), "JPEG", tmp_path / "r.jpg")]  # (width, height) read back before the rename
