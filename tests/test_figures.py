"""Pictures a user sees: titled columns (--comparison, training grids, the examples grid) and
curves.png for runs without TensorBoard."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clitools import run_main as run
from PIL import Image

from harmonize_cli.labels import band_height, font_size_for, label_columns
from harmonize_cli.training.curves import LINE, PANEL, draw_curves, plot_box

ROOT = Path(__file__).resolve().parents[1]


def photo(height=60, width=80, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.8 - 0.5 * xx * yy], axis=2)
    return (np.clip(base + 0.04 * rng.standard_normal((height, width, 3)), 0, 1) * 255).astype(np.uint8)


def dark_columns(band, column_width, gap, columns):
    """For each column, whether the band holds dark (text) pixels inside that column's span."""
    dark = (band.min(axis=2) < 128)
    return [bool(dark[:, i * (column_width + gap): i * (column_width + gap) + column_width].any())
            for i in range(columns)]


def test_label_columns_adds_a_titled_band_and_keeps_the_image():
    image = photo(60, 2 * 80 + 8)
    labelled = label_columns(image, ["composite", "harmonized"], column_width=80, gap=8)
    band = band_height(font_size_for(80))
    assert labelled.shape == (60 + band, 2 * 80 + 8, 3)
    assert np.array_equal(labelled[band:], image)  # the picture itself is untouched
    assert dark_columns(labelled[:band], 80, 8, 2) == [True, True]  # a title over each column
    assert not np.array_equal(label_columns(image, ["a", "b"], 80, 8)[:band], labelled[:band])


def test_comparison_images_have_titled_columns(tmp_path, capsys):
    for folder in ("c", "m"):
        (tmp_path / folder).mkdir()
    image = photo(60, 80)
    Image.fromarray(image).save(tmp_path / "c" / "x.png")
    mask = np.zeros((60, 80), np.uint8)
    mask[15:45, 20:60] = 255
    Image.fromarray(mask).save(tmp_path / "m" / "x.png")
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--comparison")
    assert code == 0, err
    comparison = np.asarray(Image.open(tmp_path / "out" / "comparison" / "x.jpg").convert("RGB"))
    band = band_height(font_size_for(80))
    assert comparison.shape == (60 + band, 2 * 80 + 8, 3)  # grew by the band, above the two images
    assert dark_columns(comparison[:band], 80, 8, 2) == [True, True]
    below = comparison[band:, :80].astype(int)
    assert np.abs(below - image).mean() < 6  # the composite itself (JPEG) is below its title


def test_curves_trace_follows_the_values():
    """A falling loss is drawn as a line that only goes down (rows grow), from the plot's top-left
    corner to its bottom-right one; a V-shaped series has its lowest point in the middle."""
    falling = [{"epoch": e, "train_loss": 2.0 / e, "val": None} for e in range(1, 9)]
    picture = draw_curves(falling)
    assert picture.shape == (PANEL[1], PANEL[0], 3)  # one panel: no validation values
    left, top, right, bottom = plot_box()
    line = np.all(np.abs(picture.astype(int) - LINE) <= 30, axis=2)
    columns = [x for x in range(left + 4, right - 3) if line[top - 3:bottom + 4, x].any()]
    assert len(columns) > 0.9 * (right - left - 7)
    trace = [np.flatnonzero(line[:, x]).mean() for x in columns]
    assert all(b >= a - 1.0 for a, b in zip(trace, trace[1:]))  # monotone, up to antialiasing
    assert abs(np.flatnonzero(line[:, left + 1]).mean() - top) <= 4
    assert abs(np.flatnonzero(line[:, right - 1]).mean() - bottom) <= 4

    vee = [{"epoch": e, "train_loss": abs(e - 5) + 1.0, "val": {"MSE": 10.0 - e, "fMSE": 20.0, "PSNR": 30.0}}
           for e in range(1, 10)]
    picture = draw_curves(vee)
    assert picture.shape == (PANEL[1], 3 * PANEL[0], 3)  # train loss, validation MSE and fMSE
    line = np.all(np.abs(picture[:, :PANEL[0]].astype(int) - LINE) <= 30, axis=2)
    rows = {x: np.flatnonzero(line[top - 3:bottom + 4, x]).mean() for x in range(left + 4, right - 3)
            if line[top - 3:bottom + 4, x].any()}
    lowest = max(rows, key=rows.get)  # the largest row is the smallest value
    assert abs(lowest - (left + right) / 2) <= 6


def test_curves_need_a_finite_value():
    assert draw_curves([{"epoch": 1, "train_loss": float("nan"), "val": None}]) is None


def test_examples_grid_script_draws_a_small_titled_picture(tmp_path):
    out = tmp_path / "grid.jpg"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "make_figures.py"), "-o", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert out.stat().st_size < 300 * 1024
    assert picture.shape[1] == 3 * 240 + 2 * 6
    assert dark_columns(picture[:band_height(14)], 240, 6, 3) == [True, True, True]
    composites = len(list((ROOT / "examples" / "composites").iterdir()))
    assert picture.shape[0] > composites * 150


@pytest.mark.parametrize("doc", ["README.md", "docs/apply.md"])
def test_the_shipped_grid_is_shown_in_the_docs(doc):
    shipped = ROOT / "docs" / "images" / "examples_grid.jpg"
    assert shipped.is_file() and shipped.stat().st_size < 300 * 1024
    assert "images/examples_grid.jpg" in (ROOT / doc).read_text()
