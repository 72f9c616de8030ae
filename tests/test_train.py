"""`harmonize train` / `harmonize export` on a miniature iHarmony4 (CPU, tiny crops, few steps)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from harmonize_cli.cli import cli
from harmonize_cli.training import TrainConfig, recipe_for
from harmonize_cli.training.checkpoint import load_checkpoint
from harmonize_cli.training import Trainer, TrainingError, TrainingInterrupted, train
from minidata import make_mini_iharmony
from parity_utils import reference_layouts

ROOT = Path(__file__).resolve().parents[1]

# is2am is the cheapest network (2.2 M parameters, size divisor 16): most tests train it at 32 px.
FAST = {"arch": "is2am", "crop": 32, "batch_size": 4, "workers": 0, "val_resize": "none",
        "val_subsets": ["Hday2night"], "image_every": 0, "tensorboard": False}


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_mini_iharmony(tmp_path_factory.mktemp("data") / "iHarmony4", n_train=4, n_test=2)


def run_cli(*args):
    from harmonize_cli.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code
    return 0  # pragma: no cover - main always exits


def read_metrics(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def comparable(records):
    return [{k: r[k] for k in ("epoch", "lr", "train_loss", "val", "steps", "samples", "best")} for r in records]


def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


class StderrWatcher:
    """Reads a child process's stderr on a thread, so that a test can wait (bounded) for a line."""

    def __init__(self, process):
        self.process = process
        self.lines: list = []
        self.closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        """True once a line contains ``text``; False when the stream ended or the time ran out."""
        def seen():
            return any(text in line for line in self.lines)

        with self._changed:
            self._changed.wait_for(lambda: seen() or self.closed, timeout)
            return seen()

    def text(self, timeout: float = 30) -> str:
        """Everything read (after the process ended: the whole stream)."""
        self._thread.join(timeout)
        with self._changed:
            return "".join(self.lines)


