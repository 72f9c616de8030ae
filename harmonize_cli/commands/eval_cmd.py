"""`harmonize eval`: the paper's tables (per subset, per foreground ratio) on the iHarmony4 test set."""

from __future__ import annotations

from pathlib import Path

import click

from .. import console, interrupts
from ..atomic import check_writable
from ..choices import EVAL_RESIZES, parse_list
from ..completion import complete_models, complete_weights

EPILOG = """Examples:

\b
  harmonize eval --weights runs/idih/best.pth                 detect the architecture
  harmonize eval --model hrnet18s_idih256 --with-published    released weights vs the paper
  harmonize eval --model composite --model lab-transfer       baselines, no weights needed
  harmonize eval --weights a.pth --weights b.pth --markdown cmp.md
  harmonize eval --data iHarmony4 --resize none --psnr-peak 255 -o results.json
  harmonize eval --data HYouTube/hyoutube.h5 --model composite --csv clips.csv   per clip + flicker

Protocol, options and the JSON schema: docs/evaluation.md
"""


def _split_subsets(values):
    return parse_list(values) or None


def _psnr_peak(value):
    if value is None or str(value).strip().lower() in ("target", "max", "target_max", "auto"):
        return None
    from ..evaluation.metrics import check_psnr_peak

    try:
        peak = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither 'target' nor a number", param_hint="--psnr-peak") from None
    try:
        return check_psnr_peak(peak)
    except ValueError:
        raise click.BadParameter(f"{value!r}: the peak must be a positive finite number such as 255",
                                 param_hint="--psnr-peak") from None


@click.command("eval", epilog=EPILOG)
@click.option("--data", metavar="FILE.h5|DIR",
              help="Packed dataset, iHarmony4 folder or HYouTube video folder (default: $HARMONIZE_DATA, "
                   "else the one `prepare` packed).")
@click.option("--model", "-m", "models", multiple=True, metavar="NAME", shell_complete=complete_models,
              help="Architecture (our or the reference name; see `harmonize zoo list`). Repeat for several. "
                   "Without --weights a network uses its released checkpoint; composite and lab-transfer need none.")
@click.option("--weights", "-w", "weights", multiple=True, metavar="PATH|NAME", shell_complete=complete_weights,
              help="Checkpoint (path, URL or released name). Repeat for several. Without --model the "
                   "architecture is detected.")
@click.option("--resize", type=click.Choice(EVAL_RESIZES, case_sensitive=False),
              default="fixed256", show_default=True,
              help="fixed256: the published tables; limit1024 / none: native size, one image per pass.")
@click.option("--flip-tta", is_flag=True, help="Average with the prediction of the horizontally flipped input.")
@click.option("--subsets", multiple=True, metavar="A,B",
              help="Subsets to evaluate (comma-separated or repeated; default: all).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=None,
              help="Images per forward pass at fixed256 (default: 16 on a GPU, 1 on the CPU, where it is faster).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Decoding processes (default: up to 4 on a GPU, a quarter of the cores on the CPU; "
                   "0 decodes in the main process).")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: $HARMONIZE_DEVICE or auto).")
@click.option("--psnr-peak", default="target", show_default=True, metavar="target|NUMBER",
              help="PSNR peak: each target's maximum (the reference's, comparable to the paper) or a fixed "
                   "value such as 255 (other repositories).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE.json",
              help="Write the results as JSON ('-' prints them on stdout instead of the tables).")
@click.option("--markdown", type=click.Path(dir_okay=False), metavar="FILE.md", help="Write the tables as Markdown.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), metavar="FILE.csv",
              help="Write the tables as CSV (one row per model, table and group).")
@click.option("--save-predictions", type=click.Path(file_okay=False), metavar="DIR",
              help="Write every prediction as PNG under DIR/<subset>/ (DIR/<model>/<subset>/ for several models).")
@click.option("--with-published", is_flag=True,
              help="Add the published numbers of the same architectures (paper, released weights).")
