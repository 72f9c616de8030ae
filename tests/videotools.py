"""Tiny clips for the video tests, written with PyAV: real-photo frames, masks, an AAC track."""

from fractions import Fraction

import numpy as np

RATE = 25
WIDTH, HEIGHT = 64, 48


def photo_frames(count=12, width=WIDTH, height=HEIGHT, photo="astronaut", step=3):
    """Frames of a slow pan across a scikit-image photo (uint8 H x W x 3 each)."""
    from skimage import data
    from skimage.transform import resize

    image = getattr(data, photo)()[..., :3]
    scale = max(height * 2 / image.shape[0], (width + step * count) / image.shape[1])
    small = (resize(image, (int(image.shape[0] * scale), int(image.shape[1] * scale)), anti_aliasing=True)
             * 255).round().astype(np.uint8)
    return [np.ascontiguousarray(small[10:10 + height, step * i:step * i + width]) for i in range(count)]


def moving_masks(count=12, width=WIDTH, height=HEIGHT):
    """A box that moves right by 2 px a frame (1 px beyond 12 frames; float32 0/1)."""
    masks, speed = [], 2 if count <= 12 else 1
    for index in range(count):
        mask = np.zeros((height, width), np.float32)
        mask[12:36, 6 + speed * index:30 + speed * index] = 1.0
        masks.append(mask)
    return masks


def write_video(path, frames, rate=RATE, audio_seconds=None, codec="libx264", pts=None, crf=None):
    """Encode ``frames`` (optionally at the timestamps ``pts`` in 1/rate units) with an AAC sine
    track of ``audio_seconds``; returns the path."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        if crf is not None:
            stream.options = {"crf": str(crf)}
        audio = container.add_stream("aac", rate=44100) if audio_seconds else None
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = index if pts is None else pts[index]
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            _write_sine(container, audio, audio_seconds)
    return path


def write_audio_only(path, seconds=0.5):
    import av

    with av.open(str(path), "w") as container:
        _write_sine(container, container.add_stream("aac", rate=44100), seconds)
    return path


def _write_sine(container, audio, seconds):
    import av

    rate = 44100
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    size = audio.codec_context.frame_size or 1024
    for start in range(0, len(samples), size):
        frame = av.AudioFrame.from_ndarray(samples[None, start:start + size], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for packet in audio.encode(frame):
            container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)


def mask_video(path, masks, rate=RATE):
    return write_video(path, [np.repeat((mask[..., None] * 255).astype(np.uint8), 3, axis=2) for mask in masks], rate)


def read_video(path, gray=False):
    """(frames as RGB (``gray``: luma), their times in seconds, {stream type: (codec, duration s, packets)})."""
    import av

    with av.open(str(path)) as container:
        streams = {}
        for stream in container.streams:
            duration = float(stream.duration * stream.time_base) if stream.duration else None
            streams[stream.type] = (stream.codec_context.name, duration)
        video = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(video):
            frames.append(frame.to_ndarray(format="gray" if gray else "rgb24"))
            times.append(float(frame.pts * frame.time_base))
    with av.open(str(path)) as container:
        for stream in container.streams:
            if stream.type == "audio":
                count = sum(1 for packet in container.demux(stream) if packet.size)
                streams["audio"] = streams["audio"] + (count,)
    return frames, times, streams


def write_frames(folder, frames):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"f{index + 1:03d}.png")
    return folder


def write_masks(folder, masks):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, mask in enumerate(masks):
        Image.fromarray((mask * 255).astype(np.uint8)).save(folder / f"f{index + 1:03d}.png")
    return folder


def load_pngs(folder):
    from PIL import Image

    return [np.asarray(Image.open(path).convert("RGB")) for path in sorted(folder.glob("*.png"))]