def start_training(command, **options):
    process = subprocess.Popen([str(c) for c in command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=subprocess_env(), **options)
    return process, StderrWatcher(process)


# ------------------------------------------------------------------------------ configuration
def test_defaults_are_the_papers_recipe_and_toml_round_trips(tmp_path):
    config = TrainConfig(arch="hrnet18s_idih256").resolved()
    assert config.arch == "idih-hrnet-w18s"
    assert (config.epochs, config.milestones, config.gamma) == (180, [160, 175], 0.1)
    assert (config.batch_size, config.lr, config.betas, config.eps) == (16, 1e-3, [0.9, 0.999], 1e-8)
    assert (config.loss, config.min_area, config.crop, config.init_magnitude) == ("fn-mse", 100.0, 256, 2.0)
    assert config.pretrained_backbone and config.keep_background_prob == 0.05
    assert config.train_subsets == ["HCOCO", "HAdobe5k", "HFlickr", "Hday2night"]
    assert (config.val_subsets, config.val_resize) == (["HFlickr", "Hday2night", "HCOCO"], "fixed256")
    # the paper's recipe is the default for every network ...
    for arch in ("idih", "is2am", "dih", "s2am", "idih-512"):
        paper = TrainConfig(arch=arch).resolved()
        assert (paper.epochs, paper.milestones, paper.loss, paper.min_area) == (180, [160, 175], "fn-mse", 100.0)
    # ... and the authors' per-architecture scripts (models/fixed256/*.py) are one option away
    assert (recipe_for("idih", "reference").epochs, recipe_for("idih", "reference").milestones) == (120, (105, 115))
    assert (recipe_for("is2am", "reference").min_area, recipe_for("is2am", "reference").init_magnitude) == (1000.0, 1.0)
    assert (recipe_for("dih", "reference").loss, recipe_for("dih", "reference").milestones) == ("mse", ())
    reference = TrainConfig(arch="s2am", recipe="reference").resolved()
    assert (reference.epochs, reference.loss) == (120, "mse")
    # the 512 models: A_min 1000 (and snapshots every 5 epochs for the base networks)
    assert (recipe_for("idih-512", "reference").min_area, recipe_for("idih-512", "reference").snapshot_every) == (
        1000.0, 5)
    assert (recipe_for("idih-hrnet-w18-512", "reference").min_area,
            recipe_for("idih-hrnet-w18-512", "reference").snapshot_every) == (1000.0, 10)
    assert (recipe_for("idih-hrnet-w18", "reference").min_area, recipe_for("idih", "reference").min_area) == (
        100.0, 100.0)
    assert TrainConfig(arch="is2am").resolved().init_magnitude == 1.0
    assert TrainConfig(arch="idih").resolved().pretrained_backbone is False

    from harmonize_cli import zoo
    from harmonize_cli.training.config import REFERENCE_RECIPES

    assert {s.family for s in zoo.ARCHITECTURES if s.needs_weights} == set(REFERENCE_RECIPES)  # one row each
    assert "reference recipe" not in config.to_toml() and "paper's recipe" in config.to_toml()

    odd = config.updated(out='runs/ä "quoted" \\ path', lr=1e-8, milestones=[], seed=2**40, train_subsets=["HCOCO"])
    path = tmp_path / "config.toml"
    odd.save(path)
    assert TrainConfig.load(path) == odd
    from harmonize_cli.training.tomlio import _loads_toml_subset, loads_toml

    assert _loads_toml_subset(path.read_text()) == loads_toml(path.read_text())  # Python < 3.11 fallback
    (tmp_path / "typo.toml").write_text('arch = "idih"\nepoch = 3\n')
    from harmonize_cli.errors import UsageError

    with pytest.raises(UsageError, match="unknown setting.*epoch"):
        TrainConfig.load(tmp_path / "typo.toml")
    (tmp_path / "type.toml").write_text('epochs = "three"\n')
    with pytest.raises(UsageError, match="wrong type"):
        TrainConfig.load(tmp_path / "type.toml")


# ------------------------------------------------------------------------------ one CLI run shared by several tests
@pytest.fixture(scope="module")
def cli_run(mini, tmp_path_factory):
    """`harmonize train --config FILE` + overrides: 3 epochs x 4 steps of iS2AM at 32 px."""
    folder = tmp_path_factory.mktemp("cli")
    base = TrainConfig(**{**FAST, "epochs": 3, "batch_size": 8, "image_every": 3, "lr": 2e-3})
    base.save(folder / "base.toml")
    run = folder / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARMONIZE_HOME", str(folder / "home"))
        code = run_cli("train", "--config", folder / "base.toml", "--data", mini, "--out", run,
                       "--batch-size", 4, "--seed", 3, "--snapshot-every", 2)
    assert code == 0
    return run


def test_run_folder_holds_config_metrics_log_images_and_checkpoints(cli_run):
    files = {p.name for p in cli_run.iterdir()}
    assert {"config.toml", "metrics.jsonl", "train.log", "last.pth", "best.pth", "epoch_002.pth", "images"} <= files
    assert not (cli_run / "epoch_003.pth").exists()
    assert not any(name.endswith(".part") for name in files)
    config = TrainConfig.load(cli_run / "config.toml")
    assert (config.epochs, config.lr, config.batch_size, config.seed, config.deterministic) == (3, 2e-3, 4, 3, True)

    records = read_metrics(cli_run)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for record in records:
        assert set(record["val"]) == {"MSE", "fMSE", "PSNR"}
        assert record["lr"] == 2e-3 and record["seconds"] > 0 and record["samples_per_s"] > 0
        assert record["steps"] == 4 and record["samples"] == 16

    last = load_checkpoint(cli_run / "last.pth")
    for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "rng", "config", "metrics", "version"):
        assert key in last
    assert last["epoch"] == 3 and last["scheduler"]["last_epoch"] == 3
    assert last["meta"]["arch"] == "is2am" and last["meta"]["epoch"] == 3
    assert set(last["rng"]) == {"python", "numpy", "torch", "cuda"}
    best_epoch = min(records, key=lambda r: r["val"]["MSE"])["epoch"]
    assert load_checkpoint(cli_run / "best.pth")["epoch"] == best_epoch

    from PIL import Image

    grids = sorted((cli_run / "images").glob("*.png"))
    assert len(grids) == 4  # steps 3, 6, 9, 12
    from harmonize_cli.labels import band_height, font_size_for

    band = band_height(font_size_for(32))  # composite | mask | prediction | target, titled; 4 rows
    grid = np.asarray(Image.open(grids[0]).convert("RGB"))
    assert grid.shape[:2] == (band + 4 * 32, 4 * 32)
    assert all((grid[:band, 32 * i: 32 * (i + 1)].min(axis=2) < 128).any() for i in range(4))  # a title each
    assert "curves.png" in files  # no TensorBoard in this run: the curves as a picture
    assert Image.open(cli_run / "curves.png").size[0] == 3 * 420  # loss, validation MSE and fMSE
    log = (cli_run / "train.log").read_text()
    assert "epoch 3/3" in log and "Adam" in log and "backbone weights: none" in log


