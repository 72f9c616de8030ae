"""harmonize_cli.lazy: the package faces' lazy re-exports (names load on first use, torch-free faces)."""

import subprocess
import sys
import types

import pytest

from harmonize_cli.lazy import lazy_exports


def test_a_name_comes_from_its_module_and_a_module_entry_is_the_module():
    getattr_, dir_ = lazy_exports("harmonize_cli", {"zoo": "zoo", "atomic_write_bytes": "atomic"},
                                  ["zoo", "atomic_write_bytes"])
    import harmonize_cli.atomic
    import harmonize_cli.zoo
    assert getattr_("zoo") is harmonize_cli.zoo
    assert getattr_("atomic_write_bytes") is harmonize_cli.atomic.atomic_write_bytes
    assert {"zoo", "atomic_write_bytes", "__name__"} <= set(dir_())
    with pytest.raises(AttributeError, match=r"^module 'harmonize_cli' has no attribute 'nope'$"):
        getattr_("nope")


def test_the_faces_export_every_listed_name_from_where_it_is_defined():
    import harmonize_cli
    import harmonize_cli.apply
    import harmonize_cli.data
    import harmonize_cli.training
    expected = {  # name -> the module that defines it, written out here
        (harmonize_cli, "Harmonizer"): "harmonize_cli.apply.harmonizer",
        (harmonize_cli, "harmonize_folder"): "harmonize_cli.apply.batch",
        (harmonize_cli, "paste_file"): "harmonize_cli.apply.paste_batch",
        (harmonize_cli, "harmonize_video"): "harmonize_cli.video.driver",
        (harmonize_cli.apply, "Harmonizer"): "harmonize_cli.apply.harmonizer",
        (harmonize_cli.data, "pack_dataset"): "harmonize_cli.data.pack",
        (harmonize_cli.data, "DatasetError"): "harmonize_cli.data.layout",
        (harmonize_cli.training, "train"): "harmonize_cli.training.launch",
        (harmonize_cli.training, "TrainingError"): "harmonize_cli.training.outcome",
    }
    for (package, name), module in expected.items():
        assert getattr(package, name).__module__ == module, (package.__name__, name)
    assert isinstance(harmonize_cli.zoo, types.ModuleType)
    for package in (harmonize_cli, harmonize_cli.apply, harmonize_cli.data, harmonize_cli.training):
        for name in package.__all__:
            assert getattr(package, name) is not None
            assert name in dir(package)


def test_importing_the_faces_loads_no_torch():
    code = ("import sys, harmonize_cli, harmonize_cli.apply, harmonize_cli.data, harmonize_cli.training; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
