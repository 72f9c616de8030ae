"""`harmonize train --arch pctnet-cnn|pctnet-vit`: the authors' recipe, full-resolution crops, the
PCT objective, checkpoints and resume (CPU, tiny crops, a randomly initialised VGG16)."""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest
import torch

from harmonize_cli.data.fullres import FullResolutionCrops, RandomCropNoResize, crop_no_resize_box
from harmonize_cli.data.transforms import ArrayReader
from harmonize_cli.training import Trainer, TrainConfig, TrainingInterrupted, recipe_for, train
from harmonize_cli.training.checkpoint import load_checkpoint
from harmonize_cli.training.pct_training import VGG16Features, load_vgg16_features
from harmonize_cli.training.seeding import collate
from minidata import make_mini_iharmony

# the networks see 32 px views of crops of the 48 x 64 mini images
FAST = {"arch": "pctnet-cnn", "crop": 32, "batch_size": 2, "workers": 0, "val_subsets": ["Hday2night"],
        "val_every": 0, "image_every": 0, "tensorboard": False, "seed": 0, "deterministic": True}


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_mini_iharmony(tmp_path_factory.mktemp("data") / "iHarmony4", n_train=4, n_test=2)


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    """A randomly initialised VGG16 ``features`` (relu4_3 and below) in torchvision's key names."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save(VGG16Features().state_dict(), path)
    return path


def config_for(mini, vgg, **changes):
    return TrainConfig(**{**FAST, "data": str(mini), "vgg_weights": str(vgg), **changes})


class Scripted:
    """A stand-in for ``random``: returns the scripted values in order (uniform(a, b) = a + (b - a) x)."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)

    def uniform(self, low, high):
        return low + (high - low) * self.values.pop(0)


# ------------------------------------------------------------------------------ RandomCropNoResize
def test_random_crop_no_resize_box_by_hand():
    # 100 x 200 image, ratio 0.7: s_h = 0.75 -> 75 rows, s_w = 0.9 -> 180 columns; the corner maps
    # [0, 1) onto 0 .. H - h inclusive: int(26 * 0.5) = 13, int(21 * 0.999) = 20
    assert crop_no_resize_box(100, 200, 0.7, (0.75, 0.9, 0.5, 0.999)) == (13, 20, 75, 180)
    assert crop_no_resize_box(100, 200, 0.7, (0.7, 1.0, 0.0, 0.0)) == (0, 0, 70, 200)
    assert crop_no_resize_box(10, 10, 0.7, (0.79, 0.71, 0.99, 0.99)) == (3, 3, 7, 7)  # int(7.9), int(7.1)


def test_random_crop_no_resize_keeps_full_resolution_and_redraws_empty_crops():
    rng = np.random.default_rng(0)
    composite = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    real = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[30:, 50:] = 255  # the foreground sits in the bottom-right corner
    # draw 1: 28 x 42 at the top-left (no foreground), kept with probability 0.05: u = 0.5 says no;
    # draw 2: s = (0.82, 0.925) -> int(32.8) x int(55.5) = 32 x 55 at int(9 * 0.99) = 8, int(6 * 0.99) = 5
    scripted = Scripted(0.0, 0.0, 0.0, 0.0, 0.5, 0.4, 0.75, 0.99, 0.99, 0.5)
    transform = RandomCropNoResize(0.7, low_size=16, max_side=None, rng=scripted)
    out = transform(ArrayReader(composite, real, mask), keep_background_prob=0.05)
    assert not scripted.values
    assert torch.equal(out["image_fullres"], torch.from_numpy(composite[8:40, 5:60]).permute(2, 0, 1).float())
    assert torch.equal(out["target_fullres"], torch.from_numpy(real[8:40, 5:60]).permute(2, 0, 1).float())
    assert torch.equal(out["mask_fullres"][0], torch.from_numpy(mask[8:40, 5:60] / 255.0).float())
    # the network's view: the crop resized bilinearly (OpenCV geometry) to 16 x 16, images rounded
    crop = torch.from_numpy(composite[8:40, 5:60]).permute(2, 0, 1)[None].float()
    expected = torch.nn.functional.interpolate(crop, size=(16, 16), mode="bilinear", align_corners=False)[0]
    assert out["image"].shape == (3, 16, 16) and out["mask"].shape == (1, 16, 16)
    assert torch.equal(out["image"], torch.floor(expected + 0.5))
    # a crop longer than max_side is shrunk for memory; the view is still made from the crop itself
    scripted = Scripted(1.0, 1.0, 0.0, 0.0)
    out = RandomCropNoResize(0.7, low_size=16, max_side=30, rng=scripted)(ArrayReader(composite, real, mask))
    assert out["image_fullres"].shape == (3, 20, 30) and out["mask_fullres"].shape == (1, 20, 30)
    whole = torch.from_numpy(composite).permute(2, 0, 1)[None].float()
    view = torch.nn.functional.interpolate(whole, size=(16, 16), mode="bilinear", align_corners=False)[0]
    assert torch.equal(out["image"], torch.floor(view + 0.5))