def test_loss_falls_over_a_few_epochs(cli_run):
    losses = [r["train_loss"] for r in read_metrics(cli_run)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_export_writes_a_reference_state_dict_that_loads_strictly(cli_run, tmp_path, capsys):
    from harmonize_cli import zoo

    out = tmp_path / "model.pth"
    assert run_cli("export", cli_run / "best.pth", "-o", out) == 0
    state = torch.load(out, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    reference = reference_layouts()["improved_ssam256"]["state_dict"]
    assert [[k, list(v.shape)] for k, v in state.items()] == [[k, shape] for k, shape, _ in reference]
    fresh = zoo.create_model("improved_ssam256", init=False)
    fresh.load_state_dict(state, strict=True)  # what the reference's model.load_state_dict does
    assert zoo.detect_arch(state) == "is2am"
    assert run_cli("export", cli_run, "-o", out) == 2  # exists: refuses without --force
    assert run_cli("export", cli_run, "-o", out, "--force") == 0


def test_an_existing_run_folder_is_never_overwritten(cli_run, mini, capsys, tmp_path):
    before = (cli_run / "last.pth").stat().st_mtime_ns
    code = run_cli("train", "--arch", "is2am", "--data", mini, "--out", cli_run, "--workers", 0)
    assert code == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and "--overwrite" in err
    assert (cli_run / "last.pth").stat().st_mtime_ns == before

    copy = tmp_path / "copy"  # --overwrite starts over: the earlier run's files are gone
    shutil.copytree(cli_run, copy)
    (copy / "notes.txt").write_text("mine")
    assert run_cli("train", "--arch", "is2am", "--data", mini, "--out", copy, "--overwrite", "--crop", 32,
                   "--batch-size", 4, "--epochs", 1, "--steps-per-epoch", 1, "--val-subsets", "none",
                   "--workers", 0, "--image-every", 0, "-q") == 0
    assert [r["epoch"] for r in read_metrics(copy)] == [1] and not (copy / "epoch_002.pth").exists()
    assert not (copy / "images").exists() and (copy / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------ every family
# (is2am trains in `cli_run`; the iDIH-based networks need 256 px inputs: depth 7)
FAMILIES = [
    ("dih", 256, 2, "bf16"),  # CPU autocast when asked for
    ("idih", 256, 2, "auto"),
    ("isedih", 256, 2, "auto"),
    ("s2am", 16, 2, "fp16"),  # fp16 autocast + GradScaler
    ("is2am-hrnet-w18s", 64, 2, "auto"),  # HRNet backbone, ImageNet weights from the cache
    pytest.param("idih-deeplab-r34", 256, 2, "auto", marks=pytest.mark.slow),  # DeepLab backbone (12 s)
]


@pytest.mark.parametrize("arch,crop,batch,amp", FAMILIES,
                         ids=[(f.values if hasattr(f, "values") else f)[0] for f in FAMILIES])
def test_every_architecture_family_trains(arch, crop, batch, amp, mini, tmp_path, isolated_home):
    from harmonize_cli import zoo

    spec = zoo.get_arch(arch)
    options = {}
    if spec.family == "is2am-hrnet":  # a stand-in ImageNet checkpoint in the cache, HRNet-classification names
        hrnet = zoo.create_model(arch).backbone.hrnet.state_dict()
        weights = zoo.get_weights(spec.backbone)
        (isolated_home / "weights").mkdir(parents=True, exist_ok=True)
        torch.save({f"model.{k}": v for k, v in hrnet.items()}, isolated_home / "weights" / weights.filename)
    elif spec.backbone:
        options["pretrained_backbone"] = False
    run = tmp_path / "run"
    result = train(TrainConfig(**{**FAST, "arch": arch, "crop": crop, "batch_size": batch, "epochs": 1,
                                  "steps_per_epoch": 1, "val_every": 0, "seed": 0, "amp": amp}, data=str(mini),
                               out=str(run),
                               **options))
    assert result.epochs_done == 1
    checkpoint = load_checkpoint(run / "last.pth")
    assert checkpoint["meta"]["arch"] == spec.name and checkpoint["metrics"][0]["steps"] == 1
    assert torch.isfinite(torch.tensor(checkpoint["metrics"][0]["train_loss"]))
    assert (checkpoint["scaler"] is not None) == (amp == "fp16")
    groups = checkpoint["optimizer"]["param_groups"]
    if spec.backbone:
        assert sorted({g["lr_mult"] for g in groups}) == [0.1, 1.0]
        assert sorted({round(g["lr"], 12) for g in groups}) == [1e-4, 1e-3]
        used = checkpoint["meta"]["backbone_weights"]
        if options:
            assert used["loaded"] == 0 and "scratch" in used["note"]
        else:
            assert used["loaded"] > 100 and used["source"].endswith(zoo.get_weights(spec.backbone).filename)
    else:
        assert [g["lr_mult"] for g in groups] == [1.0]


# ------------------------------------------------------------------------------ the trainer's own loss and optimizer
def test_the_trainer_trains_with_the_papers_loss_and_adam(mini, tmp_path):
    """What a run really uses (not only what training.step builds): FN-MSE with A_min 100 (a
    hand-computed case with a 4-pixel foreground) and Adam 0.9 / 0.999, eps 1e-8, lr 1e-3."""
    from test_train_step import fn_mse_example

    used = []

    class RecordingTrainer(Trainer):
        def _loss(self, loss_fn, prediction, target, mask):
            used.append(loss_fn)
            return super()._loss(loss_fn, prediction, target, mask)

    config = TrainConfig(**{**FAST, "epochs": 1, "steps_per_epoch": 1, "val_every": 0, "seed": 0, "data": str(mini)})
    train(config, out=str(tmp_path / "run"), trainer_cls=RecordingTrainer)
    prediction, target, mask, expected = fn_mse_example()
    assert len(used) == 1 and used[0](prediction, target, mask).item() == pytest.approx(expected, rel=1e-6)
    groups = load_checkpoint(tmp_path / "run" / "last.pth")["optimizer"]["param_groups"]
    assert [(g["lr"], tuple(g["betas"]), g["eps"], g["weight_decay"], g["amsgrad"]) for g in groups] == [
        (1e-3, (0.9, 0.999), 1e-8, 0, False)]


# ------------------------------------------------------------------------------ data order and crops
def _randperm(n, seed):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def test_the_sampler_draws_each_epochs_permutation_from_seed_plus_epoch():
    """The documented rule, written out: epoch e's order is randperm(n) of a generator seeded with
    seed + e (torch's DistributedSampler rule too; each rank takes every world_size-th index)."""
    from harmonize_cli.training import distributed

    sampler = distributed.make_sampler(10, distributed.DistEnv(), seed=5)
    for epoch in (0, 1, 3):
        sampler.set_epoch(epoch)
        assert list(sampler) == _randperm(10, 5 + epoch) and len(sampler) == 10
    assert _randperm(10, 5) != _randperm(10, 6)  # the case distinguishes the epochs
    for rank in (0, 1):
        shard = distributed.make_sampler(10, distributed.DistEnv(rank=rank, local_rank=rank, world_size=2), seed=5)
        shard.set_epoch(2)
        assert list(shard) == _randperm(10, 7)[rank::2]


def test_a_run_tells_the_sampler_each_epoch(mini, tmp_path, monkeypatch):
    """What a run really feeds: each epoch's keys are (epoch, randperm(n, seed + epoch)[i]) for the
    first steps x batch indices, so epoch 2 does not repeat epoch 1's order."""
    from harmonize_cli.training import loop

    seen, sizes = [], []
    real_loader, real_sampler = loop.epoch_loader, loop.distributed.make_sampler

    def recording_loader(seeded, keys, **options):
        seen.append(list(keys))
        return real_loader(seeded, keys, **options)

    def recording_sampler(n, env, seed):
        sizes.append(n)
        return real_sampler(n, env, seed)

    monkeypatch.setattr(loop, "epoch_loader", recording_loader)
    monkeypatch.setattr(loop.distributed, "make_sampler", recording_sampler)
    config = TrainConfig(**{**FAST, "epochs": 2, "steps_per_epoch": 1, "val_every": 0, "seed": 9,
                            "data": str(mini)})
    train(config, out=str(tmp_path / "run"))
    (n,) = sizes
    assert seen == [[(epoch, index) for index in _randperm(n, 9 + epoch)[:4]] for epoch in (0, 1)]
    assert seen[0][0][1] != seen[1][0][1] or seen[0][1][1] != seen[1][1][1]


def test_harmonize_train_crops_with_the_papers_scale_and_ratio(mini):
    """The transform a run builds (not the class default): RandomResizedCrop scale 0.5-1, ratio
    3/4-4/3, flip 0.5, at the configured crop. With the area draw at its lowest (0.5) and aspect 1
    a 64 x 64 image gives a round(sqrt(0.5 * 4096)) = 45 px square."""
    from harmonize_cli.data.transforms import RandomResizedCropFlip
    from harmonize_cli.training.model_and_data import open_datasets

    config = TrainConfig(**{**FAST, "crop": 48, "data": str(mini)}).resolved()
    train_set, _ = open_datasets(config, str(mini), with_validation=False)
    transform = train_set.transform
    assert isinstance(transform, RandomResizedCropFlip)
    assert transform.scale == (0.5, 1.0) and transform.ratio == pytest.approx((0.75, 4 / 3))
    assert transform.flip_prob == 0.5 and transform.size == (48, 48)

    class Lowest:
        def uniform(self, low, high):
            return low if low > 0 else 0.5 * (low + high)  # area fraction: the lowest; log-ratio: 0

        def randint(self, low, high):
            return low

    transform._rng = Lowest()
    try:
        assert transform.sample_box(64, 64) == (0, 0, 45, 45)
    finally:
        transform._rng = None


# ------------------------------------------------------------------------------ resume, signals, NaN
class _StopAt(Trainer):
    """Acts as if SIGTERM arrived during the given step (epoch 0-based, step 1-based)."""

    stop_at = (1, 1)

    def on_step_end(self, epoch, step):
        if (epoch, step) == self.stop_at:
            self.stop.signum = signal.SIGTERM


def test_stop_and_resume_equals_an_uninterrupted_run(mini, tmp_path):
    config = TrainConfig(**{**FAST, "epochs": 2, "steps_per_epoch": 2, "seed": 7, "deterministic": True,
                            "data": str(mini)})
    whole = train(config, out=str(tmp_path / "whole"))
    assert len(whole.metrics) == 2

    for label, stop_at in (("mid-epoch", (1, 1)), ("epoch-end", (0, 2))):
        run = tmp_path / label
        trainer = type("StopHere", (_StopAt,), {"stop_at": stop_at})
        with pytest.raises(TrainingInterrupted) as info:
            train(config, out=str(run), trainer_cls=trainer)
        assert info.value.exit_code == 128 + signal.SIGTERM
        assert f"harmonize train --resume --out {run}" in str(info.value)
        saved = load_checkpoint(run / "last.pth")
        assert (saved["epoch"], saved["step"]) == ((1, 1) if label == "mid-epoch" else (1, 0))
        resumed = train(resume=True, out=str(run))
        assert comparable(read_metrics(run)) == comparable(read_metrics(tmp_path / "whole")), label
        final, reference = load_checkpoint(run / "last.pth"), load_checkpoint(tmp_path / "whole" / "last.pth")
        assert all(torch.equal(final["model"][k], reference["model"][k]) for k in reference["model"]), label
        assert resumed.epochs_done == 2 and final["scheduler"] == reference["scheduler"]


@pytest.mark.slow  # forks data-loading workers three times: ~15 s idle, up to 50 s on a loaded machine
def test_stop_and_resume_with_loading_workers_equals_an_uninterrupted_run(mini, tmp_path):
    """Two data-loading processes: a resumed epoch starts at another sample on another worker and
    still draws the same crops."""
    config = TrainConfig(**{**FAST, "workers": 2, "epochs": 2, "steps_per_epoch": 2, "seed": 5,
                            "deterministic": True, "val_subsets": [], "data": str(mini)})
    train(config, out=str(tmp_path / "whole"))
    run = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted):
        train(config, out=str(run), trainer_cls=type("StopHere", (_StopAt,), {"stop_at": (0, 1)}))
    assert (load_checkpoint(run / "last.pth")["epoch"], load_checkpoint(run / "last.pth")["step"]) == (0, 1)
    train(resume=True, out=str(run))
    assert comparable(read_metrics(run)) == comparable(read_metrics(tmp_path / "whole"))
    final, reference = load_checkpoint(run / "last.pth"), load_checkpoint(tmp_path / "whole" / "last.pth")
    assert all(torch.equal(final["model"][k], reference["model"][k]) for k in reference["model"])


def test_resume_from_a_checkpoint_path_and_its_conflict_with_config(cli_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(cli_run, run)
    assert run_cli("train", "--resume", run / "last.pth", "--epochs", 4, "-q") == 0  # --out: the file's folder
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4]
    assert run_cli("train", "--resume", run, "--epochs", 5, "-q") == 0  # a run folder: its last.pth
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4, 5]
    assert [r["epoch"] for r in read_metrics(cli_run)] == [1, 2, 3]  # the copied run is untouched
    capsys.readouterr()

    for resume in (["--resume", run / "last.pth"], ["--resume"]):
        code = run_cli("train", "--config", run / "config.toml", "--out", run, *resume)
        assert code == 2
        assert "--config cannot be combined with --resume" in " ".join(capsys.readouterr().err.split())
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4, 5]


