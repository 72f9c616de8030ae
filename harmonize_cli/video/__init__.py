"""``harmonize video``: harmonize a clip, stable from frame to frame, its sound kept.

>>> from harmonize_cli import harmonize_video
>>> report = harmonize_video("shot.mp4", "shot_mask.mp4", "out.mp4", temporal="ema")

Modules: :mod:`.reading` (probing and decoding clips, PyAV or frame folders), :mod:`.masks`
(mask videos, mask folders, still masks), :mod:`.temporal` (scene cuts, smoothing the
correction), :mod:`.writing` (encoding and remuxing, PNG frames, atomic publication) and
:mod:`.driver` (:func:`harmonize_video`, the streaming pipeline). PyAV is needed only for video
files (``pip install 'harmonize-cli[video]'``).
"""

from .driver import FrameInfo, VideoReport, harmonize_video

__all__ = ["FrameInfo", "VideoReport", "harmonize_video"]
