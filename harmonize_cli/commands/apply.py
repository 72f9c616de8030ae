"""`harmonize apply`: harmonize a folder (or a file) of composites with their masks.

A thin layer over :func:`harmonize_cli.apply.batch.harmonize_folder` (pairing, output planning,
the pipeline, the report): it parses the options, shows the progress bar and prints the summary.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from .. import console, interrupts
from ..apply.batch import COMPARISON_DIR
from ..choices import OUTPUT_FORMATS
from ..limits import DEFAULT_MAX_PIXELS
from .options import model_options, overwrite_option, quality_option
from .reporting import print_failures, say

EPILOG = """Examples:

\b
  harmonize apply examples/composites examples/masks -o harmonized/
  harmonize apply photo.jpg photo_mask.png -o harmonized.png
  harmonize apply photo.jpg photo_mask.png -o out/ --ext png
  harmonize apply data/composites data/masks -o out/ --recursive --weights run/best.pth --batch-size 16
  harmonize apply photos/ masks/ -o out/ --mask-pattern '{stem}-mask.png'
  harmonize apply photos/ masks/ -o out/ --weights idih.pth --precision bf16   faster on AVX-512 BF16 CPUs
  torchrun --nproc-per-node 8 -m harmonize_cli apply data/composites data/masks -o out/   one rank per GPU
  harmonize apply data/composites data/masks -o out/ --shard 0/4    then: harmonize apply --merge-reports out/

