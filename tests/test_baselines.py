"""The training-free baselines (models/baselines.py): Lab conversion, Lab transfer, composite."""

from __future__ import annotations

import pytest
import torch

from harmonize_cli import zoo
from harmonize_cli.models.baselines import IMAGENET_MEAN, IMAGENET_STD, lab_to_rgb, rgb_to_lab


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
