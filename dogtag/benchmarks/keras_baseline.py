"""The Keras baseline: the trained model.keras run the seeds' way, in its own processes.

The seeds' way is how the project tagged photos before the edge app: each photo read with PIL,
converted to RGB and resized to the input size (no draft decoding, no thread pool), the pixels as
float32 through `model.predict`, one CSV row per photo. It is measured generously: photos go to
`model.predict` in batches of the same size as `dogtag tag` uses.

Every Keras figure is taken in a child process (`python -m dogtag.benchmarks.keras_baseline ...`), so that
TensorFlow's thread pools and memory never share a process with the edge runtimes being measured,
and so that TensorFlow's thread count can be set before it starts. Where TensorFlow is not installed
(a Raspberry Pi), `keras_missing` says so and the Keras row is skipped with that reason.

Child commands:
    measure JOB.json                    in-process figures, written to the job's "result" path
    predict MODEL PHOTO --threads N     one photo; its first line of output is the result
    tag MODEL FOLDER... --out CSV --threads N --batch-size B
                                        tag folders the seeds' way
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dogtag.benchmarks.figures import batch_images_per_s, images_per_s, latency_ms, predicted_breeds, top1
from dogtag.benchmarks.fresh_process import cold_start_and_peak_memory, python_command
from dogtag.benchmarks.photos import Workspace
from dogtag.benchmarks.settings import BenchSettings
from dogtag.edge_app.model_file import ModelInfo, check_outputs, parse_model_info
from dogtag.edge_app.options import DEFAULT_BATCH_SIZE
from dogtag.edge_app.walk import find_photos

CHILD = "import sys; from dogtag.benchmarks.keras_baseline import main; main(sys.argv[1:])"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"}  # TensorFlow's start-up chatter would hide real errors


def keras_missing() -> str | None:
    """Why the Keras baseline cannot run here (TensorFlow or Keras not installed), or None."""
    for module, extra in (("tensorflow", "tensorflow"), ("keras", "keras")):
        if importlib.util.find_spec(module) is None:
            return (f"{extra} is not installed (as on a Raspberry Pi), so the Keras baseline was not measured; "
                    f"measure it on a machine with pip install 'dogtag[train]'")
    return None


def keras_files(path: str | os.PathLike) -> tuple[Path, ModelInfo]:
    """model.keras (given as the file or its run folder) and the model info saved beside it."""
    path = Path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    info_path = model_path.parent / "model_info.json"
    for needed in (model_path, info_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed}: not found; --keras takes a training run folder or its model.keras")
    return model_path, parse_model_info(info_path.read_text(encoding="utf-8"), source=str(info_path))


def measure_keras(model_path: Path, threads: int, work: Workspace, settings: BenchSettings,
                  accuracy: bool, log=print) -> dict:
    """Every figure of the Keras baseline at `threads` TensorFlow threads (top-1 only when `accuracy`)."""
    _, info = keras_files(model_path)
    _, pixels_file = work.pixels(info.input_size, info.resize)
    result_file = work.root / f"keras-{threads}.json"
    job = {
        "model": str(model_path), "threads": threads, "pixels": str(pixels_file),
        "breeds": work.photos.breeds if accuracy else None, "settings": dataclasses.asdict(settings),
        "folder": str(work.folder), "large_folder": str(work.large_folder) if work.large_folder else None,
        "results": str(work.results_file(f"keras-{threads}")), "result": str(result_file),
    }
    job_file = work.root / f"keras-{threads}-job.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    log("  top-1, latency, batch and tagging throughput in a TensorFlow process")
    child = subprocess.run(python_command(CHILD, "measure", str(job_file)), capture_output=True, text=True,
                           env={**os.environ, **QUIET})
    if child.returncode:
        last = (child.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"the Keras measuring process exited with {child.returncode}: {last}")
    row = {"model": model_path.name, "path": str(model_path), "format": "keras", "runtime": "TensorFlow",
           "threads": threads, "size_mb": round(model_path.stat().st_size / 1e6, 3), "problems": []}
    row.update(json.loads(result_file.read_text(encoding="utf-8")))
    log("  cold start and peak memory in fresh processes")
    model, thread_option = str(model_path), ["--threads", str(threads)]
    out = ["--out", str(work.results_file(f"keras-{threads}-fresh")), "--batch-size", str(settings.batch_size)]
    figures, problems = cold_start_and_peak_memory(
        python_command(CHILD, "predict", model, str(work.first_photo), *thread_option),
        python_command(CHILD, "tag", model, *work.memory_folders, *out, *thread_option),
        settings.cold_start_runs, env=QUIET)
    row.update(figures)
    row["problems"] += problems
    return row


# --- the child process: the seeds' way ------------------------------------------------------------


def load_keras(model_path: str | os.PathLike, threads: int):
    """(Keras model, its info, breeds output position) with TensorFlow limited to `threads` threads."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    import dogtag.train.layers  # noqa: F401  (registers the layers a shipped model may hold)

    model_path, info = keras_files(model_path)
    model = keras.models.load_model(model_path, compile=False)
    shapes = {name: tuple(output.shape) for name, output in zip(model.output_names, model.outputs, strict=True)}
    breeds = check_outputs(info, shapes, source=str(model_path))["breeds"]
    return model, info, model.output_names.index(breeds)


