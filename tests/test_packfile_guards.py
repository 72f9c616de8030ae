"""A packed file is checked when it is opened (data.packfile.check_layout / check_tables), before
any table or pixel is read: the writer's dtypes, images within the image limit, data stored in
the file itself, tables of bounded length, and ``complete`` a true boolean."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from bombs import inflate_packed_shapes
from minidata import make_mini_iharmony

from harmonize_cli.data import HarmonizationDataset
from harmonize_cli.data.layout import DatasetError
from harmonize_cli.data.pack import pack_dataset


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = make_mini_iharmony(tmp_path_factory.mktemp("data") / "iHarmony4", subsets=("HFlickr",), n_train=2,
                              n_test=2, seed=4)
    out = tmp_path_factory.mktemp("packed") / "mini.h5"
    pack_dataset(root, output=out, workers=0)
    return out


def _copy(packed, tmp_path, name="copy.h5"):
    copy = tmp_path / name
    shutil.copy(packed, copy)
    return copy


def _refused(path, *words):
    with pytest.raises(DatasetError) as info:
        HarmonizationDataset(path, "test")
    text = str(info.value)
    assert "\n" not in text and str(path) in text, text
    for word in words:
        assert word in text, text
    return text


def test_declared_images_over_the_image_limit_are_refused_on_open(packed, tmp_path):
    bomb = inflate_packed_shapes(_copy(packed, tmp_path), side=20000)
    assert bomb.stat().st_size < 1 << 20  # a few KB that would make eval read 4.8 GB
    _refused(bomb, "20000x20000 pixels (400 MP)", "over the image limit of 200 MP", "harmonize prepare")


def test_a_heap_of_another_dtype_is_refused_not_misread(packed, tmp_path, capsys):
    from harmonize_cli.cli import main

    bad = _copy(packed, tmp_path)
    with h5py.File(bad, "a") as handle:
        heap = handle["composite/pixels"][:]
        del handle["composite/pixels"]
        handle["composite"].create_dataset("pixels", data=heap.astype(np.uint16))  # values unchanged, 2 bytes each
    _refused(bad, "'composite/pixels' is uint16", "bytes (uint8, one dimension)")
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--data", str(bad), "--model", "composite", "--workers", "0"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 1 and "MSE" not in captured.out and "Traceback" not in captured.err


def test_a_table_of_floats_where_integers_are_written_is_refused(packed, tmp_path):
    bad = _copy(packed, tmp_path)
    with h5py.File(bad, "a") as handle:
        offsets = handle["real/offset"][:]
        del handle["real/offset"]
        handle["real"].create_dataset("offset", data=offsets.astype(np.float64) + 0.5)
    _refused(bad, "'real/offset' is float64 where harmonize writes integers")


def test_external_storage_is_refused(packed, tmp_path):
    bad = _copy(packed, tmp_path)
    outside = tmp_path / "outside.bin"
    with h5py.File(bad, "a") as handle:
        heap = handle["mask/pixels"][:]
        outside.write_bytes(heap.tobytes())
        del handle["mask/pixels"]
        handle["mask"].create_dataset("pixels", shape=heap.shape, dtype=np.uint8,
                                      external=[(str(outside), 0, heap.size)])
    text = _refused(bad, "'mask/pixels' keeps its data in external files")
    assert "harmonize prepare" in text


def test_a_table_declaring_too_many_rows_is_refused_before_it_is_read(packed, tmp_path):
    bad = _copy(packed, tmp_path)
    with h5py.File(bad, "a") as handle:
        del handle["samples/fg_ratio"]
        # 50 million rows declared, nothing written: reading it would take 200 MB of zeros
        handle["samples"].create_dataset("fg_ratio", shape=(50_000_000,), dtype=np.float32, chunks=(1 << 16,))
    _refused(bad, "'samples/fg_ratio' declares a table of shape (50000000,)")


def test_a_heap_with_no_data_stored_is_refused(packed, tmp_path):
    bad = _copy(packed, tmp_path)
    with h5py.File(bad, "a") as handle:
        size = handle["real/pixels"].shape[0]
        del handle["real/pixels"]
        handle["real"].create_dataset("pixels", shape=(size,), dtype=np.uint8)  # never written
    _refused(bad, "'/real/pixels' has no data stored")


@pytest.mark.parametrize("value", ["False", "True", 1, np.int64(1)])
def test_complete_must_be_a_true_boolean(packed, tmp_path, value):
    bad = _copy(packed, tmp_path)
    with h5py.File(bad, "a") as handle:
        handle.attrs["complete"] = value
    _refused(bad, "is incomplete")


def test_prepare_rebuilds_a_file_whose_complete_is_a_string(tmp_path):
    from harmonize_cli.data.packfile import is_complete, read_attrs

    root = make_mini_iharmony(tmp_path / "iHarmony4", subsets=("HFlickr",), n_train=1, n_test=1, seed=5)
    out = tmp_path / "mini.h5"
    pack_dataset(root, output=out, workers=0)
    with h5py.File(out, "a") as handle:
        handle.attrs["complete"] = "False"  # otherwise up to date: same sources, same options
    pack_dataset(root, output=out, workers=0)
    assert is_complete(read_attrs(out)["complete"])  # rebuilt, not taken as complete
    assert not is_complete("False") and not is_complete(b"True") and not is_complete(1)
    assert is_complete(np.bool_(True)) and is_complete(True) and not is_complete(np.bool_(False))
