"""The evaluation wing: the reference protocol on the iHarmony4 test set.

- ``engine.py``: :func:`evaluate`, the batched evaluation loop.
- ``results.py``: :class:`EvalResult` (the tables of one model), the sums they come from, :func:`merge_results`.
- ``loading.py``: :func:`load_models` (``--model``/``--weights`` via ``zoo.resolve``).
- ``testset.py``: the test split with the protocol's resize (:func:`open_test_set`).
- ``metrics.py``: MSE, fMSE, PSNR per image, foreground-ratio ranges, running sums.
- ``shards.py``: the files of ``eval --shard K/N`` and reading them back (:func:`merge_results` merges).
- ``report.py``: the paper's tables in the terminal, JSON, Markdown and CSV.
- ``run.py``: ``run_evaluation``, what ``harmonize eval`` does (dataset, output checks, models,
  evaluation, shards, files) as one call; ``merge_shard_files`` for ``--merge-shards``. It sits
  above this face (it calls :func:`evaluate` through it), so it is imported from ``.run``.

Published numbers live with the zoo (:mod:`harmonize_cli.zoo.published`).
"""

from .engine import evaluate
from .loading import load_models
from .results import EvalResult, merge_results
from .testset import check_test_set, open_test_set

__all__ = ["EvalResult", "check_test_set", "evaluate", "load_models", "merge_results", "open_test_set"]
