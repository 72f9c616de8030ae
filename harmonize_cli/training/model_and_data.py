"""What a run trains on and what it trains: the datasets (the configured subsets that the data
holds) and the initialised model (the reference initialisation, then the ImageNet backbone)."""

from __future__ import annotations

import torch

from .. import console
from ..errors import HarmonizeError, UsageError
from .config import ALL_SUBSETS, DEFAULT_VAL_SUBSETS, TrainConfig, recipe_for
from .seeding import derive_seed


def _present(requested, available):
    by_lower = {name.lower(): name for name in available}
    chosen = [by_lower[s.lower()] for s in requested if s.lower() in by_lower]
    missing = [s for s in requested if s.lower() not in by_lower]
    return chosen, missing


def open_datasets(config: TrainConfig, data: str, *, with_validation: bool):
    """The training set and (``with_validation``: rank 0) the validation set, or None."""
    from ..data import HarmonizationDataset, eval_transform, train_transform

    def open_split(split, requested, transform, default, **options):
        everything = HarmonizationDataset(data, split=split, transform=transform, **options)
        chosen, missing = _present(requested, everything.subset_names)
        if not chosen and list(requested) == list(default):  # your own data (e.g. `harmonize synth`)
            chosen, missing = list(everything.subset_names), []
        if chosen and set(chosen) != set(everything.subset_names):  # opened once when all are wanted
            return HarmonizationDataset(data, split=split, subsets=chosen, transform=transform,
                                        **options), missing, everything.subset_names
        return (everything if chosen else None), missing, everything.subset_names

    try:
        default_subsets = list(recipe_for(config.arch, config.recipe).train_subsets or ALL_SUBSETS)
        train_set, missing, available = open_split("train", config.train_subsets, train_transform(config.crop),
                                                   default_subsets, keep_background_prob=config.keep_background_prob)
    except HarmonizeError as exc:
        raise UsageError(f"no training data in {data}: {exc.message}",
                         exc.hint or "run `harmonize prepare --root iHarmony4` and pass its output with --data")
    if train_set is None:
        raise UsageError(f"{data} has none of the training subsets {', '.join(config.train_subsets)}",
                         f"it holds {', '.join(available)}; set train_subsets accordingly")
    if missing and with_validation:
        console.warn(f"training subsets not in the data, skipped: {', '.join(missing)}")
    if config.crop_ratio is not None:  # PCT-Net: full-resolution crops and the network's view of them
        from .pct_training import full_resolution_train_set

        train_set = full_resolution_train_set(train_set, config)
    val_set = None
    if with_validation and config.val_subsets and config.val_every:
        try:
            val_set, val_missing, _ = open_split("test", config.val_subsets, eval_transform(config.val_resize),
                                                 DEFAULT_VAL_SUBSETS, keep_background_prob=-1, keep_raw=True)
        except HarmonizeError:
            val_missing = list(config.val_subsets)
        if val_missing:
            console.warn(f"validation subsets without test images in the data, skipped: {', '.join(val_missing)}")
        if val_set is None:
            console.warn("no validation data: best.pth follows the lowest training loss")
    return train_set, val_set


def build_model(config: TrainConfig, backbone_path, *, resuming: bool, init_path=None):
    """The architecture with the reference initialisation (seeded from the run's seed) and, for a
    new run, the ImageNet weights in its backbone, or every weight from ``init_path`` (fine-tuning,
    ``--init``). Returns ``(model, backbone_weights)``: the latter says what was loaded into the
    backbone (None without one)."""
    from .. import zoo
    from ..models.initialization import initializer_for

    spec = zoo.get_arch(config.arch)
    torch.manual_seed(derive_seed(config.seed, "init"))
    model = zoo.create_model(spec.name, init=False)
    initializer_for(spec)(model, magnitude=config.init_magnitude)
    if spec.family == "pctnet":
        from .pct_training import freeze_unused

        freeze_unused(model)
    backbone_weights = None
    if init_path and not resuming:
        zoo.load_weights(model, init_path, arch=spec.name, eval_mode=False)  # read safely, strictly, as everywhere
        return model, ({"source": str(init_path), "note": "from the --init checkpoint"} if spec.backbone else None)
    if spec.backbone and backbone_path and not resuming:
        backbone_weights = zoo.load_backbone_weights(model, spec, backbone_path)
    elif spec.backbone:
        backbone_weights = {"source": None, "loaded": 0, "note": "trained from scratch (--no-pretrained)"}
    return model, backbone_weights
