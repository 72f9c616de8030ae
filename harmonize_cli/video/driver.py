"""What ``harmonize video`` does, as a library function: :func:`harmonize_video`.

>>> from harmonize_cli import harmonize_video
>>> report = harmonize_video("shot.mp4", "shot_mask.mp4", "harmonized.mp4")
>>> report.frames, report.cuts, report.frames_per_second

The clip streams through three stages with bounded queues, so memory does not grow with its
length: a reader thread decodes a frame and its mask and builds the network's view
(``Harmonizer.prepare``); this thread runs the network on batches, detects scene cuts and smooths
the correction in frame order (:mod:`.temporal`); worker threads carry it to full resolution
(``Harmonizer.finish``); the writer encodes the frames in order (PNG frames are written by the
workers). Every frame's ``Job.context`` is its :class:`FrameInfo` (index, timestamp), which lets a
swapped-in ``Harmonizer`` (an oracle in the tests) know which frame it sees.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from .. import console
from ..errors import HarmonizeError, UsageError
from ..limits import DEFAULT_MAX_PIXELS
from .masks import open_masks
from .reading import VIDEO_EXTENSIONS, open_clip
from .temporal import DEFAULT_CUT_THRESHOLD, DEFAULT_WEIGHT, TEMPORAL_MODES, SceneCuts, Smoother, colour_histogram, \
    thumbnail
from .writing import FrameFolderWriter, VideoWriter, frame_names


@dataclass
class FrameInfo:
    """A frame's identity, kept in its ``Job.context``."""

    index: int
    pts: Optional[int]
    histogram: Optional[np.ndarray] = None  # of its thumbnail, for scene cuts


@dataclass
class VideoReport:
    """The outcome of :func:`harmonize_video`."""

    composite: Path
    mask: Path
    out: Path
    frames: int  # written
    width: int
    height: int
    rate: Fraction
    model: dict  # Harmonizer.describe()
    temporal: str  # "ema" or "none" (what ran)
    codec: str  # of the output ("png" for frames)
    copied_streams: List[str] = field(default_factory=list)  # audio / subtitle streams copied
    cuts: List[int] = field(default_factory=list)  # frame indices that start a new shot
    notes: List[str] = field(default_factory=list)
    seconds: float = 0.0  # the whole call
    processing_seconds: float = 0.0  # first frame decoded to the output published

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.processing_seconds if self.processing_seconds > 0 else 0.0


def output_kind(out: Path) -> str:
    """``"video"`` for a name with a video extension, ``"frames"`` for a folder."""
    suffix = out.suffix.lower()
    if suffix in VIDEO_EXTENSIONS and not out.is_dir():
        return "video"
    if suffix and not out.is_dir() and not str(out).endswith(("/", os.sep)):
        raise UsageError(f"-o {out}: {suffix} is no video format",
                         f"name a video file ({' '.join(sorted(VIDEO_EXTENSIONS))}) or a folder for PNG frames")
    return "frames"


