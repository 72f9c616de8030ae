"""apply/resolution.py on tiny inputs against values computed by hand or in closed form: the
strategy name, the mask's box, the network views' resize, the strips, the blend, PCT-Net's
full-resolution path (compose_pct), the colour map and its ridge fit, auto's residual and the
fixed/native upsampling. Fast on purpose: tools/mutation.sh runs it for every mutant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmonize_cli.apply import resolution
from harmonize_cli.apply.resolution import (_blend_into, _strips, check_strategy, compose_auto, compose_fixed,
                                           compose_native, compose_pct, fit_correction, mask_bbox, resize_mask,
                                           resize_rgb, strip_tensor)
from harmonize_cli.choices import IMAGENET_NORMALIZATION
from harmonize_cli.errors import UsageError


def test_strategy_names_default_and_error():
    assert check_strategy(None) == "auto" and check_strategy("") == "auto"
    assert check_strategy("Fixed") == "fixed" and check_strategy(" native ") == "native"
    with pytest.raises(UsageError) as caught:
        check_strategy("sharp")
    assert str(caught.value) == "unknown resolution strategy 'sharp' (use one of auto, fixed, native)"


def test_mask_bbox_by_hand():
    """Nonzero pixels at (1, 2) (the first row holds the leftmost), (2, 4) and (4, 6) (the last row
    holds the rightmost): rows 1..4, columns 2..6, i.e. (1, 5, 2, 7); soft values count."""
    mask = np.zeros((6, 8), np.float32)
    mask[1, 2], mask[2, 4], mask[4, 6] = 0.01, 1.0, 0.5
    assert mask_bbox(mask) == (1, 5, 2, 7)
    assert all(type(v) is int for v in mask_bbox(mask))
    assert mask_bbox(np.zeros((6, 8), np.float32)) is None
    single = np.zeros((3, 3), np.uint8)
    single[2, 0] = 255
    assert mask_bbox(single) == (2, 3, 0, 1)


def test_resize_rgb_is_pillow_bilinear_with_a_reducing_gap_of_3_by_hand():
    """6 x 12 -> 1 x 2 (a factor 6): with reducing_gap=3 Pillow first averages 2 x 2 blocks (the
    columns 0 0 60 60 120 120 180 180 240 240 0 0 become 0 60 120 180 240 0), then its
    antialiased bilinear filter (a triangle of radius 3 pixels) weighs 4 of them 0.25 0.375 0.25
    0.125: 22.5 + 30 + 22.5 = 75 and 15 + 45 + 90 = 150. Without the reducing step (or with a gap
    of 4) the triangle spans 9 pixels: 78, 146; bicubic gives 76, 149."""
    columns = np.array([0, 0, 60, 60, 120, 120, 180, 180, 240, 240, 0, 0], np.uint8)
    rgb = np.zeros((6, 12, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = columns, 255 - columns, 90
    small = resize_rgb(rgb, (1, 2))
    assert small.shape == (3, 1, 2) and small.dtype == np.float32
    expected = np.array([[[75, 150]], [[180, 105]], [[90, 90]]], np.float32) / 255.0
    assert np.allclose(small, expected, atol=1e-6)
    assert np.allclose(resize_rgb(rgb.transpose(1, 0, 2).copy(), (2, 1)), expected.transpose(0, 2, 1), atol=1e-6)


def test_resize_mask_reducing_gap_and_range_by_hand():
    """The same 12 columns (divided by 240) as a float mask: 75 / 240 = 0.3125, 150 / 240 = 0.625
    (9-pixel triangle without the reducing step: 0.325, 0.607). A float64 mask gives the same;
    values outside [0, 1] are clipped to it."""
    columns = np.array([0, 0, 60, 60, 120, 120, 180, 180, 240, 240, 0, 0], np.float64) / 240.0
    for dtype in (np.float32, np.float64):
        small = resize_mask(np.tile(columns, (6, 1)).astype(dtype), (1, 2))
        assert small.dtype == np.float32 and np.allclose(small, [[0.3125, 0.625]], atol=1e-6), dtype
    assert np.array_equal(resize_mask(np.full((4, 4), -0.5, np.float32), (2, 2)), np.zeros((2, 2), np.float32))
    assert np.array_equal(resize_mask(np.full((4, 4), 1.5, np.float32), (2, 2)), np.ones((2, 2), np.float32))


def test_strip_tensor_copies_only_when_it_must():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    shared = strip_tensor(array)  # contiguous and writable: no copy
    assert np.shares_memory(shared.numpy(), array)
    read_only = array.copy()
    read_only.flags.writeable = False
    copied = strip_tensor(read_only)  # torch must never write into (or warn about) a read-only array
    assert not np.shares_memory(copied.numpy(), read_only) and copied.numpy().flags.writeable
    assert np.array_equal(copied.numpy(), read_only)
    # a strip of a wider image; a flipped one (negative strides); a transposed one (copied in C order)
    for view in (array[:, 1:4], array[:, ::-1], array.transpose(1, 0, 2)):
        tensor = strip_tensor(view)
        assert tensor.is_contiguous() and np.array_equal(tensor.numpy(), view)


def test_strips_by_hand(monkeypatch):
    monkeypatch.setattr(resolution, "STRIP_PIXELS", 12)
    assert list(_strips(7, 4)) == [(0, 3), (3, 6), (6, 7)]  # 12 // 4 = 3 rows a strip
    assert list(_strips(7, 5)) == [(0, 2), (2, 4), (4, 6), (6, 7)]  # 12 // 5 = 2
    assert list(_strips(3, 13)) == [(0, 1), (1, 2), (2, 3)]  # wider than the budget: 1 row
    assert list(_strips(3, 0)) == [(0, 3)]  # no width: the budget in rows
    assert list(_strips(20, 1)) == [(0, 12), (12, 20)]  # one column: 12 rows
    assert list(_strips(0, 5)) == []


def _blend_case():
    """One strip (row 1, columns 1..4) of a 3 x 6 image; each pixel's three channels by hand:
    out = round(input + mask * (clamp(255 * harmonized, 0, 255) - input)), NaN counting as 0."""
    rgb = np.full((3, 6, 3), 33, np.uint8)
    rgb[1, 1:5] = [[10, 20, 30], [100, 100, 100], [200, 50, 0], [0, 255, 128]]
    mask = np.full((3, 6), 0.7, np.float32)
    mask[1, 1:5] = [0.0, 0.5, 1.0, 0.25]
    harmonized = torch.tensor([[[0.9, np.nan, 2.0],  # mask 0: the input, bit for bit
                                [0.5, np.nan, 1.2],  # 127.5, 0, 255 -> 113.75, 50, 177.5 (half to even)
                                [-0.5, 0.8, 0.999],  # 0, 204, 254.745
                                [1.0, 0.0, 0.25]]], dtype=torch.float32)  # 255, 0, 63.75 -> 63.75, 191.25, 111.9375
    expected = np.full((3, 6, 3), 7, np.uint8)
    expected[1, 1:5] = [[10, 20, 30], [114, 50, 178], [0, 204, 255], [64, 191, 112]]
    return rgb, mask, harmonized, expected


def test_blend_into_by_hand():
    rgb, mask, harmonized, expected = _blend_case()
    out = np.full_like(rgb, 7)  # outside the strip nothing is written
    box = (slice(None), slice(1, 5))  # the box: columns 1..4 of every row; the strip: its row 1
    _blend_into(out[box], rgb[box], mask[box], 1, 2, harmonized.clone())
    assert np.array_equal(out, expected)
    # the input strip given as floats (h x w x 3, 0..255) is the one blended
    out = np.full_like(rgb, 7)
    source = torch.from_numpy(rgb[1:2, 1:5].astype(np.float32))
    _blend_into(out[box], np.zeros_like(rgb)[box], mask[box], 1, 2, harmonized.clone(), source)
    assert np.array_equal(out, expected)


def _pct_expected(rgb, mask, params, attention, normalization, clamp=True, affine=True):
    """PCT-Net's full-resolution output in float64, written out: bicubic maps (torch's one-shot
    F.interpolate), y = M x_n (+ b) on the normalised input, clamped to [0, 1]; blended with the
    attention (or the mask) in image space; then input + mask * (that - input) in 0..255."""
    height, width = mask.shape
    mean = np.array(normalization["mean"])[:, None, None]
    std = np.array(normalization["std"])[:, None, None]
    x = rgb.transpose(2, 0, 1).astype(np.float64) / 255.0
    maps = F.interpolate(params.double(), size=(height, width), mode="bicubic")[0].numpy()
    y = np.einsum("oihw,ihw->ohw", maps[:9].reshape(3, 3, height, width), (x - mean) / std)
    if affine:
        y = y + maps[9:12]
    if clamp:
        y = np.clip(y, 0.0, 1.0)
    if attention is None:
        blend = mask[None].astype(np.float64)
    else:
        blend = F.interpolate(attention.double(), size=(height, width), mode="bicubic")[0].numpy()
    result = blend * y + (1 - blend) * x
    out = x * 255.0 + mask[None] * (np.clip(result * 255.0, 0, 255) - x * 255.0)
    return out.transpose(1, 2, 0)


def _pct_case():
    generator = torch.Generator().manual_seed(5)
    rgb = torch.randint(0, 256, (9, 11, 3), generator=generator).numpy().astype(np.uint8)
    mask = np.zeros((9, 11), np.float32)
    mask[2:8, 3:9] = np.tile([1.0, 0.5, 0.25, 1.0, 0.75, 1.0], (6, 1))
    mask[4, 5] = 0.0  # a hole inside the box
    params = torch.zeros(1, 12, 3, 4)
    params[:, :9] = (0.2 * torch.eye(3)).reshape(1, 9, 1, 1) + 0.05 * torch.randn(1, 9, 3, 4, generator=generator)
    params[:, 9:12] = torch.tensor([0.5, 0.9, 0.1]).view(1, 3, 1, 1)  # g above 1 and b below 0 somewhere: clamped
    params[:, 9:12] += 0.1 * torch.randn(1, 3, 3, 4, generator=generator)
    return rgb, mask, params


def _pct_strip_budget(monkeypatch, pixels):
    """PCT-Net's strips may have a budget of their own (PCT_STRIP_PIXELS) or share STRIP_PIXELS."""
    monkeypatch.setattr(resolution, "STRIP_PIXELS", pixels)
    monkeypatch.setattr(resolution, "PCT_STRIP_PIXELS", pixels, raising=False)


