"""Shard files of ``harmonize eval --shard K/N`` and reading them back for ``--merge-shards``.

A shard file holds, for every model, the per-image records of its share of the test set (each
with its ``index`` in the whole set) and what the tables need besides; JSON keeps every float
exactly, so the merged tables (:func:`~harmonize_cli.evaluation.results.merge_results`) equal those
of one process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence, Tuple

from ..errors import HarmonizeError, UsageError
from .results import EvalResult

FORMAT = "harmonize-eval-shard/1"


def shard_document(results: Sequence[EvalResult], index: int, count: int, subset_order: Sequence[str],
                   n_samples: int) -> dict:
    return {
        "format": FORMAT,
        "shard": {"index": int(index), "count": int(count), "n_samples": int(n_samples)},
        "subset_order": list(subset_order),
        "results": [{"model": r.model, "weights": r.weights, "label": r.label, "resize": r.resize,
                     "psnr_peak": r.psnr_peak, "flip_tta": r.flip_tta, "device": r.device, "seconds": r.seconds,
                     "per_image": r.per_image, "skipped": r.skipped} for r in results],
    }


def write_shard(path, results, index: int, count: int, subset_order, n_samples: int) -> None:
    from ..atomic import atomic_write_text

    document = shard_document(results, index, count, subset_order, n_samples)
    atomic_write_text(path, json.dumps(document) + "\n")


def read_shards(paths: Sequence) -> Tuple[List[List[EvalResult]], List[str]]:
    """``(parts, subset_order)`` from the N shard files of one run (any order); a missing,
    repeated or foreign shard is a one-line error."""
    documents = {}
    for path in paths:
        try:
            document = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise HarmonizeError(f"cannot read the shard file {path}: {exc}", "run that shard again") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise UsageError(f"{path} is not a shard file of `harmonize eval --shard K/N`",
                             "pass the files that `eval --shard K/N -o FILE` wrote")
        shard = document["shard"]
        if shard["index"] in documents:
            raise UsageError(f"{path} and {documents[shard['index']][0]} are both shard {shard['index']}",
                             "pass each shard once")
        documents[shard["index"]] = (path, document)
    if not documents:
        raise UsageError("no shard files to merge", "harmonize eval --merge-shards a.json --merge-shards b.json")
    first = next(iter(documents.values()))[1]
    count, n_samples = first["shard"]["count"], first["shard"]["n_samples"]
    for path, document in documents.values():
        if document["shard"]["count"] != count or document["shard"]["n_samples"] != n_samples:
            raise UsageError(f"{path} belongs to another split ({document['shard']['count']} shards of "
                             f"{document['shard']['n_samples']} images, not {count} of {n_samples})",
                             "merge the shards of one run")
    missing = [index for index in range(count) if index not in documents]
    if missing:
        raise HarmonizeError(f"shard {', '.join(f'{k}/{count}' for k in missing)} missing",
                             f"run `harmonize eval ... --shard {missing[0]}/{count} -o FILE` and pass its file too")
    parts = [[_result(entry) for entry in documents[index][1]["results"]] for index in range(count)]
    return parts, list(first.get("subset_order", []))


def _result(entry: dict) -> EvalResult:
    return EvalResult(model=entry["model"], weights=entry["weights"], resize=entry["resize"],
                      psnr_peak=entry["psnr_peak"], flip_tta=entry["flip_tta"], by_subset={}, by_fg_ratio={},
                      per_image=list(entry["per_image"]), skipped=list(entry["skipped"]), device=entry["device"],
                      seconds=float(entry["seconds"]), label=entry["label"])
