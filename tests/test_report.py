"""evaluation/report.py against hand-written expected text: every Markdown table, CSV row, JSON
field and terminal-table cell is written out here from hand-made results (so a swapped column, a
wrong digit count or a lost row is caught, not only a missing header)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from harmonize_cli.evaluation import report
from harmonize_cli.evaluation.results import EvalResult

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


# ------------------------------------------------------------------ video results, published rows
def _clip_row(n, mse, fmse, psnr, flicker):
    return {"N": n, "MSE": mse, "fMSE": fmse, "PSNR": psnr, "flicker": flicker, "pairs": max(n - 1, 0)}


def _video(label="clips run", clips=None):
    """A video result: clip v1/obj0 of 3 frames, v2/obj0 of 1 (no pair: no flicker)."""
    overall = {"N": 4, "MSE": 16.2512345, "fMSE": 181.25, "PSNR": 33.75}
    by_clip = clips or {"v1/obj0": _clip_row(3, 10.0, 150.0, 35.0, 1.5),
                        "v2/obj0": _clip_row(1, 35.0, 275.0, 30.0, None)}
    return EvalResult(
        model="idih", weights=None, resize=None, psnr_peak=None, flip_tta=False, label=label,
        by_subset={"HYouTube": dict(overall, ms_per_image=4.26), "All": dict(overall, ms_per_image=4.26)},
        by_fg_ratio={"0-5%": {"N": 0, "MSE": None, "fMSE": None, "PSNR": None}, "5-15%": dict(overall),
                     "15-100%": {"N": 0, "MSE": None, "fMSE": None, "PSNR": None}, "0-100%": dict(overall)},
        by_clip={**by_clip, "All": dict(overall, flicker=1.5, pairs=2, clips=len(by_clip))})


FLICKER_NOTE = ("flicker: mean change of the foreground's mean colour error between consecutive frames, "
                "0..255 levels, lower is steadier")

VIDEO_MARKDOWN = f"""# Evaluation

Resize `as given`; PSNR peak: each target's maximum (reference); flip TTA off; foreground-ratio ranges include both ends.

## clips run

resize as given; PSNR peak: each target's maximum (reference).

| subset | N | MSE | fMSE | PSNR | ms/img |
| --- | ---: | ---: | ---: | ---: | ---: |
| HYouTube | 4 | 16.25 | 181.25 | 33.75 | 4.3 |
| All | 4 | 16.25 | 181.25 | 33.75 | 4.3 |

| foreground | N | MSE | fMSE |
| --- | ---: | ---: | ---: |
| 0-5% | 0 | - | - |
| 5-15% | 4 | 16.25 | 181.25 |
| 15-100% | 0 | - | - |
| 0-100% | 4 | 16.25 | 181.25 |

### clips run: per clip

MSE, fMSE and PSNR are means over the frames (All: over every frame); {FLICKER_NOTE} (All: over every pair of consecutive frames).