def _assert_rounded(ours, exact, mask):
    """``ours`` is ``exact`` rounded (to within float32 error at the .5 ties); outside the mask it
    is the input bit for bit."""
    assert ours.dtype == np.uint8
    assert np.abs(ours.astype(np.float64) - exact).max() <= 0.5 + 1e-3
    assert np.array_equal(ours[mask == 0], np.round(exact[mask == 0]).astype(np.uint8))


def _record_strips(monkeypatch, name):
    """Wrap ``resolution.<name>`` (a blend of rows top..bottom of a box) to record each call's
    (top, bottom, box width); returns the list it fills."""
    strips = []
    original = getattr(resolution, name)

    def recording(out, rgb_, mask_, top, bottom, *rest):
        strips.append((top, bottom, rgb_.shape[1]))
        return original(out, rgb_, mask_, top, bottom, *rest)

    monkeypatch.setattr(resolution, name, recording)
    return strips


@pytest.mark.parametrize("options", [{}, {"clamp": False}, {"affine": False}])
def test_compose_pct_is_the_reference_computation_in_closed_form(options, monkeypatch):
    rgb, mask, params = _pct_case()
    _pct_strip_budget(monkeypatch, 13)  # box 6 wide: strips of 2 rows
    strips = _record_strips(monkeypatch, "_blend_into")
    expected = _pct_expected(rgb, mask, params, None, IMAGENET_NORMALIZATION, **options)
    ours = compose_pct(rgb, mask, params, None, IMAGENET_NORMALIZATION, **options)
    _assert_rounded(ours, expected, mask)
    assert strips == [(0, 2, 6), (2, 4, 6), (4, 6, 6)]  # rows 2..7, columns 3..8
    if options:  # the option changes the result: the defaults are clamp=True, affine=True
        default = _pct_expected(rgb, mask, params, None, IMAGENET_NORMALIZATION)
        assert np.abs(np.round(default) - np.round(expected)).max() >= 10


