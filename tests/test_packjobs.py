"""data/packjobs.py, the per-file work of the packer: header probes, decode and shrink, what is
stored (original bytes when unchanged; resized masks as lossless PNG, resized images as JPEG q90),
the foreground ratio, and every problem as a short reason instead of an exception."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from harmonize_cli.data import packjobs

NOT_AN_IMAGE = "not a PNG, JPEG, TIFF, BMP or WebP image (judged by its first bytes)"


def _soft_mask(height=40, width=64):
    """A mask with many distinct soft levels (JPEG would change them)."""
    yy, xx = np.mgrid[0:height, 0:width]
    mask = np.clip((xx * 7 + yy * 3) % 300, 0, 255).astype(np.uint8)
    mask[:, : width // 4] = 0
    return mask


def _photo(height=40, width=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _save(array, path, **options):
    Image.fromarray(array).save(path, **options)
    return str(path)


def _lanczos(array, height, width):
    return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.LANCZOS))


def test_a_resized_mask_is_stored_as_lossless_png(tmp_path):
    mask = _soft_mask()
    path = _save(mask, tmp_path / "m.png")
    result = packjobs._pack_one(("mask", 3, path, (40, 64), (20, 32)), True, True, 32, 0)
    expected = _lanczos(mask, 20, 32)
    assert result["error"] is None and result["kind"] == "mask" and result["index"] == 3
    assert result["format"] == "png" and result["encoded"][:8] == b"\x89PNG\r\n\x1a\n"
    decoded = np.asarray(Image.open(io.BytesIO(result["encoded"])))
    assert np.array_equal(decoded, expected) and np.array_equal(result["pixels"], expected)
    assert len(np.unique(expected)) > 50  # soft levels that a lossy codec would not keep
    assert result["fg_ratio"] == pytest.approx(np.count_nonzero(expected > 127) / expected.size)


def test_a_resized_image_is_jpeg_q90_and_an_unchanged_file_keeps_its_bytes(tmp_path):
    photo = _photo()
    path = _save(photo, tmp_path / "c.jpg", quality=95)
    resized = packjobs._pack_one(("composite", 0, path, (40, 64), (20, 32)), False, True, 32, 0)
    assert resized["format"] == "jpeg" and resized["encoded"][:2] == b"\xff\xd8" and "pixels" not in resized
    decoded_source = np.asarray(Image.open(path))
    reference = io.BytesIO()
    Image.fromarray(_lanczos(decoded_source, 20, 32)).save(reference, format="JPEG", quality=90)
    assert resized["encoded"] == reference.getvalue()
    assert "fg_ratio" not in resized
    kept = packjobs._pack_one(("real", 1, path, (40, 64), (40, 64)), True, True, 0, 0)
    assert kept["format"] is None and kept["encoded"] == open(path, "rb").read()
    assert np.array_equal(kept["pixels"], decoded_source)
    mask_path = _save(_soft_mask(), tmp_path / "m.png")
    kept_mask = packjobs._pack_one(("mask", 2, mask_path, (40, 64), (40, 64)), False, True, 0, 0)
    assert kept_mask["format"] is None and kept_mask["encoded"] == open(mask_path, "rb").read()


def test_the_foreground_ratio_counts_values_above_127_by_hand(tmp_path):
    mask = np.zeros((10, 10), np.uint8)
    mask[0, :5] = 128  # counted
    mask[1, :3] = 127  # not counted
    mask[2, :2] = 255  # counted
    result = packjobs._pack_one(("mask", 0, _save(mask, tmp_path / "m.png"), (10, 10), (10, 10)), True, False, 0, 0)
    assert result["fg_ratio"] == pytest.approx(7 / 100) and "encoded" not in result


def test_problems_come_back_as_reasons(tmp_path, monkeypatch):
    path = _save(_photo(), tmp_path / "c.png")
    moved = packjobs._pack_one(("composite", 0, path, (41, 64), (41, 64)), True, False, 0, 0)
    assert moved["error"] == "size 40x64 differs from the scan (file changed during packing)"
    shrunk = packjobs._pack_one(("composite", 0, path, (40, 64), (40, 64)), True, False, 32, 0)
    assert shrunk["error"] == "decoded to 20x32, not 40x64"
    gone = packjobs._pack_one(("real", 5, str(tmp_path / "gone.png"), (1, 1), (1, 1)), True, False, 0, 0)
    assert gone == {"kind": "real", "index": 5, "error": "missing (disappeared during packing)"}
    (tmp_path / "bad.png").write_bytes(b"not an image")
    bad = packjobs._pack_one(("mask", 0, str(tmp_path / "bad.png"), (1, 1), (1, 1)), True, False, 0, 0)
    assert bad == {"kind": "mask", "index": 0, "error": NOT_AN_IMAGE}
    big = packjobs._pack_one(("composite", 0, path, (40, 64), (40, 64)), True, False, 0, 100)
    assert big == {"kind": "composite", "index": 0,
                   "error": "too large: 64x40 pixels (0.0026 MP), over --max-pixels (0.0001 MP)"}

    def refused(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(packjobs.imageio, "read_bytes", refused)
    locked = packjobs._pack_one(("mask", 1, path, (40, 64), (40, 64)), True, False, 0, 0)
    assert locked == {"kind": "mask", "index": 1, "error": "cannot read file (Permission denied)"}


def test_probes_read_the_header_or_give_a_reason(tmp_path, monkeypatch):
    path = _save(_photo(), tmp_path / "c.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    results = packjobs._probe_chunk([path, str(tmp_path / "gone.png"), str(tmp_path / "bad.png")], 0)
    assert results[0] == ((40, 64), "png", None)
    assert results[1] == (None, None, "missing")
    assert results[2] == (None, None, NOT_AN_IMAGE)
    too_big = "too large: 64x40 pixels (0.0026 MP), over --max-pixels (0.0001 MP)"
    assert packjobs._probe_one(path, 100) == (None, None, too_big)
    assert packjobs._probe_chunk([path], 100) == [(None, None, too_big)]  # the limit reaches every probe

    def refused(source, max_pixels):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(packjobs.imageio, "probe", refused)
    assert packjobs._probe_one(path, 0) == (None, None, "cannot read file (Permission denied)")
    chunk = packjobs._pack_chunk([("composite", 0, path, (40, 64), (40, 64))], True, False, 0, 0)
    assert len(chunk) == 1 and chunk[0]["error"] is None


def test_out_of_memory_is_a_reason_and_a_one_pixel_mask_has_ratio_one(tmp_path, monkeypatch):
    one = packjobs._pack_one(("mask", 4, _save(np.full((1, 1), 255, np.uint8), tmp_path / "one.png"), (1, 1), (1, 1)),
                             False, False, 0, 0)
    assert one == {"kind": "mask", "index": 4, "error": None, "fg_ratio": 1.0}  # 1 / max(1, 1 pixel)

    def exhausted(data, is_mask, max_side, max_pixels):
        raise MemoryError

    monkeypatch.setattr(packjobs.imageio, "decode_capped", exhausted)
    path = _save(_photo(), tmp_path / "c.png")
    assert packjobs._pack_one(("real", 2, path, (40, 64), (40, 64)), True, True, 0, 0) == {
        "kind": "real", "index": 2, "error": "out of memory while decoding (lower --max-pixels or --workers)"}


def test_a_chunk_passes_every_option_to_each_file(tmp_path):
    mask = _soft_mask()
    path = _save(mask, tmp_path / "m.png")
    item = ("mask", 7, path, (40, 64), (20, 32))
    (result,) = packjobs._pack_chunk([item], True, True, 32, 0)
    expected = _lanczos(mask, 20, 32)  # max_side 32 reached the decoder
    assert result["index"] == 7 and result["error"] is None and result["format"] == "png"
    assert np.array_equal(result["pixels"], expected)  # store_pixels reached it
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(result["encoded"]))), expected)  # and store_encoded
    (bare,) = packjobs._pack_chunk([item], False, False, 32, 0)
    assert "pixels" not in bare and "encoded" not in bare and bare["error"] is None
    (limited,) = packjobs._pack_chunk([("mask", 7, path, (40, 64), (40, 64))], True, False, 0, 100)
    assert limited["error"] == "too large: 64x40 pixels (0.0026 MP), over --max-pixels (0.0001 MP)"  # max_pixels too
