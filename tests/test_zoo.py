"""Model zoo: reference layouts, parity fixtures, parameter counts, loading, detection."""

from __future__ import annotations

import pytest
import torch

from harmonize_cli import zoo
from harmonize_cli.errors import UsageError, WeightsError
from parity_utils import (
    fixture_names,
    generate_weights,
    load_fixture,
    reference_layouts,
    reference_names,
    zero_state_dict,
)

REFERENCE_NAMES = reference_names()
BACKBONED = {"HRNetIHModel", "DeepLabIHModel"}


def _is_backboned(reference_name):
    return reference_layouts()[reference_name]["model_class"] in BACKBONED


@pytest.mark.parametrize("reference_name", REFERENCE_NAMES)
def test_reference_layout_and_parameter_count(reference_name):
    """Every alias builds a model whose state dict is the reference's, key for key, in order."""
    entry = reference_layouts()[reference_name]
    spec = zoo.get_arch(reference_name)
    assert reference_name in spec.aliases
    with torch.device("meta"):
        model = spec.build()
    ours = [[key, list(value.shape), str(value.dtype).replace("torch.", "")]
            for key, value in model.state_dict().items()]
    assert ours == [list(item) for item in entry["state_dict"]]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == entry["num_params"] == spec.num_params


@pytest.mark.parametrize("reference_name", REFERENCE_NAMES)
def test_reference_checkpoint_loads_strictly_and_is_detected(reference_name):
    entry = reference_layouts()[reference_name]
    state = zero_state_dict(entry)
    spec = zoo.get_arch(reference_name)
    assert zoo.detect_arch(state) == spec.name
    with torch.device("meta"):
        model = spec.build()
    model.load_state_dict(state, strict=True, assign=True)


@pytest.mark.parametrize("name", fixture_names())
def test_forward_parity_with_reference_fixture(name):
    fixture = load_fixture(name)
    weights, digest = generate_weights(fixture["manifest"], fixture["seed"])
    assert digest == fixture["sha256"], "weight rule disagrees with the fixture"
    model = zoo.create_model(name, weights=weights)
    assert not model.training
    with torch.no_grad():
        output = model(fixture["image"], fixture["mask"])
    assert output.shape == fixture["expected"].shape
    assert (output - fixture["expected"]).abs().max().item() <= 5e-4


def _smallest_input(spec, model):
    """DIH-based networks need their training size (depth-7 DIH collapses to 1x1 at 256);
    U-Net based ones need only a few multiples of their size divisor."""
    if spec.input_size is None:
        return 32
    base = spec.params.get("base_config", {}).get("model", type(model).__name__)
    if "SSAM" in base:
        return max(2 * model.size_divisor, 64)
    return spec.input_size


def _forward_backward_cases():
    """Backboned networks take 5-20 s each on 2 cores: one runs by default, the rest are `slow`
    (CI runs them in a second pass, see .ci/run)."""
    for spec in zoo.ARCHITECTURES:
        if spec.family == "pctnet":
            continue  # dict outputs, full-resolution inputs: tests/test_pctnet.py runs them both ways
        heavy = spec.backbone is not None and spec.name != "idih-hrnet-w18s"
        yield pytest.param(spec.name, marks=pytest.mark.slow) if heavy else spec.name