def test_compose_pct_blends_with_the_attention_map_when_given():
    rgb, mask, params = _pct_case()
    attention = torch.tensor([[0.9, 0.2, 0.6, 1.0], [0.1, 0.8, 0.4, 0.7], [0.5, 0.3, 1.0, 0.0]]).view(1, 1, 3, 4)
    normalization = {"mean": (0.5, 0.4, 0.3), "std": (0.25, 0.5, 0.2)}
    expected = _pct_expected(rgb, mask, params, attention, normalization)
    _assert_rounded(compose_pct(rgb, mask, params, attention, normalization), expected, mask)
    _assert_rounded(compose_pct(rgb, mask, params, attention, normalization, bbox=(2, 8, 3, 9)), expected, mask)
    without = _pct_expected(rgb, mask, params, None, normalization)
    assert np.abs(np.round(without) - np.round(expected)).max() >= 10  # the attention made a difference
    empty = np.zeros_like(mask)
    assert np.array_equal(compose_pct(rgb, empty, params, attention, normalization), rgb)


@pytest.mark.parametrize("strategy", ["fixed", "native", "auto"])
def test_strategies_work_in_strips_of_the_pixel_budget(strategy, monkeypatch):
    """Every strategy blends the mask's box in strips of STRIP_PIXELS // box width rows (the
    memory bound), each strip the full width of the box; fixed and auto upsample the box's
    columns once (vertical taps for the 9 rows, horizontal taps for columns 3..8)."""
    rgb, mask, _ = _pct_case()
    monkeypatch.setattr(resolution, "STRIP_PIXELS", 13)
    strips = _record_strips(monkeypatch, "_blend_255")
    taps = []
    original_taps = resolution._taps
    monkeypatch.setattr(resolution, "_taps", lambda *args: taps.append(args) or original_taps(*args))
    low = np.full((3, 4, 4), 0.5, np.float32)
    if strategy == "fixed":
        compose_fixed(rgb, mask, low)
    elif strategy == "native":
        compose_native(rgb, mask, np.full((3, 9, 11), 0.5, np.float32))
    else:
        compose_auto(rgb, mask, fit_correction(low, low * 0.5, np.ones((4, 4), np.float32)))
    assert strips == [(0, 2, 6), (2, 4, 6), (4, 6, 6)]  # rows 2..7, columns 3..8 of the image
    if strategy != "native":  # the upsampler's horizontal pass is made once for the box, not per strip
        assert taps == [(4, 9, 0, 9), (4, 11, 3, 9)]


def test_native_blends_the_full_size_prediction_by_hand():
    """1 x 4, mask 1, 0.5, 1, 0: the prediction times 255 (not clamped first), NaN counting as 0,
    then clamped and blended: 0.8 -> 204; NaN -> 0 -> 60 + 0.5 * -60 = 30; 1.5 -> 255; mask 0 -> input."""
    rgb = np.full((1, 4, 3), 60, np.uint8)
    mask = np.array([[1.0, 0.5, 1.0, 0.0]], np.float32)
    prediction = np.zeros((3, 1, 4), np.float32)
    prediction[0, 0] = [0.8, np.nan, 1.5, 0.3]
    prediction[1, 0] = [0.1, 0.9, -0.2, np.nan]  # 25.5 -> 26 (half to even); 60 + 0.5 * 169.5 = 144.75
    prediction[2, 0] = [0.502, 0.25, 0.0, 1.0]  # 128.01; 60 + 0.5 * 3.75 = 61.875
    for weights in (mask, mask.astype(np.float64)):  # a float64 mask blends the same
        out = compose_native(rgb, weights, prediction)
        assert out[0, :, 0].tolist() == [204, 30, 255, 60]
        assert out[0, :, 1].tolist() == [26, 145, 0, 60]
        assert out[0, :, 2].tolist() == [128, 62, 0, 60]