def harmonize_video(composite, mask, out, *, model: str = "auto", weights=None, device=None,
                    resolution: str = "auto", batch_size: Optional[int] = None, flip_tta: bool = False,
                    temporal: str = "ema", ema_weight: float = DEFAULT_WEIGHT,
                    cut_threshold: float = DEFAULT_CUT_THRESHOLD, codec: Optional[str] = None,
                    crf: Optional[int] = None, fps=None, overwrite: bool = False, harmonizer=None,
                    workers: Optional[int] = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                    on_start: Optional[Callable[[int], None]] = None,
                    on_frame: Optional[Callable[[int], None]] = None) -> VideoReport:
    """Harmonize the clip COMPOSITE (a video file or a folder of frames) with MASK (a mask video,
    a folder of mask frames or one still mask) into OUT (a video file, or a folder of PNG frames).

    ``harmonizer``: an existing :class:`~harmonize_cli.apply.Harmonizer` (else one is built from
    ``model``, ``weights``, ``device``, ``resolution``, ``batch_size``, ``flip_tta`` with the
    offline fallback of ``apply``). ``temporal``: "ema" smooths the correction over time
    (``ema_weight``: the current frame's weight), reset at scene cuts (``cut_threshold``); "none"
    harmonizes every frame on its own. ``codec``/``crf``: the video encoder and its quality
    (default libx264 at CRF 16; VP9 for .webm). ``fps``: the rate of a folder of frames (default
    25). Usage problems raise :class:`~harmonize_cli.errors.UsageError` before anything is
    written; the output appears under its name only when complete.
    """
    started = time.perf_counter()
    if temporal not in TEMPORAL_MODES:
        raise UsageError(f"--temporal {temporal}", f"choose one of {', '.join(TEMPORAL_MODES)}")
    if not 0.0 < float(ema_weight) <= 1.0:
        raise UsageError(f"--ema-weight {ema_weight} is outside (0, 1]", "1 means no smoothing; try 0.3")
    composite, mask, out = Path(composite), Path(mask), Path(out)
    for source, label in ((composite, "COMPOSITE"), (mask, "MASK")):
        if _same_path(source, out):
            raise UsageError(f"-o {out} is the {label}", "never overwrite an input: choose another output")
    kind = output_kind(out)
    clip = open_clip(composite, Fraction(fps) if fps else None, max_pixels)
    masks = open_masks(mask, clip)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists", "use --overwrite to replace it, or choose another output")
    if kind == "video":
        writer = VideoWriter(out, clip, codec=codec, crf=crf, rate=Fraction(fps) if fps else None)
    else:
        if out.exists() and not out.is_dir():
            raise UsageError(f"-o {out} exists and is not a folder", "give a folder for PNG frames")
        writer = FrameFolderWriter(out, frame_names(clip), overwrite=overwrite)
    harmonizer = harmonizer or _make_harmonizer(model, weights, device, resolution, batch_size, flip_tta)
    notes = []
    if temporal != "none" and harmonizer.resolution != "auto":
        notes.append(f"--resolution {harmonizer.resolution} predicts pixels, not a mapping: frames are not smoothed "
                     "(--resolution auto smooths them)")
        temporal = "none"
    report = VideoReport(composite, mask, out, 0, clip.width, clip.height, clip.rate, harmonizer.describe(),
                         temporal, writer.codec, notes=notes)
    writer.open()
    report.copied_streams = list(writer.copied)
    if on_start is not None:
        on_start(clip.frames)
    processing = time.perf_counter()
    try:
        _stream(clip, masks, harmonizer, writer, report, Smoother(temporal, ema_weight), SceneCuts(cut_threshold),
                workers, on_frame)
        writer.commit()
    except BaseException as exc:
        writer.abort()
        if _is_ffmpeg_error(exc):  # the encoder or muxer refused: one line, no traceback
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200]
            raise HarmonizeError(f"cannot write {out}: FFmpeg says {reason}",
                                 "try another container (.mkv holds most audio and subtitle codecs) or --codec"
                                 ) from None
        raise
    finally:
        report.processing_seconds = time.perf_counter() - processing
        report.seconds = time.perf_counter() - started
    return report


def _is_ffmpeg_error(exc: BaseException) -> bool:
    try:
        import av
    except ImportError:
        return False
    return isinstance(exc, av.error.FFmpegError)


def _make_harmonizer(model, weights, device, resolution, batch_size, flip_tta):
    from ..apply.batch import make_harmonizer

    return make_harmonizer(model, weights, device, resolution, batch_size, flip_tta)


_DONE = object()
FINISH_PIXELS = 10_000_000  # pixels of the frames carried to full size at once (a 4K frame in flight: ~110 MB)
MMAP_THRESHOLD = 4 << 20  # bytes: larger blocks (every frame-sized array) come from mmap, freed to the OS


