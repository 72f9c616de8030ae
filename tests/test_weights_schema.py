"""Every entry of the weights table checked against its architecture (torchvision's
test_schema_meta_validation is the model): the architecture exists, the preprocessing is the
network's, the metrics name real subsets and metrics, one default per kind, and the network
the registry builds has the parameters and the layout the tables record."""

from __future__ import annotations

import math

import pytest
import torch

from harmonize_cli.zoo import published, released
from harmonize_cli.zoo.facts import BACKBONE, HARMONIZATION
from harmonize_cli.zoo.fingerprints import LAYOUT_FINGERPRINTS
from harmonize_cli.zoo.registry import ARCHITECTURES, get_arch
from harmonize_cli.zoo.resolve import RECOMMENDED_WEIGHTS, fallback_notice
from harmonize_cli.zoo.state import layout_fingerprint

# Written out here, not read from the code: the iHarmony4 subsets and the metrics a table may hold.
SUBSETS = {"HCOCO", "HAdobe5k", "HFlickr", "Hday2night", "All"}
HARMONIZATION_METRICS = {"MSE", "PSNR", "fMSE"}
IMAGENET_METRICS = {"top1_error", "top5_error", "acc@1", "acc@5"}
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
IDENTITY = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}  # PCT-Net's ViT takes [0, 1] images as they are

HARMONIZATION_WEIGHTS = released.list_weights(HARMONIZATION)
BACKBONE_WEIGHTS = released.list_weights(BACKBONE)


def _ids(entries):
    return [weights.name for weights in entries]


def test_the_table_holds_every_weights_once():
    every = released.list_weights()
    assert len(every) == len(HARMONIZATION_WEIGHTS) + len(BACKBONE_WEIGHTS) == 14
    for field in ("name", "filename", "url"):
        values = [getattr(weights, field) for weights in every]
        assert len(set(values)) == len(values), f"two weights share a {field}"
    arches = [weights.arch for weights in HARMONIZATION_WEIGHTS]
    assert len(set(arches)) == len(arches), "two released checkpoints of one architecture: weights_for_arch hides one"


@pytest.mark.parametrize("weights", HARMONIZATION_WEIGHTS, ids=_ids(HARMONIZATION_WEIGHTS))
def test_harmonization_weights_fit_their_architecture(weights):
    spec = get_arch(weights.arch)
    assert spec.name == weights.arch and spec.needs_weights
    assert weights.url.startswith("https://") and weights.url.endswith("/" + weights.filename)
    assert weights.filename.endswith(".pth")
    assert weights.input_size == spec.input_size == weights.preprocessing["input_size"]
    norm = weights.preprocessing["normalization"]
    assert norm == {key: list(values) for key, values in spec.normalization.items()}, \
        f"{weights.name} is prepared with {norm}, but {spec.name} takes {spec.normalization}"
    assert norm == (IDENTITY if weights.arch == "pctnet-vit" else IMAGENET)
    expected_resize = "full resolution (network at 256)" if spec.full_resolution else "fixed256"
    assert weights.preprocessing["resize"] == expected_resize
    assert weights.metrics and set(weights.metrics) <= SUBSETS and "All" in weights.metrics
    for subset, row in weights.metrics.items():
        assert {"MSE", "PSNR"} <= set(row) <= HARMONIZATION_METRICS, (subset, row)
        assert 0 < row["MSE"] < 200 and 25 < row["PSNR"] < 45, (subset, row)  # iHarmony4's plausible range
        assert "fMSE" not in row or row["fMSE"] > row["MSE"]  # the foreground alone is always worse
    assert LAYOUT_FINGERPRINTS.get(weights.arch), f"no recorded layout fingerprint for {weights.arch}"


@pytest.mark.parametrize("weights", BACKBONE_WEIGHTS, ids=_ids(BACKBONE_WEIGHTS))
def test_backbone_weights_are_imagenet_classifiers(weights):
    assert weights.arch == weights.name and weights.input_size == 224
    assert weights.preprocessing == {"normalization": IMAGENET}
    assert set(weights.metrics) == {"ImageNet"} and set(weights.metrics["ImageNet"]) <= IMAGENET_METRICS
    assert weights.url.startswith("https://")
    if weights.hash_prefix:  # torchvision's files carry the first hex digits of their sha256 in the name
        assert weights.filename.endswith(f"-{weights.hash_prefix}.pth")


def test_every_backbone_an_architecture_names_is_in_the_table():
    backbones = {weights.name for weights in BACKBONE_WEIGHTS}
    named = {spec.backbone for spec in ARCHITECTURES if spec.backbone}
    assert named <= backbones, named - backbones
    assert backbones - named == {"vgg16"}  # PCT-Net's contrastive loss, not a network's backbone


def test_one_default_per_kind_and_the_auto_policy_downloads_it():
    defaults = {kind: [w.name for w in released.list_weights(kind) if w.default] for kind in (HARMONIZATION, BACKBONE)}
    assert defaults == {HARMONIZATION: ["hrnet18s_idih256"], BACKBONE: []}  # the README's recommended network
    assert released.default_weights().name == RECOMMENDED_WEIGHTS == "hrnet18s_idih256"
    assert released.default_weights(BACKBONE) is None
    assert "harmonize zoo download hrnet18s_idih256" in fallback_notice("offline")


@pytest.mark.parametrize("weights", HARMONIZATION_WEIGHTS, ids=_ids(HARMONIZATION_WEIGHTS))
def test_the_registry_builds_the_network_the_table_describes(weights):
    """Built on the meta device (no memory, no initialisation): trainable parameters as the
    registry records them, the layout whose fingerprint detection relies on."""
    spec = get_arch(weights.arch)
    with torch.device("meta"):
        model = spec.build()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == spec.num_params
    assert layout_fingerprint(model.state_dict()) == LAYOUT_FINGERPRINTS[spec.name]


def test_published_rows_name_real_architectures_and_subsets():
    for key, entry in published.all_published().items():
        assert entry["arch"] is None or get_arch(entry["arch"]).name == entry["arch"], key
        assert set(entry["by_subset"]) <= SUBSETS, key
        for row in entry["by_subset"].values():
            assert set(row) <= HARMONIZATION_METRICS and all(math.isfinite(v) and v > 0 for v in row.values()), key
        assert set(entry["by_fg_ratio"]) <= set(published.FG_RANGES), key


def test_pct_net_numbers_are_written_once_and_are_the_papers():
    """PCT-Net's paper rows are its released checkpoints' numbers (full resolution, HAdobe5k at
    1024 px; Guerreiro et al., CVPR 2023, Table 1), read from the weights table."""
    paper = {"pctnet-vit": {"MSE": 18.84, "PSNR": 39.29, "fMSE": 237.49},
             "pctnet-cnn": {"MSE": 24.02, "PSNR": 38.30, "fMSE": 282.75}}
    for arch, numbers in paper.items():
        assert released.weights_for_arch(arch).metrics == {"All": numbers}
        assert published.PUBLISHED[arch]["by_subset"] == {"All": numbers}
        assert get_arch(arch).paper == {"All": numbers}


def test_released_rows_of_the_published_table_are_the_weights_table():
    rows = published.all_published()
    for weights in HARMONIZATION_WEIGHTS:
        row = rows[weights.name]
        assert row["arch"] == weights.arch and row["tag"] == "released"
        assert row["by_subset"] == weights.metrics
