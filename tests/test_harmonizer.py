"""The Python API: Harmonizer(model, weights, device, resolution, batch_size, flip_tta)."""

import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harmonize_cli import Harmonizer, settings, zoo
from harmonize_cli.apply.imageio import InputError
from harmonize_cli.errors import HarmonizeError, UsageError
from harmonize_cli.apply.resolution import (
    compose_auto,
    compose_native,
    fit_colour_map,
    fit_correction,
    resize_mask,
    resize_rgb,
    Upsampler,
)


def scene(height=48, width=64, seed=0, noise=0.03):
    """A smooth photo-like image, a rectangular mask and a colour-shifted composite."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([0.3 + 0.4 * xx, 0.5 + 0.2 * yy, 0.4 + 0.3 * xx * yy], axis=2)
    base += noise * rng.standard_normal((height, width, 3))
    gt = (np.clip(base, 0, 1) * 255).round().astype(np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
    composite = gt.copy()
    inside = mask > 0
    composite[inside] = np.clip(gt[inside] * np.array([1.4, 0.8, 0.7]) + 10, 0, 255).astype(np.uint8)
    return composite, mask, gt


def test_public_import_and_numpy_call():
    composite, mask, gt = scene()
    h = Harmonizer(device="cpu", quiet=True)
    result = h(composite, mask)
    assert result.dtype == np.uint8 and result.shape == composite.shape
    assert np.array_equal(result[mask == 0], composite[mask == 0])  # background bit-exact
    inside = mask > 0
    before = np.abs(composite[inside].astype(float) - gt[inside]).mean()
    after = np.abs(result[inside].astype(float) - gt[inside]).mean()
    assert after < before  # the fallback undoes part of the gain, read across the mask's edge


def test_auto_fallback_is_a_python_warning_not_console_output(capsys):
    with pytest.warns(UserWarning, match="boundary-gain.*harmonize zoo download") as caught:
        h = Harmonizer(device="cpu")
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert capsys.readouterr().err == ""  # a library prints nothing by itself
    assert h.model_name == "boundary-gain" and h.notice
    assert h.describe()["model"] == "boundary-gain" and h.describe()["weights"] is None
    assert repr(h) == ("Harmonizer(model='boundary-gain', weights='none', device='cpu', resolution='auto', "
                       "batch_size=1, flip_tta=False)")  # batch 1 on the CPU


def test_repr_names_the_weights_file(idih_checkpoint):
    h = Harmonizer(weights=str(idih_checkpoint), device="cpu", resolution="fixed")
    assert repr(h).startswith(f"Harmonizer(model='idih', weights='{idih_checkpoint}', device='cpu', "
                              "resolution='fixed'")


def test_auto_picks_the_best_cached_checkpoint(idih_checkpoint, capsys):
    target = settings.weights_dir() / zoo.weights_for_arch("idih").filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(idih_checkpoint.read_bytes())
    h = Harmonizer(device="cpu")
    assert h.model_name == "idih" and h.notice is None
    assert "lab-transfer" not in capsys.readouterr().err
    assert h.weights_sha256 == hashlib.sha256(target.read_bytes()).hexdigest()


def test_weights_alone_detect_the_architecture(idih_checkpoint):
    h = Harmonizer(weights=str(idih_checkpoint), device="cpu")
    assert h.model_name == "idih" and h.notice is None
    assert h.describe()["weights"] == str(idih_checkpoint)
    assert h.describe()["weights_sha256"] == hashlib.sha256(idih_checkpoint.read_bytes()).hexdigest()


def test_state_dict_weights(idih_checkpoint):
    state = torch.load(idih_checkpoint, weights_only=True)
    h = Harmonizer("idih", weights=state, device="cpu")
    assert h.model_name == "idih" and h.weights_path is None


def test_named_model_without_weights_offline_fails_clearly():
    with pytest.raises(HarmonizeError) as info:
        Harmonizer("idih", device="cpu")
    assert "idih256" in str(info.value)


def test_baseline_with_weights_and_bad_options_are_usage_errors(idih_checkpoint):
    with pytest.raises(UsageError):
        Harmonizer("lab-transfer", weights=str(idih_checkpoint))
    with pytest.raises(UsageError):
        Harmonizer(resolution="huge")
    with pytest.raises(UsageError):
        Harmonizer(batch_size=0)
    with pytest.raises(UsageError):
        Harmonizer("no-such-model")


@pytest.mark.parametrize("resolution", ["auto", "fixed", "native"])
def test_strategies_keep_size_and_background(idih_checkpoint, resolution):
    composite, mask, _ = scene(37, 53)  # odd sizes: native pads to the size divisor
    h = Harmonizer("idih", weights=str(idih_checkpoint), device="cpu", resolution=resolution)
    result = h(composite, mask)
    assert result.shape == composite.shape and result.dtype == np.uint8
    assert np.array_equal(result[mask == 0], composite[mask == 0])


def test_batch_equals_single_calls():
    h = Harmonizer("lab-transfer", device="cpu", batch_size=2)
    items = [scene(40 + 4 * i, 60, seed=i) for i in range(3)]
    batched = h.harmonize_batch([c for c, _, _ in items], [m for _, m, _ in items])
    for (composite, mask, _), result in zip(items, batched):
        single = h(composite, mask)
        assert np.abs(single.astype(int) - result.astype(int)).max() <= 1


def test_flip_tta(idih_checkpoint):
    composite, mask, _ = scene()
    h = Harmonizer("idih", weights=str(idih_checkpoint), device="cpu", flip_tta=True)
    assert h(composite, mask).shape == composite.shape
    identity = Harmonizer("composite", device="cpu", flip_tta=True)
    assert np.abs(identity(composite, mask).astype(int) - composite).max() <= 1


def test_pil_inputs_modes_and_alpha():
    composite, mask, _ = scene()
    h = Harmonizer("lab-transfer", device="cpu")
    rgba = np.concatenate([composite, np.full(composite.shape[:2] + (1,), 77, np.uint8)], axis=2)
    out = h(Image.fromarray(rgba, "RGBA"), Image.fromarray(mask))
    assert out.shape == composite.shape[:2] + (4,) and (out[..., 3] == 77).all()
    gray = h(Image.fromarray(composite).convert("L"), mask)
    assert gray.shape == composite.shape and gray.dtype == np.uint8
    palette = h(Image.fromarray(composite).convert("P"), mask > 0)
    assert palette.shape == composite.shape
    sixteen = h(composite.astype(np.uint16) * 257, mask)
    assert np.array_equal(sixteen[mask == 0], composite[mask == 0])
    floats = h(composite.astype(np.float32) / 255.0, mask.astype(np.float32) / 255.0)
    assert np.array_equal(floats[mask == 0], composite[mask == 0])


@pytest.mark.parametrize("kind", ["bool", "01", "0255", "soft", "rgb", "rgba", "pil1"])
def test_mask_kinds(kind):
    composite, mask, _ = scene()
    binary = mask > 0
    masks = {
        "bool": binary,
        "01": binary.astype(np.uint8),
        "0255": mask,
        "soft": binary * 0.5,
        "rgb": np.stack([mask, np.zeros_like(mask), np.full_like(mask, 255)], axis=2),
        "rgba": np.stack([np.full_like(mask, 255)] * 3 + [mask], axis=2),
        "pil1": Image.fromarray(mask).convert("1"),
    }
    h = Harmonizer("lab-transfer", device="cpu")
    result = h(composite, masks[kind])
    assert np.array_equal(result[~binary], composite[~binary])
    assert not np.array_equal(result[binary], composite[binary])


def test_soft_mask_blends_proportionally():
    composite, mask, _ = scene()
    soft = (mask > 0) * np.float32(0.5)
    prediction = np.zeros((3,) + mask.shape, np.float32)  # a black prediction at full size
    out = compose_native(composite, soft, prediction).astype(float)
    inside = mask > 0
    assert np.abs(out[inside] - composite[inside] * 0.5).max() <= 0.5
    assert np.array_equal(out[~inside], composite[~inside])
    h = Harmonizer("lab-transfer", device="cpu")
    result = h(composite, soft)
    assert np.array_equal(result[~inside], composite[~inside]) and not np.array_equal(result, composite)


def test_mask_size_mismatch_and_bad_arrays():
    composite, mask, _ = scene()
    h = Harmonizer("lab-transfer", device="cpu")
    with pytest.raises(InputError, match="mask is"):
        h(composite, mask[:-1])
    with pytest.raises(ValueError):  # InputError is a ValueError for Python callers
        h(np.zeros((3, 20, 20), np.uint8), np.zeros((20, 20)))


def test_empty_mask_returns_the_input():
    composite, mask, _ = scene()
    h = Harmonizer("lab-transfer", device="cpu")
    assert np.array_equal(h(composite, np.zeros_like(mask)), composite)


def test_auto_reproduces_a_global_colour_change_at_full_resolution():
    """lab-transfer is a global colour mapping: ``auto`` (run at 256) must match running it at
    full resolution (``native``) closely on a smooth scene, and keep the fine detail (noise)
    that ``fixed`` blurs away."""
    inside = scene(384, 512)[1] > 0
    errors = {}
    for noise in (0.0, 0.03):
        composite, mask, _ = scene(384, 512, noise=noise)
        results = {res: Harmonizer("lab-transfer", device="cpu", resolution=res)(composite, mask).astype(float)
                   for res in ("auto", "fixed", "native")}
        for res in ("auto", "fixed"):
            errors[res, noise] = np.abs(results[res] - results["native"])[inside].mean()
    assert errors["auto", 0.0] < 1.5
    assert errors["auto", 0.03] < errors["fixed", 0.03] / 2


def test_upsampler_windows_match_interpolate():
    low = torch.rand(3, 7, 9)
    full = F.interpolate(low[None], size=(40, 50), mode="bilinear", align_corners=False)[0]
    window = Upsampler(low, (40, 50)).window((5, 31), (3, 47))
    assert torch.allclose(window, full[:, 5:31, 3:47], atol=1e-5)


def test_colour_map_recovers_affine_and_quadratic_changes():
    rng = np.random.default_rng(0)
    source = torch.from_numpy(rng.random((500, 3)).astype(np.float32))
    matrix = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.1], [0.05, 0.0, 1.1]])
    target = source @ matrix + torch.tensor([0.02, -0.03, 0.01])
    for degree in (1, 2):
        colour_map = fit_colour_map(source, target, torch.ones(500), degree=degree)
        assert torch.allclose(colour_map.apply(source), target, atol=2e-3)
    curved = torch.stack([source[:, 0] ** 2, source[:, 1] * source[:, 2], 0.5 + 0.1 * source[:, 0] * source[:, 2]], 1)
    colour_map = fit_colour_map(source, curved, torch.ones(500), degree=2, ridge=1e-7)
    assert torch.allclose(colour_map.apply(source), curved, atol=2e-3)


def test_auto_correction_residual_is_carried_where_the_map_cannot():
    """A spatially varying change (left half brighter) is carried by the residual."""
    rgb = np.full((64, 64, 3), 100, np.uint8)
    mask = np.ones((64, 64), np.float32)
    low_in = resize_rgb(rgb, (16, 16))
    prediction = low_in.copy()
    prediction[:, :, :8] += 0.2
    correction = fit_correction(low_in, prediction, resize_mask(mask, (16, 16)))
    out = compose_auto(rgb, mask, correction).astype(int)
    assert out[:, :16].mean() > out[:, 48:].mean() + 30


@pytest.mark.slow  # a fresh process and a 10-megapixel image: ~5-9 s
def test_memory_bound_on_a_large_image():
    """4096 x 2560 in ``auto``: peak resident memory of the whole process stays under 2 GiB (docs/apply.md)."""
    code = textwrap.dedent("""
        import resource, numpy as np
        from harmonize_cli import Harmonizer
        h, w = 2560, 4096
        yy = np.linspace(0, 255, h, dtype=np.float32)[:, None]
        xx = np.linspace(0, 255, w, dtype=np.float32)[None, :]
        image = np.stack([yy + 0 * xx, 0 * yy + xx, (yy + xx) / 2], axis=2).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8); mask[400:2200, 600:3500] = 255
        out = Harmonizer(device="cpu", quiet=True)(image, mask)
        assert out.shape == image.shape and np.array_equal(out[mask == 0], image[mask == 0])
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    peak_kib = int(result.stdout.strip().splitlines()[-1])
    assert peak_kib < 2 * 1024 * 1024, f"peak {peak_kib / 1024:.0f} MiB"


