"""harmonize: deep image harmonization as a command-line tool and Python library.

Implements "Foreground-aware Semantic Representations for Image Harmonization"
(Sofiiuk, Popenova, Konushin, WACV 2021) and loads the authors' released
checkpoints unchanged.

>>> from harmonize_cli import zoo
>>> model = zoo.create_model("idih")
>>> from harmonize_cli import Harmonizer, harmonize_folder, paste_folder
"""

__version__ = "0.1.0"

__all__ = ["__version__", "zoo", "Harmonizer", "harmonize_folder", "harmonize_file", "harmonize_video", "paste_folder",
           "paste_file"]


def __getattr__(name):  # lazy imports keep `harmonize --help` fast
    import importlib

    if name == "zoo":
        return importlib.import_module(f"{__name__}.zoo")
    if name == "Harmonizer":
        return importlib.import_module(f"{__name__}.apply.harmonizer").Harmonizer
    if name in ("harmonize_folder", "harmonize_file"):  # what `harmonize apply` does
        return getattr(importlib.import_module(f"{__name__}.apply.batch"), name)
    if name in ("paste_folder", "paste_file"):  # what `harmonize paste` does
        return getattr(importlib.import_module(f"{__name__}.apply.paste_batch"), name)
    if name == "harmonize_video":
        return importlib.import_module(f"{__name__}.video.driver").harmonize_video
    raise AttributeError(f"module 'harmonize_cli' has no attribute {name!r}")
