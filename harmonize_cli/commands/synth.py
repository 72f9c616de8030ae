"""`harmonize synth`: a training set in iHarmony4 layout from your own photos and object masks."""

from __future__ import annotations

from pathlib import Path

import click

from .. import console, interrupts

EPILOG = """\b
Examples:
  harmonize synth --images photos/ --masks masks/ -o my_dataset/ --seed 0
  harmonize synth --images cutouts/ -o my_dataset/ --per-image 3 --styles color,retouch
  harmonize prepare --root my_dataset            # then pack it for training

\b
Masks are paired with photos as in `harmonize apply` (photo.jpg -> photo.png, photo_mask.png);
without --masks (or for a photo with no mask file) the photo's alpha channel is the mask.
Styles and their parameter ranges, the manifest: docs/synth.md.
"""


def _summary(report) -> None:
    from rich.table import Table

    table = Table(title=f"{report.subset_dir} (seed {report.seed})", title_justify="left")
    table.add_column("split")
    table.add_column("photos", justify="right")
    table.add_column("composites", justify="right")
    for part in ("train", "test"):
        table.add_row(part, f"{report.photos[part]:,}", f"{report.composites[part]:,}")
    table.add_row("[bold]all[/bold]", f"[bold]{sum(report.photos.values()):,}[/bold]",
                  f"[bold]{report.total_composites:,}[/bold]")
    console.print_result(table)
    styles = ", ".join(f"{name} {count:,}" for name, count in sorted(report.styles.items()))
    console.print_result(f"styles: {styles}; redraws below the floor: {report.redraws:,}")
    if report.skipped:
        console.print_result(f"[yellow]skipped: {len(report.skipped)}[/yellow]")
        for line in console.first_problems(report.skipped, "the manifest"):
            console.print_result(line)
    else:
        console.print_result("skipped: 0")
    console.print_result(f"manifest: {report.manifest}")
    console.print_result(f"time: {report.seconds:.1f} s")
    console.info(f"next: harmonize prepare --root {report.output}")


@click.command("synth", epilog=EPILOG)
@click.option("--images", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of real photos (RGBA photos may carry their mask as alpha).")
@click.option("--masks", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder of object masks, one per photo (white = object). Optional for RGBA photos.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Dataset root to write; the subset folder is created inside it.")
@click.option("--per-image", type=click.IntRange(min=1), default=5, show_default=True,
              help="Composites per photo.")
@click.option("--styles", default="color,retouch,illumination", show_default=True, metavar="A,B",
              help="Foreground changes to use, taken in turn: color (HCOCO-like), retouch (HAdobe5k-like), "
                   "illumination (Hday2night-like).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Share of the photos (not composites) in the test split.")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed for the split and the changes (default: random, recorded in the manifest).")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
              help="Write composites as JPEG at this quality (default: lossless PNG).")
@click.option("--min-fg-mse", type=click.FloatRange(min=0), default=100.0, show_default=True,
              help="Redraw a composite whose foreground MSE (0..255 values) is below this.")
@click.option("--subset", default="Synthetic", show_default=True, help="Name of the subset folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing subset folder of the same name.")
@click.option("--strict", is_flag=True, help="Exit 1 and write nothing if any photo or composite would be skipped.")
def synth(images, masks, output, per_image, styles, test_fraction, seed, jpeg_quality, min_fg_mse, subset,
          overwrite, strict):
    """Make training pairs from your own photos: for each photo and object mask, composites whose
    foreground is changed (colour transfer, retouching, illumination) over the untouched photo.

    Writes OUTPUT/<subset>/ in iHarmony4 layout (composite_images/, masks/, real_images/, list
    files split by photo) and a JSON manifest of every composite's style and parameters. Bad
    inputs (no mask, empty mask, wrong size, unreadable) are listed and skipped.
    """
    from ..synth import synthesize

    with interrupts.stopping("interrupted ({signal}); no partial dataset folder is left behind"), \
            console.progress("img") as bar:
        report = synthesize(images, masks, output, per_image=per_image, styles=styles, test_fraction=test_fraction,
                            seed=seed, jpeg_quality=jpeg_quality, strict=strict, subset=subset, overwrite=overwrite,
                            min_fg_mse=min_fg_mse, on_progress=console.phase_updater(bar), on_notice=console.warn)
    _summary(report)