def test_the_low_resolution_mask_is_bilinear_and_soft_by_hand():
    """The network's view of the mask: OpenCV bilinear (source x = (x + 0.5) * 2 - 0.5 = 0.5, 2.5,
    4.5, 6.5 for 8 -> 4: the mean of two neighbours), divided by 255, never rounded or thresholded.
    Columns 0 0 0 255 255 255 255 128 -> 0, 0.5, 1, (255 + 128) / 510; rows likewise."""
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 3:7] = 255
    mask[:, 7] = 128
    image = np.zeros((8, 8, 3), np.uint8)
    out = RandomCropNoResize(1.0, low_size=4, max_side=None, rng=Scripted(1.0, 1.0, 0.0, 0.0))(
        ArrayReader(image, image, mask))
    expected = torch.tensor([0.0, 0.5, 1.0, 383 / 510]).repeat(4, 1)
    assert out["mask"].shape == (1, 4, 4) and torch.allclose(out["mask"][0], expected, atol=1e-6)
    assert torch.equal(out["mask_fullres"][0], torch.from_numpy(mask / 255.0).float())
    out = RandomCropNoResize(1.0, low_size=4, max_side=None, rng=Scripted(1.0, 1.0, 0.0, 0.0))(
        ArrayReader(image, image, np.ascontiguousarray(mask.T)))
    assert torch.allclose(out["mask"][0], expected.T, atol=1e-6)


def test_samples_use_the_networks_normalisation_and_collate_keeps_full_resolution_lists(mini):
    from harmonize_cli.data import HarmonizationDataset

    dataset = HarmonizationDataset(mini, split="train", subsets=["HCOCO"])
    identity = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    imagenet = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    samples = {}
    for label, normalization in (("identity", identity), ("imagenet", imagenet)):
        crops = FullResolutionCrops(dataset, RandomCropNoResize(1.0, low_size=16, max_side=None), normalization)
        samples[label] = crops[0]  # ratio 1: the whole image, whatever the draws
    raw = dataset.reader(0).read("composite")
    pixels = torch.from_numpy(raw).permute(2, 0, 1).float()
    assert torch.allclose(samples["identity"]["image_fullres"], pixels / 255.0, atol=1e-6)
    mean, std = torch.tensor(imagenet["mean"]).view(3, 1, 1), torch.tensor(imagenet["std"]).view(3, 1, 1)
    assert torch.allclose(samples["imagenet"]["image_fullres"], (pixels / 255.0 - mean) / std, atol=1e-5)
    second = dict(samples["identity"], image_fullres=torch.zeros(3, 5, 7), target_fullres=torch.zeros(3, 5, 7),
                  mask_fullres=torch.zeros(1, 5, 7))
    batch = collate([samples["identity"], second])
    assert set(batch) == {"image", "target", "mask", "image_fullres", "target_fullres", "mask_fullres"}
    assert batch["image"].shape == (2, 3, 16, 16) and batch["mask"].shape == (2, 1, 16, 16)
    assert [tuple(t.shape) for t in batch["image_fullres"]] == [(1, 3, 48, 64), (1, 3, 5, 7)]
    assert [tuple(t.shape) for t in batch["mask_fullres"]] == [(1, 1, 48, 64), (1, 1, 5, 7)]


