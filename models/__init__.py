"""The bundled default model: installed as the package `dogtag.models` so the app finds it anywhere."""

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
DEFAULT_TFLITE = MODEL_DIR / "dogtag_tflite_int8.tflite"
DEFAULT_ONNX = MODEL_DIR / "dogtag_onnx_int8.onnx"
