"""Metric formulas on hand-computed arrays, and the foreground-ratio ranges."""

from __future__ import annotations

import math

import pytest
import torch

from harmonize_cli.evaluation import metrics


def _images():
    # one image, 3 x 2 x 2; errors only in the top-left pixel of each channel: 1, 2, 3
    target = torch.full((1, 3, 2, 2), 100.0)
    target[0, 0, 1, 1] = 200.0  # the target's own maximum is 200
    pred = target.clone()
    pred[0, 0, 0, 0] += 1.0
    pred[0, 1, 0, 0] += 2.0
    pred[0, 2, 0, 0] -= 3.0
    mask = torch.zeros(1, 1, 2, 2)
    mask[0, 0, 0, 0] = 1.0
    mask[0, 0, 0, 1] = 0.5
    return pred, target, mask


def test_mse_hand_computed():
    pred, target, _ = _images()
    # (1 + 4 + 9) / 12 values
    assert metrics.mse(pred, target).tolist() == pytest.approx([14.0 / 12.0])


def test_fmse_hand_computed_soft_mask():
    pred, target, mask = _images()
    # weighted squared error: 1.0 * (1 + 4 + 9) + 0.5 * 0 = 14; denominator 3 * (1 + 0.5) + 1e-6
    expected = 14.0 / (3 * 1.5 + 1e-6)
    assert metrics.fmse(pred, target, mask).tolist() == pytest.approx([expected], rel=1e-12)


def test_fmse_empty_mask_is_zero_not_nan():
    pred, target, _ = _images()
    assert metrics.fmse(pred, target, torch.zeros(1, 1, 2, 2)).tolist() == [0.0]


def test_psnr_uses_the_targets_own_maximum_or_a_fixed_peak():
    pred, target, _ = _images()
    mse = 14.0 / 12.0
    assert metrics.psnr(pred, target).tolist() == pytest.approx([10 * math.log10(200.0 ** 2 / (mse + 1e-6))])
    assert metrics.psnr(pred, target, peak=255).tolist() == pytest.approx([10 * math.log10(255.0 ** 2 / (mse + 1e-6))])


def test_identical_images_give_the_epsilon_bounded_psnr():
    target = torch.full((1, 3, 4, 4), 255.0)
    assert metrics.psnr(target, target).tolist() == pytest.approx([10 * math.log10(255.0 ** 2 / 1e-6)])


def test_batched_values_are_per_image():
    pred, target, mask = _images()
    pred2 = torch.cat((pred, target))  # the second image is perfect
    target2 = torch.cat((target, target))
    mask2 = torch.cat((mask, mask))
    values = metrics.image_metrics(pred2, target2, mask2)
    assert values["MSE"].tolist() == pytest.approx([14.0 / 12.0, 0.0])
    assert values["fMSE"].tolist()[1] == 0.0
    assert len(values["PSNR"]) == 2


def test_single_image_shapes_are_accepted():
    pred, target, mask = _images()
    assert metrics.fmse(pred[0], target[0], mask[0, 0]).tolist() == pytest.approx(
        metrics.fmse(pred, target, mask).tolist())


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        metrics.mse(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 3))


def _mask_with_ratio(fg_pixels, height=20, width=20):
    mask = torch.zeros(1, 1, height, width)
    mask.view(-1)[:fg_pixels] = 1.0
    return mask


def test_fg_ratio_counts_pixels_above_half():
    mask = torch.tensor([[[[0.5, 0.51], [1.0, 0.0]]]])
    assert metrics.fg_ratio(mask) == [0.5]


@pytest.mark.parametrize("fg_pixels, expected", [
    (20, ["0-5%", "5-15%", "0-100%"]),      # exactly 5 % of 400 pixels: both neighbouring ranges
    (60, ["5-15%", "15-100%", "0-100%"]),   # exactly 15 %: both neighbouring ranges
    (0, ["0-5%", "0-100%"]),
    (19, ["0-5%", "0-100%"]),
    (21, ["5-15%", "0-100%"]),
    (400, ["15-100%", "0-100%"]),
])
def test_fg_ratio_ranges_include_both_ends(fg_pixels, expected):
    (ratio,) = metrics.fg_ratio(_mask_with_ratio(fg_pixels))
    assert metrics.fg_ratio_bins(ratio) == expected