def test_ctrl_c_stops_with_exit_code_130_and_a_resumable_checkpoint(mini, tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C does (one data-loading worker)."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "harmonize_cli", "train", "--arch", "is2am", "--crop", 32, "--batch-size", 4,
               "--workers", 1, "--val-subsets", "none", "--image-every", 0, "--no-tensorboard", "--epochs", 500,
               "--steps-per-epoch", 1, "--data", mini, "--out", run, "--seed", 1]
    process, stderr = start_training(command, start_new_session=True)
    try:
        assert stderr.wait_for("epoch 1/500: train loss", timeout=120), stderr.text()
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 130, stderr.text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    err = " ".join(stderr.text().split())
    assert "stopped by SIGINT" in err and f"harmonize train --resume --out {run}" in err
    saved = load_checkpoint(run / "last.pth")
    assert saved["epoch"] >= 1 and saved["optimizer"] and saved["config"]["epochs"] == 500


@pytest.mark.slow
def test_sigterm_leaves_a_resumable_checkpoint(mini, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "harmonize_cli", "train", "--arch", "is2am", "--crop", 32, "--batch-size", 4,
               "--workers", 0, "--val-subsets", "none", "--image-every", 0, "--no-tensorboard", "--epochs", 500,
               "--data", mini, "--out", run, "--seed", 1]
    process, stderr = start_training(command)
    try:
        assert stderr.wait_for("epoch 1/500: train loss", timeout=120), stderr.text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM, stderr.text()
    finally:
        if process.poll() is None:
            process.kill()
    err = " ".join(stderr.text().split())
    assert "SIGTERM" in err and f"harmonize train --resume --out {run}" in err
    saved = load_checkpoint(run / "last.pth")
    assert saved["epoch"] >= 1 and saved["optimizer"] and saved["config"]["epochs"] == 500
    done = saved["epoch"] + 1
    result = train(resume=True, out=str(run), epochs=done)
    assert result.epochs_done == done and [r["epoch"] for r in read_metrics(run)] == list(range(1, done + 1))


