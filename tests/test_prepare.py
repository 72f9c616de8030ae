"""`harmonize prepare` and the packer: layout pitfalls, validation, exact pixels, safety."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from minidata import load_manifest, make_mini_iharmony

from harmonize_cli import settings
from harmonize_cli.cli import main
from harmonize_cli.data import imageio, layout, pack
from harmonize_cli.data.layout import DatasetError
from harmonize_cli.data.pack import pack_dataset

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A miniature iHarmony4 with every pitfall, under a root with a space and underscores."""
    root = tmp_path_factory.mktemp("data") / "my data_set" / "iHarmony4"
    return make_mini_iharmony(root, pitfalls=True)


@pytest.fixture(scope="module")
def packed(mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "ih4.h5"
    report = pack_dataset(mini, output=out, workers=2)
    return out, report


def _snapshot(root: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def _read_image(handle, kind, row):
    """Reading a stored image with plain h5py, exactly as docs/datasets.md shows."""
    group = handle[kind]
    height, width, channels = group["shape"][row]
    start = group["offset"][row]
    flat = group["pixels"][start : start + height * width * channels]
    return flat.reshape(height, width, channels)


def _run_cli(args, capsys=None):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


# ---------------------------------------------------------------------------- layout
def test_name_mapping_of_the_four_subsets():
    cases = {
        "c21070_1396052_1.jpg": ("c21070.jpg", "c21070_1396052.png"),
        "a3630_1_3.jpg": ("a3630.jpg", "a3630_1.png"),
        "f2508_1_1.jpg": ("f2508.jpg", "f2508_1.png"),
        "d1048-20120628-200951_1_13.jpg": ("d1048-20120628-200951.jpg", "d1048-20120628-200951_1.png"),
    }
    for composite, (real, mask) in cases.items():
        assert layout.real_name(composite) == real
        assert layout.mask_name(composite) == mask


def test_custom_names_with_underscores_in_the_real_stem(tmp_path):
    subset = tmp_path / "Mine"
    for sub in ("composite_images", "masks", "real_images"):
        (subset / sub).mkdir(parents=True)
    (subset / "real_images" / "my_photo.png").write_bytes(b"x")
    (subset / "masks" / "my_photo_2.png").write_bytes(b"x")
    assert layout.resolve_real(subset, "my_photo_2_1.jpg") == subset / "real_images" / "my_photo.png"
    assert layout.resolve_mask(subset, "my_photo_2_1.jpg") == subset / "masks" / "my_photo_2.png"
    # nothing found: the reference's path is reported
    assert layout.resolve_real(subset, "zz_1_1.jpg") == subset / "real_images" / "zz.jpg"


def test_list_files_crlf_blank_lines_bom_and_prefixes(tmp_path):
    path = tmp_path / "X_train.txt"
    path.write_bytes(b"\xef\xbb\xbfa_1_1.jpg\r\n\r\n  HAdobe5k/composite_images/b_1_2.jpg \r\nc_1_1.jpg\r\n\r\n")
    assert layout.read_list(path) == ["a_1_1.jpg", "b_1_2.jpg", "c_1_1.jpg"]


def test_list_file_lookup_follows_the_reference_glob(tmp_path):
    subset = tmp_path / "HFlickr"
    subset.mkdir()
    (subset / "flickr_custom_train.txt").write_text("a_1_1.jpg\n")
    assert layout.list_file(subset, "train").name == "flickr_custom_train.txt"
    (subset / "other_train.txt").write_text("a_1_1.jpg\n")
    with pytest.raises(DatasetError, match="several train list files"):
        layout.list_file(subset, "train")
    (subset / "HFlickr_train.txt").write_text("a_1_1.jpg\n")  # the canonical name wins
    assert layout.list_file(subset, "train").name == "HFlickr_train.txt"


def test_three_channel_mask_reads_like_opencv_channel_0(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 2] = 200  # blue: OpenCV's channel 0
    rgb[..., 0] = 7
    Image.fromarray(rgb).save(tmp_path / "m.png")
    assert (imageio.decode_mask(tmp_path / "m.png") == 200).all()
    Image.fromarray(np.full((4, 5), 255, np.uint8)).save(tmp_path / "g.png")
    assert (imageio.decode_mask(tmp_path / "g.png") == 255).all()


def test_capped_size_rule():
    assert imageio.capped_size(4000, 6000, 1024) == (683, 1024)
    assert imageio.capped_size(6000, 4000, 1024) == (1024, 683)
    assert imageio.capped_size(768, 1024, 1024) == (768, 1024)
    assert imageio.capped_size(5000, 7000, 0) == (5000, 7000)


# ---------------------------------------------------------------------------- packing
def test_counts_per_subset_and_split(mini, packed):
    out, report = packed
    manifest = load_manifest(mini)
    assert report.counts == manifest["counts"]
    assert report.skipped == len(manifest["broken"]) == 3
    with h5py.File(out, "r") as handle:
        assert bool(handle.attrs["complete"])
        subsets = handle["samples/subset"].asstr()[:]
        splits = handle["samples/split"].asstr()[:]
        for subset, by_split in manifest["counts"].items():
            for split, count in by_split.items():
                assert int(((subsets == subset) & (splits == split)).sum()) == count
        # shared real images and masks are stored once
        assert len(handle["real/shape"]) < len(handle["composite/shape"])
        assert len(handle["mask/shape"]) < len(handle["composite/shape"])


def test_report_lists_each_bad_file_with_its_reason(mini, packed):
    out, report = packed
    data = json.loads(pack.report_path_for(out).read_text())
    assert data["complete"] and data["skipped"] == 3
    by_file = {p["file"]: p for p in data["problems"]}
    reasons = {"missing": "missing real image", "unreadable": "unreadable composite", "size mismatch": "size mismatch"}
    for broken in load_manifest(mini)["broken"]:
        problem = by_file[broken["file"]]
        assert problem["reason"].startswith(reasons[broken["reason"]]), problem
        assert problem["samples"] == [broken["sample"]]
        assert problem["subset"] == broken["subset"] and problem["split"] == broken["split"]


def test_unresized_samples_equal_the_source_pixels_exactly(mini, packed):
    out, _ = packed
    with h5py.File(out, "r") as handle:
        samples = handle["samples"]
        names = samples["name"].asstr()[:]
        subsets = samples["subset"].asstr()[:]
        assert not samples["resized"][:].any()  # all below 1024
        for i in range(len(names)):
            folder = mini / subsets[i]
            composite = _read_image(handle, "composite", samples["composite"][i])
            real = _read_image(handle, "real", samples["real"][i])
            mask = _read_image(handle, "mask", samples["mask"][i])[:, :, 0]
            assert np.array_equal(composite, np.asarray(Image.open(folder / "composite_images" / names[i]).convert("RGB")))
            assert np.array_equal(real, np.asarray(Image.open(folder / "real_images" / layout.real_name(names[i]))))
            source_mask = np.asarray(Image.open(folder / "masks" / layout.mask_name(names[i])))
            assert np.array_equal(mask, source_mask if source_mask.ndim == 2 else source_mask[:, :, 2])
            expected_ratio = (mask > 127).mean()
            assert samples["fg_ratio"][i] == pytest.approx(expected_ratio, abs=1e-6)
            assert tuple(samples["size"][i]) == tuple(samples["original_size"][i]) == composite.shape[:2]


def test_max_side_caps_only_large_images_and_keeps_original_bytes(mini, tmp_path):
    out = tmp_path / "capped.h5"
    report = pack_dataset(mini, output=out, max_side=100, workers=0, storage="both")
    assert report.resized == 7  # HAdobe5k (96x128) only
    with h5py.File(out, "r") as handle:
        samples = handle["samples"]
        subsets = samples["subset"].asstr()[:]
        for i, subset in enumerate(subsets):
            size, original = tuple(samples["size"][i]), tuple(samples["original_size"][i])
            if subset == "HAdobe5k":
                assert original == (96, 128) and size == (75, 100) and samples["resized"][i]
            else:
                assert size == original == (48, 64) and not samples["resized"][i]
            for kind in ("composite", "real", "mask"):
                row = samples[kind][i]
                assert tuple(handle[kind]["shape"][row][:2]) == size
                assert _read_image(handle, kind, row).shape[:2] == size
        # unresized files keep their original encoded bytes; resized ones are re-encoded
        group = handle["composite"]
        for row in samples["composite"][:]:
            name = group["name"].asstr()[row]
            start, length = group["encoded_offset"][row], group["encoded_length"][row]
            stored = group["encoded"][start : start + length].tobytes()
            if name.startswith("HAdobe5k/"):
                assert group["encoded_format"].asstr()[row] == "jpeg"
                assert Image.open(io.BytesIO(stored)).size == (100, 75)
            else:
                assert stored == (mini / name).read_bytes()
        # resized masks are stored losslessly: PNG holding exactly the Lanczos-shrunk mask
        group, resized_masks = handle["mask"], 0
        for row in range(len(group["name"])):
            name = group["name"].asstr()[row]
            if not name.startswith("HAdobe5k/"):
                continue
            start, length = group["encoded_offset"][row], group["encoded_length"][row]
            stored = group["encoded"][start : start + length].tobytes()
            source = np.asarray(Image.open(mini / name))
            source = source[..., 2] if source.ndim == 3 else source  # OpenCV's BGR channel 0 = blue
            expected = np.asarray(Image.fromarray(source).resize((100, 75), Image.Resampling.LANCZOS))
            assert group["encoded_format"].asstr()[row] == "png", name
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored))), expected), name
            assert np.array_equal(_read_image(handle, "mask", row).reshape(expected.shape), expected), name
            resized_masks += 1
        assert resized_masks >= 1


