"""Swapped COMPOSITES and MASKS are refused in one line (exit 2) before any work; a flag forces them."""

import numpy as np
import pytest
from clitools import run_main as run
from PIL import Image

from harmonize_cli.apply.batch import harmonize_folder
from harmonize_cli.errors import UsageError


def photo(height=48, width=64, seed=0):
    """A colourful photo-like image: gradients in three directions plus noise (many levels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.8 - 0.5 * xx * yy], axis=2)
    return (np.clip(base + 0.04 * rng.standard_normal((height, width, 3)), 0, 1) * 255).astype(np.uint8)


def disc_mask(height=48, width=64):
    yy, xx = np.mgrid[0:height, 0:width]
    return (((yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (height / 3) ** 2) * 255).astype(np.uint8)


@pytest.fixture
def folders(tmp_path):
    """composites/ (two JPEG photos) and masks/ (their binary PNG masks), names pairing exactly."""
    for folder in ("composites", "masks"):
        (tmp_path / folder).mkdir()
    for index in range(2):
        Image.fromarray(photo(seed=index)).save(tmp_path / "composites" / f"p{index}.jpg", quality=92)
        Image.fromarray(disc_mask()).save(tmp_path / "masks" / f"p{index}.png")
    return tmp_path


def test_swapped_folders_are_refused_before_any_work(folders, capsys):
    out = folders / "out"
    code, _, err = run(capsys, "apply", folders / "masks", folders / "composites", "-o", out)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "swapped" in lines[0] and "--allow-odd-masks" in lines[0]
    assert "composites" in lines[0] and ".jpg" in lines[0]  # names the photo found among the masks
    assert not out.exists()  # nothing written: not even the report


def test_the_right_order_still_runs(folders, capsys):
    code, _, err = run(capsys, "apply", folders / "composites", folders / "masks", "-o", folders / "out")
    assert code == 0, err
    assert sorted(p.name for p in (folders / "out").iterdir()) == ["harmonize.json", "p0.jpg", "p1.jpg"]


def test_single_files_swapped_are_refused(folders, capsys):
    code, _, err = run(capsys, "apply", folders / "masks" / "p0.png", folders / "composites" / "p0.jpg",
                       "-o", folders / "one.png")
    assert code == 2 and "swapped" in err
    assert not (folders / "one.png").exists()


def test_force_option_runs_the_swapped_inputs(folders, capsys):
    out = folders / "out"
    code, _, err = run(capsys, "apply", folders / "masks", folders / "composites", "-o", out, "--allow-odd-masks")
    assert code == 0, err
    assert (out / "p0.png").is_file() and (out / "p1.png").is_file()


def test_gray_composites_with_colour_masks_of_few_levels_are_not_a_swap(tmp_path, capsys):
    """A real case near the line: a gray photo (many levels, one channel) and a red-on-blue mask."""
    for folder in ("c", "m"):
        (tmp_path / folder).mkdir()
    gray = photo()[..., 1]
    Image.fromarray(gray).save(tmp_path / "c" / "g.png")
    mask = disc_mask() > 0
    coloured = np.zeros(mask.shape + (3,), np.uint8)
    coloured[mask] = (255, 0, 0)
    coloured[~mask] = (0, 0, 255)
    Image.fromarray(coloured).save(tmp_path / "m" / "g.png")
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out")
    assert code == 0, err


def test_python_api_refuses_and_can_be_forced(folders):
    with pytest.raises(UsageError, match="swapped"):
        harmonize_folder(folders / "masks", folders / "composites", folders / "out")
    assert not (folders / "out").exists()
    report = harmonize_folder(folders / "masks", folders / "composites", folders / "out", swap_check=False)
    assert report.counts["done"] == 2


def test_paste_with_a_swapped_mask_is_refused(folders, capsys):
    background = folders / "bg.jpg"
    Image.fromarray(photo(96, 128, seed=5)).save(background)
    code, _, err = run(capsys, "paste", folders / "masks" / "p0.png", background, "--mask",
                       folders / "composites" / "p0.jpg", "-o", folders / "pasted.png")
    assert code == 2 and "swapped" in err and "--mask" in err
    assert not (folders / "pasted.png").exists()
