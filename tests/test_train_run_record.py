"""Every run recorded in one place: its folder and, where MLflow is installed, an MLflow run to compare it in.

The MLflow checks read the store back through MLflow's own client, in a store of each test's own.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from dogtag.cli import main
from dogtag.train import run_folder, run_record, tracking
from tests.fakes import make_mini_stanford_dogs

REPO = Path(__file__).resolve().parents[1]
BREEDS = ["Chihuahua", "Japanese spaniel", "Maltese dog"]
RECORD = {"config.json", "metrics.json", "history.json", "learning_curves.png", "confusion.png", "confusion.npy",
          "most_confused.md", "model.keras", "model_info.json"}


@pytest.fixture
def client(tmp_path, monkeypatch):
    """An MLflow client on an empty store of this test's own (MLFLOW_TRACKING_URI points at it)."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def colour_breeds(tmp_path_factory):
    """3 breeds told apart by colour, 10 training and 4 test photos each."""
    root = tmp_path_factory.mktemp("data") / "stanford-dogs"
    return make_mini_stanford_dogs(root, breeds=3, train_per_breed=10, test_per_breed=4, image_size=32)


def tiny_params(**changes):
    from dogtag.train.scratch_params import ScratchParams

    return replace(ScratchParams(size=32, filters=(8, 16), depth=1, dense_units=16, dropout=0.1, batch_size=8,
                                 epochs=2, warmup_epochs=1, learning_rate=3e-3, patience=10), **changes)


def logged_run(client, run_dir: Path):
    return client.get_run(json.loads((run_dir / run_folder.MLFLOW_LINK).read_text())["run_id"])


