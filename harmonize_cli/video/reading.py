"""Reading a clip: a video file (through PyAV) or a folder of frames, probed before any decoding.

:func:`open_clip` checks what can be checked from the container alone (a video stream exists,
its size is under the pixel limit, the frame rate is constant) by demuxing the video packets
once, without decoding them: the frame count and every timestamp are then known before the first
frame is harmonized, so a mismatched mask is refused before anything is written.

>>> clip = open_clip("shot.mp4")
>>> clip.frames, clip.width, clip.height, clip.rate
>>> for frame in clip.decode():          # Frame(index, rgb H x W x 3 uint8, pts)
...     ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np

from ..apply.imageio import InputError, is_image_file, read_image
from ..errors import UsageError
from ..limits import DEFAULT_MAX_PIXELS, ImageTooLargeError, check_pixels, image_size

VIDEO_EXTENSIONS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
                    ".avi": "avi"}
INSTALL_HINT = "install PyAV: pip install 'harmonize-cli[video]' (or pip install av)"
DEFAULT_FOLDER_RATE = Fraction(25)  # frames per second of a folder of frames unless --fps says otherwise
DECODE_THREADS = 2  # decoding is not the bottleneck; each frame thread holds frames (4K: +290 MB at auto, 2 cores)
VFR_TOLERANCE = 0.02  # relative spread of frame intervals (beyond one tick) still counted as constant


def require_av():
    """PyAV, or a one-line usage error (exit 2) saying how to install it."""
    try:
        import av
    except ImportError:
        raise UsageError("reading and writing video files needs PyAV, which is not installed", INSTALL_HINT) from None
    return av


def is_video_file(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def natural_key(path: Path):
    """frame_2.png before frame_10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> List[Path]:
    """The image files directly in ``folder``, in natural order (hidden files skipped)."""
    return sorted((path for path in folder.iterdir() if path.is_file() and is_image_file(path)
                   and not path.name.startswith(".")), key=natural_key)


@dataclass
class Frame:
    index: int
    rgb: np.ndarray  # H x W x 3 uint8 (H x W for a mask video)
    pts: int  # in the clip's time base (a folder of frames: the index, in 1 / rate)


@dataclass
class Clip:
    """What a clip is, known before decoding: its frames' count, size, rate and timestamps."""

    path: Path
    kind: str  # "video" or "frames"
    width: int
    height: int
    frames: int
    rate: Fraction  # frames per second
    time_base: Optional[Fraction] = None  # of the timestamps (frames: 1 / rate)
    timestamps: List[int] = field(default_factory=list)  # presentation timestamps, in order (frames: 0, 1, ...)
    sample_aspect: Optional[Fraction] = None
    colour: dict = field(default_factory=dict)  # colorspace, color_range, color_primaries, color_trc
    other_streams: List[str] = field(default_factory=list)  # "audio (aac)", "subtitle (mov_text)"
    files: List[Path] = field(default_factory=list)  # frames: the frame files in order
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def seconds(self) -> float:
        return self.frames / float(self.rate) if self.rate else 0.0

    def decode(self, gray: bool = False) -> Iterator[Frame]:
        """The frames in presentation order, as 8-bit RGB (``gray``: H x W luma, for mask videos,
        decoded with one thread: a third of the memory of colour frames, none of frame threading's)."""
        if self.kind == "frames":
            for index, path in enumerate(self.files):
                image = read_image(path, self.max_pixels)
                _check_frame_size(path, image.rgb, self)
                yield Frame(index, image.rgb, index)
            return
        yield from _decode_video(self, gray)


