"""`harmonize apply`: formats, modes, EXIF, pairing problems, skip/overwrite, safety, exit codes,
the JSON report and the README's main job on examples/."""

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from clitools import run_main as run
from PIL import Image

from harmonize_cli.apply.imageio import read_image, write_image
from harmonize_cli.apply.maskio import read_mask

ROOT = Path(__file__).resolve().parents[1]


def photo(height=40, width=56, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 - 0.3 * xx], axis=2)
    return (np.clip(base + 0.05 * rng.standard_normal((height, width, 3)), 0, 1) * 255).astype(np.uint8)


def box_mask(height=40, width=56):
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4: 3 * height // 4, width // 3: 2 * width // 3] = 255
    return mask


def save_pair(folder, name, image=None, mask=None, mask_name=None, **save_options):
    image = photo() if image is None else image
    if mask is None:
        height, width = (image.size[1], image.size[0]) if isinstance(image, Image.Image) else image.shape[:2]
        mask = box_mask(height, width)
    (folder / "c").mkdir(parents=True, exist_ok=True)
    (folder / "m").mkdir(parents=True, exist_ok=True)
    composite_path = folder / "c" / name
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(composite_path, **save_options)
    mask_path = folder / "m" / (mask_name or Path(name).stem + ".png")
    (mask if isinstance(mask, Image.Image) else Image.fromarray(mask)).save(mask_path)
    return composite_path, mask_path


def png16_rgb(path, array):
    """Write a 16-bit RGB PNG by hand (Pillow cannot write one)."""
    height, width, _ = array.shape
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def report(out):
    return json.loads((out / "harmonize.json").read_text())


def files(out):
    return {entry["composite"].split("/")[-1]: entry for entry in report(out)["files"]}


def test_readme_main_job_on_examples_offline_without_weights(tmp_path, capsys):
    out = tmp_path / "harmonized"
    code, _, err = run(capsys, "apply", ROOT / "examples" / "composites", ROOT / "examples" / "masks", "-o", out)
    assert code == 0, err
    composites = sorted((ROOT / "examples" / "composites").iterdir())
    assert len(composites) >= 4
    for composite in composites:
        result = out / composite.name
        assert result.is_file()
        assert Image.open(result).size == Image.open(composite).size
    notice = [line for line in err.splitlines() if "Using the training-free boundary-gain" in line]
    assert len(notice) == 1 and "harmonize zoo download" in notice[0]
    assert "harmonized by the training-free boundary-gain fallback" in err.splitlines()[-1]
    data = report(out)
    assert data["model"] == "boundary-gain" and data["summary"]["done"] == len(composites)
    assert data["fallback"] == "boundary-gain"
    assert {entry["rule"] for entry in data["files"]} == {"same stem", "iHarmony4 name", "<stem>_mask"}


@pytest.mark.parametrize("name,options", [
    ("a.jpg", {"quality": 95}), ("b.png", {}), ("c.webp", {"lossless": True}), ("d.bmp", {}), ("e.tif", {}),
])
def test_each_input_format_keeps_its_format_and_size(tmp_path, capsys, name, options):
    composite, _ = save_pair(tmp_path, name, **options)
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out")
    assert code == 0, err
    result = Image.open(tmp_path / "out" / name)
    assert result.format == Image.open(composite).format and result.size == (56, 40)


def test_lossless_outputs_keep_the_background_bit_exact(tmp_path, capsys, idih_checkpoint):
    image = photo(45, 61)
    mask = box_mask(45, 61)
    mask[0, 0] = 0
    save_pair(tmp_path, "x.png", image, mask)
    for resolution in ("auto", "fixed", "native"):
        out = tmp_path / resolution
        code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", out, "--weights", idih_checkpoint,
                           "--resolution", resolution)
        assert code == 0, err
        result = np.asarray(Image.open(out / "x.png"))
        assert result.shape == image.shape
        assert np.array_equal(result[mask == 0], image[mask == 0])
    code, _, _ = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "webp", "--ext", "webp",
                     "--quality", "100")
    assert code == 0
    result = np.asarray(Image.open(tmp_path / "webp" / "x.webp").convert("RGB"))
    assert np.array_equal(result[mask == 0], image[mask == 0])


def test_weights_alone_detect_architecture_and_report_sha256(tmp_path, capsys, idih_checkpoint):
    save_pair(tmp_path, "x.jpg")
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out",
                       "--weights", idih_checkpoint, "--batch-size", "2", "--flip-tta")
    assert code == 0, err
    data = report(tmp_path / "out")
    assert data["model"] == "idih" and data["weights"] == str(idih_checkpoint)
    assert data["weights_sha256"] == hashlib.sha256(idih_checkpoint.read_bytes()).hexdigest()
    assert data["options"]["flip_tta"] is True and data["options"]["batch_size"] == 2
    assert "training-free" not in err and data["fallback"] is None