class _NaNAfter(Trainer):
    """The loss turns NaN from the ``nan_from``-th step on (counted per run)."""

    nan_from = 3

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def _loss(self, loss_fn, prediction, target, mask):
        self.calls += 1
        loss = loss_fn(prediction, target, mask)
        return loss * float("nan") if self.calls >= self.nan_from else loss


@pytest.fixture
def tensorboard_scalars(monkeypatch):
    """A stand-in TensorBoard (it is optional); returns this test's own list of (tag, value, step)."""
    scalars = []

    class FakeSummaryWriter:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeSummaryWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    return scalars


@pytest.mark.parametrize("attempt", [1, 2])  # twice in one process: no state leaks from one run to the next
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(attempt, mini, tmp_path, tensorboard_scalars):
    run = tmp_path / "run"
    config = TrainConfig(**{**FAST, "epochs": 5, "steps_per_epoch": 2, "val_every": 0, "data": str(mini),
                            "tensorboard": True, "log_every": 1})
    with pytest.raises(TrainingError, match="NaN or infinite at epoch 2, step 1") as info:
        train(config, out=str(run), trainer_cls=_NaNAfter)
    assert "last good checkpoint" in str(info.value)
    assert info.value.hint.startswith(f"`harmonize train --resume --out {run}`")  # a last.pth exists
    assert load_checkpoint(run / "last.pth")["epoch"] == 1
    assert len(read_metrics(run)) == 1
    assert "ERROR" in (run / "train.log").read_text()
    tags = [tag for tag, _, _ in tensorboard_scalars]
    assert tags.count("train/loss") == 2 and "epoch/train_loss" in tags  # the NaN step is not logged
    assert not (run / "curves.png").exists()  # TensorBoard has the curves
    assert train(resume=True, out=str(run), epochs=2).epochs_done == 2  # the hint's command works


