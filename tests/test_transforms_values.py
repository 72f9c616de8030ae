"""data/transforms.py on tiny inputs, against hand-computed values: crops, flips and bilinear
resizes of 4 x 4 arrays, the random-resized-crop draws (a scripted generator records every draw
and its range), the redraw rule for crops that lose the foreground, soft mask edges, the ImageNet
normalisation, the evaluation strategies' names and sizes, and the defaults `harmonize train`
builds. Fast (well under a second of work): the file tools/mutation.sh runs for data/transforms."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from harmonize_cli.data import transforms as T
from harmonize_cli.data.transforms import ArrayReader, RandomResizedCropFlip
from harmonize_cli.errors import UsageError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class Scripted:
    """A stand-in for ``random.Random``: returns the scripted values in order (a callable value is
    called with the arguments) and records every call with its arguments."""

    def __init__(self, uniform=(), randint=(), random=()):
        self.script = {kind: list(value) if isinstance(value, (list, tuple)) else value
                       for kind, value in (("uniform", uniform), ("randint", randint), ("random", random))}
        self.calls = []

    def _next(self, kind, *args):
        self.calls.append((kind, *args))
        value = self.script[kind].pop(0) if isinstance(self.script[kind], list) else self.script[kind]
        return value(*args) if callable(value) else value

    def uniform(self, low, high):
        return self._next("uniform", low, high)

    def randint(self, low, high):
        return self._next("randint", low, high)

    def random(self):
        return self._next("random")


LOG_RATIO = ("uniform", math.log(3 / 4), math.log(4 / 3))


def grid(height, width, channels=None, start=0, step=1):
    """A uint8 array whose values count up row by row (every pixel different)."""
    values = (start + step * np.arange(height * width)).reshape(height, width)
    if channels:
        values = np.stack([values + 100 * c for c in range(channels)], axis=-1)
    return values.astype(np.uint8)


def chw(array):
    """H x W x C numpy -> C x H x W float lists, to compare with the transforms' tensors."""
    return np.transpose(np.asarray(array, np.float64), (2, 0, 1)).tolist()


# ---------------------------------------------------------------------------- readers and crops
def test_crop_box_and_the_array_reader_by_hand():
    array = grid(4, 4)
    assert T.crop_box(array, None) is array
    assert T.crop_box(array, (1, 2, 2, 1)).tolist() == [[6], [10]]  # rows 1-2, column 2
    assert T.crop_box(array, (0, 1, 3, 2)).tolist() == [[1, 2], [5, 6], [9, 10]]
    image = grid(3, 5, channels=3)
    mask3 = np.stack([grid(3, 5), grid(3, 5) + 50, grid(3, 5) + 90], axis=-1)  # channels differ
    reader = ArrayReader(image, image + 1, mask3)
    assert reader.size == (3, 5) and isinstance(reader.size, tuple)
    assert reader.read("mask").tolist() == grid(3, 5).tolist()  # the first channel of an H x W x 3 mask
    assert reader.read("real", (1, 1, 1, 2)).tolist() == [[[7, 107, 207], [8, 108, 208]]]
    assert reader.read("composite").tolist() == image.tolist()
    assert ArrayReader(image, image, grid(3, 5)).read("mask").tolist() == grid(3, 5).tolist()
    with pytest.raises(NotImplementedError):
        T.SampleReader().read("mask")


def test_to_chw_float_copies_and_handles_strided_and_read_only_input():
    source = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    out = T._to_chw_float(source)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.float32
    assert out[0, 2].tolist() == [[2.0, 5.0], [8.0, 11.0]]
    out.add_(1000)  # callers modify the result in place: the input must not change
    assert source[0, 0].tolist() == [0.0, 1.0, 2.0]
    tensor = torch.arange(4, dtype=torch.float32).reshape(2, 2)
    from_tensor = T._to_chw_float(tensor)
    assert from_tensor.shape == (1, 1, 2, 2) and from_tensor.tolist() == [[[[0.0, 1.0], [2.0, 3.0]]]]
    from_tensor.add_(1)
    assert tensor.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert T._to_chw_float(tensor, copy=False).data_ptr() == tensor.data_ptr()  # no copy when not asked
    mirrored = grid(2, 3)[:, ::-1]  # negative strides: torch cannot wrap them, so it is copied first
    assert T._to_chw_float(mirrored)[0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]
    frozen = grid(2, 3)
    frozen.setflags(write=False)
    assert T._to_chw_float(frozen)[0, 0].tolist() == [[0, 1, 2], [3, 4, 5]]


