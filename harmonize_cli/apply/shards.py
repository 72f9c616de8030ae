"""Reports of ``harmonize apply --shard K/N`` and their merge into the one ``harmonize.json``.

Each of N independent processes writes ``OUT/harmonize.K-of-N.json``: the report of its share,
with ``"shard": {"index": K, "count": N, "positions": [...], "total": T}`` (the positions of its
entries in the one-process plan). :func:`merge_reports` checks that the N parts are all there and
cover every position once, and writes ``OUT/harmonize.json`` with every entry in the one-process
order and the summary counted again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import HarmonizeError, UsageError
from .outcome import APPLY_STATUSES, REPORT_NAME

SHARD_PATTERN = re.compile(r"^harmonize\.(\d+)-of-(\d+)\.json$")
SAME_RUN = ("model", "weights_sha256", "network_size", "options")


def shard_report_name(index: int, count: int) -> str:
    return f"harmonize.{int(index)}-of-{int(count)}.json"


def place_parts(parts, total: int, names=None) -> list:
    """``[item at position 0, 1, ...]`` from ``parts`` = ``[(positions, items), ...]`` (one per share);
    a position in two shares, out of range or in none is a HarmonizeError naming the share."""
    placed, owner = [None] * int(total), [None] * int(total)
    for number, (positions, items) in enumerate(parts):
        name = names[number] if names else f"share {number}"
        if len(positions) != len(items):
            raise HarmonizeError(f"{name} lists {len(items)} files for {len(positions)} positions", "run that shard again")
        for position, item in zip(positions, items):
            if not 0 <= position < total or owner[position] is not None:
                raise HarmonizeError(f"{name}: input {position} is out of range or in two shards",
                                     "run that shard again with the same inputs")
            placed[position], owner[position] = item, number
    if any(number is None for number in owner):
        raise HarmonizeError(f"the shares cover {sum(n is not None for n in owner)} of {total} inputs",
                             "run every shard with the same inputs")
    return placed


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarmonizeError(f"cannot read the shard report {path}: {exc}",
                             "run that shard again (finished outputs are skipped)") from None


def merge_reports(out) -> Path:
    """Merge ``OUT/harmonize.K-of-N.json`` (K = 0..N-1) into ``OUT/harmonize.json``; returns its path.
    The shard files are kept. A missing, duplicated or foreign part is a one-line error."""
    from ..atomic import atomic_write_text

    out = Path(out)
    found = sorted(path for path in out.glob("harmonize.*-of-*.json") if SHARD_PATTERN.match(path.name)) \
        if out.is_dir() else []
    if not found:
        raise UsageError(f"no harmonize.K-of-N.json in {out}", "run `harmonize apply ... --shard K/N -o OUT` first")
    counts = {int(SHARD_PATTERN.match(path.name).group(2)) for path in found}
    if len(counts) > 1:
        raise UsageError(f"{out} holds shard reports of different splits ({', '.join(f'N={n}' for n in sorted(counts))})",
                         "remove the reports of the old split and merge again")
    count = counts.pop()
    parts = {int(SHARD_PATTERN.match(path.name).group(1)): (path, _read(path)) for path in found}
    missing = [index for index in range(count) if index not in parts]
    if missing:
        names = ", ".join(shard_report_name(index, count) for index in missing)
        raise HarmonizeError(f"{out}: missing {names}",
                             f"run `harmonize apply ... --shard {missing[0]}/{count}` (finished outputs are skipped)")
    first_path, first = parts[0]
    total = first.get("shard", {}).get("total")
    for index in range(count):
        path, part = parts[index]
        shard = part.get("shard") or {}
        if shard.get("index") != index or shard.get("count") != count or shard.get("total") != total:
            raise HarmonizeError(f"{path} does not describe share {index} of {count} of {total} inputs",
                                 "run that shard again with the same inputs")
        for key in SAME_RUN:
            if part.get(key) != first.get(key):
                raise HarmonizeError(f"{path} and {first_path} differ in {key}",
                                     "merge only the shards of one run (same inputs, model and options)")
    files = place_parts([(parts[k][1]["shard"].get("positions", []), parts[k][1].get("files", [])) for k in range(count)],
                        int(total or 0), names=[str(parts[k][0]) for k in range(count)])
    merged = {key: value for key, value in first.items() if key != "shard"}
    merged["summary"] = {**{status: sum(entry["status"] == status for entry in files) for status in APPLY_STATUSES},
                         "total": len(files),
                         "seconds": max(parts[index][1]["summary"]["seconds"] for index in range(count)),
                         "stopped": any(parts[index][1]["summary"]["stopped"] for index in range(count))}
    merged["files"] = files
    merged["shards"] = count
    target = out / REPORT_NAME
    try:
        atomic_write_text(target, json.dumps(merged, indent=2) + "\n")
    except OSError as exc:
        raise HarmonizeError(f"cannot write the report {target}: {exc.strerror or exc}") from None
    return target
