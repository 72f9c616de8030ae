"""The reference fixtures of ../shared/parity: layouts, the deterministic weight rule, fixtures."""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch


def parity_dir() -> Path:
    configured = os.environ.get("HARMONIZE_PARITY_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared" / "parity"


def running_under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_parity_file(relative: str) -> Path:
    """A fixture file of the parity folder; missing: a failure under CI (fixtures must never
    silently vanish there), a skip elsewhere."""
    path = parity_dir() / relative
    if not path.is_file():
        message = (f"reference fixture {path} not found: put ../shared/parity beside the checkout "
                   "or set HARMONIZE_PARITY_DIR")
        if running_under_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_parity_dir() -> Path:
    require_parity_file("official_state_dicts.json")
    return parity_dir()


@lru_cache(maxsize=1)
def _reference_layouts_cached(path: str):
    return json.loads(Path(path).read_text())


def reference_layouts() -> dict:
    """{reference name: {"model_class", "params", "num_params", "state_dict": [[key, shape, dtype], ...]}}"""
    return _reference_layouts_cached(str(require_parity_dir() / "official_state_dicts.json"))


def _or_missing(names):
    """Parameters for ``parametrize``: the names, or one that fails under CI (and is skipped
    elsewhere) when the fixtures are missing, so that a test never vanishes silently."""
    if names:
        return names
    reason = f"reference fixtures not found in {parity_dir()} (set HARMONIZE_PARITY_DIR)"
    return [pytest.param("<fixtures missing>", marks=pytest.mark.skipif(not running_under_ci(), reason=reason))]


def reference_names():
    path = parity_dir() / "official_state_dicts.json"
    return _or_missing(list(json.loads(path.read_text())) if path.is_file() else [])


def fixture_names():
    return _or_missing(sorted(p.stem for p in parity_dir().glob("*.npz")))


def generate_weights(manifest, seed):
    """The README's weight rule; returns (state dict of tensors, sha256 hex digest)."""
    rng = np.random.default_rng(seed)
    digest = hashlib.sha256()
    state = {}
    for key, shape, _dtype in manifest:
        if key.endswith("num_batches_tracked"):
            array = np.zeros(shape, np.int64)
        elif key.endswith("running_var"):
            array = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("running_mean"):
            array = rng.normal(0.0, 0.1, shape)
        elif len(shape) <= 1:
            if key.endswith("weight") or key.endswith("scale"):
                array = rng.uniform(0.5, 0.9, shape)
            else:
                array = rng.normal(0.0, 0.1, shape)
        else:
            array = rng.normal(0.0, 1.0, shape) / np.sqrt(np.prod(shape[1:]))
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        array = np.require(array, requirements="C")  # keeps 0-d arrays 0-d
        digest.update(key.encode())
        digest.update(array.tobytes())
        state[key] = torch.from_numpy(array)
    return state, digest.hexdigest()


def zero_state_dict(layout_entry):
    """A state dict with the reference layout (zeros), for cheap loading and detection tests."""
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    return {key: torch.zeros(shape, dtype=dtypes.get(dtype, torch.float32))
            for key, shape, dtype in layout_entry["state_dict"]}


def load_fixture(name):
    data = np.load(require_parity_dir() / f"{name}.npz")
    manifest = json.loads(str(data["manifest"]))
    return {
        "manifest": manifest,
        "seed": int(data["seed"]),
        "sha256": str(data["weights_sha256"]),
        "image": torch.from_numpy(data["image"].astype(np.float32)),
        "mask": torch.from_numpy(data["mask"].astype(np.float32)),
        "expected": torch.from_numpy(data["expected"]),
    }