@click.option("--per-image", is_flag=True, help="Include per-image values in the JSON output.")
def eval_cmd(data, models, weights, resize, flip_tta, subsets, batch_size, workers, device, psnr_peak, output,
             markdown, csv_path, save_predictions, with_published, per_image):
    """Evaluate models on the test split: MSE, fMSE and PSNR per subset and per foreground ratio.

    The protocol is the reference implementation's (docs/evaluation.md): at fixed256 the
    numbers are comparable with the paper's Tables 1 and 2. On a video dataset in HYouTube's
    layout (packed by `harmonize prepare --root HYouTube`) the tables are per clip and add the
    foreground flicker, a temporal-consistency figure (docs/evaluation.md#video).
    """
    from .. import settings, zoo
    from ..device import resolve_device
    from ..errors import UsageError
    from ..evaluation import evaluate, load_models, open_test_set, report

    peak = _psnr_peak(psnr_peak)
    if not models and not weights:
        raise UsageError("nothing to evaluate", "pass --model NAME and/or --weights FILE.pth "
                                                "(e.g. --model composite for the baseline)")
    resize = resize.lower()
    subset_names = _split_subsets(subsets)
    for name in models:
        zoo.get_arch(name)  # unknown names fail before any work, suggesting the closest
    source = settings.default_dataset(data)
    _check_outputs(source, weights, output, markdown, csv_path, save_predictions)
    torch_device = resolve_device(device)
    caught = None
    try:
        with interrupts.handled() as caught:
            dataset = open_test_set(source, resize=resize, subsets=subset_names)
            loaded = load_models(models, weights)
            if getattr(dataset, "is_video", False):
                clips = len({clip for clip, _ in dataset.frames})
                what = f"{len(dataset)} test frames in {clips} clips"
            else:
                what = f"{len(dataset)} test images"
            console.info(f"Evaluating {', '.join(model.label for model in loaded)} on {what} of "
                         f"{source} ({', '.join(dataset.subset_names)}), resize {resize}, device {torch_device}")
            results = evaluate(loaded, dataset, batch_size=batch_size, device=torch_device, flip_tta=flip_tta,
                               psnr_peak=peak, workers=workers, save_predictions=save_predictions, progress=True,
                               resize=resize)
    except KeyboardInterrupt:
        raise interrupts.Interrupted(getattr(caught, "signum", None) or 2,
                                     "interrupted ({signal}); no result file was written") from None

    if output == "-":
        click.echo(report.to_json(results, with_published, per_image), nl=False)
    else:
        for table in report.terminal_tables(results, with_published):
            console.print_result(table)
    first = results[0]
    rate = first.images_per_second
    console.info(f"{first.n_images} images x {len(results)} model(s) in {first.seconds:.1f} s"
                 + (f" ({rate:.1f} images/s)" if rate else "") + f" on {first.device}")
    if output and output != "-":
        report.write_json(output, results, with_published, per_image)
        console.info(f"Wrote {output}")
    if markdown:
        report.write_markdown(markdown, results, with_published)
        console.info(f"Wrote {markdown}")
    if csv_path:
        report.write_csv(csv_path, results, with_published)
        console.info(f"Wrote {csv_path}")
    if save_predictions:
        console.info(f"Predictions in {save_predictions}")


_WRITTEN_BY_EVAL = {  # how each output of an earlier `harmonize eval` begins (report.py)
    "-o": (b'{"model":', b'[{"model":'),
    "--markdown": (b"# Evaluation",),
    "--csv": (b"source,model,",),
}


def _check_outputs(source, weights, output, markdown, csv_path, save_predictions) -> None:
    """Before any work: every output writable, none of them an input (the dataset, a list file in
    its folder, a weights file) and none replacing a file that eval did not write."""
    from ..outputs import Inputs, check_replaceable, starts_with

    inputs = Inputs().tree(source, "--data")
    for item in weights:
        if Path(str(item)).exists():
            inputs.file(item, "--weights")
    for option, target in (("-o", output), ("--markdown", markdown), ("--csv", csv_path)):
        if target and target != "-":
            inputs.check(target, option)
            check_replaceable(target, starts_with(*_WRITTEN_BY_EVAL[option]),
                              f"a {option} file written by `harmonize eval`", option)
            check_writable(Path(target).parent)  # unwritable outputs fail now, not after the work
    if save_predictions:
        inputs.check(save_predictions, "--save-predictions")
        check_writable(Path(save_predictions))