# ---------------------------------------------------------------------------- resizing
def test_resize_linear_by_hand_on_4x4():
    """OpenCV INTER_LINEAR: source x = (x + 0.5) in/out - 0.5. 4 -> 2: 0.5 and 2.5, the mean of each
    pair (no antialiasing: a wider filter would mix in the neighbours); 2 -> 4: -0.25 (clamped),
    0.25, 0.75, 1.25 (clamped), which align_corners=True would place at 0, 1/3, 2/3, 1."""
    image = grid(4, 4, step=10)  # 0 10 20 30 / 40 ... / 150
    down = T.resize_linear(image, (2, 2))
    assert down.shape == (1, 2, 2) and down.dtype == torch.float32
    assert down[0].tolist() == [[25.0, 45.0], [105.0, 125.0]]  # means of the 2 x 2 blocks
    wide = T.resize_linear(np.array([[0.0, 100.0], [0.0, 100.0]]), (1, 4))
    assert wide[0].tolist() == [[0.0, 25.0, 75.0, 100.0]]
    assert T.resize_linear(np.zeros((4, 6)), (2, 3)).shape == (1, 2, 3)  # (height, width)
    assert T.resize_linear(np.zeros((4, 6)), (np.int64(3), 2.0)).shape == (1, 3, 2)
    same = T.resize_linear(image, (4, 4))  # same size: the pixels, as a new tensor
    assert same[0].tolist() == image.astype(float).tolist()
    colour = grid(4, 4, channels=3)
    assert T.resize_linear(colour, (2, 2))[2].tolist() == [[202.5, 204.5], [210.5, 212.5]]
    as_tensor = torch.from_numpy(image.astype(np.float32))
    assert T.resize_linear(as_tensor, (2, 2))[0].tolist() == [[25.0, 45.0], [105.0, 125.0]]
    assert as_tensor[0].tolist() == [0.0, 10.0, 20.0, 30.0]


def test_resize_linear_uint8_by_hand_and_on_strided_input():
    image = grid(4, 4, channels=3, step=10)
    down = T.resize_linear_uint8(image, (2, 2))
    assert down.dtype == torch.float32 and down.shape == (3, 2, 2)
    assert down[0].tolist() == [[25.0, 45.0], [105.0, 125.0]] and down[1].tolist() == [[125.0, 145.0], [205.0, 225.0]]
    mirrored = image[:, ::-1]  # not contiguous: copied before torch sees it
    assert T.resize_linear_uint8(mirrored, (2, 2))[0].tolist() == [[45.0, 25.0], [125.0, 105.0]]
    same = T.resize_linear_uint8(image, (4, 4))
    assert same.shape == (3, 4, 4) and same[0].tolist() == grid(4, 4, step=10).astype(float).tolist()
    assert T.resize_linear_uint8(grid(4, 6, channels=3), (2.0, 3)).shape == (3, 2, 3)
    assert T.resize_linear_uint8(torch.from_numpy(image), (2, 2))[0].tolist() == [[25.0, 45.0], [105.0, 125.0]]


def test_round_pixels_rounds_half_up_and_clamps():
    values = torch.tensor([-3.0, 0.49, 0.5, 1.5, 2.4999, 254.5, 300.0])
    assert T.round_pixels(values).tolist() == [0.0, 0.0, 1.0, 2.0, 2.0, 255.0, 255.0]


