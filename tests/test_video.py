"""`harmonize video` and harmonize_video: streams kept, background exact, smoothing, cuts, bad inputs."""

import sys
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("av")

from videotools import (HEIGHT, RATE, WIDTH, load_pngs, mask_video, moving_masks, photo_frames,  # noqa: E402
                        read_video, write_audio_only, write_frames, write_masks, write_video)

from harmonize_cli import harmonize_video  # noqa: E402
from harmonize_cli.apply.harmonizer import Harmonizer  # noqa: E402
from harmonize_cli.apply.resolution import resize_rgb  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 frames of 64x48 from a photo with a 0.48 s AAC track, a moving-box mask video, a still mask."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("clip")
    frames, masks = photo_frames(), moving_masks()
    composite = write_video(folder / "shot.mp4", frames, audio_seconds=12 / RATE)
    Image.fromarray((masks[0] * 255).astype(np.uint8)).save(folder / "still.png")
    return {"composite": composite, "masks": mask_video(folder / "mask.mp4", masks), "still": folder / "still.png",
            "mask_arrays": masks}


def _leftovers(folder):
    return sorted(path.name for path in folder.iterdir() if ".part" in path.name)


def test_video_with_a_mask_video_keeps_frames_timestamps_size_and_audio(clip, tmp_path, run_cli):
    out = tmp_path / "out.mp4"
    code, _, err = run_cli("video", clip["composite"], clip["masks"], "-o", out)
    assert code == 0, err
    frames, times, streams = read_video(out)
    source_frames, source_times, source_streams = read_video(clip["composite"])
    assert len(frames) == 12 and frames[0].shape == (HEIGHT, WIDTH, 3)
    assert times == pytest.approx([index / RATE for index in range(12)], abs=1e-9)  # as written by the fixture
    assert streams["video"][0] == "h264"
    codec, duration, packets = streams["audio"]
    assert codec == "aac" and (duration, packets) == source_streams["audio"][1:]  # copied, not re-encoded
    assert duration == pytest.approx(0.48, abs=0.05)
    assert "copied audio (aac)" in err and _leftovers(tmp_path) == []
    # only the codec changes the background: within a few levels of the decoded input there
    background = clip["mask_arrays"][5] == 0
    assert np.abs(frames[5].astype(int) - source_frames[5].astype(int))[background].mean() < 3


def test_still_mask_into_png_frames_keeps_the_background_bit_exact(clip, tmp_path, run_cli):
    out = tmp_path / "frames"
    code, _, err = run_cli("video", clip["composite"], clip["still"], "-o", out, "-q", "--model", "lab-transfer")
    assert code == 0 and err == ""
    results = load_pngs(out)
    decoded, _, _ = read_video(clip["composite"])
    assert len(results) == 12 and sorted(p.name for p in out.iterdir())[0] == "frame_000001.png"
    background = clip["mask_arrays"][0] == 0
    changed = False
    for result, frame in zip(results, decoded):
        assert np.array_equal(result[background], frame[background])
        changed |= not np.array_equal(result[~background], frame[~background])
    assert changed  # lab-transfer did change the foreground


# ----------------------------------------------------------------------- temporal smoothing


class Oracle(Harmonizer):
    """A "network" that returns the true frame, its foreground scaled by a per-frame gain."""

    def __init__(self, truths, gains):
        super().__init__(model="composite", device="cpu", quiet=True)
        self.truths, self.gains = truths, gains

    def predict(self, jobs):
        for job in jobs:
            if job.bbox is None:
                continue
            truth = resize_rgb(self.truths[job.context.index], (self.input_size, self.input_size))
            gain = 1.0 + (self.gains[job.context.index] - 1.0) * job.net_mask[None]
            job.prediction = np.clip(truth * gain, 0.0, 1.0).astype(np.float32)


CASTS = (np.array([0.6, 0.9, 0.9]), np.array([0.9, 0.9, 0.6]))  # per shot; below 1: nothing clips


