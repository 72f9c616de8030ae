"""`harmonize train --init`: fine-tuning starts from exactly the given weights (#15)."""

from __future__ import annotations

import json

import pytest
import torch

from harmonize_cli import zoo
from harmonize_cli.training import TrainConfig, train
from harmonize_cli.training.checkpoint import load_checkpoint
from harmonize_cli.training.loop import Trainer
from harmonize_cli.training.losses import fn_mse

FAST = {"crop": 64, "batch_size": 2, "workers": 0, "val_resize": "none", "val_subsets": ["Hday2night"],
        "image_every": 0, "tensorboard": False, "val_every": 0, "seed": 0, "epochs": 1, "steps_per_epoch": 1}


@pytest.fixture(scope="module")
def is2am_checkpoint(tmp_path_factory):
    torch.manual_seed(11)
    path = tmp_path_factory.mktemp("init") / "released_like.pth"
    torch.save(zoo.create_model("is2am").state_dict(), path)  # the reference (plain state dict) layout
    return path


def test_init_continues_from_exactly_those_weights(is2am_checkpoint, mini_iharmony, tmp_path):
    seen = {}

    class Recording(Trainer):
        def _build(self, device, verdict):
            parts = super()._build(device, verdict)
            seen["start"] = {k: v.clone() for k, v in parts.model.state_dict().items()}

            def first_call(module, inputs, output):
                if "inputs" not in seen:
                    seen["inputs"] = [t.detach().clone() for t in inputs]
                    seen["output"] = output.detach().clone()

            parts.model.register_forward_hook(first_call)
            return parts

        def _loss(self, loss_fn, prediction, target, mask):
            loss = super()._loss(loss_fn, prediction, target, mask)
            seen.setdefault("loss", (loss.item(), target.detach().clone(), mask.detach().clone()))
            return loss

    config = TrainConfig(init=str(is2am_checkpoint), data=str(mini_iharmony), **FAST)
    result = train(config, out=str(tmp_path / "run"), trainer_cls=Recording)
    released = torch.load(is2am_checkpoint, weights_only=True)
    assert set(seen["start"]) == set(released)
    assert all(torch.equal(seen["start"][k], released[k]) for k in released)
    # the first step's loss is the loss of the loaded model on the same batch
    loaded = zoo.create_model("is2am", weights=str(is2am_checkpoint)).train()
    with torch.no_grad():
        output = loaded(*seen["inputs"])
    assert torch.allclose(output, seen["output"], atol=1e-6)
    saved = TrainConfig.load(result.run_dir / "config.toml")
    first_loss, target, mask = seen["loss"]
    assert fn_mse(output, target, mask, min_area=saved.min_area).item() == pytest.approx(first_loss, rel=1e-6)
    # the run records where it started, and fine-tuning defaults apply
    meta = load_checkpoint(result.run_dir / "last.pth")["meta"]
    assert meta["arch"] == "is2am"  # taken from the checkpoint: no --arch given
    assert meta["init"]["path"] == str(is2am_checkpoint)
    import hashlib

    assert meta["init"]["sha256"] == hashlib.sha256(is2am_checkpoint.read_bytes()).hexdigest()
    assert (saved.init, saved.lr, saved.milestones) == (str(is2am_checkpoint), 1e-4, [15])
    assert "fine-tuning from" in (result.run_dir / "train.log").read_text()


def test_fine_tune_defaults_are_overridable():
    config = TrainConfig(arch="is2am", init="x.pth", epochs=3, lr=5e-5, milestones=[2]).resolved()
    assert (config.epochs, config.lr, config.milestones) == (3, 5e-5, [2])
    plain = TrainConfig(arch="is2am").resolved()
    assert (plain.epochs, plain.lr, plain.milestones) == (180, 1e-3, [160, 175])


def test_a_mismatched_architecture_is_one_line(is2am_checkpoint, mini_iharmony, tmp_path, run_cli):
    code, _, err = run_cli("train", "--init", is2am_checkpoint, "--arch", "idih", "--data", mini_iharmony,
                           "--out", tmp_path / "run", "--epochs", "1")
    assert code == 1 and "is a checkpoint of is2am" in err and "idih" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_init_refuses_an_unsafe_checkpoint(tmp_path, mini_iharmony, run_cli, idih_checkpoint):
    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "RAN"), "w"))

    state = dict(torch.load(idih_checkpoint, weights_only=True))
    state["x"] = Payload()
    evil = tmp_path / "evil.pth"
    torch.save(state, evil)
    code, _, err = run_cli("train", "--init", evil, "--data", mini_iharmony, "--out", tmp_path / "run")
    assert code == 1 and "refused" in err and not (tmp_path / "RAN").exists()
    assert json.dumps(err)  # one readable line
