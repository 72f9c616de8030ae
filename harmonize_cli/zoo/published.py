"""Published numbers on the iHarmony4 test set (256 x 256), for ``harmonize eval --with-published``.

Sources: the paper's Table 1 (MSE / PSNR per subset), Table 2 (MSE / fMSE per foreground ratio),
the iHarmony4 dataset page (the unchanged composite) and the reference repository's table of its
released checkpoints (kept with the weights, in :mod:`harmonize_cli.zoo.released`, and read from
there). All use the reference protocol: Fixed256 resize, PSNR peak = each target's own maximum;
PCT-Net's rows, full resolution (their numbers are those of its released checkpoints, so they
are written once, in the weights table).

``PUBLISHED[key]`` = ``{"label", "arch", "source", "tag", "by_subset": {subset: {"MSE", "PSNR"[, "fMSE"]}},
"by_fg_ratio": {range: {"MSE", "fMSE"}}}``; ``arch`` is our architecture name or None.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from ..choices import TABLE_ROWS as SUBSETS
from ..errors import UsageError
from .released import ALL_WEIGHTS, HARMONIZATION_WEIGHTS

FG_RANGES = ("0-5%", "5-15%", "15-100%", "0-100%")

TABLE1 = "paper, Table 1"
TABLE2 = "paper, Table 2"
DATASET_PAGE = "iHarmony4 dataset page"
RELEASED = "reference repository, released checkpoint"
PCT_PAPER = "PCT-Net paper (CVPR 2023), full resolution, HAdobe5k capped at 1024 px"


def _table1(*cells):
    return {subset: {"MSE": mse, "PSNR": value} for subset, (mse, value) in zip(SUBSETS, cells)}


def _table2(*cells):
    return {name: {"MSE": mse, "fMSE": value} for name, (mse, value) in zip(FG_RANGES, cells)}


def _tag(source: str) -> str:
    return "released" if source == RELEASED else "iHarmony4" if source == DATASET_PAGE else "paper"


def _entry(label, arch, source, by_subset, by_fg_ratio=None, fmse_all=None):
    by_subset = {subset: dict(row) for subset, row in by_subset.items()}
    by_fg_ratio = by_fg_ratio or {}
    if fmse_all is None and "0-100%" in by_fg_ratio:
        fmse_all = by_fg_ratio["0-100%"]["fMSE"]
    if fmse_all is not None and "All" in by_subset:
        by_subset["All"]["fMSE"] = fmse_all
    return {"label": label, "arch": arch, "source": source, "tag": _tag(source), "by_subset": by_subset,
            "by_fg_ratio": by_fg_ratio}


PUBLISHED: Dict[str, dict] = {
    "composite": _entry(
        "Composite", "composite", DATASET_PAGE,
        _table1((69.37, 33.94), (345.54, 28.16), (264.35, 28.32), (109.65, 34.01), (172.47, 31.63)),
        fmse_all=1387.30),
    "dih": _entry(
        "DIH", "dih", f"{TABLE1}; {TABLE2}",
        _table1((51.85, 34.69), (92.65, 32.28), (163.38, 29.55), (82.34, 34.62), (76.77, 33.41)),
        _table2((18.92, 799.17), (64.23, 725.86), (228.86, 768.89), (76.77, 773.18))),
    "s2am": _entry(
        "S2AM", "s2am", TABLE1,
        _table1((41.07, 35.47), (63.40, 33.77), (143.45, 30.03), (76.61, 34.50), (59.67, 34.35))),
    "dovenet": _entry(
        "DoveNet", None, TABLE1,
        _table1((36.72, 35.83), (52.32, 34.34), (133.14, 30.21), (54.05, 35.18), (52.36, 34.75))),
    "dih-augs-fnmse": _entry(
        "DIH + augs + FN-MSE", "dih", TABLE1,
        _table1((22.54, 37.77), (35.58, 35.30), (90.53, 32.00), (64.13, 36.37), (34.70, 36.38))),
    "idih-augs-fnmse": _entry(
        "iDIH + augs + FN-MSE", "idih", f"{TABLE1}; {TABLE2}",
        _table1((19.29, 38.44), (30.87, 36.09), (84.10, 32.61), (55.24, 37.26), (30.56, 37.08)),
        _table2((8.38, 366.32), (25.39, 287.02), (89.44, 297.94), (30.56, 330.45))),
    "idih-hrnet-w18s": _entry(
        "iDIH-HRNet-W18s", "idih-hrnet-w18s", f"{TABLE1}; {TABLE2}",
        _table1((14.01, 39.64), (21.36, 37.35), (60.41, 34.03), (50.61, 37.68), (22.00, 38.31)),
        _table2((6.73, 294.76), (18.03, 204.69), (63.02, 207.82), (22.00, 252.00))),
    "pctnet-vit": _entry("PCTNet-ViT (full resolution)", "pctnet-vit", PCT_PAPER, ALL_WEIGHTS["PCTNet_ViT"].metrics),
    "pctnet-cnn": _entry("PCTNet-CNN (full resolution)", "pctnet-cnn", PCT_PAPER, ALL_WEIGHTS["PCTNet_CNN"].metrics),
}


def _released_entries() -> Dict[str, dict]:
    entries = {}
    for weights in HARMONIZATION_WEIGHTS:
        entries[weights.name] = _entry(weights.name, weights.arch, RELEASED,
                                       {subset: dict(row) for subset, row in weights.metrics.items()})
    return entries


def all_published() -> Dict[str, dict]:
    """Every published row: the paper's tables and the released checkpoints."""
    merged = dict(PUBLISHED)
    merged.update(_released_entries())
    return merged


def published_for(arch: Optional[str]) -> List[dict]:
    """Published rows of one architecture (paper rows first, then released checkpoints)."""
    if arch is None:
        return []
    return [dict(entry, key=key) for key, entry in all_published().items() if entry["arch"] == arch]


def paper_summary(arch: str) -> dict:
    """The "All" row of the first paper (or dataset-page) entry of an architecture, else ``{}``."""
    for entry in PUBLISHED.values():
        if entry["arch"] == arch and "All" in entry["by_subset"]:
            return {"All": dict(entry["by_subset"]["All"])}
    return {}


def get_published(key: str) -> dict:
    entries = all_published()
    if key not in entries:
        raise UsageError(f"no published numbers named {key!r}", f"choose one of: {', '.join(entries)}")
    return dict(entries[key], key=key)