def _synthetic_clip(count, photos=("astronaut",), inserts=("coffee",)):
    """Truth: a pan over a photo with a moving box from another photo; composite: the box with a
    colour cast (one shot per photo, each ``count`` frames, each with its own cast)."""
    truths, composites, masks = [], [], []
    for photo, insert, cast in zip(photos, inserts, CASTS):
        backgrounds, objects = photo_frames(count, photo=photo), photo_frames(count, photo=insert, step=2)
        for background, obj, mask in zip(backgrounds, objects, moving_masks(count)):
            inside = mask > 0
            truth = background.copy()
            truth[inside] = obj[inside]
            composite = truth.copy()
            composite[inside] = (obj[inside] * cast).round().astype(np.uint8)
            truths.append(truth)
            composites.append(composite)
            masks.append(mask)
    return truths, composites, masks


def _errors(results, truths, masks):
    """Per frame: the mean foreground error (3 channels) and the foreground MSE."""
    means, fmse = [], []
    for result, truth, mask in zip(results, truths, masks):
        error = result.astype(np.float64) - truth.astype(np.float64)
        inside = mask > 0
        means.append(error[inside].mean(axis=0))
        fmse.append(float((error[inside] ** 2).mean()))
    return np.array(means), np.array(fmse)


def _flicker(means):
    """The foreground flicker of docs/evaluation.md: the mean over consecutive frames of the change
    of the mean foreground error, averaged over the channels (levels)."""
    return float(np.abs(np.diff(means, axis=0)).mean())


def test_default_smoothing_halves_the_flicker_of_a_jittering_network(tmp_path):
    count = 24
    truths, composites, masks = _synthetic_clip(count)
    gains = 1.0 + np.random.default_rng(0).uniform(-0.05, 0.05, count)  # a few percent, per frame
    frames, mask_folder = write_frames(tmp_path / "in", composites), write_masks(tmp_path / "masks", masks)
    outcome = {}
    for temporal in ("none", "ema"):
        out = tmp_path / temporal
        report = harmonize_video(frames, mask_folder, out, harmonizer=Oracle(truths, gains), temporal=temporal)
        assert report.frames == count and report.cuts == [] and report.temporal == temporal
        means, fmse = _errors(load_pngs(out), truths, masks)
        outcome[temporal] = (_flicker(means), fmse.mean())
    (flicker_none, fmse_none), (flicker_ema, fmse_ema) = outcome["none"], outcome["ema"]
    assert flicker_none > 2.0  # the jitter is visible per frame (a few levels)
    assert flicker_ema * 2 <= flicker_none, outcome
    assert fmse_ema <= 1.10 * fmse_none, outcome