def test_fifteen_percent_of_a_100x100_mask():
    (ratio,) = metrics.fg_ratio(_mask_with_ratio(1500, 100, 100))
    assert ratio == 0.15
    assert "5-15%" in metrics.fg_ratio_bins(ratio) and "15-100%" in metrics.fg_ratio_bins(ratio)


def test_metric_sums_means_and_empty_rows():
    sums = metrics.MetricSums()
    assert sums.means() == {"N": 0, "MSE": None, "fMSE": None, "PSNR": None, "ms_per_image": None}
    sums.add({"MSE": 1.0, "fMSE": 2.0, "PSNR": 30.0}, seconds=0.01)
    sums.add({"MSE": 3.0, "fMSE": 4.0, "PSNR": 40.0}, seconds=0.03)
    row = sums.means()
    assert row["N"] == 2 and row["MSE"] == 2.0 and row["fMSE"] == 3.0 and row["PSNR"] == 35.0
    assert row["ms_per_image"] == pytest.approx(20.0)


    assert sums.means(with_time=False) == {"N": 2, "MSE": 2.0, "fMSE": 3.0, "PSNR": 35.0}
    untimed = metrics.MetricSums()
    untimed.add({"MSE": 5.0, "fMSE": 6.0, "PSNR": 20.0})  # no time given: counts as 0 s
    assert untimed.means()["ms_per_image"] == 0.0


def test_metric_sums_merge_adds_counts_sums_and_time():
    """Sums from two workers merge into the sums over all their images (hand-computed means)."""
    first, second = metrics.MetricSums(), metrics.MetricSums()
    first.add({"MSE": 1.0, "fMSE": 2.0, "PSNR": 30.0}, seconds=0.01)
    second.add({"MSE": 3.0, "fMSE": 10.0, "PSNR": 40.0}, seconds=0.02)
    second.add({"MSE": 8.0, "fMSE": 12.0, "PSNR": 50.0}, seconds=0.06)
    first.merge(second)
    row = first.means()
    assert row["N"] == 3 and row["MSE"] == 4.0 and row["fMSE"] == 8.0 and row["PSNR"] == 40.0
    assert row["ms_per_image"] == pytest.approx(30.0)
    assert second.means()["N"] == 2  # the merged-in sums are left as they were


def _two_images():
    """Two images that differ in everything the batch axis could mix up: the first is _images()'s
    (target maximum 200, MSE 14/12, mask sum 1.5); the second's target is 100 everywhere, its
    prediction 2 levels above it (MSE 4), under a full mask (sum 4)."""
    pred, target, mask = _images()
    target_b = torch.full((1, 3, 2, 2), 100.0)
    return (torch.cat((pred, target_b + 2.0)), torch.cat((target, target_b)),
            torch.cat((mask, torch.ones(1, 1, 2, 2))))


def test_every_metric_is_per_image_in_a_batch_of_two():
    pred, target, mask = _two_images()
    values = metrics.image_metrics(pred, target, mask)
    assert values["MSE"].tolist() == pytest.approx([14.0 / 12.0, 4.0], rel=1e-12)
    # the second: 12 squared errors of 4 under the full mask, over 3 channels x 4 pixels
    assert values["fMSE"].tolist() == pytest.approx([14.0 / (3 * 1.5 + 1e-6), 48.0 / (3 * 4 + 1e-6)], rel=1e-12)
    # each target's own maximum: 200 for the first, 100 for the second
    own_peaks = [10 * math.log10(200.0 ** 2 / (14.0 / 12.0 + 1e-6)), 10 * math.log10(100.0 ** 2 / (4.0 + 1e-6))]
    assert values["PSNR"].tolist() == pytest.approx(own_peaks, rel=1e-12)
    assert metrics.psnr(pred, target).tolist() == pytest.approx(own_peaks, rel=1e-12)
    assert metrics.fmse(pred, target, mask).tolist() == pytest.approx(values["fMSE"].tolist(), rel=1e-12)
    fixed = [10 * math.log10(255.0 ** 2 / (14.0 / 12.0 + 1e-6)), 10 * math.log10(255.0 ** 2 / (4.0 + 1e-6))]
    assert metrics.image_metrics(pred, target, mask, psnr_peak=255.0)["PSNR"].tolist() == pytest.approx(
        fixed, rel=1e-12)


