"""FN-MSE and MSE (training/losses.py) against hand computations."""

from __future__ import annotations

import pytest
import torch

from harmonize_cli.errors import UsageError
from harmonize_cli.training.losses import fn_mse, get_loss, mse


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
