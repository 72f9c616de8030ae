"""The image-size limit (harmonize_cli.limits) and the decoding that relies on it (data.imageio)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bombs import write_png_bomb

from harmonize_cli import limits
from harmonize_cli.data import imageio
from harmonize_cli.errors import HarmonizeError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return write_png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_default_limit_is_200_megapixels():
    assert limits.DEFAULT_MAX_PIXELS == 200_000_000


def test_a_bomb_is_refused_from_its_header_in_one_line(bomb):
    with pytest.raises(limits.ImageTooLargeError) as info:
        limits.open_image(bomb)
    error = info.value
    assert isinstance(error, HarmonizeError) and error.exit_code == 1
    text = str(error)
    assert "\n" not in text and str(bomb) in text and "--max-pixels" in text
    assert "28000x28000" in text and "784 MP" in text and "200 MP" in text
    assert error.reason.startswith("too large: 28000x28000")


def test_the_limit_is_exclusive_and_zero_disables_it(tmp_path, bomb):
    path = tmp_path / "six.png"
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(path)
    with limits.open_image(path, max_pixels=6) as image:  # exactly at the limit: allowed
        assert image.size == (3, 2)
    with pytest.raises(limits.ImageTooLargeError):
        limits.open_image(path, max_pixels=5)
    assert limits.image_size(bomb, max_pixels=0) == (28000, 28000)  # header only, nothing decoded
    assert limits.image_size(bomb) == (28000, 28000)  # no limit unless one is given
    with pytest.raises(limits.ImageTooLargeError):
        limits.image_size(path, max_pixels=5)
    with limits.open_image(bomb, max_pixels=0) as image:
        assert image.size == (28000, 28000)


def test_a_limit_above_pillows_own_guard_is_ours_to_enforce(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((4, 50), np.uint8)).save(path)  # 200 pixels
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 10  # Pillow would raise above 20 pixels
    try:
        with limits.open_image(path, max_pixels=1000) as image:
            assert image.size == (50, 4)
        assert Image.MAX_IMAGE_PIXELS == 10  # lifted for the call only, then restored
        with pytest.raises(limits.ImageTooLargeError, match="50x4 pixels"):
            limits.open_image(path, max_pixels=100)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_importing_harmonize_leaves_pillows_global_limit_alone():
    code = (
        "from PIL import Image; before = Image.MAX_IMAGE_PIXELS; "
        "import harmonize_cli.data.imageio, harmonize_cli.data.pack, harmonize_cli.data.dataset, harmonize_cli.limits; "
        "print(before, Image.MAX_IMAGE_PIXELS)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    before, after = out.stdout.split()
    assert before == after == "89478485"


def test_imageio_checks_the_limit_before_decoding(bomb):
    with pytest.raises(limits.ImageTooLargeError):
        imageio.probe(bomb)
    with pytest.raises(limits.ImageTooLargeError):
        imageio.decode_mask(bomb.read_bytes())
    with pytest.raises(limits.ImageTooLargeError):
        imageio.decode_capped(bomb, mask=True, max_side=1024)
    assert imageio.probe(bomb, max_pixels=0) == ((28000, 28000), "png")


def _photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([128 + 60 * np.sin(x / 17.0 + c) * np.cos(y / 23.0) for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def test_ordinary_images_are_shrunk_from_a_full_decode_exactly_as_before(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(_photo(300, 400)).save(path, quality=95)
    array, header = imageio.decode_capped(path, max_side=100)
    full = np.asarray(Image.open(path).convert("RGB"))
    expected = np.asarray(Image.fromarray(full).resize((100, 75), Image.Resampling.LANCZOS))
    assert header == (300, 400) and array.shape == (75, 100, 3)
    assert np.array_equal(array, expected)


def test_huge_jpegs_are_decoded_at_a_reduced_scale_before_lanczos(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    path = tmp_path / "big.jpg"
    Image.fromarray(_photo(800, 1200)).save(path, quality=95)
    drafts = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        drafts.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    monkeypatch.setattr(imageio, "DRAFT_ABOVE_PIXELS", 100_000)  # pretend 0.96 MP is huge
    array, header = imageio.decode_capped(path, max_side=150)
    assert header == (800, 1200) and array.shape == (100, 150, 3)
    # asked for at least twice the stored size; libjpeg chose 1/4 (300 x 200 >= 300 x 200)
    assert drafts == [((300, 200), (300, 200))]
    full = np.asarray(Image.open(path).convert("RGB").resize((150, 100), Image.Resampling.LANCZOS))
    assert np.abs(array.astype(int) - full.astype(int)).mean() < 2.0  # same picture
    # not shrunk, or under the threshold: no draft
    drafts.clear()
    imageio.decode_capped(path, max_side=0)
    monkeypatch.setattr(imageio, "DRAFT_ABOVE_PIXELS", 50_000_000)
    imageio.decode_capped(path, max_side=150)
    assert drafts == []


# ---------------------------------------------------------------------------- formats from bytes
def _small_ico(path):
    from bombs import write_ico_bomb

    return write_ico_bomb(path, width=300, height=200)  # same structure as the bomb, 300 x 200


def test_an_ico_file_is_refused_from_its_first_bytes_before_pillow_opens_it(tmp_path, monkeypatch):
    ico = _small_ico(tmp_path / "holiday.png")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    with pytest.raises(limits.UnsupportedImageError) as info:
        limits.open_image(ico, max_pixels=0)  # even with the size limit off
    text = str(info.value)
    assert "\n" not in text and str(ico) in text and "ICO" in text and "convert it" in text
    assert info.value.reason.startswith("an ICO icon file") and info.value.exit_code == 1
    assert opened == []  # Pillow never saw it: its ICO plugin decodes the wrapped PNG inside open()
    with pytest.raises(imageio.DecodeError, match="ICO"):
        imageio.probe(ico.read_bytes())


@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("JPEG", {}), ("TIFF", {}), ("BMP", {}), ("WEBP", {}),
                                          ("TIFF", {"compression": "tiff_lzw"})])
def test_every_accepted_format_is_recognised_from_its_bytes(tmp_path, fmt, options):
    path = tmp_path / "image.bin"  # the name says nothing
    Image.fromarray(_photo(20, 30)).save(path, format=fmt, **options)
    assert limits.sniff_format(path.read_bytes()[:16]) == fmt
    with limits.open_image(path) as image:
        assert image.format == fmt and image.size == (30, 20)


@pytest.mark.parametrize("fmt, words", [("GIF", "a GIF file"), ("ICO", "an ICO icon"), ("PPM", "not a PNG"),
                                        ("PDF", "a PDF document")])
def test_other_formats_are_named_and_refused(tmp_path, fmt, words):
    path = tmp_path / "image.png"
    Image.fromarray(_photo(20, 30)).save(path, format=fmt)
    with pytest.raises(limits.UnsupportedImageError, match=words):
        limits.open_image(path)


def test_pillows_own_guard_stays_on_during_the_header_read(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(_photo(20, 30)).save(path)
    seen = []
    real_open = Image.open

    def spy(*args, **kwargs):
        seen.append(Image.MAX_IMAGE_PIXELS)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    default = Image.MAX_IMAGE_PIXELS
    limits.open_image(path).close()  # 200 MP: Pillow's guard raised to error just above it, never off
    limits.open_image(path, max_pixels=1000).close()  # below Pillow's threshold: left as it is
    limits.open_image(path, max_pixels=0).close()  # the user turned the limit off
    assert seen == [100_000_000, default, None]
    assert Image.MAX_IMAGE_PIXELS == default


def test_every_command_refuses_the_ico_in_one_line(tmp_path, run_cli):
    """apply, paste, synth and prepare decode through limits.open_image: the same refusal."""
    from minidata import make_mini_iharmony
    from test_apply import save_pair

    save_pair(tmp_path, "a.png")
    _small_ico(tmp_path / "c" / "a.png")
    code, out, err = run_cli("apply", tmp_path / "c" / "a.png", tmp_path / "m" / "a.png", "-o", tmp_path / "o.png",
                             "--model", "lab-transfer")
    assert code == 1 and "ICO" in err and "Traceback" not in err

    Image.fromarray(_photo(40, 60)).save(tmp_path / "bg.png")
    code, out, err = run_cli("paste", tmp_path / "c" / "a.png", tmp_path / "bg.png", "-o", tmp_path / "p.png",
                             "--model", "composite")
    assert code != 0 and "ICO" in err and "Traceback" not in err and not (tmp_path / "p.png").exists()

    for index in range(3):
        save_pair(tmp_path / "s", f"{index}.png")
    _small_ico(tmp_path / "s" / "c" / "0.png")
    code, out, err = run_cli("synth", "--images", tmp_path / "s" / "c", "--masks", tmp_path / "s" / "m",
                             "-o", tmp_path / "synth", "--seed", 0)
    assert "ICO" in out + err and "Traceback" not in err

    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=2, n_test=1)
    _small_ico(sorted((root / "HFlickr" / "composite_images").iterdir())[0])
    code, out, err = run_cli("prepare", "--root", root, "-o", tmp_path / "ds.h5", "--workers", "0")
    assert code == 0 and "ICO" in out + err and "Traceback" not in err