# ------------------------------------------------------------------------------ the recipe
def test_the_authors_recipe_for_both_recipes_and_both_models():
    for arch in ("pctnet-vit", "pctnet-cnn"):
        assert recipe_for(arch, "paper") == recipe_for(arch, "reference")  # the iDIH paper's recipe does not apply
    vit = TrainConfig(arch="ViT_pct").resolved()
    assert (vit.arch, vit.epochs, vit.schedule, vit.milestones, vit.lr) == ("pctnet-vit", 100, "constant-linear",
                                                                          [50], 1e-4)
    assert (vit.loss, vit.min_area, vit.crop, vit.crop_ratio, vit.fullres_max_side) == ("pct", 1000.0, 256, 0.7, 1024)
    assert vit.train_subsets == ["HFlickr", "Hday2night", "HCOCO"] and vit.keep_background_prob == 0.05
    assert (vit.val_subsets, vit.val_resize, vit.batch_size, vit.betas, vit.eps) == (
        ["HFlickr", "Hday2night", "HCOCO"], "fixed256", 16, [0.9, 0.999], 1e-8)
    cnn = TrainConfig(arch="pctnet-cnn", batch_size=4).resolved()
    assert (cnn.epochs, cnn.schedule, cnn.milestones, cnn.gamma) == (180, "multistep", [160, 175], 0.1)
    assert cnn.lr == pytest.approx(1e-3 * 4 / 16) and TrainConfig(arch="pctnet-vit", batch_size=8).resolved().lr == (
        pytest.approx(0.5e-4))
    assert TrainConfig(arch="pctnet-vit", lr=3e-4).resolved().lr == 3e-4  # an explicit lr is kept as given
    # the other networks keep theirs
    idih = TrainConfig(arch="idih").resolved()
    assert (idih.lr, idih.schedule, idih.crop_ratio, idih.vgg_weights) == (1e-3, "multistep", None, None)
    assert idih.train_subsets == ["HCOCO", "HAdobe5k", "HFlickr", "Hday2night"]
    from harmonize_cli.errors import UsageError

    for bad in ({"arch": "idih", "loss": "pct"}, {"arch": "pctnet-vit", "loss": "fn-mse"},
                {"arch": "idih", "crop_ratio": 0.5}, {"arch": "pctnet-vit", "milestones": [10, 20]},
                {"arch": "pctnet-vit", "schedule": "cosine"}, {"arch": "pctnet-cnn", "crop_ratio": 1.5}):
        with pytest.raises(UsageError):
            TrainConfig(**bad).resolved()


def test_constant_then_linear_schedule_equals_hand_computed_values_and_the_authors_sequential_lr():
    from harmonize_cli.training.step import build_optimizer, build_scheduler
    from harmonize_cli.zoo import create_model

    config = TrainConfig(arch="pctnet-vit").resolved()
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    reference_optimizer = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=1e-4)
    reference = torch.optim.lr_scheduler.SequentialLR(reference_optimizer, schedulers=[
        torch.optim.lr_scheduler.ConstantLR(reference_optimizer, factor=1),
        torch.optim.lr_scheduler.LinearLR(reference_optimizer, start_factor=1, end_factor=0, total_iters=50)],
        milestones=[50])
    lrs, reference_lrs = [], []
    for _ in range(101):  # the lr used in epochs 1 .. 101 (0-based 0 .. 100)
        lrs.append(optimizer.param_groups[0]["lr"])
        reference_lrs.append(reference_optimizer.param_groups[0]["lr"])
        scheduler.step()
        reference.step()
    hand = {0: 1e-4, 49: 1e-4, 50: 1e-4, 51: 0.98e-4, 75: 0.5e-4, 99: 0.02e-4, 100: 0.0}
    assert {epoch: lrs[epoch] for epoch in hand} == pytest.approx(hand, abs=1e-15)
    assert lrs == pytest.approx(reference_lrs, abs=1e-12)
    # PCTNet-CNN: MultiStepLR x0.1 at 160 and 175, lr 1e-3 x batch / 16
    cnn = TrainConfig(arch="pctnet-cnn", batch_size=8).resolved()
    network = create_model("pctnet-cnn", init=False)
    optimizer = build_optimizer(network, cnn)
    assert [(g["lr"], g["betas"], g["eps"], g["weight_decay"]) for g in optimizer.param_groups] == [
        (5e-4, (0.9, 0.999), 1e-8, 0)]
    scheduler = build_scheduler(optimizer, cnn)
    seen = {}
    for epoch in range(180):
        seen[epoch] = optimizer.param_groups[0]["lr"]
        scheduler.step()
    assert (seen[159], seen[160], seen[174], seen[175], seen[179]) == pytest.approx((5e-4, 5e-5, 5e-5, 5e-6, 5e-6))


