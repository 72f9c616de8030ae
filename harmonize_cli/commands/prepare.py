"""`harmonize prepare`: pack a dataset in iHarmony4 layout (or a video set in HYouTube's) into one HDF5 file."""

from __future__ import annotations

from pathlib import Path

import click

from .. import console, interrupts, settings
from ..errors import HarmonizeError
from ..limits import DEFAULT_MAX_PIXELS

EPILOG = """\b
Examples:
  harmonize prepare --root iHarmony4
  harmonize prepare --root iHarmony4 -o /fast/disk/ih4.h5 --workers 16
  harmonize prepare --root my_data --subsets HFlickr,Hday2night --max-side 0 --strict
  harmonize prepare --root my_eval_set --splits test
  harmonize prepare --root HYouTube --max-side 0     video clips: one sample per frame

The file is remembered as the default dataset of `harmonize train` and `harmonize eval`
(--data and HARMONIZE_DATA override it). Ctrl-C or SIGTERM stops it within seconds and
leaves no partial file (exit 130 / 143). File layout: docs/datasets.md; guarantees:
docs/reliability.md.
"""


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _summary(report) -> None:
    from rich.table import Table

    title = "packed" if not report.up_to_date else "up to date"
    table = Table(title=f"{report.output} ({title})", title_justify="left")
    table.add_column("subset")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    table.add_column("total", justify="right")
    totals = {"train": 0, "test": 0}
    for subset, splits in report.counts.items():
        train, test = splits.get("train", 0), splits.get("test", 0)
        totals["train"] += train
        totals["test"] += test
        table.add_row(subset, f"{train:,}", f"{test:,}", f"{train + test:,}")
    table.add_row(
        "[bold]all[/bold]",
        f"[bold]{totals['train']:,}[/bold]",
        f"[bold]{totals['test']:,}[/bold]",
        f"[bold]{totals['train'] + totals['test']:,}[/bold]",
    )
    console.print_result(table)
    lines = [f"note: {note}" for note in report.notes]
    if report.problems:
        lines.append(
            f"[yellow]problems: {len(report.problems)} bad file(s), {report.skipped} sample(s) skipped[/yellow]"
        )
        lines.extend(console.first_problems(report.problems, "the report"))
    else:
        lines.append("problems: none")
    if report.max_side:
        lines.append(f"resized: {report.resized:,} sample(s) with a long side over {report.max_side} (Lanczos)")
    lines.append(f"storage: {report.storage}; size on disk: {_human_bytes(report.bytes_on_disk)}")
    lines.append(f"time: {report.seconds:.1f} s")
    if report.report_path:
        lines.append(f"report: {report.report_path}")
    for line in lines:
        console.print_result(line)


@click.command("prepare", epilog=EPILOG)
@click.option(
    "--root",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Dataset root in iHarmony4 layout (subset folders with list files), or a video set in "
    "HYouTube's layout (synthetic_composite_videos/, foreground_mask/, real_videos/, test_list.txt).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=True),
    default=None,
    help="HDF5 file to write (default: <root>/iharmony4.h5; <root>/hyoutube.h5 for a video set).",
)
@click.option(
    "--subsets",
    default=None,
    metavar="A,B,...",
    help="Comma-separated subset folders to pack (default: every subset folder under the root).",
)
@click.option(
    "--max-side",
    type=click.IntRange(min=0),
    default=1024,
    show_default=True,
    help="Shrink images whose long side exceeds this with Lanczos (masks too); 0 keeps all sizes.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Processes decoding in parallel (default: min(8, CPUs); 0 = in this process).",
)
@click.option(
    "--storage",
    type=click.Choice(["pixels", "encoded", "both"]),
    default="pixels",
    show_default=True,
    help="pixels: decoded arrays, fast to read, ~10x larger; encoded: original file bytes, "
    "compact, reads as slowly as the folder; both.",
)
@click.option(
    "--splits",
    default="train,test",
    show_default=True,
    metavar="train,test",
    help="Splits to pack. A subset whose list file for a split is missing or empty is packed "
    "without that split (noted in the summary); e.g. --splits test for an evaluation set.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse image files whose header declares more pixels (a problem for that file; "
    "nothing is decoded); 0 = no limit.",
)
@click.option("--strict", is_flag=True, help="Fail on any problem instead of skipping bad samples.")
@click.option("--force", is_flag=True, help="Rebuild even when the output is up to date.")
def prepare(root, output, subsets, max_side, workers, storage, splits, max_pixels, strict, force):
    """Pack iHarmony4 (or any dataset in its layout) into one HDF5 file for fast training.

    Checks every sample (composite, mask and real image present, same size, decodable),
    skips and reports bad ones (--strict: fails), caps the long side at --max-side like the
    reference, and writes a JSON report beside the output. A video set in HYouTube's layout is
    packed frame by frame, with each frame's clip and position (docs/datasets.md). Safe to interrupt: the output
    appears only when complete; running it again over an up-to-date output does nothing.
    """
    from ..data.pack import pack_dataset

    with interrupts.stopping("interrupted ({signal}); no partial dataset file is left behind"):
        with console.progress("img") as bar:
            report = pack_dataset(root, output=output, subsets=subsets, max_side=max_side, workers=workers,
                                  strict=strict, force=force, storage=storage,
                                  on_progress=console.phase_updater(bar), on_notice=console.info, splits=splits,
                                  max_pixels=max_pixels)
        remembered = _remember(report.output)
        if report.up_to_date:
            console.info(f"{report.output} is up to date ({report.samples:,} samples); nothing to do "
                         "(--force rebuilds it).")
        _summary(report)
        if remembered:
            console.info(f"Set {report.output.resolve()} as the default dataset of `harmonize train` and "
                         f"`harmonize eval` (remembered in {settings.config_path()}; --data overrides it)")


def _remember(output) -> bool:
    """Make ``output`` the default dataset; a failure is a one-line warning, never an error."""

    try:
        settings.remember_dataset(output)
    except HarmonizeError as exc:
        console.warn(f"warning: {exc.message}; the dataset is not remembered as the default "
                     "(pass --data to train/eval)")
        return False
    return True
