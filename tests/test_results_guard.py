"""A result is finite and readable before it is reported done (issue 22, items 10-12).

- a written image reads back (format, size) before it replaces its target: CMYK and float
  TIFFs used to come out unreadable with exit 0, their own TIFF directory written back as EXIF;
- a network output with NaN or inf values is an error naming the weights, not a black result;
- eval with no readable test image fails (exit 1) instead of printing N=0 tables;
- a PSNR peak that is not a positive finite number is refused before any work.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from test_apply import box_mask, photo, save_pair


def _reads_back(path):
    with Image.open(path) as image:
        image.load()
        return image.mode, image.size


def _cmyk_and_float_tiffs(folder):
    rgb = photo()
    cmyk = Image.fromarray(rgb).convert("CMYK")
    cmyk_tags = {271: "ACME", 272: "Camera 1"}  # Make, Model: real metadata, to be kept
    save_pair(folder, "cmyk.tif", image=cmyk, tiffinfo=cmyk_tags)
    gray = rgb[..., 1].astype(np.float32) / 255.0
    save_pair(folder, "float.tif", image=Image.fromarray(gray, "F"))


def test_cmyk_and_float_tiffs_come_out_readable(tmp_path, run_cli):
    _cmyk_and_float_tiffs(tmp_path)
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--model", "lab-transfer")
    assert code == 0, err
    assert _reads_back(tmp_path / "out" / "cmyk.tif") == ("RGB", (56, 40))
    assert _reads_back(tmp_path / "out" / "float.tif") == ("L", (56, 40))
    with Image.open(tmp_path / "out" / "cmyk.tif") as image:  # the TIFF's descriptive tags are kept as EXIF
        assert image.getexif().get(272) == "Camera 1"
    # outside the mask the pixels are the input's, converted to RGB as Pillow does
    expected = np.asarray(Image.open(tmp_path / "c" / "cmyk.tif").convert("RGB"))
    result = np.asarray(Image.open(tmp_path / "out" / "cmyk.tif"))
    outside = box_mask() == 0
    assert np.array_equal(result[outside], expected[outside])


def test_paste_onto_a_cmyk_tiff_comes_out_readable(tmp_path, run_cli):
    Image.fromarray(photo()).convert("CMYK").save(tmp_path / "bg.tif")
    cutout = np.zeros((12, 12, 4), np.uint8)
    cutout[..., 0], cutout[2:10, 2:10, 3] = 200, 255
    Image.fromarray(cutout, "RGBA").save(tmp_path / "obj.png")
    code, _, err = run_cli("paste", tmp_path / "obj.png", tmp_path / "bg.tif", "-o", tmp_path / "r.tif",
                           "--model", "lab-transfer", "--at", "20,20")
    assert code == 0, err
    assert _reads_back(tmp_path / "r.tif") == ("RGB", (56, 40))


def test_a_result_that_does_not_read_back_is_failed_and_not_written(tmp_path, run_cli, monkeypatch):
    """The guard itself: whatever an encoder produced, an unreadable file is never reported done."""
    from harmonize_cli.apply import imageio

    save_pair(tmp_path, "a.png")
    save_pair(tmp_path, "b.png")
    real_encode = imageio.encode_image

    def encode(rgb, *args, **kwargs):
        data = real_encode(rgb, *args, **kwargs)
        height = np.asarray(rgb).shape[0]  # an array, or apply's Pillow image
        return data[:40] if height == 40 else data  # the results are cut short; nothing else

    monkeypatch.setattr(imageio, "encode_image", encode)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "b.png").write_bytes(b"an earlier result")
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", out, "--model", "lab-transfer",
                           "--overwrite")
    assert code == 1
    assert "does not read back" in err and "a.png" in err
    assert not (out / "a.png").exists()
    assert (out / "b.png").read_bytes() == b"an earlier result"  # not replaced by a broken one
    statuses = {entry["composite"].rsplit("/", 1)[-1]: entry["status"] for entry in json.loads(
        (out / "harmonize.json").read_text())["files"]}
    assert statuses == {"a.png": "failed", "b.png": "failed"}
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_check_image_file_reads_the_header_only(tmp_path):
    from harmonize_cli.readback import UnreadableOutputError, check_image_file

    path = tmp_path / "x.png"
    Image.fromarray(photo()).save(path)
    check_image_file(path, (56, 40), "PNG")
    with pytest.raises(UnreadableOutputError, match="reads back as 56x40, not 40x56"):
        check_image_file(path, (40, 56), "PNG")
    with pytest.raises(UnreadableOutputError, match="reads back as PNG, not JPEG"):
        check_image_file(path, (56, 40), "JPEG")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(UnreadableOutputError, match="does not read back"):
        check_image_file(path, (56, 40), "PNG")


# ------------------------------------------------------------------------ non-finite network outputs
@pytest.fixture
def overflowing_weights(tmp_path):
    """An iDIH checkpoint whose finite weights (x 1e38) overflow to inf/NaN at run time."""
    from harmonize_cli import zoo

    torch.manual_seed(0)
    state = zoo.create_model("idih").state_dict()
    path = tmp_path / "overflow.pth"
    torch.save({k: v * 1e38 if v.is_floating_point() and k.endswith("weight") else v for k, v in state.items()}, path)
    return path


def test_an_overflowing_network_is_an_error_naming_the_weights(tmp_path, run_cli, overflowing_weights):
    composite, mask = save_pair(tmp_path, "a.png")
    code, _, err = run_cli("apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out",
                           "--weights", overflowing_weights)
    assert code == 1
    assert "NaN or infinite" in err and "overflow.pth" in err
    assert not (tmp_path / "out" / "a.png").exists()
    assert json.loads((tmp_path / "out" / "harmonize.json").read_text())["files"][0]["status"] == "failed"


def test_predict_refuses_a_nan_output_from_any_network():
    from harmonize_cli.inference import NonFiniteOutputError, predict

    class Broken(torch.nn.Module):
        def forward(self, image, mask):
            out = image.clone()
            out[0, 0, 0, 0] = float("nan")
            return out

    image, mask = torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8)
    with pytest.raises(NonFiniteOutputError, match="1 NaN or infinite value.*the weights w.pth"):
        predict(Broken(), image, mask, weights="w.pth")
    class Fine(torch.nn.Module):
        def forward(self, image, mask):
            return image
    out = predict(Fine(), image, mask)  # identity network: the input back, in pixel units
    assert torch.allclose(out, image, atol=1e-6)


def test_eval_of_an_overflowing_network_fails(mini_iharmony, run_cli, overflowing_weights):
    code, out, err = run_cli("eval", "--data", mini_iharmony, "--weights", overflowing_weights, "--workers", "0",
                             "--subsets", "HCOCO")
    assert code == 1 and "NaN or infinite" in err and "overflow.pth" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------ eval
def test_eval_with_no_readable_test_image_fails(tmp_path, run_cli):
    from minidata import make_mini_iharmony

    root = make_mini_iharmony(tmp_path / "ds", subsets=("HFlickr",), n_train=1, n_test=2)
    for name in (root / "HFlickr" / "HFlickr_test.txt").read_text().split():
        (root / "HFlickr" / "composite_images" / name).write_bytes(b"not an image")
    report = tmp_path / "r.json"
    code, out, err = run_cli("eval", "--data", root, "--model", "composite", "--workers", "0", "-o", report)
    assert code == 1
    assert "none of the 2 test image(s) could be read" in err
    assert not report.exists()


@pytest.mark.parametrize("peak", ["nan", "inf", "-inf", "0", "-3"])
def test_a_psnr_peak_that_is_not_positive_and_finite_is_a_usage_error(peak, run_cli):
    code, _, err = run_cli("eval", "--model", "composite", "--psnr-peak", peak)
    assert code == 2 and "--psnr-peak" in err


def test_evaluate_refuses_a_nan_peak(mini_iharmony):
    from harmonize_cli.errors import UsageError
    from harmonize_cli.evaluation import evaluate

    with pytest.raises(UsageError, match="positive finite"):
        evaluate(torch.nn.Identity(), mini_iharmony, psnr_peak=float("nan"))
