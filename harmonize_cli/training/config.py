"""Training configuration: one dataclass whose defaults are the paper's recipe, TOML in and out.

Precedence, lowest first: the dataclass defaults, the recipe (``paper``, the default: 180 epochs,
x0.1 at 160 and 175, FN-MSE with A_min 100 for every network; or ``reference``: the per-architecture
scripts below) for the fields left unset, ``--config FILE``, then the command-line options. The resolved configuration is
written to ``RUN/config.toml``; ``harmonize train --config RUN/config.toml`` repeats the run.

The recipes themselves (the per-family table, :func:`recipe_for`) live in :mod:`.recipes`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import UsageError
from .recipes import (  # noqa: F401  (re-exported: the recipes were defined here)
    AUTHORS_RECIPE_ONLY,
    FINE_TUNE_EPOCHS,
    FINE_TUNE_LR,
    FINE_TUNE_MILESTONES,
    PAPER_RECIPE,
    RECIPE_CHOICES,
    REFERENCE_RECIPES,
    Recipe,
    recipe_for,
)
from .tomlio import dumps_toml, loads_toml

from ..choices import EVAL_RESIZES as VAL_RESIZE_CHOICES
from ..choices import IHARMONY4_SUBSETS as ALL_SUBSETS
DEFAULT_VAL_SUBSETS = ("HFlickr", "Hday2night", "HCOCO")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
LOSS_CHOICES = ("fn-mse", "mse", "pct")
SCHEDULE_CHOICES = ("multistep", "constant-linear")
CROP_TRANSFORMS = ("random-resized-crop", "crop-no-resize")
DEFAULT_ARCH = "idih-hrnet-w18s"


def init_architecture(source) -> str:
    """The architecture of a ``--init`` checkpoint (read safely; a released name is fetched)."""
    from ..zoo import detect_arch, read_checkpoint

    checkpoint, _ = read_checkpoint(source)
    return detect_arch(checkpoint)


def default_workers() -> int:
    """Data-loading processes for this machine: the cores it gives us minus one (the training
    process keeps one), at most 4, at least 0 (0: load in the training process)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(4, cores - 1))


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``None`` means "the architecture's recipe value"."""

    # model
    arch: Optional[str] = None  # None: that of --init's checkpoint, else idih-hrnet-w18s
    init: Optional[str] = None  # start from these weights (fine-tuning): path, URL or released name
    recipe: str = "paper"
    pretrained_backbone: bool = True
    backbone_weights: Optional[str] = None
    vgg_weights: Optional[str] = None  # PCT-Net's loss network (default: the cached download)
    init_magnitude: Optional[float] = None
    # data
    data: Optional[str] = None
    train_subsets: Optional[list] = None  # None: the recipe's (all four; PCT-Net: HFlickr, Hday2night, HCOCO)
    val_subsets: list = field(default_factory=lambda: list(DEFAULT_VAL_SUBSETS))
    val_resize: str = "fixed256"
    crop: Optional[int] = None
    crop_ratio: Optional[float] = None  # PCT-Net: RandomCropNoResize's ratio (0.7)
    fullres_max_side: int = 1024  # PCT-Net: full-resolution crops are shrunk to this long side (0: never)
    keep_background_prob: float = 0.05
    workers: int = field(default_factory=default_workers)  # min(4, cores - 1)
    # optimisation
    epochs: Optional[int] = None
    milestones: Optional[list] = None
    schedule: Optional[str] = None  # "multistep", or "constant-linear" (constant, then linear to 0 from milestones[0])
    gamma: float = 0.1
    batch_size: int = 16
    val_batch_size: Optional[int] = None
    lr: Optional[float] = None  # None: the recipe's (1e-3; PCT-Net: 1e-4 or 1e-3 x batch / 16; --init: 1e-4)
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    loss: Optional[str] = None
    min_area: Optional[float] = None
    steps_per_epoch: int = 0  # 0: the whole training set each epoch
    # run
    out: Optional[str] = None
    seed: Optional[int] = None
    deterministic: bool = False
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = False
    val_every: int = 1
    snapshot_every: Optional[int] = None
    image_every: int = 1000  # steps between PNG grids (0: never)
    log_every: int = 25  # steps between TensorBoard scalars
    tensorboard: bool = True

    # ------------------------------------------------------------------ resolution
    def resolved(self) -> "TrainConfig":
        """A copy with every recipe field filled in and values checked."""
        from ..zoo import get_arch

        spec = get_arch(self.arch or (init_architecture(self.init) if self.init else DEFAULT_ARCH))
        if not spec.needs_weights:
            raise UsageError(f"{spec.name} is a training-free baseline", "pick a network from `harmonize zoo list`")
        recipe = recipe_for(spec.name, self.recipe)
        values = dataclasses.asdict(self)
        values["arch"] = spec.name
        defaults = {
            "epochs": recipe.epochs, "milestones": list(recipe.milestones), "loss": recipe.loss,
            "min_area": recipe.min_area, "init_magnitude": recipe.init_magnitude,
            "snapshot_every": recipe.snapshot_every, "crop": spec.input_size or 256,
            "val_batch_size": self.batch_size, "schedule": recipe.schedule, "crop_ratio": recipe.crop_ratio,
            "lr": recipe.lr * (self.batch_size / 16 if recipe.lr_per_16 else 1.0),
            "train_subsets": list(recipe.train_subsets or ALL_SUBSETS),
        }
        if self.init:  # fine-tuning: a short schedule at a lower rate (each overridable)
            defaults.update(epochs=FINE_TUNE_EPOCHS, milestones=list(FINE_TUNE_MILESTONES), lr=FINE_TUNE_LR)
            values["pretrained_backbone"] = False  # every weight comes from the checkpoint
        for key, value in defaults.items():
            if values[key] is None:
                values[key] = value
        if not spec.backbone:
            values["pretrained_backbone"] = False
            values["backbone_weights"] = None
        if (values["loss"] == "pct") != (spec.family == "pctnet"):
            raise UsageError(f"loss {values['loss']!r} does not train {spec.name}",
                             "PCT-Net trains with loss 'pct' only, the other networks with fn-mse or mse")
        if recipe.crop_transform != "crop-no-resize":
            if self.crop_ratio is not None:
                raise UsageError("crop_ratio is for PCT-Net's full-resolution crops", "leave it out for " + spec.name)
            values["vgg_weights"] = None
        config = TrainConfig(**values)
        config.validate()
        check_against_architecture(spec, config)
        return config

    def validate(self) -> None:
        def bad(message, hint=None):
            raise UsageError(message, hint)

        if self.epochs is not None and self.epochs < 1:
            bad(f"--epochs must be at least 1, got {self.epochs}")
        if self.milestones is not None:
            if any(int(m) < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
                bad(f"--milestones must be increasing positive epochs, got {self.milestones}", "e.g. --milestones 160,175")
        if self.batch_size < 1:
            bad(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            bad(f"--lr must be a positive number, got {self.lr}")
        if self.loss is not None and self.loss not in LOSS_CHOICES:
            bad(f"unknown loss {self.loss!r}", "use fn-mse or mse (pct for PCT-Net)")
        if self.schedule is not None and self.schedule not in SCHEDULE_CHOICES:
            bad(f"unknown schedule {self.schedule!r}", f"use one of {', '.join(SCHEDULE_CHOICES)}")
        if self.schedule == "constant-linear" and self.milestones is not None and len(self.milestones) != 1:
            bad(f"the constant-linear schedule takes one milestone (where the decay starts), got {self.milestones}",
                "e.g. --milestones 50")
        if self.crop_ratio is not None and not 0 < self.crop_ratio <= 1:
            bad(f"crop_ratio must be in (0, 1], got {self.crop_ratio}")
        if self.fullres_max_side < 0:
            bad(f"fullres_max_side must be 0 or more, got {self.fullres_max_side}")
        if self.amp not in AMP_CHOICES:
            bad(f"unknown --amp {self.amp!r}", "use auto, bf16, fp16 or off")
        if self.val_resize not in VAL_RESIZE_CHOICES:
            bad(f"unknown validation resize {self.val_resize!r}", "use fixed256, limit1024 or none")
        if self.crop is not None and self.crop < 8:
            bad(f"--crop must be at least 8, got {self.crop}")
        if self.workers < 0:
            bad(f"--workers must be 0 or more, got {self.workers}")
        for name in ("val_every", "snapshot_every", "image_every", "log_every", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and value < 0:
                bad(f"{name} must be 0 or more, got {value}")
        if self.train_subsets is not None and not self.train_subsets:  # names are checked against the data
            bad("no training subsets", f"e.g. {', '.join(ALL_SUBSETS)}, or the subsets of your own data")
        if len(self.betas) != 2 or not all(_finite(b) and 0 <= b < 1 for b in self.betas):
            bad(f"betas must be two numbers in [0, 1), got {self.betas}", "the default is [0.9, 0.999]")
        if not (_finite(self.eps) and self.eps > 0):
            bad(f"eps must be a positive number, got {self.eps}", "the default is 1e-8")
        if not (_finite(self.gamma) and 0 < self.gamma <= 1):
            bad(f"gamma must be in (0, 1], got {self.gamma}", "the factor of each learning-rate step; default 0.1")
        if self.init_magnitude is not None and not (_finite(self.init_magnitude) and self.init_magnitude > 0):
            bad(f"init_magnitude must be a positive number, got {self.init_magnitude}",
                "leave it out for the recipe's value")
        if self.min_area is not None and not (_finite(self.min_area) and self.min_area > 0):
            bad(f"--min-area must be a positive number of pixels, got {self.min_area}", "the recipe uses 100")
        if not (_finite(self.keep_background_prob) and 0 <= self.keep_background_prob <= 1):
            bad(f"keep_background_prob must be in [0, 1], got {self.keep_background_prob}")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            bad(f"val_batch_size must be at least 1, got {self.val_batch_size}")
        if self.seed is not None and not 0 <= self.seed < 2 ** 63:
            bad(f"--seed must be in 0 .. 2**63 - 1, got {self.seed}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "configuration") -> "TrainConfig":
        known = {f.name: f for f in dataclasses.fields(cls)}
        flat = {}
        for key, value in values.items():
            if isinstance(value, dict):  # tolerate [sections]
                flat.update({k.replace("-", "_"): v for k, v in value.items()})
            else:
                flat[key.replace("-", "_")] = value
        unknown = sorted(set(flat) - set(known))
        if unknown:
            raise UsageError(f"{source}: unknown setting(s) {', '.join(unknown)}",
                             f"known settings: {', '.join(known)}")
        converted = {}
        for key, value in flat.items():
            converted[key] = _coerce(known[key], value, source)
        config = cls(**converted)
        try:
            config.validate()  # ranges too, when it is read: nothing unchecked reaches torch
        except UsageError as exc:
            raise UsageError(f"{source}: {exc.message}", exc.hint) from None
        return config

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict(), header=_TOML_HEADER)

    @classmethod
    def from_toml(cls, text: str, source: str = "configuration") -> "TrainConfig":
        try:
            values = loads_toml(text)
        except ValueError as exc:
            raise UsageError(f"{source} is not valid TOML: {exc}") from exc
        return cls.from_dict(values, source)

    @classmethod
    def load(cls, path) -> "TrainConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read configuration {path}: {exc.strerror or exc}") from exc
        return cls.from_toml(text, str(path))

    def save(self, path) -> None:
        from ..atomic import atomic_write_text

        atomic_write_text(path, self.to_toml())

    def updated(self, **overrides) -> "TrainConfig":
        """A copy with the given fields replaced (``None`` values are ignored)."""
        values = self.to_dict()
        for key, value in overrides.items():
            if key not in values:
                raise TypeError(f"unknown training setting {key!r}")
            if value is not None:
                values[key] = value
        return TrainConfig(**values)


def _coerce(spec: dataclasses.Field, value: Any, source: str):
    """Light type checking for values read from TOML (ints given for floats are accepted)."""
    default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
    kind = type(default)
    annotation = str(spec.type)
    if value is None and annotation.startswith("Optional"):
        return None
    try:
        if isinstance(default, bool) or annotation == "bool":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, list) or annotation in ("list", "Optional[list]"):
            if not isinstance(value, list):
                raise TypeError
            item = _LIST_ITEMS.get(spec.name)
            if item is not None and not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
                raise TypeError
            return [float(v) for v in value] if item == (int, float) else list(value)
        if "float" in annotation or kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
        if "int" in annotation or kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            return value
        if "str" in annotation or kind is str:
            if not isinstance(value, str):
                raise TypeError
            return value
    except TypeError:
        expected = annotation.replace('Optional[', '').rstrip(']')
        if spec.name in _LIST_ITEMS:
            expected = _LIST_WORDS[spec.name]
        raise UsageError(f"{source}: {spec.name} = {value!r} has the wrong type", f"expected {expected}") from None
    return value


# the element types of list settings, checked when a configuration is read
_LIST_ITEMS = {"betas": (int, float), "milestones": int, "train_subsets": str, "val_subsets": str}
_LIST_WORDS = {"betas": "a list of two numbers", "milestones": "a list of epochs (integers)",
               "train_subsets": "a list of subset names", "val_subsets": "a list of subset names"}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_against_architecture(spec, config: "TrainConfig") -> None:
    """What the network itself needs, checked before any work (UsageError, one line): crops whose
    sides it can run at (multiples of its ``size_divisor``: an iDIH encodes down to 2 x 2 pixels),
    and at least two samples per batch when it has batch norms (training statistics of one sample
    are undefined). The network is built on the meta device: no memory, no weights."""
    import torch

    with torch.device("meta"):
        network = spec.build()
    divisor = int(getattr(network, "size_divisor", 1) or 1)
    if config.crop is not None and config.crop % divisor:
        fits = max(divisor, (config.crop // divisor) * divisor)
        raise UsageError(f"--crop {config.crop} does not fit {spec.name}: its inputs must be multiples of "
                         f"{divisor} pixels", f"use --crop {fits}" + (f" or {fits + divisor}" if fits > divisor else ""))
    has_batch_norm = any(isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in network.modules())
    if has_batch_norm and config.batch_size < 2:
        raise UsageError(f"--batch-size {config.batch_size} cannot train {spec.name}: its batch norms need at "
                         "least 2 samples per batch", "use --batch-size 2 or more (the recipe uses 16)")


_TOML_HEADER = (
    "# harmonize training configuration (repeat the run: harmonize train --config THIS_FILE)\n"
    "# Settings left out take the defaults of `recipe` (\"paper\": the paper's recipe, for every network).\n"
)
