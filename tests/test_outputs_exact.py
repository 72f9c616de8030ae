"""What apply writes, checked against independent computations: the network fed correctly (RGB,
ImageNet normalisation, flip TTA), lab-transfer's statistics, the JPEG quality (#17)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from harmonize_cli import Harmonizer, zoo


def _network_by_hand(network, rgb, mask, flip):
    """``model(normalise(image), mask)`` de-normalised to 0..255, written out without the package."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    image = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0 - mean) / std
    m = torch.from_numpy(mask)[None, None].float()
    with torch.no_grad():
        out = network(image, m)
        if flip:
            out = 0.5 * (out + network(image.flip(3), m.flip(3)).flip(3))
    return ((out * std + mean).clamp(0, 1) * 255.0)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("flip", [False, True])
def test_fixed_at_the_network_size_is_the_networks_output(idih_checkpoint, flip):
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    rgb[..., 0] //= 2  # channels with different statistics: BGR input would be caught
    mask = np.zeros((256, 256), np.float32)
    mask[64:192, 80:200] = 1.0
    h = Harmonizer(weights=str(idih_checkpoint), resolution="fixed", flip_tta=flip, device="cpu")
    result = h(rgb, mask)
    network = zoo.resolve(weights=str(idih_checkpoint)).network
    expected = _network_by_hand(network, rgb, mask, flip)
    inside = mask > 0
    assert np.abs(result[inside].astype(np.float64) - expected[inside]).max() <= 1.0
    assert np.array_equal(result[~inside], rgb[~inside])
    if flip:  # flip TTA is the mean of the two passes, not one of them
        plain = _network_by_hand(network, rgb, mask, False)
        assert np.abs(plain[inside] - expected[inside]).max() > 2.0


def test_lab_transfer_moves_the_foreground_lab_mean_and_std_to_the_backgrounds():
    rng = np.random.default_rng(1)
    height, width = 96, 128
    base = np.array([120.0, 140.0, 110.0]) + rng.normal(0, 12, size=(height, width, 3))
    mask = np.zeros((height, width), np.float32)
    mask[24:72, 32:96] = 1.0
    inside = mask > 0
    base[inside] = np.array([150.0, 110.0, 90.0]) + rng.normal(0, 30, size=(int(inside.sum()), 3))
    rgb = np.clip(base, 0, 255).astype(np.uint8)
    result = Harmonizer(model="lab-transfer", resolution="native", device="cpu")(rgb, mask)
    lab_in, lab_out = rgb2lab(rgb), rgb2lab(result)
    target_mean, target_std = lab_in[~inside].mean(axis=0), lab_in[~inside].std(axis=0)
    assert np.abs(lab_in[inside].std(axis=0) - target_std).max() > 3.0  # the test case needs the scaling
    assert np.allclose(lab_out[inside].mean(axis=0), target_mean, atol=0.6)
    assert np.allclose(lab_out[inside].std(axis=0), target_std, atol=0.6)


def _quantization_for(quality):
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).quantization


def test_jpeg_quality_reaches_the_file(tmp_path, run_cli):
    from test_apply import save_pair

    save_pair(tmp_path, "a.jpg")
    sizes = {}
    for quality in (40, 95):
        out = tmp_path / f"q{quality}"
        code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", out, "--quality", quality)
        assert code == 0, err
        written = Image.open(out / "a.jpg")
        assert written.quantization == _quantization_for(quality)
        sizes[quality] = (out / "a.jpg").stat().st_size
    assert sizes[40] < sizes[95]
