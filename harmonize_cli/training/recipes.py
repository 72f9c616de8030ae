"""The training recipes: the paper's, and the authors' per-architecture scripts (one table).

``paper`` (the default): 180 epochs, x0.1 at 160 and 175, FN-MSE with A_min 100 for every network
(PCT-Net excepted, below); the fields a configuration leaves unset take the recipe's values
(:meth:`harmonize_cli.training.config.TrainConfig.resolved`).

The ``reference`` recipes (``models/fixed256/*.py`` and ``models/crop512/*.py`` of the authors' code):

=====================================  ======  ==========  =======  ========  ===========
architectures                          epochs  milestones  loss     A_min     init scale
=====================================  ======  ==========  =======  ========  ===========
HRNet / DeepLab backboned, 256         180     160, 175    fn-mse   100       2.0
HRNet backboned, 512                   180     160, 175    fn-mse   1000      2.0
iDIH, iSEDIH (256)                     120     105, 115    fn-mse   100       2.0
iDIH, iSEDIH (512)                     120     105, 115    fn-mse   1000      2.0
iS2AM (256, 512)                       120     105, 115    fn-mse   1000      1.0
S2AM                                   120     105, 115    mse      -         2.0
DIH (256, 512)                         120     none        mse      -         2.0
=====================================  ======  ==========  =======  ========  ===========

Every recipe uses Adam (betas 0.9 / 0.999, eps 1e-8) at lr 1e-3 with MultiStepLR (gamma 0.1),
batch 16, RandomResizedCrop (scale 0.5-1) + horizontal flip, the train splits of all four subsets
(keeping 5 % of the samples whose foreground equals the target), and validates on the test splits
of HFlickr, Hday2night and HCOCO resized to 256x256.

PCT-Net (family ``pctnet``, another paper) has only its authors' recipe (``models/PCTNet_*.py``):
both ``paper`` and ``reference`` give it. Loss ``pct`` (FN-MSE with A_min 1000 on the
full-resolution output + 0.01 x style contrastive + 0.1 x smoothness), full-resolution crops
``RandomCropNoResize(0.7)`` with the network fed their 256 px view, the train splits of HFlickr,
Hday2night and HCOCO, Adam at lr x batch / 16, and per model:

==============  ======  ===========================================  =========  ===============
model           epochs  schedule                                     lr (b=16)  initialisation
==============  ======  ===========================================  =========  ===============
PCTNet-ViT      100     constant for 50, then linear to 0 at 100     1e-4       N(0, 0.02)
PCTNet-CNN      180     MultiStepLR x0.1 at 160, 175                 1e-3       XavierGluon 2.0
==============  ======  ===========================================  =========  ===============
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

from ..errors import UsageError

__all__ = ["Recipe", "RECIPE_CHOICES", "PAPER_RECIPE", "REFERENCE_RECIPES", "AUTHORS_RECIPE_ONLY", "recipe_for",
           "FINE_TUNE_EPOCHS", "FINE_TUNE_MILESTONES", "FINE_TUNE_LR"]


@dataclass(frozen=True)
class Recipe:
    """The per-architecture part of a training recipe.

    In :data:`REFERENCE_RECIPES` a row may also say what changes for 512 px models
    (``min_area_512``, ``snapshot_every_512``); :meth:`for_input_size` folds that in.
    """

    epochs: int
    milestones: tuple
    loss: str
    min_area: float
    init_magnitude: float = 2.0
    snapshot_every: int = 10
    min_area_512: Optional[float] = None
    snapshot_every_512: Optional[int] = None
    lr: float = 1e-3
    lr_per_16: bool = False  # lr is for a batch of 16, scaled by batch / 16
    schedule: str = "multistep"  # or "constant-linear": constant until milestones[0], then linear to 0
    train_subsets: Optional[tuple] = None  # None: all four
    crop_transform: str = "random-resized-crop"  # or "crop-no-resize" (full-resolution crops, PCT-Net)
    crop_ratio: Optional[float] = None  # RandomCropNoResize's ratio

    def for_input_size(self, input_size: Optional[int]) -> "Recipe":
        """The recipe of a model trained at ``input_size`` (512 and more: the ``*_512`` values)."""
        large = (input_size or 256) >= 512
        return dataclasses.replace(
            self,
            min_area=self.min_area_512 if large and self.min_area_512 is not None else self.min_area,
            snapshot_every=(self.snapshot_every_512 if large and self.snapshot_every_512 is not None
                            else self.snapshot_every),
            min_area_512=None, snapshot_every_512=None,
        )


RECIPE_CHOICES = ("paper", "reference")
PAPER_RECIPE = Recipe(180, (160, 175), "fn-mse", 100.0)

# Fine-tuning (``--init``): the network starts from trained weights, so a short schedule at a lower
# learning rate, with one decay; the loss and A_min stay the architecture's recipe's.
FINE_TUNE_EPOCHS = 20
FINE_TUNE_MILESTONES = (15,)
FINE_TUNE_LR = 1e-4

_BACKBONED = Recipe(180, (160, 175), "fn-mse", 100.0, min_area_512=1000.0)
_IMPROVED_BASE = Recipe(120, (105, 115), "fn-mse", 100.0, min_area_512=1000.0, snapshot_every_512=5)

_PCT = dict(lr_per_16=True, train_subsets=("HFlickr", "Hday2night", "HCOCO"),
            crop_transform="crop-no-resize", crop_ratio=0.7)

# The authors' training scripts, one row per architecture family (the table in the module docstring).
REFERENCE_RECIPES: dict[str, Union[Recipe, dict]] = {
    "idih-hrnet": _BACKBONED,
    "isedih-hrnet": _BACKBONED,
    "is2am-hrnet": _BACKBONED,
    "idih-deeplab": _BACKBONED,
    "idih": _IMPROVED_BASE,
    "isedih": _IMPROVED_BASE,
    "is2am": Recipe(120, (105, 115), "fn-mse", 1000.0, init_magnitude=1.0),
    "s2am": Recipe(120, (105, 115), "mse", 100.0, snapshot_every=5),
    "dih": Recipe(120, (), "mse", 100.0, snapshot_every=5),
    # one family, two scripts (models/PCTNet_ViT.py, models/PCTNet_CNN.py): one row per model
    "pctnet": {
        "pctnet-vit": Recipe(100, (50,), "pct", 1000.0, lr=1e-4, schedule="constant-linear", **_PCT),
        "pctnet-cnn": Recipe(180, (160, 175), "pct", 1000.0, lr=1e-3, **_PCT),
    },
}
# families whose networks come from another paper: the iDIH paper's recipe does not apply to them,
# and `--recipe paper` gives their authors' recipe too
AUTHORS_RECIPE_ONLY = ("pctnet",)


def recipe_for(arch: str, recipe: str = "paper") -> Recipe:
    """The training recipe of an architecture (by our name or the reference alias).

    ``paper`` (the default): the paper's recipe for every network, 180 epochs, x0.1 at 160 and 175,
    FN-MSE with A_min 100 (the reference's initialisation scale is kept). ``reference``: the
    per-architecture scripts of the authors' code (:data:`REFERENCE_RECIPES`). The families of
    :data:`AUTHORS_RECIPE_ONLY` (PCT-Net) get their authors' recipe from both.
    """
    from ..zoo import get_arch

    if recipe not in RECIPE_CHOICES:
        raise UsageError(f"unknown recipe {recipe!r}", f"use one of {', '.join(RECIPE_CHOICES)}")
    spec = get_arch(arch)
    row = REFERENCE_RECIPES.get(spec.family)
    if row is None:
        raise UsageError(f"{spec.name} is not trainable", "pick a network from `harmonize zoo list`")
    if isinstance(row, dict):  # a family with one script per model
        row = row[spec.name]
    reference = row.for_input_size(spec.input_size)
    if recipe == "paper" and spec.family not in AUTHORS_RECIPE_ONLY:
        return dataclasses.replace(PAPER_RECIPE, init_magnitude=reference.init_magnitude)
    return reference