def test_modes_gray_palette_rgba_cmyk_and_16_bit(tmp_path, capsys):
    image = photo()
    mask = box_mask()
    save_pair(tmp_path, "gray.png", Image.fromarray(image).convert("L"))
    save_pair(tmp_path, "palette.png", Image.fromarray(image).convert("P"))
    rgba = np.concatenate([image, np.full((40, 56, 1), 128, np.uint8)], axis=2)
    save_pair(tmp_path, "alpha.png", Image.fromarray(rgba, "RGBA"))
    save_pair(tmp_path, "alphaw.webp", Image.fromarray(rgba, "RGBA"), lossless=True)
    save_pair(tmp_path, "cmyk.jpg", Image.fromarray(image).convert("CMYK"))
    save_pair(tmp_path, "gray16.png", Image.fromarray(image[..., 0].astype(np.uint16) * 257))
    png16_rgb(tmp_path / "c" / "rgb16.png", image.astype(np.uint16) * 257)
    Image.fromarray(mask).save(tmp_path / "m" / "rgb16.png")
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out")
    assert code == 0, err
    out = tmp_path / "out"
    gray = Image.open(out / "gray.png")
    assert gray.mode == "L"
    assert np.array_equal(np.asarray(gray)[mask == 0], np.asarray(Image.fromarray(image).convert("L"))[mask == 0])
    for name in ("alpha.png", "alphaw.webp"):
        result = Image.open(out / name)
        assert result.mode == "RGBA" and (np.asarray(result)[..., 3] == 128).all()
    sixteen = np.asarray(Image.open(out / "gray16.png"))
    assert np.array_equal(sixteen[mask == 0], image[..., 0][mask == 0])
    rgb16 = np.asarray(Image.open(out / "rgb16.png"))
    assert np.array_equal(rgb16[mask == 0], image[mask == 0])
    assert Image.open(out / "cmyk.jpg").size == (56, 40)
    assert Image.open(out / "palette.png").size == (56, 40)


def test_alpha_is_dropped_with_a_note_for_jpeg(tmp_path, capsys):
    rgba = np.concatenate([photo(), np.full((40, 56, 1), 200, np.uint8)], axis=2)
    save_pair(tmp_path, "a.png", Image.fromarray(rgba, "RGBA"))
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--ext", "jpg")
    assert code == 0
    assert Image.open(tmp_path / "out" / "a.jpg").mode == "RGB"
    assert "alpha channel dropped" in files(tmp_path / "out")["a.png"]["notes"][0]


@pytest.mark.parametrize("kind", ["L", "RGB", "RGBA", "01", "soft"])
def test_mask_modes(tmp_path, capsys, kind):
    image = photo()
    binary = box_mask() > 0
    masks = {
        "L": Image.fromarray(box_mask()),
        "RGB": Image.fromarray(np.stack([box_mask(), np.zeros((40, 56), np.uint8), np.full((40, 56), 255, np.uint8)],
                                        axis=2)),
        "RGBA": Image.fromarray(np.stack([np.full((40, 56), 255, np.uint8)] * 3 + [box_mask()], axis=2), "RGBA"),
        "01": Image.fromarray(binary.astype(np.uint8)),
        "soft": Image.fromarray((binary * 128).astype(np.uint8)),
    }
    save_pair(tmp_path, "x.png", image, masks[kind])
    assert np.array_equal(read_mask(tmp_path / "m" / "x.png") > 0, binary)
    # lab-transfer changes every masked pixel (the default fallback leaves an unaltered photo be)
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--model", "lab-transfer")
    assert code == 0, err
    result = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert np.array_equal(result[~binary], image[~binary])
    assert not np.array_equal(result[binary], image[binary])


def test_exif_orientation_is_applied(tmp_path, capsys):
    stored = photo(40, 56)  # stored landscape, displayed portrait (orientation 6: rotate 90 degrees)
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x013B] = "A. Photographer"  # Artist: metadata is carried over
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    (tmp_path / "c").mkdir()
    (tmp_path / "m").mkdir()
    Image.fromarray(stored).save(tmp_path / "c" / "rot.jpg", exif=exif, quality=95, icc_profile=icc)
    upright = read_image(tmp_path / "c" / "rot.jpg")
    assert upright.size == (40, 56)
    Image.fromarray(box_mask(56, 40)).save(tmp_path / "m" / "rot.png")
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out")
    assert code == 0, err
    result = Image.open(tmp_path / "out" / "rot.jpg")
    assert result.size == (40, 56) and result.getexif().get(0x0112) in (None, 1)
    assert result.getexif().get(0x013B) == "A. Photographer" and result.info.get("icc_profile") == icc


