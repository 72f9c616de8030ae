"""`harmonize eval` and the evaluation engine on generated miniature datasets."""

from __future__ import annotations

import csv
import io
import json
import re
import math
from pathlib import Path

import numpy as np
import pytest
from clitools import run_main
import torch
from PIL import Image

from harmonize_cli import zoo
from harmonize_cli.evaluation import evaluate, load_models, open_test_set
from harmonize_cli.evaluation.metrics import fg_ratio_bins
from minidata import load_manifest, make_mini_iharmony

SUBSETS = ("HCOCO", "HAdobe5k", "HFlickr", "Hday2night")


@pytest.fixture
def mini(mini_iharmony):
    return mini_iharmony


def run(argv, capsys):
    """``harmonize -q ARGV`` (``--show`` in ARGV: without -q); returns (exit code, stdout, stderr)."""
    return run_main(capsys, *(["-q", *argv] if "--show" not in argv else [a for a in argv if a != "--show"]))


# ------------------------------------------------------------------------------ independent check
def _independent_composite_metrics(root: Path):
    """MSE / fMSE / PSNR of 'the composite unchanged' straight from the files, in numpy."""
    manifest = load_manifest(root)
    per_subset, per_bin = {}, {}
    for subset in SUBSETS:
        for entry in manifest["samples"][subset]["test"]:
            folder = root / subset
            comp = np.asarray(Image.open(folder / "composite_images" / entry["composite"]).convert("RGB"), np.float64)
            real = np.asarray(Image.open(folder / "real_images" / entry["real"]).convert("RGB"), np.float64)
            mask = np.asarray(Image.open(folder / "masks" / entry["mask"]), np.float64)
            mask = (mask[:, :, 0] if mask.ndim == 3 else mask) / 255.0
            squared = (comp - real) ** 2
            mse = squared.mean()
            fmse = (mask[:, :, None] * squared).sum() / (3 * mask.sum() + 1e-6)
            psnr = 10 * math.log10(real.max() ** 2 / (mse + 1e-6))
            values = (mse, fmse, psnr)
            per_subset.setdefault(subset, []).append(values)
            ratio = int((mask > 0.5).sum()) / mask.size
            for name in fg_ratio_bins(ratio):
                per_bin.setdefault(name, []).append(values)
    per_subset["All"] = [v for subset in SUBSETS for v in per_subset[subset]]
    return ({k: np.mean(v, axis=0) for k, v in per_subset.items()},
            {k: (len(v), np.mean(v, axis=0)) for k, v in per_bin.items()})


def _check_csv_and_markdown_against_the_files(root, csv_path, markdown_path):
    """The CSV and the Markdown hold the numbers computed from the files (not merely the JSON's)."""
    expected, expected_bins = _independent_composite_metrics(root)
    rows = {(row["table"], row["group"]): row for row in csv.DictReader(io.StringIO(csv_path.read_text()))}
    for subset, (mse, fmse, psnr) in expected.items():
        row = rows[("subset", subset)]
        assert [float(row[key]) for key in ("MSE", "fMSE", "PSNR")] == pytest.approx([mse, fmse, psnr], rel=1e-5)
    markdown = markdown_path.read_text()
    for name, (count, (mse, fmse, _)) in expected_bins.items():
        row = rows[("fg_ratio", name)]
        assert int(row["N"]) == count
        assert [float(row["MSE"]), float(row["fMSE"])] == pytest.approx([mse, fmse], rel=1e-5)
        assert f"| {name} | {count} | {mse:.2f} | {fmse:.2f} |" in markdown
    mse, fmse, psnr = expected["All"]
    assert f"| All | 12 | {mse:.2f} | {fmse:.2f} | {psnr:.2f} |" in markdown


