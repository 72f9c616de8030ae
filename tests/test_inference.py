"""The one predictor (harmonize_cli.inference): normalisation, padding, flip TTA, de-normalisation."""

import pytest
import torch

from harmonize_cli.inference import pad_divisor, padding, predict

MEAN = torch.tensor((0.485, 0.456, 0.406))
STD = torch.tensor((0.229, 0.224, 0.225))


class _Identity(torch.nn.Module):
    def forward(self, image, mask):
        return image


class _Recording(_Identity):
    """The identity, keeping what the network was given in ``seen``."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def forward(self, image, mask):
        self.seen["input"] = image.clone()
        return image


class _Depth(_Identity):
    depth = 3  # the reference pads to 2 ** (depth + 1) = 16


def test_predict_normalises_denormalises_clamps_and_does_not_round():
    probe = _Recording()
    pixels = torch.tensor([0.0, 12.3, 254.6, 300.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    out = predict(probe, pixels, torch.zeros(1, 1, 2, 2), peak=255.0)
    # the network sees ImageNet-normalised input: (x / 255 - mean) / std, by hand for one pixel
    assert probe.seen["input"][0, :, 0, 1].tolist() == pytest.approx(((12.3 / 255 - MEAN) / STD).tolist(), abs=1e-6)
    assert out[0, :, 0, 1].tolist() == pytest.approx([12.3] * 3, abs=1e-3)
    assert out[0, :, 1, 0].tolist() == pytest.approx([254.6] * 3, abs=1e-3)  # not rounded
    assert out[0, :, 1, 1].tolist() == [255.0] * 3  # clamped
    unit = predict(_Identity(), pixels / 255.0, torch.zeros(1, 1, 2, 2), peak=1.0)
    assert torch.allclose(unit * 255.0, out, atol=1e-3)


def test_predict_uses_the_given_normalisation():
    probe = _Recording()
    pixels = torch.full((1, 3, 2, 2), 51.0)
    predict(probe, pixels, torch.zeros(1, 1, 2, 2), peak=255.0,
            normalization={"mean": (0, 0, 0), "std": (1, 1, 1)})
    assert probe.seen["input"].flatten().tolist() == pytest.approx([0.2] * 12)


def test_predict_pads_with_black_and_crops_back():
    seen = {}

    class Probe(_Depth):
        def forward(self, image, mask):
            seen["shape"] = tuple(image.shape)
            seen["corner"] = image[0, :, 0, 0].clone()
            seen["mask_corner"] = float(mask[0, 0, 0, 0])
            return image + 1.0

    model = Probe()
    assert pad_divisor(model) == 16
    assert padding(10, 16) == (3, 3) and padding(20, 16) == (6, 6) and padding(17, 16) == (7, 8)
    image = torch.full((1, 3, 10, 20), 0.5)
    out = predict(model, image, torch.ones(1, 1, 10, 20), divisor=pad_divisor(model))
    assert seen["shape"] == (1, 3, 16, 32)
    # padding is black in pixel space (0 before normalisation), the mask's padding is 0
    assert seen["corner"].tolist() == pytest.approx((-MEAN / STD).tolist())
    assert seen["mask_corner"] == 0.0
    assert out.shape == (1, 3, 10, 20)  # cropped back: every pixel is the input's, shifted by std
    expected = (0.5 + STD).clamp(max=1.0).view(1, 3, 1, 1).expand(1, 3, 10, 20)
    assert torch.allclose(out, expected, atol=1e-6)


def test_flip_tta_averages_with_the_flipped_prediction():
    class LeftRight(torch.nn.Module):
        def forward(self, image, mask):  # adds a horizontal ramp 0..1: not flip-equivariant
            ramp = torch.linspace(0, 1, image.shape[-1]).view(1, 1, 1, -1)
            return image + ramp

    image = torch.zeros(1, 3, 2, 5)
    mask = torch.zeros(1, 1, 2, 5)
    plain = predict(LeftRight(), image, mask)
    averaged = predict(LeftRight(), image, mask, flip_tta=True)
    # the ramp and its mirror average to 0.5 (normalised) everywhere: 0.5 * std in pixels
    expected = (0.5 * STD).view(1, 3, 1, 1).expand(1, 3, 2, 5)
    assert torch.allclose(averaged, expected, atol=1e-6)
    ramp = torch.linspace(0, 1, 5).view(1, 1, 1, -1) * STD.view(1, 3, 1, 1)
    assert torch.allclose(plain, ramp, atol=1e-6)


def test_pad_divisor_combines_the_reference_rule_and_the_network_own():
    class Own(_Depth):
        size_divisor = 24

    assert pad_divisor(_Identity()) == 1
    assert pad_divisor(Own()) == 48  # lcm(16, 24)
