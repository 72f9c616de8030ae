"""`harmonize video`: harmonize a clip with its masks, stable from frame to frame, sound kept.

A thin layer over :func:`harmonize_cli.video.harmonize_video`: options, progress bar, summary.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import console, interrupts
from ..limits import DEFAULT_MAX_PIXELS
from .options import model_options, overwrite_option

EPILOG = """Examples:

\b
  harmonize video shot.mp4 shot_mask.mp4 -o harmonized.mp4
  harmonize video shot.mov object_mask.png -o harmonized.mov        (one still mask)
  harmonize video frames/ masks/ -o harmonized_frames/ --fps 24      (PNG frames in and out)
  harmonize video shot.mp4 masks/ -o out.mkv --model pctnet-vit --crf 12 --temporal none

\b
Audio and subtitle streams are copied unchanged; the output has the input's frames, timestamps,
size and pixel aspect. Needs PyAV for video files: pip install 'harmonize-cli[video]'.
Exit code 0 when done, 1 when harmonizing failed, 2 for usage errors (before any work),
130/143 when interrupted (no partial output is left).
"""


@click.command(epilog=EPILOG)
@click.argument("composite", type=click.Path(path_type=Path))
@click.argument("mask", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="A video file (.mp4 .mov .mkv .webm .avi) or a folder for lossless PNG frames.")
@model_options
@click.option("--temporal", type=click.Choice(["ema", "none"]), default="ema", show_default=True,
              help="ema: smooth the colour correction over time (reset at scene cuts); none: every frame on its own.")
@click.option("--ema-weight", default=0.3, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Weight of the current frame in the moving average (lower: steadier, slower to follow light).")
@click.option("--cut-threshold", default=0.3, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Colour-histogram distance between consecutive frames that counts as a scene cut.")
@click.option("--codec", default=None, help="Video encoder (default libx264; libvpx-vp9 for .webm).")
@click.option("--crf", default=None, type=click.IntRange(0, 63),
              help="Encoder quality, lower is better (default 16 for libx264, 20 for VP9).")
@click.option("--fps", default=None, type=click.FloatRange(min=0.001),
              help="Frame rate of a folder of frames (default 25); a video keeps its own.")
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Frames per forward pass (default: 1 on the CPU, 8 on a GPU).")
@click.option("--flip-tta", is_flag=True, help="Average with the horizontally flipped prediction.")
@overwrite_option
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Threads that carry corrections to full size.")
@click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True, type=click.IntRange(min=0),
              help="Refuse frames with more pixels than this (0: no limit).")
def video(composite, mask, out, model, weights, device, resolution, temporal, ema_weight, cut_threshold, codec, crf,
          fps, batch_size, flip_tta, overwrite, workers, max_pixels):
    """Harmonize the clip COMPOSITE (video file or folder of frames) with MASK (mask video, folder
    of mask frames, or one still mask) into OUT.

    The correction is smoothed over time (--temporal ema) so the foreground does not flicker;
    the background is untouched (bit for bit in PNG frames; only the codec's change in a video).
    """
    from ..video.driver import harmonize_video

    state = {}
    with interrupts.stopping(f"interrupted ({{signal}}); no partial {out} is left behind"), \
            console.progress("frame") as bar:

        def on_start(total):
            state["task"] = bar.add_task("Harmonizing", total=total)

        def on_frame(done):
            bar.update(state["task"], completed=done)

        report = harmonize_video(composite, mask, out, model=model, weights=weights, device=device,
                                 resolution=resolution, batch_size=batch_size, flip_tta=flip_tta,
                                 temporal=temporal, ema_weight=ema_weight, cut_threshold=cut_threshold,
                                 codec=codec, crf=crf, fps=fps, overwrite=overwrite, workers=workers,
                                 max_pixels=max_pixels, on_start=on_start, on_frame=on_frame)
    for note in report.notes:
        console.warn(note)
    copied = f", copied {', '.join(report.copied_streams)}" if report.copied_streams else ""
    cuts = f", {len(report.cuts)} scene cut(s)" if report.cuts else ""
    if not console.is_quiet():
        console.err_console.print(f"{report.frames} frames {report.width}x{report.height} -> {report.out} "
                                  f"({report.codec}{copied}{cuts}; temporal {report.temporal}) in {report.seconds:.1f} s "
                                  f"({report.frames_per_second:.1f} frames/s)", soft_wrap=True, markup=False,
                                  highlight=False)
