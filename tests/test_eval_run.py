"""harmonize_cli.evaluation.run_evaluation: `harmonize eval` as one Python call, checked against
test_eval's independent numpy computation of the composite baseline."""

from __future__ import annotations

import json

import pytest

from harmonize_cli.errors import UsageError
from harmonize_cli.evaluation.run import run_evaluation
from test_eval import _independent_composite_metrics


def test_run_evaluation_picks_subsets_writes_the_files_and_announces(mini_iharmony, tmp_path):
    lines = []
    out, markdown = tmp_path / "r.json", tmp_path / "r.md"
    run = run_evaluation(mini_iharmony, models=["composite"], resize="none", workers=0, subsets=["HFlickr,HCOCO"],
                         output=out, markdown=markdown, announce=lines.append)
    assert run.written == [str(out), str(markdown)] and run.shard is None
    assert run.subset_order == ["HCOCO", "HFlickr"]  # the test set's order, whatever the order asked
    (result,) = run.results
    expected, _ = _independent_composite_metrics(mini_iharmony)
    assert list(result.by_subset) == ["HCOCO", "HFlickr", "All"]
    for subset in ("HCOCO", "HFlickr"):
        row = result.by_subset[subset]
        assert row["N"] == 3 and row["MSE"] == pytest.approx(expected[subset][0], rel=1e-5)
        assert row["fMSE"] == pytest.approx(expected[subset][1], rel=1e-5)
    written = json.loads(out.read_text())
    assert written["by_subset"]["HCOCO"]["MSE"] == pytest.approx(expected["HCOCO"][0], rel=1e-5)
    assert markdown.read_text().startswith("# Evaluation")
    assert lines[0].startswith("Evaluating composite on 6 test images of ") and "resize none" in lines[0]
    assert lines[1] == f"Dataset: {mini_iharmony} (--data)"


def test_run_evaluation_refuses_before_any_work(mini_iharmony, tmp_path):
    lines = []
    with pytest.raises(UsageError, match="nothing to evaluate"):
        run_evaluation(mini_iharmony, announce=lines.append)
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": 1}')
    with pytest.raises(UsageError):  # a file eval did not write is never replaced
        run_evaluation(mini_iharmony, models=["composite"], output=foreign, announce=lines.append)
    assert foreign.read_text() == '{"mine": 1}' and lines == []
