"""Evaluation reports: rich tables for the terminal, and JSON, Markdown and CSV files (atomic).

One model gives two detailed tables (per subset; per foreground ratio). Several models, or
``with_published``, add two comparison tables in the layout of the paper's Tables 1 and 2
(one row per model, published rows beside ours). On a video dataset (HYouTube layout) the
per-subset table gives way to a per-clip table with the foreground flicker
(:mod:`harmonize_cli.evaluation.video_metrics`), and several models get a comparison of the
overall video figures.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import PurePosixPath
from typing import List, Optional, Sequence

from ..atomic import atomic_write_text
from ..zoo.published import published_for
from .metrics import FG_RATIO_RANGES
from .video_metrics import FLICKER

SUBSET_COLUMNS = ("N", "MSE", "fMSE", "PSNR", "ms_per_image")
FG_COLUMNS = ("N", "MSE", "fMSE")
CLIP_COLUMNS = ("N", "MSE", "fMSE", "PSNR", FLICKER)
TERMINAL_CLIPS = 40  # clips listed on the terminal; the files list every clip
FLICKER_NOTE = ("flicker: mean change of the foreground's mean colour error between consecutive frames, "
                "0..255 levels, lower is steadier")


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _cell(row: Optional[dict], column: str) -> str:
    if not row:
        return "-"
    return _fmt(row.get(column), 1 if column == "ms_per_image" else 2)


def _pair(row: Optional[dict], first: str, second: str) -> str:
    if not row or (row.get(first) is None and row.get(second) is None):
        return "-"
    return f"{_fmt(row.get(first))} / {_fmt(row.get(second))}"


def _heading(result) -> str:
    """The model's name, and its weights unless the name holds their file name already."""
    label = result.label or result.model
    if result.weights and _basename(result.weights) not in label:
        return f"{label}, weights {result.weights}"
    return label


def _basename(path) -> str:
    """The file name of ``path``, with either kind of slash (``C:\\runs\\best.pth``: ``best.pth``)."""
    return PurePosixPath(str(path).replace("\\", "/")).name


def _settings(result) -> str:
    parts = [f"resize {result.resize or 'as given'}", result.psnr_peak_label]
    if result.flip_tta:
        parts.append("flip TTA")
    return "; ".join(parts)


def _published_label(entry) -> str:
    return f"{entry['label']} [{entry['tag']}]"


def _text(value: str):
    """Literal text for rich (labels may hold square brackets)."""
    from rich.text import Text

    return Text(str(value))


def _subsets_of(results) -> List[str]:
    names: List[str] = []
    for result in results:
        for name in result.by_subset:
            if name != "All" and name not in names:
                names.append(name)
    return names + ["All"]


def published_rows(results, with_published: bool) -> List[dict]:
    """Published rows for the architectures evaluated (each once), in the order of the results."""
    if not with_published:
        return []
    rows, seen = [], set()
    for result in results:
        for entry in published_for(result.model):
            if entry["key"] not in seen:
                seen.add(entry["key"])
                rows.append(entry)
    return rows


# ------------------------------------------------------------------------------------ terminal
def subset_table(result):
    from rich.table import Table

    table = Table(title=_text(f"{_heading(result)}: per subset"), caption=_text(_settings(result)),
                  title_justify="left")
    table.add_column("subset")
    for column, header in zip(SUBSET_COLUMNS, ("N", "MSE", "fMSE", "PSNR", "ms/img")):
        table.add_column(header, justify="right")
    for name, row in result.by_subset.items():
        if name == "All":
            table.add_section()
        style = "bold" if name == "All" else None
        table.add_row(_text(name), *(_cell(row, column) for column in SUBSET_COLUMNS), style=style)
    return table


def clip_table(result, limit: int = TERMINAL_CLIPS):
    """Per clip (frames, MSE, fMSE, PSNR, flicker) and the overall row of a video result."""
    from rich.table import Table

    table = Table(title=_text(f"{_heading(result)}: per clip"),
                  caption=_text(_settings(result) + "\n" + FLICKER_NOTE), title_justify="left")
    table.add_column("clip")
    for header in CLIP_COLUMNS:
        table.add_column(header, justify="right")
    clips = [name for name in result.by_clip if name != "All"]
    for name in clips[:limit]:
        table.add_row(_text(name), *(_cell(result.by_clip[name], column) for column in CLIP_COLUMNS))
    if len(clips) > limit:
        # rich leaves the row's other cells empty
        table.add_row(_text(f"... {len(clips) - limit} more clips (every clip: -o, --markdown, --csv)"), style="dim")
    table.add_section()
    overall = result.by_clip["All"]
    table.add_row(_text(f"All ({len(clips)} clips)"), *(_cell(overall, column) for column in CLIP_COLUMNS),
                  style="bold")
    return table


