"""The weights table: every released checkpoint (the reference's and PCT-Net's harmonization
networks, the ImageNet backbones) with its facts: file, URL, architecture, preprocessing, metrics,
licence; the default marked on the table (``default=True``, like torchvision's ``DEFAULT``).

The one place these facts are written: :mod:`.published` reads the released checkpoints' numbers
from here, the registry (:mod:`.registry`) looks weights up by name, :mod:`.hub` fetches them.
``tests/test_weights_schema.py`` checks every entry against its architecture.
"""

from __future__ import annotations

from typing import List, Optional

from ..choices import IDENTITY_NORMALIZATION, IMAGENET_NORMALIZATION, TABLE_ROWS
from .facts import BACKBONE, HARMONIZATION, PretrainedWeights, as_lists

_RELEASE = "https://github.com/saic-vul/image_harmonization/releases/download/v1.0/"
_IMAGENET_NORM = as_lists(IMAGENET_NORMALIZATION)


def _full_resolution(normalization) -> dict:
    """Preprocessing of a network that runs at 256 px and applies its prediction at full resolution."""
    return {"resize": "full resolution (network at 256)", "input_size": 256, "normalization": as_lists(normalization)}


def _metrics(*rows):
    return {subset: {"MSE": mse, "PSNR": psnr} for subset, (mse, psnr) in zip(TABLE_ROWS, rows) if mse is not None}


_REFERENCE_PAGE = "https://github.com/saic-vul/image_harmonization"

HARMONIZATION_WEIGHTS = [
    PretrainedWeights("idih256", "idih256.pth", _RELEASE + "idih256.pth", "idih", source=_REFERENCE_PAGE,
                      metrics=_metrics((19.58, 38.34), (30.84, 36.00), (84.74, 32.58), (50.05, 37.10), (30.70, 36.99))),
    PretrainedWeights("issam256", "issam256.pth", _RELEASE + "issam256.pth", "is2am", source=_REFERENCE_PAGE,
                      metrics=_metrics((16.48, 39.16), (22.60, 37.24), (69.67, 33.56), (40.59, 37.72), (24.65, 37.95))),
    PretrainedWeights("deeplab_idih256", "deeplab_idih256.pth", _RELEASE + "deeplab_idih256.pth", "idih-deeplab-r34",
                      source=_REFERENCE_PAGE,
                      metrics=_metrics((17.68, 38.97), (28.13, 36.33), (70.89, 33.25), (56.17, 37.25), (27.37, 37.53))),
    PretrainedWeights("hrnet18s_idih256", "hrnet18s_idih256.pth", _RELEASE + "hrnet18s_idih256.pth",
                      "idih-hrnet-w18s", source=_REFERENCE_PAGE, default=True,
                      metrics=_metrics((14.30, 39.52), (22.57, 37.18), (63.03, 33.70), (51.20, 37.69), (22.82, 38.15))),
    PretrainedWeights("hrnet18_idih256", "hrnet18_idih256.pth", _RELEASE + "hrnet18_idih256.pth", "idih-hrnet-w18",
                      source=_REFERENCE_PAGE,
                      metrics=_metrics((13.79, 39.62), (25.44, 36.91), (60.63, 33.88), (44.94, 37.74), (22.99, 38.16))),
    PretrainedWeights("hrnet18_v2p_idih256", "hrnet18_v2p_idih256.pth", _RELEASE + "hrnet18_v2p_idih256.pth",
                      "idih-hrnet-w18-v2p", source=_REFERENCE_PAGE,
                      metrics={"All": {"MSE": 23.10, "PSNR": 38.15}}),
    PretrainedWeights("hrnet32_idih256", "hrnet32_idih256.pth", _RELEASE + "hrnet32_idih256.pth", "idih-hrnet-w32",
                      source=_REFERENCE_PAGE,
                      metrics=_metrics((14.00, 39.71), (23.04, 37.13), (57.55, 34.06), (53.70, 37.70), (22.22, 38.29))),
]

