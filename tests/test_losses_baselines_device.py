"""FN-MSE and MSE, the training-free baselines, and device selection."""

from __future__ import annotations

import pytest
import torch

from harmonize_cli import zoo
from harmonize_cli.device import resolve_device
from harmonize_cli.errors import UsageError
from harmonize_cli.training.losses import fn_mse, get_loss, mse
from harmonize_cli.models.baselines import IMAGENET_MEAN, IMAGENET_STD, lab_to_rgb, rgb_to_lab


def test_fn_mse_matches_a_hand_computation():
    prediction = torch.zeros(2, 3, 4, 5)
    target = torch.zeros(2, 3, 4, 5)
    prediction[0, :, 0, 0] = 2.0  # squared error sum = 3 * 4 = 12
    prediction[1] = 1.0  # squared error sum = 60
    mask = torch.zeros(2, 1, 4, 5)
    mask[0, :, :2, :] = 1.0  # area 10 -> clamped to min_area
    mask[1] = 1.0  # area 20
    expected_first = 12.0 / (3 * max(10.0, 15.0))
    expected_second = 60.0 / (3 * max(20.0, 15.0))
    value = fn_mse(prediction, target, mask, min_area=15.0)
    assert value.item() == pytest.approx((expected_first + expected_second) / 2)
    assert get_loss("fn-mse", min_area=15.0)(prediction, target, mask).item() == pytest.approx(value.item())
    assert mse(prediction, target).item() == pytest.approx((12 + 60) / (2 * 60))
    with pytest.raises(UsageError):
        get_loss("l1")


def test_fn_mse_default_min_area_is_100():
    prediction = torch.ones(1, 3, 10, 10)
    mask = torch.zeros(1, 1, 10, 10)
    mask[..., :2, :2] = 1  # area 4 < 100
    assert fn_mse(prediction, torch.zeros_like(prediction), mask).item() == pytest.approx(300 / 300)


def _normalise(rgb):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (rgb - mean) / std


def test_lab_round_trip_and_reference_values():
    rgb = torch.rand(1, 3, 8, 8)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4)
    white = rgb_to_lab(torch.ones(1, 3, 1, 1)).flatten()
    assert white[0].item() == pytest.approx(100.0, abs=0.05) and white[1:].abs().max().item() < 0.1
    red = rgb_to_lab(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)).flatten()
    assert red.tolist() == pytest.approx([53.24, 80.09, 67.20], abs=0.1)


def test_lab_transfer_moves_foreground_statistics_and_keeps_background():
    torch.manual_seed(0)
    background = 0.3 + 0.1 * torch.rand(1, 3, 32, 32)
    foreground = 0.7 + 0.2 * torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    composite = background * (1 - mask) + foreground * mask
    model = zoo.create_model("lab-transfer")
    output = model(_normalise(composite), mask)
    rgb = output * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    assert torch.allclose(rgb * (1 - mask), composite * (1 - mask), atol=1e-5)
    lab_out = rgb_to_lab(rgb)
    lab_in = rgb_to_lab(composite)
    inside = mask.bool().expand_as(lab_out)
    outside = ~inside
    fg_mean = lab_out[inside].view(3, -1).mean(dim=1)
    bg_mean = lab_in[outside].view(3, -1).mean(dim=1)
    assert torch.allclose(fg_mean, bg_mean, atol=1.0)


def test_composite_baseline_returns_the_input():
    image = torch.randn(2, 3, 16, 16)
    assert torch.equal(zoo.create_model("composite")(image, torch.ones(2, 1, 16, 16)), image)


def test_lab_transfer_leaves_images_without_foreground_untouched():
    image = torch.randn(1, 3, 8, 8)
    output = zoo.create_model("lab-transfer")(image, torch.zeros(1, 1, 8, 8))
    rgb_in = (image * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
    rgb_out = (output * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
    assert torch.allclose(rgb_out, rgb_in.clamp(0, 1), atol=1e-5)


def test_device_selection(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    monkeypatch.delenv("HARMONIZE_DEVICE", raising=False)
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        assert resolve_device(None).type == expected
    monkeypatch.setenv("HARMONIZE_DEVICE", "cpu")
    assert resolve_device(None).type == "cpu"
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda")
