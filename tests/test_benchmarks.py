"""`dogtag bench` as a maintainer uses it: one command measures every model format against the Keras
baseline on the same test photos and writes one table, as JSON, markdown and a plot."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dogtag.benchmarks.figures import top1
from dogtag.benchmarks.fresh_process import python_command, run_fresh
from dogtag.benchmarks.photos import bench_photos
from dogtag.benchmarks.report import TARGETS, add_ratios, evaluate_targets
from dogtag.cli import main
from tests.fakes import make_mini_stanford_dogs
from tests.model_fixtures import TINY_FORMATS, make_tiny_models, make_tiny_run

FIGURES = ("size_mb", "top1", "latency_p50_ms", "latency_p90_ms", "batch_images_per_s", "tag_images_per_s",
           "large_images_per_s", "cold_start_s", "cold_start_peak_mb", "tag_peak_mb")


@pytest.fixture(scope="module")
def mini_dogs(tmp_path_factory) -> Path:
    """Three breeds the tiny models know (same names, same colour tints), six test photos each."""
    return make_mini_stanford_dogs(tmp_path_factory.mktemp("data") / "stanford-dogs", breeds=3,
                                   train_per_breed=2, test_per_breed=6)


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory, mini_dogs) -> tuple[object, Path]:
    """`dogtag bench --quick` over every tiny format and the tiny Keras model, at one thread."""
    pytest.importorskip("tensorflow", reason="the tiny test models and the Keras baseline need TensorFlow")
    root = tmp_path_factory.mktemp("bench")
    make_tiny_models(root / "exported")
    run = make_tiny_run(root)
    result = CliRunner().invoke(main, [
        "bench", "--models", str(root / "exported"), "--keras", str(run / "model.keras"), "--data", str(mini_dogs),
        "--quick", "--threads", "1", "--large-photos", "2", "--out", str(root / "out"),
    ])
    return result, root / "out"


def test_quick_bench_writes_one_row_per_format_with_every_figure(quick_bench):
    result, out = quick_bench
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())

    assert sorted(row["format"] for row in report["rows"]) == sorted([*TINY_FORMATS, "keras"])
    for row in report["rows"]:
        missing = [name for name in FIGURES if row.get(name) is None]
        assert not missing, f"{row['model']}: no {missing}; problems: {row['problems']}"
        assert row["threads"] == 1 and row["problems"] == []
        # The tiny models tell the tinted breeds apart: accuracy is measured, not made up.
        assert row["top1"] == 1.0 and row["top1_photos"] == report["photos"]["count"]
    assert report["skipped"] == []


def test_every_format_is_compared_with_keras_measured_in_the_same_run(quick_bench):
    _, out = quick_bench
    report = json.loads((out / "bench.json").read_text())
    keras = next(row for row in report["rows"] if row["format"] == "keras")

    for row in report["rows"]:
        if row is not keras:
            expected = row["tag_images_per_s"] / keras["tag_images_per_s"]
            assert row["vs_keras"]["tag_speedup"] == pytest.approx(expected, rel=1e-2)
            assert row["vs_keras"]["size_ratio"] == pytest.approx(row["size_mb"] / keras["size_mb"], rel=1e-2)


def test_the_markdown_table_has_a_row_per_format_the_machine_and_the_targets(quick_bench):
    result, out = quick_bench
    table = (out / "bench.md").read_text()

    for name in [*TINY_FORMATS, "keras"]:
        assert re.search(rf"^\| [^|]+ \| {name} \| 1 \|", table, re.MULTILINE), f"no row for {name}"
    assert "| model | format | threads | size MB | top-1 %" in table
    assert "Machine:" in table and "onnxruntime" in table and "ai-edge-litert" in table
    for target in TARGETS:
        assert target.name in table
    assert table.strip() in result.output  # the same table is printed
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_without_tensorflow_the_keras_row_is_skipped_with_the_reason(tmp_path, mini_dogs, monkeypatch):
    pytest.importorskip("tensorflow", reason="the tiny test models are made with TensorFlow")
    import importlib.util

    model = make_tiny_models(tmp_path / "exported")["tflite_int8"]
    run = make_tiny_run(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorflow" else real_find_spec(name, *args))

    result = CliRunner().invoke(main, [
        "bench", "--models", str(model), "--keras", str(run), "--data", str(mini_dogs), "--quick",
        "--threads", "1", "--large-photos", "0", "--out", str(tmp_path / "out"),
    ])

    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert [row["format"] for row in report["rows"]] == ["tflite_int8"]
    (skipped,) = report["skipped"]
    assert "tensorflow is not installed" in skipped["reason"]
    assert "tensorflow is not installed" in (tmp_path / "out" / "bench.md").read_text()
    assert report["rows"][0]["large_images_per_s"] is None  # --large-photos 0


def test_a_missing_model_file_is_named_before_anything_is_measured(tmp_path, mini_dogs):
    result = CliRunner().invoke(main, ["bench", "--models", str(tmp_path / "nope.tflite"), "--data", str(mini_dogs)])

    assert result.exit_code == 1
    assert "nope.tflite: no such model file or folder" in result.output


def test_the_quick_subset_is_fixed_and_keeps_every_breed(mini_dogs):
    first, again, everything = bench_photos(mini_dogs, quick=True), bench_photos(mini_dogs, quick=True), bench_photos(mini_dogs)

    assert first.paths == again.paths
    assert len(first) < len(everything) == 18
    assert sorted(set(first.breeds)) == ["Chihuahua", "Japanese spaniel", "Maltese dog"]


def test_a_fresh_process_reports_its_first_result_and_its_peak_memory():
    # The child goes on for at least 0.3 s after its first line was read (it waits for EOF on its stdin,
    # which comes once the line is read, then sleeps): however slow this machine, the gap is there.
    run = run_fresh(python_command("import sys, time; block = bytearray(200_000_000); print('ready', flush=True); "
                                   "sys.stdin.read(); time.sleep(0.3)"))

    assert run.returncode == 0 and run.first_line == "ready"
    assert run.peak_rss_mb > 200
    assert run.first_line_s <= run.seconds - 0.3  # the first result, not the exit


def test_a_failing_fresh_process_explains_itself():
    run = run_fresh(python_command("raise SystemExit('no model here')"))

    assert run.first_line_s is None
    assert run.failure("dogtag predict") == "dogtag predict exited with 1: no model here"


def test_top1_counts_only_breeds_the_model_knows():
    accuracy, counted = top1(["Pug", "Pug", "Beagle"], ["Pug", "Beagle", "Husky"], labels=["Pug", "Beagle"])

    assert (accuracy, counted) == (0.5, 2)


def test_targets_are_read_on_the_int8_rows_at_the_most_threads():
    rows = [
        {"model": "model.keras", "format": "keras", "threads": 2, "tag_images_per_s": 30.0, "size_mb": 20.0},
        {"model": "a_int8.tflite", "format": "tflite_int8", "threads": 1, "tag_images_per_s": 150.0, "size_mb": 5.0},
        {"model": "a_int8.tflite", "format": "tflite_int8", "threads": 2, "tag_images_per_s": 240.0, "size_mb": 5.0,
         "latency_p50_ms": 6.0},
        {"model": "a_float32.tflite", "format": "tflite_float32", "threads": 2, "tag_images_per_s": 90.0},
    ]
    add_ratios(rows)

    (entry,) = evaluate_targets(rows)
    results = {result["target"]: (result["value"], result["met"]) for result in entry["targets"]}
    assert (entry["model"], entry["threads"]) == ("a_int8.tflite", 2)
    assert results["tagging 224 px photos >= 200 photos/s"] == (240.0, True)
    assert results["tagging >= 6x the Keras baseline"] == (8.0, True)
    assert results["single-photo p50 <= 5 ms"] == (6.0, False)
    assert results["cold start to first result <= 0.5 s"] == (None, None)
    assert "vs_keras" not in rows[1]  # no Keras row at 1 thread: nothing to compare with


def test_the_review_page_benchmark_prints_its_figures(tmp_path, capsys):
    pytest.importorskip("fastapi", reason="the review page needs the review extra: pip install -e '.[review]'")
    from dogtag.benchmarks.review import main as review_benchmark

    review_benchmark(["--photos", "30", "--thumbnails", "10", "--corrections", "5", "--large-photos", "0",
                      "--no-browser", "--model", "fast", "--out", str(tmp_path / "review.json")])

    printed = capsys.readouterr().out
    assert "Review page with 30 tagged photos" in printed and "first paint in Chromium: skipped" in printed
    record = json.loads((tmp_path / "review.json").read_text())
    assert record["correction_ms"]["n"] == 5 and record["correction_ms"]["p50"] > 0
    assert record["thumbnails"]["small_photos_per_s"] > 0 and record["first_listing_ms"] > 0


def test_the_review_load_benchmark_runs_volunteers_beside_the_watch_and_checks_every_write(tmp_path):
    pytest.importorskip("fastapi", reason="the review page needs the review extra: pip install -e '.[review]'")
    pytest.importorskip("httpx", reason="the simulated phones need httpx: pip install -e '.[test]'")
    from dogtag.benchmarks.review_load import report, run

    record = run(volunteers=2, seconds=2, photos=12, model="fast", work=tmp_path, log=lambda _: None)

    assert record["problems"] == [], report(record)
    assert record["uploads"] == 4, "two uploads each"
    assert {"GET /api/photos", "GET /api/thumbnail", "POST /api/reviews", "POST /api/photos"} <= set(record["routes"])
    assert all(figures["p95_ms"] >= figures["p50_ms"] > 0 for figures in record["routes"].values())
    assert "p95 ms" in report(record) and "no 5xx" in report(record)


def test_the_review_load_check_catches_a_lost_correction_upload_or_camera_photo(tmp_path):
    pytest.importorskip("fastapi", reason="the review page needs the review extra: pip install -e '.[review]'")
    from dogtag.benchmarks.review_load import Volunteer, check
    from tests.review_fixtures import make_shelter_folder

    results = make_shelter_folder(tmp_path / "shelter")
    phone = Volunteer("volunteer-00", corrections=[(0, "rex.jpg", "pug")], uploads=["volunteer-00-upload-1.jpg"])
    phone.problems.append("POST /api/reviews: 500 NOT saved")

    problems = check(tmp_path / "shelter", tmp_path, [phone], ["camera/IMG_0001.jpg"], {0: results})

    assert problems == [
        "POST /api/reviews: 500 NOT saved",
        "corrections: 1 answered 200 but not in a reviews file, 0 in one more often than sent",
        "camera/IMG_0001.jpg: 0 rows in the results file (the watch must add exactly one)",
        "upload volunteer-00-upload-1.jpg: 0 rows in the intake's results file (expected 1)",
    ]