def test_resize_triple_and_mask_keep_soft_edges():
    """Resize(2) on 4 x 4: images are the rounded block means (half up), the mask is the block mean
    / 255, never rounded: a soft edge stays soft."""
    image = grid(4, 4, channels=3, step=3)  # block means 7.5, 13.5, 31.5, 37.5 (+100 per channel)
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 1] = 255  # one of four: 0.25
    mask[2:, 2:] = 255
    mask[3, 0] = 51  # 51 / 4 / 255 = 0.05
    out = T.Resize(2)(ArrayReader(image, image // 3, mask))
    assert out["image"][0].tolist() == [[8.0, 14.0], [32.0, 38.0]]
    assert out["image"][1].tolist() == [[108.0, 114.0], [132.0, 138.0]]
    assert out["target"][0].tolist() == [[3.0, 5.0], [11.0, 13.0]]  # means of image // 3: 2.5, 4.5, 10.5, 12.5
    assert out["mask"].shape == (1, 2, 2)
    np.testing.assert_allclose(out["mask"][0].numpy(), [[0.25, 0.0], [0.05, 1.0]], atol=1e-6)
    native = T._resize_triple(ArrayReader(image, image, mask), (0, 1, 2, 2), None)
    assert native["image"][0].tolist() == [[3.0, 6.0], [15.0, 18.0]]
    np.testing.assert_allclose(native["mask"][0].numpy(), [[1.0, 0.0], [0.0, 0.0]])
    same = T._resize_triple(ArrayReader(image + 0.4, image, mask), None, (4, 4))  # same size: not rounded
    assert same["image"][0, 0, 0].item() == pytest.approx(0.4)
    np.testing.assert_allclose(T._resize_mask(mask, (4, 4))[0].numpy(), mask / 255.0, atol=1e-7)
    np.testing.assert_allclose(T._resize_mask(mask, None)[0].numpy(), mask / 255.0, atol=1e-7)
    np.testing.assert_allclose(T._resize_mask(mask, (1, 1))[0].numpy(), [[0.25]], atol=1e-7)  # the centre 4


def test_normalize_and_denormalize_by_hand():
    mean_pixel = torch.tensor([255 * m for m in MEAN]).view(3, 1, 1)
    np.testing.assert_allclose(T.normalize(mean_pixel).flatten().numpy(), [0.0, 0.0, 0.0], atol=1e-6)
    image = torch.zeros(2, 3, 1, 2)
    image[:, :, 0, 1] = 255.0
    out = T.normalize(image)
    expected_zero = [-m / s for m, s in zip(MEAN, STD)]  # -2.1179, -2.0357, -1.8044
    expected_full = [(1 - m) / s for m, s in zip(MEAN, STD)]  # 2.2489, 2.4286, 2.64
    np.testing.assert_allclose(out[1, :, 0, 0].numpy(), expected_zero, rtol=1e-6)
    np.testing.assert_allclose(out[0, :, 0, 1].numpy(), expected_full, rtol=1e-6)
    back = T.denormalize(torch.tensor([0.0, 0.0, 0.0]).view(3, 1, 1))
    np.testing.assert_allclose(back.flatten().numpy(), [255 * m for m in MEAN], rtol=1e-6)
    one = T.denormalize(torch.ones(1, 3, 1, 1))
    np.testing.assert_allclose(one.flatten().numpy(), [255 * (s + m) for m, s in zip(MEAN, STD)], rtol=1e-6)
    meta = T.normalize(torch.empty(3, 2, 2, device="meta"))  # another device: the constants follow it
    assert meta.device.type == "meta" and meta.shape == (3, 2, 2)
    back_meta = T.denormalize(torch.empty(1, 3, 2, 2, device="meta"))
    assert back_meta.device.type == "meta" and back_meta.shape == (1, 3, 2, 2)


# ---------------------------------------------------------------------------- the crop draw
def test_sample_box_uses_the_draws_by_hand():
    """8 x 12 image (area 96): area fraction 0.5 -> 48, aspect 4/3 -> width round(sqrt(64)) = 8,
    height round(sqrt(36)) = 6; top from randint(0, 2), left from randint(0, 4)."""
    rng = Scripted(uniform=[0.5, math.log(4 / 3)], randint=[2, 1])
    transform = RandomResizedCropFlip(4, rng=rng)
    assert transform.sample_box(8, 12) == (2, 1, 6, 8)
    assert rng.calls == [("uniform", 0.5, 1.0), LOG_RATIO, ("randint", 0, 2), ("randint", 0, 4)]
    rng = Scripted(uniform=[0.5, math.log(3 / 4)], randint=[0, 0])  # aspect 3/4: 6 wide, 8 high
    assert RandomResizedCropFlip(4, rng=rng).sample_box(8, 12) == (0, 0, 8, 6)
    assert rng.calls[2:] == [("randint", 0, 0), ("randint", 0, 6)]


def test_sample_box_rejects_empty_and_oversized_crops_then_accepts_the_whole_image():
    """4 x 4: a 0.01 area rounds to a 0 x 0 crop, rejected; a full area at aspect 4/3 is 5 wide and
    at 3/4 5 high (too large), rejected; the full area at aspect 1 is the whole image, accepted."""
    rng = Scripted(uniform=[0.01, 0.0, 1.0, math.log(4 / 3), 1.0, math.log(3 / 4), 1.0, 0.0], randint=[0, 0])
    assert RandomResizedCropFlip(4, rng=rng).sample_box(4, 4) == (0, 0, 4, 4)
    assert [call[0] for call in rng.calls] == ["uniform"] * 8 + ["randint"] * 2
    # area 0.2 at aspect 1/4: 0 wide, 1 high; at aspect 4: 1 wide, 0 high; both rejected
    rng = Scripted(uniform=[0.2 / 16, math.log(1 / 4), 0.2 / 16, math.log(4), 1.0, 0.0], randint=[0, 0])
    assert RandomResizedCropFlip(4, rng=rng).sample_box(4, 4) == (0, 0, 4, 4)
    assert [call[0] for call in rng.calls] == ["uniform"] * 6 + ["randint"] * 2
    assert rng.calls[-2:] == [("randint", 0, 0), ("randint", 0, 0)]
    rng = Scripted(uniform=[1.0, 0.0], randint=[0, 0])  # a 1 x 1 image: the 1 x 1 crop is a draw
    assert RandomResizedCropFlip(4, rng=rng).sample_box(1, 1) == (0, 0, 1, 1)
    assert len(rng.calls) == 4


@pytest.mark.parametrize("height, width, box", [
    (20, 10, (3, 0, 13, 10)),  # too tall for 3/4: width 10, height round(10 / 0.75) = 13, centred
    (10, 20, (0, 3, 10, 13)),  # too wide for 4/3: height 10, width round(10 * 4/3) = 13, centred
    (4, 4, (0, 0, 4, 4)),  # square: the whole image
    (5, 3, (0, 0, 4, 3)),  # aspect 0.6 < 0.75: width 3, height min(5, round(4)) = 4 -> top 1 // 2 = 0
])
def test_after_ten_failed_draws_the_crop_is_the_centre(height, width, box):
    rng = Scripted(uniform=lambda low, high: high)  # the whole area at aspect 4/3: never fits
    assert RandomResizedCropFlip(4, rng=rng).sample_box(height, width) == box
    assert rng.calls == [("uniform", 0.5, 1.0), LOG_RATIO] * 10


def test_harmonize_trains_with_the_papers_crop_scale_ratio_and_flip():
    """train_transform(crop) is what `harmonize train` builds (training/model_and_data.py):
    RandomResizedCrop scale 0.5-1, ratio 3/4-4/3, flip 0.5, the uint8 kernel."""
    transform = T.train_transform(48)
    assert isinstance(transform, RandomResizedCropFlip)
    assert transform.size == (48, 48) and transform.scale == (0.5, 1.0)
    assert transform.ratio == (3 / 4, 4 / 3) and transform.flip_prob == 0.5 and transform.exact is False
    assert transform.max_redraws == 50 and transform._rng is None and transform.rng is random
    rng = Scripted(uniform=lambda low, high: low if low > 0 else 0.0, randint=lambda low, high: high)
    transform._rng = rng
    assert transform.sample_box(64, 64) == (64 - 45, 64 - 45, 45, 45)  # round(sqrt(0.5 * 4096)) = 45
    assert rng.calls[:2] == [("uniform", 0.5, 1.0), LOG_RATIO]
    other = T.train_transform((32, 40), scale=(0.2, 0.3), ratio=(1, 2), flip_prob=0.25, exact=True)
    assert (other.size, other.scale, other.ratio, other.flip_prob, other.exact) == ((32, 40), (0.2, 0.3), (1, 2),
                                                                                    0.25, True)
    assert T.train_transform().size == (256, 256)  # the documented default crop
    default = RandomResizedCropFlip()
    assert (default.size, default.scale, default.ratio, default.flip_prob, default.max_redraws, default.exact) == (
        (256, 256), (0.5, 1.0), (3 / 4, 4 / 3), 0.5, 50, False)


def test_seeded_draws_equal_pythons_random_with_the_same_seed():
    """With random.Random(7) the box is the torchvision rule applied to the same seed's draws,
    computed here from a second random.Random(7): area and log-aspect draws until the crop fits
    (some draws of a 30 x 40 image do not), then top and left."""
    transform = RandomResizedCropFlip(16, rng=random.Random(7))
    draws = random.Random(7)
    rejected = 0
    for _ in range(40):
        while True:
            area = draws.uniform(0.5, 1.0) * 30 * 40
            aspect = math.exp(draws.uniform(math.log(3 / 4), math.log(4 / 3)))
            width, height = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if width <= 40 and height <= 30:
                break
            rejected += 1
        top, left = draws.randint(0, 30 - height), draws.randint(0, 40 - width)
        assert transform.sample_box(30, 40) == (top, left, height, width)
    assert 0 < rejected


# ---------------------------------------------------------------------------- the whole transform
def _box_draws(top, left, size, area):
    """The scripted draws of one sample_box call giving the square box (top, left, size, size)."""
    return [size * size / area, 0.0], [top, left]


def test_crop_without_resize_and_flip_of_all_three_by_hand():
    image = grid(4, 4, channels=3)
    real = grid(4, 4, channels=3, start=50)
    mask = grid(4, 4, step=16)
    uniform, randint = _box_draws(1, 2, 2, 16)
    rng = Scripted(uniform=uniform, randint=randint, random=[0.5])  # 0.5 is not < 0.5: no flip
    out = RandomResizedCropFlip(2, scale=(0.25, 0.25), rng=rng)(ArrayReader(image, real, mask))
    assert out["image"].tolist() == chw(image[1:3, 2:4]) and out["target"].tolist() == chw(real[1:3, 2:4])
    np.testing.assert_allclose(out["mask"][0].numpy(), [[96 / 255, 112 / 255], [160 / 255, 176 / 255]], rtol=1e-6)
    assert rng.calls[-1] == ("random",) and len(rng.calls) == 5  # keep_background_prob -1: no second draw
    rng = Scripted(uniform=uniform, randint=randint, random=[0.49])  # flipped left-right, all three
    out = RandomResizedCropFlip(2, scale=(0.25, 0.25), rng=rng)(ArrayReader(image, real, mask))
    assert out["image"].tolist() == chw(image[1:3, 3:1:-1]) and out["target"].tolist() == chw(real[1:3, 3:1:-1])
    np.testing.assert_allclose(out["mask"][0].numpy(), [[112 / 255, 96 / 255], [176 / 255, 160 / 255]], rtol=1e-6)
    rng = Scripted(uniform=uniform, randint=randint, random=[0.7])  # flip_prob 0.75
    flipped = RandomResizedCropFlip(2, scale=(0.25, 0.25), flip_prob=0.75, rng=rng)(ArrayReader(image, real, mask))
    assert flipped["image"].tolist() == chw(image[1:3, 3:1:-1])


def test_resized_crop_is_the_rounded_block_mean_and_the_mask_stays_soft():
    """The whole 4 x 4 image resized to 2 x 2: block means 7.5 .. 37.5 -> 8 .. 38 (exact path, half
    up); the uint8 kernel is within one level. The mask block with one 255 of four is 0.25."""
    image = grid(4, 4, channels=3, step=3)
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 255
    mask[2:, :2] = 255
    draws = dict(uniform=[1.0, 0.0], randint=[0, 0], random=[0.9])
    exact = RandomResizedCropFlip(2, rng=Scripted(**draws), exact=True)(ArrayReader(image, image, mask))
    assert exact["image"][0].tolist() == [[8.0, 14.0], [32.0, 38.0]]
    np.testing.assert_allclose(exact["mask"][0].numpy(), [[0.25, 0.0], [1.0, 0.0]], atol=1e-7)
    fast = RandomResizedCropFlip(2, rng=Scripted(**draws))(ArrayReader(image, image, mask))
    means = np.array([[7.5, 13.5], [31.5, 37.5]])
    assert np.abs(fast["image"][0].numpy() - means).max() <= 0.5 and fast["image"].dtype == torch.float32
    np.testing.assert_allclose(fast["mask"][0].numpy(), [[0.25, 0.0], [1.0, 0.0]], atol=1e-7)
    # 3 x 3 -> 2 x 2 where the two paths differ: top-right exact value 134.3125 -> 134 (uint8 kernel: 135)
    odd = np.array([[159, 144, 125], [58, 199, 131], [145, 20, 84]], np.uint8)[:, :, None].repeat(3, axis=2)
    draws = dict(uniform=[1.0, 0.0], randint=[0, 0], random=[0.9])
    out = RandomResizedCropFlip(2, rng=Scripted(**draws), exact=True)(ArrayReader(odd, odd, np.zeros((3, 3))))
    assert out["image"][0].tolist() == [[140.0, 134.0], [109.0, 88.0]]  # 139.75, 134.3125, 108.625, 88


def test_a_crop_that_loses_the_foreground_is_redrawn_by_the_rule():
    """keep_background_prob 0: a crop whose mask sums to 1.0 (one pixel) is drawn again, a crop
    summing to 2.0 is kept; each draw is box, flip, keep (in that order)."""
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 255
    mask[3, 2:] = 255
    image = grid(4, 4, channels=3)
    first, second = _box_draws(0, 0, 2, 16), _box_draws(2, 2, 2, 16)
    rng = Scripted(uniform=first[0] + second[0], randint=first[1] + second[1], random=[0.9, 0.0, 0.9, 0.5])
    out = RandomResizedCropFlip(2, scale=(0.25, 0.25), rng=rng)(ArrayReader(image, image, mask), 0.0)
    np.testing.assert_allclose(out["mask"][0].numpy(), [[0.0, 0.0], [1.0, 1.0]])
    assert out["image"].tolist() == chw(image[2:4, 2:4])
    assert [call[0] for call in rng.calls] == ["uniform", "uniform", "randint", "randint", "random", "random"] * 2


@pytest.mark.parametrize("keep, draw, redrawn", [(0.5, 0.4, False), (0.5, 0.5, True), (0.0, 0.0, True)])
def test_an_empty_crop_is_kept_with_keep_background_prob(keep, draw, redrawn):
    mask = np.zeros((4, 4), np.uint8)
    mask[3, 2:] = 255
    first, second = _box_draws(0, 0, 2, 16), _box_draws(2, 2, 2, 16)
    rng = Scripted(uniform=first[0] + second[0], randint=first[1] + second[1], random=[0.9, draw, 0.9, 0.9])
    image = grid(4, 4, channels=3)
    out = RandomResizedCropFlip(2, scale=(0.25, 0.25), rng=rng)(ArrayReader(image, image, mask), keep)
    assert out["mask"].sum().item() == (2.0 if redrawn else 0.0)
    assert len(rng.calls) == (12 if redrawn else 6)


def test_redraws_stop_after_max_redraws_and_negative_keep_never_redraws():
    empty = np.zeros((4, 4), np.uint8)
    image = grid(4, 4, channels=3)
    rng = Scripted(uniform=lambda low, high: 0.25 if low > 0 else 0.0, randint=0, random=0.9)
    out = RandomResizedCropFlip(2, scale=(0.25, 0.25), max_redraws=2, rng=rng)(ArrayReader(image, image, empty), 0.0)
    assert out["mask"].sum().item() == 0.0
    assert sum(call[0] == "randint" for call in rng.calls) == 6  # the first draw and two redraws
    rng = Scripted(uniform=lambda low, high: 0.25 if low > 0 else 0.0, randint=0, random=0.9)
    RandomResizedCropFlip(2, scale=(0.25, 0.25), rng=rng)(ArrayReader(image, image, empty), 0.0)
    assert sum(call[0] == "randint" for call in rng.calls) == 2 * 51  # the default: 50 redraws
    for keep in ((), (-1.0,), (-0.5,)):
        rng = Scripted(uniform=lambda low, high: 0.25 if low > 0 else 0.0, randint=0, random=0.9)
        RandomResizedCropFlip(2, scale=(0.25, 0.25), rng=rng)(ArrayReader(image, image, empty), *keep)
        assert len(rng.calls) == 5  # one draw, one flip decision, nothing else


def test_module_generator_is_used_without_an_rng():
    transform = RandomResizedCropFlip(16)
    random.seed(3)
    box = transform.sample_box(30, 40)
    random.seed(3)
    assert RandomResizedCropFlip(16, rng=random.Random(3)).sample_box(30, 40) == box


# ---------------------------------------------------------------------------- evaluation resizes
def test_limit_longest_side_by_hand():
    assert T.longest_side_size(50, 1100, 1024) == (47, 1024)  # 50 * 1024 / 1100 = 46.5 -> 47
    assert T.longest_side_size(1100, 50, 1024) == (1024, 47)
    assert T.longest_side_size(1024, 1024, 1024) is None and T.longest_side_size(10, 20, 1024) is None
    assert T.longest_side_size(1, 3000, 1000) == (1, 1000)  # 0.33 rounds to 0: at least one pixel
    assert T.longest_side_size(3000, 1, 1000) == (1000, 1)
    assert T.longest_side_size(30, 45, 20) == (13, 20)  # 30 * 20/45 = 13.33
    image = grid(2, 8, channels=3, step=2)  # 0 2 4 .. 14 / 16 .. 30
    mask = np.zeros((2, 8), np.uint8)
    mask[0, :3] = 255
    out = T.LimitLongestSide(4)(ArrayReader(image, image, mask))
    assert out["image"][0].tolist() == [[9.0, 13.0, 17.0, 21.0]]  # the 2 x 2 block means 9, 13, 17, 21
    np.testing.assert_allclose(out["mask"][0].numpy(), [[0.5, 0.25, 0.0, 0.0]])
    kept = T.LimitLongestSide(8)(ArrayReader(image, image, mask))
    assert kept["image"].tolist() == chw(image)
    assert T.LimitLongestSide().max_side == 1024 and T.LimitLongestSide("16").max_side == 16


def test_resize_and_no_resize_by_hand():
    image = grid(4, 4, channels=3, step=3)
    mask = np.full((4, 4), 51, np.uint8)
    assert T.Resize().size == (256, 256) and T.Resize((2, 3)).size == (2, 3)
    out = T.Resize((1, 2))(ArrayReader(image, image, mask))
    # height 4 -> 1: source row 1.5, the mean of rows 1 and 2 only (no antialiasing); 4 -> 2 columns: pairs.
    assert out["image"][0].tolist() == [[20.0, 26.0]]  # (12 + 15 + 24 + 27) / 4 = 19.5, (18 + 21 + 30 + 33) / 4
    native = T.NoResize()(ArrayReader(image, image + 1, mask))
    assert native["image"].tolist() == chw(image) and native["target"].tolist() == chw(image + 1)
    np.testing.assert_allclose(native["mask"].numpy(), np.full((1, 4, 4), 0.2), rtol=1e-6)


@pytest.mark.parametrize("name, kind, value", [
    ("fixed256", T.Resize, (256, 256)), ("Fixed256", T.Resize, (256, 256)), (" fixed_32 ", T.Resize, (32, 32)),
    ("FIXED-64", T.Resize, (64, 64)), ("limit1024", T.LimitLongestSide, 1024),
    ("LimitLongest1024", T.LimitLongestSide, 1024), ("limit_longest-512", T.LimitLongestSide, 512),
    ("limit7", T.LimitLongestSide, 7), ("None", T.NoResize, None), ("native", T.NoResize, None),
    ("no_resize", T.NoResize, None), ("NoResize", T.NoResize, None),
])
def test_eval_strategy_names(name, kind, value):
    transform = T.eval_transform(name)
    assert type(transform) is kind
    if kind is T.Resize:
        assert transform.size == value
    elif kind is T.LimitLongestSide:
        assert transform.max_side == value


@pytest.mark.parametrize("name", ["bicubic", "fixed", "fixedx", "limit", "limitlongest", "limitx10", "fixed 1"])
def test_unknown_eval_strategy_is_a_usage_error_naming_the_choices(name):
    with pytest.raises(UsageError) as info:
        T.eval_transform(name)
    assert info.value.message == f"unknown resize strategy {name!r}"
    assert info.value.hint == "use one of fixed256, limit1024, none"


def test_eval_transform_default_and_repr():
    assert type(T.eval_transform()) is T.Resize and T.eval_transform().size == (256, 256)
    assert repr(T.Resize(4)) == "Resize(size=(4, 4))"
    assert repr(T.LimitLongestSide(9)) == "LimitLongestSide(max_side=9)"
    assert repr(T.NoResize()) == "NoResize()"
    crop = RandomResizedCropFlip(8, rng=random.Random(0))
    assert repr(crop) == ("RandomResizedCropFlip(size=(8, 8), scale=(0.5, 1.0), ratio=(0.75, 1.3333333333333333), "
                          "flip_prob=0.5, max_redraws=50, exact=False)")
    assert T._pair(5) == (5, 5) and T._pair((3.0, np.int64(4))) == (3, 4)
    assert all(type(v) is int for v in T._pair((3.0, np.int64(4))))
    with pytest.raises(NotImplementedError):
        T.Transform()(ArrayReader(grid(2, 2, 3), grid(2, 2, 3), grid(2, 2)))