def open_clip(path, rate: Optional[Fraction] = None, max_pixels: int = DEFAULT_MAX_PIXELS, role: str = "COMPOSITE"
              ) -> Clip:
    """Probe a video file or a folder of frames (``role`` names it in errors)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{role} {path} does not exist", "give a video file or a folder of frames")
    if is_image_file(path) and not path.is_dir():
        raise UsageError(f"{role} {path} is a single image", "use `harmonize apply` for photos; "
                         "give a video file or a folder of frames")
    try:
        return _open_folder(path, rate, max_pixels, role) if path.is_dir() else _open_video(path, max_pixels, role)
    except ImageTooLargeError as exc:  # a usage problem found before any work: exit 2
        raise UsageError(exc.message, exc.hint) from None


def _open_folder(path: Path, rate, max_pixels, role) -> Clip:
    files = frame_files(path)
    if not files:
        raise UsageError(f"{role} {path} holds no frames", "supported: .png .jpg .jpeg .webp .bmp .tif .tiff")
    width, height = image_size(files[0], max_pixels)
    rate = Fraction(rate) if rate else DEFAULT_FOLDER_RATE
    return Clip(path, "frames", width, height, len(files), rate, 1 / rate, list(range(len(files))), files=files,
                max_pixels=max_pixels)


def _open_video(path: Path, max_pixels, role) -> Clip:
    av = require_av()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise UsageError(f"{role} {path} cannot be read as a video: {_reason(exc)}",
                         "give a video file (mp4, mov, mkv, webm, avi) or a folder of frames") from None
    with container:
        if not container.streams.video:
            kinds = sorted({stream.type for stream in container.streams}) or ["no"]
            raise UsageError(f"{role} {path} has no video stream (only {', '.join(kinds)} streams)",
                             "give a file with a video track")
        stream = container.streams.video[0]
        context = stream.codec_context
        width, height = int(context.width), int(context.height)
        if not width or not height:
            raise UsageError(f"{role} {path}: the video stream has no frame size", "the file may be damaged")
        check_pixels(path, width, height, max_pixels)
        time_base = Fraction(stream.time_base) if stream.time_base else None
        try:
            timestamps = _packet_timestamps(container, stream)
        except (av.error.FFmpegError, OSError) as exc:
            raise UsageError(f"{role} {path} cannot be read: {_reason(exc)}", "the file may be damaged") from None
        if not timestamps:
            raise UsageError(f"{role} {path} has a video stream without frames", "give a clip with frames")
        rate = _constant_rate(path, role, timestamps, time_base, stream)
        others = [f"{s.type} ({s.codec_context.name if s.codec_context else '?'})" for s in container.streams
                  if s.type in ("audio", "subtitle")]
        colour = {name: getattr(context, name, None) for name in
                  ("colorspace", "color_range", "color_primaries", "color_trc")}
        aspect = stream.sample_aspect_ratio or context.sample_aspect_ratio
        return Clip(path, "video", width, height, len(timestamps), rate, time_base, timestamps,
                    Fraction(aspect) if aspect else None, colour, others, max_pixels=max_pixels)


def _packet_timestamps(container, stream) -> List[int]:
    """Presentation timestamps of the video stream's packets, sorted (demuxed, never decoded)."""
    stamps = []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's final flush packet
        stamp = packet.pts if packet.pts is not None else packet.dts
        stamps.append(stamp if stamp is not None else len(stamps))
    stamps.sort()
    return stamps


def _constant_rate(path, role, timestamps, time_base, stream) -> Fraction:
    """The clip's frame rate; a variable-rate clip is refused (see docs/video.md)."""
    declared = stream.average_rate or stream.guessed_rate or stream.base_rate
    if len(timestamps) < 2 or time_base is None:
        return Fraction(declared) if declared else DEFAULT_FOLDER_RATE
    steps = np.diff(np.asarray(timestamps, dtype=np.int64))
    if (steps <= 0).any():
        raise UsageError(f"{role} {path} has frames with repeated timestamps",
                         "re-encode it at a constant frame rate (ffmpeg -i IN -fps_mode cfr OUT)")
    typical = float(np.median(steps))
    spread = np.abs(steps - typical)
    if (spread > max(1.0, VFR_TOLERANCE * typical)).any():
        low, high = (float(steps.min() * time_base * 1000), float(steps.max() * time_base * 1000))
        raise UsageError(f"{role} {path} has a variable frame rate (frame intervals from {low:.1f} to {high:.1f} ms)",
                         "convert it to a constant rate first, e.g. ffmpeg -i IN -fps_mode cfr -r 30 OUT")
    measured = 1 / (Fraction(int(round(typical))) * time_base)
    if declared and abs(float(declared) - float(measured)) <= 0.01 * float(measured):
        return Fraction(declared)
    return measured.limit_denominator(1001 * 1000)


def _decode_video(clip: Clip, gray: bool = False) -> Iterator[Frame]:
    av = require_av()
    with av.open(str(clip.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE" if gray else "AUTO"
        stream.thread_count = DECODE_THREADS
        index = 0
        try:
            for frame in container.decode(stream):
                if index >= clip.frames:
                    raise InputError(f"{clip.path}: decodes to more frames than its {clip.frames} packets",
                                     "re-encode it (ffmpeg -i IN OUT)")
                rgb = frame.to_ndarray(format="gray" if gray else "rgb24")
                _check_frame_size(clip.path, rgb, clip)
                pts = frame.pts if frame.pts is not None else clip.timestamps[index]
                yield Frame(index, rgb, pts)
                index += 1
        except av.error.FFmpegError as exc:
            raise InputError(f"{clip.path}: frame {index + 1} cannot be decoded: {_reason(exc)}",
                             "the file may be damaged") from None
    if index != clip.frames:
        raise InputError(f"{clip.path}: decoded {index} frames of {clip.frames}", "the file may be damaged")


def _check_frame_size(path, rgb: np.ndarray, clip: Clip) -> None:
    if rgb.shape[:2] != (clip.height, clip.width):
        raise InputError(f"{path}: a frame is {rgb.shape[1]}x{rgb.shape[0]}, the clip {clip.width}x{clip.height}",
                         "every frame must have the same size")


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__
