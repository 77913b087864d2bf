"""`dogtag export RUN_DIR --out DIR`: convert a trained run to TFLite and ONNX, verify, describe.

    dogtag export runs/mobilenet_v2 --out exported/
    dogtag export runs/mobilenet_v2 --out models/ --formats tflite_int8,onnx_float32 --model-card
    dogtag export runs/mobilenet_v2 --out exported/ --formats onnx_int8 --onnx-calibration minmax,percentile,entropy

Writes <stem>_<format>.tflite/.onnx, verification.json and verification.md (the table printed at
the end) in DIR, and MODEL_CARD.md with --model-card; the verified figures are attached to the run
(its attached.json, and its MLflow run where MLflow is installed).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from dogtag.export.formats import (
    CALIBRATED,
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION,
    FORMATS,
    parse_calibration,
    parse_formats,
)
from dogtag.train.options import data_option


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the model files, the verification report and the model card.")
@click.option("--formats", default="all", show_default=True,
              help=f"Comma-separated: {', '.join(FORMATS)}, or 'all'.")
@data_option
@click.option("--calibration-images", type=click.IntRange(min=1), default=500, show_default=True,
              help="Training photos used to calibrate int8 models (never test photos).")
@click.option("--onnx-calibration", default=DEFAULT_CALIBRATION, show_default=True,
              help=f"{', '.join(CALIBRATION_METHODS)}; several (comma-separated) write one onnx_int8 file each.")
@click.option("--int8-float-layers", type=click.IntRange(min=0), default=None,
              help="Depthwise layers of the int8 TFLite model kept in float, the ones quantization hurts most "
                   "[default: 3]; 0 quantizes everything (integer-only accelerators).")
@click.option("--onnx-wide-depthwise", type=click.IntRange(min=0), default=None,
              help="First depthwise convolutions of the int8 ONNX model whose kernels get 16 bits [default: 1]; "
                   "0 keeps every kernel int8 and the file free of onnxruntime's contrib operators.")
@click.option("--verify-images", type=click.IntRange(min=0), default=0, show_default=True,
              help="Test photos to verify on, drawn at random; 0 = the whole test split.")
@click.option("--verify/--no-verify", default=True, show_default=True)
@click.option("--stem", default="dogtag", show_default=True, help="File names are <stem>_<format>.<ext>.")
@click.option("--model-card/--no-model-card", default=False, show_default=True,
              help="Also write MODEL_CARD.md from the run's metrics and the verification.")
@click.option("--wild", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Also measure each file through the edge app on this dogs-in-the-wild folder (real photos from "
                   "outside ImageNet): into verification.json and the model card.")
def export(run_dir, out_dir, formats, data, calibration_images, onnx_calibration, int8_float_layers,
           onnx_wide_depthwise, verify_images, verify, stem, model_card, wild) -> None:
    """Export a trained Keras model to TFLite and ONNX, and verify it."""
    from dogtag.export.convert import (
        INT8_FLOAT_LAYERS,
        ONNX_WIDE_DEPTHWISE,
        export_files,
        load_run,
        predict_keras,
    )
    from dogtag.export.images import (
        calibration_photos,
        labelled_paths,
        photo_batches,
        sample_paths,
        split_for_export,
    )
    from dogtag.export.model_card import write_model_card
    from dogtag.export.verify import format_table, save_report, verify_files
    from dogtag.train.run_record import git_commit

    def log(line: str) -> None:
        click.echo(line, err=True)

    try:
        names = parse_formats(formats)
        methods = parse_calibration(onnx_calibration)
        model, info = load_run(run_dir)
        calibration = None
        if any(name in CALIBRATED for name in names):
            log(f"reading {calibration_images} training photos from {data} for int8 calibration")
            calibration = calibration_photos(data, info, calibration_images)
        if int8_float_layers is None:
            int8_float_layers = INT8_FLOAT_LAYERS
        if onnx_wide_depthwise is None:
            onnx_wide_depthwise = ONNX_WIDE_DEPTHWISE
        files = export_files(model, info, out_dir, names, calibration, methods, stem=stem,
                             int8_float_layers=int8_float_layers, onnx_wide_depthwise=onnx_wide_depthwise, log=log)
        report = None
        if verify:
            rows = sample_paths(labelled_paths(split_for_export(data, "test"), info.labels), verify_images)
            log(f"verifying {len(files)} files on {len(rows)} test photos from {data}")
            report = verify_files(lambda pixels: predict_keras(model, info, pixels), files,
                                  photo_batches(rows, info), min_dog=info.min_dog, log=log)
            report.update(run=str(run_dir), data=str(data), split="test", model_version=info.model_version)
            report["wild"] = measure_on_wild(files, wild, log)
            save_report(report, out_dir / "verification.json")
            table = format_table(report)
            (out_dir / "verification.md").write_text(table + "\n", encoding="utf-8")
            click.echo(table)
        if model_card:
            command = shlex.join([
                "dogtag", "export", str(run_dir), "--out", str(out_dir), "--formats", formats, "--data", str(data),
                "--calibration-images", str(calibration_images), "--onnx-calibration", onnx_calibration,
                "--int8-float-layers", str(int8_float_layers), "--onnx-wide-depthwise", str(onnx_wide_depthwise),
                "--verify-images", str(verify_images), "--stem", stem, "--model-card",
                *(["--wild", str(wild)] if wild else []),
                *([] if verify else ["--no-verify"]),
            ])
            path = write_model_card(out_dir / "MODEL_CARD.md", info, run_dir, report, command, git_commit())
            log(f"wrote {path}")
    except (FileNotFoundError, ValueError) as error:  # ModelFileError is a ValueError
        raise click.ClickException(str(error)) from error
    if report:
        _attach_to_run(report, out_dir, run_dir, log)
    if report and not all(entry["meets_target"] for entry in report["formats"].values()):
        missed = [name for name, entry in report["formats"].items() if not entry["meets_target"]]
        log(f"warning: {', '.join(missed)} missed the target (see verification.md)")


def measure_on_wild(files: dict, wild: Path | None, log) -> dict:
    """Each exported file through the edge app on dogs-in-the-wild (real photos), when --wild names that set."""
    from dogtag.benchmarks.wild import wild_accuracy
    from dogtag.edge_app.classifier import Classifier
    if wild is None:
        log("not measured on dogs-in-the-wild (give --wild PATH to measure each file on those real photos)")
        return {}
    if not (wild / "labels.csv").is_file():
        raise FileNotFoundError(f"{wild}: no labels.csv; --wild takes the dogs-in-the-wild folder")
    results = {}
    for name, path in files.items():
        results[name] = wild_accuracy(Classifier(path))
        log(f"{name} on dogs-in-the-wild: top-1 {results[name]['wild']['top1']:.4f}, "
            f"96 px thumbnails {results[name]['wild96']['top1']:.4f}")
    return results


def _attach_to_run(report: dict, out_dir: Path, run_dir: Path, log) -> None:
    """The verification figures go to the run's record too (and its MLflow run): never a reason to fail."""
    from dogtag.train.attach import attach_export

    try:
        attach_export(report, out_dir, run_dir, log=log)
    except (OSError, ValueError) as error:
        log(f"warning: the verification was not attached to {run_dir} ({error}); "
            f"`dogtag train attach {out_dir}` attaches it later")
