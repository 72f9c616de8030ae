"""The GPU feeding path (issue 27, "On a GPU"), run on the CPU: decoding and encoding workers feed
batches whose results are the bytes one worker writes; batches are stacked into pinned memory only
where CUDA is there (the asynchronous copy), into ordinary memory elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from harmonize_cli.apply.batch import harmonize_folder
from harmonize_cli.apply.harmonizer import host_batch


def _inputs(folder, count=5):
    rng = np.random.default_rng(3)
    (folder / "c").mkdir(parents=True)
    (folder / "m").mkdir()
    for index in range(count):
        height, width = 40 + 8 * index, 64 - 4 * index
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / "c" / f"p{index}.png")
        mask = np.zeros((height, width), np.uint8)
        mask[5:height - 5, 6:width // 2 + 3] = 255
        Image.fromarray(mask).save(folder / "m" / f"p{index}.png")
    return folder / "c", folder / "m"


def test_two_feeding_workers_write_the_bytes_one_writes(tmp_path, idih_checkpoint):
    composites, masks = _inputs(tmp_path)
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        report = harmonize_folder(composites, masks, out, weights=str(idih_checkpoint), device="cpu",
                                  batch_size=2, workers=workers, ext="png")
        assert report.counts["done"] == 5
        runs[workers] = {path.name: path.read_bytes() for path in sorted(out.glob("*.png"))}
    assert len(runs[1]) == 5 and runs[1] == runs[2]


def test_batches_are_stacked_in_ordinary_memory_on_the_cpu():
    arrays = [np.full((3, 4, 5), value, np.float32) for value in (1.0, 2.0)]
    batch = host_batch(arrays, torch.device("cpu"))
    assert batch.shape == (2, 3, 4, 5) and batch.dtype == torch.float32 and not batch.is_pinned()
    assert torch.equal(batch[1], torch.full((3, 4, 5), 2.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_are_stacked_in_pinned_memory_for_cuda():
    arrays = [np.full((3, 4, 5), value, np.float32) for value in (1.0, 2.0)]
    batch = host_batch(arrays, torch.device("cuda"))
    assert batch.is_pinned() and torch.equal(batch[0], torch.ones(3, 4, 5))
