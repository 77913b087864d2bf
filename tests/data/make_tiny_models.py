"""Make the tiny test models committed in tests/data/tiny_models/ (a few KB each), with TensorFlow.

    pip install -e ".[train]" && python tests/data/make_tiny_models.py

The edge app's tests run on the base install (numpy, pillow, click, ai-edge-litert: a laptop or a
Raspberry Pi, no TensorFlow), so they read these files instead of training a model each run. Each
folder is one variant (VARIANTS below); each file is what `dogtag export` writes for the tiny Keras
model of tests/model_fixtures.py (32 x 32 pixels in; each breed a colour tint over noise, grey noise
"not a dog"), trained for a moment with a fixed seed. Run it again whenever that model or the export
stage's file format changes (e.g. a new output), and commit the files it writes; the tests read the
labels and outputs from the files themselves, so nothing else needs updating.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.model_fixtures import (  # noqa: E402
    TINY_FORMATS,
    TINY_LABELS,
    TINY_MODELS,
    make_tiny_models,
    make_tiny_run,
    training_photos,
)

# folder under tests/data/tiny_models -> how its files are made: the models in every format, the same
# without the "dog" output, an int8 file whose outputs stay uint8 (as some converters leave them), and
# files whose embedded labels do not match their outputs (4 labels, 3 probabilities).
VARIANTS = {
    "standard": "every export format",
    "no_dog": "no dog output (tflite_int8, onnx_float32)",
    "uint8_outputs": "int8 TFLite with uint8 outputs",
    "wrong_labels": "4 labels embedded in 3-breed models (tflite_int8, onnx_float32)",
}


def make_variant(name: str, target: Path, scratch: Path) -> None:
    """Write variant `name`'s files into `target` (emptied first)."""
    from dogtag.edge_app.model_file import read_model_info
    from dogtag.export.convert import file_info, load_run, to_tflite
    from dogtag.export.metadata import embed_onnx_info, embed_tflite_info

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    if name == "standard":
        make_tiny_models(target, formats=TINY_FORMATS)
    elif name == "no_dog":
        make_tiny_models(target, with_dog=False, formats=("tflite_int8", "onnx_float32"))
    elif name == "uint8_outputs":
        model, info = load_run(make_tiny_run(scratch))
        calibration, _, _ = training_photos(64, len(TINY_LABELS), seed=1)
        data = to_tflite(model, info, "int8", calibration, quantized_outputs=True)
        (target / "dogtag_tflite_int8.tflite").write_bytes(embed_tflite_info(data, file_info(info, "tflite_int8", has_dog=True)))
    elif name == "wrong_labels":
        import onnx

        files = make_tiny_models(scratch / "wrong", formats=("tflite_int8", "onnx_float32"))
        four = dataclasses.replace(read_model_info(files["tflite_int8"]), labels=(*TINY_LABELS, "Pekinese"))
        (target / "dogtag_tflite_int8.tflite").write_bytes(embed_tflite_info(files["tflite_int8"].read_bytes(), four))
        onnx.save(embed_onnx_info(onnx.load(files["onnx_float32"]), four), target / "dogtag_onnx_float32.onnx")
    else:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")


def main(argv: list[str]) -> int:
    names = argv or list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="dogtag-tiny-") as scratch:
        for name in names:
            make_variant(name, TINY_MODELS / name, Path(scratch))
            for path in sorted((TINY_MODELS / name).iterdir()):
                print(f"{path.relative_to(REPO)}: {path.stat().st_size / 1024:.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