def curve(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_a_scratch_run_logs_its_config_metrics_curves_and_files_and_its_resumption_continues_it(
        colour_breeds, tmp_path, client):
    from dogtag.train.scratch import run_scratch

    run, lines = tmp_path / "run", []
    first = run_scratch(colour_breeds, run, tiny_params(), cache_root=tmp_path / "cache", time_limit_s=0,
                        log=lines.append)
    assert first["epochs_done"] == 1 and any(line.startswith("MLflow run") for line in lines)
    first_id = logged_run(client, run).info.run_id
    assert len(curve(client, first_id, "val_accuracy")) == 1

    metrics = run_scratch(colour_breeds, run, tiny_params(), cache_root=tmp_path / "cache", log=lambda _: None)
    logged = logged_run(client, run)
    assert logged.info.run_id == first_id, "the second sitting continues the first one's MLflow run"
    history = json.loads((run / "history.json").read_text())
    assert curve(client, first_id, "val_accuracy") == list(enumerate(history["val_accuracy"], 1))  # no epoch twice
    assert curve(client, first_id, "loss") == list(enumerate(history["loss"], 1))
    experiment = client.get_experiment(logged.info.experiment_id)
    assert experiment.name == "dogtag"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on training runs
    assert logged.info.status == "FINISHED" and logged.info.run_name == str(run)

    params = logged.data.params  # the whole config, nested keys joined by dots
    assert params["approach"] == "scratch" and params["params.size"] == "32" and params["params.filters"] == "[8, 16]"
    assert params["params.augmentation.flip"] == "true" and json.loads(params["breeds"]) == BREEDS
    assert "commit" not in params  # where it was trained is a tag: a resume at a later commit is the same run
    config = json.loads((run / "config.json").read_text())
    assert logged.data.tags["dogtag.commit"] == config["commit"]
    assert logged.data.tags["mlflow.source.git.commit"] == config["commit"].removesuffix("+dirty")

    scores = logged.data.metrics
    assert (scores["top1"], scores["top5"], scores["epochs_done"]) == (metrics["top1"], metrics["top5"], 2)
    assert scores["timings/training_seconds"] == metrics["timings"]["training_seconds"]
    assert scores["thresholds/min_confidence"] == metrics["thresholds"]["min_confidence"]
    assert {f"f1/{row['breed']}": row["f1"] for row in metrics["per_breed"]}.items() <= scores.items()
    assert sorted(k for k in scores if k.startswith("f1/")) == [f"f1/{breed}" for breed in BREEDS]
    artifacts = {a.path for a in client.list_artifacts(first_id)}
    assert artifacts >= RECORD and not {"checkpoints", "lock", run_folder.MLFLOW_LINK} & artifacts

    # Re-evaluated with flip TTA, the folder describes another model: a new MLflow run, the first one kept.
    run_scratch(colour_breeds, run, tiny_params(flip_tta=True), cache_root=tmp_path / "cache", log=lambda _: None)
    again = logged_run(client, run)
    assert again.info.run_id != first_id and again.data.tags["dogtag.follows"] == first_id
    assert again.data.params["params.flip_tta"] == "true"
    assert client.get_run(first_id).data.params["params.flip_tta"] == "false"
    assert curve(client, again.info.run_id, "val_accuracy") == list(enumerate(history["val_accuracy"], 1))


def test_without_mlflow_a_run_writes_the_same_folder_and_says_nothing_of_a_tracker(
        colour_breeds, tmp_path, monkeypatch):
    from dogtag.train.scratch import run_scratch

    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` fails, as where it is not installed
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    assert not tracking.mlflow_installed()
    lines = []
    metrics = run_scratch(colour_breeds, tmp_path / "run", tiny_params(epochs=1), cache_root=tmp_path / "cache",
                          log=lines.append)
    assert metrics["epochs_done"] == 1
    assert {p.name for p in (tmp_path / "run").iterdir()} == RECORD | {"checkpoints"}
    assert not any("MLflow" in line for line in lines) and not (tmp_path / "mlruns").exists()
    result = CliRunner().invoke(main, ["train", "log-existing", str(tmp_path)])
    assert result.exit_code == 1 and "MLflow is not installed: pip install 'dogtag[track]'" in result.output


def test_a_tracker_that_fails_costs_a_warning_not_the_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchstore://nowhere")
    lines = []
    run_record.write_run(tmp_path / "run", {"approach": "scratch"}, {"top1": 0.5}, {"loss": [1.0], "accuracy": [0.5]},
                         log=lines.append)
    assert {"config.json", "metrics.json", "history.json", "learning_curves.png"} <= {
        p.name for p in (tmp_path / "run").iterdir()}
    assert lines[0].startswith(f"warning: {tmp_path / 'run'} was not logged to MLflow")
    assert f"dogtag train log-existing {tmp_path / 'run'}" in lines[0]


# --- run folders made before ----------------------------------------------------------------------

def write_folder(folder: Path, config: dict | None, metrics: dict, history: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if history:
        (folder / "history.json").write_text(json.dumps(history, indent=2))
    return folder


def per_breed(*f1):
    return [{"breed": b, "precision": f, "recall": f, "f1": f, "support": 4} for b, f in zip(BREEDS, f1, strict=False)]


def first_transfer_run(folder: Path) -> Path:
    """As the first transfer runs were recorded: TransferConfig of then, views, equalize, data; no breeds."""
    config = {"backbone": "mobilenet_v2", "size": 224, "head_epochs": 30, "head_learning_rate": 0.001,
              "head_dropout": 0.3, "fine_tune_epochs": 0, "fine_tune_learning_rate": 0.0001,
              "fine_tune_dropout": 0.2, "label_smoothing": 0.1, "batch_size": 64, "validation_fraction": 0.1,
              "seed": 0, "views": ["plain", "flip"], "equalize": False, "data": "../shared/datasets/stanford-dogs",
              "commit": "94f6718+dirty", "tensorflow": "2.21.0", "machine": "x86_64"}
    metrics = {"images": 12, "top1": 0.8611, "top5": 0.9801, "per_breed": per_breed(0.9, 0.8, 0.85),
               "most_confused": [{"true": "Chihuahua", "predicted": "Maltese dog", "count": 1, "of": 4}],
               "approach": "transfer mobilenet_v2 head only", "views": ["plain", "flip"], "equalize": False,
               "blend_weight": 0.6, "top1_without_blend": 0.85, "validation_top1": 0.87, "baseline_top1": 0.8437,
               "baseline_top5": 0.97, "thresholds": {"min_confidence": 0.35, "min_dog": 0.5},
               "train_images": 10800, "validation_images": 1200, "test_images": 8580,
               "timings": {"head_seconds": 80.5, "total_seconds": 95.0, "inference_ms_per_image": 14.2}}
    history = {"head_loss": [2.1, 1.4, 1.2], "head_accuracy": [0.5, 0.7, 0.75],
               "head_val_loss": [1.5, 1.3, 1.25], "head_val_accuracy": [0.7, 0.8, 0.81]}
    return write_folder(folder, config, metrics, history)


def first_scratch_run(folder: Path) -> Path:
    """As the first scratch runs were recorded: params before head_only, flip_tta, mixup and cutmix; no init_from."""
    params = {"size": 112, "block": "residual", "filters": [32, 64, 128, 256], "depth": 2, "stem_pool": True,
              "dense_units": 256, "dropout": 0.3, "optimizer": "adamw", "learning_rate": 0.002,
              "label_smoothing": 0.1, "batch_size": 32, "epochs": 60, "warmup_epochs": 2, "patience": 15,
              "validation_fraction": 0.1, "seed": 0,
              "augmentation": {"flip": True, "crop": 0.1, "rotation": 0.05, "shift": 0.0, "shear": 0.0, "zoom": 0.1}}
    config = {"approach": "scratch", "data": "../shared/datasets/stanford-dogs", "breeds": BREEDS,
              "augmentation": "flip+crop+rotation+zoom", "params": params, "commit": "621bb75",
              "tensorflow": "2.21.0", "machine": "x86_64"}
    metrics = {"images": 12, "top1": 0.315, "top5": 0.623, "per_breed": per_breed(0.3, 0.2, 0.4),
               "most_confused": [], "approach": "scratch CNN (residual)", "validation_top1": 0.3,
               "epochs_done": 3, "epochs_planned": 60, "stopped": "time limit", "best_epoch": 3,
               "parameters": 700000, "thresholds": {"min_confidence": 0.6, "min_dog": 0.5},
               "timings": {"training_seconds": 600.0, "image_cache_seconds": 50.0, "total_seconds": 700.0,
                           "inference_ms_per_image": 1.1}}
    history = {"loss": [4.5, 4.0, 3.8], "accuracy": [0.05, 0.1, 0.15], "val_loss": [4.6, 4.2, float("nan")],
               "val_accuracy": [0.04, 0.09, 0.12]}
    folder = write_folder(folder, config, metrics, history)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "params.json").write_text(json.dumps(params))
    return folder


def test_log_existing_brings_the_runs_measured_before_into_mlflow_once(tmp_path, client, monkeypatch):
    runs = tmp_path / "runs"
    transfer = first_transfer_run(runs / "mobilenet_v2-head")
    scratch = first_scratch_run(runs / "scratch" / "all120")
    search = runs / "scratch" / "search-5breeds"
    search.mkdir(parents=True)
    (search / "search.json").write_text(json.dumps({"trials": 10}))  # a search folder: not a run itself...
    best = write_folder(search / "best", {"approach": "scratch", "search": str(search), "search_trials": 10},
                        {"top1": 0.6, "top5": 0.9})  # ... its best/ is
    bare = write_folder(runs / "bare", None, {"top1": 0.5})  # no config.json, no history
    with monkeypatch.context() as hidden:  # a run trained with today's code while MLflow was missing
        hidden.setitem(sys.modules, "mlflow", None)
        today = tmp_path / "runs" / "today"
        run_record.write_run(today, {"approach": "scratch", "params": {"size": 32}},
                             {"top1": 0.7, "top5": 1.0, "per_breed": per_breed(0.7, 0.6, 0.8), "most_confused": [],
                              "wild": {"top1": 0.66, "dogs": 339, "top1_casual_snapshots": None},
                              "confusion": [[3, 1, 0], [1, 3, 0], [0, 0, 4]]}, {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]})
    assert not (today / run_folder.MLFLOW_LINK).exists()

    result = CliRunner().invoke(main, ["train", "log-existing", str(runs)])
    assert result.exit_code == 0, result.output
    assert result.output.count("(new)") == 5 and "5 runs in" in result.output
    experiment = client.get_experiment_by_name("dogtag")
    logged = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(logged) == {str(p) for p in (transfer, scratch, best, bare, today)}

    old = logged[str(transfer)]
    assert old.data.params["backbone"] == "mobilenet_v2" and old.data.params["views"] == '["plain", "flip"]'
    assert old.data.tags["mlflow.source.git.commit"] == "94f6718"  # the commit it was trained at
    assert old.data.tags["dogtag.approach"] == "transfer mobilenet_v2 head only"
    assert old.data.metrics["baseline_top1"] == 0.8437 and old.data.metrics["timings/head_seconds"] == 80.5
    assert curve(client, old.info.run_id, "head_val_accuracy") == [(1, 0.7), (2, 0.8), (3, 0.81)]
    # It appears when it was trained, not when it was imported: ended as metrics.json was written.
    ended = int((transfer / "metrics.json").stat().st_mtime * 1000)
    assert (old.info.end_time, old.info.start_time) == (ended, ended - 95_000)
    scratch_run = logged[str(scratch)]
    assert scratch_run.data.params["params.augmentation.zoom"] == "0.1" and "params.flip_tta" not in scratch_run.data.params
    assert scratch_run.data.metrics["f1/Maltese dog"] == 0.4 and scratch_run.data.tags["dogtag.stopped"] == "time limit"
    assert [v for _, v in curve(client, scratch_run.info.run_id, "val_loss")][:2] == [4.6, 4.2]
    assert logged[str(best)].data.params["search_trials"] == "10"
    assert logged[str(today)].data.metrics["f1/Japanese spaniel"] == 0.6
    assert logged[str(today)].data.metrics["wild/top1"] == 0.66  # dogs-in-the-wild, where it was measured
    assert "wild/top1_casual_snapshots" not in logged[str(today)].data.metrics  # None: not measured
    assert {a.path for a in client.list_artifacts(logged[str(today)].info.run_id)} >= {"confusion.png", "config.json"}

    copy = Path(client.get_run(old.info.run_id).info.artifact_uri.removeprefix("file://")) / "history.json"
    copied_at = copy.stat().st_ctime_ns  # (a copy keeps the mtime of its source, not its ctime)
    # From the folder holding both the runs and the store: the store's copies of run folders are not runs.
    again = CliRunner().invoke(main, ["train", "log-existing", str(tmp_path)])
    assert again.exit_code == 0 and again.output.count("(up to date)") == 5, again.output
    assert "5 runs in" in again.output
    assert copy.stat().st_ctime_ns == copied_at  # unchanged files are not copied again
    assert len(client.search_runs([experiment.experiment_id])) == 5
    assert len(client.get_metric_history(old.info.run_id, "head_val_accuracy")) == 3
    assert len(client.get_metric_history(old.info.run_id, "top1")) == 1


def test_log_existing_names_a_broken_folder_and_still_logs_the_others(tmp_path, client):
    first_transfer_run(tmp_path / "runs" / "good")
    broken = write_folder(tmp_path / "runs" / "broken", None, {"top1": 0.5})
    (broken / "config.json").write_text("{not json")
    result = CliRunner().invoke(main, ["train", "log-existing", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert f"{broken / 'config.json'}: not valid JSON" in result.output
    assert "1 of 2 run folders were not logged" in result.output
    assert f"{tmp_path / 'runs' / 'good'}: MLflow run " in result.output and "(new)" in result.output


# --- export and benchmark results ------------------------------------------------------------------

def verification(run: Path, top1: float = 0.858) -> dict:
    return {"images": 12, "keras_top1": 0.862, "min_dog": 0.5, "run": str(run), "formats": {"tflite_int8": {
        "top1": top1, "agreement": 0.965, "file": "dogtag_tflite_int8.tflite", "size_bytes": 4364896,
        "top1_change": round(top1 - 0.862, 4), "ms_per_image": 2.67, "meets_target": True}},
        "wild": {"tflite_int8": {"wild": {"top1": 0.71, "dogs": 339}, "wild96": {"top1": 0.64, "dogs": 339}}}}


def test_export_and_bench_results_attached_while_mlflow_was_missing_reach_it_later(tmp_path, client, monkeypatch):
    run = first_transfer_run(tmp_path / "runs" / "head")
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "dogtag_tflite_int8.tflite").write_bytes(b"model")
    (exported / "verification.json").write_text(json.dumps(verification(run)))
    with monkeypatch.context() as hidden:
        hidden.setitem(sys.modules, "mlflow", None)
        result = CliRunner().invoke(main, ["train", "attach", str(exported)])
        assert result.exit_code == 0, result.output
    assert json.loads((run / "attached.json").read_text())["export"][str(exported)]["figures"]["tflite_int8/top1"] == 0.858
    assert not (run / run_folder.MLFLOW_LINK).exists()

    bench = tmp_path / "bench-results"
    bench.mkdir()
    (bench / "bench.json").write_text(json.dumps({"rows": [
        {"model": "model.keras", "path": os.path.relpath(run / "model.keras"), "format": "keras", "threads": 2,
         "size_mb": 16.0, "top1": 0.8655, "tag_images_per_s": 50.0, "top1_photos": 617},
        {"model": "dogtag_tflite_int8.tflite", "path": str(exported / "dogtag_tflite_int8.tflite"),
         "format": "tflite_int8", "threads": 2, "size_mb": 4.365, "top1": 0.8639, "tag_images_per_s": 375.0,
         "vs_keras": {"tag_speedup": 7.5}},
        {"model": "stray.onnx", "path": str(tmp_path / "elsewhere" / "stray.onnx"), "format": "onnx_int8",
         "threads": 2, "tag_images_per_s": 300.0}]}))
    result = CliRunner().invoke(main, ["train", "attach", str(bench / "bench.json")])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'elsewhere' / 'stray.onnx'} names no run folder" in result.output

    scores = logged_run(client, run).data.metrics  # the export attached before MLflow came, and the benchmark
    assert scores["export/tflite_int8/top1"] == 0.858 and scores["export/tflite_int8/size_mb"] == 4.365
    assert scores["export/tflite_int8/meets_target"] == 1.0 and scores["export/keras_top1"] == 0.862
    assert scores["export/tflite_int8/wild/top1"] == 0.71 and scores["export/tflite_int8/wild96/top1"] == 0.64
    assert scores["bench/keras/t2/tag_images_per_s"] == 50.0 and scores["bench/dogtag_tflite_int8/t2/top1"] == 0.8639
    # The Keras row names the run by a relative path, the export by an absolute one: one entry all the same.
    figures = json.loads((run / "attached.json").read_text())["bench"][str(bench)]["figures"]
    assert figures["keras/t2/top1"] == 0.8655 and figures["dogtag_tflite_int8/t2/top1"] == 0.8639
    assert scores["bench/dogtag_tflite_int8/t2/vs_keras/tag_speedup"] == 7.5
    assert not any("stray" in key or "top1_photos" in key for key in scores)
    assert scores["top1"] == 0.8611  # the run's own record came along
    artifacts = {a.path for a in client.list_artifacts(logged_run(client, run).info.run_id, "bench/bench-results")}
    assert artifacts == {"bench/bench-results/bench.json"}

    missing = CliRunner().invoke(main, ["train", "attach", str(tmp_path / "runs")])
    assert missing.exit_code == 1 and "no verification.json or bench.json" in missing.output


def test_the_export_command_attaches_its_verification_to_the_run(tmp_path, mini_stanford, client):
    pytest.importorskip("tf2onnx")
    from tests.model_fixtures import make_tiny_run

    run = make_tiny_run(tmp_path)
    (run / "metrics.json").write_text(json.dumps({"top1": 0.9, "top5": 1.0, "approach": "transfer tiny"}))
    result = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "exported"), "--data",
                                       str(mini_stanford), "--formats", "tflite_float32"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "exported" / "verification.json").read_text())
    scores = logged_run(client, run).data.metrics
    assert scores["export/tflite_float32/agreement"] == report["formats"]["tflite_float32"]["agreement"] == 1.0
    assert scores["export/tflite_float32/size_mb"] == round(report["formats"]["tflite_float32"]["size_bytes"] / 1e6, 3)


def test_the_bench_command_attaches_each_row_to_the_run_its_model_came_from(tmp_path, client, monkeypatch):
    # A measured report replayed (run_benchmark is not run) onto model files laid out as the bundled
    # ones are: NAME_FORMAT files beside verification_NAME.json, whose file names are the export's.
    measured = json.loads((REPO / "dogtag" / "benchmarks" / "results" / "bench.json").read_text())
    models, runs, owner = tmp_path / "models", {}, {}
    models.mkdir()
    for row in measured["rows"]:
        path = Path(row["path"])
        name = "keras" if row["format"] == "keras" else path.stem.split("_")[0]  # e.g. accurate, fast
        if name not in runs:
            runs[name] = first_transfer_run(tmp_path / "runs" / (path.parent.name if name == "keras" else name))
        if name == "keras":
            row["path"] = str(runs[name] / "model.keras")
        else:
            (models / path.name).write_bytes(b"model")
            row["path"] = str(models / path.name)
            verification = models / f"verification_{name}.json"
            report = json.loads(verification.read_text()) if verification.exists() else {"run": str(runs[name])}
            report.setdefault("formats", {})[row["format"]] = {"file": f"dogtag_{row['format']}{path.suffix}"}
            verification.write_text(json.dumps(report))
        owner[id(row)] = runs[name]
    monkeypatch.setattr("dogtag.benchmarks.run.run_benchmark", lambda *args, **kwargs: measured)
    result = CliRunner().invoke(main, ["bench", "--models", str(models), "--out", str(tmp_path / "out"),
                                       "--threads", "1,2"])
    assert result.exit_code == 0, result.output
    assert len(measured["rows"]) >= 4 and len(list(models.glob("verification_*.json"))) >= 1
    for row in measured["rows"]:
        scores = logged_run(client, owner[id(row)]).data.metrics
        model = "keras" if row["format"] == "keras" else Path(row["path"]).stem
        for figure in ("tag_images_per_s", "latency_p50_ms", "size_mb", "top1"):
            assert scores[f"bench/{model}/t{row['threads']}/{figure}"] == row[figure], (model, figure)
    for run in runs.values():  # each run has its own models' rows only
        models_of_run = {key.split("/")[1] for key in logged_run(client, run).data.metrics if key.startswith("bench/")}
        expected = {"keras" if r["format"] == "keras" else Path(r["path"]).stem
                    for r in measured["rows"] if owner[id(r)] == run}
        assert models_of_run == expected
