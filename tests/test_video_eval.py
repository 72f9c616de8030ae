"""Video datasets in HYouTube's layout: `prepare` packs clips of frames, `eval` reports per clip and flicker.

Values are checked against closed-form numbers (flat frames with a known foreground offset)
and against a NumPy computation straight from the image files, never against the product.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from clitools import run_main
from minivideo import load_manifest, make_mini_hyoutube
from PIL import Image

from harmonize_cli.data import HarmonizationDataset, pack_dataset
from harmonize_cli.data.layout import DatasetError
from harmonize_cli.evaluation.video_metrics import clip_table, foreground_flicker


def run(capsys, *argv):
    return run_main(capsys, "-q", *argv)


# ------------------------------------------------------------------ a set whose answer is known
REAL = (100, 150, 200)  # every real frame is this flat colour; the target's maximum is 200
HEIGHT, WIDTH = 4, 5  # 20 pixels
# clip -> frames (file stem, foreground pixels as (row, col), offset added to the foreground)
FLAT_CLIPS = {
    # names sort differently as text (1, 10, 2) and as numbers (1, 2, 10): frame order matters
    "va/object_0": [("1", [(0, c) for c in range(5)], 10),
                    ("2", [(1, c) for c in range(5)], 16),
                    ("10", [(2, c) for c in range(5)], 10)],
    "vb/object_0": [("00000", [(r, c) for r in range(2) for c in range(5)], -20),
                    ("00005", [(r, c) for r in range(2, 4) for c in range(5)], -20)],
}


def _flat_set(root: Path) -> Path:
    """Two test clips of flat frames (lossless PNG); the composite adds an offset on the foreground."""
    lines = []
    for clip, frames in FLAT_CLIPS.items():
        video = clip.split("/")[0]
        for stem, pixels, offset in frames:
            real = np.zeros((HEIGHT, WIDTH, 3), np.uint8) + np.array(REAL, np.uint8)
            mask = np.zeros((HEIGHT, WIDTH), np.uint8)
            for r, c in pixels:
                mask[r, c] = 255
            composite = real.astype(np.int16)
            composite[mask > 0] += offset
            for folder, array in (("real_videos/" + video, real), ("foreground_mask/" + clip, mask),
                                  ("synthetic_composite_videos/" + clip, composite.astype(np.uint8))):
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / folder / f"{stem}.png")
        lines.append(f"real_videos/{video} foreground_mask/{clip} synthetic_composite_videos/{clip}")
    (root / "test_list.txt").write_text("\r\n".join(lines) + "\r\n")  # CRLF, as some copies have
    return root


def _psnr(mse):
    return 10 * math.log10(200.0 ** 2 / mse)


def test_hand_computed_mse_fmse_psnr_and_flicker_per_clip_and_overall(tmp_path, capsys):
    root = _flat_set(tmp_path / "HYouTube")
    code, _, err = run(capsys, "prepare", "--root", root, "--workers", "0", "--splits", "test")
    assert code == 0, err
    out, table = tmp_path / "r.json", tmp_path / "r.csv"
    code, _, err = run(capsys, "eval", "--data", root / "hyoutube.h5", "--model", "composite", "--resize", "none",
                       "--workers", "0", "-o", out, "--csv", table, "--markdown", tmp_path / "r.md")
    assert code == 0, err
    clips = json.loads(out.read_text())["by_clip"]
    assert list(clips) == ["va/object_0", "vb/object_0", "All"]
    # (the composite goes through normalisation and back in float32: 1e-5 relative)
    # va: 5 of 20 pixels shifted by 10, 16, 10 in every channel: MSE = d^2 * 5/20, fMSE = d^2
    va, vb, overall = clips["va/object_0"], clips["vb/object_0"], clips["All"]
    assert va["N"] == 3 and va["pairs"] == 2
    assert va["MSE"] == pytest.approx((25 + 64 + 25) / 3, rel=1e-5)
    assert va["fMSE"] == pytest.approx((100 + 256 + 100) / 3, rel=1e-5)
    assert va["PSNR"] == pytest.approx((2 * _psnr(25) + _psnr(64)) / 3, rel=1e-5)
    assert va["flicker"] == pytest.approx(6.0, abs=1e-4)  # |16 - 10| twice, in frame order 1, 2, 10
    # vb: 10 of 20 pixels shifted by -20 in both frames: no flicker
    assert vb["N"] == 2 and vb["MSE"] == pytest.approx(200, rel=1e-5) and vb["fMSE"] == pytest.approx(400, rel=1e-5)
    assert vb["PSNR"] == pytest.approx(_psnr(200), rel=1e-5) and vb["flicker"] == pytest.approx(0, abs=1e-4)
    # overall: the mean over the 5 frames (not over the 2 clips), flicker over the 3 pairs
    assert overall["N"] == 5 and overall["clips"] == 2 and overall["pairs"] == 3
    assert overall["MSE"] == pytest.approx(514 / 5, rel=1e-5)  # the mean of clip means would be 119
    assert overall["fMSE"] == pytest.approx(1256 / 5, rel=1e-5)
    assert overall["PSNR"] == pytest.approx((2 * _psnr(25) + _psnr(64) + 2 * _psnr(200)) / 5, rel=1e-5)
    assert overall["flicker"] == pytest.approx(12 / 3, abs=1e-4)  # the mean of clip flickers would be 3
    rows = {row["group"]: row for row in csv.DictReader(io.StringIO(table.read_text())) if row["table"] == "clip"}
    assert set(rows) == {"va/object_0", "vb/object_0", "All"}
    assert float(rows["All"]["flicker"]) == pytest.approx(4.0) and float(rows["va/object_0"]["MSE"]) == pytest.approx(38, rel=1e-5)
    markdown = (tmp_path / "r.md").read_text()
    assert "| clip | N | MSE | fMSE | PSNR | flicker |" in markdown and "| va/object_0 | 3 | 38.00 |" in markdown


# ------------------------------------------------------------------------- the temporal figure
def _clip_with_offsets(offsets, empty=()):
    """Frames of a moving object on noise; prediction = target + offsets[t] on the foreground and
    large random errors on the background (which the figure must ignore)."""
    generator = torch.Generator().manual_seed(0)
    frames = len(offsets)
    target = torch.rand(frames, 3, 24, 32, generator=generator) * 255
    mask = torch.zeros(frames, 1, 24, 32)
    for t in range(frames):
        if t not in empty:
            mask[t, 0, 4 + t : 12 + t, 3 + 2 * t : 15 + 2 * t] = 1.0  # the object moves
            mask[t, 0, 3 + t, 3 + 2 * t : 15 + 2 * t] = 0.4  # a soft edge
    offset = torch.tensor(offsets, dtype=torch.float32)[:, :, None, None]
    background = torch.rand(frames, 3, 24, 32, generator=generator) * 80 - 40
    pred = target + torch.where(mask > 0, offset.expand_as(target), background)
    return pred, target, mask


def test_flicker_of_a_known_foreground_offset_sequence():
    offsets = [(0, 0, 0), (3, -3, 6), (3, -3, 6), (-1, 2, 0)]
    # changes per pair: (3 + 3 + 6) / 3 = 4, 0, (4 + 5 + 6) / 3 = 5; mean 3
    assert foreground_flicker(*_clip_with_offsets(offsets)) == pytest.approx(3.0, abs=1e-5)
    cast = [(o[0] + 40, o[1] - 25, o[2] + 7) for o in offsets]  # a constant cast on top: same flicker
    assert foreground_flicker(*_clip_with_offsets(cast)) == pytest.approx(3.0, abs=1e-5)
    assert foreground_flicker(*_clip_with_offsets([(5, 5, 5)] * 4)) == pytest.approx(0.0, abs=1e-5)
    # a frame without foreground breaks its two pairs: only (0 -> 1) is left, change 4
    assert foreground_flicker(*_clip_with_offsets(offsets, empty={2})) == pytest.approx(4.0, abs=1e-5)
    assert foreground_flicker(*_clip_with_offsets(offsets[:1])) is None


def test_clip_table_orders_frames_by_index_and_averages_over_frames_and_pairs():
    records = []
    for clip, errors in (("a", [0.0, 6.0, 0.0, 6.0]), ("b", [1.0, 1.0])):
        for frame, error in enumerate(errors):
            mse = 10.0 * (frame + 1) if clip == "a" else 100.0
            records.append({"clip": clip, "frame": frame, "MSE": mse, "fMSE": 2 * mse, "PSNR": 30.0,
                            "fg_error": [error, error, error]})
    random.Random(3).shuffle(records)  # the order of evaluation must not matter
    table = clip_table(records)
    assert table["a"]["flicker"] == pytest.approx(6.0) and table["a"]["pairs"] == 3
    assert table["b"]["flicker"] == pytest.approx(0.0) and table["b"]["N"] == 2
    assert table["a"]["MSE"] == pytest.approx(25.0) and table["b"]["MSE"] == pytest.approx(100.0)
    assert table["All"]["MSE"] == pytest.approx(300.0 / 6) and table["All"]["fMSE"] == pytest.approx(600.0 / 6)
    assert table["All"]["flicker"] == pytest.approx(18.0 / 4) and table["All"]["clips"] == 2
    gap = [r for r in records if not (r["clip"] == "a" and r["frame"] == 2)]  # a frame left out by prepare
    assert clip_table(gap)["a"]["pairs"] == 1 and clip_table(gap)["a"]["flicker"] == pytest.approx(6.0)


# ------------------------------------------------------------------- generated clips, end to end
def _independent(root: Path, split="test"):
    """Per-clip and overall MSE, fMSE, PSNR and flicker of the unchanged composite, in NumPy."""
    manifest = load_manifest(root)
    rows, frames_all, pairs_all = {}, [], []
    for clip, info in manifest["clips"].items():
        if info["split"] != split:
            continue
        values, errors = [], []
        for stem in info["frames"]:
            ext = manifest["ext"]
            comp = np.asarray(Image.open(root / "synthetic_composite_videos" / clip / f"{stem}.{ext}"), np.float64)
            real = np.asarray(Image.open(root / "real_videos" / info["video"] / f"{stem}.{ext}"), np.float64)
            mask = np.asarray(Image.open(root / "foreground_mask" / clip / f"{stem}.png"), np.float64) / 255
            squared = (comp - real) ** 2
            mse = squared.mean()
            values.append((mse, (mask[:, :, None] * squared).sum() / (3 * mask.sum() + 1e-6),
                           10 * math.log10(real.max() ** 2 / (mse + 1e-6))))
            errors.append((mask[:, :, None] * (comp - real)).sum(axis=(0, 1)) / mask.sum())
        changes = [np.abs(b - a).mean() for a, b in zip(errors, errors[1:])]
        rows[clip] = (*np.mean(values, axis=0), np.mean(changes))
        frames_all += values
        pairs_all += changes
    rows["All"] = (*np.mean(frames_all, axis=0), np.mean(pairs_all))
    return rows


def test_prepare_then_eval_on_clips_generated_from_photos(tmp_path, capsys):
    root = make_mini_hyoutube(tmp_path / "HYouTube")
    code, out, err = run(capsys, "prepare", "--root", root, "--workers", "0")
    assert code == 0, err
    packed = root / "hyoutube.h5"
    with h5py.File(packed, "r") as handle:
        assert json.loads(handle.attrs["counts"]) == {"HYouTube": {"train": 3, "test": 14}}
        assert handle.attrs["layout"] == "hyoutube" and handle.attrs["complete"]
        test = handle["samples/split"].asstr()[:] == "test"
        names = handle["samples/name"].asstr()[:][test].tolist()
        clips = handle["samples/clip"].asstr()[:][test].tolist()
        frames = handle["samples/frame"][:][test].tolist()
        assert names[:2] == ["v0001aaaa/object_0/00000.jpg", "v0001aaaa/object_0/00005.jpg"]
        assert clips[:6] == ["v0001aaaa/object_0"] * 5 + ["v0001aaaa/object_1"] and frames[:6] == [0, 1, 2, 3, 4, 0]
        assert len(handle["real/shape"]) == 5 + 4 + 3  # the two objects of v0001 share its real frames
        assert len(handle["composite/shape"]) == 17
    code, _, _ = run(capsys, "prepare", "--root", root, "--workers", "0")
    assert code == 0  # a second run finds the file up to date (the fingerprint covers the clips)

    test = HarmonizationDataset(packed, split="test")
    assert test.is_video and test[6]["clip"] == "v0001aaaa/object_1" and test[6]["frame"] == 1

    result_path = tmp_path / "r.json"
    code, _, err = run(capsys, "eval", "--data", packed, "--model", "composite", "--resize", "none",
                       "--workers", "0", "-o", result_path)
    assert code == 0, err
    by_clip = json.loads(result_path.read_text())["by_clip"]
    expected = _independent(root)
    assert list(by_clip) == list(expected)
    for clip, (mse, fmse, psnr, flicker) in expected.items():
        row = by_clip[clip]
        assert row["MSE"] == pytest.approx(mse, rel=1e-5) and row["fMSE"] == pytest.approx(fmse, rel=1e-5)
        assert row["PSNR"] == pytest.approx(psnr, rel=1e-5) and row["flicker"] == pytest.approx(flicker, rel=1e-5)
    assert by_clip["All"]["N"] == 14 and by_clip["All"]["clips"] == 3

    # the folder itself gives the same numbers as the packed file
    code, _, err = run(capsys, "eval", "--data", root, "--model", "composite", "--resize", "none",
                       "--workers", "0", "-o", tmp_path / "folder.json")
    assert code == 0, err
    assert json.loads((tmp_path / "folder.json").read_text())["by_clip"]["All"] == pytest.approx(by_clip["All"])


def test_terminal_shows_the_per_clip_table(tmp_path, capsys):
    root = _flat_set(tmp_path / "HYouTube")
    pack_dataset(root, workers=0, splits="test")
    code, out, err = run_main(capsys, "eval", "--data", root / "hyoutube.h5", "--model", "composite",
                              "--resize", "none", "--workers", "0")
    assert code == 0, err
    assert "per clip" in out and "flicker" in out and "va/object_0" in out and "All (2 clips)" in out
    assert "4.00" in out  # the overall flicker


# ---------------------------------------------------------------------------- layout pitfalls
def test_layout_variants_and_problems_are_reported_not_fatal(tmp_path):
    root = make_mini_hyoutube(tmp_path / "HY", ext="png", list_names=("train.txt", "test.txt"))
    # a clip given by its composite folder alone, a clip whose folder is missing, a frame without mask
    (root / "test.txt").write_text((root / "test.txt").read_text()
                                   + "v0001aaaa/object_1\nsynthetic_composite_videos/v0009zzzz/object_0\n")
    (root / "foreground_mask/v0002bbbb/object_0/00010.png").unlink()
    report = pack_dataset(root, workers=0, splits="test")
    problems = {(Path(p.file).name, p.reason) for p in report.problems}
    assert problems == {("object_0", "missing clip folder"), ("00010.png", "missing mask")}
    assert report.counts == {"HYouTube": {"test": 13}} and report.skipped == 1  # v0001/object_1 once only
    test = HarmonizationDataset(report.output, split="test")
    kept = [frame for clip, frame in test.frames if clip == "v0002bbbb/object_0"]
    assert kept == [0, 1, 3]  # frame indices keep the gap: no pair is made across it
    with pytest.raises(DatasetError, match="--strict"):
        pack_dataset(root, output=tmp_path / "strict.h5", workers=0, splits="test", strict=True)
    assert not (tmp_path / "strict.h5").exists()
    with pytest.raises(DatasetError, match="one subset, HYouTube"):
        pack_dataset(root, workers=0, subsets="HCOCO")


def test_a_video_root_without_list_files_is_one_clear_line(tmp_path, capsys):
    root = make_mini_hyoutube(tmp_path / "HY")
    for name in ("train_list.txt", "test_list.txt"):
        (root / name).unlink()
    code, _, err = run(capsys, "prepare", "--root", root, "--workers", "0")
    assert code != 0 and "train_list.txt or test_list.txt" in err and "Traceback" not in err
    assert not (root / "hyoutube.h5").exists()
