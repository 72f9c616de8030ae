"""What ``harmonize prepare`` found and did: the per-file problems and the JSON report."""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import atomic_write_text
from ..limits import DEFAULT_MAX_PIXELS
from . import layout
from .layout import DatasetError


@dataclass
class Problem:
    """One bad file: what is wrong, and which samples it removed."""

    file: str
    reason: str
    subset: str
    split: str
    samples: list = field(default_factory=list)


@dataclass
class PackReport:
    """What ``pack_dataset`` did (also written as JSON beside the output)."""

    output: Path
    report_path: Path | None = None
    complete: bool = False
    up_to_date: bool = False  # True: the output was already current and nothing was done
    storage: str = "pixels"
    max_side: int = 1024
    max_pixels: int = DEFAULT_MAX_PIXELS  # files declaring more pixels are refused (0: no limit)
    subsets: list = field(default_factory=list)
    splits: list = field(default_factory=lambda: list(layout.SPLITS))
    counts: dict = field(default_factory=dict)  # subset -> split -> samples packed
    notes: list = field(default_factory=list)  # e.g. a split without a list file (str each)
    problems: list = field(default_factory=list)  # list[Problem]
    skipped: int = 0  # samples left out because of problems
    resized: int = 0  # samples whose images were shrunk to max_side
    bytes_on_disk: int = 0
    seconds: float = 0.0

    @property
    def samples(self) -> int:
        return sum(n for splits in self.counts.values() for n in splits.values())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["output"] = str(self.output)
        data["report_path"] = str(self.report_path) if self.report_path else None
        data["samples"] = self.samples
        return data


def fill_up_to_date(report: PackReport, attrs: dict, notes, started: float) -> None:
    """``report`` for an output that is already current: its attributes and the last JSON report."""
    report.up_to_date = True
    report.complete = True
    report.counts = json.loads(attrs.get("counts", "{}"))
    report.skipped = int(attrs.get("skipped", 0))
    report.resized = int(attrs.get("resized", 0))
    report.notes = list(notes)
    report.bytes_on_disk = report.output.stat().st_size
    path = report_path_for(report.output)
    report.report_path = path if path.exists() else None
    if report.report_path:
        try:
            previous = json.loads(path.read_text())
            report.problems = [Problem(**p) for p in previous.get("problems", [])]
        except (OSError, ValueError, TypeError):
            pass
    report.seconds = time.perf_counter() - started


def listing_notes(refs, examples: int = 3) -> list:
    """Notes on list files that pack without error but are probably mistakes: a composite listed
    twice in one split (packed twice, so it counts double in training) and a composite listed for
    both train and test (a test image seen in training). Each note gives the count and the first
    ``examples`` names."""
    seen, duplicates, by_split = set(), OrderedDict(), {}
    for ref in refs:
        key = (ref.subset, ref.split, ref.name)
        if key in seen:
            duplicates.setdefault((ref.subset, ref.split), []).append(ref.name)
        seen.add(key)
        by_split.setdefault((ref.subset, ref.split), []).append(ref.name)
    notes = []
    for (subset, split), names in duplicates.items():
        notes.append(f"{subset}: {len(names)} duplicate line(s) in the {split} list, packed as often as listed "
                     f"({_first(names, examples)})")
    subsets = list(OrderedDict.fromkeys(ref.subset for ref in refs))
    for subset in subsets:
        test = set(by_split.get((subset, "test"), ()))
        both = list(OrderedDict.fromkeys(n for n in by_split.get((subset, "train"), ()) if n in test))
        if both:
            notes.append(f"{subset}: {len(both)} composite(s) listed for both train and test: test images are "
                         f"trained on ({_first(both, examples)})")
    return notes


def _first(names, count) -> str:
    shown = ", ".join(names[:count])
    return f"first: {shown}" + (f", and {len(names) - count} more" if len(names) > count else "")


def report_path_for(output) -> Path:
    output = Path(output)
    return output.with_name(output.stem + ".report.json")


class Problems:
    """Problems keyed by (file, reason), each remembering the samples it removed."""

    def __init__(self, subsets=()):
        self._by_key: OrderedDict = OrderedDict()
        self._subsets = list(subsets)

    def add(self, file, reason, ref):
        key = (str(file), reason)
        problem = self._by_key.get(key)
        if problem is None:
            problem = self._by_key[key] = Problem(str(file), reason, ref.subset, ref.split)
        if ref.name not in problem.samples:
            problem.samples.append(ref.name)

    def __len__(self):
        return len(self._by_key)

    def list(self):
        """Sorted by subset (in the dataset's order), split and file."""
        order = {name: i for i, name in enumerate(self._subsets)}
        for problem in self._by_key.values():
            order.setdefault(problem.subset, len(order))
        splits = {name: i for i, name in enumerate(layout.SPLITS)}
        return sorted(
            self._by_key.values(), key=lambda p: (order[p.subset], splits.get(p.split, len(splits)), p.file)
        )


def size_problem(ref, sizes):
    """The file whose size disagrees with the other two (the composite when all differ)."""
    comp, mask, real = sizes
    text = f"size mismatch: composite {comp[0]}x{comp[1]}, mask {mask[0]}x{mask[1]}, real {real[0]}x{real[1]}"
    if comp == real:
        return ref.mask, text
    if comp == mask:
        return ref.real, text
    return ref.composite, text


def fail_strict(report, problems, report_path, started):
    report.problems = problems.list()
    write_report(report, report_path, started)
    first = report.problems[0]
    raise DatasetError(
        f"{len(report.problems)} problem(s) found with --strict; first: {first.file}: {first.reason}",
        f"full list in {report_path}; without --strict bad samples are skipped",
    )


def write_report(report: PackReport, path: Path, started: float) -> None:
    report.seconds = time.perf_counter() - started
    report.report_path = path
    try:
        atomic_write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")
        os.chmod(path, 0o644)
    except OSError:
        report.report_path = None
