"""harmonize: deep image harmonization as a command-line tool and Python library.

Implements "Foreground-aware Semantic Representations for Image Harmonization"
(Sofiiuk, Popenova, Konushin, WACV 2021) and loads the authors' released
checkpoints unchanged.

>>> from harmonize_cli import zoo
>>> model = zoo.create_model("idih")
>>> from harmonize_cli import Harmonizer, harmonize_folder, paste_folder
"""

from .lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["__version__", "zoo", "Harmonizer", "harmonize_folder", "harmonize_file", "harmonize_video", "paste_folder",
           "paste_file"]

_LAZY = {  # lazy imports keep `harmonize --help` fast
    "zoo": "zoo",
    "Harmonizer": "apply.harmonizer",
    "harmonize_folder": "apply.batch",  # what `harmonize apply` does
    "harmonize_file": "apply.batch",
    "paste_folder": "apply.paste_batch",  # what `harmonize paste` does
    "paste_file": "apply.paste_batch",
    "harmonize_video": "video.driver",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
