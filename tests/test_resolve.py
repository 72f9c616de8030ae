"""Architecture detection from a state dict (fingerprint table, layout fallback) and weights
loading by zoo.create_model and zoo.resolve (exact tensors, no sharing, dtype fallback)."""

from __future__ import annotations

import torch

from harmonize_cli import zoo


def test_fingerprint_table_matches_the_models():
    from harmonize_cli.zoo.checkpoints import layout_of
    from harmonize_cli.zoo.fingerprints import LAYOUT_FINGERPRINTS, layout_fingerprint

    assert {"idih", "idih-hrnet-w18s"} <= set(LAYOUT_FINGERPRINTS)
    stale = [name for name, value in LAYOUT_FINGERPRINTS.items() if layout_fingerprint(layout_of(name)) != value]
    assert not stale, f"regenerate with `python -m harmonize_cli.zoo.fingerprints`: {stale}"


def test_detection_builds_no_model_for_a_known_layout(monkeypatch):
    from harmonize_cli.zoo import layouts as checkpoints  # where layout_of and fits live

    state = zoo.create_model("idih-hrnet-w18s", init=False).state_dict()

    def no_build(name):
        raise AssertionError(f"built the layout of {name}")

    monkeypatch.setattr(checkpoints, "layout_of", no_build)
    assert zoo.detect_arch(state) == "idih-hrnet-w18s"
    assert checkpoints.fits("idih-hrnet-w18s", state)


def test_detection_falls_back_to_the_layouts_when_the_table_is_stale(monkeypatch):
    from harmonize_cli.zoo import fingerprints

    monkeypatch.setattr(fingerprints, "LAYOUT_FINGERPRINTS", {"idih": "0" * 64})
    assert zoo.detect_arch(zoo.create_model("idih", init=False).state_dict()) == "idih"


def test_weights_from_a_file_are_loaded_exactly_and_a_passed_state_dict_is_not_shared(tmp_path):
    torch.manual_seed(3)
    source = zoo.create_model("idih")
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    from_file = zoo.create_model("idih", weights=str(path))
    assert all(torch.equal(value, source.state_dict()[key]) for key, value in from_file.state_dict().items())
    state = {key: value.clone() for key, value in source.state_dict().items()}
    from_memory = zoo.create_model("idih", weights=state)
    with torch.no_grad():
        next(from_memory.parameters()).add_(1.0)
    assert torch.equal(state[next(iter(state))], source.state_dict()[next(iter(state))])


def test_resolve_assembles_the_file_tensors_and_falls_back_for_another_dtype(tmp_path):
    """zoo.resolve builds a network from a file on the meta device and gives it the file's
    tensors; a checkpoint in float16 (its tensors cannot become float32 parameters as they are)
    is loaded into an ordinary float32 network instead."""
    torch.manual_seed(4)
    source = zoo.create_model("idih")
    expected = source.state_dict()
    path, half = tmp_path / "w.pth", tmp_path / "half.pth"
    torch.save(expected, path)
    torch.save({key: value.half() if value.is_floating_point() else value for key, value in expected.items()}, half)
    network = zoo.resolve("idih", str(path)).network
    tensors = list(network.parameters()) + list(network.buffers())
    assert tensors and not any(value.is_meta for value in tensors)
    assert all(torch.equal(value, expected[key]) for key, value in network.state_dict().items())
    from_half = zoo.resolve("idih", str(half)).network.state_dict()
    assert all(value.dtype == expected[key].dtype for key, value in from_half.items())
    assert all(torch.equal(value, expected[key].half().to(expected[key].dtype) if expected[key].is_floating_point()
                           else expected[key]) for key, value in from_half.items())