def test_initialisation_follows_each_authors_script(mini, vgg):
    from harmonize_cli.training.model_and_data import build_model

    vit, _ = build_model(config_for(mini, vgg, arch="pctnet-vit").resolved(), None, resuming=False)
    cnn, _ = build_model(config_for(mini, vgg).resolved(), None, resuming=False)
    # ViT: N(0, 0.02) for every convolution and linear layer (the patch embedding: 4*4*4 -> 256)
    embedding = [m for m in vit.modules() if isinstance(m, torch.nn.Linear)][0].weight
    assert embedding.std().item() == pytest.approx(0.02, rel=0.05)
    # CNN: XavierGluon gaussian, magnitude 2: std sqrt(2 / ((fan_in + fan_out) / 2)); get_params: 32 -> 12, 1 x 1
    weight = cnn.get_params.weight
    assert tuple(weight.shape) == (12, 32, 1, 1)
    assert weight.std().item() == pytest.approx(math.sqrt(2 / 22), rel=0.1)
    # PCTNet-CNN never uses the U-Net decoder's to_rgb: frozen, so every trainable parameter gets a
    # gradient (what DDP needs) and to_rgb stays out of the optimizer
    assert not any(p.requires_grad for p in cnn.decoder.to_rgb.parameters())


# ------------------------------------------------------------------------------ the training step
@pytest.mark.parametrize("arch", ["pctnet-cnn", "pctnet-vit"])
def test_the_step_feeds_full_resolution_crops_and_the_loss_falls_on_a_fixed_batch(arch, mini, vgg):
    from harmonize_cli.training.model_and_data import build_model, open_datasets
    from harmonize_cli.training.step import build_loss, build_optimizer, train_step

    config = config_for(mini, vgg, arch=arch, lr=1e-3).resolved()
    train_set, _ = open_datasets(config, str(mini), with_validation=False)
    torch.manual_seed(0)
    batch = collate([train_set[i] for i in (0, 5)])
    assert len({tuple(t.shape) for t in batch["image_fullres"]}) == 2  # two crop sizes in one batch
    # the network's own input space: pixels in [0, 1] for the ViT, ImageNet-normalised for the CNN
    low, high = min(t.min().item() for t in batch["image_fullres"]), max(t.max().item() for t in batch["image_fullres"])
    assert (0.0 <= low and high <= 1.0) if arch == "pctnet-vit" else (low < -1.0 and high > 1.5)
    model, _ = build_model(config, None, resuming=False)
    loss_fn, optimizer = build_loss(config, vgg), build_optimizer(model, config)
    model.train()
    # what the step must minimise: the objective on the full-resolution output, and its gradient
    trainable = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(3)  # the same dropout (ViT) and negatives draws in both
    outputs = model(batch["image"], batch["mask"], image_fullres=batch["image_fullres"],
                    mask_fullres=batch["mask_fullres"])
    expected = loss_fn(outputs, batch)
    gradients = torch.autograd.grad(expected, trainable)
    torch.manual_seed(3)
    losses = []
    for _ in range(3):
        loss, prediction = train_step(model, batch, loss_fn, optimizer)
        losses.append(loss.item())
        if len(losses) == 1:
            assert losses[0] == pytest.approx(expected.item(), rel=1e-5)
            assert all(torch.allclose(p.grad, g, rtol=1e-3, atol=1e-8) for p, g in zip(trainable, gradients))
            assert prediction.shape == (2, 3, 32, 32)
            trainable = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
            assert trainable == []  # nothing unused (DDP without find_unused_parameters)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    # the pixel term is FN-MSE with A_min 1000 on the full-resolution output, per crop, averaged
    model.eval()
    with torch.no_grad():
        outputs = model(batch["image"], batch["mask"], image_fullres=batch["image_fullres"],
                        mask_fullres=batch["mask_fullres"])
        loss_fn(outputs, batch)
        by_hand = []
        for pred, target, mask in zip(outputs["images_fullres"], batch["target_fullres"], batch["mask_fullres"]):
            squared = ((pred - target) ** 2).sum().item()  # every pixel, divided by the (clamped) mask area
            by_hand.append(squared / (3 * max(mask.sum().item(), 1000.0)))
    assert loss_fn.last_parts["pixel"].item() == pytest.approx(sum(by_hand) / 2, rel=1e-5)