def _message(call, *args):
    with pytest.raises(ValueError) as raised:
        call(*args)
    return str(raised.value)


def test_bad_shapes_are_errors_that_name_the_shape():
    image = torch.zeros(1, 3, 2, 2)
    assert _message(metrics.mse, torch.zeros(5), image) == "expected an N x C x H x W tensor, got shape (5,)"
    assert _message(metrics.mse, image, torch.zeros(1, 1, 1, 3, 2, 2)) == (
        "expected an N x C x H x W tensor, got shape (1, 1, 1, 3, 2, 2)")
    # the prediction and the target are each checked for 3 channels, before their shapes are compared
    assert _message(metrics.mse, torch.zeros(1, 4, 2, 2), image) == "expected 3 channels, got shape (1, 4, 2, 2)"
    assert _message(metrics.mse, image, torch.zeros(1, 4, 2, 2)) == "expected 3 channels, got shape (1, 4, 2, 2)"
    assert _message(metrics.psnr, image, torch.zeros(4, 2, 2)) == "expected 3 channels, got shape (1, 4, 2, 2)"
    assert _message(metrics.mse, image, torch.zeros(1, 3, 2, 3)) == (
        "prediction (1, 3, 2, 2) and target (1, 3, 2, 3) differ in shape")
    # psnr_from_mse takes its peaks from a target that must hold images too
    assert _message(metrics.psnr_from_mse, torch.ones(1), torch.zeros(1, 1, 2, 2)) == (
        "expected 3 channels, got shape (1, 1, 2, 2)")


def test_a_mask_that_does_not_fit_the_images_is_an_error():
    image = torch.zeros(1, 3, 2, 2)
    assert _message(metrics.fmse, image, image, torch.zeros(1, 3, 2, 2)) == (
        "expected 1 channels, got shape (1, 3, 2, 2)")
    assert _message(metrics.fmse, image, image, torch.zeros(2, 1, 2, 2)) == (
        "mask (2, 1, 2, 2) does not fit images (1, 3, 2, 2)")  # a mask per image: not two for one
    assert _message(metrics.image_metrics, image, image, torch.zeros(1, 1, 2, 3)) == (
        "mask (1, 1, 2, 3) does not fit images (1, 3, 2, 2)")


def test_targets_and_masks_are_moved_to_the_predictions_device():
    """A prediction on the accelerator, a target and mask on the CPU ("meta" stands in for a GPU:
    mixing it with a CPU tensor raises, as CUDA does)."""
    pred, target, mask = _images()
    assert metrics.mse(pred.to("meta"), target).device.type == "meta"
    assert metrics.fmse(pred.to("meta"), target, mask).device.type == "meta"
    values = metrics.image_metrics(pred.to("meta"), target, mask)
    assert [values[name].device.type for name in metrics.METRIC_NAMES] == ["meta"] * 3
    per_image_mse = torch.ones(1, dtype=torch.float64, device="meta")
    assert metrics.psnr_from_mse(per_image_mse, target).device.type == "meta"


def test_check_psnr_peak_accepts_every_positive_finite_peak():
    assert metrics.check_psnr_peak(None) is None
    assert metrics.check_psnr_peak(0.5) == 0.5  # below 1 is unusual (0..1 data) but well-defined
    assert metrics.check_psnr_peak("255") == 255.0
    for bad in (0, -1.0, float("inf"), float("nan")):
        assert _message(metrics.check_psnr_peak, bad) == (
            f"the PSNR peak must be a positive finite number, not {bad!r}")


def test_fg_ratio_of_non_square_masks_in_every_layout():
    mask = torch.tensor([[0.9, 0.0, 0.0], [0.0, 0.6, 0.2]])  # 2 of 6 pixels above 0.5
    assert metrics.fg_ratio(mask) == [2 / 6]
    assert metrics.fg_ratio(mask[None]) == [2 / 6]
    batch = torch.stack((mask, torch.ones(2, 3)))[:, None]  # N x 1 x 2 x 3
    assert metrics.fg_ratio(batch) == [2 / 6, 1.0]
    tall = torch.zeros(1, 1, 4, 1)
    tall[0, 0, 0, 0] = 1.0
    assert metrics.fg_ratio(tall) == [0.25]
    assert _message(metrics.fg_ratio, torch.ones(1, 3, 2, 2)) == "expected 1 channels, got shape (1, 3, 2, 2)"
