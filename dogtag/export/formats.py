"""The export formats and ONNX calibration methods by name: the one list the CLI and the converter share.

    tflite_float32   TFLite, float32 weights and activations
    tflite_float16   TFLite, float16 weights (computed in float32)
    tflite_dynamic   TFLite, int8 weights, activations quantized on the fly
    tflite_int8      TFLite, int8 weights and activations (calibrated on training photos);
                     uint8 input and float32 outputs, so pixels go in and probabilities come out
    onnx_float32     ONNX (tf2onnx), float32
    onnx_int8        ONNX, static QDQ quantization by onnxruntime: int8 weights per channel,
                     uint8 activations, calibrated on training photos with CALIBRATION_METHODS
"""

from __future__ import annotations

from collections.abc import Iterable

FORMATS = {
    "tflite_float32": ".tflite",
    "tflite_float16": ".tflite",
    "tflite_dynamic": ".tflite",
    "tflite_int8": ".tflite",
    "onnx_float32": ".onnx",
    "onnx_int8": ".onnx",
}
# Formats calibrated on training photos.
CALIBRATED = ("tflite_int8", "onnx_int8")
# onnxruntime.quantization.CalibrationMethod by the names the CLI takes.
CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
# MinMax: on the MobileNetV2 model (1,000 test photos, 200 or 500 calibration photos) percentile
# and entropy calibration were no better (all within one point of top-1, agreement 92-93%)
# and took up to 13 times longer (percentile, 500 photos: 9 min against 43 s).
DEFAULT_CALIBRATION = "minmax"


def parse_formats(text: str | Iterable[str]) -> list[str]:
    """'tflite_int8,onnx_float32' (or 'all') -> a list of known format names."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    names = list(FORMATS) if names == ["all"] else [n for n in names if n]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ValueError(f"unknown formats {unknown}; choose from {', '.join(FORMATS)} or 'all'")
    return names


def parse_calibration(text: str) -> list[str]:
    """'minmax,entropy' -> a list of known ONNX calibration methods."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in CALIBRATION_METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown calibration methods {unknown}; choose from {', '.join(CALIBRATION_METHODS)}")
    return methods