@pytest.mark.parametrize("name", list(_forward_backward_cases()))
def test_forward_and_backward_on_cpu(name):
    """Every architecture runs forward and backward at the smallest size it allows."""
    torch.manual_seed(0)
    spec = zoo.get_arch(name)
    model = zoo.create_model(name)
    model.train()
    size = _smallest_input(spec, model)
    image = torch.randn(2, 3, size, size)
    mask = torch.zeros(2, 1, size, size)
    mask[:, :, size // 4: size // 2, size // 4: size // 2] = 1
    output = model(image, mask)
    assert output.shape == image.shape
    if spec.needs_weights:
        output.pow(2).mean().backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"parameters without gradient: {missing[:3]}"


def test_every_architecture_has_a_unique_layout():
    names = [s.name for s in zoo.ARCHITECTURES if s.needs_weights]
    from harmonize_cli.zoo.checkpoints import layout_of

    layouts = {}
    for name in names:
        frozen = tuple(sorted(layout_of(name).items()))
        assert frozen not in layouts, f"{name} and {layouts.get(frozen)} share a layout"
        layouts[frozen] = name


def test_extra_paper_rows_have_parameter_counts():
    for spec in zoo.ARCHITECTURES:
        if spec.needs_weights:
            with torch.device("meta"):
                model = spec.build()
            count = sum(p.numel() for p in model.parameters() if p.requires_grad)
            assert spec.num_params == count, spec.name


def test_aliases_and_unknown_names():
    assert zoo.get_arch("improved_dih256").name == "idih"
    assert zoo.get_arch("IDIH").name == "idih"
    with pytest.raises(UsageError, match="did you mean"):
        zoo.get_arch("idih-hrnet-w18x")


def test_list_models_metadata():
    rows = {row["name"]: row for row in zoo.list_models()}
    assert rows["idih-hrnet-w18s"]["aliases"] == ["hrnet18s_idih256"]
    assert rows["idih-hrnet-w18s"]["pretrained"]["metrics"]["All"] == {"MSE": 22.82, "PSNR": 38.15}
    assert rows["lab-transfer"]["num_params"] == 0
    assert {"composite", "lab-transfer", "is2am-hrnet-w32", "idih-hrnet-w18s-nomask"} <= set(rows)


def test_every_released_checkpoint_points_at_a_registered_architecture():
    for weights in zoo.HARMONIZATION_WEIGHTS:
        spec = zoo.get_arch(weights.arch)
        assert spec.input_size == weights.input_size
        assert weights.url.endswith(weights.filename)


# -- load_weights: formats and errors ---------------------------------------------------------

def _idih_state(seed=0):
    torch.manual_seed(seed)
    return zoo.create_model("idih").state_dict()


def test_load_weights_accepts_paths_train_checkpoints_and_ddp_prefixes(tmp_path):
    state = _idih_state()
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    ours = tmp_path / "ours.pth"
    torch.save({"model": state, "optimizer": {}, "epoch": 3, "meta": {"arch": "idih"}}, ours)
    ddp = tmp_path / "ddp.pth"
    torch.save({"module." + k: v for k, v in state.items()}, ddp)
    for source in (plain, str(ours), ddp, state):
        model = zoo.create_model("idih", init=False)
        zoo.load_weights(model, source)
        loaded = model.state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert zoo.detect_arch(torch.load(ours)) == "idih"


def test_mismatched_checkpoint_names_the_architecture_it_looks_like():
    state = zoo.create_model("is2am").state_dict()
    model = zoo.create_model("idih")
    with pytest.raises(WeightsError) as info:
        zoo.load_weights(model, state)
    message = str(info.value)
    assert "look like is2am" in message
    assert "do not fit idih:" in message  # named by its architecture, not its class
    assert "88 missing keys, first 'encoder.block0.block.0.weight'" in message
    assert "unexpected keys, first" in message
    assert "\n" not in message


def test_truncated_or_foreign_files_are_rejected(tmp_path):
    path = tmp_path / "broken.pth"
    torch.save(_idih_state(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="cannot read weights"):
        zoo.load_weights(zoo.create_model("idih"), path)
    with pytest.raises(WeightsError, match="does not exist"):
        zoo.load_weights(zoo.create_model("idih"), tmp_path / "missing.pth")
    other = tmp_path / "list.pth"
    torch.save([1, 2, 3], other)
    with pytest.raises(WeightsError, match="not a state dict"):
        zoo.load_weights(zoo.create_model("idih"), other)


def test_detect_arch_rejects_unknown_layouts():
    with pytest.raises(WeightsError, match="matches no architecture"):
        zoo.detect_arch({"foo.weight": torch.zeros(3, 3)})


def test_one_element_scalar_buffers_from_older_pytorch_are_accepted():
    state = _idih_state()
    state = {k: (v.reshape(1) if k.endswith("num_batches_tracked") else v) for k, v in state.items()}
    model = zoo.create_model("idih", weights=state)
    assert model.state_dict()["encoder.blocks_connected.block2.block.1.num_batches_tracked"].dim() == 0


def test_load_weights_returns_the_model_in_eval_mode_like_create_model(tmp_path):
    """README snippet 3 crashed at batch 1: load_weights left the model in training mode while
    create_model(weights=...) returned it in eval mode. Both now agree (eval_mode=False keeps
    the mode, for fine-tuning)."""
    torch.manual_seed(0)
    path = tmp_path / "idih.pth"
    torch.save(zoo.create_model("idih").state_dict(), path)
    model = zoo.create_model("idih")
    assert model.training
    assert zoo.load_weights(model, path) is model and not model.training
    assert not zoo.create_model("idih", weights=path).training
    kept = zoo.create_model("idih")
    zoo.load_weights(kept, path, eval_mode=False)
    assert kept.training
