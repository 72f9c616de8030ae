"""Reproducible runs: seeds derived from (seed, purpose, ...), per-sample random streams, the
kernels' determinism flags and the data loader of one epoch.

In a seeded run an epoch is a function of the seed and the state at its start: the generators
are re-seeded from (seed, epoch, rank) and every sample's augmentation from (seed, epoch, index),
whatever the number of data-loading workers and wherever a resumed epoch starts.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal

import numpy as np
import torch


def derive_seed(*parts) -> int:
    """A 63-bit seed from any tuple of values (stable across processes and Python runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)  # also every CUDA device


def seed_cpu(seed: int) -> None:
    """Like :func:`seed_everything` without touching the CUDA generators."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.random.default_generator.manual_seed(seed)


class SeededEpochDataset(torch.utils.data.Dataset):
    """Gives every sample its own random stream, derived from (seed, epoch, index).

    The sampler yields ``(epoch, index)`` pairs; the augmentation of a sample therefore does not
    depend on the worker that loads it, on the number of workers, nor on which samples were
    loaded before it (a resumed epoch skips the first steps and still draws the same crops).
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        sample_seed = derive_seed(self.seed, "sample", int(epoch), int(index))
        in_main = torch.utils.data.get_worker_info() is None
        if in_main:  # keep the main process's generators (dropout) untouched
            saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        try:
            seed_everything(sample_seed) if not in_main else seed_cpu(sample_seed)
            sample = self.dataset[int(index)]
        finally:
            if in_main:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])
        return {key: sample[key] for key in TRAINING_KEYS if key in sample}


TRAINING_KEYS = ("image", "target", "mask", "image_fullres", "target_fullres", "mask_fullres")


def collate(samples):
    """Stacks the samples' tensors; the full-resolution crops (``*_fullres``, sizes differ) stay
    lists of 1 x C x H x W tensors."""
    return {key: [s[key][None] for s in samples] if key.endswith("_fullres")
            else torch.stack([s[key] for s in samples]) for key in TRAINING_KEYS if key in samples[0]}


def worker_init(_worker_id):
    # Ctrl-C reaches the whole process group: the main process handles it and stops cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def epoch_loader(seeded: SeededEpochDataset, keys, *, batch_size: int, workers: int, seed: int, epoch: int,
                 pin_memory: bool) -> torch.utils.data.DataLoader:
    """The loader of one epoch over the ``(epoch, index)`` keys still to train on."""
    return torch.utils.data.DataLoader(
        seeded, batch_size=batch_size, sampler=keys, num_workers=workers,
        collate_fn=collate, pin_memory=pin_memory, drop_last=True,
        worker_init_fn=worker_init if workers else None,
        generator=torch.Generator().manual_seed(derive_seed(seed, "loader", epoch)),
        persistent_workers=False, **({"prefetch_factor": 4} if workers else {}),
    )


def determinism_flags():
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)


def restore_determinism_flags(flags) -> None:
    """Leave the process as the run found it (the library may be called from a notebook)."""
    enabled, warn_only, cudnn_deterministic, cudnn_benchmark = flags
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.deterministic = cudnn_deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark


def apply_determinism(deterministic: bool, cuda: bool) -> None:
    """Deterministic kernels (``--seed``), else cuDNN autotuning and TF32 on CUDA."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif cuda:
        torch.backends.cudnn.benchmark = True
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = not deterministic
        torch.backends.cudnn.allow_tf32 = not deterministic
