"""Every check that can fail before training starts, each with its fix: the run folder, the
dataset, the backbone's ImageNet weights, PCT-Net's VGG16 loss network. A failed check leaves no
run folder behind."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import DownloadError, HarmonizeError, UsageError
from .config import TrainConfig
from .rundir import check_output, default_run_dir, remove_if_created


def preflight(config: TrainConfig, *, resuming: bool, overwrite: bool) -> dict:
    """Checks the run (on rank 0, before anything heavy); returns what it needs:
    ``{"run_dir", "seed", "data", "data_origin", "backbone", "vgg"}``. Raises a HarmonizeError with the fix."""
    from ..settings import dataset_and_origin
    from ..zoo import get_arch

    spec = get_arch(config.arch)
    run_dir = Path(config.out) if config.out else default_run_dir(spec.name)
    info = {"run_dir": str(run_dir), "seed": config.seed}
    created = check_output(run_dir, resuming=resuming, overwrite=overwrite)
    try:
        data, origin = dataset_and_origin(config.data, "--data" if not resuming else "the resumed run's config")
        if not Path(data).exists():
            raise UsageError(f"dataset {data} does not exist",
                             "run `harmonize prepare --root iHarmony4` first, or pass --data FILE.h5|DIR")
        info["data"] = str(data)
        info["data_origin"] = origin
        info["backbone"] = check_backbone(spec, config, resuming=resuming)
        info["vgg"] = check_vgg(config)
        if config.init and not resuming:
            info["init"] = check_init(spec, config)
    except BaseException:  # a failed check (or a path the system refuses) leaves no run folder
        remove_if_created(created)
        raise
    return info


def check_init(spec, config: TrainConfig) -> dict:
    """The ``--init`` checkpoint, read safely and checked against the architecture (a mismatch is
    one line naming both); returns ``{"source", "path", "sha256"}`` for the run's records."""
    from ..zoo import resolve

    resolved = resolve(spec.name, weights=config.init)
    if resolved.path is None:
        raise UsageError(f"--init {config.init} is not a file", "pass a checkpoint file, URL or released name")
    return {"source": str(config.init), "path": str(resolved.path), "sha256": resolved.sha256}


def check_backbone(spec, config: TrainConfig, *, resuming: bool) -> Optional[str]:
    """The ImageNet checkpoint to load into the backbone (None: no backbone, a resumed run, or
    ``--no-pretrained``); a missing file is a usage error that says how to get it."""
    if not spec.backbone or resuming or config.init:
        return None  # a resumed or fine-tuned run takes every weight from its checkpoint
    if config.backbone_weights:
        path = Path(config.backbone_weights).expanduser()
        if not path.is_file():
            raise UsageError(f"--backbone-weights {path} does not exist",
                             f"pass the ImageNet checkpoint of {spec.backbone}, "
                             f"run `harmonize zoo download {spec.backbone}`, or use --no-pretrained")
        return str(path)
    if not config.pretrained_backbone:
        return None
    from ..zoo import fetch

    try:
        return str(fetch(spec.backbone))
    except DownloadError as exc:
        raise UsageError(
            f"the ImageNet weights of the {spec.backbone} backbone of {spec.name} are missing ({exc.message})",
            f"run `harmonize zoo download {spec.backbone}`"
            + (f" or {exc.hint}" if exc.hint else "")
            + ", pass --backbone-weights PATH, or train from scratch with --no-pretrained",
        ) from None


def check_vgg(config: TrainConfig) -> Optional[str]:
    """The VGG16 ImageNet checkpoint of PCT-Net's contrastive loss (None for the other losses); it
    is not in the run's checkpoints, so a resumed run needs it too."""
    if config.loss != "pct":
        return None
    if config.vgg_weights:
        path = Path(config.vgg_weights).expanduser()
        if not path.is_file():
            raise UsageError(f"--vgg-weights {path} does not exist",
                             "pass torchvision's vgg16-397923af.pth, or run `harmonize zoo download vgg16`")
        return str(path)
    from ..zoo import fetch

    try:
        return str(fetch("vgg16"))
    except DownloadError as exc:
        raise UsageError(
            f"the VGG16 ImageNet weights of PCT-Net's contrastive loss are missing ({exc.message})",
            "run `harmonize zoo download vgg16`" + (f" or {exc.hint}" if exc.hint else "")
            + ", or pass --vgg-weights PATH",
        ) from None