def _hand_map():
    """A degree-2 map with a distinct coefficient on every term (rows r g b r2 g2 b2 rg rb gb 1):
    R = 0.1 + 0.5 r + r2;  G = 0.2 g + 2 rg + 0.3 b2;  B = 0.05 + 0.4 g2 + 1.5 rb - gb;
    fitted on [0.1, 0.9] x [0.2, 0.8] x [0, 1], continued beyond with the affine 0.3 r, 0.6 g, 0.2 b."""
    coefficients = torch.zeros(10, 3)
    coefficients[9, 0], coefficients[0, 0], coefficients[3, 0] = 0.1, 0.5, 1.0
    coefficients[1, 1], coefficients[6, 1], coefficients[5, 1] = 0.2, 2.0, 0.3
    coefficients[9, 2], coefficients[4, 2], coefficients[7, 2], coefficients[8, 2] = 0.05, 0.4, 1.5, -1.0
    linear = torch.zeros(4, 3)
    linear[0, 0], linear[1, 1], linear[2, 2], linear[3] = 0.3, 0.6, 0.2, 9.0  # the constant row is never used
    return resolution.ColourMap(coefficients, 2, torch.tensor([0.1, 0.2, 0.0]), torch.tensor([0.9, 0.8, 1.0]), linear)


def _hand_map_values(pixels):
    p = np.asarray(pixels, np.float64)
    r, g, b = np.clip(p[:, 0], 0.1, 0.9), np.clip(p[:, 1], 0.2, 0.8), np.clip(p[:, 2], 0.0, 1.0)
    mapped = np.stack([0.1 + 0.5 * r + r * r, 0.2 * g + 2 * r * g + 0.3 * b * b, 0.05 + 0.4 * g * g + 1.5 * r * b - g * b], 1)
    return mapped + (p - np.stack([r, g, b], 1)) * [0.3, 0.6, 0.2]


def test_colour_map_apply_by_hand(recwarn):
    pixels = [[0.5, 0.4, 0.6], [0.95, 0.1, 0.5], [0.0, 0.9, 1.2], [0.3, 0.7, 0.0], [0.9, 0.2, -0.1]]
    # (0.5, 0.4, 0.6): R = 0.1 + 0.25 + 0.25 = 0.6, G = 0.08 + 0.4 + 0.108 = 0.588, B = 0.05 + 0.064 + 0.45 - 0.24 = 0.324
    assert np.allclose(_hand_map_values(pixels[:1]), [[0.6, 0.588, 0.324]])
    colour_map = _hand_map()
    ours = colour_map.apply(torch.tensor(pixels))
    assert ours.dtype == torch.float32 and np.allclose(ours.numpy(), _hand_map_values(pixels), atol=1e-6)
    # in 0..255 units on planar colours (3 x N), as compose_auto uses it; again for the folded coefficients
    for _ in range(2):
        ours_255 = colour_map.apply_255(torch.tensor(pixels).T.contiguous() * 255.0)
        assert np.allclose(ours_255.T.numpy(), _hand_map_values(pixels) * 255.0, atol=1e-3)
    # the fitted range's edges in 0..255 units: 0.8 * 255 = 204, a colour at 204.8 continues linearly
    edge = torch.tensor([[0.1 * 255 + 0.2, 0.8 * 255 + 0.2, 255.0], [0.1 * 255 - 0.2, 0.8 * 255 - 0.2, 0.0]]).T
    assert np.allclose(colour_map.apply_255(edge.contiguous()).T.numpy(), _hand_map_values(edge.T.numpy() / 255.0) * 255,
                       atol=1e-3)
    assert not [w for w in recwarn.list if "resized" in str(w.message)]  # outputs written in place, never resized


def test_degree_1_colour_map_by_hand():
    coefficients = torch.tensor([[0.5, 0.0, 0.1], [0.2, 1.0, 0.0], [0.0, -0.3, 0.7], [0.05, 0.1, 0.2]])
    linear = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 4.0], [7.0, 7.0, 7.0]])
    colour_map = resolution.ColourMap(coefficients, 1, torch.tensor([0.0, 0.1, 0.0]), torch.tensor([1.0, 0.9, 0.5]),
                                      linear)
    pixels = torch.tensor([[0.2, 0.5, 0.4], [0.4, 0.95, 0.8]])
    # row 1: (0.05 + 0.1 + 0.1, 0.1 + 0.5 - 0.12, 0.2 + 0.02 + 0.28) = (0.25, 0.48, 0.5)
    # row 2: inside (0.4, 0.9, 0.5): (0.05 + 0.2 + 0.18, 0.1 + 0.9 - 0.15, 0.2 + 0.04 + 0.35) = (0.43, 0.85, 0.59),
    #        plus the overflow (0, 0.05, 0.3) through the affine fit: (0, 0.15, 1.2)
    expected = np.array([[0.25, 0.48, 0.5], [0.43, 1.0, 1.79]])
    assert np.allclose(colour_map.apply(pixels).numpy(), expected, atol=1e-6)
    assert np.allclose(colour_map.apply_255(pixels.T.contiguous() * 255).T.numpy(), expected * 255, atol=1e-3)


