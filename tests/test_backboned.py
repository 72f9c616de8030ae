"""Backboned (HRNetV2+OCR / DeepLabV3+) harmonization models: variants and training helpers.

Reference layouts, parameter counts and the forward-pass fixtures of every configuration are
checked in test_zoo.py."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from harmonize_cli.models.backboned import (
    DeepLabIHModel,
    HRNetIHModel,
    load_pretrained_backbone,
    lr_multipliers,
    optimizer_param_groups,
)
from harmonize_cli.models.dih import DeepImageHarmonization
from harmonize_cli.models.initialization import init_weights
from parity_utils import reference_layouts

IDIH256 = {"model": "DeepImageHarmonization", "params": {"depth": 7, "batchnorm_from": 2, "image_fusion": True}}
ISSAM256 = {"model": "SSAMImageHarmonization",
            "params": {"depth": 4, "ch": 32, "image_fusion": True, "attention_mid_k": 0.5,
                       "batchnorm_from": 2, "attend_from": 2}}

@pytest.fixture(scope="module")
def official():
    return reference_layouts()


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _mask(n, size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, 1, size, size)
    for i in range(n):
        top, left = torch.randint(0, size // 2, (2,), generator=generator).tolist()
        mask[i, :, top:top + size // 3, left:left + size // 3] = 1.0
    return mask


# --------------------------------------------------------------------------------------------------
# reference layouts and parity


def test_base_config_is_not_mutated(official):
    params = copy.deepcopy(official["hrnet18s_idih256"]["params"])
    snapshot = copy.deepcopy(params)
    HRNetIHModel(**params)
    DeepLabIHModel(**params)
    assert params == snapshot


# --------------------------------------------------------------------------------------------------
# variants beyond the registry (every registered architecture runs forward and backward in
# tests/test_zoo.py::test_forward_and_backward_on_cpu, the heavy ones in the slow pass)


def test_no_mask_variant_has_no_mask_conv():
    model = HRNetIHModel(IDIH256, mask_fusion="")
    assert not hasattr(model, "mask_conv")
    assert not any(key.startswith("mask_conv") for key in model.state_dict())


@pytest.mark.parametrize("kwargs,size", [
    (dict(base_config=IDIH256, pyramid_channels=256), 256),
    (dict(base_config=IDIH256, mask_fusion="rgb"), 256),
    (dict(base_config=ISSAM256, cat_hrnet_outputs=False, mode="catc"), 64),
    (dict(base_config=ISSAM256, ocr=-1, mode="sum"), 64),
])
def test_hrnet_variants_run(kwargs, size):
    model = HRNetIHModel(**kwargs).eval()
    with torch.no_grad():
        output = model(torch.randn(1, 3, size, size), _mask(1, size))
    assert output.shape == (1, 3, size, size)
    assert torch.isfinite(output).all()


def test_hrnet_downsized_input_runs():
    base = {"model": "DeepImageHarmonization",
            "params": {"depth": 8, "batchnorm_from": 2, "image_fusion": True, "attend_from": 6}}
    model = HRNetIHModel(base, small=True, downsize_hrnet_input=True).eval()
    assert model.model.encoder.connectors.keys() == {"connector3"}
    assert model.size_divisor == 512  # 2 ** (depth + 1), the reference padding rule
    with torch.no_grad():
        output = model(torch.randn(1, 3, 512, 512), _mask(1, 512))
    assert output.shape == (1, 3, 512, 512)


def test_base_model_receives_backbone_features():
    model = HRNetIHModel(IDIH256)
    assert isinstance(model.model, DeepImageHarmonization)
    assert model.backbone.output_channels == [128]
    assert list(model.model.encoder.connectors.keys()) == ["connector2"]
    assert HRNetIHModel(IDIH256, pyramid_channels=64).backbone.output_channels == [64] * 4
    assert HRNetIHModel(IDIH256, cat_hrnet_outputs=False).backbone.output_channels == [18, 36, 72, 144]
    # class objects are accepted as well as names
    direct = HRNetIHModel({"model": DeepImageHarmonization, "params": IDIH256["params"]})
    assert direct.state_dict().keys() == model.state_dict().keys()
    with pytest.raises(ValueError):
        HRNetIHModel({"model": "NoSuchModel", "params": {"depth": 4}})


# --------------------------------------------------------------------------------------------------
# training helpers


def test_lr_multipliers_hrnet():
    model = HRNetIHModel(IDIH256, pyramid_channels=32)
    multipliers = lr_multipliers(model)
    assert list(multipliers) == [name for name, _ in model.named_parameters()]
    ocr_heads = ("backbone.hrnet.conv3x3_ocr.", "backbone.hrnet.ocr_distri_head.")
    for name, mult in multipliers.items():
        if name.startswith(ocr_heads):
            assert mult == 1.0, name
        elif name.startswith("backbone.hrnet."):
            assert mult == pytest.approx(0.1), name
        else:  # base model, pyramid, mask fusion conv + scale
            assert mult == 1.0, name
    assert multipliers["mask_conv.0.weight"] == 1.0
    assert multipliers["mask_conv.1.scale"] == 1.0
    assert multipliers["backbone.downsize.reduce_conv.block.0.weight"] == 1.0
    assert multipliers["backbone.hrnet.stage4.0.fuse_layers.0.1.0.weight"] == pytest.approx(0.1)

    custom = lr_multipliers(HRNetIHModel(ISSAM256, lr_mult=0.5))
    assert custom["backbone.hrnet.conv1.weight"] == 0.5
    assert custom["backbone.hrnet.ocr_distri_head.conv_bn_dropout.0.weight"] == 1.0
    # without concatenation OCR is unused and keeps the backbone multiplier, as in the reference
    no_cat = lr_multipliers(HRNetIHModel(ISSAM256, cat_hrnet_outputs=False))
    assert no_cat["backbone.hrnet.conv3x3_ocr.0.weight"] == pytest.approx(0.1)


def test_lr_multipliers_deeplab_and_optimizer_groups():
    model = DeepLabIHModel(IDIH256)
    multipliers = lr_multipliers(model)
    for name, mult in multipliers.items():
        expected = 0.1 if name.startswith("backbone.deeplab.backbone.") else 1.0
        assert mult == pytest.approx(expected), name
    assert multipliers["backbone.deeplab.aspp.project.0.weight"] == 1.0

    groups = optimizer_param_groups(model, lr=1e-3)
    by_lr = {round(group["lr"], 12): len(group["params"]) for group in groups}
    n_backbone = sum(1 for name in multipliers if name.startswith("backbone.deeplab.backbone."))
    assert by_lr == {1e-4: n_backbone, 1e-3: len(multipliers) - n_backbone}
    torch.optim.Adam(groups, lr=1e-3)  # accepted as-is

    base = DeepImageHarmonization(4)
    assert set(lr_multipliers(base).values()) == {1.0}


def test_init_weights_follows_reference_rule():
    model = HRNetIHModel(ISSAM256)
    scale_before = model.mask_conv[1].scale.detach().clone()
    torch.manual_seed(123)
    init_weights(model)

    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and module.bias is not None:
            assert torch.all(module.bias == 0)
    assert torch.equal(model.mask_conv[1].scale, scale_before)  # ScaleLayer has no `weight`

    conv = model.backbone.hrnet.stage4[0].branches[3][0].conv1  # 144 -> 144, 3x3: 186624 draws
    fan = 144 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan), rel=0.02)
    assert abs(conv.weight.mean().item()) < 1e-3

    # same draws, in the same order, as applying the per-module rule with nn.Module.apply
    expected = HRNetIHModel(ISSAM256)

    def rule(module):
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(weight)
            nn.init.zeros_(bias)
            return
        if weight is not None:
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
            with torch.no_grad():
                nn.init.normal_(weight, 0.0, math.sqrt(2.0 / ((fan_in + fan_out) / 2.0)))
        if bias is not None:
            nn.init.zeros_(bias)

    torch.manual_seed(123)
    expected.apply(rule)
    for (name, ours), (_, theirs) in zip(model.state_dict().items(), expected.state_dict().items()):
        assert torch.equal(ours, theirs), name


def test_init_weights_fixed_blur_buffer():
    model = HRNetIHModel(ISSAM256)
    key = next(k for k in model.state_dict() if k.endswith("mask_blurring.weight"))
    kernel = model.state_dict()[key].clone()
    kept = copy.deepcopy(model)
    init_weights(kept, reinit_fixed_buffers=False)
    assert torch.equal(kept.state_dict()[key], kernel)
    init_weights(model)  # the reference initialiser redraws it (it is called `weight`)
    assert not torch.equal(model.state_dict()[key], kernel)


def _hrnet_classification_checkpoint(model, prefix=""):
    """HRNet-Image-Classification layout: our HRNet keys (no OCR) + the classification head."""
    hrnet_keys = {k: v for k, v in model.backbone.hrnet.state_dict().items()
                  if not k.startswith(("conv3x3_ocr", "ocr_"))}
    generator = torch.Generator().manual_seed(7)
    checkpoint = {}
    for key, value in hrnet_keys.items():
        if value.is_floating_point():
            checkpoint[prefix + key] = torch.randn(value.shape, generator=generator)
        else:
            checkpoint[prefix + key] = torch.full_like(value, 11)
    head = {
        "incre_modules.0.0.conv1.weight": torch.randn(32, 18, 1, 1),
        "downsamp_modules.0.0.weight": torch.randn(256, 128, 3, 3),
        "final_layer.0.weight": torch.randn(2048, 1024, 1, 1),
        "classifier.weight": torch.randn(1000, 2048),
        "classifier.bias": torch.randn(1000),
        "last_layer.0.weight": torch.randn(19, 270, 1, 1),
    }
    checkpoint.update({prefix + key: value for key, value in head.items()})
    return checkpoint, len(hrnet_keys), sorted(prefix + key for key in head)


@pytest.mark.parametrize("prefix", ["", "model."])
def test_load_pretrained_hrnet(prefix):
    model = HRNetIHModel(IDIH256)
    untouched = {k: v.clone() for k, v in model.state_dict().items()
                 if not k.startswith("backbone.hrnet.") or "ocr" in k}
    checkpoint, expected_count, head_keys = _hrnet_classification_checkpoint(model, prefix)

    loaded, skipped = load_pretrained_backbone(model, checkpoint)
    assert loaded == expected_count
    assert sorted(skipped) == head_keys
    state = model.state_dict()
    for key, value in checkpoint.items():
        if key not in head_keys:
            assert torch.equal(state["backbone.hrnet." + key[len(prefix):]], value), key
    for key, value in untouched.items():
        assert torch.equal(state[key], value), key


def test_load_pretrained_hrnet_errors(tmp_path):
    model = HRNetIHModel(IDIH256)
    checkpoint, expected_count, _ = _hrnet_classification_checkpoint(model)
    path = tmp_path / "hrnet.pth"
    torch.save({"state_dict": checkpoint}, path)
    assert load_pretrained_backbone(model, path)[0] == expected_count

    checkpoint["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(ValueError, match="conv1.weight"):
        load_pretrained_backbone(model, checkpoint)
    with pytest.raises(TypeError):
        load_pretrained_backbone(DeepImageHarmonization(4), {})


def _torchvision_resnet34_state_dict(model):
    try:
        import torchvision
    except ImportError:  # pragma: no cover - synthetic equivalent
        own = model.backbone.deeplab.backbone.state_dict()
        state = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in own.items()}
        state.update({"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)})
        return state
    torch.manual_seed(3)
    return torchvision.models.resnet34(weights=None).state_dict()


def test_load_pretrained_deeplab_resnet34():
    model = DeepLabIHModel(IDIH256)
    untouched = {k: v.clone() for k, v in model.state_dict().items()
                 if not k.startswith("backbone.deeplab.backbone.")}
    checkpoint = _torchvision_resnet34_state_dict(model)
    loaded, skipped = load_pretrained_backbone(model, checkpoint)
    assert sorted(skipped) == ["fc.bias", "fc.weight"]
    assert loaded == len(checkpoint) - 2 == len(model.backbone.deeplab.backbone.state_dict())
    state = model.state_dict()
    for key, value in checkpoint.items():
        if not key.startswith("fc."):
            assert torch.equal(state["backbone.deeplab.backbone." + key], value), key
    for key, value in untouched.items():
        assert torch.equal(state[key], value), key


class _Captured(Exception):
    pass


def test_deeplab_stem_adds_the_encoded_mask_before_pooling():
    """DeepLab (ResNet-34 stem): the max pooling receives relu(bn1(conv1(image))) plus the mask
    encoding |s| * conv3x3_stride2(mask), computed here by hand from the seeded weights in float64
    (tiny input; the forward stops at the pooling). Dropping the fusion leaves only the first term."""
    import torch.nn.functional as F

    from harmonize_cli import zoo

    torch.manual_seed(0)
    model = zoo.create_model("idih-deeplab-r34").eval()
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(1, 3, 16, 16, generator=generator)
    mask = _mask(1, 16, seed=2)
    resnet = model.backbone.deeplab.backbone
    with torch.no_grad():
        resnet.bn1.running_mean.normal_(0.0, 0.2, generator=generator)
        resnet.bn1.running_var.uniform_(0.5, 1.5, generator=generator)
        model.mask_conv[1].scale.fill_(-0.7)  # the absolute value is used
    seen = {}

    def capture(module, inputs):
        seen["pooled_input"] = inputs[0].detach().double()
        raise _Captured

    handle = resnet.maxpool.register_forward_pre_hook(capture)
    try:
        with torch.no_grad(), pytest.raises(_Captured):
            model.backbone_features(image, mask)
    finally:
        handle.remove()
    bn = resnet.bn1
    conv1 = F.conv2d(image.double(), resnet.conv1.weight.double(), stride=2, padding=3)
    stem = (conv1 - bn.running_mean.double().view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.double() + bn.eps).view(
        1, -1, 1, 1) * bn.weight.double().view(1, -1, 1, 1) + bn.bias.double().view(1, -1, 1, 1)
    encoded = 0.7 * F.conv2d(mask.double(), model.mask_conv[0].weight.double(), model.mask_conv[0].bias.double(),
                             stride=2, padding=1)
    expected = stem.clamp(min=0) + encoded
    assert seen["pooled_input"].shape == (1, 64, 8, 8)
    assert (seen["pooled_input"] - expected).abs().max().item() < 1e-5
    assert encoded.abs().max().item() > 0.05  # the mask term is not negligible
