"""Check every exported file against the Keras model it came from, on real test photos.

Each file runs in its lightweight runtime (LiteRT for .tflite, onnxruntime for .onnx) on exactly
the pixels the Keras model sees. Per file: agreement of the top-1 breed with Keras, the largest and
mean absolute difference of the breed probabilities and of the dog probability, how often the
"is it a dog" decision (dog probability >= min_dog) agrees, and top-1 accuracy. Targets (issue 4):
float32 formats agree with Keras on at least 99.9% of photos; quantized formats (float16 or int8
weights, int8 activations) lose at most 0.5 point of top-1 accuracy against Keras.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from dogtag.edge_app.model_file import ModelFileError, check_outputs, read_model_info

FLOAT_AGREEMENT_TARGET = 0.999
QUANTIZED_TOP1_LOSS_TARGET = 0.005

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


def open_model_file(path: str | Path) -> Runner:
    """A function running a .tflite or .onnx file on uint8 pixels -> {"breeds": ..., "dog": ...}.

    Outputs are matched to their role through the embedded model info (edge_app.model_file), so a
    file whose labels do not fit its outputs is refused here as on the edge side.
    """
    path = Path(path)
    info = read_model_info(path)
    if path.suffix.lower() == ".tflite":
        return _tflite_runner(path, info)
    return _onnx_runner(path, info)


def _tflite_runner(path: Path, info) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
    (pixels_in,) = interpreter.get_input_details()
    outputs = {o["name"]: o for o in interpreter.get_output_details()}
    roles = check_outputs(info, {name: tuple(o["shape"]) for name, o in outputs.items()}, source=str(path))
    allocated = {"batch": None}

    def run(pixels: np.ndarray) -> dict[str, np.ndarray]:
        if allocated["batch"] != len(pixels):
            interpreter.resize_tensor_input(pixels_in["index"], list(pixels.shape))
            interpreter.allocate_tensors()
            allocated["batch"] = len(pixels)
        interpreter.set_tensor(pixels_in["index"], pixels.astype(pixels_in["dtype"], copy=False))
        interpreter.invoke()
        results = {}
        for role, name in roles.items():
            if name is not None:
                output = outputs[name]
                value = interpreter.get_tensor(output["index"]).astype("float32")
                scale, zero_point = output["quantization"]
                results[role] = (value - zero_point) * scale if scale else value
        return results

    return run


def _onnx_runner(path: Path, info) -> Runner:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (pixels_in,) = session.get_inputs()
    shapes = {o.name: tuple(o.shape) for o in session.get_outputs()}
    roles = {role: name for role, name in check_outputs(info, shapes, source=str(path)).items() if name}

    def run(pixels: np.ndarray) -> dict[str, np.ndarray]:
        values = session.run(list(roles.values()), {pixels_in.name: pixels})
        return {role: value.astype("float32") for role, value in zip(roles, values, strict=True)}

    return run


def is_quantized(name: str) -> bool:
    """Formats whose weights are rounded (float16, int8), held to the accuracy target, not agreement."""
    return "float32" not in name


def verify_files(
    reference: Runner,
    files: dict[str, Path],
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    min_dog: float = 0.5,
    log: Callable[[str], None] = print,
) -> dict:
    """Compare every file with `reference` (the Keras model) over `batches` of (uint8 photos, labels).

    Returns the report saved as JSON: images, Keras top-1, and one entry per file.
    """
    runners = {name: open_model_file(path) for name, path in files.items()}
    totals = {name: _Totals(min_dog) for name in ["keras", *runners]}
    images, began = 0, time.perf_counter()
    for pixels, labels in batches:
        expected = reference(pixels)
        totals["keras"].add(expected, expected, labels)
        for name, run in runners.items():
            started = time.perf_counter()
            totals[name].add(run(pixels), expected, labels, seconds=time.perf_counter() - started)
        images += len(labels)
        if images % 1024 < len(labels):
            log(f"verified {images} photos ({time.perf_counter() - began:.0f}s)")
    if not images:
        raise ValueError("no photos to verify on")
    keras_top1 = totals["keras"].correct / images
    report = {"images": images, "keras_top1": round(keras_top1, 4), "min_dog": min_dog, "formats": {}}
    for name, path in files.items():
        entry = totals[name].summary(images)
        entry.update(file=Path(path).name, size_bytes=Path(path).stat().st_size,
                     top1_change=round(entry["top1"] - keras_top1, 4))
        if is_quantized(name):
            entry["target"] = f"top-1 loss <= {QUANTIZED_TOP1_LOSS_TARGET * 100:.1f} point"
            entry["meets_target"] = keras_top1 - entry["top1"] <= QUANTIZED_TOP1_LOSS_TARGET + 1e-9
        else:
            entry["target"] = f"agreement >= {FLOAT_AGREEMENT_TARGET * 100:.1f}%"
            entry["meets_target"] = entry["agreement"] >= FLOAT_AGREEMENT_TARGET
        report["formats"][name] = entry
    return report


class _Totals:
    """Running sums for one format over the verified photos."""

    def __init__(self, min_dog: float) -> None:
        self.min_dog = min_dog
        self.agree = self.correct = self.dog_agree = 0
        self.max_diff = self.sum_diff = self.dog_max_diff = self.dog_sum_diff = self.seconds = 0.0
        self.has_dog = False

    def add(self, got: dict, expected: dict, labels: np.ndarray, seconds: float = 0.0) -> None:
        breeds, reference = got["breeds"], expected["breeds"]
        if breeds.shape != reference.shape:
            raise ModelFileError(f"breed output of shape {breeds.shape}, the Keras model gives {reference.shape}")
        difference = np.abs(breeds - reference)
        self.agree += int(np.sum(breeds.argmax(1) == reference.argmax(1)))
        self.correct += int(np.sum(breeds.argmax(1) == labels))
        self.max_diff = max(self.max_diff, float(difference.max()))
        self.sum_diff += float(difference.mean(axis=1).sum())
        if "dog" in got and "dog" in expected:
            self.has_dog = True
            dog_difference = np.abs(got["dog"].reshape(-1) - expected["dog"].reshape(-1))
            self.dog_max_diff = max(self.dog_max_diff, float(dog_difference.max()))
            self.dog_sum_diff += float(dog_difference.sum())
            decisions = (got["dog"].reshape(-1) >= self.min_dog) == (expected["dog"].reshape(-1) >= self.min_dog)
            self.dog_agree += int(np.sum(decisions))
        self.seconds += seconds

    def summary(self, images: int) -> dict:
        return {
            "top1": round(self.correct / images, 4),
            "agreement": round(self.agree / images, 5),
            "max_abs_diff": float(f"{self.max_diff:.3g}"),
            "mean_abs_diff": float(f"{self.sum_diff / images:.3g}"),
            "dog_max_abs_diff": float(f"{self.dog_max_diff:.3g}") if self.has_dog else None,
            "dog_mean_abs_diff": float(f"{self.dog_sum_diff / images:.3g}") if self.has_dog else None,
            "dog_decision_agreement": round(self.dog_agree / images, 5) if self.has_dog else None,
            "ms_per_image": round(self.seconds / images * 1000, 2),
        }


def format_table(report: dict) -> str:
    """The verification report as one markdown table, a row per exported file."""
    lines = [
        f"Verified on {report['images']} test photos; Keras top-1 {report['keras_top1'] * 100:.2f}%; "
        f"dog decision: dog probability >= {report['min_dog']}.",
        "",
        "| format | size MB | top-1 % | vs Keras (points) | agrees with Keras % | max abs diff | mean abs diff "
        "| dog: max / mean abs diff | dog: same decision % | ms/photo | target | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, entry in report["formats"].items():
        dog, decision = "-", "-"
        if entry["dog_max_abs_diff"] is not None:
            dog = f"{entry['dog_max_abs_diff']:.2g} / {entry['dog_mean_abs_diff']:.2g}"
            decision = f"{entry['dog_decision_agreement'] * 100:.2f}"
        lines.append(
            f"| {name} | {entry['size_bytes'] / 1e6:.3g} | {entry['top1'] * 100:.2f} | {entry['top1_change'] * 100:+.2f} "
            f"| {entry['agreement'] * 100:.2f} | {entry['max_abs_diff']:.2g} | {entry['mean_abs_diff']:.2g} | {dog} | {decision} "
            f"| {entry['ms_per_image']:.1f} | {entry['target']} | {'yes' if entry['meets_target'] else 'NO'} |"
        )
    return "\n".join(lines)


def save_report(report: dict, path: str | Path) -> Path:
    """Write the verification report as JSON."""
    path = Path(path)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