_PCT_PAGE = "https://github.com/rakutentech/PCT-Net-Image-Harmonization"
_PCT_RAW = _PCT_PAGE + "/raw/main/pretrained_models/"
_PCT_NOTE = "metrics at full resolution (HAdobe5k capped at 1024 px), from the PCT-Net paper"
HARMONIZATION_WEIGHTS += [
    PretrainedWeights("PCTNet_ViT", "PCTNet_ViT.pth", _PCT_RAW + "PCTNet_ViT.pth", "pctnet-vit", source=_PCT_PAGE,
                      note=_PCT_NOTE, licence="MPL-2.0",
                      preprocessing=_full_resolution(IDENTITY_NORMALIZATION),
                      metrics={"All": {"MSE": 18.84, "PSNR": 39.29, "fMSE": 237.49}}),
    PretrainedWeights("PCTNet_CNN", "PCTNet_CNN.pth", _PCT_RAW + "PCTNet_CNN.pth", "pctnet-cnn", source=_PCT_PAGE,
                      note=_PCT_NOTE, licence="MPL-2.0",
                      preprocessing=_full_resolution(IMAGENET_NORMALIZATION),
                      metrics={"All": {"MSE": 24.02, "PSNR": 38.30, "fMSE": 282.75}}),
]

_HRNET_PAGE = "https://github.com/HRNet/HRNet-Image-Classification"
_HRNET_NOTE = ("published on OneDrive by the HRNet authors; if the direct download fails, "
               "fetch it from the project page and place it in the cache")

BACKBONE_WEIGHTS = [
    PretrainedWeights("hrnetv2-w18-small-v2", "hrnet_w18_small_model_v2.pth",
                      "https://1drv.ms/u/s!Aus8VCZ_C_33gRmfdPR79WBS61Qn?e=HVZUi8", "hrnetv2-w18-small-v2",
                      kind=BACKBONE, input_size=224, source=_HRNET_PAGE, note=_HRNET_NOTE,
                      preprocessing={"normalization": _IMAGENET_NORM},
                      metrics={"ImageNet": {"top1_error": 24.9, "top5_error": 7.6}}),
    PretrainedWeights("hrnetv2-w18", "hrnetv2_w18_imagenet_pretrained.pth",
                      "https://1drv.ms/u/s!Aus8VCZ_C_33cMkPimlmClRvmpw", "hrnetv2-w18",
                      kind=BACKBONE, input_size=224, source=_HRNET_PAGE, note=_HRNET_NOTE,
                      preprocessing={"normalization": _IMAGENET_NORM},
                      metrics={"ImageNet": {"top1_error": 23.2, "top5_error": 6.6}}),
    PretrainedWeights("hrnetv2-w32", "hrnetv2_w32_imagenet_pretrained.pth",
                      "https://1drv.ms/u/s!Aus8VCZ_C_33dYBMemi9xOUFR0w", "hrnetv2-w32",
                      kind=BACKBONE, input_size=224, source=_HRNET_PAGE, note=_HRNET_NOTE,
                      preprocessing={"normalization": _IMAGENET_NORM},
                      metrics={"ImageNet": {"top1_error": 21.5, "top5_error": 5.8}}),
    PretrainedWeights("resnet34", "resnet34-b627a593.pth", "https://download.pytorch.org/models/resnet34-b627a593.pth",
                      "resnet34", kind=BACKBONE, input_size=224, hash_prefix="b627a593",
                      source="https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet34.html",
                      preprocessing={"normalization": _IMAGENET_NORM},
                      metrics={"ImageNet": {"acc@1": 73.314, "acc@5": 91.42}}),
    # not a backbone of a network: the feature network of PCT-Net's contrastive loss (training only)
    PretrainedWeights("vgg16", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                      "vgg16", kind=BACKBONE, input_size=224, hash_prefix="397923af",
                      source="https://pytorch.org/vision/stable/models/generated/torchvision.models.vgg16.html",
                      note="the VGG16 features of PCT-Net's contrastive loss (harmonize train --arch pctnet-*)",
                      preprocessing={"normalization": _IMAGENET_NORM},
                      metrics={"ImageNet": {"acc@1": 71.592, "acc@5": 90.382}}),
]


ALL_WEIGHTS = {weights.name: weights for weights in HARMONIZATION_WEIGHTS + BACKBONE_WEIGHTS}


def list_weights(kind: Optional[str] = None) -> List[PretrainedWeights]:
    return [w for w in ALL_WEIGHTS.values() if kind is None or w.kind == kind]


def weights_for_arch(arch_name: str) -> Optional[PretrainedWeights]:
    """The released harmonization checkpoint of an architecture, if there is one."""
    for weights in HARMONIZATION_WEIGHTS:
        if weights.arch == arch_name:
            return weights
    return None


def default_weights(kind: str = HARMONIZATION) -> Optional[PretrainedWeights]:
    """The entry marked ``default=True`` among the weights of ``kind`` (None when none is)."""
    return next((weights for weights in list_weights(kind) if weights.default), None)