def comparison_video_table(results):
    """One row per model: the overall video figures (MSE, fMSE, PSNR over every frame; flicker)."""
    from rich.table import Table

    table = Table(title="video: every frame of every clip", caption=_text(FLICKER_NOTE), title_justify="left")
    table.add_column("model", no_wrap=True)
    for header in CLIP_COLUMNS:
        table.add_column(header, justify="right")
    for result in results:
        table.add_row(_text(result.label or result.model),
                      *(_cell(result.by_clip.get("All"), column) for column in CLIP_COLUMNS))
    return table


def fg_ratio_table(result):
    from rich.table import Table

    table = Table(title=_text(f"{result.label or result.model}: per foreground ratio"),
                  caption="ranges include both ends", title_justify="left")
    table.add_column("foreground")
    for header in FG_COLUMNS:
        table.add_column(header, justify="right")
    for name, row in result.by_fg_ratio.items():
        if name == "0-100%":
            table.add_section()
        table.add_row(name, *(_cell(row, column) for column in FG_COLUMNS), style="bold" if name == "0-100%" else None)
    return table


def comparison_subset_table(results, published: Sequence[dict] = ()):
    from rich.table import Table

    subsets = _subsets_of(results)
    caption = _settings(results[0]) + ("; below the line: published numbers" if published else "")
    table = Table(title="MSE / PSNR per subset", caption=_text(caption), title_justify="left")
    table.add_column("model", no_wrap=True)
    for name in subsets:
        table.add_column(name, justify="right")
    table.add_column("fMSE All", justify="right")
    for result in results:
        table.add_row(_text(result.label or result.model),
                      *(_pair(result.by_subset.get(name), "MSE", "PSNR") for name in subsets),
                      _fmt(result.by_subset["All"].get("fMSE")))
    if published:
        table.add_section()
    for entry in published:
        by_subset = entry["by_subset"]
        table.add_row(_text(_published_label(entry)), *(_pair(by_subset.get(name), "MSE", "PSNR") for name in subsets),
                      _fmt(by_subset.get("All", {}).get("fMSE")), style="dim")
    return table


def comparison_fg_table(results, published: Sequence[dict] = ()):
    from rich.table import Table

    table = Table(title="MSE / fMSE per foreground ratio", caption="ranges include both ends", title_justify="left")
    table.add_column("model", no_wrap=True)
    for name in FG_RATIO_RANGES:
        table.add_column(name, justify="right")
    for result in results:
        table.add_row(_text(result.label or result.model),
                      *(_pair(result.by_fg_ratio.get(name), "MSE", "fMSE") for name in FG_RATIO_RANGES))
    rows = [entry for entry in published if entry.get("by_fg_ratio")]
    if rows:
        table.add_section()
    for entry in rows:
        table.add_row(_text(_published_label(entry)),
                      *(_pair(entry["by_fg_ratio"].get(name), "MSE", "fMSE") for name in FG_RATIO_RANGES), style="dim")
    return table


def terminal_tables(results, with_published: bool = False) -> list:
    """The rich renderables to print: detailed tables for one model, comparison tables for several."""
    published = published_rows(results, with_published)
    first = results[0]
    tables = [clip_table(first) if first.is_video else subset_table(first), fg_ratio_table(first)] \
        if len(results) == 1 else []
    if len(results) > 1 or published:
        tables += [comparison_subset_table(results, published), comparison_fg_table(results, published)]
    if len(results) > 1 and any(result.is_video for result in results):
        tables.append(comparison_video_table([result for result in results if result.is_video]))
    return tables


# ---------------------------------------------------------------------------------------- JSON
def to_json_data(results, with_published: bool = False, per_image: bool = False):
    """One model: the object of docs/evaluation.md; several: a list of such objects."""
    documents = []
    for result in results:
        document = result.to_dict(per_image=per_image)
        if with_published:
            document["published"] = [
                {"label": entry["label"], "source": entry["source"], "by_subset": entry["by_subset"],
                 "by_fg_ratio": entry["by_fg_ratio"]}
                for entry in published_for(result.model)
            ]
        documents.append(document)
    return documents[0] if len(documents) == 1 else documents


def to_json(results, with_published: bool = False, per_image: bool = False) -> str:
    return json.dumps(to_json_data(results, with_published, per_image), indent=2) + "\n"


def write_json(path, results, with_published: bool = False, per_image: bool = False) -> None:
    atomic_write_text(path, to_json(results, with_published, per_image))