| clip | N | MSE | fMSE | PSNR | flicker |
| --- | ---: | ---: | ---: | ---: | ---: |
| v1/obj0 | 3 | 10.00 | 150.00 | 35.00 | 1.50 |
| v2/obj0 | 1 | 35.00 | 275.00 | 30.00 | - |
| All | 4 | 16.25 | 181.25 | 33.75 | 1.50 |
"""


def test_markdown_of_a_video_result_by_hand():
    assert report.to_markdown([_video()]) == VIDEO_MARKDOWN


def test_csv_of_a_video_result_by_hand():
    common = "measured,clips run,,,target_max,0"
    assert report.to_csv([_video()]).splitlines()[1:] == [
        f"{common},subset,HYouTube,4,16.2512,181.25,33.75,4.26,",
        f"{common},subset,All,4,16.2512,181.25,33.75,4.26,",
        f"{common},fg_ratio,0-5%,0,,,,,",
        f"{common},fg_ratio,5-15%,4,16.2512,181.25,33.75,,",
        f"{common},fg_ratio,15-100%,0,,,,,",
        f"{common},fg_ratio,0-100%,4,16.2512,181.25,33.75,,",
        f"{common},clip,v1/obj0,3,10,150,35,,1.5",
        f"{common},clip,v2/obj0,1,35,275,30,,",
        f"{common},clip,All,4,16.2512,181.25,33.75,,1.5",
    ]


def _styles(table):
    return [(row.style, row.end_section) for row in table.rows]


def test_terminal_clip_table_by_hand():
    clips, fg = report.terminal_tables([_video()])
    assert str(clips.title) == "clips run: per clip" and str(fg.title) == "clips run: per foreground ratio"
    assert str(clips.caption) == "resize as given; PSNR peak: each target's maximum (reference)\n" + FLICKER_NOTE
    assert clips.title_justify == "left"
    assert [str(c.header) for c in clips.columns] == ["clip", "N", "MSE", "fMSE", "PSNR", "flicker"]
    assert [c.justify for c in clips.columns] == ["left"] + ["right"] * 5
    assert _cells(clips) == [["v1/obj0", "v2/obj0", "All (2 clips)"], ["3", "1", "4"], ["10.00", "35.00", "16.25"],
                             ["150.00", "275.00", "181.25"], ["35.00", "30.00", "33.75"], ["1.50", "-", "1.50"]]
    assert _styles(clips) == [(None, False), (None, True), ("bold", False)]
    # past the limit, one dim row says how many clips the files hold beyond it
    short = report.clip_table(_video(), limit=1)
    more = "... 1 more clips (every clip: -o, --markdown, --csv)"
    assert _cells(short) == [["v1/obj0", more, "All (2 clips)"], ["3", "", "4"], ["10.00", "", "16.25"],
                             ["150.00", "", "181.25"], ["35.00", "", "33.75"], ["1.50", "", "1.50"]]
    assert _styles(short) == [(None, False), ("dim", True), ("bold", False)]


def _many_clips(count):
    return {f"c{index:02d}": _clip_row(2, 1.0, 2.0, 40.0, 0.5) for index in range(count)}


def test_the_terminal_lists_40_clips():
    (forty, _) = report.terminal_tables([_video(clips=_many_clips(40))])
    assert len(forty.rows) == 41 and _cells(forty)[0][-2:] == ["c39", "All (40 clips)"]
    (more, _) = report.terminal_tables([_video(clips=_many_clips(43))])
    assert len(more.rows) == 42
    assert _cells(more)[0][-3:] == ["c39", "... 3 more clips (every clip: -o, --markdown, --csv)", "All (43 clips)"]


def test_terminal_video_comparison_by_hand():
    tables = report.terminal_tables([_video(), _video(label="")])
    assert len(tables) == 3
    video = tables[2]
    assert str(video.title) == "video: every frame of every clip" and str(video.caption) == FLICKER_NOTE
    assert video.title_justify == "left" and video.columns[0].no_wrap
    assert [str(c.header) for c in video.columns] == ["model", "N", "MSE", "fMSE", "PSNR", "flicker"]
    assert [c.justify for c in video.columns] == ["left"] + ["right"] * 5
    assert _cells(video) == [["clips run", "idih"], ["4", "4"], ["16.25", "16.25"], ["181.25", "181.25"],
                             ["33.75", "33.75"], ["1.50", "1.50"]]
    mixed = report.terminal_tables([_composite(), _video()])  # the video table lists the video results
    assert len(mixed) == 3 and _cells(mixed[2])[0] == ["clips run"]
    # several image results: no video table; the comparison tables without published rows
    by_subset, by_fg = report.terminal_tables([_composite(), _idih()])
    assert str(by_subset.caption) == "resize fixed256; PSNR peak: each target's maximum (reference)"
    assert _styles(by_subset) == [(None, False), (None, False)] and _styles(by_fg) == [(None, False), (None, False)]
    assert len(report.terminal_tables([_video()], with_published=False)) == 2


PAPER = {"key": "paper-net", "label": "Paper net", "tag": "paper", "source": "a paper, Table 1",
         "by_subset": {"Hday2night": {"MSE": 20.5, "PSNR": 36.25}, "All": {"MSE": 30.0, "PSNR": 35.0, "fMSE": 300.0}},
         "by_fg_ratio": {"0-5%": {"MSE": 5.0, "fMSE": 400.0}, "5-15%": {"MSE": 15.0, "fMSE": 250.0},
                         "15-100%": {"MSE": 60.0, "fMSE": 200.0}, "0-100%": {"MSE": 30.0, "fMSE": 300.0}}}
RELEASED = {"key": "released-net", "label": "Released net", "tag": "released", "source": "a repository",
            "by_subset": {"Hday2night": {"MSE": 12.0, "PSNR": 37.5}}, "by_fg_ratio": {}}


@pytest.fixture
def published(monkeypatch):
    """Two hand-made published rows for the architecture "mynet" (_idih's), none for the others."""
    monkeypatch.setattr(report, "published_for",
                        lambda arch: [dict(PAPER), dict(RELEASED)] if arch == "mynet" else [])


PUBLISHED_MARKDOWN_HEAD = """# Evaluation

Resize `fixed256`; PSNR peak: fixed 255; flip TTA on; foreground-ratio ranges include both ends.

Published rows: Paper net [paper]: a paper, Table 1; Released net [released]: a repository.

## MSE / PSNR per subset

| model | Hday2night | All | fMSE All |
| --- | ---: | ---: | ---: |
| mynet | 7.50 / 36.75 | 7.50 / 36.75 | 50.25 |
| Paper net [paper] | 20.50 / 36.25 | 30.00 / 35.00 | 300.00 |
| Released net [released] | 12.00 / 37.50 | - | - |

## MSE / fMSE per foreground ratio

| model | 0-5% | 5-15% | 15-100% | 0-100% |
| --- | ---: | ---: | ---: | ---: |
| mynet | - | 7.50 / 50.25 | - | 7.50 / 50.25 |
| Paper net [paper] | 5.00 / 400.00 | 15.00 / 250.00 | 60.00 / 200.00 | 30.00 / 300.00 |

## mynet, weights runs/a/best.pth

resize fixed256; PSNR peak: fixed 255; flip TTA.
"""


def test_markdown_with_published_rows_by_hand(published, tmp_path):
    text = report.to_markdown([_idih()], with_published=True)
    assert text.startswith(PUBLISHED_MARKDOWN_HEAD)
    assert text == PUBLISHED_MARKDOWN_HEAD + text[len(PUBLISHED_MARKDOWN_HEAD):] and text.endswith("| 7.50 | 50.25 |\n")
    report.write_markdown(tmp_path / "r.md", [_idih()], with_published=True)
    assert (tmp_path / "r.md").read_text() == text


PUBLISHED_CSV = [
    '"a paper, Table 1",Paper net,,fixed256,target_max,,subset,Hday2night,,20.5,,36.25,,',
    '"a paper, Table 1",Paper net,,fixed256,target_max,,subset,All,,30,300,35,,',
    '"a paper, Table 1",Paper net,,fixed256,target_max,,fg_ratio,0-5%,,5,400,,,',
    '"a paper, Table 1",Paper net,,fixed256,target_max,,fg_ratio,5-15%,,15,250,,,',
    '"a paper, Table 1",Paper net,,fixed256,target_max,,fg_ratio,15-100%,,60,200,,,',
    '"a paper, Table 1",Paper net,,fixed256,target_max,,fg_ratio,0-100%,,30,300,,,',
    "a repository,Released net,,fixed256,target_max,,subset,Hday2night,,12,,37.5,,",
]


def test_csv_with_published_rows_by_hand(published, tmp_path):
    rows = report.to_csv([_idih()], with_published=True).splitlines()
    assert len(rows) == 1 + 6 + len(PUBLISHED_CSV) and rows[7:] == PUBLISHED_CSV
    report.write_csv(tmp_path / "r.csv", [_idih()], with_published=True)
    assert (tmp_path / "r.csv").read_text().splitlines()[7:] == PUBLISHED_CSV
    assert report.to_csv([_idih()]).count("\n") == 1 + 6


def test_json_with_published_rows_by_hand(published, tmp_path):
    expected = [{"label": "Paper net", "source": "a paper, Table 1", "by_subset": PAPER["by_subset"],
                 "by_fg_ratio": PAPER["by_fg_ratio"]},
                {"label": "Released net", "source": "a repository", "by_subset": RELEASED["by_subset"],
                 "by_fg_ratio": {}}]
    assert report.to_json_data([_idih()], with_published=True)["published"] == expected
    text = report.to_json([_idih()], with_published=True, per_image=True)
    assert text.startswith('{\n  "model": "mynet",\n  "weights": "runs/a/best.pth",\n  "resize": "fixed256",\n')
    assert text.endswith("\n}\n") and json.loads(text)["published"] == expected and json.loads(text)["per_image"] == []
    report.write_json(tmp_path / "r.json", [_idih()], with_published=True, per_image=True)
    assert (tmp_path / "r.json").read_text() == text
    assert "published" not in report.to_json_data([_idih()])
    plain = json.loads(report.to_json([_idih()]))  # by default: no published rows, no per-image values
    assert "published" not in plain and "per_image" not in plain
    report.write_json(tmp_path / "plain.json", [_idih()])
    assert json.loads((tmp_path / "plain.json").read_text()) == plain


def test_terminal_tables_with_published_rows_by_hand(published):
    tables = report.terminal_tables([_idih()], with_published=True)
    assert len(tables) == 4
    by_subset, by_fg = tables[2:]
    assert str(by_subset.caption) == ("resize fixed256; PSNR peak: fixed 255; flip TTA; "
                                      "below the line: published numbers")
    assert _cells(by_subset) == [["mynet", "Paper net [paper]", "Released net [released]"],
                                 ["7.50 / 36.75", "20.50 / 36.25", "12.00 / 37.50"],
                                 ["7.50 / 36.75", "30.00 / 35.00", "-"], ["50.25", "300.00", "-"]]
    assert _styles(by_subset) == [(None, True), ("dim", False), ("dim", False)]
    assert _cells(by_fg) == [["mynet", "Paper net [paper]"], ["-", "5.00 / 400.00"], ["7.50 / 50.25", "15.00 / 250.00"],
                             ["-", "60.00 / 200.00"], ["7.50 / 50.25", "30.00 / 300.00"]]
    assert _styles(by_fg) == [(None, True), ("dim", False)]
    assert [str(c.header) for c in by_fg.columns] == ["model", "0-5%", "5-15%", "15-100%", "0-100%"]


def test_labels_with_square_brackets_are_printed_as_written(published):
    """rich would read "[paper]" as markup and drop it: labels are given as literal text."""
    from rich.console import Console

    result = _idih()
    result.label, result.weights = "[b]me[/b]", None
    console = Console(width=200, record=True, color_system=None)
    for table in report.terminal_tables([result], with_published=True):
        console.print(table)
    out = console.export_text()
    assert "Paper net [paper]" in out and "Released net [released]" in out
    assert "[b]me[/b]: per subset" in out and "[b]me[/b]: per foreground ratio" in out
    assert out.count("[b]me[/b]") == 4


def test_the_heading_names_the_weights_unless_the_label_holds_their_file_name():
    result = _idih()
    result.weights = "C:\\runs\\a\\best.pth"
    assert report._heading(result) == "mynet, weights C:\\runs\\a\\best.pth"
    result.label = "best.pth of run a"
    assert report._heading(result) == "best.pth of run a"
    result.label = "best.pth of run b"
    result.weights = "runs/x7/"  # a folder: its name
    assert report._heading(result) == "best.pth of run b, weights runs/x7/"
    result.label = "run x7"
    assert report._heading(result) == "run x7"


def test_cells_and_pairs_of_missing_values():
    assert report._cell(None, "MSE") == report._cell({}, "MSE") == "-"
    assert report._cell({"ms_per_image": 2.25}, "ms_per_image") == "2.2"  # one digit for times
    assert report._pair(None, "MSE", "PSNR") == report._pair({"N": 0}, "MSE", "PSNR") == "-"
    assert report._pair({"MSE": 5.0, "PSNR": None}, "MSE", "PSNR") == "5.00 / -"
    assert report._pair({"MSE": None, "PSNR": 30.0}, "MSE", "PSNR") == "- / 30.00"
