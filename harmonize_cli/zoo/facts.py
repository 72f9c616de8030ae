"""What the zoo's tables are made of: :class:`ArchSpec` (an architecture) and
:class:`PretrainedWeights` (a released checkpoint). The bottom layer of the zoo: it imports no
other module of the zoo, and every other module may import it.

An :class:`ArchSpec` knows how to build its network (``builder`` = ``"module:Class"``, imported on
first use, so the tables stay torch-free); a :class:`PretrainedWeights` says where a checkpoint
comes from, what it is for (``kind``), how its inputs are prepared and what it scores.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Optional

from ..choices import IMAGENET_NORMALIZATION

HARMONIZATION = "harmonization"  # PretrainedWeights.kind: a whole network's weights
BACKBONE = "backbone"  # PretrainedWeights.kind: ImageNet weights of a backbone (training)


def as_lists(normalization: dict) -> dict:
    """``{"mean": [...], "std": [...]}``: a normalisation as weights' preprocessing records it."""
    return {key: list(values) for key, values in normalization.items()}


IMAGENET_PREPROCESSING_256 = {"resize": "fixed256", "input_size": 256,
                              "normalization": as_lists(IMAGENET_NORMALIZATION)}


@dataclass(frozen=True)
class ArchSpec:
    """One architecture of the zoo."""

    name: str
    builder: str  # "module:Class"
    params: dict
    reference_name: Optional[str] = None  # the reference configuration name (an alias)
    input_size: Optional[int] = 256  # None: any size (baselines)
    family: str = "idih"
    backbone: Optional[str] = None  # ImageNet backbone key in BACKBONE_WEIGHTS, if any
    num_params: Optional[int] = None  # trainable parameters (equal to the reference's)
    description: str = ""
    normalization: dict = field(default_factory=lambda: dict(IMAGENET_NORMALIZATION))  # input space
    full_resolution: bool = False  # the network applies its 256-px prediction at any resolution itself
    # The paper's headline numbers (``{"All": {"MSE", "PSNR"[, "fMSE"]}}``), filled in by the
    # registry from :mod:`harmonize_cli.zoo.published`; ``{}`` when the paper has none.
    paper: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def aliases(self):
        return (self.reference_name,) if self.reference_name else ()

    @property
    def needs_weights(self) -> bool:
        return self.family != "baseline"

    def build(self):
        module_name, class_name = self.builder.split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(**_deep_copy(self.params))

    def layout(self) -> dict:
        """The (key -> shape) layout of this network's state dict, built on the meta device (no
        memory allocated, no initialisation run)."""
        import torch

        with torch.device("meta"):
            model = self.build()
        return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _deep_copy(value):
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


@dataclass(frozen=True)
class PretrainedWeights:
    """A released checkpoint: where it comes from, what it is for, what it scores."""

    name: str
    filename: str
    url: str
    arch: str  # our architecture name (a backbone's own name for kind="backbone")
    kind: str = HARMONIZATION  # or BACKBONE
    input_size: int = 256
    sha256: Optional[str] = None
    hash_prefix: Optional[str] = None
    preprocessing: dict = field(default_factory=lambda: dict(IMAGENET_PREPROCESSING_256))
    metrics: dict = field(default_factory=dict)  # {"HCOCO": {"MSE":.., "PSNR":..}, ..., "All": {..}}
    source: str = ""
    note: str = ""
    licence: str = ""
    default: bool = False  # the weights of this kind used when none are named (one per kind at most)
