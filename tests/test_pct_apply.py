"""PCT-Net in the zoo and in apply: released layout names, its own full-resolution path (#16)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmonize_cli import Harmonizer, zoo
from parity_utils import require_parity_file



@pytest.fixture(scope="module")
def pct_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = zoo.create_model("pctnet-cnn")
    path = tmp_path_factory.mktemp("pct") / "cnn.pth"
    torch.save(model.state_dict(), path)
    return path


def test_zoo_entries_aliases_counts_and_released_weights():
    layouts = json.loads(require_parity_file("pctnet/pctnet_state_dicts.json").read_text())
    for name, alias in (("pctnet-cnn", "CNN_pct"), ("pctnet-vit", "ViT_pct")):
        spec = zoo.get_arch(alias)
        assert spec.name == name and spec.num_params == layouts[alias]["num_params"]
        assert spec.normalization["mean"] == tuple(layouts[alias]["params"]["input_normalization"]["mean"])
        model = zoo.create_model(name)
        assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == \
            [(k, shape) for k, shape, _ in layouts[alias]["state_dict"]]
    released = {w.name: w for w in zoo.list_weights("harmonization")}
    assert released["PCTNet_ViT"].arch == "pctnet-vit" and released["PCTNet_ViT"].licence == "MPL-2.0"
    assert released["PCTNet_ViT"].metrics["All"] == {"MSE": 18.84, "PSNR": 39.29, "fMSE": 237.49}
    assert released["PCTNet_CNN"].url.endswith("/pretrained_models/PCTNet_CNN.pth")
    assert zoo.detect_arch(zoo.create_model("pctnet-vit").state_dict()) == "pctnet-vit"


def _photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 - 0.3 * xx], axis=2)
    return (np.clip(base + 0.05 * rng.standard_normal((height, width, 3)), 0, 1) * 255).astype(np.uint8)


def test_auto_uses_the_models_own_full_resolution_path(pct_checkpoint):
    """apply --resolution auto == the reference one-shot computation (network at 256, parameters
    upsampled to the photo, transformed, blended), then composited with the mask."""
    height, width = 300, 480
    rgb = _photo(height, width)
    mask = np.zeros((height, width), np.float32)
    mask[60:250, 100:380] = 1.0
    mask[60:250, 100] = 0.5  # a soft edge
    h = Harmonizer(weights=str(pct_checkpoint), device="cpu")
    assert h.model_name == "pctnet-cnn" and h.own_full_resolution
    ours = h(rgb, mask)

    network = zoo.resolve("pctnet-cnn", weights=str(pct_checkpoint)).network
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    full = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0 - mean) / std
    full_mask = torch.from_numpy(mask)[None, None]
    low, low_mask = _independent_views(h, rgb, mask)
    with torch.no_grad():
        out = network((low - mean) / std, low_mask, image_fullres=full, mask_fullres=full_mask)
    reference = (out["images_fullres"] * std + mean).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255.0
    expected = rgb + mask[..., None] * (reference - rgb)
    assert np.abs(ours.astype(np.float64) - expected).max() <= 1.0
    outside = mask == 0
    assert np.array_equal(ours[outside], rgb[outside])  # background bit-exact
    assert np.abs(ours[mask == 1].astype(float) - rgb[mask == 1]).mean() > 1.0  # the network did something


def _independent_views(h, rgb, mask):
    """The network's 256-px views made without the product: torch's antialiased bilinear resize
    (Pillow's filter), the image rounded to uint8 as apply's Pillow resize is. The product's own
    views must equal them (a mask resized with another filter, e.g. nearest, is caught here)."""
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].double()
    low = F.interpolate(image, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
    low = (low.round().clamp(0, 255) / 255.0).float()
    low_mask = F.interpolate(torch.from_numpy(mask)[None, None].double(), size=(256, 256), mode="bilinear",
                             align_corners=False, antialias=True).clamp(0, 1).float()
    job = h.prepare(rgb, mask)
    assert np.abs(job.net_mask - low_mask[0, 0].numpy()).max() <= 1e-4
    assert np.abs(job.net_image - low[0].numpy()).max() <= 1.0 / 255 + 1e-6
    return torch.from_numpy(job.net_image)[None], torch.from_numpy(job.net_mask)[None, None]


def _normalised(image):
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    return (image - mean) / std, (lambda out: (out * std + mean).clamp(0, 1))


def test_fixed_and_native_keep_their_meaning(pct_checkpoint):
    """fixed: the network's 256-px output upsampled bilinearly and blended in; native: the network
    run on the photo itself and blended in (values, not only shapes)."""
    rgb = _photo(128, 160)
    mask = np.zeros((128, 160), np.float32)
    mask[30:100, 40:120] = 1.0
    mask[30:100, 40] = 0.5  # a soft edge
    network = zoo.resolve("pctnet-cnn", weights=str(pct_checkpoint)).network.eval()
    outputs = {}
    for resolution in ("fixed", "native"):
        h = Harmonizer(weights=str(pct_checkpoint), device="cpu", resolution=resolution)
        assert not h.own_full_resolution
        outputs[resolution] = h(rgb, mask)
        assert outputs[resolution].shape == (128, 160, 3)
    low, low_mask = _independent_views(Harmonizer(weights=str(pct_checkpoint), device="cpu", resolution="fixed"),
                                       rgb, mask)
    full = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        normalised, back = _normalised(low)
        small = back(network(normalised, low_mask)["images"]).double()
        normalised, back = _normalised(full)
        native = back(network(normalised, torch.from_numpy(mask)[None, None])["images"]).double()
    fixed = F.interpolate(small, size=(128, 160), mode="bilinear", align_corners=False)
    for resolution, prediction in (("fixed", fixed), ("native", native)):
        harmonized = prediction[0].permute(1, 2, 0).numpy() * 255.0
        expected = rgb + mask[..., None] * (harmonized - rgb)
        ours = outputs[resolution]
        assert np.abs(ours.astype(np.float64) - expected).max() <= 1.0, resolution
        assert np.array_equal(ours[mask == 0], rgb[mask == 0]), resolution
        assert np.abs(ours[mask == 1].astype(float) - rgb[mask == 1]).mean() > 1.0, resolution
    assert np.abs(outputs["fixed"].astype(int) - outputs["native"].astype(int)).max() > 2  # two meanings


def test_pct_upsampling_is_bicubic_as_the_reference():
    from harmonize_cli.models.pct_transform import upsampled_strips

    params = torch.randn(1, 12, 8, 8)
    full = F.interpolate(params, size=(37, 53), mode="bicubic")
    pieces = list(upsampled_strips(params, (37, 53), (3, 30, 5, 50), None, strip_rows=7))
    assert [box[:2] for box, _ in pieces] == [(3, 10), (10, 17), (17, 24), (24, 30)]
    stitched = torch.cat([maps for _, maps in pieces], dim=2)
    assert torch.allclose(stitched, full[..., 3:30, 5:50], atol=1e-5)


def test_eval_scores_the_full_resolution_output(pct_checkpoint, mini_iharmony, tmp_path, run_cli):
    from PIL import Image

    out = tmp_path / "pct.json"
    code, _, err = run_cli("eval", "--data", mini_iharmony, "--weights", pct_checkpoint, "--resize", "limit1024",
                           "--subsets", "HFlickr", "--workers", "0", "--with-published", "-o", out,
                           "--save-predictions", tmp_path / "pred")
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["model"] == "pctnet-cnn" and result["resize"] == "limit1024"
    assert {row["label"] for row in result["published"]} >= {"PCTNet-CNN (full resolution)", "PCTNet_CNN"}
    saved = sorted((tmp_path / "pred").rglob("*.png"))
    assert len(saved) == result["by_subset"]["All"]["N"] == 3
    errors = []
    for path in saved:  # the scores are those of the saved full-resolution outputs, by hand
        name = path.stem
        prediction = np.asarray(Image.open(path)).astype(np.float64)
        real = np.asarray(Image.open(next(mini_iharmony.rglob(f"real_images/{name.split('_')[0]}.jpg"))))
        composite = np.asarray(Image.open(next(mini_iharmony.rglob(f"composite_images/{name}.jpg"))))
        assert prediction.shape[:2] == real.shape[:2] == (48, 64)  # full resolution, not 256
        assert np.abs(prediction - composite).mean() > 0.5  # the network's output, not the input
        errors.append(((prediction - real) ** 2).mean())
    assert result["by_subset"]["All"]["MSE"] == pytest.approx(np.mean(errors), rel=0.02, abs=0.5)
