"""The comparison report is generated from the run records alone."""

from __future__ import annotations

import json

import pytest

from train.report import report


def write_run(folder, approach, top1, breeds=3, baseline=None, seconds=10.0):
    folder.mkdir(parents=True)
    metrics = {"approach": approach, "top1": top1, "top5": 1.0, "validation_top1": top1,
               "per_breed": [{"breed": f"b{i}"} for i in range(breeds)], "views": ["plain", "flip"],
               "timings": {"head_seconds": seconds, "inference_ms_per_image": 3.5}}
    if baseline is not None:
        metrics["baseline_top1"] = baseline
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "config.json").write_text("{}")


def test_the_report_ranks_every_run_and_states_the_baseline_and_the_imagenet_caveat(tmp_path):
    write_run(tmp_path / "scratch", "scratch CNN", 0.4)
    write_run(tmp_path / "transfer", "transfer mobilenet_v2 head only", 0.86, baseline=0.843, seconds=80)
    text = report(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| transfer") or line.startswith("| scratch")]
    assert [row.split("|")[1].strip() for row in rows] == ["transfer", "scratch"]
    assert "| 86.0% |" in rows[0] and "| 80 |" in rows[0] and "| 3.5 |" in rows[0]
    assert "84.3% on 3 breeds" in text and "ImageNet" in text


def test_a_folder_without_finished_runs_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        report(tmp_path)
