"""harmonize_cli.apply.paste_batch: `harmonize paste` as a Python API (paste_folder / paste_file).

The object is test_paste's antialiased disc (18 x 18 once cut out) on its 64 x 48 backdrop;
positions and pixel values are derived by hand here (centre anchor at 0.5,0.5: left 32 - 9 = 23,
top 24 - 9 = 15), the harmonizer shifts the object's colour by a known constant.
"""

import numpy as np
import pytest
from PIL import Image

from harmonize_cli import paste_file, paste_folder
from harmonize_cli.errors import HarmonizeError, UsageError
from test_paste import ShiftHarmonizer, backdrop, cut, disc, expected_blend

SHIFT = (12, -30, 8)


def assert_shifted_blend(path, left, top):
    """The background bit for bit outside the object, the shifted object blended inside (within
    the rounding of the composite, as in test_paste)."""
    result = np.asarray(Image.open(path)).astype(int)
    expected = expected_blend(backdrop(), cut(disc()), left, top, SHIFT)
    outside = np.ones(result.shape[:2], bool)
    outside[top:top + 18, left:left + 18] = cut(disc())[..., 3] == 0
    assert np.array_equal(result[outside], backdrop()[outside])
    assert np.abs(result - expected).max() <= 1
    assert tuple(result[top + 9, left + 9]) == (240 + 12, 120 - 30, 20 + 8)  # an opaque pixel: orange + SHIFT


@pytest.fixture
def scene(tmp_path):
    Image.fromarray(backdrop()).save(tmp_path / "bg.png")
    objects = tmp_path / "objects"
    objects.mkdir()
    Image.fromarray(disc()).save(objects / "a.png")  # pasted
    Image.fromarray(disc()[..., :3]).save(objects / "b.png")  # no alpha and no mask: fails
    Image.fromarray(disc()).save(objects / "c.png")  # its output exists: skipped
    out = tmp_path / "out"
    out.mkdir()
    (out / "c.png").write_bytes(b"an earlier result")
    return tmp_path


def test_paste_folder_reports_each_object_and_writes_the_exact_blend(scene):
    started, done = [], []
    report = paste_folder(scene / "objects", scene / "bg.png", scene / "out", at="0.5,0.5",
                          harmonizer=ShiftHarmonizer(SHIFT), on_start=started.append,
                          on_done=lambda task: done.append(task.source.name))
    assert report.counts == {"done": 1, "skipped": 1, "failed": 1}
    assert [(task.source.name, task.status) for task in report.tasks] == [("a.png", "done"), ("b.png", "failed"),
                                                                         ("c.png", "skipped")]
    assert started == [2] and done == ["a.png", "b.png"]  # the skipped one is not to do
    a, b, c = report.tasks
    assert a.output == scene / "out" / "a.png" and a.reason is None and a.warning is None
    assert (a.placement.left, a.placement.top, a.placement.width, a.placement.height) == (23, 15, 18, 18)
    assert a.where == "18x18 at 23,15"
    assert_shifted_blend(a.output, 23, 15)
    assert "no alpha" in b.reason and str(scene / "objects" / "b.png") in b.reason and not b.output.exists()
    assert c.reason == "output exists (use --overwrite to replace it)"
    assert (scene / "out" / "c.png").read_bytes() == b"an earlier result"
    assert report.failed == [b] and report.out == scene / "out" and report.seconds > 0


def test_paste_folder_overwrite_scale_bottom_anchor_and_side_files(scene):
    report = paste_folder(scene / "objects", scene / "bg.png", scene / "out", at=(32, 40), anchor="bottom",
                          scale=0.5, overwrite=True, save_composite=True, ext="jpg",
                          harmonizer=ShiftHarmonizer(SHIFT))
    assert report.counts == {"done": 2, "skipped": 0, "failed": 1}
    c = report.tasks[2]
    assert c.output == scene / "out" / "c.jpg"  # --ext: the folder's results in that format
    # half size: 9 x 9, its bottom middle at (32, 40): left 32 - 4.5 -> 28 (rounded), top 40 - 9 = 31
    assert (c.placement.width, c.placement.height, c.placement.top) == (9, 9, 31)
    assert c.where.startswith("9x9 at ") and c.where.endswith(", scale 0.5")
    mask = np.asarray(Image.open(scene / "out" / "c_mask.png"))
    rows = np.flatnonzero(mask.any(axis=1))
    assert (rows[0], rows[-1]) == (31, 39)
    assert Image.open(scene / "out" / "c_composite.png").size == (64, 48)


def test_paste_file_into_a_folder_then_skipped_and_errors_raise(scene):
    result = scene / "single"
    report = paste_file(scene / "objects" / "a.png", scene / "bg.png", f"{result}/", at="0.5,0.5",
                        harmonizer=ShiftHarmonizer(SHIFT))
    (task,) = report.tasks
    assert task.status == "done" and task.output == result / "a.png"
    first = task.output.read_bytes()
    assert_shifted_blend(task.output, 23, 15)
    again = paste_file(scene / "objects" / "a.png", scene / "bg.png", result / "a.png", at="10,10",
                       harmonizer=ShiftHarmonizer(SHIFT))
    assert again.tasks[0].status == "skipped" and task.output.read_bytes() == first
    with pytest.raises(HarmonizeError, match="no alpha"):  # one object: its problem is the error
        paste_file(scene / "objects" / "b.png", scene / "bg.png", scene / "b_out.png",
                   harmonizer=ShiftHarmonizer(SHIFT))
    assert not (scene / "b_out.png").exists()


def test_outputs_are_planned_before_any_work(scene):
    Image.fromarray(disc()).convert("RGB").save(scene / "objects" / "a.jpg")  # same stem as a.png
    report = paste_folder(scene / "objects", scene / "bg.png", scene / "out2", harmonizer=ShiftHarmonizer(SHIFT),
                          overwrite=True)
    first, second = report.tasks[:2]
    assert (first.source.name, second.source.name) == ("a.jpg", "a.png")
    assert second.status == "failed" and second.reason == "output a.png would also be written for a.jpg"
    with pytest.raises(UsageError, match="is the OBJECT folder"):
        paste_folder(scene / "objects", scene / "bg.png", scene / "objects", harmonizer=ShiftHarmonizer(SHIFT))
    with pytest.raises(UsageError, match="would overwrite an input"):
        paste_file(scene / "objects" / "a.png", scene / "bg.png", scene / "bg.png", overwrite=True,
                   harmonizer=ShiftHarmonizer(SHIFT))
    with pytest.raises(UsageError, match="exclude each other"):
        paste_file(scene / "objects" / "a.png", scene / "bg.png", scene / "x.png", scale=2, height=10)
    assert not (scene / "x.png").exists()


def test_sigterm_stops_a_folder_paste_like_ctrl_c(scene):
    """paste had no signal handling: SIGTERM killed it (exit -15, a `.part` could stay behind)."""
    from test_data_guards import _one_line, _sigterm_when_stalled

    (scene / "objects" / "b.png").unlink()
    out = scene / "pasted"
    code, err = _sigterm_when_stalled(scene, "harmonize_cli.apply.paste_batch", "_paste_one", 1,
                                      ["paste", scene / "objects", scene / "bg.png", "-o", out, "--model",
                                       "composite"])
    assert code == 143, err
    assert "interrupted (SIGTERM)" in _one_line(err) and "finished results are kept" in err
    assert sorted(path.name for path in out.iterdir()) == ["a.png"]  # the first one is done, nothing partial