def test_problems_are_reported_and_the_rest_is_done(tmp_path, capsys):
    save_pair(tmp_path, "good.png")
    save_pair(tmp_path, "small_mask.png", mask=box_mask(30, 56))
    (tmp_path / "c" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    Image.fromarray(box_mask()).save(tmp_path / "m" / "corrupt.png")
    Image.fromarray(photo()).save(tmp_path / "c" / "lonely.png")
    save_pair(tmp_path, "badmask.png")
    (tmp_path / "m" / "badmask.png").write_bytes(b"garbage")
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out")
    assert code == 1
    entries = files(tmp_path / "out")
    assert entries["good.png"]["status"] == "done" and (tmp_path / "out" / "good.png").is_file()
    assert entries["small_mask.png"]["status"] == "failed" and "mask is 56x30" in entries["small_mask.png"]["reason"]
    assert entries["corrupt.jpg"]["status"] == "failed" and "corrupt.jpg" in entries["corrupt.jpg"]["reason"]
    assert entries["lonely.png"]["status"] == "failed" and "no mask found" in entries["lonely.png"]["reason"]
    assert entries["badmask.png"]["status"] == "failed"
    for name in ("small_mask.png", "corrupt.jpg", "lonely.png", "badmask.png"):
        assert f"failed {tmp_path / 'c' / name}" in err
        assert not (tmp_path / "out" / name).exists()
    assert "4 of 5 composites failed" in err


def test_skip_then_overwrite(tmp_path, capsys):
    save_pair(tmp_path, "x.png")
    out = tmp_path / "out"
    assert run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", out)[0] == 0
    (out / "x.png").write_bytes(b"the user's own file")  # must survive a run without --overwrite
    stamp = (out / "x.png").stat().st_mtime_ns
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", out)
    assert code == 0 and "skipped" in err
    assert files(out)["x.png"]["status"] == "skipped" and (out / "x.png").stat().st_mtime_ns == stamp
    code, _, _ = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", out, "--overwrite")
    assert code == 0 and files(out)["x.png"]["status"] == "done"
    assert (out / "x.png").read_bytes() != b"the user's own file" and Image.open(out / "x.png").size == (56, 40)


def test_refuses_to_overwrite_inputs(tmp_path, capsys):
    composite, mask = save_pair(tmp_path, "x.png")
    before = composite.read_bytes()
    assert run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "c")[0] == 2
    assert run(capsys, "apply", composite, mask, "-o", tmp_path / "c")[0] == 2
    assert run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "m", "--ext", "jpg")[0] == 2
    assert composite.read_bytes() == before and sorted(p.name for p in (tmp_path / "c").iterdir()) == ["x.png"]


def test_usage_errors_exit_2(tmp_path, capsys):
    save_pair(tmp_path, "x.png")
    code, _, err = run(capsys, "apply", tmp_path / "nothing", tmp_path / "m", "-o", tmp_path / "out")
    assert code == 2 and "Error:" in err
    assert run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--resolution", "huge")[0] == 2
    assert run(capsys, "apply", tmp_path / "c", tmp_path / "m")[0] == 2  # -o is required
    (tmp_path / "empty").mkdir()
    assert run(capsys, "apply", tmp_path / "empty", tmp_path / "m", "-o", tmp_path / "out")[0] == 2
    assert run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--model", "nope")[0] == 2


def test_report_structure(tmp_path, capsys):
    save_pair(tmp_path, "x.png")
    code, _, _ = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--quality", "80")
    assert code == 0
    data = report(tmp_path / "out")
    for key in ("model", "weights", "weights_sha256", "device", "options", "summary", "files", "harmonize_version"):
        assert key in data
    assert data["options"]["quality"] == 80 and data["options"]["resolution"] == "auto"
    (entry,) = data["files"]
    assert entry["status"] == "done" and entry["seconds"] > 0 and entry["mask"].endswith("x.png")
    assert entry["output"].endswith("out/x.png")
    assert data["summary"] == {**data["summary"], "done": 1, "failed": 0, "skipped": 0, "total": 1}