def test_process_pipeline_respects_the_pixel_budget_and_reports_every_task():
    import threading

    h = Harmonizer("lab-transfer", device="cpu", batch_size=2)
    items = {index: scene(30, 40, seed=index) for index in range(5)}
    lock, state, results = threading.Lock(), {"in_flight": 0, "peak": 0}, {}

    def load(index):
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        if index == 3:
            with lock:
                state["in_flight"] -= 1
            raise ValueError("unreadable")
        composite, mask, _ = items[index]
        return composite, mask, None

    def save(index, result, job):
        results[index] = result
        with lock:
            state["in_flight"] -= 1

    outcomes = {}
    h.process(range(5), load, save, lambda index, error, seconds, job: outcomes.setdefault(index, error),
              workers=2, pixel_budget=1, size_of=lambda index: 30 * 40)
    assert sorted(outcomes) == [0, 1, 2, 3, 4]
    assert isinstance(outcomes[3], ValueError) and all(outcomes[i] is None for i in (0, 1, 2, 4))
    assert state["peak"] == 1  # a budget below one image admits one image at a time
    for index in (0, 1, 2, 4):
        composite, mask, _ = items[index]
        assert np.array_equal(results[index], h(composite, mask))


def test_evaluate_and_native_harmonizer_give_the_same_prediction(idih_checkpoint, tmp_path):
    """apply and eval share one predictor: same padding, normalisation and de-normalisation."""
    import torch
    from PIL import Image

    from harmonize_cli.evaluation import evaluate

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(200, 300, 3), dtype=np.uint8)  # not a multiple of the divisor
    mask = np.zeros((200, 300), dtype=np.float32)
    mask[40:150, 60:220] = 1.0

    class OneSample(torch.utils.data.Dataset):
        records = [("Tiny", "photo_1_1.jpg")]

        def __len__(self):
            return 1

        def __getitem__(self, index):
            pixels = torch.from_numpy(rgb).permute(2, 0, 1).float()
            return {"image_255": pixels, "image": pixels, "target_255": pixels,
                    "mask": torch.from_numpy(mask)[None], "subset": "Tiny", "name": "photo_1_1.jpg"}

    harmonizer = Harmonizer(weights=str(idih_checkpoint), resolution="native", device="cpu")
    job = harmonizer.prepare(rgb, mask)
    harmonizer.predict([job])
    ours = job.prediction.transpose(1, 2, 0) * 255.0

    resolved = zoo.resolve(weights=str(idih_checkpoint))
    evaluate(resolved, OneSample(), workers=0, progress=False, save_predictions=tmp_path, resize="none")
    (saved,) = list(tmp_path.rglob("*.png"))
    theirs = np.asarray(Image.open(saved)).astype(np.float32)
    assert theirs.shape == ours.shape
    assert np.abs(np.round(ours) - theirs).max() <= 1.0
    assert np.abs(ours - theirs).mean() < 0.3  # equal up to the rounding of the saved PNG


def test_read_only_inputs_give_no_torch_warning():
    """Decoded images are read-only arrays; a full-width mask once made torch warn on every run."""
    import warnings

    rgb = np.full((40, 64, 3), 120, dtype=np.uint8)
    rgb.flags.writeable = False
    mask = np.zeros((40, 64), dtype=np.float32)
    mask[10:30, :] = 1.0  # spans the full width: the strip is a contiguous view of the input
    mask.flags.writeable = False
    h = Harmonizer(model="lab-transfer")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for resolution in ("auto", "fixed", "native"):
            h.resolution = resolution
            out = h(rgb, mask)
            assert out.shape == (40, 64, 3)
