"""The evaluation wing: the reference protocol on the iHarmony4 test set.

- ``engine.py``: :func:`evaluate`, the batched evaluation loop; :func:`load_models` (via ``zoo.resolve``).
- ``testset.py``: the test split with the protocol's resize (:func:`open_test_set`).
- ``metrics.py``: MSE, fMSE, PSNR per image, foreground-ratio ranges, running sums.
- ``shards.py``: the files of ``eval --shard K/N`` and reading them back (:func:`merge_results` merges).
- ``report.py``: the paper's tables in the terminal, JSON, Markdown and CSV.
- ``run.py``: :func:`run_evaluation`, what ``harmonize eval`` does (dataset, output checks,
  models, evaluation, shards, files) as one call; :func:`merge_shard_files` for ``--merge-shards``.

Published numbers live with the zoo (:mod:`harmonize_cli.zoo.published`).
"""

from .engine import EvalResult, evaluate, load_models, merge_results
from .testset import check_test_set, open_test_set
from .run import EvalRun, merge_shard_files, run_evaluation  # noqa: E402  (after evaluate: run calls it through here)

__all__ = ["EvalResult", "EvalRun", "check_test_set", "evaluate", "load_models", "merge_results",
           "merge_shard_files", "open_test_set", "run_evaluation"]
