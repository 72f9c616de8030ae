"""evaluation/report.py against hand-written expected text: every Markdown table, CSV row, JSON
field and terminal-table cell is written out here from hand-made results (so a swapped column, a
wrong digit count or a lost row is caught, not only a missing header)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from harmonize_cli.evaluation import report
from harmonize_cli.evaluation.engine import EvalResult

NONE_ROW = {"N": 0, "MSE": None, "fMSE": None, "PSNR": None, "ms_per_image": None}


def _composite():
    return EvalResult(
        model="composite", weights=None, resize="fixed256", psnr_peak=None, flip_tta=False,
        by_subset={"HCOCO": {"N": 2, "MSE": 10.0, "fMSE": 100.0, "PSNR": 30.0, "ms_per_image": 1.26},
                   "HFlickr": dict(NONE_ROW),
                   "All": {"N": 3, "MSE": 12.346, "fMSE": 123.456, "PSNR": 31.5, "ms_per_image": 2.0}},
        by_fg_ratio={"0-5%": {"N": 1, "MSE": 1.111, "fMSE": 222.2, "PSNR": 40.0},
                     "5-15%": {"N": 0, "MSE": None, "fMSE": None, "PSNR": None},
                     "15-100%": {"N": 2, "MSE": 3.0, "fMSE": 40.0, "PSNR": 35.0},
                     "0-100%": {"N": 3, "MSE": 12.346, "fMSE": 123.456, "PSNR": 31.5}},
        seconds=1.23456, device="cpu")


def _idih():
    return EvalResult(
        model="mynet", weights="runs/a/best.pth", resize="fixed256", psnr_peak=255.0, flip_tta=True,
        by_subset={"Hday2night": {"N": 1, "MSE": 7.5, "fMSE": 50.25, "PSNR": 36.75, "ms_per_image": 3.04},
                   "All": {"N": 1, "MSE": 7.5, "fMSE": 50.25, "PSNR": 36.75, "ms_per_image": 3.04}},
        by_fg_ratio={"0-5%": {"N": 0, "MSE": None, "fMSE": None, "PSNR": None},
                     "5-15%": {"N": 1, "MSE": 7.5, "fMSE": 50.25, "PSNR": 36.75},
                     "15-100%": {"N": 0, "MSE": None, "fMSE": None, "PSNR": None},
                     "0-100%": {"N": 1, "MSE": 7.5, "fMSE": 50.25, "PSNR": 36.75}})


ONE_MODEL = """# Evaluation

Resize `fixed256`; PSNR peak: each target's maximum (reference); flip TTA off; foreground-ratio ranges include both ends.

## composite

resize fixed256; PSNR peak: each target's maximum (reference).

| subset | N | MSE | fMSE | PSNR | ms/img |
| --- | ---: | ---: | ---: | ---: | ---: |
| HCOCO | 2 | 10.00 | 100.00 | 30.00 | 1.3 |
| HFlickr | 0 | - | - | - | - |
| All | 3 | 12.35 | 123.46 | 31.50 | 2.0 |

| foreground | N | MSE | fMSE |
| --- | ---: | ---: | ---: |
| 0-5% | 1 | 1.11 | 222.20 |
| 5-15% | 0 | - | - |
| 15-100% | 2 | 3.00 | 40.00 |
| 0-100% | 3 | 12.35 | 123.46 |
"""


def test_markdown_of_one_model_by_hand():
    assert report.to_markdown([_composite()]) == ONE_MODEL


def test_markdown_comparison_tables_by_hand():
    text = report.to_markdown([_composite(), _idih()], with_published=True)
    expected_head = """# Evaluation

Resize `fixed256`; PSNR peak: each target's maximum (reference); flip TTA off; foreground-ratio ranges include both ends.

Published rows: Composite [iHarmony4]: iHarmony4 dataset page.

## MSE / PSNR per subset

| model | HCOCO | HFlickr | Hday2night | All | fMSE All |
| --- | ---: | ---: | ---: | ---: | ---: |
| composite | 10.00 / 30.00 | - | - | 12.35 / 31.50 | 123.46 |
| mynet | - | - | 7.50 / 36.75 | 7.50 / 36.75 | 50.25 |
| Composite [iHarmony4] | 69.37 / 33.94 | 264.35 / 28.32 | 109.65 / 34.01 | 172.47 / 31.63 | 1387.30 |

## MSE / fMSE per foreground ratio

| model | 0-5% | 5-15% | 15-100% | 0-100% |
| --- | ---: | ---: | ---: | ---: |
| composite | 1.11 / 222.20 | - | 3.00 / 40.00 | 12.35 / 123.46 |
| mynet | - | 7.50 / 50.25 | - | 7.50 / 50.25 |

