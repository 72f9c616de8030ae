"""The last guard before a written image is reported done: it reads back.

Every image result (apply, paste, eval's ``--save-predictions``) is written to a temporary file
beside its target; :func:`check_image_file` re-opens that file (its header only: cheap, nothing
decoded) and checks that it is an image of the format and size written, before the rename makes
it the result. An encoder that produced something unreadable (e.g. a TIFF whose tags contradict
its pixels) is then an error for that file, with no output left behind, instead of a ``done``.

>>> from harmonize_cli.atomic import atomic_write_bytes
>>> atomic_write_bytes("out.png", data, check=lambda tmp: check_image_file(tmp, (640, 480), "PNG", name="out.png"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from .errors import HarmonizeError
from .warncapture import collected

__all__ = ["UnreadableOutputError", "check_image_file"]


class UnreadableOutputError(HarmonizeError):
    """A result that was written but does not read back as the image intended (nothing is kept)."""


def check_image_file(path, size: Tuple[int, int], fmt: Optional[str] = None, name=None) -> None:
    """Raise :class:`UnreadableOutputError` unless ``path`` opens (header) as a ``fmt`` image of
    ``size`` = (width, height). ``name``: the file to name in the message (default ``path``)."""
    from .limits import open_image

    shown = Path(name) if name is not None else Path(path)
    hint = "nothing was written; please report this with the input file"
    try:
        with collected():  # read back quietly, without silencing other threads' warnings
            with open_image(path, max_pixels=0) as image:
                found_size, found_format = tuple(int(v) for v in image.size), image.format
    except Exception as exc:  # any failure to read it back is the same verdict
        reason = str(exc).replace(str(path), str(shown)).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UnreadableOutputError(f"{shown}: the written result does not read back ({reason})", hint) from None
    if found_size != tuple(int(v) for v in size):
        raise UnreadableOutputError(
            f"{shown}: the written result reads back as {found_size[0]}x{found_size[1]}, "
            f"not {int(size[0])}x{int(size[1])}", hint)
    if fmt is not None and found_format != fmt:
        raise UnreadableOutputError(f"{shown}: the written result reads back as {found_format}, not {fmt}", hint)
