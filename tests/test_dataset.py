"""HarmonizationDataset and the transforms: resampling semantics, alignment, loaders."""

from __future__ import annotations

import pickle
import random

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from minidata import make_mini_iharmony

from harmonize_cli.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    HarmonizationDataset,
    eval_transform,
    train_transform,
)
from harmonize_cli.data.layout import DatasetError
from harmonize_cli.data.pack import pack_dataset
from harmonize_cli.data.transforms import ArrayReader, RandomResizedCropFlip, denormalize, resize_linear
from harmonize_cli.errors import UsageError


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # Like a DataLoader worker: small per-sample ops gain nothing from threads, and OpenMP
    # spinning on a busy 2-core CI machine makes them 50x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "iHarmony4"
    return make_mini_iharmony(root, n_train=4, n_test=3, seed=1)


@pytest.fixture(scope="module")
def h5(mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "mini.h5"
    pack_dataset(mini, output=out, workers=0)
    return out


# ---------------------------------------------------------------------------- resampling
def test_resize_linear_matches_hand_computed_opencv_values():
    # OpenCV INTER_LINEAR: src = (dst + 0.5) * in/out - 0.5, clamped; no antialiasing.
    row = np.array([[0.0, 10.0, 20.0, 30.0]])
    # 4 -> 2: src 0.5, 2.5
    assert resize_linear(row, (1, 2))[0, 0].tolist() == pytest.approx([5.0, 25.0])
    # 2 -> 4: src -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last pixel)
    assert resize_linear(np.array([[0.0, 100.0]]), (1, 4))[0, 0].tolist() == pytest.approx([0, 25, 75, 100])
    # 3 -> 5: src -0.2, 0.4, 1.0, 1.6, 2.2
    assert resize_linear(np.array([[0.0, 50.0, 100.0]]), (1, 5))[0, 0].tolist() == pytest.approx([0, 20, 50, 80, 100])
    # 5 -> 3 (no antialias: two taps only): src 1/3, 2, 11/3
    values = resize_linear(np.array([[0.0, 10.0, 20.0, 30.0, 40.0]]), (1, 3))[0, 0].tolist()
    assert values == pytest.approx([10 / 3, 20.0, 110 / 3], abs=1e-4)
    # 2-D, 3 channels, separable: 2x2 -> 3x3, src coordinates -1/6 (->0), 0.5, 7/6 (->1)
    image = np.array([[[0, 0, 0], [60, 60, 60]], [[120, 120, 120], [180, 180, 180]]], dtype=np.uint8)
    out = resize_linear(image, (3, 3))
    assert out.shape == (3, 3, 3)
    expected = np.array([[0, 30, 60], [60, 90, 120], [120, 150, 180]], dtype=np.float32)
    for channel in range(3):
        assert np.allclose(out[channel].numpy(), expected)


def _opencv_linear_reference(array: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Straight-from-the-definition separable resize (slow), for comparison."""

    def weights(n_in, n_out):
        matrix = np.zeros((n_out, n_in))
        for x in range(n_out):
            src = (x + 0.5) * n_in / n_out - 0.5
            src = max(src, 0.0)
            left = int(np.floor(src))
            frac = src - left
            if left >= n_in - 1:
                left, frac = n_in - 1, 0.0
            matrix[x, left] += 1 - frac
            if frac:
                matrix[x, left + 1] += frac
        return matrix

    wy, wx = weights(array.shape[0], out_h), weights(array.shape[1], out_w)
    array = array.astype(np.float64)
    return np.stack([wy @ array[:, :, c] @ wx.T for c in range(array.shape[2])], axis=-1)


def test_fixed256_is_opencv_bilinear_on_a_real_sample(mini):
    ds = HarmonizationDataset(mini, "test", transform=eval_transform("fixed256"), keep_raw=True)
    reader = ds.reader(0)
    composite = reader.read("composite")
    mask = reader.read("mask")
    sample = ds[0]
    reference = np.floor(_opencv_linear_reference(composite, 256, 256) + 0.5)
    assert np.array_equal(sample["image_255"].permute(1, 2, 0).numpy(), reference.astype(np.float32))
    mask_reference = _opencv_linear_reference(mask[:, :, None] / 255.0, 256, 256)[:, :, 0]
    assert np.allclose(sample["mask"][0].numpy(), mask_reference, atol=1e-6)
    soft = sample["mask"][(sample["mask"] > 0) & (sample["mask"] < 1)]
    assert soft.numel() > 0  # the mask is resized bilinearly and stays soft


def test_eval_strategies():
    composite = np.zeros((50, 1100, 3), np.uint8)
    reader = ArrayReader(composite, composite, np.zeros((50, 1100), np.uint8))
    assert eval_transform("LimitLongest1024")(reader)["image"].shape == (3, 47, 1024)
    assert eval_transform("limit1024")(ArrayReader(composite[:, :1024], composite[:, :1024], np.zeros((50, 1024))))[
        "image"
    ].shape == (3, 50, 1024)
    assert eval_transform("None")(reader)["mask"].shape == (1, 50, 1100)
    assert eval_transform("Fixed256")(reader)["target"].shape == (3, 256, 256)
    with pytest.raises(UsageError):
        eval_transform("bicubic")


# ---------------------------------------------------------------------------- sources
def test_hdf5_and_folder_give_identical_samples(mini, h5):
    for split in ("train", "test"):
        for strategy in ("fixed256", "none"):
            a = HarmonizationDataset(h5, split, transform=eval_transform(strategy))
            b = HarmonizationDataset(mini, split, transform=eval_transform(strategy))
            assert a.records == b.records and a.kind == "hdf5" and b.kind == "folder"
            for i in range(len(a)):
                x, y = a[i], b[i]
                for key in ("image", "target", "mask"):
                    assert torch.equal(x[key], y[key]), (split, strategy, i, key)
    a = HarmonizationDataset(h5, "train", transform=train_transform(32))
    b = HarmonizationDataset(mini, "train", transform=train_transform(32))
    for i in range(len(a)):
        random.seed(i)
        x = a[i]
        random.seed(i)
        y = b[i]
        assert all(torch.equal(x[k], y[k]) for k in ("image", "target", "mask"))


def test_encoded_storage_reads_the_same(mini, h5, tmp_path):
    out = tmp_path / "encoded.h5"
    pack_dataset(mini, output=out, workers=0, storage="encoded")
    a = HarmonizationDataset(h5, "test", transform=eval_transform("fixed256"))
    b = HarmonizationDataset(out, "test", transform=eval_transform("fixed256"))
    for i in range(len(a)):
        assert all(torch.equal(a[i][k], b[i][k]) for k in ("image", "target", "mask"))


def test_sample_format_records_and_subsets(h5):
    ds = HarmonizationDataset(h5, "test", subsets=["hflickr", "HCOCO"], keep_raw=True)
    assert ds.subset_names == ["HCOCO", "HFlickr"]
    assert len(ds) == 6 and [r[0] for r in ds.records] == ["HCOCO"] * 3 + ["HFlickr"] * 3
    sample = ds[4]
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 48, 64)
    assert sample["mask"].shape == (1, 48, 64) and 0 <= float(sample["mask"].min()) <= float(sample["mask"].max()) <= 1
    assert (sample["subset"], sample["name"], sample["index"]) == (*ds.records[4], 4)
    # normalisation: (x / 255 - mean) / std, and back
    assert torch.allclose(denormalize(sample["target"]), sample["target_255"], atol=1e-3)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(sample["image"], (sample["image_255"] / 255 - mean) / std, atol=1e-5)
    assert ds.info(4)["size"] == (48, 64) and 0 < ds.info(4)["fg_ratio"] < 1
    assert ds[-1]["index"] == len(ds) - 1
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(DatasetError, match="available"):
        HarmonizationDataset(h5, "test", subsets="HNothing")
    with pytest.raises(DatasetError, match="unknown split"):
        HarmonizationDataset(h5, "val")


def test_incomplete_file_is_refused(h5, tmp_path):
    copy = tmp_path / "copy.h5"
    copy.write_bytes(h5.read_bytes())
    with h5py.File(copy, "r+") as handle:
        handle.attrs["complete"] = False
    with pytest.raises(DatasetError, match="incomplete"):
        HarmonizationDataset(copy, "train")
    with pytest.raises(DatasetError, match="not found"):
        HarmonizationDataset(tmp_path / "missing.h5", "train")


# ---------------------------------------------------------------------------- training transform
def test_train_transform_keeps_composite_real_and_mask_aligned(h5):
    # Composite == real outside the mask and differs inside it: after the joint crop, resize
    # and flip, pixels whose resized mask is exactly 0 must still be equal, and pixels with
    # mask exactly 1 must still differ. Any misalignment between the three breaks that.
    for flip_prob in (0.0, 1.0):
        transform = RandomResizedCropFlip(64, flip_prob=flip_prob, rng=random.Random(flip_prob))
        ds = HarmonizationDataset(h5, "train", transform=transform, keep_raw=True)
        for i in range(len(ds)):
            for _ in range(3):
                sample = ds[i]
                mask = sample["mask"][0]
                diff = (sample["image_255"] - sample["target_255"]).abs().sum(0)
                assert sample["image"].shape == (3, 64, 64) and mask.shape == (64, 64)
                assert float(diff[mask == 0].sum()) == 0.0
                if (mask == 1).any():
                    assert float((diff[mask == 1] > 0).float().mean()) > 0.9


def test_flip_is_applied_to_all_three():
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :2] = 200
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :2] = 255
    transform = RandomResizedCropFlip(8, scale=(1, 1), ratio=(1, 1), flip_prob=1.0, rng=random.Random(0))
    out = transform(ArrayReader(image, image + 1, mask))
    assert (out["mask"][0, :, -2:] == 1).all() and (out["mask"][0, :, :-2] == 0).all()
    assert (out["image"][:, :, -2:] == 200).all() and (out["target"][:, :, -2:] == 201).all()


def test_random_resized_crop_parameters():
    transform = RandomResizedCropFlip(256, rng=random.Random(0))
    for _ in range(500):
        top, left, height, width = transform.sample_box(480, 640)
        assert 0 <= top <= 480 - height and 0 <= left <= 640 - width
        area = height * width / (480 * 640)
        assert 0.49 <= area <= 1.0 + 1e-9
        assert 3 / 4 - 0.02 <= width / height <= 4 / 3 + 0.02


def test_crop_that_loses_the_foreground_is_redrawn():
    image = np.zeros((100, 100, 3), np.uint8)
    mask = np.zeros((100, 100), np.uint8)
    mask[:40, :40] = 255  # a foreground in a corner: most small crops miss it
    reader = ArrayReader(image, image, mask)
    transform = RandomResizedCropFlip(16, scale=(0.05, 0.1), rng=random.Random(0))
    kept = [float(transform(reader, keep_background_prob=0.0)["mask"].sum()) for _ in range(30)]
    assert all(total > 1.0 for total in kept)
    lost = [float(transform(reader, keep_background_prob=-1.0)["mask"].sum()) for _ in range(30)]
    assert any(total <= 1.0 for total in lost)
    # an empty mask cannot loop forever
    empty = ArrayReader(image, image, np.zeros((100, 100), np.uint8))
    assert float(transform(empty, keep_background_prob=0.0)["mask"].sum()) == 0.0


def test_keep_background_prob_defaults(h5):
    assert HarmonizationDataset(h5, "train").keep_background_prob == 0.05
    assert HarmonizationDataset(h5, "test").keep_background_prob == -1.0


def test_custom_transform_without_keep_background_argument(h5):
    calls = []

    def transform(reader):
        calls.append(reader.size)
        return eval_transform("fixed256")(reader)

    ds = HarmonizationDataset(h5, "test", transform=transform)
    assert ds[0]["image"].shape == (3, 256, 256) and calls == [(48, 64)]


# ---------------------------------------------------------------------------- loaders
def test_pickling_never_carries_an_open_handle(h5):
    ds = HarmonizationDataset(h5, "train", transform=train_transform(32))
    ds[0]  # opens the file in this process
    assert ds._source._state is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._source._state is None
    assert clone[1]["image"].shape == (3, 32, 32)
    ds.close()


def test_multi_worker_loader_collates_and_covers_every_sample(h5):
    ds = HarmonizationDataset(h5, "train", transform=train_transform(32))
    ds[0]  # a handle opened in the parent before the workers fork must not be shared
    loader = DataLoader(ds, batch_size=5, num_workers=2, shuffle=True, persistent_workers=False)
    seen = []
    for batch in loader:
        assert batch["image"].shape[1:] == (3, 32, 32) and batch["mask"].shape[1:] == (1, 32, 32)
        assert isinstance(batch["subset"], list) and isinstance(batch["name"], list)
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(len(ds)))


def test_distributed_sampler_splits_the_dataset(h5):
    ds = HarmonizationDataset(h5, "test", transform=eval_transform("fixed256"))
    indices = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(1)
        loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=0)
        for batch in loader:
            indices += batch["index"].tolist()
    assert sorted(set(indices)) == list(range(len(ds)))


def test_uint8_images_are_the_unnormalised_pixels(h5):
    plain = HarmonizationDataset(h5, "test", transform=eval_transform("fixed256"), keep_raw=True)
    small = HarmonizationDataset(h5, "test", transform=eval_transform("fixed256"), uint8_images=True)
    a, b = plain[2], small[2]
    assert b["image"].dtype == torch.uint8 and b["target"].dtype == torch.uint8
    assert torch.equal(b["image"].float(), a["image_255"]) and torch.equal(b["mask"], a["mask"])
    from harmonize_cli.data import normalize

    assert torch.allclose(normalize(b["target"].float()), a["target"], atol=1e-6)


# ---------------------------------------------------------------------------- damaged files
def _damage(h5, tmp_path, how):
    import shutil

    bad = tmp_path / "damaged.h5"
    shutil.copy(h5, bad)
    with h5py.File(bad, "a") as handle:
        how(handle)
    return bad


def _shorter_heap(handle):
    heap = handle["composite/pixels"][:]
    del handle["composite/pixels"]
    handle["composite"].create_dataset("pixels", data=heap[: heap.size // 2])


DAMAGES = {
    "a sample column removed": (lambda h: h.__delitem__("samples/size"), "'samples/size' is missing"),
    "a table removed": (lambda h: h.__delitem__("mask/offset"), "'mask/offset' is missing"),
    "the sample table removed": (lambda h: h.__delitem__("samples"), "'samples/subset' is missing"),
    "an attribute garbled": (lambda h: h.attrs.__setitem__("subsets", "{oops"), "damaged"),
    "rows out of range": (lambda h: h["samples/real"].__setitem__(slice(None), 10**6), "outside the real table"),
    "a heap cut short": (_shorter_heap, "points past its heap"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_metadata_is_one_line_that_names_the_file_and_the_fix(h5, tmp_path, damage):
    how, expected = DAMAGES[damage]
    bad = _damage(h5, tmp_path, how)
    with pytest.raises(DatasetError) as info:
        HarmonizationDataset(bad, "test")
    message = str(info.value)
    assert expected in message and str(bad) in message and "\n" not in message
    assert "harmonize prepare --root" in message and "--force" in message


def test_damaged_file_in_eval_is_one_line_and_exit_1(h5, tmp_path, capsys):
    from harmonize_cli.cli import main

    bad = _damage(h5, tmp_path, lambda handle: handle.__delitem__("samples/split"))
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--data", str(bad), "--model", "composite"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert "Traceback" not in err and "KeyError" not in err
    line = " ".join(err.split())
    assert f"{bad} is damaged ('samples/split' is missing)" in line and "--force" in line
