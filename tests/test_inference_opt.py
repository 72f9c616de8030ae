"""The optimised inference path (folded batch norms, vectorised ELU, channels-last weights) computes
the same function as the networks themselves; cheap architecture detection; weights loading."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harmonize_cli import zoo
from harmonize_cli.inference_opt import (FastELU, OneDNNConv2d, fold_batchnorm, optimizable, optimize_for_inference,
                                        use_onednn_convolutions)
from parity_utils import fixture_names, generate_weights, load_fixture, reference_layouts

TOLERANCE = 5e-4  # the parity criterion of shared/parity/README.md


# ------------------------------------------------------------------------------------ the pieces

def test_fast_elu_is_elu():
    x = torch.cat((torch.linspace(-30, 30, 20001), torch.tensor([0.0, -0.0, 1e-8, -1e-8, -88.0, 50.0])))
    assert torch.allclose(FastELU()(x), F.elu(x), atol=1e-6, rtol=0)
    assert torch.allclose(FastELU(0.5)(x), F.elu(x, alpha=0.5), atol=1e-6, rtol=0)
    assert torch.equal(FastELU()(torch.tensor([2.5, 0.0])), torch.tensor([2.5, 0.0]))  # positive side exact
    with pytest.raises(ValueError):
        FastELU(1.5)  # max(x, alpha * (e^x - 1)) is ELU only for alpha <= 1


def _random_statistics(module, generator):
    for norm in module.modules():
        if isinstance(norm, nn.BatchNorm2d):
            norm.running_mean.normal_(0.0, 0.5, generator=generator)
            norm.running_var.uniform_(0.3, 2.0, generator=generator)
            if norm.affine:
                norm.weight.data.uniform_(0.5, 1.5, generator=generator)
                norm.bias.data.normal_(0.0, 0.3, generator=generator)


def test_fold_batchnorm_keeps_the_function_of_every_convolution_kind():
    torch.manual_seed(0)  # the convolutions' own initialisation
    generator = torch.Generator().manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ELU(),
        nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.ConvTranspose2d(6, 4, 3, padding=1, groups=2), nn.BatchNorm2d(4, affine=False),
        nn.Conv2d(4, 6, 1, groups=2), nn.Sequential(nn.BatchNorm2d(6), nn.ReLU()),  # the OCR layout
    ).eval()
    _random_statistics(network, generator)
    x = torch.randn(2, 4, 9, 11, generator=generator)
    with torch.no_grad():
        expected = network(x)
        folded = fold_batchnorm(network)
        got = network(x)
    assert folded == 4
    assert not any(isinstance(module, nn.BatchNorm2d) for module in network.modules())
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["conv", "transposed"])
def test_fold_batchnorm_by_hand_with_dead_channels(kind):
    """Closed form: a 1x1 convolution (weight w, bias b) then a norm (mean m, var v, gamma g, beta
    c, eps e) folds to w' = w g / sqrt(v + e), b' = (b - m) g / sqrt(v + e) + c. Channel 1 is dead
    (running_var 0, as in trained networks): without eps its scale is infinite; channel 2 has
    var 1e-7, where a dropped or misplaced eps changes the scale by ~100x."""
    if kind == "conv":
        conv = nn.Conv2d(2, 3, 1, bias=True)
    else:
        conv = nn.ConvTranspose2d(2, 3, 1, bias=True)
    norm = nn.BatchNorm2d(3, eps=1e-5)
    weights = torch.tensor([[1.0, -2.0], [0.5, 0.25], [3.0, 1.0]])  # out x in
    with torch.no_grad():
        conv.weight.copy_(weights.view(3, 2, 1, 1) if kind == "conv" else weights.t().reshape(2, 3, 1, 1))
        conv.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        norm.running_mean.copy_(torch.tensor([0.5, 1.0, -1.0]))
        norm.running_var.copy_(torch.tensor([4.0, 0.0, 1e-7]))
        norm.weight.copy_(torch.tensor([2.0, 1.5, 0.5]))
        norm.bias.copy_(torch.tensor([1.0, 0.0, -0.5]))
    network = nn.Sequential(conv, norm).eval()
    scale = [2.0 / (4.0 + 1e-5) ** 0.5, 1.5 / 1e-5 ** 0.5, 0.5 / (1e-7 + 1e-5) ** 0.5]
    expected_weight = [[w * scale[o] for w in row] for o, row in enumerate(weights.tolist())]
    expected_bias = [(0.1 - 0.5) * scale[0] + 1.0, (-0.2 - 1.0) * scale[1], (0.3 + 1.0) * scale[2] - 0.5]
    x = torch.tensor([[[[1.0]], [[2.0]]]])  # one pixel, inputs 1 and 2
    expected_output = [ew[0] * 1.0 + ew[1] * 2.0 + eb for ew, eb in zip(expected_weight, expected_bias)]
    assert fold_batchnorm(network) == 1 and isinstance(network[1], nn.Identity)
    folded = conv.weight.detach().reshape(3, 2) if kind == "conv" else conv.weight.detach().reshape(2, 3).t()
    assert torch.allclose(folded.double(), torch.tensor(expected_weight, dtype=torch.float64), rtol=1e-6)
    assert torch.allclose(conv.bias.detach().double(), torch.tensor(expected_bias, dtype=torch.float64), rtol=1e-6)
    with torch.no_grad():
        got = network(x).flatten().double()
    assert torch.isfinite(got).all()
    assert torch.allclose(got, torch.tensor(expected_output, dtype=torch.float64), rtol=1e-5)


def test_fold_batchnorm_leaves_training_norms_and_lone_norms_alone():
    network = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 3, 1), nn.ReLU(), nn.BatchNorm2d(3))
    assert fold_batchnorm(network.eval()) == 0  # no norm directly after a convolution
    training = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).train()
    assert fold_batchnorm(training) == 0  # batch statistics are not constants


def test_optimised_copy_is_a_copy_and_runs_channels_last_on_the_cpu():
    network = zoo.create_model("idih").eval()
    before = {key: value.clone() for key, value in network.state_dict().items()}
    fast = optimize_for_inference(network, "cpu")
    assert fast is not network and not fast.training
    assert all(torch.equal(value, before[key]) for key, value in network.state_dict().items())
    assert any(isinstance(module, nn.BatchNorm2d) for module in network.modules())  # the original keeps its norms
    assert not any(isinstance(module, (nn.BatchNorm2d, nn.ELU)) for module in fast.modules())
    assert any(isinstance(module, FastELU) for module in fast.modules())
    conv = next(module for module in fast.modules() if isinstance(module, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    original = next(module for module in network.modules() if isinstance(module, nn.Conv2d))
    assert original.weight.is_contiguous()  # shared tensors are never converted in place
    baseline = zoo.create_model("lab-transfer")
    assert not optimizable(baseline) and optimize_for_inference(baseline) is baseline


def test_optimised_copy_shares_unchanged_storage_and_leaves_the_original_trainable():
    network = zoo.create_model("idih-hrnet-w18s").train()
    parameters = dict(network.named_parameters())
    pointers = {name: value.data_ptr() for name, value in parameters.items()}
    fast = optimize_for_inference(network, "cpu")
    assert network.training and all(value.requires_grad for value in network.parameters())
    assert dict(network.named_parameters()) == parameters  # the same parameter objects
    assert {name: value.data_ptr() for name, value in parameters.items()} == pointers
    assert not any(value.requires_grad for value in fast.parameters())
    own = dict(fast.named_parameters())
    # tensors the rewrites do not change (biases of unfolded layers, 1-D weights) share storage
    shared = [name for name, value in own.items() if value.dim() < 4 and name in parameters
              and value.data_ptr() == parameters[name].data_ptr()]
    assert shared
    # optimising must not change the original: its outputs in training mode stay the same
    network.eval()
    image, mask = torch.rand(1, 3, 256, 256), torch.ones(1, 1, 256, 256)
    with torch.no_grad():
        before = network(image, mask)
        optimize_for_inference(network, "cpu")
        assert torch.equal(network(image, mask), before)


@pytest.mark.parametrize("shape, options", [
    ((1, 8, 9, 11), dict(out_channels=6, kernel_size=3, padding=1)),
    ((2, 8, 16, 16), dict(out_channels=12, kernel_size=1, bias=False)),
    ((1, 8, 17, 13), dict(out_channels=8, kernel_size=3, stride=2, padding=2, dilation=2, groups=4)),
    ((1, 6, 10, 10), dict(out_channels=4, kernel_size=(3, 5), padding=(1, 2), stride=(1, 2))),
    ((1, 4, 8, 8), dict(out_channels=4, kernel_size=3, padding="same")),  # string padding: PyTorch's path
    ((1, 4, 8, 8), dict(out_channels=4, kernel_size=3, padding=1, padding_mode="reflect")),
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_onednn_convolution_is_the_convolution(shape, options, channels_last):
    generator = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(shape[1], **options)
    x = torch.randn(*shape, generator=generator)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = conv(x)
        assert use_onednn_convolutions(nn.Sequential(conv)) == 1 and type(conv) is OneDNNConv2d
        got = conv(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", fixture_names())
def test_optimised_network_matches_the_reference_fixtures(name):
    """Folded batch norms, FastELU and channels-last weights stay within the parity tolerance of
    the reference outputs (and of our unoptimised network)."""
    fixture = load_fixture(name)
    weights, _ = generate_weights(fixture["manifest"], fixture["seed"])
    network = zoo.create_model(name, weights=weights)
    fast = optimize_for_inference(network, "cpu")
    with torch.inference_mode():
        plain, optimised = network(fixture["image"], fixture["mask"]), fast(fixture["image"], fixture["mask"])
    assert (optimised - fixture["expected"]).abs().max().item() <= TOLERANCE
    assert (optimised - plain).abs().max().item() <= TOLERANCE
    assert (optimised - plain).abs().max().item() > 0  # it really is another computation


@pytest.mark.parametrize("reference_name", [
    pytest.param("deeplab_r34_idih256", marks=pytest.mark.slow),  # 13 s: in CI's slow pass
    pytest.param("hrnet18_v2p_idih256", marks=pytest.mark.slow),  # 26 s
    "improved_sedih256",
])
def test_optimised_network_matches_architectures_without_fixtures(reference_name):
    """Networks without a published fixture (DeepLab's ResNet blocks, the v2p pyramid, masked
    channel attention), with weights by the fixtures' rule: the optimised copy is as close to the
    float64 computation as the network itself. This pins the optimisation only (a bug shared by the
    network and its float64 copy passes it); the architectures' own values are pinned by the
    parity fixtures (test_zoo.py) and, for DeepLab's mask fusion, by
    test_backboned.py::test_deeplab_stem_adds_the_encoded_mask_before_pooling."""
    weights, _ = generate_weights(reference_layouts()[reference_name]["state_dict"], seed=0)
    network = zoo.create_model(reference_name, weights=weights)
    fast = optimize_for_inference(network, "cpu")
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 256, 256, generator=generator)
    mask = (torch.rand(1, 1, 256, 256, generator=generator) > 0.6).float()
    with torch.inference_mode():
        exact = copy.deepcopy(network).double()(image.double(), mask.double())
        assert (network(image, mask).double() - exact).abs().max().item() <= TOLERANCE
        assert (fast(image, mask).double() - exact).abs().max().item() <= TOLERANCE
