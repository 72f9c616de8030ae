"""Composite <-> mask pairing: the three rules in order, ambiguity, unpaired files, trees."""

from pathlib import Path, PurePosixPath

import pytest

from harmonize_cli.errors import UsageError
from harmonize_cli.apply.pairing import find_pairs, list_images, output_path


def touch(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def by_name(pairs):
    return {str(pair.relative): pair for pair in pairs}


def test_same_stem_with_any_image_extension(tmp_path):
    touch(tmp_path / "c" / "photo.jpg")
    touch(tmp_path / "c" / "shot.webp")
    touch(tmp_path / "m" / "photo.png")
    touch(tmp_path / "m" / "shot.BMP")
    pairs = by_name(find_pairs(tmp_path / "c", tmp_path / "m"))
    assert pairs["photo.jpg"].mask == tmp_path / "m" / "photo.png"
    assert pairs["photo.jpg"].rule == "same stem"
    assert pairs["shot.webp"].mask.name == "shot.BMP"


def test_iharmony4_naming(tmp_path):
    touch(tmp_path / "c" / "a_1_2.jpg")
    touch(tmp_path / "c" / "a_1_3.jpg")
    touch(tmp_path / "m" / "a_1.png")
    pairs = by_name(find_pairs(tmp_path / "c", tmp_path / "m"))
    assert pairs["a_1_2.jpg"].mask.name == "a_1.png" and pairs["a_1_2.jpg"].rule == "iHarmony4 name"
    assert pairs["a_1_3.jpg"].mask.name == "a_1.png"


def test_mask_suffix(tmp_path):
    touch(tmp_path / "c" / "photo.jpg")
    touch(tmp_path / "m" / "photo_mask.png")
    (pair,) = find_pairs(tmp_path / "c", tmp_path / "m")
    assert pair.ok and pair.mask.name == "photo_mask.png" and pair.rule == "<stem>_mask"


def test_rules_apply_in_order(tmp_path):
    touch(tmp_path / "c" / "x_1_2.jpg")
    touch(tmp_path / "m" / "x_1_2.png")  # rule 1 wins over rule 2 and 3
    touch(tmp_path / "m" / "x_1.png")
    touch(tmp_path / "m" / "x_1_2_mask.png")
    (pair,) = find_pairs(tmp_path / "c", tmp_path / "m")
    assert pair.mask.name == "x_1_2.png" and pair.rule == "same stem"


def test_ambiguous_and_unpaired_are_reported_not_guessed(tmp_path):
    touch(tmp_path / "c" / "two.jpg")
    touch(tmp_path / "m" / "two.png")
    touch(tmp_path / "m" / "two.jpg")
    touch(tmp_path / "c" / "alone.jpg")
    touch(tmp_path / "c" / "b_7.jpg")
    touch(tmp_path / "m" / "b_mask.png")  # not a rule for b_7
    pairs = by_name(find_pairs(tmp_path / "c", tmp_path / "m"))
    assert not pairs["two.jpg"].ok and "ambiguous" in pairs["two.jpg"].problem
    assert "two.jpg" in pairs["two.jpg"].problem and "two.png" in pairs["two.jpg"].problem
    assert not pairs["alone.jpg"].ok and "no mask found" in pairs["alone.jpg"].problem
    assert "alone.*" in pairs["alone.jpg"].problem and "alone_mask.*" in pairs["alone.jpg"].problem
    assert not pairs["b_7.jpg"].ok


def test_recursive_trees_keep_relative_paths(tmp_path):
    touch(tmp_path / "c" / "top.jpg")
    touch(tmp_path / "c" / "sub" / "deep" / "inner.jpg")
    touch(tmp_path / "m" / "top.png")
    touch(tmp_path / "m" / "sub" / "deep" / "inner.png")
    touch(tmp_path / "m" / "inner.png")  # a same-named mask in another folder is not used
    flat = by_name(find_pairs(tmp_path / "c", tmp_path / "m"))
    assert set(flat) == {"top.jpg"}
    tree = by_name(find_pairs(tmp_path / "c", tmp_path / "m", recursive=True))
    assert set(tree) == {"top.jpg", "sub/deep/inner.jpg"}
    assert tree["sub/deep/inner.jpg"].mask == tmp_path / "m" / "sub" / "deep" / "inner.png"


def test_single_files(tmp_path):
    composite = touch(tmp_path / "photo.jpg")
    mask = touch(tmp_path / "anything.png")
    (pair,) = find_pairs(composite, mask)
    assert pair.ok and pair.rule == "given" and pair.relative == PurePosixPath("photo.jpg")
    touch(tmp_path / "m" / "photo_mask.png")
    (pair,) = find_pairs(composite, tmp_path / "m")
    assert pair.ok and pair.mask.name == "photo_mask.png"


def test_folder_of_composites_with_one_mask_file_is_a_usage_error(tmp_path):
    touch(tmp_path / "c" / "a.jpg")
    mask = touch(tmp_path / "mask.png")
    with pytest.raises(UsageError):
        find_pairs(tmp_path / "c", mask)


def test_missing_inputs_are_usage_errors(tmp_path):
    with pytest.raises(UsageError):
        find_pairs(tmp_path / "nope", tmp_path)
    touch(tmp_path / "c" / "a.jpg")
    with pytest.raises(UsageError):
        find_pairs(tmp_path / "c", tmp_path / "nope")
    not_image = touch(tmp_path / "notes.txt")
    with pytest.raises(UsageError):
        find_pairs(not_image, tmp_path / "c")


def test_shared_folder_masks_are_not_composites(tmp_path):
    shared = tmp_path / "shared"
    touch(shared / "photo.jpg")
    touch(shared / "photo_mask.png")
    touch(shared / "z_1_2.jpg")
    touch(shared / "z_1.png")
    pairs = by_name(find_pairs(shared, shared))
    assert set(pairs) == {"photo.jpg", "z_1_2.jpg"}
    assert pairs["photo.jpg"].mask.name == "photo_mask.png"
    assert pairs["z_1_2.jpg"].mask.name == "z_1.png"


def test_shared_folder_mutual_pairs_are_reported(tmp_path):
    shared = tmp_path / "shared"
    touch(shared / "x.jpg")
    touch(shared / "x.png")
    pairs = find_pairs(shared, shared)
    assert len(pairs) == 2 and all(not pair.ok for pair in pairs)
    assert all("each other's mask" in pair.problem for pair in pairs)


def test_hidden_non_image_and_excluded_files_are_ignored(tmp_path):
    touch(tmp_path / "c" / "a.jpg")
    touch(tmp_path / "c" / ".hidden.jpg")
    touch(tmp_path / "c" / "readme.txt")
    touch(tmp_path / "c" / "out" / "a.jpg")  # a previous output folder inside the inputs
    found = [str(rel) for _, rel in list_images(tmp_path / "c", recursive=True, exclude=[tmp_path / "c" / "out"])]
    assert found == ["a.jpg"]


def test_output_path_keeps_relative_path_and_stem(tmp_path):
    assert output_path(tmp_path, PurePosixPath("sub/x_1_2.jpg"), ".png") == tmp_path / "sub" / "x_1_2.png"
    assert output_path(tmp_path, PurePosixPath("a.JPG"), ".JPG") == tmp_path / "a.JPG"


# ---------------------------------------------------------------------------- --mask-pattern
def test_mask_pattern_pairs_names_the_rules_cannot(tmp_path):
    for name in ("rocket.jpg", "cup.jpg"):
        touch(tmp_path / "c" / name)
    touch(tmp_path / "m" / "rocket-mask.png")
    touch(tmp_path / "m" / "cup-mask.png")
    touch(tmp_path / "m" / "mask_cup.jpg")
    pairs = by_name(find_pairs(tmp_path / "c", tmp_path / "m", mask_pattern="{stem}-mask.png"))
    assert pairs["rocket.jpg"].mask.name == "rocket-mask.png" and pairs["cup.jpg"].mask.name == "cup-mask.png"
    assert pairs["cup.jpg"].rule == "--mask-pattern {stem}-mask.png"
    # `.*`: any image extension; only cup has a mask_<stem> file
    pairs = by_name(find_pairs(tmp_path / "c", tmp_path / "m", mask_pattern="mask_{stem}.*"))
    assert pairs["cup.jpg"].mask.name == "mask_cup.jpg" and not pairs["rocket.jpg"].ok
    assert "mask_rocket.*" in pairs["rocket.jpg"].problem


@pytest.mark.parametrize("pattern", ["mask.png", "{stem}-{n}.png", "sub/{stem}.png"])
def test_a_mask_pattern_without_one_stem_placeholder_is_a_usage_error(tmp_path, pattern):
    touch(tmp_path / "c" / "a.jpg")
    touch(tmp_path / "m" / "a.png")
    with pytest.raises(UsageError, match="--mask-pattern"):
        find_pairs(tmp_path / "c", tmp_path / "m", mask_pattern=pattern)


def test_when_nothing_pairs_the_error_lists_the_masks_and_suggests_a_pattern(tmp_path):
    for stem in ("a", "b", "c"):
        touch(tmp_path / "c" / f"{stem}.jpg")
        touch(tmp_path / "m" / f"mask_{stem}.png")
    assert not any(pair.ok for pair in find_pairs(tmp_path / "c", tmp_path / "m"))  # the listing is opt-in
    with pytest.raises(UsageError) as caught:
        find_pairs(tmp_path / "c", tmp_path / "m", require_some=True)
    message = str(caught.value)
    assert "mask_a.png, mask_b.png, mask_c.png" in message and "--mask-pattern 'mask_{stem}.png'" in message