def _ridge_by_hand(features, targets, weights, prior, ridge):
    """argmin_C sum_i w_i |f_i C - t_i|^2 + lam |C - prior|^2, lam = ridge * max(sum w, 1): the
    normal equations (F^T W F + lam I) C = F^T W T + lam prior, in float64 numpy."""
    lam = ridge * max(weights.sum(), 1.0)
    gram = features.T @ (features * weights[:, None]) + lam * np.eye(features.shape[1])
    return np.linalg.solve(gram, features.T @ (targets * weights[:, None]) + lam * prior)


def _poly_by_hand(p, degree):
    r, g, b = p[:, 0], p[:, 1], p[:, 2]
    columns = [r, g, b] + ([r * r, g * g, b * b, r * g, r * b, g * b] if degree == 2 else []) + [np.ones_like(r)]
    return np.stack(columns, 1)


@pytest.mark.parametrize("total", [0.5, 4.0])
def test_fit_colour_map_is_the_weighted_ridge_solution(total):
    """Both fits (the affine one kept for extrapolation, and the quadratic one) against the normal
    equations solved by hand, with a ridge strong enough to matter: below a total weight of 1 the
    ridge is not scaled down (a tiny foreground stays close to the identity)."""
    rng = np.random.default_rng(7)
    source = rng.uniform(0.1, 0.9, (40, 3))
    target = np.clip(source @ [[0.8, 0.1, 0.0], [0.1, 0.7, 0.2], [0.0, 0.1, 0.9]] + 0.05 + 0.3 * source ** 2, 0, 1)
    weights = rng.uniform(0.2, 1.0, 40)
    weights *= total / weights.sum()
    colour_map = resolution.fit_colour_map(torch.tensor(source, dtype=torch.float32),
                                           torch.tensor(target, dtype=torch.float32),
                                           torch.tensor(weights, dtype=torch.float32), degree=2, ridge=0.05)
    s32, t32, w32 = (np.float64(np.float32(a)) for a in (source, target, weights))  # what the fit sees
    linear_prior = np.vstack([np.eye(3), np.zeros((1, 3))])
    quadratic_prior = np.vstack([np.eye(3), np.zeros((7, 3))])
    assert np.allclose(colour_map.linear.numpy(), _ridge_by_hand(_poly_by_hand(s32, 1), t32, w32, linear_prior, 0.05),
                       atol=2e-6)
    assert np.allclose(colour_map.coefficients.numpy(),
                       _ridge_by_hand(_poly_by_hand(s32, 2), t32, w32, quadratic_prior, 0.05), atol=2e-6)
    assert colour_map.degree == 2 and colour_map.coefficients.dtype == torch.float32


def test_fit_colour_map_finds_the_cross_terms_and_the_fitted_range():
    """Targets r*g, r*b, g*b exactly: the quadratic fit (almost no ridge) puts 1 on the rg, rb and
    gb rows (6, 7, 8) and 0 elsewhere. The range is that of the pixels weighing more
    than 1e-3: pixels of weight 1e-3 or 0 (here the extreme colours) are left out."""
    rng = np.random.default_rng(1)
    source = rng.uniform(0.2, 0.8, (300, 3)).astype(np.float32)
    source[0], source[1] = [0.05, 0.1, 0.15], [0.95, 0.9, 0.85]
    weights = np.ones(300, np.float64)
    weights[0], weights[1] = 1e-3, 0.0
    r, g, b = source[:, 0], source[:, 1], source[:, 2]
    target = np.stack([r * g, r * b, g * b], 1)
    colour_map = resolution.fit_colour_map(torch.from_numpy(source), torch.from_numpy(target), torch.from_numpy(weights),
                                           ridge=1e-9)
    assert colour_map.degree == 2  # the default degree
    expected = np.zeros((10, 3))
    expected[6, 0] = expected[7, 1] = expected[8, 2] = 1.0
    assert np.abs(colour_map.coefficients.numpy() - expected).max() < 1e-3
    assert np.allclose(colour_map.low.numpy(), source[2:].min(0)) and np.allclose(colour_map.high.numpy(), source[2:].max(0))
    assert colour_map.low.dtype == torch.float32 and colour_map.high.dtype == torch.float32


def test_fit_colour_map_identity_for_degree_0_nan_and_no_weight():
    """degree 0, or a NaN anywhere in the fit: the identity map (every colour maps to itself, also
    beyond [0, 1]), never NaN pixels. No pixel weighing more than 1e-3: the range is [0, 1]."""
    rng = np.random.default_rng(2)
    source = torch.from_numpy(rng.uniform(0, 1, (20, 3)).astype(np.float32))
    target = source * 0.5 + 0.2
    probe = torch.tensor([[0.2, 0.5, 0.9], [1.3, -0.2, 0.4]])
    nan_target = target.clone()
    nan_target[3, 1] = float("nan")
    for colour_map in (resolution.fit_colour_map(source, target, torch.ones(20), degree=0),
                       resolution.fit_colour_map(source, nan_target, torch.ones(20), degree=2),
                       resolution.fit_colour_map(source, nan_target, torch.ones(20), degree=1)):
        assert colour_map.degree == 1
        assert torch.equal(colour_map.coefficients, colour_map.linear)
        assert torch.equal(colour_map.coefficients, torch.cat((torch.eye(3), torch.zeros(1, 3))))
        assert torch.equal(colour_map.low, torch.zeros(3)) and torch.equal(colour_map.high, torch.ones(3))
        assert torch.allclose(colour_map.apply(probe), probe)
    faint = resolution.fit_colour_map(source, target, torch.full((20,), 1e-3, dtype=torch.float64))
    assert torch.equal(faint.low, torch.zeros(3)) and torch.equal(faint.high, torch.ones(3))


