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


  torchrun --nproc-per-node 8 -m harmonize_cli eval --weights best.pth -o r.json    one rank per GPU
  harmonize eval --weights best.pth --shard 0/2 -o s0.json   (and 1/2 -o s1.json), then:
  harmonize eval --merge-shards s0.json --merge-shards s1.json -o r.json

Protocol, options and the JSON schema: docs/evaluation.md; several GPUs and nodes: docs/scaling.md
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
    from ..sharding import joined, rank_errors, shard_launch

    peak = _psnr_peak(psnr_peak)
    for target in (output, markdown, csv_path):  # unwritable outputs fail now, not after the work
        if target and target != "-":
            check_writable(Path(target).parent)
    if merge_shards:
        if models or weights or shard or data:
            raise UsageError("--merge-shards takes only the shard files and the outputs (-o, --markdown, --csv)",
                             "harmonize eval --merge-shards a.json --merge-shards b.json -o results.json")
        from ..evaluation import merge_results
        from ..evaluation.shards import read_shards

        parts, subset_order = read_shards(merge_shards)
        _report(merge_results(parts, subset_order), output, markdown, csv_path, with_published, per_image, None)
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
        _evaluate(data, models, weights, resize, flip_tta, subsets, batch_size, workers, device, peak, output,
                  markdown, csv_path, save_predictions, with_published, per_image, launch)


def _evaluate(data, models, weights, resize, flip_tta, subsets, batch_size, workers, device, peak, output,
              markdown, csv_path, save_predictions, with_published, per_image, launch):
    from .. import settings
    from ..errors import UsageError
    from ..evaluation import evaluate, load_models, merge_results, open_test_set
    from ..sharding import gather, rank_cores, rank_device, test_failure_hook

    if not models and not weights:
        raise UsageError("nothing to evaluate", "pass --model NAME and/or --weights FILE.pth "
                                                "(e.g. --model composite for the baseline)")
    resize = resize.lower()
    subset_names = _split_subsets(subsets)
    source, origin = settings.dataset_and_origin(data)
    _check_outputs(source, weights, output, markdown, csv_path, save_predictions)
    torch_device = rank_device(launch, device)
    if launch.grouped and torch_device.type == "cpu":  # the node's cores split between its ranks
        import torch

        torch.set_num_threads(rank_cores(launch))
    dataset = open_test_set(source, resize=resize, subsets=subset_names)
    test_failure_hook(launch)
    loaded = load_models(models, weights)
    if getattr(dataset, "is_video", False):
        clips = len({clip for clip, _ in dataset.frames})
        what = f"{len(dataset)} test frames in {clips} clips"
    else:
        what = f"{len(dataset)} test images"
    ranks = f", {launch.world_size} ranks" if launch.grouped else (
        f", shard {launch.rank}/{launch.world_size}" if launch.sharded else "")
    console.info(f"Evaluating {', '.join(model.label for model in loaded)} on {what} of "
                 f"{source} ({', '.join(dataset.subset_names)}), resize {resize}, device {torch_device}{ranks}")
    console.info(f"Dataset: {source} ({origin})")
    results = evaluate(loaded, dataset, batch_size=batch_size, device=torch_device, flip_tta=flip_tta,
                       psnr_peak=peak, workers=workers, save_predictions=save_predictions, progress=launch.is_main,
                       resize=resize, shard=launch if launch.sharded else None)
    subset_order = list(dataset.subset_names)
    if launch.launcher == "shard":
        from ..evaluation.shards import write_shard

        write_shard(output, results, launch.rank, launch.world_size, subset_order, len(dataset))
        console.info(f"Wrote shard {launch.rank}/{launch.world_size} ({results[0].n_images} images) to {output}; "
                     "merge the shards with --merge-shards")
        return
    if launch.grouped:
        parts = gather(results, launch)  # every rank's records; rank 0 sums them in test-set order
        if not launch.is_main:
            return
        results = merge_results(parts, subset_order)
    _report(results, output, markdown, csv_path, with_published, per_image, save_predictions)


def _report(results, output, markdown, csv_path, with_published, per_image, save_predictions):
    from ..evaluation import report

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