def test_recursive_ext_and_comparison(tmp_path, capsys):
    save_pair(tmp_path, "top.jpg")
    (tmp_path / "c" / "sub").mkdir()
    (tmp_path / "m" / "sub").mkdir()
    Image.fromarray(photo(24, 30)).save(tmp_path / "c" / "sub" / "inner.jpg")
    Image.fromarray(box_mask(24, 30)).save(tmp_path / "m" / "sub" / "inner_mask.png")
    out = tmp_path / "out"
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", out, "--recursive", "--ext", "png",
                       "--comparison")
    assert code == 0, err
    assert Image.open(out / "top.png").format == "PNG"
    assert Image.open(out / "sub" / "inner.png").size == (30, 24)
    assert Image.open(out / "comparison" / "sub" / "inner.jpg").size[0] > 2 * 30
    code, _, _ = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "flat")
    assert code == 0 and not (tmp_path / "flat" / "sub").exists()


def test_single_file_inputs_and_quiet(tmp_path, capsys):
    composite, mask = save_pair(tmp_path, "one.jpg")
    code, out_text, err = run(capsys, "-q", "apply", composite, mask, "-o", tmp_path / "out", "--ext", "webp")
    assert code == 0 and out_text == "" and err == ""
    assert Image.open(tmp_path / "out" / "one.webp").format == "WEBP"


def test_ctrl_c_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    for index in range(3):
        save_pair(tmp_path, f"x{index}.png")
    from harmonize_cli.apply.harmonizer import Harmonizer

    original = Harmonizer.predict
    calls = {"n": 0}

    def interrupt_second_batch(self, jobs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, jobs)

    monkeypatch.setattr(Harmonizer, "predict", interrupt_second_batch)
    code, _, _ = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out", "--batch-size", "1",
                     "--workers", "1")
    assert code == 130
    leftovers = [p.name for p in (tmp_path / "out").iterdir()]
    assert not [name for name in leftovers if name.endswith(".part")]
    statuses = {entry["status"] for entry in report(tmp_path / "out")["files"]}
    assert "interrupted" in statuses and report(tmp_path / "out")["summary"]["stopped"] is True
    for name in leftovers:
        if name.endswith(".png"):
            assert Image.open(tmp_path / "out" / name).size == (56, 40)  # complete files only


def test_atomic_write_on_interrupt(tmp_path, monkeypatch):
    import harmonize_cli.atomic as atomic

    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "x.png", photo())
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ -o habits and mask naming
@pytest.mark.parametrize("target", ["x.gif", "-", "result.jpg2"])
def test_an_output_that_is_no_image_file_is_refused_before_any_work(tmp_path, capsys, monkeypatch, target):
    """For one composite file, `-o x.gif` (a format harmonize does not write) and `-o -` (stdout)
    used to become folders and exit 0: now one line, exit 2, nothing created."""
    composite, mask = save_pair(tmp_path, "one.png")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "apply", composite, mask, "-o", target, "--model", "lab-transfer")
    assert code == 2, err
    assert not (tmp_path / target).exists()
    line = " ".join(err.split())
    assert line.startswith("Error: -o ") and ".png" in line and ".jpg" in line  # the supported suffixes
    assert run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", "-", "--model", "lab-transfer")[0] == 2
    assert not (tmp_path / "-").exists()


def test_mask_pattern_on_the_command_line_and_a_listing_when_nothing_pairs(tmp_path, capsys):
    for index, stem in enumerate(("rocket", "cup")):
        save_pair(tmp_path, f"{stem}.png", image=photo(seed=index), mask_name=f"{stem}-mask.png")
    out = tmp_path / "out"
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", out, "--model", "lab-transfer")
    assert code == 2 and not out.exists()  # nothing paired: a usage error before any work
    line = " ".join(err.split())
    assert "cup-mask.png, rocket-mask.png" in line and "--mask-pattern '{stem}-mask.png'" in line
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", out, "--model", "lab-transfer",
                       "--mask-pattern", "{stem}-mask.png")
    assert code == 0, err
    entries = files(out)
    assert {name: entry["mask"].split("/")[-1] for name, entry in entries.items()} == {
        "cup.png": "cup-mask.png", "rocket.png": "rocket-mask.png"}
    assert report(out)["options"]["mask_pattern"] == "{stem}-mask.png"
    # one composite file and a folder of masks: the same pattern finds its mask
    code, _, err = run(capsys, "apply", tmp_path / "c" / "cup.png", tmp_path / "m", "-o", tmp_path / "cup.png",
                       "--model", "lab-transfer", "--mask-pattern", "{stem}-mask.*")
    assert code == 0 and (tmp_path / "cup.png").is_file(), err
    assert run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", out, "--mask-pattern", "mask.png")[0] == 2


def test_a_weights_path_that_does_not_exist_is_a_usage_error(tmp_path, capsys):
    save_pair(tmp_path, "x.png")
    code, _, err = run(capsys, "apply", tmp_path / "c", tmp_path / "m", "-o", tmp_path / "out",
                       "--weights", tmp_path / "nope.pth")
    assert code == 2 and "nope.pth does not exist" in err