def test_fit_correction_residual_by_hand():
    """degree 0 (identity map): the residual numerator is (prediction - input) * low mask, NaN in
    the prediction counting as 0; its weight is the low mask (1 x h x w). Float64 views are
    accepted and give float32 tensors; residual=False leaves the residual empty."""
    low_input = np.array([[[0.2, 0.4], [0.6, 0.8]], [[0.5, 0.5], [0.1, 0.3]], [[0.9, 0.0], [0.3, 0.7]]])
    prediction = low_input + np.array([0.1, -0.2, 0.05])[:, None, None]
    prediction[1, 1, 0] = np.nan  # -> 0: leftover -0.1
    low_mask = np.array([[1.0, 0.0], [0.5, 0.25]])
    correction = fit_correction(low_input, prediction, low_mask, degree=0)
    expected = np.array([[[0.1, 0.0], [0.05, 0.025]], [[-0.2, 0.0], [-0.05, -0.05]], [[0.05, 0.0], [0.025, 0.0125]]])
    assert correction.residual_numerator.dtype == torch.float32 and correction.residual_weight.dtype == torch.float32
    assert np.allclose(correction.residual_numerator.numpy(), expected, atol=1e-6)
    assert correction.residual_weight.shape == (1, 2, 2) and np.allclose(correction.residual_weight.numpy(), low_mask[None])
    assert torch.equal(correction.colour_map.coefficients, torch.cat((torch.eye(3), torch.zeros(1, 3))))
    flat = fit_correction(low_input, prediction, low_mask, degree=0, residual=False)
    assert torch.equal(flat.residual_numerator, torch.zeros(3, 2, 2))
    # the default is the quadratic map plus the residual: an exactly quadratic change leaves ~no residual
    quadratic = low_input ** 2
    default = fit_correction(low_input.astype(np.float32), quadratic.astype(np.float32), np.ones((2, 2), np.float32))
    assert default.colour_map.degree == 2 and float(default.residual_numerator.abs().max()) > 0


_UP = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])  # bilinear 2 -> 4, align_corners=False


def test_compose_auto_adds_the_mask_normalised_residual_by_hand():
    """2 x 2 -> 4 x 4 with the identity map (degree 0): each full-resolution pixel gets
    255 * up(residual * low mask) / up(low mask), up(A) = U A U^T with U the bilinear taps
    (1, 0), (0.75, 0.25), (0.25, 0.75), (0, 1); where up(low mask) is 0 (top-right: its low pixel
    has weight 0) nothing is added. The result is blended with the full-resolution mask."""
    rng = np.random.default_rng(4)
    rgb = rng.integers(40, 200, (4, 4, 3)).astype(np.uint8)
    mask = np.ones((4, 4), np.float32)
    mask[3, 0], mask[1, 2] = 0.0, 0.5
    low_input = rng.uniform(0.3, 0.7, (3, 2, 2)).astype(np.float32)
    change = np.array([[[0.3, -0.2], [0.1, 0.25]], [[-0.3, 0.2], [0.0, 0.15]], [[0.2, 0.2], [-0.25, 0.05]]], np.float32)
    low_mask = np.array([[1.0, 0.0], [0.5, 1.0]], np.float32)
    correction = fit_correction(low_input, low_input + change, low_mask, degree=0)
    weight_up = _UP @ low_mask @ _UP.T
    residual = np.stack([_UP @ (c * low_mask) @ _UP.T for c in change.astype(np.float64)])
    residual = np.where(weight_up > 1e-4, residual / np.maximum(weight_up, 1e-4), 0.0).transpose(1, 2, 0)
    assert weight_up[0, 3] == 0 and np.abs(residual[0, 3]).max() == 0
    harmonized = np.clip(rgb + 255.0 * residual, 0, 255)
    exact = rgb + mask[..., None] * (harmonized - rgb)
    ours = compose_auto(rgb, mask, correction)
    _assert_rounded(ours, exact, mask)
    assert np.abs(ours.astype(int) - rgb).max() > 40  # the residual really moved pixels


def test_compose_auto_drops_the_residual_where_the_low_mask_vanishes():
    """A low mask of 1e-4 everywhere: up(low mask) = 1e-4, not above the 1e-4 guard, so the
    residual (0.5 here, 127.5 levels) is not carried at all; the identity map leaves the input."""
    rgb = np.full((4, 4, 3), 60, np.uint8)
    low_input = np.full((3, 2, 2), 60 / 255.0, np.float32)
    low_mask = np.full((2, 2), 1e-4, np.float32)
    correction = fit_correction(low_input, low_input + 0.5, low_mask, degree=0)
    assert np.array_equal(compose_auto(rgb, np.ones((4, 4), np.float32), correction), rgb)
    same = fit_correction(low_input, low_input, np.ones((2, 2), np.float32), degree=0)  # no residual at all
    assert float(same.residual_numerator.abs().max()) == 0
    assert np.array_equal(compose_auto(rgb, np.ones((4, 4), np.float32), same), rgb)


