"""Pillow's warnings about a file ("Corrupt EXIF data", ...) never reach the terminal raw: the
header read keeps them with the image (limits.open_image), apply reports them once per file
at -v and writes the result without the damaged EXIF block."""

from __future__ import annotations

import struct
import warnings

import numpy as np
from PIL import Image

from test_apply import box_mask

from harmonize_cli import limits


def _jpeg_with_damaged_exif(path, seed):
    """A JPEG whose EXIF block is a TIFF header and an IFD cut short at a random place (seeded)."""
    rng = np.random.default_rng(seed)
    entries = int(rng.integers(2, 60))
    ifd = struct.pack("<H", entries) + rng.integers(0, 256, int(rng.integers(0, 12 * entries - 1)), np.uint8).tobytes()
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), np.uint8)).save(path, exif=exif)
    return path


def test_the_header_read_keeps_pillows_warnings_with_the_image(tmp_path):
    path = _jpeg_with_damaged_exif(tmp_path / "a.jpg", seed=0)
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        with limits.open_image(path) as image:
            assert any("Corrupt EXIF data" in note for note in image.open_warnings)
        assert limits.image_size(path) == (56, 40)
    assert [str(w.message) for w in escaped] == []


def test_apply_reports_damaged_exif_once_per_file_at_verbose(tmp_path, run_cli):
    (tmp_path / "c").mkdir()
    (tmp_path / "m").mkdir()
    names = []
    for seed in range(12):
        _jpeg_with_damaged_exif(tmp_path / "c" / f"p{seed}.jpg", seed)
        Image.fromarray(box_mask(40, 56)).save(tmp_path / "m" / f"p{seed}.png")
        names.append(f"p{seed}.jpg")
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        code, out, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out",
                                 "--model", "lab-transfer", "-v")
    assert code == 0, err
    assert [str(w.message) for w in escaped if "EXIF" in str(w.message)] == []
    text = " ".join(err.split())
    reported = [name for name in names if f"{name}: Corrupt EXIF data" in text]
    assert reported == names  # every cut (seeded) leaves Pillow short of bytes: one line for each
    for name in reported:
        assert text.count(f"{name}: Corrupt EXIF data") == 1
        result = Image.open(tmp_path / "out" / name)
        assert len(result.getexif()) == 0  # the damaged block is not copied
    code, out, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "quiet", "--model", "lab-transfer")
    assert "EXIF" not in err


def test_threads_opening_damaged_files_at_once_each_keep_exactly_their_own_warnings(tmp_path):
    """apply decodes in a pool: one thread's warnings must never land in another's notes or on
    stderr (``warnings.catch_warnings`` swaps process-wide state and fails this)."""
    import threading

    clean = tmp_path / "clean.png"
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(clean)
    damaged = [_jpeg_with_damaged_exif(tmp_path / f"d{seed}.jpg", seed) for seed in range(4)]
    wrong, start = [], threading.Barrier(8)

    def work(path, expect_notes):
        start.wait()
        for _ in range(250):
            with limits.open_image(path) as image:
                notes = image.open_warnings
            if bool(notes) != expect_notes or any("EXIF" not in note for note in notes):
                wrong.append((path.name, notes))

    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=work, args=(path, True)) for path in damaged]
        threads += [threading.Thread(target=work, args=(clean, False)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert wrong == []
    assert [str(w.message) for w in escaped if "EXIF" in str(w.message)] == []


def test_the_same_damage_seen_twice_is_noted_twice_and_other_warnings_pass_through_unchanged(tmp_path):
    """Pillow's warnings repeat (filter ``always`` for PIL only); a warning raised where no thread
    collects goes to the previous handler as it was (message, category, file, line), and other
    libraries' repeated warnings keep their usual once-per-place rule."""
    from harmonize_cli import warncapture

    path = _jpeg_with_damaged_exif(tmp_path / "a.jpg", seed=0)
    with warnings.catch_warnings(record=True) as passed:
        warnings.simplefilter("default")
        for _ in range(2):
            with limits.open_image(path) as image:
                assert any("Corrupt EXIF data" in note for note in image.open_warnings)
        with warncapture.collected():
            pass
        registry = {}
        for _ in range(2):
            warnings.warn_explicit("elsewhere", RuntimeWarning, "other.py", 7, module="other", registry=registry)
    assert [(str(w.message), w.category, w.filename, w.lineno) for w in passed] == [
        ("elsewhere", RuntimeWarning, "other.py", 7)]


def test_the_hook_hands_every_argument_to_the_previous_handler_from_any_thread():
    """A thread that never collected (no state of ours) and the optional file/line arguments reach
    the handler that was in place before, as given."""
    import io
    import threading

    from harmonize_cli import warncapture

    received = []
    saved = warnings.showwarning
    try:
        warnings.showwarning = lambda *args: received.append(args)
        with warncapture.collected():
            pass
        stream = io.StringIO()
        warnings.showwarning("direct", UserWarning, "f.py", 3, stream, "source line")
        thread = threading.Thread(target=warnings.showwarning, args=("fresh", UserWarning, "g.py", 4))
        thread.start()
        thread.join()
    finally:
        warnings.showwarning = saved
    assert received == [("direct", UserWarning, "f.py", 3, stream, "source line"),
                        ("fresh", UserWarning, "g.py", 4, None, None)]


def test_inside_one_collection_pillow_repeats_its_warning_for_each_file():
    """Two files with the same damage read in one ``collected()`` block: two notes (the filter
    ``always`` for PIL; Python's default rule would show the second as a repeat)."""
    import io

    from harmonize_cli import warncapture

    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    ifd = struct.pack("<H", 20) + bytes(7)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(
        buffer, "JPEG", exif=b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd)
    with warncapture.collected() as caught:
        for _ in range(2):
            Image.open(io.BytesIO(buffer.getvalue())).getexif()
    assert len([text for text in caught.messages() if "Corrupt EXIF data" in text]) == 2
