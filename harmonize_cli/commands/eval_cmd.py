"""`harmonize eval`: the paper's tables (per subset, per foreground ratio) on the iHarmony4 test set."""

from __future__ import annotations

from pathlib import Path

import click

from .. import console, interrupts
from ..atomic import check_writable
from ..choices import EVAL_RESIZES
from ..completion import complete_models, complete_weights

EPILOG = """Examples:

\b
  harmonize eval --weights runs/idih/best.pth                 detect the architecture
  harmonize eval --model hrnet18s_idih256 --with-published    released weights vs the paper
  harmonize eval --model composite --model lab-transfer       baselines, no weights needed
  harmonize eval --weights a.pth --weights b.pth --markdown cmp.md
  harmonize eval --data iHarmony4 --resize none --psnr-peak 255 -o results.json
  harmonize eval --data HYouTube/hyoutube.h5 --model composite --csv clips.csv   per clip + flicker


  torchrun --nproc-per-node 8 -m harmonize_cli eval --weights best.pth -o r.json    one rank per GPU
  harmonize eval --weights best.pth --shard 0/2 -o s0.json   (and 1/2 -o s1.json), then:
  harmonize eval --merge-shards s0.json --merge-shards s1.json -o r.json

Protocol, options and the JSON schema: docs/evaluation.md; several GPUs and nodes: docs/scaling.md
"""


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
@click.option("--shard", metavar="K/N", default=None,
              help="Evaluate share K (0..N-1) of N of the test set and write its per-image records to -o FILE "
                   "(independent processes); merge the N files with --merge-shards. Under torchrun or srun the ranks "
                   "share the work and rank 0 prints the tables by itself (docs/scaling.md).")
@click.option("--merge-shards", "merge_shards", multiple=True, type=click.Path(exists=True, dir_okay=False),
              metavar="FILE", help="The files of every --shard K/N run (repeat): print and write the tables of the "
                                   "whole test set, equal to one process's.")
def eval_cmd(data, models, weights, resize, flip_tta, subsets, batch_size, workers, device, psnr_peak, output,
             markdown, csv_path, save_predictions, with_published, per_image, shard, merge_shards):
    """Evaluate models on the test split: MSE, fMSE and PSNR per subset and per foreground ratio.

    The protocol is the reference implementation's (docs/evaluation.md): at fixed256 the
    numbers are comparable with the paper's Tables 1 and 2. On a video dataset in HYouTube's
    layout (packed by `harmonize prepare --root HYouTube`) the tables are per clip and add the
    foreground flicker, a temporal-consistency figure (docs/evaluation.md#video).
    """
    from .. import zoo
    from ..errors import UsageError
    from ..evaluation.run import merge_shard_files, run_evaluation
    from ..sharding import joined, rank_errors, shard_launch

    peak = _psnr_peak(psnr_peak)
    for target in (output, markdown, csv_path):  # unwritable outputs fail now, not after the work
        if target and target != "-":
            check_writable(Path(target).parent)
    if merge_shards:
        if models or weights or shard or data:
            raise UsageError("--merge-shards takes only the shard files and the outputs (-o, --markdown, --csv)",
                             "harmonize eval --merge-shards a.json --merge-shards b.json -o results.json")
        run = merge_shard_files(merge_shards, output=output, markdown=markdown, csv=csv_path,
                                with_published=with_published, per_image=per_image)
        _print(run, output, with_published, per_image, None)
        return
    launch = shard_launch(shard)
    if launch.launcher == "shard" and (not output or output == "-"):
        raise UsageError("--shard K/N needs -o FILE.json for its part", f"e.g. --shard {shard} -o eval.{launch.rank}.json")
    if launch.grouped and not launch.is_main:
        console.set_verbosity(console.QUIET)  # rank 0 speaks for the job
    with interrupts.stopping("interrupted ({signal}); no result file was written"), rank_errors(launch), \
            joined(launch):
        for name in models:
            zoo.get_arch(name)  # unknown names fail before any work, suggesting the closest
        run = run_evaluation(data, models, weights, resize=resize, flip_tta=flip_tta, subsets=subsets,
                             batch_size=batch_size, workers=workers, device=device, psnr_peak=peak, output=output,
                             markdown=markdown, csv=csv_path, save_predictions=save_predictions,
                             with_published=with_published, per_image=per_image, launch=launch,
                             announce=console.info)
        if run.shard is not None:
            part = run.shard
            console.info(f"Wrote shard {part['index']}/{part['count']} ({part['n_images']} images) to {part['path']}; "
                         "merge the shards with --merge-shards")
        elif run.results is not None:  # rank 0 (or the only process) prints the tables
            _print(run, output, with_published, per_image, save_predictions)


def _print(run, output, with_published, per_image, save_predictions):
    from ..evaluation import report

    results = run.results
    if output == "-":
        click.echo(report.to_json(results, with_published, per_image), nl=False)
    else:
        for table in report.terminal_tables(results, with_published):
            console.print_result(table)
    first = results[0]
    rate = first.images_per_second
    console.info(f"{first.n_images} images x {len(results)} model(s) in {first.seconds:.1f} s"
                 + (f" ({rate:.1f} images/s)" if rate else "") + f" on {first.device}")
    for path in run.written:
        console.info(f"Wrote {path}")
    if save_predictions:
        console.info(f"Predictions in {save_predictions}")
