"""The trainer's own optimisation (the functions `harmonize train` calls: training.step.build_loss,
build_optimizer, train_step) against one step of the reference's training loop, and by hand.

Fixtures: ../shared/parity/train_step/*.npz (README there, section train_step). Missing fixtures
skip the test, except under CI (CI=true), where they fail it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonize_cli.training import TrainConfig
from harmonize_cli.training.model_and_data import build_model
from harmonize_cli.training.step import build_loss, build_optimizer, train_step
from parity_utils import generate_weights, parity_dir

# the values the reference used (parity README): ImageNet statistics, the paper's Adam
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_STEP_FIXTURES = ("improved_dih256", "hrnet18s_idih256")


def running_under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_parity_file(relative: str) -> Path:
    """The fixture file; missing: a failure under CI, a skip elsewhere."""
    path = parity_dir() / relative
    if not path.is_file():
        message = (f"reference fixture {path} not found: put ../shared/parity beside the checkout "
                   "or set HARMONIZE_PARITY_DIR")
        if running_under_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def load_train_step(name: str):
    data = np.load(require_parity_file(f"train_step/{name}.npz"))
    layouts = json.loads(require_parity_file("official_state_dicts.json").read_text())
    stats = json.loads(str(data["stats"]))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def normalised(array):  # uint8 N x H x W x 3 -> normalised N x 3 x H x W
        return (torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255.0 - mean) / std

    batch = {"image": normalised(data["composite"]), "target": normalised(data["target"]),
             "mask": torch.from_numpy(data["mask"]).float().unsqueeze(1) / 255.0}
    return batch, stats, layouts[name]["state_dict"]


def relative_error(value: float, expected: float) -> float:
    return abs(value - expected) / max(abs(expected), 1e-30)


@pytest.mark.parametrize("name", TRAIN_STEP_FIXTURES)
def test_the_trainers_step_matches_one_reference_training_step(name):
    batch, stats, manifest = load_train_step(name)
    weights, digest = generate_weights(manifest, stats["seed"])
    assert digest == stats["weights_sha256"], "the weight rule disagrees with the fixture"

    config = TrainConfig(arch=name, seed=0).resolved()  # what `harmonize train --arch NAME` uses
    model, _ = build_model(config, None, resuming=False)
    model.load_state_dict(weights, strict=True)
    model.train()
    for module in model.modules():  # the reference's step ran with dropout switched off
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.eval()
    optimizer = build_optimizer(model, config)
    before = {key: p.detach().double().clone() for key, p in model.named_parameters()}

    loss, _ = train_step(model, batch, build_loss(config), optimizer)

    assert relative_error(loss.item(), stats["loss"]) <= 1e-5, (loss.item(), stats["loss"])
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    params = dict(model.named_parameters())
    assert sorted(params) == sorted(stats["params"])
    failures = []
    for key, expected in stats["params"].items():
        param = params[key]
        grad_sq_sum = param.grad.double().pow(2).sum().item()
        update = param.detach().double() - before[key]
        update_l1, update_sum = update.abs().sum().item(), update.sum().item()
        if lr_of[id(param)] != expected["lr"]:
            failures.append(f"{key}: lr {lr_of[id(param)]} != {expected['lr']}")
        if relative_error(grad_sq_sum, expected["grad_sq_sum"]) > 1e-3:
            failures.append(f"{key}: grad_sq_sum {grad_sq_sum} != {expected['grad_sq_sum']}")
        if relative_error(update_l1, expected["update_l1"]) > 1e-3:
            failures.append(f"{key}: update_l1 {update_l1} != {expected['update_l1']}")
        if abs(update_sum - expected["update_sum"]) > 1e-3 * expected["update_l1"]:
            failures.append(f"{key}: update_sum {update_sum} != {expected['update_sum']}")
    buffers = dict(model.named_buffers())
    for key, expected in stats["buffers"].items():
        value = buffers[key].double().sum().item()
        if relative_error(value, expected) > 1e-4:
            failures.append(f"{key}: buffer sum {value} != {expected}")
    assert not failures, f"{len(failures)} mismatches, first: " + "; ".join(failures[:5])


def test_missing_fixtures_fail_under_ci_and_skip_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONIZE_PARITY_DIR", str(tmp_path))  # an empty folder: no fixtures
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not found"):
        load_train_step("improved_dih256")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not found"):
        load_train_step("improved_dih256")


# ------------------------------------------------------------------------------ by hand
# Both fixture masks cover more than 100 pixels (A_min does not act there), and Adam's first step
# does not depend on its betas: these two get hand-computed checks of their own.
def fn_mse_example():
    """(prediction, target, mask, FN-MSE with A_min 100 computed by hand)."""
    prediction = torch.zeros(2, 3, 16, 16)
    target = torch.zeros(2, 3, 16, 16)
    mask = torch.zeros(2, 1, 16, 16)
    target[0] = 1.0  # image 0: error 1 on all 3 x 256 values; a 2 x 2 foreground (4 px < A_min)
    mask[0, :, :2, :2] = 1.0
    target[1, 0, 5, 5] = 2.0  # image 1: error 2 on one value; the whole image is foreground (256 px)
    mask[1] = 1.0
    expected = (768 / (3 * 100) + 4 / (3 * 256)) / 2
    return prediction, target, mask, expected


def test_the_trainers_loss_is_fn_mse_with_a_min_100():
    prediction, target, mask, expected = fn_mse_example()
    for arch in ("idih", "idih-hrnet-w18s", "is2am"):  # the paper's recipe: every network the same
        loss_fn = build_loss(TrainConfig(arch=arch).resolved())
        assert loss_fn(prediction, target, mask).item() == pytest.approx(expected, rel=1e-6), arch


def test_the_trainers_optimizer_is_the_papers_adam_over_two_steps():
    class Scalar(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))

    model = Scalar()
    optimizer = build_optimizer(model, TrainConfig(arch="idih").resolved())
    for gradient in (1.0, -3.0):
        optimizer.zero_grad()
        (model.w * gradient).sum().backward()
        optimizer.step()
    # Adam by hand with the paper's constants: lr 1e-3, betas 0.9 / 0.999, eps 1e-8, no weight decay
    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
    m1, v1 = (1 - b1) * 1.0, (1 - b2) * 1.0
    step1 = lr * (m1 / (1 - b1)) / (math.sqrt(v1 / (1 - b2)) + eps)
    m2, v2 = b1 * m1 + (1 - b1) * -3.0, b2 * v1 + (1 - b2) * 9.0
    step2 = lr * (m2 / (1 - b1 ** 2)) / (math.sqrt(v2 / (1 - b2 ** 2)) + eps)
    assert model.w.item() == pytest.approx(0.5 - step1 - step2, rel=1e-12, abs=1e-15)
