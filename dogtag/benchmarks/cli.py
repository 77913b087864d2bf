"""`dogtag bench`: one table of size, accuracy, speed and memory for every model format, against Keras.

    dogtag bench --models exported/ --keras runs/mobilenet_v2/model.keras --data path/to/stanford-dogs
    dogtag bench --quick                          # the bundled models, a fixed stratified subset
    dogtag bench --models exported/dogtag_tflite_int8.tflite --threads 1,4 --out pi-bench/

Writes bench.json, bench.md and bench.png into --out and prints the table; each row's figures are
attached to the run its model came from, where that run folder is here (see train/attach.py).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from dogtag.benchmarks.settings import FULL, QUICK, default_threads, parse_threads
from dogtag.train.options import data_option


@click.command()
@click.option("--models", "model_specs", multiple=True, metavar="FILES_OR_DIRS",
              help="Model files (.tflite, .onnx) or folders of them; repeat or separate with commas "
                   "[default: the bundled models].")
@click.option("--keras", type=click.Path(exists=True, path_type=Path), default=None,
              help="The Keras baseline: a training run folder or its model.keras (skipped, saying why, "
                   "where TensorFlow is not installed).")
@data_option
@click.option("--quick", is_flag=True,
              help="A fixed stratified part of the test split and fewer runs: minutes, not an hour.")
@click.option("--threads", default=None, metavar="N,N",
              help="Model thread counts to measure, e.g. 1,2 [default: 1 and all cores].")
@click.option("--large-photos", type=click.IntRange(min=0), default=None,
              help=f"12 MP JPEGs to generate and tag; 0 for none [default: {FULL.large_photos}, "
                   f"--quick {QUICK.large_photos}].")
@click.option("--batch-size", type=click.IntRange(min=1), default=FULL.batch_size, show_default=True,
              help="Photos per model call when tagging and in batch throughput (as `dogtag tag --batch-size`).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-results"),
              show_default=True, help="Folder for bench.json, bench.md and bench.png.")
def bench(model_specs, keras, data, quick, threads, large_photos, batch_size, out_dir) -> None:
    """Measure size, accuracy, speed and memory of every model format, on the same test photos."""
    import dataclasses

    from dogtag.benchmarks.edge_models import find_model_files
    from dogtag.benchmarks.keras_baseline import keras_files
    from dogtag.benchmarks.report import format_table, save_report
    from dogtag.benchmarks.run import run_benchmark

    def log(line: str) -> None:
        click.echo(line, err=True)

    try:
        settings = dataclasses.replace(
            QUICK if quick else FULL,
            threads=parse_threads(threads) if threads else default_threads(),
            batch_size=batch_size,
            **({} if large_photos is None else {"large_photos": large_photos}),
        )
        models = find_model_files([part for spec in model_specs for part in spec.split(",") if part]
                                  or bundled_models())
        if keras is not None:
            keras, _ = keras_files(keras)  # a wrong path fails now, not after an hour
        command = shlex.join(["dogtag", "bench", *[f"--models={spec}" for spec in model_specs],
                              *([f"--keras={keras}"] if keras else []), f"--data={data}",
                              *(["--quick"] if quick else []), f"--threads={','.join(map(str, settings.threads))}",
                              f"--large-photos={settings.large_photos}", f"--batch-size={batch_size}",
                              f"--out={out_dir}"])
        report = run_benchmark(models, keras, data, settings, command, log=log)
    except (FileNotFoundError, ValueError) as error:  # ModelFileError is a ValueError
        raise click.ClickException(str(error)) from error
    if not report["rows"]:
        raise click.ClickException("no model could be measured: " + "; ".join(s["reason"] for s in report["skipped"]))
    paths = save_report(report, out_dir, log=log)
    click.echo(format_table(report))
    log("wrote " + ", ".join(str(path) for path in paths))
    _attach_to_runs(report, out_dir, log)


def _attach_to_runs(report: dict, out_dir: Path, log) -> None:
    """Each row's figures go to the record of the run its model came from: never a reason to fail."""
    from dogtag.train.attach import attach_bench

    try:
        attach_bench(report, out_dir, log=log)
    except (OSError, ValueError) as error:
        log(f"warning: the benchmark was not attached to its runs ({error}); "
            f"`dogtag train attach {out_dir}` attaches it later")


def bundled_models() -> list[Path]:
    """The model files that ship with Dogtag (models/: accurate and fast, TFLite and ONNX), those that exist."""
    from dogtag.models import BUNDLED_MODELS, MODEL_DIR, bundled_files

    found = [path for name in BUNDLED_MODELS for path in bundled_files(name) if path.is_file()]
    if not found:
        raise FileNotFoundError(f"no bundled model in {MODEL_DIR}; pass --models FILES_OR_DIRS")
    return found
