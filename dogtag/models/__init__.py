"""The bundled models: installed as the package `dogtag.models` so the app finds them anywhere.

Two are bundled, each as int8 TFLite (LiteRT) and int8 ONNX (onnxruntime), with a model card:
`accurate` (the default) and `fast` (for a Raspberry Pi, or when speed matters more).
"""

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
BUNDLED_MODELS = ("accurate", "fast")
DEFAULT_MODEL = "accurate"


def bundled_files(name: str) -> tuple[Path, Path]:
    """The (TFLite, ONNX) files of a bundled model, by name."""
    if name not in BUNDLED_MODELS:
        raise ValueError(f"no bundled model named {name!r}; choose one of {', '.join(BUNDLED_MODELS)}")
    return MODEL_DIR / f"{name}_tflite_int8.tflite", MODEL_DIR / f"{name}_onnx_int8.onnx"


DEFAULT_TFLITE, DEFAULT_ONNX = bundled_files(DEFAULT_MODEL)