def test_max_side_zero_keeps_everything(mini, tmp_path):
    report = pack_dataset(mini, output=tmp_path / "native.h5", max_side=0, workers=0, subsets="hadobe5k")
    assert report.resized == 0 and report.subsets == ["HAdobe5k"]
    with h5py.File(tmp_path / "native.h5", "r") as handle:
        assert {tuple(s) for s in handle["samples/size"][:]} == {(96, 128)}


def test_source_tree_is_never_modified(mini, tmp_path):
    before = _snapshot(mini)
    pack_dataset(mini, output=tmp_path / "x.h5", workers=0, force=True)
    assert _snapshot(mini) == before


# ---------------------------------------------------------------------------- up to date
def test_second_run_is_a_noop_until_sources_change(tmp_path):
    root = make_mini_iharmony(tmp_path / "ih", subsets=("HFlickr",), n_train=2, n_test=2)
    out = tmp_path / "o.h5"
    first = pack_dataset(root, output=out, workers=0)
    assert not first.up_to_date
    stamp = out.stat().st_mtime_ns
    second = pack_dataset(root, output=out, workers=0)
    assert second.up_to_date and second.counts == first.counts
    assert out.stat().st_mtime_ns == stamp
    forced = pack_dataset(root, output=out, workers=0, force=True)
    assert not forced.up_to_date
    # a changed source file or a changed option makes it out of date again
    os.utime(root / "HFlickr" / "real_images" / "f100.jpg", ns=(1, 1))
    assert not pack_dataset(root, output=out, workers=0).up_to_date
    assert not pack_dataset(root, output=out, workers=0, max_side=32).up_to_date


