"""PCT-Net's training objective: each piece against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from harmonize_cli.training.pct_losses import (
    PCTLoss,
    StyleContrastiveLoss,
    fn_mse_fullres,
    gram,
    param_smoothness,
    sobel_magnitude,
    vgg16_style_extractor,
)
from harmonize_cli.training.pct_negatives import (
    create_negative_samples,
    histogram_quantiles,
    lab_to_rgb,
    nelder_mead,
    rgb_to_lab,
    stretch_luminance,
    tone_curve,
    transfer_chrominance,
    transfer_luminance,
)

# ------------------------------------------------------------------------------------ FN-MSE


def test_fn_mse_full_resolution_uses_a_minimum_area_of_1000():
    prediction = torch.zeros(1, 3, 2, 2)
    target = torch.zeros(1, 3, 2, 2)
    target[..., 0, 0] = 1.0                          # squared error summed: 3
    mask = torch.zeros(1, 1, 2, 2)
    mask[..., 0, :] = 1.0                            # area 2
    assert fn_mse_fullres(prediction, target, mask).item() == pytest.approx(3 / (3 * 1000))
    assert fn_mse_fullres(prediction, target, mask, min_area=1).item() == pytest.approx(3 / (3 * 2))


def test_fn_mse_full_resolution_over_crops_of_different_sizes():
    first = (torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2))
    first[1][..., 0, 0] = 1.0
    first[2][..., 0, :] = 1.0                        # 3 / (3 * 2) = 0.5
    second = (torch.zeros(3, 1, 3), torch.full((3, 1, 3), 2.0), torch.ones(1, 1, 3))  # 36 / (3 * 3) = 4
    loss = fn_mse_fullres([first[0], second[0]], [first[1], second[1]], [first[2], second[2]], min_area=1)
    assert loss.item() == pytest.approx((0.5 + 4.0) / 2)


# -------------------------------------------------------------------------------- smoothness

def test_sobel_of_a_horizontal_ramp_with_replicated_borders():
    ramp = torch.arange(4.0).repeat(3, 1).view(1, 1, 3, 4)   # p[y, x] = x
    # interior: (1 + 2 + 1) * 2 / 8 = 1; border columns see a step of 1 only: 0.5
    expected = torch.tensor([0.5, 1.0, 1.0, 0.5]).repeat(3, 1)
    expected = torch.sqrt(expected ** 2 + 1e-6)
    assert torch.allclose(sobel_magnitude(ramp)[0, 0], expected, atol=1e-6)
    assert torch.allclose(sobel_magnitude(ramp.transpose(2, 3))[0, 0], expected.t(), atol=1e-6)


def test_sobel_diagonal_weight_and_smoothness_mean():
    spike = torch.zeros(1, 1, 5, 5)
    spike[..., 2, 2] = 8.0
    magnitude = sobel_magnitude(spike)[0, 0]
    assert magnitude[1, 1].item() == pytest.approx(math.sqrt(1 + 1 + 1e-6))   # corner weight 1 in both
    assert magnitude[2, 1].item() == pytest.approx(math.sqrt(4 + 1e-6))       # edge weight 2 in x only
    assert param_smoothness(torch.full((2, 12, 4, 4), 3.0)).item() == pytest.approx(1e-3)  # sqrt(eps)


# ----------------------------------------------------------------------- style contrastive

def test_gram_is_the_authors_pixel_by_pixel_product():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    background = torch.tensor([[5.0, 6.0], [7.0, 8.0]]).view(1, 2, 1, 2)
    assert gram(features, background)[0].tolist() == [[26.0, 30.0], [38.0, 44.0]]


def _two_image_batch():
    """Two 1 x 2 images, equal channels; mask covers the left pixel. k = min(5, 2 - 1) = 1: the
    composite is the only negative."""
    def image(left, right):
        return torch.tensor([left, right]).view(1, 1, 1, 2).repeat(1, 3, 1, 1)
    prediction = torch.cat((image(0.5, 9.0), image(1.0, 9.0)))
    target = torch.cat((image(1.0, 2.0), image(1.0, 1.0)))
    composite = torch.cat((image(0.0, 7.0), image(3.0, 7.0)))
    mask = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2).repeat(2, 1, 1, 1)
    return prediction, target, mask, composite


def test_style_contrastive_loss_by_hand():
    prediction, target, mask, composite = _two_image_batch()
    prediction.requires_grad_(True)
    loss = StyleContrastiveLoss(nn.Identity())(prediction, target, mask, composite)
    # SS-CR: D(f, f+) = 3 * (0.5 + 0) / 12, D(f, f-) = 3 * (0.5 + 2) / 12 -> 0.125 / 0.75
    # CS-CR: only entry [0, 1] of each 2 x 2 product is nonzero: 3 * fg * bg
    #   c = (3, 3), c+ = (6, 3), c- = (0, 9) -> D(c, c+) = 3 / 8, D(c, c-) = 9 / 8 -> 0.375 / 1.5
    assert loss.item() == pytest.approx(0.125 / 0.75 + 0.375 / 1.5, rel=1e-6)
    loss.backward()
    # the negatives' distances are constants: d SS / d A = B / (A + B)^2, dA / dp = -1 / 12;
    # d CS / d G = H / (G + H)^2, dG / dp = -2 / 8
    expected = 0.625 / 0.75 ** 2 * (-1 / 12) + 1.125 / 1.5 ** 2 * (-2 / 8)
    assert prediction.grad[0, :, 0, 0].tolist() == pytest.approx([expected] * 3, rel=1e-5)
    assert torch.all(prediction.grad[0, :, 0, 1] == 0)


def test_combined_objective_weights_1_001_01():
    prediction, target, mask, composite = _two_image_batch()
    full_prediction, full_target, full_mask = torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2), torch.ones(2, 1, 2, 2)
    full_target[0, :, 0, 0] = 2.0                         # image 0: 12 / (3 * 4) = 1, image 1: 0
    outputs = {"images": prediction, "params": torch.full((2, 12, 4, 4), 5.0), "images_fullres": full_prediction}
    batch = {"images": composite, "masks": mask, "target_images": target,
             "target_images_fullres": full_target, "masks_fullres": full_mask}
    total, parts = PCTLoss(nn.Identity(), min_area=1)(outputs, batch)
    assert parts["pixel"].item() == pytest.approx(0.5)
    assert parts["contrastive"].item() == pytest.approx(0.125 / 0.75 + 0.375 / 1.5, rel=1e-6)
    assert parts["smooth"].item() == pytest.approx(1e-3)
    assert total.item() == pytest.approx(0.5 + 0.01 * (0.125 / 0.75 + 0.375 / 1.5) + 0.1 * 1e-3, rel=1e-6)


def test_contrastive_loss_runs_on_a_random_vgg16_with_recoloured_negatives():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    extractor = vgg16_style_extractor(torchvision.models.vgg16(weights=None))
    assert not any(p.requires_grad for p in extractor.parameters())
    count, size = 3, 32
    target = torch.rand(count, 3, size, size)
    composite = target * 0.7
    prediction = (composite + 0.1).requires_grad_(True)
    mask = torch.zeros(count, 1, size, size)
    mask[..., 8:24, 4:20] = 1
    loss = StyleContrastiveLoss(extractor, seed=0)(prediction, target, mask, composite)
    loss.backward()
    assert 0 < loss.item() < 2 and torch.isfinite(prediction.grad).all()
    assert prediction.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- negatives

def test_lab_conversion_of_primaries_and_round_trip():
    rgb = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]).t().reshape(3, 4, 1)
    lab = rgb_to_lab(rgb)[:, :, 0].t()
    published = [[53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86], [100.0, 0.0, 0.0]]
    assert lab.tolist() == [pytest.approx(row, abs=0.02) for row in published]
    colours = torch.rand(3, 5, 7)
    assert (lab_to_rgb(rgb_to_lab(colours)) - colours).abs().max().item() < 1e-4


def test_luminance_stretch_clips_at_the_5_and_95_percent_ranks():
    values = torch.arange(100.0).view(10, 10)
    stretched = stretch_luminance(values)
    assert stretched[0, 0].item() == 0 and stretched[9, 9].item() == 100     # clipped at 5 and 95
    assert stretched[5, 0].item() == pytest.approx((50 - 5) / 90 * 100)


def test_histogram_quantiles_by_hand():
    quantiles = histogram_quantiles(torch.tensor([0.0, 1.0]), 2, bins=4)
    # edges 0, .25, .5, .75, 1; cumulative share 0.5, 0.5, 0.5, 1 -> first bins reaching 0.5 and 1
    assert quantiles.tolist() == [0.0, 0.75]


def test_chrominance_transfer_matches_the_source_mean_and_covariance():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.tensor([[10.0, 2.0, 1.0], [1.0, 8.0, 2.0], [2.0, 1.0, 6.0]])
    image = (3 * mixing @ torch.rand(3, 400, generator=generator)).view(3, 20, 20)
    source = (2 * mixing.t() @ torch.rand(3, 400, generator=generator) + 5).view(3, 20, 20)
    for sample in (image, source):  # above the 7.5 * I floor, so the floor changes nothing
        covariance = torch.cov(sample.view(3, -1))
        assert torch.all(covariance > 0) and torch.all(covariance.diag() > 7.5)
    moved = transfer_chrominance(image, source).view(3, -1)
    assert torch.allclose(moved.mean(dim=1), source.view(3, -1).mean(dim=1), atol=1e-3)
    assert torch.allclose(torch.cov(moved), torch.cov(source.view(3, -1)), rtol=1e-3, atol=1e-2)


def test_tone_curve_fixes_0_and_1_and_nelder_mead_finds_a_bounded_minimum():
    assert tone_curve(np.array([0.3, 0.2]), np.array([0.0, 1.0])).tolist() == pytest.approx([0.0, 1.0])
    best = nelder_mead(lambda p: (p[0] - 0.3) ** 2 + (p[1] + 1.0) ** 2, [0.8, 0.5], ((0, 1), (1e-10, 1)))
    assert best == pytest.approx([0.3, 1e-10], abs=1e-3)          # the second minimum lies outside: bound


def test_nelder_mead_agrees_with_scipy_when_available():
    optimize = pytest.importorskip("scipy.optimize")
    def function(p):
        return (p[0] - 0.3) ** 2 + 10 * (p[1] - 0.02) ** 2 + 0.1 * np.sin(5 * p[0]) ** 2

    for start in ([0.5, 0.5], [0.9, 0.1], [0.1, 0.9]):
        reference = optimize.minimize(function, start, method="Nelder-Mead", bounds=((0, 1), (1e-10, 1))).x
        assert nelder_mead(function, start, ((0, 1), (1e-10, 1))) == pytest.approx(reference, abs=1e-6)


def test_luminance_transfer_moves_towards_a_brighter_source():
    generator = torch.Generator().manual_seed(1)
    dark = torch.rand(16, 16, generator=generator) * 40
    bright = 60 + torch.rand(16, 16, generator=generator) * 40
    moved = transfer_luminance(dark, bright, np.random.default_rng(0))
    assert moved.mean() > dark.mean() + 1
    assert moved.min() >= 0 and moved.max() <= dark.max() + 1e-4


def test_negative_samples_keep_the_background_and_start_with_the_composite():
    torch.manual_seed(0)
    target = torch.rand(3, 3, 12, 12) * 2 - 1
    composite = target.flip(1)
    mask = torch.zeros(3, 1, 12, 12)
    mask[..., 3:9, 2:10] = 1
    negatives = create_negative_samples(target, composite, mask, k=3, generator=np.random.default_rng(0))
    assert negatives.shape == (3, 3, 3, 12, 12)
    assert torch.equal(negatives[:, 0], composite)
    background = (mask[:, None].expand_as(negatives[:, 1:]) == 0)
    assert torch.equal(negatives[:, 1:][background], target[:, None].expand_as(negatives[:, 1:])[background])
    foreground = negatives[:, 1:][~background]
    assert torch.isfinite(foreground).all() and foreground.min() >= -1 and foreground.max() <= 1
    again = create_negative_samples(target, composite, mask, k=3, generator=np.random.default_rng(0))
    assert torch.equal(negatives, again)
    with pytest.raises(ValueError, match="batch of at least"):
        create_negative_samples(target, composite, mask, k=4)