def test_a_nan_loss_before_any_checkpoint_suggests_a_lower_lr_and_overwrite(mini, tmp_path, capsys):
    run = tmp_path / "run"
    config = TrainConfig(**{**FAST, "epochs": 1, "steps_per_epoch": 2, "val_every": 0, "data": str(mini)})
    with pytest.raises(TrainingError, match="NaN or infinite at epoch 1, step 1") as info:
        train(config, out=str(run), trainer_cls=type("NaNAtOnce", (_NaNAfter,), {"nan_from": 1}))
    assert not (run / "last.pth").exists()
    hint = info.value.hint
    assert "--resume" not in hint and "--lr 0.0001" in hint and "--overwrite" in hint, hint
    assert run_cli("train", "--config", run / "config.toml", "--lr", "0.0001", "--overwrite", "-q") == 0  # as told
    assert load_checkpoint(run / "last.pth")["epoch"] == 1


def test_tensorboard_missing_is_said_once_at_start(mini, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` fails as if not installed
    run = tmp_path / "run"
    assert run_cli("train", "--arch", "is2am", "--crop", 32, "--batch-size", 4, "--workers", 0, "--epochs", 2,
                   "--steps-per-epoch", 1, "--val-subsets", "none", "--image-every", 0, "--data", mini,
                   "--out", run) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("TensorBoard is not installed") == 1, err
    assert "TensorBoard is not installed" in (run / "train.log").read_text() and not (run / "tb").exists()
    assert (run / "curves.png").is_file()
    # said once per machine: the next run's console is quiet about it, its train.log still says it
    again = tmp_path / "again"
    assert run_cli("train", "--arch", "is2am", "--crop", 32, "--batch-size", 4, "--workers", 0, "--epochs", 1,
                   "--steps-per-epoch", 1, "--val-subsets", "none", "--image-every", 0, "--data", mini,
                   "--out", again) == 0
    assert "TensorBoard is not installed" not in capsys.readouterr().err
    assert "TensorBoard is not installed" in (again / "train.log").read_text()


def test_workers_default_to_what_the_machine_has(monkeypatch):
    from harmonize_cli.training import config as training_config

    for cores, expected in ((1, 0), (2, 1), (3, 2), (5, 4), (64, 4)):
        monkeypatch.setattr(training_config.os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)),
                            raising=False)
        assert training_config.default_workers() == expected, cores
        assert TrainConfig().workers == expected
    help_text = " ".join(CliRunner().invoke(cli, ["train", "--help"]).output.split())
    assert "[default: min(4, CPU cores - 1)" in help_text
    assert "paper's recipe" in help_text and "reference recipe of the architecture" not in help_text


# ------------------------------------------------------------------------------ checks before training
def test_problems_fail_before_training_with_the_fix(mini, tmp_path, capsys, isolated_home):
    from harmonize_cli import settings

    out = tmp_path / "run"
    assert run_cli("train", "--arch", "is2am", "--out", out) == 2  # no dataset known yet
    assert "harmonize prepare --root" in capsys.readouterr().err and not out.exists()

    assert run_cli("train", "--arch", "is2am", "--data", tmp_path / "nowhere.h5", "--out", out) == 2
    assert "does not exist" in capsys.readouterr().err and not out.exists()

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_cli("train", "--arch", "is2am", "--data", mini, "--out", blocker / "run") == 2
    assert "cannot write" in capsys.readouterr().err

    assert run_cli("train", "--arch", "idih-hrnet-w18s", "--data", mini, "--out", out) == 2  # offline, empty cache
    err = " ".join(capsys.readouterr().err.split())
    assert "harmonize zoo download hrnetv2-w18-small-v2" in err and "--no-pretrained" in err and not out.exists()

    assert run_cli("train", "--resume") == 2
    assert "--out" in capsys.readouterr().err

    settings.remember_dataset(mini)  # what `harmonize prepare` does: later runs need no --data
    capsys.readouterr()
    assert run_cli("train", "--arch", "is2am", "--out", out, "--crop", 32, "--batch-size", 4, "--epochs", 1,
                   "--steps-per-epoch", 1, "--val-subsets", "none", "--workers", 0, "--no-tensorboard") == 0
    assert TrainConfig.load(out / "config.toml").data == str(Path(mini).resolve())
    # the header names the dataset and where that default came from (hidden state made visible)
    origin = f"the default set by `harmonize prepare` in {settings.config_path()}"
    assert f"Dataset: {Path(mini).resolve()} ({origin}" in " ".join(capsys.readouterr().err.split())
    assert f"dataset: {Path(mini).resolve()} ({origin}" in (out / "train.log").read_text()

    assert run_cli("train", "--resume", tmp_path / "no-run") == 2  # a checkpoint that does not exist: usage
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------ torchrun
@pytest.mark.slow
def test_torchrun_two_processes_write_one_set_of_outputs_and_resume_after_sigterm(mini, tmp_path):
    run = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "harmonize_cli", "train"]
    options = ["--arch", "is2am", "--crop", 32, "--batch-size", 4, "--workers", 0, "--val-subsets", "Hday2night",
               "--val-resize", "none", "--image-every", 3, "--no-tensorboard", "--seed", 0, "--data", mini,
               "--out", run]
    first, stderr = start_training(torchrun + options + ["--epochs", 100])
    try:
        assert stderr.wait_for("epoch 1/100: train loss", timeout=120), stderr.text()
        first.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
        first.wait(timeout=90)
    finally:
        if first.poll() is None:
            first.kill()
    err = stderr.text()
    assert err.count("saved a resumable checkpoint") == 1, err[-3000:]  # rank 0 alone reports and saves
    saved = load_checkpoint(run / "last.pth")
    assert saved["meta"]["world_size"] == 2 and not any(k.startswith("module.") for k in saved["model"])
    if saved["step"]:  # stopped inside an epoch: both processes' random streams are kept
        assert len(saved["rng_per_rank"]) == 2

    epochs = saved["epoch"] + 1
    done = subprocess.run([str(c) for c in torchrun + options + ["--resume", "--epochs", epochs]],
                          capture_output=True, text=True, timeout=240, env=subprocess_env())
    assert done.returncode == 0, done.stderr[-3000:]
    # the run marker, and the curves drawn because --no-tensorboard leaves no TensorBoard writer
    assert sorted(p.name for p in run.iterdir()) == [".harmonize-run.json", "best.pth", "config.toml", "curves.png",
                                                     "images", "last.pth", "metrics.jsonl", "train.log"]
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    assert all(r["samples"] == 16 and r["val"] is not None for r in records)
    assert "processes: 2" in (run / "train.log").read_text()
    assert done.stderr.count(f"epoch {epochs}/{epochs}: train loss") == 1  # rank 0 alone reports
