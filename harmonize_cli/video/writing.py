"""Writing the harmonized clip: a video file (encoded, other streams copied) or a folder of PNGs.

Both writers work on a temporary name beside the target and publish it with one rename in
:meth:`commit`; :meth:`abort` (an error, Ctrl-C) removes it, so nothing half-written ever carries
the final name.

- :class:`VideoWriter`: H.264 through libx264 by default (VP9 for .webm), at a high quality
  (``crf``), with the input's frame rate, size, pixel aspect, colour tags and every frame's
  timestamp. The input's audio and subtitle streams are copied packet by packet (remuxed, never
  re-encoded), interleaved with the video by time.
- :class:`FrameFolderWriter`: lossless PNG frames (thread-safe: frames are written in parallel).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..atomic import atomic_write_bytes, current_umask
from ..errors import HarmonizeError, UsageError
from ..readback import UnreadableOutputError, check_image_file
from .reading import VIDEO_EXTENSIONS, Clip, require_av

CRF_DEFAULTS = {"libx264": 16, "libx265": 18, "libvpx-vp9": 20, "libvpx": 10}
LOOKAHEAD_BYTES = 300_000_000  # libx264's frame lookahead is held in memory: at most about this much


def x264_lookahead(width: int, height: int) -> int:
    """libx264's ``rc-lookahead`` (frames): its default 40 up to 1080p, fewer above, since the
    lookahead is the encoder's memory (4K at 40 frames: 1.4 GB measured; at 10: docs/video.md)."""
    per_frame = width * height * 1.5 * 2.5  # a YUV 4:2:0 frame and x264's analysis of it, measured
    return int(max(10, min(40, LOOKAHEAD_BYTES // per_frame)))
PNG_COMPRESSION = 3  # zlib level: lossless either way; 3 writes 4K frames about 3x faster than 6


def default_codec(target: Path) -> str:
    """libx264 (libvpx-vp9 for .webm), else a codec the installed FFmpeg has."""
    av = require_av()
    available = av.codecs_available
    wanted = ["libvpx-vp9", "libvpx"] if Path(target).suffix.lower() == ".webm" else ["libx264", "mpeg4"]
    for name in wanted:
        if name in available:
            return name
    raise UsageError(f"no encoder for {target.suffix} in this PyAV build", "write PNG frames: -o a folder")


def encoder_threads(width: int, height: int) -> int:
    """Encoder threads: the cores, at most 8, and at most 4 above 1080p, where every frame thread
    holds its own frames (libx264's own default is 1.5 x the cores, unbounded in memory)."""
    from ..apply.pipeline import available_cores

    return min(available_cores(), 8 if width * height <= 1920 * 1080 else 4)


class VideoWriter:
    """Encode frames into ``target`` (copying ``clip``'s other streams when it is a video)."""

    def __init__(self, target: Path, clip: Clip, codec: Optional[str] = None, crf: Optional[int] = None,
                 rate: Optional[Fraction] = None):
        self.av = require_av()
        self.target = Path(target)
        self.clip = clip
        self.codec = codec or default_codec(self.target)
        if self.codec not in self.av.codecs_available:
            raise UsageError(f"--codec {self.codec} is not in this PyAV build", "try libx264, libvpx-vp9 or mpeg4")
        self.crf = crf if crf is not None else CRF_DEFAULTS.get(self.codec)
        self.rate = Fraction(rate) if rate else clip.rate
        self.tmp: Optional[Path] = None
        self.container = None
        self.copied: List[str] = []
        self.written = 0  # frames encoded
        if clip.kind == "video" and clip.other_streams:
            check_copyable(clip.path, self.target)

    # ------------------------------------------------------------------------------- lifecycle

    def open(self) -> None:
        """Create the temporary file, its streams, and write the header (fails here, before any
        frame is harmonized, when the container cannot hold a stream)."""
        av = self.av
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".part", dir=self.target.parent)
        os.close(fd)
        self.tmp = Path(name)
        try:
            self.container = av.open(str(self.tmp), "w", format=VIDEO_EXTENSIONS[self.target.suffix.lower()])
            self._add_video_stream()
            self._add_copied_streams()
            self.container.start_encoding()
        except (av.error.FFmpegError, ValueError, NotImplementedError) as exc:
            self.abort()
            raise UsageError(f"cannot write {self.target}: {str(exc).splitlines()[0][:200]}",
                             "try another container (.mkv holds most streams) or --codec") from None

    def _add_video_stream(self) -> None:
        clip = self.clip
        stream = self.container.add_stream(self.codec, rate=self.rate)
        stream.width, stream.height = clip.width, clip.height
        even = clip.width % 2 == 0 and clip.height % 2 == 0
        stream.pix_fmt = "yuv420p" if even or self.codec not in ("libx264", "libx265") else "yuv444p"
        self.time_base = clip.time_base if clip.kind == "video" else 1 / self.rate  # frames: pts are indices
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        if clip.sample_aspect:
            stream.codec_context.sample_aspect_ratio = clip.sample_aspect
        for name, value in clip.colour.items():
            if value is not None:
                try:
                    setattr(stream.codec_context, name, value)
                except (AttributeError, ValueError, TypeError):
                    pass
        options = {}
        if self.crf is not None and self.codec in CRF_DEFAULTS:
            options["crf"] = str(self.crf)
            if self.codec == "libx264":
                options["rc-lookahead"] = str(x264_lookahead(clip.width, clip.height))
            if self.codec.startswith("libvpx"):
                options["b"] = "0"
        elif self.codec == "mpeg4":
            options["qscale"] = "2"
            stream.codec_context.flags |= getattr(self.av.codec.context.Flags, "qscale", 0)
        stream.options = options
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = encoder_threads(clip.width, clip.height)
        self.stream = stream
        self.pix_fmt = stream.pix_fmt

    def _add_copied_streams(self) -> None:
        """The input's audio and subtitle streams, copied as they are."""
        self.source = None
        self.mapping = {}
        if self.clip.kind != "video" or not self.clip.other_streams:
            return
        self.source = self.av.open(str(self.clip.path))
        for stream in self.source.streams:
            if stream.type in ("audio", "subtitle"):
                self.mapping[stream.index] = self.container.add_stream_from_template(stream)
                self.copied.append(f"{stream.type} ({stream.codec_context.name})")
        if not self.mapping:
            self.source.close()
            self.source = None
            return
        self.pending = self.source.demux(*[self.source.streams[index] for index in self.mapping])
        self.held = None  # the next packet to copy, read ahead

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one frame (in presentation order) with its timestamp."""
        frame = self.av.VideoFrame.from_ndarray(rgb, format="rgb24")
        colourspace = self.clip.colour.get("colorspace")
        frame = frame.reformat(format=self.pix_fmt, dst_colorspace=_swscale_space(colourspace))
        frame.pts = int(pts)
        frame.time_base = self.time_base
        self.written += 1
        for packet in self.stream.encode(frame):
            self._copy_until(packet)
            self.container.mux(packet)

    def _copy_until(self, packet) -> None:
        """Copy the other streams' packets up to this video packet's time (interleaving)."""
        if self.source is None:
            return
        limit = None if packet is None or packet.dts is None else packet.dts * packet.time_base
        while True:
            if self.held is None:
                try:
                    self.held = next(self.pending)
                except StopIteration:
                    self.source.close()
                    self.source = None
                    return
                if self.held.dts is None and self.held.size == 0:
                    self.held = None
                    continue
            stamp = self.held.dts if self.held.dts is not None else self.held.pts
            if limit is not None and stamp is not None and stamp * self.held.time_base > limit:
                return
            held, self.held = self.held, None
            held.stream = self.mapping[held.stream_index if hasattr(held, "stream_index") else held.stream.index]
            self.container.mux(held)

    def commit(self) -> None:
        """Flush the encoder, copy what is left of the other streams, close and publish."""
        for packet in self.stream.encode():
            self._copy_until(packet)
            self.container.mux(packet)
        self._copy_until(None)
        codec_id = self.stream.codec_context.codec.id
        self._close()
        check_video_file(self.tmp, 1 + len(self.mapping), self.written, codec_id, name=self.target)
        os.chmod(self.tmp, 0o666 & ~current_umask())
        os.replace(self.tmp, self.target)
        self.tmp = None

    def _close(self) -> None:
        self.container.close()
        self.container = None

    def abort(self) -> None:
        for handle in (getattr(self, "source", None), self.container):
            if handle is not None:
                try:
                    handle.close()
                except Exception:  # noqa: BLE001 - cleaning up after another error
                    pass
        self.container = self.source = None
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


def check_video_file(path, streams: int, frames: int, codec_id: int, name=None) -> None:
    """The last guard before a video is reported done: re-open the finished temporary file and
    check its stream count, its video codec and its video frame count (from its packets, nothing
    decoded); :class:`~harmonize_cli.readback.UnreadableOutputError` otherwise."""
    av = require_av()
    shown = name if name is not None else path
    try:
        with av.open(str(path)) as container:
            found_streams = len(container.streams)
            video = container.streams.video[0]
            found_codec = video.codec_context.codec.id
            found_frames = sum(1 for packet in container.demux(video) if packet.size)
    except Exception as exc:  # noqa: BLE001 - any failure to read it back is the same verdict
        problem = f"does not open: {str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}"
    else:
        problem = None
        if found_streams != streams:
            problem = f"has {found_streams} streams, {streams} written"
        elif found_codec != codec_id:
            problem = f"has another video codec ({video.codec_context.name})"
        elif found_frames != frames:
            problem = f"holds {found_frames} video frames, {frames} written"
    if problem:
        raise UnreadableOutputError(f"{shown} did not read back: the finished file {problem}",
                                    "nothing was written; please report this with the input clip")


PROBE_PACKETS = 3  # of each copied stream, muxed into memory before any frame is decoded


def check_copyable(source: Path, target: Path) -> None:
    """Refuse (usage error, exit 2) a stream of ``source`` that ``target``'s container cannot hold.

    FFmpeg accepts some such streams when the header is written and fails only when the file is
    closed, after the whole clip was encoded (PCM audio into .mp4). So each audio and subtitle
    stream is remuxed alone, its first packets, into an in-memory container of the target's format
    and closed, before any frame is decoded."""
    import io

    av = require_av()
    fmt = VIDEO_EXTENSIONS[target.suffix.lower()]
    with av.open(str(source)) as container:
        for stream in container.streams:
            if stream.type not in ("audio", "subtitle"):
                continue
            name = stream.codec_context.name if stream.codec_context else "?"
            try:
                _probe_mux(av, io.BytesIO(), fmt, container, stream)
            except (av.error.FFmpegError, ValueError, NotImplementedError, TypeError):
                raise UsageError(f"{source}: {target.suffix} cannot hold its {stream.type} stream #{stream.index} "
                                 f"({name}), which is copied unchanged",
                                 f"write {target.with_suffix('.mkv').name} or {target.with_suffix('.mov').name} "
                                 "instead (or convert that stream first)") from None


def _probe_mux(av, buffer, fmt: str, container, stream) -> None:
    with av.open(buffer, "w", format=fmt) as probe:
        copy = probe.add_stream_from_template(stream)
        probe.start_encoding()
        muxed = 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packet.stream = copy
            probe.mux(packet)
            muxed += 1
            if muxed >= PROBE_PACKETS:
                break
    container.seek(0)


class FrameFolderWriter:
    """Lossless PNG frames into the folder ``target`` (published whole, by one rename)."""

    codec = "png"

    def __init__(self, target: Path, names: List[str], overwrite: bool = False):
        self.target = Path(target)
        self.names = names
        self.overwrite = overwrite
        self.tmp: Optional[Path] = None
        self.copied: List[str] = []

    def open(self) -> None:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".part", dir=self.target.parent))

    def write(self, index: int, rgb: np.ndarray) -> None:
        """One frame, written atomically and read back (header) before it takes its name."""
        target = self.tmp / self.names[index]
        size = (rgb.shape[1], rgb.shape[0])
        atomic_write_bytes(target, png_bytes(rgb),
                           check=lambda tmp: check_image_file(tmp, size, "PNG", name=self.target / target.name))

    def commit(self) -> None:
        os.chmod(self.tmp, 0o777 & ~current_umask())
        previous = None
        if self.target.exists():
            if not self.overwrite:
                raise HarmonizeError(f"{self.target} appeared while harmonizing", "nothing was replaced")
            previous = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old.", dir=self.target.parent))
            previous.rmdir()
            os.replace(self.target, previous)
        os.replace(self.tmp, self.target)
        self.tmp = None
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)

    def abort(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def png_bytes(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=PNG_COMPRESSION)
    return buffer.getvalue()


def frame_names(clip: Clip) -> List[str]:
    """PNG names: those of the input frames (stem.png), or frame_000001.png ... for a video."""
    if clip.kind == "frames":
        return [path.stem + ".png" for path in clip.files]
    width = max(6, len(str(clip.frames)))
    return [f"frame_{index + 1:0{width}d}.png" for index in range(clip.frames)]


def _swscale_space(colourspace) -> Optional[str]:
    """The RGB -> YUV matrix for the input's tag (BT.709 and BT.2020 by name; else swscale's default)."""
    name = str(getattr(colourspace, "name", colourspace) or "").upper()
    if "709" in name:
        return "ITU709"
    if "2020" in name:
        return "BT2020"
    return None