def test_composite_baseline_equals_an_independent_computation(mini, tmp_path, capsys):
    out = tmp_path / "composite.json"
    code, _, err = run(["eval", "--data", str(mini), "--model", "composite", "--resize", "none",
                        "--workers", "0", "-o", str(out), "--csv", str(tmp_path / "c.csv"),
                        "--markdown", str(tmp_path / "c.md")], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    _check_csv_and_markdown_against_the_files(mini, tmp_path / "c.csv", tmp_path / "c.md")
    assert result["model"] == "composite" and result["weights"] is None
    assert result["resize"] == "none" and result["psnr_peak"] == "target_max"
    expected, expected_bins = _independent_composite_metrics(mini)
    assert list(result["by_subset"]) == [*SUBSETS, "All"]
    for subset, (mse, fmse, psnr) in expected.items():
        row = result["by_subset"][subset]
        assert row["N"] == (3 if subset != "All" else 12)
        assert row["MSE"] == pytest.approx(mse, rel=1e-5)
        assert row["fMSE"] == pytest.approx(fmse, rel=1e-5)
        assert row["PSNR"] == pytest.approx(psnr, rel=1e-5)
    assert list(result["by_fg_ratio"]) == ["0-5%", "5-15%", "15-100%", "0-100%"]
    for name, row in result["by_fg_ratio"].items():
        count, means = expected_bins.get(name, (0, None))
        assert row["N"] == count
        if count:
            assert row["MSE"] == pytest.approx(means[0], rel=1e-5)
            assert row["fMSE"] == pytest.approx(means[1], rel=1e-5)
    assert result["by_fg_ratio"]["0-100%"]["MSE"] == pytest.approx(result["by_subset"]["All"]["MSE"])


def test_psnr_peak_255_is_offered_and_labelled(mini, tmp_path, capsys):
    out = tmp_path / "peak.json"
    code, _, err = run(["eval", "--data", str(mini), "--model", "composite", "--resize", "none",
                        "--workers", "0", "--psnr-peak", "255", "-o", str(out)], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["psnr_peak"] == 255.0
    expected, _ = _independent_composite_metrics(mini)
    assert result["by_subset"]["All"]["PSNR"] > expected["All"][2]  # 255 >= every target's maximum
    code, out_text, _ = run(["eval", "--show", "--data", str(mini), "--model", "composite", "--workers", "0",
                             "--psnr-peak", "255", "--subsets", "HFlickr"], capsys)
    assert code == 0 and "PSNR peak: fixed 255" in out_text


# --------------------------------------------------------------------------------------- engine
def test_fixed256_batches_equal_one_image_at_a_time_and_modes_are_restored(mini):
    dataset = open_test_set(mini, resize="fixed256", subsets=["HCOCO"])
    torch.manual_seed(1)
    model = zoo.create_model("idih")
    model.train()
    model.encoder.block0.eval()  # a sub-module in another mode than its parent
    batched = evaluate(model, dataset, batch_size=8, workers=2, progress=False)
    single = evaluate(model, dataset, batch_size=1, workers=0, progress=False)
    assert model.training and not model.encoder.block0.training
    assert batched.n_images == single.n_images == 3
    for one, other in zip(batched.per_image, single.per_image):
        assert (one["subset"], one["name"]) == (other["subset"], other["name"])
        for key in ("MSE", "fMSE", "PSNR"):
            assert one[key] == pytest.approx(other[key], rel=1e-4)
    summary = batched.summary()
    assert set(summary) == {"MSE", "fMSE", "PSNR"} and all(math.isfinite(v) for v in summary.values())
    assert summary["MSE"] == pytest.approx(batched.by_subset["All"]["MSE"])


def test_engine_takes_several_models_in_one_pass_and_flip_tta(mini):
    dataset = open_test_set(mini, resize="fixed256", subsets=["Hday2night"])
    composite, lab = zoo.create_model("composite"), zoo.create_model("lab-transfer")
    results = evaluate({"composite": composite, "lab": lab}, dataset, workers=0, progress=False, flip_tta=True)
    assert [r.label for r in results] == ["composite", "lab"]
    plain = evaluate(composite, dataset, workers=0, progress=False)
    # the composite is flip-equivariant: TTA changes nothing
    assert results[0].summary()["MSE"] == pytest.approx(plain.summary()["MSE"], rel=1e-6)
    assert results[1].summary()["MSE"] < results[0].summary()["MSE"]
    assert results[0].resize == "fixed256" and results[0].flip_tta


def _reference_style_loop(model, dataset, flip):
    """The reference predictor and metrics, one image at a time in H x W x C layout (as its code)."""
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    divisor = 2 ** (model.depth + 1)
    rows = []
    for index in range(len(dataset)):
        sample = dataset[index]
        image = sample["image_255"].permute(1, 2, 0).numpy()  # the resized uint8-valued composite
        target = sample["target_255"].permute(1, 2, 0).double()
        mask = sample["mask"][0].numpy()
        height, width = mask.shape
        pad_h, pad_w = (divisor - height % divisor) % divisor, (divisor - width % divisor) % divisor
        pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        image = np.pad(image, (*pads, (0, 0)))
        padded_mask = np.pad(mask, pads)
        x = (torch.from_numpy(image).permute(2, 0, 1)[None] / 255.0 - mean) / std
        m = torch.from_numpy(padded_mask)[None, None]
        if flip:
            x, m = torch.cat((x, torch.flip(x, dims=(3,)))), torch.cat((m, torch.flip(m, dims=(3,))))
        with torch.no_grad():
            out = model(x, m)
        if flip:
            out = 0.5 * (out[:1] + torch.flip(out[1:], dims=(3,)))
        out = 255 * (out * std + mean)[0].permute(1, 2, 0)
        out = out[pads[0][0]:pads[0][0] + height, pads[1][0]:pads[1][0] + width].clamp(0, 255).double()
        squared = (out - target) ** 2
        mse = squared.mean().item()
        weights = torch.from_numpy(mask).double()[:, :, None]
        fmse = ((weights * squared).sum() / (3 * weights.sum() + 1e-6)).item()
        psnr = 10 * math.log10(target.max().item() ** 2 / (mse + 1e-6))
        rows.append((sample["name"], mse, fmse, psnr))
    return rows


def test_engine_matches_a_reference_style_loop_at_native_size_with_flip(mini):
    """Native size (48 x 64, padded to 2 ** (depth + 1) = 64 and cropped back) with flip TTA."""
    from harmonize_cli.models.dih import DeepImageHarmonization

    dataset = open_test_set(mini, resize="none", subsets=["HFlickr"])
    torch.manual_seed(2)
    model = DeepImageHarmonization(depth=5, ch=16, batchnorm_from=2, image_fusion=True).eval()  # a small iDIH
    result = evaluate(model, dataset, batch_size=4, workers=0, progress=False, flip_tta=True)
    expected = _reference_style_loop(model, dataset, flip=True)
    assert [row["name"] for row in result.per_image] == [row[0] for row in expected]
    for ours, (_, mse, fmse, psnr) in zip(result.per_image, expected):
        assert ours["MSE"] == pytest.approx(mse, rel=1e-4)
        assert ours["fMSE"] == pytest.approx(fmse, rel=1e-4)
        assert ours["PSNR"] == pytest.approx(psnr, rel=1e-5)


# ------------------------------------------------------------------------------------ checkpoints
def test_reference_layout_checkpoint_is_detected_and_evaluated(mini, idih_checkpoint, tmp_path, capsys):
    out = tmp_path / "idih.json"
    code, _, err = run(["eval", "--data", str(mini), "--weights", str(idih_checkpoint), "--subsets", "HFlickr",
                        "--workers", "0", "-o", str(out)], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["model"] == "idih" and result["weights"].endswith("my_idih.pth")
    assert list(result["by_subset"]) == ["HFlickr", "All"] and result["by_subset"]["All"]["N"] == 3
    assert all(math.isfinite(result["by_subset"]["All"][k]) for k in ("MSE", "fMSE", "PSNR", "ms_per_image"))
    # the same weights through the library with --model given explicitly
    (model,) = load_models(["idih"], [str(idih_checkpoint)])
    assert model.label == "idih (my_idih.pth)" and model.name == "idih" and not model.network.training
    assert model.source == str(idih_checkpoint)


def test_model_weights_architecture_conflict_names_both(mini, idih_checkpoint, capsys):
    code, _, err = run(["eval", "--data", str(mini), "--model", "s2am", "--weights", str(idih_checkpoint)], capsys)
    assert code == 1
    assert "idih" in err and "s2am" in err


def test_unknown_model_suggests_the_closest(mini, capsys):
    code, _, err = run(["eval", "--data", str(mini), "--model", "idh"], capsys)
    assert code == 2 and "unknown model 'idh'" in err and "idih" in err


def test_unreadable_weights_are_a_clear_error(mini, tmp_path, capsys):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"this is not a checkpoint")
    code, _, err = run(["eval", "--data", str(mini), "--weights", str(broken)], capsys)
    assert code == 1 and "cannot read weights" in err and "broken.pth" in err
    code, _, err = run(["eval", "--data", str(mini), "--weights", str(tmp_path / "absent.pth")], capsys)
    assert code == 2 and "does not exist" in err  # a path that does not exist is a usage error (#24)


def test_network_without_weights_offline_says_where_to_put_them(mini, capsys):
    code, _, err = run(["eval", "--data", str(mini), "--model", "idih", "--subsets", "HFlickr"], capsys)
    assert code == 1 and "idih256" in err


# ------------------------------------------------------------------------------------- data errors
def test_data_without_a_test_split_is_a_clear_error(tmp_path, capsys):
    root = make_mini_iharmony(tmp_path / "train_only", subsets=("HFlickr",), n_train=2, n_test=1)
    (root / "HFlickr" / "HFlickr_test.txt").unlink()
    code, _, err = run(["eval", "--data", str(root), "--model", "composite"], capsys)
    assert code != 0 and re.search(r"HFlickr_test\.txt|no test images", err), err


def test_empty_subset_is_a_clear_error(tmp_path, capsys):
    root = make_mini_iharmony(tmp_path / "empty", subsets=("HCOCO", "HFlickr"), n_train=1, n_test=2)
    (root / "HFlickr" / "HFlickr_test.txt").write_text("")
    code, _, err = run(["eval", "--data", str(root), "--model", "composite", "--subsets", "HCOCO,HFlickr"], capsys)
    assert code != 0 and "HFlickr" in err and ("no test" in err or "lists no images" in err)
    code, _, err = run(["eval", "--data", str(root), "--model", "composite"], capsys)
    assert code != 0 and "HFlickr" in err


def test_requested_subset_without_test_images_is_named(mini, monkeypatch):
    from harmonize_cli.errors import UsageError
    from harmonize_cli.evaluation import check_test_set

    dataset = open_test_set(mini, subsets=["HCOCO"])
    with pytest.raises(UsageError, match="subset HFlickr .* has no test images"):
        check_test_set(dataset, mini, ["HCOCO", "HFlickr"])


def test_no_dataset_known_is_a_clear_error(capsys):
    code, _, err = run(["eval", "--model", "composite"], capsys)
    assert code == 2 and "harmonize prepare" in err


def test_unreadable_sample_is_reported_not_fatal(tmp_path, capsys):
    root = make_mini_iharmony(tmp_path / "broken", subsets=("HAdobe5k",), n_train=1, n_test=2, pitfalls=True)
    out = tmp_path / "r.json"
    code, _, err = run(["eval", "--show", "--data", str(root), "--model", "composite", "--workers", "0",
                        "-o", str(out)], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["by_subset"]["All"]["N"] == 2
    assert [s["name"] for s in result["skipped"]] == ["a7777_1_1.jpg"] and "a7777" in err


# ----------------------------------------------------------------------------- outputs and tables
def test_json_markdown_csv_and_predictions(mini, tmp_path, capsys):
    files = {"json": tmp_path / "r.json", "md": tmp_path / "r.md", "csv": tmp_path / "r.csv"}
    preds = tmp_path / "preds"
    code, out_text, err = run(["eval", "--show", "--data", str(mini), "--model", "composite", "--workers", "0",
                               "--subsets", "HCOCO,Hday2night", "-o", str(files["json"]),
                               "--markdown", str(files["md"]), "--csv", str(files["csv"]),
                               "--save-predictions", str(preds), "--with-published"], capsys)
    assert code == 0, err
    assert "per subset" in out_text and "per foreground ratio" in out_text
    assert "Composite [iHarmony4]" in out_text and "69.37" in out_text  # published beside ours
    result = json.loads(files["json"].read_text())
    assert {"model", "weights", "resize", "psnr_peak", "by_subset", "by_fg_ratio"} <= set(result)
    assert set(result["by_subset"]["HCOCO"]) == {"N", "MSE", "fMSE", "PSNR", "ms_per_image"}
    assert set(result["by_fg_ratio"]) == {"0-5%", "5-15%", "15-100%", "0-100%"}
    assert result["published"][0]["by_subset"]["All"]["MSE"] == 172.47
    markdown = files["md"].read_text()
    assert "| subset | N | MSE | fMSE | PSNR | ms/img |" in markdown and "| All | 6 |" in markdown
    assert "fixed256" in markdown and "PSNR peak" in markdown
    rows = list(csv.DictReader(io.StringIO(files["csv"].read_text())))
    measured = [row for row in rows if row["source"] == "measured"]
    assert len(measured) == 3 + 4  # HCOCO, Hday2night, All + four ranges
    all_row = next(row for row in measured if row["table"] == "subset" and row["group"] == "All")
    assert float(all_row["MSE"]) == pytest.approx(result["by_subset"]["All"]["MSE"], rel=1e-5)
    assert any(row["source"] != "measured" and row["group"] == "HCOCO" for row in rows)
    saved = sorted(p.relative_to(preds).as_posix() for p in preds.rglob("*.png"))
    assert len(saved) == 6 and saved[0].startswith("HCOCO/")
    assert Image.open(preds / saved[0]).size == (256, 256)


def test_several_models_make_one_comparison_table(mini, idih_checkpoint, tmp_path, capsys):
    out = tmp_path / "multi.json"
    code, out_text, err = run(["eval", "--show", "--data", str(mini), "--model", "composite",
                               "--model", "lab-transfer", "--weights", str(idih_checkpoint),
                               "--subsets", "Hday2night", "--workers", "0", "-o", str(out),
                               "--markdown", str(tmp_path / "multi.md")], capsys)
    assert code == 0, err
    assert "MSE / PSNR per subset" in out_text and "MSE / fMSE per foreground ratio" in out_text
    for name in ("composite", "lab-transfer", "idih (my_idih.pth)"):
        assert name in out_text
    results = json.loads(out.read_text())
    assert [r["model"] for r in results] == ["composite", "lab-transfer", "idih"]
    assert len({r["by_subset"]["All"]["MSE"] for r in results}) == 3
    markdown = (tmp_path / "multi.md").read_text()
    assert "| model | Hday2night | All | fMSE All |" in markdown
    assert markdown.count("idih (my_idih.pth)") >= 2


def test_json_on_stdout(mini, capsys):
    code, out_text, err = run(["eval", "--show", "--data", str(mini), "--model", "composite", "--workers", "0",
                               "--subsets", "HFlickr", "-o", "-"], capsys)
    assert code == 0, err
    assert json.loads(out_text)["by_subset"]["All"]["N"] == 3


def test_all_is_the_mean_over_images_not_over_subsets(mini, tmp_path, capsys):
    """With subsets of different sizes the two differ: the reference averages over every image."""
    import shutil

    root = tmp_path / "uneven"
    shutil.copytree(mini, root)
    manifest = load_manifest(root)
    kept = manifest["samples"]["HFlickr"]["test"][:1]
    manifest["samples"]["HFlickr"]["test"] = kept
    (root / "minidata.json").write_text(json.dumps(manifest))
    (root / "HFlickr" / "HFlickr_test.txt").write_text("".join(entry["composite"] + "\n" for entry in kept))
    out = tmp_path / "uneven.json"
    code, _, err = run(["eval", "--data", str(root), "--model", "composite", "--resize", "none",
                        "--workers", "0", "-o", str(out)], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    expected, _ = _independent_composite_metrics(root)
    assert result["by_subset"]["HFlickr"]["N"] == 1 and result["by_subset"]["All"]["N"] == 10
    assert result["by_subset"]["All"]["MSE"] == pytest.approx(expected["All"][0], rel=1e-5)
    mean_of_means = np.mean([result["by_subset"][subset]["MSE"] for subset in SUBSETS])
    assert abs(mean_of_means - expected["All"][0]) > 1e-3 * expected["All"][0]  # the case distinguishes them


# ------------------------------------------------------------------ the header names the dataset
def test_the_header_names_the_dataset_and_where_the_choice_came_from(mini, capsys, monkeypatch):
    """`prepare` makes its file the default silently for later commands: eval's header says which
    file it evaluates and why (the settings file `prepare` wrote, $HARMONIZE_DATA or --data)."""
    from harmonize_cli import settings

    settings.remember_dataset(mini)
    argv = ["eval", "--model", "composite", "--subsets", "Hday2night", "--show"]
    code, _, err = run(argv, capsys)
    line = " ".join(err.split())
    assert code == 0, err
    assert f"Dataset: {Path(mini).resolve()} (the default set by `harmonize prepare` in {settings.config_path()}" in line
    monkeypatch.setenv("HARMONIZE_DATA", str(mini))
    code, _, err = run(argv, capsys)
    assert code == 0 and f"Dataset: {mini} ($HARMONIZE_DATA)" in " ".join(err.split())
    code, _, err = run(argv + ["--data", str(mini)], capsys)
    assert code == 0 and f"Dataset: {mini} (--data)" in " ".join(err.split())
