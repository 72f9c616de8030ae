"""PCT-Net: reference layouts, forward parity at 256 and at full resolution, the pixel-wise transform,
bicubic sampling, and the strip-wise full-resolution application."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmonize_cli.models.pct_transform import (
    affine_color_transform,
    apply_full_resolution,
    bicubic_matrix,
    upsample_bicubic_region,
)
from harmonize_cli.models.pctnet import PCT_CONFIGS, PCTNet, build_pctnet
from harmonize_cli.models.vit import PatchesToTokens
from parity_utils import generate_weights, require_parity_file

PCT_NAMES = ["CNN_pct", "ViT_pct"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pct_dir():
    return require_parity_file("pctnet/pctnet_state_dicts.json").parent


@lru_cache(maxsize=1)
def _layouts_cached(path):
    return json.loads(open(path).read())


def _layouts():
    return _layouts_cached(str(_pct_dir() / "pctnet_state_dicts.json"))


@lru_cache(maxsize=1)
def _cnn_fixture_cached(path):
    data = np.load(path)
    return {key: data[key] for key in data.files}


def _cnn_fixture():
    return _cnn_fixture_cached(str(_pct_dir() / "CNN_pct.npz"))


@lru_cache(maxsize=1)
def _cnn_with_fixture_weights():
    fixture = _cnn_fixture()
    manifest = json.loads(str(fixture["manifest"]))
    weights, digest = generate_weights(manifest, int(fixture["seed"]))
    assert digest == str(fixture["weights_sha256"]), "weight rule disagrees with the fixture"
    model = build_pctnet("CNN_pct")
    model.load_state_dict(weights, strict=True)
    return model.eval()


def _tensor(name):
    return torch.from_numpy(_cnn_fixture()[name])


# ------------------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("name", PCT_NAMES)
def test_layout_key_for_key_and_parameter_count(name):
    entry = _layouts()[name]
    assert entry["model_class"] == "PCTNet"
    with torch.device("meta"):
        model = PCTNet(**entry["params"])
    ours = [[key, list(value.shape), str(value.dtype).replace("torch.", "")]
            for key, value in model.state_dict().items()]
    assert ours == [list(item) for item in entry["state_dict"]]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == entry["num_params"]


@pytest.mark.parametrize("name", PCT_NAMES)
def test_builtin_configs_are_the_reference_params(name):
    reference = _layouts()[name]["params"]
    ours = PCT_CONFIGS[name]
    assert sorted(ours) == sorted(reference)
    for key, value in reference.items():
        if key == "input_normalization":
            assert [list(ours[key]["mean"]), list(ours[key]["std"])] == [value["mean"], value["std"]]
        else:
            assert ours[key] == value, key


def test_input_normalisation_is_per_model():
    assert build_pctnet("CNN_pct").input_normalization == {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    assert build_pctnet("ViT_pct").input_normalization == {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def test_unsupported_configurations_are_refused_clearly():
    with pytest.raises(ValueError, match="polynomial"):
        build_pctnet("ViT_pct", transform_type="polynomial")
    with pytest.raises(ValueError, match="HSV"):
        build_pctnet("CNN_pct", color_space="HSV")
    with pytest.raises(ValueError, match="idih"):
        PCTNet(backbone_type="idih")


# ---------------------------------------------------------------------------- forward parity

def test_cnn_forward_parity_at_256_and_full_resolution():
    model = _cnn_with_fixture_weights()
    with torch.no_grad():
        outputs = model(_tensor("image_lowres"), _tensor("mask_lowres"),
                        image_fullres=_tensor("image_fullres"), mask_fullres=_tensor("mask_fullres"))
    assert outputs["images"].shape == (1, 3, 256, 256)
    assert outputs["images_fullres"].shape == (1, 3, 300, 480)
    assert (outputs["images"] - _tensor("expected_lowres")).abs().max().item() <= 5e-4
    assert (outputs["images_fullres"] - _tensor("expected_fullres")).abs().max().item() <= 5e-4


def test_cnn_strip_wise_inference_matches_the_published_full_resolution_output():
    model = _cnn_with_fixture_weights()
    image = _tensor("image_fullres")
    _, full = model.harmonize_full_resolution(_tensor("image_lowres"), _tensor("mask_lowres"), image,
                                              strip_rows=37)
    assert (full - _tensor("expected_fullres")).abs().max().item() <= 5e-4
    assert full.data_ptr() != image.data_ptr()


def test_strip_wise_inference_limited_to_the_mask_box_and_empty_masks():
    model = _cnn_with_fixture_weights()
    image, expected = _tensor("image_fullres"), _tensor("expected_fullres")
    mask = torch.zeros(1, 1, 300, 480)
    mask[..., 100:180, 200:431] = 1
    _, full = model.harmonize_full_resolution(_tensor("image_lowres"), _tensor("mask_lowres"), image, mask)
    assert (full[..., 100:180, 200:431] - expected[..., 100:180, 200:431]).abs().max().item() <= 5e-4
    outside = torch.ones(300, 480, dtype=torch.bool)
    outside[100:180, 200:431] = False
    assert torch.equal(full[..., outside], image[..., outside])
    _, untouched = model.harmonize_full_resolution(_tensor("image_lowres"), _tensor("mask_lowres"), image,
                                                   torch.zeros(1, 1, 300, 480))
    assert torch.equal(untouched, image) and untouched.data_ptr() != image.data_ptr()


def test_model_without_fullres_inputs_returns_the_low_resolution_outputs_only():
    model = _cnn_with_fixture_weights()
    with torch.no_grad():
        outputs = model(_tensor("image_lowres"), _tensor("mask_lowres"))
    assert set(outputs) == {"images", "params", "attention"}
    assert outputs["params"].shape == (1, 12, 256, 256)


# ------------------------------------------------------------------ the pixel-wise transform

def test_affine_transform_on_one_pixel_by_hand():
    image = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    matrix = [[1.0, 0.5, 0.0],    # r' = 0.2 + 0.2         + 0.1 = 0.5
              [0.0, 2.0, 1.0],    # g' = 0.8 + 0.6         - 0.5 = 0.9
              [-1.0, 0.0, 3.0]]   # b' = -0.2 + 1.8        + 0.0 = 1.6 -> clamped to 1
    offsets = [0.1, -0.5, 0.0]
    params = torch.tensor([v for row in matrix for v in row] + offsets).view(1, 12, 1, 1)
    out = affine_color_transform(image, params, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert torch.allclose(out.flatten(), torch.tensor([0.5, 0.9, 1.0]), atol=1e-6)
    normalised = affine_color_transform(image, params, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert torch.allclose(normalised.flatten(), torch.tensor([0.0, 0.8, 0.5]), atol=1e-6)
    unclamped = affine_color_transform(image, params, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), clamp=False)
    assert unclamped.flatten()[2].item() == pytest.approx(1.6)


def test_patches_become_tokens_row_major_with_channels_last():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)  # 2 channels, 2 x 2 patches
    tokens = PatchesToTokens(2)(x)
    assert tokens.shape == (1, 4, 8)
    # token 1 = top-right patch: rows 0-1, cols 2-3; order (p1, p2, c)
    expected = [2, 18, 3, 19, 6, 22, 7, 23]
    assert tokens[0, 1].tolist() == expected


# --------------------------------------------------------------------------- bicubic sampling

@pytest.mark.parametrize("in_size,out_size", [(256, 300), (256, 480), (256, 4000), (8, 3), (5, 17), (7, 7)])
def test_bicubic_matrix_reproduces_pytorch_interpolate(in_size, out_size):
    basis = torch.eye(in_size).view(in_size, 1, 1, in_size)
    reference = F.interpolate(basis, size=(1, out_size), mode="bicubic")[:, 0, 0, :].t()
    assert (bicubic_matrix(in_size, out_size) - reference).abs().max().item() <= 2e-6


def test_upsampled_region_equals_the_crop_of_the_one_shot_upsample():
    torch.manual_seed(0)
    lowres = torch.randn(1, 13, 24, 20)
    full = F.interpolate(lowres, size=(301, 177), mode="bicubic")
    region = upsample_bicubic_region(lowres, (301, 177), rows=(17, 140), cols=(5, 171))
    assert (region - full[..., 17:140, 5:171]).abs().max().item() <= 1e-5


# ------------------------------------------------------------------ strip-wise application

def _one_shot_reference(params, image, blend_lowres_or_mask, mean, std, attention):
    """The reference's full-resolution computation, written out independently."""
    height, width = image.shape[-2:]
    up = F.interpolate(params, size=(height, width), mode="bicubic")
    matrix = up[:, :9].reshape(1, 3, 3, height, width)
    rgb = torch.einsum("nijhw,njhw->nihw", matrix, image) + up[:, 9:12]
    rgb = rgb.clamp(0, 1)
    rgb = (rgb - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    if attention:
        blend = F.interpolate(blend_lowres_or_mask, size=(height, width), mode="bicubic")
    else:
        blend = blend_lowres_or_mask
    return rgb * blend + image * (1 - blend)


@pytest.mark.parametrize("height,width,bbox,strip_rows", [
    (300, 480, (40, 251, 90, 400), 37),
    (97, 61, None, 8),
    (1031, 513, (0, 1031, 100, 101), 256),
    (256, 256, (3, 4, 0, 256), 1),
])
@pytest.mark.parametrize("attention", [False, True])
def test_strip_wise_application_equals_the_one_shot_computation(height, width, bbox, strip_rows, attention):
    torch.manual_seed(height + width)
    params = torch.randn(1, 12, 32, 32) * 0.5
    image = torch.randn(1, 3, height, width)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if attention:
        blend_source = torch.rand(1, 1, 32, 32)
        strips = apply_full_resolution(params, image, None, bbox, mean=mean, std=std,
                                       attention_lowres=blend_source, strip_rows=strip_rows)
    else:
        blend_source = (torch.rand(1, 1, height, width) > 0.5).float()
        strips = apply_full_resolution(params, image, blend_source, bbox, mean=mean, std=std,
                                       strip_rows=strip_rows)
    expected = _one_shot_reference(params, image, blend_source, mean, std, attention)
    y0, y1, x0, x1 = bbox or (0, height, 0, width)
    assert (strips[..., y0:y1, x0:x1] - expected[..., y0:y1, x0:x1]).abs().max().item() <= 2e-5
    outside = torch.ones(height, width, dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    assert torch.equal(strips[..., outside], image[..., outside])


def test_strip_wise_application_in_place_and_bad_boxes():
    torch.manual_seed(1)
    params = torch.randn(1, 12, 16, 16)
    image = torch.randn(1, 3, 50, 40)
    mask = torch.ones(1, 1, 50, 40)
    expected = apply_full_resolution(params, image, mask, (5, 45, 0, 40), strip_rows=9)
    in_place = image.clone()
    result = apply_full_resolution(params, in_place, mask, (5, 45, 0, 40), strip_rows=9, out=in_place)
    assert result.data_ptr() == in_place.data_ptr()
    assert torch.equal(result, expected)
    with pytest.raises(ValueError, match="does not fit"):
        apply_full_resolution(params, image, mask, (0, 51, 0, 40))
    with pytest.raises(ValueError, match="batch size 1"):
        apply_full_resolution(params.repeat(2, 1, 1, 1), image.repeat(2, 1, 1, 1), mask)


# --------------------------------------------------------------------------------------- ViT

def _vit_inputs(low, full):
    image = torch.rand(1, 3, low, low)
    mask = torch.zeros(1, 1, low, low)
    mask[..., low // 4: low * 5 // 8, low * 3 // 8: low * 3 // 4] = 1
    return image, mask, torch.rand(1, 3, *full), F.interpolate(mask, size=full, mode="nearest")


def test_vit_forward_at_256_and_non_square_full_resolution():
    torch.manual_seed(0)
    model = build_pctnet("ViT_pct").eval()
    image, mask, image_full, mask_full = _vit_inputs(256, (90, 130))
    with torch.no_grad():
        outputs = model(image, mask, image_fullres=image_full, mask_fullres=mask_full)
    strips = apply_full_resolution(outputs["params"], image_full, mask_full, (10, 80, 0, 130), strip_rows=16)
    assert outputs["images"].shape == (1, 3, 256, 256)
    assert outputs["params"].shape == (1, 12, 256, 256)
    assert outputs["images_fullres"].shape == (1, 3, 90, 130)
    outside = mask_full[0, 0] == 0
    assert torch.equal(outputs["images_fullres"][..., outside], image_full[..., outside])
    assert torch.equal(outputs["images"][..., mask[0, 0] == 0], image[..., mask[0, 0] == 0])
    assert (strips[..., 10:80, :] - outputs["images_fullres"][..., 10:80, :]).abs().max().item() <= 1e-5


def _vit_backward(low):
    torch.manual_seed(0)
    model = build_pctnet("ViT_pct").train()
    image, mask, image_full, mask_full = _vit_inputs(low, (90, 130))
    outputs = model(image, mask, image_fullres=image_full, mask_fullres=mask_full)
    assert outputs["images_fullres"].shape == (1, 3, 90, 130)
    (outputs["images"].square().mean() + outputs["images_fullres"].square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_vit_backward_reaches_every_parameter():
    """At a 64-px view (256 tokens); the 256-px view (4096 tokens) is the slow test below."""
    _vit_backward(64)


@pytest.mark.slow
def test_vit_forward_backward_at_256():
    _vit_backward(256)


def test_full_resolution_lists_of_different_sizes_as_in_training():
    model = _cnn_with_fixture_weights()
    image = torch.cat((_tensor("image_lowres"), _tensor("image_lowres").flip(3)))
    mask = torch.cat((_tensor("mask_lowres"), _tensor("mask_lowres").flip(3)))
    full, full_mask = _tensor("image_fullres"), _tensor("mask_fullres")
    crops = [full[..., :200, :300], full[..., 50:, 100:]]
    masks = [full_mask[..., :200, :300], full_mask[..., 50:, 100:]]
    with torch.no_grad():
        outputs = model(image, mask, image_fullres=crops, mask_fullres=masks)
    assert [o.shape[-2:] for o in outputs["images_fullres"]] == [(200, 300), (250, 380)]
    for index in range(2):
        alone = apply_full_resolution(outputs["params"][index:index + 1], crops[index], mean=IMAGENET_MEAN,
                                      std=IMAGENET_STD, attention_lowres=outputs["attention"][index:index + 1])
        assert (outputs["images_fullres"][index] - alone).abs().max().item() <= 1e-5
