"""harmonize_cli.zoo.listing.zoo_listing: the data of `harmonize zoo list --json`, one call."""

from __future__ import annotations

from harmonize_cli.zoo.listing import zoo_listing


def test_the_listing_says_what_is_cached_and_how_large(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONIZE_HOME", str(tmp_path))
    before = zoo_listing()
    assert before["cache"] == str(tmp_path / "weights")
    assert not any(entry["cached"] for entry in before["weights"])
    entry = next(entry for entry in before["weights"] if entry["name"] == "hrnet18s_idih256")
    assert entry["file"].endswith(".pth") and entry["kind"] == "harmonization" and not entry["size_exact"]
    # not cached: the float32 size of the architecture's parameters, 4 bytes each
    spec = next(model for model in before["models"] if model["name"] == entry["arch"])
    assert entry["size_bytes"] == 4 * spec["num_params"]

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / entry["file"]).write_bytes(b"\0" * 1234)  # a file in the cache (not verified here)
    after = {item["name"]: item for item in zoo_listing()["weights"]}
    assert after["hrnet18s_idih256"]["cached"] is True
    assert (after["hrnet18s_idih256"]["size_bytes"], after["hrnet18s_idih256"]["size_exact"]) == (1234, True)
    assert [name for name, item in after.items() if item["cached"]] == ["hrnet18s_idih256"]