def test_cli_noop_message_and_remembered_dataset(tmp_path, capsys, monkeypatch):
    root = make_mini_iharmony(tmp_path / "ih", subsets=("Hday2night",), n_train=2, n_test=2)
    assert _run_cli(["prepare", "--root", str(root), "--workers", "0"]) == 0
    out = root / "iharmony4.h5"
    assert out.is_file() and (root / "iharmony4.report.json").is_file()
    assert settings.default_dataset() == out.resolve()
    captured = capsys.readouterr()
    assert "Hday2night" in captured.out and "problems: none" in captured.out
    said = " ".join(captured.err.split())  # prepare says that it set the default, and where it keeps it
    assert (f"Set {out.resolve()} as the default dataset of `harmonize train` and `harmonize eval` "
            f"(remembered in {settings.config_path()}; --data overrides it)") in said
    assert _run_cli(["prepare", "--root", str(root)]) == 0
    assert "up to date" in capsys.readouterr().err
    monkeypatch.setenv("HARMONIZE_DATA", str(tmp_path / "other.h5"))
    assert settings.default_dataset() == tmp_path / "other.h5"
    assert settings.default_dataset(str(tmp_path / "explicit")) == tmp_path / "explicit"


# ---------------------------------------------------------------------------- failures
def test_strict_fails_and_writes_no_output(mini, tmp_path, capsys):
    out = tmp_path / "strict.h5"
    code = _run_cli(["-q", "prepare", "--root", str(mini), "-o", str(out), "--strict", "--workers", "0"])
    assert code == 1
    assert not out.exists() and not list(tmp_path.glob(".*.part"))
    err = capsys.readouterr().err
    assert "--strict" in err and "strict.report.json" in err
    problems = json.loads((tmp_path / "strict.report.json").read_text())["problems"]
    assert problems and not json.loads((tmp_path / "strict.report.json").read_text())["complete"]