def seeds_load_photo(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """A photo the seeds' way: PIL, RGB, resized to (height, width) with PIL's default filter."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size[1], size[0])), dtype=np.uint8)


def seeds_predict(model, position: int, pixels: np.ndarray) -> np.ndarray:
    """Breed probabilities of a uint8 batch through `model.predict`."""
    outputs = model.predict(pixels.astype("float32"), batch_size=len(pixels), verbose=0)
    return np.asarray(outputs[position] if isinstance(outputs, (list, tuple)) else outputs)


def seeds_tag(model, info: ModelInfo, position: int, folders: list[str], out: str, batch_size: int) -> int:
    """Tag every photo under `folders` the seeds' way into the CSV `out`; returns the number of photos."""
    paths = [path for folder in folders for path in find_photos(folder)]
    with open(out, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "breed", "confidence"])
        for start in range(0, len(paths), batch_size):
            part = paths[start : start + batch_size]
            probabilities = seeds_predict(model, position, np.stack([seeds_load_photo(p, info.input_size) for p in part]))
            for path, row in zip(part, probabilities, strict=True):
                writer.writerow([path, info.labels[int(np.argmax(row))], f"{float(np.max(row)):.4f}"])
    return len(paths)


def _measure(job: dict) -> dict:
    settings = BenchSettings(**{**job["settings"], "threads": (job["threads"],)})
    model, info, position = load_keras(job["model"], job["threads"])
    pixels = np.load(job["pixels"], mmap_mode="r")

    def run(batch: np.ndarray) -> np.ndarray:
        return seeds_predict(model, position, batch)

    figures = {}
    if job["breeds"] is not None:
        predicted = predicted_breeds(run, pixels, info.labels, settings.batch_size)
        figures["top1"], figures["top1_photos"] = top1(predicted, job["breeds"], info.labels)
    sample = pixels[: max(settings.latency_runs + settings.warmup_runs, settings.throughput_photos)]
    figures["latency_p50_ms"], figures["latency_p90_ms"] = latency_ms(
        run, sample, settings.warmup_runs, settings.latency_runs)
    figures["batch_images_per_s"] = batch_images_per_s(run, sample, settings.batch_size, settings.throughput_photos)
    for key, folder in (("tag_images_per_s", job["folder"]), ("large_images_per_s", job["large_folder"])):
        figures[key] = None
        if folder:
            started = time.perf_counter()
            count = seeds_tag(model, info, position, [folder], job["results"], settings.batch_size)
            figures[key] = images_per_s(count, time.perf_counter() - started)
    return figures


def main(argv: list[str] | None = None) -> None:
    """The child process's command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m dogtag.benchmarks.keras_baseline")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("measure").add_argument("job")
    predict = commands.add_parser("predict")
    predict.add_argument("model")
    predict.add_argument("photo")
    tag = commands.add_parser("tag")
    tag.add_argument("model")
    tag.add_argument("folders", nargs="+")
    tag.add_argument("--out", required=True)
    tag.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    for command in (predict, tag):
        command.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.command == "measure":
        job = json.loads(Path(args.job).read_text(encoding="utf-8"))
        Path(job["result"]).write_text(json.dumps(_measure(job)), encoding="utf-8")
    elif args.command == "predict":
        model, info, position = load_keras(args.model, args.threads)
        probabilities = seeds_predict(model, position, seeds_load_photo(args.photo, info.input_size)[None])[0]
        best = int(np.argmax(probabilities))
        print(f"{args.photo}: {info.labels[best]} {probabilities[best]:.1%}", flush=True)
    else:
        model, info, position = load_keras(args.model, args.threads)
        seeds_tag(model, info, position, args.folders, args.out, args.batch_size)


if __name__ == "__main__":
    main()