def finishing_limit(workers: int, width: int, height: int) -> int:
    """Frames carried to full size at once: the worker threads, at most FINISH_PIXELS of frames
    (one 4K frame, four 1080p ones), since each holds its frame, its mask (float32), the result
    and the compose step's strips (docs/video.md, "Memory")."""
    return max(1, min(workers, FINISH_PIXELS // max(1, width * height)))


def release_large_blocks() -> None:
    """glibc: serve every block above MMAP_THRESHOLD from mmap (returned to the OS when freed).

    glibc raises its mmap threshold after the first large block is freed (up to 32 MB), after
    which 25-33 MB frame arrays come from the threads' heaps, whose freed space is kept: a 4K clip
    peaked about 240 MB higher that way (docs/benchmarks.md). A no-op elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (fixed from now on)


def _stream(clip, masks, harmonizer, writer, report, smoother, cuts, workers, on_frame) -> None:
    """Decode -> network + temporal (this thread, in order) -> finish -> write, bounded."""
    from .. import interrupts
    from ..apply.pipeline import plan_threads, torch_threads

    batch_size = harmonizer.batch_size
    plan = plan_threads(harmonizer.device, workers)
    if clip.width * clip.height > 1920 * 1080:
        release_large_blocks()
    ready: "queue.Queue" = queue.Queue(maxsize=batch_size)  # prepared frames waiting for the network
    stop = threading.Event()
    in_order = isinstance(writer, VideoWriter)

    def read():
        try:
            for frame, mask in zip(clip.decode(), masks.masks()):
                histogram = colour_histogram(thumbnail(frame.rgb))
                _put(harmonizer.prepare(frame.rgb, mask, FrameInfo(frame.index, frame.pts, histogram)))
                if stop.is_set():
                    return
            _put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            _put(exc)

    def _put(item):
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(job):
        result = harmonizer.finish(job)
        if not in_order:
            writer.write(job.context.index, result)
        return result

    reader = threading.Thread(target=read, name="harmonize-video-read", daemon=True)
    pool = ThreadPoolExecutor(max_workers=plan.workers, thread_name_prefix="harmonize-video")
    finishing: deque = deque()  # (future, info) in frame order
    limit = finishing_limit(plan.workers, clip.width, clip.height)  # frames being carried to full size

    def drain(keep: int) -> None:
        while len(finishing) > keep or (finishing and finishing[0][0].done()):
            future, info = finishing.popleft()
            result = future.result()
            if in_order:
                writer.write(result, info.pts)
            report.frames += 1
            if on_frame is not None:
                on_frame(report.frames)

    try:
        with torch_threads(plan.torch_threads):
            reader.start()
            finished = False
            while not finished:
                interrupts.check()
                batch = []
                item = _get(ready, interrupts)
                while True:
                    if item is _DONE:
                        finished = True
                        break
                    if isinstance(item, BaseException):
                        raise item
                    batch.append(item)
                    if len(batch) >= batch_size:
                        break
                    try:
                        item = ready.get_nowait()
                    except queue.Empty:
                        break
                if not batch:
                    continue
                harmonizer.predict(batch)
                for job in batch:
                    _smooth(job, harmonizer, smoother, cuts, report)
                    finishing.append((pool.submit(finish, job), job.context))
                    drain(limit)
            drain(0)
    finally:
        stop.set()
        for future, _ in finishing:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        reader.join(timeout=10)
    if report.frames != clip.frames:
        raise HarmonizeError(f"{clip.path}: {report.frames} frames harmonized of {clip.frames}",
                             "the file may be damaged")


def _get(ready, interrupts):
    while True:
        try:
            return ready.get(timeout=0.2)
        except queue.Empty:
            interrupts.check()


def _smooth(job, harmonizer, smoother: Smoother, cuts: SceneCuts, report: VideoReport) -> None:
    """Scene cut and temporal smoothing of one frame's correction (in frame order)."""
    info = job.context
    if cuts.is_cut(info.histogram):
        report.cuts.append(info.index)
        smoother.reset()
        console.debug(f"scene cut at frame {info.index + 1}")
    if job.bbox is None or isinstance(job.prediction, Exception):
        smoother.reset()  # no foreground: the next one starts afresh
        return
    if job.maps is not None:
        params, attention = job.maps
        job.maps = (smoother.pct_maps(params, job.net_mask), attention)
        return
    if harmonizer.resolution == "auto":
        job.correction = smoother.correction(job.net_image, job.prediction, job.net_mask)


def _same_path(a: Path, b: Path) -> bool:
    def key(path):
        return os.path.normcase(os.path.realpath(path))

    return key(a) == key(b)