def test_strict_passes_on_a_clean_dataset(tmp_path):
    root = make_mini_iharmony(tmp_path / "ih", subsets=("HCOCO",), n_train=2, n_test=1)
    assert pack_dataset(root, output=tmp_path / "o.h5", strict=True, workers=0).skipped == 0


def test_missing_subset_and_a_subset_without_any_list_file_name_the_path(tmp_path):
    root = make_mini_iharmony(tmp_path / "ih", subsets=("HCOCO", "HFlickr"), n_train=1, n_test=1)
    with pytest.raises(DatasetError, match=str(root / "HAdobe5k")):
        pack_dataset(root, output=tmp_path / "o.h5", subsets=["HCOCO", "HAdobe5k"])
    (root / "HFlickr" / "HFlickr_test.txt").unlink()
    (root / "HFlickr" / "HFlickr_train.txt").write_text("\r\n\n")
    with pytest.raises(DatasetError, match="no images to pack in .*HFlickr.*HFlickr_train.txt lists no images"):
        pack_dataset(root, output=tmp_path / "o.h5")
    with pytest.raises(DatasetError, match="not found"):
        pack_dataset(tmp_path / "nowhere")
    assert _run_cli(["-q", "prepare", "--root", str(tmp_path / "nowhere")]) == 1


def test_refuses_to_overwrite_a_foreign_file_even_with_force(tmp_path):
    from harmonize_cli.errors import UsageError

    root = make_mini_iharmony(tmp_path / "ih", subsets=("HFlickr",), n_train=1, n_test=1)
    foreign = tmp_path / "mine.h5"
    foreign.write_bytes(b"precious")
    for force in (False, True):  # --force replaces an earlier pack, never the user's file
        with pytest.raises(UsageError, match="not a dataset packed by harmonize"):
            pack_dataset(root, output=foreign, workers=0, force=force)
        assert foreign.read_bytes() == b"precious"
    with h5py.File(tmp_path / "theirs.h5", "w") as handle:  # a readable HDF5 file of someone else's
        handle["x"] = np.arange(3)
    with pytest.raises(UsageError, match="not a dataset packed by harmonize"):
        pack_dataset(root, output=tmp_path / "theirs.h5", workers=0, force=True)
    assert list(h5py.File(tmp_path / "theirs.h5", "r")["x"][:]) == [0, 1, 2]
    packed = pack_dataset(root, output=tmp_path / "ours.h5", workers=0)  # an earlier pack is replaced
    assert pack_dataset(root, output=packed.output, workers=0, force=True).complete


def test_prepare_force_never_overwrites_its_own_inputs(tmp_path, capsys):
    """Issue 22, item 2: `prepare -o <a composite or a list file> --force` overwrote it."""
    root = make_mini_iharmony(tmp_path / "ih", subsets=("HFlickr",), n_train=2, n_test=1)
    composite = next((root / "HFlickr" / "composite_images").iterdir())
    list_file = root / "HFlickr" / "HFlickr_train.txt"
    for target in (composite, list_file):
        before = target.read_bytes()
        assert _run_cli(["-q", "prepare", "--root", str(root), "-o", str(target), "--force", "--workers", "0"]) == 2
        err = capsys.readouterr().err
        assert str(target) in err and "not a dataset packed by harmonize" in err and len(err.strip().splitlines()) == 1
        assert target.read_bytes() == before
    report = composite.parent / (composite.stem + ".report.json")
    assert not report.exists()