# ------------------------------------------------------------------------------------ Markdown
def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---:" if i >= right_from else "---" for i in range(len(header))) + " |"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(results, with_published: bool = False) -> str:
    published = published_rows(results, with_published)
    parts = ["# Evaluation", ""]
    first = results[0]
    parts.append(f"Resize `{first.resize or 'as given'}`; {first.psnr_peak_label}; "
                 f"flip TTA {'on' if first.flip_tta else 'off'}; foreground-ratio ranges include both ends.")
    if published:
        parts.append("")
        parts.append("Published rows: " + "; ".join(f"{_published_label(e)}: {e['source']}" for e in published) + ".")
    parts.append("")
    if len(results) > 1 or published:
        subsets = _subsets_of(results)
        rows = [[r.label or r.model, *(_pair(r.by_subset.get(n), "MSE", "PSNR") for n in subsets),
                 _fmt(r.by_subset["All"].get("fMSE"))] for r in results]
        rows += [[_published_label(e), *(_pair(e["by_subset"].get(n), "MSE", "PSNR") for n in subsets),
                  _fmt(e["by_subset"].get("All", {}).get("fMSE"))] for e in published]
        parts += ["## MSE / PSNR per subset", "", _md_table(["model", *subsets, "fMSE All"], rows), ""]
        rows = [[r.label or r.model, *(_pair(r.by_fg_ratio.get(n), "MSE", "fMSE") for n in FG_RATIO_RANGES)]
                for r in results]
        rows += [[_published_label(e), *(_pair(e["by_fg_ratio"].get(n), "MSE", "fMSE")
                                                     for n in FG_RATIO_RANGES)]
                 for e in published if e.get("by_fg_ratio")]
        parts += ["## MSE / fMSE per foreground ratio", "", _md_table(["model", *FG_RATIO_RANGES], rows), ""]
    for result in results:
        parts += [f"## {_heading(result)}", "", _settings(result) + ".", ""]
        rows = [[name, *(_cell(row, column) for column in SUBSET_COLUMNS)] for name, row in result.by_subset.items()]
        parts += [_md_table(["subset", "N", "MSE", "fMSE", "PSNR", "ms/img"], rows), ""]
        rows = [[name, *(_cell(row, column) for column in FG_COLUMNS)] for name, row in result.by_fg_ratio.items()]
        parts += [_md_table(["foreground", *FG_COLUMNS], rows), ""]
        if result.is_video:
            rows = [[name, *(_cell(row, column) for column in CLIP_COLUMNS)] for name, row in result.by_clip.items()]
            parts += [f"### {result.label or result.model}: per clip", "",
                      "MSE, fMSE and PSNR are means over the frames (All: over every frame); "
                      f"{FLICKER_NOTE} (All: over every pair of consecutive frames).", "",
                      _md_table(["clip", *CLIP_COLUMNS], rows), ""]
    return "\n".join(parts)


def write_markdown(path, results, with_published: bool = False) -> None:
    atomic_write_text(path, to_markdown(results, with_published))


# ------------------------------------------------------------------------------------------ CSV
CSV_FIELDS = ("source", "model", "weights", "resize", "psnr_peak", "flip_tta", "table", "group",
              "N", "MSE", "fMSE", "PSNR", "ms_per_image", FLICKER)
CSV_VALUES = ("N", "MSE", "fMSE", "PSNR", "ms_per_image", FLICKER)


def to_csv(results, with_published: bool = False) -> str:
    """One tidy row per (model, table, group); published rows have ``source`` = where they come from.

    Video results add the table ``clip`` (one row per clip and ``All``, with ``flicker``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        common = {"source": "measured", "model": result.label or result.model, "weights": result.weights or "",
                  "resize": result.resize or "", "psnr_peak": "target_max" if result.psnr_peak is None
                  else result.psnr_peak, "flip_tta": int(result.flip_tta)}
        for table, rows in (("subset", result.by_subset), ("fg_ratio", result.by_fg_ratio),
                            ("clip", result.by_clip)):
            for group, row in rows.items():
                writer.writerow({**common, "table": table, "group": group,
                                 **{key: _csv_value(row.get(key)) for key in CSV_VALUES}})
    for entry in published_rows(results, with_published):
        common = {"source": entry["source"], "model": entry["label"], "weights": "", "resize": "fixed256",
                  "psnr_peak": "target_max", "flip_tta": ""}
        for table, rows in (("subset", entry["by_subset"]), ("fg_ratio", entry.get("by_fg_ratio") or {})):
            for group, row in rows.items():
                writer.writerow({**common, "table": table, "group": group,
                                 **{key: _csv_value(row.get(key)) for key in SUBSET_COLUMNS}})
    return buffer.getvalue()


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_csv(path, results, with_published: bool = False) -> None:
    atomic_write_text(path, to_csv(results, with_published))