## composite
"""
    assert text.startswith(expected_head)
    idih_part = """## mynet, weights runs/a/best.pth

resize fixed256; PSNR peak: fixed 255; flip TTA.

| subset | N | MSE | fMSE | PSNR | ms/img |
| --- | ---: | ---: | ---: | ---: | ---: |
| Hday2night | 1 | 7.50 | 50.25 | 36.75 | 3.0 |
| All | 1 | 7.50 | 50.25 | 36.75 | 3.0 |

| foreground | N | MSE | fMSE |
| --- | ---: | ---: | ---: |
| 0-5% | 0 | - | - |
| 5-15% | 1 | 7.50 | 50.25 |
| 15-100% | 0 | - | - |
| 0-100% | 1 | 7.50 | 50.25 |
"""
    assert text.endswith(idih_part)
    assert report.to_markdown([_composite()], with_published=False).count("## MSE / PSNR per subset") == 0


def test_a_label_with_a_pipe_is_escaped_and_weights_in_the_label_are_not_repeated():
    result = _idih()
    result.label = "idih | best.pth"
    text = report.to_markdown([result, _composite()])
    assert "| idih \\| best.pth | 7.50 / 36.75 | - | - | 7.50 / 36.75 | 50.25 |" in text
    assert "## idih | best.pth\n" in text  # a heading, not a table cell


def test_csv_rows_by_hand():
    rows = report.to_csv([_composite()], with_published=True).splitlines()
    assert rows[0] == "source,model,weights,resize,psnr_peak,flip_tta,table,group,N,MSE,fMSE,PSNR,ms_per_image,flicker"
    measured = [
        "measured,composite,,fixed256,target_max,0,subset,HCOCO,2,10,100,30,1.26,",
        "measured,composite,,fixed256,target_max,0,subset,HFlickr,0,,,,,",
        "measured,composite,,fixed256,target_max,0,subset,All,3,12.346,123.456,31.5,2,",
        "measured,composite,,fixed256,target_max,0,fg_ratio,0-5%,1,1.111,222.2,40,,",
        "measured,composite,,fixed256,target_max,0,fg_ratio,5-15%,0,,,,,",
        "measured,composite,,fixed256,target_max,0,fg_ratio,15-100%,2,3,40,35,,",
        "measured,composite,,fixed256,target_max,0,fg_ratio,0-100%,3,12.346,123.456,31.5,,",
    ]
    assert rows[1:8] == measured
    assert rows[8] == "iHarmony4 dataset page,Composite,,fixed256,target_max,,subset,HCOCO,,69.37,,33.94,,"
    assert rows[-1] == "iHarmony4 dataset page,Composite,,fixed256,target_max,,subset,All,,172.47,1387.3,31.63,,"
    assert len(rows) == 1 + 7 + 5
    idih = report.to_csv([_idih()]).splitlines()[1]
    assert idih == "measured,mynet,runs/a/best.pth,fixed256,255.0,1,subset,Hday2night,1,7.5,50.25,36.75,3.04,"
    assert list(csv.DictReader(io.StringIO(report.to_csv([_idih()]))))[0]["fMSE"] == "50.25"


def test_json_by_hand():
    data = report.to_json_data([_composite()], with_published=True)
    assert data["model"] == "composite" and data["weights"] is None and data["resize"] == "fixed256"
    assert data["psnr_peak"] == "target_max" and data["flip_tta"] is False and data["n_images"] == 3
    assert data["seconds"] == 1.235 and data["device"] == "cpu" and "per_image" not in data
    assert data["by_subset"]["HCOCO"] == {"N": 2, "MSE": 10.0, "fMSE": 100.0, "PSNR": 30.0, "ms_per_image": 1.26}
    assert data["by_fg_ratio"]["0-5%"] == {"N": 1, "MSE": 1.111, "fMSE": 222.2, "PSNR": 40.0}
    assert data["published"] == [{"label": "Composite", "source": "iHarmony4 dataset page",
                                  "by_subset": data["published"][0]["by_subset"], "by_fg_ratio": {}}]
    assert data["published"][0]["by_subset"]["All"] == {"MSE": 172.47, "PSNR": 31.63, "fMSE": 1387.3}
    both = json.loads(report.to_json([_composite(), _idih()], per_image=True))
    assert [d["model"] for d in both] == ["composite", "mynet"] and both[1]["psnr_peak"] == 255.0
    assert both[0]["per_image"] == [] and "published" not in both[0]


def test_files_are_written(tmp_path):
    report.write_markdown(tmp_path / "r.md", [_composite()])
    report.write_csv(tmp_path / "r.csv", [_composite()])
    report.write_json(tmp_path / "r.json", [_composite()])
    assert (tmp_path / "r.md").read_text() == ONE_MODEL
    assert (tmp_path / "r.csv").read_text() == report.to_csv([_composite()])
    assert json.loads((tmp_path / "r.json").read_text())["by_subset"]["All"]["MSE"] == 12.346


def _cells(table):
    return [[str(cell) for cell in column._cells] for column in table.columns]


def test_terminal_tables_by_hand():
    subset, fg = report.terminal_tables([_composite()])
    assert [str(c.header) for c in subset.columns] == ["subset", "N", "MSE", "fMSE", "PSNR", "ms/img"]
    assert _cells(subset) == [["HCOCO", "HFlickr", "All"], ["2", "0", "3"], ["10.00", "-", "12.35"],
                              ["100.00", "-", "123.46"], ["30.00", "-", "31.50"], ["1.3", "-", "2.0"]]
    assert [str(c.header) for c in fg.columns] == ["foreground", "N", "MSE", "fMSE"]
    assert _cells(fg) == [["0-5%", "5-15%", "15-100%", "0-100%"], ["1", "0", "2", "3"],
                          ["1.11", "-", "3.00", "12.35"], ["222.20", "-", "40.00", "123.46"]]
    assert str(subset.title) == "composite: per subset" and str(fg.title) == "composite: per foreground ratio"
    assert str(fg.caption) == "ranges include both ends"
    assert subset.title_justify == fg.title_justify == "left"
    assert [c.justify for c in subset.columns] == ["left"] + ["right"] * 5
    assert [c.justify for c in fg.columns] == ["left"] + ["right"] * 3
    assert [(row.style, row.end_section) for row in subset.rows] == [(None, False), (None, True), ("bold", False)]
    assert [(row.style, row.end_section) for row in fg.rows] == [(None, False), (None, False), (None, True),
                                                                 ("bold", False)]
    assert str(subset.caption) == "resize fixed256; PSNR peak: each target's maximum (reference)"
    tables = report.terminal_tables([_composite(), _idih()], with_published=True)
    assert len(tables) == 2
    by_subset, by_fg = tables
    assert [str(c.header) for c in by_subset.columns] == ["model", "HCOCO", "HFlickr", "Hday2night", "All",
                                                          "fMSE All"]
    assert _cells(by_subset)[0] == ["composite", "mynet", "Composite [iHarmony4]"]
    assert _cells(by_subset)[4] == ["12.35 / 31.50", "7.50 / 36.75", "172.47 / 31.63"]
    assert _cells(by_subset)[5] == ["123.46", "50.25", "1387.30"]
    assert str(by_subset.caption).endswith("; below the line: published numbers")
    assert str(by_subset.title) == "MSE / PSNR per subset" and str(by_fg.title) == "MSE / fMSE per foreground ratio"
    assert by_subset.title_justify == by_fg.title_justify == "left" and str(by_fg.caption) == "ranges include both ends"
    assert by_subset.columns[0].no_wrap and by_fg.columns[0].no_wrap
    assert [c.justify for c in by_subset.columns] == ["left"] + ["right"] * 5
    assert [c.justify for c in by_fg.columns] == ["left"] + ["right"] * 4
    assert [(row.style, row.end_section) for row in by_subset.rows] == [(None, False), (None, True), ("dim", False)]
    assert [(row.style, row.end_section) for row in by_fg.rows] == [(None, False), (None, False)]
    assert _cells(by_fg) == [["composite", "mynet"], ["1.11 / 222.20", "-"], ["-", "7.50 / 50.25"],
                             ["3.00 / 40.00", "-"], ["12.35 / 123.46", "7.50 / 50.25"]]
    one_with_published = report.terminal_tables([_composite()], with_published=True)
    assert len(one_with_published) == 4


def test_published_rows_are_listed_once_per_architecture():
    rows = report.published_rows([_composite(), _composite()], with_published=True)
    assert [row["key"] for row in rows] == ["composite"]
    assert report.published_rows([_composite()], with_published=False) == []


@pytest.mark.parametrize("value, digits, text", [(None, 2, "-"), (3, 2, "3"), (2.0, 2, "2.00"), (2.449, 1, "2.4"),
                                                 (0.125, 2, "0.12")])
def test_number_format(value, digits, text):
    assert report._fmt(value, digits) == text