def test_vgg16_features_are_torchvisions_and_a_wrong_file_is_one_line(tmp_path):
    import torchvision

    from harmonize_cli.errors import WeightsError

    with torch.device("meta"):
        reference = torchvision.models.vgg16().features[:23]
    ours = VGG16Features()
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (f"features.{k}", tuple(v.shape)) for k, v in reference.state_dict().items()]
    assert [type(a).__name__ for a in ours.features] == [type(b).__name__ for b in reference]
    # a full torchvision checkpoint (classifier included) loads; a wrong one says what it is
    state = {**ours.state_dict(), "classifier.0.weight": torch.zeros(2, 2)}
    torch.save(state, tmp_path / "vgg16.pth")
    extractor = load_vgg16_features(tmp_path / "vgg16.pth")
    assert not any(p.requires_grad for p in extractor.parameters()) and not extractor.training
    assert torch.equal(extractor[21].weight, ours.features[21].weight)
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="not a torchvision VGG16 checkpoint.*lacks features.0.bias"):
        load_vgg16_features(tmp_path / "partial.pth")


# ------------------------------------------------------------------------------ whole runs
def test_a_pctnet_cnn_run_writes_a_valid_checkpoint_and_validates_at_256(mini, vgg, tmp_path):
    from harmonize_cli import zoo

    run = tmp_path / "run"
    result = train(config_for(mini, vgg, epochs=1, steps_per_epoch=2, val_every=1), out=str(run))
    assert result.epochs_done == 1
    checkpoint = load_checkpoint(run / "last.pth")
    assert checkpoint["meta"]["arch"] == "pctnet-cnn" and checkpoint["metrics"][0]["steps"] == 2
    assert math.isfinite(checkpoint["metrics"][0]["train_loss"])
    assert [g["lr"] for g in checkpoint["optimizer"]["param_groups"]] == [pytest.approx(1e-3 * 2 / 16)]
    saved = checkpoint["config"]
    assert (saved["loss"], saved["schedule"], saved["crop_ratio"]) == ("pct", "multistep", 0.7)
    # the weights load strictly as the zoo's pctnet-cnn
    resolved = zoo.resolve("pctnet-cnn", str(run / "last.pth"))
    assert resolved.name == "pctnet-cnn"
    # validation: the test images resized to 256, the network's own 256 px output, MSE on 0..255
    from harmonize_cli.data import HarmonizationDataset, eval_transform

    model = resolved.network.eval()
    test = HarmonizationDataset(mini, split="test", subsets=["Hday2night"], transform=eval_transform("fixed256"),
                                keep_raw=True)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1)
    errors = []
    with torch.no_grad():
        for sample in test:
            image = (sample["image_255"][None] / 255.0 - mean) / std
            output = model(image, sample["mask"][None])["images"]
            prediction = ((output * std + mean) * 255.0).clamp(0, 255)
            errors.append(((prediction - sample["target_255"][None]) ** 2).mean().item())
    assert checkpoint["metrics"][0]["val"]["MSE"] == pytest.approx(sum(errors) / len(errors), rel=1e-4)


class _StopAt(Trainer):
    stop_at = (0, 1)

    def on_step_end(self, epoch, step):
        if (epoch, step) == self.stop_at:
            self.stop.signum = signal.SIGTERM