def test_compose_auto_applies_the_colour_map_to_every_full_resolution_pixel():
    """No residual: every pixel inside the mask is the hand map of its own colour (in 0..255)."""
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    mask = np.zeros((5, 7), np.float32)
    mask[1:4, 2:6] = 1.0
    mask[2, 3] = 0.5
    correction = resolution.Correction(_hand_map(), torch.zeros(3, 2, 2), torch.ones(1, 2, 2))
    mapped = _hand_map_values(rgb.reshape(-1, 3) / 255.0).reshape(rgb.shape) * 255.0
    exact = rgb + mask[..., None] * (np.clip(mapped, 0, 255) - rgb)
    _assert_rounded(compose_auto(rgb, mask, correction), exact, mask)
    _assert_rounded(compose_auto(rgb, mask, correction, (1, 4, 2, 6)), exact, mask)


def test_fixed_upsamples_in_both_directions_by_hand():
    """A 2 x 2 prediction to 4 x 4: up(P) = U P U^T (bilinear taps above), times 255, blended with
    a mask whose box starts at column 1 (column 0 and the mask-0 pixel keep the input)."""
    rgb = np.full((4, 4, 3), 90, np.uint8)
    mask = np.zeros((4, 4), np.float32)
    mask[:, 1:] = 1.0
    mask[0, 2] = 0.0
    prediction = np.array([[[0.0, 1.0], [0.4, 0.8]], [[1.0, 0.0], [0.2, 0.2]], [[0.5, 0.5], [0.9, 0.1]]], np.float32)
    up = np.stack([_UP @ p @ _UP.T for p in prediction.astype(np.float64)]).transpose(1, 2, 0) * 255.0
    # e.g. red at (1, 1): rows 0.75 (0, 1) + 0.25 (0.4, 0.8) = (0.1, 0.95), then 0.75 * 0.1 + 0.25 * 0.95 = 0.3125
    assert up[1, 1, 0] == pytest.approx(0.3125 * 255)
    exact = rgb + mask[..., None] * (up - rgb)
    _assert_rounded(compose_fixed(rgb, mask, prediction), exact, mask)
    # taller than wide: 2 x 1 -> 4 x 1, rows only
    tall = compose_fixed(np.zeros((4, 1, 3), np.uint8), np.ones((4, 1), np.float32), prediction[:, :, :1])
    _assert_rounded(tall, np.stack([_UP @ p[:, :1] for p in prediction.astype(np.float64)], 2) * 255.0,
                    np.ones((4, 1)))


def test_upsampling_positions_are_exact_on_a_network_size_map():
    """256 columns of alternating 0 and 255 upsampled to 1000: the sampling positions
    (i + 0.5) * 256 / 1000 - 0.5 computed in float64 keep every value within 1e-3 of float64
    interpolation (positions in float32 are off by up to ~2e-5 pixel: ~5e-3 here)."""
    low = torch.zeros(1, 1, 256)
    low[0, 0, 1::2] = 255.0
    ours = resolution.Upsampler(low, (1, 1000)).window((0, 1), (0, 1000))
    expected = F.interpolate(low[None].double(), size=(1, 1000), mode="bilinear", align_corners=False)[0]
    assert (ours.double() - expected).abs().max() < 1e-3


@pytest.mark.parametrize("budget, box_columns, rows", [(3, (4, 5), 3), (8, (2, 8), 1)])
def test_compose_pct_strips_hold_the_pixel_budget(budget, box_columns, rows, monkeypatch):
    """PCT-Net's path too: STRIP_PIXELS // box width rows a strip, at least one (a 1-column box
    with a budget of 3: 3 rows; a 6-column box with a budget of 8: 1 row)."""
    rgb, _, params = _pct_case()
    mask = np.zeros((9, 11), np.float32)
    mask[1:7, box_columns[0]:box_columns[1]] = 1.0
    _pct_strip_budget(monkeypatch, budget)
    strips = _record_strips(monkeypatch, "_blend_into")
    ours = compose_pct(rgb, mask, params, None, IMAGENET_NORMALIZATION)
    assert [(top, bottom) for top, bottom, _ in strips] == [(top - 1, min(7, top + rows) - 1)
                                                           for top in range(1, 7, rows)]  # rows 1..6 of the image
    _assert_rounded(ours, _pct_expected(rgb, mask, params, None, IMAGENET_NORMALIZATION), mask)


def test_fit_correction_uses_only_the_pixels_inside_the_mask():
    """Pixels of weight 0 neither enter the fit nor get a residual: a NaN input there (which would
    turn the whole fit into the identity fallback) changes nothing, and the residual's numerator
    is exactly 0 there."""
    rng = np.random.default_rng(5)
    low = rng.uniform(0.1, 0.9, (3, 6, 6)).astype(np.float32)
    prediction = np.clip(low * 0.7 + 0.1 + rng.normal(0, 0.02, low.shape), 0, 1).astype(np.float32)
    weight = np.zeros((6, 6), np.float32)
    weight[1:5, 1:5] = rng.uniform(0.2, 1.0, (4, 4))
    clean = fit_correction(low, prediction, weight)
    dirty = low.copy()
    dirty[:, 0, 0] = np.nan  # outside the mask
    dirty[:, 5, 5] = 7.0
    fitted = fit_correction(dirty, prediction, weight)
    assert torch.equal(fitted.colour_map.coefficients, clean.colour_map.coefficients)
    assert torch.equal(fitted.residual_numerator, clean.residual_numerator)
    assert not torch.allclose(clean.colour_map.coefficients[:3], torch.eye(3))  # a real fit, not the identity
    outside = torch.from_numpy(weight == 0)
    assert torch.all(clean.residual_numerator[:, outside] == 0)
    assert torch.all(clean.residual_numerator[:, ~outside].abs() > 0)