def test_a_hidden_or_partial_folder_is_never_a_subset(tmp_path):
    """An interrupted synth's `.Synthetic.partial-*` folder (or any hidden one) is not packed."""
    root = make_mini_iharmony(tmp_path / "ih", subsets=("HFlickr",), n_train=1, n_test=1)
    make_mini_iharmony(tmp_path / "hidden", subsets=("HCOCO",), n_train=1, n_test=1)
    (tmp_path / "hidden" / "HCOCO").rename(root / ".Synthetic.partial-x1y2")
    assert layout.find_subsets(root) == ["HFlickr"]
    assert pack_dataset(root, output=tmp_path / "o.h5", workers=0).counts.keys() == {"HFlickr"}


# ---------------------------------------------------------------------------- interruption
def test_exception_mid_way_leaves_nothing(mini, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = pack._pack_chunk

    def failing(items, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(items, *args)

    monkeypatch.setattr(pack, "_pack_chunk", failing)
    out = tmp_path / "o.h5"
    with pytest.raises(KeyboardInterrupt):
        pack_dataset(mini, output=out, workers=0)
    assert calls["n"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == []


_STUCK_PREPARE = """
import os, sys, time
from pathlib import Path
import harmonize_cli.data.pack as pack
original = pack._pack_chunk
calls = []
def stuck(items, *args):
    calls.append(1)
    if len(calls) == 3:  # two chunks written: mid-way through the packing pass
        Path(os.environ["MIDWAY"]).write_text("now")
        while True:
            time.sleep(0.05)
    return original(items, *args)
pack._pack_chunk = stuck
from harmonize_cli.cli import main
main(sys.argv[1:])
"""


def _start_stuck_prepare(root, out, marker):
    env = dict(os.environ, MIDWAY=str(marker))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-c", _STUCK_PREPARE, "-q", "prepare", "--root", str(root), "-o", str(out), "--workers", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(marker: Path, process, timeout=40.0):
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "prepare never got mid-way"
        time.sleep(0.02)


@pytest.mark.timeout(60)
def test_killed_prepare_leaves_nothing_that_reads_as_complete(mini, tmp_path):
    from harmonize_cli.data import HarmonizationDataset

    out = tmp_path / "out" / "killed.h5"
    out.parent.mkdir()
    process = _start_stuck_prepare(mini, out, tmp_path / "midway")
    _wait_for(tmp_path / "midway", process)
    (part,) = out.parent.glob(".*.part")
    process.kill()
    process.wait()
    assert not out.exists()
    assert part.exists()  # SIGKILL gives no chance to clean up ...
    with pytest.raises(DatasetError):  # ... but the leftover never reads as a dataset
        HarmonizationDataset(part, "train")
    report = pack_dataset(mini, output=out, workers=0)  # the next run cleans up and completes
    assert report.complete and not part.exists()
    assert HarmonizationDataset(out, "test").subset_names == ["HCOCO", "HAdobe5k", "HFlickr", "Hday2night"]


@pytest.mark.timeout(60)
def test_terminated_prepare_removes_its_temporary_file(mini, tmp_path):
    out = tmp_path / "out" / "terminated.h5"
    out.parent.mkdir()
    process = _start_stuck_prepare(mini, out, tmp_path / "midway")
    _wait_for(tmp_path / "midway", process)
    assert list(out.parent.glob(".*.part"))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 143  # 128 + SIGTERM, like a shell reports it
    assert sorted(p.name for p in out.parent.iterdir()) == []


def test_not_enough_disk_space_fails_before_writing(mini, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(DatasetError, match="not enough disk space.*GiB needed") as info:
        pack_dataset(mini, output=tmp_path / "big.h5", workers=0)
    assert "--storage encoded" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
