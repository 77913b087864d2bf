"""One benchmark run: every model at every thread count, and the Keras baseline, on the same photos.

    report = run_benchmark([Path("exported/dogtag_tflite_int8.tflite")], Path("runs/x/model.keras"),
                           "path/to/stanford-dogs", QUICK)

The photos are prepared once in a scratch folder (links to the test photos, their decoded pixels,
the 12 MP JPEGs) and removed at the end. Top-1 is measured once per model, at the most threads.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

from dogtag.benchmarks.edge_models import measure_model_file
from dogtag.benchmarks.keras_baseline import keras_missing, measure_keras
from dogtag.benchmarks.machine import busy_warning, describe_machine, load_average
from dogtag.benchmarks.photos import LARGE_SIZE, Workspace, bench_photos
from dogtag.benchmarks.report import add_ratios, evaluate_targets, share_accuracy, summary_line
from dogtag.benchmarks.settings import BenchSettings
from dogtag.edge_app.model_file import ModelFileError
from dogtag.train.run_record import git_commit


def run_benchmark(models: list[Path], keras: Path | None, data: str | os.PathLike, settings: BenchSettings,
                  command: str = "dogtag bench", log=print) -> dict:
    """Measure everything; returns the report (see benchmarks/report.py) with its rows and targets."""
    machine = describe_machine()
    busy = busy_warning(machine["load_average"], machine["usable_cores"])
    if busy:
        log(f"warning: {busy}")
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    photos = bench_photos(data, settings.quick)
    rows, skipped = [], []
    if keras is None:
        skipped.append({"model": "keras", "reason": "no --keras model given, so nothing is compared with Keras"})
    elif keras_missing():
        skipped.append({"model": keras.name, "reason": keras_missing()})
        keras = None
    most = max(settings.threads)
    with tempfile.TemporaryDirectory(prefix="dogtag-bench-") as scratch:
        log(f"preparing {len(photos)} test photos and {settings.large_photos} 12 MP JPEGs in {scratch}")
        work = Workspace(photos, Path(scratch), settings.large_photos, settings.memory_photos)
        if keras is not None:
            for threads in settings.threads:
                log(f"{keras.name} (Keras baseline) at {threads} thread{'s' * (threads > 1)}")
                try:
                    rows.append(measure_keras(keras, threads, work, settings, threads == most, log))
                    log(summary_line(rows[-1]))
                except (RuntimeError, OSError, ValueError) as error:
                    skipped.append({"model": keras.name, "threads": threads, "reason": str(error)})
        for path in models:
            for threads in settings.threads:
                log(f"{path.name} at {threads} thread{'s' * (threads > 1)}")
                try:
                    rows.append(measure_model_file(path, threads, work, settings, threads == most, log))
                    log(summary_line(rows[-1]))
                except ModelFileError as error:  # an unusable file: the other models still run
                    skipped.append({"model": path.name, "reason": str(error)})
                    break
    share_accuracy(rows)
    add_ratios(rows)
    return {
        "started": started,
        "command": command,
        "commit": git_commit(),
        "machine": machine,
        "busy": busy,
        "load_average_after": load_average(),
        "settings": dataclasses.asdict(settings),
        "photos": {"data": str(data), "split": photos.split, "count": len(photos),
                   "large_count": settings.large_photos,
                   "memory_count": min(settings.memory_photos, len(photos)), "large_size": f"{LARGE_SIZE[0]} x {LARGE_SIZE[1]}"},
        "rows": rows,
        "skipped": skipped,
        "targets": evaluate_targets(rows),
    }