def _comparable(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: r[k] for k in ("epoch", "lr", "train_loss", "steps", "samples")} for r in records]


@pytest.mark.parametrize("arch", ["pctnet-cnn", "pctnet-vit"])
def test_stop_and_resume_equals_an_uninterrupted_run(arch, mini, vgg, tmp_path):
    # batch 3: two negatives per image, the colour-transferred one drawn at random; the ViT has dropout
    config = config_for(mini, vgg, arch=arch, batch_size=3, epochs=1, steps_per_epoch=2)
    train(config, out=str(tmp_path / "whole"))
    run = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted):
        train(config, out=str(run), trainer_cls=_StopAt)
    assert (load_checkpoint(run / "last.pth")["epoch"], load_checkpoint(run / "last.pth")["step"]) == (0, 1)
    train(resume=True, out=str(run))
    assert _comparable(run) == _comparable(tmp_path / "whole")
    final, reference = load_checkpoint(run / "last.pth"), load_checkpoint(tmp_path / "whole" / "last.pth")
    assert all(torch.equal(final["model"][k], reference["model"][k]) for k in reference["model"])
    assert final["scheduler"] == reference["scheduler"]


def test_cli_trains_pctnet_vit_and_a_missing_vgg16_fails_before_training(mini, vgg, tmp_path, run_cli,
                                                                         monkeypatch):
    common = ["train", "--arch", "pctnet-vit", "--data", mini, "--crop", 32, "--batch-size", 2, "--epochs", 1,
              "--steps-per-epoch", 1, "--val-subsets", "none", "--workers", 0, "--image-every", 1,
              "--no-tensorboard", "--seed", 0]
    # offline and not in the cache: one line saying how to get it; no run folder left behind
    code, _, err = run_cli(*common, "--out", tmp_path / "missing")
    assert code == 2 and "VGG16 ImageNet weights" in err and "harmonize zoo download vgg16" in err
    assert len(err.strip().splitlines()) <= 2 and not (tmp_path / "missing").exists()
    code, _, err = run_cli(*common, "--out", tmp_path / "nofile", "--vgg-weights", tmp_path / "nope.pth")
    assert code == 2 and "nope.pth does not exist" in err
    # torch's hub cache is looked at, and what is there is verified (torchvision's hash prefix)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth").write_bytes(b"not the torchvision file")
    code, _, err = run_cli(*common, "--out", tmp_path / "forged")
    assert code != 0 and "does not start with 397923af" in err
    # with the weights: a run
    code, _, err = run_cli(*common, "--out", tmp_path / "run", "--vgg-weights", vgg)
    assert code == 0, err
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pth")
    assert checkpoint["meta"]["arch"] == "pctnet-vit" and math.isfinite(checkpoint["metrics"][0]["train_loss"])
    assert (tmp_path / "run" / "images").is_dir()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "view of full-resolution crops, ratio 0.7, long side at most 1024" in log
    assert "constant, then linear from epoch 50 to 0 at 1; 1 epochs; loss pct (A_min 1000)" in log
    config = TrainConfig.load(tmp_path / "run" / "config.toml")
    assert (config.loss, config.schedule, config.milestones, config.lr) == ("pct", "constant-linear", [50], 1.25e-5)


@pytest.mark.slow
def test_torchrun_two_processes_train_pctnet_cnn(mini, vgg, tmp_path):
    """DDP needs a gradient for every trainable parameter at every step: PCTNet-CNN's unused
    to_rgb is frozen, or the second step fails ("Expected to have finished reduction ...")."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "harmonize_cli", "train", "--arch", "pctnet-cnn", "--crop", 32, "--batch-size", 4,
               "--epochs", 1, "--steps-per-epoch", 3, "--workers", 0, "--val-subsets", "none", "--device", "cpu",
               "--no-tensorboard", "--seed", 0, "--data", mini, "--vgg-weights", vgg, "--out", tmp_path / "ddp"]
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = load_checkpoint(tmp_path / "ddp" / "last.pth")
    assert saved["meta"]["world_size"] == 2 and saved["metrics"][0]["steps"] == 3
