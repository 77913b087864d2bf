"""Measure one exported model file (.tflite or .onnx) exactly as the edge app runs it.

Everything goes through edge_app: `Classifier` opens the file (LiteRT or onnxruntime), `tag_folders`
is the code path of `dogtag tag`, and the fresh processes run the real `dogtag predict` and
`dogtag tag` commands. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dogtag.benchmarks.figures import batch_images_per_s, images_per_s, latency_ms, predicted_breeds, top1
from dogtag.benchmarks.fresh_process import DOGTAG, cold_start_and_peak_memory, python_command
from dogtag.benchmarks.photos import Workspace
from dogtag.benchmarks.settings import BenchSettings
from dogtag.edge_app.classifier import Classifier
from dogtag.edge_app.model_file import ModelInfo
from dogtag.edge_app.options import TagOptions
from dogtag.edge_app.tagging import tag_folders

MODEL_SUFFIXES = (".tflite", ".onnx")


def find_model_files(specs: list[str | os.PathLike]) -> list[Path]:
    """Model files from a list of files and folders (each folder: its .tflite and .onnx files, sorted)."""
    files: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in MODEL_SUFFIXES and p.is_file())
            if not found:
                raise FileNotFoundError(f"{path}: no .tflite or .onnx files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such model file or folder")
    return list(dict.fromkeys(files))


def model_format(info: ModelInfo, path: Path) -> str:
    """The export format the file's model info names (e.g. tflite_int8), else its suffix."""
    export = info.extra.get("export")
    if isinstance(export, dict) and export.get("format"):
        return str(export["format"])
    return path.suffix.lower().lstrip(".")


def measure_model_file(path: Path, threads: int, work: Workspace, settings: BenchSettings,
                       accuracy: bool, log=print) -> dict:
    """Every figure of one model file at `threads` model threads (top-1 only when `accuracy`)."""
    row = {"model": path.name, "path": str(path), "threads": threads,
           "size_mb": round(path.stat().st_size / 1e6, 3), "problems": []}
    _in_process(Classifier(path, num_threads=threads), path, work, settings, accuracy, row, log)
    log("  cold start and peak memory in fresh processes")
    model = ["--model", str(path), "--threads", str(threads)]
    out = ["--out", str(work.results_file(f"{path.stem}-{threads}-fresh")), "--batch-size", str(settings.batch_size)]
    figures, problems = cold_start_and_peak_memory(
        python_command(DOGTAG, "predict", str(work.first_photo), *model),
        python_command(DOGTAG, "tag", *work.memory_folders, *model, *out, "--restart"),
        settings.cold_start_runs)
    row.update(figures)
    row["problems"] += problems
    return row


def _in_process(classifier: Classifier, path: Path, work: Workspace, settings: BenchSettings, accuracy: bool,
                row: dict, log) -> None:
    """The figures measured with the model opened here: top-1, latency, batch and tagging throughput."""
    info = classifier.info
    row.update(format=model_format(info, path), runtime=classifier.model.runtime)
    pixels, _ = work.pixels(info.input_size, info.resize)
    sample = pixels[: max(settings.latency_runs + settings.warmup_runs, settings.throughput_photos)]
    if accuracy:
        log(f"  top-1 on {len(pixels)} photos")
        predicted = predicted_breeds(lambda batch: classifier.model.run(batch)[0], pixels, info.labels,
                                     settings.batch_size)
        row["top1"], row["top1_photos"] = top1(predicted, work.photos.breeds, info.labels)
    row["latency_p50_ms"], row["latency_p90_ms"] = latency_ms(
        classifier.predict_pixels, sample, settings.warmup_runs, settings.latency_runs)
    row["batch_images_per_s"] = batch_images_per_s(
        classifier.predict_pixels, sample, settings.batch_size, settings.throughput_photos)
    log(f"  tagging {len(work.photos)} photos end to end")
    row["tag_images_per_s"] = _tag(classifier, work.folder, work, f"{path.stem}-{row['threads']}", settings, row)
    row["large_images_per_s"] = None
    if work.large_folder is not None:
        log(f"  tagging {work.large_count} 12 MP photos end to end")
        row["large_images_per_s"] = _tag(classifier, work.large_folder, work,
                                         f"{path.stem}-{row['threads']}-large", settings, row)


def _tag(classifier: Classifier, folder: Path, work: Workspace, name: str, settings: BenchSettings,
         row: dict) -> float:
    """Photos per second of `tag_folders` (walk, decode, resize, infer, write) over `folder`."""
    started = time.perf_counter()
    options = TagOptions(out=work.results_file(name), restart=True, batch_size=settings.batch_size)
    summary = tag_folders([folder], classifier, options)
    seconds = time.perf_counter() - started
    if summary.failed:
        row["problems"].append(f"{summary.failed} photos of {folder.name}/ could not be tagged: "
                               f"{summary.errors[0][1]}")
    return images_per_s(summary.tagged, seconds)