def test_smoothing_resets_at_a_scene_cut(tmp_path):
    """The same pasted object (same composite colours) over two shots whose light asks for opposite
    corrections: only the reset keeps the first shot's correction out of the second."""
    count = 6
    objects = photo_frames(2 * count, photo="coffee", step=2)
    backgrounds = photo_frames(count, photo="astronaut") + photo_frames(count, photo="rocket")
    gains = (np.array([1.4, 1.0, 1.0]), np.array([1.0, 1.0, 1.4]))  # truth / composite, per shot
    truths, composites, masks = [], [], moving_masks(2 * count)
    for index, (background, obj, mask) in enumerate(zip(backgrounds, objects, masks)):
        inside = mask > 0
        composite, truth = background.copy(), background.copy()
        composite[inside] = (obj[inside] * 0.6).round()
        truth[inside] = (composite[inside] * gains[index // count]).round()
        truths.append(truth)
        composites.append(composite)
    frames, mask_folder = write_frames(tmp_path / "in", composites), write_masks(tmp_path / "masks", masks)
    report = harmonize_video(frames, mask_folder, tmp_path / "out", harmonizer=Oracle(truths, np.ones(2 * count)))
    assert report.cuts == [count]
    means, _ = _errors(load_pngs(tmp_path / "out"), truths, masks)
    # the oracle is exact: from the cut on, every frame is within a level of the truth (the first
    # shot's correction, 1.4 on red instead of on blue, would leave tens of levels there)
    assert np.abs(means[count:]).max() < 1.0, np.abs(means).max(axis=1)
    assert np.abs(means).max() < 3.0, np.abs(means).max(axis=1)


# ----------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("bad")
    frames = photo_frames()
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(folder / "small.png")
    (folder / "garbage.mp4").write_bytes(b"not a video at all" * 100)
    vfr = [0, 1, 2, 4, 5, 6, 9, 10, 11, 12, 14, 15]
    return {
        "short_masks": mask_video(folder / "short.mp4", moving_masks(11)),
        "small_masks": mask_video(folder / "small.mp4", [m[::2, ::2] for m in moving_masks()]),
        "small_still": folder / "small.png",
        "garbage": folder / "garbage.mp4",
        "audio_only": write_audio_only(folder / "sound.mp4"),
        "vfr": write_video(folder / "vfr.mp4", frames, pts=vfr),
    }


@pytest.mark.parametrize("case, composite, mask, expected", [
    ("mask frame count", "clip", "short_masks", "has 11 frames but"),
    ("mask video size", "clip", "small_masks", "is 32x24 but"),
    ("still mask size", "clip", "small_still", "is 32x24 but the clip is 64x48"),
    ("unreadable", "garbage", "still", "cannot be read as a video"),
    ("audio only", "audio_only", "still", "has no video stream (only audio streams)"),
    ("variable frame rate", "vfr", "still", "has a variable frame rate"),
])
def test_bad_inputs_are_one_line_exit_2_and_nothing_written(case, composite, mask, expected, clip, bad_inputs,
                                                           tmp_path, run_cli):
    paths = {**bad_inputs, "clip": clip["composite"], "still": clip["still"]}
    out = tmp_path / "out.mp4"
    code, _, err = run_cli("video", paths[composite], paths[mask], "-o", out)
    assert code == 2, (case, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("Error:"), (case, err)
    assert list(tmp_path.iterdir()) == []


def test_a_container_that_cannot_hold_the_audio_is_refused_before_decoding(tmp_path, run_cli, monkeypatch):
    import av

    source = tmp_path / "in" / "pcm.mkv"
    source.parent.mkdir()
    write_video(source, photo_frames(3))
    with av.open(str(source)) as original, av.open(str(tmp_path / "in" / "with_pcm.mkv"), "w") as target:
        video = target.add_stream_from_template(original.streams.video[0])
        audio = target.add_stream("pcm_s16le", rate=8000)
        for packet in original.demux(original.streams.video[0]):
            if packet.size:
                packet.stream = video
                target.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
        for packet in list(audio.encode(frame)) + list(audio.encode()):
            target.mux(packet)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_cli("video", tmp_path / "in" / "with_pcm.mkv", tmp_path / "in" / "f.png", "-o", out / "o.mp4")
    assert code == 2 and "does not exist" in err  # (the mask is checked first)
    from PIL import Image

    Image.fromarray(np.zeros((HEIGHT, WIDTH), np.uint8)).save(tmp_path / "in" / "f.png")
    from harmonize_cli.video import reading

    decoded = []
    monkeypatch.setattr(reading, "_decode_video", lambda *args: decoded.append(args) or iter(()))
    code, _, err = run_cli("video", tmp_path / "in" / "with_pcm.mkv", tmp_path / "in" / "f.png", "-o", out / "o.mp4",
                         "--model", "lab-transfer", "-q")
    # refused up front (exit 2, before any frame is decoded), naming the stream and the containers that hold it
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "audio stream #1 (pcm_s16le)" in err and "o.mkv" in err and "o.mov" in err
    assert decoded == [] and list(out.iterdir()) == []
    monkeypatch.undo()
    code, _, err = run_cli("video", tmp_path / "in" / "with_pcm.mkv", tmp_path / "in" / "f.png", "-o", out / "o.mkv")
    assert code == 0 and "copied audio (pcm_s16le)" in err


def test_the_output_never_overwrites_an_input_or_an_earlier_result(clip, tmp_path, run_cli):
    code, _, err = run_cli("video", clip["composite"], clip["masks"], "-o", clip["masks"], "--overwrite")
    assert code == 2 and "never overwrite an input" in err
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"earlier result")
    code, _, err = run_cli("video", clip["composite"], clip["masks"], "-o", existing)
    assert code == 2 and "exists" in err and existing.read_bytes() == b"earlier result"


def test_without_pyav_it_says_how_to_install_it(clip, tmp_path, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    code, _, err = run_cli("video", clip["composite"], clip["masks"], "-o", tmp_path / "out.mp4")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install 'harmonize-cli[video]'" in err and list(tmp_path.iterdir()) == []


class _Interrupting(Harmonizer):
    def __init__(self):
        super().__init__(model="lab-transfer", device="cpu", quiet=True)

    def predict(self, jobs):
        if any(job.context.index == 5 for job in jobs):
            raise KeyboardInterrupt
        super().predict(jobs)


@pytest.mark.parametrize("name", ["out.mp4", "frames"])
def test_ctrl_c_leaves_nothing_under_the_final_name(name, clip, tmp_path, run_cli, monkeypatch):
    from harmonize_cli.video import driver

    monkeypatch.setattr(driver, "_make_harmonizer", lambda *args: _Interrupting())
    code, _, err = run_cli("video", clip["composite"], clip["masks"], "-o", tmp_path / name)
    assert code == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []


SIGTERM_SCRIPT = """
import pathlib, sys, time
from harmonize_cli.apply.harmonizer import Harmonizer
from harmonize_cli.video import driver

class Slow(Harmonizer):
    def predict(self, jobs):
        if any(job.context.index == 3 for job in jobs):
            pathlib.Path(sys.argv[1]).write_text("frame 3")
            time.sleep(60)  # the signal arrives here, in the middle of the clip
        super().predict(jobs)

driver._make_harmonizer = lambda *args: Slow(model="lab-transfer", device="cpu", quiet=True)
from harmonize_cli.cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("name", ["out.mp4", "frames"])
def test_sigterm_exits_143_in_one_line_and_leaves_nothing(name, clip, tmp_path):
    import os
    import signal
    import subprocess
    import time

    import harmonize_cli

    out = tmp_path / "out"
    out.mkdir()
    flag = tmp_path / "reached"
    root = str(__import__("pathlib").Path(harmonize_cli.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, str(flag), "video", str(clip["composite"]),
                                str(clip["masks"]), "-o", str(out / name), "-q"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists(), process.communicate(timeout=30)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert process.returncode == 143, err
    assert len(lines) == 1 and "interrupted" in lines[0] and "SIGTERM" in lines[0], err
    assert list(out.iterdir()) == []  # neither the final name nor a temporary one


class _JitteringPct(Harmonizer):
    """PCT-Net whose parameter maps are known: spatially constant, a random vector per frame."""

    def __init__(self, weights, values):
        super().__init__(model="pctnet-cnn", weights=weights, device="cpu", quiet=True)
        self.values, self.applied = values, {}

    def _forward_maps(self, images, masks):
        import torch

        return [(torch.from_numpy(self.values[index]).view(1, -1, 1, 1).expand(1, -1, 8, 8).contiguous(), None)
                for index in self._indices.pop(0)]

    def predict(self, jobs):
        self._indices = [[job.context.index for job in jobs if job.bbox is not None]]
        super().predict(jobs)

    def finish(self, job):
        if job.maps is not None:  # what is carried to full size
            self.applied[job.context.index] = job.maps[0][0].mean(dim=(1, 2)).numpy().copy()
        return super().finish(job)


def test_pct_net_jittering_maps_are_replaced_by_their_moving_average(clip, tmp_path):
    import torch

    from harmonize_cli import zoo

    torch.manual_seed(0)
    checkpoint = tmp_path / "cnn.pth"
    torch.save(zoo.create_model("pctnet-cnn").state_dict(), checkpoint)
    rng = np.random.default_rng(0)
    values = [rng.uniform(-0.2, 0.2, 12).astype(np.float32) for _ in range(12)]  # the per-frame jitter
    harmonizer = _JitteringPct(checkpoint, values)
    report = harmonize_video(clip["composite"], clip["masks"], tmp_path / "frames", harmonizer=harmonizer,
                             ema_weight=0.25)
    assert report.frames == 12 and report.cuts == [] and report.temporal == "ema"
    expected, mean = [], None  # the EMA computed here, by hand: m_0 = v_0, m_k = 0.75 m_(k-1) + 0.25 v_k
    for value in values:
        mean = value.astype(np.float64) if mean is None else 0.75 * mean + 0.25 * value
        expected.append(mean)
    assert sorted(harmonizer.applied) == list(range(12))
    for index in range(12):
        np.testing.assert_allclose(harmonizer.applied[index], expected[index], atol=1e-5, err_msg=f"frame {index}")
    assert np.abs(harmonizer.applied[11] - values[11]).max() > 0.01  # the smoothed maps differ from the raw ones


def test_a_video_that_does_not_read_back_is_never_published(clip, tmp_path, run_cli, monkeypatch):
    from harmonize_cli.video.writing import VideoWriter

    close = VideoWriter._close

    def close_then_damage(self):  # an encoder or muxer that leaves a broken file without an error
        close(self)
        data = self.tmp.read_bytes()
        self.tmp.write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(VideoWriter, "_close", close_then_damage)
    code, _, err = run_cli("video", clip["composite"], clip["masks"], "-o", tmp_path / "out.mp4", "-q")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "did not read back" in err, err
    assert list(tmp_path.iterdir()) == []


def test_the_video_read_back_counts_streams_frames_and_the_codec(clip, tmp_path):
    import av

    from harmonize_cli.readback import UnreadableOutputError
    from harmonize_cli.video.writing import check_video_file

    h264 = av.codec.Codec("h264", "r").id
    check_video_file(clip["composite"], 2, 12, h264)  # the test clip: video + AAC, 12 frames
    for streams, frames, codec, expected in ((1, 12, h264, "2 streams, 1 written"),
                                             (2, 13, h264, "12 video frames, 13 written"),
                                             (2, 12, av.codec.Codec("mpeg4", "r").id, "another video codec")):
        with pytest.raises(UnreadableOutputError, match=expected):
            check_video_file(clip["composite"], streams, frames, codec)


def test_a_png_frame_that_does_not_read_back_is_never_published(clip, tmp_path, run_cli, monkeypatch):
    from harmonize_cli.video import writing

    monkeypatch.setattr(writing, "png_bytes", lambda rgb: b"\x89PNG\r\n\x1a\n truncated")
    code, _, err = run_cli("video", clip["composite"], clip["still"], "-o", tmp_path / "frames", "-q")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "does not read back" in err, err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ the parts


def test_the_ema_of_a_gain_is_the_closed_form():
    from harmonize_cli.video.temporal import Smoother

    rng = np.random.default_rng(0)
    low_input = rng.uniform(0.1, 0.25, (3, 16, 16)).astype(np.float32)
    mask = np.ones((16, 16), np.float32)
    smoother = Smoother("ema", weight=0.25)
    mapped = []
    for gain in (1.0, 2.0, 4.0):  # the network brightens by these gains, frame after frame
        correction = smoother.correction(low_input, low_input * gain, mask)
        pixels = torch_pixels(low_input)
        mapped.append(float((correction.colour_map.apply(pixels) / pixels).mean()))
    # 1; 0.75 * 1 + 0.25 * 2 = 1.25; 0.75 * 1.25 + 0.25 * 4 = 1.9375
    assert mapped == pytest.approx([1.0, 1.25, 1.9375], rel=3e-3)  # the fit's ridge pulls slightly to 1
    smoother.reset()
    correction = smoother.correction(low_input, low_input * 3.0, mask)
    assert float((correction.colour_map.apply(torch_pixels(low_input)) / torch_pixels(low_input)).mean()) == \
        pytest.approx(3.0, rel=3e-3)


def torch_pixels(planar):
    import torch

    return torch.from_numpy(planar.reshape(3, -1).T.copy())


def test_pct_maps_smooth_their_masked_mean_and_keep_each_pixels_deviation():
    import torch

    from harmonize_cli.video.temporal import Smoother

    smoother = Smoother("ema", weight=0.5)
    mask = np.zeros((4, 4), np.float32)
    mask[:2] = 1.0
    first = torch.zeros(1, 12, 4, 4)
    smoother.pct_maps(first, mask)
    second = torch.zeros(1, 12, 4, 4)
    second[0, :, 0, 0] = 8.0  # masked mean 1.0, pixel (0, 0) 7 above it
    smoothed = smoother.pct_maps(second, mask)
    # mean: 0.5 * 0 + 0.5 * 1 = 0.5; every pixel moves by 0.5 - 1 = -0.5
    assert torch.allclose(smoothed, second - 0.5)


def test_scene_cuts_from_colour_histograms():
    from harmonize_cli.video.temporal import SceneCuts, colour_histogram, thumbnail

    pan = photo_frames(4, photo="astronaut")
    other = photo_frames(1, photo="coffee")
    cuts = SceneCuts()
    found = [cuts.is_cut(colour_histogram(thumbnail(frame))) for frame in pan + other]
    assert found == [False, False, False, False, True]
    # hand-computed: all mass in one bin against all in another is distance 1
    black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    cuts = SceneCuts()
    cuts.is_cut(colour_histogram(black))
    assert cuts.distance(colour_histogram(white)) == 1.0 and cuts.distance(colour_histogram(black)) == 0.0


def test_frame_folder_rate_and_the_report(clip, tmp_path):
    frames = write_frames(tmp_path / "in", photo_frames(3))
    report = harmonize_video(frames, clip["still"], tmp_path / "out.mkv", model="lab-transfer", fps=24)
    assert report.frames == 3 and report.rate == Fraction(24) and report.codec == "libx264"
    _, times, _ = read_video(tmp_path / "out.mkv")
    assert times == pytest.approx([0, 1 / 24, 2 / 24], abs=1e-3)


def test_pct_net_parameter_maps_are_smoothed_end_to_end(clip, tmp_path, run_cli):
    """PCT-Net (random weights: the path, not the quality): frames come out, background exact."""
    import torch

    from harmonize_cli import zoo

    torch.manual_seed(0)
    checkpoint = tmp_path / "cnn.pth"
    torch.save(zoo.create_model("pctnet-cnn").state_dict(), checkpoint)
    out = tmp_path / "frames"
    code, _, err = run_cli("video", clip["composite"], clip["masks"], "-o", out, "--weights", checkpoint)
    assert code == 0, err
    assert "temporal ema" in err
    results, (decoded, _, _), (masks, _, _) = load_pngs(out), read_video(clip["composite"]), read_video(clip["masks"], gray=True)
    assert len(results) == 12
    for result, frame, mask in zip(results, decoded, masks):
        background = mask <= 4  # a mask video's luma; the codec's noise counts as 0 up to 4 (docs/video.md)
        assert background.mean() > 0.5 and np.array_equal(result[background], frame[background])


def test_help_imports_neither_torch_nor_pyav():
    import subprocess

    code = ("import sys\nfrom harmonize_cli.cli import main\ntry:\n    main(['video', '--help'])\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'av') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "harmonize video shot.mp4" in out.stdout and out.stdout.strip().endswith("[]")
