"""The architecture registry: every network of the paper under our name and its reference name,
and the lookups that span the zoo's tables (a name typed for weights, the releases by quality).

Each :class:`ArchSpec` knows how to build its network with the reference constructor arguments
(so that the state-dict layout is the reference's) and carries metadata: input size, family,
parameter count, input normalisation; the paper's numbers come from :mod:`.published`, the
released weights from :mod:`.released`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import replace
from typing import List

from ..choices import IDENTITY_NORMALIZATION, IMAGENET_NORMALIZATION
from ..errors import UsageError
from .facts import HARMONIZATION, ArchSpec, PretrainedWeights
from .published import paper_summary
from .released import ALL_WEIGHTS, list_weights

__all__ = ["ARCHITECTURES", "ArchSpec", "BASE_CONFIGS", "arch_names", "by_quality", "did_you_mean", "get_arch",
           "get_weights", "typed_names"]

# Reference base configurations (iharm/mconfigs/base.py), by reference name.
_DIH = "harmonize_cli.models.dih:DeepImageHarmonization"
_SSAM = "harmonize_cli.models.ssam:SSAMImageHarmonization"
_HRNET = "harmonize_cli.models.backboned:HRNetIHModel"
_DEEPLAB = "harmonize_cli.models.backboned:DeepLabIHModel"
_PCT = "harmonize_cli.models.pctnet:build_pctnet"

BASE_CONFIGS = {
    "dih256": ("DeepImageHarmonization", {"depth": 7}),
    "improved_dih256": ("DeepImageHarmonization", {"depth": 7, "batchnorm_from": 2, "image_fusion": True}),
    "improved_sedih256": ("DeepImageHarmonization",
                          {"depth": 7, "batchnorm_from": 2, "image_fusion": True, "attend_from": 5}),
    "ssam256": ("SSAMImageHarmonization", {"depth": 4, "batchnorm_from": 2, "attend_from": 2}),
    "improved_ssam256": ("SSAMImageHarmonization",
                         {"depth": 4, "ch": 32, "image_fusion": True, "attention_mid_k": 0.5,
                          "batchnorm_from": 2, "attend_from": 2}),
    "dih512": ("DeepImageHarmonization", {"depth": 8}),
    "improved_dih512": ("DeepImageHarmonization", {"depth": 8, "batchnorm_from": 2, "image_fusion": True}),
    "improved_ssam512": ("SSAMImageHarmonization",
                         {"depth": 6, "ch": 32, "image_fusion": True, "attention_mid_k": 0.5,
                          "batchnorm_from": 2, "attend_from": 3}),
    "improved_sedih512": ("DeepImageHarmonization",
                          {"depth": 8, "batchnorm_from": 2, "image_fusion": True, "attend_from": 6}),
}


def _base(reference_name):
    model, params = BASE_CONFIGS[reference_name]
    return {"model": model, "params": dict(params)}


def _spec(name, reference, builder, params, num_params, **kwargs):
    return ArchSpec(name=name, reference_name=reference, builder=builder, params=params,
                    num_params=num_params, **kwargs)


ARCHITECTURES = [
    _spec("dih", "dih256", _DIH, dict(BASE_CONFIGS["dih256"][1]), 8301507, family="dih",
          description="DIH encoder-decoder without the FC bottleneck"),
    _spec("dih-512", "dih512", _DIH, dict(BASE_CONFIGS["dih512"][1]), 16693187, family="dih", input_size=512,
          description="DIH at 512x512"),
    _spec("idih", "improved_dih256", _DIH, dict(BASE_CONFIGS["improved_dih256"][1]), 8301284,
          description="iDIH: DIH with image blending"),
    _spec("idih-512", "improved_dih512", _DIH, dict(BASE_CONFIGS["improved_dih512"][1]), 16692964,
          input_size=512, description="iDIH at 512x512"),
    _spec("isedih", "improved_sedih256", _DIH, dict(BASE_CONFIGS["improved_sedih256"][1]), 8304468,
          family="isedih", description="iDIH with masked channel attention in the decoder"),
    _spec("isedih-512", "improved_sedih512", _DIH, dict(BASE_CONFIGS["improved_sedih512"][1]), 16696148,
          family="isedih", input_size=512, description="iSEDIH at 512x512"),
    _spec("s2am", "ssam256", _SSAM, dict(BASE_CONFIGS["ssam256"][1]), 9163291, family="s2am",
          description="S2AM: U-Net with spatial-separated attention"),
    _spec("is2am", "improved_ssam256", _SSAM, dict(BASE_CONFIGS["improved_ssam256"][1]), 2185340, family="is2am",
          description="iS2AM: S2AM with image blending"),
    _spec("is2am-512", "improved_ssam512", _SSAM, dict(BASE_CONFIGS["improved_ssam512"][1]), 22998164,
          family="is2am", input_size=512, description="iS2AM at 512x512"),
    _spec("idih-hrnet-w18s", "hrnet18s_idih256", _HRNET, {"base_config": _base("improved_dih256")}, 12811093,
          family="idih-hrnet", backbone="hrnetv2-w18-small-v2",
          description="iDIH + foreground-aware HRNetV2-W18-small-v2 + OCR"),
    _spec("idih-hrnet-w18s-v2p", "hrnet18s_v2p_idih256", _HRNET,
          {"pyramid_channels": 256, "base_config": _base("improved_dih256")}, 18090581,
          family="idih-hrnet", backbone="hrnetv2-w18-small-v2",
          description="iDIH + HRNetV2-W18-small-v2, feature pyramid of HRNet outputs"),
    _spec("idih-hrnet-w18", "hrnet18_idih256", _HRNET,
          {"small": False, "base_config": _base("improved_dih256")}, 18512633,
          family="idih-hrnet", backbone="hrnetv2-w18", description="iDIH + foreground-aware HRNetV2-W18 + OCR"),
    _spec("idih-hrnet-w18-v2p", "hrnet18_v2p_idih256", _HRNET,
          {"small": False, "pyramid_channels": 256, "base_config": _base("improved_dih256")}, 23792121,
          family="idih-hrnet", backbone="hrnetv2-w18",
          description="iDIH + HRNetV2-W18, feature pyramid of HRNet outputs"),
    _spec("idih-hrnet-w32", "hrnet32_idih256", _HRNET,
          {"width": 32, "small": False, "base_config": _base("improved_dih256")}, 38497829,
          family="idih-hrnet", backbone="hrnetv2-w32", description="iDIH + foreground-aware HRNetV2-W32 + OCR"),
    _spec("idih-deeplab-r34", "deeplab_r34_idih256", _DEEPLAB, {"base_config": _base("improved_dih256")}, 34455813,
          family="idih-deeplab", backbone="resnet34",
          description="iDIH + foreground-aware ResNet-34 DeepLabV3+"),
    _spec("idih-hrnet-w18-512", "hrnet18_idih512", _HRNET,
          {"small": False, "downsize_hrnet_input": True, "base_config": _base("improved_dih512")}, 26904313,
          family="idih-hrnet", backbone="hrnetv2-w18", input_size=512,
          description="iDIH-512 + HRNetV2-W18 (HRNet sees a half-size input)"),
    _spec("isedih-hrnet-w18-512", "hrnet18_sedih512", _HRNET,
          {"small": False, "downsize_hrnet_input": True, "base_config": _base("improved_sedih512")}, 26907497,
          family="isedih-hrnet", backbone="hrnetv2-w18", input_size=512,
          description="iSEDIH-512 + HRNetV2-W18 (HRNet sees a half-size input)"),
    # Paper rows without a released reference configuration name (Table 5).
    _spec("is2am-hrnet-w18s", None, _HRNET, {"base_config": _base("improved_ssam256")}, 6580461,
          family="is2am-hrnet", backbone="hrnetv2-w18-small-v2",
          description="iS2AM + foreground-aware HRNetV2-W18-small-v2 + OCR"),
    _spec("is2am-hrnet-w18", None, _HRNET, {"small": False, "base_config": _base("improved_ssam256")}, 12282001,
          family="is2am-hrnet", backbone="hrnetv2-w18", description="iS2AM + foreground-aware HRNetV2-W18 + OCR"),
    _spec("is2am-hrnet-w32", None, _HRNET,
          {"width": 32, "small": False, "base_config": _base("improved_ssam256")}, 32267197,
          family="is2am-hrnet", backbone="hrnetv2-w32", description="iS2AM + foreground-aware HRNetV2-W32 + OCR"),
    _spec("idih-hrnet-w18s-nomask", None, _HRNET, {"mask_fusion": "", "base_config": _base("improved_dih256")},
          12810452, family="idih-hrnet", backbone="hrnetv2-w18-small-v2",
          description="iDIH + HRNetV2-W18-small-v2 whose backbone does not see the mask (ablation)"),
    # PCT-Net (Guerreiro et al., CVPR 2023): a 256-px network predicts per-pixel colour transforms that
    # are upsampled and applied at full resolution.
    ArchSpec(name="pctnet-cnn", reference_name="CNN_pct", builder=_PCT, params={"name": "CNN_pct"},
             num_params=2185736, family="pctnet", normalization=dict(IMAGENET_NORMALIZATION), full_resolution=True,
             description="PCT-Net, U-Net (iS2AM) parameter network, attention blending; full resolution"),
    ArchSpec(name="pctnet-vit", reference_name="ViT_pct", builder=_PCT, params={"name": "ViT_pct"},
             num_params=4809896, family="pctnet", normalization=dict(IDENTITY_NORMALIZATION), full_resolution=True,
             description="PCT-Net, ViT parameter network, mask blending; full resolution"),
    # Training-free baselines.
    ArchSpec(name="composite", builder="harmonize_cli.models.baselines:CompositeBaseline", params={}, input_size=None,
             family="baseline", num_params=0, description="returns the composite unchanged (lower bound)"),
    ArchSpec(name="lab-transfer", builder="harmonize_cli.models.baselines:LabTransfer", params={}, input_size=None,
             family="baseline", num_params=0,
             description="moves the foreground's Lab mean and std to the background's (no weights)"),
    ArchSpec(name="boundary-gain", builder="harmonize_cli.models.baselines:BoundaryGain", params={}, input_size=None,
             family="baseline", num_params=0,
             description="a per-channel gain in linear light read across the mask's edge where all its "
                         "sides agree (no weights; the offline default)"),
]

ARCHITECTURES = [replace(spec, paper=paper_summary(spec.name)) for spec in ARCHITECTURES]  # the paper's numbers

_BY_NAME = {spec.name: spec for spec in ARCHITECTURES}
_BY_ALIAS = {alias: spec for spec in ARCHITECTURES for alias in spec.aliases}


def get_arch(name: str) -> ArchSpec:
    """Look up an architecture by our name or its reference alias (case-insensitive)."""
    key = str(name).strip()
    spec = _BY_NAME.get(key) or _BY_ALIAS.get(key)
    if spec is None:
        lowered = key.lower().replace("_", "-")
        spec = _BY_NAME.get(lowered) or _BY_ALIAS.get(key.lower())
    if spec is None:
        choices = list(_BY_NAME) + list(_BY_ALIAS)
        close = difflib.get_close_matches(key, choices, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `harmonize zoo list`"
        raise UsageError(f"unknown model {name!r}", hint)
    return spec


def arch_names(include_baselines: bool = True):
    return [spec.name for spec in ARCHITECTURES if include_baselines or spec.needs_weights]


def typed_names() -> List[str]:
    """Every name a user may type for weights or a model: released and backbone weights (and
    their file names), architectures and their reference names."""
    names = []
    for weights in list_weights():
        names += [weights.name, weights.filename]
    for spec in ARCHITECTURES:
        names += [spec.name, *spec.aliases]
    return list(dict.fromkeys(names))


def did_you_mean(name: str, choices=None) -> str:
    """``"did you mean X?"`` for the closest of ``choices`` (default: every zoo name), else a
    pointer to `harmonize zoo list`."""
    close = difflib.get_close_matches(str(name), choices if choices is not None else typed_names(), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(close)}?" if close else "see `harmonize zoo list`"


def get_weights(name: str) -> PretrainedWeights:
    """Released or backbone weights by name or file name (``.pth`` optional)."""
    key = str(name).strip()
    if key.endswith(".pth"):
        key = key[:-4]
    for weights in ALL_WEIGHTS.values():
        if key in (weights.name, weights.filename, weights.filename[:-4]):
            return weights
    raise UsageError(f"unknown pretrained weights {name!r}",
                     did_you_mean(key) + f" (choose one of: {', '.join(ALL_WEIGHTS)})")


def by_quality(weights_list=None) -> List[PretrainedWeights]:
    """Released harmonization weights, best first: the paper's networks first (by their MSE on all
    of iHarmony4 at 256 px), then the full-resolution ones (scored by another protocol, so not
    comparable by MSE)."""
    return sorted(list_weights(HARMONIZATION) if weights_list is None else weights_list, key=_quality_rank)


def _quality_rank(weights: PretrainedWeights):
    mse = weights.metrics.get("All", {}).get("MSE")
    return (1 if get_arch(weights.arch).full_resolution else 0, float(mse) if mse is not None else math.inf)