def test_blend_255_weighs_with_the_mask_in_float32():
    """The weight is the mask as float32, whatever the mask's dtype: a float64 mask blends as its
    float32 copy does. Two pixels where it shows: weight 0.7616033265942558 is 0.76160336 in
    float32, and 237 times that is 180.5 in float32: 243 - 180.5 = 62.5 -> 62 (half to even); the
    float64 weight gives 62.500012 -> 63. Likewise 201 + 45 * 0.56666684 = 226.5 -> 226 (float64:
    226.50002 -> 227)."""
    rgb = np.array([[[243, 243, 243], [201, 201, 201]]], np.uint8)
    mask = np.array([[0.7616033265942558, 0.5666668590425937]], np.float64)
    for weights in (mask, mask.astype(np.float32)):
        target = torch.tensor([[[6.0, 246.0]]] * 3)  # 3 x 1 x 2, in 0..255
        out = np.zeros_like(rgb)
        resolution._blend_255(out, rgb, weights, 0, 1, target)
        assert out[0, :, 0].tolist() == [62, 226] and np.array_equal(out[..., 0:1].repeat(3, 2), out), weights.dtype


def test_a_given_box_is_used_and_not_searched_again(monkeypatch):
    """compose_* with ``bbox`` take the caller's box (apply passes the one it found) and never look
    for it in the mask again; the result is the one found without the box."""
    rgb, mask, params = _pct_case()
    low = np.linspace(0.1, 0.9, 48, dtype=np.float32).reshape(3, 4, 4)
    full = np.linspace(0.0, 1.0, 3 * 9 * 11, dtype=np.float32).reshape(3, 9, 11)
    correction = fit_correction(low, np.clip(low * 0.8 + 0.15, 0, 1), np.ones((4, 4), np.float32))
    calls = [lambda box: compose_fixed(rgb, mask, low, box), lambda box: compose_native(rgb, mask, full, box),
             lambda box: compose_auto(rgb, mask, correction, box),
             lambda box: compose_pct(rgb, mask, params, None, IMAGENET_NORMALIZATION, box)]
    expected = [call(None) for call in calls]
    assert mask_bbox(mask) == (2, 8, 3, 9)

    def no_search(_mask):
        raise AssertionError("the mask's box was searched again")

    monkeypatch.setattr(resolution, "mask_bbox", no_search)
    for call, result in zip(calls, expected):
        ours = call((2, 8, 3, 9))
        assert np.array_equal(ours, result) and not np.array_equal(ours, rgb)


def test_each_strip_of_the_input_is_converted_once(monkeypatch):
    """auto converts a strip of the input to floats once and blends with that conversion; PCT-Net
    converts it itself and hands it to the blend; fixed and native leave it to the blend. So with
    strips of 2 rows (budget 13, box 6 wide, rows 2..7): 3 conversions, none for PCT-Net."""
    rgb, mask, params = _pct_case()
    monkeypatch.setattr(resolution, "STRIP_PIXELS", 13)
    _pct_strip_budget(monkeypatch, 13)
    converted = []
    original = resolution._planar_source
    monkeypatch.setattr(resolution, "_planar_source",
                        lambda rgb_, top, bottom: converted.append((top, bottom)) or original(rgb_, top, bottom))
    low = np.full((3, 4, 4), 0.5, np.float32)
    correction = fit_correction(low, low * 0.5, np.ones((4, 4), np.float32))
    for name, call in (("fixed", lambda: compose_fixed(rgb, mask, low)),
                       ("native", lambda: compose_native(rgb, mask, np.full((3, 9, 11), 0.5, np.float32))),
                       ("auto", lambda: compose_auto(rgb, mask, correction))):
        converted.clear()
        call()
        assert converted == [(0, 2), (2, 4), (4, 6)], name
    converted.clear()
    compose_pct(rgb, mask, params, None, IMAGENET_NORMALIZATION)
    assert converted == []


def test_auto_builds_no_upsampler_without_a_residual(monkeypatch):
    """A correction whose residual is 0 everywhere (the map explains the prediction, or
    residual=False) skips the upsampling altogether; the colour map alone is applied."""
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    mask = np.zeros((5, 7), np.float32)
    mask[1:4, 2:6] = 1.0
    correction = resolution.Correction(_hand_map(), torch.zeros(3, 2, 2), torch.ones(1, 2, 2))

    def no_upsampler(*args):
        raise AssertionError("an upsampler was built for a residual of 0")

    monkeypatch.setattr(resolution, "Upsampler", no_upsampler)
    mapped = _hand_map_values(rgb.reshape(-1, 3) / 255.0).reshape(rgb.shape) * 255.0
    _assert_rounded(compose_auto(rgb, mask, correction), rgb + mask[..., None] * (np.clip(mapped, 0, 255) - rgb), mask)


def test_pct_box_defaults_clamp_and_add_the_offset():
    """The box form called alone: clamp=True and affine=True by default (the closed form's
    defaults), on the box's arrays, returning the box of the result."""
    rgb, mask, params = _pct_case()
    box = (2, 8, 3, 9)
    ours = resolution.pct_box(rgb[2:8, 3:9], mask[2:8, 3:9], params, None, IMAGENET_NORMALIZATION, box, mask.shape)
    assert ours.shape == (6, 6, 3)
    expected = _pct_expected(rgb, mask, params, None, IMAGENET_NORMALIZATION)[2:8, 3:9]
    _assert_rounded(ours, expected, mask[2:8, 3:9])