\b
Masks are found by the same relative stem (photo.jpg -> photo.png), the iHarmony4 name
(x_1_2.jpg -> x_1.png) or <stem>_mask.<ext>, in that order; --mask-pattern replaces these
rules (e.g. '{stem}-mask.png', 'mask_{stem}.*'). Exit code 0 when every image
succeeded, 1 when some failed (all listed at the end and in OUT/harmonize.json), 2 for usage
errors.
"""


@click.command(epilog=EPILOG)
@click.argument("composites", type=click.Path(path_type=Path), required=False)
@click.argument("masks", type=click.Path(path_type=Path), required=False)
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Output folder (results keep the composites' relative paths and stems); for a single "
                   "COMPOSITES file, an output file name such as out.png (format from its extension).")
@model_options
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Images per forward pass at the network size (default: 1 on the CPU, where it is faster; "
                   "8 on a GPU).")
@click.option("--ext", type=click.Choice(OUTPUT_FORMATS), default="same", show_default=True,
              help="Output format (same: that of the input).")
@quality_option
@click.option("--recursive", is_flag=True, help="Walk COMPOSITES and MASKS as trees.")
@click.option("--mask-pattern", default=None, metavar="PATTERN",
              help="How masks are named: {stem} is the composite's stem, e.g. '{stem}-mask.png' or "
                   "'mask_{stem}.*' (.*: any image extension). Default: the rules below.")
@overwrite_option
@click.option("--flip-tta", is_flag=True, help="Average with the horizontally flipped prediction.")
@click.option("--precision", type=click.Choice(["float32", "bf16", "fp16"]), default="float32", show_default=True,
              help="The network's arithmetic: bf16 is about 1.5x faster on CPUs with AVX-512 BF16 and moves results "
                   "by up to about 2 grey levels (docs/benchmarks.md); fp16 on GPUs only.")
@click.option("--comparison", is_flag=True, help=f"Also write composite | result to OUT/{COMPARISON_DIR}/.")
@click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True, type=click.IntRange(min=0),
              help="Refuse images (and masks) with more pixels than this, from their header, before decoding "
                   "(image bombs); 0: no limit.")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Decoding and encoding threads (default: up to 4 each with a GPU; on the CPU one pool of half the "
                   "cores plus one, the other half running the network).")
@click.option("--allow-odd-masks", is_flag=True,
              help="Run even when MASKS look like colour photos or COMPOSITES like black-and-white masks "
                   "(by default refused as swapped arguments, exit 2).")
@click.option("--shard", metavar="K/N", default=None,
              help="Do share K (0..N-1) of N, balanced by pixels, and write OUT/harmonize.K-of-N.json (independent "
                   "processes: array jobs, Kubernetes); merge with --merge-reports. Under torchrun or srun each rank "
                   "takes its share by itself (docs/scaling.md).")
@click.option("--merge-reports", "merge_out", metavar="OUT", type=click.Path(path_type=Path), default=None,
              help="Merge OUT/harmonize.K-of-N.json of every shard into OUT/harmonize.json and exit.")
def apply(composites, masks, out, model, weights, device, batch_size, resolution, ext, quality, recursive,
          mask_pattern, overwrite, flip_tta, precision, comparison, max_pixels, workers, allow_odd_masks, shard,
          merge_out):
    """Harmonize COMPOSITES (a folder or a file) with their MASKS (a folder or a file) into OUT.

    Inputs are never modified; every output is written atomically; background pixels (mask 0) are
    copied bit for bit (exactly so in PNG, TIFF, BMP and WebP at --quality 100).
    """
    from ..errors import UsageError
    from ..sharding import joined, rank_errors, shard_launch

    if merge_out is not None:
        if composites or masks or out:
            raise UsageError("--merge-reports takes only the OUT folder", "harmonize apply --merge-reports OUT")
        from ..apply.shards import merge_reports

        say(f"merged -> {merge_reports(merge_out)}")
        return
    if composites is None or masks is None or out is None:
        raise UsageError("apply needs COMPOSITES, MASKS and -o OUT", "e.g. harmonize apply composites/ masks/ -o out/")
    launch = shard_launch(shard)
    if launch.grouped and not launch.is_main:
        console.set_verbosity(console.QUIET)  # rank 0 speaks for the job
    with interrupts.stopping("interrupted ({signal}); finished results are kept, no partial file is left "
                             "(see harmonize.json)"), rank_errors(launch), joined(launch):
        if launch.sharded and not composites.is_dir():
            raise UsageError(f"--shard / torchrun need a folder of composites, not {composites}",
                             "give the folder that holds the composites")
        _apply(composites, masks, out, model, weights, device, batch_size, resolution, ext, quality, recursive,
               mask_pattern, overwrite, flip_tta, comparison, max_pixels, workers, allow_odd_masks, launch,
               precision)


def _apply(composites, masks, out, model, weights, device, batch_size, resolution, ext, quality, recursive,
           mask_pattern, overwrite, flip_tta, comparison, max_pixels, workers, allow_odd_masks, launch,
           precision="float32"):
    from ..apply.batch import harmonize_file, harmonize_folder
    from ..apply.pairing import check_mask_pattern
    from ..errors import HarmonizeError, UsageError

    _check_out(composites, out)
    if mask_pattern is not None:
        check_mask_pattern(mask_pattern)
    if composites.is_file() and _names_a_file(out):
        report = harmonize_file(composites, masks, out, model=model, weights=weights, device=device,
                                resolution=resolution, quality=quality, overwrite=overwrite, flip_tta=flip_tta,
                                max_pixels=max_pixels, swap_check=not allow_odd_masks, mask_pattern=mask_pattern,
                                precision=precision)
        _summarise(report, single=True)
        if report.failed:
            failed = report.failed[0]
            prefix = f"{failed.composite}: "  # most reasons name the file already: once is enough
            raise HarmonizeError(failed.reason if str(failed.reason).startswith(prefix) else prefix + failed.reason)
        return
    if composites.is_dir() and _names_a_file(out):
        raise UsageError(f"-o {out} names a file but COMPOSITES {composites} is a folder",
                         "give a folder for -o (results keep the composites' names)")
    from ..sharding import JobCounter

    state = {}
    counter = JobCounter(launch)  # torchrun / srun: every rank counts into the job's store

    def on_start(total):
        state["bar"] = stack.enter_context(console.progress("img"))
        state["task"] = state["bar"].add_task("Harmonizing" if not launch.sharded else
                                              f"Harmonizing ({launch.world_size} ranks)" if launch.grouped else
                                              f"Harmonizing (shard {launch.rank}/{launch.world_size})", total=total)
        if counter.shared and launch.is_main:
            stack.enter_context(_polling(counter, lambda done: state["bar"].update(state["task"], completed=done)))

    def on_done(entry):
        if counter.shared:
            counter.add(1)
        elif "bar" in state:
            state["bar"].advance(state["task"])

    with contextlib.ExitStack() as stack:
        report = harmonize_folder(composites, masks, out, model=model, weights=weights, device=device,
                                  resolution=resolution, batch_size=batch_size, ext=ext, quality=quality,
                                  recursive=recursive, overwrite=overwrite, flip_tta=flip_tta, comparison=comparison,
                                  workers=workers, on_start=on_start, on_done=on_done, max_pixels=max_pixels,
                                  swap_check=not allow_odd_masks, mask_pattern=mask_pattern,
                                  launch=launch, precision=precision)
    if launch.grouped and not launch.is_main:
        return  # rank 0 summarises the job and exits 1 if any file failed
    _summarise(report)
    if report.report_error is not None:
        raise report.report_error
    if report.failed:
        raise HarmonizeError(f"{len(report.failed)} of {len(report.entries)} composites failed",
                             f"listed above and in {report.report_path}")


@contextlib.contextmanager
def _polling(counter, update):
    """Rank 0's bar follows the job's count (every rank's finished files) from a thread."""
    import threading

    from ..sharding import poll_into

    stop = threading.Event()
    thread = threading.Thread(target=poll_into, args=(counter, update, stop), daemon=True,
                              name="harmonize-progress")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _check_out(composites: Path, out: Path) -> None:
    """-o must say plainly what it is: ``-`` (stdout) is not supported, and for one COMPOSITES file
    a name with a suffix that is no image format is refused (it would become a folder)."""
    from ..apply.imageio import IMAGE_EXTENSIONS
    from ..errors import UsageError

    supported = " ".join(sorted(set(IMAGE_EXTENSIONS)))
    if str(out) == "-":
        raise UsageError("-o - (standard output) is not supported: results are written as files",
                         f"give an output file such as out.png ({supported}) or a folder such as out/")
    text = str(out)
    if (composites.is_file() and out.suffix and out.suffix.lower() not in IMAGE_EXTENSIONS and not out.is_dir()
            and not text.endswith(("/", os.sep))):
        raise UsageError(f"-o {out}: {out.suffix} is not an image format harmonize writes",
                         f"end the file name with one of {supported}, or end a folder name with /")


def _names_a_file(out: Path) -> bool:
    """-o names an output file (not a folder): it has an image extension, is no existing folder
    and does not end with a path separator."""
    from ..apply.imageio import IMAGE_EXTENSIONS

    text = str(out)
    return (out.suffix.lower() in IMAGE_EXTENSIONS and not out.is_dir()
            and not text.endswith(("/", os.sep)))


def _summarise(report, single: bool = False) -> None:
    entries, out, elapsed = report.entries, report.out, report.seconds
    done = [entry for entry in entries if entry.status == "done"]
    skipped = [entry for entry in entries if entry.status == "skipped"]
    failed = report.failed
    rate = report.images_per_second
    if single:
        entry = entries[0]
        if entry.status == "done":
            fallback = report.model.get("fallback")
            how = f" by the training-free {fallback} fallback" if fallback else ""
            say(f"{entry.composite} -> {entry.output}{how} in {elapsed:.1f} s")
        elif entry.status == "skipped":
            say(f"{entry.output} exists: skipped (use --overwrite to replace it)")
        return
    print_failures((entry.composite, entry.reason) for entry in failed)
    if skipped:
        say(f"{len(skipped)} existing output(s) skipped (use --overwrite to replace them)")
    for entry in entries:
        for note in entry.notes:
            say(f"{entry.composite}: {note}", style="yellow")
    fallback = report.model.get("fallback")
    how = f" by the training-free {fallback} fallback (no network weights)" if fallback else ""
    say(f"{len(done)} harmonized{how}, {len(skipped)} skipped, {len(failed)} failed in {elapsed:.1f} s "
        f"({rate:.2f} img/s while processing) -> {out} (report: {report.report_path})")

