"""What ``harmonize eval`` does, as one library call: :func:`run_evaluation`.

>>> from harmonize_cli.evaluation.run import run_evaluation
>>> run = run_evaluation("iharmony4.h5", models=["composite"], output="results.json")
>>> run.results[0].tables, run.written

It picks the dataset (``--data``, ``$HARMONIZE_DATA`` or the one ``prepare`` remembered), checks
every output before any work (writable, none of them an input, none replacing a file eval did
not write), opens the test split, resolves the models, evaluates (one process, a ``--shard K/N``
part, or torchrun / srun ranks merged on rank 0) and writes the JSON, Markdown and CSV files
asked for. :func:`merge_shard_files` does the same from the files of ``--shard`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from .. import settings
from ..atomic import check_writable
from ..choices import parse_list
from ..errors import UsageError
from . import report
from .results import merge_results
from .shards import read_shards, write_shard
from .testset import open_test_set

_WRITTEN_BY_EVAL = {  # how each output of an earlier `harmonize eval` begins (report.py)
    "-o": (b'{"model":', b'[{"model":'),
    "--markdown": (b"# Evaluation",),
    "--csv": (b"source,model,",),
}


@dataclass
class EvalRun:
    """The outcome of :func:`run_evaluation`: the results (None on a rank other than 0 of a
    torchrun / srun job), what was written, and for a ``--shard K/N`` part the file of its share."""

    results: Optional[list]
    subset_order: List[str] = field(default_factory=list)
    written: List[str] = field(default_factory=list)  # -o, --markdown, --csv files, in that order
    shard: Optional[dict] = None  # {"path", "index", "count", "n_images"} of a --shard K/N part


def run_evaluation(data=None, models: Sequence[str] = (), weights: Sequence = (), *, resize: str = "fixed256",
                   flip_tta: bool = False, subsets=None, batch_size: Optional[int] = None,
                   workers: Optional[int] = None, device=None, psnr_peak: Optional[float] = None,
                   output=None, markdown=None, csv=None, save_predictions=None, with_published: bool = False,
                   per_image: bool = False, launch=None, announce: Optional[Callable[[str], None]] = None) -> EvalRun:
    """Evaluate ``models`` (names) and ``weights`` (checkpoints) on the test split of ``data``.

    ``subsets``: names (a list or comma lists; None: all). ``psnr_peak``: None for each
    target's maximum (the reference's) or a number such as 255. ``output`` (``"-"``: none
    written, the caller prints the JSON), ``markdown``, ``csv``: files written atomically when
    the run is done. ``launch``: a :class:`~harmonize_cli.sharding.Launch` (None: one process);
    with ``--shard K/N`` (``launch.launcher == "shard"``) the share's records go to ``output``
    instead. ``announce(line)`` gets what is about to be evaluated, and where the dataset choice
    came from. Usage problems raise a UsageError before any work.
    """
    from ..sharding import Launch, gather, rank_cores, rank_device, test_failure_hook

    launch = launch or Launch()
    if not models and not weights:
        raise UsageError("nothing to evaluate", "pass --model NAME and/or --weights FILE.pth "
                                                "(e.g. --model composite for the baseline)")
    resize = resize.lower()
    source, origin = settings.dataset_and_origin(data)
    check_outputs(source, weights, output, markdown, csv, save_predictions)
    torch_device = rank_device(launch, device)
    if launch.grouped and torch_device.type == "cpu":  # the node's cores split between its ranks
        import torch

        torch.set_num_threads(rank_cores(launch))
    dataset = open_test_set(source, resize=resize, subsets=parse_list(subsets) or None)
    test_failure_hook(launch)
    from . import evaluate, load_models  # through the package, where they may be wrapped

    loaded = load_models(models, weights)
    if announce is not None:
        announce(f"Evaluating {', '.join(model.label for model in loaded)} on {_what(dataset)} of {source} "
                 f"({', '.join(dataset.subset_names)}), resize {resize}, device {torch_device}{_ranks(launch)}")
        announce(f"Dataset: {source} ({origin})")
    results = evaluate(loaded, dataset, batch_size=batch_size, device=torch_device, flip_tta=flip_tta,
                       psnr_peak=psnr_peak, workers=workers, save_predictions=save_predictions,
                       progress=launch.is_main, resize=resize, shard=launch if launch.sharded else None)
    subset_order = list(dataset.subset_names)
    if launch.launcher == "shard":
        write_shard(output, results, launch.rank, launch.world_size, subset_order, len(dataset))
        return EvalRun(None, subset_order, shard={"path": str(output), "index": launch.rank,
                                                  "count": launch.world_size, "n_images": results[0].n_images})
    if launch.grouped:
        parts = gather(results, launch)  # every rank's records; rank 0 sums them in test-set order
        if not launch.is_main:
            return EvalRun(None, subset_order)
        results = merge_results(parts, subset_order)
    return EvalRun(results, subset_order, written=write_outputs(results, output, markdown, csv, with_published,
                                                                per_image))


def merge_shard_files(paths: Sequence, *, output=None, markdown=None, csv=None, with_published: bool = False,
                      per_image: bool = False) -> EvalRun:
    """The results of the whole test set from the files of every ``--shard K/N`` run (equal to
    one process's), written to ``output``, ``markdown`` and ``csv`` as :func:`run_evaluation` does."""
    for target in (output, markdown, csv):  # unwritable outputs fail now, not after the reading
        if target and target != "-":
            check_writable(Path(target).parent)
    parts, subset_order = read_shards(paths)
    results = merge_results(parts, subset_order)
    return EvalRun(results, list(subset_order),
                   written=write_outputs(results, output, markdown, csv, with_published, per_image))


def write_outputs(results, output=None, markdown=None, csv=None, with_published: bool = False,
                  per_image: bool = False) -> List[str]:
    """Write the JSON (not for ``"-"``), Markdown and CSV files asked for; the paths written."""
    written = []
    if output and output != "-":
        report.write_json(output, results, with_published, per_image)
        written.append(str(output))
    if markdown:
        report.write_markdown(markdown, results, with_published)
        written.append(str(markdown))
    if csv:
        report.write_csv(csv, results, with_published)
        written.append(str(csv))
    return written


def check_outputs(source, weights, output, markdown, csv_path, save_predictions) -> None:
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


def _what(dataset) -> str:
    if getattr(dataset, "is_video", False):
        clips = len({clip for clip, _ in dataset.frames})
        return f"{len(dataset)} test frames in {clips} clips"
    return f"{len(dataset)} test images"


def _ranks(launch) -> str:
    if launch.grouped:
        return f", {launch.world_size} ranks"
    return f", shard {launch.rank}/{launch.world_size}" if launch.sharded else ""
