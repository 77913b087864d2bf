"""The bundled default model: installed as the package `dogtag.models` so the app finds it anywhere."""

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
DEFAULT_TFLITE = MODEL_DIR / "dogtag.tflite"
DEFAULT_ONNX = MODEL_DIR / "dogtag.onnx"
