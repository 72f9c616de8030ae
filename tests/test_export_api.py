"""harmonize_cli.training.export.export_checkpoint: `harmonize export` as one Python call."""

from __future__ import annotations

import pytest
import torch

from harmonize_cli.errors import UsageError
from harmonize_cli.training.export import export_checkpoint


def test_a_run_folder_exports_best_else_last_as_the_plain_state_dict(idih_checkpoint, tmp_path):
    original = torch.load(idih_checkpoint, weights_only=True)
    run = tmp_path / "run"
    run.mkdir()
    training = {"model": original, "epoch": 3, "meta": {"arch": "idih", "epoch": 3}}
    torch.save(training, run / "last.pth")
    meta = export_checkpoint(run, tmp_path / "out.pth")
    assert meta["source"] == str(run / "last.pth") and meta["arch"] == "idih" and meta["epoch"] == 3
    assert meta["tensors"] == len(original)
    exported = torch.load(tmp_path / "out.pth", weights_only=True)
    assert exported.keys() == original.keys() and all(torch.equal(exported[k], original[k]) for k in original)

    torch.save({**training, "epoch": 5, "meta": {"arch": "idih", "epoch": 5}}, run / "best.pth")
    with pytest.raises(UsageError, match="already exists"):  # never replaced unless forced
        export_checkpoint(run, tmp_path / "out.pth")
    assert export_checkpoint(run, tmp_path / "out.pth", force=True)["source"] == str(run / "best.pth")


def test_nothing_to_export_and_a_foreign_output_are_refused(tmp_path, idih_checkpoint):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds neither best.pth nor last.pth"):
        export_checkpoint(tmp_path / "empty", tmp_path / "x.pth")
    notes = tmp_path / "notes.pth"
    notes.write_text("my notes")
    with pytest.raises(UsageError):
        export_checkpoint(idih_checkpoint, notes, force=True)  # --force replaces only checkpoints
    assert notes.read_text() == "my notes"
