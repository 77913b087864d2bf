"""The comparison report is generated from the run records alone."""

from __future__ import annotations

import json

import pytest

from dogtag.train.report import report


def write_run(folder, approach, top1, breeds=3, baseline=None, seconds=10.0, views=("plain", "flip")):
    folder.mkdir(parents=True)
    metrics = {"approach": approach, "top1": top1, "top5": 1.0, "validation_top1": top1,
               "per_breed": [{"breed": f"b{i}"} for i in range(breeds)], "views": list(views),
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


def test_a_scratch_run_trained_with_cutmix_and_mixup_says_so_in_its_training_data(tmp_path):
    for name, params in (("mixed", {"cutmix": 1.0, "mixup": 0.2}), ("plain", {"cutmix": 0.0, "mixup": 0.0})):
        write_run(tmp_path / name, "scratch CNN", 0.4, views=())  # scratch runs name their augmentation instead
        (tmp_path / name / "config.json").write_text(json.dumps({"augmentation": "flip+zoom", "params": params}))
    rows = {line.split("|")[1].strip(): line.split("|")[4].strip()
            for line in report(tmp_path).splitlines() if line.startswith("| mixed") or line.startswith("| plain")}
    assert rows == {"mixed": "flip+zoom + cutmix 1 + mixup 0.2", "plain": "flip+zoom"}
